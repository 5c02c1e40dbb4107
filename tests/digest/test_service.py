"""Which reviews are pending and the digest's text (both engines)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.chat import POST_LIMIT, fit_to_post
from bot.db import create_engine, create_sessionmaker
from bot.i18n import translator
from bot.models import MrReview, ReviewerAssignment, Team, User
from bot.settings import Settings
from bot.users import sync_organisation
from plugins.digest.service import (
    age,
    by_reviewer,
    by_team,
    pending_reviews,
    personal_digest,
    team_digest,
)
from tests.conftest import settings_for

Sessions = async_sessionmaker[AsyncSession]

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # a Wednesday, 09:00
WARN = timedelta(hours=48)
TEAMS: list[dict[str, Any]] = [
    {"name": "backend", "channel": "backend-reviews"},
    {"name": "frontend", "channel": "frontend-reviews"},
]
USERS: list[dict[str, Any]] = [
    {"gitlab": "alice", "mattermost": "alice.m", "team": "backend"},
    {"gitlab": "bob", "team": "backend"},
    {"gitlab": "carol", "team": "frontend"},
    {"gitlab": "dave", "team": "frontend"},
]


@pytest.fixture
def org(migrated_url: URL) -> Settings:
    return settings_for(migrated_url, teams=TEAMS, users=USERS)


@pytest.fixture
async def sessions(org: Settings) -> AsyncIterator[Sessions]:
    engine = create_engine(org.async_database_url)
    made = create_sessionmaker(engine)
    await sync_organisation(made, org)
    yield made
    await engine.dispose()


async def add_review(
    sessions: Sessions,
    iid: int,
    *,
    team: str | None,
    author: str,
    reviewers: dict[str, str],
    hours_ago: float,
    title: str | None = None,
    **values: Any,
) -> None:
    """An MR of ``team`` by ``author`` triggered ``hours_ago`` before NOW, with
    ``reviewers`` (GitLab username -> assignment status)."""
    async with sessions.begin() as session:
        users = {u.gitlab_username: u for u in (await session.scalars(select(User))).all()}
        teams = {t.name: t.id for t in (await session.scalars(select(Team))).all()}
        review = MrReview(
            project_id=1,
            project_path="acme/app",
            mr_iid=iid,
            title=title if title is not None else f"Change {iid}",
            web_url=f"https://gitlab.test/acme/app/-/merge_requests/{iid}",
            author_id=users[author].id if author in users else None,
            author_username=author,
            team_id=teams[team] if team else None,
            triggered_at=NOW - timedelta(hours=hours_ago),
            **values,
        )
        session.add(review)
        await session.flush()
        for name, status in reviewers.items():
            session.add(
                ReviewerAssignment(
                    review_id=review.id, user_id=users[name].id, role="team", status=status
                )
            )


async def pending(sessions: Sessions) -> list[Any]:
    async with sessions() as session:
        return await pending_reviews(session)


async def test_pending_reviews_oldest_first_with_their_active_reviewers(sessions: Sessions) -> None:
    await add_review(
        sessions, 1, team="backend", author="bob", reviewers={"alice": "active"}, hours_ago=5
    )
    await add_review(
        sessions,
        2,
        team="backend",
        author="alice",
        reviewers={"bob": "active", "carol": "active", "dave": "removed"},
        hours_ago=76,
    )
    await add_review(
        sessions, 3, team="frontend", author="carol", reviewers={"dave": "active"}, hours_ago=1
    )
    found = await pending(sessions)
    assert [r.web_url.rsplit("/", 1)[1] for r in found] == ["2", "1", "3"]
    assert [r.mattermost for r in found[0].reviewers] == ["bob", "carol"]  # not the removed one
    assert found[0].author == "alice.m"  # the author's Mattermost name
    assert {k: len(v) for k, v in by_team(found).items()} == {"backend": 2, "frontend": 1}
    assert {k: len(v) for k, v in by_reviewer(found).items()} == {
        "bob": 1,
        "carol": 1,
        "alice.m": 1,
        "dave": 1,
    }


async def test_approved_merged_closed_and_unstaffed_reviews_are_left_out(
    sessions: Sessions,
) -> None:
    active = {"alice": "active"}
    await add_review(
        sessions, 1, team="backend", author="bob", reviewers=active, hours_ago=3, approved_at=NOW
    )
    await add_review(
        sessions,
        2,
        team="backend",
        author="bob",
        reviewers=active,
        hours_ago=3,
        state="merged",
        merged_at=NOW,
    )
    await add_review(
        sessions,
        3,
        team="backend",
        author="bob",
        reviewers=active,
        hours_ago=3,
        state="closed",
        closed_at=NOW,
    )
    await add_review(sessions, 4, team="backend", author="bob", reviewers={}, hours_ago=3)
    await add_review(
        sessions, 5, team="backend", author="bob", reviewers={"alice": "completed"}, hours_ago=3
    )
    assert await pending(sessions) == []
    assert team_digest("backend", [], NOW, WARN, translator("en")) is None
    assert personal_digest([], NOW, WARN, translator("en")) is None


async def test_the_team_digest_lines_exactly(sessions: Sessions) -> None:
    await add_review(
        sessions, 1, team="backend", author="bob", reviewers={"alice": "active"}, hours_ago=5.5
    )
    await add_review(
        sessions,
        2,
        team="backend",
        author="alice",
        reviewers={"bob": "active", "carol": "active"},
        hours_ago=76,
        title="Fix [urgent] bug",
    )
    await add_review(
        sessions, 3, team="backend", author="someone", reviewers={"bob": "active"}, hours_ago=48
    )
    text = team_digest("backend", await pending(sessions), NOW, WARN, translator("en"))
    url = "https://gitlab.test/acme/app/-/merge_requests/"
    assert text == "\n".join(
        [
            "**3 merge requests waiting for review in backend**",
            "",
            f"- :warning: [Fix \\[urgent\\] bug]({url}2) by alice.m, waiting for @bob, @carol"
            " for 3 d 4 h",
            f"- [Change 3]({url}3) by someone, waiting for @bob for 2 d 0 h",  # not past 48 h
            f"- [Change 1]({url}1) by bob, waiting for @alice.m for 5 h",
        ]
    )
    french = team_digest("backend", (await pending(sessions))[:1], NOW, WARN, translator("fr"))
    assert french is not None
    assert french.startswith("**1 merge request en attente de relecture dans backend**")
    assert french.endswith("depuis 3 j 4 h")


def test_ages() -> None:
    _ = translator("en")
    assert age(timedelta(minutes=59), _) == "0 h"
    assert age(timedelta(hours=25), _) == "1 d 1 h"
    assert age(timedelta(hours=-3), _) == "0 h"  # a clock running behind


async def test_a_huge_backlog_stays_within_the_post_limit(sessions: Sessions) -> None:
    for iid in range(1, 401):
        await add_review(
            sessions,
            iid,
            team="backend",
            author="bob",
            reviewers={"alice": "active"},
            hours_ago=iid,
            title="x" * 80,
        )
    text = team_digest("backend", await pending(sessions), NOW, WARN, translator("en"))
    assert text is not None and len(text) > POST_LIMIT
    [post] = fit_to_post(text, POST_LIMIT, "en")
    assert len(post) <= POST_LIMIT
    assert post.startswith("**400 merge requests") and post.split("\n")[-1].startswith("… and ")
    assert "/400)" in post  # the oldest first: it is shown
