"""The webhook sender: GitLab's documented payloads and headers, delivered over HTTP.

A small aiohttp receiver records what arrives; signatures are checked with an HMAC
computed here, independently of the sender's own code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from bot.sandbox.gitlab import GitLabStandIn, serve
from bot.sandbox.webhooks import MERGE_REQUEST_HOOK, NOTE_HOOK, WebhookSender

SECRET = "hook-secret-1234"
KEY = b"0123456789abcdef0123456789abcdef"
SIGNING_TOKEN = "whsec_" + base64.b64encode(KEY).decode()

# Keys of the documented examples (webhook_events.md, "Comment on a merge request").
NOTE_ATTRIBUTES = {
    "id",
    "note",
    "noteable_type",
    "author_id",
    "created_at",
    "updated_at",
    "project_id",
    "attachment",
    "line_code",
    "commit_id",
    "noteable_id",
    "system",
    "st_diff",
    "action",
    "url",
}
NOTE_MERGE_REQUEST = {
    "id",
    "target_branch",
    "source_branch",
    "source_project_id",
    "author_id",
    "assignee_id",
    "title",
    "created_at",
    "updated_at",
    "milestone_id",
    "state",
    "merge_status",
    "target_project_id",
    "iid",
    "description",
    "position",
    "labels",
    "source",
    "target",
    "last_commit",
    "work_in_progress",
    "draft",
    "assignee",
    "detailed_merge_status",
}
USER = {"id", "name", "username", "avatar_url", "email"}
PROJECT = {
    "id",
    "name",
    "description",
    "web_url",
    "avatar_url",
    "git_ssh_url",
    "git_http_url",
    "namespace",
    "visibility_level",
    "path_with_namespace",
    "default_branch",
    "homepage",
    "url",
    "ssh_url",
    "http_url",
}
LABEL = {
    "id",
    "title",
    "color",
    "project_id",
    "created_at",
    "updated_at",
    "template",
    "description",
    "type",
    "group_id",
}
# ... and "Merge request events".
MR_ATTRIBUTES = {
    "id",
    "iid",
    "target_branch",
    "source_branch",
    "source_project_id",
    "author_id",
    "assignee_ids",
    "assignee_id",
    "reviewer_ids",
    "title",
    "created_at",
    "updated_at",
    "last_edited_at",
    "last_edited_by_id",
    "milestone_id",
    "state_id",
    "state",
    "blocking_discussions_resolved",
    "work_in_progress",
    "draft",
    "first_contribution",
    "merge_status",
    "target_project_id",
    "description",
    "prepared_at",
    "total_time_spent",
    "time_change",
    "human_total_time_spent",
    "human_time_change",
    "human_time_estimate",
    "url",
    "source",
    "target",
    "last_commit",
    "labels",
    "action",
    "detailed_merge_status",
}
PERSON = {"id", "name", "username", "avatar_url"}


@dataclass
class Receiver:
    """The bot's end of the webhook: records each request, answers ``status``."""

    status: int = 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.json_response({"status": "queued"}, status=self.status)


@pytest.fixture
def standin() -> GitLabStandIn:
    s = GitLabStandIn("api-token")
    s.add_user("alice", name="Alice A", public_email="alice@example.com")
    s.add_user("bob")
    s.add_user("carol")
    s.add_project("g/p")
    s.add_merge_request(
        "g/p",
        author="alice",
        title="Add the thing",
        labels=["backend"],
        reviewers=["bob"],
        assignees=["alice"],
    )
    return s


@pytest.fixture
async def gitlab_url(standin: GitLabStandIn) -> AsyncIterator[str]:
    async with serve(standin) as url:
        yield url


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/gitlab", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield rec, f"http://127.0.0.1:{port}/hooks/gitlab"
    finally:
        await runner.cleanup()


def expected_signature(message_id: str, timestamp: str, body: bytes) -> str:
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()


async def test_note_hook_payload_has_the_documented_shape(
    standin: GitLabStandIn, gitlab_url: str
) -> None:
    sender = WebhookSender(standin, "http://unused.invalid/", secret=None)
    note = standin.add_note("g/p", 1, "alice", "@roulette-bot pick 2")
    payload = sender.note_payload("g/p", 1, note)
    assert set(payload) == {
        "object_kind",
        "event_type",
        "user",
        "project_id",
        "project",
        "object_attributes",
        "repository",
        "merge_request",
    }
    assert (payload["object_kind"], payload["event_type"]) == ("note", "note")
    attributes = payload["object_attributes"]
    assert set(attributes) >= NOTE_ATTRIBUTES
    assert set(payload["merge_request"]) >= NOTE_MERGE_REQUEST
    assert set(payload["user"]) == USER
    assert set(payload["project"]) >= PROJECT
    mr = standin.merge_request("g/p", 1)
    assert attributes["noteable_id"] == mr["id"] != mr["iid"]  # the MR's global id
    assert (attributes["noteable_type"], attributes["action"]) == ("MergeRequest", "create")
    assert attributes["note"] == "@roulette-bot pick 2" and attributes["system"] is False
    assert attributes["id"] == note["id"] and attributes["author_id"] == note["author"]["id"]
    assert attributes["url"] == f"{gitlab_url}/g/p/-/merge_requests/1#note_{note['id']}"
    assert attributes["created_at"].endswith(" UTC")
    assert payload["user"] == {
        "id": note["author"]["id"],
        "name": "Alice A",
        "username": "alice",
        "avatar_url": note["author"]["avatar_url"],
        "email": "alice@example.com",
    }
    assert payload["project"]["path_with_namespace"] == "g/p"
    assert payload["project_id"] == payload["project"]["id"] == mr["project_id"]
    merge_request = payload["merge_request"]
    assert (merge_request["iid"], merge_request["id"]) == (1, mr["id"])
    assert [label["title"] for label in merge_request["labels"]] == ["backend"]
    assert set(merge_request["labels"][0]) == LABEL  # objects, not REST's strings
    assert merge_request["reviewer_ids"] == [standin.user("bob")["id"]]
    assert merge_request["assignee"]["username"] == "alice"
    # A user without a public email: GitLab redacts it.
    bob_note = standin.add_note("g/p", 1, "bob", "edited", internal=True)
    edited = sender.note_payload("g/p", 1, bob_note, action="update")
    assert edited["user"]["email"] == "[REDACTED]"
    assert edited["event_type"] == "confidential_note"
    assert edited["object_attributes"]["action"] == "update"
    with pytest.raises(ValueError, match="create or update"):
        sender.note_payload("g/p", 1, note, action="delete")


async def test_merge_request_hook_payload_has_the_documented_shape(
    standin: GitLabStandIn,
) -> None:
    sender = WebhookSender(standin, "http://unused.invalid/", secret=None)
    standin.set_reviewers("g/p", 1, ["carol"])
    payload = sender.merge_request_payload(
        "g/p",
        1,
        action="update",
        user="alice",
        changes={
            "reviewers": {"previous": ["bob"], "current": ["carol"]},
            "labels": {"previous": [], "current": ["backend"]},
            "draft": {"previous": True, "current": False},
        },
    )
    assert set(payload) == {
        "object_kind",
        "event_type",
        "user",
        "project",
        "object_attributes",
        "labels",
        "changes",
        "repository",
        "assignees",
        "reviewers",
    }
    assert (payload["object_kind"], payload["event_type"]) == ("merge_request", "merge_request")
    attributes = payload["object_attributes"]
    assert set(attributes) >= MR_ATTRIBUTES
    assert "oldrev" not in attributes  # only when code changed
    assert attributes["action"] == "update" and attributes["state"] == "opened"
    carol, bob = standin.user("carol"), standin.user("bob")
    assert attributes["reviewer_ids"] == [carol["id"]]
    assert [set(r) for r in payload["reviewers"]] == [PERSON]
    assert payload["reviewers"][0]["username"] == "carol"
    assert [a["username"] for a in payload["assignees"]] == ["alice"]
    assert [set(label) for label in payload["labels"]] == [LABEL]
    assert payload["labels"] == attributes["labels"]
    changes = payload["changes"]
    assert set(changes) == {"reviewers", "labels", "draft"}
    assert changes["draft"] == {"previous": True, "current": False}
    assert [set(u) for u in changes["reviewers"]["previous"]] == [USER]
    assert changes["reviewers"]["previous"][0]["id"] == bob["id"]
    assert changes["reviewers"]["current"][0]["username"] == "carol"
    assert changes["labels"]["current"] == payload["labels"]
    assert set(payload["user"]) == USER and set(payload["project"]) >= PROJECT
    with pytest.raises(ValueError, match="expected one of"):
        sender.merge_request_payload("g/p", 1, action="opened", user="alice")
    with pytest.raises(ValueError, match="previous"):
        sender.merge_request_payload("g/p", 1, action="update", user="alice", changes={"x": 1})


@pytest.mark.parametrize("action", ["approval", "approved", "merge", "close"])
async def test_merge_request_hook_follows_the_state(standin: GitLabStandIn, action: str) -> None:
    sender = WebhookSender(standin, "http://unused.invalid/", secret=None)
    if action.startswith("approv"):
        standin.approve("g/p", 1, "bob")
    elif action == "merge":
        standin.merge("g/p", 1, by="carol")
    else:
        standin.close("g/p", 1)
    payload = sender.merge_request_payload("g/p", 1, action=action, user="bob")
    attributes = payload["object_attributes"]
    assert attributes["action"] == action and payload["changes"] == {}
    state = {"merge": ("merged", 3), "close": ("closed", 2)}.get(action, ("opened", 1))
    assert (attributes["state"], attributes["state_id"]) == state


async def test_delivery_headers_are_gitlabs(
    standin: GitLabStandIn, gitlab_url: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    sender = WebhookSender(standin, url, secret=SECRET, signing_token=SIGNING_TOKEN)
    before = int(time.time())
    delivery = await sender.comment("g/p", 1, "alice", "@roulette-bot pick")
    assert delivery.ok and delivery.status == 200
    assert json.loads(delivery.response_body) == {"status": "queued"}
    [(headers, body)] = rec.received
    assert body == delivery.body and json.loads(body) == delivery.payload
    ours = {
        "Content-Type",
        "User-Agent",
        "X-Gitlab-Event",
        "X-Gitlab-Token",
        "X-Gitlab-Event-UUID",
        "X-Gitlab-Instance",
        "X-Gitlab-Webhook-UUID",
        "Idempotency-Key",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
    transport = {"Host", "Content-Length", "Accept", "Accept-Encoding"}
    assert set(headers) == ours | transport
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "GitLab/17.6.0"
    assert headers["X-Gitlab-Event"] == "Note Hook" == NOTE_HOOK
    assert headers["X-Gitlab-Token"] == SECRET
    assert headers["X-Gitlab-Instance"] == gitlab_url  # no path: the instance itself
    assert headers["X-Gitlab-Webhook-UUID"] == sender.webhook_uuid
    assert headers["X-Gitlab-Event-UUID"] == delivery.event_uuid
    key = headers["Idempotency-Key"]
    assert key == delivery.idempotency_key == headers["webhook-id"]
    assert abs(int(headers["webhook-timestamp"]) - before) <= 2
    assert headers["webhook-signature"] == expected_signature(
        key, headers["webhook-timestamp"], body
    )
    # The note is in GitLab too, as the one the payload describes.
    [note] = standin.notes("g/p", 1)
    assert delivery.payload["object_attributes"]["id"] == note["id"]


async def test_resend_keeps_the_idempotency_key(
    standin: GitLabStandIn, gitlab_url: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    rec.status = 500
    sender = WebhookSender(standin, url, secret=SECRET, signing_token=SIGNING_TOKEN)
    first = await sender.mr_event("g/p", 1, "open", "alice")
    assert not first.ok and first.status == 500
    rec.status = 202
    again = await sender.resend(first)
    assert again.ok
    (h1, b1), (h2, b2) = rec.received
    assert b1 == b2
    for name in ("Idempotency-Key", "webhook-id", "X-Gitlab-Event-UUID"):
        assert h1[name] == h2[name]
    assert h1["X-Gitlab-Event"] == h2["X-Gitlab-Event"] == MERGE_REQUEST_HOOK
    assert h2["webhook-signature"] == expected_signature(
        h2["webhook-id"], h2["webhook-timestamp"], b2
    )
    # A new event is a new key; a caller may also pin one (a retry of its own).
    other = await sender.mr_event("g/p", 1, "update", "alice")
    assert other.idempotency_key != first.idempotency_key
    pinned = await sender.deliver(
        MERGE_REQUEST_HOOK, other.payload, idempotency_key=other.idempotency_key
    )
    assert rec.received[-1][0]["Idempotency-Key"] == other.idempotency_key
    assert pinned.body == other.body
    assert [d.status for d in sender.deliveries] == [500, 202, 202, 202]


async def test_without_secret_or_signing_token(
    standin: GitLabStandIn, gitlab_url: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    sender = WebhookSender(standin, url, secret=None, gitlab_version="18.0.1")
    await sender.comment("g/p", 1, "bob", "hello")
    [(headers, _)] = rec.received
    assert "X-Gitlab-Token" not in headers
    assert not any(name.lower().startswith("webhook-") for name in headers)
    assert headers["User-Agent"] == "GitLab/18.0.1"
    extra = await sender.deliver(NOTE_HOOK, {"object_kind": "note"}, headers={"X-Extra": "1"})
    assert extra.ok and rec.received[-1][0]["X-Extra"] == "1"


def test_a_malformed_signing_token_is_refused(standin: GitLabStandIn) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        WebhookSender(standin, "http://x.invalid/", secret=None, signing_token="not-whsec")
