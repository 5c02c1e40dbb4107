"""The demo's world: the sample organisation, the stand-ins shaped after it, the bot's
settings (from nothing but this module), its port, and what a person can see.

Everything the story reads, it reads as a user would: Mattermost posts and GitLab
notes through the stand-ins, and the bot's own record of a review (``mr_reviews``,
``reviewer_assignments``) the way the dashboard shows it.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast, overload

from aiohttp import web
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from sqlalchemy import select

from bot.context import AppContext
from bot.errors import CommandFailed, socket_reason
from bot.http import CONTEXT
from bot.models import MrReview, ReviewerAssignment, User, WebhookDelivery
from bot.plugins import builtin_areas
from bot.sandbox.gitlab import GitLabStandIn
from bot.sandbox.mattermost import MattermostStandIn
from bot.sandbox.webhooks import WebhookSender
from bot.settings import Settings, settings_model

T = TypeVar("T")
JSON = dict[str, Any]

HOST = "127.0.0.1"
TEAM = "acme"  # the Mattermost team
PROJECT = "acme/shop"  # the GitLab project
TOWN_SQUARE = "town-square"


@dataclass(frozen=True)
class Person:
    """One member of the sample organisation: the same username in GitLab and
    Mattermost, a team, a role (``maintainer``, ``reviewer``, ``trainee``)."""

    username: str
    name: str
    team: str
    role: str = "reviewer"


TEAMS = ("backend", "frontend", "platform")
PEOPLE = (
    Person("alice", "Alice Martin", "backend", "maintainer"),
    Person("bob", "Bob Nguyen", "backend"),
    Person("carol", "Carol Diaz", "backend"),
    Person("grace", "Grace Okafor", "backend", "trainee"),
    Person("dave", "Dave Kim", "frontend", "maintainer"),
    Person("erin", "Erin Rossi", "frontend"),
    Person("heidi", "Heidi Larsen", "frontend"),
    Person("frank", "Frank Moreau", "platform", "maintainer"),
    Person("ivan", "Ivan Petrov", "platform"),
    Person("judy", "Judy Chen", "platform"),
)

# GitLab statuses, as people set them in GitLab (the roulette reads them).
STATUSES: dict[str, dict[str, Any]] = {
    "frank": {"availability": "busy", "emoji": "pager", "message": "On call"},
}

# Sections as GitLab reads them: each section's owners must review (the optional ^[Docs]
# section only when nobody else covers it); the line above them is everyone's default.
CODEOWNERS = """\
# Whatever no section claims: the platform team
* @acme/platform

[Backend]
/api/ @bob @carol
*.sql @alice

[Frontend]
/web/ @acme/frontend

^[Docs]
*.md @dave
"""


def organisation() -> dict[str, Any]:
    """The organisation's part of the settings: ``teams`` (each with its Mattermost
    channel and GitLab label) and ``users``."""
    return {
        "teams": [{"name": team, "labels": [f"team::{team}"], "channel": team} for team in TEAMS],
        "users": [
            {"gitlab": p.username, "team": p.team, "role": p.role, "timezone": "UTC"}
            for p in PEOPLE
        ],
    }


def shape_gitlab(gitlab: GitLabStandIn) -> None:
    """The people, one GitLab group per team, and the project with its CODEOWNERS."""
    for person in PEOPLE:
        gitlab.add_user(person.username, name=person.name, status=STATUSES.get(person.username))
    for team in TEAMS:
        gitlab.add_group(f"acme/{team}", [p.username for p in PEOPLE if p.team == team])
    levels = {"maintainer": 40, "reviewer": 30, "trainee": 30}
    gitlab.add_project(
        PROJECT,
        members={p.username: levels[p.role] for p in PEOPLE},
        files={"main": {".gitlab/CODEOWNERS": CODEOWNERS}},
    )


def shape_mattermost(mattermost: MattermostStandIn) -> None:
    """The people, the team (its town square for everyone) and one channel per team;
    the bot is a member of every channel, as an administrator would add it."""
    bot = str(mattermost.bot["username"])
    for person in PEOPLE:
        first, _, last = person.name.partition(" ")
        mattermost.add_user(person.username, first_name=first, last_name=last, timezone="UTC")
    mattermost.add_team(TEAM, "Acme", members=[bot, *(p.username for p in PEOPLE)])
    for team in TEAMS:
        members = [bot, *(p.username for p in PEOPLE if p.team == team)]
        mattermost.add_channel(TEAM, team, members=members)


# --------------------------------------------------------------------------- settings


def _values_only(
    cls: type[BaseSettings],
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
    dotenv_settings: PydanticBaseSettingsSource,
    file_secret_settings: PydanticBaseSettingsSource,
) -> tuple[PydanticBaseSettingsSource, ...]:
    return (init_settings,)


def demo_settings(values: Mapping[str, Any]) -> Settings:
    """Settings from ``values`` alone, with the built-in feature areas: unlike
    ``load_settings``, no environment variable and no configuration file is read, so a
    user's ``DATABASE_URL`` or ``GITLAB_URL`` cannot reach the demo. Raises pydantic's
    ``ValidationError`` for a bad value (a bug of the demo, not the user's)."""
    areas = builtin_areas()
    base = settings_model(areas)
    namespace = {"__module__": __name__, "settings_customise_sources": classmethod(_values_only)}
    model = cast(type[Settings], type("DemoSettings", (base,), namespace))
    return model(**{"plugins": areas, **values})


def listen_socket(preferred: int, host: str = HOST) -> tuple[socket.socket, str | None]:
    """A TCP socket listening on ``host:preferred`` (0: any free port), else on a free
    port; and, when the preferred port could not be had, why, as the rest of a sentence
    starting "port 8080 ...": ``is in use``, ``cannot be used (Permission denied)``.

    The socket is bound here, not probed and released: no other process can take the
    port between the choice and the server starting on it (``aiohttp.web.SockSite``).
    Raises ``CommandFailed`` when not even a free port can be listened on.
    """
    reason: str | None = None
    for port in dict.fromkeys((preferred, 0)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Like every server: a connection of an earlier run in TIME_WAIT does not hold
        # the port; a socket listening on it still does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)
        except OSError as e:
            sock.close()
            if port == 0:
                raise CommandFailed(f"cannot listen on {host}: {socket_reason(e)}") from e
            in_use = e.errno == errno.EADDRINUSE
            reason = "is in use" if in_use else f"cannot be used ({socket_reason(e)})"
            continue
        sock.setblocking(False)
        return sock, reason
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


# --------------------------------------------------------------------------- waiting


class StepTimedOut(CommandFailed):
    """Something the story waits for did not happen in time (one line says what)."""


@overload
async def until(
    what: str, condition: Callable[[], Awaitable[T]], within: float, *, interval: float = ...
) -> T: ...
@overload
async def until(
    what: str, condition: Callable[[], T], within: float, *, interval: float = ...
) -> T: ...
async def until(
    what: str,
    condition: Callable[[], Any],
    within: float,
    *,
    interval: float = 0.02,
) -> Any:
    """Wait until ``condition()`` (sync or async) returns something truthy, and return
    it; checked every ``interval`` seconds. Raises ``StepTimedOut`` naming ``what``
    after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise StepTimedOut(f"{what}: not within {within:g} s")
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- seeing


_LINK = re.compile(r"\[((?:[^\[\]\\]|\\.)*)\]\(([^)\s]+)\)")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_FOLDED = re.compile(r"<details>\s*<summary>(.*?)</summary>.*?</details>", re.DOTALL)


def as_seen(markdown: str) -> str:
    """A message as a reader sees it rendered: links as their text, hidden HTML
    comments (the bot's markers) gone, a folded ``<details>`` block as its summary line
    (``▸ Why these reviewers``), no blank lines around it."""
    text = _COMMENT.sub("", markdown)
    text = _FOLDED.sub(lambda m: f"▸ {m.group(1)}", text)
    text = _LINK.sub(lambda m: re.sub(r"\\(.)", r"\1", m.group(1)), text)
    return text.strip("\n")


@dataclass
class World:
    """The running stand-ins and bot, and what their users can see."""

    gitlab: GitLabStandIn
    mattermost: MattermostStandIn
    hook: WebhookSender  # the project's webhook, pointing at the bot
    app: web.Application
    url: str  # the bot's, and its dashboard's

    @property
    def context(self) -> AppContext:
        return self.app[CONTEXT]

    @property
    def bot(self) -> str:
        return str(self.mattermost.bot["username"])

    def mr_url(self, iid: int) -> str:
        return f"{self.gitlab.base_url}/{PROJECT}/-/merge_requests/{iid}"

    # ---- Mattermost

    def channel_posts(self, channel: str) -> list[JSON]:
        """Every post of a team channel, oldest first."""
        return self.mattermost.posts_in(self.mattermost.channel(TEAM, channel)["id"])

    def dms(self, username: str) -> list[JSON]:
        """The bot's posts in its direct channel with ``username``, oldest first."""
        channel = self.mattermost.direct_channel(self.bot, username)
        bot_id = self.mattermost.bot["id"]
        return [p for p in self.mattermost.posts_in(channel["id"]) if p["user_id"] == bot_id]

    def now(self, post: Mapping[str, Any]) -> JSON:
        """``post`` as it is now (its buttons answered, its message edited)."""
        found = self.mattermost.posts_in(str(post["channel_id"]))
        return next(p for p in found if p["id"] == post["id"])

    # ---- GitLab

    def reviewers(self, iid: int) -> list[str]:
        return [r["username"] for r in self.gitlab.merge_request(PROJECT, iid)["reviewers"]]

    def bot_notes(self, iid: int) -> list[JSON]:
        bot = self.gitlab.bot["username"]
        notes = self.gitlab.notes(PROJECT, iid)
        return [n for n in notes if n["author"]["username"] == bot and not n["system"]]

    # ---- the bot's records

    async def deliveries_done(self) -> bool:
        """Every webhook delivery the bot stored is processed; raises ``CommandFailed``
        when one was given up (dead-lettered)."""
        async with self.context.sessions() as session:
            rows = (await session.scalars(select(WebhookDelivery))).all()
        dead = [r for r in rows if r.status == "dead"]
        if dead:
            raise CommandFailed(f"the bot gave up a GitLab webhook: {dead[0].last_error}")
        return bool(rows) and all(r.status == "done" for r in rows)

    async def review(self, iid: int) -> MrReview | None:
        async with self.context.sessions() as session:
            return cast(
                MrReview | None,
                await session.scalar(
                    select(MrReview).where(MrReview.project_path == PROJECT, MrReview.mr_iid == iid)
                ),
            )

    async def assignments(self, iid: int) -> dict[str, ReviewerAssignment]:
        """The review's assignments by reviewer (GitLab username)."""
        async with self.context.sessions() as session:
            rows = await session.execute(
                select(User.gitlab_username, ReviewerAssignment)
                .join(ReviewerAssignment, ReviewerAssignment.user_id == User.id)
                .join(MrReview, MrReview.id == ReviewerAssignment.review_id)
                .where(MrReview.project_path == PROJECT, MrReview.mr_iid == iid)
            )
            return {name: row for name, row in rows.tuples().all()}


def buttons(post: Mapping[str, Any]) -> list[str]:
    """The names of a post's buttons, as shown."""
    attachments: Sequence[Any] = (post.get("props") or {}).get("attachments") or []
    return [
        str(a.get("name") or a.get("id"))
        for attachment in attachments
        if isinstance(attachment, Mapping)
        for a in attachment.get("actions") or []
        if isinstance(a, Mapping)
    ]


def button_id(post: Mapping[str, Any], name: str) -> str:
    """The id of the button labelled ``name`` on ``post`` (what ``click`` takes)."""
    attachments: Sequence[Any] = (post.get("props") or {}).get("attachments") or []
    for attachment in attachments:
        for action in attachment.get("actions") or []:
            if action.get("name") == name:
                return str(action["id"])
    raise KeyError(f"no button {name!r}")
