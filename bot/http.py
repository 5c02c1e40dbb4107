"""The embedded aiohttp server's core: probes, ``/metrics`` and the middlewares.

- Every request gets an id (``X-Request-Id`` when the caller sent a sane one), bound to
  the logs of everything it does and echoed back.
- Errors are JSON ``{"error": ...}``: 4xx keep their status; anything unexpected is
  logged with its traceback, counted, and answered as a JSON 500 without a traceback.
- Requests are counted and timed by route template (never the raw path) and status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.context import AppContext
from bot.db import ping as ping_database
from bot.logs import bound_id

log = logging.getLogger("bot.http")

CONTEXT = web.AppKey("context", AppContext)
READINESS_TIMEOUT = 2.0
MAX_BODY = 1024 * 1024
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

CORE_ROUTES = (
    "GET /health",
    "GET /liveness",
    "GET /readiness",
    "GET /metrics",
    "POST /webhook/gitlab",
    "POST /mattermost/command",
    "GET /mattermost/command",
    "POST /mattermost/dialog",
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
    except Exception:
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
    context = request.app[CONTEXT]
    probes = [_check("database", ping_database(context.engine))]
    if context.cache.backend == "redis":
        probes.append(_check("redis", context.cache.ping()))
    checks = dict(await asyncio.gather(*probes))
    failed = sorted(name for name, state in checks.items() if state != "ok")
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
