"""Bad input at the three public endpoints: never a 5xx, nothing stored when refused.

The app is the real one (``create_app``) on SQLite and PostgreSQL, its Mattermost adapter
offline (no server is asked anything: the user lookup answers locally). Example tests pin
down each kind of form the slash-command and dialog endpoints refuse; then hypothesis
mutates real payloads, bytes-level (insert, delete, flip) and value-level (``NaN``,
``\\u0000``, lone surrogates, huge integers, deep nesting, invalid UTF-8, fields twice),
and checks the contract: a 4xx or 2xx, never a 5xx; a refused request leaves
``webhook_inbox`` and ``ooo_status`` as they were; ``GET /health`` still answers 200.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from yarl import URL as HttpURL

from bot.app import CHATOPS, create_app
from bot.chat import ChatUser
from bot.http import CONTEXT
from bot.mattermost import Mattermost
from bot.models import WebhookDelivery
from bot.settings import Settings
from bot.users import sync_organisation
from plugins.ooo.models import OooStatus
from tests.conftest import settings_for
from tests.roulette.conftest import TEAMS, USERS
from tests.test_webhooks import real_payloads

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

SECRET = "fuzz-webhook-secret"
COMMAND_TOKEN = "fuzz-command-token-0123456789"
USER_ID = "mm-user-alice"
FORM = "application/x-www-form-urlencoded"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every run and machine
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def _alice(user_id: str) -> ChatUser:
    return ChatUser(id=user_id, username="alice", locale="en")


@pytest.fixture
async def client(migrated_url: URL, aiohttp_client: MakeClient) -> Client:
    """The real app; its chat adapter accepts ``COMMAND_TOKEN`` and asks no server."""
    configured = settings_for(
        migrated_url,
        gitlab_webhook_secret=SECRET,
        teams=TEAMS,
        users=USERS,
    )
    app = create_app(configured)
    chat = Mattermost(
        Settings(
            mattermost_url="http://127.0.0.1:9",
            mattermost_token="bot-token-1234",
            mattermost_command_tokens=COMMAND_TOKEN,
        ),
        CollectorRegistry(),
    )
    chat.user = _alice  # type: ignore[method-assign]
    app[CHATOPS].chat = chat
    test_client = await aiohttp_client(app)
    await sync_organisation(test_client.app[CONTEXT].sessions, configured)
    return test_client


async def _stored(client: Client) -> tuple[int, int]:
    """(webhook_inbox rows, ooo_status rows)."""
    async with client.app[CONTEXT].sessions() as session:
        inbox = await session.scalar(select(func.count()).select_from(WebhookDelivery))
        ooo = await session.scalar(select(func.count()).select_from(OooStatus))
    return int(inbox or 0), int(ooo or 0)


async def _check(client: Client, send: Callable[[], Awaitable[Any]]) -> int:
    """Send once; assert the contract; return the status."""
    before = await _stored(client)
    response = await send()
    status = int(response.status)
    assert status < 500, await response.text()
    event(f"HTTP {status}")  # --hypothesis-show-statistics shows how the answers spread
    if status >= 400:
        error = (await response.json())["error"]
        assert error and "\n" not in error and "Traceback" not in error
        assert await _stored(client) == before, f"{status} {error} yet something was stored"
    health = await client.get("/health")
    assert health.status == 200
    return status


# --------------------------------------------------------------------------- real payloads


def _form(command: str, text: str, **extra: str) -> dict[str, str]:
    """A slash-command request as Mattermost sends it (``url.Values``, sorted keys)."""
    return {
        "channel_id": "c" * 26,
        "channel_name": "reviews",
        "command": command,
        "response_url": "http://127.0.0.1:9/hooks/commands/abc",
        "team_domain": "acme",
        "team_id": "t" * 26,
        "text": text,
        "token": COMMAND_TOKEN,
        "trigger_id": "trigger-1",
        "user_id": USER_ID,
        "user_name": "alice",
    } | extra


FORMS = [
    urlencode(sorted(_form("/ooo", "2099-01-01 2099-01-05 conference").items())).encode(),
    urlencode(sorted(_form("/roulette", "help").items())).encode(),
    urlencode(sorted(_form("/ooo", "list").items())).encode(),
]


def _dialog(state: str, **submission: Any) -> dict[str, Any]:
    """An interactive dialog submission as Mattermost posts it."""
    return {
        "type": "dialog_submission",
        "callback_id": "ooo",
        "state": state,
        "user_id": USER_ID,
        "channel_id": "",
        "team_id": "t" * 26,
        "submission": {"start": "2099-03-01", "end": "2099-03-02", "reason": "trip"} | submission,
        "cancelled": False,
    }


def _state(client: Client) -> str:
    chat = client.app[CHATOPS].chat
    assert chat is not None
    return chat.sign_state("ooo", USER_ID)


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"text=%C3%28", FORM, 400),  # percent-encoded bytes that are not UTF-8
        (b"text=%ED%A0%80", FORM, 400),  # an encoded surrogate
        (b"text=caf\xe9", FORM, 400),  # a raw Latin-1 byte
        (b"text=%00x", FORM, 400),  # NUL: refused, not stripped
        (b"token=" + COMMAND_TOKEN.encode() + b"&token=forged", FORM, 400),
        (b'{"token": "x"}', "application/json", 415),
        (b"--b\r\n\r\n--b--", "multipart/form-data; boundary=b", 415),
        (b"text=x", FORM + "; charset=latin-1", 415),
        (b"&".join([b"f%d=1" % i for i in range(200)]), FORM, 400),
    ],
)
async def test_a_malformed_slash_command_is_4xx_and_does_nothing(
    client: Client, body: bytes, content_type: str, status: int
) -> None:
    form = urlencode(_form("/ooo", "2099-01-01 2099-01-05 x")).encode()
    sent = form + b"&" + body if content_type == FORM else body
    response = await client.post(
        "/mattermost/command", data=sent, headers={"Content-Type": content_type}
    )
    assert response.status == status
    assert "\n" not in (await response.json())["error"]
    assert await _stored(client) == (0, 0)


async def test_a_get_slash_command_with_bad_bytes_is_400_and_a_good_one_works(
    client: Client,
) -> None:
    good = urlencode(_form("/ooo", "2099-01-01 2099-01-05 conference"))
    for bad in ("&text=%C3%28", "&user_name=%FF", "&text=a%00b", "&token=again"):
        response = await client.get(HttpURL(f"/mattermost/command?{good}{bad}", encoded=True))
        assert response.status == 400, bad
    assert await _stored(client) == (0, 0)
    response = await client.get(HttpURL(f"/mattermost/command?{good}", encoded=True))
    assert response.status == 200
    assert await _stored(client) == (0, 1)


async def test_a_well_formed_slash_command_still_records(client: Client) -> None:
    response = await client.post(
        "/mattermost/command", data=FORMS[0], headers={"Content-Type": FORM}
    )
    assert response.status == 200
    assert await _stored(client) == (0, 1)


@pytest.mark.parametrize(
    "raw",
    ["NaN", '"a\\u0000b"', '"\\ud800"', "123456789012345678901234", "1e999"],
)
async def test_a_dialog_submission_the_database_would_refuse_is_400(
    client: Client, raw: str
) -> None:
    text = json.dumps(_dialog(_state(client), reason="@@")).replace('"@@"', raw)
    response = await client.post("/mattermost/dialog", data=text.encode())
    assert response.status == 400
    assert await _stored(client) == (0, 0)
    good = await client.post("/mattermost/dialog", json=_dialog(_state(client)))
    assert good.status == 200 and await good.json() == {}
    assert await _stored(client) == (0, 1)


# --------------------------------------------------------------------------- properties

HOSTILE_JSON = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    '"\\u0000"',
    '"x\\ud800"',
    '"\\udfff"',
    "9223372036854775808",
    "-99999999999999999999999",
    "[" * 70 + "]" * 70,
    "[" * 3000 + "]" * 3000,
    '{"a": 1, "a": 2}',
    '{"\\u0000": 1}',
    '"\\ud83d\\ude00"',  # a valid pair: accepted
    "9223372036854775807",  # the largest accepted integer
]
HOSTILE_KEYS = ['"k"', '"\\u0000"', '"\\ud800"', '"\u00e9"', '"object_kind"']
HOSTILE_BYTES = [
    b"NaN",
    b"\\u0000",
    b"\\ud800",
    b"99999999999999999999",
    b"[" * 100,
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\x00",
    b'"',
    b"\\",
    b"%C3%28",
    b"%00",
    b"%FF",
    b"&token=x",
    b"&text=y",
]
HOSTILE_FORM_VALUES = ["%C3%28", "%FF", "%00", "%ED%A0%80", "\xff", "caf%E9", "%F0%9F%98%80"]


@st.composite
def byte_mutations(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` after 1 to 4 byte edits: insert, delete, flip a bit, splice a hostile run."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["insert", "delete", "flip", "splice"]))
        if edit == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif edit == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        elif edit == "flip" and data:
            data[min(position, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        else:
            data[position:position] = draw(st.sampled_from(HOSTILE_BYTES))
    return bytes(data)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))] or [path]
    return [path]


@st.composite
def value_mutations(draw: st.DrawFn, document: dict[str, Any]) -> bytes:
    """``document`` with one value (or a new key) replaced by a hostile JSON token."""
    copy = json.loads(json.dumps(document))
    path = draw(st.sampled_from(_leaves(copy)))
    target = copy
    for step in path[:-1]:
        target = target[step]
    if path and draw(st.booleans()):
        target[path[-1]] = "@@hostile@@"
    else:
        target = copy if not path else target
        if isinstance(target, dict):
            target["@@key@@"] = "@@hostile@@"
        else:
            copy["@@key@@"] = "@@hostile@@"
    text = json.dumps(copy).replace('"@@key@@"', draw(st.sampled_from(HOSTILE_KEYS)))
    return text.replace('"@@hostile@@"', draw(st.sampled_from(HOSTILE_JSON))).encode()


def json_bodies(documents: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    seeds = [json.dumps(d).encode() for d in documents]
    return st.one_of(
        st.sampled_from(seeds).flatmap(byte_mutations),
        st.sampled_from(documents).flatmap(value_mutations),
        st.sampled_from(documents).flatmap(value_mutations).flatmap(byte_mutations),
    )


@st.composite
def form_mutations(draw: st.DrawFn, seed: bytes) -> bytes:
    """A form with one field's value replaced by hostile percent-encoded (or raw) bytes."""
    fields = seed.decode().split("&")
    index = draw(st.integers(0, len(fields) - 1))
    name = fields[index].split("=", 1)[0]
    fields[index] = f"{name}={draw(st.sampled_from(HOSTILE_FORM_VALUES))}"
    return "&".join(fields).encode("utf-8", "surrogateescape")


FORM_BODIES = st.one_of(
    st.sampled_from(FORMS).flatmap(byte_mutations),
    st.sampled_from(FORMS).flatmap(form_mutations),
    st.sampled_from(FORMS).flatmap(form_mutations).flatmap(byte_mutations),
)
NOTE_PAYLOAD, MERGE_REQUEST_PAYLOAD = real_payloads()


@FUZZ
@given(
    body=json_bodies([NOTE_PAYLOAD, MERGE_REQUEST_PAYLOAD]),
    hook=st.sampled_from(["Note Hook", "Merge Request Hook", "System Hook", "Push Hook"]),
)
async def test_webhook_intake_never_fails_and_stores_nothing_it_refuses(
    client: Client, body: bytes, hook: str
) -> None:
    headers = {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": hook}
    await _check(client, lambda: client.post("/webhook/gitlab", data=body, headers=headers))


@FUZZ
@given(body=FORM_BODIES, method=st.sampled_from(["POST", "GET"]))
async def test_slash_commands_never_fail_and_store_nothing_they_refuse(
    client: Client, body: bytes, method: str
) -> None:
    if method == "GET":  # the query travels percent-encoded; decoding it may still fail
        query = quote(body, safe="=&%+")
        url = HttpURL(f"/mattermost/command?{query}", encoded=True)
        await _check(client, lambda: client.get(url))
        return
    headers = {"Content-Type": FORM}
    await _check(client, lambda: client.post("/mattermost/command", data=body, headers=headers))


@FUZZ
@given(data=st.data())
async def test_dialog_submissions_never_fail_and_store_nothing_they_refuse(
    client: Client, data: st.DataObject
) -> None:
    # The state is signed by this app's adapter, so mutations reach past the signature check.
    body = data.draw(json_bodies([_dialog(_state(client))]))
    await _check(client, lambda: client.post("/mattermost/dialog", data=body))
