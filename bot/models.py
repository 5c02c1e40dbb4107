"""The core's tables: users, teams, MR reviews, reviewer assignments, the webhook inbox,
scheduled job runs and runtime configuration. A feature area keeps its own tables in its
``models.py`` (on the same ``Base`` metadata) and its own revisions.

Every timestamp is timezone-aware UTC (``UTCDateTime``). The schema changes only through
Alembic revisions (``migrations/versions/`` here, ``plugins/<area>/migrations/`` there).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
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
ASSIGNMENT_STATES = ("active", "approved", "completed", "removed", "abandoned", "passed")
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
        Index("ix_webhook_inbox_ordering_key_id", "ordering_key", "id"),
        Index("ix_webhook_inbox_processed_at", "processed_at"),  # the retention's delete
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_key: Mapped[str] = mapped_column(String(255), unique=True)
    source: Mapped[str] = mapped_column(String(32), default="gitlab")
    event_type: Mapped[str] = mapped_column(String(64))
    #: ``mr:<MR id>`` for an event about a merge request: such rows are processed one at
    #: a time, in the order stored (``bot.webhooks.ordering_key``); NULL: in any order.
    ordering_key: Mapped[str | None] = mapped_column(String(64))
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
