"""The webhook intake over real HTTP: auth, limits, idempotency, workers, dead letters."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from bot.app import create_app
from bot.db import create_engine, create_sessionmaker, utcnow
from bot.http import CONTEXT
from bot.models import WebhookDelivery
from bot.plugins import Plugin, on_gitlab
from bot.webhooks import GitLabEvent, SignatureError, delivery_key, verify_signature
from tests.conftest import settings_for

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
SECRET = "s3cret-webhook-token"
SIGNING = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
NOTE = {"object_kind": "note", "object_attributes": {"note": "/roulette"}}


class Recorder(Plugin):
    """Remembers what it handled; fails the first ``failures`` times it is called."""

    name = "recorder"
    failures = 0
    seen: list[GitLabEvent]

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.seen = []
        Recorder.instances.append(self)

    instances: list[Recorder] = []

    @on_gitlab("note")
    async def note(self, event: GitLabEvent) -> None:
        self.seen.append(event)
        if len(self.seen) <= Recorder.failures:
            raise ConnectionError("GitLab is down")

    @on_gitlab("merge_request")
    async def merge_request(self, event: GitLabEvent) -> None:
        self.seen.append(event)


@pytest.fixture(autouse=True)
def _reset_recorder() -> None:
    Recorder.instances = []
    Recorder.failures = 0


def _settings(url: URL, **values: Any) -> Any:
    defaults: dict[str, Any] = {
        "gitlab_webhook_secret": SECRET,
        "webhook_retry_seconds": 0.05,
        "webhook_max_attempts": 3,
        "webhook_lease_seconds": 30,
    }
    return settings_for(url, **(defaults | values))


async def _client(aiohttp_client: MakeClient, settings: Any) -> Client:
    return await aiohttp_client(create_app(settings, plugins=[Recorder]))


def _headers(**extra: str) -> dict[str, str]:
    return {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Note Hook"} | extra


async def _rows(client: Client) -> list[WebhookDelivery]:
    async with client.app[CONTEXT].sessions() as session:
        return list((await session.scalars(select(WebhookDelivery))).all())


async def _until(condition: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _status(client: Client, wanted: str) -> bool:
    rows = await _rows(client)
    return bool(rows) and all(r.status == wanted for r in rows)


# --------------------------------------------------------------------------- intake


@pytest.mark.parametrize(
    ("configured", "sent"),
    [(None, SECRET), (SECRET, None), (SECRET, "wrong"), (SECRET, SECRET + "x")],
)
async def test_a_bad_or_missing_token_is_401_and_nothing_is_stored(
    migrated_url: URL, aiohttp_client: MakeClient, configured: str | None, sent: str | None
) -> None:
    client = await _client(
        aiohttp_client, _settings(migrated_url, gitlab_webhook_secret=configured)
    )
    headers = {"X-Gitlab-Event": "Note Hook"} | ({"X-Gitlab-Token": sent} if sent else {})
    response = await client.post("/webhook/gitlab", json=NOTE, headers=headers)
    assert response.status == 401
    assert "X-Gitlab-Token" in (await response.json())["error"]
    assert await _rows(client) == []


async def test_a_delivery_is_stored_then_processed_once(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    client = await _client(aiohttp_client, _settings(migrated_url))
    response = await client.post(
        "/webhook/gitlab", json=NOTE, headers=_headers(**{"Idempotency-Key": "abc"})
    )
    assert response.status == 200
    assert (await response.json())["status"] == "accepted"
    await _until(lambda: _status(client, "done"))
    [row] = await _rows(client)
    assert (row.delivery_key, row.event_type, row.payload, row.attempts) == (
        "idem:abc",
        "note",
        NOTE,
        1,
    )
    [recorder] = Recorder.instances
    assert [e.payload for e in recorder.seen] == [NOTE]


async def test_the_same_delivery_three_times_is_processed_once(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    client = await _client(aiohttp_client, _settings(migrated_url))
    headers = _headers(**{"X-Gitlab-Event-UUID": "e-1", "X-Gitlab-Webhook-UUID": "h-1"})
    answers = [
        (await (await client.post("/webhook/gitlab", json=NOTE, headers=headers)).json())["status"]
        for _ in range(3)
    ]
    assert answers == ["accepted", "duplicate", "duplicate"]
    await _until(lambda: _status(client, "done"))
    assert len(await _rows(client)) == 1
    assert len(Recorder.instances[0].seen) == 1


async def test_other_events_are_acknowledged_and_ignored(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    client = await _client(aiohttp_client, _settings(migrated_url))
    response = await client.post(
        "/webhook/gitlab",
        json={"object_kind": "push"},
        headers=_headers(**{"X-Gitlab-Event": "Push Hook"}),
    )
    assert response.status == 200
    assert (await response.json())["status"] == "ignored"
    assert await _rows(client) == []


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe"])
async def test_a_malformed_body_is_400(
    migrated_url: URL, aiohttp_client: MakeClient, body: bytes
) -> None:
    client = await _client(aiohttp_client, _settings(migrated_url))
    response = await client.post("/webhook/gitlab", data=body, headers=_headers())
    assert response.status == 400
    assert "error" in await response.json()
    assert await _rows(client) == []


async def test_a_body_over_one_mebibyte_is_413(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    client = await _client(aiohttp_client, _settings(migrated_url))
    big = json.dumps({"note": "x" * (1024 * 1024)}).encode()
    response = await client.post("/webhook/gitlab", data=big, headers=_headers())
    assert response.status == 413
    assert await _rows(client) == []


# --------------------------------------------------------------------------- signatures


def _sign(body: bytes, message_id: str = "msg-1", at: int | None = None) -> dict[str, str]:
    timestamp = str(at if at is not None else int(time.time()))
    key = base64.b64decode(SIGNING.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest.digest()).decode(),
    }


def test_signature_verification() -> None:
    body = b'{"a": 1}'
    verify_signature(SIGNING, _sign(body), body)
    several = _sign(body)
    several["webhook-signature"] = "v1,bm9wZQ== " + several["webhook-signature"]
    verify_signature(SIGNING, several, body)  # any listed signature may match
    cases = {
        "no signature matches": (_sign(body), b'{"a": 2}'),
        "too old": (_sign(body, at=int(time.time()) - 600), body),
        "missing": ({}, body),
    }
    for message, (headers, sent) in cases.items():
        with pytest.raises(SignatureError, match=message):
            verify_signature(SIGNING, headers, sent)


async def test_with_a_signing_token_unsigned_deliveries_are_refused(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    client = await _client(
        aiohttp_client, _settings(migrated_url, gitlab_webhook_signing_token=SIGNING)
    )
    body = json.dumps(NOTE).encode()
    refused = await client.post("/webhook/gitlab", data=body, headers=_headers())
    assert refused.status == 401
    assert "signature" in (await refused.json())["error"]
    accepted = await client.post("/webhook/gitlab", data=body, headers=_headers() | _sign(body))
    assert accepted.status == 200
    assert len(await _rows(client)) == 1


def test_delivery_keys() -> None:
    body = b"{}"
    assert delivery_key({"Idempotency-Key": "k", "X-Gitlab-Event-UUID": "e"}, body) == "idem:k"
    both = {"X-Gitlab-Event-UUID": "e", "X-Gitlab-Webhook-UUID": "w"}
    assert delivery_key(both, body) == "uuid:e:w"
    assert delivery_key({}, body) == "sha256:" + hashlib.sha256(body).hexdigest()


# --------------------------------------------------------------------------- workers


async def test_transient_failures_are_retried(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    Recorder.failures = 2
    client = await _client(aiohttp_client, _settings(migrated_url))
    await client.post("/webhook/gitlab", json=NOTE, headers=_headers())
    await _until(lambda: _status(client, "done"))
    [row] = await _rows(client)
    assert row.attempts == 3
    assert len(Recorder.instances[0].seen) == 3
    metrics = await (await client.get("/metrics")).text()
    assert 'webhook_processed_total{event="note",outcome="retry"} 2.0' in metrics


async def test_after_the_last_attempt_a_delivery_is_dead_lettered_and_kept(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    Recorder.failures = 99
    client = await _client(aiohttp_client, _settings(migrated_url))
    await client.post("/webhook/gitlab", json=NOTE, headers=_headers())
    await _until(lambda: _status(client, "dead"))
    [row] = await _rows(client)
    assert row.attempts == 3
    assert row.last_error == "ConnectionError: GitLab is down"
    assert row.payload == NOTE
    metrics = await (await client.get("/metrics")).text()
    assert 'webhook_dead_letters_total{event="note"} 1.0' in metrics


async def test_rows_left_pending_by_a_crash_are_processed_at_start(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    settings = _settings(migrated_url)
    engine = create_engine(settings.async_database_url)
    async with create_sessionmaker(engine).begin() as session:
        session.add(WebhookDelivery(delivery_key="left", event_type="note", payload=NOTE))
        session.add(
            WebhookDelivery(
                delivery_key="held-by-a-dead-worker",
                event_type="merge_request",
                payload={},
                status="processing",
                attempts=1,
                locked_until=utcnow(),
            )
        )
    await engine.dispose()
    client = await _client(aiohttp_client, settings)
    await _until(lambda: _status(client, "done"))
    kinds = sorted(e.kind for e in Recorder.instances[0].seen)
    assert kinds == ["merge_request", "note"]


async def test_two_replicas_never_process_a_delivery_twice(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    settings = _settings(migrated_url)
    first = await _client(aiohttp_client, settings)
    second = await _client(aiohttp_client, settings)
    for i in range(20):
        target = first if i % 2 else second
        headers = _headers(**{"Idempotency-Key": f"k{i}"})
        assert (await target.post("/webhook/gitlab", json=NOTE, headers=headers)).status == 200
    await _until(lambda: _status(first, "done"))
    handled = [e.key for r in Recorder.instances for e in r.seen]
    assert sorted(handled) == sorted(f"idem:k{i}" for i in range(20))
    async with first.app[CONTEXT].sessions() as session:
        attempts = await session.scalar(select(func.sum(WebhookDelivery.attempts)))
    assert attempts == 20
