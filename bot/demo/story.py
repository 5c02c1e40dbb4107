"""The demo's story: start everything, seed the organisation, play one review through,
print each step as the people involved would see it.

Every step is driven from outside the bot, as users would: slash commands and button
clicks through the Mattermost stand-in, comments, approvals and merges through the
GitLab stand-in, which delivers its webhooks to the bot's ``/webhook/gitlab``. Each
effect is waited for on its condition, with a timeout; one that does not come stops the
demo with one line (exit 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bot import migrate
from bot.app import REGISTRY, create_app
from bot.demo.world import (
    HOST,
    PEOPLE,
    PROJECT,
    STATUSES,
    TEAM,
    TEAMS,
    TOWN_SQUARE,
    StepTimedOut,
    World,
    as_seen,
    button_id,
    buttons,
    demo_settings,
    listen_socket,
    organisation,
    shape_gitlab,
    shape_mattermost,
    until,
)
from bot.errors import CommandFailed, UsageError, one_line
from bot.logs import configure_logging
from bot.sandbox import gitlab as gitlab_sandbox
from bot.sandbox import mattermost as mattermost_sandbox
from bot.sandbox.gitlab import GitLabStandIn
from bot.sandbox.mattermost import MattermostStandIn
from bot.sandbox.webhooks import WebhookSender
from bot.scheduler import period_key, run_guarded
from bot.users import sync_organisation

#: How long one effect may take before the demo gives up (a busy machine is slow).
STEP_TIMEOUT = 20.0
STARTUP_TIMEOUT = 30.0
INDENT = "    "
JSON = dict[str, Any]

# Earlier today: carol's reviews (author, title, changed file): the history a badge needs.
HISTORY = (
    ("bob", "Retry failed webhooks", "api/webhooks.py"),
    ("dave", "Cart badge shows the count", "web/cart.ts"),
    ("ivan", "Bump the base image", "ci/Dockerfile"),
    ("alice", "Index orders by customer", "db/orders.sql"),
    ("judy", "Alert on slow checkouts", "ops/alerts.yaml"),
)
STORY_CHANGES = ("api/payments.py", "db/saved_cards.sql", "web/checkout.ts", "docs/payments.md")
PENDING_CHANGES = ("web/theme.css", "web/cart.ts")
PASS_REASON = "on call this week, sorry"  # noqa: S105 - a reason, not a password
STEPS = 11


class Interrupted(CommandFailed):
    """Ctrl-C or SIGTERM before the story ended."""

    exit_code = 130


class Narrator:
    """Prints the story: ``[3/11] what happens``, then what people see, indented."""

    def __init__(self, out: TextIO, total: int = STEPS) -> None:
        self.out = out
        self.total = total
        self.number = 0

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, text: str) -> None:
        self.number += 1
        self.line(f"[{self.number}/{self.total}] {text}")

    def note(self, text: str) -> None:
        """A line of what happened, indented under the step."""
        self.line(INDENT + text)

    def show(self, heading: str, message: str) -> None:
        """A message as a reader sees it, under ``heading``, indented once more."""
        self.note(heading)
        for text in as_seen(message).splitlines():
            self.line(INDENT * 2 + text if text.strip() else "")


# --------------------------------------------------------------------------- starting


async def start(
    stack: contextlib.AsyncExitStack,
    port: int,
    folder: Path,
    say: Narrator,
    log_level: str | None = None,
) -> World:
    """The stand-ins, shaped; the bot on ``port`` (else a free one), migrated, its
    organisation synced and its Mattermost websocket connected. With ``log_level``,
    the logs go to stderr at that level, the demo's tokens masked."""
    gitlab = GitLabStandIn(secrets.token_urlsafe(16))
    shape_gitlab(gitlab)
    gitlab_url = await stack.enter_async_context(gitlab_sandbox.serve(gitlab, host=HOST))
    mattermost = MattermostStandIn()
    shape_mattermost(mattermost)
    mattermost_url = await stack.enter_async_context(
        mattermost_sandbox.serve(mattermost, host=HOST)
    )

    sock, taken = listen_socket(port)
    stack.callback(sock.close)
    bound = int(sock.getsockname()[1])
    url = f"http://{HOST}:{bound}"
    database = folder / "roulette.db"
    secret = secrets.token_urlsafe(16)
    settings = demo_settings(
        {
            "database_url": f"sqlite:///{database}",
            "spool_dir": str(folder / "spool"),  # everything in the demo's own folder
            "http_host": HOST,
            "http_port": bound,
            "public_url": url,
            "gitlab_url": gitlab_url,
            "gitlab_token": gitlab.token,
            "gitlab_webhook_secret": secret,
            "mattermost_url": mattermost_url,
            "mattermost_token": mattermost.bot_token,
            "mattermost_team": TEAM,
            "log_level": log_level or "error",
            "log_format": "console",
            "shutdown_timeout": 3,
            **organisation(),
        }
    )
    if log_level is not None:
        configure_logging(log_level, "console", settings.secret_values())
    say.line("Reviewer Roulette demo: a GitLab, a Mattermost and the bot, in this one process")
    say.note(f"database: {database} (a fresh SQLite file, removed at exit)")
    if taken:
        say.note(f"port {port} {taken}; the dashboard is on {url}/")
    for team in TEAMS:
        members = [p for p in PEOPLE if p.team == team]
        named = ", ".join(
            p.username + ("" if p.role == "reviewer" else f" ({p.role})") for p in members
        )
        say.note(f"team {team}: {named}")
    say.note(f"GitLab project {PROJECT}: CODEOWNERS with sections [Backend] [Frontend] ^[Docs]")
    for name, status in STATUSES.items():
        say.note(f"GitLab status of {name}: {status['availability']} ({status['message']})")
    say.line()

    try:
        await asyncio.to_thread(migrate.upgrade, settings.sync_database_url, settings.plugins)
    except (migrate.MigrationError, SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"the demo database could not be created: {one_line(e)}") from e
    app = create_app(settings)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=settings.shutdown_timeout
    )
    stack.push_async_callback(runner.cleanup)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    world = World(
        gitlab=gitlab,
        mattermost=mattermost,
        hook=WebhookSender(gitlab, f"{url}/webhook/gitlab", secret=secret),
        app=app,
        url=url,
    )
    context = world.context
    await sync_organisation(context.sessions, settings, context.gitlab_)
    await until(
        "the bot connects to Mattermost",
        lambda: context.chat_ is not None and context.chat_.state == "connected",
        STARTUP_TIMEOUT,
    )
    return world


# --------------------------------------------------------------------------- the story


async def slash(world: World, user: str, channel: str, line: str) -> Mapping[str, Any]:
    """``user`` types ``line`` in ``channel``; Mattermost's answer to their client."""
    status, body = await world.mattermost.run_slash_command(user, channel, line, team=TEAM)
    if status != 200:
        raise CommandFailed(f"{line.split()[0]} failed in Mattermost: {body.get('message')}")
    return body


class Story:
    """The steps, in order (``play``); each acts as a person would, waits for its
    effect and prints what people see."""

    def __init__(self, world: World, say: Narrator) -> None:
        self.world = world
        self.say = say
        self.today = datetime.now(UTC).date()
        self.iid = 0  # the merge request of the story
        self.reviewers: list[str] = []
        self.requests: dict[str, JSON] = {}  # each reviewer's request (the DM)

    async def play(self) -> None:
        await self.absence()
        await self.history()
        await self.opened()
        await self.roulette()
        await self.direct_messages()
        await self.passed()
        await self.accepted()
        await self.merged()
        await self.pending()
        await self.daily_jobs()
        await self.dashboard()

    # ---- helpers

    async def settled(self, what: str) -> None:
        """Wait until the bot has processed every webhook it received."""
        await until(what, self.world.deliveries_done, STEP_TIMEOUT)

    async def ask(self, iid: int, author: str, reviewer: str) -> None:
        """``author`` asks ``reviewer`` for a review in GitLab's sidebar."""
        self.world.gitlab.set_reviewers(PROJECT, iid, [reviewer], by=author)
        change = {"reviewers": {"previous": [], "current": [reviewer]}}
        await self.world.hook.mr_event(PROJECT, iid, "update", author, changes=change)

    async def approve(self, iid: int, reviewer: str) -> None:
        """``reviewer`` approves: GitLab sends ``approval``, then ``approved`` (no rule
        asks for more approvals)."""
        self.world.gitlab.approve(PROJECT, iid, reviewer)
        await self.world.hook.mr_event(PROJECT, iid, "approval", reviewer)
        await self.world.hook.mr_event(PROJECT, iid, "approved", reviewer)

    async def merge(self, iid: int, by: str) -> None:
        self.world.gitlab.merge(PROJECT, iid, by=by)
        await self.world.hook.mr_event(PROJECT, iid, "merge", by)

    async def request_to(self, name: str) -> JSON:
        """The bot's review request in ``name``'s DM (the post with buttons)."""
        found = await until(
            f"the review request to {name}",
            lambda: [p for p in self.world.dms(name) if buttons(p)],
            STEP_TIMEOUT,
        )
        return found[-1]

    async def click(self, name: str, button: str) -> None:
        post = self.requests[name]
        status, _answer = await self.world.mattermost.click(
            name, str(post["id"]), button_id(post, button)
        )
        if status != 200:
            raise CommandFailed(f"the {button} button answered {status}")

    def show_request(self, name: str, post: Mapping[str, Any]) -> None:
        shown = " ".join(f"[{b}]" for b in buttons(post))
        self.say.show(f"@{name}'s DM:", f"{post['message']} {shown}")

    def show_answered(self, name: str) -> None:
        now = self.world.now(self.requests[name])
        self.say.show(f"@{name}'s DM now ends:", str(now["message"]).splitlines()[-1])

    # ---- the steps

    async def absence(self) -> None:
        """An absence, recorded the way a person records it: ``/ooo``."""
        mattermost = self.world.mattermost
        line = f"/ooo {self.today} {self.today + timedelta(days=4)} conference"
        self.say.step(f"erin types {line} in ~{TOWN_SQUARE}")
        before = len(mattermost.ephemerals_for("erin"))
        body = await slash(self.world, "erin", TOWN_SQUARE, line)
        answer = str(body.get("text") or "")
        if answer.endswith("…"):  # "Working on it…": the answer follows
            later = await until(
                "the answer to /ooo", lambda: mattermost.ephemerals_for("erin")[before:], 20
            )
            answer = str(later[-1]["message"])
        self.say.show("only erin sees:", answer)

    async def history(self) -> None:
        """Earlier today: carol's reviews, through GitLab's webhooks (a badge needs five)."""
        self.say.step(
            f"earlier today: carol reviewed {len(HISTORY)} merge requests"
            " (asked in GitLab, answered, merged)"
        )
        hook = self.world.hook
        sent = len(hook.deliveries)
        for author, title, path in HISTORY:
            mr = self.world.gitlab.add_merge_request(
                PROJECT, author=author, title=title, changes=[path]
            )
            iid = int(mr["iid"])
            what = f"the bot follows !{iid}"
            # One at a time, each waited for: GitLab sends them minutes apart.
            await hook.mr_event(PROJECT, iid, "open", author)
            await self.settled(what)
            await self.ask(iid, author, "carol")
            await self.settled(what)
            await hook.comment(PROJECT, iid, "carol", "Looks right to me; one nit inline.")
            await self.settled(what)
            await self.approve(iid, "carol")
            await self.settled(what)
            await self.merge(iid, author)
            await self.settled(what)
        sent = len(hook.deliveries) - sent
        self.say.note(
            f"!1 to !{len(HISTORY)} merged; the bot followed them through {sent} webhooks"
        )

    async def opened(self) -> None:
        mr = self.world.gitlab.add_merge_request(
            PROJECT,
            author="alice",
            title="Pay with a saved card",
            labels=["team::backend"],
            changes=list(STORY_CHANGES),
        )
        self.iid = int(mr["iid"])
        self.say.step(f'alice opens !{self.iid} "Pay with a saved card" in {PROJECT}')
        await self.world.hook.mr_event(PROJECT, self.iid, "open", "alice")
        await self.settled(f"the bot receives the opening of !{self.iid}")
        self.say.note(self.world.mr_url(self.iid))
        self.say.note(f"changes: {', '.join(STORY_CHANGES)}")

    async def roulette(self) -> None:
        """``/roulette`` in Mattermost: the answer in the channel, the note and the
        reviewers in GitLab."""
        world, iid = self.world, self.iid
        url = world.mr_url(iid)
        line = f"/roulette {url} --explain"
        self.say.step(f"alice types {line} in ~{TOWN_SQUARE}")
        before = len(world.channel_posts(TOWN_SQUARE))
        await slash(world, "alice", TOWN_SQUARE, line)
        posted = await until(
            "the roulette's answer in the channel",
            lambda: [p for p in world.channel_posts(TOWN_SQUARE)[before:] if url in p["message"]],
            STEP_TIMEOUT,
        )
        self.reviewers = await until(
            "reviewers set in GitLab", lambda: world.reviewers(iid), STEP_TIMEOUT
        )
        notes = await until("the bot's note on GitLab", lambda: world.bot_notes(iid), STEP_TIMEOUT)
        self.say.show(f"~{TOWN_SQUARE}:", posted[-1]["message"])
        self.say.show(f"GitLab, note on !{iid}:", notes[-1]["body"])
        self.say.note("GitLab, reviewers: " + ", ".join(f"@{n}" for n in self.reviewers))

    async def direct_messages(self) -> None:
        self.say.step("each reviewer gets a direct message with Accept / Pass / Snooze")
        for name in self.reviewers:
            self.requests[name] = await self.request_to(name)
            self.show_request(name, self.requests[name])

    async def passed(self) -> None:
        """A pass: the reason dialog, the slot handed to someone else, the MR told."""
        world, iid = self.world, self.iid
        passer = self.reviewers[0]
        self.say.step(f'{passer} clicks Pass, with the reason "{PASS_REASON}"')
        opened = len(world.mattermost.dialogs_opened)
        notes = len(world.bot_notes(iid))
        await self.click(passer, "Pass")
        dialogs = await until(
            "the reason dialog", lambda: world.mattermost.dialogs_opened[opened:], STEP_TIMEOUT
        )
        status, answer = await world.mattermost.submit_dialog(
            dialogs[-1], passer, {"reason": PASS_REASON}
        )
        if status != 200 or answer:
            raise CommandFailed(f"the pass was refused: {answer or status}")

        def handed_over() -> list[str]:
            now = world.reviewers(iid)
            return now if passer not in now and len(now) == len(self.reviewers) else []

        now = await until("a new reviewer in GitLab", handed_over, STEP_TIMEOUT)
        [new] = [name for name in now if name not in self.reviewers]
        note = await until(
            "the hand-over note on GitLab", lambda: world.bot_notes(iid)[notes:], STEP_TIMEOUT
        )
        self.requests[new] = await self.request_to(new)
        self.show_answered(passer)
        self.say.show(f"GitLab, note on !{iid}:", note[-1]["body"])
        self.show_request(new, self.requests[new])
        self.reviewers = now

    async def accepted(self) -> None:
        """Accept from the DM, then a comment and an approval in GitLab."""
        world, iid = self.world, self.iid
        reviewer = next(name for name in self.reviewers if name in self.requests)
        self.say.step(f"{reviewer} clicks Accept, then comments on !{iid} and approves it")
        await self.click(reviewer, "Accept")
        self.show_answered(reviewer)
        comment = "Nice. Could the card's last digits come from the token, not the request?"
        await world.hook.comment(PROJECT, iid, reviewer, comment)
        await self.settled(f"the bot reads {reviewer}'s comment")
        await self.approve(iid, reviewer)
        await self.settled(f"the bot reads {reviewer}'s approval")
        mine = (await world.assignments(iid))[reviewer]
        if mine.approved_at is None or mine.first_response_at is None:
            raise CommandFailed(f"the bot did not record {reviewer}'s approval")
        waited = (mine.first_response_at - mine.assigned_at).total_seconds()
        self.say.show(f"GitLab, {reviewer} comments:", comment)
        self.say.note(
            f"the bot records {reviewer}'s first answer, {waited:.1f} s after the request,"
            " and the approval"
        )

    async def merged(self) -> None:
        world, iid = self.world, self.iid
        self.say.step(f"alice merges !{iid}")
        await self.merge(iid, "alice")

        async def recorded() -> bool:
            review = await world.review(iid)
            return review is not None and review.state == "merged"

        await until("the merge recorded", recorded, STEP_TIMEOUT)
        ends = await world.assignments(iid)
        self.say.note(
            f"the bot records !{iid} as merged; "
            + ", ".join(f"@{name} {row.status}" for name, row in sorted(ends.items()))
        )

    async def pending(self) -> None:
        """A second merge request, rolled from a GitLab comment, stays pending: the
        digest has something to list."""
        world = self.world
        mr = world.gitlab.add_merge_request(
            PROJECT,
            author="dave",
            title="Dark mode for the cart",
            labels=["team::frontend"],
            changes=list(PENDING_CHANGES),
        )
        iid = int(mr["iid"])
        self.say.step(f'dave opens !{iid} "Dark mode for the cart" and comments /roulette on it')
        await world.hook.mr_event(PROJECT, iid, "open", "dave")
        await world.hook.comment(PROJECT, iid, "dave", "/roulette")
        await self.settled(f"the roulette on !{iid}")
        notes = await until("the bot's note", lambda: world.bot_notes(iid), STEP_TIMEOUT)
        self.say.show(f"GitLab, note on !{iid}:", notes[-1]["body"])

    async def daily_jobs(self) -> None:
        """The aggregation and the digest of today, and the badges as tomorrow morning's
        run awards them (the day it judges is the day before the run's)."""
        world = self.world
        self.say.step(
            "the daily jobs run: aggregate, badges (as tomorrow morning, judging today), digest"
        )
        before = {team: len(world.channel_posts(team)) for team in TEAMS}
        await self.run_job("aggregate")
        await self.run_job("badges", ahead=timedelta(days=1))
        await self.run_job("digest")
        bot_id = world.mattermost.bot["id"]

        def posted() -> list[tuple[str, JSON]]:
            found = [
                (team, post)
                for team in TEAMS
                for post in world.channel_posts(team)[before[team] :]
                if post["user_id"] == bot_id
            ]
            return found if any("waiting for review" in p["message"] for _, p in found) else []

        for team, post in await until("the digest in a team channel", posted, STEP_TIMEOUT):
            self.say.show(f"~{team}:", post["message"])

    async def run_job(self, job: str, ahead: timedelta | None = None) -> None:
        """Run ``job`` as the scheduler does, once for its period; ``ahead``: the run of
        a later period (tomorrow's)."""
        context = self.world.context
        handler = self.world.app[REGISTRY].jobs[job]
        kind = handler.spec.options.get("period", "minute")
        moment = datetime.now(UTC) + (ahead or timedelta())
        period = period_key(kind, moment, context.settings.schedule.timezone)
        outcome = await run_guarded(context, handler, period, scheduled=False)
        if outcome == "error":
            raise CommandFailed(f"the {job} job failed (LOG_LEVEL=info shows why)")
        said = "done" if outcome == "ok" else "already run by the scheduler"
        judged = f" (judging {(moment - ahead).date()})" if ahead else ""
        self.say.note(f"{job}: {said} for {period}{judged}")

    async def dashboard(self) -> None:
        url = self.world.url + "/"
        self.say.step(f"the dashboard answers at {url}")
        timeout = aiohttp.ClientTimeout(total=STEP_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
            page = await response.text()
        if response.status != 200:
            raise CommandFailed(f"the dashboard answered {response.status}")
        self.say.note(f"GET {url} answered {response.status} ({len(page):,} bytes of HTML)")


# --------------------------------------------------------------------------- running


async def demo(once: bool, port: int, out: TextIO, log_level: str | None = None) -> None:
    """Start, play, then (without ``once``) serve until Ctrl-C or SIGTERM. Raises
    ``CommandFailed`` (one line) when a step does not happen in time, ``Interrupted``
    when stopped before the story ended. ``log_level``: see ``start``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    say = Narrator(out)
    with tempfile.TemporaryDirectory(prefix="roulette-demo-") as folder:
        async with contextlib.AsyncExitStack() as stack:
            story = asyncio.create_task(_start_and_play(stack, port, Path(folder), say, log_level))
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({story, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not story.done():
                story.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await story
                raise Interrupted("stopped before the story ended")
            world = story.result()
            say.line()
            say.line("The story is over; everything ran on this machine:")
            say.note(f"dashboard:  {world.url}/")
            say.note(f"GitLab:     {world.gitlab.base_url}/api/v4 (stand-in)")
            say.note(f"Mattermost: {world.mattermost.site_url}/api/v4 (stand-in)")
            if once:
                stopped.cancel()
                return
            say.line("The dashboard stays up until Ctrl-C.")
            await stopped
            say.line("Stopping.")


async def _start_and_play(
    stack: contextlib.AsyncExitStack, port: int, folder: Path, say: Narrator, log_level: str | None
) -> World:
    world = await start(stack, port, folder, say, log_level)
    try:
        await Story(world, say).play()
    except StepTimedOut as e:
        raise StepTimedOut(f"step {say.number}/{say.total}: {e}") from None
    return world


def _no_proxy() -> None:
    """Never route the demo's own requests (to 127.0.0.1) through a proxy the
    environment names: nothing of the demo may leave the machine."""
    for name in ("NO_PROXY", "no_proxy"):
        given = [h for h in os.environ.get(name, "").split(",") if h.strip()]
        os.environ[name] = ",".join(dict.fromkeys([*given, HOST, "localhost"]))


def main(*, once: bool, port: int, out: TextIO | None = None) -> None:
    """Run the demo (see ``bot.demo``); raises ``CommandFailed`` with one line."""
    stream = out or sys.stdout
    if isinstance(stream, io.TextIOWrapper):  # a terminal without UTF-8 gets "?" instead
        stream.reconfigure(errors="replace")
    level = (os.environ.get("LOG_LEVEL") or "error").strip().lower()
    try:
        configure_logging(level, "console")
    except ValueError as e:
        raise UsageError(str(e)) from None
    _no_proxy()
    asyncio.run(demo(once, port, stream, level))
