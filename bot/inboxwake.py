"""Waking the inbox workers of every replica when a delivery is stored.

A replica that stores deliveries (a web-only one, ``WEBHOOK_WORKERS=0``, or any other)
sends ``NOTIFY roulette_inbox`` in the transaction that stores them (``pg_notify`` in
the intake's one statement, ``bot.webhooks``); PostgreSQL delivers it to every session
that ran ``LISTEN roulette_inbox`` once the transaction commits (and never when it
rolls back), folding duplicates sent in one transaction into one.
Each replica with workers keeps one such session open (:class:`InboxListener`) and wakes
its poll loop on every notification, so a delivery acknowledged by one replica starts on
another within a round trip instead of at its next poll. The poll stays as the fallback:
a notification sent while a listener was reconnecting is lost (PostgreSQL keeps none for
a session that is not listening), and the listener wakes the workers after each
reconnection to cover that gap.

Source: PostgreSQL documentation, `NOTIFY` and `LISTEN`
(https://www.postgresql.org/docs/current/sql-notify.html); psycopg 3
``AsyncConnection.notifies()`` (https://www.psycopg.org/psycopg3/docs/advanced/async.html).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import URL

from bot.mattermost import Backoff

log = logging.getLogger("bot.webhooks")

CHANNEL = "roulette_inbox"
#: How long the listener waits for a notification before it checks its connection
#: (seconds): a connection dropped without a TCP reset is found within this.
CHECK_EVERY = 30.0


def libpq_dsn(url: URL) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL (any driver).

    The password is in it: never log the result.
    """
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class InboxListener:
    """One ``LISTEN roulette_inbox`` session calling ``wake`` on every notification.

    ``start()`` runs it in the background for the life of the process; it reconnects
    with backoff (1 s doubling to 30 s, jittered) when the session fails and calls
    ``wake`` after each (re)connection, since notifications sent in between are lost.
    ``stop()`` closes it. ``connected`` is set while a session is listening (tests wait
    on it).
    """

    def __init__(self, url: URL, wake: Callable[[], None], *, backoff: Backoff | None = None):
        self._dsn = libpq_dsn(url)
        self._wake = wake
        self._backoff = backoff if backoff is not None else Backoff(start=1.0, cap=30.0)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        #: The listening session's server process id (``pg_backend_pid()``), once connected.
        self.backend_pid: int | None = None

    def start(self) -> None:
        """Start listening in a background task."""
        self._task = asyncio.create_task(self._run(), name="inbox-listener")

    async def stop(self) -> None:
        """Stop listening and close the session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database went away: the poll covers the gap
                self.connected.clear()
                wait = self._backoff.next_wait()
                log.warning(
                    "inbox listener lost its database session (%s); retrying in %.1f s",
                    type(e).__name__,
                    wait,
                )
                await asyncio.sleep(wait)

    async def _listen(self) -> None:
        connection = await psycopg.AsyncConnection.connect(
            self._dsn, autocommit=True, connect_timeout=10
        )
        async with connection:
            await connection.execute(f"LISTEN {CHANNEL}")
            self.backend_pid = connection.info.backend_pid
            self._backoff.reset()
            self.connected.set()
            self._wake()  # anything stored while this session was not listening
            while True:
                async for _ in connection.notifies(timeout=CHECK_EVERY):
                    self._wake()
                await connection.execute("SELECT 1")  # still there?
