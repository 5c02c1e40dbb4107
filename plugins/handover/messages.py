"""What the handover area says in chat: the request DM, its buttons, and the lines that
replace them once answered. Every text is built for one reader (their translator)."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select

from bot.chat import Button, ChatUser, markdown_text
from bot.context import PluginContext
from bot.i18n import Translator
from bot.models import User
from plugins.handover import service
from plugins.handover.models import ReviewRequest

log = logging.getLogger("plugins.handover")

Gettext = Translator


def role_label(role: str, _: Gettext) -> str:
    """A roulette role code in the reader's language; any other text as given."""
    names = {"codeowner": _("code owner"), "team": _("team member"), "external": _("external")}
    return names.get(role, role)


def request_text(request: ReviewRequest, _: Gettext) -> str:
    """The request's first line: which MR, whose, in which role."""
    return _(
        "You were picked to review [{title}]({url}) by @{author}, as {role}.",
        title=markdown_text(request.title),
        url=request.web_url,
        author=request.author,
        role=role_label(request.role, _),
    )


def nudge_text(request: ReviewRequest, _: Gettext) -> str:
    """The one reminder of a silent request."""
    return _(
        "Reminder: [{title}]({url}) by @{author} is still waiting for your review.",
        title=markdown_text(request.title),
        url=request.web_url,
        author=request.author,
    )


def buttons(request_id: int, _: Gettext, *, snooze_choices: bool = False) -> tuple[Button, ...]:
    """Accept / Pass / Snooze; with ``snooze_choices`` the snooze's two choices instead
    of Snooze ("In 2 hours", "Tomorrow morning")."""
    payload = {"request": request_id}
    answer = (
        Button("accept", _("Accept"), "accept", payload, "primary"),
        Button("pass", _("Pass"), "pass", payload, "danger"),
    )
    if not snooze_choices:
        return (*answer, Button("snooze", _("Snooze"), "snooze", payload))
    return (
        *answer,
        Button("snooze2h", _("In 2 hours"), "snooze", {**payload, "until": "2h"}),
        Button("snoozemorning", _("Tomorrow morning"), "snooze", {**payload, "until": "morning"}),
    )


def local_time(moment: datetime, timezone: str | None) -> str:
    """``moment`` as ``YYYY-MM-DD HH:MM Zone`` in ``timezone`` (UTC when None or unknown)."""
    try:
        zone = ZoneInfo(timezone) if timezone else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M} {zone.key}"


async def chat_name(app: PluginContext, gitlab_username: str) -> str:
    """The Mattermost username of a GitLab user: the stored one, else the configured
    one, else the GitLab username itself."""
    async with app.sessions() as session:
        stored = await session.scalar(
            select(User.mattermost_username).where(
                func.lower(User.gitlab_username) == gitlab_username.lower()
            )
        )
    if stored:
        return str(stored)
    for user in app.settings.users:
        if user.gitlab.lower() == gitlab_username.lower():
            return user.mattermost_username
    return gitlab_username


async def send_request(app: PluginContext, request: ReviewRequest, *, nudge: bool) -> bool:
    """DM the request (or its reminder, ``nudge``) to its reviewer with the three
    buttons, and remember the post; whether it was delivered. Never raises."""
    chat = app.chat
    if chat is None:
        return False
    seen: list[ChatUser] = []

    def text(user: ChatUser) -> str:
        seen.append(user)
        _ = app.translator(user.locale)
        return nudge_text(request, _) if nudge else request_text(request, _)

    def keys(user: ChatUser) -> list[Button]:
        return list(buttons(request.id, app.translator(user.locale)))

    try:
        post_id = await chat.direct_message(
            await chat_name(app, request.reviewer), text, buttons=keys
        )
    except Exception as e:  # a missed DM must not undo the roulette or stop the job
        log.warning("could not DM %s its review request: %s", request.reviewer, type(e).__name__)
        return False
    if not post_id or not seen:
        return False
    await service.set_post(app.sessions, request.id, str(post_id), seen[-1].id)
    return True


async def update_request_post(app: PluginContext, request: ReviewRequest, status: str) -> None:
    """Replace the request's DM (no click: an automatic hand-over, a dialog's pass) by
    its first line and ``status``, without buttons, in the reviewer's language.
    ``status`` is built by the caller for the locale of ``reader``; never raises."""
    chat = app.chat
    if chat is None or not request.post_id or not request.chat_user_id:
        return
    try:
        await chat.update_post(request.post_id, status, intended_user_id=request.chat_user_id)
    except Exception as e:
        log.warning("could not update the request DM of %s: %s", request.reviewer, type(e).__name__)


async def reader(app: PluginContext, request: ReviewRequest) -> ChatUser | None:
    """The reviewer as Mattermost knows them (locale, timezone), or None."""
    chat = app.chat
    if chat is None or not request.chat_user_id:
        return None
    try:
        return await chat.user(request.chat_user_id)
    except Exception:
        return None
