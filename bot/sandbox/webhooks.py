"""GitLab's webhooks, sent from the stand-in's state: Note Hook and Merge Request Hook.

The payloads follow ``webhook_events.md`` (comment on a merge request; merge request
events): label *objects* (REST MRs carry label titles), the note's ``noteable_id`` being
the MR's global id, ``object_attributes.action``, ``changes`` as
``{"field": {"previous": ..., "current": ...}}`` and the top-level ``reviewers``.

Delivery is GitLab's (``webhooks.md``): a POST of the JSON with ``Content-Type:
application/json``, ``User-Agent: GitLab/<version>``, ``X-Gitlab-Event``,
``X-Gitlab-Token`` (the secret, in plain text), ``X-Gitlab-Event-UUID``,
``X-Gitlab-Instance``, ``X-Gitlab-Webhook-UUID`` (one per hook) and ``Idempotency-Key``
(the same across retries and resends). With a ``whsec_`` signing token, the Standard
Webhooks headers too: ``webhook-id`` (the idempotency key), ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``, the key
being the base64-decoded part after ``whsec_``.

    sender = WebhookSender(standin, "http://127.0.0.1:8080/hooks/gitlab", secret="s3cret")
    delivery = await sender.comment("g/p", 1, "alice", "@roulette-bot pick")
    again = await sender.resend(delivery)  # same body, same Idempotency-Key
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from bot.sandbox.gitlab import GitLabStandIn

__all__ = [
    "MERGE_REQUEST_ACTIONS",
    "MERGE_REQUEST_HOOK",
    "NOTE_HOOK",
    "Delivery",
    "WebhookSender",
    "sign",
]

JSON = dict[str, Any]

NOTE_HOOK = "Note Hook"
CONFIDENTIAL_NOTE_HOOK = "Confidential Note Hook"
MERGE_REQUEST_HOOK = "Merge Request Hook"
#: ``object_attributes.action`` of a Merge Request Hook, as GitLab documents them.
MERGE_REQUEST_ACTIONS = (
    "open",
    "close",
    "reopen",
    "update",
    "approved",
    "unapproved",
    "approval",
    "unapproval",
    "merge",
)
_STATE_IDS = {"opened": 1, "closed": 2, "merged": 3, "locked": 4}
SIGNING_PREFIX = "whsec_"


def sign(signing_token: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature header value: ``v1,<base64 HMAC-SHA256>``."""
    if not signing_token.startswith(SIGNING_PREFIX):
        raise ValueError(f"a signing token starts with {SIGNING_PREFIX}")
    key = base64.b64decode(signing_token[len(SIGNING_PREFIX) :])
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Delivery:
    """One delivery: what was sent and what the receiver answered."""

    event: str
    idempotency_key: str
    event_uuid: str
    payload: JSON
    body: bytes  # exactly the bytes sent (and signed)
    request_headers: Mapping[str, str]
    status: int
    response_body: str
    response_headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """GitLab counts any 2xx as a success."""
        return 200 <= self.status < 300


class WebhookSender:
    """One project (or group) webhook pointing at ``url``, fed from the stand-in."""

    def __init__(
        self,
        standin: GitLabStandIn,
        url: str,
        *,
        secret: str | None,
        signing_token: str | None = None,
        gitlab_version: str = "17.6.0",
        timeout: float = 10.0,
    ) -> None:
        if signing_token is not None:
            sign(signing_token, "check", 0, b"")  # a malformed token fails here, not later
        self.standin = standin
        self.url = url
        self.secret = secret
        self.signing_token = signing_token
        self.gitlab_version = gitlab_version
        self.timeout = timeout
        #: ``X-Gitlab-Webhook-UUID``: one per hook, the same on every delivery.
        self.webhook_uuid = str(uuid.uuid4())
        #: Every delivery, in order.
        self.deliveries: list[Delivery] = []

    # --- payloads ----------------------------------------------------------------------

    def note_payload(
        self, project_path: str, iid: int, note: Mapping[str, Any], *, action: str = "create"
    ) -> JSON:
        """The Note Hook for ``note`` (a stand-in note: ``add_note``/``notes``) on the MR."""
        if action not in ("create", "update"):
            raise ValueError(f"note action {action!r}: expected create or update")
        project = self.standin.project(project_path)
        mr = self.standin.merge_request(project_path, iid)
        author = self.standin.user(note["author"]["id"])
        internal = bool(note.get("internal"))
        attributes: JSON = {
            "attachment": None,
            "author_id": author["id"],
            "change_position": None,
            "commit_id": "",
            "created_at": _hook_time(note["created_at"]),
            "discussion_id": hashlib.sha1(  # noqa: S324 - an id, as GitLab derives it
                f"note-{note['id']}".encode()
            ).hexdigest(),
            "id": note["id"],
            "line_code": None,
            "note": note["body"],
            "noteable_id": mr["id"],  # the MR's global id, not its iid
            "noteable_type": "MergeRequest",
            "original_position": None,
            "position": None,
            "project_id": project["id"],
            "resolved_at": None,
            "resolved_by_id": None,
            "resolved_by_push": None,
            "st_diff": None,
            "system": bool(note.get("system", False)),
            "type": None,
            "updated_at": _hook_time(note["updated_at"]),
            "updated_by_id": None,
            "description": note["body"],
            "url": f"{mr['web_url']}#note_{note['id']}",
            "action": action,
        }
        merge_request = self._mr_attributes(project_path, mr)
        assignee = mr["assignees"][0] if mr["assignees"] else None
        merge_request.update(
            {
                "position": 0,
                "assignee": _person(assignee) if assignee else None,
            }
        )
        return {
            "object_kind": "note",
            "event_type": "confidential_note" if internal else "note",
            "user": self._hook_user(author),
            "project_id": project["id"],
            "project": self._hook_project(project),
            "object_attributes": attributes,
            "repository": self._hook_repository(project),
            "merge_request": merge_request,
        }

    def merge_request_payload(
        self,
        project_path: str,
        iid: int,
        *,
        action: str,
        user: str,
        changes: Mapping[str, Any] | None = None,
    ) -> JSON:
        """The Merge Request Hook for the MR as it is now, ``user`` having done ``action``.

        ``changes`` is ``{"field": {"previous": ..., "current": ...}}``; for ``labels``
        the values may be label titles and for ``reviewers``/``assignees`` usernames:
        they become the objects GitLab sends.
        """
        if action not in MERGE_REQUEST_ACTIONS:
            raise ValueError(
                f"merge request action {action!r}: expected one of {MERGE_REQUEST_ACTIONS}"
            )
        project = self.standin.project(project_path)
        mr = self.standin.merge_request(project_path, iid)
        attributes = self._mr_attributes(project_path, mr)
        attributes["action"] = action
        return {
            "object_kind": "merge_request",
            "event_type": "merge_request",
            "user": self._hook_user(self.standin.user(user)),
            "project": self._hook_project(project),
            "object_attributes": attributes,
            "labels": attributes["labels"],
            "changes": self._changes(project_path, changes or {}),
            "repository": self._hook_repository(project),
            "assignees": [_person(a) for a in mr["assignees"]],
            "reviewers": [_person(r) for r in mr["reviewers"]],
        }

    # --- delivery ----------------------------------------------------------------------

    async def deliver(
        self,
        event: str,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        event_uuid: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Delivery:
        """POST ``payload`` as GitLab would; ``headers`` are added last (or override)."""
        body = json.dumps(payload).encode()
        key = idempotency_key or str(uuid.uuid4())
        event_id = event_uuid or str(uuid.uuid4())
        return await self._send(event, dict(payload), body, key, event_id, headers or {})

    async def resend(self, delivery: Delivery) -> Delivery:
        """GitLab's "Resend Request": the same body and ``Idempotency-Key``, signed anew."""
        return await self._send(
            delivery.event,
            delivery.payload,
            delivery.body,
            delivery.idempotency_key,
            delivery.event_uuid,
            {},
        )

    async def comment(self, project_path: str, iid: int, author: str, body: str) -> Delivery:
        """``author`` comments on the MR: the note is stored, then its Note Hook sent."""
        note = self.standin.add_note(project_path, iid, author, body)
        payload = self.note_payload(project_path, iid, note)
        event = CONFIDENTIAL_NOTE_HOOK if note.get("internal") else NOTE_HOOK
        return await self.deliver(event, payload)

    async def mr_event(
        self,
        project_path: str,
        iid: int,
        action: str,
        user: str,
        changes: Mapping[str, Any] | None = None,
    ) -> Delivery:
        """Send the Merge Request Hook for the MR's current state (change it first)."""
        payload = self.merge_request_payload(
            project_path, iid, action=action, user=user, changes=changes
        )
        return await self.deliver(MERGE_REQUEST_HOOK, payload)

    async def _send(
        self,
        event: str,
        payload: JSON,
        body: bytes,
        key: str,
        event_uuid: str,
        extra: Mapping[str, str],
    ) -> Delivery:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"GitLab/{self.gitlab_version}",
            "X-Gitlab-Event": event,
            "X-Gitlab-Webhook-UUID": self.webhook_uuid,
            "X-Gitlab-Instance": self._instance(),
            "X-Gitlab-Event-UUID": event_uuid,
            "Idempotency-Key": key,
        }
        if self.secret is not None:
            headers["X-Gitlab-Token"] = self.secret
        if self.signing_token is not None:
            timestamp = int(time.time())
            headers["webhook-id"] = key
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign(self.signing_token, key, timestamp, body)
        headers.update(extra)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        # skip_auto_headers: the User-Agent is GitLab's, not aiohttp's.
        async with (
            aiohttp.ClientSession(timeout=timeout, skip_auto_headers=("User-Agent",)) as http,
            http.post(self.url, data=body, headers=headers) as response,
        ):
            text = await response.text()
            delivery = Delivery(
                event=event,
                idempotency_key=key,
                event_uuid=event_uuid,
                payload=payload,
                body=body,
                request_headers=headers,
                status=response.status,
                response_body=text,
                response_headers=dict(response.headers),
            )
        self.deliveries.append(delivery)
        return delivery

    # --- pieces of payloads --------------------------------------------------------------

    def _instance(self) -> str:
        """``X-Gitlab-Instance``: the GitLab's own URL, without a path."""
        base = self.standin.base_url
        scheme, _, rest = base.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"

    def _hook_user(self, user: Mapping[str, Any]) -> JSON:
        return {
            "id": user["id"],
            "name": user["name"],
            "username": user["username"],
            "avatar_url": user["avatar_url"],
            # GitLab hides an email its owner did not make public.
            "email": user.get("public_email") or "[REDACTED]",
        }

    def _hook_project(self, project: Mapping[str, Any]) -> JSON:
        web_url = project["web_url"]
        host = web_url.split("://", 1)[-1].split("/", 1)[0]
        ssh = f"git@{host}:{project['path_with_namespace']}.git"
        return {
            "id": project["id"],
            "name": project["name"],
            "description": project["description"],
            "web_url": web_url,
            "avatar_url": None,
            "git_ssh_url": ssh,
            "git_http_url": f"{web_url}.git",
            "namespace": project["namespace"]["name"],
            "visibility_level": {"private": 0, "internal": 10, "public": 20}.get(
                project["visibility"], 0
            ),
            "path_with_namespace": project["path_with_namespace"],
            "default_branch": project["default_branch"],
            "ci_config_path": None,
            "homepage": web_url,
            "url": f"{web_url}.git",
            "ssh_url": ssh,
            "http_url": f"{web_url}.git",
        }

    def _hook_repository(self, project: Mapping[str, Any]) -> JSON:
        return {
            "name": project["name"],
            "url": f"{project['web_url']}.git",
            "description": project["description"],
            "homepage": project["web_url"],
        }

    def _mr_attributes(self, project_path: str, mr: Mapping[str, Any]) -> JSON:
        """The MR as hooks present it (``MergeRequest#hook_attrs``)."""
        project = self.standin.project(project_path)
        hook_project = self._hook_project(project)
        author = self.standin.user(mr["author"]["id"])
        assignee_ids = [a["id"] for a in mr["assignees"]]
        return {
            "assignee_id": assignee_ids[0] if assignee_ids else None,
            "author_id": author["id"],
            "blocking_discussions_resolved": mr["blocking_discussions_resolved"],
            "created_at": _iso_seconds(mr["created_at"]),
            "description": mr["description"],
            "draft": mr["draft"],
            "head_pipeline_id": None,
            "id": mr["id"],
            "iid": mr["iid"],
            "last_edited_at": None,
            "last_edited_by_id": None,
            "merge_commit_sha": mr["merge_commit_sha"],
            "merge_error": None,
            "merge_params": {"force_remove_source_branch": "1"},
            "merge_status": mr["merge_status"],
            "merge_user_id": mr["merge_user"]["id"] if mr["merge_user"] else None,
            "merge_when_pipeline_succeeds": False,
            "milestone_id": None,
            "source_branch": mr["source_branch"],
            "source_project_id": mr["source_project_id"],
            "state_id": _STATE_IDS.get(mr["state"], 1),
            "target_branch": mr["target_branch"],
            "target_project_id": mr["target_project_id"],
            "time_estimate": 0,
            "title": mr["title"],
            "updated_at": _iso_seconds(mr["updated_at"]),
            "updated_by_id": None,
            "prepared_at": _iso_seconds(mr["created_at"]),
            "assignee_ids": assignee_ids,
            "blocking_discussions_resolved_at": None,
            "first_contribution": mr["first_contribution"],
            "human_time_change": None,
            "human_time_estimate": None,
            "human_total_time_spent": None,
            "labels": [self.standin.label(project_path, title) for title in mr["labels"]],
            "last_commit": {
                "id": mr["sha"],
                "message": f"{mr['title']}\n",
                "title": mr["title"],
                "timestamp": _iso_seconds(mr["created_at"]),
                "url": f"{project['web_url']}/-/commit/{mr['sha']}",
                "author": {"name": author["name"], "email": self._hook_user(author)["email"]},
            },
            "reviewer_ids": [r["id"] for r in mr["reviewers"]],
            "source": hook_project,
            "state": mr["state"],
            "target": hook_project,
            "time_change": 0,
            "total_time_spent": 0,
            "url": mr["web_url"],
            "work_in_progress": mr["draft"],
            "detailed_merge_status": mr["detailed_merge_status"],
        }

    def _changes(self, project_path: str, changes: Mapping[str, Any]) -> JSON:
        normalised: JSON = {}
        for name, change in changes.items():
            if not isinstance(change, Mapping) or set(change) != {"previous", "current"}:
                raise ValueError(f"changes[{name!r}]: expected {{'previous': …, 'current': …}}")
            previous, current = change["previous"], change["current"]
            if name == "labels":
                previous = self._labels(project_path, previous)
                current = self._labels(project_path, current)
            elif name in ("reviewers", "assignees"):
                previous, current = self._people(previous), self._people(current)
            normalised[name] = {"previous": previous, "current": current}
        return normalised

    def _labels(self, project_path: str, labels: Iterable[Any]) -> list[JSON]:
        return [
            self.standin.label(project_path, label) if isinstance(label, str) else dict(label)
            for label in labels
        ]

    def _people(self, people: Iterable[Any]) -> list[JSON]:
        return [
            self._hook_user(self.standin.user(p)) if isinstance(p, str | int) else dict(p)
            for p in people
        ]


def _person(user: Mapping[str, Any]) -> JSON:
    """An assignee or reviewer at the top of a Merge Request Hook."""
    return {
        "id": user["id"],
        "name": user["name"],
        "username": user["username"],
        "avatar_url": user["avatar_url"],
    }


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _hook_time(stamp: str) -> str:
    """``2015-05-17 18:21:36 UTC``, as the Note Hook example writes times."""
    return _parse(stamp).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso_seconds(stamp: str) -> str:
    """``2013-12-03T17:23:34Z``, as the Merge Request Hook example writes times."""
    return _parse(stamp).strftime("%Y-%m-%dT%H:%M:%SZ")
