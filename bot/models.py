"""The bot's tables. The schema changes only through Alembic revisions in ``migrations/``.

Every timestamp is timezone-aware UTC (``UTCDateTime``). Indexes follow the queries the
features make: active reviews per user, recent assignments per user, open MRs, daily
metrics per day, pending webhook deliveries, badge holders.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.db import Base, UTCDateTime, utcnow

ROLES = ("maintainer", "reviewer", "trainee")
ASSIGNMENT_ROLES = ("codeowner", "team", "external", "manual")
ASSIGNMENT_STATES = ("active", "approved", "completed", "removed", "abandoned")
REVIEW_STATES = ("open", "merged", "closed")
INBOX_STATES = ("pending", "processing", "done", "dead", "ignored")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Team(Timestamped, Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    channel: Mapped[str | None] = mapped_column(String(100))
    gitlab_group: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    members: Mapped[list[User]] = relationship(back_populates="team")


class User(Timestamped, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        Index("ix_users_team_id_is_active", "team_id", "is_active"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gitlab_username: Mapped[str] = mapped_column(String(255), unique=True)
    gitlab_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    mattermost_username: Mapped[str | None] = mapped_column(String(255), unique=True)
    mattermost_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    role: Mapped[str] = mapped_column(String(16), default="reviewer")
    timezone: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(8))
    max_active_reviews: Mapped[int | None] = mapped_column(Integer)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    team: Mapped[Team | None] = relationship(back_populates="members")


class OooStatus(Base):
    """An out-of-office period; both dates included, in the user's timezone."""

    __tablename__ = "ooo_status"
    __table_args__ = (
        CheckConstraint("end_date >= start_date", name="dates_ordered"),
        Index("ix_ooo_status_user_id_dates", "user_id", "start_date", "end_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MrReview(Timestamped, Base):
    """One merge request the bot was asked to staff, from trigger to merge or close."""

    __tablename__ = "mr_reviews"
    __table_args__ = (
        UniqueConstraint("project_id", "mr_iid"),
        CheckConstraint(_in("state", REVIEW_STATES), name="state"),
        Index("ix_mr_reviews_state_triggered_at", "state", "triggered_at"),
        Index("ix_mr_reviews_team_id_triggered_at", "team_id", "triggered_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger)
    project_path: Mapped[str] = mapped_column(String(500))
    mr_iid: Mapped[int] = mapped_column(BigInteger)
    mr_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    title: Mapped[str | None] = mapped_column(String(500))
    web_url: Mapped[str] = mapped_column(String(1000))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    author_username: Mapped[str] = mapped_column(String(255))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), default="open")
    draft: Mapped[bool] = mapped_column(Boolean, default=False)
    triggered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_review_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    merged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    assignments: Mapped[list[ReviewerAssignment]] = relationship(
        back_populates="review", cascade="all, delete-orphan", passive_deletes=True
    )


class ReviewerAssignment(Base):
    """One reviewer on one MR review, with the role they were picked for."""

    __tablename__ = "reviewer_assignments"
    __table_args__ = (
        UniqueConstraint("review_id", "user_id"),
        CheckConstraint(_in("role", ASSIGNMENT_ROLES), name="role"),
        CheckConstraint(_in("status", ASSIGNMENT_STATES), name="status"),
        # active reviews per user; recent assignments per user
        Index("ix_reviewer_assignments_user_id_status", "user_id", "status"),
        Index("ix_reviewer_assignments_user_id_assigned_at", "user_id", "assigned_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("mr_reviews.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    comment_count: Mapped[int] = mapped_column(Integer, default=0)
    comment_chars: Mapped[int] = mapped_column(Integer, default=0)

    review: Mapped[MrReview] = relationship(back_populates="assignments")


class ReviewMetric(Base):
    """Daily aggregate per reviewer (UTC day); rebuilt idempotently by the aggregation."""

    __tablename__ = "review_metrics"
    __table_args__ = (
        UniqueConstraint("day", "user_id"),
        Index("ix_review_metrics_user_id_day", "user_id", "day"),
        Index("ix_review_metrics_team_id_day", "team_id", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    reviews_assigned: Mapped[int] = mapped_column(Integer, default=0)
    reviews_completed: Mapped[int] = mapped_column(Integer, default=0)
    reviews_abandoned: Mapped[int] = mapped_column(Integer, default=0)
    comments: Mapped[int] = mapped_column(Integer, default=0)
    comment_chars: Mapped[int] = mapped_column(Integer, default=0)
    ttfr_seconds_sum: Mapped[float] = mapped_column(Float, default=0.0)
    ttfr_count: Mapped[int] = mapped_column(Integer, default=0)
    approval_seconds_sum: Mapped[float] = mapped_column(Float, default=0.0)
    approval_count: Mapped[int] = mapped_column(Integer, default=0)
    engagement_score: Mapped[float] = mapped_column(Float, default=0.0)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Badge(Base):
    __tablename__ = "badges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    emoji: Mapped[str | None] = mapped_column(String(64))
    criteria: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserBadge(Base):
    """A badge awarded to a user; ``period`` is "" for once-only badges, else e.g. 2026-W48."""

    __tablename__ = "user_badges"
    __table_args__ = (
        UniqueConstraint("user_id", "badge_id", "period"),
        Index("ix_user_badges_badge_id_awarded_at", "badge_id", "awarded_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    badge_id: Mapped[int] = mapped_column(ForeignKey("badges.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(32), default="")
    awarded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str | None] = mapped_column(String(500))


class Configuration(Base):
    """Runtime key/value settings (e.g. values changed through the API)."""

    __tablename__ = "configuration"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """The durable inbox: a delivery is stored before it is acknowledged."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        CheckConstraint(_in("status", INBOX_STATES), name="status"),
        Index("ix_webhook_inbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_key: Mapped[str] = mapped_column(String(255), unique=True)
    source: Mapped[str] = mapped_column(String(32), default="gitlab")
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[Any] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class JobRun(Base):
    """One run of a scheduled job for one period; the unique key makes it run once."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job_name", "period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_name: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="running")
    owner: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
