"""``benchmarks.dbscale`` stays runnable: a tiny run (2,000 assignments over 20 days)
prints its figures, writes its JSON object and drops its schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import TEST_DATABASE_URL, service_unavailable
from tests.test_cli import clean_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_the_benchmark_runs_small(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    args = ["--assignments", "2000", "--days", "20", "--runs", "3", "--baseline-runs", "1"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.dbscale",
            "--database-url",
            TEST_DATABASE_URL,
            *args,
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if "connection" in result.stderr and "refused" in result.stderr:
        service_unavailable("PostgreSQL", result.stderr.strip().splitlines()[-1])
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["assignments"] == 2000
    assert figures["rerun_changed_nothing"] is True
    for kind in ("global", "team", "month"):
        assert figures[kind]["same_top10"] is True
    assert "leaderboard" in result.stdout and "backfill" in result.stdout
