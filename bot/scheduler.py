"""The scheduler: APScheduler on the app's loop, each run guarded to happen once.

Several replicas fire the same cron at the same minute; the first to insert the
``job_runs`` row for (job, period) runs it, the others see the unique key and skip.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from bot.context import AppContext
from bot.db import utcnow
from bot.logs import bound_id, stored_error
from bot.models import JobRun
from bot.plugins import Handler, Registry

log = logging.getLogger("bot.scheduler")
OWNER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class JobRunContext:
    """What a job handler receives: its name and the period it runs for."""

    job: str
    period: str
    scheduled: bool


def minute_period(now: datetime | None = None) -> str:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M")


def period_key(period: str, now: datetime, timezone: str = "UTC") -> str:
    """The period ``now`` falls in, as a job declares it (``@job(..., period=...)``):
    ``minute`` (UTC, ``2026-11-30T09:00``), or in ``timezone`` ``day`` (``2026-11-30``),
    ``week`` (ISO, ``2026-W49``) or ``month`` (``2026-11``). A job runs once per period
    across replicas, whether the scheduler or ``roulette-bot run-job`` starts it."""
    if period == "minute":
        return minute_period(now)
    local = now.astimezone(ZoneInfo(timezone))
    if period == "day":
        return local.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return local.strftime("%Y-%m")
    raise ValueError(f"unknown job period {period!r}")


async def claim(context: AppContext, job: str, period: str) -> bool:
    """Insert the (job, period) row; False when another run already holds it."""
    try:
        async with context.sessions.begin() as session:
            session.add(JobRun(job_name=job, period=period, owner=OWNER))
    except IntegrityError:
        return False
    return True


async def _finish(context: AppContext, job: str, period: str, error: str | None) -> None:
    async with context.sessions.begin() as session:
        await session.execute(
            update(JobRun)
            .where(JobRun.job_name == job, JobRun.period == period)
            .values(status="error" if error else "done", finished_at=utcnow(), error=error)
        )


async def run_guarded(
    context: AppContext, handler: Handler, period: str, *, scheduled: bool = True
) -> str:
    """Run ``handler`` once for ``period``; returns "ok", "error" or "skipped"."""
    job = handler.spec.key
    with bound_id(f"job-{job}-{period}"):
        if not await claim(context, job, period):
            log.info("job %s for %s already ran elsewhere; skipped", job, period)
            context.metrics.job_runs.labels(job, "skipped").inc()
            return "skipped"
        error: str | None = None
        try:
            await handler.func(JobRunContext(job, period, scheduled))
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        except Exception as e:
            error = stored_error(e, context.settings.secret_values())
            log.exception("job %s for %s failed", job, period)
            context.metrics.unhandled_errors.labels("job").inc()
        finally:
            await asyncio.shield(_finish(context, job, period, error))
            outcome = "error" if error else "ok"
            context.metrics.job_runs.labels(job, outcome).inc()
        return outcome


class Scheduler:
    """Owns the APScheduler instance and the tasks of the runs in flight."""

    def __init__(self, context: AppContext, registry: Registry) -> None:
        self.context = context
        self.registry = registry
        self._scheduler: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[str]] = set()

    def cron_for(self, handler: Handler) -> str:
        """``schedule.<job>`` when the configuration overrides it, else the cron the
        job's handler declares."""
        configured = self.context.settings.schedule.cron(handler.spec.key)
        return configured or str(handler.spec.options["cron"])

    def period_for(self, handler: Handler, now: datetime | None = None) -> str:
        """The period a run of ``handler`` started at ``now`` claims."""
        return period_key(
            handler.spec.options.get("period", "minute"),
            now or datetime.now(UTC),
            self.context.settings.schedule.timezone,
        )

    def _launcher(self, handler: Handler) -> Callable[[], Awaitable[None]]:
        async def launch() -> None:
            period = self.period_for(handler)
            task = asyncio.create_task(run_guarded(self.context, handler, period))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

        return launch

    def start(self) -> None:
        schedule = self.context.settings.schedule
        for unused in sorted(set(schedule.model_extra or {}) - set(self.registry.jobs)):
            log.warning(
                "schedule.%s: no enabled feature area has a job %r; ignored", unused, unused
            )
        zone = ZoneInfo(self.context.settings.schedule.timezone)
        scheduler = AsyncIOScheduler(timezone=zone)
        for name, handler in sorted(self.registry.jobs.items()):
            trigger = CronTrigger.from_crontab(self.cron_for(handler), timezone=zone)
            options: dict[str, Any] = {"misfire_grace_time": 300, "coalesce": True}
            scheduler.add_job(self._launcher(handler), trigger, id=name, name=name, **options)
        scheduler.start()
        self._scheduler = scheduler
        log.info("scheduler started with %d job(s)", len(self.registry.jobs))

    async def stop(self, grace: float) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=grace)
            for task in pending:
                task.cancel()
