"""What other feature areas may ask the leaderboard area: the rankings."""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from plugins.leaderboard.service import BY, PERIODS, Entry, ranking

__all__ = ["BY", "PERIODS", "Entry", "leaderboard"]


async def leaderboard(
    session: AsyncSession, *, team: str | None, period: str, by: str, today: date, limit: int = 100
) -> list[Entry]:
    """The top ``limit`` reviewers of ``team`` (None: everyone; its name is compared
    case-insensitively) over ``period`` (``day``, ``week`` (ISO, from Monday), ``month``
    or ``all``, each up to ``today``), ranked ``by`` ``reviews`` (completed, most first),
    ``engagement`` (most first) or ``speed`` (fastest average time to first review first;
    people without any first response left out). Ties share a rank (1, 1, 3), ordered by
    username. Read from the metrics area's daily aggregates in the caller's session.

    Raises ``ValueError`` (one line) for a bad ``period`` or ``by``, ``LookupError`` for a
    team that does not exist.
    """
    return (await ranking(session, team=team, period=period, by=by, today=today))[:limit]
