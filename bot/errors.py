"""The bot's own exception types, and how an error becomes the one line a user reads."""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from bot.i18n import Message, Translator


class CommandFailed(Exception):
    """A command could not do its work; the message is the one line the user sees."""

    exit_code = 1


class UsageError(CommandFailed):
    """The command was asked something it cannot do (a bad argument): exit 2."""

    exit_code = 2


# SQLAlchemy appends "(Background on this error at: https://sqlalche.me/...)".
_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")


def one_line(error: BaseException) -> str:
    """The error's message on one line, without library boilerplate, at most 400 chars."""
    text = " ".join(_BACKGROUND.sub("", str(error)).split()) or type(error).__name__
    return text[:400]


def socket_reason(error: OSError) -> str:
    """``Address already in use`` rather than ``[Errno 98] error while attempting to bind…``."""
    if error.errno and error.errno > 0 and not isinstance(error, socket.gaierror):
        return os.strerror(error.errno)
    return error.strerror or one_line(error)


class CommandError(Exception):
    """An expected user failure (bad flag, unknown MR...), shown to the user in their
    language by the one path that renders replies.

    ``CommandError("unknown option {option}", option="--bogus")`` carries a catalog id and
    its parameters (``bot.i18n.Message``); ``render(_)`` gives the text in ``_``'s language,
    ``str()`` the English one (for logs and the command line). A text already rendered
    (``CommandError(_("..."))``) is shown as it is.
    """

    def __init__(self, message: str | Message, /, **params: Any) -> None:
        self.message = message if isinstance(message, Message) else Message(message, params)
        super().__init__(str(self.message))

    def render(self, _: Translator) -> str:
        """The reason in ``_``'s language."""
        return self.message.render(_)
