"""ooo: out-of-office periods (``ooo_status``)

The first revision of the ooo area's branch. Databases created before the areas had their
own revisions already have the table (the core's revision 0001 created it then): it is
adopted as it is.

Revision ID: ooo_0001
Revises:
Create Date: 2026-11-30

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ooo_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("ooo",)
depends_on: str | Sequence[str] | None = "0003"


def upgrade() -> None:
    """Create ``ooo_status`` unless an older core revision already did."""
    if "ooo_status" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "ooo_status",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("end_date >= start_date", name=op.f("ck_ooo_status_dates_ordered")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_ooo_status_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ooo_status")),
    )
    op.create_index(
        "ix_ooo_status_user_id_dates",
        "ooo_status",
        ["user_id", "start_date", "end_date"],
        unique=False,
    )


def downgrade() -> None:
    """Drop ``ooo_status`` (every recorded period goes with it)."""
    op.drop_index("ix_ooo_status_user_id_dates", table_name="ooo_status")
    op.drop_table("ooo_status")
