"""The simulator: deterministic, and the engine beats the naive strategies."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from plugins.roulette.engine import Options
from plugins.roulette.simulate import (
    STRATEGIES,
    format_reports,
    simulate,
    synthetic_people,
)


@pytest.mark.parametrize("seed", [1, 2, 3, 42])
def test_the_engine_is_fair_and_never_wrong(seed: int) -> None:
    people = synthetic_people(random.Random(seed))
    reports = {r.strategy: r for r in simulate(people, Options(), seed=seed)}
    engine, robin = reports["engine"], reports["round-robin"]
    assert engine.violations == 0
    assert engine.cv(people) <= robin.cv(people)
    assert engine.coverage == 1.0
    assert engine.max_load <= robin.max_load
    # The naive strategies do pick people who are away.
    assert reports["random"].unavailable_violations > 0
    assert robin.unavailable_violations > 0
    # Extra trainees count, and carry what their colleagues carry, no more.
    regular, trainee = engine.load(people, trainees=False), engine.load(people, trainees=True)
    assert (regular.people, trainee.people) == (36, 4)
    assert regular.fewest <= trainee.fewest and trainee.most <= regular.most
    assert 0 < trainee.max_load <= regular.max_load
    assert sum(engine.assignments.values()) > 3 * 500  # the extra trainees are counted


def test_same_seed_same_figures() -> None:
    people = synthetic_people(random.Random(7))
    first = format_reports(simulate(people, Options(), mrs=200, seed=7), people)
    second = format_reports(simulate(people, Options(), mrs=200, seed=7), people)
    assert first == second
    other = format_reports(simulate(people, Options(), mrs=200, seed=8), people)
    assert other != first


def test_one_strategy_at_a_time() -> None:
    people = synthetic_people(random.Random(1))
    reports = simulate(people, Options(), mrs=50, strategies=["plain"])
    assert [r.strategy for r in reports] == ["plain"]
    assert sum(reports[0].assignments.values()) == 150
    assert set(STRATEGIES) == {"engine", "random", "round-robin", "plain"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "ROULETTE_CONFIG"},
    )


def test_the_command_prints_every_strategy() -> None:
    result = _run("--mrs", "120", "--days", "10", "--seed", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "120 merge requests over 10 days, seed 3, a synthetic organisation (40 people in 4 teams)"
    )
    table = {line.split()[0]: line.split()[1:] for line in lines[3:7]}
    assert list(table) == ["engine", "random", "round-robin", "plain"]
    engine_author, engine_unavailable = table["engine"][-2:]
    assert (engine_author, engine_unavailable) == ("0", "0")
    assert _run("--mrs", "120", "--days", "10", "--seed", "3").stdout == result.stdout


def test_the_command_reports_trainee_load_separately() -> None:
    result = _run("--mrs", "120", "--days", "10", "--seed", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index(
        "Trainees vs regular reviewers: assignments per person (fewest-most, mean), "
        "max concurrent load"
    )
    assert lines[start + 1].split() == [
        "strategy",
        "regular",
        "trainee",
        "reg.",
        "max",
        "tr.",
        "max",
    ]
    rows = {line.split()[0]: line for line in lines[start + 2 :]}
    assert list(rows) == ["engine", "random", "round-robin", "plain"]
    # "engine  6-15 (10.0)  7-9 (8.0)  3  2": trainees within the regular range.
    regular, _, trainee, _, regular_max, trainee_max = rows["engine"].split()[1:]
    low, high = (int(n) for n in regular.split("-"))
    fewest, most = (int(n) for n in trainee.split("-"))
    assert low <= fewest <= most <= high
    assert int(trainee_max) <= int(regular_max)
    # A rotation that skips trainees shows it.
    assert rows["round-robin"].split()[3] == "0-0"


def test_no_trainee_section_without_trainees() -> None:
    people = [p for p in synthetic_people(random.Random(1)) if p.role != "trainee"]
    text = format_reports(simulate(people, Options(), mrs=50, seed=1), people)
    assert "Trainees" not in text


def test_one_strategy_and_bad_arguments() -> None:
    only = _run("--mrs", "50", "--strategy", "round-robin")
    assert only.returncode == 0
    assert [line.split()[0] for line in only.stdout.splitlines()[3:4]] == ["round-robin"]
    bad = _run("--strategy", "best")
    assert bad.returncode == 2 and "invalid choice: 'best'" in bad.stderr
    assert _run("--days", "0").returncode == 2


def test_the_configured_trainee_share(tmp_path: Path) -> None:
    never = tmp_path / "never.yaml"
    never.write_text("roulette:\n  trainee_share: 0\n")
    result = _run("--mrs", "60", "--strategy", "engine", "--config", str(never))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split()[3] == "0-0"  # no trainee ever added
    bad = tmp_path / "bad.yaml"
    bad.write_text("roulette:\n  trainee_share: 1.5\n")
    refused = _run("--config", str(bad))
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "roulette.trainee_share" in refused.stderr
