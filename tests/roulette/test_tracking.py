"""Review records: a merged or closed review never reopens except through GitLab's
``reopen``, and ``repair`` sets right records that disagree with GitLab (both engines)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db import create_engine, create_sessionmaker
from bot.gitlab import GitLab, GitLabUser, MergeRequestInfo, MergeRequestRef
from bot.models import MrReview, ReviewerAssignment, User
from bot.sandbox.gitlab import GitLabStandIn
from bot.settings import Settings
from bot.users import sync_organisation
from plugins.roulette import tracking
from tests.conftest import until

PROJECT = "acme/shop"
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(org: Settings) -> AsyncIterator[Sessions]:
    engine = create_engine(org.async_database_url)
    made = create_sessionmaker(engine)
    await sync_organisation(made, org)
    yield made
    await engine.dispose()


@pytest.fixture
def metrics() -> tracking.ReviewMetrics:
    return tracking.ReviewMetrics(CollectorRegistry())


async def _roll(gitlab: GitLab, sessions: Sessions, iid: int = 1, *names: str) -> None:
    mr = await gitlab.merge_request(MergeRequestRef(PROJECT, iid))
    picks = [(name, "team") for name in names or ("bob", "dave")]
    await tracking.record_roll(sessions, mr, "backend", picks, [], [])


async def _mr(gitlab: GitLab, iid: int = 1) -> MergeRequestInfo:
    return await gitlab.merge_request(MergeRequestRef(PROJECT, iid))


async def _state(sessions: Sessions, iid: int = 1) -> tuple[str, dict[str, str]]:
    async with sessions() as session:
        review = await session.scalar(select(MrReview).where(MrReview.mr_iid == iid))
        assert review is not None
        rows = await session.execute(
            select(User.gitlab_username, ReviewerAssignment.status)
            .join(User, User.id == ReviewerAssignment.user_id)
            .where(ReviewerAssignment.review_id == review.id)
        )
        return review.state, {name: status for name, status in rows.all()}


def _event(standin: GitLabStandIn, action: str, iid: int = 1, **extra: Any) -> dict[str, Any]:
    mr = standin.merge_request(PROJECT, iid)
    attributes = {
        "iid": iid,
        "id": mr["id"],
        "state": mr["state"],
        "action": action,
        "draft": mr["draft"],
        "work_in_progress": mr["draft"],
        "title": mr["title"],
    }
    project = {"id": mr["project_id"], "path_with_namespace": PROJECT}
    return {
        "object_attributes": attributes,
        "project": project,
        "user": {"username": "alice"},
    } | extra


# --------------------------------------------------------------- never out of merged/closed


async def test_a_roll_records_its_author_and_every_reviewer_named(
    gitlab: GitLab, sessions: Sessions
) -> None:
    mr = await _mr(gitlab)
    await tracking.record_roll(sessions, mr, "backend", [("Bob", "team")], ["DAVE"], [])
    async with sessions() as session:
        review = await session.scalar(select(MrReview).where(MrReview.mr_iid == 1))
        author = await session.scalar(select(User).where(User.gitlab_username == mr.author))
    assert review is not None and author is not None
    assert (review.author_id, review.author_username) == (author.id, mr.author)
    assert await _state(sessions) == ("open", {"bob": "active", "dave": "active"})
    # Released: a later --force that keeps only erin ends the others' assignments.
    again = await _mr(gitlab)
    await tracking.record_roll(sessions, again, "backend", [("erin", "external")], [], ["bob"])
    assert await _state(sessions) == (
        "open",
        {"bob": "removed", "dave": "active", "erin": "active"},
    )


async def test_a_roll_on_a_merged_review_writes_nothing(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn, metrics: tracking.ReviewMetrics
) -> None:
    await _roll(gitlab, sessions)
    standin.merge(PROJECT, 1)
    await tracking.merge_request_event(sessions, metrics, _event(standin, "merge"))
    assert await _state(sessions) == ("merged", {"bob": "completed", "dave": "completed"})

    merged = await gitlab.merge_request(MergeRequestRef(PROJECT, 1))
    with pytest.raises(tracking.ReviewEnded, match="merged"):
        await tracking.record_roll(sessions, merged, "backend", [("erin", "external")], [], [])
    # Even a caller holding a stale "opened" copy of the MR cannot reopen the record.
    stale = merged.__class__(**{**merged.__dict__, "state": "opened"})
    with pytest.raises(tracking.ReviewEnded, match="merged"):
        await tracking.record_roll(sessions, stale, "backend", [("bob", "team")], ["dave"], [])
    assert await _state(sessions) == ("merged", {"bob": "completed", "dave": "completed"})


async def test_no_review_is_created_for_a_merged_or_closed_mr(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn
) -> None:
    standin.close(PROJECT, 1)
    closed = await gitlab.merge_request(MergeRequestRef(PROJECT, 1))
    with pytest.raises(tracking.ReviewEnded, match="closed"):
        await tracking.record_roll(sessions, closed, "backend", [("bob", "team")], [], [])
    async with sessions() as session:
        assert (await session.scalars(select(MrReview))).all() == []


async def test_late_and_repeated_events_leave_a_merged_review_alone(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn, metrics: tracking.ReviewMetrics
) -> None:
    await _roll(gitlab, sessions)
    standin.merge(PROJECT, 1)
    await tracking.merge_request_event(sessions, metrics, _event(standin, "merge"))
    # Delivered late (two workers, or a retry): an approval, a second merge, a close.
    approval = _event(standin, "approved") | {"user": {"username": "bob"}}
    await tracking.merge_request_event(sessions, metrics, approval)
    await tracking.merge_request_event(sessions, metrics, _event(standin, "merge"))
    await tracking.merge_request_event(sessions, metrics, _event(standin, "close"))
    await tracking.merge_request_event(sessions, metrics, _event(standin, "reopen"))
    # Someone adds a reviewer on the merged MR in GitLab: no load for them.
    changes = {"reviewers": {"previous": [], "current": [{"username": "erin"}]}}
    await tracking.merge_request_event(
        sessions, metrics, _event(standin, "update", changes=changes)
    )
    assert await _state(sessions) == ("merged", {"bob": "completed", "dave": "completed"})
    assert metrics.completed._value.get() == 1
    assert metrics.abandoned._value.get() == 0


async def test_only_gitlabs_reopen_reopens_a_closed_review(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn, metrics: tracking.ReviewMetrics
) -> None:
    await _roll(gitlab, sessions)
    standin.close(PROJECT, 1)
    await tracking.merge_request_event(sessions, metrics, _event(standin, "close"))
    assert await _state(sessions) == ("closed", {"bob": "abandoned", "dave": "abandoned"})
    standin.reopen(PROJECT, 1)
    await tracking.merge_request_event(sessions, metrics, _event(standin, "reopen"))
    assert await _state(sessions) == ("open", {"bob": "active", "dave": "active"})


async def test_reviewers_added_on_a_merged_mr_create_no_review(
    sessions: Sessions, standin: GitLabStandIn, metrics: tracking.ReviewMetrics
) -> None:
    standin.merge(PROJECT, 1)
    changes = {"reviewers": {"previous": [], "current": [{"username": "erin"}]}}
    await tracking.merge_request_event(
        sessions, metrics, _event(standin, "update", changes=changes)
    )
    async with sessions() as session:
        assert (await session.scalars(select(MrReview))).all() == []


@pytest.mark.parametrize("key", ["draft", "work_in_progress"])
async def test_a_draft_change_in_either_shape_is_stored(
    gitlab: GitLab,
    sessions: Sessions,
    standin: GitLabStandIn,
    metrics: tracking.ReviewMetrics,
    key: str,
) -> None:
    await _roll(gitlab, sessions)
    to_draft = {key: {"previous": False, "current": True}}
    await tracking.merge_request_event(
        sessions, metrics, _event(standin, "update", changes=to_draft)
    )
    async with sessions() as session:
        assert await session.scalar(select(MrReview.draft)) is True


# --------------------------------------------------------------- event times


async def _rolled_hours_ago(gitlab: GitLab, sessions: Sessions, hours: float) -> datetime:
    """A roll of bob and dave on !1 whose assignments were made ``hours`` ago."""
    await _roll(gitlab, sessions)
    assigned = datetime.now(UTC) - timedelta(hours=hours)
    async with sessions.begin() as session:
        for row in (await session.scalars(select(ReviewerAssignment))).all():
            row.assigned_at = assigned
    return assigned


async def _times(sessions: Sessions) -> dict[str, ReviewerAssignment]:
    async with sessions() as session:
        rows = await session.execute(
            select(User.gitlab_username, ReviewerAssignment).join(
                User, User.id == ReviewerAssignment.user_id
            )
        )
        return {name: row for name, row in rows.all()}


def _observed(metrics: tracking.ReviewMetrics, name: str) -> tuple[float, float]:
    """(count, sum) of one of ``metrics``' histograms."""
    samples = {s.name: s.value for m in metrics.ttfr.collect() for s in m.samples}
    samples |= {s.name: s.value for m in metrics.time_to_approval.collect() for s in m.samples}
    return samples[f"{name}_count"], samples[f"{name}_sum"]


async def test_events_processed_late_are_stored_as_of_their_delivery(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn, metrics: tracking.ReviewMetrics
) -> None:
    # An outage or a backlog delays processing: the times are when GitLab's hooks came.
    assigned = await _rolled_hours_ago(gitlab, sessions, 3)
    commented = assigned + timedelta(hours=1)
    approved = assigned + timedelta(hours=2)
    merged = assigned + timedelta(hours=2, minutes=30)
    assert await tracking.reviewer_commented(
        sessions,
        metrics,
        standin.merge_request(PROJECT, 1)["project_id"],
        1,
        "bob",
        "LGTM?",
        commented,
    )
    approval = _event(standin, "approved") | {"user": {"username": "dave"}}
    await tracking.merge_request_event(sessions, metrics, approval, approved)
    standin.merge(PROJECT, 1)
    await tracking.merge_request_event(sessions, metrics, _event(standin, "merge"), merged)

    rows = await _times(sessions)
    assert rows["bob"].first_response_at == commented
    assert rows["dave"].first_response_at == rows["dave"].approved_at == approved
    assert rows["bob"].ended_at == rows["dave"].ended_at == merged
    async with sessions() as session:
        review = await session.scalar(select(MrReview))
        assert review is not None
        assert (review.first_review_at, review.approved_at) == (commented, approved)
        assert review.merged_at == merged
    assert _observed(metrics, "review_ttfr_seconds") == (2, 3600 + 7200)
    assert _observed(metrics, "review_time_to_approval_seconds") == (1, 7200)


async def test_an_event_received_before_the_assignment_is_timed_at_it(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn, metrics: tracking.ReviewMetrics
) -> None:
    # The roll was processed after the reviewer's note and approval had come in: nothing
    # is stored before the assignment, and no duration is negative.
    assigned = await _rolled_hours_ago(gitlab, sessions, 1)
    earlier = assigned - timedelta(minutes=10)
    project_id = standin.merge_request(PROJECT, 1)["project_id"]
    assert await tracking.reviewer_commented(sessions, metrics, project_id, 1, "bob", "hm", earlier)
    approval = _event(standin, "approved") | {"user": {"username": "dave"}}
    await tracking.merge_request_event(sessions, metrics, approval, earlier)
    removed = _event(
        standin,
        "update",
        changes={"reviewers": {"previous": [{"username": "bob"}], "current": []}},
    )
    await tracking.merge_request_event(sessions, metrics, removed, earlier)

    rows = await _times(sessions)
    assert rows["bob"].first_response_at == rows["bob"].ended_at == assigned
    assert rows["dave"].first_response_at == rows["dave"].approved_at == assigned
    async with sessions() as session:
        review = await session.scalar(select(MrReview))
        assert review is not None and review.first_review_at == assigned
    assert _observed(metrics, "review_ttfr_seconds") == (2, 0)
    assert _observed(metrics, "review_time_to_approval_seconds") == (1, 0)


async def test_an_approval_before_the_assignment_is_the_first_review_at_it(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn, metrics: tracking.ReviewMetrics
) -> None:
    # No comment: the approval, received before the roll was processed, is the review's
    # first review, timed at the approver's assignment, not before it.
    assigned = await _rolled_hours_ago(gitlab, sessions, 1)
    approval = _event(standin, "approved") | {"user": {"username": "dave"}}
    await tracking.merge_request_event(sessions, metrics, approval, assigned - timedelta(hours=2))
    async with sessions() as session:
        review = await session.scalar(select(MrReview))
        assert review is not None and review.first_review_at == assigned


async def test_an_event_time_is_never_after_now(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn, metrics: tracking.ReviewMetrics
) -> None:
    # A replica whose clock runs ahead received it: stored as of now, not in the future.
    await _roll(gitlab, sessions)
    ahead = datetime.now(UTC) + timedelta(hours=1)
    project_id = standin.merge_request(PROJECT, 1)["project_id"]
    assert await tracking.reviewer_commented(sessions, metrics, project_id, 1, "bob", "ok", ahead)
    answered = (await _times(sessions))["bob"].first_response_at
    assert answered is not None and answered < ahead - timedelta(minutes=50)


# --------------------------------------------------------------- repair


async def _corrupt(sessions: Sessions, iid: int, *names: str) -> None:
    """What a /roulette on a merged MR did before the fix: the review back to open, the
    assignments active again (one of them assigned only now)."""
    async with sessions.begin() as session:
        review = await session.scalar(select(MrReview).where(MrReview.mr_iid == iid))
        assert review is not None
        review.state = "open"
        rows = (
            await session.scalars(
                select(ReviewerAssignment).where(ReviewerAssignment.review_id == review.id)
            )
        ).all()
        for row in rows:
            row.status, row.ended_at = "active", None
        users = (await session.scalars(select(User).where(User.gitlab_username.in_(names)))).all()
        later = datetime.now(UTC) + timedelta(minutes=5)
        for user in users:
            session.add(
                ReviewerAssignment(
                    review_id=review.id, user_id=user.id, role="external", assigned_at=later
                )
            )


async def test_repair_closes_a_corrupted_review_and_leaves_healthy_ones(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn, metrics: tracking.ReviewMetrics
) -> None:
    standin.add_merge_request(PROJECT, author="erin", changes=["web/app.ts"])  # !2, healthy
    await _roll(gitlab, sessions, 1, "bob", "dave")
    await _roll(gitlab, sessions, 2, "bob", "frank")
    standin.set_reviewers(PROJECT, 2, ["bob", "frank"])
    merged = standin.merge(PROJECT, 1)
    await tracking.merge_request_event(sessions, metrics, _event(standin, "merge"))
    await _corrupt(sessions, 1, "erin")
    assert await _state(sessions, 1) == (
        "open",
        {"bob": "active", "dave": "active", "erin": "active"},
    )
    healthy = await _state(sessions, 2)

    dry = await tracking.repair(sessions, gitlab, dry_run=True)
    assert [r.where for r in dry.repairs] == ["acme/shop!1"]
    assert await _state(sessions, 1) == (
        "open",
        {"bob": "active", "dave": "active", "erin": "active"},
    )

    report = await tracking.repair(sessions, gitlab)
    assert report.checked == 2 and report.unreadable == []
    [fixed] = report.repairs
    assert (fixed.where, fixed.closed_as, fixed.released) == (
        "acme/shop!1",
        "merged",
        ("bob", "dave", "erin"),
    )
    assert "merged in GitLab but open here" in fixed.line()
    # Reviewers from before the merge completed it; the one assigned after it never had
    # anything to review.
    assert await _state(sessions, 1) == (
        "merged",
        {"bob": "completed", "dave": "completed", "erin": "removed"},
    )
    async with sessions() as session:
        review = await session.scalar(select(MrReview).where(MrReview.mr_iid == 1))
        assert review is not None and review.merged_at is not None
        gitlab_merged_at = datetime.fromisoformat(merged["merged_at"])
        assert abs(review.merged_at - gitlab_merged_at) < timedelta(seconds=1)
    assert await _state(sessions, 2) == healthy

    again = await tracking.repair(sessions, gitlab)
    assert (again.checked, again.repairs) == (1, [])  # only the healthy open one is left


async def test_repair_closes_a_review_closed_in_gitlab(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn
) -> None:
    await _roll(gitlab, sessions)
    standin.close(PROJECT, 1)  # the close hook never arrived
    report = await tracking.repair(sessions, gitlab)
    assert [(r.closed_as, r.released) for r in report.repairs] == [("closed", ("bob", "dave"))]
    assert await _state(sessions) == ("closed", {"bob": "abandoned", "dave": "abandoned"})


async def test_repair_releases_reviewers_removed_in_gitlab(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn
) -> None:
    await _roll(gitlab, sessions)
    standin.set_reviewers(PROJECT, 1, ["dave"])  # bob removed; the hook was lost
    report = await tracking.repair(sessions, gitlab)
    [fixed] = report.repairs
    assert (fixed.closed_as, fixed.released) == (None, ("bob",))
    assert "no longer among the reviewers" in fixed.line()
    assert await _state(sessions) == ("open", {"bob": "removed", "dave": "active"})
    assert (await tracking.repair(sessions, gitlab)).repairs == []


async def test_repair_lists_an_mr_gitlab_does_not_show_and_goes_on(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn
) -> None:
    standin.add_merge_request(PROJECT, author="erin", changes=["web/app.ts"])
    await _roll(gitlab, sessions, 1)
    await _roll(gitlab, sessions, 2)
    standin.merge(PROJECT, 2)
    standin.fail_next(r"/merge_requests/1(\?|$)", 404, times=5, method="GET")
    report = await tracking.repair(sessions, gitlab)
    assert len(report.unreadable) == 1 and report.unreadable[0].startswith("acme/shop!1: ")
    assert [r.where for r in report.repairs] == ["acme/shop!2"]
    assert (await _state(sessions, 1))[0] == "open"


# --------------------------------------------------------------- GitLab's 64-bit ids


async def test_ids_past_32_bits_are_stored_and_followed(
    gitlab: GitLab, sessions: Sessions, metrics: tracking.ReviewMetrics
) -> None:
    """GitLab's ids are ``bigint``: a project, MR or user id past 2**31 - 1 is recorded and
    its review followed to the merge, on both engines (PostgreSQL's ``integer`` refused it)."""
    mr = await gitlab.merge_request(MergeRequestRef(PROJECT, 1))
    big = mr.__class__(**{**mr.__dict__, "project_id": 2**40 + 5, "iid": 2**33, "id": 2**62})
    async with sessions.begin() as session:
        bob = await session.scalar(select(User).where(User.gitlab_username == "bob"))
        assert bob is not None
        bob.gitlab_id = 2**63 - 1
    await tracking.record_roll(sessions, big, "backend", [("bob", "team")], [], [])
    assert (await tracking.gitlab_ids(sessions, ["bob"]))["bob"] == 2**63 - 1

    merged = {
        "object_attributes": {"iid": big.iid, "id": big.id, "state": "merged", "action": "merge"},
        "project": {"id": big.project_id, "path_with_namespace": PROJECT},
        "user": {"username": "alice"},
    }
    await tracking.merge_request_event(sessions, metrics, merged)
    async with sessions() as session:
        review = await session.scalar(select(MrReview).where(MrReview.mr_id == 2**62))
        assert review is not None
        assert (review.project_id, review.mr_iid, review.state) == (2**40 + 5, 2**33, "merged")


# --------------------------------------------------------------- reviewer ids


class _TogetherUsers:
    """A GitLab that answers ``user`` only once ``expected`` lookups are in flight
    together: asked one after another, the first lookup never returns."""

    def __init__(self, gitlab: GitLab, expected: int) -> None:
        self.gitlab, self.expected = gitlab, expected
        self.asked: list[str] = []
        self._all_in = asyncio.Event()

    async def user(self, username: str) -> GitLabUser | None:
        self.asked.append(username)
        if len(self.asked) == self.expected:
            self._all_in.set()
        await asyncio.wait_for(self._all_in.wait(), 5)
        return await self.gitlab.user(username)


async def test_missing_reviewer_ids_are_asked_of_gitlab_together(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """The ids ``PUT .../merge_requests/:iid`` needs cost a roll one more GitLab round trip
    at most: the MR's reviewers' from the MR, the stored ones from the database, the
    others asked together; a name GitLab does not know is left out (both engines)."""
    erin = standin._find_user("erin")
    assert erin is not None
    await gitlab.set_reviewers((await _mr(gitlab)).project_id, 1, [erin.id])
    mr = await _mr(gitlab)
    async with sessions.begin() as session:  # synced without GitLab: no ids stored but this one
        carol = await session.scalar(select(User).where(User.gitlab_username == "carol"))
        assert carol is not None
        carol.gitlab_id = 777
    asking = _TogetherUsers(gitlab, expected=3)
    wanted = ["Erin", "bob", "carol", "Dave", "Ghost", "erin", "BOB"]
    ids = await tracking.reviewer_ids(sessions, asking, wanted, mr)

    by_name = {n: u.id for n in ("bob", "dave") if (u := standin._find_user(n)) is not None}
    assert ids == [erin.id, by_name["bob"], 777, by_name["dave"]]  # each once, in order
    assert sorted(asking.asked) == ["Dave", "Ghost", "bob"]  # once each, as written
    assert "GitLab knows no user Ghost; not set as reviewer" in caplog.text


# --------------------------------------------------------------- the active_reviews gauge


async def test_active_reviews_are_counted_per_team_and_drop_to_zero(
    gitlab: GitLab, sessions: Sessions, standin: GitLabStandIn
) -> None:
    registry = CollectorRegistry()
    metrics = tracking.ReviewMetrics(registry)

    await _roll(gitlab, sessions)  # bob and dave, on a backend MR
    await metrics.refresh_active(sessions)
    assert registry.get_sample_value("active_reviews", {"team": "backend"}) == 2
    standin.merge(PROJECT, 1)
    await tracking.merge_request_event(sessions, metrics, _event(standin, "merge"))
    await metrics.refresh_active(sessions)
    # Set to 0, not left at its last count.
    assert registry.get_sample_value("active_reviews", {"team": "backend"}) == 0


async def test_counts_asked_together_fold_into_one_more_count(
    gitlab: GitLab, sessions: Sessions
) -> None:
    registry = CollectorRegistry()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    metrics = tracking.ReviewMetrics(registry, sleep=sleep)
    await _roll(gitlab, sessions)
    counted = 0

    def counting() -> AsyncSession:
        nonlocal counted
        counted += 1
        return sessions()

    asked = [metrics.refresh_active(counting) for _ in range(10)]  # type: ignore[arg-type]
    await asyncio.gather(*asked)
    assert counted == 2  # the first, and one more for the nine that came while it ran
    assert waits == [tracking.ReviewMetrics.REFRESH_GAP]  # ... once its gap had passed
    assert registry.get_sample_value("active_reviews", {"team": "backend"}) == 2


async def test_a_roll_asks_for_a_count_it_does_not_wait_for(
    gitlab: GitLab, sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    gap = asyncio.Event()
    waits: list[float] = []
    now = [100.0]

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await gap.wait()

    metrics = tracking.ReviewMetrics(registry, sleep=sleep, clock=lambda: now[0])
    await _roll(gitlab, sessions)
    counted = 0
    started = asyncio.Event()
    proceed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def counting() -> AsyncIterator[AsyncSession]:
        nonlocal counted
        counted += 1
        started.set()
        await proceed.wait()
        async with sessions() as session:
            yield session

    def active() -> float | None:
        return registry.get_sample_value("active_reviews", {"team": "backend"})

    def idle() -> bool:
        return metrics._counting is not None and metrics._counting.done()

    metrics.refresh_soon(counting)  # type: ignore[arg-type]
    await asyncio.wait_for(started.wait(), 5)
    for _ in range(9):  # more rolls end while the count runs: they return at once too
        metrics.refresh_soon(counting)  # type: ignore[arg-type]
    assert active() is None  # nothing counted yet
    proceed.set()
    await until(lambda: active() == 2, 10, "the first count")
    assert counted == 1  # the nine wait for the gap, folded into one count
    gap.set()
    await until(lambda: counted == 2, 10, "the folded count")
    await until(idle, 10, "the counts done")

    metrics.refresh_soon(counting)  # type: ignore[arg-type]  # right after: it waits too
    await until(lambda: counted == 3, 10, "the next count")
    assert waits == [tracking.ReviewMetrics.REFRESH_GAP] * 2
    now[0] += tracking.ReviewMetrics.REFRESH_GAP
    await until(idle, 10, "the counts done")
    metrics.refresh_soon(counting)  # type: ignore[arg-type]  # a gap later: at once
    await until(lambda: counted == 4, 10, "a count a gap later")
    assert len(waits) == 2

    def failing() -> AsyncSession:
        raise ConnectionError("the database is down")

    now[0] += tracking.ReviewMetrics.REFRESH_GAP
    await until(idle, 10, "the counts done")
    metrics.refresh_soon(failing)  # type: ignore[arg-type]
    await until(lambda: "could not count the active reviews" in caplog.text, 10, "the warning")
    await metrics.close()
    metrics.refresh_soon(counting)  # type: ignore[arg-type]
    assert metrics._counting is None  # stopping: nothing more is counted
