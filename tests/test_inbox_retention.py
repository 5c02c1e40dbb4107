"""Inbox retention: processed deliveries are deleted ``WEBHOOK_RETENTION_DAYS`` after they
were processed, a batch at a time; rows still to process and dead letters never are.

On SQLite and PostgreSQL, with the real ``Inbox`` and a fake clock the test moves.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import webhooks
from bot.models import WebhookDelivery
from bot.plugins import Registry
from bot.settings import Settings
from bot.webhooks import Inbox
from tests.conftest import settings_for, until
from tests.test_inbox_lease import FakeClock, add_row, replica_context, running

Sessions = async_sessionmaker[AsyncSession]
DAY = timedelta(days=1)


async def _add(sessions: Sessions, clock: FakeClock, key: str, **values: Any) -> None:
    """A row received 100 days ago, with ``values`` (status, processed_at...)."""
    await add_row(sessions, clock, 100 * DAY, delivery_key=key, **values)


async def _keys(sessions: Sessions) -> set[str]:
    async with sessions() as session:
        return set((await session.scalars(select(WebhookDelivery.delivery_key))).all())


def _inbox(settings: Settings, clock: FakeClock) -> Inbox:
    return Inbox(replica_context(settings), Registry([]), clock=clock)


def _pruned(inbox: Inbox) -> float:
    value = inbox.context.metrics.registry.get_sample_value("webhook_inbox_pruned_total")
    return value or 0.0


async def test_only_rows_processed_before_the_retention_are_deleted(
    migrated_url: URL, sessions: Sessions
) -> None:
    clock = FakeClock()
    now = clock.now()
    long_ago = now - 200 * DAY
    await _add(sessions, clock, "old-done", status="done", processed_at=now - 91 * DAY)
    await _add(sessions, clock, "edge-done", status="done", processed_at=now - 90 * DAY)
    await _add(sessions, clock, "recent-done", status="done", processed_at=now - 89 * DAY)
    await _add(sessions, clock, "dead", status="dead", attempts=5, last_error="GitLab is down")
    await _add(sessions, clock, "pending", status="pending", attempts=2)
    await _add(sessions, clock, "held", status="processing", attempts=1, locked_until=now + DAY)
    # Done once, then queued again (or given up) by an operator: still to process, or
    # a dead letter, whatever its old processed_at says.
    await _add(sessions, clock, "requeued", status="pending", processed_at=long_ago)
    await _add(sessions, clock, "dead-again", status="dead", attempts=5, processed_at=long_ago)
    inbox = _inbox(settings_for(migrated_url), clock)  # the default: 90 days
    try:
        assert await inbox.prune() == 1
        assert await _keys(sessions) == {
            "edge-done",
            "recent-done",
            "dead",
            "pending",
            "held",
            "requeued",
            "dead-again",
        }
        assert _pruned(inbox) == 1
        assert await inbox.prune() == 0  # nothing more, however often it looks
    finally:
        await inbox.context.engine.dispose()


async def test_a_long_backlog_is_deleted_a_batch_at_a_time(
    migrated_url: URL, sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "PRUNE_BATCH", 7)
    clock = FakeClock()
    for number in range(30):  # 4 full batches and a short one
        processed = clock.now() - 100 * DAY + number * timedelta(minutes=1)
        await _add(sessions, clock, f"done-{number}", status="done", processed_at=processed)
    await _add(sessions, clock, "kept", status="done", processed_at=clock.now())
    inbox = _inbox(settings_for(migrated_url, webhook_retention_days=7), clock)
    deleted: list[int] = []  # the rows each DELETE statement removed, in order

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM WEBHOOK_INBOX"):
            deleted.append(cursor.rowcount)

    sync_engine = inbox.context.engine.sync_engine
    event.listen(sync_engine, "after_cursor_execute", count)
    try:
        assert await inbox.prune() == 30
        assert deleted == [7, 7, 7, 7, 2]  # one transaction per batch, oldest first
        assert await _keys(sessions) == {"kept"}
        assert _pruned(inbox) == 30
    finally:
        event.remove(sync_engine, "after_cursor_execute", count)
        await inbox.context.engine.dispose()


async def test_a_retention_of_0_keeps_every_row(migrated_url: URL, sessions: Sessions) -> None:
    clock = FakeClock()
    await _add(sessions, clock, "ancient", status="done", processed_at=clock.now() - 3000 * DAY)
    inbox = _inbox(settings_for(migrated_url, webhook_retention_days=0), clock)
    try:
        assert await inbox.prune() == 0
        assert await _keys(sessions) == {"ancient"}
    finally:
        await inbox.context.engine.dispose()


async def test_the_workers_delete_at_start_then_once_an_hour(
    migrated_url: URL, sessions: Sessions
) -> None:
    clock = FakeClock()
    now = clock.now()
    await _add(sessions, clock, "past", status="done", processed_at=now - 91 * DAY)
    # Past the retention 30 minutes from now: the next hourly look deletes it.
    await _add(
        sessions, clock, "soon", status="done", processed_at=now - 90 * DAY + timedelta(minutes=30)
    )
    settings = settings_for(migrated_url)
    async with running(settings, clock) as (inbox, _):
        await until(lambda: _keys_are(sessions, {"soon"}), 10, "the look at start")
        await until(lambda: clock.armed(2), 10, "the poll and the retention asleep")
        clock.advance(webhooks.PRUNE_EVERY)
        await until(lambda: _keys_are(sessions, set()), 10, "the look an hour later")
        assert _pruned(inbox) == 2


async def _keys_are(sessions: Sessions, expected: set[str]) -> bool:
    return await _keys(sessions) == expected
