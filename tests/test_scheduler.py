"""Scheduled jobs: each (job, period) runs once across replicas; failures are recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.context import AppContext
from bot.db import create_engine, create_sessionmaker
from bot.models import JobRun
from bot.plugins import Plugin, Registry, job
from bot.scheduler import JobRunContext, Scheduler, run_guarded
from bot.settings import ScheduleConfig, Settings


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
