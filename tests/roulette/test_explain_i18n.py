"""``--explain`` and the reviewer DM in the reader's language, with the same labels and
marks in chat and in the GitLab note; the command line stays English with its codes."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from bot.gitlab import MergeRequestInfo, UserStatus
from bot.i18n import Message, translator
from plugins.roulette.chat import chat_reply, component_name, reason_label, reviewer_dm, role_name
from plugins.roulette.engine import (
    Availability,
    Load,
    MergeRequestFacts,
    Options,
    Person,
    Pick,
    Reason,
    select,
)
from plugins.roulette.render import plan_json, plan_text
from plugins.roulette.reply import reply_note
from plugins.roulette.service import Plan, StatusReader

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday, working hours in UTC
PEOPLE = [
    Person("alice", team="backend"),
    Person("bob", team="backend"),
    Person("carol", team="backend"),
    Person("dave", team="backend", max_active_reviews=2),
    Person("erin", team="frontend"),
    Person("frank", team="platform"),
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
    reviewers=(),
    reviewer_ids=(),
)
READER = StatusReader(["pto"], ["palm_tree"])


def plan() -> Plan:
    """alice wrote the MR; bob is out of office, carol busy, erin away by her status emoji,
    dave at capacity; frank is the only one left."""
    availability = {
        # What the service says of a recorded absence (the reason typed stays private).
        "bob": Availability(ooo=True, detail=Message("out of office today")),
        "carol": READER.availability(UserStatus("busy", None, None)),
        "erin": READER.availability(UserStatus("not_set", "palm_tree", None)),
    }
    selection = select(
        MergeRequestFacts(author="alice", team="backend"),
        PEOPLE,
        availability,
        Load(active={"dave": 2, "frank": 1}),
        Options(),
        random.Random(0),
        NOW,
    )
    return Plan(MR, "backend", ("api/search.py",), None, selection, (), ())


def excluded_lines(text: str) -> list[str]:
    """The explain lines of the people not picked, without their "- " bullet."""
    names = ("alice", "bob", "carol", "dave", "erin")
    return [
        line[2:]
        for line in text.splitlines()
        if line.startswith("- ") and any(f"@{name}" in line[:14] for name in names)
    ]


FRENCH = [
    "@alice : auteur (a écrit cette merge request)",
    "@bob : absent (absent aujourd'hui)",
    "@carol : occupé (statut GitLab « occupé »)",
    "@dave : charge maximale atteinte (2 relectures en cours, 2 au plus)",
    "@erin : indisponible (emoji de statut GitLab :palm_tree:)",
]
ENGLISH = [
    "@alice: author (wrote this merge request)",
    "@bob: out of office (out of office today)",
    "@carol: busy (GitLab status is busy)",
    "@dave: at capacity (2 active reviews, at most 2)",
    "@erin: away (GitLab status emoji :palm_tree:)",
]


def test_the_explain_answer_in_french_has_no_english_left() -> None:
    shown = plan()
    assert shown.selection.reviewers == ("frank",)
    chat = chat_reply(shown, translator("fr"), lambda name: name, explain=True)
    note = reply_note(shown, "delivery-1", explain=True, locale="fr")
    assert excluded_lines(chat) == [
        line.replace(f"@{name} ", f"~~@{name}~~ ", 1)
        for line, name in zip(FRENCH, ("alice", "bob", "carol", "dave", "erin"), strict=True)
    ]
    assert excluded_lines(note) == FRENCH
    # The candidates' details in the note: numbers as they are, names in French.
    row = next(line for line in note.splitlines() if line.startswith("| @frank |"))
    assert row == "| @frank | 93.0 | externe | relecture en cours -10, heures de travail +3 |"


def test_the_explain_answer_in_english() -> None:
    shown = plan()
    chat = chat_reply(shown, translator("en"), lambda name: name, explain=True)
    note = reply_note(shown, "delivery-1", explain=True, locale="en")
    assert excluded_lines(note) == ENGLISH
    assert [line.replace("~~", "") for line in excluded_lines(chat)] == ENGLISH
    row = next(line for line in note.splitlines() if line.startswith("| @frank |"))
    assert row == "| @frank | 93.0 | external | active review -10, working hours +3 |"


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_chat_and_the_gitlab_note_show_the_same_labels(locale: str) -> None:
    shown = plan()
    chat = chat_reply(shown, translator(locale), lambda name: name, explain=True)
    note = reply_note(shown, "delivery-1", explain=True, locale=locale)
    assert [line.replace("~~", "") for line in excluded_lines(chat)] == excluded_lines(note)
    for exclusion in shown.selection.excluded:
        assert reason_label(exclusion.reason, translator(locale)) in "\n".join(excluded_lines(note))


def test_every_reason_has_a_french_label() -> None:
    reasons: tuple[Reason, ...] = (
        "author",
        "inactive",
        "ooo",
        "busy",
        "away",
        "capacity",
        "excluded",
        "rerolled",
        "trainee",
    )
    fr, en = translator("fr"), translator("en")
    labels = {reason: reason_label(reason, fr) for reason in reasons}
    assert all(labels[r] != reason_label(r, en) for r in reasons)  # every one translated
    assert len(set(labels.values())) == len(reasons)  # no two reasons read the same
    assert labels["ooo"] == "absent" and labels["capacity"] == "charge maximale atteinte"


def test_counts_take_the_readers_plural_form() -> None:
    people = [Person("alice"), Person("dave", max_active_reviews=1)]
    for load, english, french in (
        (1, "1 active review, at most 1", "1 relecture en cours, 1 au plus"),
        (3, "3 active reviews, at most 1", "3 relectures en cours, 1 au plus"),
    ):
        selection = select(
            MergeRequestFacts(author="alice", team=None),
            people,
            {},
            Load(active={"dave": load}),
            Options(),
            random.Random(0),
            NOW,
        )
        (dave,) = [e for e in selection.excluded if e.username == "dave"]
        assert str(dave.detail) == english
        assert translator("fr").render(dave.detail) == french


def test_the_command_line_stays_english_and_json_keeps_the_codes() -> None:
    shown = plan()
    text = plan_text(shown, explain=True)
    assert "  @carol                busy: GitLab status is busy" in text.splitlines()
    assert "  @dave                 capacity: 2 active reviews, at most 2" in text.splitlines()
    unavailable = plan_json(shown, MR.web_url)["unavailable"]
    assert unavailable == [
        {"username": "alice", "reason": "author"},
        {"username": "bob", "reason": "ooo"},
        {"username": "carol", "reason": "busy"},
        {"username": "dave", "reason": "capacity"},
        {"username": "erin", "reason": "away"},
    ]


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        (
            "fr",
            "Vous avez été choisi pour relire [Faster search]({url}) de @alice, "
            "comme membre de l'équipe (en plus, pour apprendre).",
        ),
        (
            "en",
            "You were picked to review [Faster search]({url}) by @alice, "
            "as team member (extra, learning).",
        ),
    ],
)
def test_the_dm_of_an_extra_trainee_carries_the_mark(locale: str, expected: str) -> None:
    trainee = Pick("tina", "team", 100.0, 0, extra=True)
    text = reviewer_dm(MR, trainee, "alice", translator(locale))
    assert text == expected.format(url=MR.web_url)
    regular = reviewer_dm(MR, Pick("bob", "team", 100.0, 0), "alice", translator(locale))
    assert regular.endswith((" as team member.", " comme membre de l'équipe."))


def test_every_list_of_the_note_keeps_one_item_a_line() -> None:
    """Empty pools, problems and warnings are Markdown lists: two items never run together,
    and the invisible marker stands on a line of its own."""
    selection = plan().selection
    empty = selection.__class__(
        **{**selection.__dict__, "picks": (), "empty_pools": ("codeowner", "external")}
    )
    crowded = Plan(
        MR, "backend", ("api/search.py",), None, empty, ("first problem", "second problem"), ()
    )
    note = reply_note(crowded, "delivery-1", explain=True, locale="en")
    lines = note.splitlines()
    assert "- _no available code owner for these files_" in lines
    assert "- _no available reviewer outside the MR's team_" in lines
    assert "> first problem" in lines and "> second problem" in lines
    assert lines[-1].startswith("<!--") and lines[-1].endswith("-->")


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_without_explain_the_note_names_the_picks_and_nothing_of_the_table(locale: str) -> None:
    shown = plan()
    note = reply_note(shown, "delivery-1", explain=False, locale=locale)
    explained = reply_note(shown, "delivery-1", explain=True, locale=locale)
    assert "@frank" in note
    assert "<details>" not in note and "| @frank |" not in note
    assert excluded_lines(note) == []
    # The same picks' lines as with --explain, the table only added there.
    assert explained.startswith(note.split("<!--")[0].rstrip())
    assert "<details>" in explained


@pytest.mark.parametrize(
    ("locale", "names"),
    [
        ("en", ["code owner", "team member", "external", "working hours", "new thing"]),
        (
            "fr",
            [
                "propriétaire du code",
                "membre de l'équipe",
                "externe",
                "heures de travail",
                "new thing",
            ],
        ),
    ],
)
def test_pools_and_score_components_are_named_in_the_readers_language(
    locale: str, names: list[str]
) -> None:
    _ = translator(locale)
    pools = [role_name(pool, _) for pool in ("codeowner", "team", "external")]
    components = [component_name(c, _) for c in ("working_hours", "new_thing")]
    assert pools + components == names
