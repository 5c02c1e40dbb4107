"""The Mattermost stand-in is faithful: mattermostautodriver itself drives it, unchanged.

What the adapter's author needs to know of ``AsyncTypedDriver`` (11.11.1), as these tests
show it:

- It is built from an options dict: ``{"url": "127.0.0.1", "port": 8065 (an int),
  "scheme": "http", "token": "<bot token>"}``, plus ``keepalive``, ``keepalive_delay``
  (seconds between websocket reconnections, 5 by default), ``timeout`` (the websocket's
  heartbeat period, 30 s), ``request_timeout`` (HTTP), ``max_retries``... ``basepath`` is
  accepted and ignored: the driver always calls ``{scheme}://{url}:{port}/api/v4/...``, so a
  Mattermost under a path prefix is out of its reach. ``await d.login()`` runs
  ``GET /users/me`` and sets ``d.client.userid``/``username``.
- ``d.init_websocket(handler)`` returns a coroutine: await it in a task of your own. It
  sends the authentication challenge and passes *every* frame to ``await handler(text)``
  as a raw JSON string, the ``{"status": "OK", "seq_reply": 1}`` reply included, then the
  ``hello`` and the events.
- It never returns on its own, and never raises. When the connection drops (abruptly or
  with a close frame) ``receive_str`` raises aiohttp's ``WSMessageTypeError`` (a
  ``TypeError``, not the ``ClientError`` its loop expects), the driver logs
  "Failed to establish websocket connection" with a traceback, sleeps ``keepalive_delay``
  and connects again, ``keepalive=False`` notwithstanding; the new connection starts over
  with a ``hello`` of seq 0. A refused token is the same loop: the server closes the
  connection, the driver retries forever. An exception raised by the handler is caught
  the same way: it reconnects.
- ``d.disconnect()`` only sets a flag: the coroutine returns (``None``) after the *next*
  frame arrives (which the handler still gets). To stop at once, cancel the task.
- The heartbeat: after ``timeout`` seconds without a frame the driver sends an unsolicited
  websocket *pong* (not a ping, and not the ``ping`` action).
- Errors become exceptions only from Mattermost's error body (``ResourceNotFound`` for a
  404, ``NotEnoughPermissions``, ``InvalidOrMissingParameters``...; ``.error_id`` holds the
  server's id). ``d.client.call_webhook`` raises ``JSONDecodeError`` on success, since
  the hook answers ``text/plain`` ``ok``: post to hooks with another client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp import web
from mattermostautodriver import AsyncTypedDriver
from mattermostautodriver.exceptions import (
    InvalidOrMissingParameters,
    NoAccessTokenProvided,
    NotEnoughPermissions,
    ResourceNotFound,
)

from bot.sandbox.mattermost import MattermostStandIn, driver_options, is_valid_id, serve
from tests.conftest import until

# The driver's own ws_connect(ssl=None) for ws:// URLs: aiohttp 3.14 deprecates it.
pytestmark = pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")

POST_KEYS = {
    "id",
    "create_at",
    "update_at",
    "edit_at",
    "delete_at",
    "is_pinned",
    "user_id",
    "channel_id",
    "root_id",
    "original_id",
    "message",
    "type",
    "props",
    "hashtags",
    "pending_post_id",
    "reply_count",
    "metadata",
}
ERROR_KEYS = ["id", "message", "detailed_error", "request_id", "status_code"]
DIALOG = {
    "callback_id": "ooo",
    "title": "Out of office",
    "introduction_text": "When are you away?",
    "elements": [
        {"display_name": "From", "name": "start", "type": "date"},
        {"display_name": "Until", "name": "end", "type": "date", "optional": True},
        {
            "display_name": "Backup",
            "name": "backup",
            "type": "select",
            "data_source": "users",
        },
    ],
    "submit_label": "Save",
    "notify_on_cancel": True,
    "state": "signed-state",
}


@pytest.fixture(autouse=True)
def library_logs_unfiltered() -> Iterator[None]:
    """These tests read what the driver itself logs: lift the filter that
    ``configure_logging`` (run by other tests in the session) sets on its loggers."""
    loggers = [logging.getLogger(f"mattermostautodriver{n}") for n in ("", ".api", ".websocket")]
    kept = [logger.filters[:] for logger in loggers]
    for logger in loggers:
        logger.filters.clear()
    yield
    for logger, filters in zip(loggers, kept, strict=True):
        logger.filters[:] = filters


@pytest.fixture
def standin() -> MattermostStandIn:
    s = MattermostStandIn()
    s.add_user("alice", first_name="Alice", last_name="A", locale="fr", timezone="Europe/Paris")
    s.add_user("bob")
    s.add_team("eng", "Engineering", members=["roulette-bot", "alice", "bob"])
    s.add_channel("eng", "reviews", members=["roulette-bot", "alice"])
    s.add_channel("eng", "secret", type="P", members=["alice"])
    return s


@pytest.fixture
async def url(standin: MattermostStandIn) -> AsyncIterator[str]:
    async with serve(standin) as base:
        yield base


def options(url: str, token: str, **extra: Any) -> dict[str, Any]:
    """Exactly how the driver is built: host, int port, scheme, token (basepath: ignored)."""
    return {
        "url": "127.0.0.1",
        "port": urlsplit(url).port,
        "scheme": "http",
        "token": token,
        "basepath": "/api/v4",
        "keepalive_delay": 0.1,
        **extra,
    }


@contextlib.asynccontextmanager
async def driver(url: str, token: str, **extra: Any) -> AsyncIterator[AsyncTypedDriver]:
    async with AsyncTypedDriver(options(url, token, **extra)) as d:
        await d.login()
        yield d


@pytest.fixture
async def bot(url: str, standin: MattermostStandIn) -> AsyncIterator[AsyncTypedDriver]:
    async with driver(url, standin.bot_token) as d:
        yield d


# --- REST through the driver ------------------------------------------------------------


async def test_login_and_users(bot: AsyncTypedDriver, standin: MattermostStandIn) -> None:
    me = standin.bot
    assert (bot.client.userid, bot.client.username) == (me["id"], "roulette-bot")
    assert is_valid_id(me["id"]) and me["is_bot"] is True
    alice = await bot.users.get_user(standin.user("alice")["id"])
    assert (alice["locale"], alice["first_name"], alice["email"]) == (
        "fr",
        "Alice",
        "alice@example.com",
    )
    assert alice["timezone"] == {
        "automaticTimezone": "Europe/Paris",
        "manualTimezone": "",
        "useAutomaticTimezone": "true",
    }
    assert "is_bot" not in alice  # Go's omitempty
    found = await bot.users.get_users_by_usernames(["alice", "nobody", "bob"])
    assert [u["username"] for u in found] == ["alice", "bob"]
    assert (await bot.users.get_user_by_username("bob"))["id"] == standin.user("bob")["id"]
    with pytest.raises(ResourceNotFound) as caught:
        await bot.users.get_user_by_username("nobody")
    assert caught.value.error_id == "app.user.get_by_username.app_error"


async def test_bad_token_and_error_schema(url: str) -> None:
    with pytest.raises(NoAccessTokenProvided) as caught:
        async with driver(url, "not-a-token"):
            pass
    assert caught.value.error_id == "api.context.session_expired.app_error"
    async with aiohttp.ClientSession() as http, http.get(f"{url}/api/v4/users/me") as r:
        assert (r.status, r.headers["Content-Type"]) == (401, "application/json")
        body = await r.json()
    assert list(body) == ERROR_KEYS
    assert body["message"] == "Invalid or expired session, please login again."
    async with aiohttp.ClientSession() as http, http.get(f"{url}/api/v4/nothing/here") as r:
        assert (r.status, (await r.json())["id"]) == (404, "api.context.404.app_error")


async def test_posts_and_permissions(bot: AsyncTypedDriver, standin: MattermostStandIn) -> None:
    reviews = standin.channel("eng", "reviews")["id"]
    post = await bot.posts.create_post(
        channel_id=reviews, message="Picked @bob #review", props={"attachments": [{"text": "x"}]}
    )
    assert set(post) == POST_KEYS
    assert post["user_id"] == standin.bot["id"] and post["type"] == ""
    assert post["props"] == {"attachments": [{"text": "x"}], "from_bot": "true"}
    assert post["hashtags"] == "#review"
    assert standin.posts_in(reviews) == [post]
    assert standin.user_posts("roulette-bot") == [post]
    with pytest.raises(NotEnoughPermissions):  # not a member of the private channel
        await bot.posts.create_post(channel_id=standin.channel("eng", "secret")["id"], message="x")
    alice = standin.user("alice")["id"]
    with pytest.raises(NotEnoughPermissions) as caught:  # a default bot: no ephemeral posts
        await bot.posts.create_post_ephemeral(alice, {"channel_id": reviews, "message": "psst"})
    assert caught.value.error_id == "api.context.permissions.app_error"


async def test_ephemeral_post_needs_system_admin(url: str) -> None:
    standin = MattermostStandIn(bot_roles="system_user system_admin")
    standin.add_user("alice")
    standin.add_team("eng", members=["roulette-bot", "alice"])
    town = standin.channel("eng", "town-square")["id"]
    async with serve(standin) as base, driver(base, standin.bot_token) as d:
        alice = standin.user("alice")["id"]
        sent = await d.posts.create_post_ephemeral(alice, {"channel_id": town, "message": "psst"})
    assert sent["type"] == "system_ephemeral" and sent["user_id"] == standin.bot["id"]
    assert [e["message"] for e in standin.ephemeral_posts] == ["psst"]
    assert standin.ephemerals_for("alice")[0]["id"] == sent["id"]
    assert standin.posts_in(town) == []


async def test_direct_channel_is_one_per_pair(
    bot: AsyncTypedDriver, standin: MattermostStandIn
) -> None:
    me, alice = standin.bot["id"], standin.user("alice")["id"]
    channel = await bot.channels.create_direct_channel([alice, me])
    again = await bot.channels.create_direct_channel([me, alice])
    assert channel["id"] == again["id"] == standin.direct_channel("alice", "roulette-bot")["id"]
    assert (channel["type"], channel["team_id"]) == ("D", "")
    assert channel["name"] == "__".join(sorted([me, alice]))
    await bot.posts.create_post(channel_id=channel["id"], message="hello")
    assert [p["message"] for p in standin.posts_in(channel["id"])] == ["hello"]
    with pytest.raises(NotEnoughPermissions):  # someone else's DM
        await bot.channels.create_direct_channel([alice, standin.user("bob")["id"]])


async def test_teams_and_channels_by_name(
    bot: AsyncTypedDriver, standin: MattermostStandIn
) -> None:
    team = await bot.teams.get_team_by_name("eng")
    channel = await bot.channels.get_channel_by_name_for_team_name("eng", "reviews")
    assert (team["display_name"], channel["team_id"]) == ("Engineering", team["id"])
    assert (channel["name"], channel["display_name"], channel["type"]) == (
        "reviews",
        "Reviews",
        "O",
    )
    with pytest.raises(ResourceNotFound) as caught:
        await bot.channels.get_channel_by_name_for_team_name("eng", "secret")  # private
    assert caught.value.error_id == "app.channel.get_by_name.missing.app_error"
    with pytest.raises(ResourceNotFound):
        await bot.teams.get_team_by_name("nope")


async def test_commands(bot: AsyncTypedDriver, standin: MattermostStandIn) -> None:
    team_id = standin.channel("eng", "reviews")["team_id"]
    made = await bot.commands.create_command(team_id, "P", "Roulette", "http://bot.test/cmd")
    assert made["trigger"] == "roulette" and is_valid_id(made["token"])
    assert made["creator_id"] == standin.bot["id"] and made["auto_complete"] is False
    full = await bot.client.post(
        "/api/v4/commands",
        options={
            "team_id": team_id,
            "method": "P",
            "trigger": "ooo",
            "url": "http://bot.test/cmd",
            "auto_complete": True,
            "auto_complete_desc": "Out of office",
            "auto_complete_hint": "[from] [until]",
            "display_name": "OOO",
        },
    )
    assert (full["auto_complete"], full["auto_complete_hint"]) == (True, "[from] [until]")
    for trigger in ("ROULETTE", "echo"):  # taken, and a built-in
        with pytest.raises(InvalidOrMissingParameters) as caught:
            await bot.commands.create_command(team_id, "P", trigger, "http://bot.test/cmd")
        assert caught.value.error_id == "api.command.duplicate_trigger.app_error"
    with pytest.raises(InvalidOrMissingParameters) as caught:
        await bot.commands.create_command(team_id, "P", "x", "ftp://bot.test")
    assert caught.value.error_id == "model.command.is_valid.url_http.app_error"
    listed = await bot.commands.list_commands(team_id=team_id, custom_only=True)
    assert sorted(c["trigger"] for c in listed) == ["ooo", "roulette"]
    assert all(c["token"] for c in listed)
    updated = await bot.commands.update_command(made["id"], {**made, "url": "http://bot.test/v2"})
    assert updated["url"] == "http://bot.test/v2" and updated["token"] == made["token"]
    with pytest.raises(InvalidOrMissingParameters):  # PUT needs the whole command, id included
        await bot.commands.update_command(made["id"], {"url": "http://bot.test/v3"})
    assert await bot.commands.delete_command(full["id"]) == {"status": "OK"}
    assert [c["trigger"] for c in standin.commands_in("eng")] == ["roulette"]


async def test_open_dialog(bot: AsyncTypedDriver, standin: MattermostStandIn) -> None:
    reviews = standin.channel("eng", "reviews")["id"]
    trigger = standin.issue_trigger_id("alice", channel_id=reviews)
    answer = await bot.integration_actions.open_interactive_dialog(
        trigger, "http://bot.test/d", DIALOG
    )
    assert answer == {"status": "OK"}
    opened = standin.dialogs_opened[-1]
    assert (opened["username"], opened["channel_id"], opened["dialog"]) == (
        "alice",
        reviews,
        DIALOG,
    )
    assert opened["problems"] == []
    old = standin.issue_trigger_id("alice", age=31)
    forged = base64.b64encode(base64.b64decode(trigger)[:-4] + b"AAA=").decode()
    for bad, error_id in [
        (old, "interactive_message.decode_trigger_id.expired"),
        (forged, "interactive_message.decode_trigger_id.verify_signature_failed"),
        ("not base64!", "interactive_message.decode_trigger_id.base64_decode_failed"),
    ]:
        with pytest.raises(InvalidOrMissingParameters) as caught:
            await bot.integration_actions.open_interactive_dialog(bad, "http://bot.test/d", DIALOG)
        assert caught.value.error_id == error_id
    invalid = {
        **DIALOG,
        "title": "A title longer than 24 chars",
        "elements": [
            {"display_name": "A display name over 24 ch", "name": "x", "type": "text"},
            {"display_name": "Again", "name": "x", "type": "spinner"},
        ],
    }
    with pytest.raises(InvalidOrMissingParameters) as caught:
        await bot.integration_actions.open_interactive_dialog(trigger, "http://bot.test/d", invalid)
    assert caught.value.error_id == "model.dialog.is_valid.app_error"
    problems = standin.warnings[-1]
    assert "invalid dialog title" in problems and "duplicate dialog element 'x'" in problems
    assert "DisplayName cannot be longer than 24" in problems and "'spinner'" in problems
    standin.strict_dialogs = False  # the real server: logged, and opened anyway
    await bot.integration_actions.open_interactive_dialog(trigger, "http://bot.test/d", invalid)
    assert len(standin.dialogs_opened[-1]["problems"]) == 4


async def test_incoming_webhook(
    url: str, bot: AsyncTypedDriver, standin: MattermostStandIn
) -> None:
    reviews = standin.channel("eng", "reviews")["id"]
    hook = standin.add_incoming_webhook(reviews, display_name="Roulette")
    async with (
        aiohttp.ClientSession() as http,
        http.post(standin.hook_url(hook["id"]), json={"text": "see <http://x.test|this>"}) as r,
    ):
        assert (r.status, r.headers["Content-Type"], await r.text()) == (
            200,
            "text/plain; charset=utf-8",
            "ok",
        )
    post = standin.posts_in(reviews)[-1]
    assert post["message"] == "see [this](http://x.test)"
    assert post["props"]["from_webhook"] == "true" and post["user_id"] == standin.bot["id"]
    with pytest.raises(json.JSONDecodeError):  # the driver's own helper chokes on "ok"
        await bot.client.call_webhook(hook["id"], options={"text": "again"})
    assert [p["message"] for p in standin.posts_in(reviews)][-1] == "again"  # yet posted


# --- the websocket through the driver ---------------------------------------------------


@dataclass
class Listener:
    frames: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, message: str) -> None:
        self.frames.append(json.loads(message))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("event") == name]


@contextlib.asynccontextmanager
async def listening(d: AsyncTypedDriver) -> AsyncIterator[tuple[Listener, asyncio.Task[Any]]]:
    listener = Listener()
    task = asyncio.create_task(d.init_websocket(listener))
    try:
        yield listener, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_websocket_hello_and_posted(
    bot: AsyncTypedDriver, standin: MattermostStandIn
) -> None:
    reviews = standin.channel("eng", "reviews")
    me, alice = standin.bot["id"], standin.user("alice")["id"]
    async with listening(bot) as (listener, task):
        await until(lambda: bool(listener.events("hello")))
        assert listener.frames[0] == {"status": "OK", "seq_reply": 1}  # the handler gets it too
        hello = listener.frames[1]
        assert (hello["seq"], hello["broadcast"]["user_id"]) == (0, me)
        assert hello["data"]["server_version"].startswith("11.")
        said = standin.say("alice", reviews["id"], "@roulette-bot pick !12 please")
        standin.say("bob", standin.channel("eng", "town-square")["id"], "elsewhere")  # a member
        standin.say("alice", standin.channel("eng", "secret")["id"], "not for the bot")
        await bot.posts.create_post(channel_id=reviews["id"], message="on it")
        dm = standin.direct_channel("alice", "roulette-bot")["id"]
        standin.say("alice", dm, "psst")
        await until(lambda: len(listener.events("posted")) == 4)
        assert not task.done()
    posted = listener.events("posted")
    assert [e["seq"] for e in posted] == [1, 2, 3, 4]
    first = posted[0]
    assert list(first) == ["event", "data", "broadcast", "seq"]
    assert first["broadcast"] == {
        "omit_users": None,
        "user_id": "",
        "channel_id": reviews["id"],
        "team_id": "",
    }
    data = first["data"]
    assert json.loads(data.pop("post")) == said
    assert json.loads(data.pop("mentions")) == [me]
    assert data == {
        "channel_display_name": "Reviews",
        "channel_name": "reviews",
        "channel_type": "O",
        "sender_name": "@alice",
        "set_online": True,
        "team_id": reviews["team_id"],
    }
    assert json.loads(posted[1]["data"]["post"])["message"] == "elsewhere"
    own = json.loads(posted[2]["data"]["post"])  # its own posts come back too
    assert (own["user_id"], own["props"]) == (me, {"from_bot": "true"})
    direct = posted[3]["data"]
    assert (direct["channel_type"], direct["channel_display_name"], direct["team_id"]) == (
        "D",
        "@alice",
        "",
    )
    assert json.loads(direct["mentions"]) == [me]
    assert json.loads(direct["post"])["user_id"] == alice


async def test_websocket_drop_reconnects_and_disconnect_returns(
    url: str, standin: MattermostStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    reviews = standin.channel("eng", "reviews")["id"]
    async with driver(url, standin.bot_token) as d, listening(d) as (listener, task):
        await standin.wait_for_websockets("roulette-bot")
        assert standin.drop_websockets() == 1
        await until(lambda: len(listener.events("hello")) == 2)  # it came back by itself
        assert not task.done() and standin.websocket_attempts == 2
        assert "Failed to establish websocket connection" in caplog.text
        assert "WSMessageTypeError" in caplog.text  # not a ClientError: keepalive is moot
        assert listener.events("hello")[1]["seq"] == 0  # seq starts over
        standin.say("alice", reviews, "after the drop")
        await until(lambda: bool(listener.events("posted")))
        assert listener.events("posted")[0]["seq"] == 1
        d.disconnect()  # only a flag: the loop ends after the next frame
        await asyncio.sleep(0.05)
        assert not task.done()
        standin.say("alice", reviews, "one more")
        async with asyncio.timeout(5):
            assert await task is None
        assert len(listener.events("posted")) == 2  # the last frame was still handed over


async def test_websocket_handler_error_reconnects_and_loses_the_event(
    url: str, standin: MattermostStandIn
) -> None:
    frames: list[dict[str, Any]] = []

    async def fragile(message: str) -> None:
        frame = json.loads(message)
        frames.append(frame)
        if frame.get("event") == "posted":
            raise RuntimeError("handler bug")

    async with driver(url, standin.bot_token) as d:
        task = asyncio.create_task(d.init_websocket(fragile))
        try:
            await standin.wait_for_websockets("roulette-bot")
            standin.say("alice", standin.channel("eng", "reviews")["id"], "lost")
            await until(
                lambda: standin.websocket_attempts == 2 and frames[-1].get("event") == "hello"
            )
            assert not task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [f.get("event") for f in frames] == [None, "hello", "posted", None, "hello"]


@pytest.mark.parametrize("hello_before_ok", [False, True])
async def test_websocket_either_reply_order_works(hello_before_ok: bool) -> None:
    standin = MattermostStandIn(hello_before_ok=hello_before_ok)
    standin.add_user("alice")
    standin.add_team("eng", members=["roulette-bot", "alice"])
    async with (
        serve(standin) as base,
        driver(base, standin.bot_token) as d,
        listening(d) as (
            listener,
            _,
        ),
    ):
        await until(lambda: len(listener.frames) == 2)
        standin.say("alice", standin.channel("eng", "town-square")["id"], "hi")
        await until(lambda: bool(listener.events("posted")))
    kinds = [f.get("event", f.get("status")) for f in listener.frames]
    assert kinds == (["hello", "OK", "posted"] if hello_before_ok else ["OK", "hello", "posted"])


async def test_websocket_refused_token_retries_forever(
    url: str, standin: MattermostStandIn
) -> None:
    async with AsyncTypedDriver(options(url, "bogus")) as d:
        d.client.token = "bogus"  # login() would fail first; the websocket uses the token
        async with listening(d) as (listener, task):
            await until(lambda: standin.websocket_attempts >= 3)
            assert not task.done() and listener.frames == []  # closed without a word


async def test_websocket_heartbeat_is_a_pong(url: str, standin: MattermostStandIn) -> None:
    async with driver(url, standin.bot_token, timeout=0.1) as d, listening(d):
        await until(lambda: standin.websocket_pongs >= 2)


async def test_websocket_protocol_by_hand(url: str, standin: MattermostStandIn) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/api/v4/websocket") as ws:
        await ws.send_json({"seq": 1, "action": "user_typing", "data": {}})
        fail = await ws.receive_json()
        assert fail["status"] == "FAIL" and fail["seq_reply"] == 1
        assert fail["error"]["id"] == "api.web_socket_router.not_authenticated.app_error"
        await ws.send_json(
            {
                "seq": 2,
                "action": "authentication_challenge",
                "data": {"token": standin.token_for("alice")},
            }
        )
        assert await ws.receive_json() == {"status": "OK", "seq_reply": 2}
        hello = await ws.receive_json()
        assert (
            hello["event"] == "hello"
            and hello["broadcast"]["user_id"] == standin.user("alice")["id"]
        )
        standin.say("alice", standin.channel("eng", "secret")["id"], "mine")  # her own
        assert (await ws.receive_json())["event"] == "posted"
    headers = {"Authorization": f"Bearer {standin.token_for('bob')}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{url}/api/v4/websocket", headers=headers) as ws,
    ):
        hello = await ws.receive_json()  # authenticated by the header: hello at once
        assert (hello["event"], hello["seq"]) == ("hello", 0)


# --- Mattermost calling the bot: slash commands and dialogs ---------------------------------


@dataclass
class Integration:
    """A tiny bot endpoint: records each request, answers with the next canned reply."""

    replies: list[Callable[[], web.Response]] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "headers": dict(request.headers),
                "body": body,
                "form": parse_qsl(body or request.query_string, keep_blank_values=True),
            }
        )
        return self.replies.pop(0)() if self.replies else web.Response(status=200)

    def reply(
        self,
        data: Any = None,
        *,
        status: int = 200,
        text: str | None = None,
        content_type: str = "application/json",
    ) -> None:
        body = text if text is not None else json.dumps(data)
        self.replies.append(
            lambda: web.Response(
                status=status, body=body.encode(), headers={"Content-Type": content_type}
            )
        )


@pytest.fixture
async def integration() -> AsyncIterator[tuple[Integration, str]]:
    bot_side = Integration()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", bot_side.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield bot_side, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_slash_command_request_is_mattermost_s(
    url: str, standin: MattermostStandIn, integration: tuple[Integration, str]
) -> None:
    bot_side, base = integration
    command = standin.add_command("eng", "roulette", f"{base}/mattermost/command")
    reviews = standin.channel("eng", "reviews")
    bot_side.reply({"response_type": "ephemeral", "text": "Picked @bob"})
    status, answer = await standin.run_slash_command(
        "alice", reviews["id"], "/Roulette pick @bob ~reviews"
    )
    assert status == 200 and answer["text"] == "Picked @bob"
    seen = bot_side.seen[0]
    assert (seen["method"], seen["path"]) == ("POST", "/mattermost/command")
    headers = seen["headers"]
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Accept"] == "application/json"
    assert headers["Authorization"] == f"Token {command['token']}"
    assert headers["User-Agent"] == "Mattermost-Bot/1.1"
    form = seen["form"]
    assert [k for k, _ in form] == sorted(k for k, _ in form)  # Go's url.Values.Encode()
    fields = dict(form)
    alice, bob = standin.user("alice")["id"], standin.user("bob")["id"]
    hook_url = fields.pop("response_url")
    trigger_id = fields.pop("trigger_id")
    assert fields == {
        "channel_id": reviews["id"],
        "channel_mentions": "reviews",
        "channel_mentions_ids": reviews["id"],
        "channel_name": "reviews",
        "command": "/roulette",
        "root_id": "",
        "team_domain": "eng",
        "team_id": reviews["team_id"],
        "text": "pick @bob ~reviews",
        "token": command["token"],
        "user_id": alice,
        "user_mentions": "bob",
        "user_mentions_ids": bob,
        "user_name": "alice",
    }
    assert hook_url.startswith(f"{url}/hooks/commands/")
    client_id, user_id, _, _ = base64.b64decode(trigger_id).decode().split(":")
    assert (user_id, answer["trigger_id"]) == (alice, client_id)  # the client gets its part
    assert [e["message"] for e in standin.ephemeral_posts] == ["Picked @bob"]


async def test_slash_command_answers(
    url: str, standin: MattermostStandIn, integration: tuple[Integration, str]
) -> None:
    bot_side, base = integration
    standin.add_command("eng", "roulette", f"{base}/cmd")
    reviews = standin.channel("eng", "reviews")["id"]
    bot_side.reply(
        {
            "response_type": "in_channel",
            "text": "Reviewers: @bob",
            "goto_location": "http://gitlab.test/mr/1",
            "extra_responses": [{"text": "only you see this"}],
        }
    )
    bot_side.reply({"text": "default is ephemeral"}, content_type="application/json; charset=utf-8")
    bot_side.reply(text="plain words", content_type="text/plain")
    bot_side.reply({"message": "boom"}, status=500)
    results = [await standin.run_slash_command("alice", "reviews", "/roulette") for _ in range(4)]
    assert [s for s, _ in results] == [200, 200, 200, 500]
    assert results[0][1]["goto_location"] == "http://gitlab.test/mr/1"
    assert results[3][1]["id"] == "api.command.execute_command.failed_resp.app_error"
    post = standin.posts_in(reviews)[-1]  # in_channel: a post by the user, from a "webhook"
    assert (post["message"], post["user_id"]) == ("Reviewers: @bob", standin.user("alice")["id"])
    assert post["props"] == {"from_webhook": "true"}
    assert [e["message"] for e in standin.ephemeral_posts] == [
        "only you see this",
        "default is ephemeral",
        "plain words",
    ]
    assert all(e["username"] == "alice" for e in standin.ephemeral_posts)
    status, missing = await standin.run_slash_command("alice", reviews, "/nothing here")
    assert (status, missing["id"]) == (404, "api.command.execute_command.not_found.app_error")


async def test_response_url_follow_ups(
    url: str, standin: MattermostStandIn, integration: tuple[Integration, str]
) -> None:
    bot_side, base = integration
    standin.add_command("eng", "roulette", f"{base}/cmd")
    reviews = standin.channel("eng", "reviews")["id"]
    bot_side.reply({"text": "Working on it..."})
    await standin.run_slash_command("alice", reviews, "/roulette pick")
    hook = dict(bot_side.seen[0]["form"])["response_url"]
    async with aiohttp.ClientSession() as http:
        async with http.post(hook, json={"response_type": "in_channel", "text": "Done: @bob"}) as r:
            assert (r.status, await r.text()) == (200, "ok")
        async with http.post(hook, data="plain follow-up") as r:  # not JSON: plain text
            assert r.status == 200
        for _ in range(3):
            async with http.post(hook, json={"text": "more"}) as r:
                assert r.status == 200
        async with http.post(hook, json={"text": "one too many"}) as r:
            assert (r.status, (await r.json())["id"]) == (
                400,
                "app.command_webhook.try_use.invalid",
            )
    assert [p["message"] for p in standin.posts_in(reviews)] == ["Done: @bob"]
    assert [e["message"] for e in standin.ephemeral_posts] == [
        "Working on it...",
        "plain follow-up",
        "more",
        "more",
        "more",
    ]


async def test_get_command_sends_the_query(
    url: str, standin: MattermostStandIn, integration: tuple[Integration, str]
) -> None:
    bot_side, base = integration
    standin.add_command("eng", "ooo", f"{base}/cmd?v=1", method="G")
    await standin.run_slash_command("bob", "town-square", "/ooo list")
    seen = bot_side.seen[0]
    assert seen["method"] == "GET" and seen["query"].startswith("v=1&channel_id=")
    assert "Content-Type" not in seen["headers"]
    assert dict(parse_qsl(seen["query"]))["text"] == "list"


async def test_dialog_from_a_command_and_its_submission(
    url: str,
    bot: AsyncTypedDriver,
    standin: MattermostStandIn,
    integration: tuple[Integration, str],
) -> None:
    bot_side, base = integration
    standin.add_command("eng", "ooo", f"{base}/cmd")
    reviews = standin.channel("eng", "reviews")
    bot_side.reply({})  # the bot answers, then opens the dialog with the trigger id
    await standin.run_slash_command("alice", reviews["id"], "/ooo")
    trigger_id = dict(bot_side.seen[0]["form"])["trigger_id"]
    await bot.integration_actions.open_interactive_dialog(trigger_id, f"{base}/dialog", DIALOG)
    dialog = standin.dialogs_opened[-1]
    assert (dialog["channel_id"], dialog["team_id"]) == (reviews["id"], reviews["team_id"])
    bot_side.reply({"errors": {"end": "Until must follow From"}})
    bot_side.reply(text="")
    bot_side.reply(text="")
    submission = {"start": "2026-08-01", "end": "2026-07-01", "backup": standin.user("bob")["id"]}
    assert await standin.submit_dialog(dialog, "alice", submission) == (
        200,
        {"errors": {"end": "Until must follow From"}},
    )
    assert await standin.submit_dialog(dialog, "alice", {**submission, "end": "2026-08-09"}) == (
        200,
        {},
    )
    assert await standin.submit_dialog(dialog, "alice", None, cancelled=True) == (200, {})
    sent = json.loads(bot_side.seen[1]["body"])
    assert list(sent) == [
        "type",
        "callback_id",
        "state",
        "user_id",
        "channel_id",
        "team_id",
        "submission",
        "cancelled",
    ]
    assert sent == {
        "type": "dialog_submission",
        "callback_id": "ooo",
        "state": "signed-state",
        "user_id": standin.user("alice")["id"],
        "channel_id": reviews["id"],
        "team_id": reviews["team_id"],
        "submission": submission,
        "cancelled": False,
    }
    assert bot_side.seen[1]["headers"]["Content-Type"] == "application/json"
    cancel = json.loads(bot_side.seen[3]["body"])
    assert (cancel["cancelled"], cancel["submission"]) == (True, {})
    quiet = {**dialog, "dialog": {**DIALOG, "notify_on_cancel": False}}
    assert await standin.submit_dialog(quiet, "alice", None, cancelled=True) == (0, {})
    assert len(bot_side.seen) == 4  # nothing sent


# --- the model ----------------------------------------------------------------------


def test_model_api() -> None:
    s = MattermostStandIn(bot_username=None)
    with pytest.raises(KeyError):
        _ = s.bot
    s.add_user("alice")
    with pytest.raises(ValueError, match="already exists"):
        s.add_user("Alice")
    team = s.add_team("eng", members=["alice"])
    s.add_user("bob")
    lonely = s.add_channel("eng", "lonely")
    with pytest.raises(ValueError, match="may not post"):
        s.say("bob", lonely["id"], "hi")
    s.join_channel(lonely["id"], "bob")
    root = s.say("bob", lonely["id"], "first")
    reply = s.say("alice", s.direct_channel("alice", "bob")["id"], "dm")
    assert s.members(lonely["id"]) == ["bob"]
    assert s.channel("eng", "town-square")["team_id"] == team["id"]
    thread = s.say("bob", lonely["id"], "second", root_id=root["id"])
    assert thread["reply_count"] == 1 and s.posts_in(lonely["id"])[0]["reply_count"] == 1
    assert s.direct_channel("bob", "alice")["id"] == reply["channel_id"]
    assert s.token_for("alice") == s.token_for("alice") != s.token_for("bob")
    assert len({s.issue_trigger_id("alice") for _ in range(3)}) == 3
    assert driver_options("http://127.0.0.1:8065", "t") == {
        "url": "127.0.0.1",
        "port": 8065,
        "scheme": "http",
        "token": "t",
    }


# --- what a client fetches after a reconnection -------------------------------------------


async def test_user_channels_and_posts_since(
    bot: AsyncTypedDriver, standin: MattermostStandIn
) -> None:
    reviews = standin.channel("eng", "reviews")["id"]
    dm = standin.direct_channel("roulette-bot", "alice")["id"]
    first = standin.say("alice", dm, "first")
    root = standin.say("alice", reviews, "a thread")
    mine = await bot.channels.get_channels_for_user("me")
    ids = {c["id"] for c in mine}
    assert {reviews, dm} <= ids and standin.channel("eng", "secret")["id"] not in ids
    [direct] = [c for c in mine if c["id"] == dm]
    assert (direct["type"], direct["last_post_at"]) == ("D", first["create_at"])
    with pytest.raises(NotEnoughPermissions):
        await bot.channels.get_channels_for_user(standin.user("alice")["id"])

    since = root["create_at"]
    while standin.say("alice", reviews, "reply", root_id=root["id"])["create_at"] <= since:
        pass  # the same millisecond: post again
    listing = await bot.posts.get_posts_for_channel(reviews, since=since)
    assert list(listing) == ["order", "posts", "next_post_id", "prev_post_id"]
    [reply_id] = listing["order"]  # only what was updated after ``since``...
    assert listing["posts"][reply_id]["message"] == "reply"
    assert set(listing["posts"]) == {reply_id, root["id"]}  # ...plus its thread's root
    assert set(listing["posts"][root["id"]]) == POST_KEYS
    page = await bot.posts.get_posts_for_channel(reviews, per_page=1)
    assert page["order"] == [reply_id] and page["has_next"] is True
    with pytest.raises(NotEnoughPermissions):  # not a member of the private channel
        await bot.posts.get_posts_for_channel(standin.channel("eng", "secret")["id"], since=1)


async def test_websocket_pings_are_answered_unless_the_server_hangs(
    url: str, standin: MattermostStandIn
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{url}/api/v4/websocket", autoping=False) as ws,
    ):
        await ws.ping(b"1")
        assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.PONG
        standin.answer_pings = False
        await ws.ping(b"2")
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.3)
    assert standin.websocket_pings == 2


# --- message buttons (PROTOCOLS.md A8) ----------------------------------------------------


def _buttons(base: str, *ids: str) -> dict[str, Any]:
    actions = [
        {
            "id": action_id,
            "name": action_id.title(),
            "type": "button",
            "style": "primary",
            "integration": {"url": f"{base}/mattermost/action", "context": {"n": n, "k": "v"}},
        }
        for n, action_id in enumerate(ids)
    ]
    return {"attachments": [{"fallback": "", "actions": actions}]}


async def test_a_click_posts_what_mattermost_posts_and_applies_the_update(
    bot: AsyncTypedDriver, standin: MattermostStandIn, integration: tuple[Integration, str]
) -> None:
    bot_side, base = integration
    dm = standin.direct_channel("roulette-bot", "alice")
    created = await bot.posts.create_post(
        channel_id=dm["id"], message="Review !1?", props=_buttons(base, "accept", "pass")
    )
    [stored] = standin.posts_in(dm["id"])
    assert stored["props"]["attachments"][0]["actions"][1]["integration"]["context"] == {
        "n": 1,
        "k": "v",
    }
    assert stored["props"]["from_bot"] == "true"
    bot_side.reply(
        {"update": {"message": "Accepted", "props": {}}, "ephemeral_text": "<https://x.test|ok>"}
    )
    status, answer = await standin.click("alice", created["id"], "pass")
    assert status == 200 and answer["update"]["message"] == "Accepted"
    seen = bot_side.seen[0]
    assert (seen["method"], seen["path"]) == ("POST", "/mattermost/action")
    assert seen["headers"]["Content-Type"] == "application/json"
    assert "Authorization" not in seen["headers"]  # no token: the context is all there is
    body = json.loads(seen["body"])
    alice = standin.user("alice")
    trigger_id = body.pop("trigger_id")
    assert body == {
        "user_id": alice["id"],
        "user_name": "alice",
        "channel_id": dm["id"],
        "channel_name": dm["name"],
        "team_id": "",
        "team_domain": "",
        "post_id": created["id"],
        "type": "button",
        "data_source": "",
        "context": {"n": 1, "k": "v"},
    }
    assert base64.b64decode(trigger_id).decode().split(":")[1] == alice["id"]
    [updated] = standin.posts_in(dm["id"])
    assert updated["message"] == "Accepted" and "attachments" not in updated["props"]
    assert updated["props"]["from_bot"] == "true" and updated["edit_at"] > 0
    assert [p["message"] for p in standin.ephemerals_for("alice")] == ["[ok](https://x.test)"]
    with pytest.raises(KeyError):  # the buttons are gone
        await standin.click("alice", created["id"], "pass")
    with pytest.raises(KeyError):  # bob cannot see the DM
        await standin.click("bob", created["id"], "accept")


async def test_a_failing_integration_changes_nothing(
    bot: AsyncTypedDriver, standin: MattermostStandIn, integration: tuple[Integration, str]
) -> None:
    bot_side, base = integration
    reviews = standin.channel("eng", "reviews")
    created = await bot.posts.create_post(
        channel_id=reviews["id"], message="Pick?", props=_buttons(base, "go")
    )
    bot_side.reply({"error": "boom"}, status=500)
    assert await standin.click("alice", created["id"], "go") == (500, {})
    bot_side.reply(text="not json", content_type="text/plain")
    assert await standin.click("alice", created["id"], "go") == (200, {})
    [post] = standin.posts_in(reviews["id"])
    assert post["message"] == "Pick?" and post["props"]["attachments"]
    body = json.loads(bot_side.seen[0]["body"])
    assert (body["team_domain"], body["channel_name"]) == ("eng", "reviews")
    assert len(standin.warnings) == 2


async def test_buttons_that_could_never_be_clicked_are_refused(
    bot: AsyncTypedDriver, standin: MattermostStandIn
) -> None:
    reviews = standin.channel("eng", "reviews")
    with pytest.raises(InvalidOrMissingParameters):
        await bot.posts.create_post(
            channel_id=reviews["id"], message="x", props=_buttons("http://bot", "not-ok")
        )
    no_url = _buttons("http://bot", "ok")
    del no_url["attachments"][0]["actions"][0]["integration"]["url"]
    with pytest.raises(InvalidOrMissingParameters):
        await bot.posts.create_post(channel_id=reviews["id"], message="x", props=no_url)
    assert standin.posts_in(reviews["id"]) == []
    unnamed = _buttons("http://bot", "x")
    del unnamed["attachments"][0]["actions"][0]["id"]
    created = await bot.posts.create_post(channel_id=reviews["id"], message="x", props=unnamed)
    [action] = created["props"]["attachments"][0]["actions"]
    assert is_valid_id(action["id"])  # GenerateActionIds


async def test_patch_post_through_the_driver(
    url: str, bot: AsyncTypedDriver, standin: MattermostStandIn
) -> None:
    reviews = standin.channel("eng", "reviews")
    created = await bot.posts.create_post(
        channel_id=reviews["id"], message="before", props=_buttons("http://bot", "a")
    )
    patched = await bot.posts.patch_post(created["id"], message="after", props={"k": "v"})
    assert set(patched) >= POST_KEYS
    assert patched["message"] == "after"
    assert patched["props"] == {"k": "v", "from_bot": "true"}
    [stored] = standin.posts_in(reviews["id"])
    assert stored["message"] == "after" and stored["edit_at"] >= stored["create_at"]
    pinned = await bot.posts.patch_post(created["id"], is_pinned=True)
    assert pinned["message"] == "after" and pinned["is_pinned"] is True
    with pytest.raises(ResourceNotFound):
        await bot.posts.patch_post("x" * 26, message="nope")
    async with driver(url, standin.token_for("alice")) as alice:
        with pytest.raises(NotEnoughPermissions):
            await alice.posts.patch_post(created["id"], message="mine now")
    with pytest.raises(InvalidOrMissingParameters):
        await bot.posts.patch_post(created["id"], props=_buttons("http://bot", "a b"))
    assert standin.posts_in(reviews["id"])[0]["message"] == "after"
