"""Loading the configured organisation: idempotent, deactivating, never losing history."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.models import MrReview, ReviewerAssignment, Team, User
from bot.users import sync_organisation
from tests.conftest import settings_for

Sessions = async_sessionmaker[AsyncSession]

TEAMS = [
    {"name": "backend", "labels": ["team::backend"], "channel": "backend-reviews"},
    {"name": "frontend", "labels": ["team::frontend"]},
]
USERS: list[dict[str, Any]] = [
    {"gitlab": "alice", "team": "backend", "role": "maintainer", "timezone": "Europe/Paris"},
    {"gitlab": "bob", "mattermost": "bobby", "team": "backend"},
    {"gitlab": "carol", "team": "frontend", "role": "trainee", "max_active_reviews": 2},
]


def organisation(url: URL, users: list[dict[str, Any]] = USERS, teams: Any = TEAMS) -> Any:
    return settings_for(url, teams=teams, users=users)


async def _users(sessions: Sessions) -> dict[str, User]:
    async with sessions() as session:
        rows = (await session.scalars(select(User))).all()
        return {u.gitlab_username: u for u in rows}


async def _teams(sessions: Sessions) -> dict[str, Team]:
    async with sessions() as session:
        return {t.name: t for t in (await session.scalars(select(Team))).all()}


async def test_first_sync_creates_teams_and_users(sessions: Sessions, migrated_url: URL) -> None:
    report = await sync_organisation(sessions, organisation(migrated_url))
    assert sorted(report.created) == ["alice", "bob", "carol"]
    assert sorted(report.teams_created) == ["backend", "frontend"]
    users, teams = await _users(sessions), await _teams(sessions)
    assert users["alice"].team_id == teams["backend"].id
    assert users["alice"].role == "maintainer" and users["alice"].timezone == "Europe/Paris"
    assert users["bob"].mattermost_username == "bobby"
    assert users["alice"].mattermost_username == "alice"  # defaults to the GitLab name
    assert users["carol"].max_active_reviews == 2
    assert teams["backend"].labels == ["team::backend"]
    assert teams["backend"].channel == "backend-reviews"


async def test_second_sync_changes_nothing(sessions: Sessions, migrated_url: URL) -> None:
    await sync_organisation(sessions, organisation(migrated_url))
    before = {name: u.updated_at for name, u in (await _users(sessions)).items()}
    report = await sync_organisation(sessions, organisation(migrated_url))
    assert not report.changed
    after = {name: u.updated_at for name, u in (await _users(sessions)).items()}
    assert after == before


async def test_a_removed_user_becomes_inactive_and_keeps_history(
    sessions: Sessions, migrated_url: URL
) -> None:
    await sync_organisation(sessions, organisation(migrated_url))
    bob = (await _users(sessions))["bob"]
    async with sessions.begin() as session:
        review = MrReview(
            project_id=1, project_path="g/p", mr_iid=1, web_url="u", author_username="alice"
        )
        session.add(review)
        await session.flush()
        session.add(ReviewerAssignment(review_id=review.id, user_id=bob.id, role="team"))

    report = await sync_organisation(
        sessions, organisation(migrated_url, [u for u in USERS if u["gitlab"] != "bob"])
    )
    assert report.deactivated == ["bob"]
    users = await _users(sessions)
    assert users["bob"].is_active is False
    assert users["alice"].is_active is True
    async with sessions() as session:
        kept = (await session.scalars(select(ReviewerAssignment))).all()
    assert [a.user_id for a in kept] == [bob.id]

    # Coming back reactivates the same row.
    report = await sync_organisation(sessions, organisation(migrated_url))
    assert report.updated == ["bob"]
    assert (await _users(sessions))["bob"].id == bob.id
    assert (await _users(sessions))["bob"].is_active is True


async def test_changes_in_the_config_update_the_rows(sessions: Sessions, migrated_url: URL) -> None:
    await sync_organisation(sessions, organisation(migrated_url))
    changed = [dict(u) for u in USERS]
    changed[0] |= {"team": "frontend", "role": "reviewer", "timezone": None}
    report = await sync_organisation(sessions, organisation(migrated_url, changed))
    assert report.updated == ["alice"]
    users, teams = await _users(sessions), await _teams(sessions)
    assert users["alice"].team_id == teams["frontend"].id
    assert users["alice"].role == "reviewer" and users["alice"].timezone is None


async def test_mattermost_names_can_swap(sessions: Sessions, migrated_url: URL) -> None:
    users = [
        {"gitlab": "alice", "mattermost": "one", "team": "backend"},
        {"gitlab": "bob", "mattermost": "two", "team": "backend"},
    ]
    await sync_organisation(sessions, organisation(migrated_url, users))
    swapped = [
        {"gitlab": "alice", "mattermost": "two", "team": "backend"},
        {"gitlab": "bob", "mattermost": "one", "team": "backend"},
    ]
    await sync_organisation(sessions, organisation(migrated_url, swapped))
    stored = await _users(sessions)
    assert (stored["alice"].mattermost_username, stored["bob"].mattermost_username) == (
        "two",
        "one",
    )


async def test_a_departed_users_mattermost_name_can_be_reused(
    sessions: Sessions, migrated_url: URL
) -> None:
    await sync_organisation(sessions, organisation(migrated_url, [{"gitlab": "alice"}], []))
    await sync_organisation(
        sessions, organisation(migrated_url, [{"gitlab": "alice2", "mattermost": "alice"}], [])
    )
    stored = await _users(sessions)
    assert stored["alice"].is_active is False and stored["alice"].mattermost_username is None
    assert stored["alice2"].mattermost_username == "alice"


async def test_a_removed_team_becomes_inactive(sessions: Sessions, migrated_url: URL) -> None:
    await sync_organisation(sessions, organisation(migrated_url))
    only_backend = [u for u in USERS if u["team"] == "backend"]
    report = await sync_organisation(sessions, organisation(migrated_url, only_backend, TEAMS[:1]))
    assert report.teams_deactivated == ["frontend"]
    assert (await _teams(sessions))["frontend"].is_active is False


async def test_an_empty_config_does_not_deactivate_everyone(
    sessions: Sessions, migrated_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    await sync_organisation(sessions, organisation(migrated_url))
    report = await sync_organisation(sessions, settings_for(migrated_url))
    assert report.deactivated == []
    assert all(u.is_active for u in (await _users(sessions)).values())
    assert "no users configured" in caplog.text
