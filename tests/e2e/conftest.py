"""The real app over HTTP, the GitLab stand-in, and GitLab's webhook sender between them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import URL

from bot.app import create_app
from bot.http import CONTEXT
from bot.models import MrReview, ReviewerAssignment, User, WebhookDelivery
from bot.sandbox.gitlab import GitLabStandIn
from bot.sandbox.webhooks import WebhookSender
from bot.settings import Settings
from bot.users import sync_organisation
from tests.conftest import settings_for
from tests.roulette.conftest import TEAMS, TOKEN, USERS
from tests.roulette.conftest import gitlab_url as gitlab_url
from tests.roulette.conftest import standin as standin

SECRET = "e2e-webhook-secret"
PROJECT = "acme/shop"
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def e2e_settings(url: URL, gitlab_url: str, **values: Any) -> Settings:
    defaults: dict[str, Any] = {
        "teams": TEAMS,
        "users": USERS,
        "gitlab_url": gitlab_url,
        "gitlab_token": TOKEN,
        "gitlab_webhook_secret": SECRET,
        "webhook_retry_seconds": 0.05,
        "webhook_max_attempts": 3,
        "webhook_lease_seconds": 1,
        "shutdown_timeout": 2,
    }
    return settings_for(url, **(defaults | values))


@dataclass
class Bot:
    client: Client
    sender: WebhookSender
    standin: GitLabStandIn

    @property
    def context(self) -> Any:
        return self.client.app[CONTEXT]

    async def comment(self, author: str, body: str, iid: int = 1) -> Any:
        return await self.sender.comment(PROJECT, iid, author, body)

    def bot_notes(self, iid: int = 1) -> list[dict[str, Any]]:
        notes = self.standin.notes(PROJECT, iid)
        return [n for n in notes if n["author"]["username"] == "roulette-bot" and not n["system"]]

    def reviewers(self, iid: int = 1) -> list[str]:
        return [r["username"] for r in self.standin.merge_request(PROJECT, iid)["reviewers"]]

    async def rows(self, model: Any) -> list[Any]:
        async with self.context.sessions() as session:
            return list((await session.scalars(select(model))).all())

    async def settled(self, within: float = 30.0) -> None:
        """Wait until every stored delivery is done or dead."""
        deadline = time.monotonic() + within
        while True:
            rows = await self.rows(WebhookDelivery)
            if rows and all(r.status in ("done", "dead") for r in rows):
                return
            assert time.monotonic() < deadline, [(r.status, r.last_error) for r in rows]
            await asyncio.sleep(0.02)

    async def assignments(self) -> dict[str, tuple[str, str]]:
        async with self.context.sessions() as session:
            rows = await session.execute(
                select(
                    User.gitlab_username, ReviewerAssignment.role, ReviewerAssignment.status
                ).join(User, User.id == ReviewerAssignment.user_id)
            )
            return {name: (role, status) for name, role, status in rows.all()}

    async def review(self) -> MrReview:
        [review] = await self.rows(MrReview)
        return review


async def start_bot(aiohttp_client: MakeClient, standin: GitLabStandIn, settings: Settings) -> Bot:
    app = create_app(settings)
    client = await aiohttp_client(app)
    await sync_organisation(client.app[CONTEXT].sessions, settings)
    sender = WebhookSender(standin, str(client.make_url("/webhook/gitlab")), secret=SECRET)
    return Bot(client, sender, standin)


@pytest.fixture
async def bot(
    migrated_url: URL, gitlab_url: str, standin: GitLabStandIn, aiohttp_client: MakeClient
) -> Bot:
    return await start_bot(aiohttp_client, standin, e2e_settings(migrated_url, gitlab_url))
