"""Mattermost end to end: the real app between the Mattermost and GitLab stand-ins."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.engine import URL

from bot.app import create_app
from bot.chatcursor import KEY
from bot.http import CONTEXT
from bot.models import Configuration
from bot.sandbox.gitlab import GitLabStandIn
from bot.sandbox.mattermost import MattermostStandIn, serve
from bot.users import sync_organisation
from tests.e2e.conftest import PROJECT, Client, MakeClient, e2e_settings

TEAM = "acme"
CHANNEL = "reviews"


@pytest.fixture
async def mattermost() -> AsyncIterator[tuple[MattermostStandIn, str]]:
    mm = MattermostStandIn()
    for name, locale in (
        ("alice", "en"),
        ("bob", "en"),
        ("carol", "fr"),
        ("dave", "en"),
        ("erin", "en"),
        ("frank", "en"),
    ):
        mm.add_user(name, locale=locale)
    mm.add_team(TEAM, members=["roulette-bot", "alice", "bob", "carol", "dave", "erin", "frank"])
    mm.add_channel(TEAM, CHANNEL, members=["roulette-bot", "alice", "bob", "carol"])
    async with serve(mm) as url:
        yield mm, url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Chat:
    client: Client
    mm: MattermostStandIn
    gitlab: GitLabStandIn

    @property
    def context(self) -> Any:
        return self.client.app[CONTEXT]

    async def slash(self, user: str, line: str, channel: str = CHANNEL) -> dict[str, Any]:
        status, body = await self.mm.run_slash_command(user, channel, line, team=TEAM)
        assert status == 200, body
        return body

    def channel_posts(self) -> list[str]:
        channel = self.mm.channel(TEAM, CHANNEL)
        return [p["message"] for p in self.mm.posts_in(channel["id"])]

    def dms_to(self, user: str) -> list[str]:
        channel = self.mm.direct_channel("roulette-bot", user)
        return [
            p["message"]
            for p in self.mm.posts_in(channel["id"])
            if p["user_id"] != self.mm.user(user)["id"]
        ]


async def _until(condition: Callable[[], bool | Awaitable[bool]], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def port() -> int:
    return _free_port()


@pytest.fixture
def chat_settings() -> dict[str, Any]:
    """Extra settings for the bot of ``chat`` (a test parametrizes it to change them)."""
    return {}


@pytest.fixture
async def chat(
    migrated_url: URL,
    gitlab_url: str,
    standin: GitLabStandIn,
    mattermost: tuple[MattermostStandIn, str],
    aiohttp_client: MakeClient,
    port: int,
    chat_settings: dict[str, Any],
) -> Chat:
    mm, mm_url = mattermost
    settings = e2e_settings(
        migrated_url,
        gitlab_url,
        **chat_settings,
        mattermost_url=mm_url,
        mattermost_token=mm.bot_token,
        mattermost_team=TEAM,
        public_url=f"http://127.0.0.1:{port}",
        users=[
            {"gitlab": "alice", "team": "backend", "role": "maintainer"},
            {"gitlab": "bob", "team": "backend"},
            {"gitlab": "carol", "team": "backend", "email": "dba@example.com"},
            {"gitlab": "dave", "team": "frontend"},
            {"gitlab": "erin", "team": "frontend"},
            {"gitlab": "frank", "team": "platform"},
        ],
    )
    client = await aiohttp_client(create_app(settings), server_kwargs={"port": port})
    await sync_organisation(client.app[CONTEXT].sessions, settings)
    chat = Chat(client, mm, standin)
    await _until(lambda: chat.context.chat_.state == "connected")
    return chat


async def test_commands_are_registered_with_autocomplete(chat: Chat) -> None:
    commands = {c["trigger"]: c for c in chat.mm.commands_in(TEAM)}
    assert {"roulette", "ooo"} <= set(commands)
    roulette = commands["roulette"]
    assert roulette["auto_complete"] is True
    assert roulette["url"].endswith("/mattermost/command")
    assert roulette["auto_complete_hint"].startswith("MR_URL")
    readiness = await (await chat.client.get("/readiness")).json()
    assert readiness["checks"]["mattermost"] == "connected"


async def test_roulette_answers_in_channel_posts_on_gitlab_and_sends_dms(chat: Chat) -> None:
    url = f"{chat.gitlab.base_url}/{PROJECT}/-/merge_requests/1"
    body = await chat.slash("alice", f"/roulette {url}")
    assert body.get("response_type") == "in_channel"
    [answer] = [m for m in chat.channel_posts() if "Reviewers for" in m or "Relecteurs" in m]
    reviewers = [r["username"] for r in chat.gitlab.merge_request(PROJECT, 1)["reviewers"]]
    assert reviewers and all(f"@{name}" in answer for name in reviewers)
    assert url in answer
    notes = [
        n
        for n in chat.gitlab.notes(PROJECT, 1)
        if n["author"]["username"] == "roulette-bot" and not n["system"]
    ]
    assert len(notes) == 1
    for name in reviewers:
        assert any(url in dm for dm in chat.dms_to(name)), name


async def test_an_unknown_token_is_refused(chat: Chat) -> None:
    form = {"token": "forged", "command": "/roulette", "text": "help", "user_id": "x"}
    response = await chat.client.post("/mattermost/command", data=form)
    assert response.status == 401
    assert chat.gitlab.notes(PROJECT, 1) == []


async def test_a_commands_token_runs_that_command_only(chat: Chat) -> None:
    """Each command has its own token: /ooo's does not run /roulette."""
    tokens = {c["trigger"]: c["token"] for c in chat.mm.commands_in(TEAM)}
    url = f"{chat.gitlab.base_url}/{PROJECT}/-/merge_requests/1"
    form = {
        "token": tokens["ooo"],
        "command": "/roulette",
        "text": url,
        "user_id": chat.mm.user("alice")["id"],
        "user_name": "alice",
    }
    refused = await chat.client.post("/mattermost/command", data=form)
    assert refused.status == 401
    assert chat.gitlab.merge_request(PROJECT, 1)["reviewers"] == []
    allowed = await chat.client.post(
        "/mattermost/command", data=form | {"token": tokens["roulette"], "text": "help"}
    )
    assert allowed.status == 200


async def test_a_foreign_url_gets_a_clear_ephemeral_error(chat: Chat) -> None:
    body = await chat.slash(
        "alice", "/roulette https://elsewhere.example.com/a/b/-/merge_requests/1"
    )
    assert body.get("response_type", "ephemeral") == "ephemeral"
    assert "not on the configured GitLab" in body["text"]
    assert chat.gitlab.notes(PROJECT, 1) == []


async def test_help_and_bare_command_print_usage(chat: Chat) -> None:
    for line in ("/roulette", "/roulette help"):
        body = await chat.slash("alice", line)
        assert "/roulette MR_URL" in body["text"]


async def test_a_french_speaker_gets_french(chat: Chat) -> None:
    english = await chat.slash("alice", "/roulette help")
    french = await chat.slash("carol", "/roulette help")
    assert english["text"] != french["text"]
    assert "relecteurs" in french["text"].lower()


async def test_a_french_speaker_who_mistypes_gets_the_whole_answer_in_french(
    chat: Chat,
) -> None:
    url = f"{chat.gitlab.base_url}/{PROJECT}/-/merge_requests/1"
    not_a_url = (await chat.slash("carol", "/roulette not-a-url"))["text"]
    assert not_a_url.startswith("ce n'est pas l'URL d'une merge request : not-a-url")
    assert "Utilisation : /roulette MR_URL" in not_a_url
    bogus = (await chat.slash("carol", f"/roulette {url} --bogus"))["text"]
    assert bogus == (
        "option inconnue --bogus ; utilisation : /roulette MR_URL [reroll] [--explain] [--force]"
        " [--no-codeowner] [--include @user] [--exclude @user]"
    )
    assert chat.gitlab.merge_request(PROJECT, 1)["reviewers"] == []


async def test_the_websocket_reconnects_and_answers_a_dm(chat: Chat) -> None:
    assert chat.mm.drop_websockets() >= 1
    await _until(lambda: chat.context.chat_.state != "connected", within=5)
    await _until(lambda: chat.context.chat_.state == "connected", within=15)
    channel = chat.mm.direct_channel("roulette-bot", "bob")
    chat.mm.say("bob", channel["id"], "help")
    await _until(
        lambda: any("I know these commands" in m or "/roulette" in m for m in chat.dms_to("bob"))
    )


async def test_ooo_dialog_refuses_reversed_dates_then_records(chat: Chat) -> None:
    body = await chat.slash("dave", "/ooo")
    assert body.get("response_type", "ephemeral") == "ephemeral"
    [dialog] = chat.mm.dialogs_opened
    assert dialog["dialog"]["callback_id"] == "ooo"
    names = [e["name"] for e in dialog["dialog"]["elements"]]
    assert names == ["start", "end", "reason"]

    status, answer = await chat.mm.submit_dialog(
        dialog, "dave", {"start": "2099-06-10", "end": "2099-06-01", "reason": "trip"}
    )
    assert status == 200 and "end" in answer["errors"]

    today = time.strftime("%Y-%m-%d", time.gmtime())
    status, answer = await chat.mm.submit_dialog(
        dialog, "dave", {"start": today, "end": "2099-06-01", "reason": "sabbatical"}
    )
    assert (status, answer) == (200, {})
    # Away from today: never picked, even when asked for by name.
    url = f"{chat.gitlab.base_url}/{PROJECT}/-/merge_requests/1"
    await chat.slash("alice", f"/roulette {url} --include @dave")
    assert "dave" not in [r["username"] for r in chat.gitlab.merge_request(PROJECT, 1)["reviewers"]]


async def test_a_forged_dialog_state_is_refused(chat: Chat) -> None:
    await chat.slash("dave", "/ooo")
    [dialog] = chat.mm.dialogs_opened
    forged = dialog | {"dialog": dialog["dialog"] | {"state": "9999999999.forged"}}
    status, _ = await chat.mm.submit_dialog(
        forged, "dave", {"start": "2099-01-01", "end": "2099-01-02"}
    )
    assert status == 401


async def test_ooo_text_form_list_and_cancel(chat: Chat) -> None:
    recorded = await chat.slash("erin", "/ooo 2099-03-01 2099-03-05 conference")
    assert "2099-03-01" in recorded["text"]
    refused = await chat.slash("erin", "/ooo 2099-03-04 2099-03-08")
    assert "overlap" in refused["text"]
    listed = await chat.slash("erin", "/ooo list")
    assert "2099-03-01" in listed["text"] and "conference" in listed["text"]
    cancelled = await chat.slash("erin", "/ooo cancel")
    assert "cancelled" in cancelled["text"]
    assert "2099-03-01" not in (await chat.slash("erin", "/ooo list"))["text"]


async def test_slow_work_answers_at_once_then_through_the_response_url(chat: Chat) -> None:
    chat.gitlab.delay_next(r"/merge_requests/1(\?|$)", 3.0)
    url = f"{chat.gitlab.base_url}/{PROJECT}/-/merge_requests/1"
    started = time.monotonic()
    body = await chat.slash("alice", f"/roulette {url}")
    assert time.monotonic() - started < 3.0
    assert body["text"] == "Working on it…"
    await _until(lambda: any("Reviewers for" in m for m in chat.channel_posts()), within=15)


async def test_a_mention_in_a_channel_runs_the_command(chat: Chat) -> None:
    url = f"{chat.gitlab.base_url}/{PROJECT}/-/merge_requests/1"
    channel = chat.mm.channel(TEAM, CHANNEL)
    chat.mm.say("bob", channel["id"], f"@roulette-bot roulette {url}")
    await _until(lambda: any("Reviewers for" in m for m in chat.channel_posts()))
    assert chat.gitlab.merge_request(PROJECT, 1)["reviewers"]


@pytest.fixture
def stale_command(mattermost: tuple[MattermostStandIn, str], port: int) -> dict[str, Any]:
    mm, _ = mattermost
    return mm.add_command(
        TEAM,
        "roulette",
        f"http://127.0.0.1:{port}/mattermost/command",
        creator="roulette-bot",
        auto_complete=True,
        auto_complete_desc="An old description",
    )


async def test_a_command_whose_definition_changed_is_updated(
    stale_command: dict[str, Any], chat: Chat
) -> None:
    [roulette] = [c for c in chat.mm.commands_in(TEAM) if c["trigger"] == "roulette"]
    assert roulette["id"] == stale_command["id"]  # updated in place, not duplicated
    assert roulette["auto_complete_desc"] == "Pick reviewers for a GitLab merge request"
    body = await chat.slash("alice", "/roulette help")  # its token was learned
    assert "/roulette MR_URL" in body["text"]


def _since_fetches(chat: Chat) -> int:
    return sum("/posts?since=" in path for _, path in chat.mm.requests)


async def test_messages_posted_while_disconnected_are_answered_once(chat: Chat) -> None:
    mm = chat.mm
    dm = mm.direct_channel("roulette-bot", "bob")["id"]
    channel = mm.channel(TEAM, CHANNEL)["id"]
    assert mm.drop_websockets() == 1
    # In the same tick as the drop: the bot cannot be back yet, Mattermost replays nothing.
    mm.say("bob", dm, "help")
    mention = mm.say("alice", channel, "@roulette-bot help")
    # Reconnections back off (up to seconds when a machine is busy): generous bounds.
    await _until(
        lambda: len(chat.dms_to("bob")) == 1 and _thread_answers(chat, mention) == 1, within=30
    )
    # A second reconnection re-reads an overlap of what it saw: nothing is answered twice.
    fetched = _since_fetches(chat)
    assert mm.drop_websockets() == 1
    await _until(
        lambda: _since_fetches(chat) > fetched and chat.context.chat_.state == "connected",
        within=30,
    )
    mm.say("bob", dm, "help")  # live, after the catch-up
    await _until(lambda: len(chat.dms_to("bob")) == 2, within=30)
    assert _thread_answers(chat, mention) == 1
    assert all("I know these commands" in m for m in chat.dms_to("bob"))


def _thread_answers(chat: Chat, root: dict[str, Any]) -> int:
    bot = chat.mm.bot["id"]
    posts = chat.mm.posts_in(root["channel_id"])
    return sum(1 for p in posts if p["user_id"] == bot and p["root_id"] == root["id"])


@pytest.mark.parametrize("chat_settings", [{"mattermost_heartbeat_seconds": 1.0}])
async def test_a_quiet_server_keeps_the_websocket(chat: Chat) -> None:
    mm = chat.mm
    # Eleven pings answered, and not a word from the server otherwise: longer than the
    # 10 s after which the bot used to give a quiet connection up.
    await _until(lambda: mm.websocket_pings >= 11, within=25)
    assert mm.websocket_attempts == 1 and chat.context.chat_.state == "connected"
    dm = mm.direct_channel("roulette-bot", "bob")["id"]
    mm.say("bob", dm, "help")
    await _until(lambda: len(chat.dms_to("bob")) == 1)


async def test_messages_posted_while_no_bot_ran_are_answered_once_by_the_next(
    chat: Chat, aiohttp_client: MakeClient
) -> None:
    mm = chat.mm
    dm = mm.direct_channel("roulette-bot", "bob")["id"]
    channel = mm.channel(TEAM, CHANNEL)["id"]
    mm.say("bob", dm, "help")
    await _until(lambda: len(chat.dms_to("bob")) == 1)
    settings = chat.context.settings
    await chat.client.close()  # a deploy, a crash: the bot is gone
    assert mm.websockets_open("roulette-bot") == 0
    mm.say("bob", dm, "help")
    mention = mm.say("alice", channel, "@roulette-bot help")
    # A new process on the same database answers both, and not the DM answered before.
    client = await aiohttp_client(create_app(settings))
    await _until(lambda: len(chat.dms_to("bob")) == 2 and _thread_answers(chat, mention) == 1)
    mm.say("bob", dm, "help")  # live, after the catch-up
    await _until(lambda: len(chat.dms_to("bob")) == 3)
    assert _thread_answers(chat, mention) == 1
    assert all("I know these commands" in m for m in chat.dms_to("bob"))
    async with client.app[CONTEXT].sessions() as session:
        stored = await session.get(Configuration, KEY)
    assert stored is not None and stored.value >= mention["create_at"]
