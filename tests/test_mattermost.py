"""The Mattermost adapter's own rules: signed dialog state, command tokens, events."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bot.app import CHATOPS, create_app
from bot.chat import ChatUser, DialogResult, DialogSubmission, Reply
from bot.mattermost import Mattermost, command_response
from bot.plugins import Plugin, dialog
from bot.settings import Settings


@pytest.fixture
def chat() -> Mattermost:
    settings = Settings(
        mattermost_url="https://chat.example.com",
        mattermost_token="bot-token-1234",
        mattermost_command_tokens="extra-1, extra-2",
    )
    adapter = Mattermost(settings, CollectorRegistry())
    adapter.user_id = "bot-id"
    return adapter


def test_dialog_state_is_bound_to_dialog_user_and_time(chat: Mattermost) -> None:
    state = chat.sign_state("ooo", "user-1")
    assert chat.verify_state(state, "ooo", "user-1")
    assert not chat.verify_state(state, "ooo", "user-2")
    assert not chat.verify_state(state, "other", "user-1")
    assert not chat.verify_state(state[:-2] + "xx", "ooo", "user-1")
    expired = chat.sign_state("ooo", "user-1", now=time.time() - 7200)
    assert not chat.verify_state(expired, "ooo", "user-1")
    assert not chat.verify_state("", "ooo", "user-1")


def test_configured_command_tokens_are_accepted(chat: Mattermost) -> None:
    assert chat.token_ok("extra-1") and chat.token_ok("extra-2")
    assert not chat.token_ok("extra-3") and not chat.token_ok("") and not chat.token_ok(None)


def _event(post: dict[str, object], **data: object) -> dict[str, object]:
    return {"event": "posted", "data": {"post": json.dumps(post), **data}}


def test_posted_events_are_normalised_and_filtered(chat: Mattermost) -> None:
    post = {"id": "p1", "channel_id": "c1", "user_id": "u1", "message": "@roulette help"}
    message = chat._message(
        _event(post, channel_type="O", sender_name="@alice", mentions='["bot-id"]')
    )
    assert message is not None
    assert (message.sender_name, message.text, message.mentions) == (
        "alice",
        "@roulette help",
        ("bot-id",),
    )
    assert chat._message(_event(post | {"user_id": "bot-id"})) is None  # our own
    assert chat._message(_event(post | {"type": "system_join_channel"})) is None
    assert chat._message(_event(post | {"props": {"from_webhook": "true"}})) is None
    assert chat._message({"event": "posted", "data": {"post": "{not json"}}) is None


def test_command_response_shape() -> None:
    reply = Reply("done", "in_channel", extra=(Reply("psst"),))
    assert command_response(reply) == {
        "response_type": "in_channel",
        "text": "done",
        "extra_responses": [{"response_type": "ephemeral", "text": "psst"}],
    }


def test_chat_needs_url_and_token() -> None:
    with pytest.raises(ValueError, match="MATTERMOST_URL and MATTERMOST_TOKEN"):
        Mattermost(Settings(mattermost_url="https://chat.example.com"), CollectorRegistry())


async def test_a_failing_dialog_handler_answers_an_error_not_a_500(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    class Broken(Plugin):
        name = "broken"

        @dialog("broken")
        async def submitted(self, submission: DialogSubmission) -> DialogResult:
            raise RuntimeError("internal detail")

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}")
    app = create_app(settings, plugins=[Broken])
    chat = Mattermost(
        Settings(mattermost_url="https://chat.example.com", mattermost_token="bot-token-1234"),
        CollectorRegistry(),
    )
    app[CHATOPS].chat = chat
    client = await aiohttp_client(app)
    body = {
        "type": "dialog_submission",
        "callback_id": "broken",
        "state": chat.sign_state("broken", "u1"),
        "user_id": "u1",
        "channel_id": "",
        "submission": {"start": 5},
        "cancelled": False,
    }
    chat.user = _offline_user  # type: ignore[method-assign]
    response = await client.post("/mattermost/dialog", json=body)
    assert response.status == 200
    answer = await response.json()
    assert "Something went wrong" in answer["error"] and "internal detail" not in answer["error"]
    not_json = await client.post("/mattermost/dialog", data=b"{nope")
    assert not_json.status == 400


async def _offline_user(user_id: str) -> ChatUser:
    return ChatUser(id=user_id, username="someone", locale="en")
