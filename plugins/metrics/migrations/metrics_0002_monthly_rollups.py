"""metrics: review_metrics_monthly, each reviewer's monthly sums of their daily rows

Built from the daily ``user`` rows already there, so that the leaderboard's readings stay
the same across the upgrade; afterwards the aggregation keeps it.

Revision ID: metrics_0002
Revises: metrics_0001
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "metrics_0002"
down_revision: str | Sequence[str] | None = "metrics_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIGURES = (
    "reviews_assigned",
    "reviews_completed",
    "reviews_other_teams",
    "comments",
    "comment_chars",
    "ttfr_seconds_sum",
    "ttfr_count",
    "approval_seconds_sum",
    "approval_count",
    "engagement_score",
)


def upgrade() -> None:
    """Create ``review_metrics_monthly`` and fill it from ``review_metrics``."""
    op.create_table(
        "review_metrics_monthly",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("reviews_assigned", sa.Integer(), nullable=False),
        sa.Column("reviews_completed", sa.Integer(), nullable=False),
        sa.Column("reviews_other_teams", sa.Integer(), nullable=False),
        sa.Column("comments", sa.Integer(), nullable=False),
        sa.Column("comment_chars", sa.Integer(), nullable=False),
        sa.Column("ttfr_seconds_sum", sa.Float(), nullable=False),
        sa.Column("ttfr_count", sa.Integer(), nullable=False),
        sa.Column("approval_seconds_sum", sa.Float(), nullable=False),
        sa.Column("approval_count", sa.Integer(), nullable=False),
        sa.Column("engagement_score", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_metrics_monthly")),
        sa.UniqueConstraint(
            "month", "subject_id", name=op.f("uq_review_metrics_monthly_month_subject_id")
        ),
    )
    if op.get_bind().dialect.name == "postgresql":
        month = "CAST(date_trunc('month', day) AS DATE)"
        stamp = "CURRENT_TIMESTAMP"
    else:  # SQLite: UTCDateTime stores naive UTC text
        month = "date(day, 'start of month')"
        stamp = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
    columns = ", ".join(FIGURES)
    sums = ", ".join(f"SUM({name})" for name in FIGURES)
    # Only the constants above go into the text: no user input.
    statement = (
        f"INSERT INTO review_metrics_monthly (month, subject_id, {columns}, updated_at)"  # noqa: S608
        f" SELECT {month}, subject_id, {sums}, {stamp} FROM review_metrics"
        f" WHERE scope = 'user' GROUP BY {month}, subject_id"
    )
    op.execute(statement)


def downgrade() -> None:
    """Drop ``review_metrics_monthly`` (the daily rows keep every figure)."""
    op.drop_table("review_metrics_monthly")
