"""The daily aggregation on a seeded lifecycle history: exact figures on both engines,
the same numbers on both, idempotent reruns, exact reruns after the data changed,
backfills, and days in ``schedule.timezone``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import make_url

from bot import migrate
from bot.db import create_engine, create_sessionmaker
from bot.models import ReviewerAssignment, User
from plugins.metrics.models import ReviewMetric
from plugins.metrics.service import aggregate_day, aggregate_range, day_bounds, days_between
from tests.conftest import _postgres_admin, _postgres_schema_url
from tests.metrics.history import (
    EXPECTED_UTC,
    Sessions,
    assert_same,
    figures,
    row,
    seed,
    stored,
)

NOV_9, NOV_10, NOV_11 = date(2026, 11, 9), date(2026, 11, 10), date(2026, 11, 11)
STAMP = datetime(2026, 11, 12, 2, 0, tzinfo=UTC)


def stamps(*moments: datetime) -> Any:
    queue = list(moments)
    return lambda: queue.pop(0) if len(queue) > 1 else queue[0]


async def test_every_row_of_the_history_is_exact(sessions: Sessions) -> None:
    await seed(sessions)
    result = await aggregate_range(sessions, NOV_9, NOV_11, "UTC", now=lambda: STAMP)
    assert [d.day for d in result.days] == [NOV_9, NOV_10, NOV_11]
    assert result.written == len(EXPECTED_UTC) and result.deleted == 0
    found = await stored(sessions)
    assert_same(figures(found), EXPECTED_UTC)
    assert {r["updated_at"] for r in found.values()} == {STAMP}
    # engagement scores of the day's reviewers, for the summary metric
    assert sorted(result.days[1].engagement_scores) == pytest.approx([0, 20.5, 52.01, 62.5])


async def test_a_day_without_activity_writes_nothing(sessions: Sessions) -> None:
    await seed(sessions)
    async with sessions.begin() as session:
        result = await aggregate_day(session, date(2026, 11, 20), "UTC")
    assert (result.written, result.deleted, result.engagement_scores) == (0, 0, ())
    assert await stored(sessions) == {}


async def test_rerunning_a_day_changes_nothing(sessions: Sessions) -> None:
    await seed(sessions)
    await aggregate_range(sessions, NOV_9, NOV_11, "UTC", now=lambda: STAMP)
    before = await stored(sessions)
    later = STAMP + timedelta(hours=5)
    again = await aggregate_range(sessions, NOV_9, NOV_11, "UTC", now=lambda: later)
    assert (again.written, again.deleted) == (0, 0)
    after = await stored(sessions)
    assert after == before  # not even updated_at: no figure differed
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ReviewMetric)) == len(
            EXPECTED_UTC
        )


async def test_a_rerun_after_the_data_changed_is_exact(sessions: Sessions) -> None:
    await seed(sessions)
    await aggregate_range(sessions, NOV_9, NOV_11, "UTC", now=lambda: STAMP)
    async with sessions.begin() as session:
        alice = await session.scalar(select(User.id).where(User.gitlab_username == "alice"))
        dave = await session.scalar(select(User.id).where(User.gitlab_username == "dave"))
        # alice's only assignment of the 10th goes away; dave writes one more comment
        await session.execute(
            delete(ReviewerAssignment).where(
                ReviewerAssignment.user_id == alice,
                ReviewerAssignment.status == "active",
            )
        )
        await session.execute(
            update(ReviewerAssignment)
            .where(ReviewerAssignment.user_id == dave)
            .values(comment_count=3, comment_chars=301)
        )
    later = STAMP + timedelta(hours=1)
    async with sessions.begin() as session:
        result = await aggregate_day(session, NOV_10, "UTC", now=later)
    # dave's user row, frontend's team row, project 200's row: changed; alice's: gone
    assert (result.written, result.deleted) == (3, 1)
    expected = dict(EXPECTED_UTC)
    del expected[(NOV_10, "user", "alice")]
    expected[(NOV_10, "user", "dave")] = row(0, 1, 1, 0, 3, 301, 3599.999999, 1, 3600, 1, 63.01)
    frontend = row(1, 1, 1, 0, 3, 301, 3599.999999, 1, 3600, 1, 63.01)
    expected[(NOV_10, "team", "frontend")] = frontend
    expected[(NOV_10, "project", "200")] = frontend
    found = await stored(sessions)
    assert_same(figures(found), expected)
    changed = {k for k, r in found.items() if r["updated_at"] == later}
    assert changed == {
        (NOV_10, "user", "dave"),
        (NOV_10, "team", "frontend"),
        (NOV_10, "project", "200"),
    }


async def test_a_backfill_is_each_of_its_days(sessions: Sessions) -> None:
    await seed(sessions)
    result = await aggregate_range(sessions, date(2026, 11, 1), date(2026, 11, 30), "UTC")
    assert len(result.days) == 30
    assert [d.day for d in result.days if d.written] == [NOV_9, NOV_10, NOV_11]
    assert_same(figures(await stored(sessions)), EXPECTED_UTC)


def test_a_backfill_range_is_checked() -> None:
    assert days_between(NOV_9, NOV_9) == [NOV_9]
    with pytest.raises(ValueError, match="after"):
        days_between(NOV_11, NOV_9)
    assert len(days_between(date(2020, 1, 1), date(2020, 1, 1) + timedelta(days=3659))) == 3660
    with pytest.raises(ValueError, match="at most 3660"):
        days_between(date(2020, 1, 1), date(2020, 1, 1) + timedelta(days=3660))


def test_day_bounds_follow_the_timezone() -> None:
    assert day_bounds(NOV_10, "UTC") == (
        datetime(2026, 11, 10, tzinfo=UTC),
        datetime(2026, 11, 11, tzinfo=UTC),
    )
    assert day_bounds(NOV_10, "Europe/Paris") == (
        datetime(2026, 11, 9, 23, tzinfo=UTC),
        datetime(2026, 11, 10, 23, tzinfo=UTC),
    )
    start, end = day_bounds(date(2026, 10, 25), "Europe/Paris")  # back to winter time
    assert end - start == timedelta(hours=25)


async def test_an_assignment_at_2330_utc_counts_on_the_next_day_in_paris(
    sessions: Sessions,
) -> None:
    await seed(sessions)
    await aggregate_range(sessions, NOV_9, NOV_11, "Europe/Paris")
    found = figures(await stored(sessions))
    assert not [k for k in found if k[0] == NOV_9]
    # alice's 23:30 UTC assignment of the 9th joins her 14:00 one of the 10th
    assert_same(
        {k: v for k, v in found.items() if k == (NOV_10, "user", "alice")},
        {(NOV_10, "user", "alice"): row(0, 2, 1, 0, 0, 0, 25199.75, 2, 0, 0, 20)},
    )
    assert found[(NOV_10, "team", "backend")]["reviews_triggered"] == 2
    assert found[(NOV_10, "project", "300")]["reviews_assigned"] == 1


@pytest.fixture
async def postgres_sessions() -> AsyncIterator[Sessions]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _postgres_admin(f'CREATE SCHEMA "{schema}"')
    url = _postgres_schema_url(schema)
    engine = None
    try:
        migrate.upgrade(url)
        engine = create_engine(url.set(drivername="postgresql+psycopg"))
        yield create_sessionmaker(engine)
    finally:
        if engine is not None:
            await engine.dispose()
        _postgres_admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.postgres
async def test_sqlite_and_postgresql_agree_on_every_row(
    tmp_path: Any, postgres_sessions: Sessions
) -> None:
    """The same history on both engines gives the same rows, in UTC and in Paris."""
    url = make_url(f"sqlite:///{tmp_path / 'agree.db'}")
    migrate.upgrade(url)
    engine = create_engine(url.set(drivername="sqlite+aiosqlite"))
    try:
        lite = create_sessionmaker(engine)
        await seed(lite)
        await seed(postgres_sessions)
        for timezone in ("UTC", "Europe/Paris"):
            snapshots = []
            for sessions in (lite, postgres_sessions):
                await aggregate_range(sessions, NOV_9, NOV_11, timezone, now=lambda: STAMP)
                snapshots.append(figures(await stored(sessions)))
            on_sqlite, on_postgres = snapshots
            if timezone == "UTC":
                assert_same(on_sqlite, EXPECTED_UTC)
            assert_same(on_postgres, on_sqlite)
    finally:
        await engine.dispose()
