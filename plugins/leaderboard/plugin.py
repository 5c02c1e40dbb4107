"""``/leaderboard [team] [--period day|week|month|all] [--by reviews|engagement|speed]``.

The answer is posted in the channel (a leaderboard is shared): a Markdown table of the
top 10 (everyone tied with the 10th place too), then a link to the dashboard; the
caller's own rank follows as a message only they see. The default period is ``week``
(the ISO week, Monday to today, in ``schedule.timezone``) and the default ranking
``reviews``. Text in the reader's language; the adapter keeps every post within the
post limit (a huge tie is cut with "… and N more").
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from datetime import date, datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from babel.numbers import format_decimal

from bot.chat import CommandContext, Reply, markdown_text
from bot.context import AppContext, PluginContext
from bot.db import utcnow
from bot.errors import CommandError
from bot.i18n import Gettext, translator
from bot.plugins import Plugin, command
from bot.settings import Settings
from plugins.leaderboard.service import BY, PERIODS, Entry, ranking, team_name

SHOWN = 10  # ranks shown in chat (ties of the last one included)
DEFAULT_PERIOD = "week"
DEFAULT_BY = "reviews"


def usage(_: Gettext) -> str:
    """The command's usage, in the reader's language."""
    return _(
        "Usage: `/leaderboard [team] [--period day|week|month|all]"
        " [--by reviews|engagement|speed]` (default: this week, by reviews)"
    )


def _refusal(reason: str, _: Gettext) -> CommandError:
    return CommandError("{reason}\n\n{usage}", reason=reason, usage=usage(_))


def parse(text: str, _: Gettext) -> tuple[str | None, str, str]:
    """``[team] [--period P] [--by B]`` (also ``--period=P``) -> (team, period, by).

    The words that are not options, in order and joined by one space, are the team's name
    (``Platform Team``), and quotes keep a name as written (``"Platform  Team"``); words
    are split as a shell splits them. Raises ``CommandError`` with the usage for anything
    else (an unknown option or value, an unbalanced quote)."""
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise _refusal(_("Cannot read the words ({reason}).", reason=str(e)), _) from None
    named: list[str] = []
    options = {"period": DEFAULT_PERIOD, "by": DEFAULT_BY}
    allowed = {"period": PERIODS, "by": BY}
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word.startswith("--"):
            name, equals, value = word[2:].partition("=")
            if name not in options:
                raise _refusal(_("Unknown option: {option}.", option=markdown_text(word)), _)
            if not equals:
                if index >= len(words):
                    option = markdown_text(f"--{name}")
                    raise _refusal(_("Give a value to {option}.", option=option), _)
                value = words[index]
                index += 1
            value = value.casefold()
            if value not in allowed[name]:
                raise _refusal(
                    _(
                        "{value} is not a choice for {option}: {choices}.",
                        value=markdown_text(value),
                        option=f"--{name}",
                        choices=", ".join(allowed[name]),
                    ),
                    _,
                )
            options[name] = value
        else:
            named.append(word)
    return " ".join(named) or None, options["period"], options["by"]


def _number(value: float, locale: str, digits: int = 1) -> str:
    return format_decimal(value, format="#,##0." + "0" * digits, locale=locale)


def _hours(value: float | None, _: Gettext) -> str:
    return "-" if value is None else _("{hours} h", hours=_number(value, _.locale))


def _period_label(period: str, _: Gettext) -> str:
    labels = {
        "day": _("today"),
        "week": _("this week"),
        "month": _("this month"),
        "all": _("all time"),
    }
    return labels[period]


def _by_label(by: str, _: Gettext) -> str:
    labels = {
        "reviews": _("completed reviews"),
        "engagement": _("engagement"),
        "speed": _("speed to first review"),
    }
    return labels[by]


def caller_username(settings: Settings, mattermost: str) -> str:
    """The GitLab username of the Mattermost user ``mattermost``: the configured user with
    that Mattermost name, else the same name."""
    wanted = mattermost.casefold()
    found = next(
        (u.gitlab for u in settings.users if u.mattermost_username.casefold() == wanted), None
    )
    return found or mattermost


def render_table(
    entries: list[Entry],
    *,
    team: str | None,
    period: str,
    by: str,
    dashboard: str,
    _: Gettext,
) -> str:
    """The shared post: heading, the table of ranks up to ``SHOWN`` (ties included), the
    dashboard link."""
    where = {"period": _period_label(period, _), "by": _by_label(by, _)}
    heading = (
        _("**Leaderboard of {team}, {period}, by {by}**", team=markdown_text(team), **where)
        if team
        else _("**Leaderboard, {period}, by {by}**", **where)
    )
    link = _("[Open the dashboard]({url})", url=dashboard)
    shown = [e for e in entries if e.rank <= SHOWN]
    if not shown:
        return "\n\n".join([heading, _("Nobody is ranked in this period yet."), link])
    labels = [_("Reviewer"), _("Reviews"), _("Engagement"), _("Time to first review")]
    header = "| # | " + " | ".join(labels) + " |"
    rows = [header, "|---:|:---|---:|---:|---:|"]
    for e in shown:
        name = f"@{e.mattermost or e.username}"
        engagement = _number(e.engagement, _.locale)
        rows.append(
            f"| {e.rank} | {name} | {e.reviews_completed} | {engagement}"
            f" | {_hours(e.avg_ttfr_hours, _)} |"
        )
    return "\n".join([heading, "", *rows, "", link])


def own_rank(entries: list[Entry], username: str, _: Gettext) -> str:
    """The line telling the caller (GitLab ``username``) their rank, or that they have none."""
    wanted = username.casefold()
    mine = next((e for e in entries if e.username.casefold() == wanted), None)
    if mine is None:
        return _("You are not ranked in this period.")
    return _("Your rank: {rank} of {count}.", rank=mine.rank, count=len(entries))


class LeaderboardPlugin(Plugin):
    name = "leaderboard"
    requires = ("metrics",)

    def __init__(self, app: AppContext | PluginContext) -> None:
        super().__init__(app)
        self.now: Callable[[], datetime] = utcnow  # tests set the clock

    def today(self) -> date:
        """Today in ``schedule.timezone``."""
        return self.now().astimezone(ZoneInfo(self.app.settings.schedule.timezone)).date()

    def dashboard_url(self, period: str, team: str | None) -> str:
        query = {"period": period, **({"team": team} if team else {})}
        return f"{self.app.settings.public_url}/?{urlencode(query)}"

    @command(
        "leaderboard",
        description="Reviewers ranked by reviews, engagement or speed",
        hint="[team] [--period day|week|month|all] [--by reviews|engagement|speed]",
    )
    async def leaderboard(self, ctx: CommandContext) -> Reply:
        """The ranking (see the module); ``CommandError`` with the usage for bad arguments
        and for a team that does not exist."""
        ctx = await ctx.resolved()
        _ = translator(ctx.user.locale)
        if ctx.text.strip().casefold() in ("help", "--help"):
            return Reply(usage(_))
        team, period, by = parse(ctx.text, _)
        try:
            async with self.app.sessions() as session:
                shown_team = await team_name(session, team) if team else None
                entries = await ranking(
                    session, team=shown_team, period=period, by=by, today=self.today()
                )
        except LookupError:
            known = ", ".join(markdown_text(t.name) for t in self.app.settings.teams) or "-"
            shown = markdown_text(team)
            reason = _("Unknown team: {team}. Teams: {teams}.", team=shown, teams=known)
            raise _refusal(reason, _) from None
        table = render_table(
            entries,
            team=shown_team,
            period=period,
            by=by,
            dashboard=self.dashboard_url(period, shown_team),
            _=_,
        )
        mine = own_rank(entries, caller_username(self.app.settings, ctx.user.username), _)
        return Reply(table, visibility="in_channel", extra=(Reply(mine),))
