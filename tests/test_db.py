"""SQLite under several connections: the migrations put the file in WAL mode, and a
connection that opens while another one writes neither fails nor waits over it. (Two
replicas writing at once, on both engines: ``test_scheduler``, ``test_inbox_lease``.)"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

import bot.db
from bot import migrate
from bot.app import create_app
from bot.context import AppContext
from bot.db import create_engine, create_sessionmaker
from bot.http import CONTEXT
from bot.models import JobRun
from bot.settings import Settings
from tests.conftest import until


def _journal_mode(path: str) -> str:
    with sqlite3.connect(path) as connection:
        return str(connection.execute("PRAGMA journal_mode").fetchone()[0])


@pytest.fixture
def rollback_journal_db(tmp_path: Path) -> str:
    """A SQLite file in rollback-journal mode (as an older release's migrations left it)
    with one table."""
    path = str(tmp_path / "old.db")
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (x INTEGER)")
    assert _journal_mode(path) == "delete"
    return path


def test_migrate_puts_sqlite_in_wal_mode(tmp_path: Path) -> None:
    path = str(tmp_path / "roulette.db")
    migrate.upgrade(make_url(f"sqlite:///{path}"))
    assert _journal_mode(path) == "wal"


async def test_a_connection_opens_while_another_writes_to_a_rollback_journal_file(
    rollback_journal_db: str,
) -> None:
    # SQLite refuses the switch to WAL at once while another connection writes; opening a
    # connection then used to fail with "database is locked".
    writer = sqlite3.connect(rollback_journal_db)
    writer.execute("INSERT INTO t VALUES (1)")  # holds the write lock until it commits
    engine = create_engine(make_url(f"sqlite+aiosqlite:///{rollback_journal_db}"))
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM t")) == 0
        assert _journal_mode(rollback_journal_db) == "delete"
        writer.commit()
        await engine.dispose()
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM t")) == 1
        assert _journal_mode(rollback_journal_db) == "wal"
    finally:
        writer.close()
        await engine.dispose()


async def test_migrate_waits_for_a_writer_then_switches_to_wal(
    rollback_journal_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[bool] = []
    use_wal = bot.db.use_wal

    def counted(dbapi_connection: object) -> bool:
        attempts.append(switched := use_wal(dbapi_connection))
        return switched

    monkeypatch.setattr(bot.db, "use_wal", counted)
    writer = sqlite3.connect(rollback_journal_db, check_same_thread=False)
    writer.execute("INSERT INTO t VALUES (1)")
    try:
        upgrade = asyncio.create_task(
            asyncio.to_thread(migrate.upgrade, make_url(f"sqlite:///{rollback_journal_db}"))
        )
        await until(lambda: len(attempts) >= 2, within=10, what="a switch refused while it writes")
        writer.commit()
        await asyncio.wait_for(upgrade, timeout=30)
    finally:
        writer.close()
    assert attempts[0] is False and attempts[-1] is True
    assert _journal_mode(rollback_journal_db) == "wal"


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_reads_cancelled_at_any_point_give_their_connections_back(
    settings: Settings,
) -> None:
    """A read cancelled while it checks out, queries or returns its connection (a
    shutdown, a roll's timeout) leaves no connection to the garbage collector: the pool
    gets each one back. (Read sessions in autocommit lost one or two in 300: SQLAlchemy
    switches a pooled connection's autocommit on the way out and back on the way in.)"""
    engine = create_engine(settings.async_database_url, pool_size=3, max_overflow=2)
    context = AppContext(settings=settings, engine_=engine, sessions_=create_sessionmaker(engine))
    async with context.sessions.begin() as session:
        session.add(JobRun(job_name="digest", period="p1", owner="t"))

    async def read() -> None:
        async with context.reads() as session:
            assert await session.scalar(select(func.count()).select_from(JobRun)) == 1
            await session.execute(text("SELECT 1"))

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for attempt in range(300):  # cancelled after 0 to 3 turns of the event loop
                task = asyncio.create_task(read())
                for _ in range(attempt % 4):
                    await asyncio.sleep(0)
                await asyncio.sleep(0.001 * (attempt % 3))
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            gc.collect()
        lost = [str(w.message) for w in caught if "garbage collector" in str(w.message)]
        assert lost == []
        assert engine.pool.checkedout() == 0
        await read()  # and the pool still serves
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_apps_pool_holds_what_its_settings_say(
    settings: Settings, aiohttp_client: Callable[[web.Application], Awaitable[Any]]
) -> None:
    # DATABASE_POOL_SIZE connections kept, DATABASE_MAX_OVERFLOW more, then a wait.
    small = settings.model_copy(
        update={"database_pool_size": 2, "database_max_overflow": 1, "webhook_workers": 0}
    )
    client = await aiohttp_client(create_app(small, plugins=[]))
    engine = client.app[CONTEXT].engine
    async with contextlib.AsyncExitStack() as held:
        for _ in range(3):
            await held.enter_async_context(engine.connect())
        assert (engine.pool.size(), engine.pool.checkedout(), engine.pool.overflow()) == (2, 3, 1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5), engine.connect():
                pass
