"""Badges: ``/badges`` (yours and your progress, someone else's, the catalogue) and the
daily ``badges`` job that evaluates and awards them.

The rules live in :mod:`plugins.badges.service`; this module reads the clock and the
configuration, counts ``badge_awarded_total{badge}``, announces awards in the winner's
team channel (when the team has a ``channel`` and chat is configured) and writes every
answer in the reader's language.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from babel.numbers import format_decimal
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.exc import SQLAlchemyError

from bot.chat import CommandContext, Reply, markdown_text
from bot.context import AppContext, PluginContext
from bot.db import utcnow
from bot.errors import CommandError
from bot.i18n import Gettext, Message, translator
from bot.plugins import Plugin, command, job
from bot.scheduler import JobRunContext
from plugins.badges import service
from plugins.badges.config import BadgesConfig
from plugins.badges.models import Badge, BadgeProgress
from plugins.badges.service import DEFAULT_TEXTS, NewAward

log = logging.getLogger("plugins.badges")

METRIC_LABELS: dict[str, Message] = {
    "reviews_completed": Message("reviews completed"),
    "reviews_other_teams": Message("reviews for other teams"),
    "comments": Message("comments"),
    "avg_ttfr_hours": Message("average hours to first review"),
    "avg_approval_hours": Message("average hours to approval"),
    "avg_comments_per_review": Message("comments per review"),
    "avg_comment_length": Message("characters per comment"),
    "engagement": Message("engagement points"),
}
PERIOD_LABELS: dict[str, Message] = {
    "day": Message("per day"),
    "week": Message("per week"),
    "month": Message("per month"),
    "all": Message("overall"),
}
_CATALOGUE_WORDS = frozenset({"catalogue", "catalog"})
_counters: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def awarded_counter(registry: CollectorRegistry) -> Counter:
    """``badge_awarded_total{badge}`` in ``registry`` (registered once per registry)."""
    if registry not in _counters:
        _counters[registry] = Counter(
            "badge_awarded_total",
            "Badges awarded, by badge slug.",
            ["badge"],
            registry=registry,
        )
    return _counters[registry]


def number(value: float, locale: str) -> str:
    """``value`` with at most two decimals, in the reader's notation (``1.5`` / ``1,5``)."""
    return format_decimal(round(value, 2), format="#,##0.##", locale=locale)


def badge_name(badge: Badge, _: Gettext) -> str:
    """The badge's name for a chat post (shown as typed: ``bot.chat.markdown_text``); a
    default badge's unchanged name in the reader's language."""
    texts = DEFAULT_TEXTS.get(badge.slug)
    if texts is not None and badge.name == str(texts[0]):
        return markdown_text(texts[0].render(_))
    return markdown_text(badge.name)


def badge_description(badge: Badge, _: Gettext) -> str:
    """The badge's description for a chat post (shown as typed); a default's unchanged
    one in the reader's language."""
    texts = DEFAULT_TEXTS.get(badge.slug)
    if texts is not None and badge.description == str(texts[1]):
        return markdown_text(texts[1].render(_))
    return markdown_text(badge.description)


_SHORTCODE = re.compile(r":[a-z0-9_+\-]+:")


def badge_emoji(emoji: str) -> str:
    """The badge's emoji for a chat post: a shortcode (``:zap:``) as it is, so it shows
    as the emoji; anything else shown as typed."""
    return emoji if _SHORTCODE.fullmatch(emoji) else markdown_text(emoji)


def rule(badge: Badge, _: Gettext) -> str:
    """How the badge is earned, in words: ``average hours to first review < 2 per month,
    at least 5 reviews``."""
    metric = METRIC_LABELS[badge.metric].render(_) if badge.metric in METRIC_LABELS else ""
    period = PERIOD_LABELS[badge.period].render(_) if badge.period in PERIOD_LABELS else ""
    if badge.operator == "top":
        text = _(
            "top {places} for {metric} {period}",
            places=int(badge.value),
            metric=metric,
            period=period,
        )
    else:
        text = _(
            "{metric} {operator} {value} {period}",
            metric=metric,
            operator=badge.operator,
            value=number(badge.value, _.locale),
            period=period,
        )
    if badge.min_reviews:
        minimum = _.ngettext(
            "at least {count} review",
            "at least {count} reviews",
            badge.min_reviews,
            count=badge.min_reviews,
        )
        text = _("{rule}, {minimum}", rule=text, minimum=minimum)
    return text


def usage(_: Gettext) -> str:
    return "\n".join(
        [
            _("Usage:"),
            "- " + _("`/badges`: your badges and your progress this period"),
            "- " + _("`/badges @user`: someone else's badges and progress"),
            "- " + _("`/badges catalogue`: every badge and how to earn it"),
        ]
    )


class BadgesPlugin(Plugin):
    name = "badges"
    requires = ("metrics",)
    config_model = BadgesConfig

    def __init__(self, app: AppContext | PluginContext) -> None:
        super().__init__(app)
        self.now: Callable[[], datetime] = utcnow  # tests set the clock
        self._seeded = False

    @property
    def awarded(self) -> Counter:
        """``badge_awarded_total{badge}``, on the app's registry."""
        return awarded_counter(self.app.metrics.registry)

    async def on_start(self) -> None:
        """Seed the default badges and apply the ``badges:`` configuration. A database
        that does not answer yet must not stop the bot from starting (readiness says so):
        the definitions are then seeded before the next evaluation."""
        self.awarded  # noqa: B018 - registered at start, so /metrics lists it from the first scrape
        try:
            await self._seed()
        except (SQLAlchemyError, OSError) as e:
            log.warning("badge definitions not seeded at start (%s); later", type(e).__name__)

    async def _seed(self) -> None:
        async with self.app.sessions.begin() as session:
            await service.seed(session, BadgesConfig.of(self.app.settings))
        self._seeded = True

    def today(self) -> date:
        """Today in ``schedule.timezone``."""
        return self.now().astimezone(ZoneInfo(self.app.settings.schedule.timezone)).date()

    # ----------------------------------------------------------------- the job

    @job("badges", cron="0 9 * * *", period="day")
    async def evaluate(self, run: JobRunContext) -> None:
        """Evaluate every badge on the data through the day before the run's day (the
        daily aggregation has it complete), award, count and announce."""
        try:
            today = date.fromisoformat(run.period)
        except ValueError:
            today = self.today()
        day = today - timedelta(days=1)
        if not self._seeded:
            await self._seed()
        async with self.app.sessions.begin() as session:
            made = await service.evaluate(session, day, now=self.now())
        for award in made:
            self.awarded.labels(award.slug).inc()
        log.info("badges for %s: %d new award(s)", day.isoformat(), len(made))
        for award in made:
            await self.announce(award)

    async def announce(self, award: NewAward) -> None:
        """Post the award in the winner's team channel, when the team has one and chat is
        configured; a failure is logged, never raised."""
        chat, settings = self.app.chat, self.app.settings
        team = settings.team(award.team) if award.team else None
        if chat is None or team is None or not team.channel or not settings.mattermost_team:
            return
        _ = translator(settings.locale)
        texts = DEFAULT_TEXTS.get(award.slug)
        name = texts[0].render(_) if texts and award.name == str(texts[0]) else award.name
        text = _(
            "{emoji} @{user} earned the badge **{name}** ({period})!",
            emoji=badge_emoji(award.emoji),
            user=award.mattermost or award.username,
            name=markdown_text(name),
            period=award.period,
        )
        try:
            posted = await chat.post_to_channel(
                settings.mattermost_team, team.channel, text, locale=settings.locale
            )
        except Exception:
            log.exception("could not announce badge %s in %s", award.slug, team.channel)
            return
        if not posted:
            log.warning("no channel %s to announce badge %s", team.channel, award.slug)

    # ----------------------------------------------------------------- the command

    @command(
        "badges",
        description="Your badges and progress, someone else's, or the catalogue",
        hint="[@user | catalogue]",
    )
    async def badges(self, ctx: CommandContext) -> Reply:
        ctx = await ctx.resolved()
        _ = translator(ctx.user.locale)
        words = ctx.text.split()
        head = words[0].casefold() if words else ""
        if len(words) > 1 or head == "help":
            if head == "help":
                return Reply(usage(_))
            raise CommandError(
                "{reason}\n\n{usage}",
                reason=_("`/badges` takes one argument at most."),
                usage=usage(_),
            )
        if head in _CATALOGUE_WORDS:
            return Reply(await self._catalogue(_))
        return Reply(await self._person(words[0] if words else None, ctx.user.username, _))

    async def _catalogue(self, _: Gettext) -> str:
        async with self.app.sessions() as session:
            found = await service.active_badges(session)
        if not found:
            return _("No badge is defined.")
        lines = [_("Badges you can earn:")]
        for badge, holders in found:
            count = _.ngettext("{count} holder", "{count} holders", holders, count=holders)
            lines.append(
                "- "
                + _(
                    "{emoji} **{name}**: {description} ({rule}; {holders})",
                    emoji=badge_emoji(badge.emoji),
                    name=badge_name(badge, _),
                    description=badge_description(badge, _),
                    rule=rule(badge, _),
                    holders=count,
                )
            )
        return "\n".join(lines)

    async def _person(self, given: str | None, own: str, _: Gettext) -> str:
        day = self.today() - timedelta(days=1)  # the job's last evaluation
        async with self.app.sessions() as session:
            user = await service.find_user(session, given or own)
            if user is None:
                if given is None:
                    raise CommandError(
                        "You are not in the reviewers' organisation: ask an administrator "
                        "to add your Mattermost username ({username}).",
                        username=own,
                    )
                raise CommandError(
                    "No reviewer called {username} in the organisation.",
                    username=markdown_text(given.lstrip("@")),
                )
            earned = await service.awards(session, user=user)
            standing = await service.progress(session, user.id, day)
        who = "@" + (user.mattermost_username or user.gitlab_username)
        lines = [_("Your badges:") if given is None else _("Badges of {user}:", user=who)]
        if not earned:
            lines.append(_("No badge yet."))
        for badge, award, _user in earned:
            lines.append(
                "- "
                + _(
                    "{emoji} **{name}** ({period})",
                    emoji=badge_emoji(badge.emoji),
                    name=badge_name(badge, _),
                    period=award.period,
                )
            )
        lines += ["", _("Progress this period:")]
        lines += [self._progress_line(badge, row, _) for badge, row in standing]
        if not standing:
            lines.append(_("No badge is defined."))
        return "\n".join(lines)

    def _progress_line(self, badge: Badge, row: BadgeProgress | None, _: Gettext) -> str:
        name = badge_name(badge, _)
        if row is None:
            status = _("no figures yet")
        else:
            value = _("no data") if row.value is None else number(row.value, _.locale)
            reviews = _.ngettext(
                "{count} review completed",
                "{count} reviews completed",
                row.reviews,
                count=row.reviews,
            )
            met = _("criterion met") if row.met else _("not yet")
            status = _("{value}, {reviews}: {met}", value=value, reviews=reviews, met=met)
        return "- " + _(
            "{emoji} **{name}** ({rule}): {status}",
            emoji=badge_emoji(badge.emoji),
            name=name,
            rule=rule(badge, _),
            status=status,
        )
