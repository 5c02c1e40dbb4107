"""Chat limits end to end: a large organisation through each command on a Mattermost
with the old 4,000-rune posts, and ``/ooo`` on a slow Mattermost whose trigger ids live
3 s (PROTOCOLS.md A3, A8)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import pytest
import regex
from sqlalchemy.engine import URL

from bot.app import create_app
from bot.chat import LEGACY_POST_LIMIT
from bot.http import CONTEXT
from bot.sandbox.gitlab import GitLabStandIn
from bot.sandbox.mattermost import MattermostStandIn, serve
from bot.users import sync_organisation
from plugins.ooo.service import OooService
from tests.e2e.conftest import PROJECT, MakeClient, e2e_settings
from tests.e2e.test_mattermost_flow import CHANNEL, TEAM, Chat, _free_port, _until

PEOPLE = 900
USERNAMES = ("alice", "bob", "carol", "dave", "erin", "frank")
MARKER = regex.compile(r"… and (\d+) more$")


def every_post(mm: MattermostStandIn) -> list[str]:
    """Every message the stand-in accepted: in the channel, in the bot's DMs with each
    Mattermost user, and ephemeral posts."""
    channels = [mm.channel(TEAM, CHANNEL)["id"]] + [
        mm.direct_channel("roulette-bot", name)["id"] for name in USERNAMES
    ]
    posts = [p["message"] for channel in channels for p in mm.posts_in(channel)]
    return posts + [e["message"] for e in mm.ephemeral_posts]


async def start(
    url: URL,
    gitlab_url: str,
    gitlab: GitLabStandIn,
    mm: MattermostStandIn,
    mm_url: str,
    aiohttp_client: MakeClient,
    users: list[dict[str, Any]],
) -> Chat:
    port = _free_port()
    settings = e2e_settings(
        url,
        gitlab_url,
        mattermost_url=mm_url,
        mattermost_token=mm.bot_token,
        mattermost_team=TEAM,
        public_url=f"http://127.0.0.1:{port}",
        webhook_lease_seconds=3,
        users=users,
    )
    client = await aiohttp_client(create_app(settings), server_kwargs={"port": port})
    await sync_organisation(client.app[CONTEXT].sessions, settings)
    chat = Chat(client, mm, gitlab)
    await _until(lambda: chat.context.chat_.state == "connected")
    return chat


# ----------------------------------------------------------------- a large organisation


@pytest.fixture
async def old_mattermost() -> AsyncIterator[tuple[MattermostStandIn, str]]:
    mm = MattermostStandIn(max_post_runes=LEGACY_POST_LIMIT, server_version="10.11.0")
    for name in USERNAMES:
        mm.add_user(name)
    mm.add_team(TEAM, members=["roulette-bot", "alice", "bob", "carol", "dave", "erin", "frank"])
    mm.add_channel(TEAM, CHANNEL, members=["roulette-bot", "alice", "bob", "carol"])
    async with serve(mm) as url:
        yield mm, url


@pytest.fixture
async def big(
    migrated_url: URL,
    gitlab_url: str,
    standin: GitLabStandIn,
    old_mattermost: tuple[MattermostStandIn, str],
    aiohttp_client: MakeClient,
) -> Chat:
    mm, mm_url = old_mattermost
    users: list[dict[str, Any]] = [
        {"gitlab": "alice", "team": "backend", "role": "maintainer"},
        {"gitlab": "bob", "team": "backend"},
        {"gitlab": "carol", "team": "backend"},
    ]
    for i in range(PEOPLE - len(users)):
        name = f"dev{i:03d}"
        standin.add_user(name)
        users.append({"gitlab": name, "team": "frontend" if i % 2 else "platform"})
    return await start(migrated_url, gitlab_url, standin, mm, mm_url, aiohttp_client, users)


async def test_roulette_explain_for_900_people_stays_within_the_limit(big: Chat) -> None:
    url = f"{big.gitlab.base_url}/{PROJECT}/-/merge_requests/1"
    body = await big.slash("alice", f"/roulette {url} --explain")
    await _until(lambda: any("Candidates" in m for m in big.channel_posts()), within=60)
    answer = [m for m in big.channel_posts() if "Reviewers for" in m]
    assert answer, body
    posts = big.channel_posts()
    assert 1 < len(posts) <= 5  # the answer and its extra_responses
    assert all(len(m) <= LEGACY_POST_LIMIT for m in posts)
    # Every candidate is shown, or the last post says how many lines are left out.
    shown = "\n".join(posts)
    missing = [i for i in range(PEOPLE - 3) if f"@dev{i:03d}:" not in shown]
    marked = MARKER.search(posts[-1])
    assert not missing or (marked is not None and int(marked[1]) >= len(missing))
    # The picks are named in the first post, as before.
    reviewers = [r["username"] for r in big.gitlab.merge_request(PROJECT, 1)["reviewers"]]
    assert reviewers and all(f"@{name}" in answer[0] for name in reviewers)
    assert all(len(m) <= LEGACY_POST_LIMIT for m in every_post(big.mm))  # DMs included


async def test_ooo_list_with_many_periods_and_the_dm_answers(big: Chat) -> None:
    service = OooService(big.context.sessions, big.context.settings)
    first = date(2099, 1, 1)
    for n in range(300):
        day = first + timedelta(days=2 * n)
        await service.record("alice", day, day, f"trip number {n} " + "far " * 25, first)
    listed = await big.slash("alice", "/ooo list")
    texts = [listed["text"], *(e["text"] for e in listed.get("extra_responses") or [])]
    assert all(len(t) <= LEGACY_POST_LIMIT for t in texts)
    assert MARKER.search(texts[-1]) and "2099-01-01" in texts[0]
    dm = big.mm.direct_channel("roulette-bot", "bob")["id"]
    big.mm.say("bob", dm, "nonsense")
    await _until(lambda: any("I know these commands" in m for m in big.dms_to("bob")))
    assert all(len(m) <= LEGACY_POST_LIMIT for m in every_post(big.mm))


# ----------------------------------------------------------------- /ooo on a slow server


@pytest.fixture
async def slow_mattermost() -> AsyncIterator[tuple[MattermostStandIn, str]]:
    # An older server: trigger ids live 3 s; and user lookups take 5 s.
    mm = MattermostStandIn(trigger_id_ttl=3.0, user_lookup_delay=5.0)
    mm.add_user("dave", locale="fr")
    mm.add_team(TEAM, members=["roulette-bot", "dave"])
    mm.add_channel(TEAM, CHANNEL, members=["roulette-bot", "dave"])
    async with serve(mm) as url:
        yield mm, url


@pytest.fixture
async def slow(
    migrated_url: URL,
    gitlab_url: str,
    standin: GitLabStandIn,
    slow_mattermost: tuple[MattermostStandIn, str],
    aiohttp_client: MakeClient,
) -> Chat:
    mm, mm_url = slow_mattermost
    users = [{"gitlab": "dave", "team": "frontend"}, {"gitlab": "alice", "team": "backend"}]
    return await start(migrated_url, gitlab_url, standin, mm, mm_url, aiohttp_client, users)


def _user_lookups(mm: MattermostStandIn) -> list[int]:
    return [
        i
        for i, (method, path) in enumerate(mm.requests)
        if method == "GET" and regex.fullmatch(r"/api/v4/users/[a-z0-9]{26}", path)
    ]


async def test_ooo_opens_its_dialog_within_the_trigger_ids_life(slow: Chat) -> None:
    started = time.monotonic()
    body = await slow.slash("dave", "/ooo")
    assert time.monotonic() - started < 3.0
    [dialog] = slow.mm.dialogs_opened
    assert dialog["dialog"]["callback_id"] == "ooo" and body["text"] == ""
    opened = slow.mm.requests.index(("POST", "/api/v4/actions/dialogs/open"))
    assert all(i > opened for i in _user_lookups(slow.mm))  # no lookup before it
    start_element = dialog["dialog"]["elements"][0]
    assert start_element["type"] == "date" and start_element["default"] == "today"


async def test_a_dialog_that_cannot_open_answers_with_the_text_form(slow: Chat) -> None:
    slow.mm.fail_next(r"/api/v4/actions/dialogs/open", 400)
    body = await slow.slash("dave", "/ooo")
    assert slow.mm.dialogs_opened == []
    # In the configured language (the lookup would have been too slow to wait for).
    assert "Record the period as text instead" in body["text"]
    assert regex.search(r"`/ooo \d{4}-\d\d-\d\d \d{4}-\d\d-\d\d holiday`", body["text"])
    assert "`/ooo START END [reason]`" in body["text"]
