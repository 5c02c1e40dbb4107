"""``/ooo``: record, list and cancel out-of-office periods, in a dialog or as text.

``/ooo`` alone opens a dialog (``date`` pickers on Mattermost 11.1 and later, text
fields elsewhere); ``/ooo START END [reason]`` records at once; ``/ooo list``,
``/ooo cancel [ID]`` and ``/ooo help`` do what they say. Every answer is ephemeral and in
the reader's language. The rules live in :mod:`plugins.ooo.service`; this module turns
its refusals into sentences: ``CommandError`` for the text form, per-field errors for
the dialog.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, assert_never

from bot.chat import (
    CommandContext,
    Dialog,
    DialogResult,
    DialogSubmission,
    Reply,
    markdown_text,
)
from bot.context import AppContext, PluginContext
from bot.db import utcnow
from bot.errors import CommandError
from bot.i18n import Gettext, translator
from bot.plugins import Plugin, command, dialog
from plugins.ooo.service import (
    REASON_LIMIT,
    OooError,
    OooService,
    Period,
    clean_reason,
    parse_day,
    zone,
)

CALLBACK_ID = "ooo"
DATE_ELEMENTS_SINCE = (11, 1)  # Mattermost server version with ``date`` dialog elements
DATE_FORMAT = "YYYY-MM-DD"
# Mattermost's limits on dialog texts (a longer one makes the dialog fail to open).
TITLE_LIMIT = 24
DISPLAY_NAME_LIMIT = 24
HELP_TEXT_LIMIT = 150

_VERSION = re.compile(r"\s*v?(\d+)\.(\d+)")


def supports_date_elements(server_version: object) -> bool:
    """Whether a Mattermost server of this version (``"11.2.0"``...) has ``date`` elements."""
    found = _VERSION.match(server_version) if isinstance(server_version, str) else None
    return found is not None and (int(found[1]), int(found[2])) >= DATE_ELEMENTS_SINCE


def describe(period: Period, _: Gettext, *, markdown: bool = False) -> str:
    """``#3: 2026-12-01 to 2026-12-05 (reason)``; for a chat post (``markdown``) the
    reason is escaped (``bot.chat.markdown_text``), shown as typed."""
    start, end = period.start.isoformat(), period.end.isoformat()
    if period.reason:
        return _(
            "#{id}: {start} to {end} ({reason})",
            id=period.id,
            start=start,
            end=end,
            reason=markdown_text(period.reason) if markdown else period.reason,
        )
    return _("#{id}: {start} to {end}", id=period.id, start=start, end=end)


def explain(error: OooError, _: Gettext, *, markdown: bool = False) -> str:
    """The sentence a user reads for a refusal of the service; for a chat post
    (``markdown``) what they typed is escaped, shown as typed (the API and the dialog's
    field errors are plain text)."""
    match error.problem:
        case "missing":
            return _("Give a date: YYYY-MM-DD.")
        case "malformed":
            value = markdown_text(error.value) if markdown else error.value
            return _("Not a date: {value}. Use YYYY-MM-DD.", value=value)
        case "reversed":
            return _(
                "The last day ({end}) is before the first day ({start}).",
                start=_day(error.start),
                end=_day(error.end),
            )
        case "past":
            return _(
                "The last day ({end}) is already past: today is {today}.",
                end=_day(error.end),
                today=_day(error.today),
            )
        case "overlap":
            return _(
                "These days overlap your out-of-office period {period}.",
                period=_described(error.period, _, markdown=markdown),
            )
        case "too_long":
            return _(
                "The reason is too long: {length} characters, at most {limit}.",
                length=error.value,
                limit=REASON_LIMIT,
            )
        case "not_member":
            return _(
                "You are not in the reviewers' organisation: ask an administrator to add "
                "your Mattermost username ({username}).",
                username=error.value,
            )
        case "not_found":
            return _("You have no out-of-office period #{id}.", id=error.value)
        case "cancelled":
            return _(
                "Out-of-office period #{id} is already cancelled.",
                id=error.period.id if error.period else error.value,
            )
        case "over":
            return _(
                "Out-of-office period #{id} is already over.",
                id=error.period.id if error.period else error.value,
            )
        case "none":
            return _("You have no current or upcoming out-of-office period to cancel.")
        case _:
            assert_never(error.problem)


def _day(day: date | None) -> str:
    return day.isoformat() if day else ""


def _described(period: Period | None, _: Gettext, *, markdown: bool = False) -> str:
    return describe(period, _, markdown=markdown) if period else ""


def usage(_: Gettext) -> str:
    return "\n".join(
        [
            _("Usage:"),
            "- " + _("`/ooo`: open a form to record an out-of-office period"),
            "- "
            + _(
                "`/ooo START END [reason]`: record one directly; dates are YYYY-MM-DD, "
                "`today` or `tomorrow`, the last day included"
            ),
            "- " + _("`/ooo list`: your current and upcoming periods"),
            "- "
            + _(
                "`/ooo cancel [ID]`: cancel a period; without an ID, the current one, else the next"
            ),
            "- " + _("`/ooo help`: this help"),
        ]
    )


def _refusal(message: str, _: Gettext) -> CommandError:
    """Malformed input: what is wrong, then the usage."""
    return CommandError("{reason}\n\n{usage}", reason=message, usage=usage(_))


def ooo_dialog(today: date, server_version: object, _: Gettext) -> Dialog:
    """The dialog ``/ooo`` opens: ``start`` (default today), ``end`` and ``reason``.

    With ``date`` elements (Mattermost 11.1+) ``start`` defaults to ``today``, which the
    reader's client resolves in their own timezone; on older servers the text field holds
    ``today`` as given (the bot's best guess without asking anyone). ``fallback`` is the
    text form, for when the dialog cannot open.
    """
    default = today.isoformat()
    if supports_date_elements(server_version):
        day: dict[str, Any] = {"type": "date"}
        default = "today"  # a relative default (PROTOCOLS.md A3)
    else:
        day = {
            "type": "text",
            "subtype": "text",
            "placeholder": DATE_FORMAT,
            "help_text": _("Format: YYYY-MM-DD"),
        }
    elements: tuple[Mapping[str, Any], ...] = (
        {
            **day,
            "display_name": _("First day"),
            "name": "start",
            "default": default,
            "optional": False,
        },
        {**day, "display_name": _("Last day"), "name": "end", "optional": False},
        {
            "type": "text",
            "subtype": "text",
            "display_name": _("Reason"),
            "name": "reason",
            "placeholder": _("Optional, e.g. holiday"),
            "optional": True,
            "max_length": REASON_LIMIT,
        },
    )
    return Dialog(
        callback_id=CALLBACK_ID,
        title=_("Out of office")[:TITLE_LIMIT],
        elements=tuple(_within_limits(e) for e in elements),
        introduction_text=_(
            "You will not be picked as a reviewer from the first to the last day, both included."
        ),
        submit_label=_("Record"),
        fallback=dialog_fallback(today, _),
    )


def dialog_fallback(today: date, _: Gettext) -> str:
    """What ``/ooo`` answers when its dialog cannot open: the same, as text."""
    example = f"/ooo {today.isoformat()} {(today + timedelta(days=4)).isoformat()} "
    return "\n\n".join(
        [
            _(
                "The form could not be opened. Record the period as text instead, "
                "for example `{example}`.",
                example=example + _("holiday"),
            ),
            usage(_),
        ]
    )


def _within_limits(element: Mapping[str, Any]) -> Mapping[str, Any]:
    """A translation must not make Mattermost refuse to open the dialog."""
    limited = dict(element)
    limited["display_name"] = str(limited["display_name"])[:DISPLAY_NAME_LIMIT]
    if "help_text" in limited:
        limited["help_text"] = str(limited["help_text"])[:HELP_TEXT_LIMIT]
    return limited


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class OooPlugin(Plugin):
    name = "ooo"

    def __init__(self, app: AppContext | PluginContext) -> None:
        super().__init__(app)
        self.now: Callable[[], datetime] = utcnow  # tests set the clock
        self._service: OooService | None = None

    @property
    def service(self) -> OooService:
        if self._service is None:
            self._service = OooService(self.app.sessions, self.app.settings)
        return self._service

    # ----------------------------------------------------------------- the command

    @command(
        "ooo",
        description="Record, list or cancel your out-of-office periods",
        hint="[start end [reason]] | list | cancel [id]",
        opens_dialog=True,
    )
    async def ooo(self, ctx: CommandContext) -> Reply:
        words = ctx.text.split()
        if not words and ctx.trigger_id:  # the dialog: open it before any other I/O
            return self._open(ctx)
        ctx = await ctx.resolved()
        _ = translator(ctx.user.locale)
        head = words[0].casefold() if words else ""
        if head == "help":
            return Reply(usage(_))
        try:
            if not words:  # a message, not a slash command: no dialog can open
                return Reply(usage(_))
            if head == "list":
                if len(words) > 1:
                    raise _refusal(_("`/ooo list` takes no arguments."), _)
                return await self._list(ctx, _)
            if head == "cancel":
                if len(words) > 2:
                    raise _refusal(_("`/ooo cancel` takes one period number at most."), _)
                return await self._cancel(ctx, words[1] if len(words) == 2 else None, _)
            return await self._record(ctx, _)
        except OooError as e:
            raise CommandError(explain(e, _, markdown=True)) from e

    async def _today(self, ctx: CommandContext) -> date:
        return await self.service.local_today(ctx.user.username, ctx.user.timezone, now=self.now())

    def _open(self, ctx: CommandContext) -> Reply:
        """The dialog, from what the request carries: no lookup, no database (a trigger
        id may live only 3 s). Today is the user's if their timezone is known yet, else
        UTC's; the date elements of newer servers say ``today`` in the user's own."""
        _ = translator(ctx.user.locale)
        where = zone(ctx.user.timezone) or UTC
        today = self.now().astimezone(where).date()
        return Reply(dialog=ooo_dialog(today, ctx.extras.get("server_version"), _))

    async def _list(self, ctx: CommandContext, _: Gettext) -> Reply:
        today = await self._today(ctx)
        periods = await self.service.periods(ctx.user.username, today)
        if not periods:
            return Reply(_("You have no current or upcoming out-of-office period."))
        lines = [_("Your out-of-office periods:")]
        for period in periods:
            current = " " + _("(current)") if period.start <= today else ""
            lines.append(f"- {describe(period, _, markdown=True)}{current}")
        return Reply("\n".join(lines))

    async def _cancel(self, ctx: CommandContext, given: str | None, _: Gettext) -> Reply:
        period_id: int | None = None
        if given is not None:
            number = given.removeprefix("#")
            if not number.isdecimal() or not 0 < int(number) < 2**31:
                raise _refusal(
                    _(
                        "Not a period number: {value}. `/ooo list` shows them.",
                        value=markdown_text(given),
                    ),
                    _,
                )
            period_id = int(number)
        today = await self._today(ctx)
        period = await self.service.cancel(ctx.user.username, period_id, today)
        return Reply(
            _("Out of office cancelled: {period}.", period=describe(period, _, markdown=True))
        )

    async def _record(self, ctx: CommandContext, _: Gettext) -> Reply:
        words = ctx.text.split(maxsplit=2)
        today = await self._today(ctx)
        try:
            start = parse_day(words[0], "start", today)
        except OooError:
            if words[0][:1].isdigit():  # meant as a date
                raise
            word = markdown_text(words[0])
            raise _refusal(_("Unknown subcommand: {word}.", word=word), _) from None
        if len(words) == 1:
            raise _refusal(_("Give the last day too: `/ooo START END [reason]`."), _)
        end = parse_day(words[1], "end", today)
        reason = words[2] if len(words) == 3 else None
        period = await self.service.record(ctx.user.username, start, end, reason, today)
        return Reply(_recorded(period, _))

    # ----------------------------------------------------------------- the dialog

    @dialog(CALLBACK_ID)
    async def submitted(self, submission: DialogSubmission) -> DialogResult:
        if submission.cancelled:
            return DialogResult()
        _ = translator(submission.user.locale)
        user = submission.user
        try:
            today = await self.service.local_today(user.username, user.timezone, now=self.now())
        except OooError as e:
            return DialogResult(error=explain(e, _))
        values = submission.submission
        errors: dict[str, str] = {}
        start = end = today
        reason: str | None = None
        try:
            start = parse_day(_text(values.get("start")), "start", today)
        except OooError as e:
            errors["start"] = explain(e, _)
        try:
            end = parse_day(_text(values.get("end")), "end", today)
        except OooError as e:
            errors["end"] = explain(e, _)
        try:
            reason = clean_reason(_text(values.get("reason")))
        except OooError as e:
            errors["reason"] = explain(e, _)
        if errors:
            return DialogResult(errors=errors)
        try:
            period = await self.service.record(user.username, start, end, reason, today)
        except OooError as e:
            if e.field in ("start", "end", "reason"):
                return DialogResult(errors={e.field: explain(e, _)})
            return DialogResult(error=explain(e, _))
        return DialogResult(message=Reply(_recorded(period, _)))


def _recorded(period: Period, _: Gettext) -> str:
    return _(
        "Out of office recorded: {period}. You will not be picked as a reviewer on these days.",
        period=describe(period, _, markdown=True),
    )
