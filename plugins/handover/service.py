"""The handover logic, free of transport: review requests, their answers, and which
silent requests are due a nudge or a hand-over.

Every state change is one conditional ``UPDATE ... WHERE`` on the request's row, so that
two clicks, a retry or two replicas change it once: the caller acts only when the update
took (``True``), after it is committed ("record before sending").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.models import MrReview, ReviewerAssignment, User
from plugins.handover.models import ReviewRequest

Sessions = async_sessionmaker[AsyncSession]
Step = Literal["nudge", "handover"]

# A request still waiting for its reviewer: not handed over, no final answer.
_OPEN = and_(
    ReviewRequest.handed_over_at.is_(None),
    or_(ReviewRequest.answer.is_(None), ReviewRequest.answer == "snoozed"),
)


async def _assignment_id(
    session: AsyncSession, project_path: str, iid: int, reviewer: str
) -> int | None:
    return await session.scalar(
        select(ReviewerAssignment.id)
        .join(MrReview, MrReview.id == ReviewerAssignment.review_id)
        .join(User, User.id == ReviewerAssignment.user_id)
        .where(
            MrReview.project_path == project_path,
            MrReview.mr_iid == iid,
            func.lower(User.gitlab_username) == reviewer.lower(),
        )
    )


async def record_request(
    sessions: Sessions,
    *,
    project_path: str,
    iid: int,
    reviewer: str,
    title: str,
    web_url: str,
    author: str,
    role: str,
    now: datetime,
) -> int:
    """Store a request to ``reviewer`` (GitLab username) on the MR; its id.

    A request to the same person on the same MR that is still open is reused (its clock
    starts again at ``now``, nudge and snooze cleared); otherwise a new round starts. The
    request is linked to the reviewer's assignment when the roulette recorded one.
    """
    for attempt in range(2):
        try:
            async with sessions.begin() as session:
                assignment = await _assignment_id(session, project_path, iid, reviewer)
                same = (
                    ReviewRequest.project_path == project_path,
                    ReviewRequest.mr_iid == iid,
                    func.lower(ReviewRequest.reviewer) == reviewer.lower(),
                )
                current = await session.scalar(select(ReviewRequest).where(*same, _OPEN))
                if current is not None:
                    current.requested_at, current.nudged_at = now, None
                    current.answer, current.snoozed_until = None, None
                    current.assignment_id = assignment or current.assignment_id
                    return current.id
                last = await session.scalar(select(func.max(ReviewRequest.round)).where(*same))
                row = ReviewRequest(
                    assignment_id=assignment,
                    project_path=project_path,
                    mr_iid=iid,
                    reviewer=reviewer,
                    round=int(last or 0) + 1,
                    title=title[:500],
                    web_url=web_url[:1000],
                    author=author[:255],
                    role=role[:100],
                    requested_at=now,
                )
                session.add(row)
                await session.flush()
                return row.id
        except IntegrityError:  # the same request recorded at once elsewhere: read it
            if attempt:
                raise
    raise AssertionError("unreachable")


async def set_post(sessions: Sessions, request_id: int, post_id: str, chat_user_id: str) -> None:
    """Remember the DM that carries the request (its post id, who it was made for)."""
    async with sessions.begin() as session:
        await session.execute(
            update(ReviewRequest)
            .where(ReviewRequest.id == request_id)
            .values(post_id=post_id, chat_user_id=chat_user_id)
        )


async def get(sessions: Sessions, request_id: int) -> ReviewRequest | None:
    """The request ``request_id``, or None."""
    async with sessions() as session:
        return await session.get(ReviewRequest, request_id)


async def _claim(session: AsyncSession, request_id: int, **values: object) -> bool:
    result = await session.execute(
        update(ReviewRequest)
        .where(ReviewRequest.id == request_id, _OPEN)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def accept(sessions: Sessions, request_id: int, now: datetime) -> bool:
    """Record an Accept: the request answered, and ``now`` as the assignment's first
    response unless an earlier one exists (a comment, an approval). False when the
    request was already answered or handed over (nothing changed)."""
    async with sessions.begin() as session:
        if not await _claim(session, request_id, answer="accepted", answered_at=now):
            return False
        assignment = await session.scalar(
            select(ReviewRequest.assignment_id).where(ReviewRequest.id == request_id)
        )
        if assignment is not None:
            await session.execute(
                update(ReviewerAssignment)
                .where(
                    ReviewerAssignment.id == assignment,
                    ReviewerAssignment.first_response_at.is_(None),
                )
                .values(first_response_at=now)
            )
            review = select(ReviewerAssignment.review_id).where(ReviewerAssignment.id == assignment)
            await session.execute(  # the review's first answer, as a comment would be
                update(MrReview)
                .where(MrReview.id == review.scalar_subquery(), MrReview.first_review_at.is_(None))
                .values(first_review_at=now)
            )
        return True


async def claim_pass(
    sessions: Sessions, request_id: int, now: datetime, reason: str | None
) -> bool:
    """Record a Pass before the hand-over happens; False when it was already answered or
    handed over (a second click, a retry): then nobody else must be picked."""
    async with sessions.begin() as session:
        return await _claim(
            session,
            request_id,
            answer="passed",
            answered_at=now,
            handed_over_at=now,
            reason=(reason or None) and reason[:255],
        )


async def claim_handover(sessions: Sessions, request_id: int, now: datetime, reason: str) -> bool:
    """Record an automatic hand-over of a silent request before it happens; False when
    the request is no longer open (answered, or handed over by another run)."""
    async with sessions.begin() as session:
        return await _claim(session, request_id, handed_over_at=now, reason=reason[:255])


async def release(sessions: Sessions, request_id: int) -> None:
    """Undo a claimed pass whose hand-over failed, so that the reviewer may try again."""
    async with sessions.begin() as session:
        await session.execute(
            update(ReviewRequest)
            .where(ReviewRequest.id == request_id, ReviewRequest.answer == "passed")
            .values(answer=None, answered_at=None, handed_over_at=None, reason=None)
        )


async def snooze(sessions: Sessions, request_id: int, until: datetime, now: datetime) -> bool:
    """Snooze an open request until ``until``: its nudge (and hand-over clock) waits.
    False when it was already answered or handed over."""
    async with sessions.begin() as session:
        return await _claim(
            session, request_id, answer="snoozed", answered_at=now, snoozed_until=until
        )


async def claim_nudge(sessions: Sessions, request_id: int, now: datetime) -> bool:
    """Record the one reminder of a request before it is sent; False when it was
    already nudged, answered or handed over."""
    async with sessions.begin() as session:
        result = await session.execute(
            update(ReviewRequest)
            .where(ReviewRequest.id == request_id, ReviewRequest.nudged_at.is_(None), _OPEN)
            .values(nudged_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Waiting:
    """An open request whose reviewer has not answered in any way yet, with the
    reviewer's timezone (IANA name, None: UTC)."""

    request: ReviewRequest
    timezone: str | None

    @property
    def since(self) -> datetime:
        """Where the reviewer's clock starts: the request, or the end of its snooze."""
        snoozed = self.request.snoozed_until
        requested = self.request.requested_at
        return max(requested, snoozed) if snoozed is not None else requested


async def waiting(sessions: Sessions) -> list[Waiting]:
    """Open requests whose assignment is still active, without a first response or an
    approval, on an open MR: the ones a nudge or a hand-over may concern."""
    async with sessions() as session:
        rows = await session.execute(
            select(ReviewRequest, User.timezone)
            .join(ReviewerAssignment, ReviewerAssignment.id == ReviewRequest.assignment_id)
            .join(MrReview, MrReview.id == ReviewerAssignment.review_id)
            .join(User, User.id == ReviewerAssignment.user_id)
            .where(
                _OPEN,
                ReviewerAssignment.status == "active",
                ReviewerAssignment.first_response_at.is_(None),
                ReviewerAssignment.approved_at.is_(None),
                MrReview.state == "open",
            )
            .order_by(ReviewRequest.id)
        )
        return [Waiting(request, timezone) for request, timezone in rows.all()]


def next_step(
    waited_hours: float, *, nudged: bool, nudge_after: float, reassign_after: float | None
) -> Step | None:
    """What a silent request is due after ``waited_hours`` working hours of its reviewer:
    the hand-over past ``reassign_after`` (None: never), else the one nudge past
    ``nudge_after`` when not sent yet, else nothing."""
    if reassign_after is not None and waited_hours >= reassign_after:
        return "handover"
    if not nudged and waited_hours >= nudge_after:
        return "nudge"
    return None
