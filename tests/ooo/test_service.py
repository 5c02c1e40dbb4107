"""The out-of-office rules against the database (both engines)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db import create_engine, create_sessionmaker
from bot.models import User
from bot.settings import Settings
from bot.users import sync_organisation
from plugins.ooo.models import OooStatus
from plugins.ooo.service import REASON_LIMIT, OooError, OooService, Period, parse_day
from tests.conftest import settings_for

Sessions = async_sessionmaker[AsyncSession]

# Wednesday 25 November 2026, 11:30 UTC: already Thursday 26th, 00:30, in Auckland.
NOW = datetime(2026, 11, 25, 11, 30, tzinfo=UTC)
TODAY = date(2026, 11, 25)

TEAMS: list[dict[str, Any]] = [{"name": "backend"}]
USERS: list[dict[str, Any]] = [
    {"gitlab": "alice", "mattermost": "Alice.M", "team": "backend"},
    {"gitlab": "bob", "team": "backend"},
    {"gitlab": "kiri", "team": "backend", "timezone": "Pacific/Auckland"},
]


def day(n: int) -> date:
    """The ``n``-th of December 2026."""
    return date(2026, 12, n)


@pytest.fixture
def org(migrated_url: URL) -> Settings:
    return settings_for(migrated_url, teams=TEAMS, users=USERS)


@pytest.fixture
async def sessions(org: Settings) -> AsyncIterator[Sessions]:
    engine = create_engine(org.async_database_url)
    made = create_sessionmaker(engine)
    await sync_organisation(made, org)
    async with made.begin() as session:  # someone who left: no longer a member
        session.add(User(gitlab_username="gone", mattermost_username="gone", is_active=False))
    yield made
    await engine.dispose()


@pytest.fixture
def service(sessions: Sessions, org: Settings) -> OooService:
    return OooService(sessions, org)


async def _rows(sessions: Sessions) -> list[tuple[str, date, date, str | None, bool]]:
    async with sessions() as session:
        rows = await session.execute(
            select(
                User.gitlab_username,
                OooStatus.start_date,
                OooStatus.end_date,
                OooStatus.reason,
                OooStatus.cancelled_at.is_not(None),
            )
            .join(User, User.id == OooStatus.user_id)
            .order_by(OooStatus.id)
        )
        return [(str(n), s, e, r, bool(c)) for n, s, e, r, c in rows.all()]


async def _refused(call: Any) -> OooError:
    with pytest.raises(OooError) as caught:
        await call
    return caught.value


# ----------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01", day(1)),
        (" 2026-12-31 ", day(31)),
        ("today", TODAY),
        ("Today", TODAY),
        ("tomorrow", TODAY + timedelta(days=1)),
        ("aujourd'hui", TODAY),
        ("demain", TODAY + timedelta(days=1)),
    ],
)
def test_days_are_iso_dates_or_today_and_tomorrow(text: str, expected: date) -> None:
    assert parse_day(text, "start", TODAY) == expected


@pytest.mark.parametrize("text", ["2026-02-30", "20261201", "2026-12-1", "01/12/2026", "soon"])
def test_malformed_days_are_refused_for_their_field(text: str) -> None:
    with pytest.raises(OooError) as caught:
        parse_day(text, "end", TODAY)
    assert (caught.value.field, caught.value.problem, caught.value.value) == (
        "end",
        "malformed",
        text,
    )


def test_a_missing_day_is_refused() -> None:
    with pytest.raises(OooError) as caught:
        parse_day("  ", "start", TODAY)
    assert (caught.value.field, caught.value.problem) == ("start", "missing")


# ----------------------------------------------------------------- recording


async def test_record_stores_a_period(service: OooService, sessions: Sessions) -> None:
    period = await service.record("alice.m", day(1), day(5), "  Family holiday ", TODAY)
    assert (period.start, period.end, period.reason, period.cancelled_at) == (
        day(1),
        day(5),
        "Family holiday",
        None,
    )
    assert await _rows(sessions) == [("alice", day(1), day(5), "Family holiday", False)]
    # The Mattermost username matches whatever its case; a blank reason is no reason.
    second = await service.record("@ALICE.M", day(10), day(10), "   ", TODAY)
    assert second.reason is None and second.id != period.id


async def test_a_period_may_have_started_but_not_ended_before_today(
    service: OooService, sessions: Sessions
) -> None:
    await service.record("bob", TODAY - timedelta(days=2), TODAY, None, TODAY)
    error = await _refused(
        service.record("bob", TODAY - timedelta(days=3), TODAY - timedelta(days=1), None, TODAY)
    )
    assert (error.field, error.problem, error.end, error.today) == (
        "end",
        "past",
        TODAY - timedelta(days=1),
        TODAY,
    )
    assert len(await _rows(sessions)) == 1


async def test_reversed_dates_are_refused(service: OooService, sessions: Sessions) -> None:
    error = await _refused(service.record("bob", day(5), day(1), None, TODAY))
    assert (error.field, error.problem, error.start, error.end) == (
        "end",
        "reversed",
        day(5),
        day(1),
    )
    assert await _rows(sessions) == []


async def test_a_reason_over_the_limit_is_refused(service: OooService, sessions: Sessions) -> None:
    error = await _refused(service.record("bob", day(1), day(2), "x" * 256, TODAY))
    assert (error.field, error.problem, error.value) == ("reason", "too_long", "256")
    assert await _rows(sessions) == []
    period = await service.record("bob", day(1), day(2), "é" * REASON_LIMIT, TODAY)
    assert period.reason == "é" * REASON_LIMIT  # characters, not bytes, on both engines


async def test_overlapping_periods_are_refused_adjacent_ones_are_fine(
    service: OooService, sessions: Sessions
) -> None:
    first = await service.record("bob", day(1), day(5), "conference", TODAY)
    november_28 = date(2026, 11, 28)
    for start, end in (
        (day(5), day(8)),  # shares the last day
        (november_28, day(1)),  # shares the first day
        (day(2), day(3)),  # inside
        (november_28, day(30)),  # around
        (day(1), day(5)),  # the same
    ):
        error = await _refused(service.record("bob", start, end, None, TODAY))
        assert (error.field, error.problem, error.period) == ("start", "overlap", first)
        assert error.period == Period(first.id, day(1), day(5), "conference")
    # The day after the last day, and the day before the first, are free.
    await service.record("bob", day(6), day(9), None, TODAY)
    await service.record("bob", date(2026, 11, 30), date(2026, 11, 30), None, TODAY)
    # Someone else's periods are theirs.
    await service.record("alice.m", day(1), day(5), None, TODAY)
    assert [(n, s, e) for n, s, e, _, _ in await _rows(sessions)] == [
        ("bob", day(1), day(5)),
        ("bob", day(6), day(9)),
        ("bob", date(2026, 11, 30), date(2026, 11, 30)),
        ("alice", day(1), day(5)),
    ]


async def test_the_overlap_names_the_earliest_clashing_period(service: OooService) -> None:
    await service.record("bob", day(10), day(12), None, TODAY)
    early = await service.record("bob", day(3), day(4), None, TODAY)
    error = await _refused(service.record("bob", day(1), day(20), None, TODAY))
    assert error.period == early


async def test_cancelled_periods_do_not_count_for_overlap(
    service: OooService, sessions: Sessions
) -> None:
    first = await service.record("bob", day(1), day(5), None, TODAY)
    await service.cancel("bob", first.id, TODAY)
    again = await service.record("bob", day(3), day(7), None, TODAY)
    assert again.id != first.id
    assert [(s, e, c) for _, s, e, _, c in await _rows(sessions)] == [
        (day(1), day(5), True),
        (day(3), day(7), False),
    ]


async def test_only_members_of_the_organisation_may_record(
    service: OooService, sessions: Sessions
) -> None:
    for name in ("stranger", "gone", "alice"):  # alice's Mattermost name is alice.m
        error = await _refused(service.record(name, day(1), day(2), None, TODAY))
        assert (error.field, error.problem, error.value) == ("user", "not_member", name)
        with pytest.raises(OooError):
            await service.periods(name, TODAY)
        with pytest.raises(OooError):
            await service.local_today(name, now=NOW)
    assert await _rows(sessions) == []


async def test_two_overlapping_requests_at_once_record_one(
    service: OooService, sessions: Sessions
) -> None:
    outcomes = await asyncio.gather(
        *(service.record("bob", day(1), day(n), None, TODAY) for n in range(3, 8)),
        return_exceptions=True,
    )
    recorded = [o for o in outcomes if isinstance(o, Period)]
    refused = [o for o in outcomes if isinstance(o, OooError)]
    assert len(recorded) == 1 and len(refused) == 4, outcomes
    assert {e.problem for e in refused} == {"overlap"}
    assert len(await _rows(sessions)) == 1


# ----------------------------------------------------------------- today, where the user is


async def test_today_is_in_the_users_timezone(service: OooService, sessions: Sessions) -> None:
    # kiri's configured timezone is Pacific/Auckland; bob has none (UTC).
    assert await service.local_today("kiri", now=NOW) == date(2026, 11, 26)
    assert await service.local_today("bob", now=NOW) == date(2026, 11, 25)
    # The chat's own timezone comes first; an unknown one is ignored.
    assert await service.local_today("kiri", "UTC", now=NOW) == date(2026, 11, 25)
    assert await service.local_today("bob", "Pacific/Auckland", now=NOW) == date(2026, 11, 26)
    assert await service.local_today("kiri", "Mars/Olympus", now=NOW) == date(2026, 11, 26)
    # Just before midnight in Auckland (10:59 UTC), it is still the 25th there too.
    before = NOW - timedelta(minutes=31)
    assert await service.local_today("kiri", now=before) == date(2026, 11, 25)

    # Recording "today" for each: the 25th is already past for kiri, not for bob.
    kiri_today = await service.local_today("kiri", now=NOW)
    error = await _refused(service.record("kiri", TODAY, TODAY, None, kiri_today))
    assert error.problem == "past"
    await service.record("kiri", kiri_today, kiri_today, None, kiri_today)
    bob_today = await service.local_today("bob", now=NOW)
    await service.record("bob", bob_today, bob_today, None, bob_today)
    assert [(n, s) for n, s, _, _, _ in await _rows(sessions)] == [
        ("kiri", date(2026, 11, 26)),
        ("bob", date(2026, 11, 25)),
    ]


async def test_the_stored_timezone_serves_when_none_is_configured(
    sessions: Sessions, org: Settings
) -> None:
    async with sessions.begin() as session:
        await session.execute(
            update(User).where(User.gitlab_username == "bob").values(timezone="Pacific/Auckland")
        )
        await session.execute(
            update(User).where(User.gitlab_username == "kiri").values(timezone=None)
        )
    with_config, without = OooService(sessions, org), OooService(sessions)
    assert await with_config.local_today("bob", now=NOW) == date(2026, 11, 26)
    # The configuration is the source of truth: kiri is in Auckland until the next sync.
    assert await with_config.local_today("kiri", now=NOW) == date(2026, 11, 26)
    assert await without.local_today("kiri", now=NOW) == date(2026, 11, 25)


# ----------------------------------------------------------------- listing


async def test_list_shows_current_and_upcoming_periods(service: OooService) -> None:
    past = await service.record(
        "bob", TODAY - timedelta(days=9), TODAY - timedelta(days=5), None, TODAY - timedelta(days=9)
    )
    later = await service.record("bob", day(20), day(24), "holiday", TODAY)
    current = await service.record(
        "bob", TODAY - timedelta(days=1), TODAY + timedelta(days=1), None, TODAY
    )
    cancelled = await service.record("bob", day(2), day(3), None, TODAY)
    await service.cancel("bob", cancelled.id, TODAY)
    await service.record("alice.m", day(5), day(6), None, TODAY)
    assert await service.periods("bob", TODAY) == [current, later]
    assert past not in await service.periods("bob", TODAY)
    assert await service.periods("kiri", TODAY) == []


# ----------------------------------------------------------------- cancelling


async def test_cancel_by_id_keeps_the_history(service: OooService, sessions: Sessions) -> None:
    period = await service.record("bob", day(1), day(5), "conference", TODAY)
    cancelled = await service.cancel("bob", period.id, TODAY)
    assert cancelled.id == period.id and cancelled.cancelled_at is not None
    assert await _rows(sessions) == [("bob", day(1), day(5), "conference", True)]
    assert await service.periods("bob", TODAY) == []
    error = await _refused(service.cancel("bob", period.id, TODAY))
    assert (error.field, error.problem, error.period) == ("period", "cancelled", cancelled)


async def test_only_ones_own_periods_can_be_cancelled(
    service: OooService, sessions: Sessions
) -> None:
    theirs = await service.record("alice.m", day(1), day(5), None, TODAY)
    for period_id in (theirs.id, theirs.id + 100):
        error = await _refused(service.cancel("bob", period_id, TODAY))
        assert (error.field, error.problem, error.value) == ("period", "not_found", str(period_id))
    error = await _refused(service.cancel("stranger", theirs.id, TODAY))
    assert error.problem == "not_member"
    assert await _rows(sessions) == [("alice", day(1), day(5), None, False)]


async def test_a_period_that_is_over_cannot_be_cancelled(service: OooService) -> None:
    old = await service.record("bob", date(2026, 11, 1), date(2026, 11, 3), None, date(2026, 11, 1))
    error = await _refused(service.cancel("bob", old.id, TODAY))
    assert (error.problem, error.period) == ("over", old)


async def test_cancel_without_id_takes_the_current_period_else_the_next(
    service: OooService,
) -> None:
    next_one = await service.record("bob", day(10), day(12), None, TODAY)
    after = await service.record("bob", day(20), day(22), None, TODAY)
    current = await service.record("bob", TODAY, day(1), None, TODAY)
    assert (await service.cancel("bob", None, TODAY)).id == current.id
    assert (await service.cancel("bob", None, TODAY)).id == next_one.id
    assert (await service.cancel("bob", None, TODAY)).id == after.id
    error = await _refused(service.cancel("bob", None, TODAY))
    assert (error.field, error.problem) == ("period", "none")
