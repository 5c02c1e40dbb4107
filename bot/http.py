"""The embedded aiohttp server's core: probes, ``/metrics`` and the middlewares.

- Every request gets an id (``X-Request-Id`` when the caller sent a sane one), bound to
  the logs of everything it does and echoed back.
- Errors are JSON ``{"error": ...}``: 4xx keep their status; anything unexpected is
  logged with its traceback, counted, and answered as a JSON 500 without a traceback.
- Requests are counted and timed by route template (never the raw path) and status.
- Request bodies are read by one strict JSON loader (``parse_json``) and one strict form
  reader (``read_form``): whatever Python would accept but the database, the other engine
  or a later reader would refuse is refused at the door with a one-line 400 (``BadInput``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from itertools import accumulate
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from bot.context import AppContext
from bot.db import is_unavailable
from bot.db import ping as ping_database
from bot.logs import bound_id

log = logging.getLogger("bot.http")

CONTEXT = web.AppKey("context", AppContext)
#: Raises unless a webhook spool can take a delivery now (set by the app factory).
SPOOL_CHECK = web.AppKey[Callable[[], Awaitable[None]]]("spool_check")
READINESS_TIMEOUT = 2.0
MAX_BODY = 1024 * 1024
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_JSON_DEPTH = 64  # nesting levels of arrays and objects; GitLab's payloads use about 6
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # PostgreSQL's bigint, SQLite's INTEGER
MAX_FORM_FIELDS = 100  # Mattermost's slash-command form has about 15
FORM = "application/x-www-form-urlencoded"

CORE_ROUTES = (
    "GET /health",
    "GET /liveness",
    "GET /readiness",
    "GET /metrics",
    "POST /webhook/gitlab",
    "POST /mattermost/command",
    "GET /mattermost/command",
    "POST /mattermost/dialog",
    "POST /mattermost/action",
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, **kwargs: Any) -> web.Response:
    """JSON with ``Content-Type: application/json`` exactly (clients reject a charset)."""
    return web.Response(
        body=json.dumps(data, default=str).encode(),
        status=status,
        content_type="application/json",
        **kwargs,
    )


def error_response(status: int, message: str, **headers: str) -> web.Response:
    return json_response({"error": message}, status=status, headers=headers or None)


# --------------------------------------------------------------------------- strict input


class BadInput(ValueError):
    """A request body (or query) the bot will not act on.

    ``str(error)`` is a one-line reason, safe to send back as ``{"error": ...}``: it
    never echoes more than a short ``repr`` of the input. ``status`` is the HTTP status
    to answer with (400, or 415 for the wrong content type).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


_ESCAPES = (("\\\\", ""), ('\\"', ""))  # escaped backslashes first, then escaped quotes
_STRING = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
# The only ways JSON text decoded from UTF-8 can carry a NUL or a surrogate into a string:
# their escapes (raw control characters are invalid JSON, and UTF-8 cannot hold surrogates).
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in the JSON ``text`` (0 for a scalar).

    Linear and iterative, so it is safe on any input: strings (with their escapes) are
    dropped, then the brackets left are counted. On text that is not JSON the figure is
    meaningless but finite; the parser then refuses the text at its first fault, before
    it could nest deeper than the valid prefix this function measured correctly.
    """
    for escape, replacement in _ESCAPES:
        text = text.replace(escape, replacement)
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


def check_text(value: str, where: str = "a string") -> None:
    """Refuse NUL characters and unpaired surrogates.

    PostgreSQL stores neither (``text`` refuses U+0000, ``jsonb`` refuses ``\\u0000`` and
    unpaired surrogates) and a lone surrogate cannot be encoded as UTF-8 at all, so such a
    value must never reach the database, whichever engine is configured.

    Raises:
        BadInput: naming what was found in ``where``.
    """
    if "\x00" in value:
        raise BadInput(f"{where} contains a NUL character (\\u0000)")
    if _SURROGATE.search(value):
        raise BadInput(f"{where} contains an unpaired surrogate (\\ud800-\\udfff)")


def _reject_constant(name: str) -> Any:
    raise BadInput(f"{name} is not a JSON number (RFC 8259)")


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) <= 19:  # never convert thousands of digits
        value = int(digits)
        if INT64_MIN <= value <= INT64_MAX:
            return value
    raise BadInput("an integer is out of range (they must fit in 64 bits, signed)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadInput(f"the number {text[:40]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BadInput(f"the key {key[:40]!r} appears twice in one object")
        check_text(key, "a key")
        result[key] = value
    return result


def _distinct_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``_unique_keys`` for keys known to hold no NUL or surrogate: one ``dict`` call."""
    result = dict(pairs)
    if len(result) != len(pairs):
        return _unique_keys(pairs)  # raises, naming the key
    return result


def parse_json(body: bytes) -> Any:
    """The JSON document in ``body`` (UTF-8, RFC 8259), refusing what the store would refuse.

    Beyond :func:`json.loads`, it refuses: bytes that are not UTF-8; the literals
    ``NaN``, ``Infinity`` and ``-Infinity`` and numbers that overflow a float (PostgreSQL's
    ``json`` refuses them, SQLite would keep them); integers outside the signed 64-bit range;
    NUL characters and unpaired surrogates in strings and keys; a key twice in one object
    (readers disagree on which one wins); nesting deeper than :data:`MAX_JSON_DEPTH`
    (checked before parsing, so the parser never recurses deeply).

    Raises:
        BadInput: with a one-line reason, for a 400.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("the body is not valid UTF-8") from None
    # Brackets counted with those inside strings bound the nesting from above: only a
    # text with more of them than the limit (a webhook's payload has about 20) is
    # measured exactly, without its strings.
    brackets = text.count("[") + text.count("{")
    if brackets > MAX_JSON_DEPTH and json_depth(text) > MAX_JSON_DEPTH:
        raise BadInput(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    # The string checks run only where the text could need them (a webhook's payload
    # seldom does): when an escape could make a NUL or a surrogate. Every integer is
    # bounded: a hook per integer costs less than searching the text for long ones.
    risky = _RISKY_ESCAPE.search(text) is not None
    try:
        document = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys if risky else _distinct_keys,
        )
    except json.JSONDecodeError as e:
        raise BadInput(f"the body is not valid JSON: {e.msg} at character {e.pos}") from None
    except BadInput:
        raise
    except ValueError:  # int() past its 4,300 digits: unreachable, _bounded_int looks first
        raise BadInput("an integer is out of range (they must fit in 64 bits, signed)") from None
    except RecursionError:  # unreachable after the depth check; kept as a last guard
        raise BadInput(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    pending = [document] if risky else []
    while pending:  # strings in arrays and values (keys were checked while parsing)
        item = pending.pop()
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return document


def parse_json_object(body: bytes) -> dict[str, Any]:
    """:func:`parse_json` for a body that must be a JSON object.

    Raises:
        BadInput: as :func:`parse_json`, or when the document is not an object.
    """
    document = parse_json(body)
    if not isinstance(document, dict):
        raise BadInput("the body is not a JSON object")
    return document


def parse_form(text: str) -> dict[str, str]:
    """The fields of an ``application/x-www-form-urlencoded`` string (WHATWG URL, section 5).

    Stricter than browsers: a percent-encoded sequence that is not UTF-8, a NUL character,
    a field given twice or more than :data:`MAX_FORM_FIELDS` fields are refused rather
    than repaired (Mattermost never sends them; repairing would act on something else
    than what was sent).

    Raises:
        BadInput: with a one-line reason, for a 400.
    """
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise BadInput("a form field is not valid UTF-8 once percent-decoded") from None
    except ValueError:
        raise BadInput(f"the form has more than {MAX_FORM_FIELDS} fields") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        check_text(name, "a form field name")
        if name in form:
            raise BadInput(f"the form field {name[:40]!r} appears twice")
        check_text(value, f"the form field {name[:40]!r}")
        form[name] = value
    return form


async def read_form(request: web.Request) -> dict[str, str]:
    """The form of a request: its query string for GET, else its urlencoded UTF-8 body.

    Mattermost sends slash commands either way (the command's method), as
    ``application/x-www-form-urlencoded``. See :func:`parse_form` for what is refused.

    Raises:
        BadInput: 415 for another content type or charset, else 400.
    """
    if request.method in ("GET", "HEAD"):
        return parse_form(request.rel_url.raw_query_string)
    if request.content_type != FORM:
        raise BadInput(f"expected Content-Type {FORM}", status=415)
    if (request.charset or "utf-8").lower() not in ("utf-8", "utf8"):
        raise BadInput("expected the form in UTF-8", status=415)
    try:
        text = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("the form is not valid UTF-8") from None
    return parse_form(text)


# --------------------------------------------------------------------------- middlewares

#: Seconds a client is asked to wait (``Retry-After``) when the database cannot serve its
#: request (the readiness probe looks every 10 s; a restart takes a few).
RETRY_AFTER = 5


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, access log, metrics and the error contract, in one place."""
    context = request.app[CONTEXT]
    incoming = request.headers.get("X-Request-Id", "")
    with bound_id(incoming if _REQUEST_ID.fullmatch(incoming) else None) as request_id:
        started = time.perf_counter()
        response = await _guarded(request, handler, context)
        elapsed = time.perf_counter() - started
        response.headers["X-Request-Id"] = request_id
        route, status = _route_label(request), str(response.status)
        context.metrics.http_requests.labels(request.method, route, status).inc()
        context.metrics.http_latency.labels(request.method, route, status).observe(elapsed)
        log.info(
            "%s %s %s",
            request.method,
            request.rel_url.path,
            response.status,
            extra={"route": route, "duration_ms": round(elapsed * 1000, 2)},
        )
        return response


async def _guarded(
    request: web.Request, handler: Handler, context: AppContext
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            return e
        headers = {k: v for k, v in e.headers.items() if k in ("Allow", "Retry-After")}
        message = e.text if e.text and e.content_type == "application/json" else None
        if message is not None:
            return web.Response(
                body=message.encode(),
                status=e.status,
                content_type="application/json",
                headers=headers,
            )
        return error_response(e.status, e.reason.lower(), **headers)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        if is_unavailable(e):  # down, not broken: say when to come back (the type only:
            # a driver's message can hold the server's address)
            log.warning(
                "database unavailable for %s %s: %s",
                request.method,
                request.rel_url.path,
                type(e).__name__,
            )
            return error_response(
                503, "the database is unavailable", **{"Retry-After": str(RETRY_AFTER)}
            )
        log.exception("unhandled error in %s %s", request.method, request.rel_url.path)
        context.metrics.unhandled_errors.labels("http").inc()
        return error_response(500, "internal error")
    return response


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def liveness(request: web.Request) -> web.Response:
    return json_response({"status": "alive"})


async def _check(name: str, probe: Awaitable[None]) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, READINESS_TIMEOUT)
    except TimeoutError:
        return name, "timed out"
    except Exception as e:  # the probe's failure is the answer, never a 500
        return name, type(e).__name__
    return name, "ok"


async def readiness(request: web.Request) -> web.Response:
    """``GET /readiness[?scope=web]``: can this process do its work now?

    200 ``ready`` when the database answers (and Redis, where configured) within
    :data:`READINESS_TIMEOUT` seconds each. Redis is a cache: when it is down the answer
    is 200 ``degraded`` with ``checks.redis = "down"``, unless ``REDIS_REQUIRED`` makes
    it a 503. The database down is a 503 ``unavailable``, except with ``scope=web``
    while a webhook spool can take deliveries (``checks.spool = "ok"``): then 200
    ``degraded``, so that a pod acknowledging GitLab's deliveries through the spool stays
    in its Service. The Mattermost websocket's state is listed, never failing. Any other
    ``scope`` is a 400.
    """
    context = request.app[CONTEXT]
    scope = request.query.get("scope", "")
    if scope not in ("", "web"):
        return error_response(400, "scope must be web, or absent")
    probes = [_check("database", ping_database(context.engine))]
    if context.cache.backend == "redis":
        probes.append(_check("redis", context.cache.ping()))
    checks = dict(await asyncio.gather(*probes))
    if checks.get("redis", "ok") != "ok":
        checks["redis"] = "down"
    degraded = sorted(name for name, state in checks.items() if state != "ok")
    failed = [n for n in degraded if n == "database" or context.settings.redis_required]
    spool_check = request.app.get(SPOOL_CHECK)
    if scope == "web" and "database" in failed and spool_check is not None:
        checks["spool"] = (await _check("spool", spool_check()))[1]
        if checks["spool"] == "ok":
            failed.remove("database")
    if context.chat_ is not None:
        # Reported, never failing readiness: the webhook side works without chat.
        checks["mattermost"] = context.chat_.state
    if failed:
        log.warning("not ready: %s", ", ".join(f"{n} ({checks[n]})" for n in failed))
        return json_response(
            {
                "status": "unavailable",
                "error": f"not ready: {', '.join(failed)}",
                "failed": failed,
                "checks": checks,
            },
            status=503,
        )
    if degraded:
        log.warning("degraded: %s", ", ".join(f"{n} ({checks[n]})" for n in degraded))
        return json_response({"status": "degraded", "checks": checks})
    return json_response({"status": "ready", "checks": checks})


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[CONTEXT].metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


def add_core_routes(app: web.Application) -> None:
    app.router.add_get("/health", health, allow_head=True)
    app.router.add_get("/liveness", liveness, allow_head=True)
    app.router.add_get("/readiness", readiness, allow_head=True)
    app.router.add_get("/metrics", metrics)
