"""GitLab webhook intake under load: the real app, the GitLab stand-in, 32 senders.

    python -m benchmarks.webhooks [--database-url URL] [--standin inline|process]
                                  [--deliveries 600] [--mrs 100] [--senders 32] [--workers N]

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
inbox row ``done``). Exits non-zero on FAIL.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from aiohttp import web
from sqlalchemy import delete, func, select
from sqlalchemy.engine import URL, make_url

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

TARGET_P99_MS = 50.0
SEED = 20_260_105
TOKEN = "glpat-benchmark-token"  # noqa: S105 - the stand-in's throwaway token
SECRET = "benchmark-webhook-secret"  # noqa: S105 - the benchmark's own webhook secret
BOT = "roulette-bot"
PROJECTS = ("acme/shop", "acme/billing", "acme/search", "acme/portal")
TEAMS = ("backend", "frontend", "platform")
PEOPLE_PER_TEAM = 10
DEFAULT_WORKERS: int = Settings.model_fields["webhook_workers"].default
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


def build_world(mrs: int, comments: int) -> tuple[GitLabStandIn, list[tuple[str, int, str]]]:
    """The stand-in with its users, groups, projects, MRs and the ``/roulette`` comments.

    Deterministic: the child process and the parent build the same world (same ids).
    Returns the comments as ``(project, iid, author)`` in the order they were added.
    """
    rng = random.Random(SEED)
    gl = GitLabStandIn(TOKEN, bot_username=BOT)
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
    return gl, said


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


class InlineGitLab(GitLabSide):
    mode = "inline: on the app's event loop"

    def __init__(self, gl: GitLabStandIn, url: str, refs: list[tuple[str, int]], meter: Meter):
        self.gl, self.url, self.refs, self.meter = gl, url, refs, meter

    async def count(self) -> dict[str, Any]:
        return marker_counts(self.gl, self.refs)

    async def load(self) -> tuple[int, float]:
        return self.meter.snapshot()


def _standin_child(conn: Connection, mrs: int, comments: int) -> None:
    """The child process: the same world, served, answering the parent's questions."""
    asyncio.run(_standin_serve(conn, mrs, comments))


async def _standin_serve(conn: Connection, mrs: int, comments: int) -> None:
    gl, said = build_world(mrs, comments)
    refs = list(dict.fromkeys((project, iid) for project, iid, _ in said))
    meter = Meter()
    stop = asyncio.Event()

    def answer() -> None:
        try:
            command = conn.recv()
        except EOFError:
            stop.set()
            return
        if command == "count":
            conn.send(marker_counts(gl, refs))
        elif command == "load":
            conn.send(meter.snapshot())
        else:
            stop.set()

    async with serve_metered(gl, meter) as url:
        loop = asyncio.get_running_loop()
        loop.add_reader(conn.fileno(), answer)
        conn.send(url)
        await stop.wait()
        loop.remove_reader(conn.fileno())


class ProcessGitLab(GitLabSide):
    mode = "child process"

    def __init__(self, mrs: int, comments: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_standin_child, args=(child, mrs, comments), daemon=True
        )
        self.process.start()
        child.close()

    async def _ask(self, command: str | None) -> Any:
        if command is not None:
            self.conn.send(command)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(self.conn.fileno(), readable)
        try:
            await asyncio.wait_for(ready, timeout=60)
        finally:
            loop.remove_reader(self.conn.fileno())
        return self.conn.recv()

    async def start(self) -> None:
        self.url = str(await self._ask(None))

    async def count(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._ask("count")
        return result

    async def load(self) -> tuple[int, float]:
        requests, busy = await self._ask("load")
        return int(requests), float(busy)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.conn.close()


@contextlib.asynccontextmanager
async def gitlab_side(
    mode: str, world: GitLabStandIn, refs: list[tuple[str, int]], comments: int
) -> AsyncIterator[GitLabSide]:
    if mode == "inline":
        meter = Meter()
        async with serve_metered(world, meter) as url:
            yield InlineGitLab(world, url, refs, meter)
        return
    side = ProcessGitLab(len(refs), comments)
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


async def run(args: argparse.Namespace) -> bool:
    mrs, comments = args.mrs, args.deliveries // args.mrs
    if mrs * comments != args.deliveries:
        raise SystemExit("--deliveries must be a multiple of --mrs")
    tally = LogTally()
    logging.getLogger().addHandler(tally)
    world, said = build_world(mrs, comments)
    refs = list(dict.fromkeys((project, iid) for project, iid, _ in said))
    with temporary_database(args.database_url) as (url, database):
        async with gitlab_side(args.standin, world, refs, comments) as gitlab:
            result = await measure(args, url, database, gitlab, world, said)
    return report(args, result, tally)


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
    gitlab: GitLabSide,
    world: GitLabStandIn,
    said: list[tuple[str, int, str]],
) -> Result:
    teams, users = organisation()
    settings = Settings(
        database_url=url.render_as_string(hide_password=False),
        teams=teams,
        users=users,
        gitlab_url=gitlab.url,
        gitlab_token=TOKEN,
        gitlab_webhook_secret=SECRET,
        webhook_workers=args.workers,
        shutdown_timeout=5,
    )
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

        async def get_health(session: aiohttp.ClientSession, _: int) -> tuple[int, str]:
            async with session.get(f"{base}/health") as response:
                return response.status, await response.text()

        async def post_hook(session: aiohttp.ClientSession, job: Outgoing) -> tuple[int, str]:
            async with session.post(
                f"{base}/webhook/gitlab", data=job.body, headers=job.headers
            ) as response:
                answer = await response.json()
                return response.status, str(answer.get("status"))

        # One keep-alive connection per sender, as one GitLab Sidekiq thread would hold.
        sessions = [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1),
                skip_auto_headers=("User-Agent",),
                timeout=aiohttp.ClientTimeout(total=30),
            )
            for _ in range(args.senders)
        ]
        try:
            # Warm the intake path (connections, compiled statements) with ordinary
            # comments, as a running bot is warm; their rows are removed before measuring.
            await fan_out(sessions, warm_ups(outgoing[0], args.senders), post_hook)
            while (await inbox_states(app)).get("done", 0) < args.senders:  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # the rows are in the database: poll it
            async with context.sessions.begin() as db:
                await db.execute(delete(WebhookDelivery))
            health = await fan_out(sessions, range(len(outgoing)), get_health)
            load_before = await gitlab.load()
            wall_start = time.time()
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
    finally:
        await runner.cleanup()

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
    print(
        f"settings:    webhook_workers={settings.webhook_workers}"
        f"{' (default)' if settings.webhook_workers == DEFAULT_WORKERS else ''},"
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
    for message, count in tally.counts.most_common(5):
        print(f"app log:     {count} x {message}")
    ack_ok = p99 < TARGET_P99_MS and all_2xx
    print()
    print(
        f"ack p99 < {TARGET_P99_MS:.0f} ms and all 2xx: {'yes' if ack_ok else 'NO'};"
        f" exactly once: {'yes' if exactly_once else 'NO'}"
    )
    ok = ack_ok and exactly_once
    print("PASS" if ok else "FAIL")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a temp SQLite file)")
    parser.add_argument("--standin", choices=("inline", "process"), default="inline")
    parser.add_argument("--deliveries", type=int, default=600)
    parser.add_argument("--mrs", type=int, default=100)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--timeout", type=float, default=90.0, help="processing deadline (s)")
    args = parser.parse_args()
    sys.exit(0 if asyncio.run(run(args)) else 1)


if __name__ == "__main__":
    main()
