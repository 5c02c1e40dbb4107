"""What other feature areas may ask the badges area: the catalogue, holders, awards,
and defining a badge (the admin API).

Other areas never read ``badges``, ``user_badges`` or ``badge_progress``; they call these
functions in their own session (``define`` writes: the caller commits). Names and
descriptions are as stored (English for the defaults); ``period`` of a ``BadgeInfo`` is
the span judged (``day``, ``week``, ``month``, ``all``), that of an ``Award`` the period
it was earned for (``2026-11``, ``2026-W48``, ``2026-11-30``, ``all``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import User
from plugins.badges import service
from plugins.badges.models import Badge, UserBadge


@dataclass(frozen=True)
class BadgeInfo:
    """A badge definition and how many people hold it (in any period).

    ``metric`` is a ``ReviewerTotals`` field or property; ``operator`` one of ``< <= > >=
    == top`` (``top``: among the ``value`` best); ``min_reviews`` the completed reviews
    needed in the period.
    """

    slug: str
    name: str
    description: str
    emoji: str
    metric: str
    operator: str
    value: float
    period: str
    min_reviews: int
    holders: int


@dataclass(frozen=True)
class Award:
    """A badge earned: which (slug, name, emoji), by whom (GitLab username), for which
    period, and when (UTC)."""

    slug: str
    name: str
    emoji: str
    username: str
    period: str
    awarded_at: datetime


def _info(badge: Badge, holders: int) -> BadgeInfo:
    return BadgeInfo(
        slug=badge.slug,
        name=badge.name,
        description=badge.description,
        emoji=badge.emoji,
        metric=badge.metric,
        operator=badge.operator,
        value=badge.value,
        period=badge.period,
        min_reviews=badge.min_reviews,
        holders=holders,
    )


def _award(badge: Badge, award: UserBadge, user: User) -> Award:
    return Award(
        slug=badge.slug,
        name=badge.name,
        emoji=badge.emoji,
        username=user.gitlab_username,
        period=award.period,
        awarded_at=award.awarded_at,
    )


async def catalogue(session: AsyncSession) -> list[BadgeInfo]:
    """Every active badge, in definition order."""
    return [_info(badge, n) for badge, n in await service.active_badges(session)]


async def badge(session: AsyncSession, slug: str) -> BadgeInfo | None:
    """The badge ``slug`` (active or not), or None when there is none."""
    found = await session.scalar(select(Badge).where(Badge.slug == slug))
    if found is None:
        return None
    holders = await session.scalar(
        select(func.count(func.distinct(UserBadge.user_id))).where(UserBadge.badge_id == found.id)
    )
    return _info(found, int(holders or 0))


async def holders(session: AsyncSession, slug: str) -> list[Award]:
    """Every award of the badge ``slug``, newest first (empty for an unknown slug)."""
    return [_award(*row) for row in await service.awards(session, badge_slug=slug)]


async def user_badges(session: AsyncSession, username: str) -> list[Award]:
    """The awards of the user ``username`` (GitLab or Mattermost name, any case), newest
    first; empty for an unknown user."""
    user = await service.find_user(session, username)
    if user is None:
        return []
    return [_award(*row) for row in await service.awards(session, user=user)]


async def recent_awards(session: AsyncSession, limit: int = 10) -> list[Award]:
    """The latest ``limit`` awards of every badge, newest first."""
    return [_award(*row) for row in await service.awards(session, limit=max(limit, 0))]


async def define(session: AsyncSession, definition: Mapping[str, Any]) -> BadgeInfo:
    """Create or change a badge definition. Keys: ``name``, ``metric``, ``operator``,
    ``value``, and optionally ``slug`` (default: from the name; a default badge's name
    changes that badge), ``description``, ``emoji``, ``period`` (default ``month``),
    ``min_reviews`` (default 0). Raises ``ValueError`` with a one-line reason naming the
    field for a bad definition. The change outlives restarts unless the ``badges:``
    configuration names the same badge."""
    stored = await service.define(session, definition)
    info = await badge(session, stored.slug)
    assert info is not None  # just written
    return info
