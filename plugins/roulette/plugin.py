"""The roulette on GitLab: ``/roulette`` comments, and each review followed to its merge.

Effects happen once per delivery, even when a worker retries after a crash: the reply
note carries an invisible marker with the delivery and the reviewers it announced; a
retry that finds the marker only re-applies what the note said (the MR's reviewers, the
database rows), both idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Gauge

from bot.chat import ChatUser, CommandContext, Reply, markdown_text
from bot.context import AppContext, PluginContext
from bot.errors import CommandError
from bot.gitlab import (
    GitLabError,
    GitLabForbidden,
    GitLabNotFound,
    InvalidMergeRequestURL,
    MergeRequestInfo,
    MergeRequestRef,
    draft_change,
    gather_all,
    is_draft,
    parse_mr_url,
)
from bot.i18n import Message, translator
from bot.plugins import Plugin, command, on_gitlab
from bot.webhooks import GitLabEvent
from plugins.roulette import tracking
from plugins.roulette.chat import CHAT_USAGE, chat_reply, chat_usage, reviewer_dm
from plugins.roulette.config import RouletteConfig
from plugins.roulette.engine import Pick
from plugins.roulette.flags import Flags, parse_flags, split_words
from plugins.roulette.reply import (
    Announced,
    ended_note,
    error_note,
    find_reply,
    help_note,
    is_bot_reply,
    reply_note,
)
from plugins.roulette.service import Plan, Reads, RouletteService, Standing

log = logging.getLogger("plugins.roulette")


def _mr_link(url: str) -> str:
    """A merge request's URL as typed, without its query and fragment (free text that
    would be Markdown in the post): its scheme, host and path passed ``parse_mr_url``."""
    return urlsplit(url.strip("<>"))._replace(query="", fragment="").geturl()


TRIGGER = "/roulette"
RECENT_NOTES = 100
# CommonMark's line endings (LF, CRLF, CR) -- not ``str.splitlines``'s longer list -- and
# its blank lines (nothing but spaces and tabs).
_LINE_ENDING = re.compile(r"\r\n|\r|\n")
_BLANK = re.compile(r"[ \t]*")
_COMMAND = re.compile(r" {0,3}" + re.escape(TRIGGER) + r"(?=\s|$)(?P<arguments>.*)", re.DOTALL)


def command_arguments(body: str) -> str | None:
    """The arguments of the ``/roulette`` command a comment starts with, else ``None``.

    The command is the comment's first line, after at most three leading spaces: the word
    ``/roulette`` followed by whitespace or the end of the line (``/roulettex`` is not it).
    What follows on that line is returned (stripped; ``""`` for none); later lines are
    the comment's prose and ignored.

    This is what a reader sees as text in GitLab's Markdown (CommonMark, spec 0.31, §4.4
    "Indented code blocks"): a line indented by four or more columns -- four spaces, or a
    tab, which advances to the next tab stop of 4 -- starts a code block, so
    ``    /roulette`` or ``\t/roulette`` quotes the command, it does not give it. Quoted
    (``> /roulette``) and fenced (````` ``` `````) lines do not start with the word either.
    Line endings are CommonMark's (``\n``, ``\r\n``, ``\r``). Blank lines (spaces and
    tabs only) before the first line of text are skipped, as CommonMark skips them: the
    "first line" is the first one that renders, so ``\n/roulette`` is a command.
    """
    for line in _LINE_ENDING.split(body):
        if _BLANK.fullmatch(line):
            continue
        match = _COMMAND.fullmatch(line)
        return match["arguments"].strip() if match else None
    return None


class AvailableReviewers:
    """The ``available_reviewers{team,role}`` gauge: how many people can be picked
    now, per team (``""`` for none) and role (``maintainer``, ``reviewer``, ``trainee``).

    ``update`` replaces every value at once: a label set that no longer has anyone
    available (or no one at all) is set to 0, not left at its last count.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauge = Gauge(
            "available_reviewers",
            "People the roulette can pick now (not out of office, busy, away, at capacity "
            "or inactive), by team and role.",
            ["team", "role"],
            registry=registry,
        )
        self._seen: set[tuple[str, str]] = set()

    def update(self, standings: Iterable[Standing]) -> None:
        counts: dict[tuple[str, str], int] = dict.fromkeys(self._seen, 0)
        for standing in standings:
            labels = (standing.person.team or "", standing.person.role)
            counts[labels] = counts.get(labels, 0) + int(standing.available)
        for (team, role), count in counts.items():
            self.gauge.labels(team, role).set(count)
        self._seen = set(counts)


def _username(user: Any) -> str:
    return str(user.get("username") or "") if isinstance(user, Mapping) else ""


class RoulettePlugin(Plugin):
    name = "roulette"

    config_model = RouletteConfig

    # How often each replica refreshes its ``available_reviewers`` gauge, in seconds
    # (tests set ``refresh_interval`` on the instance, or this, before the app starts).
    REFRESH_INTERVAL: ClassVar[float] = 60.0

    def __init__(self, app: AppContext | PluginContext) -> None:
        super().__init__(app)
        self.metrics = tracking.ReviewMetrics(self.app.metrics.registry)
        self.available = AvailableReviewers(self.app.metrics.registry)
        self.refresh_interval = self.REFRESH_INTERVAL
        self._service: RouletteService | None = None
        self._bot_username: str | None = None
        self._identity: asyncio.Task[None] | None = None  # asking GitLab who the bot is
        self._refresher: asyncio.Task[None] | None = None

    @property
    def config(self) -> RouletteConfig:
        """The ``roulette:`` section of the settings."""
        return RouletteConfig.of(self.app.settings)

    @property
    def locale(self) -> str:
        """GitLab notes are written in the configured language."""
        return self.app.settings.locale

    @property
    def service(self) -> RouletteService:
        if self._service is None:
            app = self.app
            gitlab = app.gitlab if app.has_gitlab else None
            self._service = RouletteService(app.settings, app.reads, app.cache, gitlab)
        return self._service

    async def on_start(self) -> None:
        try:
            await self.metrics.refresh_active(self.app.reads)
        except Exception:  # a metric must not stop the bot from starting
            log.warning("could not count the active reviews at start", exc_info=True)
        if not self.app.serving:  # a one-shot command: no events, no gauge worth refreshing
            return
        if self.app.has_gitlab and self.app.settings.webhook_workers:
            # Asked now, not by the first note: that note's roll would wait for it.
            self._identity = asyncio.create_task(self._ask_identity(), name="roulette-identity")
        self._refresher = asyncio.create_task(
            self._refresh_availability(), name="roulette-available-reviewers"
        )

    async def on_stop(self) -> None:
        for task in (self._refresher, self._identity):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._refresher = self._identity = None
        await self.metrics.close()

    async def refresh_available(self) -> bool:
        """One tick of the ``available_reviewers`` refresh: everyone's availability now
        (``RouletteService.standings``), counted into the gauge. A failure is logged as a
        warning and leaves the gauge as it was; returns whether the gauge was updated."""
        try:
            standings = await self.service.standings()
        except Exception:  # a metric must never stop the bot
            log.warning("could not refresh the available reviewers", exc_info=True)
            return False
        self.available.update(standings)
        return True

    async def _refresh_availability(self) -> None:
        """This replica's gauges (``available_reviewers``, ``active_reviews``), refreshed
        every ``refresh_interval`` seconds until ``on_stop`` cancels it (not a scheduled
        job: every replica keeps its own, a web-only one included, whose rolls and
        events are processed elsewhere)."""
        while True:
            await self.refresh_available()
            try:
                await self.metrics.refresh_active(self.app.reads)
            except Exception:  # a metric must never stop the bot
                log.warning("could not count the active reviews", exc_info=True)
            await asyncio.sleep(self.refresh_interval)

    async def bot_username(self) -> str | None:
        """The bot's own GitLab account (``GET /user``), to ignore its notes; None when
        GitLab cannot say (the next note asks again). A replica that processes events
        asks at start (``on_start``); a note arriving meanwhile waits for that answer
        rather than asking again."""
        if self._bot_username is None and self.app.has_gitlab:
            if self._identity is None or self._identity.done():
                self._identity = asyncio.create_task(self._ask_identity())
            await asyncio.shield(self._identity)
        return self._bot_username

    async def _ask_identity(self) -> None:
        try:
            self._bot_username = (await self.app.gitlab.current_user()).username
        except Exception:
            log.warning("cannot tell which GitLab user the bot is", exc_info=True)

    # ----------------------------------------------------------------- GitLab events

    @on_gitlab("note")
    async def note(self, event: GitLabEvent) -> None:
        payload = event.payload
        attributes = payload.get("object_attributes") or {}
        if attributes.get("noteable_type") != "MergeRequest" or attributes.get("system"):
            return
        body = str(attributes.get("note") or "")
        author = _username(payload.get("user"))
        if is_bot_reply(body) or (author and author == await self.bot_username()):
            return
        project = payload.get("project") or {}
        mr = payload.get("merge_request") or {}
        project_path = str(project.get("path_with_namespace") or "")
        iid = int(mr.get("iid") or 0)
        arguments = command_arguments(body)
        if arguments is not None:
            if attributes.get("action") == "update":
                return  # an edited /roulette comment does not roll again
            if not self.app.has_gitlab:
                log.warning("a /roulette comment arrived but GITLAB_URL is not configured")
                return
            ref = MergeRequestRef(project_path, iid)
            project_id = int(project.get("id") or 0) or None
            branch = mr.get("target_branch")
            await self.roll(
                event.key, ref, arguments, project_id, branch if isinstance(branch, str) else None
            )
            return
        if not author:
            return
        project_id = int(project.get("id") or mr.get("target_project_id") or 0)
        await tracking.reviewer_commented(
            self.app.sessions, self.metrics, project_id, iid, author, body, event.received_at
        )

    @on_gitlab("merge_request")
    async def merge_request(self, event: GitLabEvent) -> None:
        payload = event.payload
        await tracking.merge_request_event(
            self.app.sessions, self.metrics, payload, event.received_at
        )
        self.metrics.refresh_soon(self.app.reads)
        auto = self.config.auto_roulette == "on_open"
        if auto and self.app.has_gitlab and _opened_ready(payload):
            project = payload.get("project") or {}
            attributes = payload.get("object_attributes") or {}
            ref = MergeRequestRef(
                str(project.get("path_with_namespace") or ""), int(attributes.get("iid") or 0)
            )
            await self.roll(event.key, ref, "")

    # ----------------------------------------------------------------- the roulette

    async def roll(
        self,
        key: str,
        ref: MergeRequestRef,
        text: str,
        project_id: int | None = None,
        target_branch: str | None = None,
    ) -> None:
        """Answer one ``/roulette``: pick, post the note, set the reviewers, record.

        ``project_id`` and ``target_branch`` are what the webhook said of the MR: with
        them, every read the pick needs starts at once, with the check of whether this
        delivery was already answered (see ``RouletteService.start_reads``).
        """
        reads = self.service.start_reads(ref, project_id=project_id, target_branch=target_branch)
        try:
            await self._roll(key, ref, text, project_id, reads)
        finally:
            await reads.close()

    async def _roll(
        self,
        key: str,
        ref: MergeRequestRef,
        text: str,
        project_id: int | None,
        reads: Reads,
    ) -> None:
        gitlab = self.app.gitlab
        try:
            mr, notes = await gather_all(
                reads.mr,
                gitlab.recent_notes(project_id or ref.project, ref.iid, limit=RECENT_NOTES),
            )
        except (GitLabNotFound, GitLabForbidden) as e:
            log.warning("roulette on %s: the bot cannot read the merge request (%s)", ref, e)
            self.metrics.triggers.labels("", "error").inc()
            if project_id:  # say so on the MR, if GitLab lets the bot write there at all
                reason = Message("the bot cannot read this merge request ({error})", {"error": e})
                try:
                    await gitlab.post_note(
                        project_id, ref.iid, error_note(reason, key, self.locale)
                    )
                except GitLabError as again:
                    log.warning("cannot answer on %s either: %s", ref, again)
            return
        answer = next((n for n in notes if find_reply([n.body], key) is not None), None)
        if answer is not None:
            announced = find_reply([answer.body], key)
            assert announced is not None
            if mr.state != "opened":
                log.info("delivery %s was already answered on %s, now %s", key, ref, mr.state)
                # Its record may be what the first attempt could not write (the database
                # failed after the note): kept as history, ended as GitLab says.
                team = self.service.team_of(mr, self.service.people())
                await tracking.record_announced(
                    self.app.sessions, self.metrics, mr, team, announced.picks, answer.created
                )
                return
            log.info("delivery %s was already answered on %s; finishing its work", key, ref)
            await self._apply_announced(mr, announced)
            return
        try:
            flags = parse_flags(split_words(text))
        except CommandError as e:
            note = error_note(e.message, key, self.locale)
            await gitlab.post_note(mr.project_id, mr.iid, note)
            self.metrics.triggers.labels("", "invalid").inc()
            return
        if flags.help:
            await gitlab.post_note(mr.project_id, mr.iid, help_note(key, self.locale))
            return
        if mr.state != "opened":  # merged or closed: say so, assign nobody, notify nobody
            log.info("roulette on %s: the merge request is %s; nobody assigned", ref, mr.state)
            await gitlab.post_note(mr.project_id, mr.iid, ended_note(mr.state, key, self.locale))
            self.metrics.triggers.labels("", "ended").inc()
            return
        try:
            await self.pick_and_announce(key, ref, flags, reads)
        except (GitLabNotFound, GitLabForbidden) as e:
            refused = Message("GitLab refused to show what it needs ({error})", {"error": e})
            await gitlab.post_note(mr.project_id, mr.iid, error_note(refused, key, self.locale))
            self.metrics.triggers.labels("", "error").inc()

    async def pick_and_announce(
        self, key: str, ref: MergeRequestRef, flags: Flags, reads: Reads | None = None
    ) -> Plan:
        """Pick, post the note on the MR, set its reviewers, record, notify: one roulette.

        ``reads``: the GitLab reads already started for this MR (``roll``). Raises
        ``tracking.ReviewEnded`` (before posting anything) when the MR is merged or
        closed: nobody is assigned on it.
        """
        plan = await self.service.plan(ref, flags, rng=random.Random(key), reads=reads)
        self.available.update(plan.standings)  # from what the plan read: no extra call
        mr = plan.mr
        if mr.state != "opened":
            raise tracking.ReviewEnded(str(ref), mr.state)
        note = reply_note(plan, key, explain=flags.explain, locale=self.locale)
        picks = plan.selection.picks
        new = [(p.username, p.role) for p in picks if not p.kept]
        kept = [p.username for p in picks if p.kept]

        async def announce() -> None:
            await self.app.gitlab.post_note(mr.project_id, mr.iid, note)

        await self._apply(mr, plan.team, new, kept, flags, announce)
        status = "ok" if picks else "nobody"
        self.metrics.triggers.labels(plan.team or "", status).inc()
        log.info(
            "roulette on %s: %s",
            ref,
            ", ".join(f"@{p.username} ({p.role})" for p in picks) or "nobody available",
        )
        await self._notify(mr, [p for p in picks if not p.kept])
        return plan

    # ----------------------------------------------------------------- chat

    @command(
        "roulette",
        description="Pick reviewers for a GitLab merge request",
        hint="MR_URL [reroll] [--explain] [--force] [--include @user] [--exclude @user] | help",
    )
    async def roulette_command(self, ctx: CommandContext) -> Reply:
        _ = translator(ctx.user.locale)
        words = split_words(ctx.text, CHAT_USAGE)
        if not words or words[0] in ("help", "--help", "-h"):
            return Reply(chat_usage(_))
        gitlab_url = self.app.settings.gitlab_url
        if not gitlab_url or not self.app.has_gitlab:
            raise CommandError(_("GitLab is not configured for this bot."))
        try:
            ref = parse_mr_url(words[0].strip("<>"), gitlab_url)
        except InvalidMergeRequestURL as e:
            typed = {k: markdown_text(v) for k, v in e.message.params.items()}  # as typed
            raise CommandError(
                "{reason}. Usage: {usage}",
                reason=replace(e.message, params=typed),
                usage=CHAT_USAGE,
            ) from None
        flags = parse_flags(words[1:], CHAT_USAGE)
        try:
            plan = await self.pick_and_announce(f"chat:{uuid.uuid4()}", ref, flags)
        except (GitLabNotFound, GitLabForbidden):
            raise CommandError(
                _(
                    "The bot cannot read {url} (no such merge request, or no access).",
                    url=_mr_link(words[0]),
                )
            ) from None
        except tracking.ReviewEnded as e:
            self.metrics.triggers.labels("", "ended").inc()
            if e.state == "closed":
                reason = _("{url} is closed, so nobody was assigned.", url=_mr_link(words[0]))
            else:
                reason = _(
                    "{url} is already merged, so nobody was assigned.", url=_mr_link(words[0])
                )
            raise CommandError(reason) from None
        return Reply(chat_reply(plan, _, self.mattermost_name, explain=flags.explain), "in_channel")

    def mattermost_name(self, gitlab_username: str) -> str:
        for user in self.app.settings.users:
            if user.gitlab.lower() == gitlab_username.lower():
                return user.mattermost_username
        return gitlab_username

    async def _notify(self, mr: MergeRequestInfo, picks: Sequence[Pick]) -> None:
        """A direct message to each new reviewer (``notify_reviewers: dm``), in their
        language, their role carrying the same marks as the chat answer and the note
        ("as team member (extra, learning)" for an extra trainee). With the handover area
        enabled, the message is its review request (``plugins.handover.api``), with
        Accept, Pass and Snooze buttons."""
        chat = self.app.chat
        if chat is None or self.config.notify_reviewers != "dm":
            return
        if self.app.enabled("handover"):  # a request with Accept / Pass / Snooze buttons
            # Imported here: the area's tables exist only where it is enabled.
            from plugins.handover import api as handover

            for pick in picks:
                try:
                    await handover.request_review(
                        self.app,
                        project_path=mr.project_path,
                        iid=mr.iid,
                        title=mr.title,
                        web_url=mr.web_url,
                        author=self.mattermost_name(mr.author),
                        reviewer=pick.username,
                        role_text=pick.role,
                    )
                except Exception as e:  # a missed request must not undo the roulette
                    log.warning("could not request %s: %s", pick.username, type(e).__name__)
            return
        for pick in picks:

            def text(user: ChatUser, pick: Pick = pick) -> str:
                author = self.mattermost_name(mr.author)
                return reviewer_dm(mr, pick, author, translator(user.locale))

            try:
                await chat.direct_message(self.mattermost_name(pick.username), text)
            except Exception as e:  # a missed DM must not undo the roulette
                log.warning("could not notify %s: %s", pick.username, type(e).__name__)

    async def _apply_announced(self, mr: MergeRequestInfo, announced: Announced) -> None:
        """Re-apply what an earlier reply to the same delivery announced (a retry)."""
        current = {r.lower() for r in mr.reviewers}
        picks = [(name, role) for name, role in announced.picks if name.lower() not in current]
        kept = [name for name, _ in announced.picks if name.lower() in current]
        team = self.service.team_of(mr, self.service.people())
        await self._apply(mr, team, picks, kept, Flags())

    async def _apply(
        self,
        mr: MergeRequestInfo,
        team: str | None,
        picks: Sequence[tuple[str, str]],
        kept: Sequence[str],
        flags: Flags,
        announce: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Set the reviewers in GitLab (``assign_in_gitlab``) while ``announce`` posts the
        note, then record the roll.

        The two writes go together (one round trip, not two): each is safe alone. A note
        whose reviewers were not set is finished by the retry, which finds the note's
        marker (``_apply_announced``); reviewers set without their note are kept in their
        slots by the retry's new pick (the engine keeps the MR's current reviewers), which
        announces them.
        """
        chosen = [name for name, _ in picks] + list(kept)
        replace = flags.force or flags.reroll
        released = [
            r for r in mr.reviewers if replace and r.lower() not in {c.lower() for c in chosen}
        ]
        ids: list[int] | None = None
        if self.config.assign_in_gitlab and chosen:
            reviewers = chosen if replace else list(dict.fromkeys([*mr.reviewers, *chosen]))
            ids = await tracking.reviewer_ids(self.app.reads, self.app.gitlab, reviewers, mr)
        # Made only now: a coroutine made before a lookup that raises is never awaited.
        writes: list[Awaitable[Any]] = [announce()] if announce is not None else []
        if ids is not None and set(ids) != set(mr.reviewer_ids):
            writes.append(self.app.gitlab.set_reviewers(mr.project_id, mr.iid, ids))
        await gather_all(*writes)
        recorded = await tracking.record_roll(self.app.sessions, mr, team, picks, kept, released)
        if recorded.missing:
            log.warning("picked users missing from the database: %s", ", ".join(recorded.missing))
        self.metrics.refresh_soon(self.app.reads)


def _opened_ready(payload: Mapping[str, Any]) -> bool:
    """A non-draft MR opened, or an MR leaving draft, with no reviewers yet.

    Drafts are read as every GitLab writes them (``draft``, else ``work_in_progress``;
    see ``bot.gitlab.is_draft`` and ``draft_change``).
    """
    attributes = payload.get("object_attributes") or {}
    if payload.get("reviewers") or attributes.get("reviewer_ids"):
        return False
    if is_draft(attributes) or attributes.get("state", "opened") != "opened":
        return False
    action = attributes.get("action")
    left_draft = draft_change(payload.get("changes")) == (True, False)
    return action == "open" or (action == "update" and left_draft)
