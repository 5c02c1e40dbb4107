"""Structured logging with secret masking, on the standard library only.

``configure_logging`` installs one handler on the root logger, so every record goes
through it, third-party libraries included (except loggers that set
``propagate = False`` and bring their own handlers). Both formatters build the final
text first and mask it afterwards, so secrets are hidden wherever they came from: the
message, its ``%``-arguments, ``extra={...}`` fields, exception messages in tracebacks,
stack information.

What :class:`SecretMasker` replaces with ``***``:

1. every exact secret value it was given (values shorter than 4 characters are
   ignored; the percent-encoded and JSON-escaped spellings are masked as well);
2. the password of a URL: ``scheme://user:password@host`` becomes
   ``scheme://user:***@host`` (also ``redis://:password@host``);
3. the value of a field whose name ends in ``token``, ``secret``, ``password``,
   ``passwd``, ``passphrase`` or ``api_key``/``apikey`` (so ``PRIVATE-TOKEN``,
   ``X-Gitlab-Token``, ``access_token``, ``private_token``, ``webhook_secret``,
   ``gitlab_token``...), written ``name=value``, ``name: value``, ``name = value``,
   ``"name": "value"`` or ``'name': 'value'``, case-insensitively. An unquoted value
   ends at whitespace, ``&``, ``,``, a quote or the end of the text; a quoted value
   ends at its closing quote (spaces and commas inside are masked too);
4. ``Authorization: <scheme> <credentials>`` (and ``Proxy-Authorization``): the
   scheme word is kept, as in ``Authorization: Bearer ***``;
5. a bare ``Bearer <credentials>`` (credentials of at least 8 token characters),
   Standard Webhooks signing tokens ``whsec_<base64>`` (becoming ``whsec_***``) and
   GitLab tokens with a known prefix (``glpat-``, ``gldt-``, ``glrt-``...).

Ordinary text is left alone: a name must be followed by ``:`` or ``=`` and a value to
be masked, so "the token expired", ``tokens=3``, ``token_count=3`` and
``password == expected`` are unchanged. The price of rule 3 is that prose such as
"invalid token: expired" loses the word after the colon; for logs, hiding too much
beats leaking a credential.

Structured values (``extra`` fields that are dicts or lists) are also masked field by
field: a key whose name looks secret has its whole value replaced.

Why not structlog (measured for issue 9 with structlog 26.1 as a
``structlog.stdlib.ProcessorFormatter``): it could only replace the two formatters
(the masker and the configuration stay as they are). The documented console line is
not ``ConsoleRenderer``'s, the JSON ``ts`` needs milliseconds, a record with bad
``%``-arguments must keep its level (``ProcessorFormatter`` calls ``getMessage()``
itself) and JSON masking must run per field, not on the rendered text, so most of the
formatter code came back as custom processors: the file shrank by 17 of 464 lines with
7 of the 68 tests in tests/test_logs.py still failing, and each record took 2-3 times
as long (JSON 24 -> 71 µs, console 28 -> 55 µs; it copies every record). Not worth a
dependency.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TextIO, TypeAlias
from urllib.parse import quote, quote_plus

__all__ = [
    "ConsoleFormatter",
    "JsonFormatter",
    "SecretMasker",
    "bound_id",
    "configure_logging",
    "new_id",
    "request_id",
]

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
"""Id of the HTTP request or event being handled; added to every log line while set."""


def new_id() -> str:
    """A short random hexadecimal id (16 characters)."""
    return os.urandom(8).hex()  # a fifth of uuid4().hex[:16]: one per request


@contextlib.contextmanager
def bound_id(value: str | None = None) -> Iterator[str]:
    """Set :data:`request_id` for the block (a fresh id when ``value`` is None).

    Asyncio tasks created inside the block copy the context and keep the id.
    """
    rid = value if value is not None else new_id()
    token = request_id.set(rid)
    try:
        yield rid
    finally:
        request_id.reset(token)


# --------------------------------------------------------------------------- masking

MASK = "***"
_MIN_SECRET_LENGTH = 4

_NAME_PREFIX = r"(?:[a-z0-9]+[_-])*"
_SENSITIVE_NAMES = r"(?:token|secret|password|passwd|passphrase|api[_-]?key|apikey)"
_AUTH_SCHEMES = r"(?:bearer|basic|token|digest|bot|negotiate|jwt)"

_AUTH_RE = re.compile(
    rf"""
    (?P<head>(?<![\w-])(?:proxy-)?authorization["']?[ \t]*[:=][ \t]*["']?)
    (?:(?P<scheme>{_AUTH_SCHEMES})[ \t]+)?
    (?P<value>(?!\*\*\*)[^\s&,"']+)
    """,
    re.IGNORECASE | re.VERBOSE,
)
_FIELD_RE = re.compile(
    rf"""
    (?P<head>(?<![\w-]){_NAME_PREFIX}{_SENSITIVE_NAMES}["']?[ \t]*[:=][ \t]*)
    (?:
        (?P<quote>["'])(?:\\.|(?!(?P=quote))[^\\\n])*(?P=quote)
      | ["']?(?![=*]|Secret(?:Str|Bytes)\()[^\s&,"']+  # pydantic's repr is already masked
    )
    """,
    re.IGNORECASE | re.VERBOSE,
)
_URL_RE = re.compile(
    r"""(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@"']*:)[^\s/"']+@""",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(
    r"(?P<head>(?<![\w-])bearer[ \t]+)[A-Za-z0-9._~+/-]{8,}=*",
    re.IGNORECASE,
)
_WHSEC_RE = re.compile(r"(?<![A-Za-z0-9])whsec_[A-Za-z0-9+/=]+")
_GITLAB_TOKEN_RE = re.compile(
    r"(?<![A-Za-z0-9])(?P<head>gl(?:pat|oas|dt|rt|cbt|ptt|ft|imt|agent|soat|ffct)-)"
    r"[A-Za-z0-9_.-]{8,}"
)
_SECRET_KEY_RE = re.compile(rf"{_NAME_PREFIX}{_SENSITIVE_NAMES}", re.IGNORECASE)
_AUTH_KEY_RE = re.compile(r"(?:proxy-)?authorization", re.IGNORECASE)
_AUTH_VALUE_RE = re.compile(rf"(?P<scheme>{_AUTH_SCHEMES})[ \t]+\S", re.IGNORECASE)

_MAX_DEPTH = 6

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"


def _auth_repl(match: re.Match[str]) -> str:
    scheme = match["scheme"]
    return f"{match['head']}{scheme} {MASK}" if scheme else f"{match['head']}{MASK}"


def _head_repl(match: re.Match[str]) -> str:
    return f"{match['head']}{MASK}"


def _field_repl(match: re.Match[str]) -> str:
    quote_char = match["quote"] or ""
    return f"{match['head']}{quote_char}{MASK}{quote_char}"


def _whsec_repl(match: re.Match[str]) -> str:
    return f"whsec_{MASK}"


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


class SecretMasker:
    """Replaces secrets in text with ``***`` (see the module docstring for the rules).

    ``secrets`` are exact values to hide wherever they appear; ``None``, empty and
    short (< 4 characters) values are skipped. The generic patterns are compiled once
    at import; the exact values once per masker.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < _MIN_SECRET_LENGTH:
                continue
            variants.update(
                {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
            )
        ordered = sorted(variants, key=lambda s: (-len(s), s))
        self._exact: re.Pattern[str] | None = (
            re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None
        )

    def mask(self, text: str) -> str:
        """Return ``text`` with every secret it contains replaced by ``***``."""
        if self._exact is not None:
            text = self._exact.sub(MASK, text)
        text = _AUTH_RE.sub(_auth_repl, text)
        text = _FIELD_RE.sub(_field_repl, text)
        text = _URL_RE.sub(rf"\g<head>{MASK}@", text)
        text = _BEARER_RE.sub(_head_repl, text)
        text = _WHSEC_RE.sub(_whsec_repl, text)
        return _GITLAB_TOKEN_RE.sub(_head_repl, text)

    def sanitize(self, value: object, _depth: int = 0) -> JsonValue:
        """Turn ``value`` into masked, JSON-serialisable data.

        Strings are masked; dicts, lists, tuples and sets are walked (a key whose name
        looks secret has its whole value replaced); anything else becomes its masked
        ``str``.
        """
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                return str(value)
            text = _safe_str(value)
            masked = self.mask(text)
            return value if masked == text else masked
        if _depth < _MAX_DEPTH:
            if isinstance(value, Mapping):
                return {
                    self.mask(_safe_str(key)): self.sanitize_field(_safe_str(key), item, _depth)
                    for key, item in value.items()
                }
            if isinstance(value, list | tuple | set | frozenset):
                return [self.sanitize(item, _depth + 1) for item in value]
        return self.mask(_safe_str(value))

    def sanitize_field(self, name: str, value: object, depth: int = 0) -> JsonValue:
        """Like :meth:`sanitize` for the value of a field called ``name``.

        The whole value is replaced when the name looks secret (an ``Authorization``
        value keeps its scheme word); None and empty values are kept.
        """
        if value is None or (isinstance(value, str) and not value):
            return self.sanitize(value, depth + 1)
        if _AUTH_KEY_RE.fullmatch(name):
            if isinstance(value, str) and (match := _AUTH_VALUE_RE.match(value)):
                return f"{match['scheme']} {MASK}"
            return MASK
        if _SECRET_KEY_RE.fullmatch(name):
            return MASK
        return self.sanitize(value, depth + 1)


def stored_error(error: BaseException, secrets: Iterable[str | None], limit: int = 2000) -> str:
    """``Type: message`` of ``error`` as the database keeps it (a dead letter's
    ``last_error``, a failed job's ``error``): secrets masked as in the logs (the
    ``secrets`` given, URL passwords, tokens...), at most ``limit`` characters.

    Rows outlive logs and are read by people who may not see the logs: an exception
    whose message carries a database URL or a token must not put it there.
    """
    return SecretMasker(secrets).mask(f"{type(error).__name__}: {error}")[:limit]


# ------------------------------------------------------------------------ formatters

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    {
        *logging.LogRecord("", logging.INFO, "", 0, "", (), None).__dict__,
        "message",
        "asctime",
        "taskName",
    }
)


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD_ATTRS and not key.startswith("_")
    }


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception as exc:
        return (
            f"{_safe_str(record.msg)} [log message could not be formatted with args "
            f"{_safe_str(record.args)}: {type(exc).__name__}: {_safe_str(exc)}]"
        )


class _MaskingFormatter(logging.Formatter):
    def __init__(self, masker: SecretMasker | None = None) -> None:
        super().__init__()
        self.masker = masker if masker is not None else SecretMasker()

    def _traceback(self, record: logging.LogRecord) -> str | None:
        """Exception and stack text of the record, unmasked, or None."""
        parts: list[str] = []
        try:
            if record.exc_info and record.exc_info[0] is not None:
                parts.append(self.formatException(record.exc_info))
            elif record.exc_text:
                parts.append(record.exc_text)
            if record.stack_info:
                parts.append(self.formatStack(record.stack_info))
        except Exception as exc:
            parts.append(f"<traceback could not be formatted: {type(exc).__name__}>")
        return "\n".join(parts) if parts else None


class JsonFormatter(_MaskingFormatter):
    """One JSON object per line.

    Keys: ``ts`` (ISO-8601 UTC, milliseconds, ``Z``), ``level`` (lowercase),
    ``logger``, ``msg``, ``request_id`` (while :data:`request_id` is set), every
    ``extra`` field (values that are not JSON-serialisable become their ``str``) and
    ``exc`` (traceback) when there is exception or stack information. Never raises.
    """

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception as exc:
            fallback = {
                "ts": _iso_ts(time.time()),
                "level": "error",
                "logger": __name__,
                "msg": self.masker.mask(
                    f"log record could not be formatted: {type(exc).__name__}: "
                    f"{_safe_str(exc)}; original message: {_safe_str(record.msg)}"
                ),
            }
            return json.dumps(fallback, ensure_ascii=False)

    def _format(self, record: logging.LogRecord) -> str:
        payload: dict[str, JsonValue] = {
            "ts": _iso_ts(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": self.masker.mask(_message(record)),
        }
        rid = request_id.get()
        if rid is not None:
            payload["request_id"] = self.masker.mask(rid)
        for key, value in _extras(record).items():
            payload[self.masker.mask(key)] = self.masker.sanitize_field(key, value, 0)
        trace = self._traceback(record)
        if trace is not None:
            payload["exc"] = self.masker.mask(trace)
        return json.dumps(payload, ensure_ascii=False, default=_safe_str)


def _iso_ts(created: float) -> str:
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


_BARE_VALUE_RE = re.compile(r"[^\s\"'=]+")


class ConsoleFormatter(_MaskingFormatter):
    """Human-readable lines, local time:

    ``HH:MM:SS.mmm LEVEL logger [request_id] message key=value ...``

    (the ``[request_id]`` part only while one is bound), then the traceback, if any, on
    the following lines. The whole text is masked. Never raises.
    """

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self.masker.mask(self._format(record))
        except Exception as exc:
            return self.masker.mask(
                f"log record could not be formatted: {type(exc).__name__}: "
                f"{_safe_str(exc)}; original message: {_safe_str(record.msg)}"
            )

    def _format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", self.converter(record.created))
        parts = [f"{clock}.{int(record.msecs):03d}", record.levelname, record.name]
        rid = request_id.get()
        if rid is not None:
            parts.append(f"[{rid}]")
        parts.append(_message(record))
        for key, value in _extras(record).items():
            parts.append(f"{key}={_console_value(self.masker.sanitize_field(key, value, 0))}")
        line = " ".join(parts)
        trace = self._traceback(record)
        return f"{line}\n{trace}" if trace is not None else line


def _console_value(value: JsonValue) -> str:
    if isinstance(value, str):
        return value if _BARE_VALUE_RE.fullmatch(value) else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------- configuration

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_FORMATTERS: dict[str, type[_MaskingFormatter]] = {
    "json": JsonFormatter,
    "console": ConsoleFormatter,
}
# Chatty below WARNING; shown again at debug level.
# alembic.runtime.plugins announces each of its plugins at import: noise, not news.
_NOISY_LOGGERS = ("urllib3", "httpx", "httpcore", "apscheduler", "alembic.runtime.plugins")
# The application writes its own access lines.
_ALWAYS_QUIET_LOGGERS = ("aiohttp.access",)
# mattermostautodriver logs an ERROR for every error answer just before raising it as an
# exception (client.py ``_check_response``, on its logger "mattermostautodriver.websocket",
# which it sets to INFO itself), and a traceback when its own websocket fails; the adapter
# catches those exceptions and logs what matters, at the level it chooses, once.
_LIBRARY_ERRORS_RAISED = (
    "mattermostautodriver",
    "mattermostautodriver.api",
    "mattermostautodriver.websocket",
)


class _RaisedElsewhere(logging.Filter):
    """Drops a library's ERROR and CRITICAL records: the errors they describe reach the
    caller as exceptions, and the caller logs them. Warnings (retries) and below pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


class _RouletteHandler(logging.StreamHandler[TextIO]):
    """The handler ``configure_logging`` installs (so a second call can replace it)."""


def configure_logging(
    level: str = "info",
    fmt: str = "json",
    secrets: Iterable[str | None] = (),
    *,
    stream: TextIO | None = None,
) -> None:
    """Send all logging to ``stream`` (stderr by default), formatted and masked.

    ``level`` is one of debug, info, warning, error, critical; ``fmt`` is ``json`` or
    ``console`` (both case-insensitive). ``secrets`` are exact values to mask. Calling
    this again replaces the handler installed by the previous call.

    Raises:
        ValueError: ``level`` or ``fmt`` is not recognised (the message names the
            ``LOG_LEVEL`` or ``LOG_FORMAT`` setting).
    """
    level_name = str(level).strip().lower()
    if level_name not in _LEVELS:
        raise ValueError(f"invalid LOG_LEVEL {level!r}: expected one of {', '.join(_LEVELS)}")
    fmt_name = str(fmt).strip().lower()
    if fmt_name not in _FORMATTERS:
        raise ValueError(f"invalid LOG_FORMAT {fmt!r}: expected one of {', '.join(_FORMATTERS)}")
    numeric_level = _LEVELS[level_name]

    handler = _RouletteHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_FORMATTERS[fmt_name](SecretMasker(secrets)))

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RouletteHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)

    noisy_level = logging.NOTSET if numeric_level <= logging.DEBUG else logging.WARNING
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(noisy_level)
    for name in _ALWAYS_QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in _LIBRARY_ERRORS_RAISED:
        library = logging.getLogger(name)
        if not any(isinstance(f, _RaisedElsewhere) for f in library.filters):
            library.addFilter(_RaisedElsewhere())
