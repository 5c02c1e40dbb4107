"""Inbox leases: a crashed worker's deliveries are taken over within 30 s; a live one's never.

Every test runs the real ``Inbox`` workers against SQLite and PostgreSQL, on a fake clock
the test moves by hand: lease expiry, heartbeats, retries and handler timeouts all run on
it, so nothing waits for real seconds to pass. The claim's new ``attempts`` value is the
lease's fencing token: a worker whose row was taken over changes nothing afterwards.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.context import AppContext
from bot.db import create_engine, create_sessionmaker, utcnow
from bot.metrics import Metrics
from bot.models import WebhookDelivery
from bot.plugins import Plugin, Registry, on_gitlab
from bot.settings import Settings
from bot.webhooks import GitLabEvent, Inbox
from tests.conftest import settings_for, until
from tests.test_cli import clean_env, cli, free_port, http_get

LEASE = 6.0  # seconds; heartbeats every 2 s
IDLE_POLL = Settings().webhook_poll_seconds  # the workers' poll when nothing is due
NOTE = {"object_kind": "note", "object_attributes": {"note": "/roulette"}}


class FakeClock:
    """A clock that moves only when told; ``sleep`` returns once it has moved far enough."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or utcnow()
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        entry = (self._now + timedelta(seconds=seconds), asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        for entry in list(self._sleepers):
            if entry[0] <= self._now:
                self._sleepers.remove(entry)
                if not entry[1].done():
                    entry[1].set_result(None)

    def armed(self, sleepers: int) -> bool:
        """At least ``sleepers`` are waiting for a time still to come (loops have settled)."""
        return sum(1 for deadline, _ in self._sleepers if deadline > self._now) >= sleepers


class Worker(Plugin):
    """A note handler the test steers: attempts listed in ``block`` wait for ``gate``."""

    name = "worker"

    def __init__(self, app: AppContext) -> None:
        super().__init__(app)
        self.gate = asyncio.Event()
        self.block: set[int] = set()
        self.fail: set[int] = set()
        self.started: list[int] = []
        self.cancelled: list[int] = []
        self.finished: list[int] = []

    @on_gitlab("note")
    async def note(self, event: GitLabEvent) -> None:
        self.started.append(event.attempt)
        try:
            if event.attempt in self.block:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(event.attempt)
            raise
        if event.attempt in self.fail:
            raise ConnectionError(f"GitLab is down (attempt {event.attempt})")
        self.finished.append(event.attempt)


def replica_context(settings: Settings) -> AppContext:
    """One replica's context: its own engine and metrics (dispose ``engine`` after)."""
    engine = create_engine(settings.async_database_url)
    return AppContext(
        settings, metrics=Metrics(), engine_=engine, sessions_=create_sessionmaker(engine)
    )


@asynccontextmanager
async def running(settings: Settings, clock: FakeClock) -> AsyncIterator[tuple[Inbox, Worker]]:
    """One replica's inbox workers (its own engine and metrics), started on ``clock``."""
    context = replica_context(settings)
    engine = context.engine
    worker = Worker(context)
    inbox = Inbox(context, Registry([worker]), clock=clock)
    inbox.start()
    try:
        yield inbox, worker
    finally:
        worker.gate.set()
        await inbox.stop(grace=5)
        await engine.dispose()


@pytest.fixture
def lease_settings(migrated_url: URL) -> Settings:
    return settings_for(
        migrated_url,
        webhook_retention_days=0,  # no hourly retention sleeper beside the poll's
        webhook_lease_seconds=LEASE,
        webhook_handler_timeout=60,
        webhook_retry_seconds=1,
        webhook_max_attempts=5,
    )


async def add_row(
    sessions: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    received_ago: timedelta = timedelta(0),
    **values: Any,
) -> int:
    """A note delivery received ``received_ago`` before the clock's time, due then."""
    now = clock.now() - received_ago
    row = WebhookDelivery(
        delivery_key=values.pop("delivery_key", "idem:one"),
        event_type="note",
        payload=NOTE,
        received_at=now,
        next_attempt_at=now,
        **values,
    )
    async with sessions.begin() as session:
        session.add(row)
    return row.id


async def get_row(sessions: async_sessionmaker[AsyncSession], row_id: int) -> WebhookDelivery:
    async with sessions() as session:
        row = await session.scalar(select(WebhookDelivery).where(WebhookDelivery.id == row_id))
        assert row is not None
        return row


def metric(inbox: Inbox, name: str) -> float:
    value = inbox.context.metrics.registry.get_sample_value(name, {"event": "note"})
    return value or 0.0


# --------------------------------------------------------------------------- crash


async def test_a_row_held_by_a_dead_worker_is_taken_over_within_30_s_and_processed_once(
    lease_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clock = FakeClock()
    crashed_at = clock.now()
    # Claimed (attempt 1, leased) by a worker that was killed before its first heartbeat.
    row_id = await add_row(
        sessions,
        clock,
        status="processing",
        attempts=1,
        locked_until=crashed_at + timedelta(seconds=LEASE),
    )
    async with running(lease_settings, clock) as (inbox, worker):
        await until(lambda: clock.armed(1))  # first poll done
        while clock.now() + timedelta(seconds=IDLE_POLL) <= crashed_at + timedelta(seconds=LEASE):
            clock.advance(IDLE_POLL)
            await until(lambda: clock.armed(1))
            assert worker.started == [], "a lease still running was taken"
        while (await get_row(sessions, row_id)).attempts == 1:  # a claim commits, then sleeps
            assert clock.now() - crashed_at < timedelta(seconds=30), "not taken over in 30 s"
            clock.advance(IDLE_POLL)
            await until(lambda: clock.armed(1))
        await until(lambda: worker.finished)
        await until(lambda: _status(sessions, row_id, "done"))
        row = await get_row(sessions, row_id)
        assert clock.now() - crashed_at <= timedelta(seconds=LEASE + IDLE_POLL)
        assert row.attempts == 2
        assert worker.started == worker.finished == [2]
        assert metric(inbox, "webhook_leases_expired_total") == 1
        # Exactly once: nothing more happens however long it waits.
        clock.advance(10 * LEASE)
        await until(lambda: clock.armed(1))
        assert worker.started == [2]


async def _status(sessions: async_sessionmaker[AsyncSession], row_id: int, wanted: str) -> bool:
    return (await get_row(sessions, row_id)).status == wanted


# --------------------------------------------------------------------------- live worker


async def test_a_live_worker_keeps_its_row_long_past_the_first_lease(
    lease_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clock = FakeClock()
    row_id = await add_row(sessions, clock)
    async with running(lease_settings, clock) as (first, one):
        one.block = {1}
        await until(lambda: one.started == [1])
        async with running(lease_settings, clock) as (second, two):
            # Inbox loops of both replicas, and the first one's heartbeat.
            await until(lambda: clock.armed(3))
            for _ in range(15):  # 30 s: five times the lease
                clock.advance(LEASE / 3)
                await until(lambda: clock.armed(3))
                row = await get_row(sessions, row_id)
                assert row.locked_until is not None
                assert row.locked_until >= clock.now() + timedelta(seconds=LEASE - 0.001)
                assert (row.status, row.attempts) == ("processing", 1)
            assert two.started == []
            one.gate.set()
            await until(lambda: _status(sessions, row_id, "done"))
            assert one.finished == [1]
            assert two.started == []
            assert metric(second, "webhook_leases_expired_total") == 0
            assert metric(first, "webhook_leases_lost_total") == 0


# --------------------------------------------------------------------------- lost lease


@asynccontextmanager
async def taken_over(
    lease_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[tuple[FakeClock, Inbox, Worker, Inbox, Worker, int]]:
    """A first replica stalls (its clock stands still) while holding a row; a second one,
    whose clock runs on past the lease, takes the row over."""
    stalled, moving = FakeClock(), FakeClock()
    row_id = await add_row(sessions, stalled)
    async with running(lease_settings, stalled) as (first, one):
        one.block = {1}
        await until(lambda: one.started == [1])
        async with running(lease_settings, moving) as (second, two):
            two.block = {2}
            while (await get_row(sessions, row_id)).attempts == 1:
                moving.advance(IDLE_POLL)
                await until(lambda: moving.armed(1))
            await until(lambda: two.started == [2])
            row = await get_row(sessions, row_id)
            assert (row.status, row.attempts) == ("processing", 2)
            yield stalled, first, one, second, two, row_id


async def test_a_worker_whose_heartbeat_finds_the_lease_lost_cancels_its_handler(
    lease_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with taken_over(lease_settings, sessions) as (stalled, first, one, _, two, row_id):
        stalled.advance(LEASE / 3)  # the first replica wakes up and tries to renew
        await until(lambda: one.cancelled == [1])
        assert one.finished == []
        assert metric(first, "webhook_leases_lost_total") == 1
        row = await get_row(sessions, row_id)
        assert (row.status, row.attempts) == ("processing", 2)
        two.gate.set()
        await until(lambda: _status(sessions, row_id, "done"))
        assert two.finished == [2]


async def test_a_worker_that_lost_its_lease_does_not_mark_the_row(
    lease_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with taken_over(lease_settings, sessions) as (_, first, one, _, two, row_id):
        two.fail = {2}
        one.gate.set()  # the stalled handler finishes before any heartbeat: "done"?
        await until(lambda: one.finished == [1])
        await until(lambda: metric(first, "webhook_leases_lost_total") == 1)
        row = await get_row(sessions, row_id)
        assert (row.status, row.attempts, row.processed_at) == ("processing", 2, None)
        # The row's outcome is the new owner's: its failure, not the old one's success.
        two.gate.set()
        await until(lambda: _status(sessions, row_id, "pending"))
        row = await get_row(sessions, row_id)
        assert row.attempts == 2
        assert row.last_error == "ConnectionError: GitLab is down (attempt 2)"
        assert row.processed_at is None


# --------------------------------------------------------------------------- timeout


async def test_a_handler_past_its_timeout_is_cancelled_and_retried(
    migrated_url: URL, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = settings_for(
        migrated_url,
        webhook_retention_days=0,  # no hourly retention sleeper beside the poll's
        webhook_lease_seconds=LEASE,
        webhook_handler_timeout=15,  # longer than the lease: the heartbeat keeps it
        webhook_retry_seconds=1,
    )
    clock = FakeClock()
    row_id = await add_row(sessions, clock)
    async with running(settings, clock) as (inbox, worker):
        worker.block = {1}
        await until(lambda: worker.started == [1])
        started = clock.now()
        while not worker.cancelled:
            assert clock.now() - started <= timedelta(seconds=16), "never timed out"
            clock.advance(1)
            await until(lambda: worker.cancelled or clock.armed(2))
        assert clock.now() - started >= timedelta(seconds=15)
        await until(lambda: _status(sessions, row_id, "pending"))
        row = await get_row(sessions, row_id)
        assert row.attempts == 1
        assert row.last_error is not None
        assert row.last_error.startswith("TimeoutError: the handlers took longer than 15 s")
        sample = inbox.context.metrics.registry.get_sample_value(
            "webhook_processed_total", {"event": "note", "outcome": "retry"}
        )
        assert sample == 1
        # Retried with backoff (1 s, jitter up to 20 %) on the same clock.
        retry_at = row.next_attempt_at
        assert timedelta(seconds=0.8) <= retry_at - clock.now() <= timedelta(seconds=1.2)
        while not await _status(sessions, row_id, "done"):
            assert clock.now() < retry_at + timedelta(seconds=IDLE_POLL), "not retried"
            clock.advance(0.25)
            await until(lambda: clock.armed(1))
        assert worker.started == [1, 2]
        assert worker.finished == [2]


# --------------------------------------------------------------------------- shutdown


async def test_a_handler_cancelled_at_shutdown_hands_its_row_back_at_once(
    lease_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clock = FakeClock()
    row_id = await add_row(sessions, clock)
    async with running(lease_settings, clock) as (inbox, worker):
        worker.block = {1}
        await until(lambda: worker.started == [1])
        await inbox.stop(grace=0)
        assert worker.cancelled == [1]
        row = await get_row(sessions, row_id)
        assert (row.status, row.attempts, row.locked_until) == ("pending", 0, None)
        assert row.next_attempt_at <= clock.now()
    async with running(lease_settings, clock) as (_, successor):
        await until(lambda: _status(sessions, row_id, "done"))
        assert successor.finished == [1]


# --------------------------------------------------------------------------- settings


def test_the_default_lease_recovers_within_30_s() -> None:
    settings = Settings()
    assert settings.webhook_lease_seconds + settings.webhook_poll_seconds <= 30


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("webhook_lease_seconds", 0),
        ("webhook_lease_seconds", 0.5),
        ("webhook_lease_seconds", 601),
        ("webhook_handler_timeout", 0),
        ("webhook_handler_timeout", -1),
        ("webhook_handler_timeout", 3601),
        ("webhook_retention_days", -1),
        ("webhook_retention_days", 3651),
    ],
)
def test_unusable_lease_or_timeout_settings_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


# --------------------------------------------------------------------------- a real kill -9


def _post(base: str, index: int) -> int:
    """One note delivery (a reviewer's comment, not a command) to ``base``; its status."""
    body = {
        "object_kind": "note",
        "event_type": "note",
        "user": {"id": 2, "username": "alice"},
        "project": {"id": 5, "path_with_namespace": "g/p"},
        "object_attributes": {
            "id": 1000 + index,
            "note": f"comment {index}",
            "noteable_type": "MergeRequest",
            "noteable_id": 70 + index,
            "action": "create",
            "system": False,
        },
        # One MR each: one MR's deliveries are handled one at a time, in order.
        "merge_request": {"id": 70 + index, "iid": 1 + index, "target_project_id": 5},
    }
    request = urllib.request.Request(
        f"{base}/webhook/gitlab",
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "X-Gitlab-Token": KILL_SECRET,
            "X-Gitlab-Event": "Note Hook",
            "Idempotency-Key": f"kill-{index}",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def _states(url: URL) -> list[tuple[str, int]]:
    engine = sqlalchemy.create_engine(settings_for(url).sync_database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(WebhookDelivery.status, WebhookDelivery.attempts).order_by(
                    WebhookDelivery.id
                )
            )
            return [(str(status), int(attempts)) for status, attempts in rows]
    finally:
        engine.dispose()


def _wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        time.sleep(0.1)


KILL_SECRET = "kill-test-webhook-secret"


def test_deliveries_held_by_a_killed_serve_are_finished_by_the_next_one_within_30_s(
    database_url: URL, tmp_path: Path
) -> None:
    """The probe of the issue, on the default lease: 40 deliveries acknowledged, the
    process SIGKILLed while two of them are in its handlers, a new process started."""
    url = database_url.render_as_string(hide_password=False)
    # A GitLab that accepts connections and never answers: the first process's two
    # workers hang in their handlers (asking GitLab who the bot is), holding two rows.
    black_hole = socket.create_server(("127.0.0.1", 0), backlog=64)
    servers: list[subprocess.Popen[bytes]] = []

    def serve(name: str, **env: str) -> str:
        port = free_port()
        log = (tmp_path / f"{name}.log").open("wb")
        servers.append(
            subprocess.Popen(
                cli("serve"),
                cwd=tmp_path,
                env=clean_env(
                    DATABASE_URL=url,
                    HTTP_HOST="127.0.0.1",
                    HTTP_PORT=str(port),
                    GITLAB_WEBHOOK_SECRET=KILL_SECRET,
                    LOG_LEVEL="warning",
                    **env,
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return http_get(f"{base}/health", timeout=1)[0] == 200
            except OSError:
                return False

        _wait_for(healthy, 30, f"{name} healthy")
        return base

    try:
        first = serve(
            "first",
            GITLAB_URL=f"http://127.0.0.1:{black_hole.getsockname()[1]}",
            GITLAB_TOKEN="glpat-never-used",
            WEBHOOK_WORKERS="2",
        )
        assert [_post(first, i) for i in range(40)] == [200] * 40
        _wait_for(
            lambda: [s for s, _ in _states(database_url)].count("processing") == 2,
            10,
            "two deliveries in the first process's handlers",
        )
        servers[0].send_signal(signal.SIGKILL)
        servers[0].wait(timeout=10)
        killed_at = time.monotonic()
        states = _states(database_url)
        assert len(states) == 40
        assert sorted(set(s for s, _ in states)) == ["pending", "processing"]

        serve("second")  # no GitLab: a comment is only recorded
        _wait_for(
            lambda: all(s == "done" for s, _ in _states(database_url)),
            30 - (time.monotonic() - killed_at),
            "every acknowledged delivery done after the restart",
        )
        attempts = sorted(a for _, a in _states(database_url))
        assert attempts == [1] * 38 + [2] * 2  # each handled once by the second process
    finally:
        for process in servers:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        black_hole.close()


async def test_a_worker_does_not_record_an_outcome_once_its_lease_ran_out(
    lease_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clock = FakeClock()
    row_id = await add_row(sessions, clock)
    async with running(lease_settings, clock) as (inbox, worker):
        worker.block = {1}
        await until(lambda: worker.started == [1])
        # The lease runs out while the worker is stalled (no renewal reached the database).
        async with sessions.begin() as session:
            row = await session.get(WebhookDelivery, row_id)
            assert row is not None
            row.locked_until = clock.now() - timedelta(seconds=1)
        worker.gate.set()
        await until(lambda: metric(inbox, "webhook_leases_lost_total") == 1)
        # Attempt 1's success was not recorded: the row was left to be taken over (here
        # by the same inbox's next poll, as by any replica's) and done by attempt 2. The
        # clock stops once attempt 2 holds the row: moved on while it runs, its lease
        # could run out too on a slow machine.
        while (await get_row(sessions, row_id)).attempts < 2:
            clock.advance(IDLE_POLL)
            await until(lambda: clock.armed(1))
        await until(lambda: _status(sessions, row_id, "done"))
        assert (await get_row(sessions, row_id)).attempts == 2
        assert worker.finished == [1, 2]
        done = {"event": "note", "outcome": "done"}
        assert inbox.context.metrics.registry.get_sample_value("webhook_processed_total", done) == 1
