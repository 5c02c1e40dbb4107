"""What chat handlers receive and answer, free of any Mattermost detail.

A slash command (``/roulette``, ``/ooo``), a direct message or an @mention becomes a
``CommandContext``; the handler returns a ``Reply`` (or raises ``CommandError``, shown
to the user as an ephemeral message). An interactive dialog's submission becomes a
``DialogSubmission``; the handler returns ``DialogResult`` with per-field errors, if any.
A click on a message button (``Button``, PROTOCOLS.md A8) becomes an ``ActionContext``;
the ``@action`` handler returns an ``ActionResult`` (the post's new text, an ephemeral
answer, a dialog to open).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import regex

from bot.i18n import translator

Visibility = Literal["ephemeral", "in_channel"]

#: Mattermost's post limit, in runes (Unicode code points): ``PostMessageMaxRunesV2``, on
#: every server whose ``Posts.Message`` column has the current schema (PROTOCOLS.md A8).
POST_LIMIT = 16383
#: ``PostMessageMaxRunesV1``: servers still on the old schema (Mattermost before 5.0).
LEGACY_POST_LIMIT = 4000
#: How many posts one slash-command answer may take: the response and up to four
#: ``extra_responses``. Past that the last one is cut with "… and N more": a wall of
#: posts helps nobody, and each one is a notification.
REPLY_PARTS = 5

# What Mattermost's Markdown (and GitLab's) would read as syntax in a name or an argument.
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_\[\]()<>#+!|~])")
_URL_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*):(?=//)")  # http:// autolinks
_WWW = re.compile(r"(?i)\b(www)\.")  # www.example.com autolinks
ZERO_WIDTH_SPACE = "\u200b"


def markdown_text(value: object) -> str:
    """``value`` (a name, a reason, an argument someone typed: any text the bot did not
    write) as Markdown that shows it as typed, for a Mattermost post or a GitLab note.

    Markdown punctuation is backslash-escaped (no emphasis, code span, link, image,
    heading or table; the backslashes do not show), a URL in it is no link (``http\\://``,
    ``www\\.``), an ``@`` or ``~`` is followed by a zero-width space so ``@channel``,
    ``@all`` or ``@someone`` notify nobody and ``~town-square`` links nowhere (Mattermost
    finds mentions in the raw text, where a backslash would not stop them), and line
    breaks become spaces. Text already written as Markdown (the bot's own) is not for here.
    """
    text = " ".join(str(value).splitlines())
    text = _MARKDOWN_SYNTAX.sub(r"\\\1", text)
    text = _URL_SCHEME.sub(r"\1\\:", text)
    text = _WWW.sub(r"\1\\.", text)
    return text.replace("@", "@" + ZERO_WIDTH_SPACE).replace("~", "~" + ZERO_WIDTH_SPACE)


@dataclass(frozen=True)
class Dialog:
    """An interactive dialog to open (Mattermost ``/actions/dialogs/open``)."""

    callback_id: str
    title: str
    elements: tuple[Mapping[str, Any], ...]
    introduction_text: str = ""
    submit_label: str = "Submit"
    state: str = ""  # set by the adapter: a value it signs, checked on submission
    # The answer when the dialog cannot open (its trigger id expired...): how to do the
    # same without it, in the reader's language.
    fallback: str = ""
    # A small JSON-able dict signed into the dialog's state with its callback id and user,
    # handed back verified as ``DialogSubmission.context`` (what the dialog is about).
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """An answer: its text (Markdown; empty for a dialog alone), who sees it, a dialog
    to open, and further posts. The adapter keeps each post within the post limit."""

    text: str = ""
    visibility: Visibility = "ephemeral"
    dialog: Dialog | None = None  # open this dialog (needs the request's trigger id)
    extra: tuple[Reply, ...] = ()  # further messages (Mattermost ``extra_responses``)


@dataclass(frozen=True)
class ChatUser:
    id: str
    username: str
    locale: str  # "en" | "fr": the user's own Mattermost locale, else the configured one
    timezone: str | None = None


Respond = Callable[[Reply], Awaitable[None]]


@dataclass(frozen=True)
class CommandContext:
    """One command: ``/trigger text`` typed by ``user`` in ``channel_id``."""

    command: str  # the trigger, without the slash
    text: str  # the arguments
    user: ChatUser
    channel_id: str
    team_id: str = ""
    trigger_id: str = ""
    # Delivers a later answer (Mattermost's response_url) when the work takes a while.
    respond_later: Respond | None = None
    source: Literal["slash", "message"] = "slash"
    extras: Mapping[str, Any] = field(default_factory=dict)
    # Set for a command that opens a dialog (``@command(..., opens_dialog=True)``): then
    # ``user`` is only what the request carried (id, name, a cached or the configured
    # locale) and ``resolved()`` looks the rest up, once the dialog has had its chance.
    resolve_user: Callable[[], Awaitable[ChatUser]] | None = None

    async def resolved(self) -> CommandContext:
        """This context with the user looked up in Mattermost (locale, timezone); itself
        when that is already done. Never raises: an unreachable Mattermost leaves the
        user as the request carried it."""
        if self.resolve_user is None:
            return self
        return replace(self, user=await self.resolve_user(), resolve_user=None)


@dataclass(frozen=True)
class DialogSubmission:
    callback_id: str
    user: ChatUser
    channel_id: str
    submission: Mapping[str, Any]
    cancelled: bool = False
    # The ``Dialog.context`` the dialog was opened with, verified (empty: none).
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DialogResult:
    """Empty: the dialog closes. ``errors``: shown under each field. ``error``: on top."""

    errors: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    message: Reply | None = None  # posted (ephemeral) once the dialog closed


# --------------------------------------------------------------------- message buttons

BUTTON_STYLES = frozenset({"default", "primary", "danger", "good", "warning"})
_BUTTON_ID = re.compile(r"[A-Za-z0-9]{1,64}")


@dataclass(frozen=True)
class Button:
    """A button on a post (a Mattermost message-attachment action, PROTOCOLS.md A8).

    ``id``: alphanumeric (Mattermost routes clicks by it), unique within the post.
    ``label``: the shown text, already in the reader's language. ``action``: the name of
    the ``@action`` handler a click runs. ``payload``: a small JSON-able dict handed to it,
    signed by the adapter together with the user the button is meant for.
    """

    id: str
    label: str
    action: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    style: str = "default"  # default | primary | danger | good | warning

    def __post_init__(self) -> None:
        if not _BUTTON_ID.fullmatch(self.id):
            raise ValueError(f"button id {self.id!r}: 1 to 64 letters and digits")
        if self.style not in BUTTON_STYLES:
            raise ValueError(f"button style {self.style!r}: one of {sorted(BUTTON_STYLES)}")


@dataclass(frozen=True)
class ActionContext:
    """One click on a ``Button``, already verified: its signed context is the bot's and
    ``user`` is the person the button was made for."""

    action: str  # the handler name
    button: str  # the clicked Button.id
    user: ChatUser  # who clicked
    channel_id: str
    post_id: str
    trigger_id: str  # opens a dialog (``ActionResult.dialog``) within its short life
    payload: Mapping[str, Any]  # the button's verified payload


@dataclass(frozen=True)
class ActionResult:
    """What a click answers: ``update`` replaces the clicked post's message (its buttons
    go, unless ``buttons`` gives new ones); ``ephemeral`` is shown to the clicker only;
    ``dialog`` opens with the click's trigger id. All empty: nothing changes."""

    update: str | None = None
    buttons: tuple[Button, ...] = ()
    ephemeral: str | None = None
    dialog: Dialog | None = None


# --------------------------------------------------------------------- the post limit

_GRAPHEME = regex.compile(r"\X")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_TABLE_DELIMITER = re.compile(r" {0,3}\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*")


def fit_to_post(text: str, limit: int, locale: str, *, parts: int = 1) -> list[str]:
    """``text`` as at most ``parts`` messages of at most ``limit`` runes each.

    Every chat answer goes through here (the Mattermost adapter calls it for each post,
    ephemeral post, direct message, slash-command response and ``response_url``
    follow-up), so no answer is ever refused for its length. ``limit`` counts runes, that
    is Unicode code points, as Mattermost does (``utf8.RuneCountInString``), which is
    Python's ``len``. A text within the limit comes back unchanged, as one message.

    A longer one is split between lines; when ``parts`` messages are not enough, the
    last one ends with a line "… and N more" in ``locale`` (N: the lines left out). A
    Markdown table cut in two goes on in the next message under its header row again; a
    fenced code block cut in two is closed, and opened again in the next message. A
    single line longer than a message is cut between grapheme clusters (a letter and its
    accents, an emoji sequence, a flag stay whole).

    Raises ``ValueError`` when ``limit`` or ``parts`` is below 1.
    """
    if limit < 1 or parts < 1:
        raise ValueError("limit and parts must be at least 1")
    if len(text) <= limit:
        return [text]
    _ = translator(locale)
    lines = text.split("\n")
    messages: list[str] = []
    state = _Block()
    start = 0
    while True:
        carry = state.reopen()
        if _size(carry + lines[start:]) <= limit:
            messages.append("\n".join(carry + lines[start:]))
            return messages
        last = len(messages) == parts - 1
        widest = _.ngettext(
            "… and {count} more", "… and {count} more", len(lines) - start, count=len(lines) - start
        )
        marked = last and len(widest) + 3 <= limit  # room for the marker and one rune
        budget = limit - (len(widest) + 2 if marked else 0)
        chunk, start, state = _take(lines, start, carry, budget, state)
        if last and not marked:  # a limit too small for the marker: cut, unmarked
            messages.append("\n".join(chunk)[:limit])
            return messages
        if last:
            gap = "\n\n" if state.table or not chunk else "\n"
            left = len(lines) - start
            marker = _.ngettext("… and {count} more", "… and {count} more", left, count=left)
            messages.append("\n".join(chunk) + gap + marker if chunk else marker)
            return messages
        messages.append("\n".join(chunk))


def _size(lines: list[str]) -> int:
    """Runes of ``"\\n".join(lines)``."""
    return sum(map(len, lines)) + max(len(lines) - 1, 0)


def _take(
    lines: list[str], start: int, carry: list[str], budget: int, state: _Block
) -> tuple[list[str], int, _Block]:
    """The lines from ``start`` that fit in ``budget`` runes after ``carry`` (a fence or a
    table header opened again), closing a fence left open. Returns the message's lines,
    the next line to take and the Markdown state there. A line too long for an empty
    message is cut in two, its second half left in ``lines`` for the next message."""
    chunk = list(carry)
    size = _size(chunk)
    index = start
    while index < len(lines):
        line = lines[index]
        after = state.after(line)
        closer = after.closer()
        added = len(line) + (1 if chunk else 0)
        if size + added + (len(closer) + 1 if closer else 0) > budget:
            break
        chunk.append(line)
        size += added
        state = after
        index += 1
    closer = state.closer()
    if index == start:  # not even one line: cut the next one
        room = budget - size - (1 if chunk else 0) - (len(closer) + 1 if closer else 0)
        if room < 1:  # the block opened again leaves no room: write the text bare
            chunk, closer, room = [], "", budget
        head, tail = _cut(lines[index], max(room, 1))
        chunk.append(head)
        lines[index] = tail
    if closer:
        chunk.append(closer)
    return chunk, index, state


def _cut(line: str, room: int) -> tuple[str, str]:
    """``line`` cut after at most ``room`` runes, between grapheme clusters (between code
    points only when its first cluster alone is longer than ``room``)."""
    end = 0
    for match in _GRAPHEME.finditer(line):
        if match.end() > room:
            break
        end = match.end()
    end = end or room
    return line[:end], line[end:]


@dataclass(frozen=True)
class _Block:
    """Where a line of Markdown stands: in a fenced code block (its fence), in a table
    (its header and delimiter rows), or neither; ``previous`` is the line before."""

    fence: str = ""
    fence_line: str = ""
    table: tuple[str, ...] = ()
    previous: str = ""

    def after(self, line: str) -> _Block:
        """The state once ``line`` is written."""
        found = _FENCE.match(line)
        if self.fence:
            closes = (
                found is not None
                and found[1][0] == self.fence[0]
                and len(found[1]) >= len(self.fence)
                and not line[found.end() :].strip()
            )
            return _Block(previous=line) if closes else replace(self, previous=line)
        if found is not None:
            return _Block(fence=found[1], fence_line=line, previous=line)
        starts_table = "|" in line and "|" in self.previous and not self.table
        if starts_table and _TABLE_DELIMITER.fullmatch(line):
            return _Block(table=(self.previous, line), previous=line)
        if self.table and "|" in line and line.strip():
            return replace(self, previous=line)
        return _Block(previous=line)

    def closer(self) -> str:
        """The line that closes the open code block, if any."""
        return self.fence

    def reopen(self) -> list[str]:
        """The lines that open again, in a next message, the block left open here."""
        if self.fence:
            return [self.fence_line]
        return list(self.table)
