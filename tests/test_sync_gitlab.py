"""``sync-users`` with GitLab: ids resolved, group members loaded, failures reported.

The real adapter (:class:`bot.gitlab.GitLab`, python-gitlab in worker threads) talks to
the GitLab stand-in served on the test's loop; every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.gitlab import GitLab, GitLabUser
from bot.models import MrReview, ReviewerAssignment, Team, User
from bot.sandbox.gitlab import GitLabStandIn, serve
from bot.users import LOOKUP_CONCURRENCY, SyncReport, sync_organisation
from tests.conftest import settings_for
from tests.test_cli import clean_env

Sessions = async_sessionmaker[AsyncSession]
TOKEN = "sync-token-5678"

TEAMS: list[dict[str, Any]] = [
    {"name": "backend", "labels": ["team::backend"], "gitlab_group": "acme/backend"},
    {"name": "frontend", "labels": ["team::frontend"]},
]
# The same teams, reading no GitLab group.
PLAIN_TEAMS = [{k: v for k, v in t.items() if k != "gitlab_group"} for t in TEAMS]
USERS: list[dict[str, Any]] = [
    {"gitlab": "alice", "team": "backend", "role": "maintainer"},
    {"gitlab": "bob", "mattermost": "bobby", "team": "backend"},
    {"gitlab": "carol", "team": "frontend", "role": "trainee"},
]


@pytest.fixture
def standin() -> GitLabStandIn:
    s = GitLabStandIn(TOKEN)
    for name in ("alice", "bob", "carol", "dave", "erin"):
        s.add_user(name)
    s.add_user("frank", state="blocked")
    s.add_group("acme")
    s.add_group("acme/backend", ["alice", "dave", "erin", "frank"])
    s.add_group("acme/frontend", ["carol", "erin"])
    s.add_group("acme/secret", ["bob"])
    return s


@pytest.fixture
async def gitlab_url(standin: GitLabStandIn) -> AsyncIterator[str]:
    async with serve(standin) as url:
        yield url


@pytest.fixture
async def gitlab(gitlab_url: str) -> AsyncIterator[GitLab]:
    adapter = GitLab(gitlab_url, TOKEN, max_retries=0)
    try:
        yield adapter
    finally:
        await adapter.close()


def organisation(
    url: URL, users: list[dict[str, Any]] = USERS, teams: list[dict[str, Any]] = TEAMS
) -> Any:
    return settings_for(url, teams=teams, users=users)


def gitlab_id(standin: GitLabStandIn, username: str) -> int:
    user = standin._find_user(username)
    assert user is not None
    return user.id


def leave_group(standin: GitLabStandIn, group: str, username: str) -> None:
    """The stand-in has no API to remove a member: reach into its model."""
    standin._groups[group.lower()].members.pop(gitlab_id(standin, username))


async def _users(sessions: Sessions) -> dict[str, User]:
    async with sessions() as session:
        return {u.gitlab_username: u for u in (await session.scalars(select(User))).all()}


async def _teams(sessions: Sessions) -> dict[str, int]:
    async with sessions() as session:
        return {t.name: t.id for t in (await session.scalars(select(Team))).all()}


async def _stamps(sessions: Sessions) -> dict[str, tuple[datetime, bool, int | None]]:
    return {
        n: (u.updated_at, u.is_active, u.gitlab_id) for n, u in (await _users(sessions)).items()
    }


# --------------------------------------------------------------------------- ids


async def test_ids_are_resolved_and_stored(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab, standin: GitLabStandIn
) -> None:
    report = await sync_organisation(
        sessions, organisation(migrated_url, teams=PLAIN_TEAMS), gitlab
    )
    assert report.unknown == [] and report.problems == []
    users = await _users(sessions)
    assert {n: u.gitlab_id for n, u in users.items()} == {
        n: gitlab_id(standin, n) for n in ("alice", "bob", "carol")
    }


async def test_an_unknown_username_is_reported_and_the_others_synced(
    sessions: Sessions,
    migrated_url: URL,
    gitlab: GitLab,
    standin: GitLabStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    users = [*USERS, {"gitlab": "ghost", "team": "frontend"}]
    report = await sync_organisation(
        sessions, organisation(migrated_url, users, PLAIN_TEAMS), gitlab
    )
    assert report.unknown == ["ghost"]
    assert "1 unknown GitLab username(s)" in report.summary()
    assert "  unknown GitLab usernames: ghost" in report.details()
    assert "GitLab knows no user 'ghost'" in caplog.text
    stored = await _users(sessions)
    assert stored["ghost"].is_active and stored["ghost"].gitlab_id is None
    assert stored["alice"].gitlab_id == gitlab_id(standin, "alice")
    assert sorted(report.created) == ["alice", "bob", "carol", "ghost"]


async def test_a_gitlab_id_moves_with_a_renamed_account(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab, standin: GitLabStandIn
) -> None:
    """A row holding alice's id under a former name *is* alice: it keeps its history."""
    async with sessions.begin() as session:
        old = User(gitlab_username="alice_old", gitlab_id=gitlab_id(standin, "alice"))
        session.add(old)
        await session.flush()
        review = MrReview(
            project_id=1, project_path="g/p", mr_iid=1, web_url="u", author_username="x"
        )
        session.add(review)
        await session.flush()
        session.add(ReviewerAssignment(review_id=review.id, user_id=old.id, role="team"))
        old_id = old.id

    users = [{"gitlab": "alice", "team": "frontend"}]
    report = await sync_organisation(
        sessions, organisation(migrated_url, users, PLAIN_TEAMS), gitlab
    )
    assert report.renamed == ["alice_old → alice"]
    assert report.created == [] and report.deactivated == []
    stored = await _users(sessions)
    assert set(stored) == {"alice"}
    assert stored["alice"].id == old_id and stored["alice"].gitlab_id == gitlab_id(standin, "alice")
    assert stored["alice"].mattermost_username == "alice"

    again = await sync_organisation(
        sessions, organisation(migrated_url, users, PLAIN_TEAMS), gitlab
    )
    assert not again.changed


async def test_a_gitlab_id_held_by_another_wanted_row_is_released(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab, standin: GitLabStandIn
) -> None:
    alice = gitlab_id(standin, "alice")
    async with sessions.begin() as session:
        session.add(User(gitlab_username="alice_old", gitlab_id=alice))
    # Both names configured: alice_old no longer exists on GitLab, alice has the id.
    users = [{"gitlab": "alice"}, {"gitlab": "alice_old", "mattermost": "ao"}]
    report = await sync_organisation(sessions, organisation(migrated_url, users, []), gitlab)
    assert report.unknown == ["alice_old"]
    assert report.renamed == []
    assert any("was held by alice_old" in c for c in report.conflicts)
    stored = await _users(sessions)
    assert stored["alice"].gitlab_id == alice
    assert stored["alice_old"].gitlab_id is None and stored["alice_old"].is_active
    assert "alice_old" in report.updated

    again = await sync_organisation(sessions, organisation(migrated_url, users, []), gitlab)
    assert not again.changed


async def test_a_gitlab_id_held_by_a_departed_row_is_released_when_the_name_has_a_row(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab, standin: GitLabStandIn
) -> None:
    alice = gitlab_id(standin, "alice")
    async with sessions.begin() as session:
        session.add(User(gitlab_username="alice_old", gitlab_id=alice))
        session.add(User(gitlab_username="alice"))
    report = await sync_organisation(
        sessions, organisation(migrated_url, [{"gitlab": "alice"}], []), gitlab
    )
    assert report.deactivated == ["alice_old"]
    stored = await _users(sessions)
    assert stored["alice"].gitlab_id == alice
    assert stored["alice_old"].gitlab_id is None and not stored["alice_old"].is_active


# --------------------------------------------------------------------------- groups


async def test_group_members_become_users_of_the_team(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab, standin: GitLabStandIn
) -> None:
    report = await sync_organisation(sessions, organisation(migrated_url), gitlab)
    assert report.from_groups == {"dave": "backend", "erin": "backend"}
    assert sorted(report.created) == ["alice", "bob", "carol", "dave", "erin"]
    assert report.problems == [] and report.unknown == []
    assert "  added from GitLab groups: dave (backend), erin (backend)" in report.details()
    users, teams = await _users(sessions), await _teams(sessions)
    for name in ("dave", "erin"):
        user = users[name]
        assert user.team_id == teams["backend"]
        assert user.role == "reviewer" and user.mattermost_username == name
        assert user.gitlab_id == gitlab_id(standin, name) and user.is_active
    assert "frank" not in users  # a blocked account is no reviewer
    assert users["bob"].team_id == teams["backend"]  # configured, not in the group: stays


async def test_a_configured_user_in_a_group_keeps_the_configured_team(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab
) -> None:
    teams = [*TEAMS[:1], {"name": "frontend", "gitlab_group": "acme/frontend"}]
    users = [*USERS[:2], {"gitlab": "carol", "team": "backend"}, {"gitlab": "dave"}]
    report = await sync_organisation(sessions, organisation(migrated_url, users, teams), gitlab)
    stored, ids = await _users(sessions), await _teams(sessions)
    assert stored["carol"].team_id == ids["backend"]  # the config wins over acme/frontend
    assert stored["dave"].team_id is None  # configured without a team: so it stays
    assert any(c.startswith("carol: configured in team backend") for c in report.conflicts)
    assert any(c.startswith("dave: configured without a team") for c in report.conflicts)
    # erin is in both groups and configured nowhere: the first team in the config wins.
    assert stored["erin"].team_id == ids["backend"]
    assert any(
        c.startswith("erin: in the GitLab groups of teams backend, frontend")
        for c in report.conflicts
    )


async def test_a_member_leaving_the_group_becomes_inactive(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab, standin: GitLabStandIn
) -> None:
    await sync_organisation(sessions, organisation(migrated_url), gitlab)
    leave_group(standin, "acme/backend", "erin")
    report = await sync_organisation(sessions, organisation(migrated_url), gitlab)
    assert report.deactivated == ["erin"]
    stored = await _users(sessions)
    assert not stored["erin"].is_active and stored["dave"].is_active

    # Back in the group: the same row, active again.
    erin = stored["erin"].id
    standin._groups["acme/backend"].members[gitlab_id(standin, "erin")] = 30
    report = await sync_organisation(sessions, organisation(migrated_url), gitlab)
    assert report.from_groups == {"erin": "backend"} and report.updated == ["erin"]
    assert (await _users(sessions))["erin"].id == erin


async def test_a_removed_configured_user_still_in_the_group_stays_as_a_member(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab, standin: GitLabStandIn
) -> None:
    await sync_organisation(sessions, organisation(migrated_url), gitlab)
    report = await sync_organisation(sessions, organisation(migrated_url, USERS[1:]), gitlab)
    assert report.deactivated == [] and report.updated == ["alice"]
    alice = (await _users(sessions))["alice"]
    assert alice.is_active and alice.role == "reviewer"  # now described by the group


@pytest.mark.parametrize("status", [403, 404])
async def test_a_group_gitlab_refuses_is_reported_and_nobody_from_it_deactivated(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab, standin: GitLabStandIn, status: int
) -> None:
    await sync_organisation(sessions, organisation(migrated_url), gitlab)
    before = await _stamps(sessions)
    standin.fail_next(r"/groups/acme%2Fbackend/members", status)
    # alice is also removed from the config: she may still be in the group, so she stays.
    report = await sync_organisation(sessions, organisation(migrated_url, USERS[1:]), gitlab)
    assert report.deactivated == []
    assert any(
        p.startswith("team backend: members of group acme/backend: GitLab answered")
        and str(status) in p
        for p in report.problems
    ), report.problems
    assert any("not deactivated" in p and "alice, dave, erin" in p for p in report.problems)
    assert await _stamps(sessions) == before


async def test_a_group_that_does_not_exist_is_reported_on_the_first_sync(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab
) -> None:
    teams = [*TEAMS, {"name": "ops", "gitlab_group": "acme/nope"}]
    report = await sync_organisation(sessions, organisation(migrated_url, teams=teams), gitlab)
    assert report.problems == [
        "team ops: members of group acme/nope: GitLab answered 404 Group Not Found"
    ]
    assert sorted(report.created) == ["alice", "bob", "carol", "dave", "erin"]


async def test_unreachable_gitlab_changes_nothing_it_cannot_know(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab
) -> None:
    await sync_organisation(sessions, organisation(migrated_url), gitlab)
    before = await _stamps(sessions)
    down = GitLab("http://127.0.0.1:9", TOKEN, max_retries=0, timeout=2)
    try:
        report = await sync_organisation(sessions, organisation(migrated_url), down)
    finally:
        await down.close()
    assert not report.changed
    assert any("unreachable" in p for p in report.problems), report.problems
    assert any(p.startswith("GitLab unavailable: 1 group(s) not read") for p in report.problems)
    assert await _stamps(sessions) == before  # ids kept, group members kept


async def test_without_gitlab_group_members_are_left_as_they_are(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab
) -> None:
    await sync_organisation(sessions, organisation(migrated_url), gitlab)
    before = await _stamps(sessions)
    report = await sync_organisation(sessions, organisation(migrated_url))
    assert not report.changed
    assert report.problems[0].startswith("team backend: GitLab group acme/backend not read")
    assert await _stamps(sessions) == before


async def test_a_member_named_like_a_configured_mattermost_user_gets_no_mattermost_name(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab
) -> None:
    users = [{"gitlab": "bob", "mattermost": "dave", "team": "backend"}]
    report = await sync_organisation(sessions, organisation(migrated_url, users), gitlab)
    stored = await _users(sessions)
    assert stored["bob"].mattermost_username == "dave"
    assert stored["dave"].mattermost_username is None and stored["dave"].is_active
    assert any(c.startswith("dave: Mattermost name 'dave'") for c in report.conflicts)


async def test_a_second_sync_changes_nothing(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab
) -> None:
    users = [*USERS, {"gitlab": "ghost"}]
    first = await sync_organisation(sessions, organisation(migrated_url, users), gitlab)
    assert first.changed
    before = await _stamps(sessions)
    again = await sync_organisation(sessions, organisation(migrated_url, users), gitlab)
    assert not again.changed
    assert again.unknown == ["ghost"]  # still reported, but nothing to change
    assert await _stamps(sessions) == before


class CountingDirectory:
    """A GitLab directory that records how many lookups are in flight at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0

    async def user(self, username: str) -> GitLabUser | None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        number = int(username.removeprefix("u"))
        return GitLabUser(number, username, username, "active", None)

    async def group_members(self, group: str) -> list[GitLabUser]:
        return []


async def test_lookups_are_concurrent_and_bounded(sessions: Sessions, migrated_url: URL) -> None:
    directory = CountingDirectory()
    users = [{"gitlab": f"u{i}"} for i in range(1, 31)]
    report = await sync_organisation(sessions, organisation(migrated_url, users, []), directory)
    assert len(report.created) == 30
    assert 1 < directory.most <= LOOKUP_CONCURRENCY
    assert (await _users(sessions))["u7"].gitlab_id == 7


# --------------------------------------------------------------------------- the command

CONFIG = """\
teams:
  - name: backend
    gitlab_group: acme/backend
  - name: ops
    gitlab_group: acme/nope
users:
  - gitlab: alice
    team: backend
  - gitlab: ghost
    team: ops
"""


async def test_the_command_reports_and_exits_0_with_an_unknown_username(
    tmp_path: Path, database_url: URL, gitlab_url: str
) -> None:
    config = tmp_path / "org.yaml"
    config.write_text(textwrap.dedent(CONFIG), encoding="utf-8")
    env = clean_env(
        DATABASE_URL=database_url.render_as_string(hide_password=False),
        GITLAB_URL=gitlab_url,
        GITLAB_TOKEN=TOKEN,
    )

    async def run() -> tuple[int, list[str], str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "sync-users",
            "--config",
            str(config),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode().splitlines(), err.decode()

    code, lines, err = await run()
    assert code == 0, err
    assert "Traceback" not in err and TOKEN not in "\n".join(lines) + err
    assert lines[0].startswith("sync-users: 2 team(s) created, 0 updated, 0 deactivated, ")
    assert "4 user(s) created" in lines[0] and "1 unknown GitLab username(s)" in lines[0]
    assert lines[1:] == [
        "  created: alice, dave, erin, ghost",
        "  added from GitLab groups: dave (backend), erin (backend)",
        "  unknown GitLab usernames: ghost",
        "  GitLab problem: team ops: members of group acme/nope:"
        " GitLab answered 404 Group Not Found",
    ]

    code, lines, err = await run()
    assert code == 0, err
    assert lines[0].startswith(
        "sync-users: 0 team(s) created, 0 updated, 0 deactivated, 0 user(s) created, 0 updated,"
        " 0 deactivated"
    )
    assert "created:" not in "\n".join(lines)


def test_report_lines_without_gitlab_are_unchanged() -> None:
    report = SyncReport(created=["b", "a"], deactivated=["c"])
    assert report.summary() == (
        "0 team(s) created, 0 updated, 0 deactivated, 2 user(s) created, 0 updated, 1 deactivated"
    )
    assert report.details() == ["  created: a, b", "  deactivated: c"]
    assert report.changed and not SyncReport(unknown=["x"], problems=["p"]).changed


async def test_logs_name_the_unknown_user_once(
    sessions: Sessions, migrated_url: URL, gitlab: GitLab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.users")
    await sync_organisation(sessions, organisation(migrated_url, [{"gitlab": "ghost"}], []), gitlab)
    assert [r.getMessage() for r in caplog.records if "ghost" in r.getMessage()] == [
        "GitLab knows no user 'ghost' (configured in users)"
    ]
