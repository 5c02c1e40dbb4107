"""Benchmark: CODEOWNERS matching for a big monorepo change.

Run from the project root: ``python -m benchmarks.codeowners``. It builds a seeded
5,000-rule CODEOWNERS (sections, optional sections, anchored directories, extension
rules, deep paths, exact files, globs and exclusions) and 3,000 changed paths, then times

* ``parse`` (building the sections and the matcher's index),
* the plain scan: ``reference_owners`` per path (one regex per entry, in order),
* the matcher: ``owners_of_paths`` on a freshly parsed file (so no warm caches),

each best of N (the garbage collector runs before each timing and stays on during it);
checks that both give the same owners for every path and prints PASS or FAIL against the
targets. Exits non-zero if the answers differ or a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable

from plugins.roulette.codeowners import CodeOwners, Owner, parse, reference_owners

RULES = 5_000
PATHS = 3_000
SEED = 20_240_611
TARGET_MS = 30.0
TARGET_SPEEDUP = 15.0

EXTENSIONS = (".py", ".go", ".ts", ".tsx", ".md", ".yaml", ".json", ".sql", ".proto", ".tf")
SUBDIRS = ("src", "api", "config", "tests", "migrations", "internal", "cmd", "docs", "generated")
NAMES = ("main", "handler", "models", "utils", "client", "server", "index", "types", "views")


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
    roll = rng.random()
    if roll < 0.5:
        return f"@team-{rng.randrange(120)}"
    if roll < 0.75:
        return f"@org/group-{rng.randrange(40)}/sub-{rng.randrange(5)}"
    if roll < 0.9:
        return f"user{rng.randrange(500)}@example.com"
    return rng.choice(("@@maintainer", "@@developers", "@@owner"))


def owners(rng: random.Random) -> str:
    return " ".join(owner(rng) for _ in range(rng.choice((1, 1, 2, 3))))


def codeowners_text(repo: Repo, rng: random.Random) -> str:
    """A CODEOWNERS of exactly RULES entry lines (headers and comments not counted)."""
    sections = [
        "[Backend] @backend-leads",
        "[Frontend][2]",
        "^[Docs] @docs-team",
        "[Infrastructure][2] @sre",
        "^[Libraries]",
        "[Security] @security",
        "[Database][0]",
        "[backend]",  # merges into [Backend]
        "^[QA]",
    ]
    fixed = {
        "": ["* @org/everyone", "*.lock @deps", "!*.lock", "!package-lock.json"],
        "^[Docs] @docs-team": ["*.md", "/docs/", "/docs/**/*.png @design", "!CHANGELOG.md"],
        "[Security] @security": ["Dockerfile", "*.pem", "**/auth/", "/services/*/config/"],
        "[Database][0]": ["*.sql @dba", "migrations/ @dba", "!**/generated/"],
        "^[QA]": ["*_test.go @qa", "*_test.py @qa", "tests/ @qa", "/apps/*/src/**/*.test.ts"],
        "[Frontend][2]": ["*.ts @frontend", "*.tsx @frontend", "/apps/ @frontend"],
        "[Infrastructure][2] @sre": ["*.tf", "/platform/", "!/platform/**/README.md"],
    }
    body: dict[str, list[str]] = {name: list(lines) for name, lines in fixed.items()}
    body.setdefault("", [])
    for name in sections:
        body.setdefault(name, [])
    count = sum(len(lines) for lines in body.values())
    names = ["", *sections]
    while count < RULES:
        unit = rng.choice(repo.units)
        roll = rng.random()
        if roll < 0.45:  # an anchored directory, possibly deep
            line = f"/{repo.directory(unit, rng.choice((0, 0, 1, 2, 3)))}/ {owners(rng)}"
        elif roll < 0.60:  # an exact file
            line = (
                f"/{repo.directory(unit, rng.choice((0, 1, 2)))}/{repo.file_name()} {owners(rng)}"
            )
        elif roll < 0.67:  # one level of a directory
            line = f"/{repo.directory(unit, rng.choice((0, 1)))}/* {owners(rng)}"
        elif roll < 0.72:  # a name or a directory at any depth
            tail = rng.choice((f"{rng.choice(SUBDIRS)}/", f"{rng.choice(NAMES)}.go"))
            line = f"{rng.choice(('', unit.rsplit('/', 1)[-1] + '/'))}{tail} {owners(rng)}"
        elif roll < 0.78:  # an extension rule
            line = f"*{rng.choice(EXTENSIONS)} {owners(rng)}"
        elif roll < 0.90:  # real globs
            line = rng.choice(
                (
                    f"/{unit}/**/*{rng.choice(EXTENSIONS)} {owners(rng)}",
                    f"/{unit}/*/{rng.choice(NAMES)}.* {owners(rng)}",
                    f"/{unit.rsplit('/', 1)[0]}/*/{rng.choice(SUBDIRS)}/ {owners(rng)}",
                    f"{rng.choice(SUBDIRS)}/**/{rng.choice(NAMES)}_test.* {owners(rng)}",
                    f"/{unit}/[a-m]*{rng.choice(EXTENSIONS)} {owners(rng)}",
                    f"/{unit}/{rng.choice(SUBDIRS)}/pkg? {owners(rng)}",
                    f"/{unit}/** {owners(rng)}",
                )
            )
        elif roll < 0.95:  # exclusions
            line = rng.choice(
                (
                    f"!/{unit}/generated/",
                    f"!/{repo.directory(unit, 1)}/*{rng.choice(EXTENSIONS)}",
                    f"!{rng.choice(NAMES)}{rng.choice(EXTENSIONS)}",
                )
            )
        else:  # an entry without owners: takes the section's default owners
            line = f"/{repo.directory(unit, rng.choice((0, 1)))}/"
        body[rng.choice(names)].append(line)
        count += 1
    out = ["# Generated for benchmarks/codeowners.py", ""]
    for name in names:
        if name:
            out += ["", name]
        out += body[name]
    return "\n".join(out) + "\n"


def best_of(repeat: int, run: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    options.add_argument("--repeat", type=int, default=7, help="best of N for the matcher")
    options.add_argument("--reference-repeat", type=int, default=2, help="best of N, plain scan")
    args = options.parse_args(argv)

    rng = random.Random(SEED)
    repo = Repo(rng)
    text = codeowners_text(repo, rng)
    paths = repo.paths(PATHS)
    rules = sum(len(section.entries) for section in parse(text).sections)

    parse_time, parsed = best_of(args.repeat, lambda: parse(text))
    assert isinstance(parsed, CodeOwners)
    parsed._reference_regexes()  # compile the plain scan's regexes outside its timing

    def plain() -> dict[str, frozenset[Owner]]:
        return {path: reference_owners(parsed, path) for path in paths}

    plain_time, expected = best_of(args.reference_repeat, plain)
    assert isinstance(expected, dict)
    # The matcher caches per directory and basename: time it cold, on a fresh parse each run.
    fast_time, got = float("inf"), {}
    for _ in range(args.repeat):
        matcher = parse(text)
        gc.collect()  # start each run from a clean heap; the collector stays on while timing
        start = time.perf_counter()
        got = matcher.owners_of_paths(paths)
        fast_time = min(fast_time, time.perf_counter() - start)

    wrong = [path for path in paths if expected[path] != got[path]]
    owned = sum(1 for path in paths if expected[path])
    speedup = plain_time / fast_time if fast_time else float("inf")
    fast_ms = fast_time * 1000
    print(f"CODEOWNERS: {rules} rules in {len(parsed.sections)} sections; {len(paths)} paths")
    print(f"  paths with owners           {owned}")
    print(f"  parse (best of {args.repeat})          {parse_time * 1000:8.1f} ms")
    print(f"  plain scan (best of {args.reference_repeat})     {plain_time * 1000:8.1f} ms")
    print(f"  matcher (best of {args.repeat}, cold)  {fast_ms:8.1f} ms")
    print(f"  speed-up                    {speedup:8.1f}x")
    fast_ok = fast_ms <= TARGET_MS
    speed_ok = speedup >= TARGET_SPEEDUP
    print(f"  matcher <= {TARGET_MS:.0f} ms             {'PASS' if fast_ok else 'FAIL'}")
    print(f"  speed-up >= {TARGET_SPEEDUP:.0f}x              {'PASS' if speed_ok else 'FAIL'}")
    if wrong:
        print(f"  MISMATCH on {len(wrong)} paths, e.g. {wrong[:3]}")
    else:
        print("  same owners for every path  PASS")
    return 0 if fast_ok and speed_ok and not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
