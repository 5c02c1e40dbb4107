"""Review requests answered from the DM: Accept, Pass, Snooze; nudges and hand-overs.

Each reviewer the roulette picks gets a DM with three buttons (``api.request_review``).
**Accept** records the acceptance (the assignment's first response unless an earlier one
exists); **Pass** opens a dialog for an optional reason, whose submission hands the slot
over (``plugins.roulette.api.replace_reviewer``) and requests the new reviewer; **Snooze**
offers "in 2 hours" and "tomorrow morning" (the reviewer's working hours and timezone).
The ``handover`` job (every five minutes, once per period across replicas) nudges a
silent reviewer once after ``handover.nudge_after`` of their working hours and hands the
slot over after ``handover.reassign_after``. Every change is recorded by a conditional
update before it is sent, so a double click, a retry or a restart acts once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prometheus_client import Counter
from sqlalchemy import func, select

from bot.chat import ActionContext, ActionResult, ChatUser, Dialog, DialogResult, DialogSubmission
from bot.context import AppContext, PluginContext
from bot.db import utcnow
from bot.models import User
from bot.plugins import Plugin, action, dialog, job
from bot.scheduler import JobRunContext
from plugins.handover import api, messages, service
from plugins.handover.config import HandoverConfig
from plugins.handover.models import ReviewRequest
from plugins.ooo import api as ooo
from plugins.roulette import api as roulette

log = logging.getLogger("plugins.handover")

REASON_DIALOG = "handover-pass"
REASON_LIMIT = 255


def _request_id(payload: Mapping[str, Any]) -> int | None:
    value = payload.get("request")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class HandoverPlugin(Plugin):
    name = "handover"
    requires = ("roulette",)
    config_model = HandoverConfig

    def __init__(self, app: AppContext | PluginContext) -> None:
        super().__init__(app)
        self.now: Callable[[], datetime] = utcnow  # tests set the clock
        registry = self.app.metrics.registry
        self.answered = Counter(
            "review_requests_answered",
            "Review requests answered from the DM, by answer (accepted, passed, snoozed).",
            ["answer"],
            registry=registry,
        )
        self.nudges = Counter(
            "review_nudges", "Reminders sent to silent reviewers.", registry=registry
        )
        self.handovers = Counter(
            "review_handovers",
            "Review slots handed over, by reason (passed, no_answer).",
            ["reason"],
            registry=registry,
        )

    @property
    def config(self) -> HandoverConfig:
        """The ``handover:`` section of the settings."""
        return HandoverConfig.of(self.app.settings)

    # ----------------------------------------------------------------- buttons

    @action("accept")
    async def accept(self, ctx: ActionContext) -> ActionResult:
        """Accept: the request answered, the first response recorded, buttons removed."""
        _ = self.app.translator(ctx.user.locale)
        request = await self._request(ctx.payload)
        if request is None:
            return ActionResult(ephemeral=_("This review request no longer exists."))
        if not await service.accept(self.app.sessions, request.id, self.now()):
            return ActionResult(ephemeral=_("This review request was already answered."))
        self.answered.labels("accepted").inc()
        line = _(":white_check_mark: You accepted this review.")
        return ActionResult(update=f"{messages.request_text(request, _)}\n\n{line}")

    @action("pass")
    async def pass_(self, ctx: ActionContext) -> ActionResult:
        """Pass: opens the dialog asking for an optional reason (its submission passes)."""
        _ = self.app.translator(ctx.user.locale)
        request = await self._request(ctx.payload)
        if request is None:
            return ActionResult(ephemeral=_("This review request no longer exists."))
        if not _is_open(request):
            return ActionResult(ephemeral=_("This review request was already answered."))
        return ActionResult(
            dialog=Dialog(
                callback_id=REASON_DIALOG,
                title=_("Pass this review"),
                elements=(
                    {
                        "display_name": _("Reason"),
                        "name": "reason",
                        "type": "textarea",
                        "optional": True,
                        "max_length": REASON_LIMIT,
                        "help_text": _("Optional: shown on the merge request."),
                    },
                ),
                submit_label=_("Pass"),
                context={"request": request.id},
            )
        )

    @dialog(REASON_DIALOG)
    async def pass_submitted(self, submission: DialogSubmission) -> DialogResult:
        """The pass dialog's submission: hands the slot over once, updates the DM."""
        _ = self.app.translator(submission.user.locale)
        if submission.cancelled:
            return DialogResult()
        request = await self._request(submission.context)
        if request is None:
            return DialogResult(error=_("This review request no longer exists."))
        reason = str(submission.submission.get("reason") or "").strip()[:REASON_LIMIT]
        now = self.now()
        if not await service.claim_pass(self.app.sessions, request.id, now, reason):
            return DialogResult(error=_("This review request was already answered."))
        self.answered.labels("passed").inc()
        t = self.app.translator()  # the note is in the configured language
        note_reason = reason or t("the reviewer passed")
        try:
            new = await roulette.replace_reviewer(
                self.app,
                request.project_path,
                request.mr_iid,
                request.reviewer,
                reason=note_reason,
                now=now,
            )
        except Exception:
            log.exception(
                "the pass of %s on %s!%s failed",
                request.reviewer,
                request.project_path,
                request.mr_iid,
            )
            await service.release(self.app.sessions, request.id)
            return DialogResult(error=_("The hand-over failed; try again in a moment."))
        self.handovers.labels("passed").inc()
        await self._request_new(request, new, now)
        status = self._passed_line(request, new, submission.user)
        await messages.update_request_post(self.app, request, status)
        return DialogResult()

    @action("snooze")
    async def snooze(self, ctx: ActionContext) -> ActionResult:
        """Snooze: first the two choices, then the chosen one recorded (the nudge waits)."""
        _ = self.app.translator(ctx.user.locale)
        request = await self._request(ctx.payload)
        if request is None:
            return ActionResult(ephemeral=_("This review request no longer exists."))
        if not _is_open(request):
            return ActionResult(ephemeral=_("This review request was already answered."))
        text = messages.request_text(request, _)
        choice = ctx.payload.get("until")
        if choice not in ("2h", "morning"):
            return ActionResult(
                update=f"{text}\n\n{_('Snooze until when?')}",
                buttons=messages.buttons(request.id, _, snooze_choices=True),
            )
        now = self.now()
        timezone = await self._timezone(request, ctx.user)
        until = await self._snooze_until(request, str(choice), timezone, now)
        if not await service.snooze(self.app.sessions, request.id, until, now):
            return ActionResult(ephemeral=_("This review request was already answered."))
        self.answered.labels("snoozed").inc()
        line = _(":zzz: Snoozed until {when}.", when=messages.local_time(until, timezone))
        return ActionResult(update=f"{text}\n\n{line}", buttons=messages.buttons(request.id, _)[:2])

    # ----------------------------------------------------------------- the job

    @job("handover", cron="*/5 * * * *")
    async def handover(self, run: JobRunContext) -> None:
        """Nudge silent reviewers once, hand their slot over later (see the module)."""
        await self.run_due(self.now())

    async def run_due(self, now: datetime) -> tuple[int, int]:
        """One pass of the job as of ``now`` (UTC): how many nudges and hand-overs."""
        config = self.config
        window = roulette.working_window(self.app.settings)
        nudged = handed = 0
        for waiting in await service.waiting(self.app.sessions):
            request = waiting.request
            try:
                away = await self._away(request.reviewer, waiting.since, now)
                seconds = roulette.working_seconds(
                    waiting.since, now, waiting.timezone, window, away
                )
                step = service.next_step(
                    seconds / 3600,
                    nudged=request.nudged_at is not None,
                    nudge_after=config.nudge_after,
                    reassign_after=config.reassign_after,
                )
                if step == "nudge" and await service.claim_nudge(
                    self.app.sessions, request.id, now
                ):
                    self.nudges.inc()
                    nudged += 1
                    await messages.send_request(self.app, request, nudge=True)
                elif step == "handover" and config.reassign_after is not None:
                    handed += await self._hand_over_silent(request, config.reassign_after, now)
            except Exception:  # one request must never stop the others
                log.exception("handover: request %s failed", request.id)
        return nudged, handed

    async def _hand_over_silent(self, request: ReviewRequest, hours: float, now: datetime) -> int:
        _ = self.app.translator()  # the note is in the configured language
        reason = _("no answer after {hours} working hours", hours=f"{hours:g}")
        if not await service.claim_handover(self.app.sessions, request.id, now, reason):
            return 0
        new = await roulette.replace_reviewer(
            self.app, request.project_path, request.mr_iid, request.reviewer, reason=reason, now=now
        )
        self.handovers.labels("no_answer").inc()
        await self._request_new(request, new, now)
        user = await messages.reader(self.app, request)
        t = self.app.translator(user.locale if user else None)
        if new:
            line = t(
                "This review was handed over to @{reviewer}: no answer after {hours} working"
                " hours.",
                reviewer=await messages.chat_name(self.app, new),
                hours=f"{hours:g}",
            )
        else:
            line = t(
                "This review was released: no answer after {hours} working hours, and"
                " nobody else is available.",
                hours=f"{hours:g}",
            )
        await messages.update_request_post(
            self.app, request, f"{messages.request_text(request, t)}\n\n{line}"
        )
        return 1

    # ----------------------------------------------------------------- helpers

    async def _request(self, payload: Mapping[str, Any]) -> ReviewRequest | None:
        request_id = _request_id(payload)
        return None if request_id is None else await service.get(self.app.sessions, request_id)

    async def _request_new(self, request: ReviewRequest, new: str | None, now: datetime) -> None:
        if new:
            await api.send_request(
                self.app,
                project_path=request.project_path,
                iid=request.mr_iid,
                title=request.title,
                web_url=request.web_url,
                author=request.author,
                reviewer=new,
                role_text=request.role,
                now=now,
            )

    def _passed_line(self, request: ReviewRequest, new: str | None, user: ChatUser) -> str:
        _ = self.app.translator(user.locale)
        if new:
            line = _("You passed this review; @{reviewer} takes it over.", reviewer=new)
        else:
            line = _("You passed this review; nobody else is available right now.")
        return f"{messages.request_text(request, _)}\n\n{line}"

    async def _timezone(self, request: ReviewRequest, user: ChatUser) -> str | None:
        async with self.app.sessions() as session:
            stored = await session.scalar(
                select(User.timezone).where(
                    func.lower(User.gitlab_username) == request.reviewer.lower()
                )
            )
        return stored or user.timezone

    async def _away(self, reviewer: str, since: datetime, now: datetime) -> set[Any]:
        if not self.app.enabled("ooo"):
            return set()
        async with self.app.sessions() as session:
            return await ooo.away_days(
                session, reviewer, since.date() - timedelta(days=1), now.date() + timedelta(days=1)
            )

    async def _snooze_until(
        self, request: ReviewRequest, choice: str, timezone: str | None, now: datetime
    ) -> datetime:
        if choice == "2h":
            return now + timedelta(hours=2)
        try:
            zone = ZoneInfo(timezone) if timezone else ZoneInfo("UTC")
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        midnight = datetime.combine(
            now.astimezone(zone).date() + timedelta(days=1), datetime.min.time(), zone
        )
        away = await self._away(request.reviewer, now, midnight + timedelta(days=14))
        window = roulette.working_window(self.app.settings)
        back = roulette.next_at_work(midnight, timezone, window, away)
        return back or midnight


def _is_open(request: ReviewRequest) -> bool:
    return request.handed_over_at is None and request.answer in (None, "snoozed")
