"""GitLab ids are 64-bit: project, MR and user ids as BIGINT

GitLab's own columns for these ids are ``bigint`` (``projects.id``, ``merge_requests.id``,
``users.id``); as 32-bit ``integer`` here, an id past 2,147,483,647 was acknowledged at
the webhook (valid JSON, within 64 bits) and then failed in PostgreSQL at every retry
until the delivery was dead-lettered. SQLite stores every integer in up to 8 bytes, so
there the change is the declared type only (the table is copied, as SQLite alters).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {
    "users": ("gitlab_id",),
    "mr_reviews": ("project_id", "mr_iid", "mr_id"),
}
NULLABLE = {"gitlab_id": True, "mr_id": True, "project_id": False, "mr_iid": False}


def _retype(old: type[sa.types.TypeEngine[int]], new: type[sa.types.TypeEngine[int]]) -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(
                    column, existing_type=old(), type_=new(), existing_nullable=NULLABLE[column]
                )


def upgrade() -> None:
    """Widen the GitLab id columns to 64 bits."""
    _retype(sa.Integer, sa.BigInteger)


def downgrade() -> None:
    """Back to 32 bits (fails on PostgreSQL if a stored id no longer fits)."""
    _retype(sa.BigInteger, sa.Integer)
