"""Following a review from trigger to merge, in the database, with its metrics.

Every function here runs in one transaction and is idempotent, so that a retried
webhook delivery converges on the same rows.

A review that is merged or closed stays so: no write path here moves it (or its
assignments) back to open, except GitLab's own ``reopen`` merge-request event on a
closed review (GitLab never reopens a merged one). A roll recorded on such a review
raises :class:`ReviewEnded`; late or repeated hook events (an approval delivered after
the merge, a second ``merge``) leave it as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db import utcnow
from bot.gitlab import (
    GitLabError,
    GitLabForbidden,
    GitLabUnavailable,
    GitLabUser,
    MergeRequestInfo,
    MergeRequestRef,
    draft_change,
    gather_all,
    is_draft,
)
from bot.models import MrReview, ReviewerAssignment, Team, User

log = logging.getLogger("plugins.roulette.tracking")

Sessions = async_sessionmaker[AsyncSession]
OPEN = ("active", "approved")
ENDED = ("merged", "closed")
TIME_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)


class ReviewMetrics:
    """The review metrics on ``/metrics`` (triggers, completed and abandoned reviews, active
    reviews, times to first review and to approval, comments), registered in the app's
    registry.

    ``sleep`` (seconds) and ``clock`` (a monotonic time in seconds) space the counts of
    the active assignments (see :meth:`refresh_active`, :meth:`refresh_soon`); tests pass
    fake ones."""

    #: Seconds between two counts of the active assignments asked for by rolls and events:
    #: a burst of rolls costs a count a second, not one per roll.
    REFRESH_GAP: ClassVar[float] = 1.0

    def __init__(
        self,
        registry: CollectorRegistry,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self._counting: asyncio.Task[None] | None = None
        self._last_spaced = -math.inf  # when the last spaced count began (``clock``)
        self._closed = False
        self.triggers = Counter(
            "roulette_triggers",
            "Reviewer roulettes run, by team and outcome (ok, nobody, ended, invalid, error).",
            ["team", "status"],
            registry=registry,
        )
        self.completed = Counter(
            "reviews_completed", "Reviews completed by a merge.", registry=registry
        )
        self.abandoned = Counter(
            "reviews_abandoned", "Reviews abandoned: the MR was closed.", registry=registry
        )
        self.active = Gauge(
            "active_reviews",
            "Reviewer assignments not yet approved, on open MRs, by the MR's team"
            ' ("" for none); every replica counts them from the database.',
            ["team"],
            registry=registry,
        )
        self._teams_seen: set[str] = set()
        self._refreshing = False
        self._stale = False
        self._counted = False  # a count ran in this refresh: the next waits its gap
        self.ttfr = Histogram(
            "review_ttfr_seconds",
            "From assignment to the reviewer's first comment.",
            buckets=TIME_BUCKETS,
            registry=registry,
        )
        self.time_to_approval = Histogram(
            "review_time_to_approval_seconds",
            "From assignment to the reviewer's approval.",
            buckets=TIME_BUCKETS,
            registry=registry,
        )
        self.comment_count = Histogram(
            "review_comment_count",
            "Comments a reviewer wrote on a review, observed when it ends.",
            buckets=(0, 1, 2, 3, 5, 8, 13, 21, 34),
            registry=registry,
        )
        self.comment_length = Histogram(
            "review_comment_length",
            "Length of reviewers' comments, in characters.",
            buckets=(10, 30, 100, 300, 1000, 3000),
            registry=registry,
        )

    async def refresh_active(self, sessions: Sessions, *, spaced: bool = False) -> None:
        """Count the active assignments per team into ``active_reviews``.

        Calls that arrive while a count runs (many rolls end together) are folded into
        one more count, :attr:`REFRESH_GAP` seconds after it: the gauge ends right, at a
        query a second during a burst rather than one per roll. ``spaced`` (the counts
        rolls and events ask for, :meth:`refresh_soon`): the first count, too, waits
        until :attr:`REFRESH_GAP` seconds after the last spaced one began. A team with
        no active assignment left is set to 0.
        """
        self._stale = True
        if self._refreshing:
            return
        self._refreshing = True
        try:
            while self._stale:
                wait = self.REFRESH_GAP
                if not self._counted:
                    wait = self._last_spaced + self.REFRESH_GAP - self._clock() if spaced else 0
                if wait > 0:
                    await self._sleep(wait)
                self._counted = True
                self._stale = False
                if spaced:
                    self._last_spaced = self._clock()
                async with sessions() as session:
                    rows = await session.execute(
                        select(Team.name, func.count())
                        .select_from(ReviewerAssignment)
                        .join(MrReview, MrReview.id == ReviewerAssignment.review_id)
                        .outerjoin(Team, Team.id == MrReview.team_id)
                        .where(ReviewerAssignment.status == "active", MrReview.state == "open")
                        .group_by(Team.name)
                    )
                    counts = {str(team or ""): int(n) for team, n in rows.all()}
                for team in self._teams_seen | set(counts):
                    self.active.labels(team).set(counts.get(team, 0))
                self._teams_seen |= set(counts)
        finally:
            self._refreshing = self._counted = False

    def refresh_soon(self, sessions: Sessions) -> None:
        """:meth:`refresh_active` in the background, :attr:`REFRESH_GAP` seconds or more
        after the last such count began: the roll or event that asks neither waits for the
        count nor fails with it. Asks that come while one waits or runs are folded into
        it. A failed count is logged as a warning; the gauge then waits for the next ask,
        or the plugin's refresh every minute. Nothing is counted after :meth:`close`."""
        if self._closed:
            return
        if self._counting is not None and not self._counting.done():
            self._stale = True  # the waiting or running count takes it
            return
        self._counting = asyncio.create_task(self._refresh_later(sessions), name="active-reviews")

    async def _refresh_later(self, sessions: Sessions) -> None:
        try:
            await self.refresh_active(sessions, spaced=True)
        except Exception:  # a metric must never fail what asked for it
            log.warning("could not count the active reviews", exc_info=True)

    async def close(self) -> None:
        """Stop a count :meth:`refresh_soon` started, if one waits or runs, and start no
        more (the bot is stopping)."""
        self._closed = True
        task, self._counting = self._counting, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class ReviewEnded(Exception):
    """A roll was to be recorded on a merge request that is merged or closed (in GitLab,
    or in the stored review): nothing was written.

    ``state`` is ``merged`` or ``closed`` (or GitLab's other non-open state, ``locked``).
    """

    def __init__(self, where: str, state: str) -> None:
        super().__init__(f"{where} is {state}: no reviewer is assigned on it")
        self.where = where
        self.state = state


@dataclass(frozen=True)
class Recorded:
    review_id: int
    assigned: tuple[str, ...]  # usernames newly assigned (or re-activated)
    missing: tuple[str, ...]  # picked usernames with no row in the users table


# The statements of a roll's record, built once: building a statement and its cache key
# costs more than running it (see plugins.roulette.service._LOAD).
_USERS = select(User).where(
    func.lower(User.gitlab_username).in_(bindparam("names", expanding=True))
)
_REVIEW = select(MrReview).where(
    MrReview.project_id == bindparam("project_id"), MrReview.mr_iid == bindparam("iid")
)
_TEAM_ID = select(Team.id).where(func.lower(Team.name) == bindparam("name"))
_ASSIGNMENTS = select(ReviewerAssignment).where(
    ReviewerAssignment.review_id == bindparam("review_id")
)
_GITLAB_IDS = select(User.gitlab_username, User.gitlab_id).where(
    func.lower(User.gitlab_username).in_(bindparam("names", expanding=True))
)


async def _users(session: AsyncSession, names: Iterable[str]) -> dict[str, User]:
    wanted = {n.lower() for n in names}
    if not wanted:
        return {}
    rows = await session.scalars(_USERS, {"names": sorted(wanted)})
    return {u.gitlab_username.lower(): u for u in rows.all()}


async def _review(session: AsyncSession, project_id: int, iid: int) -> MrReview | None:
    return await session.scalar(_REVIEW, {"project_id": project_id, "iid": iid})


async def ensure_review(
    session: AsyncSession,
    mr: MergeRequestInfo,
    team: str | None,
    now: datetime,
    *,
    users: Mapping[str, User] | None = None,
) -> MrReview:
    """The review row of ``mr``, created when the bot first hears of it.

    ``users``: stored users the caller already read (lower-cased GitLab username -> row,
    as ``_users`` gives), ``mr.author`` among those asked for; else the author is read here.
    """
    review = await _review(session, mr.project_id, mr.iid)
    team_id = None
    if team:
        team_id = await session.scalar(_TEAM_ID, {"name": team.lower()})
    if users is None:
        users = await _users(session, [mr.author])
    author = users.get(mr.author.lower())
    if review is None:
        review = MrReview(
            project_id=mr.project_id,
            project_path=mr.project_path,
            mr_iid=mr.iid,
            mr_id=mr.id,
            title=mr.title[:500],
            web_url=mr.web_url,
            author_id=author.id if author else None,
            author_username=mr.author,
            team_id=team_id,
            draft=mr.draft,
            triggered_at=now,
        )
        session.add(review)
        await session.flush()
    else:
        review.title = mr.title[:500]
        review.draft = mr.draft
        review.team_id = team_id if team_id is not None else review.team_id
    return review


async def record_roll(
    sessions: Sessions,
    mr: MergeRequestInfo,
    team: str | None,
    picks: Sequence[tuple[str, str]],
    kept: Sequence[str],
    released: Sequence[str],
) -> Recorded:
    """Store a roulette's outcome: the review, one assignment per reviewer with its role.

    ``picks`` are (username, role) the bot chose; ``kept`` reviewers that were already on
    the MR (recorded as manual when the bot did not know them); ``released`` reviewers
    replaced by ``reroll``/``--force``, whose assignments end.

    Raises :class:`ReviewEnded`, writing nothing, when ``mr`` is not open in GitLab or
    its stored review is merged or closed (only a ``reopen`` event reopens it).
    """
    try:
        return await _record_roll(sessions, mr, team, picks, kept, released)
    except IntegrityError:
        # Two roulettes on a new MR at once both created its review row; the other
        # one won: this time the row exists.
        return await _record_roll(sessions, mr, team, picks, kept, released)


async def _record_roll(
    sessions: Sessions,
    mr: MergeRequestInfo,
    team: str | None,
    picks: Sequence[tuple[str, str]],
    kept: Sequence[str],
    released: Sequence[str],
) -> Recorded:
    now = utcnow()
    where = f"{mr.project_path}!{mr.iid}"
    if mr.state != "opened":
        raise ReviewEnded(where, mr.state)
    async with sessions.begin() as session:
        # The author and every reviewer named, in one read.
        names = [mr.author, *(n for n, _ in picks), *kept, *released]
        users = await _users(session, names)
        review = await ensure_review(session, mr, team, now, users=users)
        if review.state in ENDED:
            raise ReviewEnded(where, review.state)
        existing = {
            a.user_id: a
            for a in (await session.scalars(_ASSIGNMENTS, {"review_id": review.id})).all()
        }
        assigned: list[str] = []
        missing: list[str] = []
        wanted = [(name, role) for name, role in picks] + [(n, "manual") for n in kept]
        for name, role in wanted:
            user = users.get(name.lower())
            if user is None:
                missing.append(name)
                continue
            row = existing.get(user.id)
            if row is None:
                session.add(
                    ReviewerAssignment(
                        review_id=review.id, user_id=user.id, role=role, assigned_at=now
                    )
                )
                assigned.append(user.gitlab_username)
            elif row.status not in OPEN:
                row.status, row.role, row.assigned_at, row.ended_at = "active", role, now, None
                assigned.append(user.gitlab_username)
        for name in released:
            user = users.get(name.lower())
            row = existing.get(user.id) if user else None
            if row is not None and row.status in OPEN:
                row.status, row.ended_at = "removed", now
        return Recorded(review.id, tuple(assigned), tuple(missing))


async def record_announced(
    sessions: Sessions,
    metrics: ReviewMetrics,
    mr: MergeRequestInfo,
    team: str | None,
    picks: Sequence[tuple[str, str]],
    announced_at: datetime | None,
) -> Recorded | None:
    """Store a roll the bot announced on ``mr`` but never recorded, found by a retry once
    ``mr`` is no longer open: the database failed after the note was posted (an outage),
    and GitLab merged or closed the MR meanwhile. The review and its ``picks``
    ((username, role), as the note lists them) are stored as of ``announced_at`` (the
    note's time; now when unknown), then ended as GitLab says (at ``mr.merged_at`` or
    ``mr.closed_at``) and counted in ``metrics`` as its event would have been, so that the
    merge or close is kept whichever of its event and this retry comes first. Returns
    None, writing nothing, when the review is stored already (its own events keep it
    right)."""
    now = utcnow()
    at = announced_at or now
    async with sessions.begin() as session:
        if await _review(session, mr.project_id, mr.iid) is not None:
            return None
        review = await ensure_review(session, mr, team, at)
        users = await _users(session, [name for name, _ in picks])
        rows: list[ReviewerAssignment] = []
        missing: list[str] = []
        for name, role in picks:
            user = users.get(name.lower())
            if user is None:
                missing.append(name)
                continue
            rows.append(
                ReviewerAssignment(
                    review_id=review.id, user_id=user.id, role=role, status="active", assigned_at=at
                )
            )
        session.add_all(rows)
        if mr.state in ENDED:
            ended_at = (mr.merged_at if mr.state == "merged" else mr.closed_at) or now
            _end(review, rows, mr.state, max(ended_at, at))
    if mr.state == "merged":  # its reviewers' comments went unrecorded: none observed
        metrics.completed.inc()
    elif mr.state == "closed":
        metrics.abandoned.inc()
    return Recorded(review.id, tuple(n for n, _ in picks if n not in missing), tuple(missing))


# --------------------------------------------------------------------------- hand-over


@dataclass(frozen=True)
class Seat:
    """One reviewer's assignment on a review: its ``role`` (``codeowner``, ``team``,
    ``external``, ``manual``), ``status`` and when it started (aware UTC)."""

    username: str
    role: str
    status: str
    assigned_at: datetime


async def seats(sessions: Sessions, project_id: int, iid: int) -> list[Seat]:
    """Every assignment ever recorded on the MR (any status), oldest first; [] when the
    bot never staffed it."""
    async with sessions() as session:
        rows = await session.execute(
            select(
                User.gitlab_username,
                ReviewerAssignment.role,
                ReviewerAssignment.status,
                ReviewerAssignment.assigned_at,
            )
            .join(ReviewerAssignment, ReviewerAssignment.user_id == User.id)
            .join(MrReview, MrReview.id == ReviewerAssignment.review_id)
            .where(MrReview.project_id == project_id, MrReview.mr_iid == iid)
            .order_by(ReviewerAssignment.assigned_at, ReviewerAssignment.id)
        )
        return [Seat(str(n), str(r), str(st), at) for n, r, st, at in rows.all()]


async def record_handover(
    sessions: Sessions,
    mr: MergeRequestInfo,
    team: str | None,
    passer: str,
    replacement: tuple[str, str] | None,
) -> Recorded:
    """Store a hand-over: ``passer``'s assignment ends as ``passed`` (not load: only
    ``active`` counts; not a review: only ``completed`` does), also when the reviewers hook
    already ended it as ``removed``; ``replacement`` (username, role), when someone took
    the slot, gets an active assignment (a new one, or their ended one re-activated).

    Idempotent: recording it again changes nothing. Raises :class:`ReviewEnded`, writing
    nothing, when the MR (in GitLab or stored) is merged or closed.
    """
    now = utcnow()
    where = f"{mr.project_path}!{mr.iid}"
    if mr.state != "opened":
        raise ReviewEnded(where, mr.state)
    async with sessions.begin() as session:
        review = await ensure_review(session, mr, team, now)
        if review.state in ENDED:
            raise ReviewEnded(where, review.state)
        names = [passer] + ([replacement[0]] if replacement else [])
        users = await _users(session, names)
        rows = {
            a.user_id: a
            for a in (await session.scalars(_ASSIGNMENTS, {"review_id": review.id})).all()
        }
        passing = users.get(passer.lower())
        row = rows.get(passing.id) if passing else None
        if row is not None and row.status in (*OPEN, "removed"):
            if row.status in OPEN or row.ended_at is None:
                row.ended_at = now
            row.status = "passed"
        assigned: list[str] = []
        missing: list[str] = []
        if replacement is not None:
            name, role = replacement
            user = users.get(name.lower())
            if user is None:
                missing.append(name)
            elif (mine := rows.get(user.id)) is None:
                session.add(
                    ReviewerAssignment(
                        review_id=review.id, user_id=user.id, role=role, assigned_at=now
                    )
                )
                assigned.append(user.gitlab_username)
            elif mine.status not in OPEN:
                mine.status, mine.role, mine.assigned_at, mine.ended_at = "active", role, now, None
                assigned.append(user.gitlab_username)
        return Recorded(review.id, tuple(assigned), tuple(missing))


# --------------------------------------------------------------------------- lifecycle


def _username(user: Any) -> str | None:
    if isinstance(user, Mapping):
        name = user.get("username")
        return str(name) if name else None
    return None


async def reviewer_commented(
    sessions: Sessions,
    metrics: ReviewMetrics,
    project_id: int,
    iid: int,
    author: str,
    body: str,
    received_at: datetime | None = None,
) -> bool:
    """A note by ``author``: their first response if they review this MR. True if counted.

    ``received_at`` is when its Note Hook was received (:func:`event_time`): the response
    is timed from it, however late the inbox processes it."""
    now = event_time(received_at)
    async with sessions.begin() as session:
        review = await _review(session, project_id, iid)
        if review is None or author.lower() == review.author_username.lower():
            return False
        user = (await _users(session, [author])).get(author.lower())
        if user is None:
            return False
        row = await session.scalar(
            select(ReviewerAssignment).where(
                ReviewerAssignment.review_id == review.id,
                ReviewerAssignment.user_id == user.id,
            )
        )
        if row is None:
            return False
        row.comment_count += 1
        row.comment_chars += len(body)
        metrics.comment_length.observe(len(body))
        answered = max(now, row.assigned_at)  # not before they were asked
        if row.first_response_at is None:
            row.first_response_at = answered
            metrics.ttfr.observe((answered - row.assigned_at).total_seconds())
        if review.first_review_at is None:
            review.first_review_at = answered
        return True


async def merge_request_event(
    sessions: Sessions,
    metrics: ReviewMetrics,
    payload: Mapping[str, Any],
    received_at: datetime | None = None,
) -> str | None:
    """Apply a Merge Request Hook to the review it concerns; returns what changed.

    ``received_at`` is when the hook was received (:func:`event_time`): approvals, merges
    and closes are stored as of then, however late the inbox processes the hook; a
    reviewer's times are never before their assignment."""
    attributes = payload.get("object_attributes") or {}
    action = str(attributes.get("action") or "")
    project = payload.get("project") or {}
    project_id = int(project.get("id") or attributes.get("target_project_id") or 0)
    iid = int(attributes.get("iid") or 0)
    actor = _username(payload.get("user"))
    now = event_time(received_at)
    async with sessions.begin() as session:
        review = await _review(session, project_id, iid)
        changes = payload.get("changes") or {}
        if "reviewers" in changes:
            review = await _reviewers_changed(session, review, payload, changes["reviewers"], now)
        if review is None:
            return None
        rows = (await session.scalars(_ASSIGNMENTS, {"review_id": review.id})).all()
        by_user = {row.user_id: row for row in rows}
        actor_row = None
        if actor:
            user = (await _users(session, [actor])).get(actor.lower())
            actor_row = by_user.get(user.id) if user else None

        if action in ("approved", "approval"):
            if actor_row is not None and actor_row.approved_at is None:
                actor_row.approved_at = approved = max(now, actor_row.assigned_at)
                if actor_row.status == "active":  # an ended assignment stays ended
                    actor_row.status = "approved"
                waited = (approved - actor_row.assigned_at).total_seconds()
                if actor_row.first_response_at is None:
                    actor_row.first_response_at = approved
                    metrics.ttfr.observe(waited)
                metrics.time_to_approval.observe(waited)
            if review.first_review_at is None and actor_row is not None:
                review.first_review_at = max(now, actor_row.assigned_at)
            if action == "approved" and review.approved_at is None:
                review.approved_at = now
        elif action in ("unapproved", "unapproval"):
            if actor_row is not None and actor_row.status == "approved" and review.state == "open":
                actor_row.status, actor_row.approved_at = "active", None
            if action == "unapproved":
                review.approved_at = None
        elif action in ("merge", "close") and review.state in ENDED:
            log.info("%s on %s, already %s: kept", action, _where(review), review.state)
        elif action == "merge":
            for row in _end(review, rows, "merged", now):
                metrics.comment_count.observe(row.comment_count)
            metrics.completed.inc()
        elif action == "close":
            _end(review, rows, "closed", now)
            metrics.abandoned.inc()
        elif action == "reopen" and review.state == "closed":
            # GitLab reopens only closed MRs, never merged ones.
            review.state, review.closed_at = "open", None
            for row in rows:
                if row.status == "abandoned":
                    row.status, row.ended_at = "active", None
        draft = draft_change(changes)
        if draft is not None:
            review.draft = draft[1]
        return action


def _where(review: MrReview) -> str:
    return f"{review.project_path}!{review.mr_iid}"


def event_time(received_at: datetime | None) -> datetime:
    """When a webhook's event happened, as well as the bot can tell: when its delivery was
    received (``received_at``, UTC, the inbox's ``received_at``), not when it is processed
    -- after a backlog or an outage the inbox may process it minutes or hours later --
    and never after now (UTC). Now when ``received_at`` is None."""
    now = utcnow()
    return now if received_at is None or received_at > now else received_at


def _end(
    review: MrReview, rows: Iterable[ReviewerAssignment], state: str, at: datetime
) -> list[ReviewerAssignment]:
    """Mark an open review ``merged`` or ``closed`` at ``at`` and end its open assignments
    (``completed`` on a merge, ``abandoned`` on a close); returns those it ended."""
    if state == "merged":
        review.state, review.merged_at = "merged", review.merged_at or at
    else:
        review.state, review.closed_at = "closed", review.closed_at or at
    ended = [row for row in rows if row.status in OPEN]
    for row in ended:
        row.status = "completed" if state == "merged" else "abandoned"
        row.ended_at = max(at, row.assigned_at)
    return ended


async def _reviewers_changed(
    session: AsyncSession,
    review: MrReview | None,
    payload: Mapping[str, Any],
    change: Mapping[str, Any],
    now: datetime,
) -> MrReview | None:
    """Humans changed the MR's reviewers in GitLab: end or add assignments to match."""
    before = {n.lower() for n in map(_username, change.get("previous") or []) if n}
    after = {n.lower() for n in map(_username, change.get("current") or []) if n}
    added, removed = after - before, before - after
    if not added and not removed:
        return review
    users = await _users(session, added | removed)
    attributes = payload.get("object_attributes") or {}
    if review is None:
        if not any(name in users for name in added):
            return None
        if attributes.get("state", "opened") != "opened":
            return None  # reviewers changed on a merged or closed MR: nothing to follow
        project = payload.get("project") or {}
        author = await session.scalar(
            select(User).where(User.gitlab_id == attributes.get("author_id"))
        )
        review = MrReview(
            project_id=int(project.get("id") or 0),
            project_path=str(project.get("path_with_namespace") or ""),
            mr_iid=int(attributes.get("iid") or 0),
            mr_id=attributes.get("id"),
            title=str(attributes.get("title") or "")[:500],
            web_url=str(attributes.get("url") or ""),
            author_id=author.id if author else None,
            author_username=author.gitlab_username if author else "",
            draft=is_draft(attributes),
            triggered_at=now,
        )
        session.add(review)
        await session.flush()
    rows = {
        row.user_id: row
        for row in (await session.scalars(_ASSIGNMENTS, {"review_id": review.id})).all()
    }
    for name in removed:
        user = users.get(name)
        row = rows.get(user.id) if user else None
        if row is not None and row.status in OPEN:
            row.status, row.ended_at = "removed", max(now, row.assigned_at)
    for name in added if review.state not in ENDED else ():  # no load on an ended review
        user = users.get(name)
        if user is None:
            continue
        row = rows.get(user.id)
        if row is None:
            session.add(
                ReviewerAssignment(
                    review_id=review.id, user_id=user.id, role="manual", assigned_at=now
                )
            )
        elif row.status not in OPEN:
            row.status, row.ended_at, row.assigned_at = "active", None, now
    return review


async def gitlab_ids(sessions: Sessions, usernames: Iterable[str]) -> dict[str, int]:
    """The stored GitLab ids of ``usernames`` (lower-cased keys); unknown ones are absent.

    Two columns read through Core: no user row is loaded into a session for this."""
    wanted = sorted({name.lower() for name in usernames})
    if not wanted:
        return {}
    async with sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(_GITLAB_IDS, {"names": wanted})
    return {str(name).lower(): i for name, i in rows.all() if i is not None}


class UserReader(Protocol):
    """What :func:`reviewer_ids` asks GitLab (``bot.gitlab.GitLab`` provides it)."""

    async def user(self, username: str) -> GitLabUser | None: ...


async def reviewer_ids(
    sessions: Sessions, gitlab: UserReader, usernames: Sequence[str], mr: MergeRequestInfo
) -> list[int]:
    """The GitLab ids of ``usernames``, in their order and each once (names are compared
    without case), for ``PUT .../merge_requests/:iid`` (``reviewer_ids``): those of
    ``mr``'s current reviewers from ``mr``, the stored ones (``sync-users`` stores them),
    the others asked of GitLab (``GET /users?username=``) all at once, so that a roll
    waits for one more round trip at most, not one per missing id. A user GitLab does
    not know is left out, with a warning; a GitLab failure raises
    (``bot.gitlab.GitLabError``)."""
    names = {name.lower(): name for name in reversed(usernames)}  # the first spelling
    wanted = list(dict.fromkeys(name.lower() for name in usernames))
    known = await gitlab_ids(sessions, wanted)
    known.update((n.lower(), i) for n, i in zip(mr.reviewers, mr.reviewer_ids, strict=True))
    missing = [name for name in wanted if name not in known]
    asked = await gather_all(*(gitlab.user(names[name]) for name in missing))
    for name, user in zip(missing, asked, strict=True):
        if user is None:
            log.warning("GitLab knows no user %s; not set as reviewer", names[name])
        else:
            known[name] = user.id
    return list(dict.fromkeys(known[name] for name in wanted if name in known))


# --------------------------------------------------------------------------- repair


class MergeRequestReader(Protocol):
    """What the repair reads from GitLab (``bot.gitlab.GitLab`` provides it)."""

    async def merge_request(self, ref: MergeRequestRef) -> MergeRequestInfo: ...


@dataclass(frozen=True)
class Repair:
    """One stored review set right: ``closed_as`` the state it was ended with (``merged``
    or ``closed``, ``None`` when only assignments changed), ``released`` the usernames
    whose assignments ended, ``why`` what disagreed with GitLab."""

    where: str
    why: str
    closed_as: str | None
    released: tuple[str, ...]

    def line(self, dry_run: bool = False) -> str:
        """One line for the operator: ``acme/shop!1: merged in GitLab ...: marked merged``."""
        done: list[str] = []
        if self.closed_as:
            done.append(f"{'would mark' if dry_run else 'marked'} {self.closed_as}")
        if self.released:
            names = ", ".join(f"@{name}" for name in self.released)
            done.append(f"{'would release' if dry_run else 'released'} {names}")
        return f"{self.where}: {self.why}: {'; '.join(done)}"


@dataclass
class RepairReport:
    """What ``repair`` found: reviews checked, set right, and those GitLab would not show."""

    checked: int = 0
    repairs: list[Repair] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "where: reason"

    def summary(self, dry_run: bool = False) -> str:
        released = sum(len(r.released) for r in self.repairs)
        fixed = "would be fixed" if dry_run else "fixed"
        text = (
            f"{self.checked} stored review(s) checked against GitLab, "
            f"{len(self.repairs)} {fixed} ({released} assignment(s) released), "
            f"{len(self.unreadable)} unreadable"
        )
        return text + ("; dry run, nothing changed" if dry_run else "")


async def repair(
    sessions: Sessions,
    gitlab: MergeRequestReader,
    *,
    dry_run: bool = False,
    concurrency: int = 8,
) -> RepairReport:
    """Re-read from GitLab every stored review still open (or with open assignments) and
    set right those that disagree with it.

    - GitLab says merged or closed: the review takes that state, with GitLab's
      ``merged_at``/``closed_at`` (kept when already stored), and its open assignments
      end: ``completed`` (merged) or ``abandoned`` (closed) for those assigned before the
      end or who answered before it, ``removed`` for those assigned after it (a roll on
      an already merged MR: they never had anything to review).
    - GitLab says open: an open assignment of someone who is no longer among the MR's
      reviewers ends (``removed``). A review stored as merged or closed stays so (only
      GitLab's ``reopen`` event reopens one).

    At most ``concurrency`` GitLab reads run at once; each review is fixed in its own
    transaction, re-read inside it, so running it twice (or beside a live bot) changes
    nothing more. ``dry_run`` computes the same fixes and rolls them back.

    An MR GitLab does not show (404, 403) is listed in ``unreadable`` and left alone.
    Raises ``GitLabUnavailable`` (GitLab down) or ``GitLabForbidden`` with status 401
    (the token is refused) at the first such answer; fixes already made stay.
    """
    async with sessions() as session:
        active = (
            select(ReviewerAssignment.id)
            .where(
                ReviewerAssignment.review_id == MrReview.id,
                ReviewerAssignment.status.in_(OPEN),
            )
            .exists()
        )
        rows = (
            await session.execute(
                select(MrReview.id, MrReview.project_id, MrReview.project_path, MrReview.mr_iid)
                .where(or_(MrReview.state == "open", active))
                .order_by(MrReview.id)
            )
        ).all()
    report = RepairReport(checked=len(rows))
    limit = asyncio.Semaphore(max(1, concurrency))

    async def check(review_id: int, project_id: int, path: str, iid: int) -> None:
        where = f"{path or project_id}!{iid}"
        async with limit:
            try:
                mr = await gitlab.merge_request(MergeRequestRef(str(project_id), iid))
            except GitLabUnavailable:
                raise
            except GitLabError as e:
                if isinstance(e, GitLabForbidden) and e.status == 401:
                    raise
                report.unreadable.append(f"{where}: {e}")
                return
        fixed = await _repair_one(sessions, review_id, mr, dry_run)
        if fixed is not None:
            report.repairs.append(fixed)

    try:
        async with asyncio.TaskGroup() as group:
            for row in rows:
                group.create_task(check(*row))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    report.repairs.sort(key=lambda r: r.where)
    report.unreadable.sort()
    return report


async def _repair_one(
    sessions: Sessions, review_id: int, mr: MergeRequestInfo, dry_run: bool
) -> Repair | None:
    now = utcnow()
    async with sessions() as session:
        review = await session.get(MrReview, review_id)
        if review is None:
            return None
        found = await session.execute(
            select(ReviewerAssignment, User.gitlab_username)
            .join(User, User.id == ReviewerAssignment.user_id)
            .where(ReviewerAssignment.review_id == review.id)
            .order_by(User.gitlab_username)
        )
        rows = [(row, name) for row, name in found.all() if row.status in OPEN]
        fixed = _repaired(review, rows, mr, now)
        if fixed is not None and not dry_run:
            await session.commit()
        else:
            await session.rollback()
        return fixed


def _repaired(
    review: MrReview,
    rows: Sequence[tuple[ReviewerAssignment, str]],
    mr: MergeRequestInfo,
    now: datetime,
) -> Repair | None:
    """Apply to ``review`` and its open assignments ``rows`` what GitLab says of ``mr``."""
    where = _where(review)
    if mr.state in ENDED:
        if review.state == "open":
            at = (mr.merged_at if mr.state == "merged" else mr.closed_at) or now
            why = f"{mr.state} in GitLab but open here"
            closed_as: str | None = mr.state
            if mr.state == "merged":
                review.state, review.merged_at = "merged", review.merged_at or at
            else:
                review.state, review.closed_at = "closed", review.closed_at or at
        elif rows:
            stored = review.merged_at if review.state == "merged" else review.closed_at
            at, closed_as = stored or now, None
            why = f"{review.state}, yet with open assignments"
        else:
            return None
        done = "completed" if review.state == "merged" else "abandoned"
        for row, _name in rows:
            answered = any(
                t is not None and t <= at for t in (row.first_response_at, row.approved_at)
            )
            row.status = done if row.assigned_at <= at or answered else "removed"
            row.ended_at = max(at, row.assigned_at)
        return Repair(where, why, closed_as, tuple(name for _row, name in rows))
    if mr.state != "opened":
        return None  # locked: being merged right now; the merge event will follow
    current = {name.lower() for name in mr.reviewers}
    gone = [(row, name) for row, name in rows if name.lower() not in current]
    if not gone:
        return None
    for row, _name in gone:
        row.status, row.ended_at = "removed", now
    why = "no longer among the reviewers in GitLab"
    return Repair(where, why, None, tuple(name for _row, name in gone))
