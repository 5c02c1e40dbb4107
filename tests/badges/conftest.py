"""The badges area on a migrated database (SQLite and PostgreSQL), with the organisation
synced and daily metrics rows seeded straight into the metrics area's table."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from bot.context import AppContext
from bot.db import create_engine, create_sessionmaker
from bot.models import User
from bot.settings import Settings
from bot.users import sync_organisation
from plugins.badges.plugin import BadgesPlugin
from plugins.metrics.models import ReviewMetric
from tests.conftest import settings_for

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # the job's run: it evaluates November 30
TEAMS: list[dict[str, Any]] = [
    {"name": "backend", "channel": "backend-reviews"},
    {"name": "frontend"},
]
USERS: list[dict[str, Any]] = [
    {"gitlab": "alice", "mattermost": "alice.m", "team": "backend"},
    {"gitlab": "bob", "team": "backend"},
    {"gitlab": "carol", "team": "frontend"},
    {"gitlab": "dan", "team": "frontend"},
]
HOUR = 3600.0


@pytest.fixture
def config() -> dict[str, Any]:
    """Extra settings for the test (``badges: [...]``); overridden by tests."""
    return {}


@pytest.fixture
def org(migrated_url: URL, config: dict[str, Any]) -> Settings:
    return settings_for(migrated_url, teams=TEAMS, users=USERS, **config)


@pytest.fixture
async def app(org: Settings) -> AsyncIterator[AppContext]:
    context = AppContext(settings=org)
    engine = create_engine(org.async_database_url)
    context.engine_, context.sessions_ = engine, create_sessionmaker(engine)
    await sync_organisation(context.sessions, org)
    try:
        yield context
    finally:
        await engine.dispose()


@pytest.fixture
async def plugin(app: AppContext) -> BadgesPlugin:
    made = BadgesPlugin(app)
    made.now = lambda: NOW
    await made.on_start()
    return made


Seed = Callable[[Iterable[tuple[str, date, dict[str, Any]]]], Any]


@pytest.fixture
def seed(app: AppContext) -> Seed:
    """``await seed([(gitlab_username, day, {column: value})])``: daily ``user`` rows."""

    async def add(rows: Iterable[tuple[str, date, dict[str, Any]]]) -> None:
        async with app.sessions.begin() as session:
            ids = dict((await session.execute(select(User.gitlab_username, User.id))).all())
            for username, day, values in rows:
                session.add(ReviewMetric(day=day, scope="user", subject_id=ids[username], **values))

    return add


def reviews(
    completed: int,
    *,
    ttfr_hours: float | None = None,
    comments: int = 0,
    other_teams: int = 0,
    chars: int = 0,
) -> dict[str, Any]:
    """One day's figures: ``completed`` reviews, each with ``ttfr_hours`` to first response."""
    return {
        "reviews_assigned": completed,
        "reviews_completed": completed,
        "reviews_other_teams": other_teams,
        "comments": comments,
        "comment_chars": chars,
        "ttfr_seconds_sum": (ttfr_hours or 0.0) * HOUR * completed,
        "ttfr_count": completed if ttfr_hours is not None else 0,
    }
