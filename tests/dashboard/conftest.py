"""The dashboard against seeded data: the real app (``create_app``) on both engines,
the organisation synced from the configuration, daily metrics rows, open reviews."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import URL

from bot.app import REGISTRY, SCHEDULER, create_app
from bot.http import CONTEXT
from bot.models import MrReview, ReviewerAssignment, Team, User
from bot.plugins import builtin_areas
from bot.users import sync_organisation
from plugins.metrics.models import ReviewMetric
from tests.conftest import settings_for

NOW = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)  # a Wednesday
TODAY = NOW.date()
TOKEN = "s3cret-token-for-tests"
HOSTILE = "<script>alert(1)</script>"
TEAMS = [{"name": "backend"}, {"name": "frontend"}]
USERS: list[dict[str, Any]] = [
    {"gitlab": "alice", "team": "backend", "role": "maintainer"},
    {"gitlab": "bob", "team": "backend"},
    {"gitlab": "dave", "team": "frontend", "max_active_reviews": 1},
    {"gitlab": "erin", "team": "frontend"},
]
MakeClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def areas(*wanted: str) -> list[str]:
    """The wanted areas that exist in this tree (the others are being written)."""
    return [a for a in wanted if a in builtin_areas()]


ALL = ("roulette", "ooo", "metrics", "leaderboard", "badges", "dashboard")


async def seed(client: TestClient[Any, Any]) -> None:
    """Daily metrics rows for this week and the previous ones, an open review waiting
    for bob and dave, and a member whose Mattermost name is hostile HTML."""
    sessions = client.app[CONTEXT].sessions
    async with sessions.begin() as session:
        users = {u.gitlab_username: u for u in (await session.scalars(select(User))).all()}
        teams = {t.name: t for t in (await session.scalars(select(Team))).all()}
        users["erin"].mattermost_username = HOSTILE
        monday = TODAY - timedelta(days=TODAY.weekday())
        figures = {"alice": (3, 7200.0), "bob": (1, 3600.0), "erin": (2, 1800.0)}
        for name, (completed, ttfr) in figures.items():
            for day in (monday, monday - timedelta(days=7)):
                session.add(
                    ReviewMetric(
                        day=day,
                        scope="user",
                        subject_id=users[name].id,
                        reviews_assigned=completed,
                        reviews_completed=completed,
                        comments=completed * 2,
                        comment_chars=completed * 300,
                        ttfr_seconds_sum=ttfr * completed,
                        ttfr_count=completed,
                        engagement_score=10.0 * completed,
                    )
                )
        for day, hours in ((monday, 2.0), (monday - timedelta(days=7), 4.0)):
            for team in teams.values():
                session.add(
                    ReviewMetric(
                        day=day,
                        scope="team",
                        subject_id=team.id,
                        reviews_assigned=2,
                        ttfr_seconds_sum=hours * 3600 * 2,
                        ttfr_count=2,
                        approval_seconds_sum=hours * 7200 * 2,
                        approval_count=2,
                    )
                )
        review = MrReview(
            project_id=1,
            project_path="acme/shop",
            mr_iid=7,
            title="Add <b>checkout</b>",
            web_url="https://gitlab.example.com/acme/shop/-/merge_requests/7",
            author_username="alice",
            author_id=users["alice"].id,
            team_id=teams["backend"].id,
            state="open",
            triggered_at=NOW - timedelta(hours=5),
        )
        session.add(review)
        await session.flush()
        for name in ("bob", "dave"):
            session.add(
                ReviewerAssignment(
                    review_id=review.id,
                    user_id=users[name].id,
                    role="team",
                    status="active",
                    assigned_at=NOW - timedelta(hours=5),
                )
            )


async def start(
    aiohttp_client: MakeClient, url: URL, enabled: list[str], **values: Any
) -> TestClient[Any, Any]:
    values = {"plugins": enabled, "teams": TEAMS, "users": USERS, "api_tokens": TOKEN, **values}
    settings = settings_for(url, **values)
    client = await aiohttp_client(create_app(settings))
    # The jobs run on the wall clock: one firing at a quarter past during a test would
    # write rows (today's statistics) the test did not ask for, nor freeze at NOW.
    await client.app[SCHEDULER].stop(grace=0)
    await sync_organisation(client.app[CONTEXT].sessions, settings)
    for plugin in client.app[REGISTRY].plugins:
        plugin.now = lambda: NOW  # type: ignore[attr-defined]
    await seed(client)
    return client


@pytest.fixture
async def client(migrated_url: URL, aiohttp_client: MakeClient) -> TestClient[Any, Any]:
    return await start(aiohttp_client, migrated_url, areas(*ALL))


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())
