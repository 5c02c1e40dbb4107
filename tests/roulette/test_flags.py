"""The /roulette flags, as typed in a GitLab comment or a chat command."""

from __future__ import annotations

import pytest

from bot.errors import CommandError
from bot.i18n import translator
from plugins.roulette.flags import Flags, parse_flags, split_words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Flags()),
        ("--explain", Flags(explain=True)),
        ("reroll --force", Flags(reroll=True, force=True)),
        ("--no-codeowner", Flags(no_codeowner=True)),
        ("--include @bob --include carol", Flags(include=("bob", "carol"))),
        (
            "--include=@bob,@carol --exclude @dave",
            Flags(include=("bob", "carol"), exclude=("dave",)),
        ),
        ("--include @bob --include @bob", Flags(include=("bob",))),
        ("help", Flags(help=True)),
    ],
)
def test_flags(text: str, expected: Flags) -> None:
    assert parse_flags(split_words(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("--bogus", "unknown option --bogus"),
        ("--include", "--include expects @username"),
        ("--include --force", "--include expects @username"),
        # What was typed is shown as text in chat and notes (bot.chat.markdown_text).
        ("--exclude @bad!name", "--exclude expects @username, not '@\u200bbad\\\\!name'"),
        ("--include @bob --exclude bob", "@bob is both included and excluded"),
        ("please", "unexpected 'please'"),
        ('--include "@bob', "cannot read the options"),
    ],
)
def test_bad_flags_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_flags(split_words(text))


@pytest.mark.parametrize(
    ("text", "english", "french"),
    [
        ('--include "@bob', "a quotation mark is not closed", "un guillemet n'est pas fermé"),
        ("--include @bob \\", "a backslash ends the text", "une barre oblique inverse termine"),
    ],
)
def test_options_that_cannot_be_split_are_refused_in_the_readers_language(
    text: str, english: str, french: str
) -> None:
    """shlex says why in English; the reader reads it in their own language."""
    with pytest.raises(CommandError) as refused:
        split_words(text, "/roulette MR_URL")
    assert str(refused.value) == (f"cannot read the options ({english}); usage: /roulette MR_URL")
    in_french = refused.value.render(translator("fr"))
    assert in_french.startswith(f"impossible de lire les options ({french}")
    assert "quotation" not in in_french and "escaped" not in in_french
