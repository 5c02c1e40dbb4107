"""The handover area's table: one review request per reviewer, MR and round.

A request is the DM a picked reviewer gets with Accept / Pass / Snooze buttons, and what
became of it. Created by the area's own migrations (``plugins/handover/migrations/``).
Other areas do not read it: they ask ``plugins.handover.api``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base, UTCDateTime, utcnow

ANSWERS = ("accepted", "passed", "snoozed")


class ReviewRequest(Base):
    """A review request: who was asked (GitLab username), on which MR, in which round (a
    reviewer asked again on the same MR after an earlier request ended starts a new
    round), the DM's post id, and the answer: ``accepted``, ``passed`` or ``snoozed``
    (``snoozed_until``), or none yet. ``nudged_at`` and ``handed_over_at`` are written
    before the reminder or the hand-over happens, so that each happens once."""

    __tablename__ = "review_requests"
    __table_args__ = (
        UniqueConstraint("project_path", "mr_iid", "reviewer", "round"),
        CheckConstraint("answer IN ('accepted', 'passed', 'snoozed')", name="answer"),
        Index("ix_review_requests_open", "handed_over_at", "answer"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int | None] = mapped_column(
        ForeignKey("reviewer_assignments.id", ondelete="SET NULL")
    )
    project_path: Mapped[str] = mapped_column(String(500))
    mr_iid: Mapped[int] = mapped_column(BigInteger)
    reviewer: Mapped[str] = mapped_column(String(255))  # GitLab username
    round: Mapped[int] = mapped_column(Integer, default=1)
    title: Mapped[str] = mapped_column(String(500), default="")
    web_url: Mapped[str] = mapped_column(String(1000), default="")
    author: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(100), default="")
    post_id: Mapped[str | None] = mapped_column(String(64))
    chat_user_id: Mapped[str | None] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    answer: Mapped[str | None] = mapped_column(String(16))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    nudged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handed_over_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(255))
