"""handover: review requests (``review_requests``)

The first revision of the handover area's branch.

Revision ID: handover_0001
Revises:
Create Date: 2026-12-10

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "handover_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("handover",)
depends_on: str | Sequence[str] | None = "0003"


def upgrade() -> None:
    """Create ``review_requests``."""
    op.create_table(
        "review_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=True),
        sa.Column("project_path", sa.String(length=500), nullable=False),
        sa.Column("mr_iid", sa.BigInteger(), nullable=False),
        sa.Column("reviewer", sa.String(length=255), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("web_url", sa.String(length=1000), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=False),
        sa.Column("post_id", sa.String(length=64), nullable=True),
        sa.Column("chat_user_id", sa.String(length=64), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.String(length=16), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("nudged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handed_over_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "answer IN ('accepted', 'passed', 'snoozed')", name=op.f("ck_review_requests_answer")
        ),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["reviewer_assignments.id"],
            name=op.f("fk_review_requests_assignment_id_reviewer_assignments"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_requests")),
        sa.UniqueConstraint(
            "project_path",
            "mr_iid",
            "reviewer",
            "round",
            name=op.f("uq_review_requests_project_path_mr_iid_reviewer_round"),
        ),
    )
    op.create_index(
        "ix_review_requests_open", "review_requests", ["handed_over_at", "answer"], unique=False
    )


def downgrade() -> None:
    """Drop ``review_requests``."""
    op.drop_index("ix_review_requests_open", table_name="review_requests")
    op.drop_table("review_requests")
