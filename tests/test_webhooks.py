"""The webhook intake over real HTTP: auth, limits, idempotency, workers, dead letters."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict, CIMultiDictProxy
from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import URL

from bot.app import create_app
from bot.db import create_engine, create_sessionmaker, utcnow
from bot.http import CONTEXT
from bot.models import WebhookDelivery
from bot.plugins import Plugin, on_gitlab
from bot.sandbox.gitlab import GitLabStandIn
from bot.sandbox.webhooks import WebhookSender
from bot.webhooks import (
    _CLAIMABLE_AT,
    _DUE_ROWS,
    GitLabEvent,
    SignatureError,
    delivery_key,
    inbox_key,
    ordering_key,
    verify_signature,
)
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


async def _until(condition: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
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


# --------------------------------------------------------------------------- what the store refuses

DEEP = b"[" * 5000 + b"]" * 5000


def _nested(depth: int) -> bytes:
    """An object whose ``note`` nests ``depth`` levels in all (the object included)."""
    return b'{"object_kind": "note", "x": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


# Whatever Python's json accepts but one of the engines (or UTF-8) would refuse.
REFUSED = {
    "NaN": (b'{"object_kind": "note", "n": NaN}', "NaN is not a JSON number"),
    "Infinity": (b'{"object_kind": "note", "n": [Infinity]}', "Infinity is not"),
    "-Infinity": (b'{"object_kind": "note", "n": -Infinity}', "-Infinity is not"),
    "float overflow": (b'{"object_kind": "note", "n": 1e400}', "out of range"),
    "NUL in a string": (b'{"object_kind": "note", "note": "a\\u0000b"}', "NUL"),
    "NUL in a key": (b'{"object_kind": "note", "a\\u0000": 1}', "NUL"),
    "NUL in an array": (b'{"object_kind": "note", "l": [["\\u0000"]]}', "NUL"),
    "lone high surrogate": (b'{"object_kind": "note", "note": "\\ud800"}', "surrogate"),
    "lone low surrogate": (b'{"object_kind": "note", "note": "x\\udfffy"}', "surrogate"),
    "reversed pair": (b'{"object_kind": "note", "note": "\\ude00\\ud83d"}', "surrogate"),
    "surrogate key": (b'{"object_kind": "note", "\\udbff": 1}', "surrogate"),
    "int over 2^63-1": (b'{"object_kind": "note", "id": 9223372036854775808}', "64 bits"),
    "int under -2^63": (b'{"object_kind": "note", "id": -9223372036854775809}', "64 bits"),
    "4300 digits": (b'{"object_kind": "note", "id": ' + b"9" * 4301 + b"}", "64 bits"),
    "nested 5000 deep": (DEEP, "deeper than 64"),
    "nested 65 deep": (_nested(65), "deeper than 64"),
    "duplicate key": (b'{"object_kind": "note", "object_kind": "note"}', "twice"),
    "invalid UTF-8": (b'{"object_kind": "note", "note": "\xc3\x28"}', "UTF-8"),
    "UTF-8 surrogate bytes": (b'{"object_kind": "note", "note": "\xed\xa0\x80"}', "UTF-8"),
    "not an object": (b'["object_kind", "note"]', "not a JSON object"),
    "not JSON": (b'{"object_kind": "note",', "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_a_body_the_database_would_refuse_is_400_and_nothing_is_stored(
    migrated_url: URL, aiohttp_client: MakeClient, case: str
) -> None:
    body, reason = REFUSED[case]
    client = await _client(aiohttp_client, _settings(migrated_url))
    for hook in ("Note Hook", "Merge Request Hook", "System Hook"):
        response = await client.post(
            "/webhook/gitlab", data=body, headers=_headers(**{"X-Gitlab-Event": hook})
        )
        assert response.status == 400, (case, hook)
        error = (await response.json())["error"]
        assert reason in error and "\n" not in error and len(error) < 200
    assert await _rows(client) == []
    assert (await client.get("/health")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert metrics.count('event="unknown",hook="system",outcome="bad_request"} 1.0') == 1


MISSHAPEN = {
    "MR iid as text": {
        "object_kind": "merge_request",
        "project": {"id": 1, "path_with_namespace": "acme/shop"},
        "object_attributes": {"iid": "abc", "action": "merge", "state": "merged"},
    },
    "project id as text": {"object_kind": "note", "project": {"id": "5"}},
    "attributes as a list": {"object_kind": "note", "object_attributes": []},
    "reviewer ids of text": {
        "object_kind": "merge_request",
        "object_attributes": {"iid": 1, "reviewer_ids": ["5"]},
    },
    "changes not an object": {"object_kind": "merge_request", "changes": [1]},
    "system flag as a number": {"object_kind": "note", "object_attributes": {"system": 1}},
}


@pytest.mark.parametrize("case", sorted(MISSHAPEN))
async def test_an_event_whose_fields_have_the_wrong_type_is_400_and_nothing_is_stored(
    migrated_url: URL, aiohttp_client: MakeClient, case: str
) -> None:
    """Valid JSON the database would store, but that no retry could ever process."""
    client = await _client(aiohttp_client, _settings(migrated_url))
    response = await client.post(
        "/webhook/gitlab", data=json.dumps(MISSHAPEN[case]), headers=_headers()
    )
    assert response.status == 400, case
    error = (await response.json())["error"]
    assert error.startswith("not a GitLab ") and "\n" not in error
    assert await _rows(client) == []
    fine = {"object_kind": "note", "object_attributes": None, "project": {"id": 2**62}}
    accepted = await client.post("/webhook/gitlab", data=json.dumps(fine), headers=_headers())
    assert accepted.status == 200  # missing or null fields are the handlers' business


async def test_a_body_of_an_event_the_bot_never_reads_is_ignored_even_when_unreadable(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    """GitLab disables a hook that keeps failing: a push it cannot matter for gets 200."""
    client = await _client(aiohttp_client, _settings(migrated_url))
    for body, _ in REFUSED.values():
        response = await client.post(
            "/webhook/gitlab", data=body, headers=_headers(**{"X-Gitlab-Event": "Push Hook"})
        )
        assert response.status == 200
        assert (await response.json())["status"] == "ignored"
    assert await _rows(client) == []


ACCEPTED = {
    "emoji": '{"object_kind": "note", "note": "\\ud83d\\ude00 \U0001f3b2 \u00e9\u4e2d"}',
    "astral raw": '{"object_kind": "note", "note": "\U0001f600\U00010348 \u202e \ufeff"}',
    "int64 bounds": '{"object_kind": "note", "big": 9223372036854775807, '
    '"small": -9223372036854775808, "ids": [2147483648, 4294967296]}',
    "floats": '{"object_kind": "note", "f": [1e308, -1e-320, 0.1, -0.0]}',
    "escapes": '{"object_kind": "note", "note": "\\\\u0000 \\" \\\\ud800 \\/ \\t"}',
    "64 deep": _nested(64).decode(),
    # as GitLab sends it (indented), and text that looks like the intake's own batch
    "formatted": '{\n  "object_kind" : "note",\n\t"note": [ 1 , {} ]\r\n}\n',
    "batch-like": '{"object_kind": "note", "note": "\\"}},{\\"key\\":\\"x\\"", "k\\"": 1}',
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
async def test_an_accepted_body_is_stored_and_read_back_equal(
    migrated_url: URL, aiohttp_client: MakeClient, case: str
) -> None:
    text = ACCEPTED[case]
    client = await _client(aiohttp_client, _settings(migrated_url))
    response = await client.post(
        "/webhook/gitlab", data=text.encode(), headers=_headers(**{"Idempotency-Key": case[:8]})
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["status"] == "accepted"
    [row] = await _rows(client)
    assert row.payload == json.loads(text)


async def test_header_bytes_that_are_not_utf8_never_reach_the_database(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    """aiohttp hands such bytes over as lone surrogates, which no driver can encode."""
    client = await _client(aiohttp_client, _settings(migrated_url))
    body = json.dumps(NOTE).encode()

    async def send(extra: bytes) -> bytes:
        assert client.server.host is not None
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        head = (
            b"POST /webhook/gitlab HTTP/1.1\r\nHost: bot\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nX-Gitlab-Event: Note Hook\r\n"
            + extra
            + b"Content-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
        )
        writer.write(head + body)
        answer = await reader.read()
        writer.close()
        return answer.split(b"\r\n", 1)[0]

    token = b"X-Gitlab-Token: " + SECRET.encode() + b"\r\n"
    assert b" 200 " in await send(token + b"Idempotency-Key: k\xff\xfe\r\n")
    assert b" 200 " in await send(token + b"X-Gitlab-Event-UUID: \xc3\x28\r\n")
    assert b" 401 " in await send(b"X-Gitlab-Token: \xff" + SECRET.encode() + b"\r\n")
    keys = sorted(r.delivery_key for r in await _rows(client))
    assert len(keys) == 2 and all(k.isascii() and k.isprintable() for k in keys)
    assert (await client.get("/health")).status == 200


# --------------------------------------------------------------------------- routing and keys


def real_payloads() -> tuple[dict[str, Any], dict[str, Any]]:
    """A Note Hook (a ``/roulette`` comment) and a Merge Request Hook, as GitLab sends them.

    Built by the GitLab stand-in's webhook sender (``bot.sandbox.webhooks``), offline.
    """
    standin = GitLabStandIn("t")
    for name in ("alice", "bob"):
        standin.add_user(name)
    standin.add_project("acme/shop", members={"alice": 40, "bob": 30})
    standin.add_merge_request("acme/shop", author="alice", title="Checkout", changes=["a.py"])
    sender = WebhookSender(standin, "http://127.0.0.1:9/webhook/gitlab", secret=SECRET)
    note = standin.add_note("acme/shop", 1, "bob", "/roulette")
    return (
        sender.note_payload("acme/shop", 1, note),
        sender.merge_request_payload("acme/shop", 1, action="approved", user="bob"),
    )


def _hook(name: str, number: int, **extra: str) -> dict[str, str]:
    """Headers of one delivery by one hook: its own Idempotency-Key and UUIDs."""
    return _headers(
        **{
            "X-Gitlab-Event": name,
            "Idempotency-Key": f"idem-{number}",
            "X-Gitlab-Event-UUID": f"event-{number}",
            "X-Gitlab-Webhook-UUID": f"hook-{number}",
        }
        | extra
    )


async def test_one_comment_delivered_by_every_hook_is_processed_once(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    note, _ = real_payloads()
    client = await _client(aiohttp_client, _settings(migrated_url))
    hooks = ["Note Hook", "Note Hook", "System Hook", "Note Hook"]  # project, group, system
    answers = []
    for number, hook in enumerate(hooks):
        response = await client.post("/webhook/gitlab", json=note, headers=_hook(hook, number))
        answers.append((await response.json())["status"])
    resend = await client.post("/webhook/gitlab", json=note, headers=_hook("Note Hook", 0))
    assert [*answers, (await resend.json())["status"]] == [
        "accepted",
        "duplicate",
        "duplicate",
        "duplicate",
        "duplicate",
    ]
    await _until(lambda: _status(client, "done"))
    [recorder] = Recorder.instances
    assert [e.kind for e in recorder.seen] == ["note"]
    attributes = note["object_attributes"]
    assert recorder.seen[0].key == (
        f"note:{note['project_id']}:{attributes['noteable_id']}:{attributes['id']}:create"
    )


async def test_each_edit_of_a_comment_counts_once(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    note, _ = real_payloads()
    client = await _client(aiohttp_client, _settings(migrated_url))
    attributes = note["object_attributes"]
    first = note | {"object_attributes": attributes | {"action": "update", "updated_at": "t1"}}
    second = note | {"object_attributes": attributes | {"action": "update", "updated_at": "t2"}}
    statuses = []
    for number, payload in enumerate([note, first, first, second, second]):
        response = await client.post(
            "/webhook/gitlab", json=payload, headers=_hook("Note Hook", number)
        )
        statuses.append((await response.json())["status"])
    assert statuses == ["accepted", "accepted", "duplicate", "accepted", "duplicate"]
    assert len(await _rows(client)) == 3


async def test_a_merge_request_event_from_two_hooks_counts_once(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    _, approved = real_payloads()
    client = await _client(aiohttp_client, _settings(migrated_url))
    attributes = approved["object_attributes"]
    unapproved = approved | {"object_attributes": attributes | {"action": "unapproved"}}
    sent = [
        ("Merge Request Hook", approved),  # project hook
        ("Merge Request Hook", approved),  # group hook
        ("System Hook", approved),  # instance hook
        ("Merge Request Hook", unapproved),  # another event on the same MR
    ]
    statuses = []
    for number, (hook, payload) in enumerate(sent):
        response = await client.post("/webhook/gitlab", json=payload, headers=_hook(hook, number))
        statuses.append((await response.json())["status"])
    assert statuses == ["accepted", "duplicate", "duplicate", "accepted"]
    await _until(lambda: _status(client, "done"))
    seen = Recorder.instances[0].seen
    assert [e.payload["object_attributes"]["action"] for e in seen] == ["approved", "unapproved"]
    assert all(e.kind == "merge_request" for e in seen)


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"object_kind": "merge_request", "event_type": "merge_request"}, "merge_request"),
        ({"object_kind": "note", "event_type": "note"}, "note"),
        ({"event_name": "merge_request"}, "merge_request"),
        ({"object_kind": "merge_request", "event_name": "note"}, "merge_request"),
    ],
)
async def test_events_are_routed_on_what_the_body_says_not_the_header(
    migrated_url: URL, aiohttp_client: MakeClient, payload: dict[str, Any], kind: str
) -> None:
    client = await _client(aiohttp_client, _settings(migrated_url))
    for number, hook in enumerate(("System Hook", "Push Hook", "Note Hook")):
        response = await client.post("/webhook/gitlab", json=payload, headers=_hook(hook, number))
        assert (await response.json())["status"] == "accepted"
    await _until(lambda: _status(client, "done"))
    assert [e.kind for e in Recorder.instances[0].seen] == [kind] * 3
    metrics = await (await client.get("/metrics")).text()
    label = f'webhook_deliveries_total{{event="{kind}",hook="system",outcome="accepted"}} 1.0'
    assert label in metrics


@pytest.mark.parametrize(
    "payload",
    [
        {"object_kind": "push"},
        {"event_name": "project_create"},
        {"object_kind": 5, "event_name": ["note"]},
        {"object_kind": "", "event_name": "user_add_to_team"},
    ],
)
async def test_a_system_hook_event_the_bot_does_not_handle_is_ignored(
    migrated_url: URL, aiohttp_client: MakeClient, payload: dict[str, Any]
) -> None:
    client = await _client(aiohttp_client, _settings(migrated_url))
    headers = _headers(**{"X-Gitlab-Event": "System Hook"})
    response = await client.post("/webhook/gitlab", json=payload, headers=headers)
    assert response.status == 200
    assert (await response.json())["status"] == "ignored"
    assert await _rows(client) == []


def test_inbox_keys_are_derived_from_the_event_and_fit_the_column() -> None:
    note, merge_request = real_payloads()
    one = {"Idempotency-Key": "a", "X-Gitlab-Event-UUID": "e1"}
    other = {"Idempotency-Key": "b", "X-Gitlab-Event-UUID": "e2"}
    assert inbox_key("note", note, one, b"1") == inbox_key("note", note, other, b"2")
    mr_key = inbox_key("merge_request", merge_request, one, b"1")
    assert mr_key == inbox_key("merge_request", merge_request, other, b"2")
    assert mr_key.startswith("mr:")
    # Without the ids, a delivery is keyed by its delivery: nothing is merged by guess.
    assert inbox_key("note", NOTE, one, b"") == "idem:a"
    assert inbox_key("merge_request", {"object_attributes": {}}, {}, b"x").startswith("sha256:")
    odd = note | {"object_attributes": note["object_attributes"] | {"action": "x" * 300}}
    assert inbox_key("note", odd, one, b"") == "idem:a"
    biggest = 2**63 - 1
    huge = note | {
        "project_id": biggest,
        "object_attributes": {"id": biggest, "noteable_id": biggest, "action": "update"},
    }
    assert len(inbox_key("note", huge, {}, b"")) <= 255
    long_header = {"Idempotency-Key": "k" * 1000}
    assert len(inbox_key("note", {}, long_header, b"")) <= 255


# --------------------------------------------------------------------------- signatures


def _sign(
    body: bytes, message_id: str = "msg-1", at: int | None = None, key: bytes | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, computed here by hand (not by the library)."""
    timestamp = str(at if at is not None else int(time.time()))
    key = key if key is not None else base64.b64decode(SIGNING.removeprefix("whsec_"))
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
    # The bot receives aiohttp's case-insensitive headers, spelt as the sender likes.
    spelt = CIMultiDict({name.title(): value for name, value in _sign(body).items()})
    verify_signature(SIGNING, CIMultiDictProxy(spelt), body)
    verify_signature(SIGNING.rstrip("="), _sign(body), body)  # unpadded base64 key
    cases = [
        ("no matching signature", _sign(body), b'{"a": 2}'),
        ("too old", _sign(body, at=int(time.time()) - 600), body),
        ("too new", _sign(body, at=int(time.time()) + 600), body),
        ("missing", {}, body),
        ("missing", _sign(body) | {"webhook-id": ""}, body),
        ("invalid signature headers", _sign(body) | {"webhook-timestamp": "soon"}, body),
        # What the library's parsing raises as ValueError, not as its own error:
        ("malformed", _sign(body) | {"webhook-signature": "garbage"}, body),
        ("malformed", _sign(body) | {"webhook-signature": "v1,abc v1,x"}, body),
        ("malformed", _sign(body) | {"webhook-id": "m\udcff"}, body),  # a non-UTF-8 header
        ("not UTF-8", _sign(b"\xff"), b"\xff"),
    ]
    for message, headers, sent in cases:
        with pytest.raises(SignatureError, match=f"(?i){message}") as caught:
            verify_signature(SIGNING, headers, sent)
        assert "\n" not in str(caught.value)
    for token in ("whsec_", "whsec_not base64!", "whsec_abc*"):
        with pytest.raises(SignatureError, match="signing token is not a base64 key"):
            verify_signature(token, _sign(body), body)


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
    malformed = _headers() | _sign(body) | {"webhook-signature": "garbage"}
    refused = await client.post("/webhook/gitlab", data=body, headers=malformed)
    assert refused.status == 401  # the library's ValueError is not a 500
    assert (await refused.json())["error"] == (
        "invalid webhook signature: malformed webhook-id, webhook-timestamp or webhook-signature"
    )
    not_utf8 = _headers() | _sign(b"\xff")
    refused = await client.post("/webhook/gitlab", data=b"\xff", headers=not_utf8)
    assert refused.status == 401
    assert await _rows(client) == []
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


class Leaky(Plugin):
    """A handler whose error message carries the webhook secret and a URL's password."""

    name = "leaky"

    @on_gitlab("note")
    async def note(self, event: GitLabEvent) -> None:
        raise ConnectionError(
            f"header X-Gitlab-Token was {SECRET!r}; redis://:cache-pass-93@cache:6379/0 refused"
        )


async def test_a_dead_letters_stored_error_carries_no_secret(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    client = await aiohttp_client(create_app(_settings(migrated_url), plugins=[Leaky]))
    await client.post("/webhook/gitlab", json=NOTE, headers=_headers())
    await _until(lambda: _status(client, "dead"))
    [row] = await _rows(client)
    assert row.last_error is not None and row.last_error.startswith("ConnectionError: ")
    assert SECRET not in row.last_error and "cache-pass-93" not in row.last_error
    assert "redis://:***@cache" in row.last_error


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
        # 202 "spooled" when a commit took longer than the intake waits (a loaded machine):
        # still stored once, drained into the inbox, then processed once
        assert (await target.post("/webhook/gitlab", json=NOTE, headers=headers)).status in (
            200,
            202,
        )

    async def all_done() -> bool:
        rows = await _rows(first)
        return len(rows) == 20 and all(r.status == "done" for r in rows)

    await _until(all_done)
    handled = [e.key for r in Recorder.instances for e in r.seen]
    assert sorted(handled) == sorted(f"idem:k{i}" for i in range(20))
    async with first.app[CONTEXT].sessions() as session:
        attempts = await session.scalar(select(func.sum(WebhookDelivery.attempts)))
    assert attempts == 20


class Gate(Plugin):
    """Handlers that note each event's start and wait until the test opens its gate.

    Class-level state: two replicas' instances share it, as one GitLab's events would.
    """

    name = "gate"
    started: list[str] = []
    gates: dict[str, asyncio.Event] = {}
    fail: set[str] = set()
    running: dict[str, int] = {}  # MR -> handlers running now
    most: dict[str, int] = {}  # MR -> the most that ever ran at once

    async def _run(self, event: GitLabEvent, what: str) -> None:
        mr = what.split()[0]
        Gate.started.append(what)
        Gate.running[mr] = Gate.running.get(mr, 0) + 1
        Gate.most[mr] = max(Gate.most.get(mr, 0), Gate.running[mr])
        try:
            await Gate.gates.setdefault(what, asyncio.Event()).wait()
            if what in Gate.fail:
                raise ConnectionError("GitLab is down")
        finally:
            Gate.running[mr] -= 1

    @on_gitlab("note")
    async def note(self, event: GitLabEvent) -> None:
        iid = event.payload["merge_request"]["iid"]
        await self._run(event, f"!{iid} {event.payload['object_attributes']['note']}")

    @on_gitlab("merge_request")
    async def merge_request(self, event: GitLabEvent) -> None:
        attributes = event.payload["object_attributes"]
        await self._run(event, f"!{attributes['iid']} {attributes['action']}")


async def test_the_events_of_one_merge_request_are_handled_one_at_a_time_in_order(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    """An approval and the merge after it, handled at once, ended the reviewer's assignment
    as ``approved`` instead of ``completed`` now and then: each read the assignment before
    the other wrote it. Events of one MR are now handled one at a time, in the order
    stored, on any replica; one waiting for its retry holds nothing up, and events of
    other MRs never wait for them."""
    Gate.started, Gate.gates, Gate.fail = [], {}, {"!1 approved"}
    Gate.running, Gate.most = {}, {}
    standin = GitLabStandIn("t")
    for name in ("alice", "bob"):
        standin.add_user(name)
    standin.add_project("acme/shop", members={"alice": 40, "bob": 30})
    for title in ("Checkout", "Basket"):
        standin.add_merge_request("acme/shop", author="alice", title=title, changes=["a.py"])
    settings = _settings(migrated_url)
    replicas = [
        await aiohttp_client(create_app(settings, plugins=[Gate])),
        await aiohttp_client(create_app(settings, plugins=[Gate])),
    ]
    sender = WebhookSender(standin, "http://127.0.0.1:9/webhook/gitlab", secret=SECRET)
    events = [
        (
            "Merge Request Hook",
            sender.merge_request_payload("acme/shop", 1, action="approved", user="bob"),
        ),
        (
            "Merge Request Hook",
            sender.merge_request_payload("acme/shop", 1, action="merge", user="alice"),
        ),
        (
            "Note Hook",
            sender.note_payload("acme/shop", 2, standin.add_note("acme/shop", 2, "bob", "Why?")),
        ),
        (
            "Note Hook",
            sender.note_payload("acme/shop", 1, standin.add_note("acme/shop", 1, "bob", "Thanks")),
        ),
    ]
    for number, (hook, payload) in enumerate(events):
        replica = replicas[number % 2]
        response = await replica.post("/webhook/gitlab", json=payload, headers=_hook(hook, number))
        assert (await response.json())["status"] == "accepted"

    async def started(*what: str) -> bool:
        return all(w in Gate.started for w in what)

    # The first event of each MR runs and the rest of !1 waits. The workers take due rows
    # in the order stored, so starting !2's comment (stored third) passed over !1's merge.
    await _until(lambda: started("!1 approved", "!2 Why?"))
    assert sorted(Gate.started) == ["!1 approved", "!2 Why?"]
    # The approval fails: while it waits for its retry, the merge goes on, then the
    # comment; the approval's retries run between them, never beside them.
    Gate.gates["!1 approved"].set()
    await _until(lambda: started("!1 merge"))
    Gate.gates["!1 merge"].set()
    await _until(lambda: started("!1 Thanks"))
    Gate.gates["!1 Thanks"].set()
    Gate.gates["!2 Why?"].set()
    await _until(lambda: _settled(replicas[0]))
    assert Gate.most == {"!1": 1, "!2": 1}
    one = [what for what in Gate.started if what.startswith("!1")]
    assert one.count("!1 approved") == settings.webhook_max_attempts
    assert [w for w in one if w != "!1 approved"] == ["!1 merge", "!1 Thanks"]
    assert one[0] == "!1 approved"
    rows = {row.delivery_key: row for row in await _rows(replicas[1])}
    assert sorted(row.status for row in rows.values()) == ["dead", "done", "done", "done"]
    assert sorted(str(row.ordering_key) for row in rows.values()) == sorted(
        [f"mr:{standin.merge_request('acme/shop', 1)['id']}"] * 3
        + [f"mr:{standin.merge_request('acme/shop', 2)['id']}"]
    )


async def _settled(client: Client) -> bool:
    rows = await _rows(client)
    return bool(rows) and all(r.status in ("done", "dead") for r in rows)


def _offset(now: datetime, seconds: int | None) -> datetime | None:
    return None if seconds is None else now + timedelta(seconds=seconds)


async def test_the_poll_offers_exactly_the_rows_a_claim_would_take(migrated_url: URL) -> None:
    """The poll reads the claimable rows in one pass over the rows not done (window
    functions); the claim tests one row with correlated ``NOT EXISTS``. On random inboxes
    (rows held, expired, waiting for a retry or due, with and without an ordering key),
    both must name the same rows, in id order."""
    engine = create_engine(settings_for(migrated_url).async_database_url)
    sessions = create_sessionmaker(engine)
    rng = random.Random(13)
    now = utcnow()
    try:
        for _ in range(25):
            rows = []
            for n in range(rng.randrange(1, 40)):
                status = rng.choice(("pending", "pending", "processing", "done", "dead"))
                rows.append(
                    {
                        "delivery_key": f"k{n}",
                        "source": "gitlab",
                        "event_type": "note",
                        "payload": {},
                        "status": status,
                        # the boundaries too: due at ``now``, a lease ending at ``now``
                        "next_attempt_at": _offset(now, rng.choice((-5, -1, 0, 3, None))),
                        "locked_until": _offset(now, rng.choice((-2, 0, 4, None))),
                        "ordering_key": rng.choice(("mr:1", "mr:2", "mr:3", None)),
                    }
                )
            async with sessions() as session, session.begin():
                await session.execute(delete(WebhookDelivery))
                await session.execute(insert(WebhookDelivery), rows)
            async with sessions() as session:
                polled = (await session.execute(_DUE_ROWS, {"now": now, "free": 100})).all()
                claimable = await session.scalars(
                    select(WebhookDelivery.id).where(_CLAIMABLE_AT).order_by(WebhookDelivery.id),
                    {"now": now},
                )
                assert [row.id for row in polled] == list(claimable), rows
                for free in (0, 1, 2):
                    limited = await session.execute(_DUE_ROWS, {"now": now, "free": free})
                    assert limited.all() == polled[:free]
    finally:
        await engine.dispose()


def test_the_ordering_key_is_the_merge_request_an_event_concerns() -> None:
    note, merge_request = real_payloads()
    mr_id = merge_request["object_attributes"]["id"]
    assert ordering_key("note", note) == ordering_key("merge_request", merge_request)
    assert ordering_key("merge_request", merge_request) == f"mr:{mr_id}"
    commit_note = {**note, "merge_request": None}  # a comment on a commit or an issue
    assert ordering_key("note", commit_note) is None
    assert ordering_key("merge_request", {"object_attributes": {"id": "7"}}) is None
    assert ordering_key("merge_request", {"object_attributes": []}) is None
    assert ordering_key("pipeline", {}) is None
