"""Schema migrations (Alembic), run programmatically by ``migrate`` and ``serve``.

Migrations use a synchronous connection on the same database (sqlite3 or psycopg), so
they can run in a worker thread while the event loop is up. On PostgreSQL an advisory
lock serialises replicas that start together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import URL

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
_LOCK_ID = 0x726F756C  # "roul"


class MigrationError(Exception):
    """The schema could not be brought up to date; the message is one line."""


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _connection(url: URL) -> Iterator[Connection]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _LOCK_ID})
                connection.commit()
            try:
                yield connection
            finally:
                if connection.dialect.name == "postgresql":
                    connection.rollback()
                    connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _LOCK_ID})
                    connection.commit()
    finally:
        engine.dispose()


def upgrade(url: URL, revision: str = "head") -> None:
    """Apply every pending migration up to ``revision``."""
    with _connection(url) as connection:
        command.upgrade(alembic_config(connection), revision)
        connection.commit()


def downgrade(url: URL, revision: str = "base") -> None:
    with _connection(url) as connection:
        command.downgrade(alembic_config(connection), revision)
        connection.commit()


def current_revision(url: URL) -> str | None:
    with _connection(url) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
