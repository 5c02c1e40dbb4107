"""Inbox ordering key: the events of one merge request are processed in order

``webhook_inbox.ordering_key`` is ``mr:<MR id>`` for an event about a merge request
(a comment on it, one of its Merge Request Hook events) and NULL for anything else. A
worker claims such a row only while no other row with the same key is being processed
and no earlier one is due, so an approval and the merge that follows it are never
applied at once, or the other way round. Rows stored before this revision keep a NULL
key (no order among them).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``ordering_key`` and its index (the claim looks for earlier rows by it)."""
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.add_column(sa.Column("ordering_key", sa.String(length=64), nullable=True))
        batch.create_index("ix_webhook_inbox_ordering_key_id", ["ordering_key", "id"])


def downgrade() -> None:
    """Drop ``ordering_key``: rows are processed in any order again."""
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.drop_index("ix_webhook_inbox_ordering_key_id")
        batch.drop_column("ordering_key")
