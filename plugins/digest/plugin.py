"""The daily digest job: each team's pending reviews in its channel (or its webhook), and,
with ``digest.personal``, each reviewer's own as a direct message.

``@job("digest")`` runs at 09:00 on weekdays by default (``schedule.digest`` overrides
it), once per day across replicas. Teams are those of the configuration with a
``channel``; a team whose channel is missing is logged (a warning naming the team and
the channel) and skipped, and a team whose delivery fails never stops the others: the
run ends in error, naming them, once every team had its turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.chat import ChatUser
from bot.context import AppContext, PluginContext
from bot.db import utcnow
from bot.plugins import Plugin, job
from bot.scheduler import JobRunContext
from bot.settings import TeamConfig
from plugins.digest.config import DigestConfig
from plugins.digest.service import (
    PendingReview,
    by_reviewer,
    by_team,
    pending_reviews,
    personal_digest,
    team_digest,
)

if TYPE_CHECKING:
    from bot.mattermost import Mattermost

log = logging.getLogger("plugins.digest")


class DigestFailed(Exception):
    """Some teams' (or reviewers') digests could not be delivered; the others were."""


class DigestPlugin(Plugin):
    name = "digest"
    config_model = DigestConfig

    def __init__(self, app: AppContext | PluginContext) -> None:
        super().__init__(app)
        self.now: Callable[[], datetime] = utcnow  # tests set the clock

    @job("digest", cron="0 9 * * 1-5", period="day")
    async def digest(self, run: JobRunContext) -> None:
        """Post today's digests (see the module)."""
        await self.send(self.now())

    async def send(self, now: datetime) -> None:
        """Deliver every digest as of ``now`` (UTC). Raises ``DigestFailed`` after the
        others were delivered when some could not be."""
        chat = self.app.chat
        if chat is None:
            log.warning("digest: Mattermost is not configured; no digest sent")
            return
        config = DigestConfig.of(self.app.settings)
        async with self.app.sessions() as session:
            reviews = await pending_reviews(session)
        warn_after = timedelta(hours=config.warn_after_hours)
        failed: list[str] = []
        pending = by_team(reviews)
        for team in self.app.settings.teams:
            if team.channel is None:
                continue
            try:
                await self._team(chat, config, team, pending.get(team.name.lower(), []), now)
            except Exception:
                log.exception("digest: the digest of team %s could not be delivered", team.name)
                failed.append(team.name)
        if config.personal:
            failed += await self._personal(chat, by_reviewer(reviews), now, warn_after)
        if failed:
            raise DigestFailed(f"digest not delivered for: {', '.join(failed)}")

    async def _team(
        self,
        chat: Mattermost,
        config: DigestConfig,
        team: TeamConfig,
        reviews: list[PendingReview],
        now: datetime,
    ) -> None:
        settings = self.app.settings
        _ = self.app.translator(settings.locale)
        text = team_digest(team.name, reviews, now, timedelta(hours=config.warn_after_hours), _)
        if text is None:
            return
        webhook = config.webhook(team.name)
        if webhook is not None:
            await chat.post_webhook(webhook, text, locale=settings.locale)
            log.info(
                "digest: team %s: %d reviews posted through its webhook", team.name, len(reviews)
            )
            return
        channel = team.channel or ""
        if settings.mattermost_team is None:
            log.warning(
                "digest: team %s: MATTERMOST_TEAM is not set, so channel %s cannot be found",
                team.name,
                channel,
            )
            return
        if not await chat.post_to_channel(
            settings.mattermost_team, channel, text, locale=settings.locale
        ):
            log.warning(
                "digest: team %s: no channel %r in the Mattermost team %r (or the bot is not"
                " in it); its digest was not posted",
                team.name,
                channel,
                settings.mattermost_team,
            )
            return
        log.info("digest: team %s: %d reviews posted in %s", team.name, len(reviews), channel)

    async def _personal(
        self,
        chat: Mattermost,
        reviews: dict[str, list[PendingReview]],
        now: datetime,
        warn_after: timedelta,
    ) -> list[str]:
        """DM each reviewer their pending reviews, in their language; who failed."""
        failed: list[str] = []
        for username, theirs in reviews.items():

            def message(user: ChatUser, theirs: list[PendingReview] = theirs) -> str:
                _ = self.app.translator(user.locale)
                return personal_digest(theirs, now, warn_after, _) or ""

            try:
                await chat.direct_message(username, message)
            except Exception:
                log.exception("digest: the personal digest of %s could not be delivered", username)
                failed.append(f"@{username}")
        return failed
