"""Scheduled jobs: each (job, period) runs once across replicas; failures are recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import URL

from bot.app import REGISTRY, SCHEDULER, create_app
from bot.context import AppContext
from bot.db import create_engine, create_sessionmaker
from bot.http import CONTEXT
from bot.models import JobRun
from bot.plugins import Plugin, Registry, job
from bot.scheduler import JobRunContext, Scheduler, run_guarded
from bot.settings import ScheduleConfig, Settings
from tests.conftest import settings_for


class Jobs(Plugin):
    name = "jobs"

    def __init__(self, app: AppContext) -> None:
        super().__init__(app)
        self.runs: list[JobRunContext] = []

    @job("digest", cron="0 9 * * 1-5")
    async def digest(self, run: JobRunContext) -> None:
        await asyncio.sleep(0.05)  # long enough for a second replica to try meanwhile
        self.runs.append(run)

    @job("broken", cron="*/5 * * * *")
    async def broken(self, run: JobRunContext) -> None:
        raise ValueError("the digest template is missing")


class LeakyJob(Plugin):
    """A job whose failure message carries a database URL and a token."""

    name = "leaky"

    @job("leaky", cron="*/5 * * * *")
    async def leaky(self, run: JobRunContext) -> None:
        token = self.app.settings.gitlab_token.get_secret_value()
        raise ConnectionError(
            f"cannot reach postgresql://bot:{LEAKED_PASSWORD}@db:5432/roulette"
            f" nor GitLab with token {token}"
        )


LEAKED_PASSWORD = "pg-pass-7b1e"
TOKEN = "plain-gitlab-token-5c2d"


async def _replica(settings: Settings) -> AsyncIterator[AppContext]:
    context = AppContext(settings=settings)
    engine = create_engine(settings.async_database_url)
    context.engine_, context.sessions_ = engine, create_sessionmaker(engine)
    try:
        yield context
    finally:
        await engine.dispose()


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[list[AppContext]]:
    first, second = _replica(settings), _replica(settings)
    contexts = [await anext(first), await anext(second)]
    yield contexts
    for generator in (first, second):
        await generator.aclose()


async def test_two_replicas_run_a_period_once(replicas: list[AppContext]) -> None:
    plugins = [Jobs(context) for context in replicas]
    handlers = [Registry([p]).jobs["digest"] for p in plugins]
    outcomes = await asyncio.gather(
        *(run_guarded(c, h, "2026-11-26T09:00") for c, h in zip(replicas, handlers, strict=True))
    )
    assert sorted(outcomes) == ["ok", "skipped"]
    assert sum(len(p.runs) for p in plugins) == 1
    # The next period runs again.
    assert await run_guarded(replicas[1], handlers[1], "2026-11-27T09:00") == "ok"
    async with replicas[0].sessions() as session:
        rows = (await session.scalars(select(JobRun).order_by(JobRun.period))).all()
    assert [(r.job_name, r.period, r.status) for r in rows] == [
        ("digest", "2026-11-26T09:00", "done"),
        ("digest", "2026-11-27T09:00", "done"),
    ]
    assert all(r.finished_at is not None for r in rows)
    skipped = replicas[0].metrics.registry.get_sample_value(
        "job_runs_total", {"job": "digest", "outcome": "skipped"}
    ) or replicas[1].metrics.registry.get_sample_value(
        "job_runs_total", {"job": "digest", "outcome": "skipped"}
    )
    assert skipped == 1.0


async def test_a_failing_job_is_recorded_and_counted(replicas: list[AppContext]) -> None:
    context = replicas[0]
    handler = Registry([Jobs(context)]).jobs["broken"]
    assert await run_guarded(context, handler, "p1") == "error"
    async with context.sessions() as session:
        run = await session.scalar(select(JobRun))
    assert run is not None and run.status == "error"
    assert run.error == "ValueError: the digest template is missing"
    registry = context.metrics.registry
    assert registry.get_sample_value("job_runs_total", {"job": "broken", "outcome": "error"}) == 1
    assert registry.get_sample_value("unhandled_errors_total", {"where": "job"}) == 1


async def test_a_failed_jobs_stored_error_carries_no_secret(settings: Settings) -> None:
    async for context in _replica(settings.model_copy(update={"gitlab_token": SecretStr(TOKEN)})):
        handler = Registry([LeakyJob(context)]).jobs["leaky"]
        assert await run_guarded(context, handler, "p1") == "error"
        async with context.sessions() as session:
            run = await session.scalar(select(JobRun))
        assert run is not None and run.error is not None
        assert run.error.startswith("ConnectionError: cannot reach postgresql://bot:***@db")
        assert LEAKED_PASSWORD not in run.error and TOKEN not in run.error


async def test_a_job_runs_on_its_declared_cron_unless_schedule_overrides_it(
    replicas: list[AppContext], caplog: pytest.LogCaptureFixture
) -> None:
    context = replicas[0]
    overridden = AppContext(
        settings=context.settings.model_copy(
            update={"schedule": ScheduleConfig(broken="30 1 * * *", gone="0 0 * * *")}
        )
    )
    registry = Registry([Jobs(overridden)])
    assert Scheduler(overridden, registry).cron_for(registry.jobs["broken"]) == "30 1 * * *"
    assert Scheduler(overridden, registry).cron_for(registry.jobs["digest"]) == "0 9 * * 1-5"
    with caplog.at_level("WARNING", "bot.scheduler"):
        Scheduler(overridden, registry).start()
    assert "schedule.gone: no enabled feature area has a job 'gone'" in caplog.text

    registry = Registry([Jobs(context)])
    scheduler = Scheduler(context, registry)
    assert scheduler.cron_for(registry.jobs["digest"]) == "0 9 * * 1-5"
    assert scheduler.cron_for(registry.jobs["broken"]) == "*/5 * * * *"
    scheduler.start()
    try:
        planned: Any = scheduler._scheduler
        assert {j.id for j in planned.get_jobs()} == {"digest", "broken"}
        next_digest = planned.get_job("digest").next_run_time
        assert next_digest.hour == 9 and next_digest.minute == 0
        assert next_digest.weekday() < 5  # "0 9 * * 1-5": weekdays only
    finally:
        await scheduler.stop(grace=1)


# ------------------------------------------------- two apps' schedulers, one database


class Periodic(Plugin):
    """Two jobs whose crons never fire during a test: the test launches them itself."""

    name = "periodic"

    def __init__(self, app: AppContext) -> None:
        super().__init__(app)
        self.runs: list[JobRunContext] = []
        self.release = asyncio.Event()

    @job("daily", cron="0 0 1 1 *", period="day")
    async def daily(self, run: JobRunContext) -> None:
        self.runs.append(run)
        await self.release.wait()  # held until both replicas have launched

    @job("minutely", cron="0 0 1 1 *", period="minute")
    async def minutely(self, run: JobRunContext) -> None:
        self.runs.append(run)
        await self.release.wait()


class _Clock:
    """``bot.scheduler.datetime`` with ``now`` fixed by the test."""

    moment = datetime(2026, 11, 26, 9, 0, 10, tzinfo=UTC)

    @classmethod
    def now(cls, tz: Any = None) -> datetime:
        return cls.moment.astimezone(tz) if tz else cls.moment


async def _until(condition: Any, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_two_apps_schedulers_run_each_period_once(
    migrated_url: URL, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Days in Auckland (UTC+13 in November): 11:00 UTC on the 26th is the 27th there.
    settings = settings_for(migrated_url, schedule={"timezone": "Pacific/Auckland"})
    monkeypatch.setattr("bot.scheduler.datetime", _Clock)
    apps = [(await aiohttp_client(create_app(settings, [Periodic]))).app for _ in range(2)]
    plugins = [cast(Periodic, app[REGISTRY].plugins[0]) for app in apps]
    schedulers = [app[SCHEDULER] for app in apps]

    def skipped(job: str) -> float:
        samples = (
            app[CONTEXT].metrics.registry.get_sample_value(
                "job_runs_total", {"job": job, "outcome": "skipped"}
            )
            for app in apps
        )
        return sum(s or 0.0 for s in samples)

    async def launch_everywhere_at(moment: datetime, expected_runs: int) -> None:
        _Clock.moment = moment
        before = {job: skipped(job) for job in ("daily", "minutely")}
        started = sum(len(p.runs) for p in plugins)
        for plugin in plugins:
            plugin.release.clear()
        # The same launch, on both replicas, for both jobs, at the same moment.
        await asyncio.gather(
            *(
                s._launcher(s.registry.jobs[job])()
                for s in schedulers
                for job in ("daily", "minutely")
            )
        )
        # Wait until every launch has either entered its handler or been skipped: the
        # runs are still held, so both replicas were in flight together.
        await _until(
            lambda: (
                sum(len(p.runs) for p in plugins)
                - started
                + sum(skipped(j) - before[j] for j in before)
                == 4
            )
        )
        assert sum(len(p.runs) for p in plugins) - started == expected_runs
        for plugin in plugins:
            plugin.release.set()
        await asyncio.gather(*(t for s in schedulers for t in set(s._running)))

    await launch_everywhere_at(datetime(2026, 11, 26, 9, 0, 10, tzinfo=UTC), 2)  # both new
    await launch_everywhere_at(datetime(2026, 11, 26, 9, 1, 10, tzinfo=UTC), 1)  # minute only
    await launch_everywhere_at(datetime(2026, 11, 26, 11, 0, 30, tzinfo=UTC), 2)  # new day too

    runs = sorted((r.job, r.period) for p in plugins for r in p.runs)
    assert runs == [
        ("daily", "2026-11-26"),
        ("daily", "2026-11-27"),
        ("minutely", "2026-11-26T09:00"),
        ("minutely", "2026-11-26T09:01"),
        ("minutely", "2026-11-26T11:00"),
    ]
    async with apps[0][CONTEXT].sessions() as session:
        rows = (await session.scalars(select(JobRun))).all()
    assert sorted((r.job_name, r.period, r.status) for r in rows) == [
        (job, period, "done") for job, period in runs
    ]
    assert skipped("daily") == 4 and skipped("minutely") == 3
