"""Two ``roulette-bot serve`` processes on one PostgreSQL database, as the chart runs them.

200 ``/roulette`` comments, each delivered to both replicas, are answered by exactly 200
notes; after the replica holding the Mattermost websocket is killed (``kill -9``), the
other answers a direct message; and each daily job runs once for its day, although both
replicas' schedulers fire it every minute.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import URL

from bot.inboxwake import libpq_dsn
from bot.sandbox.gitlab import GitLabStandIn
from bot.sandbox.mattermost import MattermostStandIn
from bot.sandbox.webhooks import WebhookSender
from tests.conftest import until
from tests.e2e.conftest import PROJECT, SECRET
from tests.e2e.test_mattermost_flow import TEAM, _free_port
from tests.e2e.test_mattermost_flow import mattermost as mattermost
from tests.roulette.conftest import TEAMS, TOKEN, USERS
from tests.test_cli import clean_env, cli

COMMENTS = 200
DAILY_JOBS = ("aggregate", "badges", "digest")
STARTUP = 60.0


@dataclass
class Replica:
    name: str
    process: asyncio.subprocess.Process
    base: str
    log: Path

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(self.base + path) as response:
            return response.status, await response.text()

    async def healthy(self) -> bool:
        exited = self.process.returncode is not None
        assert not exited, f"{self.name} exited: {self.log.read_text()[-3000:]}"
        try:
            status, _ = await self.get("/readiness")
        except aiohttp.ClientError:
            return False
        return status == 200

    async def job_runs(self) -> dict[tuple[str, str], float]:
        """``job_runs_total`` by (job, outcome), from this replica's /metrics."""
        _, text = await self.get("/metrics")
        runs: dict[tuple[str, str], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "job_runs_total":
                    runs[sample.labels["job"], sample.labels["outcome"]] = sample.value
        return runs


@pytest.fixture
async def replicas(
    migrated_url: URL,
    standin: GitLabStandIn,
    gitlab_url: str,
    mattermost: tuple[MattermostStandIn, str],
    tmp_path: Path,
) -> AsyncIterator[Callable[[str], Awaitable[Replica]]]:
    mm, mm_url = mattermost
    config = tmp_path / "config.yaml"
    schedule = {"timezone": "UTC"} | {job: "* * * * *" for job in DAILY_JOBS}
    config.write_text(yaml.safe_dump({"teams": TEAMS, "users": USERS, "schedule": schedule}))
    started: list[Replica] = []

    async def start(name: str) -> Replica:
        port = _free_port()
        log = tmp_path / f"{name}.log"
        env = clean_env(
            ROULETTE_CONFIG=str(config),
            DATABASE_URL=migrated_url.render_as_string(hide_password=False),
            HTTP_HOST="127.0.0.1",
            HTTP_PORT=str(port),
            PUBLIC_URL=f"http://127.0.0.1:{port}",
            GITLAB_URL=gitlab_url,
            GITLAB_TOKEN=TOKEN,
            GITLAB_WEBHOOK_SECRET=SECRET,
            MATTERMOST_URL=mm_url,
            MATTERMOST_TOKEN=mm.bot_token,
            MATTERMOST_TEAM=TEAM,
            WEBHOOK_WORKERS="4",
            LOG_LEVEL="warning",
        )
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                *cli("serve"), cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        replica = Replica(name, process, f"http://127.0.0.1:{port}", log)
        started.append(replica)
        await until(replica.healthy, STARTUP, f"{name} ready")
        return replica

    yield start
    for replica in started:
        if replica.process.returncode is None:
            replica.process.send_signal(signal.SIGTERM)
    for replica in started:
        try:
            await asyncio.wait_for(replica.process.wait(), timeout=15)
        except TimeoutError:
            replica.process.kill()
            await replica.process.wait()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_serve_processes_share_the_work_once(
    migrated_url: URL,
    standin: GitLabStandIn,
    mattermost: tuple[MattermostStandIn, str],
    replicas: Callable[[str], Awaitable[Replica]],
) -> None:
    mm, _ = mattermost
    first = await replicas("first")
    await until(lambda: _now(mm.websockets_open("roulette-bot") == 1), 30, "a websocket")
    second = await replicas("second")

    # --- 200 comments, each delivered to both replicas at once ----------------------
    iids = [1] + [
        standin.add_merge_request(
            PROJECT, author="alice", title=f"Change {n}", changes=["api/orders.py"]
        )["iid"]
        for n in range(COMMENTS - 1)
    ]
    senders = [
        WebhookSender(standin, f"{r.base}/webhook/gitlab", secret=SECRET) for r in (first, second)
    ]
    limit = asyncio.Semaphore(16)

    async def comment(n: int, iid: int) -> None:
        async with limit:
            one, other = senders[n % 2], senders[(n + 1) % 2]
            delivery = await one.comment(PROJECT, iid, "bob", "/roulette")
            again = await other.deliver(delivery.event, delivery.payload)
            assert delivery.ok and again.ok, (delivery.response_body, again.response_body)

    await asyncio.gather(*(comment(n, iid) for n, iid in enumerate(iids)))

    def bot_notes(iid: int) -> int:
        notes = standin.notes(PROJECT, iid)
        return sum(
            1 for n in notes if n["author"]["username"] == "roulette-bot" and not n["system"]
        )

    await until(lambda: _now(all(bot_notes(i) for i in iids)), 120, "every comment answered")
    await until(lambda: _inbox_settled(migrated_url), 30, "every delivery done")
    assert sorted({bot_notes(iid) for iid in iids}) == [1], "a comment was answered twice"
    assert await _inbox_count(migrated_url) == COMMENTS

    # --- each daily job ran once for today, though both replicas fire it each minute -
    async def job_runs() -> dict[str, dict[str, float]]:
        """Per daily job, its runs on both replicas by outcome (ran = ok or error)."""
        runs = [await r.job_runs() for r in (first, second)]
        return {
            job: {
                "ran": sum(r.get((job, o), 0) for r in runs for o in ("ok", "error")),
                "skipped": sum(r.get((job, "skipped"), 0) for r in runs),
            }
            for job in DAILY_JOBS
        }

    async def fired_on_both() -> bool:
        return all(c["ran"] >= 1 and c["skipped"] >= 1 for c in (await job_runs()).values())

    await until(fired_on_both, 90, "both replicas fired the daily jobs")
    assert {job: c["ran"] for job, c in (await job_runs()).items()} == dict.fromkeys(DAILY_JOBS, 1)

    # --- the websocket holder is killed: the other replica answers a DM -------------
    first.process.kill()  # SIGKILL: no goodbye, its sessions die with it
    await asyncio.wait_for(first.process.wait(), timeout=10)
    channel = mm.direct_channel("roulette-bot", "bob")
    bob = mm.user("bob")["id"]
    mm.say("bob", channel["id"], "help")
    await until(
        lambda: _now(any(p["user_id"] != bob for p in mm.posts_in(channel["id"]))),
        30,
        "the DM answered by the other replica",
    )


async def _now(value: bool) -> bool:
    return value


async def _query(url: URL, sql: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(libpq_dsn(url), autocommit=True) as db:
        cursor = await db.execute(sql)  # type: ignore[arg-type]
        return await cursor.fetchall()


async def _inbox_settled(url: URL) -> bool:
    rows = await _query(url, "SELECT status FROM webhook_inbox")
    return bool(rows) and all(status == "done" for (status,) in rows)


async def _inbox_count(url: URL) -> int:
    [(count,)] = await _query(url, "SELECT count(*) FROM webhook_inbox")
    return int(count)  # type: ignore[call-overload]
