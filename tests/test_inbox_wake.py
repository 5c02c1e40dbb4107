"""Web-only replicas (``WEBHOOK_WORKERS=0``) and the NOTIFY that wakes the workers."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy.engine import URL

from bot.app import INBOX
from bot.inboxwake import CHANNEL, InboxListener, libpq_dsn
from bot.mattermost import Backoff
from tests.conftest import settings_for
from tests.test_webhooks import (
    NOTE,
    MakeClient,
    Recorder,
    _client,
    _headers,
    _reset_recorder,
    _rows,
    _settings,
    _status,
    _until,
)

__all__ = ["_reset_recorder"]  # autouse: each test counts its own Recorder instances


async def test_a_web_only_replica_acknowledges_and_stores_but_processes_nothing(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    web = await _client(aiohttp_client, _settings(migrated_url, webhook_workers=0))
    response = await web.post("/webhook/gitlab", json=NOTE, headers=_headers())
    assert response.status == 200
    assert (await response.json())["status"] == "accepted"
    [row] = await _rows(web)
    assert row.status == "pending"

    # A replica with workers on the same database processes it.
    worker = await _client(aiohttp_client, _settings(migrated_url, webhook_poll_seconds=0.2))
    await _until(lambda: _status(worker, "done"))
    web_recorder, worker_recorder = Recorder.instances
    assert web_recorder.seen == []
    assert [e.payload for e in worker_recorder.seen] == [NOTE]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_delivery_stored_by_one_replica_wakes_the_workers_of_another(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    """The worker looks at the inbox every 5 minutes: only the NOTIFY can start it in time."""
    worker = await _client(aiohttp_client, _settings(migrated_url, webhook_poll_seconds=300))
    web = await _client(aiohttp_client, _settings(migrated_url, webhook_workers=0))
    listener = worker.app[INBOX]._listener
    assert listener is not None
    await asyncio.wait_for(listener.connected.wait(), timeout=30)

    for n in range(3):
        response = await web.post(
            "/webhook/gitlab", json=NOTE, headers=_headers(**{"Idempotency-Key": f"k{n}"})
        )
        assert response.status == 200
        await _until(lambda: _status(worker, "done"), within=20)
    worker_recorder, web_recorder = Recorder.instances  # in the order the apps were made
    assert (len(worker_recorder.seen), len(web_recorder.seen)) == (3, 0)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_stored_delivery_notifies_once_and_a_duplicate_not_at_all(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    """The intake's one statement stores and notifies; a key already stored wakes nobody.

    The test's own NOTIFY is a fence: notifications arrive in the order their
    transactions committed, so whatever follows the first one, up to the fence, came
    from the duplicate.
    """
    web = await _client(aiohttp_client, _settings(migrated_url, webhook_workers=0))
    async with await psycopg.AsyncConnection.connect(
        libpq_dsn(migrated_url), autocommit=True
    ) as listening:
        await listening.execute(f"LISTEN {CHANNEL}")
        headers = _headers(**{"Idempotency-Key": "once"})
        for expected in ("accepted", "duplicate"):
            response = await web.post("/webhook/gitlab", json=NOTE, headers=headers)
            assert (await response.json())["status"] == expected
        async with await psycopg.AsyncConnection.connect(
            libpq_dsn(migrated_url), autocommit=True
        ) as fence:
            await fence.execute("SELECT pg_notify(%s, 'fence')", (CHANNEL,))
        payloads: list[str] = []
        async with asyncio.timeout(30):
            async for notification in listening.notifies():
                payloads.append(notification.payload)
                if notification.payload == "fence":
                    break
    assert payloads == ["", "fence"]
    assert len(await _rows(web)) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_listener_reconnects_and_wakes_when_its_session_is_killed(
    migrated_url: URL,
) -> None:
    woken = asyncio.Event()
    listener = InboxListener(migrated_url, woken.set, backoff=Backoff(start=0.05, cap=0.1))
    listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), timeout=30)
        await asyncio.wait_for(woken.wait(), timeout=5)  # a wake on every (re)connection
        first = listener.backend_pid
        woken.clear()
        async with await psycopg.AsyncConnection.connect(
            libpq_dsn(migrated_url), autocommit=True
        ) as admin:  # as a database restart or a failover would
            await admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        await _until(lambda: _async(listener.backend_pid not in (None, first)))
        await asyncio.wait_for(woken.wait(), timeout=5)
    finally:
        await listener.stop()


async def _async(value: bool) -> bool:
    return value


def test_web_only_is_zero_workers_and_the_poll_is_bounded() -> None:
    assert settings_for("sqlite:///x.db", webhook_workers=0).webhook_workers == 0
    with pytest.raises(ValueError, match="webhook_poll_seconds"):
        settings_for("sqlite:///x.db", webhook_poll_seconds=0)
    with pytest.raises(ValueError, match="webhook_workers"):
        settings_for("sqlite:///x.db", webhook_workers=-1)
