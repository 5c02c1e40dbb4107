"""The digest job against the Mattermost stand-in: channels, webhooks, direct messages
(both engines)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import URL

from bot.chat import LEGACY_POST_LIMIT
from bot.context import AppContext
from bot.db import create_engine, create_sessionmaker
from bot.mattermost import Mattermost
from bot.sandbox.mattermost import MattermostStandIn, serve
from bot.scheduler import JobRunContext
from bot.users import sync_organisation
from plugins.digest.plugin import DigestFailed, DigestPlugin
from tests.conftest import settings_for
from tests.digest.test_service import NOW, TEAMS, USERS, Sessions, add_review

TEAM = "acme"


@dataclass
class World:
    mm: MattermostStandIn
    plugin: DigestPlugin
    sessions: Sessions

    def channel_posts(self, channel: str) -> list[str]:
        return [p["message"] for p in self.mm.posts_in(self.mm.channel(TEAM, channel)["id"])]

    def dms_to(self, user: str) -> list[str]:
        channel = self.mm.direct_channel("roulette-bot", user)
        return [p["message"] for p in self.mm.posts_in(channel["id"])]


async def _world(
    migrated_url: URL,
    mm: MattermostStandIn,
    url: str,
    digest: dict[str, Any] | None = None,
    *,
    teams: list[dict[str, Any]] = TEAMS,
) -> AsyncIterator[World]:
    settings = settings_for(
        migrated_url,
        teams=teams,
        users=USERS,
        mattermost_url=url,
        mattermost_token=mm.bot_token,
        mattermost_team=TEAM,
        digest=digest or {},
    )
    context = AppContext(settings=settings)
    engine = create_engine(settings.async_database_url)
    context.engine_, context.sessions_ = engine, create_sessionmaker(engine)
    await sync_organisation(context.sessions, settings)
    chat = Mattermost(settings, CollectorRegistry())
    me = await chat.driver.login()
    chat.user_id = str(me["id"])
    context.chat_ = chat
    plugin = DigestPlugin(context)
    plugin.now = lambda: NOW
    try:
        yield World(mm, plugin, context.sessions)
    finally:
        await chat.stop()
        await engine.dispose()


def standin(**options: Any) -> MattermostStandIn:
    mm = MattermostStandIn(**options)
    for name, locale in (("alice.m", "en"), ("bob", "en"), ("carol", "fr"), ("dave", "en")):
        mm.add_user(name, locale=locale)
    mm.add_team(TEAM, members=["roulette-bot", "alice.m", "bob", "carol", "dave"])
    mm.add_channel(TEAM, "backend-reviews", members=["roulette-bot", "alice.m", "bob"])
    mm.add_channel(TEAM, "frontend-reviews", members=["roulette-bot", "carol", "dave"])
    return mm


@pytest.fixture
async def world(migrated_url: URL) -> AsyncIterator[World]:
    mm = standin()
    async with serve(mm) as url:
        async for made in _world(migrated_url, mm, url):
            yield made


async def run(world: World) -> None:
    await world.plugin.digest(JobRunContext("digest", "2026-11-25", scheduled=True))


async def test_each_team_gets_its_digest_in_its_channel(world: World) -> None:
    await add_review(
        world.sessions, 1, team="backend", author="bob", reviewers={"alice": "active"}, hours_ago=50
    )
    await add_review(
        world.sessions,
        2,
        team="frontend",
        author="carol",
        reviewers={"dave": "active"},
        hours_ago=2,
    )
    await run(world)
    [backend] = world.channel_posts("backend-reviews")
    assert backend.startswith("**1 merge request waiting for review in backend**")
    assert "- :warning: [Change 1](" in backend and "@alice.m for 2 d 2 h" in backend
    [frontend] = world.channel_posts("frontend-reviews")
    assert "[Change 2](" in frontend and ":warning:" not in frontend
    assert world.dms_to("alice.m") == []  # personal digests are off by default


async def test_nothing_is_posted_when_nothing_is_pending(world: World) -> None:
    await add_review(
        world.sessions,
        1,
        team="backend",
        author="bob",
        reviewers={"alice": "completed"},
        hours_ago=5,
    )
    await run(world)
    assert world.channel_posts("backend-reviews") == []
    assert world.channel_posts("frontend-reviews") == []


async def test_a_missing_channel_is_logged_once_and_the_other_team_still_gets_its_digest(
    migrated_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    teams = [{"name": "backend", "channel": "no-such-channel"}, TEAMS[1]]
    mm = standin()
    async with serve(mm) as url:
        async for world in _world(migrated_url, mm, url, teams=teams):
            await add_review(
                world.sessions,
                1,
                team="backend",
                author="bob",
                reviewers={"alice": "active"},
                hours_ago=5,
            )
            await add_review(
                world.sessions,
                2,
                team="backend",
                author="bob",
                reviewers={"alice": "active"},
                hours_ago=6,
            )
            await add_review(
                world.sessions,
                3,
                team="frontend",
                author="carol",
                reviewers={"dave": "active"},
                hours_ago=2,
            )
            with caplog.at_level(logging.WARNING, logger="plugins.digest"):
                await run(world)
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1
            assert "backend" in warnings[0] and "no-such-channel" in warnings[0]
            [frontend] = world.channel_posts("frontend-reviews")
            assert "[Change 3](" in frontend


async def test_a_team_with_a_webhook_gets_its_digest_through_it(migrated_url: URL) -> None:
    mm = standin()
    async with serve(mm) as url:
        hook = mm.add_incoming_webhook(mm.channel(TEAM, "backend-reviews")["id"])
        webhooks = {"Backend": mm.hook_url(hook["id"])}
        async for world in _world(migrated_url, mm, url, {"webhooks": webhooks}):
            await add_review(
                world.sessions,
                1,
                team="backend",
                author="bob",
                reviewers={"alice": "active"},
                hours_ago=5,
            )
            await run(world)
            [post] = mm.posts_in(mm.channel(TEAM, "backend-reviews")["id"])
            assert post["message"].startswith("**1 merge request waiting for review in backend**")
            assert ("POST", f"/hooks/{hook['id']}") in mm.requests


async def test_a_failing_webhook_does_not_stop_the_other_teams(migrated_url: URL) -> None:
    mm = standin()
    async with serve(mm) as url:
        webhooks = {"backend": f"{url}/hooks/doesnotexist000000000000000"}
        async for world in _world(migrated_url, mm, url, {"webhooks": webhooks}):
            await add_review(
                world.sessions,
                1,
                team="backend",
                author="bob",
                reviewers={"alice": "active"},
                hours_ago=5,
            )
            await add_review(
                world.sessions,
                2,
                team="frontend",
                author="carol",
                reviewers={"dave": "active"},
                hours_ago=2,
            )
            with pytest.raises(DigestFailed, match="backend"):
                await run(world)
            assert len(world.channel_posts("frontend-reviews")) == 1
            assert world.channel_posts("backend-reviews") == []


async def test_personal_digests_in_each_readers_language(migrated_url: URL) -> None:
    mm = standin()
    async with serve(mm) as url:
        async for world in _world(migrated_url, mm, url, {"personal": True}):
            await add_review(
                world.sessions,
                1,
                team="backend",
                author="bob",
                reviewers={"carol": "active", "alice": "active"},
                hours_ago=5,
            )
            await add_review(
                world.sessions,
                2,
                team="frontend",
                author="dave",
                reviewers={"carol": "active"},
                hours_ago=3,
            )
            await run(world)
            [french] = world.dms_to("carol")
            assert french.startswith("**Vous avez 2 relectures en attente**")
            assert french.index("[Change 1](") < french.index("[Change 2](")  # oldest first
            [english] = world.dms_to("alice.m")
            assert english.startswith("**You have 1 review waiting for you**")
            assert world.dms_to("dave") == []


async def test_a_huge_backlog_is_cut_to_the_servers_post_limit(migrated_url: URL) -> None:
    mm = standin(max_post_runes=LEGACY_POST_LIMIT, server_version="10.11.0")
    async with serve(mm) as url:
        async for world in _world(migrated_url, mm, url):
            for iid in range(1, 201):
                await add_review(
                    world.sessions,
                    iid,
                    team="backend",
                    author="bob",
                    reviewers={"alice": "active"},
                    hours_ago=iid,
                )
            await run(world)
            [post] = world.channel_posts("backend-reviews")
            assert len(post) <= LEGACY_POST_LIMIT
            assert post.split("\n")[-1].startswith("… and ")
