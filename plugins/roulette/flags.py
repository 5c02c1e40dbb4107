"""The ``/roulette`` flags, shared by GitLab comments, chat commands and ``pick``.

/roulette [reroll] [--explain] [--force] [--no-codeowner]
          [--include @user]... [--exclude @user]...
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from bot.chat import markdown_text
from bot.errors import CommandError
from bot.i18n import Message

USAGE = (
    "/roulette [reroll] [--explain] [--force] [--no-codeowner] [--include @user] [--exclude @user]"
)
_USERNAME = re.compile(r"@?([A-Za-z0-9_.\-]+)")
_SWITCHES = {"--explain": "explain", "--force": "force", "--no-codeowner": "no_codeowner"}
_LISTS = ("--include", "--exclude")


@dataclass(frozen=True)
class Flags:
    explain: bool = False
    force: bool = False
    reroll: bool = False
    no_codeowner: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    help: bool = False


# shlex.split's two refusals (its ``ValueError`` texts), said in the reader's language.
_UNSPLITTABLE = {
    "No closing quotation": Message("a quotation mark is not closed"),
    "No escaped character": Message("a backslash ends the text"),
}


def split_words(text: str, usage: str = USAGE) -> list[str]:
    """``text`` split as a shell would; ``CommandError`` (with ``usage``) when it cannot be:
    an unclosed quotation mark, or a backslash with nothing after it."""
    try:
        return shlex.split(text)
    except ValueError as e:
        reason = _UNSPLITTABLE.get(str(e), Message("unreadable quoting"))
        raise CommandError(
            "cannot read the options ({reason}); usage: {usage}", reason=reason, usage=usage
        ) from None


def _usernames(flag: str, value: str) -> list[str]:
    names = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        match = _USERNAME.fullmatch(part)
        if match is None:
            raise CommandError(
                "{flag} expects @username, not {value}", flag=flag, value=markdown_text(repr(part))
            )
        names.append(match.group(1))
    if not names:
        raise CommandError("{flag} expects @username", flag=flag)
    return names


def parse_flags(words: Sequence[str], usage: str = USAGE) -> Flags:
    """Parse the words after ``/roulette`` (and after the MR URL in chat)."""
    values: dict[str, bool] = {}
    lists: dict[str, list[str]] = {"--include": [], "--exclude": []}
    reroll = help_ = False
    position = 0
    while position < len(words):
        word = words[position]
        flag, has_value, value = word.partition("=")
        if word in ("reroll", "--reroll"):
            reroll = True
        elif word in ("help", "--help", "-h"):
            help_ = True
        elif word in _SWITCHES:
            values[_SWITCHES[word]] = True
        elif flag in _LISTS:
            if not has_value:
                position += 1
                if position >= len(words) or words[position].startswith("--"):
                    raise CommandError("{flag} expects @username", flag=flag)
                value = words[position]
            lists[flag] += _usernames(flag, value)
        elif word.startswith("-"):
            raise CommandError(
                "unknown option {option}; usage: {usage}", option=markdown_text(word), usage=usage
            )
        else:
            raise CommandError(
                "unexpected {word}; usage: {usage}", word=markdown_text(repr(word)), usage=usage
            )
        position += 1
    overlap = {n.lower() for n in lists["--include"]} & {n.lower() for n in lists["--exclude"]}
    if overlap:
        raise CommandError("@{name} is both included and excluded", name=sorted(overlap)[0])
    return Flags(
        explain=values.get("explain", False),
        force=values.get("force", False),
        reroll=reroll,
        no_codeowner=values.get("no_codeowner", False),
        include=tuple(dict.fromkeys(lists["--include"])),
        exclude=tuple(dict.fromkeys(lists["--exclude"])),
        help=help_,
    )
