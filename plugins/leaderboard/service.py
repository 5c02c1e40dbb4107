"""Rankings over the metrics area's reviewer totals, free of transport.

The totals come from :func:`plugins.metrics.api.reviewer_totals` (one query); the
ranking of those few hundred rows is done here: standard competition ranking (ties share
a rank, the next rank skips: 1, 1, 3), ties shown by username for a stable display.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import Team
from plugins.metrics.api import ReviewerTotals, period_range, reviewer_totals

BY = ("reviews", "engagement", "speed")  # speed: fastest average time to first review
PERIODS = ("day", "week", "month", "all")
# Values this close are a tie (engagement sums of floats differ in their last bits).
_TIE_DIGITS = 6


@dataclass(frozen=True)
class Entry:
    """One reviewer's place. ``username``: GitLab; ``mattermost``: the Mattermost name when
    known; ``team``: the reviewer's team; ``avg_ttfr_hours``: average hours to the first
    response (None without any); ``value``: what the ranking is by (reviews completed,
    engagement points, or average hours to the first response)."""

    rank: int
    username: str
    mattermost: str | None
    team: str | None
    reviews_completed: int
    engagement: float
    avg_ttfr_hours: float | None
    value: float


def check(period: str, by: str) -> None:
    """Raise ``ValueError`` (one line) for a period or a ranking not offered."""
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}: expected one of {', '.join(PERIODS)}")
    if by not in BY:
        raise ValueError(f"unknown ranking {by!r}: expected one of {', '.join(BY)}")


def _value(totals: ReviewerTotals, by: str) -> float | None:
    if by == "reviews":
        return float(totals.reviews_completed)
    if by == "engagement":
        return totals.engagement
    return totals.avg_ttfr_hours


def rank(totals: Sequence[ReviewerTotals], by: str) -> list[Entry]:
    """Every reviewer of ``totals`` ranked ``by`` ``reviews`` (completed reviews, most
    first), ``engagement`` (most first) or ``speed`` (shortest average time to first
    review first; reviewers without any first response are left out). Ties share a rank
    (1, 1, 3) and are ordered by username. Raises ``ValueError`` for another ``by``."""
    check("all", by)
    valued = [(value, t) for t in totals if (value := _value(t, by)) is not None]
    sign = 1.0 if by == "speed" else -1.0
    valued.sort(key=lambda vt: (sign * round(vt[0], _TIE_DIGITS), vt[1].username.casefold()))
    entries: list[Entry] = []
    for position, (value, t) in enumerate(valued, start=1):
        previous = entries[-1] if entries else None
        tied = previous is not None and round(previous.value, _TIE_DIGITS) == round(
            value, _TIE_DIGITS
        )
        entries.append(
            Entry(
                rank=previous.rank if tied and previous is not None else position,
                username=t.username,
                mattermost=t.mattermost,
                team=t.team,
                reviews_completed=t.reviews_completed,
                engagement=t.engagement,
                avg_ttfr_hours=t.avg_ttfr_hours,
                value=value,
            )
        )
    return entries


async def team_name(session: AsyncSession, team: str) -> str:
    """The stored name of team ``team`` (case-insensitive); ``LookupError`` when none."""
    found = await session.scalar(select(Team.name).where(func.lower(Team.name) == team.lower()))
    if found is None:
        raise LookupError(f"unknown team {team!r}")
    return found


async def ranking(
    session: AsyncSession, *, team: str | None, period: str, by: str, today: date
) -> list[Entry]:
    """The whole ranking (see ``rank``) of ``team``'s reviewers (None: everyone) over
    ``period`` (``day``, ``week``, ``month``, ``all``) up to ``today``. Raises
    ``ValueError`` for a bad period or ranking, ``LookupError`` for an unknown team."""
    check(period, by)
    if team is not None:
        team = await team_name(session, team)
    start, end = period_range(period, today)
    return rank(await reviewer_totals(session, start, end, team=team), by)
