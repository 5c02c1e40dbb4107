"""The daily ``badges`` job end to end: metrics rows in ``review_metrics`` (through the
metrics area's real table and ``reviewer_totals``), progress, awards, the counter; on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.context import AppContext
from bot.models import User
from bot.plugins import Registry
from bot.scheduler import JobRunContext, run_guarded
from plugins.badges.models import Badge, BadgeProgress, UserBadge
from plugins.badges.plugin import BadgesPlugin
from tests.badges.conftest import Seed, reviews

NOV_30 = date(2026, 11, 30)
RUN = JobRunContext("badges", "2026-12-01", scheduled=True)  # evaluates November 30


async def awarded(app: AppContext) -> set[tuple[str, str, str]]:
    """(badge slug, GitLab username, period) of every award."""
    async with app.sessions() as session:
        rows = await session.execute(
            select(Badge.slug, User.gitlab_username, UserBadge.period)
            .join(UserBadge, UserBadge.badge_id == Badge.id)
            .join(User, User.id == UserBadge.user_id)
        )
        return {(str(s), str(u), str(p)) for s, u, p in rows.all()}


def holders(found: set[tuple[str, str, str]], slug: str) -> set[str]:
    return {user for badge, user, _ in found if badge == slug}


def counted(app: AppContext, slug: str) -> float:
    value = app.metrics.registry.get_sample_value("badge_awarded_total", {"badge": slug})
    return value or 0.0


@pytest.fixture
async def november(seed: Seed) -> None:
    """Each default badge's edge: alice just within, the others just outside."""
    await seed(
        [
            # 5 reviews, 1.99 h to first response, 25 comments (5 per review), 2 external
            ("alice", date(2026, 11, 3), reviews(3, ttfr_hours=1.99, comments=15, other_teams=1)),
            ("alice", NOV_30, reviews(2, ttfr_hours=1.99, comments=10, other_teams=1)),
            # 5 reviews at 2.0 h exactly, 24 comments (4.8 per review), 3 external
            ("bob", date(2026, 11, 10), reviews(5, ttfr_hours=2.0, comments=24, other_teams=3)),
            # 4 reviews only: fast and thorough, but one short of the minimum
            ("carol", date(2026, 11, 12), reviews(4, ttfr_hours=1.0, comments=40)),
            # October does not count for November
            ("dan", date(2026, 10, 31), reviews(9, ttfr_hours=0.5, comments=90, other_teams=9)),
        ]
    )


async def test_each_default_badge_is_awarded_exactly_when_its_criterion_holds(
    plugin: BadgesPlugin, app: AppContext, november: None
) -> None:
    await plugin.evaluate(RUN)
    found = await awarded(app)
    assert holders(found, "speed-demon") == {"alice"}  # 1.99 h; bob 2.0 h; carol 4 reviews
    assert holders(found, "thorough-reviewer") == {"alice"}  # 5.0; bob 4.8; carol 4 reviews
    assert holders(found, "team-player") == {"alice", "bob"}  # 5 each: a tie, both
    assert holders(found, "mentor") == {"bob"}  # 3 for other teams, alice 2
    assert {period for _, _, period in found} == {"2026-11"}
    assert counted(app, "team-player") == 2
    assert counted(app, "speed-demon") == 1


async def test_awarded_once_per_period(
    plugin: BadgesPlugin, app: AppContext, november: None
) -> None:
    await plugin.evaluate(RUN)
    first = await awarded(app)
    await plugin.evaluate(RUN)  # the same day again: nothing new, nothing counted twice
    assert await awarded(app) == first
    assert counted(app, "team-player") == 2
    async with app.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(UserBadge)) == len(first)

    # Through the scheduler's guard: one run per day, whoever starts it.
    handler = Registry([plugin]).jobs["badges"]
    assert await run_guarded(app, handler, "2026-12-02") == "ok"
    assert await run_guarded(app, handler, "2026-12-02") == "skipped"
    assert await awarded(app) == first  # December 1 is a new month with no figures yet


async def test_a_top_badge_waits_for_the_end_of_its_period(
    plugin: BadgesPlugin, app: AppContext, november: None
) -> None:
    await plugin.evaluate(JobRunContext("badges", "2026-11-16", True))  # data to Nov 15
    found = await awarded(app)
    assert holders(found, "team-player") == set()
    assert holders(found, "speed-demon") == set()  # alice has 3 reviews by then
    async with app.sessions() as session:
        leading = await session.execute(
            select(User.gitlab_username, BadgeProgress.value, BadgeProgress.met)
            .join(User, User.id == BadgeProgress.user_id)
            .join(Badge, Badge.id == BadgeProgress.badge_id)
            .where(Badge.slug == "team-player", BadgeProgress.period == "2026-11")
        )
        assert {(u, v, m) for u, v, m in leading.all()} == {
            ("alice", 3.0, False),
            ("bob", 5.0, True),  # leads so far: shown as progress, not awarded yet
            ("carol", 4.0, False),
        }


async def test_progress_is_recorded_and_updated(
    plugin: BadgesPlugin, app: AppContext, november: None, seed: Seed
) -> None:
    await plugin.evaluate(RUN)

    async def speed() -> dict[str, tuple[float | None, int, bool]]:
        async with app.sessions() as session:
            rows = await session.execute(
                select(User.gitlab_username, BadgeProgress)
                .join(User, User.id == BadgeProgress.user_id)
                .join(Badge, Badge.id == BadgeProgress.badge_id)
                .where(Badge.slug == "speed-demon")
            )
            return {
                str(u): (None if p.value is None else round(p.value, 4), p.reviews, p.met)
                for u, p in rows.all()
            }

    assert await speed() == {
        "alice": (1.99, 5, True),
        "bob": (2.0, 5, False),
        "carol": (1.0, 4, False),
    }
    await seed([("carol", NOV_30, reviews(1, ttfr_hours=1.0))])
    await plugin.evaluate(RUN)
    assert (await speed())["carol"] == (1.0, 5, True)  # the same row, updated
    assert holders(await awarded(app), "speed-demon") == {"alice", "carol"}
    assert counted(app, "speed-demon") == 2


CHANGED: dict[str, Any] = {
    "badges": [
        {
            "name": "speed demon",
            "metric": "avg_ttfr_hours",
            "operator": "<=",
            "value": 2,
            "period": "month",
            "min_reviews": 4,
        },
        {
            "name": "Chatterbox",
            "metric": "comments",
            "operator": ">=",
            "value": 24,
            "period": "month",
            "emoji": ":speech_balloon:",
        },
    ]
}


@pytest.mark.parametrize("config", [CHANGED])
async def test_the_configuration_changes_a_default_and_adds_a_badge(
    plugin: BadgesPlugin, app: AppContext, november: None
) -> None:
    await plugin.evaluate(RUN)
    found = await awarded(app)
    assert holders(found, "speed-demon") == {"alice", "bob", "carol"}  # <= 2 h, 4 reviews
    assert holders(found, "chatterbox") == {"alice", "bob", "carol"}  # 25, 24, 40 comments
    async with app.sessions() as session:
        speed = await session.scalar(select(Badge).where(Badge.slug == "speed-demon"))
        assert speed is not None
        assert (speed.name, speed.operator, speed.emoji, speed.source) == (
            "speed demon",
            "<=",
            ":zap:",  # the default's, not given
            "config",
        )


async def test_a_badge_left_out_of_the_configuration_is_reset_or_retired(
    app: AppContext, plugin: BadgesPlugin
) -> None:
    from plugins.badges import service
    from plugins.badges.config import BadgesConfig

    async with app.sessions.begin() as session:
        await service.seed(session, BadgesConfig.model_validate(CHANGED["badges"]))
    async with app.sessions.begin() as session:
        await service.seed(session, BadgesConfig(()))  # the entries are gone again
    async with app.sessions() as session:
        rows = {b.slug: b for b in (await session.scalars(select(Badge))).all()}
    assert (rows["speed-demon"].operator, rows["speed-demon"].source) == ("<", "default")
    assert rows["chatterbox"].is_active is False


async def test_a_day_badge_with_top_and_ties(
    app: AppContext, plugin: BadgesPlugin, seed: Seed
) -> None:
    from plugins.badges import api

    async with app.sessions.begin() as session:
        await api.define(
            session,
            {
                "name": "Busy Bee",
                "metric": "reviews_completed",
                "operator": "top",
                "value": 2,
                "period": "day",
            },
        )
    await seed(
        [
            ("alice", NOV_30, reviews(3)),
            ("bob", NOV_30, reviews(3)),
            ("carol", NOV_30, reviews(2)),  # third: out of the top 2 (rank 3)
            ("dan", NOV_30, reviews(0)),
        ]
    )
    await plugin.evaluate(RUN)
    assert {(u, p) for b, u, p in await awarded(app) if b == "busy-bee"} == {
        ("alice", "2026-11-30"),
        ("bob", "2026-11-30"),
    }
