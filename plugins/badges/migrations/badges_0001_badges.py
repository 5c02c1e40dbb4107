"""badges: definitions, awards and progress (``badges``, ``user_badges``, ``badge_progress``)

The first revision of the badges area's branch.

Revision ID: badges_0001
Revises:
Create Date: 2026-11-30

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "badges_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("badges",)
depends_on: str | Sequence[str] | None = "0003"


def upgrade() -> None:
    """Create the three tables."""
    op.create_table(
        "badges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("emoji", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("operator", sa.String(length=4), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("min_reviews", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_badges")),
        sa.UniqueConstraint("slug", name=op.f("uq_badges_slug")),
    )
    op.create_table(
        "user_badges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("badge_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("awarded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["badge_id"],
            ["badges.id"],
            name=op.f("fk_user_badges_badge_id_badges"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_badges_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_badges")),
        sa.UniqueConstraint(
            "user_id", "badge_id", "period", name=op.f("uq_user_badges_user_id_badge_id_period")
        ),
    )
    op.create_index("ix_user_badges_badge_id_awarded_at", "user_badges", ["badge_id", "awarded_at"])
    op.create_index("ix_user_badges_awarded_at", "user_badges", ["awarded_at"])
    op.create_table(
        "badge_progress",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("badge_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("reviews", sa.Integer(), nullable=False),
        sa.Column("met", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["badge_id"],
            ["badges.id"],
            name=op.f("fk_badge_progress_badge_id_badges"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_badge_progress_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_badge_progress")),
        sa.UniqueConstraint(
            "user_id",
            "badge_id",
            "period",
            name=op.f("uq_badge_progress_user_id_badge_id_period"),
        ),
    )


def downgrade() -> None:
    """Drop the three tables (every award and progress row goes with them)."""
    op.drop_table("badge_progress")
    op.drop_index("ix_user_badges_awarded_at", table_name="user_badges")
    op.drop_index("ix_user_badges_badge_id_awarded_at", table_name="user_badges")
    op.drop_table("user_badges")
    op.drop_table("badges")
