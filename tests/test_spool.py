"""The webhook spool: where deliveries wait while the database is down.

The journal (append, fsync, torn and damaged records, rotation, its bound), the Redis
stream (bound, removal), the drainer (arrival order, one row per key even when a drain
is cut short and run again), and the intake over HTTP: 202 ``spooled`` while the
database is down, 503 with ``Retry-After`` once no spool can take a delivery, and the
spooled deliveries processed once the database answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import select
from sqlalchemy.engine import URL, make_url

from bot import migrate
from bot.app import INBOX, create_app
from bot.http import CONTEXT
from bot.models import WebhookDelivery
from bot.plugins import Plugin, on_gitlab
from bot.spool import (
    JournalSpool,
    RedisStreamSpool,
    SpoolDrainer,
    SpooledDelivery,
    SpoolFull,
    SpoolUnavailable,
)
from bot.webhooks import GitLabEvent
from tests.conftest import settings_for
from tests.services import TEST_REDIS_URL, service_unavailable

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
SECRET = "spool-webhook-secret"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def delivery(n: int, kind: str = "note", size: int = 0) -> SpooledDelivery:
    payload: dict[str, Any] = {"object_kind": kind, "n": n, "text": "é" + "x" * size}
    return SpooledDelivery(
        key=f"note:1:2:{n}:create", kind=kind, payload=payload, received_at=T0 + timedelta(n)
    )


async def drain_all(spool: Any) -> list[SpooledDelivery | None]:
    """Everything the spool holds, oldest first, removing it as a drainer would."""
    seen: list[SpooledDelivery | None] = []
    while entries := await spool.head(2):
        seen.extend(d for _, d in entries)
        await spool.remove([ident for ident, _ in entries])
    return seen


# --------------------------------------------------------------------------- the journal


async def test_the_journal_gives_back_what_it_took_in_order_then_deletes_itself(
    tmp_path: Path,
) -> None:
    spool = JournalSpool(tmp_path / "spool", max_bytes=1 << 20)
    assert await spool.depth() == 0
    await spool.append([delivery(1), delivery(2)])
    await spool.append([delivery(3)])
    assert await spool.depth() == 3
    assert await drain_all(spool) == [delivery(1), delivery(2), delivery(3)]
    assert await spool.depth() == 0
    assert sorted(p.name for p in (tmp_path / "spool").glob("*.log")) == []


async def test_an_append_is_fsynced_with_its_new_directory_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    spool = JournalSpool(tmp_path / "new" / "spool", max_bytes=1 << 20)
    await spool.append([delivery(1)])
    journal = str(tmp_path / "new" / "spool" / "journal.log")
    assert synced == [str(tmp_path / "new"), journal, str(tmp_path / "new" / "spool")]
    synced.clear()
    await spool.append([delivery(2), delivery(3)])
    assert synced == [journal]  # one fsync for the batch; the file existed already


async def test_a_record_torn_by_a_crash_is_ignored_and_never_swallows_the_next(
    tmp_path: Path,
) -> None:
    spool = JournalSpool(tmp_path, max_bytes=1 << 20)
    await spool.append([delivery(1), delivery(2)])
    journal = tmp_path / "journal.log"
    whole = journal.read_bytes()
    journal.write_bytes(whole[: len(whole) - 40])  # the crash cut the second record short
    restarted = JournalSpool(tmp_path, max_bytes=1 << 20)
    await restarted.append([delivery(3)])
    assert await drain_all(restarted) == [delivery(1), None, delivery(3)]


async def test_a_damaged_record_is_skipped_and_the_others_read(tmp_path: Path) -> None:
    spool = JournalSpool(tmp_path, max_bytes=1 << 20)
    await spool.append([delivery(1), delivery(2), delivery(3)])
    journal = tmp_path / "journal.log"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"n":2', b'"n":7')  # the checksum no longer matches
    journal.write_bytes(b"".join(lines))
    assert await drain_all(JournalSpool(tmp_path, max_bytes=1 << 20)) == [
        delivery(1),
        None,
        delivery(3),
    ]


async def test_appends_during_a_drain_wait_for_the_next_one(tmp_path: Path) -> None:
    spool = JournalSpool(tmp_path, max_bytes=1 << 20)
    await spool.append([delivery(1)])
    [(ident, first)] = await spool.head(10)  # the journal is now being drained
    await spool.append([delivery(2)])
    assert await spool.depth() == 2
    await spool.remove([ident])
    assert first == delivery(1)
    assert not (tmp_path / "draining.log").exists()
    assert await drain_all(spool) == [delivery(2)]


async def test_a_drain_cut_short_is_read_again_by_the_next_process(tmp_path: Path) -> None:
    spool = JournalSpool(tmp_path, max_bytes=1 << 20)
    await spool.append([delivery(1), delivery(2), delivery(3)])
    [(ident, _)] = await spool.head(1)
    await spool.remove([ident])  # the first is stored; then the process dies (no close)
    await spool.head(1)
    os.close(spool._drain_lock or -1)  # what the kernel does for a dead process
    again = JournalSpool(tmp_path, max_bytes=1 << 20)
    assert await drain_all(again) == [delivery(1), delivery(2), delivery(3)]


async def test_one_process_drains_a_directory_at_a_time(tmp_path: Path) -> None:
    first, second = (JournalSpool(tmp_path, max_bytes=1 << 20) for _ in range(2))
    await first.append([delivery(1)])
    assert [d for _, d in await first.head(5)] == [delivery(1)]
    assert await second.head(5) == []
    await first.close()
    assert [d for _, d in await second.head(5)] == [delivery(1)]


async def test_the_journal_refuses_past_its_bound(tmp_path: Path) -> None:
    spool = JournalSpool(tmp_path, max_bytes=3000)
    await spool.append([delivery(1, size=1000)])
    with pytest.raises(SpoolFull):
        await spool.append([delivery(2, size=2000)])
    await spool.append([delivery(3, size=100)])  # what fits still does
    assert await drain_all(spool) == [delivery(1, size=1000), delivery(3, size=100)]
    await spool.append([delivery(4, size=2000)])  # drained: room again


async def test_an_unwritable_journal_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    spool = JournalSpool(tmp_path / "file" / "spool", max_bytes=1 << 20)
    with pytest.raises(SpoolUnavailable):
        await spool.append([delivery(1)])
    with pytest.raises(SpoolUnavailable):
        await spool.check()
    with pytest.raises(SpoolUnavailable, match="is not a folder"):
        await spool.check(touch=False)
    assert not (tmp_path / "spool").exists()


async def test_the_start_up_check_reports_a_folder_it_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A SPOOL_DIR under a folder the bot's user may not read (stat answers EACCES): one
    # line, never an exception that would stop the bot from starting.
    def refused(self: Path, *args: object, **kwargs: object) -> os.stat_result:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "stat", refused)
    spool = JournalSpool(tmp_path / "locked" / "spool", max_bytes=1 << 20)
    with pytest.raises(SpoolUnavailable, match="Permission denied"):
        await spool.check(touch=False)


# --------------------------------------------------------------------------- the Redis stream


@pytest.fixture
async def stream() -> AsyncIterator[RedisStreamSpool]:
    prefix = f"test-spool-{uuid.uuid4().hex[:8]}:"
    probe = redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1)
    try:
        await probe.ping()
    except (OSError, redis.RedisError) as e:
        service_unavailable("Redis", f"{TEST_REDIS_URL}: {type(e).__name__}")
    spool = RedisStreamSpool(TEST_REDIS_URL, max_bytes=3000, key_prefix=prefix)
    try:
        yield spool
    finally:
        await spool.close()
        await probe.delete(f"{prefix}spool", f"{prefix}spool:bytes")
        await probe.aclose()


@pytest.mark.redis
async def test_the_redis_stream_keeps_order_and_its_bound(stream: RedisStreamSpool) -> None:
    await stream.append([delivery(1, size=1000)])
    with pytest.raises(SpoolFull):
        await stream.append([delivery(2, size=2000)])
    await stream.append([delivery(3, size=100)])
    assert await stream.depth() == 2
    entries = await stream.head(10)
    assert [d for _, d in entries] == [delivery(1, size=1000), delivery(3, size=100)]
    await stream.remove([entries[0][0]])
    await stream.remove([entries[0][0]])  # removed twice (a drain run again): freed once
    with pytest.raises(SpoolFull):
        await stream.append([delivery(4, size=2800)])
    await stream.append([delivery(5, size=1500)])
    assert [d for _, d in await stream.head(10)] == [delivery(3, size=100), delivery(5, size=1500)]


async def test_a_redis_stream_that_does_not_answer_is_unavailable() -> None:
    spool = RedisStreamSpool("redis://:secret@127.0.0.1:1/0", max_bytes=1 << 20)
    with pytest.raises(SpoolUnavailable) as refused:
        await spool.append([delivery(1)])
    assert "secret" not in str(refused.value)
    await spool.close()


# --------------------------------------------------------------------------- the drainer


class FlakyRemoval(JournalSpool):
    """A journal whose next removal fails: the process died after the insert committed."""

    fail_next_remove = False

    async def remove(self, ids: Sequence[str]) -> None:
        if self.fail_next_remove:
            self.fail_next_remove = False
            raise RuntimeError("killed between the commit and the removal")
        await super().remove(ids)


async def test_a_drain_stores_in_arrival_order_and_once_even_when_run_again(
    migrated_url: URL, tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    settings = settings_for(migrated_url, spool_dir=str(tmp_path / "the-app's"))
    client = await aiohttp_client(create_app(settings, plugins=[]))
    inbox = client.app[INBOX]
    spool = FlakyRemoval(tmp_path / "killed", max_bytes=1 << 20)
    await spool.append([delivery(3), delivery(1), delivery(2)])
    await spool.append([delivery(1)])  # GitLab's retry of a spooled delivery
    settled: list[bool] = []
    drainer = SpoolDrainer(
        [spool],
        inbox._store_spooled,
        probe=lambda: asyncio.sleep(0),
        lock=None,
        depth=Gauge("depth", "", ["spool"], registry=CollectorRegistry()),
        unhandled=lambda: None,
        on_settled=lambda: settled.append(True),
    )

    async def rows() -> list[tuple[int, str, datetime]]:
        async with client.app[CONTEXT].sessions() as session:
            found = await session.execute(
                select(
                    WebhookDelivery.id, WebhookDelivery.delivery_key, WebhookDelivery.received_at
                ).order_by(WebhookDelivery.id)
            )
            return [(row[0], row[1], row[2]) for row in found.all()]

    try:
        spool.fail_next_remove = True
        await drainer.drain()  # stored and committed, then "killed" before the removal
        stored = await rows()
        assert [(key, at) for _, key, at in stored] == [
            (d.key, d.received_at) for d in (delivery(3), delivery(1), delivery(2))
        ]
        restarted = JournalSpool(tmp_path / "killed", max_bytes=1 << 20)
        await spool.close()  # the dead process's lock goes with it
        drainer.spools = [restarted]
        assert await restarted.depth() == 4  # nothing was removed
        assert await drainer.drain() == 0
        assert await rows() == stored  # drained again: nothing doubled, nothing moved
        assert settled[-1:] == [True]
        await restarted.close()
    finally:
        await spool.close()


# --------------------------------------------------------------------------- the intake


class Recorder(Plugin):
    name = "recorder"
    seen: list[GitLabEvent] = []

    @on_gitlab("note")
    async def note(self, event: GitLabEvent) -> None:
        Recorder.seen.append(event)


def note(n: int) -> dict[str, Any]:
    return {
        "object_kind": "note",
        "project_id": 5,
        "object_attributes": {"id": n, "noteable_id": 9, "note": "/roulette"},
    }


HEADERS = {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Note Hook"}


async def post(client: Client, n: int) -> tuple[int, dict[str, Any], str | None]:
    response = await client.post("/webhook/gitlab", json=note(n), headers=HEADERS)
    return response.status, await response.json(), response.headers.get("Retry-After")


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{wanted}}} not in /metrics")


async def _until(condition: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_deliveries_are_spooled_while_the_database_is_away_then_processed_once(
    tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    Recorder.seen = []
    url = make_url(f"sqlite:///{tmp_path / 'later' / 'roulette.db'}")  # no folder yet
    settings = settings_for(url, gitlab_webhook_secret=SECRET, spool_dir=str(tmp_path / "spool"))
    client = await aiohttp_client(create_app(settings, plugins=[Recorder]))
    answers = [await post(client, n) for n in (1, 2, 1)]
    assert [(status, body["status"]) for status, body, _ in answers] == [(202, "spooled")] * 3
    metrics = await (await client.get("/metrics")).text()
    assert sample(metrics, "webhook_spooled_total", spool="journal") == 3
    assert 'unhandled_errors_total{where="http"}' not in metrics  # never counted
    (tmp_path / "later").mkdir()
    migrate.upgrade(url)  # the database is back
    await _until(lambda: _processed(Recorder.seen, 2))
    assert sorted(e.payload["object_attributes"]["id"] for e in Recorder.seen) == [1, 2]
    async with client.app[CONTEXT].sessions() as session:
        keys = await session.scalars(
            select(WebhookDelivery.delivery_key).order_by(WebhookDelivery.id)
        )
        assert list(keys) == ["note:5:9:1:create", "note:5:9:2:create"]  # in arrival order
    status, body, _ = await post(client, 3)  # drained: stored directly again
    assert (status, body["status"]) == (200, "accepted")
    metrics = await (await client.get("/metrics")).text()
    assert sample(metrics, "webhook_spool_depth", spool="journal") == 0


async def _processed(seen: list[GitLabEvent], count: int) -> bool:
    return len(seen) >= count


async def test_a_full_spool_answers_503_with_retry_after_and_no_error(
    tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"  # refuses at once
    settings = settings_for(
        url, gitlab_webhook_secret=SECRET, spool_dir=str(tmp_path), spool_max_bytes=400
    )
    client = await aiohttp_client(create_app(settings, plugins=[Recorder]))
    first = await post(client, 1)
    assert first[:2] == (202, {"status": "spooled", "delivery": "note:5:9:1:create"})
    status, body, retry_after = await post(client, 2)
    assert (status, retry_after) == (503, "30")
    assert "retry later" in body["error"]
    metrics = await (await client.get("/metrics")).text()
    assert sample(metrics, "webhook_refused_total", reason="spool_full") == 1
    assert sample(metrics, "webhook_refused_total", reason="spool_unavailable") == 0
    assert 'unhandled_errors_total{where="http"}' not in metrics  # never counted
    assert sample(metrics, "webhook_spool_depth", spool="journal") in (0, 1)  # as last seen


async def test_no_writable_spool_answers_503_with_retry_after(
    tmp_path: Path, aiohttp_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("in the way")
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    settings = settings_for(url, gitlab_webhook_secret=SECRET, spool_dir=str(tmp_path / "file"))
    with caplog.at_level(logging.WARNING, logger="bot.webhooks"):
        client = await aiohttp_client(create_app(settings, plugins=[Recorder]))
    # said at start, before any outage needs the spool
    (warning,) = [r for r in caplog.records if "no webhook spool" in r.getMessage()]
    assert warning.levelname == "WARNING" and str(tmp_path / "file") in warning.getMessage()
    status, _, retry_after = await post(client, 1)
    assert (status, retry_after) == (503, "30")
    metrics = await (await client.get("/metrics")).text()
    assert sample(metrics, "webhook_refused_total", reason="spool_unavailable") == 1
