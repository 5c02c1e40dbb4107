"""Chat requests to plugin handlers: slash commands, dialog submissions, direct messages.

``POST /mattermost/command`` (form encoded, as Mattermost sends it): the token must be
one the bot registered or ``MATTERMOST_COMMAND_TOKENS`` lists (401 otherwise, nothing
done). The handler gets about two seconds; past that the user sees "working on it" at
once and the answer follows through the request's ``response_url``.

``POST /mattermost/dialog``: the ``state`` must be the value the bot signed when it
opened the dialog for that user (401 otherwise); invalid fields are answered with
Mattermost's ``{"errors": {...}}``. The handler gets the context the dialog was opened
with, verified.

``POST /mattermost/action``: a click on a message button (PROTOCOLS.md A8). Its
``context`` must be one the bot signed, unexpired, and the clicking ``user_id`` the user
the button was made for; otherwise, and for an action no handler takes, HTTP 200 with a
localised ``ephemeral_text`` and nothing done (Mattermost shows only a 200's answer). A
body that is not strict JSON is a 400. The ``@action`` handler's result becomes the
answer: ``update`` (the post's new message and buttons), ``ephemeral_text``, and a dialog
opened with the click's ``trigger_id``. Never a 5xx.

A direct message to the bot, or a message that mentions it, reaches the same command
handlers (``@roulette roulette MR_URL``, ``help``).

While the database is unavailable (:func:`bot.db.is_unavailable`), a command, a dialog
submission or a click that needed it is answered "the bot's database is unavailable; try
again in a minute" in the user's language (logged as a warning, not counted as a
defect), and no dialog is opened: the database is asked first (within
:data:`DIALOG_CHECK_TIMEOUT`), since what the dialog collects could not be saved.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any

from aiohttp import web

from bot.chat import (
    ActionContext,
    ActionResult,
    ChatUser,
    CommandContext,
    Dialog,
    DialogSubmission,
    Reply,
)
from bot.context import AppContext
from bot.db import is_unavailable, ping
from bot.errors import CommandError
from bot.http import BadInput, error_response, json_response, parse_json_object, read_form
from bot.i18n import Translator, translator
from bot.logs import bound_id
from bot.mattermost import ChatMessage, Mattermost
from bot.plugins import Registry

log = logging.getLogger("bot.chatops")

ANSWER_WITHIN = 2.0  # seconds before "working on it" and a later answer
#: Seconds the database may take to answer before a dialog opens (a trigger id lives 3 s).
DIALOG_CHECK_TIMEOUT = 0.8
_MATTERMOST_ID = re.compile(r"[a-z0-9]{26}")


class ChatOps:
    def __init__(self, context: AppContext, registry: Registry) -> None:
        self.context = context
        self.registry = registry
        self.chat: Mattermost | None = None
        self._later: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------------- slash commands

    async def command_endpoint(self, request: web.Request) -> web.Response:
        try:  # bad bytes, a field twice, NUL...: 400 (415: not a form), nothing done
            form = await read_form(request)
        except BadInput as e:
            return error_response(e.status, str(e))
        header = request.headers.get("Authorization", "")
        header = header if header.isascii() else ""  # non-UTF-8 bytes: no token at all
        token = form.get("token") or (header[6:] if header.startswith("Token ") else None)
        name = str(form.get("command", "")).strip().lstrip("/").lower()
        if self.chat is None or not self.chat.token_ok(token, name):
            return error_response(401, "unknown slash-command token")
        chat = self.chat
        user_id, user_name = str(form.get("user_id", "")), str(form.get("user_name", ""))
        handler = self.registry.commands.get(name)
        resolve_user: Callable[[], Awaitable[ChatUser]] | None = None
        if handler is not None and handler.spec.options.get("opens_dialog"):
            # Its dialog must open before the trigger id expires (3 s on older servers):
            # no Mattermost lookup first; the handler resolves the user when it needs to.
            user = self._known_user(user_id, user_name)
            resolve_user = partial(self._user, user_id, user_name)
        else:
            user = await self._user(user_id, user_name)
        _ = translator(user.locale)
        if handler is None:
            unknown = Reply(_("Unknown command /{name}.", name=name))
            return json_response(await chat.command_response(unknown, user.locale))
        response_url = str(form.get("response_url", ""))

        async def respond_later(reply: Reply) -> None:
            await chat.respond(response_url, reply, locale=user.locale)

        ctx = CommandContext(
            command=name,
            text=str(form.get("text", "")).strip(),
            user=user,
            channel_id=str(form.get("channel_id", "")),
            team_id=str(form.get("team_id", "")),
            trigger_id=str(form.get("trigger_id", "")),
            respond_later=respond_later if response_url else None,
            extras={"server_version": chat.server_version} if chat.server_version else {},
            resolve_user=resolve_user,
        )
        task = asyncio.create_task(self._run(handler.func, ctx))
        done, _pending = await asyncio.wait({task}, timeout=ANSWER_WITHIN)
        if task in done:
            reply = await self._open_dialog(ctx, task.result())
            return json_response(await chat.command_response(reply, ctx.user.locale))
        self._later.add(task)
        task.add_done_callback(lambda t: self._deliver_later(t, ctx))
        working = Reply(_("Working on it…"))
        return json_response(await chat.command_response(working, user.locale))

    async def _run(self, func: Any, ctx: CommandContext) -> Reply:
        """The handler's reply; user errors and failures become ephemeral messages."""
        _ = translator(ctx.user.locale)
        with bound_id():
            try:
                reply = await func(ctx)
            except CommandError as e:
                return Reply(e.render(_))
            except Exception as e:
                if is_unavailable(e):
                    log.warning("/%s: the database is unavailable (%s)", ctx.command, _kind(e))
                    return Reply(database_unavailable(_))
                log.exception("/%s failed", ctx.command)
                self.context.metrics.unhandled_errors.labels("chat").inc()
                return Reply(_("Something went wrong; the team running the bot has the details."))
        return reply if isinstance(reply, Reply) else Reply(str(reply))

    def _deliver_later(self, task: asyncio.Task[Reply], ctx: CommandContext) -> None:
        self._later.discard(task)
        if task.cancelled() or ctx.respond_later is None:
            return
        reply = task.result()
        if reply.dialog is not None:  # too late for the dialog: its trigger id has expired
            reply = Reply(reply.dialog.fallback or reply.text)
        follow_up = asyncio.ensure_future(ctx.respond_later(reply))
        self._later.add(follow_up)
        follow_up.add_done_callback(self._later.discard)

    async def _open_dialog(self, ctx: CommandContext, reply: Reply) -> Reply:
        """Open the dialog ``reply`` carries, if any; the reply to answer the command with.

        When Mattermost refuses to open it (an expired trigger id...), the answer is the
        dialog's ``fallback`` (how to do the same without it), else a short apology.
        """
        if reply.dialog is None or self.chat is None:
            return reply
        if not await self._database_answers(f"the /{ctx.command} dialog"):
            return Reply(database_unavailable(translator(ctx.user.locale)))
        try:
            await self.chat.open_dialog(ctx.trigger_id, ctx.user.id, reply.dialog)
        except Exception as e:  # an expired trigger id, Mattermost refusing the dialog...
            log.warning("could not open the /%s dialog: %s", ctx.command, type(e).__name__)
            _ = translator(ctx.user.locale)
            failed = _("The form could not be opened; please try again.")
            return Reply(reply.dialog.fallback or failed)
        return reply

    async def _database_answers(self, what: str) -> bool:
        """Whether the database answers within :data:`DIALOG_CHECK_TIMEOUT` seconds."""
        try:
            async with asyncio.timeout(DIALOG_CHECK_TIMEOUT):
                await ping(self.context.engine)
        except Exception as e:  # TimeoutError included: not opened, said so
            log.warning("%s not opened: the database is unavailable (%s)", what, _kind(e))
            return False
        return True

    def _known_user(self, user_id: str, username: str) -> ChatUser:
        """The user as far as known without I/O: cached, else as the request names them,
        in the configured locale."""
        cached = self.chat.cached_user(user_id) if self.chat is not None else None
        return cached or ChatUser(
            id=user_id, username=username, locale=self.context.settings.locale
        )

    async def _user(self, user_id: str, username: str) -> ChatUser:
        if self.chat is not None and user_id:
            try:
                return await self.chat.user(user_id)
            except Exception as e:
                log.warning("cannot read Mattermost user %s: %s", user_id, type(e).__name__)
        return ChatUser(id=user_id, username=username, locale=self.context.settings.locale)

    async def drain(self, grace: float) -> None:
        if self._later:
            _done, pending = await asyncio.wait(set(self._later), timeout=grace)
            for task in pending:
                task.cancel()

    # ----------------------------------------------------------------- dialogs

    async def dialog_endpoint(self, request: web.Request) -> web.Response:
        try:  # what the database could not store is refused here, before any work
            body = parse_json_object(await request.read())
        except BadInput as e:
            return error_response(e.status, str(e))
        callback_id = str(body.get("callback_id", ""))
        user_id = str(body.get("user_id", ""))
        if self.chat is None or not self.chat.verify_state(
            str(body.get("state", "")), callback_id, user_id
        ):
            return error_response(401, "this dialog was not opened by the bot")
        handler = self.registry.dialogs.get(callback_id)
        if handler is None:
            return error_response(404, f"no dialog {callback_id!r}")
        context = self.chat.state_context(str(body.get("state", "")), callback_id, user_id)
        if body.get("cancelled"):
            return json_response({})
        user = await self._user(user_id, "")
        _ = translator(user.locale)
        submission = body.get("submission") or {}
        try:
            result = await handler.func(
                DialogSubmission(
                    callback_id=callback_id,
                    user=user,
                    channel_id=str(body.get("channel_id", "")),
                    submission=submission if isinstance(submission, dict) else {},
                    context=context or {},
                )
            )
        except CommandError as e:
            return json_response({"error": e.render(_)})
        except Exception as e:
            # Mattermost shows ``error`` above the dialog: a sentence, never a traceback.
            if is_unavailable(e):
                log.warning("dialog %s: the database is unavailable (%s)", callback_id, _kind(e))
                return json_response({"error": database_unavailable(_)})
            log.exception("dialog %s failed", callback_id)
            self.context.metrics.unhandled_errors.labels("chat").inc()
            failed = _("Something went wrong; the team running the bot has the details.")
            return json_response({"error": failed})
        if result.errors:
            return json_response({"errors": dict(result.errors)})
        if result.error:
            return json_response({"error": result.error})
        if result.message is not None and body.get("channel_id"):
            try:
                await self.chat.ephemeral(
                    user_id, str(body["channel_id"]), result.message.text, locale=user.locale
                )
            except Exception as e:  # the dialog did its work; only the confirmation is lost
                log.warning("dialog confirmation not delivered: %s", type(e).__name__)
        return json_response({})

    # ----------------------------------------------------------------- buttons

    async def action_endpoint(self, request: web.Request) -> web.Response:
        """A button click: verify, dispatch to the ``@action`` handler, answer (module doc)."""
        try:  # what the strict loader refuses is a 400, before any work
            body = parse_json_object(await request.read())
        except BadInput as e:
            return error_response(e.status, str(e))
        user_id, user_name = body.get("user_id"), body.get("user_name")
        user_id = user_id if isinstance(user_id, str) else ""
        user_name = user_name if isinstance(user_name, str) else ""
        chat = self.chat
        signed = chat.verify_action(body.get("context")) if chat is not None else None
        if chat is None or signed is None:
            user = await self._clicker(user_id, user_name)
            return self._refusal(user, stale=True)
        user = await self._clicker(user_id, user_name)
        if not user_id or not hmac.compare_digest(user_id.encode(), signed.user_id.encode()):
            return self._refusal(user, stale=False)
        handler = self.registry.actions.get(signed.action)
        if handler is None:
            log.warning("a click for action %r, which no area handles", signed.action)
            return self._refusal(user, stale=True)
        ctx = ActionContext(
            action=signed.action,
            button=signed.button,
            user=user,
            channel_id=_text(body.get("channel_id")),
            post_id=_text(body.get("post_id")),
            trigger_id=_text(body.get("trigger_id")),
            payload=signed.payload,
        )
        _ = translator(user.locale)
        with bound_id():
            try:
                result = await handler.func(ctx)
            except CommandError as e:
                result = ActionResult(ephemeral=e.render(_))
            except Exception as e:
                if is_unavailable(e):
                    log.warning(
                        "action %s: the database is unavailable (%s)", signed.action, _kind(e)
                    )
                    result = ActionResult(ephemeral=database_unavailable(_))
                else:
                    log.exception("action %s failed", signed.action)
                    self.context.metrics.unhandled_errors.labels("chat").inc()
                    failed = _("Something went wrong; the team running the bot has the details.")
                    result = ActionResult(ephemeral=failed)
        if not isinstance(result, ActionResult):
            result = ActionResult()
        if result.dialog is not None:
            result = await self._open_action_dialog(ctx, result, result.dialog)
        try:
            return json_response(await chat.action_response(result, user))
        except Exception:  # a payload that cannot be signed...: the click did its work
            log.exception("the answer to action %s could not be built", signed.action)
            self.context.metrics.unhandled_errors.labels("chat").inc()
            failed = _("Something went wrong; the team running the bot has the details.")
            return json_response({"ephemeral_text": failed})

    async def _open_action_dialog(
        self, ctx: ActionContext, result: ActionResult, dialog: Dialog
    ) -> ActionResult:
        """Open ``dialog`` with the click's trigger id; when it cannot open, the clicker
        reads its ``fallback`` (or a short apology) instead."""
        assert self.chat is not None
        if not await self._database_answers(f"the {dialog.callback_id} dialog"):
            return replace(
                result, ephemeral=database_unavailable(translator(ctx.user.locale)), dialog=None
            )
        try:
            await self.chat.open_dialog(ctx.trigger_id, ctx.user.id, dialog)
        except Exception as e:  # an expired trigger id, Mattermost refusing the dialog...
            log.warning("could not open the %s dialog: %s", dialog.callback_id, type(e).__name__)
            _ = translator(ctx.user.locale)
            failed = _("The form could not be opened; please try again.")
            return replace(result, ephemeral=dialog.fallback or failed)
        return result

    async def _clicker(self, user_id: str, user_name: str) -> ChatUser:
        """Who clicked, for the language of the answer: looked up only for a well-formed
        Mattermost id (a forged body names no other API path), else as the body says."""
        if _MATTERMOST_ID.fullmatch(user_id):
            return await self._user(user_id, user_name)
        return ChatUser(id=user_id, username=user_name, locale=self.context.settings.locale)

    def _refusal(self, user: ChatUser, *, stale: bool) -> web.Response:
        """HTTP 200 with ``ephemeral_text`` (the only answer Mattermost shows the clicker):
        the button is no longer valid (``stale``: forged, tampered, expired,
        for no handler), or was made for someone else."""
        _ = translator(user.locale)
        if stale:
            return json_response({"ephemeral_text": _("This button is no longer valid.")})
        return json_response({"ephemeral_text": _("This button is not for you.")})

    # ----------------------------------------------------------------- messages

    async def on_message(self, message: ChatMessage) -> None:
        """A DM to the bot, or a mention of it, runs the command it names."""
        chat = self.chat
        if chat is None:
            return
        mentioned = chat.user_id in message.mentions or re.search(
            rf"(?<![\w@])@{re.escape(chat.username)}\b", message.text
        )
        if message.channel_type != "D" and not mentioned:
            return
        text = re.sub(rf"(?<![\w@])@{re.escape(chat.username)}\b", "", message.text).strip()
        text = text.removeprefix("/")
        name, _, rest = text.partition(" ")
        user = await self._user(message.sender_id, message.sender_name)
        _ = translator(user.locale)
        handler = self.registry.commands.get(name.lower())
        if handler is None:
            commands = ", ".join(sorted(self.registry.commands))
            reply = Reply(_("I know these commands: {commands}.", commands=commands))
        else:
            ctx = CommandContext(
                command=name.lower(),
                text=rest.strip(),
                user=user,
                channel_id=message.channel_id,
                source="message",
            )
            reply = await self._run(handler.func, ctx)
        root = message.root_id if message.channel_type != "D" else None
        await chat.post(message.channel_id, reply.text, root_id=root, locale=user.locale)


def database_unavailable(_: Translator) -> str:
    """What a user reads when the bot's database cannot be reached, in ``_``'s language."""
    return _("The bot's database is unavailable; try again in a minute.")


def _kind(error: BaseException) -> str:
    """The error's class and, for a wrapped driver error, the driver's (never its text,
    which may quote a connection string)."""
    cause = error.__cause__
    return f"{type(error).__name__} from {type(cause).__name__}" if cause else type(error).__name__


def _text(value: object) -> str:
    """A body field as text: a string as is, anything else empty."""
    return value if isinstance(value, str) else ""
