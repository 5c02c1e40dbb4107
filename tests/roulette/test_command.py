"""What counts as ``/roulette`` in a GitLab comment, and drafts in every GitLab's words."""

from __future__ import annotations

from typing import Any

import pytest

from bot.gitlab import draft_change, is_draft
from plugins.roulette.plugin import _opened_ready, command_arguments


@pytest.mark.parametrize(
    ("body", "arguments"),
    [
        ("/roulette", ""),
        ("/roulette --explain", "--explain"),
        ("/roulette\t--explain", "--explain"),
        ("   /roulette reroll", "reroll"),  # three spaces: still a paragraph
        ("    /roulette", None),  # four spaces: an indented code block
        ("\t/roulette", None),  # a tab reaches column 4: a code block
        (" \t/roulette", None),
        ("/roulettex", None),
        ("/roulette-now", None),
        ("> /roulette", None),  # a quote
        ("```\n/roulette\n```", None),  # a fenced block
        ("Please /roulette", None),
        ("Looks good.\n/roulette", None),  # only the first line is the command
        ("/roulette --explain\r\nthanks!", "--explain"),  # CRLF
        ("/roulette\rthanks", ""),  # a lone CR ends the line too
        ("\n\n/roulette", ""),  # blank lines before the first text are skipped
        ("  \t \r\n/roulette --force", "--force"),  # a blank line of spaces and tabs
        ("\n    /roulette", None),  # after a blank line, still a code block
        ("/ROULETTE", None),  # the command is lower case, as typed in GitLab
        ("", None),
        ("   \n\t", None),
    ],
)
def test_what_counts_as_the_command(body: str, arguments: str | None) -> None:
    assert command_arguments(body) == arguments


# GitLab 13+ sends ``draft``; older ones ``work_in_progress`` with ``draft`` null or absent.
DRAFT_SHAPES: list[dict[str, Any]] = [
    {"draft": True, "work_in_progress": True},
    {"draft": None, "work_in_progress": True},
    {"work_in_progress": True},
]
READY_SHAPES: list[dict[str, Any]] = [
    {"draft": False, "work_in_progress": False},
    {"draft": None, "work_in_progress": False},
    {"work_in_progress": False},
    {},
]


@pytest.mark.parametrize("fields", DRAFT_SHAPES)
def test_a_draft_in_any_shape_is_a_draft(fields: dict[str, Any]) -> None:
    assert is_draft(fields) is True


@pytest.mark.parametrize("fields", READY_SHAPES)
def test_a_ready_mr_in_any_shape_is_ready(fields: dict[str, Any]) -> None:
    assert is_draft(fields) is False


def _opened(fields: dict[str, Any], action: str = "open", **changes: Any) -> dict[str, Any]:
    attributes = {"iid": 2, "state": "opened", "action": action, "reviewer_ids": [], **fields}
    return {"object_attributes": attributes, "reviewers": [], "changes": changes}


@pytest.mark.parametrize("fields", DRAFT_SHAPES)
def test_a_draft_opened_waits(fields: dict[str, Any]) -> None:
    assert not _opened_ready(_opened(fields))


@pytest.mark.parametrize("fields", READY_SHAPES)
def test_a_ready_mr_opened_rolls(fields: dict[str, Any]) -> None:
    assert _opened_ready(_opened(fields))


@pytest.mark.parametrize(
    "changes",
    [
        {"draft": {"previous": True, "current": False}},
        {"work_in_progress": {"previous": True, "current": False}},
        {
            "draft": {"previous": None, "current": None},
            "work_in_progress": {"previous": True, "current": False},
        },
    ],
)
def test_leaving_draft_is_seen_in_both_shapes(changes: dict[str, Any]) -> None:
    assert draft_change(changes) == (True, False)
    ready = {"draft": None, "work_in_progress": False}
    assert _opened_ready(_opened(ready, "update", **changes))


def test_becoming_a_draft_or_other_updates_do_not_roll() -> None:
    to_draft = {"work_in_progress": {"previous": False, "current": True}}
    assert draft_change(to_draft) == (False, True)
    assert not _opened_ready(_opened({"work_in_progress": True}, "update", **to_draft))
    assert draft_change({"title": {"previous": "a", "current": "b"}}) is None
    assert not _opened_ready(_opened({}, "update", title={"previous": "a", "current": "b"}))


def test_an_mr_opened_with_reviewers_or_not_open_does_not_roll() -> None:
    with_reviewers = _opened({})
    with_reviewers["reviewers"] = [{"username": "bob"}]
    assert not _opened_ready(with_reviewers)
    assert not _opened_ready(_opened({"state": "closed"}))
