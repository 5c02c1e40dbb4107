"""Who can be picked now, for everyone (``plugins.roulette.api.availability``), and the
``available_reviewers{team,role}`` gauge after a roll and after a refresh tick, read from
GET /metrics of the real app (both engines)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update
from sqlalchemy.engine import URL

from bot.app import REGISTRY, create_app
from bot.gitlab import MergeRequestRef
from bot.http import CONTEXT
from bot.models import MrReview, ReviewerAssignment, User
from bot.sandbox.gitlab import GitLabStandIn
from bot.settings import Settings
from bot.users import sync_organisation
from plugins.ooo.models import OooStatus
from plugins.roulette import api
from plugins.roulette.flags import Flags
from plugins.roulette.plugin import RoulettePlugin
from tests.conftest import settings_for
from tests.roulette.conftest import TEAMS, TOKEN, USERS

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

SECRET_REASON = "Surgery in Lyon"
ORG: list[dict[str, Any]] = [
    {**u, "max_active_reviews": 1} if u["gitlab"] == "carol" else u for u in USERS
] + [{"gitlab": "gina", "team": "platform"}]


def org_settings(url: URL, gitlab_url: str | None) -> Settings:
    values: dict[str, Any] = {"teams": TEAMS, "users": ORG}
    if gitlab_url is not None:
        values |= {"gitlab_url": gitlab_url, "gitlab_token": TOKEN}
    return settings_for(url, **values)


async def _user_id(session: Any, name: str) -> int:
    found = await session.scalar(select(User.id).where(User.gitlab_username == name))
    assert found is not None
    return int(found)


async def away(context: Any, name: str) -> None:
    """An out-of-office period around today, whatever the person's timezone."""
    today = datetime.now(UTC).date()
    async with context.sessions.begin() as session:
        session.add(
            OooStatus(
                user_id=await _user_id(session, name),
                start_date=today - timedelta(days=2),
                end_date=today + timedelta(days=2),
                reason=SECRET_REASON,
            )
        )


async def seed(context: Any, settings: Settings) -> None:
    """dave out of office, carol at capacity (1 of 1), gone inactive, outsider stored only
    (a GitLab group member, no team)."""
    await sync_organisation(context.sessions, settings)
    async with context.sessions.begin() as session:
        session.add(User(gitlab_username="gone", mattermost_username="gone", is_active=False))
        session.add(User(gitlab_username="outsider", mattermost_username="outsider"))
        review = MrReview(
            project_id=7,
            project_path="acme/other",
            mr_iid=9,
            web_url="https://gitlab.example.com/acme/other/-/merge_requests/9",
            author_username="alice",
        )
        session.add(review)
        await session.flush()
        session.add(
            ReviewerAssignment(
                review_id=review.id, user_id=await _user_id(session, "carol"), role="team"
            )
        )
    await away(context, "dave")


def set_statuses(standin: GitLabStandIn) -> None:
    standin.add_user("gina")
    standin.set_status("bob", availability="busy")
    standin.set_status("gina", message="On PTO until Monday")
    standin.fail_next("/users/erin/status", 503, times=10_000)  # GitLab cannot tell


async def start(
    aiohttp_client: MakeClient, settings: Settings, ready: bool = True
) -> tuple[Client, RoulettePlugin]:
    client = await aiohttp_client(create_app(settings))
    [plugin] = [p for p in client.app[REGISTRY].plugins if isinstance(p, RoulettePlugin)]
    await seed(client.app[CONTEXT], settings)
    if ready:
        assert await plugin.refresh_available()  # the start-up tick ran on an empty database
    return client, plugin


async def gauge(client: Client) -> dict[tuple[str, str], float]:
    """``available_reviewers`` as GET /metrics shows it: {(team, role): value}."""
    response = await client.get("/metrics")
    assert response.status == 200
    values: dict[tuple[str, str], float] = {}
    for line in (await response.text()).splitlines():
        if line.startswith("available_reviewers{"):
            labels, value = line.removeprefix("available_reviewers{").split("} ")
            parts = dict(item.split("=", 1) for item in labels.split(","))
            values[(parts["team"].strip('"'), parts["role"].strip('"'))] = float(value)
    return values


EVERYONE = {
    ("backend", "maintainer"): 1.0,  # alice
    ("backend", "reviewer"): 0.0,  # bob busy, carol at capacity
    ("frontend", "reviewer"): 1.0,  # erin (status unknown: counted), dave out of office
    ("platform", "reviewer"): 1.0,  # frank; gina away
    ("", "reviewer"): 1.0,  # outsider; gone inactive
}


@pytest.fixture
def org(migrated_url: URL, gitlab_url: str, standin: GitLabStandIn) -> Settings:
    set_statuses(standin)
    return org_settings(migrated_url, gitlab_url)


async def test_everyone_with_the_engines_codes(org: Settings, aiohttp_client: MakeClient) -> None:
    _, plugin = await start(aiohttp_client, org)
    people = await api.availability(plugin.app)
    assert [(p.username, p.team, p.role, p.available, p.reason, p.detail) for p in people] == [
        ("alice", "backend", "maintainer", True, None, None),
        ("bob", "backend", "reviewer", False, "busy", "GitLab status is busy"),
        ("carol", "backend", "reviewer", False, "capacity", "1 active review, at most 1"),
        ("dave", "frontend", "reviewer", False, "ooo", "out of office today"),
        ("erin", "frontend", "reviewer", True, None, "GitLab status check failed"),
        ("frank", "platform", "reviewer", True, None, None),
        ("gina", "platform", "reviewer", False, "away", "GitLab status message says 'pto'"),
        ("gone", None, "reviewer", False, "inactive", "no longer in the organisation"),
        ("outsider", None, "reviewer", True, None, None),
    ]
    assert not any(SECRET_REASON.lower() in repr(p).lower() for p in people)


async def test_the_gauge_after_a_refresh_tick(org: Settings, aiohttp_client: MakeClient) -> None:
    client, plugin = await start(aiohttp_client, org)
    assert await gauge(client) == EVERYONE

    context = client.app[CONTEXT]
    async with context.sessions.begin() as session:  # dave is back, carol's review merged
        await session.execute(update(OooStatus).values(cancelled_at=datetime.now(UTC)))
        await session.execute(update(MrReview).values(state="merged"))
    await away(context, "alice")  # the only backend maintainer leaves: 0, not stale
    assert await plugin.refresh_available()
    assert await gauge(client) == EVERYONE | {
        ("backend", "maintainer"): 0.0,
        ("backend", "reviewer"): 1.0,
        ("frontend", "reviewer"): 2.0,
    }


async def test_the_gauge_after_a_roll_without_more_gitlab_calls(
    org: Settings, aiohttp_client: MakeClient, standin: GitLabStandIn
) -> None:
    client, plugin = await start(aiohttp_client, org)
    await away(client.app[CONTEXT], "frank")  # takes effect at the next roll
    asked = len(standin.requests)
    plan = await plugin.pick_and_announce("test:roll", MergeRequestRef("acme/shop", 1), Flags())
    statuses = {path for _, path in standin.requests[asked:] if path.endswith("/status")}
    # Only what the selection itself asks: the one status GitLab cannot give (not cached).
    assert statuses == {"/api/v4/users/erin/status"}
    assert "frank" not in plan.selection.reviewers
    # alice wrote the MR, and still counts: the gauge is about everyone, not this MR.
    assert await gauge(client) == EVERYONE | {("platform", "reviewer"): 0.0}


async def test_the_refresh_runs_in_the_background_until_stop(
    org: Settings, aiohttp_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RoulettePlugin, "REFRESH_INTERVAL", 0.02)
    client, plugin = await start(aiohttp_client, org, ready=False)
    deadline = time.monotonic() + 10
    while await gauge(client) != EVERYONE:  # the background task catches up on its own
        assert time.monotonic() < deadline, await gauge(client)
        await asyncio.sleep(0.02)
    task = plugin._refresher
    assert task is not None and not task.done()
    await plugin.on_stop()
    assert task.cancelled() and plugin._refresher is None


async def test_a_failing_refresh_is_a_warning_and_keeps_the_gauge(
    org: Settings,
    aiohttp_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, plugin = await start(aiohttp_client, org)

    async def broken(now: datetime | None = None) -> list[Any]:
        raise ConnectionError("database gone")

    monkeypatch.setattr(plugin.service, "standings", broken)
    with caplog.at_level("WARNING", "plugins.roulette"):
        assert not await plugin.refresh_available()
    assert "could not refresh the available reviewers" in caplog.text
    assert await gauge(client) == EVERYONE


async def test_without_gitlab_only_ooo_capacity_and_inactive_count(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    client, plugin = await start(aiohttp_client, org_settings(migrated_url, None))
    people = {p.username: p for p in await api.availability(plugin.app)}
    assert {n for n, p in people.items() if not p.available} == {"carol", "dave", "gone"}
    assert people["bob"].detail is None  # no status read, nothing to say
    assert await gauge(client) == EVERYONE | {
        ("backend", "reviewer"): 1.0,  # bob's busy status is not read
        ("platform", "reviewer"): 2.0,  # nor gina's away message
    }
