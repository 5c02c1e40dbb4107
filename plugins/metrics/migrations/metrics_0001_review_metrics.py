"""metrics: review_metrics, and the day indexes the aggregation reads

Revision ID: metrics_0001
Revises:
Create Date: 2026-12-01

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "metrics_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("metrics",)
depends_on: str | Sequence[str] | None = "0003"


def upgrade() -> None:
    """Create ``review_metrics`` and index the core's assignment and trigger times."""
    op.create_table(
        "review_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("reviews_triggered", sa.Integer(), nullable=False),
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
        sa.CheckConstraint(
            "scope IN ('user', 'team', 'project')", name=op.f("ck_review_metrics_scope")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_metrics")),
        sa.UniqueConstraint(
            "day", "scope", "subject_id", name=op.f("uq_review_metrics_day_scope_subject_id")
        ),
    )
    op.create_index(
        "ix_review_metrics_scope_day_subject_id",
        "review_metrics",
        ["scope", "day", "subject_id"],
        unique=False,
    )
    op.create_index("ix_reviewer_assignments_assigned_at", "reviewer_assignments", ["assigned_at"])
    op.create_index("ix_mr_reviews_triggered_at", "mr_reviews", ["triggered_at"])


def downgrade() -> None:
    """Drop ``review_metrics`` (every aggregate goes with it) and the day indexes."""
    op.drop_index("ix_mr_reviews_triggered_at", table_name="mr_reviews")
    op.drop_index("ix_reviewer_assignments_assigned_at", table_name="reviewer_assignments")
    op.drop_index("ix_review_metrics_scope_day_subject_id", table_name="review_metrics")
    op.drop_table("review_metrics")
