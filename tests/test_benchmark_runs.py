"""The benchmarks that run the bot's app stay runnable, tiny, against today's bot and
against the baseline ``python -m benchmarks`` measures beside it, and leave nothing
where they were started. A full ``python -m benchmarks`` run had left ``spool/drain.lock`` and
``spool/spool.lock`` in the checkout: under its load some intake commits took longer than
the intake waits, those deliveries went to the app's default ``SPOOL_DIR`` (``spool`` in
the working directory), and a later run's app would have drained what an earlier one
spooled. Here the intake's commit deadline is 0, so every webhook delivery a benchmark
sends goes through the spool."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import BASELINE, baseline_tree
from tests.test_cli import clean_env

ROOT = Path(__file__).resolve().parents[1]

SMALL = {
    # senders in this process: a spawned sender process cannot find its function in a
    # module run by runpy (below)
    "webhooks": ["--deliveries", "20", "--mrs", "10", "--senders", "2", "--senders-in", "inline"],
    "fuzz": ["--seconds", "1"],
    "chat": ["--rolls", "2"],
}
FIGURE = {"webhooks": "rolls_per_s", "fuzz": "fuzz_per_s", "chat": "p99_ms"}  # one of each
SPOOLING = (
    "import runpy, bot.webhooks; bot.webhooks.STORE_TIMEOUT = 0;"
    " runpy.run_module('benchmarks.{}', run_name='__main__')"
)


def small_run(command: list[str], cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    """Run a benchmark's ``command`` in ``cwd`` with the bot found at ``pythonpath``. A
    run this small may miss a target (exit 1); it must not fail otherwise."""
    done = subprocess.run(
        command,
        cwd=cwd,
        env=clean_env(PYTHONPATH=str(pythonpath)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), (command, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, (command, done.stderr[-2000:])
    return done


@pytest.mark.parametrize("benchmark", sorted(SMALL))
def test_a_small_run_writes_its_figures_and_nothing_else(benchmark: str, tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    command = [sys.executable, "-c", SPOOLING.format(benchmark), *SMALL[benchmark]]
    done = small_run([*command, "--json", str(figures)], tmp_path, ROOT)
    assert json.loads(figures.read_text())[FIGURE[benchmark]] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures.json"]
    if benchmark == "webhooks":
        assert "answers {'spooled': 20}" in done.stdout  # it did go through the spool


def test_the_baselines_run_with_todays_benchmarks(tmp_path: Path) -> None:
    """``python -m benchmarks`` runs today's webhooks, chat and selection benchmarks on
    the bot of ``BASELINE`` too. Giving that bot a setting it did not have yet (the
    spool's folder) made it refuse to start, so those baselines ended without figures."""
    with baseline_tree(BASELINE) as tree:
        for benchmark, args in (*SMALL.items(), ("selection", ["--runs", "3"])):
            if benchmark == "fuzz":  # measured against valid input, not a baseline bot
                continue
            figures = tmp_path / f"{benchmark}.json"
            command = [sys.executable, "-m", f"benchmarks.{benchmark}", *args]
            small_run([*command, "--json", str(figures)], tree, tree)
            assert figures.exists(), benchmark
