"""One replica at a time: a PostgreSQL advisory lock held on a connection of its own.

Several replicas may run against one PostgreSQL; only the one holding the lock keeps
the Mattermost websocket (so a direct message is answered once). The lock lives as long
as its connection: when the holder stops or dies, PostgreSQL frees it and a standby
takes over within ``poll`` seconds. On SQLite there is one process by nature, and the
lock is always granted.

PostgreSQL's advisory locks are per database, not per schema: the key is made of the
lock's name and the connection's ``current_schema()``, so that two installations in two
schemas of one database (``?options=-csearch_path%3D...``) each have their own leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger("bot.leader")


def lock_key(name: str, schema: str | None) -> int:
    """The advisory lock key (a signed 64-bit int) of the lock ``name`` in ``schema``."""
    digest = hashlib.sha256(f"roulette-leader:{schema or ''}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Leadership:
    """The lock ``name`` for this installation: held by one process at a time."""

    def __init__(self, engine: AsyncEngine, name: str, *, poll: float = 5.0) -> None:
        self.engine = engine
        self.name = name
        self.poll = poll
        self._key: int | None = None  # known once a connection told the schema
        self._connection: AsyncConnection | None = None

    @property
    def shared(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def acquire(self) -> None:
        """Return once this process leads; wait (polling) while another one does."""
        if not self.shared:
            return
        waiting_logged = False
        while True:
            try:
                if await self.try_acquire():
                    log.info("this replica now leads %s", self.name)
                    return
            except Exception as e:
                log.warning("cannot ask for %s leadership: %s", self.name, type(e).__name__)
            if not waiting_logged:
                log.info("another replica leads %s; standing by", self.name)
                waiting_logged = True
            await asyncio.sleep(self.poll)

    async def try_acquire(self) -> bool:
        """Take the lock if it is free; False at once when another process holds it.

        Always True on SQLite (one process). Raises the database's error when it cannot
        be asked (``bot.db.is_unavailable`` tells an outage); :meth:`release` gives it back.
        """
        if not self.shared:
            return True
        if self._connection is not None:
            return True
        connection = await self.engine.connect()
        try:
            if self._key is None:
                schema = await connection.scalar(text("SELECT current_schema()"))
                self._key = lock_key(self.name, schema)
            granted = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            )
            await connection.commit()
        except BaseException:
            with contextlib.suppress(Exception):  # a dead connection may not close cleanly
                await connection.close()
            raise
        if not granted:
            await connection.close()
            return False
        self._connection = connection
        return True

    async def still_held(self) -> bool:
        """Whether the lock's connection is alive (so the lock is still ours)."""
        if not self.shared:
            return True
        if self._connection is None:
            return False
        try:
            await self._connection.execute(text("SELECT 1"))
            await self._connection.commit()
        except Exception:
            return False
        return True

    async def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            await connection.commit()
        except Exception as e:  # the connection is gone: so is the lock
            log.info("leadership connection already closed: %s", type(e).__name__)
        finally:
            await connection.close()
