"""GitLab webhook intake under load: the real app, the GitLab stand-in, 32 senders.

    python -m benchmarks.webhooks [--database-url URL] [--standin inline|process]
                                  [--deliveries 600] [--mrs 100] [--senders 32] [--workers N]
                                  [--gitlab-latency 50ms] [--gitlab-jitter 10ms] [--json PATH]
                                  [--split [--worker-replicas N] [--worker-nice 0-19]]

The app (``create_app``) serves on a localhost port through ``web.AppRunner``, against a
freshly migrated database: a temporary SQLite file, or with ``--database-url`` a
throwaway schema in that PostgreSQL database (dropped afterwards). The GitLab stand-in
holds an organisation of 30 people in 3 teams, 4 projects with a CODEOWNERS file and
100 merge requests, and runs on its own port on the app's event loop (its handlers take
about 2% of the loop while the deliveries arrive, printed each run; ``--standin process``
moves it to a child process). 32 senders, each an asyncio task with its own aiohttp
session and keep-alive connection, push 600 distinct ``/roulette`` Note Hook deliveries
(GitLab's payload and headers, one ``Idempotency-Key`` each, six per merge request,
shuffled) and time every acknowledgement; then the run polls, against a deadline, until
every inbox row is finished and every delivery's note is there, and counts the bot's
notes by the marker naming their delivery.

Prints the ack latency p50/p99/max, the deliveries/s accepted, the end-to-end
deliveries/s processed, the notes found per delivery and the inbox's final states, next
to a baseline measured in the same run: ``GET /health`` under the same 32-way
concurrency, on the same connections, just before the deliveries.
Targets: ack p99 < 50 ms; every delivery processed exactly once (one note each, every
inbox row ``done``); the largest bot process at most 150 MB resident before the burst
and 250 MB after; at 50 ms per GitLab call, at least 30 rolls/s end to end and at most 3
GitLab round trips one after another in one roll. Exits non-zero on FAIL.

``--split`` acknowledges in a web-only replica with the database pool of the Helm
chart's web pods, and processes in worker replicas of their own processes with the pool
and ``WEBHOOK_WORKERS`` of its worker pods (``--workers`` overrides the latter).
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import functools
import gc
import json
import logging
import math
import multiprocessing
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import yaml
from aiohttp import web
from sqlalchemy import delete, func, select
from sqlalchemy.engine import URL, make_url

from benchmarks.arguments import count, positive_seconds
from bot import migrate
from bot.app import create_app
from bot.http import CONTEXT
from bot.models import WebhookDelivery
from bot.sandbox import listening
from bot.sandbox.gitlab import GitLabStandIn
from bot.sandbox.webhooks import NOTE_HOOK, WebhookSender
from bot.settings import Settings
from bot.users import sync_organisation
from bot.webhooks import inbox_key
from plugins.roulette.reply import delivery_tag

# The targets (issue "fast against a real GitLab"): the acknowledgement p99 and the memory
# of the largest bot process always; rolls per second and the round trips of one roll at
# TARGET_LATENCY per GitLab call.
TARGET_P99_MS = 50.0
TARGET_RSS_IDLE_MB = 150
TARGET_RSS_AFTER_MB = 250
TARGET_LATENCY = 0.05  # seconds per GitLab call
TARGET_ROLLS_PER_S = 30
TARGET_ROUND_TRIPS = 3
SEED = 20_260_105
TOKEN = "glpat-benchmark-token"  # noqa: S105 - the stand-in's throwaway token
SECRET = "benchmark-webhook-secret"  # noqa: S105 - the benchmark's own webhook secret
BOT = "roulette-bot"
PROJECTS = ("acme/shop", "acme/billing", "acme/search", "acme/portal")
TEAMS = ("backend", "frontend", "platform")
PEOPLE_PER_TEAM = 10
DEFAULT_WORKERS: int = Settings.model_fields["webhook_workers"].default
# The bound the settings put on WEBHOOK_WORKERS (64; a baseline's bot may have none).
MOST_WORKERS: int = next(
    (
        bound.le
        for bound in Settings.model_fields["webhook_workers"].metadata
        if hasattr(bound, "le")
    ),
    64,
)
# The Helm chart's values: with --split, the acknowledging process is one of its web pods.
CHART_VALUES = Path(__file__).resolve().parent.parent / "helm/reviewer-roulette/values.yaml"


@functools.cache
def _chart_values() -> dict[str, Any]:
    """The chart's ``values.yaml``, read once per run."""
    values = yaml.safe_load(CHART_VALUES.read_text())
    return values if isinstance(values, dict) else {}


def chart_pod(component: str) -> dict[str, int]:
    """The settings the Helm chart gives its ``component`` pods (``web`` or ``worker``):
    the database pool and, for workers, ``WEBHOOK_WORKERS``; the bot's defaults for what a
    chart does not set (an older revision's, measured as a baseline)."""
    values = _chart_values().get(component) or {}
    settings: dict[str, int] = {}
    pool = values.get("databasePool")
    if pool is not None:
        settings["database_pool_size"] = pool["size"]
        settings["database_max_overflow"] = pool["maxOverflow"]
    if component == "worker" and "webhookWorkers" in values:
        settings["webhook_workers"] = values["webhookWorkers"]
    return settings


# A bot older than GITLAB_CONCURRENCY (measured as a baseline) ran its GitLab calls in
# asyncio's default executor: min(32, cores + 4) threads.
_CONCURRENCY = Settings.model_fields.get("gitlab_concurrency")
DEFAULT_GITLAB_CONCURRENCY: int = (
    _CONCURRENCY.default if _CONCURRENCY is not None else min(32, (os.cpu_count() or 1) + 4)
)
MARKER = re.compile(r"<!-- roulette-bot delivery=([0-9a-f]{32})")

CODEOWNERS = """\
# Default owners of everything
* @acme/platform-team

[Backend]
/api/ @acme/backend-team
/db/ @backend01 @backend02
*.sql @backend03

[Frontend]
/web/ @acme/frontend-team
*.css @frontend01

^[Docs]
*.md @platform01
"""
PATHS = (
    "api/orders.py",
    "api/users.py",
    "api/payments/refunds.py",
    "db/orders.sql",
    "db/migrations/0042_index.sql",
    "web/cart.ts",
    "web/checkout/form.tsx",
    "web/styles/theme.css",
    "deploy/helm/values.yaml",
    "ci/pipeline.yml",
    "docs/howto.md",
    "README.md",
)


# --------------------------------------------------------------------------- the world


def username(team: str, i: int) -> str:
    return f"{team}{i:02d}"


def organisation() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    teams = [
        {"name": team, "labels": [f"team::{team}"] if team != "platform" else []} for team in TEAMS
    ]
    users = [
        {"gitlab": username(team, i), "team": team, "timezone": "Europe/Paris"}
        for team in TEAMS
        for i in range(1, PEOPLE_PER_TEAM + 1)
    ]
    return teams, users


def build_world(
    mrs: int, comments: int, latency: float = 0.0, jitter: float = 0.0
) -> tuple[GitLabStandIn, list[tuple[str, int, str]], tuple[str, int, str]]:
    """The stand-in with its users, groups, projects, MRs and the ``/roulette`` comments.

    Deterministic: the child process and the parent build the same world (same ids).
    Returns the comments as ``(project, iid, author)`` in the order they were added, and
    the probe: one more ``/roulette`` comment on an MR of its own, rolled alone before
    the burst to count the GitLab calls one roll waits for in sequence. ``latency`` and
    ``jitter`` (seconds) are added to every GitLab answer.
    """
    rng = random.Random(SEED)
    gl = GitLabStandIn(TOKEN, bot_username=BOT, latency=latency, jitter=jitter)
    _, users = organisation()
    names = [u["gitlab"] for u in users]
    for name in names:
        gl.add_user(name)
    for team in TEAMS:
        gl.add_group(f"acme/{team}-team", [n for n in names if n.startswith(team)])
    for project in PROJECTS:
        gl.add_project(
            project,
            members={username("platform", 1): 50, username("backend", 1): 40},
            files={"main": {".gitlab/CODEOWNERS": CODEOWNERS}},
        )
    refs: list[tuple[str, int]] = []
    for n in range(mrs):
        project = PROJECTS[n % len(PROJECTS)]
        author = rng.choice(names)
        team = author.rstrip("0123456789")
        mr = gl.add_merge_request(
            project,
            author=author,
            title=f"Change {n}",
            labels=[f"team::{team}"] if team != "platform" else [],
            changes=rng.sample(PATHS, rng.randint(2, 6)),
        )
        refs.append((project, int(mr["iid"])))
    said: list[tuple[str, int, str]] = []
    for project, iid in refs:
        for _ in range(comments):
            author = rng.choice(names)
            gl.add_note(project, iid, author, "/roulette")
            said.append((project, iid, author))
    probe = gl.add_merge_request(
        PROJECTS[0],
        author=names[0],
        title="The probe",
        labels=["team::backend"],
        changes=list(PATHS[:6]),
    )
    gl.add_note(PROJECTS[0], int(probe["iid"]), names[-1], "/roulette")
    return gl, said, (PROJECTS[0], int(probe["iid"]), names[-1])


def marker_counts(gl: GitLabStandIn, mrs: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """The bot's notes on the MRs, counted by the delivery their marker names."""
    counts: Counter[str] = Counter()
    notes = unmarked = errors = 0
    for project, iid in mrs:
        for note in gl.notes(project, iid):
            if note["author"]["username"] != BOT or note["system"]:
                continue
            notes += 1
            tags = MARKER.findall(note["body"])
            unmarked += not tags
            errors += "could not run" in note["body"]
            counts.update(tags)
    return {"counts": dict(counts), "notes": notes, "unmarked": unmarked, "errors": errors}


# --------------------------------------------------------------------------- GitLab side


class Meter:
    """The stand-in's requests and the time its handlers took (a middleware)."""

    def __init__(self) -> None:
        self.requests = 0
        self.busy = 0.0

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            self.requests += 1
            self.busy += time.perf_counter() - started

    def snapshot(self) -> tuple[int, float]:
        return self.requests, self.busy


@contextlib.asynccontextmanager
async def serve_metered(gl: GitLabStandIn, meter: Meter) -> AsyncIterator[str]:
    """``serve(gl)``, with the meter's middleware in front of the stand-in."""
    app = gl.app()
    app.middlewares.append(meter.middleware)
    async with listening(app, "127.0.0.1", 0) as port:
        gl.base_url = f"http://127.0.0.1:{port}{gl.relative_url_root}"
        yield gl.base_url


class GitLabSide(abc.ABC):
    """Where the stand-in runs: its ``url``, its notes by delivery, its load."""

    mode = ""
    url = ""

    @abc.abstractmethod
    async def count(self) -> dict[str, Any]:
        """The bot's notes on the measured MRs, counted by delivery marker."""

    @abc.abstractmethod
    async def load(self) -> tuple[int, float]:
        """(requests served, seconds spent in the stand-in's handlers) so far."""

    @abc.abstractmethod
    async def timeline(self) -> list[tuple[float, float, str, str]]:
        """(start, end, method, path) of every request served so far (``time.monotonic``)."""


class InlineGitLab(GitLabSide):
    mode = "inline: on the app's event loop"

    def __init__(self, gl: GitLabStandIn, url: str, refs: list[tuple[str, int]], meter: Meter):
        self.gl, self.url, self.refs, self.meter = gl, url, refs, meter

    async def count(self) -> dict[str, Any]:
        return marker_counts(self.gl, self.refs)

    async def load(self) -> tuple[int, float]:
        return self.meter.snapshot()

    async def timeline(self) -> list[tuple[float, float, str, str]]:
        return list(self.gl.timeline)


def _standin_child(
    conn: Connection, mrs: int, comments: int, latency: float, jitter: float
) -> None:
    """The child process: the same world, served, answering the parent's questions."""
    asyncio.run(_standin_serve(conn, mrs, comments, latency, jitter))


async def _standin_serve(
    conn: Connection, mrs: int, comments: int, latency: float, jitter: float
) -> None:
    gl, said, _ = build_world(mrs, comments, latency, jitter)
    refs = list(dict.fromkeys((project, iid) for project, iid, _ in said))
    meter = Meter()
    async with serve_metered(gl, meter) as url:
        answers: dict[str, Callable[[], Any]] = {
            "count": lambda: marker_counts(gl, refs),
            "load": meter.snapshot,
            "timeline": lambda: list(gl.timeline),
        }
        await answer_parent(conn, url, answers)


async def answer_parent(
    conn: Connection, greeting: Any, answers: Mapping[str, Callable[[], Any]]
) -> None:
    """A child's side of the pipe: send ``greeting``, then answer each command the parent
    sends with ``answers[command]()``, until ``stop`` (or any other word, or the pipe
    closing)."""
    stop = asyncio.Event()

    def answer() -> None:
        try:
            command = conn.recv()
        except EOFError:
            stop.set()
            return
        if command in answers:
            conn.send(answers[command]())
        else:
            stop.set()

    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), answer)
    conn.send(greeting)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(conn.fileno())


class ChildProcess:
    """One of the benchmark's helper processes (spawned), spoken to through a pipe: it
    runs ``target(pipe, *args)``; :meth:`ask` sends a command and awaits the answer,
    :meth:`stop` says ``stop``, then waits ``grace`` seconds before terminating it."""

    grace = 15.0

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=target, args=(child, *args), daemon=True)
        self.process.start()
        child.close()

    async def ask(self, command: Any) -> Any:
        """Send ``command`` (None: nothing, wait for the greeting) and await the answer."""
        return await _ask(self.conn, command)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.process.join(timeout=self.grace)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.conn.close()


class ProcessGitLab(ChildProcess, GitLabSide):
    mode = "child process"
    grace = 5.0

    def __init__(self, mrs: int, comments: int, latency: float, jitter: float) -> None:
        super().__init__(_standin_child, mrs, comments, latency, jitter)

    async def _ask(self, command: str | None) -> Any:
        return await self.ask(command)

    async def start(self) -> None:
        self.url = str(await self._ask(None))

    async def count(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._ask("count")
        return result

    async def load(self) -> tuple[int, float]:
        requests, busy = await self._ask("load")
        return int(requests), float(busy)

    async def timeline(self) -> list[tuple[float, float, str, str]]:
        result: list[tuple[float, float, str, str]] = await self._ask("timeline")
        return result


def _worker_child(conn: Connection, values: dict[str, Any], niceness: int) -> None:
    """A worker replica (``--split``): the app with its inbox workers, no HTTP site;
    ``niceness`` is added to the process's (``--worker-nice``)."""
    if niceness:
        os.nice(niceness)
    asyncio.run(_worker_serve(conn, values))


async def _worker_serve(conn: Connection, values: dict[str, Any]) -> None:
    logging.disable(logging.WARNING)  # the parent counts the web side's log lines
    runner = web.AppRunner(create_app(Settings(**values)), handle_signals=False)
    await runner.setup()  # database, cache, GitLab, the workers and their LISTEN
    gc.freeze()  # as ``bot.server`` does once started
    try:
        await answer_parent(conn, "ready", {"rss": rss_mb})
    finally:
        await runner.cleanup()


class WorkerReplica(ChildProcess):
    """``--split``: the inbox workers in a process of their own, as the chart's worker
    Deployment runs them beside web-only replicas (``WEBHOOK_WORKERS=0``), woken by the
    web side's NOTIFY."""

    def __init__(self, values: dict[str, Any], niceness: int = 0) -> None:
        super().__init__(_worker_child, values, niceness)


async def largest_rss(workers: Sequence[WorkerReplica]) -> float | None:
    """The largest resident memory (MB) of the worker replicas; None without any."""
    sizes = [float(await worker.ask("rss")) for worker in workers]
    return max(sizes) if sizes else None


async def _ask(conn: Connection, command: str | None) -> Any:
    """Send ``command`` (None: nothing) to a child and wait (60 s at most) for its answer."""
    if command is not None:
        conn.send(command)
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(conn.fileno(), readable)
    try:
        await asyncio.wait_for(ready, timeout=60)
    finally:
        loop.remove_reader(conn.fileno())
    return conn.recv()


@contextlib.asynccontextmanager
async def gitlab_side(
    mode: str, world: GitLabStandIn, refs: list[tuple[str, int]], comments: int
) -> AsyncIterator[GitLabSide]:
    if mode == "inline":
        meter = Meter()
        async with serve_metered(world, meter) as url:
            yield InlineGitLab(world, url, refs, meter)
        return
    side = ProcessGitLab(len(refs), comments, world.latency, world.jitter)
    try:
        await side.start()
        yield side
    finally:
        side.stop()


# --------------------------------------------------------------------------- databases


@contextlib.contextmanager
def temporary_database(database_url: str | None) -> Any:
    """A migrated, empty database: a temp SQLite file, or a throwaway PostgreSQL schema."""
    if database_url is None:
        with tempfile.TemporaryDirectory() as tmp:
            url = make_url(f"sqlite:///{Path(tmp) / 'bench.db'}")
            migrate.upgrade(url)
            yield url, "SQLite (temporary file)"
        return
    base = make_url(database_url)
    if base.get_backend_name() not in ("postgresql", "postgres"):
        raise SystemExit("--database-url: a PostgreSQL URL, e.g. postgresql://user@host/db")
    conninfo = base.set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            url = base.update_query_dict({"options": f"-csearch_path={schema}"})
            migrate.upgrade(url)
            yield url, f"PostgreSQL ({base.render_as_string()}, schema {schema}, dropped after)"
        finally:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def spool_setting(folder: str) -> dict[str, str]:
    """The settings that put the app's spool in ``folder``: ``{"spool_dir": folder}``, or
    nothing for a bot older than the spool (a baseline), which has no such setting and
    refuses unknown ones."""
    return {"spool_dir": folder} if "spool_dir" in Settings.model_fields else {}


@contextlib.contextmanager
def temporary_spool() -> Iterator[str]:
    """A ``SPOOL_DIR`` of the run's own, removed after: the bot's default (``spool`` in
    the working directory) would leave its lock files where the benchmark was started,
    and hand deliveries one run spooled to the next run's app."""
    with tempfile.TemporaryDirectory(prefix="roulette-spool-") as folder:
        yield folder


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class Outgoing:
    key: str  # the Idempotency-Key
    body: bytes
    headers: dict[str, str]


def deliveries(
    world: GitLabStandIn, said: list[tuple[str, int, str]], gitlab_url: str, app_url: str
) -> list[Outgoing]:
    """Each comment's Note Hook, with GitLab's headers, shuffled; built before timing."""
    world.base_url = gitlab_url  # as in the served copy: the payloads' URLs point there
    sender = WebhookSender(world, app_url, secret=SECRET)
    instance = "/".join(gitlab_url.split("/", 3)[:3])
    notes: dict[tuple[str, int], list[dict[str, Any]]] = {}
    out: list[Outgoing] = []
    for project, iid, author in said:
        if (project, iid) not in notes:
            notes[(project, iid)] = [
                n for n in world.notes(project, iid) if not n["system"] and n["body"] == "/roulette"
            ]
        note = notes[(project, iid)].pop(0)
        assert note["author"]["username"] == author
        payload = sender.note_payload(project, iid, note)
        key = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"GitLab/{sender.gitlab_version}",
            "X-Gitlab-Event": NOTE_HOOK,
            "X-Gitlab-Webhook-UUID": sender.webhook_uuid,
            "X-Gitlab-Instance": instance,
            "X-Gitlab-Event-UUID": str(uuid.uuid4()),
            "Idempotency-Key": key,
            "X-Gitlab-Token": SECRET,
        }
        out.append(Outgoing(key, json.dumps(payload).encode(), headers))
    random.Random(SEED + 1).shuffle(out)
    return out


@dataclass
class Timed:
    latencies_ms: list[float]
    statuses: Counter[int]
    answers: Counter[str]
    seconds: float


async def fan_out(
    sessions: Sequence[aiohttp.ClientSession],
    jobs: Sequence[Any],
    send: Callable[[aiohttp.ClientSession, Any], Awaitable[tuple[int, str]]],
) -> Timed:
    """``len(sessions)`` senders, each taking the next job as soon as its last one ended."""
    queue = list(reversed(jobs))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    answers: Counter[str] = Counter()

    async def sender(session: aiohttp.ClientSession) -> None:
        while queue:
            job = queue.pop()
            started = time.perf_counter()
            try:
                status, answer = await send(session, job)
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                status, answer = 0, type(e).__name__  # counted, and fails the run
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] += 1
            answers[answer] += 1

    started = time.perf_counter()
    await asyncio.gather(*(sender(s) for s in sessions))
    return Timed(latencies, statuses, answers, time.perf_counter() - started)


def keep_alive_sessions(count: int) -> list[aiohttp.ClientSession]:
    """One keep-alive connection per sender, as one GitLab Sidekiq thread would hold."""
    return [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1),
            skip_auto_headers=("User-Agent",),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        for _ in range(count)
    ]


def health_getter(base: str) -> Callable[[aiohttp.ClientSession, Any], Awaitable[tuple[int, str]]]:
    async def get_health(session: aiohttp.ClientSession, _: Any) -> tuple[int, str]:
        async with session.get(f"{base}/health") as response:
            return response.status, await response.text()

    return get_health


def hook_poster(
    base: str,
) -> Callable[[aiohttp.ClientSession, Outgoing], Awaitable[tuple[int, str]]]:
    async def post_hook(session: aiohttp.ClientSession, job: Outgoing) -> tuple[int, str]:
        async with session.post(
            f"{base}/webhook/gitlab", data=job.body, headers=job.headers
        ) as response:
            answer = await response.json()
            return response.status, str(answer.get("status"))

    return post_hook


def _senders_child(conn: Connection, count: int) -> None:
    """``--senders process``: GitLab's side of the timed requests, in a process of its own
    (GitLab sends from its own machines: its work must not take the bot's event loop)."""
    asyncio.run(_senders_serve(conn, count))


async def _senders_serve(conn: Connection, count: int) -> None:
    sessions = keep_alive_sessions(count)
    commands: asyncio.Queue[Any] = asyncio.Queue()

    def readable() -> None:
        try:
            commands.put_nowait(conn.recv())
        except EOFError:
            commands.put_nowait(None)

    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), readable)
    conn.send("ready")
    try:
        while (command := await commands.get()) not in (None, "stop"):
            what, base, jobs = command
            send = health_getter(base) if what == "health" else hook_poster(base)
            timed = await fan_out(sessions, jobs, send)
            # plain values: this module is __mp_main__ here, __main__ in the parent
            conn.send(
                (timed.latencies_ms, dict(timed.statuses), dict(timed.answers), timed.seconds)
            )
    finally:
        loop.remove_reader(conn.fileno())
        for session in sessions:
            await session.close()


class SenderProcess(ChildProcess):
    """The timed senders in a child process (``--senders-in process``)."""

    def __init__(self, count: int) -> None:
        super().__init__(_senders_child, count)

    async def start(self) -> None:
        if await self.ask(None) != "ready":
            raise SystemExit("the sender process did not start")

    async def send(self, what: str, base: str, jobs: Sequence[Any]) -> Timed:
        """``what`` (``health`` or ``hooks``) for each of ``jobs``, timed in the child."""
        latencies, statuses, answers, taken = await self.ask((what, base, list(jobs)))
        return Timed(latencies, Counter(statuses), Counter(answers), taken)


def warm_ups(model: Outgoing, count: int) -> list[Outgoing]:
    """``count`` ordinary (non-``/roulette``) comments shaped like ``model``."""
    warm: list[Outgoing] = []
    for i in range(count):
        payload = json.loads(model.body)
        # A comment is keyed by its note id (one comment, one answer): each warm-up is
        # a comment of its own.
        payload["object_attributes"]["note"] = "Warming up."
        payload["object_attributes"]["id"] = 900_000_000 + i
        body = json.dumps(payload).encode()
        headers = model.headers | {"Idempotency-Key": f"warm-up-{i}"}
        warm.append(Outgoing(f"warm-up-{i}", body, headers))
    return warm


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --------------------------------------------------------------------------- the run


class LogTally(logging.Handler):
    """The app's warnings and errors, counted (and kept off the benchmark's output)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().splitlines()[0]
        self.counts[re.sub(r"note:[0-9:]+", "note:…", message)[:160]] += 1


@dataclass
class Result:
    database: str
    gitlab: str
    settings: Settings
    cache: str
    health: Timed
    hooks: Timed
    done_during_acks: int
    standin_during_acks: tuple[int, float]
    api_requests: int
    standin_busy: float  # seconds in the stand-in's handlers, from the first delivery on
    processing: float  # first send -> the last row's processed_at (s)
    settled: float  # first send -> every note seen by the poll, or the deadline (s)
    complete: bool  # every delivery's note seen before the deadline
    notes: dict[str, Any]
    per_delivery: Counter[int]
    strangers: int
    states: dict[str, int]
    retried: int
    probe_calls: int  # GitLab calls of one roll alone, before the burst
    probe_sequential: int  # of them, the most made one after another
    probe_seconds: float  # first call's start -> last call's end
    probe_timeline: list[tuple[float, float, str, str]]  # ms from the first call, request
    rss_mb_idle: float
    rss_mb_after: float
    worker_rss_mb_idle: float | None  # --split: the largest worker replica's
    worker_rss_mb_after: float | None


async def run(args: argparse.Namespace) -> bool:
    mrs, comments = args.mrs, args.deliveries // args.mrs
    if mrs * comments != args.deliveries:
        raise SystemExit("--deliveries must be a multiple of --mrs")
    tally = LogTally()
    logging.getLogger().addHandler(tally)
    world, said, probe = build_world(mrs, comments, args.gitlab_latency, args.gitlab_jitter)
    refs = list(dict.fromkeys((project, iid) for project, iid, _ in said))
    with temporary_database(args.database_url) as (url, database), temporary_spool() as spool:
        async with gitlab_side(args.standin, world, refs, comments) as gitlab:
            result = await measure(args, url, database, spool, gitlab, world, said, probe)
    return report(args, result, tally)


def sequential_round_trips(calls: Sequence[tuple[float, float]]) -> int:
    """The most calls in ``calls`` (start, end) of which each began after the previous
    one ended: the GitLab round trips one roll waited for one after another. (Earliest
    end first is the classic greedy for the largest set of non-overlapping intervals.)"""
    count, free_at = 0, float("-inf")
    for start, end in sorted(calls, key=lambda call: call[1]):
        if start >= free_at:
            count, free_at = count + 1, end
    return count


def relative_calls(
    calls: Sequence[tuple[float, float, str, str]],
) -> list[tuple[float, float, str, str]]:
    """``calls`` (monotonic seconds) as milliseconds from the first call's start, in order
    of start: (start, end, method, path with its query)."""
    first = min((call[0] for call in calls), default=0.0)
    return [
        (round((start - first) * 1000, 1), round((end - first) * 1000, 1), method, path)
        for start, end, method, path in sorted(calls)
    ]


def rss_mb() -> float:
    """This process's resident memory (MiB), from ``/proc/self/status`` (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def inbox_states(app: web.Application) -> dict[str, int]:
    async with app[CONTEXT].sessions() as session:
        rows = await session.execute(
            select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
        )
        return {status: int(n) for status, n in rows.all()}


async def measure(
    args: argparse.Namespace,
    url: URL,
    database: str,
    spool: str,
    gitlab: GitLabSide,
    world: GitLabStandIn,
    said: list[tuple[str, int, str]],
    probe: tuple[str, int, str],
) -> Result:
    teams, users = organisation()
    values: dict[str, Any] = {
        "database_url": url.render_as_string(hide_password=False),
        "teams": teams,
        "users": users,
        "gitlab_url": gitlab.url,
        "gitlab_token": TOKEN,
        "gitlab_webhook_secret": SECRET,
        "webhook_workers": args.workers,
        "shutdown_timeout": 5,
        **spool_setting(spool),
    }
    if _CONCURRENCY is not None:
        values["gitlab_concurrency"] = args.gitlab_concurrency
    settings = Settings(**values)
    senders: SenderProcess | None = None
    if args.senders_mode == "process":
        senders = SenderProcess(args.senders)
        await senders.start()
    workers: list[WorkerReplica] = []
    if args.split:  # this process only acknowledges; replicas of their own process
        settings = Settings(**(values | {"webhook_workers": 0} | chart_pod("web")))
        # The chart's worker pods: its pool; its WEBHOOK_WORKERS unless --workers says
        replica = values | chart_pod("worker") | {"webhook_workers": args.workers}
        workers = [WorkerReplica(replica, args.worker_nice) for _ in range(args.worker_replicas)]
        for worker in workers:
            if await worker.ask(None) != "ready":
                raise SystemExit("a worker replica did not start")
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()  # opens the database, the cache, GitLab; starts the inbox workers
    try:
        context = app[CONTEXT]
        await sync_organisation(context.sessions, settings, context.gitlab_)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        outgoing = deliveries(world, said, gitlab.url, f"{base}/webhook/gitlab")
        expected = {
            delivery_tag(inbox_key("note", json.loads(o.body), o.headers, o.body)) for o in outgoing
        }
        gc.freeze()  # as ``bot.server`` does once started
        post_hook = hook_poster(base)
        sessions = keep_alive_sessions(args.senders)
        try:
            # Warm the intake path (connections, compiled statements) with ordinary
            # comments, as a running bot is warm; their rows are removed before measuring.
            await fan_out(sessions, warm_ups(outgoing[0], args.senders), post_hook)
            while (await inbox_states(app)).get("done", 0) < args.senders:  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # the rows are in the database: poll it
            async with context.sessions.begin() as db:
                await db.execute(delete(WebhookDelivery))
            # The probe: one roll alone, its GitLab calls and how many came in sequence.
            [probing] = deliveries(world, [probe], gitlab.url, f"{base}/webhook/gitlab")
            before = len(await gitlab.timeline())
            await fan_out(sessions[:1], [probing], post_hook)
            while (await inbox_states(app)).get("done", 0) < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            probe_calls = (await gitlab.timeline())[before:]
            async with context.sessions.begin() as db:
                await db.execute(delete(WebhookDelivery))
            rss_idle = rss_mb()
            worker_rss_idle = await largest_rss(workers)
            if senders is not None:
                health = await senders.send("health", base, range(len(outgoing)))
            else:
                health = await fan_out(sessions, range(len(outgoing)), health_getter(base))
            load_before = await gitlab.load()
            wall_start = time.time()
            if senders is not None:
                hooks = await senders.send("hooks", base, outgoing)
            else:
                hooks = await fan_out(sessions, outgoing, post_hook)
            sent_at = time.perf_counter() - hooks.seconds
            load_after = await gitlab.load()
            done_during_acks = (await inbox_states(app)).get("done", 0)
        finally:
            for session in sessions:
                await session.close()

        # Wait for the workers: poll the inbox, then the notes, until the deadline.
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            states = await inbox_states(app)
            if sum(states.values()) >= len(outgoing) and set(states) <= {"done", "dead"}:
                break
            await asyncio.sleep(0.05)
        found = await gitlab.count()
        while time.monotonic() < deadline and not expected <= set(found["counts"]):
            await asyncio.sleep(0.1)
            found = await gitlab.count()
        settled = time.perf_counter() - sent_at
        states = await inbox_states(app)
        async with context.sessions() as db:
            last: datetime | None = await db.scalar(select(func.max(WebhookDelivery.processed_at)))
            retried = await db.scalar(select(func.count()).where(WebhookDelivery.attempts > 1))
        load_end = await gitlab.load()
        rss_after = rss_mb()
        worker_rss_after = await largest_rss(workers)
    finally:
        await runner.cleanup()
        for worker in workers:
            worker.stop()
        if senders is not None:
            senders.stop()

    counts: dict[str, int] = found["counts"]
    return Result(
        database=database,
        gitlab=gitlab.mode,
        settings=settings,
        cache=context.cache.backend,
        health=health,
        hooks=hooks,
        done_during_acks=done_during_acks,
        standin_during_acks=(
            load_after[0] - load_before[0],
            load_after[1] - load_before[1],
        ),
        api_requests=load_end[0] - load_before[0],
        standin_busy=load_end[1] - load_before[1],
        processing=last.timestamp() - wall_start if last is not None else float("nan"),
        settled=settled,
        complete=expected <= set(counts),
        notes=found,
        per_delivery=Counter(counts.get(tag, 0) for tag in expected),
        strangers=sum(n for tag, n in counts.items() if tag not in expected),
        states=states,
        retried=int(retried or 0),
        probe_calls=len(probe_calls),
        probe_sequential=sequential_round_trips([(start, end) for start, end, *_ in probe_calls]),
        probe_seconds=(
            max(call[1] for call in probe_calls) - min(call[0] for call in probe_calls)
            if probe_calls
            else 0.0
        ),
        probe_timeline=relative_calls(probe_calls),
        rss_mb_idle=rss_idle,
        rss_mb_after=rss_after,
        worker_rss_mb_idle=worker_rss_idle,
        worker_rss_mb_after=worker_rss_after,
    )


def report(args: argparse.Namespace, r: Result, tally: LogTally) -> bool:
    n = len(r.hooks.latencies_ms)
    acks, health = r.hooks.latencies_ms, r.health.latencies_ms
    p50, p99, worst = percentile(acks, 0.5), percentile(acks, 0.99), max(acks)
    h50, h99, hmax = percentile(health, 0.5), percentile(health, 0.99), max(health)
    all_2xx = all(200 <= status < 300 for status in r.hooks.statuses)
    exactly_once = (
        r.per_delivery == Counter({1: n}) and r.strangers == 0 and r.states == {"done": n}
    )
    settings = r.settings
    standin_requests, standin_busy = r.standin_during_acks
    teams, users = len(settings.teams), len(settings.users)

    print(f"database:    {r.database}")
    print(
        f"GitLab:      stand-in ({r.gitlab}): {len(PROJECTS)} projects with CODEOWNERS,"
        f" {args.mrs} MRs; organisation of {users} people in {teams} teams"
    )
    print(
        f"load:        {n} distinct /roulette Note Hook deliveries ({n // args.mrs} per MR,"
        f" shuffled), {args.senders} concurrent senders with a keep-alive connection each"
    )
    replicas = "one process: web and workers"
    workers = f"{args.workers}{' (default)' if args.workers == DEFAULT_WORKERS else ''}"
    if args.split:
        count = args.worker_replicas
        pool = settings.database_pool_size, settings.database_max_overflow
        fields = Settings.model_fields
        chart = chart_pod("worker")
        worker_pool = (
            chart.get("database_pool_size", fields["database_pool_size"].default),
            chart.get("database_max_overflow", fields["database_max_overflow"].default),
        )
        source = "; the pools are the Helm chart's" if "database_pool_size" in chart else ""
        replicas = (
            f"a web-only replica here (database pool {pool[0]} + {pool[1]} overflow),"
            f" {count} worker replica{'s' if count > 1 else ''}"
            f" in {'processes' if count > 1 else 'a process'} of their own"
            f"{f' at nice {args.worker_nice}' if args.worker_nice else ''}"
            f" (database pool {worker_pool[0]} + {worker_pool[1]} overflow; NOTIFY between"
            f" them){source}"
        )
        if args.workers == chart.get("webhook_workers"):
            workers = f"{args.workers} per worker replica (the Helm chart's)"
    print(f"replicas:    {replicas}")
    print(
        f"settings:    webhook_workers={workers},"
        f" gitlab_concurrency={args.gitlab_concurrency},"
        f" webhook_retry_seconds={settings.webhook_retry_seconds},"
        f" webhook_max_attempts={settings.webhook_max_attempts}, cache={r.cache}"
    )
    print()
    print(f"baseline     GET /health x {n}, {args.senders}-way, before the deliveries:")
    print(
        f"             p50 {h50:7.2f} ms   p99 {h99:7.2f} ms   max {hmax:7.2f} ms"
        f"   ({n / r.health.seconds:,.0f} requests/s)"
    )
    print("ack          POST /webhook/gitlab, request sent -> response received:")
    print(
        f"             p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   max {worst:7.2f} ms"
        f"   (mean {statistics.fmean(acks):.2f} ms)"
    )
    print(
        f"             = {p50 / h50:.1f}x health p50, {p99 / h99:.1f}x health p99;"
        f" statuses {dict(r.hooks.statuses)}, answers {dict(r.hooks.answers)}"
    )
    print(
        f"accepted:    {n / r.hooks.seconds:7.1f} deliveries/s ({r.hooks.seconds:.2f} s);"
        f" meanwhile the workers finished {r.done_during_acks} and the stand-in served"
        f" {standin_requests} API requests in {standin_busy * 1000:.0f} ms of handler time"
        f" ({standin_busy / r.hooks.seconds:.0%} of the window)"
    )
    seen = (
        f"every note seen by the poll at {r.settled:.2f} s"
        if r.complete
        else f"notes still missing at the deadline, {r.settled:.2f} s"
    )
    print(
        f"processed:   {n / r.processing:7.1f} deliveries/s end to end (first send -> last row"
        f" done {r.processing:.2f} s; {seen}); {r.api_requests / n:.1f} GitLab API requests"
        f" per delivery, {r.standin_busy * 1000:.0f} ms of stand-in handler time in all"
    )
    print(
        f"notes:       {r.notes['notes']} bot notes, {r.notes['errors']} of them errors;"
        f" notes per delivery {dict(sorted(r.per_delivery.items()))} (want {{1: {n}}});"
        f" markers of no delivery {r.strangers}; notes without a marker {r.notes['unmarked']}"
    )
    print(
        f"inbox:       {dict(sorted(r.states.items()))} (want {{'done': {n}}});"
        f" {r.retried} rows took more than one attempt"
    )
    print(
        f"one roll:    {r.probe_calls} GitLab calls, {r.probe_sequential} of them one after"
        f" another, {r.probe_seconds * 1000:.0f} ms from the first call to the last"
        f" (alone, before the burst, GitLab latency {args.gitlab_latency * 1000:.0f} ms"
        f" + up to {args.gitlab_jitter * 1000:.0f} ms)"
    )
    for start, end, method, path in r.probe_timeline:
        print(f"             {start:6.1f} -> {end:6.1f} ms  {method} {path}")
    inline = " (the stand-in included: inline)" if args.standin == "inline" else ""
    side = " (web-only replica)" if args.split else ""
    print(
        f"memory:      {r.rss_mb_idle:.0f} MB resident before the burst,"
        f" {r.rss_mb_after:.0f} MB after{side}{inline}"
    )
    if r.worker_rss_mb_idle is not None and r.worker_rss_mb_after is not None:
        print(
            f"             worker replica{'s (the largest)' if args.worker_replicas > 1 else ''}:"
            f" {r.worker_rss_mb_idle:.0f} MB before,"
            f" {r.worker_rss_mb_after:.0f} MB after"
        )
    for message, count in tally.counts.most_common(5):
        print(f"app log:     {count} x {message}")
    ack_ok = p99 < TARGET_P99_MS and all_2xx
    rolls_per_s = n / r.processing
    largest = (
        max(r.rss_mb_idle, r.worker_rss_mb_idle or 0),
        max(r.rss_mb_after, r.worker_rss_mb_after or 0),
    )
    memory_ok = largest[0] <= TARGET_RSS_IDLE_MB and largest[1] <= TARGET_RSS_AFTER_MB
    print()
    print(
        f"ack p99 < {TARGET_P99_MS:.0f} ms and all 2xx: {'yes' if ack_ok else 'NO'};"
        f" exactly once: {'yes' if exactly_once else 'NO'};"
        f" memory <= {TARGET_RSS_IDLE_MB} MB idle and <= {TARGET_RSS_AFTER_MB} MB after:"
        f" {'yes' if memory_ok else 'NO'}"
    )
    ok = ack_ok and exactly_once and memory_ok
    if math.isclose(args.gitlab_latency, TARGET_LATENCY):  # the targets' GitLab
        throughput_ok = rolls_per_s >= TARGET_ROLLS_PER_S
        trips_ok = r.probe_sequential <= TARGET_ROUND_TRIPS
        print(
            f"at {TARGET_LATENCY * 1000:.0f} ms per GitLab call: >= {TARGET_ROLLS_PER_S}"
            f" rolls/s: {'yes' if throughput_ok else 'NO'}; <= {TARGET_ROUND_TRIPS}"
            f" round trips one after another: {'yes' if trips_ok else 'NO'}"
        )
        ok = ok and throughput_ok and trips_ok
    print("PASS" if ok else "FAIL")
    if args.json:
        figures = {
            "database": r.database,
            "standin": args.standin,
            "gitlab_latency_ms": args.gitlab_latency * 1000,
            "gitlab_jitter_ms": args.gitlab_jitter * 1000,
            "webhook_workers": args.workers,
            "gitlab_concurrency": args.gitlab_concurrency,
            "deliveries": n,
            "ack_p50_ms": round(p50, 2),
            "ack_p99_ms": round(p99, 2),
            "ack_max_ms": round(worst, 2),
            "health_p50_ms": round(h50, 2),
            "health_p99_ms": round(h99, 2),
            "accepted_per_s": round(n / r.hooks.seconds, 1),
            "rolls_per_s": round(rolls_per_s, 1),
            "gitlab_calls_per_roll": round(r.api_requests / n, 2),
            "sequential_gitlab_round_trips": r.probe_sequential,
            "probe_gitlab_calls": r.probe_calls,
            "probe_ms": round(r.probe_seconds * 1000, 1),
            "probe_calls": [list(call) for call in r.probe_timeline],
            "split": args.split,
            "worker_replicas": args.worker_replicas if args.split else 0,
            "worker_nice": args.worker_nice if args.split else 0,
            # The largest bot process (with --split, the larger of web and worker).
            "rss_mb_idle": round(largest[0], 1),
            "rss_mb_after": round(largest[1], 1),
            "rss_mb_web": [round(r.rss_mb_idle, 1), round(r.rss_mb_after, 1)],
            "rss_mb_worker": (
                [round(r.worker_rss_mb_idle or 0, 1), round(r.worker_rss_mb_after or 0, 1)]
                if args.split
                else None
            ),
            "exactly_once": exactly_once,
            "pass": ok,
        }
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return ok


def workers(text: str) -> int:
    """A count for ``--workers`` (``WEBHOOK_WORKERS`` of a replica that processes
    deliveries): 1 to the most the bot's settings allow."""
    top = MOST_WORKERS
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= top:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of workers from 1 to {top}")
    return count


def replicas(text: str) -> int:
    """A count of worker replicas for ``--worker-replicas``: 1 to 8."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= 8:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of replicas from 1 to 8")
    return count


def seconds(text: str) -> float:
    """A duration for ``--gitlab-latency``: seconds (``0.05``) or ``50ms``/``0.05s``."""
    value = text.strip().lower()
    scale = 1.0
    if value.endswith("ms"):
        value, scale = value[:-2], 0.001
    elif value.endswith("s"):
        value = value[:-1]
    try:
        result = float(value) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration such as 0.05 or 50ms") from None
    if not 0 <= result <= 10:
        raise argparse.ArgumentTypeError(f"{text!r}: between 0 and 10 s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a temp SQLite file)")
    parser.add_argument("--standin", choices=("inline", "process"), default="inline")
    parser.add_argument("--deliveries", type=count(1), default=600)
    parser.add_argument("--mrs", type=count(1), default=100)
    parser.add_argument("--senders", type=count(1), default=32)
    parser.add_argument(
        "--senders-in",
        dest="senders_mode",
        choices=("process", "inline"),
        default="process",
        help="where the timed senders run: a process of their own, as GitLab is another"
        " system (default), or this process's event loop, beside the web replica",
    )
    parser.add_argument(
        "--workers",
        type=workers,
        help="WEBHOOK_WORKERS of each process that processes deliveries (default: the"
        f" bot's, {DEFAULT_WORKERS}; with --split, the Helm chart's worker pods')",
    )
    parser.add_argument(
        "--gitlab-concurrency",
        type=count(1, 256),
        default=DEFAULT_GITLAB_CONCURRENCY,
        help="GitLab calls in flight at once (GITLAB_CONCURRENCY)",
    )
    parser.add_argument(
        "--timeout", type=positive_seconds, default=90.0, help="processing deadline (s)"
    )
    parser.add_argument(
        "--gitlab-latency",
        type=seconds,
        default=0.0,
        help="added to every GitLab answer: seconds or e.g. 50ms (default 0)",
    )
    parser.add_argument(
        "--gitlab-jitter", type=seconds, default=0.0, help="plus a uniform draw up to this"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as one JSON object")
    parser.add_argument(
        "--split",
        action="store_true",
        help="acknowledge in a web-only replica (WEBHOOK_WORKERS=0) and process in a worker"
        " replica of its own process, as the Helm chart runs them (PostgreSQL only)",
    )
    parser.add_argument(
        "--worker-replicas",
        type=replicas,
        default=1,
        help="--split: worker replicas, each a process of its own (the chart runs 2)",
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        choices=range(20),
        default=0,
        metavar="0-19",
        help="--split: niceness added to the worker replicas, so that on a small machine"
        " the web replica is served first, as on nodes of its own (default 0)",
    )
    args = parser.parse_args()
    if args.split and not args.database_url:
        parser.error("--split needs --database-url (replicas share a PostgreSQL database)")
    if not args.split and (args.worker_replicas != 1 or args.worker_nice):
        parser.error("--worker-replicas and --worker-nice need --split")
    if args.workers is None:
        chart = chart_pod("worker") if args.split else {}
        args.workers = chart.get("webhook_workers", DEFAULT_WORKERS)
    sys.exit(0 if asyncio.run(run(args)) else 1)


if __name__ == "__main__":
    main()
