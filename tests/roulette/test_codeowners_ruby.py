"""The matcher against GitLab's own language: Ruby's ``File.fnmatch?`` and GitLab's loop run
by Ruby (``benchmarks/gitlab_scan.rb``), where the other tests hold it against a port.

Ruby is a Debian package (``apt-get install ruby``; CI installs it): without it these tests
skip on a laptop and fail under ``CI=true``.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import codeowners as bench
from benchmarks.codeowners import RUBY_SCAN, RubyScan
from plugins.roulette.codeowners import GitLabScan, parse
from tests.roulette.test_codeowners import codeowners_texts, gitlab_matches, path_like, paths
from tests.roulette.test_codeowners_mixes import scan_matches
from tests.services import service_unavailable

PATH_CHARS = "ab/[]!^-\\.# "
# What patterns are made of: literals, globs, escapes and bracket expressions (negated
# with ! or ^, ranges either way round, ] or - as members, unclosed).
ATOMS = (
    *("a", "b", "ab", ".", "#", " ", "-", "!", "^", "]"),
    *("*", "*", "**", "?", "\\*", "\\#", "\\ ", "\\a", "\\"),
    *("[ab]", "[!a]", "[^b]", "[a-b]", "[b-a]", "[]a]", "[-a]", "[a-]", "[\\]]", "[!]", "[a"),
)


def pattern_text(rng: random.Random) -> str:
    """A pattern of one to three segments of ``ATOMS``, anchored or not, a directory or
    not."""
    segments = [
        "".join(rng.choice(ATOMS) for _ in range(rng.randint(1, 3)))
        for _ in range(rng.randint(1, 3))
    ]
    pattern = "/".join(segments)
    return rng.choice(("", "/")) + pattern + rng.choice(("", "", "/"))


@pytest.fixture(scope="module")
def ruby() -> str:
    found = shutil.which("ruby")
    if found is None:
        service_unavailable("ruby", "not installed (apt-get install ruby)")
    return found


def ruby_matches(ruby: str, pairs: list[tuple[str, str]], folder: Path) -> list[bool]:
    """GitLab's ``path_matches?(normalize_pattern(pattern), "/" + path)``, run by Ruby."""
    file = folder / "pairs.json"
    file.write_text(json.dumps({"sections": [], "paths": [], "pairs": pairs}))
    done = subprocess.run(
        [ruby, str(RUBY_SCAN), str(file)], capture_output=True, text=True, check=True, timeout=60
    )
    matches: list[bool] = json.loads(done.stdout)["matches"]
    return matches


def owners_in_ruby_and_matcher(
    ruby: str, text: str, paths: list[str]
) -> tuple[dict[str, frozenset[str]], dict[str, set[str]]]:
    """Each path's owners as written (``@name``): by GitLab's loop run by Ruby, and by the
    matcher on a fresh parse of ``text``."""
    scan = RubyScan(ruby, parse(text), paths, jit=False)
    try:
        _, in_ruby = scan.run()
    finally:
        scan.close()
    got = parse(text).owners_of_paths(paths)
    return in_ruby, {path: {str(owner) for owner in got[path]} for path in paths}


def near(rng: random.Random, pattern: str) -> str:
    """A path made from ``pattern``: its globs and classes filled in, so that about half
    match."""
    out: list[str] = []
    at = 0
    while at < len(pattern):
        char = pattern[at]
        at += 1
        if char == "*":
            out.append("".join(rng.choice("ab/.") for _ in range(rng.randint(0, 3))))
        elif char == "?":
            out.append(rng.choice("ab./"))
        elif char == "[" and (end := pattern.find("]", at + 1)) > 0 and rng.random() < 0.8:
            out.append(rng.choice("ab.-!^/"))  # in the class or not, negated or not
            at = end + 1
        elif char != "\\" or rng.random() < 0.5:
            out.append(char)
    return "".join(out).lstrip("/") or "a"


def test_fnmatch_equals_ruby(ruby: str, tmp_path: Path) -> None:
    """5,000 patterns of globs, classes, escapes, ``#`` and spaces, each with a path made
    to match it or nearly, or any: the scan's regexes and the port of Ruby's ``fnmatch``
    answer as Ruby does on each."""
    rng = random.Random(20_261_202)
    pairs: list[tuple[str, str]] = []
    for _ in range(5_000):
        pattern = pattern_text(rng)
        if rng.random() < 0.7:
            path = near(rng, pattern)
        else:
            path = "".join(rng.choice(PATH_CHARS) for _ in range(rng.randint(1, 7)))
        pairs.append((pattern, path))
    expected = ruby_matches(ruby, pairs, tmp_path)
    assert 0.1 < sum(expected) / len(expected) < 0.9  # both answers well represented
    for (pattern, path), matched in zip(pairs, expected, strict=True):
        assert scan_matches(pattern, path) is matched, (pattern, path)
        assert gitlab_matches(pattern, path) is matched, (pattern, path)


def test_matcher_equals_ruby_on_one_entry_files(ruby: str, tmp_path: Path) -> None:
    """Each pattern as a one-line CODEOWNERS: the matcher finds the owner where Ruby's
    ``File.fnmatch?`` matches, and only there."""
    rng = random.Random(7)
    pairs: list[tuple[str, str]] = []
    while len(pairs) < 2_000:
        pattern = pattern_text(rng)
        if pattern[0] in "#[!^":  # a pattern line, not a comment, header or exclusion
            pattern = "/" + pattern
        entries = [e for s in parse(f"{pattern} @x").sections for e in s.entries]
        if [e.pattern for e in entries] == [pattern]:
            pairs.append((pattern, near(rng, pattern)))
    expected = ruby_matches(ruby, pairs, tmp_path)
    assert sum(expected) > 200
    for (pattern, path), matched in zip(pairs, expected, strict=True):
        owners = parse(f"{pattern} @x").owners_of(path)
        assert bool(owners) is matched, (pattern, path)


@pytest.mark.parametrize("mix", list(bench.PRESETS.values()), ids=list(bench.PRESETS))
def test_matcher_equals_gitlab_loop_in_ruby_on_every_mix(ruby: str, mix: bench.Mix) -> None:
    """The benchmark's files (smaller): the matcher's owners are Ruby's on every path."""
    text, changed = bench.workload(mix, seed=11, rules=400, paths=400)
    in_ruby, matched = owners_in_ruby_and_matcher(ruby, text, changed)
    assert matched == in_ruby
    assert sum(1 for found in in_ruby.values() if found) > 0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(codeowners_texts(), st.data())
def test_matcher_equals_gitlab_loop_in_ruby_on_any_file(
    ruby: str, text: str, data: st.DataObject
) -> None:
    """Sections, optional sections, exclusions, default owners, escapes: Ruby's answer."""
    parsed = parse(text)
    written = [e.pattern for s in parsed.sections for e in s.entries]
    many = data.draw(st.lists(paths(), min_size=1, max_size=10))
    many += [path_like(data.draw, pattern) for pattern in written for _ in range(2)]
    many = list(dict.fromkeys(many))
    in_ruby, matched = owners_in_ruby_and_matcher(ruby, text, many)
    assert matched == in_ruby, text
    python_scan = GitLabScan(parsed)
    assert all({str(o) for o in python_scan.owners_of(p)} == in_ruby[p] for p in many)
