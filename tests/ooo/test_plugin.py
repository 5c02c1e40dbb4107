"""``/ooo`` and its dialog, the handlers called as the Mattermost adapter calls them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from bot import i18n
from bot.cache import MemoryCache
from bot.chat import ChatUser, CommandContext, DialogResult, DialogSubmission, Reply
from bot.context import AppContext
from bot.db import create_engine, create_sessionmaker
from bot.errors import CommandError
from bot.gitlab import MergeRequestInfo
from bot.models import User
from bot.plugins import Registry, load_plugins
from bot.settings import Settings
from bot.users import sync_organisation
from plugins.ooo import plugin as ooo_plugin
from plugins.ooo.models import OooStatus
from plugins.ooo.plugin import OooPlugin, supports_date_elements
from plugins.roulette.service import GitLabReader, RouletteService, configured_people
from tests.conftest import settings_for
from tests.ooo.test_service import NOW, TEAMS, USERS, day

USAGE_LINE = "`/ooo list`: your current and upcoming periods"


@pytest.fixture
def org(migrated_url: URL) -> Settings:
    return settings_for(migrated_url, teams=TEAMS, users=USERS)


@pytest.fixture
async def app(org: Settings) -> AsyncIterator[AppContext]:
    context = AppContext(settings=org)
    engine = create_engine(org.async_database_url)
    context.engine_, context.sessions_ = engine, create_sessionmaker(engine)
    await sync_organisation(context.sessions, org)
    try:
        yield context
    finally:
        await engine.dispose()


@pytest.fixture
def plugin(app: AppContext) -> OooPlugin:
    made = OooPlugin(app)
    made.now = lambda: NOW
    return made


def user(name: str = "bob", locale: str = "en", timezone: str | None = "UTC") -> ChatUser:
    return ChatUser(id=f"id-{name}", username=name, locale=locale, timezone=timezone)


def ctx(
    text: str = "", who: ChatUser | None = None, *, server_version: str | None = None
) -> CommandContext:
    """A slash command; the adapter adds the server's version when it knows it."""
    return CommandContext(
        command="ooo",
        text=text,
        user=who or user(),
        channel_id="town-square",
        trigger_id="trigger-1",
        extras={"server_version": server_version} if server_version else {},
    )


def submit(values: dict[str, Any], who: ChatUser | None = None, **kw: Any) -> DialogSubmission:
    return DialogSubmission(
        callback_id="ooo", user=who or user(), channel_id="town-square", submission=values, **kw
    )


async def refusal(plugin: OooPlugin, text: str, who: ChatUser | None = None) -> str:
    with pytest.raises(CommandError) as caught:
        await plugin.ooo(ctx(text, who))
    return str(caught.value)


async def stored(app: AppContext) -> list[tuple[str, date, date, str | None, bool]]:
    async with app.sessions() as session:
        rows = await session.execute(
            select(
                User.gitlab_username,
                OooStatus.start_date,
                OooStatus.end_date,
                OooStatus.reason,
                OooStatus.cancelled_at.is_not(None),
            )
            .join(User, User.id == OooStatus.user_id)
            .order_by(OooStatus.id)
        )
        return [(str(n), s, e, r, bool(c)) for n, s, e, r, c in rows.all()]


# ----------------------------------------------------------------- registration


def test_the_plugin_registers_its_command_and_dialog(app: AppContext) -> None:
    registry = Registry(load_plugins(["ooo"], app))
    command = registry.commands["ooo"]
    assert command.spec.options["hint"] == "[start end [reason]] | list | cancel [id]"
    assert command.spec.options["description"]
    assert registry.dialogs["ooo"].qualname == "OooPlugin.submitted"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("11.2.0", True),
        ("11.1.0", True),
        ("12.0.1", True),
        ("11.1.0.17829887321.abcdef.true", True),
        ("11.0.9", False),
        ("10.11.3", False),
        (None, False),
        ("", False),
        ("unknown", False),
    ],
)
def test_date_elements_need_mattermost_11_1(version: str | None, expected: bool) -> None:
    assert supports_date_elements(version) is expected


# ----------------------------------------------------------------- the dialog opens


async def test_ooo_alone_opens_a_dialog_with_date_pickers(plugin: OooPlugin) -> None:
    reply = await plugin.ooo(ctx("", server_version="11.2.0"))
    assert reply.visibility == "ephemeral" and reply.dialog is not None
    dialog = reply.dialog
    assert dialog.callback_id == "ooo"
    assert dialog.title == "Out of office" and len(dialog.title) <= 24
    assert [e["name"] for e in dialog.elements] == ["start", "end", "reason"]
    start, end, reason = dialog.elements
    assert (start["type"], end["type"], reason["type"]) == ("date", "date", "text")
    assert start["default"] == "today"  # resolved by the reader's client, in their timezone
    assert not start["optional"] and not end["optional"]
    assert reason["optional"] is True and reason["max_length"] == 255
    assert all(len(e["display_name"]) <= 24 for e in dialog.elements)


async def test_an_older_or_unknown_server_gets_text_fields(plugin: OooPlugin) -> None:
    for version in (None, "11.0.4"):
        reply = await plugin.ooo(ctx("", server_version=version))
        assert reply.dialog is not None
        start, end, _ = reply.dialog.elements
        for element in (start, end):
            assert element["type"] == "text"
            assert element["placeholder"] == "YYYY-MM-DD"
            assert "YYYY-MM-DD" in element["help_text"]
        assert start["default"] == "2026-11-25"


async def test_the_dialog_defaults_to_today_where_the_user_is(plugin: OooPlugin) -> None:
    # On a server without date pickers the bot writes the date: in Auckland (the chat
    # user's timezone, when already known) it is the 26th; unknown, UTC's 25th.
    reply = await plugin.ooo(ctx("", user("kiri", timezone="Pacific/Auckland")))
    assert reply.dialog is not None
    assert reply.dialog.elements[0]["default"] == "2026-11-26"
    reply = await plugin.ooo(ctx("", user("kiri", timezone=None)))
    assert reply.dialog is not None
    assert reply.dialog.elements[0]["default"] == "2026-11-25"


async def test_the_dialog_opens_without_any_io(org: Settings) -> None:
    # No database, no Mattermost: what the request carries is enough (a trigger id may
    # live 3 s only, PROTOCOLS.md A3).
    offline = OooPlugin(AppContext(settings=org))
    offline.now = lambda: NOW
    reply = await offline.ooo(ctx("", user("stranger", locale="fr"), server_version="11.2.0"))
    assert reply.dialog is not None and reply.dialog.title == "Absence"
    with pytest.raises(RuntimeError, match="database is not open"):
        await offline.ooo(ctx("list"))  # the other paths do read it


async def test_the_dialog_carries_the_text_form_for_when_it_cannot_open(
    plugin: OooPlugin,
) -> None:
    expected = {
        "en": ("Record the period as text", "`/ooo 2026-11-25 2026-11-29 holiday`", "START END"),
        "fr": ("en texte", "`/ooo 2026-11-25 2026-11-29 congés`", "DÉBUT FIN"),
    }
    for locale, (words, example, usage) in expected.items():
        reply = await plugin.ooo(ctx("", user(locale=locale)))
        assert reply.dialog is not None
        assert words in reply.dialog.fallback
        assert example in reply.dialog.fallback  # from today
        assert f"`/ooo {usage}" in reply.dialog.fallback  # and the text form's usage


async def test_the_other_paths_look_the_user_up_first(plugin: OooPlugin) -> None:
    looked_up: list[str] = []

    async def lookup() -> ChatUser:
        looked_up.append("bob")
        return user(locale="fr")

    provisional = replace(ctx("list"), user=user(locale="en"), resolve_user=lookup)
    reply = await plugin.ooo(provisional)
    assert looked_up == ["bob"]
    assert reply.text == i18n.gettext("fr", "You have no current or upcoming out-of-office period.")
    opened = await plugin.ooo(replace(ctx(""), resolve_user=lookup))
    assert opened.dialog is not None and looked_up == ["bob"]  # not for the dialog


async def test_without_a_trigger_id_the_usage_is_shown(plugin: OooPlugin) -> None:
    context = CommandContext(command="ooo", text="", user=user(), channel_id="c", source="message")
    reply = await plugin.ooo(context)
    assert reply.dialog is None and USAGE_LINE in reply.text


async def test_a_stranger_is_refused_when_submitting_the_dialog(plugin: OooPlugin) -> None:
    # The dialog opens before anything is read; the submission tells them why not.
    reply = await plugin.ooo(ctx("", user("stranger")))
    assert reply.dialog is not None
    result = await plugin.submitted(submit({"start": "today", "end": "today"}, user("stranger")))
    assert result.error is not None
    assert "You are not in the reviewers' organisation" in result.error
    assert "stranger" in result.error


# ----------------------------------------------------------------- the text form


async def test_text_form_records(plugin: OooPlugin, app: AppContext) -> None:
    reply = await plugin.ooo(ctx("2026-12-01 2026-12-05 Family  holiday"))
    assert reply.visibility == "ephemeral" and reply.dialog is None
    assert reply.text == (
        "Out of office recorded: #1: 2026-12-01 to 2026-12-05 (Family  holiday). "
        "You will not be picked as a reviewer on these days."
    )
    assert await stored(app) == [("bob", day(1), day(5), "Family  holiday", False)]
    # Without a reason; the Mattermost username in any case.
    reply = await plugin.ooo(ctx("2026-12-10 2026-12-10", user("ALICE.m")))
    assert "#2: 2026-12-10 to 2026-12-10." in reply.text


async def test_help_prints_the_usage(plugin: OooPlugin) -> None:
    reply = await plugin.ooo(ctx("help", user("stranger")))
    assert reply.text.startswith("Usage:")
    for line in ("`/ooo`:", "`/ooo START END [reason]`", USAGE_LINE, "`/ooo cancel [ID]`"):
        assert line in reply.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01 2026-13-01", "Not a date: 2026-13-01. Use YYYY-MM-DD."),
        ("2026-12-1 2026-12-05", "Not a date: 2026-12-1. Use YYYY-MM-DD."),
        (
            "2026-12-05 2026-12-01",
            "The last day (2026-12-01) is before the first day (2026-12-05).",
        ),
        (
            "2026-11-01 2026-11-24",
            "The last day (2026-11-24) is already past: today is 2026-11-25.",
        ),
        (
            "2026-12-01 2026-12-02 " + "x" * 256,
            "The reason is too long: 256 characters, at most 255.",
        ),
    ],
)
async def test_text_form_refusals(
    plugin: OooPlugin, app: AppContext, text: str, expected: str
) -> None:
    assert await refusal(plugin, text) == expected
    assert await stored(app) == []


async def test_an_overlap_says_which_period(plugin: OooPlugin, app: AppContext) -> None:
    await plugin.ooo(ctx("2026-12-01 2026-12-05 conference"))
    text = await refusal(plugin, "2026-12-05 2026-12-08")
    assert text == (
        "These days overlap your out-of-office period #1: 2026-12-01 to 2026-12-05 (conference)."
    )
    await plugin.ooo(ctx("2026-12-06 2026-12-08"))  # adjacent: fine
    assert len(await stored(app)) == 2


async def test_malformed_input_explains_with_the_usage(plugin: OooPlugin) -> None:
    for text, first_line in (
        ("holiday", "Unknown subcommand: holiday."),
        ("vacation 2026-12-01 2026-12-02", "Unknown subcommand: vacation."),
        ("2026-12-01", "Give the last day too: `/ooo START END [reason]`."),
        ("list all", "`/ooo list` takes no arguments."),
        ("cancel 1 2", "`/ooo cancel` takes one period number at most."),
        ("cancel first", "Not a period number: first. `/ooo list` shows them."),
        ("cancel -3", "Not a period number: -3. `/ooo list` shows them."),
    ):
        text_shown = await refusal(plugin, text)
        assert text_shown.splitlines()[0] == first_line
        assert USAGE_LINE in text_shown


async def test_a_stranger_is_refused_everything(plugin: OooPlugin, app: AppContext) -> None:
    stranger = user("stranger")
    for text in ("2026-12-01 2026-12-05", "list", "cancel", "cancel 1"):
        shown = await refusal(plugin, text, stranger)
        assert shown == (
            "You are not in the reviewers' organisation: ask an administrator to add your "
            "Mattermost username (stranger)."
        )
    assert await stored(app) == []


# ----------------------------------------------------------------- list and cancel


async def test_list_shows_current_and_upcoming_periods(plugin: OooPlugin) -> None:
    assert (await plugin.ooo(ctx("list"))).text == (
        "You have no current or upcoming out-of-office period."
    )
    await plugin.ooo(ctx("2026-12-20 2026-12-24 holiday"))
    await plugin.ooo(ctx("today tomorrow"))
    reply = await plugin.ooo(ctx("list"))
    assert reply.visibility == "ephemeral"
    assert reply.text == (
        "Your out-of-office periods:\n"
        "- #2: 2026-11-25 to 2026-11-26 (current)\n"
        "- #1: 2026-12-20 to 2026-12-24 (holiday)"
    )


async def test_cancel_by_id_and_without(plugin: OooPlugin, app: AppContext) -> None:
    await plugin.ooo(ctx("2026-12-01 2026-12-05"))
    await plugin.ooo(ctx("2026-12-10 2026-12-12 trip"))
    await plugin.ooo(ctx("2026-12-20 2026-12-22", user("alice.m")))
    reply = await plugin.ooo(ctx("cancel #2"))
    assert reply.text == "Out of office cancelled: #2: 2026-12-10 to 2026-12-12 (trip)."
    assert await refusal(plugin, "cancel 2") == "Out-of-office period #2 is already cancelled."
    assert await refusal(plugin, "cancel 3") == "You have no out-of-office period #3."  # alice's
    reply = await plugin.ooo(ctx("cancel"))  # none current: the next one
    assert reply.text == "Out of office cancelled: #1: 2026-12-01 to 2026-12-05."
    assert await refusal(plugin, "cancel") == (
        "You have no current or upcoming out-of-office period to cancel."
    )
    assert [c for *_, c in await stored(app)] == [True, True, False]


# ----------------------------------------------------------------- the dialog's submission


async def test_a_valid_submission_closes_the_dialog_with_a_confirmation(
    plugin: OooPlugin, app: AppContext
) -> None:
    result = await plugin.submitted(
        submit({"start": "2026-12-01", "end": "2026-12-05", "reason": "conference"})
    )
    assert result.errors == {} and result.error is None
    assert result.message == Reply(
        "Out of office recorded: #1: 2026-12-01 to 2026-12-05 (conference). "
        "You will not be picked as a reviewer on these days."
    )
    # An optional field left empty may come as null, or not at all.
    for values in (
        {"start": "2026-12-10", "end": "2026-12-10", "reason": None},
        {"start": "2026-12-11", "end": "2026-12-11"},
    ):
        assert (await plugin.submitted(submit(values))).message is not None
    assert [r for *_, r, _ in await stored(app)] == ["conference", None, None]


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        (
            {"start": "01/12/2026", "end": "", "reason": "x" * 300},
            {
                "start": "Not a date: 01/12/2026. Use YYYY-MM-DD.",
                "end": "Give a date: YYYY-MM-DD.",
                "reason": "The reason is too long: 300 characters, at most 255.",
            },
        ),
        (
            {"start": "2026-12-05", "end": "2026-12-01"},
            {"end": "The last day (2026-12-01) is before the first day (2026-12-05)."},
        ),
        (
            {"start": "2026-11-20", "end": "2026-11-24"},
            {"end": "The last day (2026-11-24) is already past: today is 2026-11-25."},
        ),
    ],
)
async def test_dialog_errors_are_per_field(
    plugin: OooPlugin, app: AppContext, values: dict[str, Any], errors: dict[str, str]
) -> None:
    result = await plugin.submitted(submit(values))
    assert result == DialogResult(errors=errors)
    assert await stored(app) == []


async def test_a_dialog_overlap_is_shown_under_start(plugin: OooPlugin, app: AppContext) -> None:
    await plugin.submitted(submit({"start": "2026-12-01", "end": "2026-12-05"}))
    result = await plugin.submitted(submit({"start": "2026-11-30", "end": "2026-12-01"}))
    assert result == DialogResult(
        errors={
            "start": "These days overlap your out-of-office period #1: 2026-12-01 to 2026-12-05."
        }
    )
    assert len(await stored(app)) == 1


async def test_a_stranger_or_a_cancel_records_nothing(plugin: OooPlugin, app: AppContext) -> None:
    result = await plugin.submitted(
        submit({"start": "2026-12-01", "end": "2026-12-05"}, user("stranger"))
    )
    assert result.errors == {} and result.message is None
    assert result.error is not None and "not in the reviewers' organisation" in result.error
    result = await plugin.submitted(submit({}, cancelled=True))
    assert result == DialogResult()
    assert await stored(app) == []


# ----------------------------------------------------------------- languages


async def test_replies_follow_the_users_locale(
    plugin: OooPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def spy(locale: str) -> i18n.Gettext:
        asked.append(locale)
        return i18n.translator(locale)

    monkeypatch.setattr(ooo_plugin, "translator", spy)
    french = user(locale="fr")
    await plugin.ooo(ctx("", french, server_version="11.2.0"))
    await plugin.ooo(ctx("help", french))
    with pytest.raises(CommandError):
        await plugin.ooo(ctx("nonsense", french))
    await plugin.submitted(submit({"start": "2026-12-01", "end": "2026-12-02"}, french))
    assert asked == ["fr", "fr", "fr", "fr"]


# ----------------------------------------------------------------- effect on the roulette


class _NoGitLab:
    """The roulette's history reads only the database."""


def _mr() -> MergeRequestInfo:
    return MergeRequestInfo(
        project_id=1,
        project_path="acme/shop",
        iid=1,
        id=101,
        title="t",
        author="alice",
        author_id=1,
        labels=(),
        draft=False,
        state="opened",
        target_branch="main",
        web_url="https://gitlab.example.com/acme/shop/-/merge_requests/1",
        reviewers=(),
        reviewer_ids=(),
    )


async def test_a_recorded_period_takes_effect_at_once(plugin: OooPlugin, app: AppContext) -> None:
    roulette = RouletteService(
        app.settings, app.sessions, MemoryCache(), cast(GitLabReader, _NoGitLab())
    )
    people = configured_people(app.settings)
    before = await roulette.history(people, _mr(), NOW)
    assert before.ooo == frozenset()

    await plugin.ooo(ctx("today today", user("bob")))
    # kiri (Auckland, no chat timezone): "today" is the 26th there, and so for the roulette.
    await plugin.ooo(ctx("today today", user("kiri", timezone=None)))
    after = await roulette.history(people, _mr(), NOW)
    assert after.ooo == frozenset({"bob", "kiri"})
    # A day later (UTC), bob is back; kiri's 26th is over in Auckland too.
    later = await roulette.history(people, _mr(), NOW + timedelta(days=1))
    assert later.ooo == frozenset()

    await plugin.ooo(ctx("cancel", user("bob")))
    assert (await roulette.history(people, _mr(), NOW)).ooo == frozenset({"kiri"})
