"""The handover service on both engines: requests, answers once, nudges once, what waits."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.models import MrReview, ReviewerAssignment, User
from plugins.handover import service
from plugins.handover.config import HandoverConfig
from plugins.ooo.api import away_days, away_days_of
from plugins.ooo.models import OooStatus

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday


async def _seed(sessions: Sessions) -> int:
    async with sessions.begin() as session:
        bob = User(gitlab_username="bob", mattermost_username="bob", timezone="Europe/Paris")
        review = MrReview(
            project_id=1, project_path="acme/shop", mr_iid=7, web_url="u", author_username="al"
        )
        session.add_all([bob, review])
        await session.flush()
        assignment = ReviewerAssignment(
            review_id=review.id, user_id=bob.id, role="team", assigned_at=NOW
        )
        session.add(assignment)
        await session.flush()
        return assignment.id


async def _request(sessions: Sessions, reviewer: str = "bob") -> int:
    return await service.record_request(
        sessions,
        project_path="acme/shop",
        iid=7,
        reviewer=reviewer,
        title="Fix",
        web_url="u",
        author="al",
        role="team",
        now=NOW,
    )


async def test_accept_once_sets_the_first_response(sessions: Sessions) -> None:
    assignment = await _seed(sessions)
    request = await _request(sessions)
    assert (await service.get(sessions, request)).assignment_id == assignment  # type: ignore[union-attr]
    assert await service.accept(sessions, request, NOW + timedelta(hours=1))
    assert not await service.accept(sessions, request, NOW + timedelta(hours=2))
    assert not await service.claim_pass(sessions, request, NOW, None)
    async with sessions() as session:
        row = await session.get(ReviewerAssignment, assignment)
        assert row is not None and row.first_response_at == NOW + timedelta(hours=1)
        review = await session.get(MrReview, row.review_id)
    assert review is not None and review.first_review_at == NOW + timedelta(hours=1)


async def test_an_earlier_first_response_stays(sessions: Sessions) -> None:
    assignment = await _seed(sessions)
    async with sessions.begin() as session:
        row = await session.get(ReviewerAssignment, assignment)
        assert row is not None
        row.first_response_at = NOW
    request = await _request(sessions)
    assert await service.accept(sessions, request, NOW + timedelta(hours=3))
    async with sessions() as session:
        assert (await session.get(ReviewerAssignment, assignment)).first_response_at == NOW  # type: ignore[union-attr]


async def test_a_pass_is_claimed_once_and_can_be_released(sessions: Sessions) -> None:
    await _seed(sessions)
    request = await _request(sessions)
    assert await service.claim_pass(sessions, request, NOW, "busy")
    assert not await service.claim_pass(sessions, request, NOW, "busy")
    assert not await service.claim_handover(sessions, request, NOW, "late")
    await service.release(sessions, request)
    assert await service.claim_pass(sessions, request, NOW, None)
    row = await service.get(sessions, request)
    assert row is not None and (row.answer, row.reason) == ("passed", None)


async def test_rounds_and_reuse(sessions: Sessions) -> None:
    await _seed(sessions)
    first = await _request(sessions)
    assert await _request(sessions) == first  # still open: the same request
    assert await service.claim_pass(sessions, first, NOW, None)
    second = await _request(sessions)
    assert second != first
    assert (await service.get(sessions, second)).round == 2  # type: ignore[union-attr]


async def test_nudge_once_and_snooze_moves_the_clock(sessions: Sessions) -> None:
    await _seed(sessions)
    request = await _request(sessions)
    [waiting] = await service.waiting(sessions)
    assert (waiting.request.id, waiting.timezone, waiting.since) == (request, "Europe/Paris", NOW)
    until = NOW + timedelta(hours=2)
    assert await service.snooze(sessions, request, until, NOW)
    [waiting] = await service.waiting(sessions)
    assert waiting.since == until
    assert await service.claim_nudge(sessions, request, NOW)
    assert not await service.claim_nudge(sessions, request, NOW)
    assert await service.accept(sessions, request, NOW)  # a snoozed request may still be accepted
    assert await service.waiting(sessions) == []


async def test_waiting_leaves_out_answered_assignments(sessions: Sessions) -> None:
    assignment = await _seed(sessions)
    await _request(sessions)
    async with sessions.begin() as session:
        row = await session.get(ReviewerAssignment, assignment)
        assert row is not None
        row.approved_at = NOW  # approved in GitLab without a click
    assert await service.waiting(sessions) == []
    await _request(sessions, reviewer="nobody")  # no assignment: never due
    assert await service.waiting(sessions) == []


def test_next_step() -> None:
    def step(hours: float, nudged: bool = False, reassign: float | None = 16) -> object:
        return service.next_step(hours, nudged=nudged, nudge_after=4, reassign_after=reassign)

    assert [step(3.9), step(4), step(5, nudged=True), step(16), step(99, reassign=None)] == [
        None,
        "nudge",
        None,
        "handover",
        "nudge",
    ]


def test_config_off() -> None:
    assert HandoverConfig.model_validate({"reassign_after": False}).reassign_after is None
    assert HandoverConfig.model_validate({"reassign_after": "off"}).reassign_after is None
    assert HandoverConfig().nudge_after == 4 and HandoverConfig().reassign_after == 16


async def test_away_days(sessions: Sessions) -> None:
    await _seed(sessions)
    async with sessions.begin() as session:
        bob = await session.scalar(select(User).where(User.gitlab_username == "bob"))
        assert bob is not None
        session.add(
            OooStatus(user_id=bob.id, start_date=date(2026, 12, 8), end_date=date(2026, 12, 9))
        )
        session.add(
            OooStatus(
                user_id=bob.id,
                start_date=date(2026, 12, 11),
                end_date=date(2026, 12, 11),
                cancelled_at=NOW,
            )
        )
    async with sessions() as session:
        assert await away_days(session, "BOB", date(2026, 12, 7), date(2026, 12, 12)) == {
            date(2026, 12, 8),
            date(2026, 12, 9),
        }
        assert await away_days(session, "bob", date(2026, 12, 9), date(2026, 12, 8)) == set()
        assert await away_days(session, "eve", date(2026, 12, 1), date(2026, 12, 31)) == set()
        # Several people in one query, each within their own span.
        spans = {
            "BOB": (date(2026, 12, 9), date(2026, 12, 20)),
            "alice": (date(2026, 12, 1), date(2026, 12, 31)),
            "eve": (date(2026, 12, 1), date(2026, 12, 31)),
            "bob": (date(2026, 12, 10), date(2026, 12, 1)),  # reversed: nothing
        }
        assert await away_days_of(session, spans) == {
            "BOB": {date(2026, 12, 9)},
            "alice": set(),
            "eve": set(),
            "bob": set(),
        }
