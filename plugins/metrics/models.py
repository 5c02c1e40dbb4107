"""The metrics area's table: one row of review figures per (day, scope, subject).

``review_metrics`` is written only by the aggregation (:mod:`plugins.metrics.service`);
other areas read it through :mod:`plugins.metrics.api`. Created by the area's own
migrations (``plugins/metrics/migrations/``).

``review_metrics_monthly`` holds the same figures per (month, reviewer): the sums of a
calendar month's ``user`` rows, kept by the same aggregation, so that a ranking over a
year reads a dozen rows per reviewer instead of 365.

The area also declares two indexes on the core's tables, which the aggregation's day
ranges read (``reviewer_assignments.assigned_at``, ``mr_reviews.triggered_at``): without
them each day's statements scan both tables whole. They live and die with the area's
migration.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    Float,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base, UTCDateTime, utcnow
from bot.models import MrReview, ReviewerAssignment

SCOPES = ("user", "team", "project")


class ReviewMetric(Base):
    """The review figures of one day (in ``schedule.timezone``) for one subject.

    ``scope`` says what ``subject_id`` is: ``user`` (users.id, the reviewer), ``team``
    (teams.id, the MR's team) or ``project`` (the GitLab project id). Times are sums of
    seconds with their counts (an average is ``sum / count``); ``engagement_score`` is the
    sum of the day's assignments' scores.
    """

    __tablename__ = "review_metrics"
    __table_args__ = (
        UniqueConstraint("day", "scope", "subject_id"),
        CheckConstraint("scope IN ('user', 'team', 'project')", name="scope"),
        # the leaderboard: one scope over a range of days, per subject
        Index("ix_review_metrics_scope_day_subject_id", "scope", "day", "subject_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    scope: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    reviews_triggered: Mapped[int] = mapped_column(Integer, default=0)
    reviews_assigned: Mapped[int] = mapped_column(Integer, default=0)
    reviews_completed: Mapped[int] = mapped_column(Integer, default=0)
    reviews_other_teams: Mapped[int] = mapped_column(Integer, default=0)
    comments: Mapped[int] = mapped_column(Integer, default=0)
    comment_chars: Mapped[int] = mapped_column(Integer, default=0)
    ttfr_seconds_sum: Mapped[float] = mapped_column(Float, default=0.0)
    ttfr_count: Mapped[int] = mapped_column(Integer, default=0)
    approval_seconds_sum: Mapped[float] = mapped_column(Float, default=0.0)
    approval_count: Mapped[int] = mapped_column(Integer, default=0)
    engagement_score: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewMetricMonth(Base):
    """One reviewer's figures for one calendar month: the sums of their daily ``user``
    rows of ``review_metrics`` for the days of the month.

    ``month`` is the first day of the month (days in ``schedule.timezone``, as the daily
    rows); ``subject_id`` is ``users.id``. Written only by the aggregation
    (:func:`plugins.metrics.service.rollup_month`), right after a day of the month; a row
    exists exactly when the reviewer has at least one daily row in the month. Users'
    rows count no triggers, hence no ``reviews_triggered`` column.
    """

    __tablename__ = "review_metrics_monthly"
    __table_args__ = (UniqueConstraint("month", "subject_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    month: Mapped[date] = mapped_column(Date)
    subject_id: Mapped[int] = mapped_column(BigInteger)
    reviews_assigned: Mapped[int] = mapped_column(Integer, default=0)
    reviews_completed: Mapped[int] = mapped_column(Integer, default=0)
    reviews_other_teams: Mapped[int] = mapped_column(Integer, default=0)
    comments: Mapped[int] = mapped_column(Integer, default=0)
    comment_chars: Mapped[int] = mapped_column(Integer, default=0)
    ttfr_seconds_sum: Mapped[float] = mapped_column(Float, default=0.0)
    ttfr_count: Mapped[int] = mapped_column(Integer, default=0)
    approval_seconds_sum: Mapped[float] = mapped_column(Float, default=0.0)
    approval_count: Mapped[int] = mapped_column(Integer, default=0)
    engagement_score: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# The aggregation reads one day of assignments and of triggers at a time.
ASSIGNED_AT_INDEX = Index("ix_reviewer_assignments_assigned_at", ReviewerAssignment.assigned_at)
TRIGGERED_AT_INDEX = Index("ix_mr_reviews_triggered_at", MrReview.triggered_at)
