"""Every benchmark in one run, each beside its baseline from the same run.

    python -m benchmarks [--database-url URL] [--baseline REV] [--out DIR] [--quick]

Runs, one after another on this machine (each in a process of its own, printing as it
goes, its figures kept as JSON in ``--out``):

* ``codeowners`` on every rule mix, against a GitLab-style scan (in Python, and in Ruby
  where ``ruby`` is installed: the quicker of the two) and the matcher of ``--baseline``;
* ``selection``: one full pick, 500 people;
* ``webhooks``: 600 ``/roulette`` deliveries from 32 senders, the GitLab stand-in in a
  process of its own, at 0 and at 50 ms per GitLab call; on PostgreSQL in one process
  and as a web-only replica beside the chart's two worker replicas (the pools and
  ``WEBHOOK_WORKERS`` of the Helm chart's pods), these at a lower processor priority, as
  on nodes of their own (``--split --worker-replicas 2 --worker-nice 10``, five times for
  the acknowledgement target); on SQLite once;
* ``chat``: ``/roulette`` typed in Mattermost at 50 ms per GitLab call;
* ``fuzz``: damaged input refused, against the rate of valid input;
* ``dbscale``: leaderboards over a million assignments (skipped with ``--quick``).

The baseline of ``webhooks``, ``chat`` and ``selection`` is the same benchmark run on
the bot as it was at ``--baseline`` (a git revision, default: before the speed work of
the performance issue), checked out in a temporary git worktree with today's
``benchmarks/`` and stand-ins (``bot/sandbox/``) copied over it, so that both sides are
measured by the same instrument. Ends with a summary table (also ``DIR/summary.md``).
Exits non-zero when a benchmark missed its target (a baseline's miss does not count), or
when one, baseline or not, ended without its figures (it failed: the summary would lack
them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "ccf32d0"  # main before "A roll's independent GitLab reads go together"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
SPLIT_RUNS = 5
# The chart's topology: web-only replicas and two worker replicas; on one small machine the
# workers yield the processor to the web side, as they would on nodes of their own.
SPLIT = ["--split", "--worker-replicas", "2", "--worker-nice", "10"]


@contextmanager
def baseline_tree(revision: str) -> Iterator[Path]:
    """A temporary worktree of ``revision`` with today's benchmarks and stand-ins."""
    with tempfile.TemporaryDirectory(prefix="roulette-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        add = ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), revision]
        subprocess.run(add, check=True)  # noqa: S603 -- git, the operator's revision
        try:
            for part in ("benchmarks", "bot/sandbox"):
                shutil.rmtree(tree / part)
                shutil.copytree(
                    ROOT / part, tree / part, ignore=shutil.ignore_patterns("__pycache__")
                )
            yield tree
        finally:
            remove = ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)]
            subprocess.run(remove, check=False)  # noqa: S603 -- git, our own worktree


def run(name: str, module: str, args: Sequence[str], out: Path, cwd: Path) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> ARGS --json`` in ``cwd``; its figures."""
    path = out / f"{name}.json"
    command = [sys.executable, "-m", f"benchmarks.{module}", *args, "--json", str(path)]
    print(f"\n=== {name}: {' '.join(command[2:])}" + (f"  (in {cwd})" if cwd != ROOT else ""))
    sys.stdout.flush()
    started = time.monotonic()
    env = os.environ | {"PYTHONPATH": str(cwd)}
    done = subprocess.run(command, cwd=cwd, env=env, check=False)  # noqa: S603 -- our own modules
    figures: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    figures["exit_code"] = done.returncode
    figures["failed"] = not path.exists()  # a miss still writes its figures; a crash not
    figures["seconds"] = round(time.monotonic() - started, 1)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Linux {platform.release()},"
        f" Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} at start"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", default=DEFAULT_URL, help="PostgreSQL URL")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the baseline")
    parser.add_argument("--out", type=Path, help="where the JSON figures go (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="skip dbscale (several minutes)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="roulette-benchmarks-"))
    out.mkdir(parents=True, exist_ok=True)
    pg = ["--database-url", args.database_url]
    hooks = ["--standin", "process", "--timeout", "300"]
    results: dict[str, dict[str, Any]] = {}
    print(f"machine: {machine()}")
    results["codeowners"] = run("codeowners", "codeowners", ["--compare", args.baseline], out, ROOT)
    with baseline_tree(args.baseline) as old:
        for side, cwd in (("baseline", old), ("now", ROOT)):
            results[f"selection-{side}"] = run(f"selection-{side}", "selection", [], out, cwd)
            for latency in ("0", "50ms"):
                results[f"webhooks-{latency}-{side}"] = run(
                    f"webhooks-{latency}-{side}",
                    "webhooks",
                    [*pg, *hooks, "--gitlab-latency", latency],
                    out,
                    cwd,
                )
            results[f"chat-{side}"] = run(f"chat-{side}", "chat", [], out, cwd)
    for n in range(1, SPLIT_RUNS + 1):
        results[f"webhooks-split-{n}"] = run(
            f"webhooks-split-{n}",
            "webhooks",
            [*pg, *hooks, "--gitlab-latency", "50ms", *SPLIT],
            out,
            ROOT,
        )
    results["webhooks-sqlite"] = run(
        "webhooks-sqlite", "webhooks", [*hooks, "--gitlab-latency", "50ms"], out, ROOT
    )
    results["fuzz"] = run("fuzz", "fuzz", pg, out, ROOT)
    if not args.quick:
        results["dbscale"] = run("dbscale", "dbscale", pg, out, ROOT)
    summary = table(results)
    (out / "summary.md").write_text(summary)
    print(f"\nmachine: {machine()}\n\n{summary}\nfigures: {out}")
    failed = [name for name, figures in results.items() if figures.get("exit_code")]
    baseline_failures = [name for name in failed if name.endswith("-baseline")]
    crashed = [name for name, figures in results.items() if figures.get("failed")]
    if crashed:
        print(f"ended without figures (see their output above): {', '.join(crashed)}")
    sys.exit(1 if crashed or set(failed) - set(baseline_failures) else 0)


def table(results: dict[str, dict[str, Any]]) -> str:
    """The summary: one row per figure, baseline beside now where there is one."""
    rows = ["| benchmark | figure | baseline | now | ratio |", "|---|---|---|---|---|"]

    def row(bench: str, figure: str, old: Any, new: Any) -> None:
        ratio = ""
        if isinstance(old, int | float) and isinstance(new, int | float) and old:
            ratio = f"{new / old:.2f}x"
        rows.append(f"| {bench} | {figure} | {_shown(old)} | {_shown(new)} | {ratio} |")

    for latency in ("0", "50ms"):
        old = results.get(f"webhooks-{latency}-baseline", {})
        new = results.get(f"webhooks-{latency}-now", {})
        for key in (
            "rolls_per_s",
            "ack_p50_ms",
            "ack_p99_ms",
            "gitlab_calls_per_roll",
            "sequential_gitlab_round_trips",
            "rss_mb_idle",
            "rss_mb_after",
        ):
            row(
                f"webhooks, GitLab {latency}, one process (PostgreSQL)",
                key,
                old.get(key),
                new.get(key),
            )
    splits = [results[k] for k in sorted(results) if k.startswith("webhooks-split-")]
    if splits:
        passed = sum(1 for s in splits if s.get("ack_p99_ms", 1e9) < 50)
        row(
            "webhooks, GitLab 50ms, web + 2 worker replicas at nice 10",
            "ack p99 < 50 ms (runs)",
            None,
            f"{passed} of {len(splits)}",
        )
        for key in ("ack_p99_ms", "rolls_per_s", "rss_mb_idle", "rss_mb_after"):
            row(
                "webhooks, GitLab 50ms, web + 2 worker replicas at nice 10",
                f"{key} (each run)",
                None,
                ", ".join(_shown(s.get(key)) for s in splits),
            )
    sqlite = results.get("webhooks-sqlite", {})
    for key in ("rolls_per_s", "ack_p99_ms"):
        row("webhooks, GitLab 50ms, one process (SQLite)", key, None, sqlite.get(key))
    for key in ("first_ms", "p50_ms", "p99_ms", "max_ms", "fallbacks"):
        row(
            "chat /roulette, GitLab 50ms",
            key,
            results.get("chat-baseline", {}).get(key),
            results.get("chat-now", {}).get(key),
        )
    for key in ("warm_p50_ms", "warm_p99_ms", "cold_ms"):
        row(
            "selection",
            key,
            results.get("selection-baseline", {}).get(key),
            results.get("selection-now", {}).get(key),
        )
    codeowners = results.get("codeowners", {})
    worst = codeowners.get("worst", {})
    for key, value in worst.items() if isinstance(worst, dict) else ():
        if isinstance(value, dict):  # {"mix", "value", "pass"}
            value = f"{_shown(value.get('value'))} ({value.get('mix')})"
        row("codeowners (worst mix)", key, None, value)
    fuzz = results.get("fuzz", {})
    row(
        "fuzz",
        "inputs/s (baseline: valid inputs)",
        fuzz.get("baseline_per_s"),
        fuzz.get("fuzz_per_s"),
    )
    row("fuzz", "5xx", None, fuzz.get("server_errors"))
    scale = results.get("dbscale", {})
    for kind in ("global", "team", "month"):
        figures = scale.get(kind, {})
        if isinstance(figures, dict) and figures:
            row(
                "dbscale leaderboard",
                f"{kind} p50 ms",
                figures.get("baseline_p50_ms"),
                figures.get("p50_ms"),
            )
    if scale:
        row("dbscale", "backfill s", None, scale.get("backfill_s"))
    exits = ", ".join(
        f"{name} {f.get('exit_code')}" for name, f in results.items() if f.get("exit_code")
    )
    return "\n".join(rows) + f"\n\nnon-zero exits: {exits or 'none'}\n"


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


if __name__ == "__main__":
    main()
