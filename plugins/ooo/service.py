"""Out-of-office periods: recording, listing and cancelling them. No transport.

A period belongs to a member of the organisation: an active ``users`` row whose
Mattermost username matches (case-insensitive). Both dates are included and are days in
the member's own timezone; "today" is the caller's business (``local_today`` works it
out), so that the rules can be tested on any day.

Every refusal raises ``OooError``, naming the field at fault and the problem; the
plugin turns it into a sentence in the reader's language. Writes happen in one
transaction that first locks the member's row, so that two requests at once cannot both
pass the overlap check (PostgreSQL: a row lock; SQLite: the database's write lock).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db import utcnow
from bot.models import User
from bot.settings import Settings
from plugins.ooo.models import OooStatus

REASON_LIMIT = 255  # ooo_status.reason is VARCHAR(255)

Field = Literal["start", "end", "reason", "user", "period"]
Problem = Literal[
    "missing",  # no date given
    "malformed",  # not YYYY-MM-DD (nor today / tomorrow)
    "reversed",  # the end is before the start
    "past",  # the end is before today
    "overlap",  # another of the member's periods covers some of these days
    "too_long",  # the reason is over REASON_LIMIT characters
    "not_member",  # the chat user is not in the organisation
    "not_found",  # no such period among the member's own
    "cancelled",  # the period was already cancelled
    "over",  # the period is in the past
    "none",  # nothing current or upcoming to cancel
]

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_TODAY = frozenset({"today", "aujourd'hui"})
_TOMORROW = frozenset({"tomorrow", "demain"})


@dataclass(frozen=True)
class Period:
    id: int
    start: date
    end: date
    reason: str | None = None
    cancelled_at: datetime | None = None


class OooError(Exception):
    """A refused request: which field is at fault, what the problem is, and its details."""

    def __init__(
        self,
        field: Field,
        problem: Problem,
        *,
        value: str = "",
        period: Period | None = None,
        start: date | None = None,
        end: date | None = None,
        today: date | None = None,
    ) -> None:
        super().__init__(f"{field}: {problem}" + (f" ({value})" if value else ""))
        self.field = field
        self.problem = problem
        self.value = value
        self.period = period
        self.start = start
        self.end = end
        self.today = today


def parse_day(text: str | None, field: Field, today: date) -> date:
    """``YYYY-MM-DD``, ``today`` or ``tomorrow``; anything else is refused for ``field``."""
    value = (text or "").strip()
    if not value:
        raise OooError(field, "missing")
    word = value.casefold().replace("\u2019", "'")  # a typographic apostrophe too
    if word in _TODAY:
        return today
    if word in _TOMORROW:
        return today + timedelta(days=1)
    if _ISO_DAY.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise OooError(field, "malformed", value=value)


def clean_reason(text: str | None) -> str | None:
    """The reason without surrounding blanks; ``None`` when empty; refused when too long."""
    reason = (text or "").strip()
    if len(reason) > REASON_LIMIT:
        raise OooError("reason", "too_long", value=str(len(reason)))
    return reason or None


def zone(name: str | None) -> tzinfo | None:
    """The timezone called ``name``, or ``None`` when there is none or it is unknown."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _member(username: str) -> ColumnElement[bool]:
    return (func.lower(User.mattermost_username) == username.strip().lstrip("@").lower()) & (
        User.is_active.is_(True)
    )


def _period(row: OooStatus) -> Period:
    return Period(row.id, row.start_date, row.end_date, row.reason, row.cancelled_at)


def _live(user_id: int) -> ColumnElement[bool]:
    return (OooStatus.user_id == user_id) & OooStatus.cancelled_at.is_(None)


class OooService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings | None = None
    ) -> None:
        self.sessions = sessions
        # The configured timezones (the configuration is the source of truth; the
        # database mirrors it after ``sync-users``), by GitLab username.
        self._configured = {
            u.gitlab.lower(): u.timezone for u in (settings.users if settings else ()) if u.timezone
        }

    async def local_today(
        self, username: str, timezone: str | None = None, *, now: datetime | None = None
    ) -> date:
        """Today for this member: in ``timezone`` (their chat's), else their configured or
        stored one, else UTC. Refuses someone who is not in the organisation."""
        async with self.sessions() as session:
            row = (
                await session.execute(
                    select(User.gitlab_username, User.timezone).where(_member(username))
                )
            ).first()
        if row is None:
            raise OooError("user", "not_member", value=username)
        gitlab_username, stored = row
        where = (
            zone(timezone)
            or zone(self._configured.get(str(gitlab_username).lower()))
            or zone(stored)
            or UTC
        )
        return (now or utcnow()).astimezone(where).date()

    async def record(
        self, username: str, start: date, end: date, reason: str | None, today: date
    ) -> Period:
        """Record ``start``..``end`` (both included) for the member; refused when the dates
        are reversed, already past, or overlap one of their periods not cancelled."""
        reason = clean_reason(reason)
        if end < start:
            raise OooError("end", "reversed", start=start, end=end)
        if end < today:
            raise OooError("end", "past", end=end, today=today)
        async with self.sessions.begin() as session:
            user_id = await _lock_member(session, username)
            clash = await session.scalar(
                select(OooStatus)
                .where(_live(user_id), OooStatus.start_date <= end, OooStatus.end_date >= start)
                .order_by(OooStatus.start_date, OooStatus.id)
                .limit(1)
            )
            if clash is not None:
                raise OooError("start", "overlap", period=_period(clash), start=start, end=end)
            row = OooStatus(user_id=user_id, start_date=start, end_date=end, reason=reason)
            session.add(row)
            await session.flush()
            return _period(row)

    async def periods(self, username: str, today: date) -> list[Period]:
        """The member's current and upcoming periods (not cancelled), soonest first."""
        async with self.sessions() as session:
            user_id = await session.scalar(select(User.id).where(_member(username)))
            if user_id is None:
                raise OooError("user", "not_member", value=username)
            rows = await session.scalars(
                select(OooStatus)
                .where(_live(user_id), OooStatus.end_date >= today)
                .order_by(OooStatus.start_date, OooStatus.id)
            )
            return [_period(row) for row in rows.all()]

    async def cancel(self, username: str, period_id: int | None, today: date) -> Period:
        """Cancel one of the member's periods: ``period_id``, else the current one, else the
        next. The row stays, with ``cancelled_at`` set."""
        async with self.sessions.begin() as session:
            user_id = await _lock_member(session, username)
            if period_id is None:
                row = await _current_or_next(session, user_id, today)
                if row is None:
                    raise OooError("period", "none", today=today)
            else:
                row = await session.get(OooStatus, period_id)
                if row is None or row.user_id != user_id:
                    raise OooError("period", "not_found", value=str(period_id))
                if row.cancelled_at is not None:
                    raise OooError("period", "cancelled", period=_period(row))
                if row.end_date < today:
                    raise OooError("period", "over", period=_period(row), today=today)
            row.cancelled_at = utcnow()
            await session.flush()
            return _period(row)


async def _lock_member(session: AsyncSession, username: str) -> int:
    """The member's id, their row locked until the transaction ends.

    A write that changes nothing: on PostgreSQL it takes the row lock, on SQLite it opens
    the write transaction before anything is read (a SELECT would not), so that the
    checks that follow see every period committed before and none committed after.
    """
    user_id = await session.scalar(
        update(User)
        .where(_member(username))
        .values(updated_at=User.updated_at)
        .returning(User.id)
        .execution_options(synchronize_session=False)
    )
    if user_id is None:
        raise OooError("user", "not_member", value=username)
    return int(user_id)


async def _current_or_next(session: AsyncSession, user_id: int, today: date) -> OooStatus | None:
    # A current period started on or before today, an upcoming one after: the earliest
    # start among those not over yet is the current period if there is one, else the next.
    return await session.scalar(
        select(OooStatus)
        .where(_live(user_id), OooStatus.end_date >= today)
        .order_by(OooStatus.start_date, OooStatus.id)
        .limit(1)
    )
