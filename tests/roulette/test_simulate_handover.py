"""The simulator's hand-over policy (``simulate --silent-share``): time to first response
without and with nudges and hand-over, on the same synthetic draws."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from plugins.roulette.engine import Options
from plugins.roulette.simulate import (
    ResponseTimes,
    build_world,
    handover,
    replay,
    synthetic_people,
)
from plugins.roulette.worktime import after_working, working_seconds


def _run(
    seed: int, silent_share: float, reassign_after: float | None = 16.0
) -> tuple[ResponseTimes, ResponseTimes]:
    people = synthetic_people(random.Random(seed))
    world = build_world(random.Random(seed), people, 200, 20)
    picks = replay(world, "engine", Options(), seed).picks
    assert len(picks) == len(world.mrs)
    return handover(
        world, picks, Options(), silent_share=silent_share, reassign_after=reassign_after, seed=seed
    )


@pytest.mark.parametrize("seed", [1, 7])
def test_nudges_and_hand_over_answer_sooner(seed: int) -> None:
    without, with_policy = _run(seed, 0.3)
    assert without.total == with_policy.total == 200
    assert without.nudges == without.handovers == 0
    assert with_policy.nudges > 0 and with_policy.handovers > 0
    assert with_policy.never <= without.never
    assert with_policy.within(24) >= without.within(24)
    median, median_with = without.percentile(0.5), with_policy.percentile(0.5)
    assert median is not None and median_with is not None and median_with <= median


def test_deterministic_and_nobody_silent() -> None:
    assert _run(3, 0.2) == _run(3, 0.2)
    without, with_policy = _run(3, 0.0, reassign_after=None)
    assert without.never == with_policy.never == 0
    assert with_policy.handovers == 0


def test_everyone_silent_and_no_hand_over_means_never() -> None:
    without, with_policy = _run(2, 1.0, reassign_after=None)
    assert without.never == with_policy.never == 200
    assert without.percentile(0.5) is None


def test_after_working_is_the_inverse_of_working_seconds() -> None:
    start = datetime(2026, 3, 27, 16, tzinfo=UTC)  # a Friday, before Paris's DST change
    for hours in (0.5, 1, 4, 9, 16, 40):
        end = after_working(start, hours * 3600, "Europe/Paris", (9, 18))
        assert working_seconds(start, end, "Europe/Paris", (9, 18)) == hours * 3600


def _command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "ROULETTE_CONFIG"},
        check=False,
    )


def test_the_command_prints_both_side_by_side() -> None:
    done = _command("--mrs", "60", "--days", "10", "--silent-share", "0.2", "--strategy", "engine")
    assert done.returncode == 0, done.stderr
    assert "Time to first response, 20% of reviewers silent" in done.stdout
    assert "without  with nudges+hand-over" in done.stdout
    refused = _command("--silent-share", "2")
    assert refused.returncode != 0 and "between 0 and 1" in refused.stderr
