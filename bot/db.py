"""Database plumbing: the declarative base, engines and the session factory.

No engine exists at import time: ``create_engine`` is called by the app factory (and
the commands) with the settings' URL. SQLite gets foreign keys, WAL and a busy timeout;
PostgreSQL gets pre-ping so that a restarted server costs one retry, not an error.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from sqlalchemy import MetaData, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import DateTime, TypeDecorator
from tenacity import retry, retry_if_result, stop_after_delay, wait_random_exponential

log = logging.getLogger("bot.db")

# Stable constraint names: Alembic can drop and alter what it can name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every engine (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


SQLITE_BUSY_TIMEOUT: Final = 5.0
"""Seconds a SQLite connection waits for another one's lock before "database is locked"."""


def use_wal(dbapi_connection: Any) -> bool:
    """Put the SQLite database of ``dbapi_connection`` (a sqlite3 or an adapted aiosqlite
    connection) in WAL mode, which lasts in the file; a no-op once it is (and for an
    in-memory database, which has no WAL).

    Returns False, leaving the mode as it was, when another connection is writing: the
    switch from a rollback journal needs the file's exclusive lock, and SQLite answers
    SQLITE_BUSY at once there, its busy timeout does not apply. Other errors propagate.
    Source: https://www.sqlite.org/wal.html#activating_and_configuring_wal_mode
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            return True
        cursor.execute("PRAGMA journal_mode=WAL")
        return True
    except sqlite3.OperationalError as e:
        if "locked" not in str(e):
            raise
        return False
    finally:
        cursor.close()


def _busy_timeout(dbapi_connection: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
    cursor.close()


def sqlite_pragmas(dbapi_connection: Any, _record: Any = None) -> None:
    """The ``connect`` listener of the app's writing SQLite engines: foreign keys on, a
    busy timeout of ``SQLITE_BUSY_TIMEOUT``, and WAL if no other connection is writing
    (``migrate`` has switched the file already; a connection never waits or fails over it,
    the next one tries again)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    _busy_timeout(dbapi_connection)
    if not use_wal(dbapi_connection):
        log.debug("SQLite database busy; this connection keeps its rollback journal")


@retry(
    retry=retry_if_result(lambda switched: not switched),
    wait=wait_random_exponential(multiplier=0.01, max=0.25),
    stop=stop_after_delay(SQLITE_BUSY_TIMEOUT),
    retry_error_callback=lambda _state: False,
)
def _use_wal_waiting(dbapi_connection: Any) -> bool:
    return use_wal(dbapi_connection)


def sqlite_migration_pragmas(dbapi_connection: Any, _record: Any = None) -> None:
    """The ``connect`` listener of the migrations' (synchronous) SQLite engine: the busy
    timeout, and WAL, waiting up to ``SQLITE_BUSY_TIMEOUT`` seconds for other connections'
    writes to end. Foreign keys stay off: Alembic's batch mode drops and recreates tables,
    which with them on would delete the referencing rows."""
    _busy_timeout(dbapi_connection)
    if not _use_wal_waiting(dbapi_connection):
        log.warning(
            "SQLite database busy for %.0f s; it keeps its rollback journal until the next "
            "migration",
            SQLITE_BUSY_TIMEOUT,
        )


def create_engine(
    url: URL, *, read_only: bool = False, pool_size: int = 10, max_overflow: int = 10
) -> AsyncEngine:
    """An async engine for ``url`` (already converted by ``Settings.async_database_url``).

    ``read_only`` engines cannot write, and never create a missing SQLite file. On
    PostgreSQL, the engine keeps up to ``pool_size`` connections open and opens up to
    ``max_overflow`` more while busy (``DATABASE_POOL_SIZE``, ``DATABASE_MAX_OVERFLOW``);
    a session waits up to 5 s for one, then fails with SQLAlchemy's ``TimeoutError``.
    """
    if url.get_backend_name() == "sqlite":
        if read_only and url.database not in (None, "", ":memory:"):
            url = url.set(database=f"file:{url.database}").update_query_dict(
                {"mode": "ro", "uri": "true"}
            )
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})
        pragmas = _sqlite_read_only_pragmas if read_only else sqlite_pragmas
        event.listen(engine.sync_engine, "connect", pragmas)
        return engine
    if read_only:
        existing = url.query.get("options", "")
        options = " ".join(filter(None, [str(existing), "-c default_transaction_read_only=on"]))
        url = url.update_query_dict({"options": options})
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
    )


def _sqlite_read_only_pragmas(dbapi_connection: Any, _record: Any) -> None:
    _busy_timeout(dbapi_connection)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database does not answer ``SELECT 1``."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


#: SQLSTATE classes of a database that cannot serve now but will again: connection
#: exceptions (08), insufficient resources (53: too many connections, disk full), operator
#: intervention (57: shutdown, crash recovery, "cannot connect now"), and a read-only
#: transaction (25006: a standby not promoted yet). PostgreSQL, Appendix A.
_UNAVAILABLE_SQLSTATES: Final = ("08", "53", "57", "25006")


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached or cannot serve right now.

    True for a connection that failed, was refused, dropped or timed out (SQLAlchemy's
    ``OperationalError``, ``InterfaceError``, ``DisconnectionError``, ``TimeoutError`` on
    pool checkout, a ``DBAPIError`` whose connection was invalidated; psycopg's and
    sqlite3's ``OperationalError``: a server shut down, in recovery, out of connections,
    an SQLite file that cannot be opened or stays locked), for a PostgreSQL error of a
    SQLSTATE class listed in :data:`_UNAVAILABLE_SQLSTATES`, checked along the chain of
    ``raise ... from`` causes. False for anything else (a constraint, a bad
    statement, a socket error of another service such as GitLab): a defect or another
    outage, not the database's.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            sa_exc.OperationalError
            | sa_exc.InterfaceError
            | sa_exc.DisconnectionError
            | sa_exc.TimeoutError
            | psycopg.OperationalError
            | psycopg.InterfaceError
            | sqlite3.OperationalError,
        ):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_UNAVAILABLE_SQLSTATES):
            return True
        current = current.__cause__
    return False
