"""Handing one reviewer's slot over (``plugins.roulette.api.replace_reviewer``) through the
GitLab stand-in, on both engines; and "when each reviewer will look" in the note and the
chat answer (``Plan.back_at``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.app import REGISTRY, create_app
from bot.gitlab import MergeRequestRef
from bot.http import CONTEXT
from bot.i18n import translator
from bot.models import ReviewerAssignment, User
from bot.sandbox.gitlab import GitLabStandIn
from bot.settings import Settings
from bot.users import sync_organisation
from plugins.ooo import api as ooo_api
from plugins.roulette import api, tracking
from plugins.roulette.chat import back_text, chat_reply, relative_time
from plugins.roulette.flags import Flags
from plugins.roulette.plugin import RoulettePlugin
from plugins.roulette.reply import reply_note

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
REF = MergeRequestRef("acme/shop", 1)
# Tuesday 10 March 2026, 10:00 UTC: 11:00 in Paris, 19:00 in Tokyo.
NOW = datetime(2026, 3, 10, 10, tzinfo=UTC)


async def start(aiohttp_client: MakeClient, settings: Settings) -> RoulettePlugin:
    client = await aiohttp_client(create_app(settings))
    [plugin] = [p for p in client.app[REGISTRY].plugins if isinstance(p, RoulettePlugin)]
    await sync_organisation(client.app[CONTEXT].sessions, settings)
    return plugin


async def statuses(plugin: RoulettePlugin) -> dict[str, tuple[str, str]]:
    async with plugin.app.sessions() as session:
        rows = await session.execute(
            select(User.gitlab_username, ReviewerAssignment.role, ReviewerAssignment.status).join(
                ReviewerAssignment, ReviewerAssignment.user_id == User.id
            )
        )
        return {str(n): (str(r), str(s)) for n, r, s in rows.all()}


def handover_notes(standin: GitLabStandIn) -> list[str]:
    return [n["body"] for n in standin.notes("acme/shop", 1) if "handover=" in n["body"]]


def reviewers(standin: GitLabStandIn) -> list[str]:
    return [r["username"] for r in standin.merge_request("acme/shop", 1)["reviewers"]]


async def test_a_pass_hands_the_slot_over_once(
    org: Settings, aiohttp_client: MakeClient, standin: GitLabStandIn
) -> None:
    plugin = await start(aiohttp_client, org)
    plan = await plugin.pick_and_announce("test:roll", REF, Flags())
    roles = {p.role: p.username for p in plan.selection.picks}
    passer = roles["external"]
    others = [p.username for p in plan.selection.picks if p.username != passer]

    new = await api.replace_reviewer(plugin.app, "acme/shop", 1, passer, reason="on a deadline")
    assert new is not None and new not in {passer, *others, "alice"}
    assert sorted(reviewers(standin)) == sorted([*others, new])
    [note] = handover_notes(standin)
    assert f"@{passer} handed this review over to @{new} (external" in note
    assert "Reason: on a deadline" in note
    rows = await statuses(plugin)
    assert rows[passer] == ("external", "passed")
    assert rows[new] == ("external", "active")

    # A retry (a double click that got through, a crash before the answer): no second note.
    assert await api.replace_reviewer(plugin.app, "acme/shop", 1, passer, reason="x") == new
    assert len(handover_notes(standin)) == 1
    assert sorted(reviewers(standin)) == sorted([*others, new])
    assert await statuses(plugin) == rows


async def test_a_crash_after_the_note_finishes_from_the_note(
    org: Settings,
    aiohttp_client: MakeClient,
    standin: GitLabStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugin = await start(aiohttp_client, org)
    plan = await plugin.pick_and_announce("test:roll", REF, Flags())
    passer = next(p.username for p in plan.selection.picks if p.role == "external")
    record = tracking.record_handover

    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the worker died")

    monkeypatch.setattr(tracking, "record_handover", crash)
    with pytest.raises(RuntimeError):
        await api.replace_reviewer(plugin.app, "acme/shop", 1, passer, reason="")
    monkeypatch.setattr(tracking, "record_handover", record)
    [note] = handover_notes(standin)
    new = await api.replace_reviewer(plugin.app, "acme/shop", 1, passer, reason="")
    assert handover_notes(standin) == [note] and f"@{new} " in note
    assert "Reason" not in note
    rows = await statuses(plugin)
    assert rows[passer][1] == "passed" and new is not None and rows[new][1] == "active"


async def test_nobody_left_in_the_pool(
    org: Settings, aiohttp_client: MakeClient, standin: GitLabStandIn
) -> None:
    """The backend team is alice (the author), bob and carol: with the other one busy,
    nobody is left for the team slot."""
    plugin = await start(aiohttp_client, org)
    plan = await plugin.pick_and_announce("test:roll", REF, Flags())
    passer = next(p.username for p in plan.selection.picks if p.role == "team")
    other = ({"bob", "carol"} - {passer}).pop()
    busy = {"availability": "busy", "emoji": None, "message": None}
    await plugin.app.cache.set_json(f"gl:status:{other}", busy, ttl=300)
    assert await api.replace_reviewer(plugin.app, "acme/shop", 1, passer, reason="") is None
    [note] = handover_notes(standin)
    assert f"@{passer} handed this review over, but nobody else is available" in note
    assert passer not in reviewers(standin)
    assert (await statuses(plugin))[passer][1] == "passed"


async def test_a_merged_mr_is_left_alone(
    org: Settings, aiohttp_client: MakeClient, standin: GitLabStandIn
) -> None:
    plugin = await start(aiohttp_client, org)
    plan = await plugin.pick_and_announce("test:roll", REF, Flags())
    standin.merge("acme/shop", 1)
    passer = plan.selection.picks[0].username
    assert await api.replace_reviewer(plugin.app, "acme/shop", 1, passer, reason="") is None
    assert handover_notes(standin) == []


async def test_the_new_reviewer_back_at_work_in_the_note(
    org: Settings, aiohttp_client: MakeClient, standin: GitLabStandIn
) -> None:
    """dave works in Tokyo, where it is 19:00: the note says when he is back."""
    for name in ("erin", "frank"):  # before the start: the app caches statuses
        standin.set_status(name, availability="busy")
    plugin = await start(aiohttp_client, org)
    standin.set_reviewers("acme/shop", 1, ["bob", "carol", "erin"])
    new = await api.replace_reviewer(plugin.app, "acme/shop", 1, "erin", reason="", now=NOW)
    assert new == "dave"
    [note] = handover_notes(standin)
    assert "back at 09:00 Asia/Tokyo, in about 14 h" in note


async def test_when_each_reviewer_will_look(
    org: Settings, aiohttp_client: MakeClient, standin: GitLabStandIn
) -> None:
    standin.set_status("frank", availability="busy")
    standin.set_status("erin", availability="busy")
    plugin = await start(aiohttp_client, org)
    # dave is away on Wednesday (recorded "today" being Monday)
    wednesday = "2026-03-11"
    monday = datetime(2026, 3, 9, 10, tzinfo=UTC)
    await ooo_api.record(
        plugin.app.sessions, org, "dave", wednesday, wednesday, "Secret", now=monday
    )
    plan = await plugin.service.plan(REF, Flags(), now=NOW)
    assert "dave" in plan.selection.reviewers
    back = plan.back("dave")
    assert back is not None and str(back.tzinfo) == "Asia/Tokyo"
    assert (back.day, back.hour) == (12, 9)  # Thursday, his Wednesday away is skipped
    note = reply_note(plan, "k", explain=False, locale="en")
    line = next(line for line in note.splitlines() if "@dave" in line)
    assert line.endswith("— back on 2026-03-12 at 09:00 Asia/Tokyo, in about 38 h")
    assert "Secret" not in note
    assert not any("@alice" in line and "back" in line for line in note.splitlines())
    fr = chat_reply(plan, translator("fr"), lambda n: n, explain=False)
    assert "de retour le 2026-03-12 à 09:00 Asia/Tokyo, dans environ 38 h" in fr


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (10, "in about 1 min"),
        (2400, "in about 40 min"),
        (6 * 3600 + 100, "in about 6 h"),
        (47 * 3600, "in about 47 h"),
        (3 * 86400, "in about 3 days"),
    ],
)
def test_relative_time(seconds: float, text: str) -> None:
    assert relative_time(seconds, translator("en")) == text


def test_back_text_french() -> None:
    back = datetime(2026, 3, 11, 9, tzinfo=ZoneInfo("Europe/Paris"))
    now = datetime(2026, 3, 11, 2, tzinfo=UTC)
    assert back_text(back, now, translator("fr")) == (
        "de retour à 09:00 Europe/Paris, dans environ 6 h"
    )
