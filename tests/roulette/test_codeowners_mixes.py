"""The matcher against GitLab's own loop, on every rule mix the benchmark generates.

:class:`GitLabScan` is the benchmark's baseline: GitLab's ``entries_for_path`` with its own
translation of Ruby's ``File.fnmatch?``. It is checked here against the line-by-line port of
Ruby's ``fnmatch`` (``tests/roulette/test_codeowners.py``), then the matcher is checked
against it on each preset mix of ``benchmarks/codeowners.py`` (small sizes), so that the
figures the benchmark prints compare two implementations that give the same owners.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import codeowners as bench
from plugins.roulette import codeowners as co
from plugins.roulette.codeowners import GitLabScan, Owner, parse, reference_owners
from tests.roulette.test_codeowners import codeowners_texts, gitlab_matches, path_like, paths


def scan_matches(pattern: str, path: str) -> bool:
    regex = co._fnmatch_regex(co._gitlab_pattern(pattern))
    return re.fullmatch(regex, path if path.startswith("/") else "/" + path) is not None


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*", ".env", True),
        ("*.rb", "a/.b/c.rb", True),
        ("ui/*.yml", "x/ui/a.yml", True),
        ("ui/*.yml", "x/ui/b/a.yml", False),
        ("/svc3/**/*.rb", "svc3/a.rb", True),
        ("/svc3/**/*.rb", "svc3/a/b/c.rb", True),
        ("/svc3/**/*.rb", "x/svc3/a.rb", False),
        ("lib/**", "lib/a/b", False),
        ("docs/", "x/docs/a/b.md", True),
        ("\\#notes", "#notes", True),
        ("path\\ with\\ spaces/", "path with spaces/a", True),
        ("/a\\*b", "a*b", True),
        ("/a\\*b", "axb", False),
        ("/x[a-", "x[a-", False),
        ("/x[!]", "xy", True),
        ("/x[c-a]", "xb", False),
        ("/a\\/b", "a/b", True),
        ("/a[/]b", "a/b", False),
    ],
)
def test_scan_fnmatch_examples(pattern: str, path: str, expected: bool) -> None:
    assert gitlab_matches(pattern, path) is expected  # the Ruby port agrees
    assert scan_matches(pattern, path) is expected


@settings(max_examples=800, deadline=None)
@given(
    st.text(alphabet="ab*?[]!^-/\\. ", min_size=1, max_size=9),
    st.lists(st.text(alphabet="ab/[]!-\\.", min_size=1, max_size=7), min_size=1, max_size=8),
)
def test_scan_fnmatch_equals_ruby_port(pattern: str, many: list[str]) -> None:
    for path in many:
        assert scan_matches(pattern, path) is gitlab_matches(pattern, path), (pattern, path)


@settings(max_examples=200, deadline=None)
@given(codeowners_texts(), st.data())
def test_scan_equals_reference(text: str, data: st.DataObject) -> None:
    """Last entry first, first match wins, an exclusion anywhere empties the section."""
    parsed = parse(text)
    scan, as_written = GitLabScan(parsed), GitLabScan(parsed, every_entry=True)
    written = [e.pattern for s in parsed.sections for e in s.entries]
    many = data.draw(st.lists(paths(), min_size=1, max_size=6))
    many += [path_like(data.draw, pattern) for pattern in written]
    for path in many:
        assert scan.owners_of(path) == reference_owners(parsed, path), (text, path)
        assert as_written.owners_of(path) == scan.owners_of(path), (text, path)


def test_scan_takes_the_last_match_of_each_section_and_honours_exclusions() -> None:
    parsed = parse(
        "* @all\n*.rb @ruby\n/lib/ @lib\n"
        "[Sec] @sec\n!/lib/secret.rb\n/lib/\n"
        "^[Ui]\nui/*.yml @ui\n/app/**/*.yml @app\n"
    )
    for scan in (GitLabScan(parsed), GitLabScan(parsed, every_entry=True)):
        assert scan.owners_of("lib/a.rb") == {Owner("name", "lib"), Owner("name", "sec")}
        assert scan.owners_of("/lib/secret.rb") == {Owner("name", "lib")}
        assert scan.owners_of("x.rb") == {Owner("name", "ruby")}
        assert scan.owners_of("app/ui/a.yml") == {Owner("name", "all"), Owner("name", "app")}
        assert scan.owners_of("x/ui/a.yml") == {Owner("name", "all"), Owner("name", "ui")}


@pytest.mark.parametrize("mix", list(bench.PRESETS.values()), ids=list(bench.PRESETS))
def test_matcher_equals_gitlab_scan_on_every_mix(mix: bench.Mix) -> None:
    text, changed = bench.workload(mix, seed=7, rules=300, paths=300)
    parsed = parse(text)
    assert sum(len(s.entries) for s in parsed.sections) == 300
    scan = GitLabScan(parsed)
    got = parsed.owners_of_paths(changed)
    expected = {path: scan.owners_of(path) for path in changed}
    assert got == expected
    assert sum(1 for owners in got.values() if owners) > 0
    # a path the rules name exactly: the parents of the changed files, and made-up names
    rng = random.Random(mix.name)
    more = [p.rsplit("/", 1)[0] for p in changed[:50]]
    more += [
        f"{rng.choice(changed).rsplit('/', 1)[0]}/ui/{rng.choice('ab')}.yml" for _ in range(50)
    ]
    again = parse(text).owners_of_paths(more)
    assert again == {path: scan.owners_of(path) for path in more}


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(list(bench.PRESETS.values())), st.integers(0, 2**32), st.data())
def test_matcher_equals_gitlab_scan_on_any_seed(
    mix: bench.Mix, seed: int, data: st.DataObject
) -> None:
    """The same on other seeds: the index is not shaped to one generated file."""
    sections = data.draw(st.integers(0, 12))
    mix = replace(mix, sections=sections) if data.draw(st.booleans()) else mix
    text, changed = bench.workload(mix, seed=seed, rules=150, paths=120)
    parsed = parse(text)
    scan = GitLabScan(parsed)
    assert parsed.owners_of_paths(changed) == {path: scan.owners_of(path) for path in changed}


# --------------------------------------------------------------------------- index paths


def check(text: str, expected: dict[str, set[str]]) -> None:
    """The matcher, cold and warm, and GitLab's loop give ``expected`` for each path."""
    parsed = parse(text)
    scan = GitLabScan(parsed)
    for _ in range(2):  # cold, then with every cache warm
        got = parsed.owners_of_paths(list(expected))
        for path, owners in expected.items():
            assert {str(o) for o in got[path]} == owners, path
            assert {str(o) for o in scan.owners_of(path)} == owners, path


def test_unanchored_extension_glob_in_a_named_directory() -> None:
    check(
        "*.yml @any\nui/*.yml @ui\ncore/*.ts @core\n",
        {
            "ui/a.yml": {"@ui"},
            "x/y/ui/a.yml": {"@ui"},
            "x/ui/b/a.yml": {"@any"},  # not directly in ui/
            "xui/a.yml": {"@any"},
            "core/a.ts": {"@core"},
            "core/sub/a.ts": set(),
            "ui/a.yaml": set(),
        },
    )


def test_deep_glob_with_literal_prefix_and_suffix() -> None:
    check(
        "/svc3/**/*.rb @rb\n/svc3/**/api/*.rb @api\n/a/b/**/c/d/ @cd\n",
        {
            "svc3/a.rb": {"@rb"},
            "svc3/x/y/a.rb": {"@rb"},
            "svc3/api/a.rb": {"@api"},
            "svc3/x/api/a.rb": {"@api"},
            "svc3/x/api/y/a.rb": {"@rb"},
            "svc3x/a.rb": set(),
            "x/svc3/a.rb": set(),
            "a/b/c/d/e.txt": {"@cd"},
            "a/b/x/c/d/y/e.txt": {"@cd"},
            "a/bx/c/d/e.txt": set(),  # "/a/b" is a whole name
            "a/b/c/e.txt": set(),
        },
    )


def test_deep_glob_whose_ends_overlap_needs_room_for_both() -> None:
    # "/a/b/**/b/c/" needs /a/b, then any directories, then b/c: /a/b/c is too short
    check(
        "/a/b/**/b/c/ @x\n",
        {"a/b/c/f": set(), "a/b/b/c/f": {"@x"}, "a/b/z/b/c/f": {"@x"}},
    )


def test_directory_patterns_anchored_and_not() -> None:
    check(
        "/docs/ @docs\ndocs/ @any-docs\nsrc/pkg/ @pkg\n/lib/* @lib-level\n",
        {
            "docs/a/b.md": {"@any-docs"},  # the later entry wins
            "x/docs/a.md": {"@any-docs"},
            "x/src/pkg/a.go": {"@pkg"},
            "x/pkg/a.go": set(),
            "lib/a.py": {"@lib-level"},
            "lib/a/b.py": set(),
        },
    )


def test_escapes_classes_and_fixed_depth_globs() -> None:
    check(
        "/a\\*b @star\n\\#notes @hash\n/v[0-9]/x/ @ver\nsrc/pkg? @pkg\n"
        "/services/*/src/ @src\n*/main.* @main\n/*/*/Makefile @make\n",
        {
            "a*b": {"@star"},
            "axb": set(),
            "#notes": {"@hash"},
            "d/#notes": {"@hash"},
            "v1/x/y": {"@ver"},
            "va/x/y": set(),
            "q/src/pkg1": {"@pkg"},
            "q/src/pkg12": set(),
            "services/s1/src/a/b.go": {"@src"},
            "services/s1/x/src/a.go": set(),
            "a/main.go": {"@main"},
            "main.go": set(),  # "*/" needs a directory
            "a/b/Makefile": {"@make"},
            "a/b/c/Makefile": set(),
        },
    )


def test_exclusions_in_every_index_path() -> None:
    check(
        "* @all\n!/gen/\n!*.lock\n!ui/*.tmp\n!/svc/**/fixtures/\n[S] @s\n*.go\n!vendor/\n",
        {
            "gen/a.go": {"@s"},
            "a/yarn.lock": set(),
            "x/ui/a.tmp": set(),
            "x/ui/a.txt": {"@all"},
            "svc/a/fixtures/b.json": set(),
            "vendor/x.go": {"@all"},
            "src/x.go": {"@all", "@s"},
        },
    )


@pytest.mark.parametrize("program", ["/bin/true", "/bin/echo"])
def test_a_ruby_that_is_not_ruby_ends_the_benchmark_in_one_line(program: str) -> None:
    assert not bench.has_yjit(program)  # it would be given --yjit otherwise
    small = ["--mixes", "default", "--rules", "40", "--paths", "20", "--repeat", "1"]
    with pytest.raises(SystemExit) as exited:
        bench.main([*small, "--scan-repeat", "1", "--gitlab-repeat", "1", "--ruby", program])
    message = str(exited.value.code)
    assert message == f"--ruby {program}: ruby: its answer is not the scan's JSON (is it Ruby?)"
