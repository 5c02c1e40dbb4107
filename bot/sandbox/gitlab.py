"""A GitLab REST API v4 stand-in: an aiohttp app over a plain in-memory model.

It speaks the documented API for what the bot reads, so the real client (python-gitlab)
talks to it unchanged:

- ``GET /api/v4/projects/:id``, ``.../merge_requests/:iid``, ``.../merge_requests/:iid/diffs``,
  ``.../repository/files/:file_path/raw?ref=``, ``.../members/all``;
- ``GET /api/v4/users?username=`` / ``?search=``, ``/users/:id_or_username``,
  ``/users/:id_or_username/status``;
- ``GET /api/v4/groups/:id`` and ``/groups/:id/members``.

Faithful where clients notice: routing on ``request.raw_path`` (``g%2Fsub%2Fp`` stays one
path parameter), ``Content-Type: application/json`` exactly, GitLab's error bodies
(``{"message": "404 Project Not Found"}``; ``{"error": "404 Not Found"}`` for an unknown
route), ``PRIVATE-TOKEN`` or ``Authorization: Bearer`` auth (user status is readable
anonymously; a wrong token is a 401 everywhere), and offset pagination exactly like
GitLab's ``OffsetHeaderBuilder``: ``page``/``per_page`` (default 20, at most 100), the
``X-Page``/``X-Per-Page``/``X-Total``/``X-Total-Pages``/``X-Next-Page``/``X-Prev-Page``
headers and a ``Link`` header (prev, next, first, last) built from the request's own
host, with the route parameters and the query in the link as Rails writes them.

Tests and the demo shape the model through a small Python API (``add_user``,
``add_project``, ``add_merge_request``...), inject failures (``fail_next``) or slowness
(``delay_next``), and read back the ``requests`` log. ``serve(standin)`` runs it on
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
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlencode

from aiohttp import web

__all__ = ["GitLabStandIn", "serve"]

JSON = dict[str, Any]
Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.Response]]

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
DEVELOPER = 30
CREATED_AT = "2026-01-05T09:00:00.000Z"


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


@dataclass
class _User:
    id: int
    username: str
    name: str
    state: str
    public_email: str | None
    status: JSON | None = None


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


@dataclass
class _Project:
    id: int
    full_path: str
    default_branch: str
    members: dict[int, int]
    files: dict[str, dict[str, str]]  # ref -> path -> text
    repository_access: bool
    merge_requests: dict[int, _MergeRequest] = field(default_factory=dict)


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    remaining: int
    status: int = 0
    seconds: float = 0.0
    retry_after: int | None = None


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    anonymous: bool = False


class GitLabStandIn:
    """The in-memory GitLab; ``app()`` serves it, the methods below shape it."""

    def __init__(
        self,
        token: str = "test-token",  # noqa: S107 - the stand-in's own throwaway token
        *,
        relative_url_root: str = "",
    ) -> None:
        self.token = token
        self.relative_url_root = relative_url_root.rstrip("/")
        #: The URL GitLab believes it lives at (web_url fields); ``serve`` sets it.
        self.base_url = "http://gitlab.test" + self.relative_url_root
        #: (method, raw path with its query) of every request, in order.
        self.requests: list[tuple[str, str]] = []
        self._ids = itertools.count(1)
        self._users: dict[int, _User] = {}
        self._groups: dict[str, _Group] = {}  # by lower-cased full path
        self._projects: dict[str, _Project] = {}  # by lower-cased full path
        self._failures: list[_Rule] = []
        self._delays: list[_Rule] = []
        api = re.escape(self.relative_url_root) + "/api/v4"
        project = api + r"/projects/(?P<id>[^/]+)"
        mr = project + r"/merge_requests/(?P<merge_request_iid>[0-9]+)"
        self._routes = [
            _Route("GET", re.compile(project), self._get_project),
            _Route("GET", re.compile(mr), self._get_merge_request),
            _Route("GET", re.compile(mr + "/diffs"), self._get_diffs),
            _Route(
                "GET",
                re.compile(project + r"/repository/files/(?P<file_path>[^/]+)/raw"),
                self._get_raw_file,
            ),
            _Route("GET", re.compile(project + "/members/all"), self._get_all_members),
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
        user = _User(next(self._ids), username, name or username.title(), state, public_email)
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
    ) -> JSON:
        """A merge request; returns its REST JSON (``iid``, ``id``, ``web_url``...).

        ``changes`` are paths (modified files) or diff entries such as
        ``{"old_path": "a", "new_path": "b", "renamed_file": True}`` or
        ``{"new_path": "gone.py", "deleted_file": True}``.
        """
        project = self._project(project_path)
        if project is None:
            raise ValueError(f"no project {project_path!r}")
        iid = max(project.merge_requests, default=0) + 1
        if draft and not re.match(r"(?i)\s*(\[draft\]|draft:|\(draft\))", title):
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
        )
        project.merge_requests[iid] = mr
        return self._merge_request_json(project, mr, self.base_url)

    def merge_request(self, project_path: str, iid: int) -> JSON:
        """The MR's current REST JSON."""
        project = self._project(project_path)
        if project is None or iid not in project.merge_requests:
            raise KeyError(f"{project_path}!{iid}")
        return self._merge_request_json(project, project.merge_requests[iid], self.base_url)

    def fail_next(
        self, path_regex: str, status: int, times: int = 1, *, retry_after: int | None = None
    ) -> None:
        """Answer the next ``times`` requests matching ``path_regex`` with ``status``.

        The pattern is searched in the raw path with its query string
        (``/api/v4/projects/g%2Fp/merge_requests/1/diffs?page=2&per_page=100``).

        ``retry_after`` adds a ``Retry-After`` header (python-gitlab waits that long).
        """
        self._failures.append(_Rule(re.compile(path_regex), times, status, 0.0, retry_after))

    def delay_next(self, path_regex: str, seconds: float, times: int = 1) -> None:
        """Hold the next ``times`` requests matching (as in ``fail_next``) for ``seconds``."""
        self._delays.append(_Rule(re.compile(path_regex), times, seconds=seconds))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    # --- dispatch ----------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.Response:
        raw = request.raw_path
        path = raw.partition("?")[0]
        self.requests.append((request.method, raw))
        delay = _take(self._delays, raw)
        if delay is not None:
            await asyncio.sleep(delay.seconds)
        failure = _take(self._failures, raw)
        if failure is not None:
            response = _message(failure.status)
            if failure.retry_after is not None:
                response.headers["Retry-After"] = str(failure.retry_after)
            return response
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
        return await route.handler(request, params)

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
                    "bot": False,
                    "work_information": None,
                    "local_time": None,
                }
            )
        return data

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
        assignees = [user(u) for u in mr.assignees]
        return {
            "id": mr.id,
            "iid": mr.iid,
            "project_id": project.id,
            "title": mr.title,
            "description": mr.description,
            "state": mr.state,
            "created_at": CREATED_AT,
            "updated_at": CREATED_AT,
            "merged_by": None,
            "merge_user": None,
            "merged_at": None,
            "closed_by": None,
            "closed_at": None,
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "user_notes_count": 0,
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
            "detailed_merge_status": "draft_status" if mr.draft else "mergeable",
            "sha": sha,
            "merge_commit_sha": None,
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


def _take(rules: list[_Rule], path: str) -> _Rule | None:
    for rule in rules:
        if rule.remaining > 0 and rule.pattern.search(path):
            rule.remaining -= 1
            return rule
    return None


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

    base = f"{request.scheme}://{request.host}{request.raw_path.partition('?')[0]}"
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
    runner = web.AppRunner(standin.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        standin.base_url = f"http://{host}:{bound}{standin.relative_url_root}"
        yield standin.base_url
    finally:
        await runner.cleanup()
