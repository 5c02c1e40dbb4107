"""``/badges`` through the plugin's command handler, the announcement and the API."""

from __future__ import annotations

from typing import Any

import pytest

from bot.chat import ChatUser, CommandContext
from bot.context import AppContext
from bot.errors import CommandError
from bot.i18n import translator
from bot.plugins import Registry
from bot.scheduler import JobRunContext
from plugins.badges import api
from plugins.badges.plugin import BadgesPlugin
from tests.badges.conftest import Seed, reviews
from tests.badges.test_evaluation import NOV_30, RUN


def ctx(text: str = "", name: str = "alice.m", locale: str = "en") -> CommandContext:
    return CommandContext(
        command="badges",
        text=text,
        user=ChatUser(id=f"id-{name}", username=name, locale=locale),
        channel_id="town-square",
    )


@pytest.fixture
async def evaluated(plugin: BadgesPlugin, seed: Seed) -> None:
    await seed(
        [
            ("alice", NOV_30, reviews(5, ttfr_hours=1.5, comments=10)),
            ("bob", NOV_30, reviews(2, ttfr_hours=3.0, comments=2)),
        ]
    )
    await plugin.evaluate(RUN)


def test_the_command_is_registered(plugin: BadgesPlugin) -> None:
    registry = Registry([plugin])
    spec = registry.commands["badges"].spec
    assert spec.options["description"] and spec.options["hint"] == "[@user | catalogue]"
    assert "badges" in registry.jobs


async def test_your_badges_and_progress(plugin: BadgesPlugin, evaluated: None) -> None:
    reply = await plugin.badges(ctx())
    assert reply.visibility == "ephemeral"
    assert reply.text.startswith("Your badges:")
    assert ":zap: **Speed Demon** (2026-11)" in reply.text
    assert ":handshake: **Team Player** (2026-11)" in reply.text
    assert "Progress this period:" in reply.text
    # the progress of November 30 (the last evaluation), with its rule in words
    assert (
        ":zap: **Speed Demon** (average hours to first review < 2 per month, at least 5"
        " reviews): 1.5, 5 reviews completed: criterion met"
    ) in reply.text


async def test_someone_elses_badges_in_french(plugin: BadgesPlugin, evaluated: None) -> None:
    reply = await plugin.badges(ctx("@bob", locale="fr"))
    assert reply.text.startswith("Badges de @bob :")
    assert "Aucun badge pour l'instant." in reply.text
    assert "**Éclair**" in reply.text and "3, 2 relectures terminées : pas encore" in reply.text


async def test_the_catalogue(plugin: BadgesPlugin, evaluated: None) -> None:
    for word in ("catalogue", "catalog"):
        reply = await plugin.badges(ctx(word))
        lines = reply.text.splitlines()
        assert lines[0] == "Badges you can earn:"
        assert len(lines) == 5
        assert lines[3] == (
            "- :handshake: **Team Player**: The most reviews completed in a month (top 1 for"
            " reviews completed per month, at least 1 review; 1 holder)"
        )
    french = await plugin.badges(ctx("catalogue", locale="fr"))
    assert "**Relecteur minutieux**" in french.text and "0 titulaire" in french.text


@pytest.mark.parametrize(
    ("text", "who", "expected"),
    [
        ("@nobody", "alice.m", "No reviewer called nobody in the organisation."),
        ("", "stranger", "You are not in the reviewers' organisation"),
        ("a b", "alice.m", "`/badges` takes one argument at most."),
    ],
)
async def test_refusals(plugin: BadgesPlugin, text: str, who: str, expected: str) -> None:
    with pytest.raises(CommandError) as caught:
        await plugin.badges(ctx(text, who))
    assert expected in caught.value.render(translator("en"))


@pytest.mark.parametrize("config", [{"mattermost_team": "acme"}])
async def test_an_award_is_announced_in_the_team_channel(
    app: AppContext, plugin: BadgesPlugin, seed: Seed
) -> None:
    posts: list[tuple[str, str, str]] = []

    class Chat:
        async def post_to_channel(self, team: str, channel: str, text: str, **_: Any) -> bool:
            posts.append((team, channel, text))
            if len(posts) == 1:
                raise RuntimeError("Mattermost is down")  # logged; the next one still goes
            return True

    app.chat_ = Chat()  # type: ignore[assignment]
    await seed([("alice", NOV_30, reviews(5, ttfr_hours=1.0)), ("carol", NOV_30, reviews(1))])
    await plugin.evaluate(RUN)
    assert sorted(posts) == [
        (
            "acme",
            "backend-reviews",
            ":handshake: @alice.m earned the badge **Team Player** (2026-11)!",
        ),
        ("acme", "backend-reviews", ":zap: @alice.m earned the badge **Speed Demon** (2026-11)!"),
    ]  # carol (frontend: no channel) is not announced


async def test_the_api(app: AppContext, plugin: BadgesPlugin, evaluated: None) -> None:
    async with app.sessions() as session:
        catalogue = await api.catalogue(session)
        assert [b.slug for b in catalogue] == [
            "speed-demon",
            "thorough-reviewer",
            "team-player",
            "mentor",
        ]
        speed = await api.badge(session, "speed-demon")
        assert speed is not None and (speed.holders, speed.value, speed.min_reviews) == (1, 2.0, 5)
        assert await api.badge(session, "nope") is None
        assert [a.username for a in await api.holders(session, "team-player")] == ["alice"]
        mine = await api.user_badges(session, "ALICE.M")
        assert {a.slug for a in mine} == {"speed-demon", "team-player"}
        assert await api.user_badges(session, "nobody") == []
        assert len(await api.recent_awards(session, limit=1)) == 1
    async with app.sessions.begin() as session:
        with pytest.raises(ValueError, match=r"^operator: "):
            await api.define(
                session, {"name": "X", "metric": "comments", "operator": "~", "value": 1}
            )
        changed = await api.define(
            session,
            {"name": "Speed Demon", "metric": "avg_ttfr_hours", "operator": "<", "value": 4},
        )
        assert (changed.slug, changed.value, changed.holders) == ("speed-demon", 4.0, 1)
    await plugin.on_start()  # a restart keeps what the API changed
    async with app.sessions() as session:
        kept = await api.badge(session, "speed-demon")
        assert kept is not None and kept.value == 4.0


async def test_the_job_runs_for_the_run_day(plugin: BadgesPlugin, app: AppContext) -> None:
    await plugin.evaluate(JobRunContext("badges", "2026-12-01", True))  # no figures: no award
    async with app.sessions() as session:
        assert await api.recent_awards(session) == []
