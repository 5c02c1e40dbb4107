"""GitLab webhook intake: authenticate, store durably, acknowledge, then process once.

``POST /webhook/gitlab``
1. ``X-Gitlab-Token`` is compared in constant time before the body is read; with no
   configured secret every delivery is refused (401).
2. The body (at most 1 MiB, else 413) must carry a valid Standard Webhooks signature
   when ``GITLAB_WEBHOOK_SIGNING_TOKEN`` is set, and be a JSON object that both database
   engines can store (``bot.http.parse_json``: no ``NaN``, NUL, unpaired surrogate,
   integer beyond 64 bits, nesting past 64 levels...; else 400 before anything is stored).
   A body that cannot be read under an ``X-Gitlab-Event`` the bot never reads (``Push
   Hook``...) is acknowledged and ignored instead, so such a hook is never disabled for it.
3. The event is routed on the body's ``object_kind`` (else ``event_name``), never on the
   ``X-Gitlab-Event`` header: a system hook sends ``System Hook`` for every event it
   carries. The header only labels logs and metrics. Note and merge-request events are
   written to the ``webhook_inbox`` table under a key derived from what they carry
   (:func:`inbox_key`), so the same comment or MR event delivered by a project hook, a
   group hook and a system hook, or resent, is stored once; a key already stored is
   acknowledged and not processed again. Other events are acknowledged and ignored.
4. When the inbox cannot be written (the database is down, or does not commit within
   :data:`STORE_TIMEOUT` seconds), the delivery goes to a durable spool instead
   (:mod:`bot.spool`: a Redis stream, else an fsync'd journal on the replica's volume)
   and is acknowledged with 202 ``spooled``; once the database answers, the spool is
   drained into the inbox under the same key, so it is processed once like any other.
   When no spool can take it (full, or unwritable), the answer is 503 with
   ``Retry-After``. After a failed write, this replica keeps spooling until the spool has
   been drained, so that spooled deliveries reach the inbox before later ones.

Workers then process the rows: a row is claimed with a conditional update (so two
replicas never process it together), handed to the plugins' ``@on_gitlab`` handlers,
and marked done; a failure is retried with exponential backoff, and after
``webhook_max_attempts`` the row is dead-lettered with its last error and kept. The
events of one merge request (:func:`ordering_key`) are handled one at a time, in the
order stored, on every replica: a row waits while another of the same MR is being
handled or an earlier one is due; a row waiting for its retry holds the others up only
while it runs (:func:`_claimable`).

A claim is a lease (``webhook_lease_seconds``) renewed every third of it while the
handlers run, fenced by the ``attempts`` value the claim wrote: every later change
applies only while the row is still ``processing`` under that value, so a crashed
worker's rows are taken over once its lease runs out, a live worker's never, and a
worker that lost its lease cancels its handlers and records nothing. Handlers are
bounded by ``webhook_handler_timeout`` (a timed-out attempt is a failed one). Time comes
from a :class:`Clock`, which tests replace.

Processed rows are deleted ``webhook_retention_days`` after they were processed
(:meth:`Inbox.prune`, once an hour on every replica with workers, a batch at a time);
dead letters are kept until an operator removes them. The default, 90 days, outlasts
GitLab's own webhook request logs, from which an administrator can resend a delivery
(kept one to two months: GitLab drops a month's logs a month after it ends), so a
resent delivery still finds its row and is not processed twice.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import random
import re
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import standardwebhooks
from aiohttp import web
from prometheus_client import Counter, Gauge
from sqlalchemy import (
    Select,
    Update,
    bindparam,
    case,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement
from standardwebhooks.webhooks import EmptyWebhookSecretError

from bot.context import AppContext
from bot.db import UTCDateTime, is_unavailable, ping, utcnow
from bot.hookshapes import shape_problem
from bot.http import BadInput, error_response, json_response, parse_json_object
from bot.inboxwake import CHANNEL as INBOX_CHANNEL
from bot.inboxwake import InboxListener
from bot.leader import Leadership
from bot.logs import bound_id, stored_error
from bot.models import WebhookDelivery
from bot.plugins import GITLAB_EVENTS, Registry
from bot.spool import Spool, SpoolDrainer, SpooledDelivery, SpoolError, build_spools

log = logging.getLogger("bot.webhooks")

#: ``X-Gitlab-Event`` values the bot may read (a bounded label for logs and metrics).
HOOKS = {
    "Note Hook": "note",
    "Confidential Note Hook": "confidential_note",
    "Merge Request Hook": "merge_request",
    "System Hook": "system",
}
MAX_KEY = 255  # webhook_inbox.delivery_key is a String(255)
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, no space
_ACTION = re.compile(r"[a-z_]{1,32}")
MAX_ERROR = 2000
BATCH = 200  # deliveries written per intake transaction at most
#: Seconds the intake waits for the inbox's commit before spooling the delivery instead
#: (the pool's checkout included): GitLab's deliveries are acknowledged within 1 s even
#: when the database hangs rather than refuses (the spool's write takes milliseconds).
STORE_TIMEOUT = 0.8
#: Seconds GitLab is asked to wait (``Retry-After``) when no spool can take a delivery.
RETRY_AFTER = 30

#: What :meth:`Inbox._store` returns for a delivery written to a spool.
SPOOLED: Literal["spooled"] = "spooled"
Stored = int | Literal["spooled"] | None


class SignatureError(Exception):
    """The Standard Webhooks signature is missing, malformed, stale or wrong.

    ``str()`` is a one-line reason for the 401, free of the signing token.
    """


@dataclass(frozen=True)
class GitLabEvent:
    """What an ``@on_gitlab`` handler receives."""

    key: str
    kind: str  # "note" | "merge_request"
    payload: Mapping[str, Any]
    attempt: int
    received_at: datetime


# --------------------------------------------------------------------------- checks


def verify_signature(signing_token: str, headers: Mapping[str, str], body: bytes) -> None:
    """Check the Standard Webhooks signature GitLab sends, or raise :class:`SignatureError`.

    ``signing_token`` is the ``whsec_<base64 key>`` token; ``headers`` are the request's
    (any case: aiohttp's case-insensitive ``CIMultiDictProxy`` or a plain mapping; the
    first of repeated names counts); ``body`` is the raw body. ``webhook-signature`` may
    list several space-separated ``v1,<base64 HMAC-SHA256>`` values: one must match
    ``HMAC(key, "{webhook-id}.{webhook-timestamp}.{body}")``. ``webhook-timestamp``
    (Unix seconds) must be within 5 minutes of now. Protocol: standardwebhooks.com,
    GitLab's ``webhook_signing_token`` (PROTOCOLS.md B1); the check is the
    ``standardwebhooks`` library's, whose errors leave here as a one-line
    :class:`SignatureError`, never as a 5xx.
    """
    secret = signing_token.removeprefix("whsec_")
    try:  # strictly: the library's lenient decoding would turn a typo into another key
        key = base64.b64decode(secret + "=" * (-len(secret) % 4), validate=True)
        webhook = standardwebhooks.Webhook(key)
    except (binascii.Error, ValueError, EmptyWebhookSecretError):
        raise SignatureError("the configured signing token is not a base64 key") from None
    received: dict[str, str] = {}
    for name, value in headers.items():
        received.setdefault(name.lower(), value)
    try:
        webhook.verify(body, received, json_parse=False)
    except standardwebhooks.WebhookVerificationError as e:
        raise SignatureError(str(e)) from e
    except UnicodeDecodeError as e:  # the library verifies text only (JSON is UTF-8)
        raise SignatureError("the body is not UTF-8") from e
    except ValueError as e:  # the library's parsing raises these on malformed headers
        raise SignatureError("malformed webhook-id, webhook-timestamp or webhook-signature") from e


def _header_part(value: str) -> str:
    """A header value fit for a key: as sent when printable ASCII, else its hash.

    aiohttp hands non-UTF-8 header bytes over as lone surrogates, which no database
    driver can encode; they are hashed (as the bytes received) instead.
    """
    value = value.strip()
    if _HEADER_TOKEN.fullmatch(value):
        return value
    raw = value.encode("utf-8", "surrogateescape")
    return "h" + hashlib.sha256(raw).hexdigest()[:40]


def delivery_key(headers: Mapping[str, str], body: bytes) -> str:
    """The key of one delivery: ``idem:<Idempotency-Key>``, else ``uuid:<event>:<hook>``.

    ``Idempotency-Key`` (GitLab 17.4) is the same across retries and resends of one hook's
    delivery. ``X-Gitlab-Event-UUID`` is NOT shared by the hooks one event triggers: GitLab
    draws a new UUID per hook unless the event was itself caused by a webhook's request
    (``lib/gitlab/web_hooks/recursion_detection/uuid.rb``), hence the pair with
    ``X-Gitlab-Webhook-UUID``. Without either header: ``sha256:<hash of the body>``.
    At most :data:`MAX_KEY` characters, printable ASCII.
    """
    idempotency = headers.get("Idempotency-Key", "").strip()
    if idempotency:
        return f"idem:{_header_part(idempotency)}"
    event_uuid = headers.get("X-Gitlab-Event-UUID", "").strip()
    if event_uuid:
        hook_uuid = headers.get("X-Gitlab-Webhook-UUID", "").strip()
        hook = _header_part(hook_uuid) if hook_uuid else ""
        return f"uuid:{_header_part(event_uuid)}:{hook}"
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


def event_kind(payload: Mapping[str, Any]) -> str | None:
    """The ``@on_gitlab`` kind of a payload, from its ``object_kind`` else ``event_name``.

    Project, group and system hooks all name the event in the body (``webhook_events.md``,
    ``system_hooks.md``); a system hook's ``X-Gitlab-Event`` is ``System Hook`` whatever
    it carries. None for an event no handler reads.
    """
    name = payload.get("object_kind")
    if not isinstance(name, str) or not name:
        name = payload.get("event_name")
    # The ``@on_gitlab`` kinds are GitLab's ``object_kind`` values (one list: GITLAB_EVENTS).
    return name if isinstance(name, str) and name in GITLAB_EVENTS else None


def _ident(value: Any) -> int | None:
    """A positive integer id (the JSON loader already bounds it to 64 bits), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _digest(*parts: Any) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _note_key(payload: Mapping[str, Any]) -> str | None:
    attributes = payload.get("object_attributes")
    if not isinstance(attributes, Mapping):
        return None
    project = payload.get("project")
    project_id = _ident(payload.get("project_id")) or _ident(attributes.get("project_id"))
    if project_id is None and isinstance(project, Mapping):
        project_id = _ident(project.get("id"))
    note_id = _ident(attributes.get("id"))
    action = attributes.get("action") or "create"  # GitLab before 16.11 sent creations only
    if project_id is None or note_id is None or not isinstance(action, str):
        return None
    if not _ACTION.fullmatch(action):
        return None
    noteable_id = _ident(attributes.get("noteable_id")) or 0  # 0: a comment on a commit
    key = f"note:{project_id}:{noteable_id}:{note_id}:{action}"
    if action != "create":  # each edit of a comment is an event of its own
        key += ":" + _digest(attributes.get("updated_at"))[:16]
    return key


def _merge_request_key(payload: Mapping[str, Any]) -> str | None:
    attributes = payload.get("object_attributes")
    if not isinstance(attributes, Mapping):
        return None
    project = payload.get("project")
    project_id = _ident(attributes.get("target_project_id"))
    if isinstance(project, Mapping):
        project_id = _ident(project.get("id")) or project_id
    mr_id = _ident(attributes.get("id"))
    if project_id is None or mr_id is None:
        return None
    user = payload.get("user")
    last_commit = attributes.get("last_commit")
    what = _digest(
        attributes.get("action"),
        attributes.get("updated_at"),
        user.get("id") if isinstance(user, Mapping) else None,
        attributes.get("oldrev"),
        last_commit.get("id") if isinstance(last_commit, Mapping) else None,
        payload.get("changes"),
    )
    return f"mr:{project_id}:{mr_id}:{what[:32]}"


def inbox_key(
    kind: str, payload: Mapping[str, Any], headers: Mapping[str, str], body: bytes
) -> str:
    """The ``webhook_inbox`` key of an event: derived from what it carries where it can be.

    One event reaches the bot once per hook that fires (project, group, system hook) and
    again on a retry or resend, each time with another delivery id but the same payload
    (GitLab builds it once for all hooks). So:

    - a comment is ``note:<project id>:<noteable id>:<note id>:<action>`` (an edit adds a
      hash of its ``updated_at``, so each edit counts once);
    - a merge-request event is ``mr:<project id>:<MR id>:<hash>`` of its action,
      ``updated_at``, acting user, ``oldrev``, last commit and ``changes``: two events
      alike in all of these are taken for one;
    - a payload without those ids falls back to :func:`delivery_key` (one per delivery).

    Printable ASCII, at most :data:`MAX_KEY` characters (ids are 64-bit at most).
    """
    if kind == "note":
        key = _note_key(payload)
    elif kind == "merge_request":
        key = _merge_request_key(payload)
    else:
        key = None
    return (key or delivery_key(headers, body))[:MAX_KEY]


def ordering_key(kind: str, payload: Mapping[str, Any]) -> str | None:
    """``mr:<MR id>`` when the event concerns a merge request, else None.

    The MR's id (global to the GitLab instance, not its ``iid``) is ``object_attributes.id``
    in a Merge Request Hook and ``merge_request.id`` in a comment on an MR (GitLab's
    "Webhook events" page: note events carry the ``merge_request`` they belong to). Rows
    with the same ordering key are processed one at a time in the order stored, as GitLab
    sent them: an approval, then the merge, never both at once.
    """
    if kind == "merge_request":
        subject = payload.get("object_attributes")
    else:
        subject = payload.get("merge_request")
    mr_id = _ident(subject.get("id")) if isinstance(subject, Mapping) else None
    return None if mr_id is None else f"mr:{mr_id}"


# The intake's INSERT on PostgreSQL: one statement text whatever the batch's size, so that
# psycopg converts it once and the server prepares it (``INSERT ... VALUES`` with a row
# per delivery is a new statement for every batch size, converted each time). The batch
# is one JSON array parameter, in which each payload is the JSON text GitLab sent, as it
# was received (the column is ``json``: kept as written, never serialised again); a
# ``text[]`` per column would have psycopg escape every payload in Python. The columns
# the model fills by default are given as parameters from the model. The statement also
# sends ``NOTIFY roulette_inbox`` (``bot.inboxwake``) once per stored row, which
# PostgreSQL folds into one notification, and none when every key was already stored:
# one round trip fewer than an INSERT and a NOTIFY (psycopg sends ``BEGIN`` and
# ``COMMIT`` on their own: three, where there were four). Not in autocommit, which
# would save two more: SQLAlchemy switches a pooled connection's autocommit on checkout
# and back on return, and a task cancelled meanwhile (the intake's timeout, a shutdown)
# left the connection to the garbage collector in 16 to 70 of 300 tries.
_INBOX = WebhookDelivery.__table__
_PG_INTAKE = text(
    "WITH stored AS ("
    "INSERT INTO webhook_inbox (delivery_key, source, event_type, ordering_key, payload,"
    " status, attempts, received_at, next_attempt_at, updated_at)"
    " SELECT d.key, :source, d.kind, d.ordering, d.payload, :status, :attempts,"
    " d.received, d.received, d.received"
    " FROM json_to_recordset(CAST(:batch AS json))"
    " AS d(key text, kind text, ordering text, received timestamptz, payload json)"
    " ON CONFLICT (delivery_key) DO NOTHING"
    " RETURNING id, delivery_key"
    ") SELECT id, delivery_key, pg_notify(:channel, '') FROM stored"
)


def _intake_record(row: Mapping[str, Any]) -> str:
    """One delivery of :data:`_PG_INTAKE`'s batch: a JSON object whose ``payload`` is the
    text received (``row["json"]``), spliced in as it is, or ``row["payload"]`` serialised
    (a delivery from a spool)."""
    head = json.dumps(
        {
            "key": row["delivery_key"],
            "kind": row["event_type"],
            "ordering": ordering_key(row["event_type"], row["payload"]),
            "received": row["received_at"].isoformat(),
        }
    )
    payload = row.get("json") or json.dumps(row["payload"])
    return f'{head[:-1]},"payload":{payload}}}'


_PG_INTAKE_DEFAULTS = {
    **{name: _INBOX.c[name].default.arg for name in ("source", "status", "attempts")},
    "channel": INBOX_CHANNEL,
}


def _due(row: type[WebhookDelivery], now: ColumnElement[datetime]) -> ColumnElement[bool]:
    """``pending`` rows whose retry time has come, ``processing`` ones whose lease ran out."""
    return or_(
        (row.status == "pending") & (row.next_attempt_at <= now),
        (row.status == "processing") & (row.locked_until < now),
    )


def _claimable(now: ColumnElement[datetime]) -> ColumnElement[bool]:
    """Rows a worker may claim at ``now``: due ones (:func:`_due`), unless another row with
    the same :func:`ordering_key` is held (``processing`` under a running lease) or an
    earlier one is due too (it goes first). So one merge request's deliveries are never
    handled at once, and in the order stored; one waiting for its retry holds nothing up
    (it runs when its time comes, after the one then held)."""
    other = aliased(WebhookDelivery)
    same = other.ordering_key == WebhookDelivery.ordering_key
    held = (other.status == "processing") & (other.locked_until >= now)
    return (
        _due(WebhookDelivery, now)
        & ~exists().where(same, other.id != WebhookDelivery.id, held)
        & ~exists().where(same, other.id < WebhookDelivery.id, _due(other, now))
    )


# The inbox's polling statements, built once: a worker runs them for every delivery, and
# building one (with its cache key) costs more Python than running it. Parameters: ``now``
# (the clock's time), ``free`` (how many rows), ``row_id``, ``until`` (the new lease's end).
_NOW = bindparam("now", type_=UTCDateTime())


def _due_rows() -> Select[int, str, str]:
    """The first ``free`` rows :func:`_claimable` at ``now``, by id, read in one pass over
    the rows not done yet: per ordering key, its first due row, unless one of its rows is
    held. (The same test as correlated ``NOT EXISTS``, as the claim writes it, left the
    plan to the row estimates: on a table not analysed yet, a backlog of 2,500 rows took
    PostgreSQL 470 ms per poll, every due row compared with every other; this takes 4 ms.)
    """
    row = WebhookDelivery
    due = _due(row, _NOW)
    held = (row.status == "processing") & (row.locked_until >= _NOW)
    key = row.ordering_key
    live = (
        select(
            row.id,
            row.status,
            row.event_type,
            key,
            case((due, 1), else_=0).label("due"),
            func.min(case((due, row.id))).over(partition_by=key).label("first_due"),
            func.max(case((held, 1), else_=0)).over(partition_by=key).label("held"),
        )
        .where(or_(row.status == "pending", row.status == "processing"))
        .subquery("live")
    )
    return (
        select(live.c.id, live.c.status, live.c.event_type)
        .where(
            live.c.due == 1,
            or_(  # a row without a key waits for no other
                live.c.ordering_key.is_(None),
                (live.c.id == live.c.first_due) & (live.c.held == 0),
            ),
        )
        .order_by(live.c.id)
        .limit(bindparam("free"))
    )


_DUE_ROWS = _due_rows()
_NEXT_RETRY = (
    select(WebhookDelivery.next_attempt_at)
    .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at > _NOW)
    .order_by(WebhookDelivery.next_attempt_at)
    .limit(1)
)
_CLAIMABLE_AT = _claimable(_NOW)
_CLAIM = (
    update(WebhookDelivery)
    .where(WebhookDelivery.id == bindparam("row_id"), _CLAIMABLE_AT)
    .values(
        status="processing",
        locked_until=bindparam("until", type_=UTCDateTime()),
        attempts=WebhookDelivery.attempts + 1,
    )
    .returning(
        WebhookDelivery.attempts,
        WebhookDelivery.delivery_key,
        WebhookDelivery.event_type,
        WebhookDelivery.payload,
        WebhookDelivery.received_at,
    )
)

# A processed row's outcome, while the claim still holds it (``Inbox._held``): the
# statement of every delivery done, so built once. Parameters: ``row_id``, ``token``
# (the claim's attempt), ``now`` (the lease must not have run out by then).
_DONE = (
    update(WebhookDelivery)
    .where(
        WebhookDelivery.id == bindparam("row_id"),
        WebhookDelivery.status == "processing",
        WebhookDelivery.attempts == bindparam("token"),
        WebhookDelivery.locked_until > _NOW,
    )
    .values(status="done", processed_at=_NOW, last_error=None)
)

# The retention: processed rows older than ``before``, oldest first, a batch at a time
# (rows another replica is deleting are skipped on PostgreSQL, not waited for).
PRUNE_BATCH = 500
PRUNE_EVERY = 3600.0  # seconds between two looks
_PRUNE = delete(WebhookDelivery).where(
    WebhookDelivery.id.in_(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == "done",
            WebhookDelivery.processed_at < bindparam("before", type_=UTCDateTime()),
        )
        .order_by(WebhookDelivery.processed_at)
        .limit(bindparam("batch"))
        .with_for_update(skip_locked=True)
    )
)


def token_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time ``expected == given``; False when either is missing.

    ``given`` may carry lone surrogates (non-UTF-8 header bytes): compared as the bytes sent.
    """
    if not expected or given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


# --------------------------------------------------------------------------- leases


class Clock(Protocol):
    """The time the inbox's leases, heartbeats, retries and handler timeouts run on."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""
        ...


class SystemClock:
    """The wall clock (replicas' clocks are assumed in step to within a second or so)."""

    def now(self) -> datetime:
        """``datetime.now(UTC)``."""
        return utcnow()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class Claim:
    """A worker's hold on an inbox row, and the row's delivery (read by the claim itself).

    ``token`` is the row's ``attempts`` value this claim wrote: the fencing token that
    every later update of the row by this worker must still find. ``held_until`` is
    when the lease written by the claim runs out. ``event`` is the delivery to handle.
    """

    row_id: int
    token: int
    held_until: datetime
    event: GitLabEvent


Outcome = Literal["finished", "timeout", "lost"]


# --------------------------------------------------------------------------- the inbox


class Inbox:
    """The intake route and the workers behind it."""

    def __init__(self, context: AppContext, registry: Registry, clock: Clock | None = None) -> None:
        self.context = context
        self.registry = registry
        settings = context.settings
        self.workers = settings.webhook_workers
        self.idle_poll = settings.webhook_poll_seconds
        self.max_attempts = settings.webhook_max_attempts
        self.retry_seconds = settings.webhook_retry_seconds
        self.lease = timedelta(seconds=settings.webhook_lease_seconds)
        self.handler_timeout = settings.webhook_handler_timeout
        self.retention = timedelta(days=settings.webhook_retention_days)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.workers)
        self._pending: list[tuple[dict[str, Any], asyncio.Future[Stored]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._listener: InboxListener | None = None
        redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
        self.spools: list[Spool] = build_spools(
            settings.spool_dir, settings.spool_max_bytes, redis_url
        )
        self._drainer: SpoolDrainer | None = None
        # Set after a failed write: deliveries go to the spool until it has been drained.
        self._spool_first = False
        registry_ = context.metrics.registry
        self.received = Counter(
            "webhook_deliveries_total",
            "GitLab webhook deliveries answered, by event (from the body), hook and outcome.",
            ["event", "hook", "outcome"],
            registry=registry_,
        )
        self.processed = Counter(
            "webhook_processed_total",
            "Inbox rows processed, by event and outcome (done, retry, dead).",
            ["event", "outcome"],
            registry=registry_,
        )
        self.dead_letters = Counter(
            "webhook_dead_letters_total",
            "Deliveries given up after the last attempt (kept in the inbox).",
            ["event"],
            registry=registry_,
        )
        self.backlog = Gauge(
            "webhook_inbox_in_flight",
            "Deliveries being processed by this process.",
            registry=registry_,
        )
        self.leases_expired = Counter(
            "webhook_leases_expired_total",
            "Deliveries taken over after their worker's lease ran out (a crash, a stall).",
            ["event"],
            registry=registry_,
        )
        self.leases_lost = Counter(
            "webhook_leases_lost_total",
            "Deliveries this process stopped working on because its lease was lost;"
            " their outcome was left to the worker holding them.",
            ["event"],
            registry=registry_,
        )
        self.spooled = Counter(
            "webhook_spooled_total",
            "Deliveries acknowledged from a spool because the inbox could not be written,"
            " by spool (redis, journal).",
            ["spool"],
            registry=registry_,
        )
        self.spool_depth = Gauge(
            "webhook_spool_depth",
            "Deliveries waiting in a spool for the database, by spool (redis, journal).",
            ["spool"],
            registry=registry_,
        )
        self.pruned = Counter(
            "webhook_inbox_pruned_total",
            "Processed deliveries deleted from the inbox after WEBHOOK_RETENTION_DAYS.",
            registry=registry_,
        )
        self.refused = Counter(
            "webhook_refused_total",
            "Deliveries answered 503 with Retry-After: the inbox could not be written and"
            " no spool could take them (spool_full, spool_unavailable).",
            ["reason"],
            registry=registry_,
        )
        for spool in self.spools:
            self.spooled.labels(spool.name)
            self.spool_depth.labels(spool.name).set(0)
        for reason in ("spool_full", "spool_unavailable"):
            self.refused.labels(reason)

    # ----------------------------------------------------------------- intake

    async def receive(self, request: web.Request) -> web.Response:
        """``POST /webhook/gitlab``: 401, 400, 413, 200 ``accepted|duplicate|ignored``,
        202 ``spooled``, or 503 with ``Retry-After`` (nothing could store it).

        See the module's docstring for the order of the checks.
        """
        settings = self.context.settings
        hook = HOOKS.get(request.headers.get("X-Gitlab-Event", ""), "other")
        secret = settings.gitlab_webhook_secret
        given = request.headers.get("X-Gitlab-Token")
        if not token_matches(secret.get_secret_value() if secret else None, given):
            self.received.labels("unknown", hook, "unauthorized").inc()
            return error_response(401, "invalid or missing X-Gitlab-Token")
        body = await request.read()  # over client_max_size: 413, by the error middleware
        signing = settings.gitlab_webhook_signing_token
        if signing is not None:
            try:
                verify_signature(signing.get_secret_value(), request.headers, body)
            except SignatureError as e:
                self.received.labels("unknown", hook, "bad_signature").inc()
                return error_response(401, f"invalid webhook signature: {e}")
        try:
            payload = parse_json_object(body)
        except BadInput as e:
            if hook == "other":  # an event the bot never reads: its body cannot matter
                self.received.labels("other", hook, "ignored").inc()
                return json_response({"status": "ignored"})
            self.received.labels("unknown", hook, "bad_request").inc()
            log.info("webhook body refused (%s hook): %s", hook, e)
            return error_response(e.status, str(e))
        kind = event_kind(payload)
        if kind is None:
            self.received.labels("other", hook, "ignored").inc()
            return json_response({"status": "ignored"})
        problem = shape_problem(kind, payload)
        if problem is not None:  # it would fail at every retry: refuse it now
            self.received.labels(kind, hook, "bad_request").inc()
            log.info("webhook body refused (%s hook): %s", hook, problem)
            return error_response(400, f"not a GitLab {kind} event: {problem}")

        key = inbox_key(kind, payload, request.headers, body)
        try:
            row_id = await self._store(key, kind, payload, body)
        except SpoolError as refusal:
            self.refused.labels(refusal.reason).inc()
            self.received.labels(kind, hook, "refused").inc()
            log.warning("delivery %s refused with 503: %s", key, refusal)
            return error_response(
                503,
                "the bot cannot store the delivery now (its database is unavailable and"
                " its spool cannot take it); retry later",
                **{"Retry-After": str(RETRY_AFTER)},
            )
        if row_id == SPOOLED:
            self.received.labels(kind, hook, "spooled").inc()
            log.info("delivery %s spooled (%s, %s hook)", key, kind, hook)
            return json_response({"status": "spooled", "delivery": key}, status=202)
        if row_id is None:
            self.received.labels(kind, hook, "duplicate").inc()
            log.info("delivery %s already received; not processed again", key)
            return json_response({"status": "duplicate", "delivery": key})
        self.received.labels(kind, hook, "accepted").inc()
        log.info("delivery %s stored (%s, %s hook)", key, kind, hook, extra={"delivery": key})
        return json_response({"status": "accepted", "delivery": key, "id": row_id})

    async def _store(self, key: str, kind: str, payload: dict[str, Any], body: bytes) -> Stored:
        """Store one delivery (``payload``, parsed from ``body``, UTF-8 JSON): its inbox id,
        None when the key was already stored, or :data:`SPOOLED` when it went to a spool.

        Deliveries arriving together are written in one transaction (group commit): one
        transaction per request would queue every acknowledgement behind the others'
        commits (and, on SQLite, behind its single write lock). Each request still gets
        its answer only once its row is committed, or its spool record written.

        Raises:
            SpoolError: the inbox could not be written and no spool could take it.
        """
        done: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        values = {
            "delivery_key": key,
            "event_type": kind,
            "payload": payload,
            "json": body.decode("utf-8"),  # valid: ``payload`` was parsed from it
            "received_at": utcnow(),
        }
        self._pending.append((values, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="webhook-intake")
        return await done

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            stored: dict[str, int] | None = None
            if not self._spool_first:
                try:
                    async with asyncio.timeout(STORE_TIMEOUT):
                        stored = await self._insert([values for values, _ in batch])
                except Exception as e:
                    if not (isinstance(e, TimeoutError) or is_unavailable(e)):
                        for _, done in batch:
                            if not done.done():
                                done.set_exception(e)
                        continue
                    log.warning(
                        "the inbox cannot be written (%s); deliveries go to the spool until"
                        " the database answers",
                        f"no commit within {STORE_TIMEOUT:g} s"
                        if isinstance(e, TimeoutError)
                        else type(e).__name__,
                    )
                    self._spool_first = True
            if stored is None:
                await self._spool(batch)
                continue
            for values, done in batch:
                if not done.done():
                    done.set_result(stored.pop(values["delivery_key"], None))
            self._wake.set()

    async def _spool(self, batch: list[tuple[dict[str, Any], asyncio.Future[Stored]]]) -> None:
        """Write ``batch`` to the first spool that takes it, and answer each delivery.

        When a batch does not fit as a whole, its deliveries are tried one by one (the
        ones that fit are acknowledged). A delivery no spool takes gets the
        :class:`~bot.spool.SpoolError` of the last refusal (a full spool before an
        unavailable one), which :meth:`receive` answers with 503.
        """
        deliveries = [
            SpooledDelivery(
                key=values["delivery_key"],
                kind=values["event_type"],
                payload=values["payload"],
                received_at=values["received_at"],
            )
            for values, _ in batch
        ]
        outcomes: list[SpoolError | None] = [None] * len(batch)
        try:
            await self._append(deliveries)
        except SpoolError as whole:
            outcomes = [whole] * len(batch)
            if len(batch) > 1 and whole.reason == "spool_full":
                outcomes = []
                for delivery in deliveries:
                    try:
                        await self._append([delivery])
                        outcomes.append(None)
                    except SpoolError as one:
                        outcomes.append(one)
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if done.done():
                continue
            if outcome is None:
                done.set_result(SPOOLED)
            else:
                done.set_exception(outcome)
        if self._drainer is not None and None in outcomes:
            self._drainer.wake()

    async def _append(self, deliveries: list[SpooledDelivery]) -> None:
        """Append to the first spool that takes all of ``deliveries``, counting them.

        Raises:
            SpoolError: the last refusal, a :class:`~bot.spool.SpoolFull` preferred (or a
                ``SpoolUnavailable`` when spooling is off: ``SPOOL_MAX_BYTES=0``).
        """
        refusal: SpoolError | None = None
        for spool in self.spools:
            try:
                await spool.append(deliveries)
            except SpoolError as e:
                log.warning(
                    "the %s spool refused %d deliveries: %s", spool.name, len(deliveries), e
                )
                if refusal is None or refusal.reason != "spool_full":
                    refusal = e
                continue
            self.spooled.labels(spool.name).inc(len(deliveries))
            return
        raise refusal if refusal is not None else SpoolError("spooling is off (SPOOL_MAX_BYTES=0)")

    async def _store_spooled(self, deliveries: Sequence[SpooledDelivery]) -> None:
        """Insert spooled deliveries into the inbox (the drainer's ``store``), in order,
        keeping their keys and arrival times; a key already there is left as it is."""
        rows = [
            {
                "delivery_key": d.key,
                "event_type": d.kind,
                "payload": d.payload,
                "received_at": d.received_at,
            }
            for d in deliveries
        ]
        stored = await self._insert(rows)
        log.info(
            "%d spooled deliveries stored in the inbox, %d already there",
            len(stored),
            len({d.key for d in deliveries}) - len(stored),
        )
        if stored:
            self._wake.set()

    def _spool_settled(self) -> None:
        """The spools are empty (or cannot be drained for a defect): write to the
        inbox directly again."""
        if self._spool_first:
            log.info("the spool is drained; deliveries are stored in the inbox again")
        self._spool_first = False

    async def warn_without_spool(self) -> None:
        """At start: log a warning when spooling is on (``SPOOL_MAX_BYTES`` > 0) but no
        spool can take a delivery (``SPOOL_DIR`` cannot be written, Redis refuses): a
        database outage would then answer GitLab 503 instead of keeping its deliveries,
        and the operator hears of it now rather than during the outage."""
        if not self.spools:
            return
        try:
            await self.spool_check(touch=False)
        except SpoolError as e:
            log.warning(
                "no webhook spool can take a delivery (%s): while the database is down,"
                " GitLab's deliveries will be refused with 503",
                e,
            )

    async def spool_check(self, *, touch: bool = True) -> None:
        """Raise :class:`~bot.spool.SpoolError` unless some spool can take a delivery now
        (``/readiness?scope=web`` while the database is down); ``touch=False`` creates
        nothing (see ``Spool.check``)."""
        refusal: SpoolError = SpoolError("spooling is off (SPOOL_MAX_BYTES=0)")
        for spool in self.spools:
            try:
                await spool.check(touch=touch)
            except SpoolError as e:
                refusal = e
                continue
            return
        raise refusal

    async def _insert(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        """INSERT ... ON CONFLICT DO NOTHING; the ids of the rows really inserted, by key.

        A row may carry ``json``, its payload as the JSON text received (PostgreSQL then
        stores that text rather than serialising ``payload`` again)."""
        if self.context.engine.dialect.name == "postgresql":
            return await self._insert_postgresql(rows)
        rows = [
            {
                "delivery_key": row["delivery_key"],
                "event_type": row["event_type"],
                "payload": row["payload"],
                "received_at": row["received_at"],
                "ordering_key": ordering_key(row["event_type"], row["payload"]),
            }
            for row in rows
        ]
        async with self.context.sessions.begin() as session:
            statement = (
                sqlite_insert(WebhookDelivery)
                .on_conflict_do_nothing(index_elements=["delivery_key"])
                .returning(WebhookDelivery.id, WebhookDelivery.delivery_key)
            )
            result = await session.execute(statement, rows)
            return {str(key): int(row_id) for row_id, key in result.all()}

    async def _insert_postgresql(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        """:meth:`_insert` on PostgreSQL: one :data:`_PG_INTAKE` in a transaction of its
        own, which also wakes every replica's workers when a row was inserted.

        Source: PostgreSQL, ``NOTIFY`` ("if a NOTIFY is executed inside a transaction, the
        notify events are not delivered until and unless the transaction is committed";
        duplicates in one transaction are folded), https://www.postgresql.org/docs/current/sql-notify.html
        """
        batch = ",".join(_intake_record(row) for row in rows)
        parameters = {**_PG_INTAKE_DEFAULTS, "batch": f"[{batch}]"}
        async with self.context.sessions.begin() as session:
            result = await session.execute(_PG_INTAKE, parameters)
            return {str(key): int(row_id) for row_id, key, _ in result.all()}

    # ----------------------------------------------------------------- workers

    def start(self) -> None:
        """Start the workers: the poll loop (``webhook_workers`` handlers at once at most)
        and, on PostgreSQL, the ``LISTEN`` session that wakes it when any replica stores
        a delivery (:mod:`bot.inboxwake`). With ``webhook_workers`` 0 (a web-only
        replica) nothing starts: deliveries are stored and acknowledged here and
        processed by the replicas that have workers.

        The spool drainer (:class:`~bot.spool.SpoolDrainer`) starts on every replica,
        web-only ones included: deliveries spooled while the database was down are moved
        into the inbox once it answers."""
        self._stopping = False
        if self._drainer is None and self.spools:
            engine = self.context.engine
            self._drainer = SpoolDrainer(
                self.spools,
                self._store_spooled,
                probe=lambda: ping(engine),
                lock=Leadership(engine, "webhook-spool-drain"),
                depth=self.spool_depth,
                unhandled=self.context.metrics.unhandled_errors.labels("webhook_spool").inc,
                on_settled=self._spool_settled,
            )
            self._drainer.start()
        if self.workers == 0:
            log.info("web-only replica: deliveries are stored here, processed elsewhere")
            return
        self._loop_task = asyncio.create_task(self._run(), name="webhook-inbox")
        if self.retention:
            self._pruner = asyncio.create_task(self._prune_hourly(), name="webhook-inbox-prune")
        url = self.context.settings.async_database_url
        if url.get_backend_name() == "postgresql":
            self._listener = InboxListener(url, self._wake.set)
            self._listener.start()

    async def stop(self, grace: float) -> None:
        """Stop claiming, give running handlers ``grace`` seconds, then cancel them.

        A cancelled handler's row is handed back at once (``pending``, due now, the
        attempt not counted) while this worker still holds it, so another replica takes
        it over without waiting for the lease to run out.
        """
        self._stopping = True
        self._wake.set()
        if self._pruner is not None:
            await _cancel(self._pruner)
            self._pruner = None
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._writer is not None:  # deliveries being stored are answered first
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._drainer is not None:
            await self._drainer.stop()
            self._drainer = None
        for spool in self.spools:
            await spool.close()
        if self._loop_task is not None:
            await self._loop_task
            self._loop_task = None
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _run(self) -> None:
        """Claim due rows, run them, sleep until woken or the next retry is due."""
        while not self._stopping:
            self._wake.clear()
            try:
                delay = await self._dispatch_due()
            except Exception as e:  # the database may be away: try again shortly
                if is_unavailable(e):  # an outage, not a defect: no traceback, not counted
                    log.warning("webhook inbox poll failed: the database is unavailable")
                else:
                    log.exception("webhook inbox poll failed")
                    self.context.metrics.unhandled_errors.labels("webhook_inbox").inc()
                delay = 5.0
            if self._stopping:
                break
            if delay > 0:
                await self._wait(self._wake.wait(), delay)

    async def prune(self) -> int:
        """Delete the rows processed more than ``webhook_retention_days`` ago (none with
        0), :data:`PRUNE_BATCH` per transaction, so that the table's locks stay short;
        returns how many. Rows still to process and dead letters are never deleted."""
        if not self.retention:
            return 0
        before = self.clock.now() - self.retention
        removed = 0
        while True:
            async with self.context.sessions.begin() as session:
                result = await session.execute(_PRUNE, {"before": before, "batch": PRUNE_BATCH})
            count = int(getattr(result, "rowcount", 0) or 0)
            removed += count
            self.pruned.inc(count)
            if count < PRUNE_BATCH or self._stopping:
                break
        if removed:
            log.info("webhook inbox: %d processed deliveries past retention deleted", removed)
        return removed

    async def _prune_hourly(self) -> None:
        """:meth:`prune` at start, then every :data:`PRUNE_EVERY` seconds (inbox clock)."""
        while True:
            try:
                await self.prune()
            except Exception as e:  # the database may be away: the next hour tries again
                if is_unavailable(e):
                    log.warning("webhook inbox retention: the database is unavailable")
                else:
                    log.exception("webhook inbox retention failed")
                    self.context.metrics.unhandled_errors.labels("webhook_inbox").inc()
            await self.clock.sleep(PRUNE_EVERY)

    async def _wait(self, waited: Awaitable[Any], seconds: float) -> None:
        """Wait for ``waited`` or ``seconds`` on the inbox clock, whichever comes first."""
        task = asyncio.ensure_future(waited)
        ticker = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait({task, ticker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (task, ticker):
                if not future.done():
                    future.cancel()
            await asyncio.gather(task, ticker, return_exceptions=True)

    async def _dispatch_due(self) -> float:
        """Start every due row there is room for; return how long to sleep (seconds).

        Due: ``pending`` rows whose retry time has come, and ``processing`` rows whose
        lease ran out (their worker died or lost touch with the database).
        """
        now = self.clock.now()
        free = self.workers - len(self._running)
        if free <= 0:
            return 1.0
        async with self.context.reads() as session:
            due = (await session.execute(_DUE_ROWS, {"now": now, "free": free})).all()
            if len(due) == free:  # no room left: the next retry's time is not needed
                upcoming = None
            else:
                upcoming = await session.scalar(_NEXT_RETRY, {"now": now})
        for row_id, status, kind in due:
            claim = await self._claim(row_id)
            if claim is None:
                continue
            if status == "processing":
                self.leases_expired.labels(kind).inc()
                log.warning("delivery row %d: its worker's lease ran out; taken over", row_id)
            task = asyncio.create_task(self._process(claim), name=f"webhook-{row_id}")
            self._running.add(task)
            self.backlog.set(len(self._running))
            task.add_done_callback(self._finished)
        if len(due) == free:
            return 0.0
        if upcoming is not None:
            return max(0.05, min(self.idle_poll, (upcoming - self.clock.now()).total_seconds()))
        return self.idle_poll

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self.backlog.set(len(self._running))
        self._wake.set()

    async def _claim(self, row_id: int) -> Claim | None:
        """Take the row for this worker; None when another worker or replica has it.

        The claim increments ``attempts``, and that new value is the lease's fencing
        token: every later change by this worker (heartbeat, done, retry, dead) applies
        only while the row is still ``processing`` under this very token, so a worker
        whose row was taken over after its lease ran out changes nothing.
        """
        now = self.clock.now()
        async with self.context.sessions.begin() as session:
            parameters = {"row_id": row_id, "now": now, "until": now + self.lease}
            connection = await session.connection()  # Core: no ORM bulk-update bookkeeping
            claimed = (await connection.execute(_CLAIM, parameters)).one_or_none()
        if claimed is None:
            return None
        token, key, kind, payload, received_at = claimed
        event = GitLabEvent(
            key=key, kind=kind, payload=payload, attempt=int(token), received_at=received_at
        )
        return Claim(row_id=row_id, token=int(token), held_until=now + self.lease, event=event)

    async def _process(self, claim: Claim) -> None:
        """Run the row's handlers under a renewed lease, then record the outcome."""
        event = claim.event
        with bound_id(f"delivery-{claim.row_id}"):
            handler = asyncio.create_task(
                self._handle(event), name=f"webhook-handler-{claim.row_id}"
            )
            try:
                outcome = await self._supervise(claim, event, handler)
            except asyncio.CancelledError:  # stopping: hand the row back while it is ours
                await _cancel(handler)
                with contextlib.suppress(Exception):
                    await self._release(claim)
                raise
            if outcome == "lost":
                return
            error: BaseException | None
            if outcome == "timeout":
                error = TimeoutError(
                    f"the handlers took longer than {self.handler_timeout:g} s"
                    " (webhook_handler_timeout)"
                )
            elif handler.cancelled():
                error = asyncio.CancelledError("a handler was cancelled")
            else:
                error = handler.exception()
            if error is not None:
                await self._failed(claim, event, error)
                return
            now = self.clock.now()
            parameters = {"row_id": claim.row_id, "token": claim.token, "now": now}
            if await self._change_held(claim, _DONE, parameters):
                self.processed.labels(event.kind, "done").inc()
                log.info("delivery %s processed", event.key)

    async def _handle(self, event: GitLabEvent) -> None:
        for handler in self.registry.gitlab.get(event.kind, []):
            await handler.func(event)

    async def _supervise(
        self, claim: Claim, event: GitLabEvent, handler: asyncio.Task[None]
    ) -> Outcome:
        """Renew the lease every third of it until ``handler`` ends; how it ended.

        ``finished``: the handler returned or raised. ``timeout``: it ran past
        ``webhook_handler_timeout`` and was cancelled. ``lost``: the row is no longer
        this worker's (another took it after the lease ran out), or the lease could not
        be renewed before it runs out; the handler was cancelled and the row is left to
        whoever holds it.
        """
        interval = self.lease.total_seconds() / 3
        deadline = self.clock.now() + timedelta(seconds=self.handler_timeout)
        held_until = claim.held_until
        while True:
            wait = min(interval, (deadline - self.clock.now()).total_seconds())
            if wait > 0:
                await self._wait(asyncio.shield(handler), wait)
            if handler.done():
                return "finished"
            now = self.clock.now()
            if now >= deadline:
                await _cancel(handler)
                return "timeout"
            try:
                renewed = await self._renew(claim, now)
            except Exception as e:  # the database may be away for a moment
                log.warning("delivery %s: lease not renewed: %s", event.key, e)
                if now + timedelta(seconds=interval) < held_until:
                    continue  # still held until the next try
                renewed = False
            if renewed:
                held_until = now + self.lease
                continue
            await _cancel(handler)
            self.leases_lost.labels(event.kind).inc()
            log.warning(
                "delivery %s: lease lost (attempt %d); handlers cancelled, row left as is",
                event.key,
                claim.token,
            )
            return "lost"

    async def _renew(self, claim: Claim, now: datetime) -> bool:
        """Extend the lease from ``now``; False when the row is no longer this claim's."""
        async with self.context.sessions.begin() as session:
            connection = await session.connection()
            result = await connection.execute(
                update(WebhookDelivery)
                .where(*self._held(claim))
                .values(locked_until=now + self.lease)
            )
        return result.rowcount == 1

    async def _release(self, claim: Claim) -> None:
        """Give the row back, due now, its interrupted attempt not counted (shutdown)."""
        await self._mark(
            claim,
            status="pending",
            locked_until=None,
            next_attempt_at=self.clock.now(),
            attempts=WebhookDelivery.attempts - 1,
        )

    async def _failed(self, claim: Claim, event: GitLabEvent, error: BaseException) -> None:
        """Record a failed attempt: retry with exponential backoff, or dead-letter."""
        message = stored_error(error, self.context.settings.secret_values(), MAX_ERROR)
        if event.attempt >= self.max_attempts:
            if not await self._mark(claim, status="dead", last_error=message, locked_until=None):
                return
            self.processed.labels(event.kind, "dead").inc()
            self.dead_letters.labels(event.kind).inc()
            log.error(
                "delivery %s dead-lettered after %d attempts: %s",
                event.key,
                event.attempt,
                message,
                exc_info=error,
            )
            return
        delay = self.retry_seconds * 2 ** (event.attempt - 1)
        delay = min(delay, 3600.0) * random.uniform(0.8, 1.2)
        if not await self._mark(
            claim,
            status="pending",
            last_error=message,
            locked_until=None,
            next_attempt_at=self.clock.now() + timedelta(seconds=delay),
        ):
            return
        self.processed.labels(event.kind, "retry").inc()
        log.warning(
            "delivery %s failed (attempt %d of %d), retrying in %.1fs: %s",
            event.key,
            event.attempt,
            self.max_attempts,
            delay,
            message,
        )

    def _held(self, claim: Claim) -> tuple[ColumnElement[bool], ...]:
        """The row is still this claim's: processing, under this claim's token."""
        return (
            WebhookDelivery.id == claim.row_id,
            WebhookDelivery.status == "processing",
            WebhookDelivery.attempts == claim.token,
        )

    async def _mark(self, claim: Claim, **values: Any) -> bool:
        """Change the row while this claim holds an unexpired lease on it; False if not.

        A False means the lease ran out (another worker may take the row, or already
        did): the change is dropped, counted in ``webhook_leases_lost_total``.
        """
        now = self.clock.now()
        statement = (
            update(WebhookDelivery)
            .where(*self._held(claim), WebhookDelivery.locked_until > now)
            .values(**values)
        )
        return await self._change_held(claim, statement, {})

    async def _change_held(
        self, claim: Claim, statement: Update, parameters: dict[str, Any]
    ) -> bool:
        """Run ``statement``, an UPDATE of the claim's row under its lease (see
        :meth:`_mark`), through Core; False, counted as a lost lease, if it changed
        nothing."""
        async with self.context.sessions.begin() as session:
            connection = await session.connection()
            result = await connection.execute(statement, parameters)
        if result.rowcount == 1:
            return True
        async with self.context.sessions() as session:
            kind = await session.scalar(
                select(WebhookDelivery.event_type).where(WebhookDelivery.id == claim.row_id)
            )
        self.leases_lost.labels(kind or "unknown").inc()
        log.warning(
            "delivery row %d: lease lost before its outcome was recorded (attempt %d);"
            " left to its current holder",
            claim.row_id,
            claim.token,
        )
        return False


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended (whatever it raised)."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
