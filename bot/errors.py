"""The bot's own exception types, and how an error becomes the one line a user reads."""

from __future__ import annotations

import os
import re
import socket


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
    """An expected user failure (bad flag, unknown MR...): the reason is shown as is."""
