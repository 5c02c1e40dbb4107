"""Where the Mattermost catch-up starts after a restart, kept in the database.

The cursor is the ``create_at`` (milliseconds since the epoch, Mattermost's clock) of the
newest post the bot handed over to its handlers. It lives in the ``configuration`` table
under :data:`KEY` as a JSON number, so a restarted process, or another replica taking the
websocket over (``bot.leader``), knows where the previous one stopped. It only moves
forward: a save older than the stored value changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.models import Configuration

log = logging.getLogger("bot.chatcursor")

KEY = "mattermost.post_cursor"


class DatabaseCursor:
    """The ``bot.mattermost.PostCursor`` of the app: one ``configuration`` row.

    Constructing it does no I/O. Database errors propagate (the adapter logs them).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], key: str = KEY) -> None:
        self._sessions = sessions
        self.key = key

    async def load(self) -> int | None:
        """The stored ``create_at`` (ms), or None when none is stored (or it is not a
        positive whole number, which is logged and then overwritten by the next save)."""
        async with self._sessions() as session:
            value = await session.scalar(
                select(Configuration.value).where(Configuration.key == self.key)
            )
        millis = _millis(value)
        if value is not None and millis is None:
            log.warning("configuration %s is not a post time (%.40r); ignored", self.key, value)
        return millis

    async def save(self, create_at: int) -> None:
        """Store ``create_at`` (ms) unless a later time is already stored.

        One transaction: ``INSERT … ON CONFLICT DO NOTHING`` creates the row; when it
        exists, it is read under a row lock (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite
        holds its write lock from the INSERT on) and compared in Python, because JSON
        values do not compare alike on both engines. Two savers therefore never move it
        backwards.
        """
        async with self._sessions.begin() as session:
            connection = await session.connection()
            dialect = connection.dialect.name
            insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
            created = await session.execute(
                insert(Configuration)
                .values(key=self.key, value=create_at)
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(Configuration.key)
            )
            if created.first() is not None:
                return
            row = await session.scalar(
                select(Configuration).where(Configuration.key == self.key).with_for_update()
            )
            if row is not None and (_millis(row.value) or 0) < create_at:
                row.value = create_at


def _millis(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None
