"""The metrics area's jobs: the daily aggregation and a cheap refresh of today.

``aggregate`` (default ``0 2 * * *``, once per day across replicas) aggregates yesterday
and today in ``schedule.timezone``; ``aggregate_today`` (every 15 minutes) aggregates
today only, so that the leaderboards' ``day`` period stays current. Each aggregated day
observes every reviewer's engagement score of that day in the summary
``reviewer_engagement_score`` (one observation per user-day and run: a day aggregated
again is observed again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta

from prometheus_client import Summary

from bot.context import AppContext, PluginContext
from bot.db import utcnow
from bot.plugins import Plugin, job
from bot.scheduler import JobRunContext
from plugins.metrics.service import DayResult, aggregate_day, local_today

log = logging.getLogger("plugins.metrics")


class MetricsPlugin(Plugin):
    """Aggregates the review lifecycle into ``review_metrics`` (see ``service``)."""

    name = "metrics"

    def __init__(self, app: AppContext | PluginContext) -> None:
        super().__init__(app)
        self.now: Callable[[], datetime] = utcnow  # tests set the clock
        self.engagement = Summary(
            "reviewer_engagement_score",
            "Engagement score of each reviewer-day, observed when the day is aggregated.",
            registry=self.app.metrics.registry,
        )

    async def aggregate_days(self, days: list[date]) -> list[DayResult]:
        """Aggregate ``days`` (one transaction each) and observe their engagement scores."""
        timezone = self.app.settings.schedule.timezone
        results = []
        for day in days:
            async with self.app.sessions.begin() as session:
                result = await aggregate_day(session, day, timezone, now=self.now())
            for score in result.engagement_scores:
                self.engagement.observe(score)
            log.info(
                "aggregated %s: %d row(s) written, %d deleted", day, result.written, result.deleted
            )
            results.append(result)
        return results

    @job("aggregate", cron="0 2 * * *", period="day")
    async def aggregate(self, run: JobRunContext) -> None:
        """Yesterday and today, in ``schedule.timezone``."""
        today = local_today(self.now(), self.app.settings.schedule.timezone)
        await self.aggregate_days([today - timedelta(days=1), today])

    @job("aggregate_today", cron="*/15 * * * *")
    async def aggregate_today(self, run: JobRunContext) -> None:
        """Today only, so that the ``day`` leaderboards are current."""
        await self.aggregate_days([local_today(self.now(), self.app.settings.schedule.timezone)])
