"""What other feature areas may ask the ooo area: who is away.

Other areas never read ``ooo_status``; they call these functions (in the caller's session,
so the answer is part of the caller's transaction). A recorded period takes effect at once:
nothing here is cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import translator
from bot.models import User
from bot.settings import Settings
from plugins.ooo.models import OooStatus
from plugins.ooo.plugin import explain
from plugins.ooo.service import OooError, OooService, parse_day

# Statements built once (a pick asks both): building one costs more than running it.
# The periods not cancelled that overlap the dates ``first`` to ``last``, by username.
_AWAY_BETWEEN = (
    select(User.gitlab_username, OooStatus.start_date, OooStatus.end_date)
    .join(OooStatus, OooStatus.user_id == User.id)
    .where(
        OooStatus.cancelled_at.is_(None),
        OooStatus.start_date <= bindparam("last"),
        OooStatus.end_date >= bindparam("first"),
    )
)
# The same, for the lower-cased usernames ``names`` only.
_AWAY_OF = _AWAY_BETWEEN.where(
    func.lower(User.gitlab_username).in_(bindparam("names", expanding=True))
)


def local_day(timezone: str | None, now: datetime) -> date:
    """The date at ``now`` (aware) in ``timezone`` (an IANA name; UTC when None)."""
    return now.astimezone(ZoneInfo(timezone) if timezone else UTC).date()


async def away_now(
    session: AsyncSession, timezones: Mapping[str, str | None], now: datetime
) -> set[str]:
    """The GitLab usernames (as stored) of the people out of office on their own today.

    ``timezones`` maps a GitLab username to its IANA zone (None: UTC); a period counts
    when its dates (both included) hold the person's local date at ``now``. People missing
    from ``timezones`` are judged in UTC.
    """
    utc_today = now.astimezone(UTC).date()
    # Around today in UTC: every zone's "today" is within a day of it.
    around = {"last": utc_today + timedelta(days=1), "first": utc_today - timedelta(days=1)}
    rows = await session.execute(_AWAY_BETWEEN, around)
    away: set[str] = set()
    for username, start, end in rows.all():
        if start <= local_day(timezones.get(username), now) <= end:
            away.add(str(username))
    return away


async def away_days(session: AsyncSession, username: str, start: date, end: date) -> set[date]:
    """The days from ``start`` to ``end`` (both included) that ``username`` (GitLab
    username, any case) spends in a recorded out-of-office period (not cancelled); days
    are the person's own calendar days, as the periods are. Empty for an unknown user or
    reversed dates."""
    return (await away_days_of(session, {username: (start, end)})).get(username, set())


async def away_days_of(
    session: AsyncSession, spans: Mapping[str, tuple[date, date]]
) -> dict[str, set[date]]:
    """``away_days`` for several people in one query: ``spans`` maps a GitLab username
    (any case) to its (start, end) dates, both included; the answer has every key of
    ``spans``, each with the days of its own span that person is away (empty for an
    unknown user or reversed dates)."""
    result: dict[str, set[date]] = {name: set() for name in spans}
    wanted = {name.lower(): name for name, (start, end) in spans.items() if start <= end}
    if not wanted:
        return result
    first_day = min(spans[name][0] for name in wanted.values())
    last_day = max(spans[name][1] for name in wanted.values())
    rows = await session.execute(
        _AWAY_OF, {"names": sorted(wanted), "first": first_day, "last": last_day}
    )
    for username, first, last in rows.all():
        name = wanted[str(username).lower()]
        start, end = spans[name]
        day = max(first, start)
        while day <= min(last, end):
            result[name].add(day)
            day += timedelta(days=1)
    return result


class Refused(ValueError):
    """A period ``record`` would not record: ``str(error)`` is the reason, one line in the
    reader's language (the sentence ``/ooo`` answers); ``field`` is the field at fault
    (``start``, ``end``, ``reason``, ``user``), ``problem`` the service's code for it."""

    def __init__(self, message: str, field: str, problem: str) -> None:
        super().__init__(message)
        self.field = field
        self.problem = problem


async def record(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    user: str,
    start: str,
    end: str,
    reason: str | None = None,
    *,
    now: datetime | None = None,
    locale: str | None = None,
) -> dict[str, Any]:
    """Record an out-of-office period for ``user`` with the rules of ``/ooo``.

    ``user`` is a member's Mattermost or GitLab username (``@`` allowed, any case);
    ``start`` and ``end`` are ``YYYY-MM-DD`` (or ``today``/``tomorrow``), both included,
    days in the member's timezone (``now``: the clock, UTC-aware; default the current
    time). Returns ``{"id", "user", "start", "end", "reason"}`` (dates ISO, ``user`` the
    GitLab username). Runs in its own transaction.

    Raises:
        Refused: reversed or past dates, an overlap with another period, a reason over
            255 characters, an unknown member, a malformed date; the message is the one
            ``/ooo`` gives, in ``locale`` (default: the configured locale).
    """
    _ = translator(locale or settings.locale)
    service = OooService(sessions, settings)
    name = user.strip().lstrip("@").lower()
    async with sessions() as session:
        found = (
            await session.execute(
                select(User.gitlab_username, User.mattermost_username).where(
                    User.is_active.is_(True),
                    or_(
                        func.lower(User.mattermost_username) == name,
                        func.lower(User.gitlab_username) == name,
                    ),
                )
            )
        ).first()
    try:
        if found is None or not found[1]:
            raise OooError("user", "not_member", value=user.strip()[:100])
        gitlab_username, mattermost_username = str(found[0]), str(found[1])
        today = await service.local_today(mattermost_username, now=now)
        first = parse_day(start, "start", today)
        last = parse_day(end, "end", today)
        period = await service.record(mattermost_username, first, last, reason, today)
    except OooError as e:
        raise Refused(explain(e, _), e.field, e.problem) from e
    return {
        "id": period.id,
        "user": gitlab_username,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "reason": period.reason,
    }
