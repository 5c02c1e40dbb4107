"""The one adapter to GitLab: python-gitlab, always off the event loop.

python-gitlab is blocking (``requests``), so every call runs in a worker thread of the
adapter's own pool (``concurrency`` threads, and as many pooled keep-alive connections:
asyncio's default executor has only ``cores + 4`` threads, shared with everything else,
and requests' default pool keeps 10 connections per host, so more threads than that
would open and close a connection per call); nothing here blocks the loop. Calls that
do not depend on each other are meant to be awaited together (``asyncio.gather``): with
tens of milliseconds per GitLab answer, the round trips made one after another are what
a roll waits for. The constructor does no I/O
(python-gitlab's constructor does not connect, and ``auth()`` is never called).

Retries are python-gitlab's own (``retry_transient_errors=True``): a 429, a 500/502/503/504
or 52x answer, a connection error or a timeout is retried up to ``max_retries`` times
with a backoff of 0.1 s, 0.2 s, 0.4 s... (or what the server's ``Retry-After`` /
``RateLimit-Reset`` header asks for). python-gitlab takes ``max_retries`` per request,
not in its constructor, so every call here passes it along.

python-gitlab retries a POST exactly like a GET, so a note GitLab stored before its
answer was lost (a 502 from a proxy, a timeout) would be posted twice. :meth:`GitLab.post_note`
therefore turns transient retries off for its POST and retries only a 429 (GitLab's
rate limiter refuses before doing anything); its caller retries, after checking its own
idempotency marker. Setting reviewers (``PUT``, the whole list each time) is idempotent
and retried as usual.

Errors leave this module as the bot's own types, with a one-line message that never
contains the token: :class:`GitLabNotFound` (404), :class:`GitLabForbidden` (401/403),
:class:`GitLabUnavailable` (unreachable, timed out, 5xx/429 after the retries) or the
base :class:`GitLabError`.

Endpoints are called by their documented REST paths (``http_get``/``http_list``) rather
than through python-gitlab's managers, so the path is exactly the one we mean: the MR's
``/diffs`` (``mr.diffs`` would be ``/versions``), never the deprecated ``/changes``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, overload
from urllib.parse import SplitResult, quote, unquote, urlsplit

import gitlab
import requests
import requests.adapters
from gitlab import exceptions as gle

from bot.errors import one_line
from bot.i18n import Message

__all__ = [
    "CODEOWNERS_PATHS",
    "GitLab",
    "GitLabError",
    "GitLabForbidden",
    "GitLabNotFound",
    "GitLabUnavailable",
    "GitLabUser",
    "InvalidMergeRequestURL",
    "MergeRequestInfo",
    "MergeRequestRef",
    "Note",
    "UserStatus",
    "draft_change",
    "gather_all",
    "is_draft",
    "parse_mr_url",
]

log = logging.getLogger("bot.gitlab")

T = TypeVar("T")
U = TypeVar("U")

#: Where GitLab looks for CODEOWNERS, in its order: the first one found wins.
CODEOWNERS_PATHS = ("CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS")
PER_PAGE = 100
USER_AGENT = "reviewer-roulette"
# user_by_email checks at most this many search hits one by one for an exact match.
_MAX_EMAIL_CANDIDATES = 10


class GitLabError(Exception):
    """GitLab refused or failed a request; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GitLabNotFound(GitLabError):
    """404: the project, merge request, user, group or file does not exist (or is hidden)."""


class GitLabForbidden(GitLabError):
    """401 or 403: the token is wrong, expired, or lacks the right to do this."""


class GitLabUnavailable(GitLabError):
    """GitLab is unreachable, timed out, or kept answering 5xx/429 through the retries."""


# --- merge request URLs ----------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MR_PATH = re.compile(
    r"/(?P<project>.+?)/(?:-/)?merge_requests/(?P<iid>[0-9]+)(?:\.(?:diff|patch)|/.*)?"
)
# A namespace or project path segment, as GitLab allows them.
_SEGMENT = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class MergeRequestRef:
    """A merge request by project path (``group/sub/proj``, or a numeric id) and iid."""

    project: str
    iid: int

    def __str__(self) -> str:
        return f"{self.project}!{self.iid}"


def _shown(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _origin(parts: SplitResult) -> tuple[str, int | None]:
    """(host, port) with the host lower-cased and a scheme's default port as ``None``."""
    host = (parts.hostname or "").rstrip(".")
    port = parts.port
    if port == _DEFAULT_PORTS.get(parts.scheme.lower()):
        port = None
    return host, port


def _describe(parts: SplitResult) -> str:
    host, port = _origin(parts)
    shown = host if port is None else f"{host}:{port}"
    return shown + parts.path.rstrip("/")


class InvalidMergeRequestURL(ValueError):
    """A URL that names no merge request on the configured GitLab; ``message`` is the
    reason as a ``Message``, for the reader's language."""

    def __init__(self, message: Message) -> None:
        self.message = message
        super().__init__(str(message))


def parse_mr_url(url: str, gitlab_url: str) -> MergeRequestRef:
    """The merge request a web URL points to, if it is on the GitLab at ``gitlab_url``.

    Accepts ``https://host[:port][/prefix]/group/sub/proj/-/merge_requests/12`` with any
    trailing page (``/diffs``), query or fragment, and the legacy form without ``/-/``.
    Hosts compare case-insensitively, default ports are normalised (so ``http`` and
    ``https`` on their usual ports compare equal), and a GitLab installed under a path
    prefix (``https://host/gitlab``) is honoured. Raises ``InvalidMergeRequestURL`` (a
    ``ValueError``) with one line.
    """
    text = url.strip().strip("<>")
    not_mr = InvalidMergeRequestURL(Message("not a merge request URL: {url}", {"url": _shown(url)}))
    try:
        parts = urlsplit(text)
        origin = _origin(parts)
        configured = urlsplit(gitlab_url.strip())
        expected = _origin(configured)
    except ValueError:  # a port that is not a number, a broken IPv6 literal...
        raise not_mr from None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not origin[0]:
        raise not_mr
    if not _MR_PATH.fullmatch(parts.path):
        raise not_mr
    elsewhere = InvalidMergeRequestURL(
        Message(
            "that URL is not on the configured GitLab ({gitlab})",
            {"gitlab": _describe(configured)},
        )
    )
    if origin != expected:
        raise elsewhere
    prefix = configured.path.rstrip("/")
    if prefix and not parts.path.startswith(prefix + "/"):
        raise elsewhere
    match = _MR_PATH.fullmatch(parts.path[len(prefix) :])
    if match is None:
        raise not_mr
    segments = [unquote(s) for s in match["project"].split("/")]
    if len(segments) < 2 or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise not_mr
    iid = int(match["iid"])
    if iid < 1:
        raise not_mr
    return MergeRequestRef("/".join(segments), iid)


# --- drafts, in every GitLab's words ---------------------------------------------------


def is_draft(merge_request: Mapping[str, Any]) -> bool:
    """Whether a merge request (REST object, or a hook's ``object_attributes`` or
    ``merge_request``) is a draft: its ``draft``, else its ``work_in_progress``.

    GitLab 13.x introduced ``draft`` beside the older ``work_in_progress``; older
    GitLabs (and some hook payloads) send ``draft`` as ``null`` or not at all with
    ``work_in_progress: true``. A ``null`` is "not said", never "not a draft".
    """
    for key in ("draft", "work_in_progress"):
        value = merge_request.get(key)
        if value is not None:
            return bool(value)
    return False


def draft_change(changes: Mapping[str, Any] | None) -> tuple[bool, bool] | None:
    """``(previous, current)`` draft state from a Merge Request Hook's ``changes``, or
    ``None`` when the update did not change it.

    Reads ``changes.draft``, else ``changes.work_in_progress`` (what older GitLabs send),
    each ``{"previous": bool, "current": bool}``; a pair with both sides ``null`` is
    treated as absent.
    """
    for key in ("draft", "work_in_progress"):
        change = (changes or {}).get(key)
        if not isinstance(change, Mapping):
            continue
        previous, current = change.get("previous"), change.get("current")
        if previous is None and current is None:
            continue
        return bool(previous), bool(current)
    return None


# --- what the adapter returns ----------------------------------------------------------


@dataclass(frozen=True)
class MergeRequestInfo:
    """A merge request as the bot reads it (``GET /projects/:id/merge_requests/:iid``).

    ``state`` is GitLab's: ``opened``, ``closed``, ``locked`` (being merged) or
    ``merged``; ``merged_at``/``closed_at`` are UTC, ``None`` when GitLab has none.
    """

    project_id: int
    project_path: str
    iid: int
    id: int
    title: str
    author: str
    author_id: int
    labels: tuple[str, ...]
    draft: bool
    state: str
    target_branch: str
    web_url: str
    reviewers: tuple[str, ...]
    reviewer_ids: tuple[int, ...]
    merged_at: datetime | None = None
    closed_at: datetime | None = None


@dataclass(frozen=True)
class UserStatus:
    availability: str  # "not_set" | "busy"
    emoji: str | None
    message: str | None


@dataclass(frozen=True)
class GitLabUser:
    id: int
    username: str
    name: str
    state: str
    public_email: str | None


@dataclass(frozen=True)
class Note:
    """A comment (or a system note, ``system=True``) on a merge request."""

    id: int
    body: str
    author: str
    system: bool
    created_at: str

    @property
    def created(self) -> datetime | None:
        """``created_at`` as aware UTC; None when it is missing or unreadable."""
        try:
            return _timestamp(self.created_at)
        except ValueError:
            return None


class _Unexpected(Exception):
    """GitLab's answer did not have the shape its documentation promises."""


def _user(data: Any) -> GitLabUser:
    return GitLabUser(
        id=int(data["id"]),
        username=str(data["username"]),
        name=str(data.get("name") or data["username"]),
        state=str(data.get("state") or "active"),
        public_email=data.get("public_email") or None,
    )


def _merge_request(data: Any, ref: MergeRequestRef) -> MergeRequestInfo:
    full = (data.get("references") or {}).get("full") or ""
    project_path = full.rpartition("!")[0] or ref.project
    reviewers = data.get("reviewers") or []
    return MergeRequestInfo(
        project_id=int(data["project_id"]),
        project_path=project_path,
        iid=int(data["iid"]),
        id=int(data["id"]),
        title=str(data["title"]),
        author=str(data["author"]["username"]),
        author_id=int(data["author"]["id"]),
        labels=tuple(str(label) for label in data.get("labels") or ()),
        draft=is_draft(data),
        state=str(data["state"]),
        target_branch=str(data["target_branch"]),
        web_url=str(data.get("web_url") or ""),
        reviewers=tuple(str(r["username"]) for r in reviewers),
        reviewer_ids=tuple(int(r["id"]) for r in reviewers),
        merged_at=_timestamp(data.get("merged_at")),
        closed_at=_timestamp(data.get("closed_at")),
    )


def _timestamp(value: Any) -> datetime | None:
    """GitLab's ISO 8601 time (``2026-03-02T10:00:00.000Z``) as aware UTC, or ``None``."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _note(data: Any) -> Note:
    return Note(
        id=int(data["id"]),
        body=str(data["body"]),
        author=str(data["author"]["username"]),
        system=bool(data.get("system", False)),
        created_at=str(data.get("created_at") or ""),
    )


def _changed_paths(diffs: Iterable[Any]) -> list[str]:
    paths: dict[str, None] = {}  # an ordered set
    for diff in diffs:
        paths.setdefault(str(diff["new_path"]))
        if diff.get("renamed_file") or diff.get("deleted_file"):
            paths.setdefault(str(diff["old_path"]))
    return list(paths)


def _encoded(value: str | int) -> str:
    """A path parameter: ``g/sub/p`` → ``g%2Fsub%2Fp``, as GitLab requires."""
    return quote(str(value), safe="")


@overload
async def gather_all(first: Awaitable[T], second: Awaitable[U], /) -> tuple[T, U]: ...
@overload
async def gather_all(*awaitables: Awaitable[T]) -> tuple[T, ...]: ...
async def gather_all(*awaitables: Awaitable[Any]) -> tuple[Any, ...]:
    """Await all of ``awaitables`` concurrently; their results in order.

    Unlike a bare ``asyncio.gather``, every one has finished (none is left running on
    its own, and no exception goes unretrieved) before the first error, in argument
    order, is raised.
    """
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return tuple(results)


# --- the adapter -----------------------------------------------------------------------


def _read_environment_once(client: gitlab.Gitlab, url: str) -> None:
    """Resolve what requests takes from the environment for ``url`` now, and stop it
    from reading the environment again on every call (``Session.trust_env``).

    With ``trust_env``, requests looks up the proxies (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``), the CA bundle (``REQUESTS_CA_BUNDLE``, else
    ``CURL_CA_BUNDLE``) and ``~/.netrc`` for each request: about 0.2 ms of Python per
    call, in every roll's five or so. The bot calls one host, so the answers for its URL
    are the answers for every call; a change to the environment after start-up is not
    seen. python-gitlab passes ``verify`` on each call (its ``ssl_verify``, default
    True, which would now mean certifi's bundle): the bundle found is given there.
    Source: requests, ``Session.merge_environment_settings`` and
    ``Session.prepare_request`` (https://requests.readthedocs.io/en/latest/api/).
    """
    session = client.session
    if not session.trust_env:
        return
    found = session.merge_environment_settings(url, {}, None, client.ssl_verify, None)
    session.proxies.update(found["proxies"])
    client.ssl_verify = found["verify"]
    if session.auth is None:
        session.auth = requests.utils.get_netrc_auth(url)
    session.trust_env = False


class GitLab:
    """GitLab's REST API v4, as the bot needs it; every method is a coroutine."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        concurrency: int = 16,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency: at least 1 call at a time")
        self.url = url.rstrip("/")
        self._token = token
        self._max_retries = max_retries
        self._me: GitLabUser | None = None
        self._client = gitlab.Gitlab(
            self.url,
            private_token=token,
            timeout=timeout,
            retry_transient_errors=True,
            per_page=PER_PAGE,
            user_agent=USER_AGENT,
        )
        # One pooled connection per thread: no call waits for a connection, none is
        # opened and dropped for lack of room in the pool (urllib3's pool_maxsize).
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
        for scheme in ("http://", "https://"):
            self._client.session.mount(scheme, adapter)
        _read_environment_once(self._client, self.url)
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="gitlab")

    def __repr__(self) -> str:
        return f"GitLab({self.url!r})"

    async def close(self) -> None:
        """Close the pooled HTTP connections and stop the threads."""
        await asyncio.to_thread(self._client.session.close)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # Reads ------------------------------------------------------------------------------

    async def merge_request(self, ref: MergeRequestRef) -> MergeRequestInfo:
        path = f"/projects/{_encoded(ref.project)}/merge_requests/{ref.iid}"
        data = await self._get(f"merge request {ref}", path)
        return self._parse(f"merge request {ref}", _merge_request, data, ref)

    async def changed_paths(self, project: int | str, iid: int) -> list[str]:
        """Every path the MR touches: new paths, plus old paths of renamed/deleted files.

        ``project``: the project's id or its full path (GitLab takes either as ``:id``).
        """
        what = f"changes of merge request {project}!{iid}"
        path = f"/projects/{_encoded(project)}/merge_requests/{iid}/diffs"
        diffs = await self._list(what, path)
        return self._parse(what, _changed_paths, diffs)

    async def codeowners_file(self, project_id: int, ref: str) -> tuple[str, str] | None:
        """(path, text) of the CODEOWNERS GitLab would use on ``ref``, or ``None``.

        The three places are read at once (one round trip, not three in a row); the
        first of ``CODEOWNERS_PATHS`` that exists wins, as in GitLab.
        """

        async def read(path: str) -> bytes | None:
            what = f"{path} of project {project_id} at {ref}"
            try:
                return await self._raw(
                    what,
                    f"/projects/{project_id}/repository/files/{_encoded(path)}/raw",
                    {"ref": ref},
                )
            except GitLabNotFound:
                return None

        found = await gather_all(*(read(path) for path in CODEOWNERS_PATHS))
        for path, content in zip(CODEOWNERS_PATHS, found, strict=True):
            if content is not None:
                return path, content.decode("utf-8", errors="replace")
        return None

    async def user_status(self, user: str | int) -> UserStatus:
        data = await self._get(f"status of user {user}", f"/users/{_encoded(user)}/status")

        def parse(data: Any) -> UserStatus:
            return UserStatus(
                availability=str(data.get("availability") or "not_set"),
                emoji=data.get("emoji") or None,
                message=data.get("message") or None,
            )

        return self._parse(f"status of user {user}", parse, data)

    async def user(self, username: str) -> GitLabUser | None:
        what = f"user {username}"
        found = await self._list(what, "/users", {"username": username}, get_all=False)
        users = self._parse(what, lambda items: [_user(item) for item in items], found)
        return next((u for u in users if u.username.lower() == username.lower()), None)

    async def user_by_email(self, email: str) -> GitLabUser | None:
        """The user whose *public* email is exactly ``email`` (case-insensitive), if any.

        ``GET /users?search=`` also matches names and usernames, and for other users it
        returns the basic entity without ``public_email``; each candidate is then read
        with ``GET /users/:id``, which carries it.
        """
        what = f"user with email {email}"
        found = await self._list(what, "/users", {"search": email}, get_all=False)
        candidates = self._parse(what, lambda items: [_user(item) for item in items], found)
        wanted = email.strip().lower()
        for candidate in candidates[:_MAX_EMAIL_CANDIDATES]:
            user = candidate
            if user.public_email is None:
                data = await self._get(f"user {candidate.id}", f"/users/{candidate.id}")
                user = self._parse(f"user {candidate.id}", _user, data)
            if (user.public_email or "").lower() == wanted:
                return user
        return None

    async def group_members(self, group: str) -> list[GitLabUser]:
        """The group's direct members (not those inherited from parent groups)."""
        what = f"members of group {group}"
        found = await self._list(what, f"/groups/{_encoded(group)}/members")
        return self._parse(what, lambda items: [_user(item) for item in items], found)

    async def project_members(self, project_id: int) -> list[tuple[GitLabUser, int]]:
        """Direct and inherited members, each with its (highest) access level."""
        what = f"members of project {project_id}"
        found = await self._list(what, f"/projects/{project_id}/members/all")
        return self._parse(
            what, lambda items: [(_user(m), int(m["access_level"])) for m in items], found
        )

    async def current_user(self) -> GitLabUser:
        """The token's own account (``GET /user``): the author of the bot's notes.

        Read once, then remembered: an account does not change hands.
        """
        if self._me is None:
            data = await self._get("the token's user", "/user")
            self._me = self._parse("the token's user", _user, data)
        return self._me

    async def recent_notes(self, project: int | str, iid: int, limit: int = 50) -> list[Note]:
        """The MR's most recent notes (system notes included), newest first; one page.

        ``project``: the project's id or its full path.
        """
        what = f"notes of merge request {project}!{iid}"
        found = await self._list(
            what,
            f"/projects/{_encoded(project)}/merge_requests/{iid}/notes",
            {"sort": "desc", "order_by": "created_at"},
            get_all=False,
            per_page=max(1, min(limit, PER_PAGE)),
        )
        return self._parse(what, lambda items: [_note(item) for item in items], found)

    # Writes -----------------------------------------------------------------------------

    async def post_note(self, project_id: int, iid: int, body: str) -> Note:
        """Comment on the MR (``POST .../notes``), as the token's user.

        Never retried on a 5xx, a timeout or a lost connection: GitLab may have stored
        the note before the answer was lost, and a retry would post it twice. A 429 is
        retried (GitLab refused before doing anything). On :class:`GitLabUnavailable`
        the note may or may not exist: look before posting again.
        """
        what = f"note on merge request {project_id}!{iid}"
        data = await self._post(
            what, f"/projects/{project_id}/merge_requests/{iid}/notes", {"body": body}
        )
        return self._parse(what, _note, data)

    async def set_reviewers(
        self, project_id: int, iid: int, reviewer_ids: Sequence[int]
    ) -> MergeRequestInfo:
        """Make ``reviewer_ids`` the MR's reviewers, replacing any (``[]`` clears them).

        GitLab drops ids of unknown users silently, and GitLab Free keeps only the
        first reviewer: the returned MR says who the reviewers really are.
        """
        ref = MergeRequestRef(str(project_id), iid)
        what = f"reviewers of merge request {project_id}!{iid}"
        data = await self._put(
            what,
            f"/projects/{project_id}/merge_requests/{iid}",
            {"reviewer_ids": [int(i) for i in reviewer_ids]},
        )
        return self._parse(what, _merge_request, data, ref)

    # Transport --------------------------------------------------------------------------
    # Each helper runs one python-gitlab call in a worker thread and translates its
    # errors; new endpoints (notes, reviewers) are built on these.

    async def _get(self, what: str, path: str, query: Mapping[str, Any] | None = None) -> Any:
        def call() -> Any:
            result = self._client.http_get(
                path, query_data=dict(query or {}), max_retries=self._max_retries
            )
            if isinstance(result, requests.Response):
                raise _Unexpected(f"not JSON but {result.headers.get('Content-Type')}")
            return result

        return await self._call(what, call)

    async def _list(
        self,
        what: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        *,
        get_all: bool = True,
        per_page: int = PER_PAGE,
    ) -> list[Any]:
        """Every page (following GitLab's ``Link`` header), or only the first."""

        def call() -> list[Any]:
            result = self._client.http_list(
                path,
                query_data={**(query or {}), "per_page": per_page},
                get_all=get_all,
                max_retries=self._max_retries,
            )
            if not isinstance(result, list):
                raise _Unexpected("not a list")
            return result

        return await self._call(what, call)

    async def _raw(self, what: str, path: str, query: Mapping[str, Any] | None = None) -> bytes:
        def call() -> bytes:
            response = self._client.http_get(
                path, query_data=dict(query or {}), raw=True, max_retries=self._max_retries
            )
            if not isinstance(response, requests.Response):
                raise _Unexpected("not a raw answer")
            return response.content

        return await self._call(what, call)

    async def _post(self, what: str, path: str, data: Mapping[str, Any]) -> Any:
        """A POST that is never retried blindly: only a 429 (refused, so not done)."""

        def call() -> Any:
            result = self._client.http_post(
                path,
                post_data=dict(data),
                retry_transient_errors=False,
                obey_rate_limit=True,
                max_retries=self._max_retries,
            )
            if isinstance(result, requests.Response):
                raise _Unexpected(f"not JSON but {result.headers.get('Content-Type')}")
            return result

        return await self._call(what, call, transient_retries=False)

    async def _put(self, what: str, path: str, data: Mapping[str, Any]) -> Any:
        """A PUT of a whole value: idempotent, so retried like a read."""

        def call() -> Any:
            result = self._client.http_put(
                path, post_data=dict(data), max_retries=self._max_retries
            )
            if isinstance(result, requests.Response):
                raise _Unexpected(f"not JSON but {result.headers.get('Content-Type')}")
            return result

        return await self._call(what, call)

    async def _call(self, what: str, call: Callable[[], T], *, transient_retries: bool = True) -> T:
        context = contextvars.copy_context()  # the request id of the logs, as to_thread does
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, functools.partial(context.run, call)
            )
        except gle.GitlabError as e:
            raise self._translated(what, e, transient_retries=transient_retries) from e
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as e:
            error = GitLabUnavailable(self._clean(f"{what}: {self._unreachable(e)}"))
            log.warning("%s", error)
            raise error from e
        except (requests.RequestException, _Unexpected) as e:
            raise GitLabError(self._clean(f"{what}: {one_line(e)}")) from e

    def _parse(self, what: str, parse: Callable[..., T], *args: Any) -> T:
        try:
            return parse(*args)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise GitLabError(
                self._clean(f"{what}: GitLab answered in an unexpected shape ({e!r})")
            ) from e

    def _translated(
        self, what: str, error: gle.GitlabError, *, transient_retries: bool = True
    ) -> GitLabError:
        status = error.response_code
        detail = error.error_message
        if not isinstance(detail, str):
            detail = str(detail)
        detail = one_line(Exception(detail))[:200]
        if detail.startswith("<"):  # a proxy's HTML error page says nothing useful
            detail = ""
        if status is not None and not detail.startswith(str(status)):
            detail = f"{status} {detail}".strip()
        cls: type[GitLabError] = GitLabError
        if status in (401, 403):
            cls = GitLabForbidden
        elif status == 404:
            cls = GitLabNotFound
        elif status is not None and (status == 429 or status >= 500):
            cls = GitLabUnavailable
            retries = self._max_retries
            if status != 429 and not transient_retries:
                detail += " (not retried)"
            else:
                detail += f" (after {retries} {'retry' if retries == 1 else 'retries'})"
        message = f"{what}: GitLab answered {detail}" if status else f"{what}: {detail}"
        translated = cls(self._clean(message), status=status)
        if cls is GitLabUnavailable:
            log.warning("%s", translated)
        return translated

    def _unreachable(self, error: Exception) -> str:
        host = urlsplit(self.url).netloc.rpartition("@")[2]  # never any userinfo
        if isinstance(error, requests.Timeout):
            reason = "timed out"
        else:
            errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(error))
            reason = errno.group(1).strip() if errno else type(error).__name__
        return f"GitLab at {host} is unreachable: {reason}"

    def _clean(self, message: str) -> str:
        """One line, and never the token, whatever GitLab or a proxy echoed back."""
        text = one_line(Exception(message))
        if self._token:
            text = text.replace(self._token, "***")
        return text
