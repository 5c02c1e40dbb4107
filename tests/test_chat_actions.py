"""Message buttons end to end: the real app (``create_app``, SQLite and PostgreSQL) with a
test area declaring an ``@action``, its Mattermost adapter talking to the Mattermost
stand-in, and the stand-in clicking exactly as Mattermost does (PROTOCOLS.md A8): the
buttons' shape in the DM, a click that dispatches and updates the post, refusals that
change nothing, a dialog opened from a click, ``update_post``, and bodies that never
make a 5xx."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL

from bot.app import REGISTRY, create_app
from bot.chat import (
    ActionContext,
    ActionResult,
    Button,
    Dialog,
    DialogResult,
    DialogSubmission,
)
from bot.context import AppContext
from bot.http import CONTEXT
from bot.mattermost import Mattermost
from bot.plugins import Plugin, Registry, RegistryError, action, dialog
from bot.sandbox.mattermost import MattermostStandIn, serve
from bot.settings import Settings
from tests.conftest import settings_for
from tests.e2e.test_mattermost_flow import _free_port

Client = TestClient[Any, Any]


class Buttons(Plugin):
    """A test area: one action (``vote``) behind three buttons, and the dialog it opens."""

    name = "buttons"

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.clicks: list[ActionContext] = []
        self.submissions: list[DialogSubmission] = []

    @action("vote")
    async def vote(self, ctx: ActionContext) -> ActionResult:
        self.clicks.append(ctx)
        if ctx.button == "boom":
            raise RuntimeError("internal detail")
        if ctx.button == "ask":
            why = Dialog(
                callback_id="why",
                title="Why?",
                elements=({"display_name": "Reason", "name": "reason", "type": "text"},),
                context={"post": ctx.post_id, "n": ctx.payload["n"]},
            )
            return ActionResult(dialog=why)
        return ActionResult(update=f"Voted {ctx.payload['n']}", ephemeral="Thanks")

    @dialog("why")
    async def why(self, submission: DialogSubmission) -> DialogResult:
        self.submissions.append(submission)
        return DialogResult()


def buttons(_user: Any = None) -> list[Button]:
    return [
        Button("yes", "Yes", "vote", {"n": 1}, "primary"),
        Button("ask", "Why", "vote", {"n": 2}),
        Button("boom", "Boom", "vote", {"n": 3}, "danger"),
    ]


@dataclass
class Live:
    client: Client
    mm: MattermostStandIn
    area: Buttons

    @property
    def chat(self) -> Mattermost:
        context: AppContext = self.client.app[CONTEXT]
        chat = context.chat_
        assert chat is not None
        return chat

    def dm(self, username: str) -> str:
        return str(self.mm.direct_channel("roulette-bot", username)["id"])

    def post(self, post_id: str) -> dict[str, Any]:
        return next(p for p in self.mm._posts if p["id"] == post_id)

    async def send(self) -> str:
        post_id = await self.chat.direct_message("alice", lambda u: "Vote?", buttons=buttons)
        assert post_id is not None
        return post_id

    async def raw_click(self, body: Any) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = await self.client.post("/mattermost/action", data=data)
        text = await response.text()
        return response.status, json.loads(text) if text else None


@pytest.fixture
async def live(migrated_url: URL, aiohttp_client: Any) -> AsyncIterator[Live]:
    mm = MattermostStandIn()
    mm.add_user("alice")
    mm.add_user("bob", locale="fr")
    mm.add_team("eng", members=["roulette-bot", "alice", "bob"])
    mm.add_channel("eng", "reviews", members=["roulette-bot", "alice", "bob"])
    async with serve(mm) as mm_url:
        port = _free_port()
        settings = settings_for(
            migrated_url,
            mattermost_url=mm_url,
            mattermost_token=mm.bot_token,
            public_url=f"http://127.0.0.1:{port}",
        )
        app = create_app(settings, plugins=[Buttons])
        client = await aiohttp_client(app, server_kwargs={"port": port})
        [area] = client.app[REGISTRY].plugins
        assert isinstance(area, Buttons)
        yield Live(client, mm, area)


def _actions(post: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for att in post["props"].get("attachments") or [] for a in att["actions"]]


async def test_the_buttons_reach_the_dm_with_mattermost_s_shape(live: Live) -> None:
    post_id = await live.send()
    [post] = live.mm.posts_in(live.dm("alice"))
    assert post["id"] == post_id and post["message"] == "Vote?"
    actions = _actions(post)
    assert [(a["id"], a["name"], a["type"], a["style"]) for a in actions] == [
        ("yes", "Yes", "button", "primary"),
        ("ask", "Why", "button", "default"),
        ("boom", "Boom", "button", "danger"),
    ]
    alice = live.mm.user("alice")["id"]
    for a, n in zip(actions, (1, 2, 3), strict=True):
        integration = a["integration"]
        assert integration["url"] == f"{live.chat.settings.public_url}/mattermost/action"
        context = integration["context"]
        assert set(context) == {"action", "button", "user", "payload", "expires", "signature"}
        assert (context["action"], context["button"], context["user"]) == ("vote", a["id"], alice)
        assert context["payload"] == {"n": n}
        assert context["expires"] > time.time() + 29 * 86400
    assert await live.chat.direct_message("nobody", lambda u: "x", buttons=buttons) is None


async def test_a_click_by_the_intended_user_dispatches_and_removes_the_buttons(
    live: Live,
) -> None:
    post_id = await live.send()
    status, answer = await live.mm.click("alice", post_id, "yes")
    assert status == 200
    assert answer == {"update": {"message": "Voted 1", "props": {}}, "ephemeral_text": "Thanks"}
    post = live.post(post_id)
    assert post["message"] == "Voted 1" and _actions(post) == []
    assert [p["message"] for p in live.mm.ephemerals_for("alice")] == ["Thanks"]
    [ctx] = live.area.clicks
    assert (ctx.action, ctx.button, ctx.user.username, ctx.payload) == (
        "vote",
        "yes",
        "alice",
        {"n": 1},
    )
    assert (ctx.channel_id, ctx.post_id) == (live.dm("alice"), post_id) and ctx.trigger_id


async def test_another_user_and_forged_contexts_are_refused_with_nothing_changed(
    live: Live,
) -> None:
    alice, bob = live.mm.user("alice")["id"], live.mm.user("bob")["id"]
    # Buttons for alice in a channel bob can see: bob clicks through Mattermost.
    reviews = live.mm.channel("eng", "reviews")["id"]
    props = live.chat.button_props(buttons(), alice)
    created = await live.chat.driver.posts.create_post(
        channel_id=reviews, message="For alice", props=props
    )
    status, answer = await live.mm.click("bob", created["id"], "yes")
    assert (status, answer) == (200, {"ephemeral_text": "Ce bouton ne vous est pas destiné."})
    assert [p["message"] for p in live.mm.ephemerals_for("bob")] == [answer["ephemeral_text"]]
    assert live.post(created["id"])["message"] == "For alice"
    assert len(_actions(live.post(created["id"]))) == 3
    # Forged bodies posted straight to the URL (anyone who can reach it can).
    post_id = await live.send()
    context = _actions(live.post(post_id))[0]["integration"]["context"]
    body = {"user_id": alice, "user_name": "alice", "post_id": post_id, "context": context}
    refused = {"ephemeral_text": "This button is no longer valid."}
    tampered = [
        context | {"payload": {"n": 99}},
        context | {"user": bob},
        context | {"action": "other"},
        context | {"expires": context["expires"] + 1},
        context | {"signature": context["signature"][:-2] + "AA"},
        {k: v for k, v in context.items() if k != "signature"},
        live.chat.sign_action("vote", "yes", alice, {"n": 1}, now=time.time() - 31 * 86400),
        "not an object",
    ]
    for forged in tampered:
        assert await live.raw_click(body | {"context": forged}) == (200, refused), forged
    assert await live.raw_click(body | {"user_id": bob}) == (
        200,
        {"ephemeral_text": "Ce bouton ne vous est pas destiné."},
    )
    unknown = live.chat.sign_action("nobody-handles-this", "yes", alice, {})
    assert await live.raw_click(body | {"context": unknown}) == (200, refused)
    assert live.area.clicks == []
    assert live.post(post_id)["message"] == "Vote?" and len(_actions(live.post(post_id))) == 3


async def test_a_dialog_opened_from_a_click_carries_its_context(live: Live) -> None:
    post_id = await live.send()
    status, answer = await live.mm.click("alice", post_id, "ask")
    assert (status, answer) == (200, {})  # nothing to change in the post
    [opened] = live.mm.dialogs_opened
    assert opened["username"] == "alice" and opened["dialog"]["callback_id"] == "why"
    assert opened["url"].endswith("/mattermost/dialog")
    status, result = await live.mm.submit_dialog(opened, "alice", {"reason": "busy"})
    assert (status, result) == (200, {})
    [submission] = live.area.submissions
    assert submission.context == {"post": post_id, "n": 2}
    assert submission.submission == {"reason": "busy"}
    # The context cannot be swapped: the state is signed with it.
    state = opened["dialog"]["state"]
    expires, _packed, mac = state.split(".")
    other = live.chat.sign_state("why", opened["user_id"], context={"post": "x", "n": 9})
    forged = {
        **opened,
        "dialog": {**opened["dialog"], "state": f"{expires}.{other.split('.')[1]}.{mac}"},
    }
    status, _ = await live.mm.submit_dialog(forged, "alice", {"reason": "busy"})
    assert status == 401 and len(live.area.submissions) == 1
    # bob cannot submit alice's dialog.
    status, _ = await live.mm.submit_dialog(opened, "bob", {"reason": "mine"})
    assert status == 401 and len(live.area.submissions) == 1


async def test_update_post_changes_the_post_and_its_buttons(live: Live) -> None:
    post_id = await live.send()
    alice = live.mm.user("alice")["id"]
    again = [Button("again", "Again", "vote", {"n": 7})]
    await live.chat.update_post(post_id, "Handed over", again, intended_user_id=alice)
    post = live.post(post_id)
    assert post["message"] == "Handed over"
    [button] = _actions(post)
    assert button["id"] == "again" and button["integration"]["context"]["user"] == alice
    status, answer = await live.mm.click("alice", post_id, "again")
    assert status == 200 and answer["update"]["message"] == "Voted 7"
    await live.chat.update_post(post_id, "x" * 20_000, intended_user_id=alice, locale="fr")
    post = live.post(post_id)
    assert _actions(post) == [] and len(post["message"]) <= 16383  # within the post limit


async def test_a_failing_handler_answers_ephemerally_and_changes_nothing(live: Live) -> None:
    post_id = await live.send()
    status, answer = await live.mm.click("alice", post_id, "boom")
    assert status == 200 and set(answer) == {"ephemeral_text"}
    assert "Something went wrong" in answer["ephemeral_text"]
    assert "internal detail" not in answer["ephemeral_text"]
    assert len(_actions(live.post(post_id))) == 3


MALFORMED: list[bytes] = [
    b"",
    b"{nope",
    b"[]",
    b"null",
    b'"text"',
    b'{"user_id": NaN}',
    b'{"user_id": "\\u0000"}',
    b'{"user_id": "\\ud800"}',
    b'{"context": {"expires": 1e999}}',
    b'{"a": 1, "a": 2}',
    b"[" * 100 + b"]" * 100,
    b"\xff\xfe",
]


async def test_malformed_bodies_never_make_a_5xx(live: Live) -> None:
    for body in MALFORMED:
        status, answer = await live.raw_click(body)
        assert status == 400 and "error" in answer, body
    alice = live.mm.user("alice")["id"]
    good = live.chat.sign_action("vote", "yes", alice, {"n": 1})
    odd_values: list[Any] = [None, 5, 1.5, True, [], {}, "x", {"k": [1]}, 2**70]
    for value in odd_values:
        for key in ("user_id", "user_name", "channel_id", "post_id", "trigger_id", "context"):
            status, answer = await live.raw_click({"user_id": alice, "context": good, key: value})
            assert status == (400 if value == 2**70 else 200), (key, value)  # 400: int64
        for key in good:
            status, _ = await live.raw_click({"user_id": alice, "context": good | {key: value}})
            assert status == (400 if value == 2**70 else 200), (key, value)
    assert len(live.area.clicks) > 0  # the untouched ones did dispatch


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.dictionaries(st.sampled_from(["user_id", "context", "post_id", "x"]), JSON_VALUES))
async def test_any_json_object_is_answered_without_a_5xx(live: Live, data: dict[str, Any]) -> None:
    response = await live.client.post("/mattermost/action", data=json.dumps(data).encode())
    assert response.status in (200, 400)


# --- the registry ---------------------------------------------------------------------


def test_an_action_declared_twice_is_refused() -> None:
    class One(Plugin):
        name = "one"

        @action("vote")
        async def vote(self, ctx: ActionContext) -> ActionResult:
            return ActionResult()

    class Two(Plugin):
        name = "two"

        @action("vote")
        async def also(self, ctx: ActionContext) -> ActionResult:
            return ActionResult()

    context = AppContext(settings=Settings())
    assert set(Registry([One(context)]).actions) == {"vote"}
    with pytest.raises(RegistryError, match=r"action 'vote' is already declared by One\.vote"):
        Registry([One(context), Two(context)])
    with pytest.raises(RegistryError, match="use lowercase"):
        action("Bad Name")

    class Wrong(Plugin):
        name = "wrong"

        @action("x")
        async def x(self) -> ActionResult:
            return ActionResult()

    with pytest.raises(RegistryError, match=r"expected \(self, ctx\)"):
        Registry([Wrong(context)])


def test_a_button_is_checked_when_made() -> None:
    with pytest.raises(ValueError, match="letters and digits"):
        Button("not-ok", "x", "vote")
    with pytest.raises(ValueError, match="style"):
        Button("ok", "x", "vote", {}, "loud")
