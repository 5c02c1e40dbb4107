"""Rankings and ``/leaderboard`` over the metrics area's daily rows (both engines)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import regex
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.chat import LEGACY_POST_LIMIT, POST_LIMIT, ChatUser, CommandContext, Reply
from bot.context import AppContext
from bot.db import create_engine, create_sessionmaker
from bot.errors import CommandError
from bot.i18n import translator
from bot.mattermost import command_response
from bot.models import User
from bot.settings import Settings
from bot.users import sync_organisation
from plugins.leaderboard.api import leaderboard
from plugins.leaderboard.plugin import LeaderboardPlugin, parse
from plugins.metrics.models import ReviewMetric
from tests.conftest import settings_for

Sessions = async_sessionmaker[AsyncSession]
TODAY = date(2026, 11, 25)  # a Wednesday: its ISO week starts on Monday 23rd
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MARKER = regex.compile(r"… and (\d+) more$")

TEAMS: list[dict[str, Any]] = [{"name": "backend"}, {"name": "frontend"}]
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


async def seed(sessions: Sessions, rows: list[tuple[str, date, dict[str, Any]]]) -> None:
    """Daily ``user`` rows of the metrics area: (GitLab username, day, figures)."""
    async with sessions.begin() as session:
        ids = {u.gitlab_username: u.id for u in (await session.scalars(select(User))).all()}
        for name, day, figures in rows:
            session.add(ReviewMetric(day=day, scope="user", subject_id=ids[name], **figures))


def done(reviews: int, engagement: float = 0.0, ttfr_hours: float | None = None) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "reviews_assigned": reviews,
        "reviews_completed": reviews,
        "engagement_score": engagement,
    }
    if ttfr_hours is not None:
        figures |= {"ttfr_seconds_sum": ttfr_hours * 3600 * reviews, "ttfr_count": reviews}
    return figures


async def board(sessions: Sessions, **kw: Any) -> list[tuple[int, str, float]]:
    values: dict[str, Any] = {"team": None, "period": "all", "by": "reviews", "today": TODAY}
    async with sessions() as session:
        entries = await leaderboard(session, **(values | kw))
    return [(e.rank, e.username, e.value) for e in entries]


async def test_ties_share_a_rank_and_the_next_one_skips(sessions: Sessions) -> None:
    await seed(
        sessions,
        [
            ("alice", TODAY, done(3)),
            ("bob", TODAY, done(3)),
            ("carol", TODAY, done(1)),
            ("dave", TODAY, done(5)),
        ],
    )
    assert await board(sessions) == [
        (1, "dave", 5.0),
        (2, "alice", 3.0),
        (2, "bob", 3.0),
        (4, "carol", 1.0),
    ]
    assert await board(sessions, limit=2) == [(1, "dave", 5.0), (2, "alice", 3.0)]


async def test_each_ranking(sessions: Sessions) -> None:
    await seed(
        sessions,
        [
            ("alice", TODAY, done(1, engagement=50.5, ttfr_hours=4.0)),
            ("bob", TODAY, done(4, engagement=12.0, ttfr_hours=0.5)),
            ("carol", TODAY, done(2, engagement=50.5, ttfr_hours=0.5)),
            ("dave", TODAY, {"reviews_assigned": 2, "engagement_score": 0.0}),  # no answer yet
        ],
    )
    assert await board(sessions, by="engagement") == [
        (1, "alice", 50.5),
        (1, "carol", 50.5),
        (3, "bob", 12.0),
        (4, "dave", 0.0),
    ]
    # speed: fastest first; dave, without any first response, left out
    assert await board(sessions, by="speed") == [
        (1, "bob", 0.5),
        (1, "carol", 0.5),
        (3, "alice", 4.0),
    ]
    assert [name for _, name, _ in await board(sessions, by="reviews")] == [
        "bob",
        "carol",
        "alice",
        "dave",
    ]


async def test_period_boundaries(sessions: Sessions) -> None:
    await seed(
        sessions,
        [
            ("alice", TODAY, done(1)),
            ("bob", date(2026, 11, 23), done(1)),  # Monday of this ISO week
            ("carol", date(2026, 11, 22), done(1)),  # Sunday: last week, this month
            ("dave", date(2026, 10, 31), done(1)),  # last month
            ("dave", date(2026, 11, 26), done(9)),  # after today: never counted
        ],
    )
    names = lambda rows: sorted(name for _, name, _ in rows)  # noqa: E731
    assert names(await board(sessions, period="day")) == ["alice"]
    assert names(await board(sessions, period="week")) == ["alice", "bob"]
    assert names(await board(sessions, period="month")) == ["alice", "bob", "carol"]
    assert names(await board(sessions, period="all")) == ["alice", "bob", "carol", "dave"]
    assert (await board(sessions, period="all"))[0] == (1, "alice", 1.0)  # dave's 9 left out
    # the week of a Monday is that day alone; a Sunday's spans the six days before
    assert names(await board(sessions, period="week", today=date(2026, 11, 23))) == ["bob"]
    sunday = await board(sessions, period="week", today=date(2026, 11, 29))
    assert names(sunday) == ["alice", "bob", "dave"]


async def test_team_filter_and_unknown_team(sessions: Sessions) -> None:
    await seed(sessions, [("alice", TODAY, done(2)), ("carol", TODAY, done(3))])
    assert await board(sessions, team="BACKEND") == [(1, "alice", 2.0)]
    assert await board(sessions, team="frontend") == [(1, "carol", 3.0)]
    with pytest.raises(LookupError):
        await board(sessions, team="nope")
    with pytest.raises(ValueError, match="period"):
        await board(sessions, period="year")
    with pytest.raises(ValueError, match="ranking"):
        await board(sessions, by="luck")


# ----------------------------------------------------------------- the command


def test_parse() -> None:
    _ = translator("en")
    assert parse("", _) == (None, "week", "reviews")
    assert parse("backend --period month --by=speed", _) == ("backend", "month", "speed")
    # a team's name may hold spaces: the words that are not options, or quoted as written
    assert parse("Platform Team --by speed", _) == ("Platform Team", "week", "speed")
    assert parse("--period day 'Platform  Team'", _) == ("Platform  Team", "day", "reviews")
    for bad in ("--period year", "--by", "--colour red", '"Platform Team'):
        with pytest.raises(CommandError) as caught:
            parse(bad, _)
        assert "Usage: `/leaderboard" in str(caught.value)


def plugin_for(settings: Settings, sessions: Sessions) -> LeaderboardPlugin:
    context = AppContext(settings=settings)
    context.sessions_ = sessions
    made = LeaderboardPlugin(context)
    made.now = lambda: NOW
    return made


def ctx(text: str, user: str = "alice.m", locale: str = "en") -> CommandContext:
    who = ChatUser(id=f"id-{user}", username=user, locale=locale)
    return CommandContext(command="leaderboard", text=text, user=who, channel_id="c")


async def test_the_command_table_and_the_callers_rank(org: Settings, sessions: Sessions) -> None:
    await seed(
        sessions,
        [
            ("alice", TODAY, done(2, engagement=30.25, ttfr_hours=1.5)),
            ("bob", TODAY, done(3, engagement=12.0)),
            ("carol", date(2026, 11, 1), done(7)),  # this month, not this week
        ],
    )
    plugin = plugin_for(org, sessions)
    reply = await plugin.leaderboard(ctx("backend"))
    assert reply.visibility == "in_channel"
    assert reply.text.split("\n") == [
        "**Leaderboard of backend, this week, by completed reviews**",
        "",
        "| # | Reviewer | Reviews | Engagement | Time to first review |",
        "|---:|:---|---:|---:|---:|",
        "| 1 | @bob | 3 | 12.0 | - |",
        "| 2 | @alice.m | 2 | 30.2 | 1.5 h |",  # banker's rounding of 30.25
        "",
        "[Open the dashboard](http://localhost:8080/?period=week&team=backend)",
    ]
    assert [r.text for r in reply.extra] == ["Your rank: 2 of 2."]  # alice.m is alice
    assert reply.extra[0].visibility == "ephemeral"
    french = await plugin.leaderboard(ctx("--period month", user="dave", locale="fr"))
    assert french.text.startswith("**Classement, ce mois-ci, par relectures terminées**")
    assert "| 1 | @carol | 7 |" in french.text
    assert [r.text for r in french.extra] == ["Vous n'êtes pas classé sur cette période."]
    with pytest.raises(CommandError, match="Unknown team: nope"):
        await plugin.leaderboard(ctx("nope"))


async def test_a_team_whose_name_has_a_space(migrated_url: URL) -> None:
    org = settings_for(
        migrated_url,
        teams=[{"name": "Platform Team"}, {"name": "Platform"}],
        users=[{"gitlab": "erin", "team": "Platform Team"}, {"gitlab": "finn", "team": "Platform"}],
    )
    engine = create_engine(org.async_database_url)
    try:
        made = create_sessionmaker(engine)
        await sync_organisation(made, org)
        await seed(made, [("erin", TODAY, done(4)), ("finn", TODAY, done(9))])
        plugin = plugin_for(org, made)
        spaced = ("platform team", '"Platform Team" --by reviews', "--period week Platform  Team")
        for typed in spaced:
            reply = await plugin.leaderboard(ctx(typed))
            assert reply.text.startswith("**Leaderboard of Platform Team, this week"), typed
            assert "| 1 | @erin | 4 |" in reply.text and "@finn" not in reply.text, typed
            assert "team=Platform+Team" in reply.text, typed
        alone = await plugin.leaderboard(ctx("platform"))
        assert "| 1 | @finn | 9 |" in alone.text and "@erin" not in alone.text
    finally:
        await engine.dispose()


async def test_700_tied_reviewers_stay_within_the_post_limit(migrated_url: URL) -> None:
    many = [{"gitlab": f"reviewer{i:03d}", "team": "backend"} for i in range(700)]
    org = settings_for(migrated_url, teams=TEAMS, users=many)
    engine = create_engine(org.async_database_url)
    sessions = create_sessionmaker(engine)
    try:
        await sync_organisation(sessions, org)
        await seed(sessions, [(u["gitlab"], TODAY, done(1, 10.0, 2.0)) for u in many])
        reply = await plugin_for(org, sessions).leaderboard(ctx("--by reviews", "reviewer001"))
        assert reply.text.count("\n| 1 | @reviewer") == 700  # all tied with the first
        for limit in (POST_LIMIT, LEGACY_POST_LIMIT):
            posts = posts_of(command_response(reply, limit=limit, locale="en"))
            assert all(len(p) <= limit for p in posts)
            assert posts[-1] == "Your rank: 1 of 700."
        cut = posts_of(command_response(reply, limit=LEGACY_POST_LIMIT, locale="en"))
        assert MARKER.search(cut[-2])
    finally:
        await engine.dispose()


def posts_of(body: dict[str, Any]) -> list[str]:
    return [body["text"], *(extra["text"] for extra in body.get("extra_responses", []))]


async def test_help(org: Settings, sessions: Sessions) -> None:
    reply = await plugin_for(org, sessions).leaderboard(ctx("help"))
    assert reply == Reply(reply.text) and reply.text.startswith("Usage:")
