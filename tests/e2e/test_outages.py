"""Outages, as an operator would cause them: a PostgreSQL and a Redis of the test's own,
stopped in the middle of a run (the machine's servers stay untouched).

- PostgreSQL stopped: three ``/roulette`` comments and a merge delivered meanwhile are
  acknowledged (spooled: in the journal, or the Redis stream), and once PostgreSQL is
  back each comment is answered once and the merge recorded, with no resend;
- the same with the replica killed (``kill -9``) in the middle of the drain: the next
  replica loses nothing and doubles nothing;
- chat during the database outage: a specific message in the user's language, and no
  ``/ooo`` dialog opened;
- Redis stopped: readiness 200 degraded, rolls answered (availability read from GitLab),
  and the cache used again once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import redis
import yaml
from sqlalchemy.engine import URL, make_url

from bot import migrate
from bot.app import create_app
from bot.http import CONTEXT
from bot.sandbox.gitlab import GitLabStandIn
from bot.sandbox.mattermost import MattermostStandIn
from bot.sandbox.webhooks import Delivery, WebhookSender
from bot.users import sync_organisation
from tests.conftest import until
from tests.e2e.conftest import PROJECT, SECRET, MakeClient, e2e_settings, start_bot
from tests.e2e.test_mattermost_flow import TEAM, Chat, _free_port
from tests.e2e.test_mattermost_flow import mattermost as mattermost
from tests.roulette.conftest import TEAMS, TOKEN, USERS
from tests.services import service_unavailable
from tests.test_cli import clean_env, cli

WITHIN = 60.0  # seconds for everything to come back, as the issue asks
UNAVAILABLE_EN = "The bot's database is unavailable; try again in a minute."
UNAVAILABLE_FR = "La base de données du bot est indisponible ; réessayez dans une minute."

pytestmark = pytest.mark.postgres


# --------------------------------------------------------------------------- the servers


def _run(args: list[str], user: pwd.struct_passwd | None, cwd: Path) -> None:
    """Run a server tool, as ``user`` when given (PostgreSQL refuses to run as root)."""
    switch: dict[str, Any] = {}
    if user is not None:
        switch = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    done = subprocess.run(args, cwd=cwd, capture_output=True, timeout=90, **switch)
    assert done.returncode == 0, (args[0], done.stdout[-2000:], done.stderr[-2000:])


class Postgres:
    """A PostgreSQL cluster in a temporary folder, on a free port, stopped and started at
    will with ``pg_ctl``. Durability settings are off: the test is about the bot's."""

    def __init__(self, bindir: Path, root: Path, user: pwd.struct_passwd | None) -> None:
        self.bindir, self.root, self.user = bindir, root, user
        self.data = root / "data"
        self.port = _free_port()
        _run(
            [
                *(str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres"),
                *("-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"),
            ],
            user,
            root,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off"
        )
        pg_ctl = str(self.bindir / "pg_ctl")
        log = str(self.root / "postgres.log")
        _run(
            [pg_ctl, "-D", str(self.data), "-l", log, "-o", options, "-w", "start"],
            self.user,
            self.root,
        )

    def stop(self) -> None:
        pg_ctl = str(self.bindir / "pg_ctl")
        _run([pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"], self.user, self.root)

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True
        )

    def url(self, database: str, user: str = "bot") -> URL:
        return make_url(f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}")


def _postgres_bindir() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    bindir = _postgres_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        service_unavailable("PostgreSQL", "initdb and pg_ctl not found (to start one's own)")
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            service_unavailable("PostgreSQL", "running as root and no 'postgres' user")
    root = Path(tempfile.mkdtemp(prefix="roulette-outage-pg-"))
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    server = Postgres(bindir, root, user)
    server.start()
    try:
        yield server
    finally:
        if server.running:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database(postgres: Postgres) -> Iterator[URL]:
    """A fresh database owned by the role ``bot``, migrated; the bot's URL to it."""
    if not postgres.running:
        postgres.start()
    name = f"outage_{uuid.uuid4().hex[:10]}"
    with postgres.connect() as admin:
        admin.execute(
            "DO $$ BEGIN CREATE ROLE bot LOGIN SUPERUSER;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        admin.execute("ALTER ROLE bot LOGIN")
        admin.execute(f'CREATE DATABASE "{name}" OWNER bot')
    url = postgres.url(name)
    migrate.upgrade(url)
    yield url
    if not postgres.running:
        postgres.start()
    with postgres.connect() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Redis:
    """A redis-server on a free port with an append-only file, stopped and started at will."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary, self.root = binary, root
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "yes", "--dir", str(self.root), "--protected-mode", "no"]
        with (self.root / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.client().ping()
                return
            except redis.RedisError:
                assert self.process.poll() is None, (self.root / "redis.log").read_text()
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(redis.RedisError):
            self.client().shutdown()  # the append-only file is flushed first
        self.process.wait(timeout=20)
        self.process = None


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Redis]:
    binary = shutil.which("redis-server")
    if binary is None:
        service_unavailable("Redis", "redis-server not found (to start one's own)")
    root = Path(tempfile.mkdtemp(prefix="roulette-outage-redis-"))
    server = Redis(binary, root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_redis(redis_server: Redis) -> Redis:
    if redis_server.process is None:
        redis_server.start()
    redis_server.client().flushall()
    return redis_server


# --------------------------------------------------------------------------- helpers


def bot_notes(standin: GitLabStandIn, iid: int) -> list[str]:
    return [
        n["body"]
        for n in standin.notes(PROJECT, iid)
        if n["author"]["username"] == "roulette-bot" and not n["system"]
    ]


def new_mrs(standin: GitLabStandIn, count: int) -> list[int]:
    return [
        standin.add_merge_request(
            PROJECT, author="alice", title=f"Outage {n}", changes=["api/orders.py"]
        )["iid"]
        for n in range(count)
    ]


async def during_the_outage(
    sender: WebhookSender, standin: GitLabStandIn, iids: list[int]
) -> list[Delivery]:
    """Three ``/roulette`` comments and the merge of MR 1, as GitLab delivers them."""
    deliveries = [await sender.comment(PROJECT, iid, "bob", "/roulette") for iid in iids]
    standin.merge(PROJECT, 1, by="alice")
    deliveries.append(await sender.mr_event(PROJECT, 1, "merge", "alice"))
    return deliveries


def review_state(postgres: Postgres, database: URL, iid: int) -> str | None:
    with postgres.connect(str(database.database)) as connection:
        row = connection.execute(
            "SELECT state FROM mr_reviews WHERE mr_iid = %s", (iid,)
        ).fetchone()
    return None if row is None else str(row[0])


def review_merged_at(postgres: Postgres, database: URL, iid: int) -> datetime | None:
    with postgres.connect(str(database.database)) as connection:
        row = connection.execute(
            "SELECT merged_at FROM mr_reviews WHERE mr_iid = %s", (iid,)
        ).fetchone()
    return None if row is None else row[0]


def inbox_done(postgres: Postgres, database: URL) -> int:
    with postgres.connect(str(database.database)) as connection:
        row = connection.execute("SELECT count(*) FROM webhook_inbox WHERE status = 'done'")
        found = row.fetchone()
    return int(found[0]) if found else 0


def inbox_keys(postgres: Postgres, database: URL) -> list[str]:
    with postgres.connect(str(database.database)) as connection:
        rows = connection.execute("SELECT delivery_key FROM webhook_inbox ORDER BY id").fetchall()
    return [str(key) for (key,) in rows]


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}{{{re.escape(wanted)}}} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{{{wanted}}} not in /metrics"
    return float(match.group(1))


# --------------------------------------------------------------------------- the database


@pytest.mark.parametrize("spool", ["journal", pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_database_outage_loses_no_comment_and_answers_each_once(
    spool: str,
    postgres: Postgres,
    database: URL,
    standin: GitLabStandIn,
    gitlab_url: str,
    aiohttp_client: MakeClient,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    extra: dict[str, Any] = {"spool_dir": str(tmp_path / "spool")}
    if spool == "redis":
        extra["redis_url"] = request.getfixturevalue("fresh_redis").url
    bot = await start_bot(aiohttp_client, standin, e2e_settings(database, gitlab_url, **extra))
    await bot.comment("alice", "/roulette")
    await bot.settled()
    assert len(bot.bot_notes()) == 1
    iids = new_mrs(standin, 3)

    postgres.stop()
    deliveries = await during_the_outage(bot.sender, standin, iids)
    assert [(d.status, d.response_body.count('"spooled"')) for d in deliveries] == [(202, 1)] * 4
    readiness = await bot.client.get("/readiness")
    assert readiness.status == 503  # the process cannot do all of its work
    assert (await bot.client.get("/readiness?scope=web")).status == 200  # but takes webhooks

    async def waiting(count: int) -> bool:
        metrics = await (await bot.client.get("/metrics")).text()
        return metric(metrics, "webhook_spool_depth", spool=spool) == count

    await until(lambda: waiting(4), WITHIN, "four deliveries waiting in the spool")
    metrics = await (await bot.client.get("/metrics")).text()
    assert metric(metrics, "webhook_spooled_total", spool=spool) == 4
    assert 'unhandled_errors_total{where="http"}' not in metrics

    restarted = datetime.now(UTC)
    postgres.start()
    await until(
        lambda: all(bot_notes(standin, iid) for iid in iids), WITHIN, "every comment answered"
    )
    await until(lambda: review_state(postgres, database, 1) == "merged", WITHIN, "the merge")
    merged_at = review_merged_at(postgres, database, 1)
    assert merged_at is not None and merged_at < restarted  # when GitLab's hook came
    await bot.settled()
    assert [len(bot_notes(standin, iid)) for iid in iids] == [1, 1, 1]
    assert len(bot_notes(standin, 1)) == 1
    assert len(inbox_keys(postgres, database)) == 5  # the first roll, 3 comments, the merge
    await until(lambda: waiting(0), WITHIN, "the spool drained")
    assert (await bot.client.get("/readiness")).status == 200


@pytest.fixture
def replica_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"teams": TEAMS, "users": USERS}))
    return config


async def serve(
    name: str, database: URL, gitlab_url: str, config: Path, tmp_path: Path
) -> tuple[asyncio.subprocess.Process, str]:
    """A ``roulette-bot serve`` replica with its journal in ``tmp_path/spool``."""
    port = _free_port()
    env = clean_env(
        ROULETTE_CONFIG=str(config),
        DATABASE_URL=database.render_as_string(hide_password=False),
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        GITLAB_URL=gitlab_url,
        GITLAB_TOKEN=TOKEN,
        GITLAB_WEBHOOK_SECRET=SECRET,
        SPOOL_DIR=str(tmp_path / "spool"),
        WEBHOOK_WORKERS="4",
        LOG_LEVEL="info",
    )
    with (tmp_path / f"{name}.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *cli("serve"), cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        assert process.returncode is None, (tmp_path / f"{name}.log").read_text()[-3000:]
        try:
            async with aiohttp.ClientSession() as http, http.get(base + "/readiness") as answer:
                return answer.status == 200
        except aiohttp.ClientError:
            return False

    await until(ready, WITHIN, f"{name} ready")
    return process, base


async def test_a_replica_killed_during_the_drain_loses_and_doubles_nothing(
    postgres: Postgres,
    database: URL,
    standin: GitLabStandIn,
    gitlab_url: str,
    replica_config: Path,
    tmp_path: Path,
) -> None:
    first, base = await serve("first", database, gitlab_url, replica_config, tmp_path)
    second: asyncio.subprocess.Process | None = None
    try:
        sender = WebhookSender(standin, f"{base}/webhook/gitlab", secret=SECRET)
        assert (await sender.comment(PROJECT, 1, "alice", "/roulette")).status == 200
        await until(lambda: len(bot_notes(standin, 1)) == 1, WITHIN, "the first roll")
        # Its note is posted before its record is written: the outage starts once both are
        # (an outage in between is test_a_roll_an_outage_left_unrecorded_... in the flow tests).
        await until(lambda: inbox_done(postgres, database) == 1, WITHIN, "the first roll done")
        iids = new_mrs(standin, 3)

        with postgres.connect() as admin:  # the bot cannot log in once the server is back
            admin.execute("ALTER ROLE bot NOLOGIN")
        postgres.stop()
        deliveries = await during_the_outage(sender, standin, iids)
        assert [d.status for d in deliveries] == [202] * 4
        postgres.start()
        # The drain's INSERT will wait behind this lock: the replica dies in the middle.
        with postgres.connect(str(database.database)) as holder:
            holder.autocommit = False
            holder.execute("LOCK TABLE webhook_inbox IN SHARE MODE")
            with postgres.connect() as admin:
                admin.execute("ALTER ROLE bot LOGIN")

                def draining() -> bool:
                    waiting = admin.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bot'"
                        " AND wait_event_type = 'Lock'"
                        " AND query LIKE '%%INSERT INTO webhook_inbox%%'"
                    ).fetchone()
                    return bool(waiting and waiting[0])

                await until(draining, WITHIN, "the drain under way")
            assert (tmp_path / "spool" / "draining.log").exists()
            first.kill()  # SIGKILL, in the middle of the drain
            await first.wait()
            holder.rollback()

        second, _ = await serve("second", database, gitlab_url, replica_config, tmp_path)
        await until(
            lambda: all(bot_notes(standin, iid) for iid in iids), WITHIN, "every comment answered"
        )
        await until(lambda: review_state(postgres, database, 1) == "merged", WITHIN, "the merge")
        await until(
            lambda: not (tmp_path / "spool" / "draining.log").exists(), WITHIN, "spool drained"
        )
        assert [len(bot_notes(standin, iid)) for iid in [1, *iids]] == [1, 1, 1, 1]
        keys = inbox_keys(postgres, database)
        assert len(keys) == len(set(keys)) == 5
    finally:
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), timeout=15)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def test_chat_during_a_database_outage_says_so_and_opens_no_dialog(
    postgres: Postgres,
    database: URL,
    standin: GitLabStandIn,
    gitlab_url: str,
    mattermost: tuple[MattermostStandIn, str],
    aiohttp_client: MakeClient,
    tmp_path: Path,
) -> None:
    mm, mm_url = mattermost
    port = _free_port()
    settings = e2e_settings(
        database,
        gitlab_url,
        mattermost_url=mm_url,
        mattermost_token=mm.bot_token,
        mattermost_team=TEAM,
        public_url=f"http://127.0.0.1:{port}",
        spool_dir=str(tmp_path / "spool"),
    )
    client = await aiohttp_client(create_app(settings), server_kwargs={"port": port})
    await sync_organisation(client.app[CONTEXT].sessions, settings)
    chat = Chat(client, mm, standin)
    url = f"{standin.base_url}/{PROJECT}/-/merge_requests/1"
    await chat.slash("alice", f"/roulette {url}")
    reviewer = standin.merge_request(PROJECT, 1)["reviewers"][0]["username"]
    channel = mm.direct_channel("roulette-bot", reviewer)
    [request] = [p for p in mm.posts_in(channel["id"]) if (p.get("props") or {}).get("attachments")]
    await chat.slash("dave", "/ooo")
    [dialog] = mm.dialogs_opened

    postgres.stop()
    assert (await chat.slash("alice", f"/roulette {url}"))["text"] == UNAVAILABLE_EN
    assert (await chat.slash("carol", f"/roulette {url}"))["text"] == UNAVAILABLE_FR
    assert (await chat.slash("dave", "/ooo"))["text"] == UNAVAILABLE_EN
    assert len(mm.dialogs_opened) == 1  # not opened: what it collects could not be saved
    status, answer = await mm.submit_dialog(
        dialog, "dave", {"start": "2099-06-01", "end": "2099-06-02", "reason": ""}
    )
    assert (status, answer) == (200, {"error": UNAVAILABLE_EN})
    status, _ = await mm.click(reviewer, request["id"], "accept")
    assert status == 200
    [shown] = mm.ephemerals_for(reviewer)[-1:]
    assert shown["message"] in (UNAVAILABLE_EN, UNAVAILABLE_FR)
    metrics = await (await client.get("/metrics")).text()
    assert 'unhandled_errors_total{where="chat"}' not in metrics  # an outage, not a defect
    postgres.start()


# --------------------------------------------------------------------------- the cache


def status_reads(standin: GitLabStandIn) -> int:
    return sum(1 for method, path in standin.requests if method == "GET" and "/status" in path)


@pytest.mark.redis
async def test_a_redis_outage_keeps_the_bot_in_service_and_the_cache_comes_back(
    database: URL,
    fresh_redis: Redis,
    standin: GitLabStandIn,
    gitlab_url: str,
    aiohttp_client: MakeClient,
    tmp_path: Path,
) -> None:
    settings = e2e_settings(
        database, gitlab_url, redis_url=fresh_redis.url, spool_dir=str(tmp_path / "spool")
    )
    bot = await start_bot(aiohttp_client, standin, settings)
    iids = new_mrs(standin, 3)

    async def roll(iid: int) -> int:
        """``/roulette`` on MR ``iid``, answered; the GitLab status reads it took."""
        before = status_reads(standin)
        delivery = await bot.comment("alice", "/roulette", iid=iid)
        assert delivery.status == 200, delivery.response_body
        await until(lambda: len(bot_notes(standin, iid)) == 1, WITHIN, f"MR {iid} answered")
        return status_reads(standin) - before

    async def counted() -> bool:  # the replica's first count of who is available, done
        return "available_reviewers{" in await (await bot.client.get("/metrics")).text()

    # That count reads every status GitLab has not given yet, in the background; the
    # rolls' own reads are counted once it is done.
    await until(counted, WITHIN, "the available_reviewers gauge")
    await roll(1)
    assert status_reads(standin) > 0  # statuses read from GitLab, then cached
    assert await roll(iids[0]) == 0  # read from the cache
    fresh_redis.stop()
    readiness = await bot.client.get("/readiness")
    assert readiness.status == 200
    assert await readiness.json() == {
        "status": "degraded",
        "checks": {"database": "ok", "redis": "down"},
    }
    started = time.monotonic()
    assert await roll(iids[1]) > 0  # no cache: availability read from GitLab
    assert time.monotonic() - started < 10

    fresh_redis.start()  # its append-only file brings the cached statuses back

    async def cache_back() -> bool:
        body = await (await bot.client.get("/readiness")).json()
        return bool(body["status"] == "ready")

    await until(cache_back, WITHIN, "readiness ready again")
    assert await roll(iids[2]) == 0  # the cache is used again, without a restart
