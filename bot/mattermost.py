"""The one adapter to Mattermost: REST through mattermostautodriver, and the websocket.

- REST calls go through ``AsyncTypedDriver`` (natively async, on the app's loop). The
  few calls it does not expose properly (command registration with autocomplete fields)
  use its raw client here, and only here.
- The websocket is this module's own small client over aiohttp (the same protocol as
  the driver's: authentication challenge, ``hello``, events) because the driver's loop
  reconnects at a fixed pace and logs a traceback per drop. A quiet server is not a dead
  one (Mattermost may send nothing for minutes): the client pings every
  ``MATTERMOST_HEARTBEAT_SECONDS`` and only a missing pong ends a connection. A dropped
  connection is retried with exponential backoff and jitter, at most ``BACKOFF_CAP``
  seconds, starting afresh after a connection that worked; its state is exposed.
- Mattermost does not replay what was posted while the bot was disconnected. After each
  new ``hello`` the posts made since the last one seen are fetched over REST (the bot's
  channels, direct messages included: ``GET /users/{me}/channels``, then
  ``GET /channels/{id}/posts?since=<ms>`` for those with newer posts) and handed over
  like live ones; each post id is handled once, whichever way it arrived.
- What was posted while no process listened (a restart, a crash, another replica taking
  over) is fetched too: the time of the newest post handed over is kept outside the
  process (a :class:`PostCursor`, in the database for the app) and the first ``hello``
  of a process catches up strictly after it. The cursor is saved before the handler
  runs: at most once, so a crash in the middle of a handler loses that one answer
  rather than giving it twice.
- Slash commands the plugins declare are registered (or updated) in ``MATTERMOST_TEAM``
  at start, and their tokens learned; dialog ``state`` values are signed by the bot.
- Message buttons (PROTOCOLS.md A8) go out as ``props.attachments[].actions[]`` whose
  ``integration.context`` the bot signs: the action, the button, the Mattermost user the
  button is for, its payload and an expiry, under an HMAC-SHA256 of their canonical JSON.
  Mattermost adds no token to a click, so that signature is all a click is trusted by.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from mattermostautodriver import AsyncTypedDriver
from prometheus_client import CollectorRegistry, Counter, Gauge

from bot.chat import (
    LEGACY_POST_LIMIT,
    POST_LIMIT,
    REPLY_PARTS,
    ActionResult,
    Button,
    ChatUser,
    Dialog,
    Reply,
    fit_to_post,
)
from bot.i18n import DEFAULT_LOCALE, normalise
from bot.leader import Leadership
from bot.settings import Settings

log = logging.getLogger("bot.mattermost")

BACKOFF_START = 1.0  # seconds before the first reconnection attempt (±50% jitter)
BACKOFF_CAP = 30.0  # the longest wait between two attempts
HANDSHAKE_TIMEOUT = 10.0  # seconds to open (or close) a websocket connection
CATCH_UP_OVERLAP_MS = 2_000  # re-read this much before the newest post seen (ids dedupe)
CATCH_UP_MAX_AGE_MS = 3_600_000  # after a long outage, messages older than this stay unanswered
SEEN_POSTS = 4_096  # post ids remembered, so that each post is handled once
USER_TTL = 300.0
STATE_TTL = 3600  # a dialog may stay open for an hour
ACTION_TTL = 30 * 24 * 3600  # seconds a message button stays valid (30 days)
ACTION_PATH = "/mattermost/action"  # where Mattermost posts button clicks
_SAFE_INT = 2**53  # Mattermost re-encodes a context's numbers as float64: keep them exact
POST_LIMIT_RETRY = 60.0  # seconds before asking again a server that did not say its limit
LEADERSHIP_CHECK = 15.0  # seconds between checks that this replica still leads
CURSOR_TIMEOUT = 5.0  # seconds a read or a save of the post cursor may take


class MattermostError(Exception):
    """Mattermost refused or could not be reached; the message is one line."""


@dataclass(frozen=True)
class CommandDefinition:
    trigger: str
    description: str
    hint: str


@dataclass(frozen=True)
class ChatMessage:
    """A post someone made (a ``posted`` event, or one fetched after a reconnection).

    ``sender_name`` is empty for fetched posts (REST posts carry no name);
    ``create_at`` is the server's time of the post, in milliseconds since the epoch.
    """

    post_id: str
    channel_id: str
    channel_type: str  # O, P, D (direct), G (group)
    sender_id: str
    sender_name: str
    text: str
    root_id: str
    mentions: tuple[str, ...]
    create_at: int = 0


@dataclass(frozen=True)
class SignedAction:
    """A button's ``integration.context`` whose signature verified and is not expired."""

    action: str  # the @action handler's name
    button: str  # the Button.id
    user_id: str  # the Mattermost user the button was made for
    payload: Mapping[str, Any]


def _canonical(value: Any) -> bytes:
    """The one byte string a JSON-able value signs as: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _check_json(value: Any, where: str = "payload") -> None:
    """Refuse what would not come back unchanged through Mattermost's JSON (Go decodes a
    context's numbers as float64): floats, integers past 2**53, non-string keys.

    Raises ``ValueError`` naming the bad part."""
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) >= _SAFE_INT:
            raise ValueError(f"{where}: integer {value} too large to survive Mattermost")
        return
    if isinstance(value, list | tuple):
        for n, item in enumerate(value):
            _check_json(item, f"{where}[{n}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not a string")
            _check_json(item, f"{where}.{key}")
        return
    raise ValueError(f"{where}: {type(value).__name__} is not allowed in a signed context")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Backoff:
    """Waits between connection attempts: ``start`` seconds, doubling after each failed
    attempt up to ``cap``, each with ±50% jitter (never above ``cap``); :meth:`reset`
    after a connection that worked. ``jitter`` draws the factor (tests fix it).

    Not tenacity: its ``Retrying`` models one call retried until it succeeds, while this
    supervisor runs for the life of the process and must start again from ``start`` after
    a connection that worked; the schedule itself is these ten lines.
    """

    def __init__(
        self,
        start: float = BACKOFF_START,
        cap: float = BACKOFF_CAP,
        jitter: Callable[[], float] = lambda: random.uniform(0.5, 1.5),
    ) -> None:
        self.start, self.cap, self._jitter = start, cap, jitter
        self._delay = start

    def reset(self) -> None:
        self._delay = self.start

    def next_wait(self) -> float:
        """Seconds to wait before the next attempt; the one after it doubles."""
        wait = min(self._delay * self._jitter(), self.cap)
        self._delay = min(self._delay * 2, self.cap)
        return wait


class RecentIds:
    """The last ``size`` ids seen: a bounded memory for "handle each post once"."""

    def __init__(self, size: int) -> None:
        self._order: collections.deque[str] = collections.deque()
        self._ids: set[str] = set()
        self._size = size

    def add(self, value: str) -> bool:
        """Remember ``value``; False when it is already remembered."""
        if value in self._ids:
            return False
        self._ids.add(value)
        self._order.append(value)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return True


MessageHandler = Callable[[ChatMessage], Awaitable[None]]


class PostCursor(Protocol):
    """Where a new process starts catching up: the ``create_at`` (ms since the epoch,
    Mattermost's clock) of the newest post handed over, shared by replicas
    (``bot.chatcursor.DatabaseCursor``). Both methods may raise; the adapter logs it."""

    async def load(self) -> int | None:
        """The stored time, or None when nothing was stored yet."""
        ...

    async def save(self, create_at: int) -> None:
        """Store ``create_at`` unless a later time is stored: it never goes backwards."""
        ...


def _driver_options(url: str, token: str) -> dict[str, Any]:
    parts = urlsplit(url)
    scheme = parts.scheme or "https"
    port = parts.port or (443 if scheme == "https" else 80)
    return {
        "url": parts.hostname or "localhost",
        "scheme": scheme,
        "port": port,
        "token": token,
        "timeout": 30,
        "request_timeout": 10,
        "max_retries": 2,
        "verify": True,
    }


class Mattermost:
    """The bot's Mattermost connection. Constructing it does no I/O."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        cursor: PostCursor | None = None,
    ) -> None:
        """``clock`` (seconds, monotonic) times connections; ``wall_clock`` (seconds since
        the epoch) dates the first connection, the start of what a reconnection fetches.
        With ``cursor``, the newest post handed over is remembered across restarts and
        replicas (see :meth:`_after_hello`); without, only for this process's life."""
        if not settings.mattermost_url or settings.mattermost_token is None:
            raise ValueError("MATTERMOST_URL and MATTERMOST_TOKEN are needed for chat")
        self.settings = settings
        self.url = settings.mattermost_url
        self._token = settings.mattermost_token.get_secret_value()
        self.driver = AsyncTypedDriver(_driver_options(self.url, self._token))
        self.user_id = ""
        self.username = ""
        self.server_version = ""
        self.state = "disconnected"
        # Extra tokens the operator lists (commands made by hand): good for any command.
        self._tokens: set[str] = {t.get_secret_value() for t in settings.mattermost_command_tokens}
        # The token of each command the bot registered, by trigger: good for that one only.
        self._command_tokens: dict[str, str] = {}
        self._users: dict[str, tuple[float, ChatUser]] = {}
        self._channels: dict[tuple[str, str], str] = {}
        self._max_post_size: int | None = None  # the server's ``MaxPostSize``, once read
        self._max_post_size_tried = -POST_LIMIT_RETRY
        seed = b"roulette-dialog-state:" + self._token.encode()
        self._signing_key = hashlib.sha256(seed).digest()
        # Keyed like the dialog state, under its own label: neither passes for the other.
        action_seed = b"roulette-action-context:" + self._token.encode()
        self._action_key = hashlib.sha256(action_seed).digest()
        self._socket_task: asyncio.Task[None] | None = None
        self._leadership: Leadership | None = None
        self._stopping = asyncio.Event()
        self.heartbeat = settings.mattermost_heartbeat_seconds
        self.backoff = Backoff()
        self._clock, self._wall_clock = clock, wall_clock
        self._hello_at: float | None = None  # clock() at this connection's hello
        self._seen = RecentIds(SEEN_POSTS)
        self._seen_at = 0  # create_at (ms, server time) of the newest post handed over
        self._started_at = 0  # wall time (ms) of the first hello, before any post is seen
        self._resume_from: int | None = None  # where a catch-up that failed starts again
        self._cursor = cursor
        self._from_cursor = cursor is not None  # the first catch-up starts at the cursor
        self._saved = 0  # the newest create_at (ms) this process saved in the cursor
        self._catching_up: asyncio.Task[None] | None = None
        self._handling: set[asyncio.Task[None]] = set()
        self.connections = Counter(
            "mattermost_websocket_connections",
            "Websocket connections established (reconnections included).",
            registry=registry,
        )
        self.up = Gauge(
            "mattermost_connected", "1 while the websocket is connected.", registry=registry
        )

    # ----------------------------------------------------------------- life cycle

    async def start(
        self,
        commands: Sequence[CommandDefinition],
        on_message: MessageHandler,
        leadership: Leadership | None = None,
        *,
        listen: bool = True,
    ) -> None:
        """Log in, register the commands, then keep the websocket up in the background.

        With ``leadership``, the websocket is opened only while this replica leads (so
        one replica answers direct messages); the others stand by. ``listen=False`` (a
        one-shot command such as ``run-job``) logs in for REST calls only.
        """
        self._leadership = leadership
        try:
            me = await self.driver.login()
            self.user_id, self.username = str(me["id"]), str(me["username"])
            if listen:
                await self.register_commands(commands)
        except Exception as e:  # chat is optional: the webhook side keeps working
            log.warning("Mattermost unavailable at start: %s", _describe(e))
        self._stopping.clear()
        if listen:
            self._socket_task = asyncio.create_task(self._supervise(on_message), name="mattermost")

    async def stop(self) -> None:
        """Close the websocket, cancel the messages still being handled, close REST."""
        self._stopping.set()
        if self._socket_task is not None:
            self._socket_task.cancel()
            await asyncio.gather(self._socket_task, return_exceptions=True)
            self._socket_task = None
        handling = list(self._handling)
        for task in handling:
            task.cancel()
        await asyncio.gather(*handling, return_exceptions=True)
        await self.driver.client.client.aclose()

    # ----------------------------------------------------------------- websocket

    async def _supervise(self, on_message: MessageHandler) -> None:
        """Keep a websocket up until :meth:`stop`, waiting :attr:`backoff` between attempts;
        a connection that got ``hello`` and outlived one heartbeat resets the backoff."""
        while not self._stopping.is_set():
            self._hello_at = None
            try:
                if not self.user_id:
                    me = await self.driver.login()
                    self.user_id, self.username = str(me["id"]), str(me["username"])
                await self._lead_and_listen(on_message)
                reason = "closed by the server"
            except asyncio.CancelledError:
                raise
            except Exception as e:
                reason = _describe(e)
            self._set_state("disconnected")
            if self._stopping.is_set():
                break
            if self._hello_at is not None and self._clock() - self._hello_at >= self.heartbeat:
                self.backoff.reset()  # it worked: the first retry is quick again
            wait = self.backoff.next_wait()
            log.warning("Mattermost websocket down (%s); reconnecting in %.1fs", reason, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)

    async def _lead_and_listen(self, on_message: MessageHandler) -> None:
        leadership = self._leadership
        if leadership is None:
            await self._listen(on_message)
            return
        self._set_state("standby")
        await leadership.acquire()
        listening = asyncio.create_task(self._listen(on_message))
        try:
            while True:
                done, _ = await asyncio.wait({listening}, timeout=LEADERSHIP_CHECK)
                if done:
                    return listening.result()
                if not await leadership.still_held():
                    raise MattermostError("lost the leadership (database connection gone)")
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            await leadership.release()

    async def _listen(self, on_message: MessageHandler) -> None:
        """One connection, until it ends: events handed over, and after ``hello`` what was
        posted while disconnected. Raises :class:`MattermostError` when the server refuses
        the token or stops answering pings (``heartbeat``: no receive timeout, since a
        quiet server is a normal one, PROTOCOLS.md A8)."""
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        endpoint = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/api/v4/websocket"
        self._set_state("connecting")
        # Read before connecting: no post of this connection has moved it yet.
        stored, known = await self._read_cursor()
        # Only the handshake is bounded; after the upgrade aiohttp drops the read timeout.
        handshake = aiohttp.ClientTimeout(
            total=None, connect=HANDSHAKE_TIMEOUT, sock_read=HANDSHAKE_TIMEOUT
        )
        async with (
            aiohttp.ClientSession(timeout=handshake) as session,
            session.ws_connect(
                endpoint,
                heartbeat=self.heartbeat,
                timeout=aiohttp.ClientWSTimeout(ws_close=HANDSHAKE_TIMEOUT),
            ) as ws,
        ):
            challenge = {"seq": 1, "action": "authentication_challenge"}
            await ws.send_str(json.dumps(challenge | {"data": {"token": self._token}}))
            try:
                async for frame in ws:
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        break
                    try:
                        event = json.loads(frame.data)
                    except ValueError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    if event.get("status") == "FAIL":
                        raise MattermostError("websocket authentication failed")
                    kind = event.get("event")
                    if kind == "hello":
                        data = event.get("data") or {}
                        self.server_version = str(data.get("server_version", ""))
                        self._hello_at = self._clock()
                        self._set_state("connected")
                        self.connections.inc()
                        log.info("Mattermost websocket connected (server %s)", self.server_version)
                        self._after_hello(on_message, stored, known=known)
                    elif kind == "posted":
                        message = self._message(event)
                        if message is not None:
                            self._hand_over(message, on_message)
            finally:
                if self._catching_up is not None:
                    self._catching_up.cancel()
                    await asyncio.gather(self._catching_up, return_exceptions=True)
                    self._catching_up = None
            error = ws.exception()
            if error is not None:
                raise MattermostError(f"connection lost: {_describe(error)}")

    async def _read_cursor(self) -> tuple[int | None, bool]:
        """The stored cursor, and whether it could be read (False without a store)."""
        if self._cursor is None:
            return None, False
        try:
            async with asyncio.timeout(CURSOR_TIMEOUT):
                return await self._cursor.load(), True
        except Exception as e:
            log.warning("Mattermost: the post cursor could not be read: %s", _describe(e))
            return None, False

    def _after_hello(self, on_message: MessageHandler, stored: int | None, *, known: bool) -> None:
        """Start fetching what was posted while this bot did not listen.

        ``stored`` is the cursor as read before this connection (``known`` when it could
        be read). The first catch-up of a process starts strictly after it (no overlap:
        this process does not know the ids handed over before it, so a post at or before
        the cursor would be answered twice); when none is stored, nothing is fetched and
        this connection's time (the bot's clock) is stored as where the next process
        starts. A later reconnection re-reads ``CATCH_UP_OVERLAP_MS`` before the newest
        post this process saw (its ids dedupe), but never what another replica stored as
        handed over meanwhile. Without a cursor store, the first connection fetches
        nothing. A catch-up that fails is tried again from the same point at the next
        ``hello``.
        """
        first = not self._started_at
        if first:
            self._started_at = int(self._wall_clock() * 1000)
        if self._from_cursor:
            if not known:
                return  # unreadable: the next connection tries the cursor again
            self._from_cursor = False
            if stored is None:
                self._saved = self._started_at
                self._catching_up = asyncio.create_task(
                    self._save_cursor(self._started_at), name="mattermost-cursor"
                )
                return
            self._resume_from = stored
        elif first:
            return
        elif self._resume_from is None:
            self._resume_from = (self._seen_at or self._started_at) - CATCH_UP_OVERLAP_MS
        if known and stored is not None and stored > self._saved:
            # Stored by an earlier process or another replica: handed over already.
            self._resume_from = max(self._resume_from, stored)
        self._catching_up = asyncio.create_task(
            self._catch_up(self._resume_from, on_message), name="mattermost-catch-up"
        )

    async def _catch_up(self, after: int, on_message: MessageHandler) -> None:
        """Hand over the posts made after ``after`` (ms, server time, exclusive) in the
        bot's channels, those older than ``CATCH_UP_MAX_AGE_MS`` excepted (logged).

        Reads ``GET /users/{me}/channels`` (every team's channels, DMs and group messages
        included), then ``GET /channels/{id}/posts?since=`` for each channel whose
        ``last_post_at`` is newer (the server returns at most 1000 posts each, newest
        first). Edits of older posts and deleted posts are skipped; what goes to the
        handler passes the same filter as live events, oldest first, once per post id.
        Failures are logged; the next ``hello`` tries again from the same point.
        """
        now = int(self._wall_clock() * 1000)
        floor = now - CATCH_UP_MAX_AGE_MS
        if after < floor:
            log.warning(
                "Mattermost: posts made %d to %d min ago stay unanswered (too old to answer)",
                (now - after) // 60_000,
                CATCH_UP_MAX_AGE_MS // 60_000,
            )
        after = max(after, floor, 1)
        found: list[ChatMessage] = []
        try:
            channels = await self.driver.channels.get_channels_for_user(self.user_id)
            for channel in channels or []:
                if int(channel.get("last_post_at") or after + 1) <= after:
                    continue
                listing = await self.driver.posts.get_posts_for_channel(
                    str(channel["id"]), since=after
                )
                posts = listing.get("posts") or {}
                for post_id in listing.get("order") or []:
                    post = posts.get(post_id)
                    if not isinstance(post, dict) or post.get("delete_at"):
                        continue
                    if int(post.get("create_at") or 0) <= after:
                        continue  # an older post edited since
                    message = self._from_post(post, str(channel.get("type", "")))
                    if message is not None:
                        found.append(message)
        except Exception as e:
            log.warning("Mattermost: posts made while disconnected not fetched: %s", _describe(e))
            return
        self._resume_from = None
        handed = [
            m for m in sorted(found, key=lambda m: m.create_at) if self._hand_over(m, on_message)
        ]
        if handed:
            log.info("Mattermost: %d post(s) made while disconnected handed over", len(handed))

    def _hand_over(self, message: ChatMessage, on_message: MessageHandler) -> bool:
        """Handle ``message`` in a task of its own (a slow command holds no other message
        back, nor the connection); False when this post id was already handed over."""
        if message.post_id and not self._seen.add(message.post_id):
            return False
        self._seen_at = max(self._seen_at, message.create_at)
        task = asyncio.create_task(self._handle(message, on_message), name="mattermost-message")
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)
        return True

    async def _handle(self, message: ChatMessage, on_message: MessageHandler) -> None:
        """Save the cursor when the bot is addressed (before the handler: at most once),
        then run the handler; its failures are logged."""
        if self._cursor is not None and message.create_at > 0 and self.addressed(message):
            await self._save_cursor(message.create_at)
        try:
            await on_message(message)
        except Exception:
            log.exception("Mattermost message %s could not be handled", message.post_id)

    async def _save_cursor(self, create_at: int) -> None:
        """Store ``create_at`` (ms) in the cursor; a failure is logged, never raised."""
        if self._cursor is None:
            return
        self._saved = max(self._saved, create_at)
        try:
            async with asyncio.timeout(CURSOR_TIMEOUT):
                await self._cursor.save(create_at)
        except Exception as e:
            log.warning("Mattermost: the post cursor could not be saved: %s", _describe(e))

    def addressed(self, message: ChatMessage) -> bool:
        """Whether ``message`` is for the bot: a direct message, or one that mentions it
        (in the event's ``mentions``, or as ``@username`` in the text of a fetched post).
        Only those move the cursor: the others are not answered, re-reading them is free.
        """
        if message.channel_type == "D" or (self.user_id and self.user_id in message.mentions):
            return True
        if not self.username:
            return False
        return re.search(rf"(?<![\w@])@{re.escape(self.username)}\b", message.text) is not None

    def _set_state(self, state: str) -> None:
        self.state = state
        self.up.set(1 if state == "connected" else 0)

    def _message(self, event: Mapping[str, Any]) -> ChatMessage | None:
        """The message of a ``posted`` event (PROTOCOLS.md A4), or None when the bot has
        nothing to do with it (see :meth:`_from_post`) or it does not parse."""
        data = event.get("data") or {}
        if not isinstance(data, Mapping):
            return None
        try:
            post = json.loads(data.get("post") or "{}")
            mentions = json.loads(data.get("mentions") or "[]")
        except (TypeError, ValueError):
            return None
        if not isinstance(post, dict):
            return None
        return self._from_post(
            post,
            str(data.get("channel_type", "")),
            sender_name=str(data.get("sender_name", "")).removeprefix("@"),
            mentions=tuple(m for m in mentions if isinstance(m, str))
            if isinstance(mentions, list)
            else (),
        )

    def _from_post(
        self,
        post: Mapping[str, Any],
        channel_type: str,
        *,
        sender_name: str = "",
        mentions: tuple[str, ...] = (),
    ) -> ChatMessage | None:
        """A Mattermost Post as a :class:`ChatMessage`; None for the bot's own posts,
        system messages, slash-command answers posted for a user and other bots."""
        if post.get("user_id") == self.user_id or post.get("type"):
            return None  # our own posts, and system messages
        props = post.get("props") or {}
        if not isinstance(props, Mapping):
            props = {}
        if props.get("from_webhook") == "true" or props.get("from_bot") == "true":
            return None  # slash-command answers posted for a user, and other bots
        try:
            create_at = int(post.get("create_at") or 0)
        except (TypeError, ValueError):
            create_at = 0
        return ChatMessage(
            post_id=str(post.get("id", "")),
            channel_id=str(post.get("channel_id", "")),
            channel_type=channel_type,
            sender_id=str(post.get("user_id", "")),
            sender_name=sender_name,
            text=str(post.get("message", "")),
            root_id=str(post.get("root_id") or post.get("id") or ""),
            mentions=mentions,
            create_at=create_at,
        )

    # ----------------------------------------------------------------- commands

    async def register_commands(self, commands: Iterable[CommandDefinition]) -> None:
        """Create or update each command in ``MATTERMOST_TEAM``; learn their tokens."""
        team_name = self.settings.mattermost_team
        if not team_name:
            log.warning("MATTERMOST_TEAM is not set: slash commands are not registered")
            return
        team = await self.driver.teams.get_team_by_name(team_name)
        url = f"{self.settings.public_url}/mattermost/command"
        existing = await self.driver.commands.list_commands(team_id=team["id"], custom_only=True)
        by_trigger = {c["trigger"]: c for c in existing or []}
        for command in commands:
            wanted = {
                "team_id": team["id"],
                "trigger": command.trigger,
                "method": "P",
                "url": url,
                "auto_complete": True,
                "auto_complete_desc": command.description,
                "auto_complete_hint": command.hint,
                "display_name": f"Reviewer Roulette: /{command.trigger}",
                "description": command.description,
                "username": "roulette",
            }
            found = by_trigger.get(command.trigger)
            if found is None:
                created = await self.driver.client.post("/api/v4/commands", options=wanted)
                self._command_tokens[command.trigger] = str(created["token"])
                log.info("registered /%s in team %s", command.trigger, team_name)
            elif found.get("url") != url and found.get("creator_id") != self.user_id:
                log.warning(
                    "/%s already exists in %s for another integration", command.trigger, team_name
                )
            else:
                if any(found.get(k) != v for k, v in wanted.items()):
                    await self.driver.client.put(
                        f"/api/v4/commands/{found['id']}", options=found | wanted
                    )
                    log.info("updated /%s in team %s", command.trigger, team_name)
                self._command_tokens[command.trigger] = str(found["token"])

    def token_ok(self, token: str | None, command: str) -> bool:
        """Whether ``token`` may run ``/command``: the token Mattermost gave the command
        the bot registered under that trigger, or one of ``MATTERMOST_COMMAND_TOKENS``
        (commands an administrator made by hand). Compared in constant time; a command's
        token does not run the others (each command has its own: PROTOCOLS.md A1)."""
        if not token:
            return False
        given = token.encode()
        own = self._command_tokens.get(command)
        allowed = [*self._tokens, *([own] if own else [])]
        return any(hmac.compare_digest(given, known.encode()) for known in allowed)

    # ----------------------------------------------------------------- users and posts

    def cached_user(self, user_id: str) -> ChatUser | None:
        """The user as last looked up (within ``USER_TTL``), without asking Mattermost."""
        cached = self._users.get(user_id)
        return cached[1] if cached and time.monotonic() - cached[0] < USER_TTL else None

    async def user(self, user_id: str) -> ChatUser:
        cached = self._users.get(user_id)
        if cached and time.monotonic() - cached[0] < USER_TTL:
            return cached[1]
        data = await self.driver.users.get_user(user_id)
        zone = data.get("timezone") or {}
        timezone = (
            zone.get("automaticTimezone")
            if zone.get("useAutomaticTimezone") in (True, "true")
            else zone.get("manualTimezone")
        ) or None
        user = ChatUser(
            id=str(data["id"]),
            username=str(data["username"]),
            locale=normalise(data.get("locale"), self.settings.locale),
            timezone=timezone,
        )
        self._users[user_id] = (time.monotonic(), user)
        return user

    async def post_limit(self) -> int:
        """The most runes one post may hold on this server (PROTOCOLS.md A8).

        ``MATTERMOST_POST_LIMIT`` when set; else the ``MaxPostSize`` the server tells its
        clients (``GET /api/v4/config/client?format=old``: 16,383, or 4,000 when its
        ``Posts.Message`` column still has the old schema), read once; else, from the
        server version (``hello``'s ``server_version``), 4,000 before Mattermost 5.0 and
        16,383 after. A server that does not answer is asked again a minute later.
        """
        configured = self.settings.mattermost_post_limit
        if configured is not None:
            return configured
        if self._max_post_size is None and (
            time.monotonic() - self._max_post_size_tried >= POST_LIMIT_RETRY
        ):
            self._max_post_size_tried = time.monotonic()
            try:
                config = await self.driver.client.get(
                    "/api/v4/config/client", params={"format": "old"}
                )
                size = int(config["MaxPostSize"]) if isinstance(config, dict) else 0
                self._max_post_size = size if size > 0 else None
                if not self.server_version and isinstance(config, dict):
                    self.server_version = str(config.get("Version") or "")
            except Exception as e:  # an old server, a proxy...: decide from the version
                log.info("Mattermost did not tell its post size: %s", _describe(e))
        if self._max_post_size is not None:
            return self._max_post_size
        return post_limit_for(self.server_version)

    async def command_response(self, reply: Reply, locale: str) -> dict[str, Any]:
        """Mattermost's CommandResponse for ``reply``, within this server's post limit
        (see ``command_response``)."""
        return command_response(reply, limit=await self.post_limit(), locale=locale)

    async def post(
        self,
        channel_id: str,
        message: str,
        root_id: str | None = None,
        *,
        locale: str | None = None,
    ) -> None:
        """Post ``message`` in ``channel_id`` (a thread reply under ``root_id``), cut to the
        post limit with "… and N more" in ``locale`` (default: the configured one)."""
        text = await self._fit(message, locale)
        await self.driver.posts.create_post(channel_id=channel_id, message=text, root_id=root_id)

    async def ephemeral(
        self, user_id: str, channel_id: str, message: str, *, locale: str | None = None
    ) -> None:
        """A message only ``user_id`` sees; a direct message when the bot may not do that.

        (Ephemeral posts need the ``create_post_ephemeral`` permission, which Mattermost
        gives system admins only.) Cut to the post limit as ``post`` does.
        """
        text = await self._fit(message, locale)
        try:
            await self.driver.posts.create_post_ephemeral(
                user_id=user_id, post={"channel_id": channel_id, "message": text}
            )
        except Exception as e:
            log.info("ephemeral post refused (%s); sending a direct message", type(e).__name__)
            channel = await self.driver.channels.create_direct_channel([self.user_id, user_id])
            await self.post(str(channel["id"]), text, locale=locale)

    async def _fit(self, message: str, locale: str | None) -> str:
        """``message`` as one post within the limit (``bot.chat.fit_to_post``)."""
        reader = locale or self.settings.locale
        return fit_to_post(message, await self.post_limit(), reader)[0]

    async def channel_id(self, team: str, channel: str) -> str | None:
        """The id of channel ``channel`` (its name, as in its URL) of team ``team``, or
        None when there is no such channel (or the bot cannot see it).

        ``GET /api/v4/teams/name/{team}/channels/name/{channel}``; ids are cached for the
        life of the process (a channel keeps its id when renamed).
        """
        key = (team.lower(), channel.lower())
        if key in self._channels:
            return self._channels[key]
        try:
            found = await self.driver.channels.get_channel_by_name_for_team_name(team, channel)
        except Exception as e:
            if type(e).__name__ in ("ResourceNotFound", "NotEnoughPermissions"):
                return None
            raise MattermostError(f"channel {team}/{channel}: {_describe(e)}") from e
        self._channels[key] = str(found["id"])
        return self._channels[key]

    async def post_to_channel(
        self, team: str, channel: str, message: str, *, locale: str | None = None
    ) -> bool:
        """Post ``message`` (cut to the post limit) in ``team``'s channel ``channel``;
        False when there is no such channel."""
        channel_id = await self.channel_id(team, channel)
        if channel_id is None:
            return False
        await self.post(channel_id, message, locale=locale)
        return True

    async def post_webhook(self, url: str, message: str, *, locale: str | None = None) -> None:
        """Post ``message`` through an incoming webhook (``POST {url}`` with
        ``{"text": ...}``; Mattermost answers 200 ``ok``). Raises ``MattermostError``."""
        text = await self._fit(message, locale)
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.post(url, json={"text": text}) as answer,
            ):
                if answer.status >= 300:
                    raise MattermostError(f"the incoming webhook answered {answer.status}")
        except aiohttp.ClientError as e:
            raise MattermostError(f"the incoming webhook is unreachable: {_describe(e)}") from e

    async def user_by_username(self, username: str) -> ChatUser | None:
        try:
            data = await self.driver.users.get_user_by_username(username)
        except Exception as e:
            if "not found" in str(e).lower() or type(e).__name__ == "ResourceNotFound":
                return None
            raise
        return await self.user(str(data["id"]))

    async def direct_message(
        self,
        username: str,
        message: Callable[[ChatUser], str],
        buttons: Callable[[ChatUser], Sequence[Button]] | None = None,
    ) -> str | None:
        """DM ``username``; ``message`` builds the text for them (their language, cut to the
        post limit) and ``buttons``, if given, the buttons under it, each signed for them.

        Returns the post's id (for a later ``update_post``), None when Mattermost has no
        such user. Raises what the driver raises when Mattermost refuses the post."""
        user = await self.user_by_username(username)
        if user is None:
            log.warning("no Mattermost user %s to notify", username)
            return None
        channel = await self.driver.channels.create_direct_channel([self.user_id, user.id])
        text = await self._fit(message(user), user.locale)
        props = self.button_props(buttons(user), user.id) if buttons is not None else {}
        post = await self.driver.posts.create_post(
            channel_id=str(channel["id"]), message=text, props=props or None
        )
        return str(post["id"]) if isinstance(post, Mapping) else None

    async def update_post(
        self,
        post_id: str,
        message: str,
        buttons: Sequence[Button] = (),
        *,
        intended_user_id: str,
        locale: str | None = None,
    ) -> None:
        """Replace a post of the bot: its message (cut to the post limit in ``locale``)
        and its buttons (none: the old ones go), signed for ``intended_user_id``.

        ``PUT /api/v4/posts/{post_id}/patch`` with ``message`` and ``props``; for changes
        made without a click (a click's answer carries its own ``update``)."""
        text = await self._fit(message, locale)
        props = self.button_props(buttons, intended_user_id)
        await self.driver.posts.patch_post(post_id, message=text, props=props)

    def button_props(self, buttons: Sequence[Button], intended_user_id: str) -> dict[str, Any]:
        """A post's ``props`` carrying ``buttons`` (PROTOCOLS.md A8): one attachment whose
        ``actions`` each name the bot's ``/mattermost/action`` URL and a context signed
        for ``intended_user_id`` (a Mattermost user id). ``{}`` without buttons.

        Raises ``ValueError`` for two buttons with one id or a payload that would not
        survive Mattermost's JSON unchanged."""
        if not buttons:
            return {}
        ids = [b.id for b in buttons]
        if len(set(ids)) != len(ids):
            raise ValueError(f"button ids must be unique within a post: {ids}")
        url = f"{self.settings.public_url.rstrip('/')}{ACTION_PATH}"
        actions = [
            {
                "id": b.id,
                "name": b.label,
                "type": "button",
                "style": b.style,
                "integration": {
                    "url": url,
                    "context": self.sign_action(b.action, b.id, intended_user_id, b.payload),
                },
            }
            for b in buttons
        ]
        return {"attachments": [{"fallback": "", "actions": actions}]}

    async def action_response(self, result: ActionResult, user: ChatUser) -> dict[str, Any]:
        """The answer to a click (PROTOCOLS.md A8): ``update`` (message and props; props
        without attachments remove the buttons) and ``ephemeral_text``, each within the
        post limit in ``user``'s language; new buttons are signed for ``user``."""
        body: dict[str, Any] = {}
        if result.update is not None:
            body["update"] = {
                "message": await self._fit(result.update, user.locale),
                "props": self.button_props(result.buttons, user.id),
            }
        if result.ephemeral:
            body["ephemeral_text"] = await self._fit(result.ephemeral, user.locale)
        return body

    async def open_dialog(self, trigger_id: str, user_id: str, dialog: Dialog) -> None:
        body = {
            "callback_id": dialog.callback_id,
            "title": dialog.title[:24],
            "introduction_text": dialog.introduction_text,
            "elements": [dict(e) for e in dialog.elements],
            "submit_label": dialog.submit_label,
            "notify_on_cancel": False,
            "state": self.sign_state(dialog.callback_id, user_id, context=dialog.context),
        }
        await self.driver.integration_actions.open_interactive_dialog(
            trigger_id=trigger_id,
            url=f"{self.settings.public_url}/mattermost/dialog",
            dialog=body,
        )

    async def respond(self, response_url: str, reply: Reply, *, locale: str | None = None) -> None:
        """A later answer to a slash command, through its ``response_url`` (one of its
        five uses, however many posts the answer takes: they go as ``extra_responses``).

        Raises ``MattermostError`` when Mattermost refuses it."""
        body = await self.command_response(reply, locale or self.settings.locale)
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.post(response_url, json=body) as answer,
        ):
            if answer.status >= 300:
                raise MattermostError(f"response_url answered {answer.status}")

    # ----------------------------------------------------------------- dialog state

    def sign_state(
        self,
        callback_id: str,
        user_id: str,
        now: float | None = None,
        *,
        context: Mapping[str, Any] | None = None,
    ) -> str:
        """A dialog's ``state``: ``expires.mac``, or ``expires.context.mac`` with a context
        (base64url of its canonical JSON), the MAC binding the dialog, the user, the expiry
        (``STATE_TTL`` from ``now``, seconds since the epoch) and the context."""
        expires = int((now or time.time()) + STATE_TTL)
        packed = _b64(_canonical(dict(context))) if context else ""
        if context:
            _check_json(context, "context")
        mac = self._state_mac(callback_id, user_id, str(expires), packed)
        return f"{expires}.{packed}.{mac}" if packed else f"{expires}.{mac}"

    def verify_state(self, state: str, callback_id: str, user_id: str) -> bool:
        """Whether ``state`` is one the bot signed for this dialog and user, unexpired."""
        return self.state_context(state, callback_id, user_id) is not None

    def state_context(self, state: str, callback_id: str, user_id: str) -> dict[str, Any] | None:
        """The context signed into ``state`` (``{}`` when none), or None when ``state`` is
        not one the bot signed for this dialog and user, or has expired."""
        parts = state.split(".")
        if len(parts) not in (2, 3):
            return None
        expires_text, packed, mac = parts[0], parts[1] if len(parts) == 3 else "", parts[-1]
        if not expires_text.isdigit() or int(expires_text) < time.time():
            return None
        if len(parts) == 3 and not packed:
            return None
        expected = self._state_mac(callback_id, user_id, expires_text, packed)
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        if not packed:
            return {}
        try:
            context = json.loads(_unb64(packed))
        except ValueError:
            return None
        return context if isinstance(context, dict) else None

    def _state_mac(self, callback_id: str, user_id: str, expires: str, packed: str) -> str:
        payload = f"{callback_id}:{user_id}:{expires}" + (f":{packed}" if packed else "")
        return _b64(hmac.new(self._signing_key, payload.encode(), hashlib.sha256).digest())

    # ----------------------------------------------------------------- button contexts

    def sign_action(
        self,
        action: str,
        button: str,
        user_id: str,
        payload: Mapping[str, Any],
        now: float | None = None,
    ) -> dict[str, Any]:
        """A button's ``integration.context``: ``action``, ``button``, ``user`` (the
        Mattermost user id it is meant for), ``payload``, ``expires`` (``ACTION_TTL`` after
        ``now``, seconds since the epoch) and ``signature``, an HMAC-SHA256 of the
        canonical JSON of the others (base64url).

        Raises ``ValueError`` for a payload that would not survive Mattermost's JSON."""
        _check_json(payload)
        fields = {
            "action": action,
            "button": button,
            "user": user_id,
            "payload": dict(payload),
            "expires": int((now or time.time()) + ACTION_TTL),
        }
        return fields | {"signature": self._action_mac(fields)}

    def verify_action(self, context: object, now: float | None = None) -> SignedAction | None:
        """The click's ``context`` if the bot signed it and it has not expired, else None
        (anything malformed included; never raises). Compared in constant time."""
        if not isinstance(context, Mapping):
            return None
        signature = context.get("signature")
        fields = {k: context.get(k) for k in ("action", "button", "user", "payload", "expires")}
        if not isinstance(signature, str) or not signature.isascii():
            return None
        if not all(isinstance(fields[k], str) for k in ("action", "button", "user")):
            return None
        expires = fields["expires"]
        if not isinstance(fields["payload"], dict) or isinstance(expires, bool):
            return None
        if not isinstance(expires, int | float) or expires < (now or time.time()):
            return None
        fields["expires"] = int(expires)
        try:
            expected = self._action_mac(fields)
        except (TypeError, ValueError):
            return None
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        return SignedAction(
            action=str(fields["action"]),
            button=str(fields["button"]),
            user_id=str(fields["user"]),
            payload=fields["payload"],
        )

    def _action_mac(self, fields: Mapping[str, Any]) -> str:
        return _b64(hmac.new(self._action_key, _canonical(fields), hashlib.sha256).digest())


def post_limit_for(server_version: str) -> int:
    """The post limit of a Mattermost server of this version (``"11.2.0"``), when it does
    not say: 4,000 runes before 5.0, 16,383 since (and when the version is unknown)."""
    major = server_version.strip().lstrip("v").split(".")[0]
    return LEGACY_POST_LIMIT if major.isdecimal() and int(major) < 5 else POST_LIMIT


def command_response(
    reply: Reply, *, limit: int = POST_LIMIT, locale: str = DEFAULT_LOCALE
) -> dict[str, Any]:
    """Mattermost's CommandResponse for ``reply`` (PROTOCOLS.md A1), every post within
    ``limit`` runes.

    ``reply`` and each of ``reply.extra`` become one post (the first the response, the
    others ``extra_responses``, each with its own visibility); a text over the limit is
    split between lines into more posts (``bot.chat.fit_to_post``) as long as the whole
    answer stays within ``REPLY_PARTS`` posts, and the last part of the last long text is
    cut with "… and N more" in ``locale``.
    """
    replies = [reply, *reply.extra]
    spare = max(REPLY_PARTS - len(replies), 0)
    posts: list[dict[str, Any]] = []
    for one in replies:
        parts = fit_to_post(one.text, limit, locale, parts=1 + spare)
        spare -= len(parts) - 1
        posts += [{"response_type": one.visibility, "text": text} for text in parts]
    body = posts[0]
    if posts[1:]:
        body["extra_responses"] = posts[1:]
    return body


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
