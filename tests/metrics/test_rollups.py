"""The monthly rollups (``review_metrics_monthly``): built by the aggregation and by the
migration from the daily rows, exact sums of them, unchanged by a rerun; and
``reviewer_totals`` over rollups plus edge days equals the plain sum of the daily rows for
random ranges (both engines)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, func, select, text, update
from sqlalchemy.engine import URL

from bot import migrate
from bot.models import MrReview, ReviewerAssignment, Team, User
from plugins.metrics.api import ReviewerTotals, month_bounds, reviewer_totals
from plugins.metrics.models import ReviewMetric, ReviewMetricMonth
from plugins.metrics.service import USER_FIGURES, aggregate_day, aggregate_range
from tests.metrics.history import Sessions

FIRST, LAST = date(2026, 7, 20), date(2026, 11, 12)  # parts of July and November
INTEGERS = (
    "reviews_assigned",
    "reviews_completed",
    "reviews_other_teams",
    "comments",
    "comment_chars",
    "ttfr_count",
    "approval_count",
)
FLOATS = ("ttfr_seconds_sum", "approval_seconds_sum", "engagement")


async def seed_random(sessions: Sessions, assignments: int = 600, seed: int = 7) -> None:
    """Two teams, eight reviewers (one without a team) and ``assignments`` assignments at
    random instants (microseconds included) of ``FIRST``..``LAST``."""
    rng = random.Random(seed)
    async with sessions.begin() as session:
        teams = [Team(name="backend"), Team(name="frontend")]
        session.add_all(teams)
        await session.flush()
        users = [
            User(
                gitlab_username=f"u{i}",
                mattermost_username=f"mm-u{i}",
                team_id=teams[i % 2].id if i < 7 else None,
            )
            for i in range(8)
        ]
        session.add_all(users)
        await session.flush()
        span = (LAST - FIRST).days + 1
        start = datetime(FIRST.year, FIRST.month, FIRST.day, tzinfo=UTC)
        for n in range(assignments // 2):
            triggered = start + timedelta(microseconds=rng.randrange(span * 86_400_000_000))
            author = rng.choice(users)
            review = MrReview(
                project_id=rng.randrange(1, 5),
                project_path="group/p",
                mr_iid=n + 1,
                web_url=f"https://gitlab.example.com/group/p/-/merge_requests/{n + 1}",
                author_id=author.id,
                author_username=author.gitlab_username,
                team_id=rng.choice([teams[0].id, teams[1].id, None]),
                triggered_at=triggered,
            )
            session.add(review)
            await session.flush()
            for reviewer in rng.sample([u for u in users if u is not author], 2):
                assigned = triggered + timedelta(microseconds=rng.randrange(600_000_000))
                responded = assigned + timedelta(microseconds=rng.randrange(30_000_000_000))
                comments = rng.randrange(0, 6)
                session.add(
                    ReviewerAssignment(
                        review_id=review.id,
                        user_id=reviewer.id,
                        role="team",
                        status=rng.choice(("completed", "completed", "active", "abandoned")),
                        assigned_at=assigned,
                        first_response_at=responded if rng.random() < 0.8 else None,
                        approved_at=responded + timedelta(hours=1) if rng.random() < 0.5 else None,
                        comment_count=comments,
                        comment_chars=comments * rng.randrange(5, 90),
                    )
                )


async def daily_sums(
    sessions: Sessions, start: date, end: date, team: str | None = None
) -> dict[str, dict[str, float]]:
    """The reference: each reviewer's plain sums of their daily ``user`` rows."""
    m = ReviewMetric
    query = (
        select(User.gitlab_username, *[func.sum(getattr(m, n)) for n in USER_FIGURES])
        .join(User, User.id == m.subject_id)
        .outerjoin(Team, Team.id == User.team_id)
        .where(m.scope == "user", m.day >= start, m.day <= end)
        .group_by(User.gitlab_username)
    )
    if team is not None:
        query = query.where(func.lower(Team.name) == team.lower())
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    names = [n if n != "engagement_score" else "engagement" for n in USER_FIGURES]
    return {r[0]: dict(zip(names, r[1:], strict=True)) for r in rows}


def as_sums(totals: list[ReviewerTotals]) -> dict[str, dict[str, float]]:
    return {t.username: {n: getattr(t, n) for n in (*INTEGERS, *FLOATS)} for t in totals}


def assert_equal_sums(
    found: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]
) -> None:
    """Integers and floats exactly (the reference's float sums rounded to the
    microsecond, as the figures are)."""
    assert found.keys() == expected.keys()
    for name, figures in expected.items():
        for column in INTEGERS:
            assert found[name][column] == figures[column], (name, column)
        for column in FLOATS:
            assert found[name][column] == round(figures[column], 6), (name, column)


async def rollups(sessions: Sessions) -> dict[tuple[date, int], tuple[Any, ...]]:
    r = ReviewMetricMonth
    async with sessions() as session:
        rows = await session.execute(
            select(r.month, r.subject_id, *[getattr(r, n) for n in USER_FIGURES])
        )
        return {(row[0], row[1]): tuple(row[2:]) for row in rows}


async def monthly_from_days(sessions: Sessions) -> dict[tuple[date, int], tuple[Any, ...]]:
    """Each (month, reviewer)'s sums of the daily rows, computed in Python."""
    m = ReviewMetric
    async with sessions() as session:
        rows = (await session.scalars(select(m).where(m.scope == "user"))).all()
    found: dict[tuple[date, int], list[Any]] = {}
    for row in sorted(rows, key=lambda r: r.day):
        sums = found.setdefault((month_bounds(row.day)[0], row.subject_id), [0] * 10)
        for i, name in enumerate(USER_FIGURES):
            sums[i] += getattr(row, name)
    return {
        k: tuple(round(x, 6) if isinstance(x, float) else x for x in v) for k, v in found.items()
    }


def assert_same_rollups(
    found: dict[tuple[date, int], tuple[Any, ...]],
    expected: dict[tuple[date, int], tuple[Any, ...]],
) -> None:
    assert found.keys() == expected.keys()
    for key, values in expected.items():
        assert found[key] == values, key


async def test_totals_over_rollups_equal_the_daily_sums(sessions: Sessions) -> None:
    await seed_random(sessions)
    first = await aggregate_range(sessions, FIRST, LAST, "UTC")
    # July (part), August, September, October, November (part): one row per reviewer
    assert first.rollups_written > 0 and first.rollups_deleted == 0
    made = await rollups(sessions)
    assert {month for month, _ in made} == {
        date(2026, 7, 1),
        date(2026, 8, 1),
        date(2026, 9, 1),
        date(2026, 10, 1),
        date(2026, 11, 1),
    }
    assert_same_rollups(made, await monthly_from_days(sessions))

    rng = random.Random(11)
    ranges = [
        (date(1970, 1, 1), LAST),  # "all"
        (date(2026, 8, 1), date(2026, 10, 31)),  # whole months only
        (date(2026, 9, 1), date(2026, 9, 30)),
        (date(2026, 8, 31), date(2026, 9, 1)),  # two edge days, no whole month
        (date(2026, 11, 1), date(2026, 11, 12)),  # "month" mid-month
        (date(2026, 12, 1), date(2026, 12, 31)),  # a whole month without any row
    ]
    for _ in range(40):
        a = FIRST - timedelta(days=20) + timedelta(days=rng.randrange(150))
        ranges.append((a, a + timedelta(days=rng.randrange(120))))
    async with sessions() as session:
        for start, end in ranges:
            for team in (None, "FRONTEND"):
                found = as_sums(await reviewer_totals(session, start, end, team=team))
                assert_equal_sums(found, await daily_sums(sessions, start, end, team))

    again = await aggregate_range(sessions, FIRST, LAST, "UTC")
    assert (again.written, again.deleted) == (0, 0)
    assert (again.rollups_written, again.rollups_deleted) == (0, 0)
    assert await rollups(sessions) == made


async def test_a_reaggregated_day_corrects_its_month(sessions: Sessions) -> None:
    """Moving a reviewer's only September assignment to another reviewer: re-aggregating
    that day deletes the first reviewer's September rollup and changes the other's."""
    await seed_random(sessions, assignments=40, seed=3)
    await aggregate_range(sessions, FIRST, LAST, "UTC")
    september = date(2026, 9, 1)
    a = ReviewerAssignment
    async with sessions.begin() as session:
        user = User(gitlab_username="zed", mattermost_username="mm-zed")
        session.add(user)
        await session.flush()
        moved = await session.scalar(
            select(a.id)
            .where(a.assigned_at >= datetime(2026, 9, 10, tzinfo=UTC))
            .order_by(a.assigned_at)
            .limit(1)
        )
        await session.execute(update(a).where(a.id == moved).values(user_id=user.id))
        assigned = await session.scalar(select(a.assigned_at).where(a.id == moved))
        zed = user.id
    assert assigned is not None
    day = assigned.date()
    async with sessions.begin() as session:
        done = await aggregate_day(session, day, "UTC")
    assert done.rollups_written >= 2  # zed's new row, the previous reviewer's smaller one
    assert (september, zed) in await rollups(sessions)
    assert_same_rollups(await rollups(sessions), await monthly_from_days(sessions))

    async with sessions.begin() as session:  # zed's assignment goes away altogether
        await session.execute(delete(a).where(a.id == moved))
    async with sessions.begin() as session:
        done = await aggregate_day(session, day, "UTC")
    assert done.rollups_deleted == 1
    assert (september, zed) not in await rollups(sessions)
    assert_same_rollups(await rollups(sessions), await monthly_from_days(sessions))


async def test_months_without_rollups_are_read_day_by_day(sessions: Sessions) -> None:
    """Daily rows written by other means (no aggregation, so no rollup) still count."""
    async with sessions.begin() as session:
        user = User(gitlab_username="amy")
        session.add(user)
        await session.flush()
        for day in (date(2026, 9, 1), date(2026, 9, 30), date(2026, 10, 15)):
            session.add(
                ReviewMetric(day=day, scope="user", subject_id=user.id, reviews_completed=2)
            )
    async with sessions() as session:
        (amy,) = await reviewer_totals(session, date(2026, 1, 1), date(2026, 12, 31))
        (september,) = await reviewer_totals(session, date(2026, 9, 1), date(2026, 9, 30))
    assert (amy.reviews_completed, september.reviews_completed) == (6, 4)


def test_the_migration_builds_the_rollups_from_the_daily_rows(database_url: URL) -> None:
    """A database at metrics_0001 with daily rows: upgrading fills the rollups."""
    migrate.upgrade(database_url, revision="metrics_0001")
    engine = create_engine(database_url)
    insert = (
        "INSERT INTO review_metrics (day, scope, subject_id, reviews_triggered,"
        " reviews_assigned, reviews_completed, reviews_other_teams, comments, comment_chars,"
        " ttfr_seconds_sum, ttfr_count, approval_seconds_sum, approval_count,"
        " engagement_score, updated_at)"
        " VALUES (:day, :scope, :subject, 0, 1, 1, 0, 2, 30, :ttfr, 1, 0.0, 0, 20.3,"
        " '2026-11-01 00:00:00')"
    )
    rows = [
        (date(2026, 9, 1), "user", 1, 1.5),
        (date(2026, 9, 30), "user", 1, 2.25),
        (date(2026, 10, 1), "user", 1, 4.0),
        (date(2026, 9, 2), "user", 2, 8.0),
        (date(2026, 9, 2), "team", 1, 100.0),  # not a reviewer's row
    ]
    try:
        with engine.begin() as connection:
            for day, scope, subject, ttfr in rows:
                connection.execute(
                    text(insert), {"day": day, "scope": scope, "subject": subject, "ttfr": ttfr}
                )
        migrate.upgrade(database_url)
        with engine.connect() as connection:
            found = connection.execute(
                text(
                    "SELECT month, subject_id, reviews_assigned, comments, ttfr_seconds_sum,"
                    " engagement_score FROM review_metrics_monthly ORDER BY month, subject_id"
                )
            ).all()
    finally:
        engine.dispose()
    assert [(date.fromisoformat(str(r[0])[:10]), *r[1:]) for r in found] == [
        (date(2026, 9, 1), 1, 2, 4, 3.75, pytest.approx(40.6)),
        (date(2026, 9, 1), 2, 1, 2, 8.0, pytest.approx(20.3)),
        (date(2026, 10, 1), 1, 1, 2, 4.0, pytest.approx(20.3)),
    ]
