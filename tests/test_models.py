"""The schema's guarantees, on both engines: keys, cascades, checks and UTC timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.models import JobRun, MrReview, ReviewerAssignment, Team, User, WebhookDelivery

Sessions = async_sessionmaker[AsyncSession]


def _review(iid: int) -> MrReview:
    return MrReview(project_id=1, project_path="g/p", mr_iid=iid, web_url="u", author_username="a")


async def _user(sessions: Sessions, name: str = "alice") -> int:
    async with sessions.begin() as session:
        team = Team(name=f"team-{name}")
        user = User(gitlab_username=name, mattermost_username=name, team=team)
        session.add(user)
        await session.flush()
        return user.id


async def test_delivery_key_is_unique(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        session.add(WebhookDelivery(delivery_key="k1", event_type="Note Hook", payload={"a": 1}))
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            session.add(WebhookDelivery(delivery_key="k1", event_type="Note Hook", payload={}))
    async with sessions() as session:
        stored = (await session.scalars(select(WebhookDelivery))).all()
    assert [(d.delivery_key, d.payload, d.status, d.attempts) for d in stored] == [
        ("k1", {"a": 1}, "pending", 0)
    ]


async def test_job_run_is_unique_per_period(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        session.add(JobRun(job_name="digest", period="2026-11-26"))
        session.add(JobRun(job_name="digest", period="2026-11-27"))
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            session.add(JobRun(job_name="digest", period="2026-11-26"))


async def test_usernames_are_unique(sessions: Sessions) -> None:
    await _user(sessions, "alice")
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            session.add(User(gitlab_username="alice"))


async def test_deleting_a_review_deletes_its_assignments(sessions: Sessions) -> None:
    user_id = await _user(sessions)
    async with sessions.begin() as session:
        review = MrReview(
            project_id=1,
            project_path="g/p",
            mr_iid=7,
            web_url="https://gl/g/p/-/merge_requests/7",
            author_username="bob",
        )
        session.add(review)
        await session.flush()
        session.add(ReviewerAssignment(review_id=review.id, user_id=user_id, role="codeowner"))
        review_id = review.id
    async with sessions.begin() as session:
        await session.execute(delete(MrReview).where(MrReview.id == review_id))
    async with sessions() as session:
        count = await session.scalar(select(func.count()).select_from(ReviewerAssignment))
    assert count == 0


async def test_one_review_per_merge_request(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        session.add(_review(7))
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            session.add(
                MrReview(
                    project_id=1, project_path="g/p", mr_iid=7, web_url="u", author_username="a"
                )
            )


async def test_assignment_role_is_checked(sessions: Sessions) -> None:
    user_id = await _user(sessions)
    async with sessions.begin() as session:
        review = MrReview(
            project_id=1, project_path="g/p", mr_iid=1, web_url="u", author_username="a"
        )
        session.add(review)
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            session.add(ReviewerAssignment(review_id=review.id, user_id=user_id, role="wizard"))


async def test_foreign_keys_are_enforced(sessions: Sessions) -> None:
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            session.add(ReviewerAssignment(review_id=999, user_id=999, role="team"))


async def test_timestamps_come_back_as_aware_utc(sessions: Sessions) -> None:
    paris = timezone(timedelta(hours=1))
    moment = datetime(2026, 11, 26, 10, 30, 15, 123000, tzinfo=paris)
    async with sessions.begin() as session:
        session.add(JobRun(job_name="badges", period="p", started_at=moment))
    async with sessions() as session:
        run = await session.scalar(select(JobRun))
    assert run is not None
    assert run.started_at == moment
    assert run.started_at.tzinfo == UTC
    assert run.started_at.hour == 9


async def test_naive_timestamps_are_refused(sessions: Sessions) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with sessions.begin() as session:
            session.add(JobRun(job_name="badges", period="p", started_at=datetime(2026, 1, 1)))
