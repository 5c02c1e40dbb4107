"""What chat handlers receive and answer, free of any Mattermost detail.

A slash command (``/roulette``, ``/ooo``), a direct message or an @mention becomes a
``CommandContext``; the handler returns a ``Reply`` (or raises ``CommandError``, shown
to the user as an ephemeral message). An interactive dialog's submission becomes a
``DialogSubmission``; the handler returns ``DialogResult`` with per-field errors, if any.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Visibility = Literal["ephemeral", "in_channel"]


@dataclass(frozen=True)
class Dialog:
    """An interactive dialog to open (Mattermost ``/actions/dialogs/open``)."""

    callback_id: str
    title: str
    elements: tuple[Mapping[str, Any], ...]
    introduction_text: str = ""
    submit_label: str = "Submit"
    state: str = ""  # set by the adapter: a value it signs, checked on submission


@dataclass(frozen=True)
class Reply:
    text: str
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


@dataclass(frozen=True)
class DialogSubmission:
    callback_id: str
    user: ChatUser
    channel_id: str
    submission: Mapping[str, Any]
    cancelled: bool = False


@dataclass(frozen=True)
class DialogResult:
    """Empty: the dialog closes. ``errors``: shown under each field. ``error``: on top."""

    errors: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    message: Reply | None = None  # posted (ephemeral) once the dialog closed
