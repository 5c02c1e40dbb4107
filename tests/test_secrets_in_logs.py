"""No secret in the logs: every log line of a full end-to-end run, errors included.

The real app runs between the GitLab and Mattermost stand-ins with every secret set to
a distinctive value: the GitLab token, the webhook secret and signing token, the API
token, Mattermost command tokens of the configuration, the bot's Mattermost token, the
tokens Mattermost gives the commands the bot registers, a PostgreSQL password (trust
authentication ignores it) and a Redis password (the real Redis has none, so the cache
fails to authenticate: one more error path). Logging is set up as ``roulette-bot serve``
does, at DEBUG, with both formatters (JSON and console), and a raw handler keeps every
record. The run: a ``/roulette`` comment, approval and merge; a bad webhook token, a bad
signature; GitLab answering 500 twice, then down for good (dead letter); a bot whose
GitLab is unreachable; ``/roulette`` in Mattermost with its DMs, the ``/ooo`` dialog, an
Accept button; a command token of another command, a forged one, one of the
configuration; the API with and without the bearer token; a job that fails with a
connection URL in its error; Mattermost refusing the bot's token (401); shutdown.

Then no formatted line holds any secret, nor its percent-encoded, base64 or JSON-escaped
spelling, nor the distinctive marker every configured secret carries. The stand-ins log
nothing of their own (their servers' access logs are off, as in ``serve``), so every
line checked is the bot's or a library's it uses.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import URL

from bot.app import REGISTRY, create_app
from bot.http import CONTEXT
from bot.logs import ConsoleFormatter, SecretMasker, configure_logging
from bot.models import WebhookDelivery
from bot.sandbox.gitlab import GitLabStandIn
from bot.sandbox.mattermost import MattermostStandIn
from bot.sandbox.webhooks import WebhookSender
from bot.scheduler import run_guarded
from bot.settings import Settings
from bot.users import sync_organisation
from tests.e2e.conftest import PROJECT, MakeClient, e2e_settings
from tests.e2e.test_mattermost_flow import TEAM, _until
from tests.e2e.test_mattermost_flow import _free_port as free_port
from tests.e2e.test_mattermost_flow import mattermost as mattermost
from tests.e2e.test_mattermost_flow import port as port
from tests.roulette.conftest import gitlab_url as gitlab_url
from tests.roulette.conftest import standin as standin
from tests.services import TEST_REDIS_URL

MARKER = "LEAKCHECK"  # in every configured secret: no fragment of one may show
GITLAB_TOKEN = f"glpat-{MARKER}gitlab7f3a9c"
WEBHOOK_SECRET = f"hook-{MARKER}-secret-51be"
SIGNING_TOKEN = "whsec_" + base64.b64encode(f"{MARKER}-signing-key-32-bytes".encode()).decode()
API_TOKEN = f"api-{MARKER}-token-9d8c"
COMMAND_TOKENS = (f"cmd{MARKER}tokena1b2", f"cmd{MARKER}tokenc3d4")
PG_PASSWORD = f"pg-{MARKER}-pass-3e4f"
REDIS_PASSWORD = f"redis-{MARKER}-pass-77aa"
USERS = [
    {"gitlab": "alice", "team": "backend", "role": "maintainer"},
    {"gitlab": "bob", "team": "backend"},
    {"gitlab": "carol", "team": "backend", "email": "dba@example.com"},
    {"gitlab": "dave", "team": "frontend"},
    {"gitlab": "erin", "team": "frontend"},
    {"gitlab": "frank", "team": "platform"},
]
Client = TestClient[Any, Any]


def spellings(secret: str) -> set[str]:
    """The ways ``secret`` could be written into a line: as is, percent-encoded, in
    base64 (standard and URL-safe, alone or as ``user:secret`` for Basic auth), JSON-
    escaped; the key inside a ``whsec_`` token in hexadecimal too."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    for raw in (secret, f":{secret}", f"user:{secret}"):
        encoded = base64.b64encode(raw.encode())
        forms |= {encoded.decode().rstrip("="), base64.urlsafe_b64encode(raw.encode()).decode()}
    if secret.startswith("whsec_"):
        key = base64.b64decode(secret.removeprefix("whsec_"))
        forms |= {secret.removeprefix("whsec_"), binascii.hexlify(key).decode()}
        forms.add(key.decode(errors="replace"))
    return {form for form in forms if len(form) >= 8}


@dataclass
class Captured:
    """What the log handlers wrote (JSON and console lines) and the raw records."""

    json_lines: io.StringIO
    console_lines: io.StringIO
    records: list[logging.LogRecord]

    def text(self) -> str:
        return self.json_lines.getvalue() + self.console_lines.getvalue()


class _Keep(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the logging configuration back as it was (configure_logging changes the root
    logger's handlers and level and some libraries' levels)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {
        name: (logger.level, list(logger.filters))
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    for name, (old_level, filters) in named.items():
        logger = logging.getLogger(name)
        logger.setLevel(old_level)
        logger.filters[:] = filters


def capture(settings: Settings) -> Captured:
    """Logging as ``serve`` sets it up (JSON, the settings' secrets masked) at DEBUG, plus
    the console formatter and a handler keeping the raw records."""
    captured = Captured(io.StringIO(), io.StringIO(), [])
    secrets = settings.secret_values()
    configure_logging("debug", "json", secrets, stream=captured.json_lines)
    console = logging.StreamHandler(captured.console_lines)
    console.setFormatter(ConsoleFormatter(SecretMasker(secrets)))
    root = logging.getLogger()
    root.addHandler(console)
    root.addHandler(_Keep(captured.records))
    return captured


@pytest.fixture
async def world(
    migrated_url: URL,
    gitlab_url: str,
    standin: GitLabStandIn,
    mattermost: tuple[MattermostStandIn, str],
    port: int,
) -> AsyncIterator[tuple[URL, str, GitLabStandIn, MattermostStandIn, str, int]]:
    standin.token = GITLAB_TOKEN
    mm, mm_url = mattermost
    url = migrated_url
    if url.get_backend_name() == "postgresql":
        url = url.set(password=PG_PASSWORD)
    yield url, gitlab_url, standin, mm, mm_url, port


def settings_of(
    url: URL, gitlab_url: str, mm: MattermostStandIn, mm_url: str, port: int, **values: Any
) -> Settings:
    redis_url = TEST_REDIS_URL.replace("redis://", f"redis://:{REDIS_PASSWORD}@", 1)
    defaults: dict[str, Any] = {
        "users": USERS,
        "gitlab_token": GITLAB_TOKEN,
        "gitlab_webhook_secret": WEBHOOK_SECRET,
        "gitlab_webhook_signing_token": SIGNING_TOKEN,
        "api_tokens": API_TOKEN,
        "mattermost_url": mm_url,
        "mattermost_token": mm.bot_token,
        "mattermost_team": TEAM,
        "mattermost_command_tokens": ",".join(COMMAND_TOKENS),
        "redis_url": redis_url,
        "public_url": f"http://127.0.0.1:{port}",
    }
    return e2e_settings(url, gitlab_url, **(defaults | values))


async def settled(client: Client, within: float = 30.0) -> None:
    """Every stored delivery is done or dead."""

    async def done() -> bool:
        async with client.app[CONTEXT].sessions() as session:
            rows = (await session.scalars(select(WebhookDelivery))).all()
        return bool(rows) and all(r.status in ("done", "dead") for r in rows)

    await _until(done, within=within)


async def test_no_secret_reaches_the_logs(
    world: tuple[URL, str, GitLabStandIn, MattermostStandIn, str, int],
    aiohttp_client: MakeClient,
    restore_logging: None,
) -> None:
    url, gitlab_url, gl, mm, mm_url, port = world
    settings = settings_of(url, gitlab_url, mm, mm_url, port)
    captured = capture(settings)
    client = await aiohttp_client(create_app(settings), server_kwargs={"port": port})
    await sync_organisation(client.app[CONTEXT].sessions, settings)
    await _until(lambda: client.app[CONTEXT].chat_.state == "connected")
    hook = str(client.make_url("/webhook/gitlab"))
    sender = WebhookSender(gl, hook, secret=WEBHOOK_SECRET, signing_token=SIGNING_TOKEN)
    registered = [c["token"] for c in mm.commands_in(TEAM)]
    assert len(registered) >= 2, "the bot registered its commands"

    # GitLab: /roulette, approval, merge.
    assert (await sender.comment(PROJECT, 1, "alice", "/roulette")).status == 200
    await settled(client)
    reviewer = gl.merge_request(PROJECT, 1)["reviewers"][0]["username"]
    gl.approve(PROJECT, 1, reviewer)
    await sender.mr_event(PROJECT, 1, "approval", reviewer)
    gl.merge(PROJECT, 1, by="alice")
    await sender.mr_event(PROJECT, 1, "merge", "alice")
    await settled(client)
    # A bad webhook token; a good token with a bad signature.
    forged = WebhookSender(gl, hook, secret=f"not-the-{MARKER}", signing_token=SIGNING_TOKEN)
    assert (await forged.comment(PROJECT, 1, "alice", "/roulette")).status == 401
    other_key = "whsec_" + base64.b64encode(b"another-signing-key-of-32-bytes!").decode()
    unsigned = WebhookSender(gl, hook, secret=WEBHOOK_SECRET, signing_token=other_key)
    assert (await unsigned.comment(PROJECT, 1, "alice", "/roulette")).status == 401
    # GitLab answering 500 twice, then down for good.
    two = gl.add_merge_request(PROJECT, author="bob", title="Two", labels=["team::backend"])["iid"]
    gl.fail_next(rf"/merge_requests/{two}/notes", 500, times=2, method="POST")
    await sender.comment(PROJECT, two, "bob", "/roulette")
    three = gl.add_merge_request(PROJECT, author="bob", title="Three", labels=["team::backend"])[
        "iid"
    ]
    gl.fail_next(rf"/merge_requests/{three}(\?|$)", 503, times=1000, method="GET")
    await sender.comment(PROJECT, three, "bob", "/roulette")
    await settled(client)

    # Mattermost: /roulette, its DMs and an Accept button; the /ooo dialog.
    four = gl.add_merge_request(PROJECT, author="alice", title="Four", labels=["team::backend"])[
        "iid"
    ]
    status, body = await mm.run_slash_command(
        "alice", "reviews", f"/roulette {gl.base_url}/{PROJECT}/-/merge_requests/{four}", team=TEAM
    )
    assert status == 200, body
    picked = gl.merge_request(PROJECT, four)["reviewers"][0]["username"]
    dm = mm.direct_channel("roulette-bot", picked)
    [request] = [p for p in mm.posts_in(dm["id"]) if (p.get("props") or {}).get("attachments")][-1:]
    status, body = await mm.click(picked, request["id"], "accept")
    assert status == 200, body
    status, body = await mm.run_slash_command("dave", "reviews", "/ooo", team=TEAM)
    assert status == 200, body
    status, body = await mm.submit_dialog(
        mm.dialogs_opened[-1], "dave", {"start": "2099-06-01", "end": "2099-06-03", "reason": "x"}
    )
    assert status == 200, body
    # Command tokens: another command's, a forged one, one of the configuration.
    tokens = {c["trigger"]: c["token"] for c in mm.commands_in(TEAM)}
    form = {"command": "/roulette", "text": "help", "user_id": mm.user("alice")["id"]}
    for token, expected in (
        (tokens["ooo"], 401),
        (f"forged{MARKER}", 401),
        (COMMAND_TOKENS[0], 200),
    ):
        answer = await client.post("/mattermost/command", data=form | {"token": token})
        assert answer.status == expected, (token, await answer.text())
    # The API with the token, with a wrong one, and the token in the wrong scheme.
    for authorization, expected in (
        (f"Bearer {API_TOKEN}", 200),
        (f"Bearer {API_TOKEN}x", 401),
        (f"Basic {API_TOKEN}", 401),
    ):
        answer = await client.get("/api/v1/availability", headers={"Authorization": authorization})
        assert answer.status == expected, authorization

    # A job that fails with a connection URL (password and all) in its error.
    [job] = [h for key, h in client.app[REGISTRY].jobs.items() if key == "aggregate"]
    [metrics] = [p for p in client.app[REGISTRY].plugins if p.name == "metrics"]
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else ""

    def unreachable() -> Any:
        raise ConnectionError(f"Error connecting to {redis_url}: Connection refused")

    metrics.now = unreachable
    assert await run_guarded(client.app[CONTEXT], job, "2026-03-11") == "error"

    # Mattermost refuses the bot's token from now on; then the bot stops.
    five = gl.add_merge_request(PROJECT, author="alice", title="Five", labels=["team::backend"])[
        "iid"
    ]
    mm.revoke_tokens("roulette-bot")
    before = len(captured.records)
    await mm.run_slash_command(
        "alice", "reviews", f"/roulette {gl.base_url}/{PROJECT}/-/merge_requests/{five}", team=TEAM
    )
    # The bot could not DM the reviewers (401), and said so.
    assert any(r.levelno == logging.WARNING for r in captured.records[before:])
    await client.close()

    # GitLab unreachable: a second bot whose GitLab is a closed port (the first one
    # stopped: on PostgreSQL it would be woken to process the delivery too).
    closed = f"http://127.0.0.1:{free_port()}"
    lost = await aiohttp_client(
        create_app(settings_of(url, closed, mm, mm_url, port, mattermost_url=None))
    )
    lost_sender = WebhookSender(
        gl,
        str(lost.make_url("/webhook/gitlab")),
        secret=WEBHOOK_SECRET,
        signing_token=SIGNING_TOKEN,
    )
    await lost_sender.comment(PROJECT, five, "bob", "/roulette")
    await settled(lost)
    async with lost.app[CONTEXT].sessions() as session:
        last = await session.scalar(
            select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(1)
        )
    assert last is not None and last.status == "dead", last
    await lost.close()

    # Every record went through the root logger's handlers (the masker): no logger of
    # the bot or its libraries keeps records to itself or writes them elsewhere.
    bypassing = [
        name
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
        and (
            not logger.propagate
            or any(not isinstance(h, logging.NullHandler) for h in logger.handlers)
        )
    ]
    assert bypassing == [], bypassing

    secrets = [
        *settings.secret_values(),
        *registered,
        *tokens.values(),
    ]
    text = captured.text()
    assert text.count("\n") > 100, "the run logged (DEBUG)"
    for secret in secrets:
        for form in spellings(secret):
            assert form not in text, (
                f"{secret[:4]}... appears in the logs as {form[:4]}...: "
                + next(line for line in text.splitlines() if form in line)
            )
    assert MARKER not in text, next(line for line in text.splitlines() if MARKER in line)
