"""Assignment status "passed": a reviewer handed the review over to someone else

A reviewer who passes (from the review request's Pass button, or handed over after
staying silent) ends their assignment as ``passed``: not load (only ``active`` counts), not
a review (only ``completed`` does), and told apart from ``removed`` (a human took them off
the MR, or a reroll replaced them). The status is a CHECK constraint: it is dropped and
created again with the new value (SQLite copies the table, as it alters).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("active", "approved", "completed", "removed", "abandoned")
AFTER = (*BEFORE, "passed")


def _check(states: Sequence[str]) -> str:
    return f"status IN ({', '.join(repr(s) for s in states)})"


def _replace(states: Sequence[str]) -> None:
    with op.batch_alter_table("reviewer_assignments") as batch:
        batch.drop_constraint(op.f("ck_reviewer_assignments_status"), type_="check")
        batch.create_check_constraint(op.f("ck_reviewer_assignments_status"), _check(states))


def upgrade() -> None:
    """Allow ``passed``."""
    _replace(AFTER)


def downgrade() -> None:
    """Back to the five states; a ``passed`` assignment becomes ``removed`` first."""
    op.execute("UPDATE reviewer_assignments SET status = 'removed' WHERE status = 'passed'")
    _replace(BEFORE)
