"""The selection service against the GitLab stand-in and the database (both engines)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cache import MemoryCache
from bot.db import create_engine, create_sessionmaker
from bot.gitlab import GitLab, MergeRequestRef
from bot.models import MrReview, ReviewerAssignment, Team, User
from bot.sandbox.gitlab import GitLabStandIn
from bot.settings import Settings
from bot.users import sync_organisation
from plugins.ooo.models import OooStatus
from plugins.roulette.flags import Flags
from plugins.roulette.service import RouletteService

REF = MergeRequestRef("acme/shop", 1)
# Wednesday 25 November 2026, 23:30 UTC: already Thursday 26th in Tokyo.
NOW = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(org: Settings) -> AsyncIterator[Sessions]:
    engine = create_engine(org.async_database_url)
    made = create_sessionmaker(engine)
    await sync_organisation(made, org)
    yield made
    await engine.dispose()


@pytest.fixture
def service(org: Settings, sessions: Sessions, gitlab: GitLab) -> RouletteService:
    return RouletteService(org, sessions, MemoryCache(), gitlab)


async def _assign(
    session: AsyncSession,
    iid: int,
    state: str,
    user_id: int,
    assigned_at: datetime | None = None,
) -> None:
    """A review of MR ``iid`` of another project, in ``state``, with ``user_id`` assigned
    (at ``assigned_at``; the column's default, now, when None)."""
    review = MrReview(
        project_id=9,
        project_path="acme/other",
        mr_iid=iid,
        web_url="u",
        author_username="erin",
        state=state,
    )
    session.add(review)
    await session.flush()
    assignment = ReviewerAssignment(review_id=review.id, user_id=user_id, role="team")
    if assigned_at is not None:
        assignment.assigned_at = assigned_at
    session.add(assignment)


async def _user_id(sessions: Sessions, name: str) -> int:
    async with sessions() as session:
        found = await session.scalar(select(User.id).where(User.gitlab_username == name))
    assert found is not None
    return found


async def test_owners_resolve_users_groups_emails_and_roles(service: RouletteService) -> None:
    plan = await service.plan(REF, now=NOW, rng=random.Random(1))
    # * -> @platform-team (frank, outsider); /api/ -> bob; *.sql -> dba@ (carol, by config
    # email); /web/ -> @acme/frontend (dave, erin). No .md file: @@maintainer not needed.
    assert plan.selection.owners == ("bob", "carol", "dave", "erin", "frank", "outsider")
    assert plan.codeowners_path == ".gitlab/CODEOWNERS"
    assert plan.team == "backend"
    assert plan.changed_paths == ("api/orders.py", "db/orders.sql", "web/cart.ts")


async def test_role_owners_expand_through_project_members(
    service: RouletteService, standin: GitLabStandIn
) -> None:
    standin.add_merge_request("acme/shop", author="erin", changes=["README.md"])
    plan = await service.plan(MergeRequestRef("acme/shop", 2), now=NOW)
    # README.md: [Docs] @@maintainer -> maintainers and owners (alice 40, frank 50),
    # plus the default section's @platform-team.
    assert set(plan.selection.owners) == {"alice", "frank", "outsider"}


async def test_the_author_and_unavailable_people_are_never_picked(
    service: RouletteService, standin: GitLabStandIn
) -> None:
    standin.set_status("bob", availability="busy")
    standin.set_status("carol", message="On PTO until Monday")
    standin.set_status("erin", emoji="palm_tree")
    for seed in range(10):
        plan = await service.plan(REF, now=NOW, rng=random.Random(seed))
        assert not {"alice", "bob", "carol", "erin"} & set(plan.selection.reviewers)
    reasons = {e.username: (e.reason, str(e.detail)) for e in plan.selection.excluded}
    assert reasons["alice"][0] == "author"
    assert reasons["bob"] == ("busy", "GitLab status is busy")
    assert reasons["carol"] == ("away", "GitLab status message says 'pto'")
    assert reasons["erin"] == ("away", "GitLab status emoji :palm_tree:")
    # backend's other members are unavailable: the team slot stays empty, and says so.
    assert "team" in plan.selection.empty_pools


async def test_statuses_are_cached(service: RouletteService, standin: GitLabStandIn) -> None:
    await service.plan(REF, now=NOW)
    calls = sum("/status" in path for _, path in standin.requests)
    # Everyone's, the author's included: they are asked together with the MR itself,
    # before it says who its author is (one round trip instead of two).
    assert calls == 6
    await service.plan(REF, now=NOW)
    assert sum("/status" in path for _, path in standin.requests) == calls


async def test_a_failing_status_call_counts_as_available(
    service: RouletteService, standin: GitLabStandIn
) -> None:
    standin.fail_next("/users/frank/status", 500, times=5)
    plan = await service.plan(REF, now=NOW, rng=random.Random(0))
    assert "frank" not in {e.username for e in plan.selection.excluded}
    assert "@frank: GitLab status check failed; counted as available." in plan.selection.notes


async def test_out_of_office_today_in_the_reviewers_timezone(
    service: RouletteService, sessions: Sessions
) -> None:
    tomorrow = date(2026, 11, 26)
    async with sessions.begin() as session:
        for name in ("dave", "erin"):  # dave is in Tokyo (already the 26th), erin in UTC
            user_id = await _user_id(sessions, name)
            session.add(OooStatus(user_id=user_id, start_date=tomorrow, end_date=tomorrow))
    plan = await service.plan(REF, now=NOW)
    reasons = {e.username: e.reason for e in plan.selection.excluded}
    assert reasons.get("dave") == "ooo"
    assert "erin" not in reasons


async def test_cancelled_out_of_office_does_not_count(
    service: RouletteService, sessions: Sessions
) -> None:
    user_id = await _user_id(sessions, "erin")
    async with sessions.begin() as session:
        session.add(
            OooStatus(
                user_id=user_id,
                start_date=date(2026, 11, 20),
                end_date=date(2026, 11, 30),
                cancelled_at=NOW,
            )
        )
    plan = await service.plan(REF, now=NOW)
    assert "erin" not in {e.username for e in plan.selection.excluded}


async def test_active_reviews_come_from_the_database(
    service: RouletteService, sessions: Sessions
) -> None:
    bob = await _user_id(sessions, "bob")
    async with sessions.begin() as session:
        for iid, state in ((50, "open"), (51, "open"), (52, "merged")):
            await _assign(session, iid, state, bob)
    plan = await service.plan(REF, now=datetime.now(UTC))
    bob_candidate = next(c for c in plan.selection.candidates if c.username == "bob")
    assert bob_candidate.active_reviews == 2  # the merged MR's review does not count
    assert bob_candidate.components["active_review"] == -20
    assert bob_candidate.components["recent_review"] == -5


async def test_the_load_of_configured_and_stored_only_people_in_one_read(
    service: RouletteService, sessions: Sessions
) -> None:
    """Open reviews count whenever they were assigned; any review assigned in the last 24
    hours is recent, open or not; a person only stored (a GitLab group's member) has a
    load too."""
    async with sessions.begin() as session:
        team = await session.scalar(select(Team).where(Team.name == "frontend"))
        assert team is not None
        grace = User(gitlab_username="grace", team_id=team.id)
        session.add(grace)
        await session.flush()
        carol = await _user_id(sessions, "carol")
        await _assign(session, 60, "open", grace.id, NOW - timedelta(days=3))  # not recent
        await _assign(session, 61, "open", grace.id, NOW - timedelta(days=9))
        await _assign(session, 62, "merged", carol, NOW - timedelta(hours=2))  # recent
        await _assign(session, 63, "closed", carol, NOW - timedelta(days=2))  # neither
    plan = await service.plan(REF, now=NOW)
    candidates = {c.username: c for c in plan.selection.candidates}
    assert candidates["grace"].active_reviews == 2
    assert candidates["grace"].components["recent_review"] == 0
    assert candidates["carol"].active_reviews == 0
    assert candidates["carol"].components["recent_review"] == -5
    assert candidates["dave"].active_reviews == 0
    assert candidates["dave"].components["recent_review"] == 0


async def test_no_codeowners_file(service: RouletteService, standin: GitLabStandIn) -> None:
    standin.add_project("acme/bare")
    standin.add_merge_request("acme/bare", author="alice", changes=["x.py"])
    plan = await service.plan(MergeRequestRef("acme/bare", 1), now=NOW)
    assert plan.selection.owners == ()
    assert plan.selection.empty_pools[0] == "codeowner"
    assert plan.problems == ("this project has no CODEOWNERS file on main",)


async def test_flags_reach_the_engine(service: RouletteService) -> None:
    plan = await service.plan(
        REF, Flags(exclude=("frank",), include=("dave",), no_codeowner=True), now=NOW
    )
    assert "frank" not in plan.selection.reviewers
    assert "dave" in plan.selection.reviewers
    assert "codeowner" not in {p.role for p in plan.selection.picks}


async def test_a_user_removed_from_the_config_is_listed_inactive(
    service: RouletteService, sessions: Sessions
) -> None:
    async with sessions.begin() as session:
        session.add(User(gitlab_username="gone", is_active=False))
    plan = await service.plan(REF, now=NOW)
    assert ("gone", "inactive") in {(e.username, e.reason) for e in plan.selection.excluded}


async def test_members_read_from_gitlab_groups_can_be_picked(
    service: RouletteService, sessions: Sessions
) -> None:
    async with sessions.begin() as session:
        team = await session.scalar(select(Team).where(Team.name == "frontend"))
        assert team is not None
        session.add(User(gitlab_username="grace", team_id=team.id, timezone="Asia/Tokyo"))
    plan = await service.plan(REF, now=NOW)
    grace = next(c for c in plan.selection.candidates if c.username == "grace")
    assert grace.pools == ("external",)  # frontend, while the MR belongs to backend


async def test_explain_never_shows_the_reason_typed_for_an_absence(
    service: RouletteService, sessions: Sessions
) -> None:
    from bot.i18n import translator
    from plugins.roulette.chat import chat_reply
    from plugins.roulette.reply import reply_note

    today = date(2026, 11, 25)
    async with sessions.begin() as session:
        user_id = await _user_id(sessions, "erin")
        session.add(
            OooStatus(user_id=user_id, start_date=today, end_date=today, reason="Knee surgery")
        )
    plan = await service.plan(REF, now=NOW)
    chat = chat_reply(plan, translator("fr"), lambda name: name, explain=True)
    note = reply_note(plan, "delivery-1", explain=True, locale="fr")
    for text in (chat, note, str(plan.selection.excluded)):
        assert "Knee" not in text
    assert "- ~~@erin~~ : absent (absent aujourd'hui)" in chat.splitlines()
    assert "- @erin : absent (absent aujourd'hui)" in note.splitlines()
