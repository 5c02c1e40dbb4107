"""A GitLab REST API v4 stand-in: an aiohttp app over a plain in-memory model.

It speaks the documented API for what the bot reads and writes, so the real client
(python-gitlab) talks to it unchanged:

- ``GET /api/v4/projects/:id``, ``.../merge_requests/:iid``, ``.../merge_requests/:iid/diffs``,
  ``.../repository/files/:file_path/raw?ref=``, ``.../members/all``;
- ``PUT .../merge_requests/:iid`` (``reviewer_ids``, ``assignee_ids``, ``title``,
  ``description``, ``labels``/``add_labels``/``remove_labels``, ``state_event``...; JSON,
  form or query; keys GitLab does not declare, such as the ``reviewers`` python-gitlab's
  ``mr.save()`` resends, are ignored);
- ``GET``/``POST .../merge_requests/:iid/notes`` (``sort``, ``order_by``, ``activity_filter``,
  pagination; a POST needs ``body``) and ``GET .../merge_requests/:iid/approvals``;
- ``GET /api/v4/user`` (the token's own user: ``bot_username``, created with the stand-in),
  ``GET /api/v4/users?username=`` / ``?search=``, ``/users/:id_or_username``,
  ``/users/:id_or_username/status``;
- ``GET /api/v4/groups/:id`` and ``/groups/:id/members``.

Changes made through the API or the Python API leave GitLab's system notes ("requested
review from @bob", "approved this merge request", "merged"...), as GitLab does.

Faithful where clients notice: routing on ``request.raw_path`` (``g%2Fsub%2Fp`` stays one
path parameter), ``Content-Type: application/json`` exactly, GitLab's error bodies
(``{"message": "404 Project Not Found"}``; ``{"error": "404 Not Found"}`` for an unknown
route), ``PRIVATE-TOKEN`` or ``Authorization: Bearer`` auth (user status is readable
anonymously; a wrong token is a 401 everywhere), and offset pagination exactly like
GitLab's ``OffsetHeaderBuilder``: ``page``/``per_page`` (default 20, at most 100), the
``X-Page``/``X-Per-Page``/``X-Total``/``X-Total-Pages``/``X-Next-Page``/``X-Prev-Page``
headers and a ``Link`` header (prev, next, first, last) built from the request's own
host, with the route parameters and the query in the link as Rails writes them. It also
answers as the HTTP proxy in front of itself: a request target in absolute form
(``GET http://gitlab.example/api/v4/...``, RFC 9112 section 3.2.2, as a client sends it
to a proxy) is served as its path, so a test can point ``HTTP_PROXY`` at it.

Tests and the demo shape the model through a small Python API (``add_user``,
``add_project``, ``add_merge_request``, ``add_note``, ``approve``, ``set_reviewers``,
``merge``...), inject failures (``fail_next``, before or after the request is carried out)
or slowness (``delay_next``), and read back the ``requests`` log. ``serve(standin)`` runs it on
127.0.0.1 on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import itertools
import json
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from aiohttp import web

from bot.sandbox import listening

__all__ = ["GitLabStandIn", "serve"]

JSON = dict[str, Any]
Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.Response]]

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
DEVELOPER = 30
CREATED_AT = "2026-01-05T09:00:00.000Z"
MAX_NOTE_LENGTH = 1_000_000
#: The token's own user (``bot_username``) has an id apart from those ``add_user`` hands out.
BOT_USER_ID = 90_001
#: ``PUT /merge_requests/:iid`` needs at least one of these (GitLab's ``at_least_one_of``).
MR_UPDATE_PARAMS = (
    "assignee_id",
    "assignee_ids",
    "reviewer_ids",
    "description",
    "labels",
    "add_labels",
    "remove_labels",
    "milestone_id",
    "milestone",
    "remove_source_branch",
    "allow_collaboration",
    "allow_maintainer_to_push",
    "squash",
    "target_branch",
    "title",
    "state_event",
    "discussion_locked",
    "merge_after",
)
_DRAFT_PREFIX = re.compile(r"(?i)\s*(\[draft\]|draft:|\(draft\))\s*")


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``Content-Type: application/json`` exactly: python-gitlab parses nothing else."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _message(status: int, text: str | None = None) -> web.Response:
    """GitLab's error body: ``{"message": "404 Project Not Found"}``."""
    return json_response({"message": f"{status} {text or HTTPStatus(status).phrase}"}, status)


def _invalid(text: str) -> web.Response:
    """A parameter Grape rejected: 400 ``{"error": "body is missing"}``."""
    return json_response({"error": text}, 400)


class _BadParams(Exception):
    """A request's parameters failed GitLab's (Grape's) validation."""


def now() -> str:
    """The current time as GitLab's API writes it: ``2026-01-05T09:00:00.123Z``."""
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class _User:
    id: int
    username: str
    name: str
    state: str
    public_email: str | None
    status: JSON | None = None
    bot: bool = False


@dataclass
class _Note:
    id: int
    author: int
    body: str
    system: bool
    internal: bool
    created_at: str
    updated_at: str


@dataclass
class _Group:
    id: int
    full_path: str
    members: dict[int, int] = field(default_factory=dict)  # user id -> access level


@dataclass
class _MergeRequest:
    id: int
    iid: int
    title: str
    description: str
    author: int
    source_branch: str
    target_branch: str
    state: str
    labels: list[str]
    draft: bool
    reviewers: list[int]
    assignees: list[int]
    diffs: list[JSON]
    approvals_required: int = 0
    approved_by: list[int] = field(default_factory=list)
    notes: list[_Note] = field(default_factory=list)
    created_at: str = CREATED_AT
    updated_at: str = CREATED_AT
    merged_by: int | None = None
    merged_at: str | None = None
    closed_by: int | None = None
    closed_at: str | None = None


@dataclass
class _Project:
    id: int
    full_path: str
    default_branch: str
    members: dict[int, int]
    files: dict[str, dict[str, str]]  # ref -> path -> text
    repository_access: bool
    merge_requests: dict[int, _MergeRequest] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)  # title -> label id


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    remaining: int
    status: int = 0
    seconds: float = 0.0
    retry_after: int | None = None
    after: bool = False
    method: str | None = None
    until: asyncio.Event | None = None  # hold_next: held until this is set


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    anonymous: bool = False


def _target(request: web.Request) -> str:
    """The request target in origin form (``/api/v4/...?...``), also when it came in
    absolute form, as a client sends it to a proxy (RFC 9112, section 3.2.2)."""
    raw = request.raw_path
    if raw.startswith(("http://", "https://")):
        path = raw.split("/", 3)[3] if raw.count("/") >= 3 else ""
        return f"/{path}"
    return raw


class GitLabStandIn:
    """The in-memory GitLab; ``app()`` serves it, the methods below shape it."""

    def __init__(
        self,
        token: str = "test-token",  # noqa: S107 - the stand-in's own throwaway token
        *,
        relative_url_root: str = "",
        bot_username: str = "roulette-bot",
        premium: bool = True,
        latency: float = 0.0,
        jitter: float = 0.0,
    ) -> None:
        """``bot_username`` is the account the token belongs to (``GET /user``, the author
        of notes posted through the API); it is created here, as a bot user with an id of
        its own range so that the ids of users added later do not move. ``premium=False``
        answers ``/approvals`` as GitLab Free does (no ``approvals_required``/``_left``).

        ``latency`` (seconds) is added to every answer, plus a uniform draw from
        ``[0, jitter)``: a real GitLab answers in tens of milliseconds per call, the
        network and the Rails request together. Both can be changed while serving.
        """
        if latency < 0 or jitter < 0:
            raise ValueError("latency and jitter are seconds, zero or more")
        self.token = token
        self.latency = latency
        self.jitter = jitter
        #: (monotonic start, monotonic end, method, raw path with its query) of every
        #: request answered, in order of answer: which calls overlapped, which waited for
        #: another.
        self.timeline: list[tuple[float, float, str, str]] = []
        self.premium = premium
        self.relative_url_root = relative_url_root.rstrip("/")
        #: The URL GitLab believes it lives at (web_url fields); ``serve`` sets it.
        self.base_url = "http://gitlab.test" + self.relative_url_root
        #: (method, raw path with its query) of every request, in order.
        self.requests: list[tuple[str, str]] = []
        #: (method, raw path, parameters as GitLab read them) of every write that got
        #: as far as reading its parameters: what a client really sent.
        self.writes: list[tuple[str, str, dict[str, Any]]] = []
        self._ids = itertools.count(1)
        self._note_ids = itertools.count(1)
        self._label_ids = itertools.count(1)
        self._users: dict[int, _User] = {}
        self._groups: dict[str, _Group] = {}  # by lower-cased full path
        self._projects: dict[str, _Project] = {}  # by lower-cased full path
        self._failures: list[_Rule] = []
        self._delays: list[_Rule] = []
        bot = _User(
            BOT_USER_ID, bot_username, bot_username.replace("-", " ").title(), "active", None
        )
        bot.bot = True
        self._users[bot.id] = bot
        self._bot_id = bot.id
        api = re.escape(self.relative_url_root) + "/api/v4"
        project = api + r"/projects/(?P<id>[^/]+)"
        mr = project + r"/merge_requests/(?P<merge_request_iid>[0-9]+)"
        self._routes = [
            _Route("GET", re.compile(project), self._get_project),
            _Route("GET", re.compile(mr), self._get_merge_request),
            _Route("PUT", re.compile(mr), self._put_merge_request),
            _Route("GET", re.compile(mr + "/diffs"), self._get_diffs),
            _Route("GET", re.compile(mr + "/notes"), self._get_notes),
            _Route("POST", re.compile(mr + "/notes"), self._post_note),
            _Route("GET", re.compile(mr + "/approvals"), self._get_approvals),
            _Route(
                "GET",
                re.compile(project + r"/repository/files/(?P<file_path>[^/]+)/raw"),
                self._get_raw_file,
            ),
            _Route("GET", re.compile(project + "/members/all"), self._get_all_members),
            _Route("GET", re.compile(api + "/user"), self._get_current_user),
            _Route("GET", re.compile(api + "/users"), self._get_users),
            _Route("GET", re.compile(api + r"/users/(?P<id>[^/]+)"), self._get_user),
            _Route(
                "GET",
                re.compile(api + r"/users/(?P<user_id>[^/]+)/status"),
                self._get_status,
                anonymous=True,
            ),
            _Route("GET", re.compile(api + r"/groups/(?P<id>[^/]+)"), self._get_group),
            _Route("GET", re.compile(api + r"/groups/(?P<id>[^/]+)/members"), self._get_members),
        ]

    # --- the Python API ----------------------------------------------------------------

    def add_user(
        self,
        username: str,
        *,
        name: str | None = None,
        public_email: str | None = None,
        status: Mapping[str, Any] | None = None,
        state: str = "active",
    ) -> JSON:
        """A user; returns its ``GET /users/:id`` JSON (with its new ``id``)."""
        if self._find_user(username) is not None:
            raise ValueError(f"user {username!r} already exists")
        user_id = next(self._ids)
        while user_id in self._users:  # the bot's reserved id
            user_id = next(self._ids)
        user = _User(user_id, username, name or username.title(), state, public_email)
        self._users[user.id] = user
        if status is not None:
            self.set_status(username, **status)
        return self._user_json(user, self.base_url, full=True)

    def set_status(
        self,
        username: str,
        *,
        availability: str = "not_set",
        emoji: str | None = None,
        message: str | None = None,
    ) -> None:
        if availability not in ("not_set", "busy"):
            raise ValueError(f"availability {availability!r}: expected not_set or busy")
        user = self._user(username)
        if message and not emoji:
            emoji = "speech_balloon"  # GitLab's default when a message has no emoji
        user.status = {
            "emoji": emoji,
            "availability": availability,
            "message": message,
            "message_html": f'<p dir="auto">{html.escape(message)}</p>' if message else "",
            "clear_status_at": None,
        }

    def add_group(self, path: str, members: Iterable[str] | Mapping[str, int] = ()) -> JSON:
        """A group; ``members`` are usernames (Developer) or ``{username: access_level}``."""
        if path.lower() in self._groups:
            raise ValueError(f"group {path!r} already exists")
        group = _Group(next(self._ids), path, self._member_levels(members))
        self._groups[path.lower()] = group
        return self._group_json(group, self.base_url)

    def add_project(
        self,
        path: str,
        *,
        members: Mapping[str, int] | None = None,
        files: Mapping[str, Mapping[str, str]] | None = None,
        default_branch: str = "main",
        repository_access: bool = True,
    ) -> JSON:
        """A project at ``group/.../name``; ``files`` is ``{ref: {path: text}}``.

        With ``repository_access=False`` the token may see the project but not read
        its repository (file reads answer 403, as for a Guest on a private project).
        """
        if "/" not in path:
            raise ValueError(f"project path {path!r}: expected namespace/project")
        if path.lower() in self._projects:
            raise ValueError(f"project {path!r} already exists")
        project = _Project(
            id=next(self._ids),
            full_path=path,
            default_branch=default_branch,
            members=self._member_levels(members or {}),
            files={ref: dict(tree) for ref, tree in (files or {}).items()},
            repository_access=repository_access,
        )
        self._projects[path.lower()] = project
        return self._project_json(project, self.base_url)

    def add_merge_request(
        self,
        project_path: str,
        *,
        author: str,
        title: str = "Change things",
        description: str = "",
        labels: Iterable[str] = (),
        draft: bool = False,
        target_branch: str = "main",
        source_branch: str | None = None,
        changes: Iterable[str | Mapping[str, Any]] = (),
        reviewers: Iterable[str] = (),
        assignees: Iterable[str] = (),
        state: str = "opened",
        approvals_required: int = 0,
    ) -> JSON:
        """A merge request; returns its REST JSON (``iid``, ``id``, ``web_url``...).

        ``changes`` are paths (modified files) or diff entries such as
        ``{"old_path": "a", "new_path": "b", "renamed_file": True}`` or
        ``{"new_path": "gone.py", "deleted_file": True}``. ``approvals_required`` is
        what the project's approval rules ask of it (``/approvals``).
        """
        project = self._project(project_path)
        if project is None:
            raise ValueError(f"no project {project_path!r}")
        iid = max(project.merge_requests, default=0) + 1
        if draft and not _DRAFT_PREFIX.match(title):
            title = f"Draft: {title}"
        mr = _MergeRequest(
            id=next(self._ids),
            iid=iid,
            title=title,
            description=description,
            author=self._user(author).id,
            source_branch=source_branch or f"feature-{iid}",
            target_branch=target_branch,
            state=state,
            labels=list(labels),
            draft=draft,
            reviewers=[self._user(u).id for u in reviewers],
            assignees=[self._user(u).id for u in assignees],
            diffs=[_diff(change) for change in changes],
            approvals_required=approvals_required,
        )
        self._register_labels(project, mr.labels)
        project.merge_requests[iid] = mr
        return self._merge_request_json(project, mr, self.base_url)

    def merge_request(self, project_path: str, iid: int) -> JSON:
        """The MR's current REST JSON."""
        project, mr = self._mr(project_path, iid)
        return self._merge_request_json(project, mr, self.base_url)

    def user(self, username: str | int) -> JSON:
        """A user's ``GET /users/:id`` JSON (with ``public_email``), by username or id."""
        user = self._find_user(username)
        if user is None:
            raise KeyError(f"no user {username!r}")
        return self._user_json(user, self.base_url, full=True)

    @property
    def bot(self) -> JSON:
        """The token's own user (``GET /user``)."""
        return self._user_json(self._users[self._bot_id], self.base_url, full=True)

    def project(self, project_path: str) -> JSON:
        """A project's REST JSON."""
        project = self._project(project_path)
        if project is None:
            raise KeyError(f"no project {project_path!r}")
        return self._project_json(project, self.base_url)

    def label(self, project_path: str, title: str) -> JSON:
        """A label as webhooks present it (an object with an ``id``; REST MRs carry titles)."""
        project = self._project(project_path)
        if project is None:
            raise KeyError(f"no project {project_path!r}")
        self._register_labels(project, [title])
        return {
            "id": project.labels[title],
            "title": title,
            "color": "#6699cc",
            "project_id": project.id,
            "created_at": CREATED_AT,
            "updated_at": CREATED_AT,
            "template": False,
            "description": None,
            "type": "ProjectLabel",
            "group_id": None,
        }

    def notes(self, project_path: str, iid: int) -> list[JSON]:
        """The MR's notes (system notes included), oldest first, as the REST API shows them."""
        project, mr = self._mr(project_path, iid)
        return [self._note_json(project, mr, note, self.base_url) for note in mr.notes]

    def add_note(
        self,
        project_path: str,
        iid: int,
        author: str,
        body: str,
        *,
        system: bool = False,
        internal: bool = False,
    ) -> JSON:
        """A comment (or a system note) on the MR; returns its REST JSON."""
        project, mr = self._mr(project_path, iid)
        note = self._store_note(mr, self._user(author).id, body, system=system, internal=internal)
        return self._note_json(project, mr, note, self.base_url)

    def set_reviewers(
        self, project_path: str, iid: int, usernames: Iterable[str], *, by: str | None = None
    ) -> JSON:
        """Replace the MR's reviewers, as ``by`` would in GitLab's sidebar (the bot's
        account by default: the system note is theirs); returns the MR."""
        project, mr = self._mr(project_path, iid)
        actor = self._user(by).id if by else self._bot_id
        self._change_reviewers(mr, [self._user(u).id for u in usernames], actor)
        return self._merge_request_json(project, mr, self.base_url)

    def approve(self, project_path: str, iid: int, username: str) -> JSON:
        """``username`` approves the MR (again: no change); returns the MR."""
        project, mr = self._mr(project_path, iid)
        user = self._user(username)
        if user.id not in mr.approved_by:
            mr.approved_by.append(user.id)
            self._store_note(mr, user.id, "approved this merge request", system=True)
        return self._merge_request_json(project, mr, self.base_url)

    def unapprove(self, project_path: str, iid: int, username: str) -> JSON:
        """``username`` withdraws an approval (none given: no change); returns the MR."""
        project, mr = self._mr(project_path, iid)
        user = self._user(username)
        if user.id in mr.approved_by:
            mr.approved_by.remove(user.id)
            self._store_note(mr, user.id, "unapproved this merge request", system=True)
        return self._merge_request_json(project, mr, self.base_url)

    def merge(self, project_path: str, iid: int, *, by: str | None = None) -> JSON:
        """Merge the (open) MR, by ``by`` or else its author; returns the MR."""
        project, mr = self._mr(project_path, iid)
        if mr.state != "opened":
            raise ValueError(f"{project_path}!{iid} is {mr.state}, not opened")
        user = self._user(by).id if by else mr.author
        mr.state, mr.merged_by, mr.merged_at = "merged", user, now()
        mr.updated_at = mr.merged_at
        self._store_note(mr, user, "merged", system=True)
        return self._merge_request_json(project, mr, self.base_url)

    def close(self, project_path: str, iid: int, *, by: str | None = None) -> JSON:
        """Close the (open) MR; returns the MR."""
        project, mr = self._mr(project_path, iid)
        self._change_state(mr, "close", self._user(by).id if by else mr.author)
        return self._merge_request_json(project, mr, self.base_url)

    def reopen(self, project_path: str, iid: int, *, by: str | None = None) -> JSON:
        """Reopen the (closed) MR; returns the MR."""
        project, mr = self._mr(project_path, iid)
        self._change_state(mr, "reopen", self._user(by).id if by else mr.author)
        return self._merge_request_json(project, mr, self.base_url)

    def set_draft(
        self, project_path: str, iid: int, draft: bool = True, *, by: str | None = None
    ) -> JSON:
        """Mark the MR as draft (``Draft:`` title prefix) or ready; returns the MR."""
        project, mr = self._mr(project_path, iid)
        title = _DRAFT_PREFIX.sub("", mr.title, count=1) if mr.draft else mr.title
        self._change_title(
            mr, f"Draft: {title}" if draft else title, self._user(by).id if by else mr.author
        )
        return self._merge_request_json(project, mr, self.base_url)

    def fail_next(
        self,
        path_regex: str,
        status: int,
        times: int = 1,
        *,
        retry_after: int | None = None,
        method: str | None = None,
        after: bool = False,
    ) -> None:
        """Answer the next ``times`` requests matching ``path_regex`` with ``status``.

        The pattern is searched in the raw path with its query string
        (``/api/v4/projects/g%2Fp/merge_requests/1/diffs?page=2&per_page=100``);
        ``method`` (``"POST"``...) narrows it to one HTTP method.

        ``retry_after`` adds a ``Retry-After`` header (python-gitlab waits that long).
        With ``after=True`` the request is carried out first and only its answer is
        replaced: GitLab did the work (posted the note...) but the client never heard.
        """
        pattern = re.compile(path_regex)
        rule = _Rule(pattern, times, status, 0.0, retry_after, after, method and method.upper())
        self._failures.append(rule)

    def delay_next(
        self,
        path_regex: str,
        seconds: float,
        times: int = 1,
        *,
        method: str | None = None,
        after: bool = False,
    ) -> None:
        """Hold the next ``times`` requests matching (as in ``fail_next``) for ``seconds``.

        With ``after=True`` the request is carried out first and only its answer held:
        a client that times out meanwhile never learns that it succeeded.
        """
        pattern = re.compile(path_regex)
        rule = _Rule(pattern, times, seconds=seconds, after=after, method=method and method.upper())
        self._delays.append(rule)

    def hold_next(
        self, path_regex: str, times: int = 1, *, method: str | None = None
    ) -> asyncio.Event:
        """Hold the next ``times`` requests matching (as in ``fail_next``) until the event
        returned is set: a GitLab that does not answer until the test says so, for
        asserting what the bot does meanwhile without racing a clock."""
        released = asyncio.Event()
        pattern = re.compile(path_regex)
        rule = _Rule(pattern, times, method=method and method.upper(), until=released)
        self._delays.append(rule)
        return released

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    # --- dispatch ----------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        try:
            return await self._answer(request)
        finally:
            self.timeline.append((started, time.monotonic(), request.method, _target(request)))

    async def _answer(self, request: web.Request) -> web.Response:
        raw = _target(request)
        path = raw.partition("?")[0]
        self.requests.append((request.method, raw))
        if self.latency or self.jitter:
            await asyncio.sleep(self.latency + random.uniform(0.0, self.jitter))
        delay = _take(self._delays, request.method, raw)
        if delay is not None and delay.until is not None:
            await delay.until.wait()
        elif delay is not None and not delay.after:
            await asyncio.sleep(delay.seconds)
        failure = _take(self._failures, request.method, raw)
        if failure is not None and not failure.after:
            return _failed(failure)
        response = await self._route(request, path)
        if delay is not None and delay.after:
            await asyncio.sleep(delay.seconds)
        return response if failure is None else _failed(failure)

    async def _route(self, request: web.Request, path: str) -> web.Response:
        routes = [(r, m) for r in self._routes if (m := r.pattern.fullmatch(path))]
        if not routes:
            return json_response({"error": "404 Not Found"}, 404)
        method = "GET" if request.method == "HEAD" else request.method
        chosen = next(((r, m) for r, m in routes if r.method == method), None)
        if chosen is None:
            return json_response({"error": "405 Not Allowed"}, 405)
        route, match = chosen
        if not self._authorized(request, anonymous=route.anonymous):
            return _message(401, "Unauthorized")
        params = {name: unquote(value) for name, value in match.groupdict().items()}
        try:
            return await route.handler(request, params)
        except _BadParams as e:
            return _invalid(str(e))

    def _authorized(self, request: web.Request, *, anonymous: bool) -> bool:
        given = request.headers.get("PRIVATE-TOKEN")
        if given is None:
            scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "bearer" and credentials:
                given = credentials.strip()
        if given is None:
            return anonymous
        return hmac.compare_digest(given.encode(), self.token.encode())

    # --- handlers ----------------------------------------------------------------------

    async def _get_project(self, request: web.Request, params: dict[str, str]) -> web.Response:
        project = self._project(params["id"])
        if project is None:
            return _message(404, "Project Not Found")
        return json_response(self._project_json(project, _origin(request, self)))

    async def _get_merge_request(
        self, request: web.Request, params: dict[str, str]
    ) -> web.Response:
        project = self._project(params["id"])
        if project is None:
            return _message(404, "Project Not Found")
        mr = project.merge_requests.get(int(params["merge_request_iid"]))
        if mr is None:
            return _message(404, "Not found")
        return json_response(self._merge_request_json(project, mr, _origin(request, self)))

    async def _put_merge_request(
        self, request: web.Request, params: dict[str, str]
    ) -> web.Response:
        """``PUT .../merge_requests/:iid``: what GitLab declares is applied, the rest ignored."""
        found = self._mr_or_404(params)
        if isinstance(found, web.Response):
            return found
        project, mr = found
        data = await self._params(request)
        if not any(key in data for key in MR_UPDATE_PARAMS):
            raise _BadParams(
                ", ".join(MR_UPDATE_PARAMS)
                + " are missing, at least one parameter must be provided"
            )
        for key in ("title", "target_branch"):
            if key in data and not str(data[key] or "").strip():
                raise _BadParams(f"{key} is empty")
        state_event = data.get("state_event")
        if state_event is not None and state_event not in ("close", "reopen"):
            raise _BadParams("state_event does not have a valid value")
        reviewers = _id_list(data, "reviewer_ids")
        assignees = _id_list(data, "assignee_ids")
        if assignees is None and "assignee_id" in data:
            assignees = _id_list({"assignee_id": data["assignee_id"] or 0}, "assignee_id")
        labels = _str_list(data, "labels")
        add_labels = _str_list(data, "add_labels") or []
        remove_labels = _str_list(data, "remove_labels") or []

        actor = self._bot_id
        before = self._merge_request_json(project, mr, self.base_url)
        if "title" in data:
            self._change_title(mr, str(data["title"]).strip(), actor)
        if "description" in data:
            mr.description = str(data["description"] or "")
        if "target_branch" in data:
            mr.target_branch = str(data["target_branch"]).strip()
        if labels is not None or add_labels or remove_labels:
            wanted = [*(mr.labels if labels is None else labels), *add_labels]
            wanted = [t for t in dict.fromkeys(wanted) if t not in remove_labels]
            self._register_labels(project, wanted)
            mr.labels = wanted
        if assignees is not None:
            self._change_assignees(mr, self._known(assignees), actor)
        if reviewers is not None:
            self._change_reviewers(mr, self._known(reviewers), actor)
        if state_event is not None and (mr.state == "opened") == (state_event == "close"):
            self._change_state(mr, state_event, actor)
        if self._merge_request_json(project, mr, self.base_url) != before:
            mr.updated_at = now()
        return json_response(self._merge_request_json(project, mr, _origin(request, self)))

    async def _params(self, request: web.Request) -> dict[str, Any]:
        data = await _read_params(request)
        self.writes.append((request.method, _target(request), data))
        return data

    async def _get_notes(self, request: web.Request, params: dict[str, str]) -> web.Response:
        found = self._mr_or_404(params)
        if isinstance(found, web.Response):
            return found
        project, mr = found
        sort = request.query.get("sort", "desc")
        order_by = request.query.get("order_by", "created_at")
        activity = request.query.get("activity_filter", "all_notes")
        if sort not in ("asc", "desc"):
            raise _BadParams("sort does not have a valid value")
        if order_by not in ("created_at", "updated_at"):
            raise _BadParams("order_by does not have a valid value")
        if activity not in ("all_notes", "only_comments", "only_activity"):
            raise _BadParams("activity_filter does not have a valid value")
        notes = [
            note
            for note in mr.notes
            if activity == "all_notes" or note.system == (activity == "only_activity")
        ]
        notes.sort(key=lambda n: (getattr(n, order_by), n.id), reverse=sort == "desc")
        origin = _origin(request, self)
        return _paginated(request, [self._note_json(project, mr, n, origin) for n in notes], params)

    async def _post_note(self, request: web.Request, params: dict[str, str]) -> web.Response:
        """``POST .../notes``: 201 with the note, written by the token's user."""
        data = await self._params(request)
        if "body" not in data:
            raise _BadParams("body is missing")
        found = self._mr_or_404(params)
        if isinstance(found, web.Response):
            return found
        project, mr = found
        body = "" if data["body"] is None else str(data["body"])
        if not body.strip():
            return _message(400, 'Bad request - Note {:note=>["can\'t be blank"]}')
        if len(body) > MAX_NOTE_LENGTH:
            return _message(
                400,
                'Bad request - Note {:note=>["is too long (maximum is 1000000 characters)"]}',
            )
        internal = _true(data.get("internal")) or _true(data.get("confidential"))
        note = self._store_note(mr, self._bot_id, body, internal=internal)
        return json_response(self._note_json(project, mr, note, _origin(request, self)), 201)

    async def _get_approvals(self, request: web.Request, params: dict[str, str]) -> web.Response:
        found = self._mr_or_404(params)
        if isinstance(found, web.Response):
            return found
        project, mr = found
        origin = _origin(request, self)
        approved_by = [{"user": self._user_json(self._users[u], origin)} for u in mr.approved_by]
        mine = {
            "user_has_approved": self._bot_id in mr.approved_by,
            "user_can_approve": self._bot_id != mr.author and self._bot_id not in mr.approved_by,
        }
        if not self.premium:  # GitLab Free: approvals exist, rules do not
            return json_response(
                {**mine, "approved": bool(approved_by), "approved_by": approved_by}
            )
        left = max(mr.approvals_required - len(approved_by), 0)
        return json_response(
            {
                "id": mr.id,
                "iid": mr.iid,
                "project_id": project.id,
                "title": mr.title,
                "description": mr.description,
                "state": mr.state,
                "created_at": mr.created_at,
                "updated_at": mr.updated_at,
                "merge_status": "can_be_merged",
                "approved": left == 0,
                "approvals_required": mr.approvals_required,
                "approvals_left": left,
                "require_password_to_approve": False,
                "approved_by": approved_by,
                "suggested_approvers": [],
                "approvers": [],
                "approver_groups": [],
                **mine,
                "approval_rules_left": [],
                "has_approval_rules": mr.approvals_required > 0,
                "merge_request_approvers_available": True,
                "multiple_approval_rules_available": True,
                "invalid_approvers_rules": [],
            }
        )

    async def _get_diffs(self, request: web.Request, params: dict[str, str]) -> web.Response:
        project = self._project(params["id"])
        if project is None:
            return _message(404, "Project Not Found")
        mr = project.merge_requests.get(int(params["merge_request_iid"]))
        if mr is None:
            return _message(404, "Not found")
        return _paginated(request, mr.diffs, params)

    async def _get_raw_file(self, request: web.Request, params: dict[str, str]) -> web.Response:
        project = self._project(params["id"])
        if project is None:
            return _message(404, "Project Not Found")
        if not project.repository_access:
            return _message(403, "Forbidden")
        ref = request.query.get("ref") or project.default_branch
        if ref not in project.files and ref != project.default_branch:
            return _message(404, "Commit Not Found")
        text = project.files.get(ref, {}).get(params["file_path"])
        if text is None:
            return _message(404, "File Not Found")
        return web.Response(body=text.encode(), content_type="text/plain", charset="utf-8")

    async def _get_all_members(self, request: web.Request, params: dict[str, str]) -> web.Response:
        """Direct and inherited members; for each user the highest access level wins."""
        project = self._project(params["id"])
        if project is None:
            return _message(404, "Project Not Found")
        levels = dict(project.members)
        parts = project.full_path.split("/")
        for depth in range(1, len(parts)):
            group = self._groups.get("/".join(parts[:depth]).lower())
            for user_id, level in (group.members if group else {}).items():
                levels[user_id] = max(level, levels.get(user_id, 0))
        origin = _origin(request, self)
        members = [self._member_json(self._users[u], levels[u], origin) for u in sorted(levels)]
        return _paginated(request, members, params)

    async def _get_users(self, request: web.Request, params: dict[str, str]) -> web.Response:
        users = list(self._users.values())
        username = request.query.get("username")
        search = (request.query.get("search") or "").strip().lower()
        if username is not None:
            users = [u for u in users if u.username.lower() == username.lower()]
        if search and "@" in search:  # an email: exact, case-insensitive, public only
            users = [u for u in users if (u.public_email or "").lower() == search]
        elif search:
            users = [u for u in users if search in u.username.lower() or search in u.name.lower()]
        origin = _origin(request, self)
        # Regular users get the basic entity: no public_email (GET /users/:id has it).
        return _paginated(request, [self._user_json(u, origin) for u in users], params)

    async def _get_current_user(self, request: web.Request, params: dict[str, str]) -> web.Response:
        """``GET /user``: the token's own user, with the fields only its owner sees."""
        user = self._users[self._bot_id]
        data = self._user_json(user, _origin(request, self), full=True)
        host = urlsplit(self.base_url).hostname or "gitlab.test"
        data.update(
            {
                "last_sign_in_at": None,
                "confirmed_at": CREATED_AT,
                "last_activity_on": None,
                "email": f"{user.username}@{host}",
                "theme_id": 1,
                "color_scheme_id": 1,
                "projects_limit": 100000,
                "current_sign_in_at": None,
                "identities": [],
                "can_create_group": True,
                "can_create_project": True,
                "two_factor_enabled": False,
                "external": False,
                "private_profile": False,
                "commit_email": f"{user.username}@{host}",
            }
        )
        return json_response(data)

    async def _get_user(self, request: web.Request, params: dict[str, str]) -> web.Response:
        user = self._find_user(params["id"])
        if user is None:
            return _message(404, "User Not Found")
        return json_response(self._user_json(user, _origin(request, self), full=True))

    async def _get_status(self, request: web.Request, params: dict[str, str]) -> web.Response:
        user = self._find_user(params["user_id"])
        if user is None:
            return _message(404, "User Not Found")
        # A user who never set a status: GitLab presents an empty status, all null.
        empty = dict.fromkeys(
            ("emoji", "availability", "message", "message_html", "clear_status_at")
        )
        return json_response(user.status or empty)

    async def _get_group(self, request: web.Request, params: dict[str, str]) -> web.Response:
        group = self._group(params["id"])
        if group is None:
            return _message(404, "Group Not Found")
        return json_response(self._group_json(group, _origin(request, self)))

    async def _get_members(self, request: web.Request, params: dict[str, str]) -> web.Response:
        group = self._group(params["id"])
        if group is None:
            return _message(404, "Group Not Found")
        origin = _origin(request, self)
        members = [
            self._member_json(self._users[user_id], level, origin)
            for user_id, level in group.members.items()
        ]
        return _paginated(request, members, params)

    # --- the model ---------------------------------------------------------------------

    def _find_user(self, id_or_username: str | int) -> _User | None:
        key = str(id_or_username)
        if key.isdigit():
            return self._users.get(int(key))
        return next((u for u in self._users.values() if u.username.lower() == key.lower()), None)

    def _user(self, username: str) -> _User:
        user = self._find_user(username)
        if user is None:
            raise ValueError(f"no user {username!r}")
        return user

    def _member_levels(self, members: Iterable[str] | Mapping[str, int]) -> dict[int, int]:
        if isinstance(members, Mapping):
            return {self._user(name).id: int(level) for name, level in members.items()}
        return {self._user(name).id: DEVELOPER for name in members}

    def _project(self, id_or_path: str) -> _Project | None:
        if id_or_path.isdigit():
            return next((p for p in self._projects.values() if p.id == int(id_or_path)), None)
        return self._projects.get(id_or_path.lower())

    def _group(self, id_or_path: str) -> _Group | None:
        if id_or_path.isdigit():
            return next((g for g in self._groups.values() if g.id == int(id_or_path)), None)
        return self._groups.get(id_or_path.lower())

    def _mr(self, project_path: str, iid: int) -> tuple[_Project, _MergeRequest]:
        project = self._project(project_path)
        if project is None or iid not in project.merge_requests:
            raise KeyError(f"{project_path}!{iid}")
        return project, project.merge_requests[iid]

    def _mr_or_404(
        self, params: Mapping[str, str]
    ) -> tuple[_Project, _MergeRequest] | web.Response:
        project = self._project(params["id"])
        if project is None:
            return _message(404, "Project Not Found")
        mr = project.merge_requests.get(int(params["merge_request_iid"]))
        if mr is None:
            return _message(404, "Not found")
        return project, mr

    def _known(self, user_ids: Iterable[int]) -> list[int]:
        """The ids of existing users, each once; GitLab drops the others (and 0) silently."""
        return [u for u in dict.fromkeys(user_ids) if u in self._users]

    def _register_labels(self, project: _Project, titles: Iterable[str]) -> None:
        for title in titles:
            if title not in project.labels:
                project.labels[title] = next(self._label_ids)

    def _store_note(
        self,
        mr: _MergeRequest,
        author: int,
        body: str,
        *,
        system: bool = False,
        internal: bool = False,
    ) -> _Note:
        stamp = now()
        note = _Note(next(self._note_ids), author, body, system, internal, stamp, stamp)
        mr.notes.append(note)
        return note

    def _system_note(self, mr: _MergeRequest, actor: int, text: str) -> None:
        self._store_note(mr, actor, text, system=True)
        mr.updated_at = now()

    def _change_reviewers(self, mr: _MergeRequest, reviewers: list[int], actor: int) -> None:
        if not self.premium:  # multiple reviewers are a paid feature: Free keeps the first
            reviewers = reviewers[:1]
        added = [self._users[u] for u in reviewers if u not in mr.reviewers]
        removed = [self._users[u] for u in mr.reviewers if u not in reviewers]
        mr.reviewers = list(reviewers)
        parts = []
        if added:
            parts.append("requested review from " + _sentence(f"@{u.username}" for u in added))
        if removed:
            parts.append(
                "removed review request for " + _sentence(f"@{u.username}" for u in removed)
            )
        if parts:
            self._system_note(mr, actor, " and ".join(parts))

    def _change_assignees(self, mr: _MergeRequest, assignees: list[int], actor: int) -> None:
        if not self.premium:
            assignees = assignees[:1]
        added = [self._users[u] for u in assignees if u not in mr.assignees]
        removed = [self._users[u] for u in mr.assignees if u not in assignees]
        mr.assignees = list(assignees)
        parts = []
        if added:
            parts.append("assigned to " + _sentence(f"@{u.username}" for u in added))
        if removed:
            parts.append("unassigned " + _sentence(f"@{u.username}" for u in removed))
        if parts:
            self._system_note(mr, actor, " and ".join(parts))

    def _change_state(self, mr: _MergeRequest, event: str, actor: int) -> None:
        if event == "close":
            if mr.state != "opened":
                raise ValueError(f"merge request !{mr.iid} is {mr.state}: cannot close it")
            mr.state, mr.closed_by, mr.closed_at = "closed", actor, now()
            self._system_note(mr, actor, "closed")
        else:
            if mr.state != "closed":
                raise ValueError(f"merge request !{mr.iid} is {mr.state}: cannot reopen it")
            mr.state, mr.closed_by, mr.closed_at = "opened", None, None
            self._system_note(mr, actor, "reopened")

    def _change_title(self, mr: _MergeRequest, title: str, actor: int) -> None:
        draft = bool(_DRAFT_PREFIX.match(title))
        old_bare = _DRAFT_PREFIX.sub("", mr.title, count=1) if mr.draft else mr.title
        new_bare = _DRAFT_PREFIX.sub("", title, count=1) if draft else title
        if new_bare != old_bare:
            self._system_note(mr, actor, f"changed title from **{old_bare}** to **{new_bare}**")
        if draft != mr.draft:
            state = "draft" if draft else "ready"
            self._system_note(mr, actor, f"marked this merge request as **{state}**")
        mr.title, mr.draft = title, draft

    # --- JSON, as GitLab's entities present it -------------------------------------------

    def _user_json(self, user: _User, origin: str, *, full: bool = False) -> JSON:
        data: JSON = {
            "id": user.id,
            "username": user.username,
            "name": user.name,
            "state": user.state,
            "locked": user.state == "blocked",
            "avatar_url": f"{origin}/uploads/-/system/user/avatar/{user.id}/avatar.png",
            "web_url": f"{origin}/{user.username}",
        }
        if full:
            data.update(
                {
                    "created_at": CREATED_AT,
                    "bio": "",
                    "location": "",
                    "public_email": user.public_email,
                    "linkedin": "",
                    "twitter": "",
                    "website_url": "",
                    "organization": "",
                    "job_title": "",
                    "pronouns": None,
                    "bot": user.bot,
                    "work_information": None,
                    "local_time": None,
                }
            )
        return data

    def _note_json(self, project: _Project, mr: _MergeRequest, note: _Note, origin: str) -> JSON:
        return {
            "id": note.id,
            "type": None,
            "body": note.body,
            "attachment": None,
            "author": self._user_json(self._users[note.author], origin),
            "created_at": note.created_at,
            "updated_at": note.updated_at,
            "system": note.system,
            "noteable_id": mr.id,  # the MR's global id, not its iid
            "noteable_type": "MergeRequest",
            "project_id": project.id,
            "resolvable": False,
            "confidential": note.internal,
            "internal": note.internal,
            "imported": False,
            "imported_from": "none",
            "noteable_iid": mr.iid,
            "commands_changes": {},
        }

    def _member_json(self, user: _User, access_level: int, origin: str) -> JSON:
        return {
            **self._user_json(user, origin),
            "access_level": access_level,
            "created_at": CREATED_AT,
            "created_by": None,
            "expires_at": None,
            "group_saml_identity": None,
            "membership_state": "active",
        }

    def _group_json(self, group: _Group, origin: str) -> JSON:
        parent = self._groups.get(group.full_path.rpartition("/")[0].lower())
        name = group.full_path.rpartition("/")[2]
        return {
            "id": group.id,
            "name": name,
            "path": name,
            "full_name": " / ".join(group.full_path.split("/")),
            "full_path": group.full_path,
            "description": "",
            "visibility": "private",
            "web_url": f"{origin}/groups/{group.full_path}",
            "parent_id": parent.id if parent else None,
            "created_at": CREATED_AT,
        }

    def _project_json(self, project: _Project, origin: str) -> JSON:
        namespace_path, _, name = project.full_path.rpartition("/")
        group = self._groups.get(namespace_path.lower())
        return {
            "id": project.id,
            "description": "",
            "name": name,
            "name_with_namespace": " / ".join(project.full_path.split("/")),
            "path": name,
            "path_with_namespace": project.full_path,
            "created_at": CREATED_AT,
            "default_branch": project.default_branch,
            "visibility": "private",
            "web_url": f"{origin}/{project.full_path}",
            "http_url_to_repo": f"{origin}/{project.full_path}.git",
            "namespace": {
                "id": group.id if group else 0,
                "name": namespace_path.rpartition("/")[2],
                "path": namespace_path.rpartition("/")[2],
                "kind": "group",
                "full_path": namespace_path,
                "parent_id": None,
                "web_url": f"{origin}/groups/{namespace_path}",
            },
            "archived": False,
            "empty_repo": not project.files,
            "merge_requests_enabled": True,
        }

    def _merge_request_json(self, project: _Project, mr: _MergeRequest, origin: str) -> JSON:
        def user(user_id: int) -> JSON:
            return self._user_json(self._users[user_id], origin)

        sha = hashlib.sha256(f"{project.full_path}!{mr.iid}".encode()).hexdigest()[:40]
        base_sha = hashlib.sha256(f"{project.full_path}@{mr.target_branch}".encode()).hexdigest()
        merge_sha = hashlib.sha256(f"{sha}+{base_sha}".encode()).hexdigest()[:40]
        assignees = [user(u) for u in mr.assignees]
        merged_by = user(mr.merged_by) if mr.merged_by is not None else None
        if mr.state != "opened":
            status = "not_open"
        elif mr.draft:
            status = "draft_status"
        elif len(mr.approved_by) < mr.approvals_required:
            status = "not_approved"
        else:
            status = "mergeable"
        return {
            "id": mr.id,
            "iid": mr.iid,
            "project_id": project.id,
            "title": mr.title,
            "description": mr.description,
            "state": mr.state,
            "created_at": mr.created_at,
            "updated_at": mr.updated_at,
            "merged_by": merged_by,
            "merge_user": merged_by,
            "merged_at": mr.merged_at,
            "closed_by": user(mr.closed_by) if mr.closed_by is not None else None,
            "closed_at": mr.closed_at,
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "user_notes_count": sum(not note.system for note in mr.notes),
            "upvotes": 0,
            "downvotes": 0,
            "author": user(mr.author),
            "assignees": assignees,
            "assignee": assignees[0] if assignees else None,
            "reviewers": [user(u) for u in mr.reviewers],
            "source_project_id": project.id,
            "target_project_id": project.id,
            "labels": list(mr.labels),
            "draft": mr.draft,
            "work_in_progress": mr.draft,
            "milestone": None,
            "merge_when_pipeline_succeeds": False,
            "merge_status": "can_be_merged",
            "detailed_merge_status": status,
            "sha": sha,
            "merge_commit_sha": merge_sha if mr.state == "merged" else None,
            "squash_commit_sha": None,
            "discussion_locked": None,
            "should_remove_source_branch": None,
            "force_remove_source_branch": True,
            "reference": f"!{mr.iid}",
            "references": {
                "short": f"!{mr.iid}",
                "relative": f"!{mr.iid}",
                "full": f"{project.full_path}!{mr.iid}",
            },
            "web_url": f"{origin}/{project.full_path}/-/merge_requests/{mr.iid}",
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": None,
                "human_total_time_spent": None,
            },
            "squash": False,
            "squash_on_merge": False,
            "task_completion_status": {"count": 0, "completed_count": 0},
            "has_conflicts": False,
            "blocking_discussions_resolved": True,
            "subscribed": False,
            "changes_count": str(len(mr.diffs)),
            "diff_refs": {"base_sha": base_sha[:40], "head_sha": sha, "start_sha": base_sha[:40]},
            "merge_error": None,
            "first_contribution": False,
            "user": {"can_merge": True},
        }


def _diff(change: str | Mapping[str, Any]) -> JSON:
    """A ``/diffs`` entry; a bare path is a modified file."""
    spec: Mapping[str, Any] = {"new_path": change} if isinstance(change, str) else change
    new_path = spec.get("new_path") or spec["old_path"]
    new_file = bool(spec.get("new_file", False))
    deleted = bool(spec.get("deleted_file", False))
    entry: JSON = {
        "old_path": spec.get("old_path", new_path),
        "new_path": new_path,
        "a_mode": "0" if new_file else "100644",
        "b_mode": "0" if deleted else "100644",
        "diff": "@@ -1 +1 @@\n-before\n+after\n",
        "new_file": new_file,
        "renamed_file": bool(spec.get("renamed_file", False)),
        "deleted_file": deleted,
        "generated_file": False,
    }
    # A custom diff text, or extra keys (e.g. "too_large"), pass through as given.
    entry.update({k: v for k, v in spec.items() if k not in entry or k == "diff"})
    return entry


def _take(rules: list[_Rule], method: str, path: str) -> _Rule | None:
    for rule in rules:
        if rule.method not in (None, method):
            continue
        if rule.remaining > 0 and rule.pattern.search(path):
            rule.remaining -= 1
            return rule
    return None


def _failed(rule: _Rule) -> web.Response:
    response = _message(rule.status)
    if rule.retry_after is not None:
        response.headers["Retry-After"] = str(rule.retry_after)
    return response


def _sentence(items: Iterable[str]) -> str:
    """Rails' ``to_sentence``: ``a``, ``a and b``, ``a, b, and c``."""
    words = list(items)
    if len(words) <= 2:
        return " and ".join(words)
    return ", ".join(words[:-1]) + ", and " + words[-1]


def _true(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes", "on")


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Grape's params: the query string, then a JSON or form body over it.

    Form keys ending in ``[]`` (``reviewer_ids[]=5&reviewer_ids[]=6``) become lists.
    """
    params: dict[str, Any] = {}

    def absorb(values: Any) -> None:
        for key in dict.fromkeys(values.keys()):
            if key.endswith("[]"):
                params[key[:-2]] = list(values.getall(key))
            else:
                params[key] = values.getall(key)[-1]

    absorb(request.query)
    if not request.can_read_body:
        return params
    if request.content_type == "application/json":
        try:
            data = json.loads(await request.read() or b"{}")
        except ValueError:
            raise _BadParams("The provided content-type 'application/json' is invalid") from None
        if not isinstance(data, dict):
            raise _BadParams("The provided content-type 'application/json' is invalid")
        params.update(data)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        absorb(await request.post())
    return params


def _id_list(data: Mapping[str, Any], key: str) -> list[int] | None:
    """An ``Array[Integer]`` parameter as GitLab coerces it (``[5, 6]``, ``"5,6"``, ``0``).

    ``None`` when absent; an empty list (``[]``, ``""``, ``null``) clears.
    """
    if key not in data:
        return None
    raw = data[key]
    values = raw if isinstance(raw, list) else [raw]
    ids: list[int] = []
    for value in values:
        for part in ("" if value is None else str(value)).split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit():
                raise _BadParams(f"{key} is invalid")
            ids.append(int(part))
    return [i for i in ids if i != 0]


def _str_list(data: Mapping[str, Any], key: str) -> list[str] | None:
    """An ``Array[String]`` parameter (a list, or comma-separated)."""
    if key not in data:
        return None
    raw = data[key]
    values = raw if isinstance(raw, list) else [raw]
    items: list[str] = []
    for value in values:
        items.extend(p.strip() for p in ("" if value is None else str(value)).split(","))
    return [item for item in items if item]


def _origin(request: web.Request, standin: GitLabStandIn) -> str:
    """The URL the client reached GitLab at: ``scheme://host[:port][/relative_url_root]``."""
    return f"{request.scheme}://{request.host}{standin.relative_url_root}"


def _positive(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name} is invalid"}), content_type="application/json"
        ) from None


def _paginated(request: web.Request, items: list[JSON], params: Mapping[str, str]) -> web.Response:
    """One page of ``items`` with GitLab's offset-pagination headers."""
    per_page = _positive(request, "per_page") or DEFAULT_PER_PAGE
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    page = max(_positive(request, "page") or 1, 1)
    total = len(items)
    total_pages = max(-(-total // per_page), 1)
    start = (page - 1) * per_page
    chunk = items[start : start + per_page]
    next_page = page + 1 if page < total_pages else None
    prev_page = page - 1 if 1 < page <= total_pages else None

    base = f"{request.scheme}://{request.host}{_target(request).partition('?')[0]}"
    query = {**params, **request.query}  # GitLab's links carry the route params too

    def href(number: int) -> str:
        merged = {**query, "page": str(number), "per_page": str(per_page)}
        return f"{base}?{urlencode(sorted(merged.items()))}"

    links = []
    if prev_page:
        links.append(f'<{href(prev_page)}>; rel="prev"')
    if next_page:
        links.append(f'<{href(next_page)}>; rel="next"')
    links.append(f'<{href(1)}>; rel="first"')
    links.append(f'<{href(total_pages)}>; rel="last"')
    headers = {
        "X-Page": str(page),
        "X-Per-Page": str(per_page),
        "X-Next-Page": str(next_page or ""),
        "X-Prev-Page": str(prev_page or ""),
        "X-Total": str(total),
        "X-Total-Pages": str(total_pages),
        "Link": ", ".join(links),
    }
    return json_response(chunk, headers=headers)


@contextlib.asynccontextmanager
async def serve(
    standin: GitLabStandIn, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the stand-in on ``host`` (a free port by default); yields its GitLab URL."""
    async with listening(standin.app(), host, port) as bound:
        standin.base_url = f"http://{host}:{bound}{standin.relative_url_root}"
        yield standin.base_url
