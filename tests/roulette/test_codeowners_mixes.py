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
    scan = GitLabScan(parsed)
    written = [e.pattern for s in parsed.sections for e in s.entries]
    many = data.draw(st.lists(paths(), min_size=1, max_size=6))
    many += [path_like(data.draw, pattern) for pattern in written]
    for path in many:
        assert scan.owners_of(path) == reference_owners(parsed, path), (text, path)


def test_scan_takes_the_last_match_of_each_section_and_honours_exclusions() -> None:
    parsed = parse(
        "* @all\n*.rb @ruby\n/lib/ @lib\n"
        "[Sec] @sec\n!/lib/secret.rb\n/lib/\n"
        "^[Ui]\nui/*.yml @ui\n/app/**/*.yml @app\n"
    )
    scan = GitLabScan(parsed)
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
