"""GitLab end to end: /roulette comments and MR lifecycle through the real app."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from sqlalchemy import delete, update
from sqlalchemy.engine import URL

from bot.app import REGISTRY
from bot.chat import ChatUser, CommandContext
from bot.db import utcnow
from bot.errors import CommandError
from bot.models import MrReview, ReviewerAssignment, User, WebhookDelivery
from bot.sandbox.gitlab import GitLabStandIn
from plugins.roulette.plugin import RoulettePlugin
from tests.conftest import until
from tests.e2e.conftest import PROJECT, Bot, MakeClient, e2e_settings, start_bot


async def _metrics_show(bot: Bot, line: str) -> None:
    """Wait for ``line`` on ``/metrics``: the active_reviews gauge is counted in the
    background, within about a second of the event."""

    async def shown() -> bool:
        return line in await (await bot.client.get("/metrics")).text()

    await until(shown, 10, line)


async def test_a_roulette_comment_gets_one_note_and_sets_the_reviewers(bot: Bot) -> None:
    delivery = await bot.comment("alice", "/roulette")
    assert delivery.status == 200
    await bot.settled()
    [note] = bot.bot_notes()
    picked = bot.reviewers()
    assert 1 <= len(picked) <= 3 and "alice" not in picked
    for name in picked:
        assert f"@{name}" in note["body"]
    assert "Reviewer roulette" in note["body"] and "<!-- roulette-bot delivery=" in note["body"]
    roles = await bot.assignments()
    assert set(roles) == set(picked)
    assert {role for role, _ in roles.values()} <= {"codeowner", "team", "external"}
    review = await bot.review()
    assert (review.author_username, review.mr_iid, review.state) == ("alice", 1, "open")
    metrics = await (await bot.client.get("/metrics")).text()
    assert 'roulette_triggers_total{status="ok",team="backend"} 1.0' in metrics


async def test_the_same_delivery_three_times_gets_one_note(bot: Bot) -> None:
    first = await bot.comment("alice", "/roulette --explain")
    second = await bot.sender.resend(first)
    third = await bot.sender.resend(first)
    assert [d.status for d in (first, second, third)] == [200, 200, 200]
    await bot.settled()
    assert len(bot.bot_notes()) == 1
    assert len(await bot.rows(WebhookDelivery)) == 1
    assert "Why these reviewers" in bot.bot_notes()[0]["body"]


async def test_a_bad_token_is_refused_and_nothing_is_stored(bot: Bot) -> None:
    bot.sender.secret = "not-the-secret"
    delivery = await bot.comment("alice", "/roulette")
    assert delivery.status == 401
    assert await bot.rows(WebhookDelivery) == []
    assert bot.bot_notes() == []


async def test_other_notes_never_trigger(bot: Bot) -> None:
    await bot.comment("alice", "Looks good, but /roulette later please")
    await bot.comment("alice", "roulette")
    await bot.settled()
    assert bot.bot_notes() == []


async def test_an_edited_roulette_comment_does_not_roll_again(bot: Bot) -> None:
    note = bot.standin.add_note(PROJECT, 1, "alice", "/roulette")
    payload = bot.sender.note_payload(PROJECT, 1, note, action="update")
    await bot.sender.deliver("Note Hook", payload)
    await bot.settled()
    assert bot.bot_notes() == []


async def test_bad_flags_get_a_clear_note(bot: Bot) -> None:
    await bot.comment("alice", "/roulette --sideways")
    await bot.settled()
    [note] = bot.bot_notes()
    assert "could not run: unknown option --sideways" in note["body"]
    assert bot.reviewers() == []


async def test_gitlab_failing_twice_then_answering_gives_one_note(bot: Bot) -> None:
    bot.standin.fail_next(r"/merge_requests/1/notes", 500, times=2, method="POST")
    await bot.comment("alice", "/roulette")
    await bot.settled()
    assert len(bot.bot_notes()) == 1
    [row] = await bot.rows(WebhookDelivery)
    assert (row.status, row.attempts) == ("done", 3)


async def test_a_crash_after_posting_still_gives_one_note(bot: Bot) -> None:
    # GitLab stores the note but the bot never hears back: as if it died right after.
    bot.standin.fail_next(r"/merge_requests/1/notes", 502, method="POST", after=True)
    await bot.comment("alice", "/roulette")
    await bot.settled()
    [note] = bot.bot_notes()
    [row] = await bot.rows(WebhookDelivery)
    assert (row.status, row.attempts) == ("done", 2)
    # The retry re-applied what the note announced: reviewers and database agree with it.
    picked = bot.reviewers()
    assert picked and all(f"@{name}" in note["body"] for name in picked)
    assert set(await bot.assignments()) == set(picked)


async def test_a_roll_an_outage_left_unrecorded_is_kept_once_the_mr_is_merged(bot: Bot) -> None:
    """The database failed after the note was posted (an outage): GitLab has the note and
    the reviewers, the bot no record, and the merge's event found no review to end. The
    retry of the roll's delivery keeps the roll as its note announced it, ended as GitLab
    says, and posts nothing more."""
    await bot.comment("alice", "/roulette")
    await bot.settled()
    [note] = bot.bot_notes()
    picked = bot.reviewers()
    async with bot.context.sessions.begin() as db:  # what the outage lost
        await db.execute(delete(ReviewerAssignment))
        await db.execute(delete(MrReview))
    bot.standin.merge(PROJECT, 1, by="alice")
    await bot.sender.mr_event(PROJECT, 1, "merge", "alice")
    await bot.settled()
    assert await bot.rows(MrReview) == []  # no review to end: nothing stored
    async with bot.context.sessions.begin() as db:  # the roll's delivery, retried
        await db.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.event_type == "note")
            .values(status="pending", next_attempt_at=utcnow())
        )
    await bot.settled()

    assert bot.bot_notes() == [note]
    review = await bot.review()
    merged_at = bot.standin.merge_request(PROJECT, 1)["merged_at"]
    assert review.state == "merged"
    assert review.merged_at == datetime.fromisoformat(merged_at)
    assert review.triggered_at <= review.merged_at
    roles = await bot.assignments()
    assert set(roles) == set(picked)
    assert {status for _, status in roles.values()} == {"completed"}
    metrics = await (await bot.client.get("/metrics")).text()
    assert "reviews_completed_total 1.0" in metrics  # the merge counted once


async def test_gitlab_down_for_good_dead_letters_the_delivery(bot: Bot) -> None:
    bot.standin.fail_next(r"/merge_requests/1(\?|$)", 503, times=1000, method="GET")
    await bot.comment("alice", "/roulette")
    await bot.settled(within=30)
    [row] = await bot.rows(WebhookDelivery)
    assert (row.status, row.attempts) == ("dead", 3)
    assert "503" in (row.last_error or "")
    assert bot.bot_notes() == []
    metrics = await (await bot.client.get("/metrics")).text()
    assert 'webhook_dead_letters_total{event="note"} 1.0' in metrics


async def test_a_delivery_acknowledged_before_a_crash_is_processed_at_the_next_start(
    migrated_url: URL, gitlab_url: str, standin: GitLabStandIn, aiohttp_client: MakeClient
) -> None:
    settings = e2e_settings(migrated_url, gitlab_url)
    first = await start_bot(aiohttp_client, standin, settings)
    # The worker is held up reading the MR when the process goes away.
    standin.delay_next(r"/merge_requests/1(\?|$)", 5.0)
    assert (await first.comment("alice", "/roulette")).status == 200
    await first.client.close()
    assert first.bot_notes() == []
    second = await start_bot(aiohttp_client, standin, settings)
    await second.settled()
    assert len(second.bot_notes()) == 1
    [row] = await second.rows(WebhookDelivery)
    assert row.status == "done"


async def test_lifecycle_comment_approval_merge(bot: Bot) -> None:
    await bot.comment("alice", "/roulette")
    await bot.settled()
    reviewer = bot.reviewers()[0]
    await bot.comment(reviewer, "Why is this query not indexed?")
    await bot.comment("alice", "Good point, fixed.")  # the author's reply counts for nothing
    bot.standin.approve(PROJECT, 1, reviewer)
    await bot.sender.mr_event(PROJECT, 1, "approval", reviewer)
    bot.standin.merge(PROJECT, 1, by="alice")
    await bot.sender.mr_event(PROJECT, 1, "merge", "alice")
    await bot.settled()

    review = await bot.review()
    assert review.state == "merged" and review.merged_at is not None
    assert review.first_review_at is not None
    [assignment] = [
        a
        for a in await bot.rows(__import__("bot.models").models.ReviewerAssignment)
        if a.user_id == await _user_id(bot, reviewer)
    ]
    assert assignment.first_response_at is not None
    assert assignment.approved_at is not None
    assert assignment.status == "completed" and assignment.comment_count == 1
    metrics = await (await bot.client.get("/metrics")).text()
    assert "reviews_completed_total 1.0" in metrics
    assert "review_ttfr_seconds_count 1.0" in metrics
    assert "review_time_to_approval_seconds_count 1.0" in metrics
    assert "review_comment_length_count 1.0" in metrics
    await _metrics_show(bot, 'active_reviews{team="backend"} 0.0')


async def _user_id(bot: Bot, name: str) -> int:
    return next(u.id for u in await bot.rows(User) if u.gitlab_username == name)


async def test_close_abandons_and_reopen_restores(bot: Bot) -> None:
    await bot.comment("alice", "/roulette")
    await bot.settled()
    bot.standin.close(PROJECT, 1)
    await bot.sender.mr_event(PROJECT, 1, "close", "alice")
    await bot.settled()
    review = await bot.review()
    assert review.state == "closed" and review.closed_at is not None
    assert {status for _, status in (await bot.assignments()).values()} == {"abandoned"}
    metrics = await (await bot.client.get("/metrics")).text()
    assert "reviews_abandoned_total 1.0" in metrics

    bot.standin.reopen(PROJECT, 1)
    await bot.sender.mr_event(PROJECT, 1, "reopen", "alice")
    await bot.settled()
    assert (await bot.review()).state == "open"
    assert {status for _, status in (await bot.assignments()).values()} == {"active"}


async def test_reviewers_changed_by_humans(bot: Bot) -> None:
    await bot.comment("alice", "/roulette")
    await bot.settled()
    before = bot.reviewers()
    gone, newcomer = (
        before[0],
        next(u for u in ("bob", "carol", "dave", "erin", "frank") if u not in before),
    )
    after = [*before[1:], newcomer]
    bot.standin.set_reviewers(PROJECT, 1, after)
    changes = {"reviewers": {"previous": before, "current": after}}
    await bot.sender.mr_event(PROJECT, 1, "update", "alice", changes=changes)
    await bot.settled()
    assignments = await bot.assignments()
    assert assignments[gone][1] == "removed"
    assert assignments[newcomer] == ("manual", "active")


async def test_auto_roulette_rolls_when_an_mr_opens(
    migrated_url: URL, gitlab_url: str, standin: GitLabStandIn, aiohttp_client: MakeClient
) -> None:
    settings = e2e_settings(migrated_url, gitlab_url, roulette={"auto_roulette": "on_open"})
    bot = await start_bot(aiohttp_client, standin, settings)
    standin.add_merge_request(PROJECT, author="erin", changes=["web/app.ts"])
    standin.add_merge_request(PROJECT, author="erin", draft=True, changes=["web/x.ts"])
    await bot.sender.mr_event(PROJECT, 2, "open", "erin")
    await bot.sender.mr_event(PROJECT, 3, "open", "erin")
    await bot.settled()
    assert len(bot.bot_notes(2)) == 1 and bot.reviewers(2)
    assert bot.bot_notes(3) == []  # a draft waits
    bot.standin.set_draft(PROJECT, 3, False)
    changes = {"draft": {"previous": True, "current": False}}
    await bot.sender.mr_event(PROJECT, 3, "update", "erin", changes=changes)
    await bot.settled()
    assert len(bot.bot_notes(3)) == 1


async def test_auto_roulette_is_off_by_default(bot: Bot) -> None:
    bot.standin.add_merge_request(PROJECT, author="erin", changes=["web/app.ts"])
    await bot.sender.mr_event(PROJECT, 2, "open", "erin")
    await bot.settled()
    assert bot.bot_notes(2) == []


async def test_the_bots_own_and_system_notes_are_ignored(bot: Bot) -> None:
    own = bot.standin.add_note(PROJECT, 1, "roulette-bot", "/roulette")
    await bot.sender.deliver("Note Hook", bot.sender.note_payload(PROJECT, 1, own))
    system = bot.standin.add_note(PROJECT, 1, "alice", "/roulette", system=True)
    await bot.sender.deliver("Note Hook", bot.sender.note_payload(PROJECT, 1, system))
    await bot.settled()
    assert [n["body"] for n in bot.bot_notes()] == ["/roulette"]  # only the one we added


def _identity_asks(standin: GitLabStandIn) -> int:
    return sum(1 for method, path in standin.requests if (method, path) == ("GET", "/api/v4/user"))


async def _started(
    migrated_url: URL, gitlab_url: str, standin: GitLabStandIn, aiohttp_client: MakeClient
) -> Bot:
    """A bot started, once it has asked GitLab who it is (``GET /user``)."""
    bot = await start_bot(aiohttp_client, standin, e2e_settings(migrated_url, gitlab_url))
    await until(lambda: _identity_asks(standin) == 1, 10, "GET /user at start")
    return bot


async def test_the_bot_asks_who_it_is_at_start_not_during_the_first_roll(bot: Bot) -> None:
    """``GET /user`` (whose notes to ignore) is asked once, at start: the first
    ``/roulette`` does not wait for one more GitLab round trip."""
    await until(lambda: _identity_asks(bot.standin) == 1, 10, "GET /user at start")
    asked_before = len(bot.standin.requests)
    await bot.comment("alice", "/roulette")
    await bot.settled()
    assert len(bot.bot_notes()) == 1
    assert ("GET", "/api/v4/user") not in bot.standin.requests[asked_before:]
    assert _identity_asks(bot.standin) == 1


async def test_who_the_bot_is_is_asked_again_when_gitlab_could_not_say_at_start(
    migrated_url: URL, gitlab_url: str, standin: GitLabStandIn, aiohttp_client: MakeClient
) -> None:
    standin.fail_next(r"^/api/v4/user$", 401, method="GET")
    bot = await _started(migrated_url, gitlab_url, standin, aiohttp_client)
    own = standin.add_note(PROJECT, 1, "roulette-bot", "/roulette")
    await bot.sender.deliver("Note Hook", bot.sender.note_payload(PROJECT, 1, own))
    await bot.settled()
    assert [n["body"] for n in bot.bot_notes()] == ["/roulette"]  # its own note: no roll
    assert _identity_asks(standin) == 2


async def test_a_note_arriving_while_the_bot_asks_who_it_is_waits_for_that_answer(
    migrated_url: URL, gitlab_url: str, standin: GitLabStandIn, aiohttp_client: MakeClient
) -> None:
    standin.delay_next(r"^/api/v4/user$", 1.5, method="GET")
    bot = await _started(migrated_url, gitlab_url, standin, aiohttp_client)
    answered = [path for _, _, _, path in standin.timeline]
    assert "/api/v4/user" not in answered  # still held when the comment comes
    await bot.comment("alice", "/roulette")
    await bot.settled()
    assert len(bot.bot_notes()) == 1
    assert _identity_asks(standin) == 1  # the comment waited for the same answer


async def test_stopping_leaves_no_identity_lookup_running(
    migrated_url: URL, gitlab_url: str, standin: GitLabStandIn, aiohttp_client: MakeClient
) -> None:
    standin.delay_next(r"^/api/v4/user$", 30, method="GET")
    bot = await _started(migrated_url, gitlab_url, standin, aiohttp_client)
    await bot.client.close()  # the app stops: its plugins' on_stop run
    lookups = [t for t in asyncio.all_tasks() if t.get_name() == "roulette-identity"]
    assert all(task.done() for task in lookups)


async def test_an_unreadable_merge_request_gets_a_clear_note(bot: Bot) -> None:
    bot.standin.fail_next(r"/merge_requests/1(\?|$)", 404, times=10, method="GET")
    await bot.comment("alice", "/roulette")
    await bot.settled()
    [note] = bot.bot_notes()
    assert "cannot read this merge request" in note["body"]
    [row] = await bot.rows(WebhookDelivery)
    assert row.status == "done"


async def test_a_quoted_or_indented_roulette_is_not_a_command(bot: Bot) -> None:
    for body in (
        "    /roulette",
        "\t/roulette",
        "> /roulette",
        "```\n/roulette\n```",
        "/roulettex",
    ):
        await bot.comment("alice", body)
    await bot.settled()
    assert bot.bot_notes() == [] and bot.reviewers() == []
    await bot.comment("alice", "\r\n   /roulette --explain\r\nthanks")  # CRLF, 3 spaces
    await bot.settled()
    [note] = bot.bot_notes()
    assert "Why these reviewers" in note["body"] and bot.reviewers()


async def test_roulette_on_a_merged_mr_assigns_nobody_and_keeps_the_record(bot: Bot) -> None:
    await bot.comment("alice", "/roulette")
    await bot.settled()
    before = bot.reviewers()
    bot.standin.merge(PROJECT, 1, by="alice")
    await bot.sender.mr_event(PROJECT, 1, "merge", "alice")
    await bot.settled()
    completed = await bot.assignments()
    assert {status for _, status in completed.values()} == {"completed"}

    await bot.comment("bob", "/roulette --force")
    await bot.settled()
    notes = bot.bot_notes()
    assert len(notes) == 2
    assert "already merged, so nobody was assigned" in notes[1]["body"]
    assert "@" not in notes[1]["body"].split("<!--")[0]  # names nobody
    assert bot.reviewers() == before
    review = await bot.review()
    assert review.state == "merged" and review.merged_at is not None
    assert await bot.assignments() == completed
    metrics = await (await bot.client.get("/metrics")).text()
    assert 'roulette_triggers_total{status="ended",team=""} 1.0' in metrics
    await _metrics_show(bot, 'active_reviews{team="backend"} 0.0')


async def test_roulette_on_a_closed_mr_says_so(bot: Bot) -> None:
    bot.standin.close(PROJECT, 1)
    await bot.comment("alice", "/roulette")
    await bot.settled()
    [note] = bot.bot_notes()
    assert "is closed, so nobody was assigned" in note["body"]
    assert bot.reviewers() == [] and await bot.rows(ReviewerAssignment) == []


async def test_chat_roulette_on_a_merged_mr_is_an_ephemeral_note(bot: Bot) -> None:
    bot.standin.merge(PROJECT, 1)
    [plugin] = [p for p in bot.client.app[REGISTRY].plugins if isinstance(p, RoulettePlugin)]
    url = f"{bot.standin.base_url}/{PROJECT}/-/merge_requests/1"
    ctx = CommandContext("roulette", url, ChatUser("u1", "alice", "fr"), "channel")
    with pytest.raises(CommandError) as raised:
        await plugin.roulette_command(ctx)
    assert str(raised.value) == f"{url} est déjà fusionnée, personne n'a donc été assigné."
    assert bot.bot_notes() == [] and bot.reviewers() == []
    assert await bot.rows(MrReview) == []


async def test_auto_roulette_reads_drafts_as_older_gitlabs_send_them(
    migrated_url: URL, gitlab_url: str, standin: GitLabStandIn, aiohttp_client: MakeClient
) -> None:
    settings = e2e_settings(migrated_url, gitlab_url, roulette={"auto_roulette": "on_open"})
    bot = await start_bot(aiohttp_client, standin, settings)
    standin.add_merge_request(PROJECT, author="erin", draft=True, changes=["web/x.ts"])
    opened = bot.sender.merge_request_payload(PROJECT, 2, action="open", user="erin")
    opened["object_attributes"] |= {"draft": None, "work_in_progress": True}
    await bot.sender.deliver("Merge Request Hook", opened)
    await bot.settled()
    assert bot.bot_notes(2) == []  # a draft waits, whatever the field says it with
    standin.set_draft(PROJECT, 2, False)
    ready = bot.sender.merge_request_payload(PROJECT, 2, action="update", user="erin")
    ready["object_attributes"] |= {"draft": None, "work_in_progress": False}
    ready["changes"] = {"work_in_progress": {"previous": True, "current": False}}
    await bot.sender.deliver("Merge Request Hook", ready)
    await bot.settled()
    assert len(bot.bot_notes(2)) == 1 and bot.reviewers(2)
