"""A Mattermost API v4 stand-in: an aiohttp app over a plain in-memory model.

It speaks the documented API (and the server's behaviour, read in its sources) for what the
bot uses, so the real client (mattermostautodriver's ``AsyncTypedDriver``) talks to it
unchanged:

- ``GET /api/v4/users/me``, ``/users/{user_id}``, ``/users/username/{username}`` (404 when
  unknown), ``POST /users/usernames`` (unknown names left out), ``POST /users/ids``;
- ``POST /posts`` (201 Post; the author must be a member of the channel, or hold
  ``system_post_all``/``system_admin``; a bot's posts carry ``props.from_bot``),
  ``GET /posts/{post_id}``, ``POST /posts/ephemeral`` (201; needs ``create_post_ephemeral``,
  which only ``system_admin`` holds by default: a plain bot gets Mattermost's 403);
- ``GET /channels/{channel_id}/posts`` (a ``PostList``: ``{"order", "posts", "next_post_id",
  "prev_post_id"}``): with ``since`` (ms), every post updated after it, newest first, at
  most 1000, plus the roots of their threads in ``posts`` only, as ``GetPostsSince`` does;
  else ``page``/``per_page`` (60) of the newest; ``read_channel`` needed (403);
- ``GET /users/{user_id}/channels``: every channel of every team the user is a member of,
  direct and group messages included (``me`` is the caller; another user's: 403);
- ``POST /channels/direct`` (201; ``uidA__uidB``, sorted ids; the same pair, the same
  channel), ``GET /channels/{id}``, ``GET /teams/name/{team}``,
  ``GET /teams/name/{team}/channels/name/{channel}``;
- ``POST /commands`` (201 with a generated ``token``; trigger lower-cased; a duplicate or
  built-in trigger is a 400), ``GET /commands?team_id=&custom_only=``, ``GET``/``PUT``/
  ``DELETE /commands/{id}``;
- ``PUT /posts/{post_id}/patch`` (``message``, ``props``, ``is_pinned``...: each one given
  replaces the stored one; the author's own posts, or ``system_admin``; ``post_edited``);
- message buttons (PROTOCOLS.md A8): a post's ``props.attachments[].actions[]`` are stored as
  the server stores them (an action without ``id`` gets one); an action id that is not
  alphanumeric (the click route ``/posts/{id}/actions/{action_id:[A-Za-z0-9]+}`` could never
  reach it) or without ``integration.url`` is refused with a 400 (``strict_actions``; the
  real server stores such a button, which then never works);
- ``POST /actions/dialogs/open`` (the trigger id must be one this stand-in issued, for that
  user, younger than ``trigger_id_ttl``; the dialog is checked as the server's
  ``Dialog.IsValid`` does, see ``strict_dialogs``), recorded in ``dialogs_opened``;
- ``POST /hooks/{id}`` (incoming webhooks; 200 ``text/plain`` ``ok``) and
  ``POST /hooks/commands/{id}`` (a slash command's ``response_url``: up to 5 uses within
  30 minutes);
- ``GET /api/v4/websocket``: the ``authentication_challenge`` (or an ``Authorization``
  header), ``hello`` (seq 0), then ``posted`` for every post in a channel the connection's
  user is a member of (the user's own posts included, as Mattermost does), plus
  ``ephemeral_message`` and ``open_dialog`` for that user; ``seq`` counts per connection;
  the server never speaks unasked otherwise (quiet for as long as nothing happens) and
  answers the client's pings with pongs (``answer_pings = False`` plays a hung server);
- ``GET /api/v4/system/ping``.

Faithful where clients notice: ``Content-Type: application/json`` exactly (the drivers parse
nothing else), compact JSON as Go writes it, Mattermost's error body on every error
(``{"id", "message", "detailed_error", "request_id", "status_code"}``; mattermostautodriver
raises ``InvalidMattermostError`` otherwise), ``Authorization: Bearer``/``Token`` (or
``?access_token=``) with a 401 ``api.context.session_expired.app_error`` otherwise, and an
unknown route (or method) answered ``404 api.context.404.app_error`` as the server's
catch-all route does. A bad token in the websocket challenge closes the connection without a
word, as the server does (``web_socket_router.go``); another request before authenticating
gets ``{"status": "FAIL", ...}``.

Mattermost's side of the integrations is here too: ``run_slash_command`` calls a
registered command's URL exactly as the server's ``DoCommandRequest`` does and applies the
answer (``HandleCommandResponse``); ``submit_dialog`` posts a dialog submission as
``SubmitInteractiveDialog`` does; ``click`` posts a button click to the button's
``integration.url`` as ``DoPostActionWithCookie`` does and applies its answer.

Tests and the demo shape the model through a small Python API (``add_user``, ``add_team``,
``add_channel``, ``direct_channel``, ``token_for``, ``say``, ``add_command``...), read it back
(``posts_in``, ``user_posts``, ``ephemeral_posts``, ``dialogs_opened``, ``commands_in``,
``events``, ``warnings``), break the websockets (``drop_websockets``) or fail requests
(``fail_next``). ``serve(standin)`` runs it on 127.0.0.1 on a free port.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web

from bot.sandbox import listening

__all__ = ["MattermostStandIn", "driver_options", "new_id", "serve"]

JSON = dict[str, Any]
Handler = Callable[[web.Request, dict[str, str], "_User | None"], Awaitable[web.StreamResponse]]

API = "/api/v4"
USER_AGENT = "Mattermost-Bot/1.1"  # the server's outgoing HTTP client (httpservice)
SERVER_VERSION = "11.1.0"
MAX_POST_RUNES = 16383  # model.PostMessageMaxRunesV2 (V1, the old schema's: 4000)
COMMAND_HOOK_USES = 5  # a response_url takes up to 5 messages...
COMMAND_HOOK_LIFETIME = 30 * 60.0  # ...within 30 minutes (model.CommandWebhookLifetime)
#: Triggers of the server's built-in commands: a custom command may not take them.
BUILT_IN_TRIGGERS = frozenset(
    (
        "away", "code", "collapse", "dnd", "echo", "expand", "groupmsg", "header", "help",
        "invite", "invite_people", "join", "kick", "leave", "logout", "me", "msg", "mute",
        "offline", "online", "open", "purpose", "remove", "rename", "search", "settings",
        "shortcuts", "shrug", "status",
    )
)  # fmt: skip
_ID_ALPHABET = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "ybndrfg8ejkmcpqxot1uwisza345h769")
_VALID_ID = re.compile(r"[a-z0-9]{26}")
_USERNAME = re.compile(r"[a-z][a-z0-9.\-_]{0,63}")
_AT_MENTION = re.compile(r"\B@([A-Za-z0-9][A-Za-z0-9.\-_:]*)")
_CHANNEL_MENTION = re.compile(r"\B~([a-zA-Z0-9\-_]+)")
_HASHTAG = re.compile(r"^#[^\W\d_][\w\-.]*[^\W_]$")
_SLACK_LINK = re.compile(r"<([^<>|\s]+)\|([^<>]+)>")
_SLACK_BARE_LINK = re.compile(r"<((?:https?|mailto):[^<>|\s]+)>")
_SLACK_USER = re.compile(r"<@([a-z0-9]{26})>")
_CUSTOM_POST_TYPE = "custom_"
_ACTION_ID = re.compile(r"[A-Za-z0-9]+")  # the click route's {action_id:[A-Za-z0-9]+}

# Dialog limits (model/integration_action.go).
DIALOG_TITLE_MAX = 24
DIALOG_ELEMENT_DISPLAY_NAME_MAX = 24
DIALOG_ELEMENT_NAME_MAX = 300
DIALOG_ELEMENT_HELP_TEXT_MAX = 150
DIALOG_ELEMENT_TEXT_MAX = 150
DIALOG_ELEMENT_TEXTAREA_MAX = 3000
DIALOG_ELEMENT_SELECT_MAX = 3000
DIALOG_ELEMENT_BOOL_MAX = 150
_TEXT_SUBTYPES = frozenset({"", "text", "email", "number", "tel", "url", "password"})
_RELATIVE_DATE = re.compile(r"[+-]\d{1,3}[dwmDWM]")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})?")


def new_id() -> str:
    """A Mattermost id (``model.NewId``): 16 random bytes in its base32 alphabet, 26 chars."""
    return base64.b32encode(secrets.token_bytes(16)).decode()[:26].translate(_ID_ALPHABET)


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _VALID_ID.fullmatch(value) is not None


def millis() -> int:
    return int(time.time() * 1000)


def _dumps(data: Any) -> str:
    """JSON as Go's encoder writes it: compact."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def json_response(data: Any, status: int = 200) -> web.Response:
    """``Content-Type: application/json`` exactly: both drivers parse nothing else."""
    return web.Response(
        body=_dumps(data).encode(),
        status=status,
        content_type="application/json",
        headers={"X-Request-Id": new_id(), "X-Version-Id": SERVER_VERSION},
    )


class MattermostError(Exception):
    """An ``AppError``: rendered as Mattermost's error body with its status."""

    def __init__(self, status: int, error_id: str, message: str, detailed: str = "") -> None:
        super().__init__(f"{status} {error_id}: {message}")
        self.status = status
        self.error_id = error_id
        self.message = message
        self.detailed = detailed

    def body(self) -> JSON:
        return {
            "id": self.error_id,
            "message": self.message,
            "detailed_error": self.detailed,
            "request_id": new_id(),
            "status_code": self.status,
        }

    def response(self) -> web.Response:
        return json_response(self.body(), self.status)


def _invalid_body_param(name: str, detailed: str = "") -> MattermostError:
    return MattermostError(
        400,
        "api.context.invalid_body_param.app_error",
        f"Invalid or missing {name} in request body.",
        detailed,
    )


def _invalid_url_param(name: str) -> MattermostError:
    return MattermostError(
        400,
        "api.context.invalid_url_param.app_error",
        f"Invalid or missing {name} parameter in request URL.",
    )


def _permission_error(permission: str) -> MattermostError:
    return MattermostError(
        403,
        "api.context.permissions.app_error",
        "You do not have the appropriate permissions.",
        f"userId=..., permissions={permission}",
    )


def _session_expired() -> MattermostError:
    return MattermostError(
        401,
        "api.context.session_expired.app_error",
        "Invalid or expired session, please login again.",
    )


def _not_found_route() -> MattermostError:
    return MattermostError(404, "api.context.404.app_error", "Sorry, we could not find the page.")


@dataclass
class _User:
    id: str
    username: str
    first_name: str
    last_name: str
    nickname: str
    email: str
    locale: str
    timezone: JSON
    is_bot: bool
    roles: str
    create_at: int
    bot_description: str = ""

    def has_role(self, role: str) -> bool:
        return role in self.roles.split()


@dataclass
class _Team:
    id: str
    name: str
    display_name: str
    create_at: int
    invite_id: str = field(default_factory=new_id)


@dataclass
class _Channel:
    id: str
    team_id: str
    name: str
    display_name: str
    type: str
    creator_id: str
    create_at: int
    members: list[str] = field(default_factory=list)
    last_post_at: int = 0
    total_msg_count: int = 0
    total_msg_count_root: int = 0
    last_root_post_at: int = 0


@dataclass
class _Command:
    id: str
    token: str
    create_at: int
    update_at: int
    creator_id: str
    team_id: str
    trigger: str
    method: str
    url: str
    username: str = ""
    icon_url: str = ""
    auto_complete: bool = False
    auto_complete_desc: str = ""
    auto_complete_hint: str = ""
    display_name: str = ""
    description: str = ""
    delete_at: int = 0


@dataclass
class _IncomingHook:
    id: str
    channel_id: str
    team_id: str
    user_id: str
    display_name: str
    description: str
    create_at: int


@dataclass
class _CommandHook:
    """A slash command's ``response_url`` (``model.CommandWebhook``)."""

    id: str
    command_id: str
    user_id: str
    channel_id: str
    team_id: str
    root_id: str
    created: float
    uses: int = 0


@dataclass
class _Connection:
    id: str
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    queue: asyncio.Queue[str]
    user_id: str | None = None
    seq: int = 0
    pongs: int = 0


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    remaining: int
    status: int
    method: str | None


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    session: bool = True


class MattermostStandIn:
    """The in-memory Mattermost; ``app()`` serves it, the methods below shape it."""

    def __init__(
        self,
        *,
        bot_username: str | None = "roulette-bot",
        bot_roles: str = "system_user",
        trigger_id_ttl: float = 30.0,
        command_timeout: float = 30.0,
        strict_dialogs: bool = True,
        hello_before_ok: bool = False,
        server_version: str = SERVER_VERSION,
        max_post_runes: int = MAX_POST_RUNES,
        strict_ephemeral_length: bool = True,
        user_lookup_delay: float = 0.0,
        strict_actions: bool = True,
    ) -> None:
        """``bot_username`` creates that bot account (``bot``, ``bot_token``); its roles are
        a default bot's, ``system_user``: it can post where it is a member, not send
        ephemeral posts (add ``system_admin`` for that, or ``system_post_all`` to post
        anywhere).

        ``trigger_id_ttl`` is how long a trigger id opens a dialog (newer servers:
        ``OutgoingIntegrationRequestsTimeout``, 30 s by default; older ones: 3 s).
        ``command_timeout`` bounds the calls of ``run_slash_command`` and ``submit_dialog``
        (the same setting). With ``strict_dialogs`` an invalid dialog is refused with a 400;
        the real server only logs "Interactive dialog is invalid" and opens it anyway
        (``strict_dialogs=False``; the problems are recorded either way).

        After a successful ``authentication_challenge`` the stand-in replies
        ``{"status": "OK", "seq_reply": n}`` and then sends ``hello``; the server's hub may
        well queue ``hello`` first (``hello_before_ok=True``): a client must take both.

        ``max_post_runes`` is the server's post limit (``MaxPostSize`` in its client
        config: 16,383, or 4,000 on a database with the old schema). A post whose message
        has more runes (code points) is refused as ``Post.IsValid`` refuses it: 400
        ``model.post.is_valid.msg.app_error``, on ``POST /posts`` and for the posts of a
        command response (a 500 ``create_post_failed`` to the command, as the server's
        ``HandleCommandResponse`` answers); an incoming webhook's long text is split into
        several posts, as ``SplitWebhookPost`` does. The server sends an ephemeral post
        of any length (it is not stored, so not validated); with
        ``strict_ephemeral_length`` the stand-in refuses those too, so that the bot never
        relies on it (``False``: as the server).

        ``user_lookup_delay`` (seconds) makes ``GET /users/{id}`` slow, as a loaded server.

        With ``strict_actions`` a post whose buttons could never be clicked (an action id
        that is not alphanumeric, no ``integration.url``) is refused with a 400; the real
        server stores it (``False``; the problems are recorded in ``warnings`` either way).
        """
        self.strict_actions = strict_actions
        self.max_post_runes = max_post_runes
        self.strict_ephemeral_length = strict_ephemeral_length
        self.user_lookup_delay = user_lookup_delay
        self.trigger_id_ttl = trigger_id_ttl
        self.command_timeout = command_timeout
        self.strict_dialogs = strict_dialogs
        self.hello_before_ok = hello_before_ok
        self.server_version = server_version
        #: The URL Mattermost believes it lives at (``SiteURL``); ``serve`` sets it.
        self.site_url = "http://mattermost.test"
        #: (method, path with query) of every request, in order.
        self.requests: list[tuple[str, str]] = []
        #: Every ephemeral post: ``{"user_id", "username", "channel_id", "message", "post"}``.
        self.ephemeral_posts: list[JSON] = []
        #: Every dialog opened: ``{"trigger_id", "url", "dialog", "user_id", "username",
        #: "channel_id", "team_id", "problems"}``.
        self.dialogs_opened: list[JSON] = []
        #: Every websocket event sent: ``(user_id, event)``.
        self.events: list[tuple[str, JSON]] = []
        #: What the server would only log: invalid dialogs, command responses, answers.
        self.warnings: list[str] = []
        #: Websocket connections opened (authenticated or not), and heartbeats received.
        self.websocket_attempts = 0
        self.websocket_pongs = 0
        self.websocket_pings = 0
        #: False: pings are read but never answered, as by a server that hangs.
        self.answer_pings = True
        self._signing_key = secrets.token_bytes(32)
        self._users: dict[str, _User] = {}
        self._teams: dict[str, _Team] = {}
        self._channels: dict[str, _Channel] = {}
        self._posts: list[JSON] = []
        self._commands: dict[str, _Command] = {}
        self._hooks: dict[str, _IncomingHook] = {}
        self._command_hooks: dict[str, _CommandHook] = {}
        self._tokens: dict[str, str] = {}  # token -> user id
        self._trigger_contexts: dict[str, dict[str, str]] = {}  # client trigger id -> ids
        self._connections: list[_Connection] = []
        self._connections_changed: asyncio.Event | None = None
        self._failures: list[_Rule] = []
        self._bot_id: str | None = None
        if bot_username is not None:
            self._bot_id = self.add_user(bot_username, is_bot=True, roles=bot_roles)["id"]
        channel = API + r"/channels/(?P<channel_id>[^/]+)"
        command = API + r"/commands/(?P<command_id>[^/]+)"
        team_by_name = API + r"/teams/name/(?P<team_name>[^/]+)"

        def route(method: str, pattern: str, handler: Handler, *, session: bool = True) -> _Route:
            return _Route(method, re.compile(pattern), handler, session)

        self._routes = [
            route("GET", API + "/system/ping", self._ping, session=False),
            route("GET", API + "/config/client", self._client_config, session=False),
            route("GET", API + "/websocket", self._websocket, session=False),
            route("GET", API + r"/users/(?P<user_id>[^/]+)", self._get_user),
            route("GET", API + r"/users/username/(?P<username>[^/]+)", self._get_user_by_name),
            route("POST", API + "/users/usernames", self._post_usernames),
            route("POST", API + "/users/ids", self._post_user_ids),
            route("POST", API + "/posts", self._post_post),
            route("POST", API + "/posts/ephemeral", self._post_ephemeral),
            route("GET", API + r"/posts/(?P<post_id>[^/]+)", self._get_post),
            route("PUT", API + r"/posts/(?P<post_id>[^/]+)/patch", self._patch_post),
            route("GET", channel + "/posts", self._get_channel_posts),
            route("GET", API + r"/users/(?P<user_id>[^/]+)/channels", self._get_user_channels),
            route("POST", API + "/channels/direct", self._post_direct_channel),
            route("GET", channel, self._get_channel),
            route("GET", team_by_name, self._get_team_by_name),
            route(
                "GET",
                team_by_name + r"/channels/name/(?P<channel_name>[^/]+)",
                self._get_channel_by_names,
            ),
            route("POST", API + "/commands", self._post_command),
            route("GET", API + "/commands", self._list_commands),
            route("GET", command, self._get_command),
            route("PUT", command, self._put_command),
            route("DELETE", command, self._delete_command),
            route("POST", API + "/actions/dialogs/open", self._open_dialog, session=False),
            route("POST", r"/hooks/commands/(?P<hook_id>[^/]+)", self._command_hook, session=False),
            route("POST", r"/hooks/(?P<hook_id>[^/]+)", self._incoming_hook, session=False),
        ]

    # --- the model: people, teams, channels ------------------------------------------

    def add_user(
        self,
        username: str,
        *,
        first_name: str = "",
        last_name: str = "",
        nickname: str = "",
        email: str | None = None,
        locale: str = "en",
        timezone: str | None = None,
        is_bot: bool = False,
        roles: str = "system_user",
    ) -> JSON:
        """A user (or a bot account); returns its ``GET /users/{id}`` JSON.

        ``timezone`` (``"Europe/Paris"``) is the automatic one; without it the user has
        Mattermost's default, ``useAutomaticTimezone`` with nothing detected yet.
        """
        name = username.lower()
        if _USERNAME.fullmatch(name) is None:
            raise ValueError(f"{username!r} is not a valid Mattermost username")
        if self._by_username(name) is not None:
            raise ValueError(f"user {name!r} already exists")
        user = _User(
            id=new_id(),
            username=name,
            first_name=first_name,
            last_name=last_name,
            nickname=nickname,
            email=email if email is not None else f"{name}@example.com",
            locale=locale,
            timezone={
                "automaticTimezone": timezone or "",
                "manualTimezone": "",
                "useAutomaticTimezone": "true",
            },
            is_bot=is_bot,
            roles=roles,
            create_at=millis(),
        )
        self._users[user.id] = user
        return self._user_json(user)

    def user(self, username_or_id: str) -> JSON:
        """A user's JSON, by username or id."""
        return self._user_json(self._user(username_or_id))

    @property
    def bot(self) -> JSON:
        """The bot account the stand-in was created with."""
        if self._bot_id is None:
            raise KeyError("this stand-in was created without a bot")
        return self._user_json(self._users[self._bot_id])

    @property
    def bot_token(self) -> str:
        """A personal access token of the bot account."""
        return self.token_for(self.bot["username"])

    def token_for(self, username: str) -> str:
        """A personal access token of ``username`` (the same one on every call)."""
        user = self._user(username)
        for token, user_id in self._tokens.items():
            if user_id == user.id:
                return token
        token = new_id()
        self._tokens[token] = user.id
        return token

    def revoke_tokens(self, username: str) -> None:
        """Revoke every token of ``username``: its sessions end with a 401."""
        user = self._user(username)
        self._tokens = {t: uid for t, uid in self._tokens.items() if uid != user.id}

    def add_team(
        self, name: str, display_name: str | None = None, *, members: Iterable[str] = ()
    ) -> JSON:
        """A team (``name`` is its URL name, the slash command's ``team_domain``).

        ``members`` join its ``town-square``, created with it as Mattermost does.
        """
        if self._team(name) is not None:
            raise ValueError(f"team {name!r} already exists")
        team = _Team(new_id(), name.lower(), display_name or name.title(), millis())
        self._teams[team.id] = team
        self.add_channel(team.name, "town-square", "Town Square", members=members)
        return self._team_json(team)

    def add_channel(
        self,
        team: str,
        name: str,
        display_name: str | None = None,
        *,
        type: str = "O",
        members: Iterable[str] = (),
        creator: str | None = None,
    ) -> JSON:
        """A public (``O``) or private (``P``) channel of ``team`` (name or id)."""
        found = self._team(team)
        if found is None:
            raise KeyError(f"no team {team!r}")
        if type not in ("O", "P"):
            raise ValueError("a team channel is of type O or P")
        if self._channel_by_name(found, name) is not None:
            raise ValueError(f"channel {name!r} already exists in {found.name!r}")
        creator_id = self._user(creator).id if creator else ""
        channel = _Channel(
            new_id(),
            found.id,
            name.lower(),
            display_name or name.replace("-", " ").title(),
            type,
            creator_id,
            millis(),
        )
        self._channels[channel.id] = channel
        for username in members:
            self.join_channel(channel.id, username)
        return self._channel_json(channel)

    def channel(self, team: str, name: str) -> JSON:
        """A team channel's JSON, by team and channel name."""
        found = self._team(team)
        chan = self._channel_by_name(found, name) if found else None
        if chan is None:
            raise KeyError(f"no channel {name!r} in team {team!r}")
        return self._channel_json(chan)

    def join_channel(self, channel_id: str, username: str) -> None:
        """``username`` joins the channel (again: no change)."""
        channel = self._channel(channel_id)
        user = self._user(username)
        if user.id not in channel.members:
            channel.members.append(user.id)

    def leave_channel(self, channel_id: str, username: str) -> None:
        channel = self._channel(channel_id)
        user = self._user(username)
        if user.id in channel.members:
            channel.members.remove(user.id)

    def members(self, channel_id: str) -> list[str]:
        """The usernames of the channel's members."""
        return [self._users[uid].username for uid in self._channel(channel_id).members]

    def direct_channel(self, username_a: str, username_b: str) -> JSON:
        """The direct-message channel of two users, created on first use."""
        return self._channel_json(self._direct(self._user(username_a), self._user(username_b)))

    # --- the model: messages ---------------------------------------------------------

    def say(
        self,
        username: str,
        channel_id: str,
        message: str,
        *,
        root_id: str = "",
        props: Mapping[str, Any] | None = None,
    ) -> JSON:
        """``username`` posts ``message``: stored, and sent to the channel's websockets."""
        user = self._user(username)
        channel = self._channel(channel_id)
        if not self._may_post(user, channel):
            raise ValueError(f"{user.username} may not post in {channel.name}")
        return self._create_post(user, channel, message, root_id=root_id, props=props)

    def posts_in(self, channel_id: str) -> list[JSON]:
        """The channel's posts, oldest first."""
        return [dict(p) for p in self._posts if p["channel_id"] == channel_id]

    def user_posts(self, username: str, channel_id: str | None = None) -> list[JSON]:
        """The posts of ``username`` (in one channel, or everywhere), oldest first."""
        user = self._user(username)
        return [
            dict(p)
            for p in self._posts
            if p["user_id"] == user.id and channel_id in (None, p["channel_id"])
        ]

    def ephemerals_for(self, username: str) -> list[JSON]:
        """The ephemeral posts shown to ``username`` (the post JSON), oldest first."""
        user = self._user(username)
        return [dict(e["post"]) for e in self.ephemeral_posts if e["user_id"] == user.id]

    def add_incoming_webhook(
        self, channel_id: str, *, creator: str | None = None, display_name: str = ""
    ) -> JSON:
        """An incoming webhook posting to ``channel_id`` as ``creator`` (the bot)."""
        channel = self._channel(channel_id)
        user = self._user(creator) if creator else self._users[self._require_bot()]
        hook = _IncomingHook(
            new_id(), channel.id, channel.team_id, user.id, display_name, "", millis()
        )
        self._hooks[hook.id] = hook
        return self._hook_json(hook)

    def hook_url(self, hook_id: str) -> str:
        return f"{self.site_url}/hooks/{hook_id}"

    # --- the model: commands and dialogs -------------------------------------------

    def add_command(
        self,
        team: str,
        trigger: str,
        url: str,
        *,
        creator: str | None = None,
        method: str = "P",
        **fields: Any,
    ) -> JSON:
        """Register a custom slash command, as ``POST /commands`` does; returns it."""
        found = self._team(team)
        if found is None:
            raise KeyError(f"no team {team!r}")
        user = self._user(creator) if creator else self._users[self._require_bot()]
        body = {"team_id": found.id, "trigger": trigger, "url": url, "method": method, **fields}
        return self._command_json(self._create_command(body, user))

    def commands_in(self, team: str) -> list[JSON]:
        """The team's custom commands (with their tokens)."""
        found = self._team(team)
        if found is None:
            raise KeyError(f"no team {team!r}")
        return [self._command_json(c) for c in self._commands.values() if c.team_id == found.id]

    def issue_trigger_id(
        self, username: str, *, channel_id: str | None = None, age: float = 0.0
    ) -> str:
        """A trigger id, as the server signs them for ``username`` (``GenerateTriggerId``).

        ``age`` backdates it (seconds), to see an expired one refused.
        """
        user = self._user(username)
        channel = self._channel(channel_id) if channel_id else None
        return self._trigger_id(user.id, channel, issued=time.time() - age)[1]

    # --- the model: websockets and failures --------------------------------------------

    def drop_websockets(self) -> int:
        """Cut every websocket connection abruptly (no close frame); returns how many."""
        dropped = 0
        for conn in list(self._connections):
            if conn.transport is not None and not conn.transport.is_closing():
                abort = getattr(conn.transport, "abort", None)
                if callable(abort):
                    abort()
                else:
                    conn.transport.close()
                dropped += 1
        return dropped

    def websockets_open(self, username: str | None = None) -> int:
        """Authenticated websocket connections (of ``username``, or all)."""
        user_id = self._user(username).id if username else None
        return sum(
            1
            for c in self._connections
            if c.user_id is not None and user_id in (None, c.user_id) and not c.ws.closed
        )

    async def wait_for_websockets(self, username: str | None = None, count: int = 1) -> None:
        """Wait until ``count`` websockets (of ``username``) are authenticated; bound it
        with ``asyncio.timeout``."""
        while self.websockets_open(username) < count:
            changed = self._connections_changed = asyncio.Event()
            await changed.wait()

    def events_for(self, username: str, event: str | None = None) -> list[JSON]:
        """The websocket events sent to ``username`` (of one kind), oldest first."""
        user = self._user(username)
        return [e for uid, e in self.events if uid == user.id and event in (None, e["event"])]

    def fail_next(
        self, path_regex: str, status: int, times: int = 1, *, method: str | None = None
    ) -> None:
        """Answer the next ``times`` requests whose path (with query) matches with ``status``
        and a Mattermost error body (``method`` narrows it to one HTTP method)."""
        rule = _Rule(re.compile(path_regex), times, status, method and method.upper())
        self._failures.append(rule)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        app.on_shutdown.append(self._close_websockets)
        return app

    # --- Mattermost calling the bot: slash commands ------------------------------------

    async def run_slash_command(
        self,
        username: str,
        channel: str,
        text_line: str,
        *,
        team: str | None = None,
        root_id: str = "",
    ) -> tuple[int, JSON]:
        """``username`` types ``text_line`` (``/roulette pick !12``) in ``channel`` (an id, or
        a channel name of ``team``), as ``POST /api/v4/commands/execute`` would run it.

        The registered command's URL gets exactly what ``DoCommandRequest`` sends: the form
        fields in Go's order (sorted), ``Content-Type: application/x-www-form-urlencoded``,
        ``Accept: application/json``, ``Authorization: Token <command token>`` (a ``G``
        command gets them in the query string). The answer must be a 200; a JSON
        CommandResponse (charset ignored) or else plain text, applied as
        ``HandleCommandResponse`` does: ``ephemeral`` (the default) to the user,
        ``in_channel`` as a post *by the user* marked ``from_webhook``, then each of
        ``extra_responses``.

        Returns what the server answers the user's client: ``(200, CommandResponse)`` with
        the client's ``trigger_id`` and any ``goto_location``, or ``(status, AppError)``:
        404 for an unknown command, 500 when the integration failed (non-200, timeout,
        unreadable JSON) or a post could not be made.
        """
        user = self._user(username)
        chan = self._resolve_channel(channel, team)
        trigger, _, message = _split_command(text_line)
        trigger = trigger.lower()
        if not trigger.startswith("/"):
            return 400, MattermostError(
                400,
                "api.command.execute_command.format.app_error",
                f"Command trigger '{trigger}' is not a valid format.",
            ).body()
        trigger = trigger[1:]
        if chan.team_id:
            the_team = self._teams[chan.team_id]
        else:
            found = self._team(team) if team else next(iter(self._teams.values()), None)
            if found is None:
                raise KeyError("a direct channel needs a team to run a command in")
            the_team = found
        client_trigger_id, trigger_id = self._trigger_id(user.id, chan, team_id=the_team.id)
        command = next(
            (
                c
                for c in self._commands.values()
                if c.team_id == the_team.id and c.trigger == trigger
            ),
            None,
        )
        if command is None:
            return 404, MattermostError(
                404,
                "api.command.execute_command.not_found.app_error",
                f"Command with a trigger of '/{trigger}' not found. To send a message "
                'beginning with "/", try adding an empty space at the beginning of the message.',
            ).body()
        hook = _CommandHook(
            new_id(), command.id, user.id, chan.id, the_team.id, root_id, time.time()
        )
        self._command_hooks[hook.id] = hook
        fields = [
            ("token", command.token),
            ("team_id", command.team_id),
            ("team_domain", the_team.name),
            ("channel_id", chan.id),
            ("channel_name", chan.name),
            ("user_id", user.id),
            ("user_name", user.username),
            ("command", "/" + trigger),
            ("text", message),
            ("trigger_id", trigger_id),
            ("root_id", root_id),
            *self._mention_fields(message, the_team),
            ("response_url", f"{self.site_url}/hooks/commands/{hook.id}"),
        ]
        body = urlencode(sorted(fields, key=lambda kv: kv[0]))  # url.Values.Encode()
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip",
            "Authorization": f"Token {command.token}",
            "User-Agent": USER_AGENT,
        }
        failed = MattermostError(
            500,
            "api.command.execute_command.failed.app_error",
            f"Command with a trigger of '{trigger}' failed.",
        )
        timeout = aiohttp.ClientTimeout(total=self.command_timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                if command.method == "G":
                    joiner = "&" if urlsplit(command.url).query else "?"
                    request = http.get(command.url + joiner + body, headers=headers)
                else:
                    headers["Content-Type"] = "application/x-www-form-urlencoded"
                    request = http.post(command.url, data=body.encode(), headers=headers)
                async with request as answer:
                    raw = await answer.read()
                    status, reason = answer.status, answer.reason or ""
                    content_type = answer.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError) as e:
            failed.detailed = repr(e)
            return 500, failed.body()
        text = raw.decode("utf-8", errors="replace")
        if status != 200:
            return 500, MattermostError(
                500,
                "api.command.execute_command.failed_resp.app_error",
                f"Command with a trigger of '{trigger}' returned response {status} {reason}.",
                text,
            ).body()
        try:
            response = _command_response(content_type, text)
        except ValueError as e:
            failed.detailed = str(e)
            return 500, failed.body()
        if response is None:
            return 500, MattermostError(
                500,
                "api.command.execute_command.failed_empty.app_error",
                f"Command with a trigger of '{trigger}' returned an empty response.",
            ).body()
        errors = self._handle_command_response(command, user, chan, root_id, response)
        if errors:
            return 500, MattermostError(
                500,
                "api.command.execute_command.create_post_failed.app_error",
                f"Command '{trigger}' created a response that could not be posted.",
                "; ".join(errors),
            ).body()
        answered = _command_response_json(response)
        answered["trigger_id"] = client_trigger_id
        return 200, answered

    # --- Mattermost calling the bot: dialogs -----------------------------------------

    async def submit_dialog(
        self,
        dialog: Mapping[str, Any],
        username: str,
        submission: Mapping[str, Any] | None,
        *,
        cancelled: bool = False,
    ) -> tuple[int, JSON]:
        """``username`` submits (or cancels) an opened dialog (an entry of
        ``dialogs_opened``), as ``SubmitInteractiveDialog`` posts it to the dialog's URL::

            {"type": "dialog_submission", "callback_id", "state", "user_id", "channel_id",
             "team_id", "submission", "cancelled"}

        ``team_id`` is the channel's (``""`` in a DM). A cancel sends an empty submission,
        and only when the dialog asked for it (``notify_on_cancel``): otherwise nothing is
        sent and ``(0, {})`` comes back. Returns the integration's status and parsed answer:
        ``{}`` (the body was empty: the dialog closes), ``{"errors": {...}}``,
        ``{"error": "..."}``, ``{"type": "form", ...}``.
        """
        user = self._user(username)
        spec = dialog.get("dialog") or {}
        if cancelled and not spec.get("notify_on_cancel"):
            return 0, {}
        payload = {
            "type": "dialog_submission",
            "callback_id": spec.get("callback_id") or "",
            "state": spec.get("state") or "",
            "user_id": user.id,
            "channel_id": dialog.get("channel_id") or "",
            "team_id": dialog.get("team_id") or "",
            "submission": {} if cancelled else dict(submission or {}),
            "cancelled": cancelled,
        }
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        timeout = aiohttp.ClientTimeout(total=self.command_timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(str(dialog["url"]), data=_dumps(payload).encode(), headers=headers) as r,
        ):
            status, raw = r.status, await r.read()
        if not raw.strip():
            return status, {}
        try:
            answer = json.loads(raw)
        except ValueError:
            if status == 200:
                raise ValueError(f"the dialog's answer is not JSON: {raw[:200]!r}") from None
            return status, {}
        if not isinstance(answer, dict):
            raise ValueError(f"the dialog's answer is not a JSON object: {answer!r}")
        problem = _submit_response_problem(answer)
        if problem:
            self.warnings.append(f"dialog answer refused by the server: {problem}")
        return status, answer

    # --- Mattermost calling the bot: message buttons ----------------------------------

    async def click(self, username: str, post_id: str, action_id: str) -> tuple[int, JSON]:
        """``username`` clicks the button ``action_id`` of the post ``post_id``, as
        ``POST /api/v4/posts/{post_id}/actions/{action_id}`` makes the server do
        (``DoPostActionWithCookie``, PROTOCOLS.md A8).

        The button's ``integration.url`` gets a JSON POST of exactly::

            {"user_id", "user_name", "channel_id", "channel_name", "team_id",
             "team_domain", "post_id", "trigger_id", "type": "button", "data_source",
             "context"}

        with the ``context`` stored with the post (no token, no signature added); the
        trigger id is a fresh one for ``username``, good for ``/actions/dialogs/open``.
        A 200 answer's ``update`` replaces the post's message and props (the server's
        reserved ``from_bot``/``from_webhook`` kept; props without ``attachments``
        remove the buttons) and ``ephemeral_text`` is shown to ``username`` alone (an
        entry of ``ephemeral_posts``).

        Returns the integration's status and parsed answer (``{}`` for an empty body or
        a failure, recorded in ``warnings`` as the server logs it). Raises ``KeyError``
        for a post or button that does not exist or a user who cannot see the post.
        """
        user = self._user(username)
        post = next((p for p in self._posts if p["id"] == post_id), None)
        if post is None or not self._may_read(user, self._channels[post["channel_id"]]):
            raise KeyError(f"no post {post_id!r} that {username} can see")
        action = next(
            (
                a
                for attachment in (post["props"].get("attachments") or [])
                if isinstance(attachment, dict)
                for a in (attachment.get("actions") or [])
                if isinstance(a, dict) and a.get("id") == action_id
            ),
            None,
        )
        if action is None or not _ACTION_ID.fullmatch(action_id):
            raise KeyError(f"no button {action_id!r} on post {post_id!r}")
        channel = self._channels[post["channel_id"]]
        team = self._teams.get(channel.team_id)
        _client_id, trigger_id = self._trigger_id(user.id, channel)
        integration = action.get("integration") or {}
        payload = {
            "user_id": user.id,
            "user_name": user.username,
            "channel_id": channel.id,
            "channel_name": channel.name,
            "team_id": channel.team_id,
            "team_domain": team.name if team else "",
            "post_id": post["id"],
            "trigger_id": trigger_id,
            "type": "button",
            "data_source": str(action.get("data_source") or ""),
            "context": integration.get("context") or {},
        }
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        timeout = aiohttp.ClientTimeout(total=self.command_timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.post(
                    str(integration.get("url") or ""),
                    data=_dumps(payload).encode(),
                    headers=headers,
                ) as r,
            ):
                status, raw = r.status, await r.read()
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            self.warnings.append(f"button action failed: {e!r}")
            return 0, {}
        if status != 200:
            self.warnings.append(f"button action answered {status}: {raw[:200]!r}")
            return status, {}
        try:
            answer = json.loads(raw) if raw.strip() else {}
        except ValueError:
            self.warnings.append(f"button action answer is not JSON: {raw[:200]!r}")
            return status, {}
        if not isinstance(answer, dict):
            self.warnings.append(f"button action answer is not an object: {answer!r}")
            return status, {}
        update = answer.get("update")
        if isinstance(update, dict):
            props = update.get("props")
            try:
                checked = self._checked_actions(props if isinstance(props, dict) else {})
            except MattermostError:  # recorded in warnings; the server would store it
                checked = None
            if checked is not None:
                self._edit_post(post, str(update.get("message") or ""), checked, None)
        text = answer.get("ephemeral_text")
        if isinstance(text, str) and text:
            if not answer.get("skip_slack_parsing"):
                text = _slack_to_markdown(text, self)
            self._send_ephemeral(
                user.id,
                sender_id=post["user_id"],
                channel_id=channel.id,
                message=text,
                root_id=post["root_id"],
            )
        return status, answer

    # --- dispatch ----------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        failure = _take(self._failures, request.method, request.path_qs)
        if failure is not None:
            return MattermostError(
                failure.status, "standin.injected_failure.app_error", "Injected failure."
            ).response()
        path = request.path
        chosen: tuple[_Route, re.Match[str]] | None = None
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match and route.method == request.method:
                chosen = route, match
                break
        try:
            if chosen is None:
                raise _not_found_route()
            route, match = chosen
            user = self._session(request)
            if route.session and user is None:
                raise _session_expired()
            return await route.handler(request, match.groupdict(), user)
        except MattermostError as e:
            return e.response()

    def _session(self, request: web.Request) -> _User | None:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        token = credentials.strip() if scheme.lower() in ("bearer", "token") else ""
        token = token or request.query.get("access_token", "")
        user_id = self._tokens.get(token) if token else None
        return self._users.get(user_id) if user_id else None

    # --- handlers: users -------------------------------------------------------------

    async def _ping(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        return json_response({"status": "OK"})

    async def _client_config(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        """``GET /config/client?format=old``: the part of the config clients read (the
        server's version and post limit among it); without ``format``, a 501."""
        fmt = request.query.get("format", "")
        if not fmt:
            raise MattermostError(
                501,
                "api.config.client.old_format.app_error",
                "New format for the client configuration is not supported yet. Please "
                "specify format=old in the query string.",
            )
        if fmt != "old":
            raise _invalid_url_param("format")
        return json_response(
            {
                "Version": self.server_version,
                "BuildNumber": self.server_version,
                "SiteURL": self.site_url,
                "MaxPostSize": str(self.max_post_runes),
                "EnableCommands": "true",
            }
        )

    async def _get_user(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        assert me is not None
        if self.user_lookup_delay > 0:  # a loaded server: the answer comes late
            await asyncio.sleep(self.user_lookup_delay)
        user_id = params["user_id"]
        if user_id == "me":
            return json_response(self._user_json(me))
        if not is_valid_id(user_id):
            raise _invalid_url_param("user_id")
        user = self._users.get(user_id)
        if user is None:
            raise MattermostError(404, "app.user.missing_account.const", "Unable to find the user.")
        return json_response(self._user_json(user))

    async def _get_user_by_name(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        username = params["username"].lower()
        if _USERNAME.fullmatch(username) is None:
            raise _invalid_url_param("username")
        user = self._by_username(username)
        if user is None:
            raise MattermostError(
                404,
                "app.user.get_by_username.app_error",
                "Unable to find an existing account matching your username for this team. "
                "This team may require an invite from the team owner to join.",
            )
        return json_response(self._user_json(user))

    async def _post_usernames(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        names = await _json_body(request, "usernames")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _invalid_body_param("usernames")
        found = [self._by_username(n.lower()) for n in dict.fromkeys(names)]
        return json_response([self._user_json(u) for u in found if u is not None])

    async def _post_user_ids(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        ids = await _json_body(request, "user_ids")
        if not isinstance(ids, list) or not all(is_valid_id(i) for i in ids):
            raise _invalid_body_param("user_ids")
        found = [self._users.get(i) for i in dict.fromkeys(ids)]
        return json_response([self._user_json(u) for u in found if u is not None])

    # --- handlers: posts ---------------------------------------------------------------

    async def _post_post(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        assert me is not None
        body = await _json_object(request, "post")
        channel = self._channels.get(str(body.get("channel_id") or ""))
        if channel is None or not self._may_post(me, channel):
            raise _permission_error("create_post")
        message = body.get("message") or ""
        props = body.get("props")
        post_type = body.get("type") or ""
        root_id = body.get("root_id") or ""
        if not isinstance(message, str) or not isinstance(props, dict | None):
            raise _invalid_body_param("post")
        self._check_length(message)
        props = self._checked_actions(props)
        if post_type and not str(post_type).startswith(_CUSTOM_POST_TYPE):
            raise MattermostError(400, "model.post.is_valid.type.app_error", "Invalid type.")
        if root_id and not any(
            p["id"] == root_id and p["channel_id"] == channel.id for p in self._posts
        ):
            raise MattermostError(
                400, "api.post.create_post.root_id.app_error", "Invalid RootId parameter."
            )
        set_online = request.query.get("set_online", "true").lower() not in ("false", "0", "f")
        post = self._create_post(
            me,
            channel,
            message,
            root_id=str(root_id),
            props=props,
            post_type=str(post_type),
            pending_post_id=str(body.get("pending_post_id") or ""),
            set_online=set_online,
        )
        return json_response(post, 201)

    async def _get_post(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        assert me is not None
        post = next((p for p in self._posts if p["id"] == params["post_id"]), None)
        if post is None or not self._may_read(me, self._channels[post["channel_id"]]):
            raise MattermostError(404, "app.post.get.app_error", "Unable to get the post.")
        return json_response(post)

    async def _patch_post(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        """``PatchPost``: each field given replaces the stored one (``props`` as a whole);
        the author's own posts (``edit_post``), another's with ``system_admin``
        (``edit_others_posts``); 200 with the post, ``post_edited`` to the channel."""
        assert me is not None
        body = await _json_object(request, "post")
        post = next((p for p in self._posts if p["id"] == params["post_id"]), None)
        if post is None or not self._may_read(me, self._channels[post["channel_id"]]):
            raise MattermostError(404, "app.post.get.app_error", "Unable to get the post.")
        if post["user_id"] != me.id and not me.has_role("system_admin"):
            raise _permission_error("edit_others_posts")
        message, props = body.get("message"), body.get("props")
        if not isinstance(message, str | None) or not isinstance(props, dict | None):
            raise _invalid_body_param("post")
        if message is not None:
            self._check_length(message)
        props = self._checked_actions(props)
        pinned = body.get("is_pinned")
        return json_response(self._edit_post(post, message, props, pinned))

    async def _get_channel_posts(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        """``getPostsForChannel``: ``since`` (``GetPostsSince``) or a page of the newest."""
        assert me is not None
        if not is_valid_id(params["channel_id"]):
            raise _invalid_url_param("channel_id")
        channel = self._channels.get(params["channel_id"])
        if channel is None or not self._may_read(me, channel):
            raise _permission_error("read_channel_content")
        query = request.query
        since = _int_param(query, "since", 0)
        in_channel = [p for p in self._posts if p["channel_id"] == channel.id]
        newest_first = sorted(in_channel, key=lambda p: p["create_at"], reverse=True)
        listing: JSON = {"order": [], "posts": {}, "next_post_id": "", "prev_post_id": ""}
        if since > 0:
            chosen = [p for p in newest_first if p["update_at"] > since][:1000]
        else:
            page = _int_param(query, "page", 0)
            per_page = min(_int_param(query, "per_page", 60), 200)
            chosen = newest_first[page * per_page : (page + 1) * per_page]
            listing["has_next"] = len(newest_first) > (page + 1) * per_page
        roots = {p["root_id"] for p in chosen if p["root_id"]}
        listing["order"] = [p["id"] for p in chosen]
        posts = {p["id"]: dict(p) for p in in_channel if p["id"] in roots}
        posts.update((p["id"], dict(p)) for p in chosen)
        listing["posts"] = posts
        return json_response(listing)

    async def _get_user_channels(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        """``getChannelsForUser``: the user's channels of all teams, DMs and GMs included."""
        assert me is not None
        user_id = me.id if params["user_id"] == "me" else params["user_id"]
        if not is_valid_id(user_id):
            raise _invalid_url_param("user_id")
        if user_id != me.id and not me.has_role("system_admin"):
            raise _permission_error("edit_other_users")
        if _int_param(request.query, "last_delete_at", 0) < 0:
            raise _invalid_url_param("last_delete_at")
        mine = [c for c in self._channels.values() if user_id in c.members]
        return json_response([self._channel_json(c) for c in sorted(mine, key=lambda c: c.id)])

    async def _post_ephemeral(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        assert me is not None
        body = await _json_object(request, "body")
        target = body.get("user_id")
        post = body.get("post")
        if not target or not isinstance(target, str):
            raise _invalid_body_param("user_id")
        if not isinstance(post, dict):
            raise _invalid_body_param("post")
        if not me.has_role("system_admin"):
            raise _permission_error("create_post_ephemeral")
        if self.strict_ephemeral_length:
            self._check_length(str(post.get("message") or ""))
        props = post.get("props") if isinstance(post.get("props"), dict) else None
        sent = self._send_ephemeral(
            target,
            sender_id=me.id,
            channel_id=str(post.get("channel_id") or ""),
            message=str(post.get("message") or ""),
            props=props,
            root_id=str(post.get("root_id") or ""),
        )
        return json_response(sent, 201)

    # --- handlers: channels and teams --------------------------------------------------

    async def _post_direct_channel(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        assert me is not None
        ids = await _json_body(request, "user_ids")
        if not isinstance(ids, list) or len(ids) != 2:
            raise _invalid_body_param("user_ids")
        if not all(is_valid_id(i) for i in ids):
            raise _invalid_body_param("user_id")
        if me.id not in ids and not me.has_role("system_admin"):
            raise _permission_error("manage_system")
        users = [self._users.get(i) for i in ids]
        if users[0] is None or users[1] is None:
            raise MattermostError(
                400,
                "api.channel.create_direct_channel.invalid_user.app_error",
                "Invalid user ID for direct channel creation.",
            )
        return json_response(self._channel_json(self._direct(users[0], users[1])), 201)

    async def _get_channel(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        assert me is not None
        if not is_valid_id(params["channel_id"]):
            raise _invalid_url_param("channel_id")
        channel = self._channels.get(params["channel_id"])
        if channel is None:
            raise MattermostError(
                404, "app.channel.get.existing.app_error", "Unable to find the existing channel."
            )
        if not self._may_read(me, channel):
            raise _permission_error("read_channel")
        return json_response(self._channel_json(channel))

    async def _get_team_by_name(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        return json_response(self._team_json(self._team_or_404(params["team_name"])))

    async def _get_channel_by_names(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        assert me is not None
        team = self._team_or_404(params["team_name"])
        channel = self._channel_by_name(team, params["channel_name"])
        if channel is None or not self._may_read(me, channel):
            raise MattermostError(
                404, "app.channel.get_by_name.missing.app_error", "Channel does not exist."
            )
        return json_response(self._channel_json(channel))

    # --- handlers: commands ------------------------------------------------------------

    async def _post_command(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        assert me is not None
        body = await _json_object(request, "command")
        team_id = body.get("team_id")
        if is_valid_id(team_id) and team_id not in self._teams:
            raise _permission_error("manage_slash_commands")
        return json_response(self._command_json(self._create_command(body, me)), 201)

    async def _list_commands(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        team_id = request.query.get("team_id", "")
        if not team_id:
            raise _invalid_url_param("team_id")
        if team_id not in self._teams:
            raise _permission_error("view_team")
        custom_only = request.query.get("custom_only", "") in (
            "1",
            "t",
            "T",
            "TRUE",
            "true",
            "True",
        )
        mine = [c for c in self._commands.values() if c.team_id == team_id]
        if custom_only:
            return json_response([self._command_json(c) for c in mine])
        built_in = [
            {"trigger": t, "auto_complete": True, "display_name": "", "description": ""}
            for t in sorted(BUILT_IN_TRIGGERS)
        ]
        return json_response(built_in + [self._command_json(c, sanitized=True) for c in mine])

    async def _get_command(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        return json_response(self._command_json(self._command_or_404(params["command_id"])))

    async def _put_command(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        body = await _json_object(request, "command")
        if body.get("id") != params["command_id"]:
            raise _invalid_body_param("command")
        old = self._command_or_404(params["command_id"])
        if body.get("team_id") != old.team_id:
            raise MattermostError(
                400,
                "api.command.team_mismatch.app_error",
                "Unable to update commands across teams.",
            )
        trigger = str(body.get("trigger") or "").lower()
        self._check_trigger_free(old.team_id, trigger, exclude=old.id)
        updated = _Command(
            id=old.id,
            token=old.token,
            create_at=old.create_at,
            update_at=millis(),
            creator_id=old.creator_id,
            team_id=old.team_id,
            trigger=trigger,
            method=str(body.get("method") or ""),
            url=str(body.get("url") or ""),
            **_command_extras(body),
        )
        _check_command(updated)
        self._commands[old.id] = updated
        return json_response(self._command_json(updated))

    async def _delete_command(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        self._command_or_404(params["command_id"])
        del self._commands[params["command_id"]]
        return json_response({"status": "OK"})

    # --- handlers: dialogs and hooks ---------------------------------------------------

    async def _open_dialog(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        body = await _json_object(request, "dialog")
        url = body.get("url")
        if not url or not isinstance(url, str):
            raise _invalid_body_param("url")
        client_id, user_id, context = self._verify_trigger_id(body.get("trigger_id"))
        dialog = body.get("dialog")
        if not isinstance(dialog, dict):
            dialog = {}
        problems = _dialog_problems(str(body.get("trigger_id") or ""), url, dialog)
        if problems:
            self.warnings.append("Interactive dialog is invalid: " + "; ".join(problems))
            if self.strict_dialogs:
                raise MattermostError(
                    400,
                    "model.dialog.is_valid.app_error",
                    "Interactive dialog is invalid (the stand-in's strict_dialogs; a real "
                    "server only logs this and opens the dialog).",
                    "; ".join(problems),
                )
        user = self._users.get(user_id)
        self.dialogs_opened.append(
            {
                "trigger_id": body.get("trigger_id"),
                "url": url,
                "dialog": dialog,
                "user_id": user_id,
                "username": user.username if user else None,
                "channel_id": context.get("channel_id", ""),
                "team_id": context.get("team_id", ""),
                "problems": problems,
            }
        )
        opened = {"trigger_id": client_id, "url": url, "dialog": dialog}
        self._publish_to_user(
            user_id, "open_dialog", {"dialog": _dumps(opened)}, {"user_id": user_id}
        )
        return json_response({"status": "OK"})

    async def _command_hook(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        text = (await request.read()).decode("utf-8", errors="replace")
        try:
            response = _command_response(request.headers.get("Content-Type", ""), text)
        except ValueError as e:
            raise MattermostError(
                400,
                "web.command_webhook.parse.app_error",
                "Unable to parse incoming data.",
                str(e),
            ) from None
        if response is None:
            raise MattermostError(
                400,
                "app.command_webhook.handle_command_webhook.parse",
                "Unable to parse incoming data.",
            )
        hook = self._command_hooks.get(params["hook_id"])
        if hook is None or time.time() - hook.created > COMMAND_HOOK_LIFETIME:
            raise MattermostError(
                404, "app.command_webhook.get.missing", "Unable to find the webhook."
            )
        command = self._commands.get(hook.command_id)
        if command is None:
            raise MattermostError(
                400, "web.command_webhook.command.app_error", "Couldn't find the command."
            )
        if hook.uses >= COMMAND_HOOK_USES:
            raise MattermostError(
                400, "app.command_webhook.try_use.invalid", "Invalid use of the webhook."
            )
        hook.uses += 1
        errors = self._handle_command_response(
            command,
            self._users[hook.user_id],
            self._channels[hook.channel_id],
            hook.root_id,
            response,
        )
        if errors:
            raise MattermostError(
                500,
                "api.command.execute_command.create_post_failed.app_error",
                "Command response could not be posted.",
                "; ".join(errors),
            )
        return _ok_text()

    async def _incoming_hook(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.Response:
        hook = self._hooks.get(params["hook_id"])
        if hook is None:
            raise MattermostError(400, "web.incoming_webhook.invalid.app_error", "Invalid webhook.")
        payload = await _webhook_payload(request)
        text = payload.get("text") or ""
        attachments = payload.get("attachments")
        if not text and not attachments:
            raise MattermostError(400, "web.incoming_webhook.text.app_error", "No text specified.")
        creator = self._users[hook.user_id]
        channel = self._channels[hook.channel_id]
        override = payload.get("channel")
        if isinstance(override, str) and override:
            if override.startswith("@"):
                other = self._by_username(override[1:].lower())
                if other is None:
                    raise MattermostError(
                        400, "web.incoming_webhook.user.app_error", "Couldn't find the user."
                    )
                channel = self._direct(creator, other)
            else:
                name = override.lstrip("#").lower()
                found = self._channel_by_name(self._teams[hook.team_id], name)
                if found is None:
                    raise MattermostError(
                        400, "web.incoming_webhook.channel.app_error", "Couldn't find the channel."
                    )
                channel = found
        props = dict(payload.get("props") or {})
        props["from_webhook"] = "true"
        if hook.display_name:
            props["webhook_display_name"] = hook.display_name
        if attachments:
            props["attachments"] = attachments
        post_type = str(payload.get("type") or "")
        if post_type and not post_type.startswith(_CUSTOM_POST_TYPE):
            raise MattermostError(400, "model.post.is_valid.type.app_error", "Invalid type.")
        # SplitWebhookPost: a text over the limit becomes several posts, cut every
        # max_post_runes runes; the attachments go with the last one.
        message = _slack_to_markdown(str(text), self)
        pieces = [
            message[i : i + self.max_post_runes]
            for i in range(0, len(message), self.max_post_runes)
        ] or [""]
        plain = {k: v for k, v in props.items() if k != "attachments"}
        for n, piece in enumerate(pieces):
            last = n == len(pieces) - 1
            self._create_post(
                creator, channel, piece, props=props if last else plain, post_type=post_type
            )
        return _ok_text()

    # --- the websocket -----------------------------------------------------------------

    async def _websocket(
        self, request: web.Request, params: dict[str, str], me: _User | None
    ) -> web.StreamResponse:
        self.websocket_attempts += 1
        ws = web.WebSocketResponse(autoping=False)  # pings answered below, pongs counted
        transport = request.transport
        await ws.prepare(request)
        conn = _Connection(new_id(), ws, transport, asyncio.Queue())
        self._connections.append(conn)
        pump = asyncio.create_task(self._pump(conn))
        try:
            if me is not None:  # authenticated by its headers
                conn.user_id = me.id
                self._hello(conn)
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._websocket_request(conn, msg.data)
                elif msg.type is aiohttp.WSMsgType.PING:
                    self.websocket_pings += 1
                    if self.answer_pings:
                        await ws.pong(msg.data)
                elif msg.type is aiohttp.WSMsgType.PONG:
                    conn.pongs += 1
                    self.websocket_pongs += 1
        finally:
            self._connections.remove(conn)
            self._notify_connections()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        return ws

    def _websocket_request(self, conn: _Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            return
        if not isinstance(request, dict):
            return
        seq = request.get("seq")
        action = request.get("action")
        if not action:
            self._ws_fail(
                conn, seq, "api.web_socket_router.no_action.app_error", "No websocket action."
            )
            return
        if not isinstance(seq, int) or seq <= 0:
            self._ws_fail(
                conn,
                seq,
                "api.web_socket_router.bad_seq.app_error",
                "Invalid sequence for websocket message.",
            )
            return
        if action == "authentication_challenge":
            if conn.user_id is not None:
                return
            data = request.get("data")
            token = data.get("token") if isinstance(data, dict) else None
            user_id = self._tokens.get(token) if isinstance(token, str) else None
            if user_id is None:  # the server closes the connection without a word
                if conn.transport is not None:
                    conn.transport.close()
                return
            conn.user_id = user_id
            if self.hello_before_ok:
                self._hello(conn)
            conn.queue.put_nowait(_dumps({"status": "OK", "seq_reply": seq}))
            if not self.hello_before_ok:
                self._hello(conn)
            return
        if conn.user_id is None:
            self._ws_fail(
                conn,
                seq,
                "api.web_socket_router.not_authenticated.app_error",
                "Could not authenticate the websocket connection.",
            )
            return
        if action in ("user_typing", "get_statuses", "get_statuses_by_ids", "presence"):
            conn.queue.put_nowait(_dumps({"status": "OK", "seq_reply": seq}))
            return
        self._ws_fail(
            conn, seq, "api.web_socket_router.bad_action.app_error", "Unknown websocket action."
        )

    def _ws_fail(self, conn: _Connection, seq: Any, error_id: str, message: str) -> None:
        reply: JSON = {"status": "FAIL", "error": {"id": error_id, "message": message}}
        if isinstance(seq, int) and seq > 0:
            reply = {"status": "FAIL", "seq_reply": seq, "error": reply["error"]}
        conn.queue.put_nowait(_dumps(reply))

    def _hello(self, conn: _Connection) -> None:
        assert conn.user_id is not None
        self._notify_connections()
        version = self.server_version
        self._send_event(
            conn,
            "hello",
            {"connection_id": conn.id, "server_version": f"{version}.{version}.standin.false"},
            {"user_id": conn.user_id},
        )

    async def _pump(self, conn: _Connection) -> None:
        """The connection's one writer: replies and events leave in the order queued."""
        while True:
            frame = await conn.queue.get()
            try:
                await conn.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return

    def _notify_connections(self) -> None:
        if self._connections_changed is not None:
            self._connections_changed.set()

    def _send_event(self, conn: _Connection, event: str, data: JSON, broadcast: JSON) -> None:
        """One server event to one connection, with the connection's next ``seq``."""
        assert conn.user_id is not None
        message = {
            "event": event,
            "data": dict(sorted(data.items())),  # a Go map: keys sorted
            "broadcast": {
                "omit_users": None,
                "user_id": broadcast.get("user_id", ""),
                "channel_id": broadcast.get("channel_id", ""),
                "team_id": broadcast.get("team_id", ""),
            },
            "seq": conn.seq,
        }
        conn.seq += 1
        self.events.append((conn.user_id, message))
        conn.queue.put_nowait(_dumps(message))

    def _publish_to_user(self, user_id: str, event: str, data: JSON, broadcast: JSON) -> None:
        for conn in self._connections:
            if conn.user_id == user_id:
                self._send_event(conn, event, data, broadcast)

    async def _close_websockets(self, app: web.Application) -> None:
        for conn in list(self._connections):
            await conn.ws.close()

    # --- internals: posting --------------------------------------------------------------

    def _check_length(self, message: str) -> None:
        """``Post.IsValid``'s length rule: at most ``max_post_runes`` runes (code points,
        ``utf8.RuneCountInString``), else 400 ``model.post.is_valid.msg.app_error``."""
        if len(message) > self.max_post_runes:
            raise MattermostError(
                400, "model.post.is_valid.msg.app_error", "Invalid Message.", "id="
            )

    def _create_post(
        self,
        user: _User,
        channel: _Channel,
        message: str,
        *,
        root_id: str = "",
        props: Mapping[str, Any] | None = None,
        post_type: str = "",
        pending_post_id: str = "",
        set_online: bool = True,
    ) -> JSON:
        now = millis()
        all_props = dict(props or {})
        if user.is_bot:
            all_props["from_bot"] = "true"
        post: JSON = {
            "id": new_id(),
            "create_at": now,
            "update_at": now,
            "edit_at": 0,
            "delete_at": 0,
            "is_pinned": False,
            "user_id": user.id,
            "channel_id": channel.id,
            "root_id": root_id,
            "original_id": "",
            "message": message,
            "type": post_type,
            "props": all_props,
            "hashtags": _hashtags(message),
            "pending_post_id": pending_post_id,
            "reply_count": 0,
            "metadata": {},
        }
        thread = root_id or post["id"]
        replies = sum(1 for p in self._posts if p["root_id"] == thread) + (1 if root_id else 0)
        for p in self._posts:
            if p["id"] == thread or p["root_id"] == thread:
                p["reply_count"] = replies
        post["reply_count"] = replies
        self._posts.append(post)
        channel.last_post_at = now
        channel.total_msg_count += 1
        if not root_id:
            channel.total_msg_count_root += 1
            channel.last_root_post_at = now
        self._broadcast_posted(post, user, channel, set_online)
        return dict(post)

    def _checked_actions(self, props: Mapping[str, Any] | None) -> JSON | None:
        """``props`` with its buttons as the server stores them (``GenerateActionIds``: an
        action without ``id`` gets one). Problems go to ``warnings``; with
        ``strict_actions`` they are a 400 (see ``__init__``)."""
        if props is None:
            return None
        props = dict(props)
        attachments = props.get("attachments")
        if attachments is None:
            return props
        problems: list[str] = []
        if not isinstance(attachments, list):
            problems.append("props.attachments is not a list")
            attachments = []
        stored = []
        for attachment in attachments:
            if not isinstance(attachment, dict):
                problems.append("an attachment is not an object")
                continue
            attachment = dict(attachment)
            actions = []
            for action in attachment.get("actions") or []:
                if not isinstance(action, dict):
                    problems.append("an action is not an object")
                    continue
                action = dict(action)
                action["id"] = action.get("id") or new_id()
                if not isinstance(action["id"], str) or not _ACTION_ID.fullmatch(action["id"]):
                    problems.append(f"action id {action['id']!r} is not alphanumeric")
                integration = action.get("integration")
                if not isinstance(integration, dict) or not integration.get("url"):
                    problems.append(f"action {action['id']!r} has no integration.url")
                actions.append(action)
            if "actions" in attachment:
                attachment["actions"] = actions
            stored.append(attachment)
        props["attachments"] = stored
        if problems:
            self.warnings.append("Post actions are invalid: " + "; ".join(problems))
            if self.strict_actions:
                raise MattermostError(
                    400,
                    "model.post.is_valid.actions.app_error",
                    "Invalid message actions (the stand-in's strict_actions; a real server "
                    "stores buttons that can never be clicked).",
                    "; ".join(problems),
                )
        return props

    def _edit_post(
        self,
        post: JSON,
        message: str | None,
        props: Mapping[str, Any] | None,
        is_pinned: object,
    ) -> JSON:
        """Change a stored post as ``UpdatePost`` does: what is given replaces what was
        (the reserved ``from_bot``/``from_webhook`` props kept), ``edit_at`` and
        ``update_at`` now; ``post_edited`` to the channel's websockets."""
        now = millis()
        if message is not None:
            post["message"] = message
            post["hashtags"] = _hashtags(message)
            post["edit_at"] = now
        if props is not None:
            reserved = {k: v for k, v in post["props"].items() if k in ("from_bot", "from_webhook")}
            post["props"] = {**dict(props), **reserved}
        if isinstance(is_pinned, bool):
            post["is_pinned"] = is_pinned
        post["update_at"] = now
        channel = self._channels[post["channel_id"]]
        for conn in self._connections:
            if conn.user_id is not None and conn.user_id in channel.members:
                self._send_event(
                    conn, "post_edited", {"post": _dumps(post)}, {"channel_id": channel.id}
                )
        return dict(post)

    def _broadcast_posted(
        self, post: JSON, sender: _User, channel: _Channel, set_online: bool
    ) -> None:
        data: JSON = {
            "channel_display_name": (
                "@" + sender.username if channel.type == "D" else channel.display_name
            ),
            "channel_name": channel.name,
            "channel_type": channel.type,
            "post": _dumps(post),
            "sender_name": "@" + sender.username,
            "set_online": set_online,
            "team_id": channel.team_id,
        }
        mentions = self._mentioned(post["message"], sender, channel)
        if mentions:
            data["mentions"] = _dumps(mentions)
        for conn in self._connections:
            if conn.user_id is not None and conn.user_id in channel.members:
                self._send_event(conn, "posted", data, {"channel_id": channel.id})

    def _mentioned(self, message: str, sender: _User, channel: _Channel) -> list[str]:
        """The members a post notifies: the other side of a DM, @-mentioned members."""
        others = [uid for uid in channel.members if uid != sender.id]
        if channel.type == "D":
            return others
        names = {m.lower().rstrip(".-_:") for m in _AT_MENTION.findall(message)}
        if names & {"channel", "all", "here"}:
            return others
        return [uid for uid in others if self._users[uid].username in names]

    def _send_ephemeral(
        self,
        target_id: str,
        *,
        sender_id: str,
        channel_id: str,
        message: str,
        props: Mapping[str, Any] | None = None,
        root_id: str = "",
    ) -> JSON:
        now = millis()
        post: JSON = {
            "id": new_id(),
            "create_at": now,
            "update_at": now,
            "edit_at": 0,
            "delete_at": 0,
            "is_pinned": False,
            "user_id": sender_id,
            "channel_id": channel_id,
            "root_id": root_id,
            "original_id": "",
            "message": message,
            "type": "system_ephemeral",
            "props": dict(props or {}),
            "hashtags": "",
            "pending_post_id": "",
            "reply_count": 0,
            "metadata": {},
        }
        target = self._users.get(target_id)
        self.ephemeral_posts.append(
            {
                "user_id": target_id,
                "username": target.username if target else None,
                "channel_id": channel_id,
                "message": message,
                "post": post,
            }
        )
        self._publish_to_user(
            target_id,
            "ephemeral_message",
            {"post": _dumps(post)},
            {"user_id": target_id, "channel_id": channel_id},
        )
        return dict(post)

    def _handle_command_response(
        self, command: _Command, user: _User, channel: _Channel, root_id: str, response: JSON
    ) -> list[str]:
        """``HandleCommandResponse``: the response, then each of its ``extra_responses``."""
        for extra in response.get("extra_responses") or []:
            if isinstance(extra, dict) and (
                extra.get("goto_location") or extra.get("extra_responses")
            ):
                self.warnings.append(
                    "Command response is not valid: an extra response may not carry "
                    "goto_location or extra_responses"
                )
        errors = []
        for one in [response, *(response.get("extra_responses") or [])]:
            if isinstance(one, dict):
                error = self._command_response_post(user, channel, root_id, one)
                if error:
                    errors.append(error)
        return errors

    def _command_response_post(
        self, user: _User, channel: _Channel, root_id: str, response: JSON
    ) -> str | None:
        """``HandleCommandResponsePost`` + ``CreateCommandPost``: an error id, or None."""
        target = channel
        channel_id = response.get("channel_id")
        if channel_id:
            found = self._channels.get(str(channel_id))
            if found is None or user.id not in found.members:
                return "api.command.command_post.forbidden.app_error"
            target = found
        props = dict(response.get("props") or {})
        props["from_webhook"] = "true"  # not a built-in command: a "bot" post
        text = str(response.get("text") or "")
        attachments = response.get("attachments")
        if not response.get("skip_slack_parsing"):
            text = _slack_to_markdown(text, self)
        post_type = str(response.get("type") or "")
        if post_type.startswith("system_"):
            return "api.context.invalid_param.app_error"
        if attachments:
            props["attachments"] = attachments
        kind = response.get("response_type") or ""
        if len(text) > self.max_post_runes and (
            kind == "in_channel" or self.strict_ephemeral_length
        ):
            return "model.post.is_valid.msg.app_error"
        if kind == "in_channel":
            if post_type and not post_type.startswith(_CUSTOM_POST_TYPE):
                return "model.post.is_valid.type.app_error"
            self._create_post(user, target, text, root_id=root_id, props=props, post_type=post_type)
        elif kind in ("", "ephemeral") and (text or attachments is not None):
            self._send_ephemeral(
                user.id,
                sender_id=user.id,
                channel_id=target.id,
                message=text,
                props=props,
                root_id=root_id,
            )
        return None

    # --- internals: commands and trigger ids --------------------------------------------

    def _create_command(self, body: Mapping[str, Any], creator: _User) -> _Command:
        now = millis()
        command = _Command(
            id=new_id(),
            token=new_id(),
            create_at=now,
            update_at=now,
            creator_id=creator.id,
            team_id=str(body.get("team_id") or ""),
            trigger=str(body.get("trigger") or "").lower(),
            method=str(body.get("method") or ""),
            url=str(body.get("url") or ""),
            **_command_extras(body),
        )
        self._check_trigger_free(command.team_id, command.trigger)
        _check_command(command)
        self._commands[command.id] = command
        return command

    def _check_trigger_free(self, team_id: str, trigger: str, exclude: str = "") -> None:
        taken = trigger in BUILT_IN_TRIGGERS or any(
            c.team_id == team_id and c.trigger == trigger and c.id != exclude
            for c in self._commands.values()
        )
        if taken:
            raise MattermostError(
                400,
                "api.command.duplicate_trigger.app_error",
                "This trigger word is already in use. Please choose another word.",
            )

    def _trigger_id(
        self,
        user_id: str,
        channel: _Channel | None,
        *,
        team_id: str | None = None,
        issued: float | None = None,
    ) -> tuple[str, str]:
        """(client trigger id, trigger id): ``base64("client:user:millis:" + signature)``.

        The signature is an HMAC of the stand-in's own key; the channel and team travel
        in the stand-in's memory, keyed by the client id.
        """
        client_id = new_id()
        stamp = int((issued if issued is not None else time.time()) * 1000)
        data = f"{client_id}:{user_id}:{stamp}:"
        signature = base64.b64encode(
            hmac.new(self._signing_key, data.encode(), hashlib.sha256).digest()
        ).decode()
        self._trigger_contexts[client_id] = {
            "channel_id": channel.id if channel else "",
            "team_id": team_id if team_id is not None else (channel.team_id if channel else ""),
        }
        return client_id, base64.b64encode((data + signature).encode()).decode()

    def _verify_trigger_id(self, trigger_id: object) -> tuple[str, str, dict[str, str]]:
        """``DecodeAndVerifyTriggerId``: (client id, user id, context) or its 400s."""
        try:
            decoded = base64.b64decode(str(trigger_id or ""), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise MattermostError(
                400,
                "interactive_message.decode_trigger_id.base64_decode_failed",
                "Failed to decode base64 for trigger ID for interactive dialog.",
            ) from None
        parts = decoded.split(":")
        if len(parts) != 4:
            raise MattermostError(
                400,
                "interactive_message.decode_trigger_id.missing_data",
                "Trigger ID missing required data for interactive dialog.",
            )
        client_id, user_id, stamp, signature = parts
        issued = int(stamp) / 1000 if stamp.isdigit() else 0.0
        if time.time() - issued > self.trigger_id_ttl:
            raise MattermostError(
                400,
                "interactive_message.decode_trigger_id.expired",
                "Trigger ID for interactive dialog is expired. Trigger IDs live for a maximum "
                f"of {self.trigger_id_ttl:g}s.",
            )
        expected = base64.b64encode(
            hmac.new(
                self._signing_key, f"{client_id}:{user_id}:{stamp}:".encode(), hashlib.sha256
            ).digest()
        ).decode()
        if not hmac.compare_digest(expected, signature):
            raise MattermostError(
                400,
                "interactive_message.decode_trigger_id.verify_signature_failed",
                "Signature verification failed of trigger ID for interactive dialog.",
            )
        return client_id, user_id, self._trigger_contexts.get(client_id, {})

    def _mention_fields(self, message: str, team: _Team) -> list[tuple[str, str]]:
        """``user_mentions``/``_ids`` and ``channel_mentions``/``_ids``, when present."""
        users: dict[str, str] = {}
        for raw in _AT_MENTION.findall(message):
            name = raw.lower()
            while name:
                found = self._by_username(name)
                if found is not None:
                    users.setdefault(name, found.id)
                    break
                if name[-1] not in ".-_":
                    break
                name = name[:-1]
        channels: dict[str, str] = {}
        for name in _CHANNEL_MENTION.findall(message):
            chan = self._channel_by_name(team, name)
            if chan is not None and chan.type == "O":
                channels.setdefault(name, chan.id)
        fields: list[tuple[str, str]] = []
        for key, mentioned in (("user_mentions", users), ("channel_mentions", channels)):
            for name, found_id in mentioned.items():
                fields += [(key, name), (key + "_ids", found_id)]
        return fields

    # --- internals: lookups and permissions ---------------------------------------------

    def _require_bot(self) -> str:
        if self._bot_id is None:
            raise KeyError("this stand-in was created without a bot: name a creator")
        return self._bot_id

    def _by_username(self, username: str) -> _User | None:
        return next((u for u in self._users.values() if u.username == username), None)

    def _user(self, username_or_id: str) -> _User:
        user = self._users.get(username_or_id) or self._by_username(username_or_id.lower())
        if user is None:
            raise KeyError(f"no user {username_or_id!r}")
        return user

    def _team(self, name_or_id: str) -> _Team | None:
        if name_or_id in self._teams:
            return self._teams[name_or_id]
        return next((t for t in self._teams.values() if t.name == name_or_id.lower()), None)

    def _team_or_404(self, name: str) -> _Team:
        team = next((t for t in self._teams.values() if t.name == name.lower()), None)
        if team is None:
            raise MattermostError(
                404, "app.team.get_by_name.missing.app_error", "Unable to find the existing team."
            )
        return team

    def _channel(self, channel_id: str) -> _Channel:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise KeyError(f"no channel {channel_id!r}")
        return channel

    def _channel_by_name(self, team: _Team, name: str) -> _Channel | None:
        return next(
            (c for c in self._channels.values() if c.team_id == team.id and c.name == name.lower()),
            None,
        )

    def _resolve_channel(self, channel: str, team: str | None) -> _Channel:
        if channel in self._channels:
            return self._channels[channel]
        teams = [self._team(team)] if team else list(self._teams.values())
        found = [c for t in teams if t for c in [self._channel_by_name(t, channel)] if c]
        if len(found) != 1:
            raise KeyError(f"no single channel {channel!r}; give its id or its team")
        return found[0]

    def _command_or_404(self, command_id: str) -> _Command:
        command = self._commands.get(command_id)
        if command is None:
            raise MattermostError(
                404,
                "store.sql_command.get.missing.app_error",
                "Unable to find the command.",
            )
        return command

    def _direct(self, a: _User, b: _User) -> _Channel:
        first, second = sorted((a.id, b.id))
        name = f"{first}__{second}"
        existing = next(
            (c for c in self._channels.values() if c.type == "D" and c.name == name), None
        )
        if existing is not None:
            return existing
        channel = _Channel(new_id(), "", name, "", "D", a.id, millis())
        channel.members = list(dict.fromkeys([a.id, b.id]))
        self._channels[channel.id] = channel
        return channel

    def _may_post(self, user: _User, channel: _Channel) -> bool:
        if user.id in channel.members or user.has_role("system_admin"):
            return True
        if user.has_role("system_post_all"):
            return True
        return channel.type == "O" and user.has_role("system_post_all_public")

    def _may_read(self, user: _User, channel: _Channel) -> bool:
        return channel.type == "O" or user.id in channel.members or user.has_role("system_admin")

    # --- internals: JSON -----------------------------------------------------------------

    def _user_json(self, user: _User) -> JSON:
        data: JSON = {
            "id": user.id,
            "create_at": user.create_at,
            "update_at": user.create_at,
            "delete_at": 0,
            "username": user.username,
            "auth_data": "",
            "auth_service": "",
            "email": user.email,
            "email_verified": True,
            "nickname": user.nickname,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "position": "",
            "roles": user.roles,
            "notify_props": {
                "channel": "true",
                "comments": "never",
                "desktop": "mention",
                "email": "true",
                "first_name": "false",
                "mention_keys": "",
                "push": "mention",
            },
            "last_password_update": user.create_at,
            "locale": user.locale,
            "timezone": dict(user.timezone),
            "disable_welcome_email": False,
        }
        if user.is_bot:  # Go's omitempty: people carry no is_bot at all
            data["is_bot"] = True
            data["bot_description"] = user.bot_description
        return data

    def _team_json(self, team: _Team) -> JSON:
        return {
            "id": team.id,
            "create_at": team.create_at,
            "update_at": team.create_at,
            "delete_at": 0,
            "display_name": team.display_name,
            "name": team.name,
            "description": "",
            "email": "",
            "type": "O",
            "company_name": "",
            "allowed_domains": "",
            "invite_id": team.invite_id,
            "allow_open_invite": False,
            "scheme_id": None,
            "group_constrained": None,
            "policy_id": None,
            "cloud_limits_archived": False,
        }

    def _channel_json(self, channel: _Channel) -> JSON:
        return {
            "id": channel.id,
            "create_at": channel.create_at,
            "update_at": channel.create_at,
            "delete_at": 0,
            "team_id": channel.team_id,
            "type": channel.type,
            "display_name": channel.display_name,
            "name": channel.name,
            "header": "",
            "purpose": "",
            "last_post_at": channel.last_post_at,
            "total_msg_count": channel.total_msg_count,
            "extra_update_at": 0,
            "creator_id": channel.creator_id,
            "scheme_id": None,
            "props": None,
            "group_constrained": None,
            "shared": None,
            "total_msg_count_root": channel.total_msg_count_root,
            "policy_id": None,
            "last_root_post_at": channel.last_root_post_at,
        }

    def _command_json(self, command: _Command, *, sanitized: bool = False) -> JSON:
        data: JSON = {
            "id": command.id,
            "token": command.token,
            "create_at": command.create_at,
            "update_at": command.update_at,
            "delete_at": command.delete_at,
            "creator_id": command.creator_id,
            "team_id": command.team_id,
            "trigger": command.trigger,
            "method": command.method,
            "username": command.username,
            "icon_url": command.icon_url,
            "auto_complete": command.auto_complete,
            "auto_complete_desc": command.auto_complete_desc,
            "auto_complete_hint": command.auto_complete_hint,
            "display_name": command.display_name,
            "description": command.description,
            "url": command.url,
            "plugin_id": "",
        }
        if sanitized:  # Command.Sanitize()
            data.update(token="", creator_id="", method="", url="", username="", icon_url="")
        return data

    def _hook_json(self, hook: _IncomingHook) -> JSON:
        return {
            "id": hook.id,
            "create_at": hook.create_at,
            "update_at": hook.create_at,
            "delete_at": 0,
            "user_id": hook.user_id,
            "channel_id": hook.channel_id,
            "team_id": hook.team_id,
            "display_name": hook.display_name,
            "description": hook.description,
            "username": "",
            "icon_url": "",
            "channel_locked": False,
        }


# --- helpers -------------------------------------------------------------------------------


def _ok_text() -> web.Response:
    """What the hooks answer: 200 ``text/plain`` ``ok``."""
    return web.Response(text="ok", content_type="text/plain")


async def _json_body(request: web.Request, name: str) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except ValueError as e:
        raise _invalid_body_param(name, str(e)) from None


async def _json_object(request: web.Request, name: str) -> JSON:
    data = await _json_body(request, name)
    if not isinstance(data, dict):
        raise _invalid_body_param(name)
    return data


async def _webhook_payload(request: web.Request) -> JSON:
    """An incoming webhook's payload: a JSON body, a ``payload=`` form field, or a form."""
    media_type = request.content_type
    try:
        if media_type == "application/x-www-form-urlencoded":
            form = await request.post()
            data = json.loads(str(form.get("payload") or "null"))
        elif media_type == "multipart/form-data":
            data = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        else:
            data = json.loads(await request.read() or b"null")
    except ValueError as e:
        raise MattermostError(
            400, "api.webhook.incoming.error", "Could not decode the multipart data.", str(e)
        ) from None
    if not isinstance(data, dict):
        raise MattermostError(
            400, "model.incoming_hook.parse_data.app_error", "Unable to parse incoming data."
        )
    return data


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    """A numeric query parameter; one that is not a number counts as absent, as the
    server's ``strconv.Atoi`` fallbacks do."""
    try:
        return int(query.get(name, ""))
    except ValueError:
        return default


def _split_command(text_line: str) -> tuple[str, str, str]:
    """``"/roulette pick !12"`` -> ``("/roulette", " ", "pick !12")`` (first whitespace)."""
    match = re.search(r"\s", text_line)
    if match is None:
        return text_line, "", ""
    return text_line[: match.start()], match.group(), text_line[match.end() :]


def _command_response(content_type: str, body: str) -> JSON | None:
    """``CommandResponseFromHTTPBody``: JSON for ``application/json`` (parameters ignored),
    anything else is plain text. ``None`` for a JSON ``null``."""
    if content_type.split(";")[0].strip() == "application/json":
        data = json.loads(body)
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ValueError("a command response must be a JSON object")
        return data
    return {"text": body}


def _command_response_json(response: Mapping[str, Any]) -> JSON:
    """A CommandResponse with every field, as the server marshals it to the client."""
    return {
        "response_type": response.get("response_type") or "",
        "text": response.get("text") or "",
        "username": response.get("username") or "",
        "channel_id": response.get("channel_id") or "",
        "icon_url": response.get("icon_url") or "",
        "type": response.get("type") or "",
        "props": response.get("props"),
        "goto_location": response.get("goto_location") or "",
        "trigger_id": "",
        "skip_slack_parsing": bool(response.get("skip_slack_parsing")),
        "attachments": response.get("attachments"),
        "extra_responses": response.get("extra_responses"),
    }


def _command_extras(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "username": str(body.get("username") or ""),
        "icon_url": str(body.get("icon_url") or ""),
        "auto_complete": bool(body.get("auto_complete")),
        "auto_complete_desc": str(body.get("auto_complete_desc") or ""),
        "auto_complete_hint": str(body.get("auto_complete_hint") or ""),
        "display_name": str(body.get("display_name") or ""),
        "description": str(body.get("description") or ""),
    }


def _check_command(command: _Command) -> None:
    """``Command.IsValid`` for what a client controls."""

    def invalid(what: str, message: str) -> MattermostError:
        return MattermostError(400, f"model.command.is_valid.{what}.app_error", message)

    if not is_valid_id(command.team_id):
        raise invalid("team_id", "Invalid team ID.")
    trigger = command.trigger
    if not 1 <= len(trigger) <= 128 or trigger.startswith("/") or " " in trigger:
        raise invalid("trigger", "Invalid trigger.")
    if not command.url or len(command.url) > 1024:
        raise invalid("url", "Invalid URL.")
    parts = urlsplit(command.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid(
            "url_http", "Invalid URL. Must be a valid URL and start with http:// or https://."
        )
    if command.method not in ("P", "G"):
        raise invalid("method", "Invalid method.")
    if len(command.display_name) > 64:
        raise invalid("display_name", "Invalid title.")
    if len(command.description) > 128:
        raise invalid("description", "Invalid description.")


def _dialog_problems(trigger_id: str, url: str, dialog: Mapping[str, Any]) -> list[str]:
    """``OpenDialogRequest.IsValid``, message for message."""
    problems: list[str] = []
    if not url:
        problems.append("empty URL")
    if not trigger_id:
        problems.append("empty trigger id")
    title = str(dialog.get("title") or "")
    if not title or len(title) > DIALOG_TITLE_MAX:
        problems.append(f"invalid dialog title {title!r}")
    icon_url = str(dialog.get("icon_url") or "")
    if icon_url and urlsplit(icon_url).scheme not in ("http", "https"):
        problems.append("invalid icon url")
    seen: set[str] = set()
    for element in dialog.get("elements") or []:
        if not isinstance(element, dict):
            problems.append("a dialog element is not an object")
            continue
        name = str(element.get("name") or "")
        if name in seen:
            problems.append(f"duplicate dialog element {name!r}")
        seen.add(name)
        problems += [f"{name!r} field is not valid: {p}" for p in _element_problems(element)]
    return problems


def _element_problems(e: Mapping[str, Any]) -> list[str]:
    """``DialogElement.IsValid``."""
    problems: list[str] = []

    def text(key: str) -> str:
        return str(e.get(key) or "")

    def too_long(label: str, value: str, limit: int) -> None:
        if label in ("DisplayName", "Name") and not value:
            problems.append(f"{label} cannot be empty")
        if len(value) > limit:
            problems.append(f"{label} cannot be longer than {limit} characters, got {len(value)}")

    min_length, max_length = int(e.get("min_length") or 0), int(e.get("max_length") or 0)
    if min_length < 0:
        problems.append(f"min length cannot be a negative number, got {min_length}")
    if min_length > max_length:
        problems.append(
            f"min length should be less then max length, got {min_length} > {max_length}"
        )
    too_long("DisplayName", text("display_name"), DIALOG_ELEMENT_DISPLAY_NAME_MAX)
    too_long("Name", text("name"), DIALOG_ELEMENT_NAME_MAX)
    too_long("HelpText", text("help_text"), DIALOG_ELEMENT_HELP_TEXT_MAX)
    kind = text("type")
    if e.get("multiselect") and kind != "select":
        problems.append(f"multiselect can only be used with select elements, got type {kind!r}")
    values = [str(o.get("value")) for o in e.get("options") or [] if isinstance(o, dict)]
    default = text("default")
    if kind in ("text", "textarea"):
        limit = DIALOG_ELEMENT_TEXT_MAX if kind == "text" else DIALOG_ELEMENT_TEXTAREA_MAX
        too_long("Default", default, limit)
        too_long("Placeholder", text("placeholder"), limit)
        if text("subtype") not in _TEXT_SUBTYPES:
            problems.append(f"invalid subtype {kind!r}")
    elif kind == "select":
        too_long("Default", default, DIALOG_ELEMENT_SELECT_MAX)
        too_long("Placeholder", text("placeholder"), DIALOG_ELEMENT_SELECT_MAX)
        source = text("data_source")
        if source not in ("", "users", "channels", "dynamic"):
            problems.append(
                f"invalid data source {source!r}, allowed are 'users', 'channels', or 'dynamic'"
            )
        if source == "dynamic":
            if not text("data_source_url"):
                problems.append("dynamic data_source requires data_source_url")
            if values:
                problems.append("dynamic select element should not have static options")
        elif source == "":
            wanted = (
                [v for v in default.replace(" ", "").split(",") if v]
                if e.get("multiselect")
                else [default]
            )
            if any(v and v not in values for v in wanted):
                problems.append(f"default value {default!r} doesn't exist in options ")
    elif kind == "bool":
        if default not in ("", "true", "false"):
            problems.append("invalid default of bool")
        too_long("Placeholder", text("placeholder"), DIALOG_ELEMENT_BOOL_MAX)
    elif kind == "radio":
        if default and default not in values:
            problems.append(f"default value {default!r} doesn't exist in options ")
    elif kind in ("date", "datetime"):
        too_long("Default", default, DIALOG_ELEMENT_TEXT_MAX)
        too_long("Placeholder", text("placeholder"), DIALOG_ELEMENT_TEXT_MAX)
        for key in ("default", "min_date", "max_date"):
            value = text(key)
            if value and not _valid_date(value, datetime=kind == "datetime" and key == "default"):
                problems.append(f"invalid date format: {value!r}")
        if kind == "datetime":
            interval = int(e.get("time_interval") or 0)
            if interval == 0:
                problems.append("time_interval of 0 will be reset to default, 60 minutes")
            elif not 1 <= interval <= 1440 or 1440 % interval:
                problems.append(f"time_interval must be a divisor of 1440, got {interval}")
    else:
        problems.append(f"invalid element type: {kind!r}")
    return problems


def _valid_date(value: str, *, datetime: bool) -> bool:
    if value in ("today", "tomorrow", "yesterday") or _RELATIVE_DATE.fullmatch(value):
        return True
    if datetime:
        return _ISO_DATETIME.fullmatch(value) is not None
    return _ISO_DATE.fullmatch(value) is not None or _ISO_DATETIME.fullmatch(value) is not None


def _submit_response_problem(answer: Mapping[str, Any]) -> str | None:
    """``SubmitDialogResponse.IsValid``: what makes the server refuse the answer."""
    if answer.get("error") or answer.get("errors"):
        return None
    kind = answer.get("type") or ""
    if kind in ("", "ok", "navigate"):
        return f"form field must be nil for type {kind!r}" if answer.get("form") else None
    if kind == "form":
        return None if isinstance(answer.get("form"), dict) else "form field is required"
    return f"invalid type {kind!r}, must be one of: empty, ok, form, navigate"


def _hashtags(message: str) -> str:
    """``ParseHashtags``, near enough: ``#word`` tokens, space separated."""
    tags = []
    for word in message.split():
        word = word.rstrip(".,!?;:)")
        if _HASHTAG.fullmatch(word) and word not in tags:
            tags.append(word)
    return " ".join(tags)


def _slack_to_markdown(text: str, standin: MattermostStandIn) -> str:
    """``ProcessSlackText`` and ``ParseSlackLinksToMarkdown``: ``<url|text>`` becomes
    ``[text](url)``, ``<@userid>`` ``@username``, ``<!channel>`` ``@channel``."""

    def user(match: re.Match[str]) -> str:
        found = standin._users.get(match.group(1))
        return "@" + found.username if found else match.group(0)

    for name in ("channel", "here", "all"):
        text = text.replace(f"<!{name}>", f"@{name}")
    text = _SLACK_USER.sub(user, text)
    text = _SLACK_LINK.sub(r"[\2](\1)", text)
    return _SLACK_BARE_LINK.sub(r"\1", text)


def _take(rules: list[_Rule], method: str, path: str) -> _Rule | None:
    for rule in rules:
        if rule.method not in (None, method):
            continue
        if rule.remaining > 0 and rule.pattern.search(path):
            rule.remaining -= 1
            return rule
    return None


def driver_options(base_url: str, token: str, **extra: Any) -> JSON:
    """mattermostautodriver options for a stand-in served at ``base_url``.

    The driver builds ``{scheme}://{url}:{port}`` + ``/api/v4/...`` itself (no path prefix
    is possible: ``basepath`` is ignored), and ``port`` must be an int.
    """
    parts = urlsplit(base_url)
    if parts.path.strip("/"):
        raise ValueError("mattermostautodriver cannot reach a Mattermost under a path prefix")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {
        "url": parts.hostname,
        "port": port,
        "scheme": parts.scheme,
        "token": token,
        **extra,
    }


@contextlib.asynccontextmanager
async def serve(
    standin: MattermostStandIn, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the stand-in on ``host`` (a free port by default); yields its site URL."""
    async with listening(standin.app(), host, port) as bound:
        standin.site_url = f"http://{host}:{bound}"
        yield standin.site_url
