"""The handover area end to end: the real app between the GitLab and Mattermost stand-ins.

A roll DMs each reviewer a request with three buttons; clicks go through the stand-in's
``click`` (what Mattermost posts to the integration URL); the job runs on an injected
clock (``HandoverPlugin.now`` and ``run_due``), never on sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import URL

from bot.app import REGISTRY, create_app
from bot.http import CONTEXT
from bot.models import ReviewerAssignment, User, WebhookDelivery
from bot.sandbox.gitlab import GitLabStandIn
from bot.sandbox.mattermost import MattermostStandIn
from bot.sandbox.webhooks import WebhookSender
from bot.users import sync_organisation
from plugins.handover.models import ReviewRequest
from plugins.ooo.models import OooStatus
from tests.e2e.conftest import PROJECT, SECRET, MakeClient, e2e_settings
from tests.e2e.test_mattermost_flow import TEAM, _until
from tests.e2e.test_mattermost_flow import mattermost as mattermost
from tests.e2e.test_mattermost_flow import port as port
from tests.roulette.conftest import gitlab_url as gitlab_url
from tests.roulette.conftest import standin as standin

MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
USERS = [
    {"gitlab": "alice", "team": "backend", "role": "maintainer"},
    {"gitlab": "bob", "team": "backend"},
    {"gitlab": "carol", "team": "backend"},
    {"gitlab": "dave", "team": "frontend"},
    {"gitlab": "erin", "team": "frontend"},
    {"gitlab": "frank", "team": "platform"},
]


@dataclass
class World:
    client: Any
    mm: MattermostStandIn
    gitlab: GitLabStandIn
    sender: WebhookSender

    @property
    def context(self) -> Any:
        return self.client.app[CONTEXT]

    @property
    def plugin(self) -> Any:
        [plugin] = [p for p in self.client.app[REGISTRY].plugins if p.name == "handover"]
        return plugin

    def reviewers(self) -> list[str]:
        return [r["username"] for r in self.gitlab.merge_request(PROJECT, 1)["reviewers"]]

    def requests_to(self, user: str) -> list[dict[str, Any]]:
        """The bot's DMs to ``user`` (posts with their props)."""
        channel = self.mm.direct_channel("roulette-bot", user)
        bot_id = self.mm.user("roulette-bot")["id"]
        return [p for p in self.mm.posts_in(channel["id"]) if p["user_id"] == bot_id]

    def notes(self) -> list[str]:
        return [
            n["body"]
            for n in self.gitlab.notes(PROJECT, 1)
            if n["author"]["username"] == "roulette-bot" and not n["system"]
        ]

    async def settled(self) -> None:
        async def done() -> bool:
            async with self.context.sessions() as session:
                rows = (await session.scalars(select(WebhookDelivery))).all()
            return bool(rows) and all(r.status == "done" for r in rows)

        await _until(done, within=20)

    async def roll(self, at: datetime = MONDAY) -> list[str]:
        """/roulette on the MR; every request's clock set to ``at``; the reviewers."""
        await self.sender.comment(PROJECT, 1, "alice", "/roulette")
        await self.settled()
        async with self.context.sessions.begin() as session:
            await session.execute(update(ReviewRequest).values(requested_at=at))
        return self.reviewers()

    async def request_rows(self) -> list[ReviewRequest]:
        async with self.context.sessions() as session:
            return list((await session.scalars(select(ReviewRequest))).all())


def actions(post: dict[str, Any]) -> list[str]:
    attachments = (post.get("props") or {}).get("attachments") or []
    return [a["id"] for attachment in attachments for a in attachment.get("actions") or []]


@pytest.fixture
async def world(
    migrated_url: URL,
    gitlab_url: str,
    standin: GitLabStandIn,
    mattermost: tuple[MattermostStandIn, str],
    aiohttp_client: MakeClient,
    port: int,
) -> World:
    mm, mm_url = mattermost
    settings = e2e_settings(
        migrated_url,
        gitlab_url,
        mattermost_url=mm_url,
        mattermost_token=mm.bot_token,
        mattermost_team=TEAM,
        public_url=f"http://127.0.0.1:{port}",
        users=USERS,
    )
    client = await aiohttp_client(create_app(settings), server_kwargs={"port": port})
    await sync_organisation(client.app[CONTEXT].sessions, settings)
    sender = WebhookSender(standin, str(client.make_url("/webhook/gitlab")), secret=SECRET)
    return World(client, mm, standin, sender)


async def test_a_roll_sends_requests_and_accept_sets_the_first_response(world: World) -> None:
    reviewers = await world.roll()
    assert reviewers
    first = reviewers[0]
    [post] = world.requests_to(first)
    assert actions(post) == ["accept", "pass", "snooze"]
    world.plugin.now = lambda: MONDAY + timedelta(hours=1)
    status, body = await world.mm.click(first, post["id"], "accept")
    assert status == 200, body
    [post] = world.requests_to(first)
    assert actions(post) == [] and "accepted" in post["message"]
    async with world.context.sessions() as session:
        responded = await session.scalar(
            select(ReviewerAssignment.first_response_at)
            .join(User, User.id == ReviewerAssignment.user_id)
            .where(User.gitlab_username == first)
        )
    assert responded == MONDAY + timedelta(hours=1)
    with pytest.raises(KeyError):  # the buttons are gone: nothing to click again
        await world.mm.click(first, post["id"], "accept")


async def test_a_click_by_someone_else_or_forged_is_refused(world: World) -> None:
    [first, *_] = await world.roll()
    [post] = world.requests_to(first)
    other = next(u["gitlab"] for u in USERS if u["gitlab"] not in world.reviewers())
    [signed] = [
        a["integration"]["context"]
        for attachment in post["props"]["attachments"]
        for a in attachment["actions"]
        if a["id"] == "accept"
    ]
    stolen = {  # the real button's context, clicked by someone else
        "user_id": world.mm.user(other)["id"],
        "user_name": other,
        "channel_id": post["channel_id"],
        "post_id": post["id"],
        "trigger_id": "x",
        "type": "button",
        "context": signed,
    }
    answer = await world.client.post("/mattermost/action", json=stolen)
    body = await answer.json()
    assert answer.status == 200 and body.get("ephemeral_text"), body
    assert "update" not in body
    forged = {
        "user_id": world.mm.user(first)["id"],
        "user_name": first,
        "post_id": post["id"],
        "trigger_id": "x",
        "type": "button",
        "context": {"request": 1, "action": "accept"},
    }
    answer = await world.client.post("/mattermost/action", json=forged)
    assert answer.status == 200 and "ephemeral_text" in await answer.json()
    assert [r.answer for r in await world.request_rows()] == [None] * len(world.reviewers())
    assert actions(world.requests_to(first)[0]) == ["accept", "pass", "snooze"]


async def test_pass_hands_over_once(world: World) -> None:
    reviewers = await world.roll()
    passer = reviewers[0]
    [post] = world.requests_to(passer)
    notes_before = len(world.notes())
    # A double click opens two dialogs; both are submitted: one hand-over.
    for _ in range(2):
        status, body = await world.mm.click(passer, post["id"], "pass")
        assert status == 200, body
    opened = list(world.mm.dialogs_opened)
    assert len(opened) == 2
    for dialog in opened:
        status, answer = await world.mm.submit_dialog(dialog, passer, {"reason": "on call"})
        assert status == 200, answer
    after = world.reviewers()
    assert passer not in after and len(after) == len(reviewers)
    [new] = set(after) - set(reviewers)
    assert len(world.notes()) == notes_before + 1
    assert len(world.requests_to(new)) == 1
    [post] = world.requests_to(passer)
    assert actions(post) == [] and f"@{new}" in post["message"]
    registry = world.context.metrics.registry
    assert registry.get_sample_value("review_handovers_total", {"reason": "passed"}) == 1
    assert registry.get_sample_value("review_requests_answered_total", {"answer": "passed"}) == 1


async def test_a_silent_reviewer_is_nudged_once_then_handed_over(world: World) -> None:
    reviewers = await world.roll()
    plugin = world.plugin
    assert await plugin.run_due(MONDAY + timedelta(hours=3)) == (0, 0)
    assert await plugin.run_due(MONDAY + timedelta(hours=4, minutes=30)) == (len(reviewers), 0)
    assert await plugin.run_due(MONDAY + timedelta(hours=5)) == (0, 0)
    for name in reviewers:
        assert len(world.requests_to(name)) == 2  # the request and one reminder
    # 9 working hours on Monday (09:00-18:00), 7 on Tuesday: 16.
    handed = await plugin.run_due(MONDAY + timedelta(days=1, hours=7))
    assert handed == (0, len(reviewers))
    assert await plugin.run_due(MONDAY + timedelta(days=1, hours=8)) == (0, 0)
    assert any("no answer after 16 working hours" in n for n in world.notes())
    registry = world.context.metrics.registry
    assert registry.get_sample_value("review_nudges_total") == len(reviewers)
    assert registry.get_sample_value("review_handovers_total", {"reason": "no_answer"}) == len(
        reviewers
    )


async def test_no_nudge_over_the_weekend_or_an_absence(world: World) -> None:
    friday = MONDAY - timedelta(days=3) + timedelta(hours=7)  # Friday 16:00
    reviewers = await world.roll(at=friday)
    plugin = world.plugin
    assert await plugin.run_due(MONDAY - timedelta(hours=1)) == (0, 0)  # 2 h on Friday
    async with world.context.sessions.begin() as session:
        for name in reviewers:
            user = await session.scalar(select(User).where(User.gitlab_username == name))
            assert user is not None
            session.add(
                OooStatus(user_id=user.id, start_date=date(2026, 12, 7), end_date=date(2026, 12, 7))
            )
    assert await plugin.run_due(MONDAY + timedelta(hours=8)) == (0, 0)  # Monday: away
    nudged, _ = await plugin.run_due(MONDAY + timedelta(days=1, hours=2))  # 2 h + 2 h
    assert nudged == len(reviewers)


async def test_snooze_delays_the_nudge(world: World) -> None:
    [first, *others] = await world.roll()
    [post] = world.requests_to(first)
    world.plugin.now = lambda: MONDAY + timedelta(hours=3)
    status, body = await world.mm.click(first, post["id"], "snooze")
    assert status == 200, body
    [post] = world.requests_to(first)
    assert actions(post) == ["accept", "pass", "snooze2h", "snoozemorning"]
    status, body = await world.mm.click(first, post["id"], "snooze2h")
    assert status == 200, body
    assert await world.plugin.run_due(MONDAY + timedelta(hours=4, minutes=30)) == (
        len(others),
        0,
    )
    assert len(world.requests_to(first)) == 1  # snoozed until 14:00: not yet
    assert await world.plugin.run_due(MONDAY + timedelta(hours=9)) == (1, 0)
