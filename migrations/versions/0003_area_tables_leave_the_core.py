"""the feature areas' tables leave the core chain

``review_metrics``, ``badges`` and ``user_badges`` were created by revision 0001 before any
code used them; the areas that own them (metrics, badges) create them in their own
revisions. This drops them where an older revision 0001 created them (nothing ever wrote
to them). ``ooo_status`` is not touched: the ooo area's first revision adopts it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNUSED = ("user_badges", "badges", "review_metrics")  # children first


def upgrade() -> None:
    """Drop the unused tables an older revision 0001 created, where they exist."""
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for table in UNUSED:
        if table in existing:
            op.drop_table(table)


def downgrade() -> None:
    """Nothing: revision 0001 no longer creates these tables."""
