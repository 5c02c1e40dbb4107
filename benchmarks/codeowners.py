"""Benchmark: CODEOWNERS matching for a big monorepo change, on several rule mixes.

Run from the project root: ``python -m benchmarks.codeowners``. For each rule mix it builds
a seeded CODEOWNERS of 5,000 entries (sections, optional sections, anchored and unanchored
directories, exact files, extension and deep globs, exclusions) and 3,000 changed paths,
then times

* ``parse``: building the sections and the matcher's index;
* the GitLab-style scan (:class:`~plugins.roulette.codeowners.GitLabScan`): per path and
  section, the exclusions first, then the entries last first, the first whose pattern
  matches wins -- GitLab's loop, with Ruby's ``File.fnmatch?`` written in Python as one
  compiled regex per entry (compiled before the timing);
* where Ruby is installed (``--ruby``, default ``auto``: ``ruby`` on the PATH), the same
  scan in Ruby, GitLab's own language (``benchmarks/gitlab_scan.rb``: Ruby's own
  ``File.fnmatch?`` and GitLab's ``normalize_pattern``, under YJIT where Ruby has it): the
  target is checked against the quicker of the two scans;
* the matcher: ``owners_of_paths`` on a freshly parsed file (no warm caches);
* GitLab's loop as its code writes it, in Python (``GitLabScan(every_entry=True)``: every
  entry of a section tested, then the first match wins unless an exclusion is among
  them), once per mix (``--gitlab-repeat``): several times slower than the quicker scan
  above; printed for scale;

parse and matcher best of N, the scans best of M, the timings taken in turn round after
round (so that a machine whose speed drifts slows them alike); Python's regex cache is
emptied before each parse and matcher run (a new file brings new patterns) and the
garbage collector runs before each timing and stays on during it (the matcher pauses it
for a match of 64 paths or more and runs one collection of the youngest generation
before it returns: that collection is in its time). It checks that the
scans and the matcher give the same owners for every path, prints each mix's figures and
PASS/FAIL against the targets, then the worst mix. ``--compare REV`` also times the parse
and the matcher of ``plugins/roulette/codeowners.py`` as it was at the git revision REV,
on the same files.
Exits non-zero if the answers differ or a target is missed on any mix.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.arguments import count
from plugins.roulette.codeowners import GitLabScan, Owner, parse

RULES = 5_000
PATHS = 3_000
SEED = 20_240_611
TARGET_SPEEDUP = 25.0  # matcher against the GitLab-style scan, same run
TARGET_PARSE_RATIO = 2.0  # parse time / matcher time

EXTENSIONS = (".py", ".go", ".ts", ".tsx", ".md", ".yml", ".json", ".sql", ".proto", ".tf", ".rb")
SUBDIRS = ("src", "api", "config", "tests", "migrations", "internal", "cmd", "docs", "ui", "core")
NAMES = ("main", "handler", "models", "utils", "client", "server", "index", "types", "views")
SECTION_NAMES = ("Backend", "Frontend", "Docs", "Infrastructure", "Libraries", "Security", "QA")


@dataclass(frozen=True)
class Mix:
    """The shape of a generated CODEOWNERS. The kind weights (``directories`` ...
    ``other_globs``) are relative; ``unanchored``, ``exclusions`` and ``no_owners`` are
    shares of all entries (0..1) applied to whatever kind is drawn; ``sections`` is the
    number of named sections (the unnamed one comes on top), of which ``optional`` is the
    share written ``^[...]``."""

    name: str
    directories: float = 0.50  # /a/b/          (unanchored: b/ or a/b/)
    exact: float = 0.15  # /a/b/c.go      (unanchored: c.go or b/c.go)
    one_level: float = 0.07  # /a/b/*         (unanchored: b/*)
    ext_globs: float = 0.06  # /a/*.rb        (unanchored: *.rb or ui/*.yml)
    deep_globs: float = 0.04  # /a/**/*.rb     (unanchored: src/**/*.rb)
    other_globs: float = 0.08  # /a/[a-m]*.go, /a/*/main.*, /a/src/pkg?, /a/*/src/
    unanchored: float = 0.12
    exclusions: float = 0.05
    no_owners: float = 0.05
    sections: int = 8
    optional: float = 0.3
    about: str = ""

    def weights(self) -> list[tuple[str, float]]:
        kinds = ("directories", "exact", "one_level", "ext_globs", "deep_globs", "other_globs")
        pairs = [(kind, float(getattr(self, kind))) for kind in kinds]
        if sum(weight for _, weight in pairs) <= 0:
            raise ValueError(f"mix {self.name!r}: every kind weight is 0")
        return pairs


PRESETS: dict[str, Mix] = {
    mix.name: mix
    for mix in (
        Mix("default", about="mostly anchored directories and files, as most monorepos"),
        Mix(
            "issue",
            directories=0.30,
            exact=0.12,
            one_level=0.04,
            ext_globs=0.33,
            deep_globs=1 / 7,
            other_globs=0.06,
            unanchored=1 / 3,
            exclusions=0.04,
            about="1/3 unanchored (ui/*.yml), 1/7 deep globs (/svc/**/*.rb)",
        ),
        Mix("unanchored", unanchored=1.0, about="no pattern starts with /"),
        Mix(
            "deep",
            directories=0,
            exact=0,
            one_level=0,
            ext_globs=0,
            deep_globs=1,
            other_globs=0,
            unanchored=0.3,
            about="every entry a ** glob",
        ),
        Mix(
            "extensions",
            directories=0,
            exact=0,
            one_level=0,
            ext_globs=1,
            deep_globs=0,
            other_globs=0,
            unanchored=0.5,
            about="every entry an extension glob",
        ),
        Mix(
            "globs",
            directories=0,
            exact=0,
            one_level=0.2,
            ext_globs=0.2,
            deep_globs=0.2,
            other_globs=0.4,
            unanchored=0.5,
            exclusions=0.1,
            about="only globs, half unanchored, 10% exclusions",
        ),
        Mix(
            "sections",
            ext_globs=0.2,
            deep_globs=0.1,
            unanchored=0.3,
            sections=300,
            optional=0.4,
            about="300 sections",
        ),
    )
}


class Repo:
    """A made-up monorepo: units (services, libraries, apps, ...) with nested folders."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.units: list[str] = []
        self.units += [f"services/svc-{n:03d}" for n in range(420)]
        domains = ("core", "data", "auth", "billing", "search", "ml", "infra", "web")
        self.units += [f"libs/{rng.choice(domains)}/lib-{n:03d}" for n in range(260)]
        self.units += [f"apps/app-{n:02d}" for n in range(80)]
        clouds = ("aws", "gcp", "azure")
        self.units += [
            f"platform/terraform/modules/{rng.choice(clouds)}/mod-{n:02d}" for n in range(90)
        ]
        self.units += [f"docs/topic-{n:02d}" for n in range(40)]
        self.units = list(dict.fromkeys(self.units))
        self.uncovered = [f"tools/tool-{n:02d}" for n in range(30)] + ["scripts", "third_party/x"]

    def directory(self, unit: str, depth: int) -> str:
        parts = [unit]
        for level in range(depth):
            parts.append(self.rng.choice(SUBDIRS) if level == 0 else f"pkg{self.rng.randrange(6)}")
        return "/".join(parts)

    def file_name(self) -> str:
        roll = self.rng.random()
        if roll < 0.05:
            return self.rng.choice((".env", ".gitignore", ".eslintrc.json", ".hidden.md"))
        if roll < 0.12:
            return self.rng.choice(("README.md", "Dockerfile", "Makefile", "package.json"))
        if roll < 0.15:
            return self.rng.choice(("poetry.lock", "yarn.lock", "package-lock.json"))
        name = self.rng.choice(NAMES)
        if roll < 0.22:
            name += "_test"
        return name + self.rng.choice(EXTENSIONS)

    def paths(self, count: int) -> list[str]:
        paths: list[str] = []
        while len(paths) < count:
            pool = self.uncovered if self.rng.random() < 0.08 else self.units
            directory = self.directory(self.rng.choice(pool), self.rng.choice((0, 1, 2, 2, 3, 4)))
            for _ in range(self.rng.choice((1, 1, 2, 3, 5))):  # MRs touch files together
                paths.append(f"{directory}/{self.file_name()}")
        return paths[:count]


def owner(rng: random.Random) -> str:
    """One owner as written: a user, a subgroup, an email or a role."""
    roll = rng.random()
    if roll < 0.5:
        return f"@team-{rng.randrange(120)}"
    if roll < 0.75:
        return f"@org/group-{rng.randrange(40)}/sub-{rng.randrange(5)}"
    if roll < 0.9:
        return f"user{rng.randrange(500)}@example.com"
    return rng.choice(("@@maintainer", "@@developers", "@@owner"))


def owners(rng: random.Random) -> str:
    """One to three owners, space-separated."""
    return " ".join(owner(rng) for _ in range(rng.choice((1, 1, 2, 3))))


def _tail(directory: str, rng: random.Random) -> str:
    """The last one or two names of ``directory``: what an unanchored pattern names."""
    parts = directory.split("/")
    return "/".join(parts[-rng.choice((1, 1, 2)) :])


def pattern(kind: str, anchored: bool, repo: Repo, rng: random.Random) -> str:
    """One pattern of ``kind`` (a :class:`Mix` weight name), anchored or not."""
    unit = rng.choice(repo.units)
    ext = rng.choice(EXTENSIONS)
    if kind == "directories":
        directory = repo.directory(unit, rng.choice((0, 0, 1, 2, 3)))
        return f"/{directory}/" if anchored else f"{_tail(directory, rng)}/"
    if kind == "exact":
        directory = repo.directory(unit, rng.choice((0, 1, 2)))
        name = repo.file_name()
        if anchored:
            return f"/{directory}/{name}"
        return rng.choice((name, f"{directory.rsplit('/', 1)[-1]}/{name}"))
    if kind == "one_level":
        directory = repo.directory(unit, rng.choice((0, 1)))
        return f"/{directory}/*" if anchored else f"{_tail(directory, rng)}/*"
    if kind == "ext_globs":
        directory = repo.directory(unit, rng.choice((0, 1, 1, 2)))
        if anchored:
            return f"/{directory}/*{ext}"
        return rng.choice((f"*{ext}", f"{directory.rsplit('/', 1)[-1]}/*{ext}"))
    if kind == "deep_globs":
        sub, name = rng.choice(SUBDIRS), rng.choice(NAMES)
        if anchored:
            return rng.choice(
                (
                    f"/{unit}/**/*{ext}",
                    f"/{unit}/**/{name}_test.*",
                    f"/{unit}/**/{sub}/",
                    f"/{unit.rsplit('/', 1)[0]}/**/{sub}/*{ext}",
                    f"/{unit}/**",
                )
            )
        return rng.choice(
            (
                f"{sub}/**/*{ext}",
                f"{unit.rsplit('/', 1)[-1]}/**/{name}.*",
                f"{sub}/**/{name}_test{ext}",
                f"**/{sub}/**/*{ext}",
            )
        )
    assert kind == "other_globs", kind
    sub, name = rng.choice(SUBDIRS), rng.choice(NAMES)
    choices = (
        f"{unit}/[a-m]*{ext}",
        f"{unit}/*/{name}.*",
        f"{unit}/{sub}/pkg?",
        f"{unit.rsplit('/', 1)[0]}/*/{sub}/",
        f"{unit}/{sub}/{name}[0-9]{ext}",
        f"{unit}/?{name[1:]}{ext}",
    )
    written = rng.choice(choices)
    if anchored:
        return "/" + written
    return "/".join(written.split("/")[-rng.choice((2, 3)) :])


def codeowners_text(mix: Mix, repo: Repo, rng: random.Random, rules: int = RULES) -> str:
    """A CODEOWNERS of exactly ``rules`` entry lines shaped by ``mix`` (headers and comments
    not counted); the first entry is ``* @org/everyone``."""
    names = list(SECTION_NAMES[: mix.sections])
    names += [f"Team {n:03d}" for n in range(len(names), mix.sections)]
    headers = [""]
    for number, name in enumerate(names):
        optional = rng.random() < mix.optional
        approvals = "" if optional or number % 3 else f"[{rng.choice((0, 1, 2))}]"
        default = f" @{name.lower().replace(' ', '-')}-leads" if number % 2 == 0 else ""
        headers.append(f"{'^' if optional else ''}[{name}]{approvals}{default}")
    if mix.sections >= 2:
        headers.append(f"[{names[0].lower()}]")  # merges into the first one
    body: dict[str, list[str]] = {header: [] for header in headers}
    body[""].append("* @org/everyone")
    kinds, weights = zip(*mix.weights(), strict=True)
    for _ in range(rules - 1):
        kind = rng.choices(kinds, weights)[0]
        line = pattern(kind, rng.random() >= mix.unanchored, repo, rng)
        if line.startswith(("#", "[", "^[")):
            line = "/" + line
        roll = rng.random()
        if roll < mix.exclusions:
            line = "!" + line
        elif roll >= mix.exclusions + mix.no_owners:
            line = f"{line} {owners(rng)}"
        body[rng.choice(headers)].append(line)
    out = ["# Generated for benchmarks/codeowners.py", ""]
    for header in headers:
        if header:
            out += ["", header]
        out += body[header]
    return "\n".join(out) + "\n"


def workload(mix: Mix, seed: int, rules: int, paths: int) -> tuple[str, list[str]]:
    """The CODEOWNERS text and the changed paths for ``mix`` (the same for a given seed)."""
    rng = random.Random(f"{seed}:{mix.name}")
    repo = Repo(rng)
    return codeowners_text(mix, repo, rng, rules), repo.paths(paths)


# --------------------------------------------------------------------------- timing


def timed(run: Callable[[], object], purge: bool = False) -> tuple[float, Any]:
    """One wall time of ``run()``, in seconds, and its result; the garbage collector runs
    before and stays on during it; ``purge`` empties Python's regex cache first."""
    if purge:
        re.purge()
    gc.collect()
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


class Best:
    """The best (lowest) time seen per figure, in seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, figure: str, taken: tuple[float, Any]) -> Any:
        """Keep ``taken``'s time if it is the best so far; return its result."""
        seconds, result = taken
        self.seconds[figure] = min(self.seconds.get(figure, float("inf")), seconds)
        return result


def matcher_run(parser: Callable[[str], Any], text: str, paths: list[str]) -> tuple[float, Any]:
    """The matcher on a fresh parse (its caches start empty): the time and the owners."""
    matcher = parser(text)
    return timed(lambda: matcher.owners_of_paths(paths), purge=True)


RUBY_SCAN = Path(__file__).with_name("gitlab_scan.rb")
RUBY_TIMEOUT = 600.0  # seconds for one scan in Ruby (a few at the default sizes)


class RubyScan:
    """GitLab's loop run by Ruby itself (``benchmarks/gitlab_scan.rb``): the same quickened
    scan as :class:`GitLabScan`, with Ruby's own ``File.fnmatch?`` and GitLab's
    ``normalize_pattern``, under YJIT where this Ruby has it (as GitLab runs in
    production, Rails 7.2 turning it on). Each :meth:`run` is one Ruby process, which times
    its scan on a monotonic clock (its start-up and the JSON are not timed).

    ``ruby`` is the program to run; ``jit=False`` leaves YJIT off (it starts half a second
    slower: for tests, where only the answers count). :meth:`run` raises
    :class:`RuntimeError` with Ruby's first error line if Ruby fails."""

    def __init__(self, ruby: str, parsed: Any, paths: list[str], *, jit: bool = True) -> None:
        yjit = jit and has_yjit(ruby)
        self.command = [ruby, *(["--yjit"] if yjit else []), str(RUBY_SCAN)]
        self.paths = paths
        document = {
            "sections": [
                [[e.pattern, e.exclusion, [str(o) for o in e.owners]] for e in section.entries]
                for section in parsed.sections
            ],
            "paths": paths,
        }
        handle, name = tempfile.mkstemp(prefix="codeowners-", suffix=".json")
        with open(handle, "w", encoding="utf-8") as file:
            json.dump(document, file)
        self.file = Path(name)

    def run(self) -> tuple[float, dict[str, frozenset[str]]]:
        """One scan: its time in seconds, and each path's owners as written (``@name``)."""
        try:
            done = subprocess.run(  # noqa: S603 -- the operator's Ruby, the project's script
                [*self.command, str(self.file)],
                capture_output=True,
                text=True,
                check=False,
                timeout=RUBY_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"ruby: no answer within {RUBY_TIMEOUT:.0f} s") from None
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
            raise RuntimeError(f"ruby: {lines[0]}")
        try:
            answer = json.loads(done.stdout)
            owners = dict(zip(self.paths, map(frozenset, answer["owners"]), strict=True))
            return float(answer["seconds"]), owners
        except (ValueError, TypeError, KeyError):  # not gitlab_scan.rb's answer
            raise RuntimeError("ruby: its answer is not the scan's JSON (is it Ruby?)") from None

    def close(self) -> None:
        """Remove the file the scans read."""
        self.file.unlink(missing_ok=True)


@functools.cache
def has_yjit(ruby: str) -> bool:
    """Whether ``ruby --yjit`` runs with YJIT on (Ruby 3.1 and later, built with it)."""
    probe = subprocess.run(  # noqa: S603 -- the operator's Ruby
        [
            ruby,
            "--yjit",
            "-e",
            'print(defined?(RubyVM::YJIT) && RubyVM::YJIT.enabled? ? "on" : "")',
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout == "on"  # (a program that is not Ruby: no)


def find_ruby(option: str) -> str | None:
    """The Ruby to run for ``--ruby option``: ``auto`` finds ``ruby`` on the PATH (None if
    there is none), ``off`` gives None, anything else is the program to run (exits with one
    line if it is not found)."""
    if option == "off":
        return None
    found = shutil.which("ruby" if option == "auto" else option)
    if found is None and option != "auto":
        raise SystemExit(f"--ruby {option}: no such program")
    return found


def module_at(revision: str) -> ModuleType:
    """``plugins/roulette/codeowners.py`` as it was at ``revision``, imported on its own."""
    source = subprocess.run(  # noqa: S603 -- git, with a revision the operator typed
        ["git", "show", f"{revision}:plugins/roulette/codeowners.py"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if source.returncode != 0:
        raise SystemExit(f"--compare {revision}: {source.stderr.strip()}")
    folder = Path(tempfile.mkdtemp(prefix="codeowners-"))
    file = folder / "codeowners_before.py"
    file.write_text(source.stdout)
    spec = importlib.util.spec_from_file_location("codeowners_before", file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["codeowners_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclass
class Result:
    """One mix's figures (times in milliseconds, best of the repeats)."""

    mix: str
    rules: int
    sections: int
    paths: int
    owned: int
    parse_ms: float
    match_ms: float
    scan_ms: float  # the scan in Python
    speedup: float  # against the baseline: the quicker of the scans in Python and in Ruby
    parse_ratio: float
    mismatches: int
    baseline: str = "python"  # "ruby" where the scan in Ruby was the quicker
    ruby_scan_ms: float | None = None  # None where Ruby did not run
    scan_speedup: float = 0.0  # against the scan in Python
    gitlab_loop_ms: float = 0.0  # GitLab's loop as written (every entry tested)
    gitlab_loop_speedup: float = 0.0
    before: dict[str, float] = field(default_factory=dict)

    @property
    def speed_ok(self) -> bool:
        return self.speedup >= TARGET_SPEEDUP

    @property
    def parse_ok(self) -> bool:
        return self.parse_ratio <= TARGET_PARSE_RATIO

    @property
    def ok(self) -> bool:
        return self.speed_ok and self.parse_ok and not self.mismatches


def measure(
    mix: Mix, args: argparse.Namespace, before: ModuleType | None = None
) -> tuple[Result, list[str]]:
    """Time ``mix``; also the paths whose owners differ between the scan and the matcher."""
    text, paths = workload(mix, args.seed, args.rules, args.paths)
    parsed = parse(text)
    scan = GitLabScan(parsed)
    as_written = GitLabScan(parsed, every_entry=True)
    ruby = RubyScan(args.ruby, parsed, paths) if args.ruby else None

    def scan_all() -> dict[str, frozenset[Owner]]:
        return {path: scan.owners_of(path) for path in paths}

    def gitlab_loop() -> dict[str, frozenset[Owner]]:
        return {path: as_written.owners_of(path) for path in paths}

    # Rounds take every timing in turn (parse, matcher, scan, the code at REV), so that
    # a machine whose speed drifts (a virtual machine's neighbours) slows all of them
    # alike and the ratios hold; each figure is the best of its rounds.
    best = Best()
    expected: dict[str, frozenset[Owner]] = {}
    got: dict[str, frozenset[Owner]] = {}
    loop: dict[str, frozenset[Owner]] = {}
    in_ruby: dict[str, frozenset[str]] = {}
    try:
        for round_number in range(max(args.repeat, args.scan_repeat, args.gitlab_repeat)):
            if round_number < args.repeat:
                best.add("parse", timed(lambda: parse(text), purge=True))
                got = best.add("match", matcher_run(parse, text, paths))
                if before is not None:
                    best.add("old_parse", timed(lambda: before.parse(text), purge=True))
                    best.add("old_match", matcher_run(before.parse, text, paths))
            if round_number < args.scan_repeat:
                expected = best.add("scan", timed(scan_all))
                if ruby is not None:
                    in_ruby = best.add("ruby_scan", ruby.run())
            if round_number < args.gitlab_repeat:
                loop = best.add("gitlab_loop", timed(gitlab_loop))
    finally:
        if ruby is not None:
            ruby.close()
    seconds = best.seconds
    parse_time, match_time, scan_time = seconds["parse"], seconds["match"], seconds["scan"]
    wrong = [
        path
        for path in paths
        if not expected[path] == got[path] == loop.get(path)
        or (ruby is not None and in_ruby[path] != {str(owner) for owner in got[path]})
    ]
    ruby_time = seconds.get("ruby_scan")
    baseline_time = scan_time if ruby_time is None else min(scan_time, ruby_time)
    result = Result(
        mix=mix.name,
        rules=sum(len(section.entries) for section in parsed.sections),
        sections=len(parsed.sections),
        paths=len(paths),
        owned=sum(1 for path in paths if expected[path]),
        parse_ms=parse_time * 1000,
        match_ms=match_time * 1000,
        scan_ms=scan_time * 1000,
        speedup=baseline_time / match_time if match_time else float("inf"),
        parse_ratio=parse_time / match_time if match_time else float("inf"),
        mismatches=len(wrong),
        baseline="ruby" if baseline_time < scan_time else "python",
        ruby_scan_ms=None if ruby_time is None else ruby_time * 1000,
        scan_speedup=scan_time / match_time if match_time else float("inf"),
        gitlab_loop_ms=seconds["gitlab_loop"] * 1000,
        gitlab_loop_speedup=seconds["gitlab_loop"] / match_time if match_time else float("inf"),
    )
    if before is not None:
        old_parse, old_match = seconds["old_parse"], seconds["old_match"]
        result.before = {
            "parse_ms": old_parse * 1000,
            "match_ms": old_match * 1000,
            "speedup": baseline_time / old_match,
            "parse_ratio": old_parse / old_match,
        }
    return result, wrong


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(results: Iterable[Result], out: Callable[[str], object] = print) -> None:
    """The table of every mix, then the worst mix for each target. Where the scan ran in
    Ruby too, its column comes after the Python scan's, the speed-up is against the
    quicker of the two, and the speed-up against the Python scan follows."""
    results = list(results)
    with_before = any(result.before for result in results)
    with_ruby = any(result.ruby_scan_ms is not None for result in results)
    head = f"{'mix':<11}{'parse ms':>9}{'match ms':>9}{'scan ms':>9}"
    if with_ruby:
        head += f"{'Ruby ms':>9}"
    head += f"{'speed-up':>10}"
    if with_ruby:
        head += f"{'(Py)':>7}"
    head += f"{'p/m':>6}{'GitLab loop':>12}{'x':>7}"
    if with_before:
        head += f"  | before:{'parse':>7}{'match':>7}{'speed-up':>9}{'p/m':>6}"
    out(head)
    for r in results:
        line = f"{r.mix:<11}{r.parse_ms:9.1f}{r.match_ms:9.1f}{r.scan_ms:9.0f}"
        if with_ruby:
            line += f"{r.ruby_scan_ms:9.0f}" if r.ruby_scan_ms is not None else f"{'-':>9}"
        line += f"{r.speedup:9.1f}x"
        if with_ruby:
            line += f"{r.scan_speedup:6.1f}x"
        line += f"{r.parse_ratio:6.2f}{r.gitlab_loop_ms:9.0f} ms{r.gitlab_loop_speedup:6.0f}x"
        if r.before:
            b = r.before
            line += (
                f"  |        {b['parse_ms']:7.1f}{b['match_ms']:7.1f}"
                f"{b['speedup']:8.1f}x{b['parse_ratio']:6.2f}"
            )
        flags = [name for name, ok in (("speed", r.speed_ok), ("parse", r.parse_ok)) if not ok]
        if r.mismatches:
            flags.append(f"{r.mismatches} paths differ")
        out(line + ("   FAIL: " + ", ".join(flags) if flags else ""))
    slow = min(results, key=lambda r: r.speedup)
    heavy = max(results, key=lambda r: r.parse_ratio)
    wrong = sum(r.mismatches for r in results)
    against = "; against the scan in Ruby, the quicker" if slow.baseline == "ruby" else ""
    out(
        f"worst speed-up     {slow.speedup:6.1f}x ({slow.mix}{against})   target >= "
        f"{TARGET_SPEEDUP:.0f}x   {_verdict(slow.speed_ok)}"
    )
    if with_ruby:
        python = min(results, key=lambda r: r.scan_speedup)
        out(f"  (against the Python scan: worst {python.scan_speedup:.1f}x ({python.mix}))")
    out(
        f"worst parse/match  {heavy.parse_ratio:6.2f}  ({heavy.mix})   target <= "
        f"{TARGET_PARSE_RATIO:.0f}   {_verdict(heavy.parse_ok)}"
    )
    out(f"same owners for every path on every mix   {_verdict(not wrong)}")
    loop = min(results, key=lambda r: r.gitlab_loop_speedup)
    out(
        f"(against GitLab's loop as written, in Python, every entry tested: worst "
        f"{loop.gitlab_loop_speedup:.0f}x ({loop.mix}); the target is checked against the "
        f"{'quicker ' if with_ruby else ''}scan)"
    )


def _mixes(names: str, args: argparse.Namespace) -> list[Mix]:
    chosen = list(PRESETS) if names == "all" else [n.strip() for n in names.split(",") if n]
    unknown = [name for name in chosen if name not in PRESETS]
    if unknown:
        raise SystemExit(f"--mixes: unknown mix {unknown[0]!r} (known: {', '.join(PRESETS)}, all)")
    mixes = [PRESETS[name] for name in chosen]
    knobs = {
        key: value
        for key in (
            "directories",
            "exact",
            "one_level",
            "ext_globs",
            "deep_globs",
            "other_globs",
            "unanchored",
            "exclusions",
            "sections",
            "optional",
        )
        if (value := getattr(args, key)) is not None
    }
    if knobs:  # one custom mix, on top of the first chosen
        mixes = [replace(mixes[0], name="custom", about="", **knobs)]
    for mix in mixes:
        mix.weights()
    return mixes


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def _weight(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the chosen mixes; 0 if every target is met and every answer agrees, else 1."""
    options = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="mixes: " + "; ".join(f"{m.name}: {m.about}" for m in PRESETS.values()),
    )
    options.add_argument("--mixes", default="all", help="'all' or names, comma-separated")
    options.add_argument("--repeat", type=count(1), default=5, help="best of N: parse, matcher")
    options.add_argument("--scan-repeat", type=count(1), default=2, help="best of N: the scans")
    options.add_argument(
        "--gitlab-repeat",
        type=count(1),
        default=1,
        help="best of N: GitLab's loop as written (every entry tested; seconds per mix)",
    )
    options.add_argument("--rules", type=count(1), default=RULES)
    options.add_argument("--paths", type=count(1), default=PATHS)
    options.add_argument("--seed", type=int, default=SEED)
    options.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    options.add_argument("--compare", metavar="REV", help="also time the code at git REV")
    options.add_argument(
        "--ruby",
        default="auto",
        metavar="PROGRAM",
        help="also run the scan in Ruby, GitLab's language, and check the target against the "
        "quicker of the two scans: 'auto' (the default) where 'ruby' is on the PATH, 'off', "
        "or the Ruby to run",
    )
    knobs = options.add_argument_group(
        "a custom mix (any of these replaces the chosen mixes by one, based on the first)"
    )
    for name in ("directories", "exact", "one_level", "ext_globs", "deep_globs", "other_globs"):
        knobs.add_argument(f"--{name.replace('_', '-')}", type=_weight, help="relative weight")
    knobs.add_argument("--unanchored", type=_share, help="share of patterns without a leading /")
    knobs.add_argument("--exclusions", type=_share, help="share of ! entries")
    knobs.add_argument("--sections", type=count(0), help="named sections")
    knobs.add_argument("--optional", type=_share, help="share of optional sections")
    args = options.parse_args(argv)
    try:
        mixes = _mixes(args.mixes, args)
    except ValueError as error:
        options.error(str(error))
    before = module_at(args.compare) if args.compare else None
    args.ruby = find_ruby(args.ruby)

    in_ruby = (
        f"; it also runs in Ruby ({args.ruby}{', YJIT' if has_yjit(args.ruby) else ''}, "
        "File.fnmatch?), and the speed-up is against the quicker of the two"
        if args.ruby
        else " (no Ruby here: --ruby)"
    )
    print(
        f"CODEOWNERS: {args.rules} rules x {args.paths} paths per mix; the scan is GitLab's loop "
        "in Python (fnmatch as one regex per entry), quickened: exclusions first, the first "
        f"match stops it{in_ruby}; the GitLab loop column tests every entry in Python, as "
        "GitLab's code does"
    )
    results: list[Result] = []
    for mix in mixes:
        try:
            result, wrong = measure(mix, args, before)
        except RuntimeError as error:  # Ruby failed: one line, not a traceback
            raise SystemExit(f"--ruby {args.ruby}: {error}") from None
        results.append(result)
        if wrong:
            print(f"  {mix.name}: owners differ on {len(wrong)} paths, e.g. {wrong[:3]}")
    report(results)
    if args.json:
        slow = min(results, key=lambda r: r.speedup)
        heavy = max(results, key=lambda r: r.parse_ratio)
        document = {
            "rules": args.rules,
            "paths": args.paths,
            "seed": args.seed,
            "scan": "GitLab's loop in Python, fnmatch as one compiled regex per entry, "
            "exclusions first and stopping at the first match",
            "ruby_scan": "the same loop in Ruby (benchmarks/gitlab_scan.rb): File.fnmatch? "
            "and GitLab's normalize_pattern",
            "ruby": args.ruby,
            "baseline": "the quicker of scan and ruby_scan, per mix (its baseline)"
            if args.ruby
            else "scan",
            "gitlab_loop": "the same, every entry of a section tested, as GitLab's code does",
            "targets": {"speedup": TARGET_SPEEDUP, "parse_ratio": TARGET_PARSE_RATIO},
            "mixes": [
                {**asdict(r), "knobs": asdict(PRESETS.get(r.mix, mixes[0])), "pass": r.ok}
                for r in results
            ],
            "worst": {
                "speedup": {"mix": slow.mix, "value": slow.speedup, "pass": slow.speed_ok},
                "parse_ratio": {
                    "mix": heavy.mix,
                    "value": heavy.parse_ratio,
                    "pass": heavy.parse_ok,
                },
            },
            "pass": all(r.ok for r in results),
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
