"""The badges area's tables, on the shared metadata: definitions, awards, progress.

Created by the area's own migrations (``plugins/badges/migrations/``). Other areas do not
read them: they ask ``plugins.badges.api``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base, UTCDateTime, utcnow

#: Where a definition comes from: the built-in defaults, the ``badges:`` configuration, or
#: ``api.define`` (the admin API). A definition changed through the API is not reset at start.
SOURCES = ("default", "config", "api")


class Badge(Base):
    """A badge definition: ``metric operator value`` over ``period``, with at least
    ``min_reviews`` completed reviews (``operator`` ``top``: among the ``value`` best)."""

    __tablename__ = "badges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    emoji: Mapped[str] = mapped_column(String(64), default="")
    metric: Mapped[str] = mapped_column(String(32))
    operator: Mapped[str] = mapped_column(String(4))
    value: Mapped[float] = mapped_column(Float)
    period: Mapped[str] = mapped_column(String(8))
    min_reviews: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(8), default="default")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class UserBadge(Base):
    """A badge awarded to a user for one period (``2026-11``, ``2026-W48``, ``2026-11-30``
    or ``all``); at most one per (user, badge, period)."""

    __tablename__ = "user_badges"
    __table_args__ = (
        UniqueConstraint("user_id", "badge_id", "period"),
        Index("ix_user_badges_badge_id_awarded_at", "badge_id", "awarded_at"),
        Index("ix_user_badges_awarded_at", "awarded_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    badge_id: Mapped[int] = mapped_column(ForeignKey("badges.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(16))
    awarded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str | None] = mapped_column(String(255))


class BadgeProgress(Base):
    """Where a user stands on a badge in a period, as of the last evaluation: the metric's
    ``value`` (None without data, e.g. no first response yet), completed ``reviews``, and
    whether the criterion is ``met``."""

    __tablename__ = "badge_progress"
    __table_args__ = (UniqueConstraint("user_id", "badge_id", "period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    badge_id: Mapped[int] = mapped_column(ForeignKey("badges.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    reviews: Mapped[int] = mapped_column(Integer, default=0)
    met: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
