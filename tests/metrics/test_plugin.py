"""The metrics jobs with an injected clock, the engagement summary, and
``roulette-bot run-job aggregate`` / ``aggregate`` driven as a user drives them."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import func, select

from bot.context import AppContext
from bot.scheduler import JobRunContext
from bot.settings import Settings
from plugins.metrics.models import ReviewMetric
from plugins.metrics.plugin import MetricsPlugin
from tests.conftest import settings_for
from tests.metrics.history import Sessions, seed, stored
from tests.test_cli import assert_one_line_error, clean_env

ROOT = Path(__file__).resolve().parents[2]


def _plugin(settings: Settings, sessions: Sessions, now: datetime) -> MetricsPlugin:
    plugin = MetricsPlugin(AppContext(settings=settings, sessions_=sessions))
    plugin.now = lambda: now
    return plugin


def _summary(plugin: MetricsPlugin, sample: str) -> float | None:
    return plugin.app.metrics.registry.get_sample_value(f"reviewer_engagement_score_{sample}")


async def test_the_daily_job_aggregates_yesterday_and_today(
    settings: Settings, sessions: Sessions
) -> None:
    await seed(sessions)
    plugin = _plugin(settings, sessions, datetime(2026, 11, 11, 2, 0, tzinfo=UTC))
    await plugin.aggregate(JobRunContext("aggregate", "2026-11-11", scheduled=True))
    days = {key[0] for key in await stored(sessions)}
    assert days == {date(2026, 11, 10), date(2026, 11, 11)}
    # one observation per reviewer-day: four reviewers on the 10th, bob on the 11th
    assert _summary(plugin, "count") == 5
    assert _summary(plugin, "sum") == 0 + 62.5 + 20.5 + 52.01 + 21


async def test_the_quarter_hour_job_refreshes_today_in_the_configured_zone(
    migrated_url: object, sessions: Sessions
) -> None:
    await seed(sessions)
    paris = settings_for(migrated_url, schedule={"timezone": "Europe/Paris"})  # type: ignore[arg-type]
    # 23:45 UTC on the 9th is already the 10th in Paris
    plugin = _plugin(paris, sessions, datetime(2026, 11, 9, 23, 45, tzinfo=UTC))
    await plugin.aggregate_today(JobRunContext("aggregate_today", "x", scheduled=True))
    async with sessions() as session:
        days = (await session.scalars(select(ReviewMetric.day).distinct())).all()
        users = await session.scalar(
            select(func.count()).where(ReviewMetric.scope == "user").select_from(ReviewMetric)
        )
    assert days == [date(2026, 11, 10)]
    assert users == 4


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_job_aggregate_runs_once_per_day(tmp_path: Path) -> None:
    today = datetime.now(UTC).date().isoformat()
    first = _cli(tmp_path, "run-job", "aggregate")
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"aggregate: done for {today}\n"
    second = _cli(tmp_path, "run-job", "aggregate")
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith(f"aggregate: already run for {today}")
    assert "skipped" in second.stdout


def test_aggregate_backfills_and_says_so_in_one_line(tmp_path: Path) -> None:
    done = _cli(tmp_path, "aggregate", "--from", "2026-11-01", "--to", "2026-11-05")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("aggregate: 5 days (2026-11-01 to 2026-11-05, UTC), 0 row(s)")
    one = _cli(tmp_path, "aggregate", "--date", "2026-11-03")
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith("aggregate: 1 day (2026-11-03, UTC)")


def test_aggregate_refuses_bad_dates_in_one_line(tmp_path: Path) -> None:
    reversed_ = _cli(tmp_path, "aggregate", "--from", "2026-11-05", "--to", "2026-11-01")
    line = assert_one_line_error(reversed_, 2)
    assert line == "roulette-bot: --from 2026-11-05 is after --to 2026-11-01"
    assert not (tmp_path / "cli.db").exists()  # refused before touching the database
    for args, said in [
        (("--date", "2026-13-01"), "--date '2026-13-01': not a date (YYYY-MM-DD)"),
        (("--from", "2026-11-01"), "--from and --to go together"),
        (("--date", "2026-11-01", "--to", "2026-11-02"), "give either --date or --from/--to"),
        (("--from", "2000-01-01", "--to", "2026-11-01"), "at most 3660 days at once"),
    ]:
        assert said in assert_one_line_error(_cli(tmp_path, "aggregate", *args), 2)
