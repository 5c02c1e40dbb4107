"""The Mattermost adapter's own rules: signed dialog state, command tokens, events."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from mattermostautodriver.exceptions import ResourceNotFound
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import CHATOPS, create_app
from bot.chat import Button, ChatUser, DialogResult, DialogSubmission, Reply
from bot.chatcursor import DatabaseCursor
from bot.logs import configure_logging
from bot.mattermost import Backoff, ChatMessage, Mattermost, RecentIds, command_response
from bot.models import Configuration
from bot.plugins import Plugin, dialog
from bot.sandbox.mattermost import MattermostStandIn, serve
from bot.settings import Settings


@pytest.fixture
def chat() -> Mattermost:
    settings = Settings(
        mattermost_url="https://chat.example.com",
        mattermost_token="bot-token-1234",
        mattermost_command_tokens="extra-1, extra-2",
    )
    adapter = Mattermost(settings, CollectorRegistry())
    adapter.user_id = "bot-id"
    return adapter


def test_dialog_state_is_bound_to_dialog_user_and_time(chat: Mattermost) -> None:
    state = chat.sign_state("ooo", "user-1")
    assert chat.verify_state(state, "ooo", "user-1")
    assert not chat.verify_state(state, "ooo", "user-2")
    assert not chat.verify_state(state, "other", "user-1")
    assert not chat.verify_state(state[:-2] + "xx", "ooo", "user-1")
    expired = chat.sign_state("ooo", "user-1", now=time.time() - 7200)
    assert not chat.verify_state(expired, "ooo", "user-1")
    assert not chat.verify_state("", "ooo", "user-1")


def test_dialog_state_carries_a_signed_context(chat: Mattermost) -> None:
    state = chat.sign_state("pass", "user-1", context={"review": 12, "why": "é"})
    assert chat.state_context(state, "pass", "user-1") == {"review": 12, "why": "é"}
    assert chat.verify_state(state, "pass", "user-1")
    assert chat.state_context(chat.sign_state("pass", "user-1"), "pass", "user-1") == {}
    expires, _packed, mac = state.split(".")
    other = chat.sign_state("pass", "user-1", context={"review": 13}).split(".")[1]
    assert chat.state_context(f"{expires}.{other}.{mac}", "pass", "user-1") is None
    assert chat.state_context(f"{expires}.{mac}", "pass", "user-1") is None  # context dropped
    assert chat.state_context(f"{expires}..{mac}", "pass", "user-1") is None
    assert chat.state_context(state, "pass", "user-2") is None
    assert chat.state_context("a.b.c.d", "pass", "user-1") is None


def test_button_contexts_are_bound_to_every_field_and_expire(chat: Mattermost) -> None:
    context = chat.sign_action("accept", "yes", "user-1", {"review": 12, "tags": ["a"]})
    signed = chat.verify_action(context)
    assert signed is not None
    assert (signed.action, signed.button, signed.user_id) == ("accept", "yes", "user-1")
    assert signed.payload == {"review": 12, "tags": ["a"]}
    # What Mattermost hands back went through Go's JSON (keys reordered, numbers re-encoded).
    assert chat.verify_action(json.loads(json.dumps(dict(reversed(context.items()))))) is not None
    for key, value in [
        ("action", "pass"),
        ("button", "no"),
        ("user", "user-2"),
        ("payload", {"review": 13, "tags": ["a"]}),
        ("expires", context["expires"] - 1),
        ("signature", ""),
    ]:
        assert chat.verify_action(context | {key: value}) is None, key
    assert chat.verify_action(context, now=context["expires"] + 1) is None
    assert chat.verify_action(None) is None and chat.verify_action([]) is None
    # A dialog state never passes for a button context, nor the other way round.
    other = Mattermost(
        Settings(mattermost_url="https://chat.example.com", mattermost_token="another-token"),
        CollectorRegistry(),
    )
    assert other.verify_action(context) is None
    with pytest.raises(ValueError, match="float"):
        chat.sign_action("accept", "yes", "user-1", {"score": 0.5})
    with pytest.raises(ValueError, match="too large"):
        chat.sign_action("accept", "yes", "user-1", {"id": 2**60})


def test_button_props_have_mattermost_s_shape(chat: Mattermost) -> None:
    yes, no = Button("yes", "Oui", "accept", {"n": 1}, "primary"), Button("no", "Non", "pass")
    props = chat.button_props([yes, no], "user-1")
    [attachment] = props["attachments"]
    first, second = attachment["actions"]
    assert {k: first[k] for k in ("id", "name", "type", "style")} == {
        "id": "yes",
        "name": "Oui",
        "type": "button",
        "style": "primary",
    }
    assert first["integration"]["url"] == "http://localhost:8080/mattermost/action"
    assert chat.verify_action(second["integration"]["context"]) is not None
    assert chat.button_props([], "user-1") == {}
    with pytest.raises(ValueError, match="unique"):
        chat.button_props([yes, yes], "user-1")


def test_configured_command_tokens_are_accepted(chat: Mattermost) -> None:
    assert chat.token_ok("extra-1", "roulette") and chat.token_ok("extra-2", "ooo")
    assert not chat.token_ok("extra-3", "roulette")
    assert not chat.token_ok("", "roulette") and not chat.token_ok(None, "roulette")


def _event(post: dict[str, object], **data: object) -> dict[str, object]:
    return {"event": "posted", "data": {"post": json.dumps(post), **data}}


def test_posted_events_are_normalised_and_filtered(chat: Mattermost) -> None:
    post = {"id": "p1", "channel_id": "c1", "user_id": "u1", "message": "@roulette help"}
    message = chat._message(
        _event(post, channel_type="O", sender_name="@alice", mentions='["bot-id"]')
    )
    assert message is not None
    assert (message.sender_name, message.text, message.mentions) == (
        "alice",
        "@roulette help",
        ("bot-id",),
    )
    assert chat._message(_event(post | {"user_id": "bot-id"})) is None  # our own
    assert chat._message(_event(post | {"type": "system_join_channel"})) is None
    assert chat._message(_event(post | {"props": {"from_webhook": "true"}})) is None
    assert chat._message({"event": "posted", "data": {"post": "{not json"}}) is None


def test_command_response_shape() -> None:
    reply = Reply("done", "in_channel", extra=(Reply("psst"),))
    assert command_response(reply) == {
        "response_type": "in_channel",
        "text": "done",
        "extra_responses": [{"response_type": "ephemeral", "text": "psst"}],
    }


def test_chat_needs_url_and_token() -> None:
    with pytest.raises(ValueError, match="MATTERMOST_URL and MATTERMOST_TOKEN"):
        Mattermost(Settings(mattermost_url="https://chat.example.com"), CollectorRegistry())


async def test_a_failing_dialog_handler_answers_an_error_not_a_500(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    class Broken(Plugin):
        name = "broken"

        @dialog("broken")
        async def submitted(self, submission: DialogSubmission) -> DialogResult:
            raise RuntimeError("internal detail")

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}")
    app = create_app(settings, plugins=[Broken])
    chat = Mattermost(
        Settings(mattermost_url="https://chat.example.com", mattermost_token="bot-token-1234"),
        CollectorRegistry(),
    )
    app[CHATOPS].chat = chat
    client = await aiohttp_client(app)
    body = {
        "type": "dialog_submission",
        "callback_id": "broken",
        "state": chat.sign_state("broken", "u1"),
        "user_id": "u1",
        "channel_id": "",
        "submission": {"start": 5},
        "cancelled": False,
    }
    chat.user = _offline_user  # type: ignore[method-assign]
    response = await client.post("/mattermost/dialog", json=body)
    assert response.status == 200
    answer = await response.json()
    assert "Something went wrong" in answer["error"] and "internal detail" not in answer["error"]
    not_json = await client.post("/mattermost/dialog", data=b"{nope")
    assert not_json.status == 400


async def _offline_user(user_id: str) -> ChatUser:
    return ChatUser(id=user_id, username="someone", locale="en")


# --- the websocket: backoff, heartbeat, catch-up after a reconnection ---------------------


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(start=1.0, cap=30.0, jitter=lambda: 1.5)
    waits = [backoff.next_wait() for _ in range(7)]
    assert waits == [1.5, 3.0, 6.0, 12.0, 24.0, 30.0, 30.0]  # jitter never passes the cap
    backoff.reset()
    assert backoff.next_wait() == 1.5


def test_recent_ids_remember_a_bounded_number() -> None:
    seen = RecentIds(3)
    assert [seen.add(i) for i in ("a", "b", "a", "c", "d")] == [True, True, False, True, True]
    assert seen.add("a")  # forgotten: only the last three are kept
    assert not seen.add("d")


@dataclass
class Live:
    """The adapter connected to the Mattermost stand-in, and what it handed over."""

    adapter: Mattermost
    standin: MattermostStandIn
    received: list[ChatMessage] = field(default_factory=list)

    async def on_message(self, message: ChatMessage) -> None:
        self.received.append(message)

    def texts(self) -> list[str]:
        return [m.text for m in self.received]


async def _until(condition: Callable[[], bool], within: float = 30.0) -> None:
    """Wait for ``condition`` (polled), ``within`` seconds at most."""
    deadline = time.monotonic() + within
    while True:
        if condition():
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def live(request: pytest.FixtureRequest) -> AsyncIterator[Live]:
    heartbeat = getattr(request, "param", 30.0)
    standin = MattermostStandIn()
    standin.add_user("alice")
    standin.add_team("eng", members=["roulette-bot", "alice"])
    standin.add_channel("eng", "reviews", members=["roulette-bot", "alice"])
    async with serve(standin) as url:
        settings = Settings(
            mattermost_url=url,
            mattermost_token=standin.bot_token,
            mattermost_heartbeat_seconds=heartbeat,
        )
        adapter = Mattermost(settings, CollectorRegistry())
        adapter.backoff = Backoff(start=0.05, cap=0.2)
        state = Live(adapter, standin)
        await adapter.start([], state.on_message)
        try:
            await _until(lambda: adapter.state == "connected")
            yield state
        finally:
            await adapter.stop()


async def test_posts_made_while_disconnected_are_handed_over_once(live: Live) -> None:
    mm = live.standin
    dm = mm.direct_channel("roulette-bot", "alice")["id"]
    reviews = mm.channel("eng", "reviews")["id"]
    mm.say("alice", dm, "before")
    await _until(lambda: live.texts() == ["before"])
    assert mm.drop_websockets() == 1
    # Posted in the same tick as the drop: the bot cannot have reconnected yet.
    mm.say("alice", dm, "while away")
    mm.say("alice", reviews, "@roulette-bot help")
    await _until(lambda: len(live.received) == 3)
    missed = {(m.text, m.channel_type) for m in live.received[1:]}  # maybe the same ms
    assert missed == {("while away", "D"), ("@roulette-bot help", "O")}
    assert any("/posts?since=" in path for _, path in mm.requests)
    # Another reconnection re-reads an overlap: nothing is handed over twice.
    fetched = sum("/posts?since=" in path for _, path in mm.requests)
    assert mm.drop_websockets() == 1
    await _until(lambda: sum("/posts?since=" in path for _, path in mm.requests) > fetched)
    mm.say("alice", dm, "after")
    await _until(lambda: live.texts()[-1:] == ["after"])
    assert len(live.texts()) == 4 and live.texts()[0] == "before"


@pytest.mark.parametrize("live", [0.5], indirect=True)  # a pong is awaited 0.25 s
async def test_a_quiet_server_keeps_the_connection_a_silent_one_loses_it(live: Live) -> None:
    mm = live.standin
    # Eight heartbeats without a word from the server: still the first connection.
    await _until(lambda: mm.websocket_pings >= 8)
    assert (mm.websocket_attempts, live.adapter.state) == (1, "connected")
    # A server that stops answering pings is dead: the bot connects again.
    mm.answer_pings = False
    await _until(lambda: mm.websocket_attempts >= 2)
    mm.answer_pings = True
    await _until(lambda: live.adapter.state == "connected" and mm.websockets_open() == 1)


async def test_an_unknown_user_is_no_library_error(
    caplog: pytest.LogCaptureFixture, live: Live
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    library = [logging.getLogger(f"mattermostautodriver{n}") for n in ("", ".api", ".websocket")]
    filters = [logger.filters[:] for logger in library]
    configure_logging("info", "json", stream=io.StringIO())
    try:
        caplog.set_level(logging.DEBUG)
        assert await live.adapter.user_by_username("nobody") is None
        with pytest.raises(ResourceNotFound):
            await live.adapter.user("x" * 26)
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        for logger, kept in zip(library, filters, strict=True):
            logger.filters[:] = kept
    errors = [r for r in caplog.records if r.name.startswith("mattermostautodriver")]
    assert not [r for r in errors if r.levelno >= logging.ERROR]


# ---------------------------------------------------------------- the post cursor


async def test_the_post_cursor_never_goes_backwards(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    cursor = DatabaseCursor(sessions)
    assert await cursor.load() is None  # nothing stored yet
    await cursor.save(1_700_000_000_500)
    await cursor.save(1_700_000_000_100)  # older: ignored
    assert await cursor.load() == 1_700_000_000_500
    await asyncio.gather(*(cursor.save(1_700_000_000_000 + n) for n in (900, 700, 800)))
    assert await cursor.load() == 1_700_000_000_900
    async with sessions.begin() as session:  # a value meddled with by hand
        row = await session.get(Configuration, cursor.key)
        assert row is not None
        row.value = "soon"
    assert await cursor.load() is None
    await cursor.save(1_700_000_000_001)
    assert await cursor.load() == 1_700_000_000_001


@dataclass
class MemoryCursor:
    """A ``PostCursor`` in memory, shared by the adapters of one test (the "database")."""

    value: int | None = None
    saves: list[int] = field(default_factory=list)

    async def load(self) -> int | None:
        return self.value

    async def save(self, create_at: int) -> None:
        self.saves.append(create_at)
        self.value = max(self.value or 0, create_at)


@dataclass
class Restartable(Live):
    """``Live``, with the stored cursor as each handler found it."""

    cursor: MemoryCursor = field(default_factory=MemoryCursor)
    at_handling: list[int | None] = field(default_factory=list)

    async def on_message(self, message: ChatMessage) -> None:
        self.at_handling.append(self.cursor.value)
        self.received.append(message)


@contextlib.asynccontextmanager
async def _running(
    standin: MattermostStandIn,
    url: str,
    cursor: MemoryCursor,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[Restartable]:
    """An adapter with ``cursor`` connected to the stand-in, stopped on exit."""
    settings = Settings(mattermost_url=url, mattermost_token=standin.bot_token)
    adapter = Mattermost(settings, CollectorRegistry(), wall_clock=wall_clock, cursor=cursor)
    adapter.backoff = Backoff(start=0.05, cap=0.2)
    state = Restartable(adapter, standin, cursor=cursor)
    await adapter.start([], state.on_message)
    try:
        await _until(lambda: adapter.state == "connected")
        yield state
    finally:
        await adapter.stop()


@pytest.fixture
async def standin() -> AsyncIterator[tuple[MattermostStandIn, str]]:
    mm = MattermostStandIn()
    mm.add_user("alice")
    mm.add_team("eng", members=["roulette-bot", "alice"])
    mm.add_channel("eng", "reviews", members=["roulette-bot", "alice"])
    async with serve(mm) as url:
        yield mm, url


async def test_a_new_process_answers_what_was_posted_while_none_ran(
    standin: tuple[MattermostStandIn, str],
) -> None:
    mm, url = standin
    dm = mm.direct_channel("roulette-bot", "alice")["id"]
    reviews = mm.channel("eng", "reviews")["id"]
    cursor = MemoryCursor()
    async with _running(mm, url, cursor) as first:
        # A first start with nothing stored: its own start is where the next one begins.
        await _until(lambda: cursor.value is not None)
        before = mm.say("alice", dm, "before")
        await _until(lambda: first.texts() == ["before"])
        await _until(lambda: cursor.value == before["create_at"])
    # No bot runs: a DM, a mention, and chatter that is not for the bot.
    mm.say("alice", dm, "while down")
    mention = mm.say("alice", reviews, "@roulette-bot help")
    mm.say("alice", reviews, "lunch?")
    saves = len(cursor.saves)
    async with _running(mm, url, cursor) as second:
        await _until(lambda: len(second.received) == 3)
        mm.say("alice", dm, "live")
        await _until(lambda: second.texts()[-1:] == ["live"])
    # Each once (maybe in the same ms), and strictly after the cursor: not "before".
    assert sorted(second.texts()[:3]) == ["@roulette-bot help", "lunch?", "while down"]
    assert len(second.texts()) == 4
    # The cursor was saved before each handler ran, for the posts addressed to the bot.
    found = dict(zip(second.texts(), second.at_handling, strict=True))
    for text in ("while down", "@roulette-bot help", "live"):
        [message] = [m for m in second.received if m.text == text]
        assert (found[text] or 0) >= message.create_at, text
    assert len(cursor.saves) - saves == 3  # not for "lunch?"
    assert cursor.value == second.received[3].create_at >= mention["create_at"]


async def test_posts_older_than_the_catch_up_window_stay_unanswered(
    standin: tuple[MattermostStandIn, str], caplog: pytest.LogCaptureFixture
) -> None:
    mm, url = standin
    dm = mm.direct_channel("roulette-bot", "alice")["id"]
    old = mm.say("alice", dm, "two hours ago")
    cursor = MemoryCursor(old["create_at"] - 1)
    later = lambda: time.time() + 2 * 3600  # noqa: E731 - the bot starts two hours later
    with caplog.at_level(logging.WARNING, logger="bot.mattermost"):
        async with _running(mm, url, cursor, wall_clock=later) as live:
            await _until(lambda: any("/posts?since=" in path for _, path in mm.requests))
            mm.say("alice", dm, "now")
            await _until(lambda: live.texts() == ["now"])
    assert any("stay unanswered" in r.getMessage() for r in caplog.records)


async def test_a_reconnection_skips_what_another_replica_handed_over(
    standin: tuple[MattermostStandIn, str],
) -> None:
    mm, url = standin
    dm = mm.direct_channel("roulette-bot", "alice")["id"]
    cursor = MemoryCursor()
    async with _running(mm, url, cursor) as live:
        mm.say("alice", dm, "mine")
        await _until(lambda: live.texts() == ["mine"])
        fetched = sum("/posts?since=" in path for _, path in mm.requests)
        assert mm.drop_websockets() == 1
        # In the same tick: another replica leads meanwhile and answers this one.
        theirs = mm.say("alice", dm, "theirs")
        cursor.value = theirs["create_at"]
        await _until(lambda: sum("/posts?since=" in path for _, path in mm.requests) > fetched)
        mm.say("alice", dm, "after")
        await _until(lambda: live.texts()[-1:] == ["after"])
    assert live.texts() == ["mine", "after"]
