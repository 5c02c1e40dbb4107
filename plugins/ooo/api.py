"""What other feature areas may ask the ooo area: who is away.

Other areas never read ``ooo_status``; they call these functions (in the caller's session,
so the answer is part of the caller's transaction). A recorded period takes effect at once:
nothing here is cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import User
from plugins.ooo.models import OooStatus


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
    rows = await session.execute(
        select(User.gitlab_username, OooStatus.start_date, OooStatus.end_date)
        .join(OooStatus, OooStatus.user_id == User.id)
        .where(
            OooStatus.cancelled_at.is_(None),
            # Around today in UTC: every zone's "today" is within a day of it.
            OooStatus.start_date <= utc_today + timedelta(days=1),
            OooStatus.end_date >= utc_today - timedelta(days=1),
        )
    )
    away: set[str] = set()
    for username, start, end in rows.all():
        if start <= local_day(timezones.get(username), now) <= end:
            away.add(str(username))
    return away
