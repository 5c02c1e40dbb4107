"""A reviewer's marks read the same in the chat answer and in the GitLab note."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from bot.gitlab import MergeRequestInfo
from bot.i18n import translator
from plugins.roulette.chat import chat_reply, pick_marks
from plugins.roulette.engine import Load, MergeRequestFacts, Options, Person, select
from plugins.roulette.reply import reply_note
from plugins.roulette.service import Plan

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
PEOPLE = [
    Person("alice", team="backend"),
    Person("bob", team="backend"),
    Person("carol", team="backend"),
    Person("dave", team="frontend"),
    Person("tina", team="backend", role="trainee"),
    Person("tom", team="frontend", role="trainee"),
]
MR = MergeRequestInfo(
    project_id=1,
    project_path="acme/api",
    iid=7,
    id=70,
    title="Faster search",
    author="alice",
    author_id=1,
    labels=("team::backend",),
    draft=False,
    state="opened",
    target_branch="main",
    web_url="https://gitlab.example.com/acme/api/-/merge_requests/7",
    reviewers=("bob", "tina"),
    reviewer_ids=(2, 5),
)


def plan(facts: MergeRequestFacts, **options: object) -> Plan:
    selection = select(
        facts,
        PEOPLE,
        {},
        Load(),
        Options(trainee_share=1.0, **options),  # type: ignore[arg-type]
        random.Random(1),
        NOW,
    )
    return Plan(MR, "backend", ("api/search.py",), None, selection, (), ())


def reviewer_lines(text: str) -> dict[str, str]:
    """``@name`` -> the rest of its reviewer line (the role, count and marks)."""
    found = {}
    for line in text.splitlines():
        if line.startswith("- @") and ":" in line:
            name, rest = line[3:].split(":", 1)
            found[name.strip()] = rest.strip()
    return found


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_chat_and_gitlab_carry_the_same_marks(locale: str) -> None:
    _ = translator(locale)
    fresh = plan(MergeRequestFacts(author="alice", team="backend"), force=True)
    assert [p.username for p in fresh.selection.picks if p.extra] == ["tina"]
    kept = plan(
        MergeRequestFacts(author="alice", team="backend", current_reviewers=("bob", "tina"))
    )
    for one in (fresh, kept):
        chat = reviewer_lines(chat_reply(one, _, lambda name: name, explain=False))
        note = reviewer_lines(reply_note(one, "delivery-1", explain=False, locale=locale))
        assert chat == note
        for pick in one.selection.picks:
            marks = pick_marks(pick, _)
            assert chat[pick.username].endswith(marks)
    # The extra trainee is a team member, marked as learning, in both places.
    learning = _("(extra, learning)")
    assert learning != "" and (locale == "en") == (learning == "(extra, learning)")
    chat = reviewer_lines(chat_reply(fresh, _, lambda name: name, explain=False))
    assert chat["tina"].startswith(_("team member")) and chat["tina"].endswith(learning)
    assert not any(learning in line for name, line in chat.items() if name != "tina")
    kept_chat = reviewer_lines(chat_reply(kept, _, lambda name: name, explain=False))
    assert kept_chat["tina"].endswith(f"{learning} {_('(already a reviewer)')}")


def test_a_reroll_that_replaced_the_trainee_shows_no_other_teams_trainee() -> None:
    facts = MergeRequestFacts(
        author="alice",
        team="backend",
        current_reviewers=("bob", "tina"),
        responded=frozenset({"bob"}),
    )
    rerolled = plan(facts, reroll=True)
    _ = translator("en")
    chat = chat_reply(rerolled, _, lambda name: name, explain=False)
    note = reply_note(rerolled, "delivery-2", explain=False, locale="en")
    for text in (chat, note):
        assert "@tom" not in text and "@tina" not in text
        assert "(extra, learning)" not in text
