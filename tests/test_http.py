"""The app factory over real HTTP: probes, metrics, the error contract, readiness."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import http
from bot.app import create_app
from bot.plugins import Plugin, route
from bot.settings import Settings
from tests.conftest import settings_for
from tests.services import TEST_REDIS_URL, service_unavailable

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


class Probe(Plugin):
    """Routes that misbehave in the ways the error middleware must contain."""

    name = "probe"

    @route("GET", "/boom")
    async def boom(self, request: web.Request) -> web.Response:
        raise RuntimeError("secret internals: /srv/app.py line 42")

    @route("POST", "/strict")
    async def strict(self, request: web.Request) -> web.Response:
        await request.read()
        raise web.HTTPBadRequest(reason="Field 'x' is required")

    @route("GET", "/items/{id}")
    async def item(self, request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"]})


@pytest.fixture
async def client(settings: Settings, aiohttp_client: MakeClient) -> Client:
    # The database fixtures first: torn down after the app, whose tasks use them.
    return await aiohttp_client(create_app(settings, plugins=[Probe]))


async def test_health_answers_ok(client: Client) -> None:
    response = await client.get("/health")
    assert response.status == 200
    assert await response.text() == "ok"


async def test_liveness(client: Client) -> None:
    response = await client.get("/liveness")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"


async def test_readiness_with_a_working_database(client: Client) -> None:
    response = await client.get("/readiness")
    assert response.status == 200
    assert await response.json() == {"status": "ready", "checks": {"database": "ok"}}


async def test_metrics_count_requests_by_route_and_status(client: Client) -> None:
    for _ in range(3):
        await client.get("/health")
    await client.get("/items/1")
    await client.get("/items/2")
    await client.get("/no/such/page")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    assert 'http_requests_total{method="GET",route="/health",status="200"} 3.0' in text
    # The route template, never the raw path: no unbounded label values.
    assert 'http_requests_total{method="GET",route="/items/{id}",status="200"} 2.0' in text
    assert 'route="/items/1"' not in text
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/health"' in text
    assert "process_cpu_seconds_total" in text


async def test_an_unexpected_error_is_a_json_500_without_traceback(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="bot.http"):
        response = await client.get("/boom")
    assert response.status == 500
    assert response.headers["Content-Type"] == "application/json"
    body = await response.text()
    assert await response.json() == {"error": "internal error"}
    assert "Traceback" not in body and "secret internals" not in body
    # ...but the operator gets the traceback in the log, and a metric.
    record = next(r for r in caplog.records if r.name == "bot.http" and r.exc_info)
    assert "secret internals" in str(record.exc_info[1])  # type: ignore[index]
    metrics = await (await client.get("/metrics")).text()
    assert 'unhandled_errors_total{where="http"} 1.0' in metrics
    assert 'http_requests_total{method="GET",route="/boom",status="500"} 1.0' in metrics


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/no/such/page", 404, "not found"),
        ("DELETE", "/health", 405, "method not allowed"),
        ("POST", "/strict", 400, "field 'x' is required"),
    ],
)
async def test_client_errors_are_json(
    client: Client, method: str, path: str, status: int, error: str
) -> None:
    response = await client.request(method, path)
    assert response.status == status
    assert response.headers["Content-Type"] == "application/json"
    assert await response.json() == {"error": error}


async def test_method_not_allowed_keeps_allow_header(client: Client) -> None:
    response = await client.delete("/health")
    assert "GET" in response.headers["Allow"]


async def test_a_body_over_one_mebibyte_is_413(client: Client) -> None:
    response = await client.post("/strict", data=b"x" * (1024 * 1024 + 1))
    assert response.status == 413
    assert (await response.json())["error"] == "request entity too large"


async def test_request_id_is_echoed_or_made(client: Client) -> None:
    response = await client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    response = await client.get("/health", headers={"X-Request-Id": "bad id\u00e9" * 20})
    made = response.headers["X-Request-Id"]
    assert made != "bad id" and len(made) == 16


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        "sqlite:////nonexistent-dir/roulette.db",
    ],
)
async def test_readiness_is_503_when_the_database_is_unreachable(
    aiohttp_client: MakeClient, url: str
) -> None:
    client = await aiohttp_client(create_app(settings_for(url)))
    response = await client.get("/readiness")
    assert response.status == 503
    body = await response.json()
    assert body["failed"] == ["database"]
    assert body["error"] == "not ready: database"
    assert (await client.get("/health")).status == 200
    assert (await client.get("/liveness")).status == 200
    await _aiosqlite_threads_finished()


async def _aiosqlite_threads_finished(deadline: float = 5.0) -> None:
    """aiosqlite stops the thread of a failed connection without awaiting it; let it end
    while this test's loop is still open, or it reports into a closed loop later."""
    until = time.monotonic() + deadline
    while any("_connection_worker_thread" in t.name for t in threading.enumerate()):
        assert time.monotonic() < until, "aiosqlite threads still running"
        await asyncio.sleep(0.01)


async def _redis_reachable() -> None:
    probe = redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1)
    try:
        await probe.ping()
    except (OSError, redis.RedisError) as e:
        service_unavailable("Redis", f"{TEST_REDIS_URL}: {type(e).__name__}")
    finally:
        await probe.aclose()


@pytest.mark.redis
async def test_readiness_checks_redis_when_configured(
    migrated_url: Any, aiohttp_client: MakeClient
) -> None:
    await _redis_reachable()
    client = await aiohttp_client(create_app(settings_for(migrated_url, redis_url=TEST_REDIS_URL)))
    response = await client.get("/readiness")
    assert response.status == 200
    assert (await response.json())["checks"] == {"database": "ok", "redis": "ok"}


async def test_readiness_is_200_degraded_when_redis_is_down(
    migrated_url: Any, aiohttp_client: MakeClient
) -> None:
    # Every replica shares one Redis: a 503 would take them all out of service at once,
    # although the bot works without its cache.
    settings = settings_for(migrated_url, redis_url="redis://:pw@127.0.0.1:1/0")
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/readiness")
    assert response.status == 200
    body = await response.json()
    assert body == {"status": "degraded", "checks": {"database": "ok", "redis": "down"}}
    assert "pw@" not in await response.text()
    assert (await client.get("/health")).status == 200


async def test_readiness_is_503_naming_redis_when_redis_is_required_and_down(
    migrated_url: Any, aiohttp_client: MakeClient
) -> None:
    settings = settings_for(
        migrated_url, redis_url="redis://:pw@127.0.0.1:1/0", redis_required=True
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/readiness")
    assert response.status == 503
    body = await response.json()
    assert body["failed"] == ["redis"]
    assert body["checks"] == {"database": "ok", "redis": "down"}
    assert "pw@" not in await response.text()


async def test_web_readiness_stays_200_while_the_spool_takes_deliveries(
    aiohttp_client: MakeClient, tmp_path: Any
) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    client = await aiohttp_client(create_app(settings_for(url, spool_dir=str(tmp_path))))
    strict = await client.get("/readiness")
    assert strict.status == 503  # the process cannot do all of its work
    web_scope = await client.get("/readiness?scope=web")
    assert web_scope.status == 200  # but it acknowledges GitLab's deliveries
    body = await web_scope.json()
    assert body["status"] == "degraded"
    assert body["checks"]["spool"] == "ok" and body["checks"]["database"] != "ok"
    assert (await client.get("/readiness?scope=everything")).status == 400


async def test_web_readiness_is_503_when_no_spool_can_take_deliveries(
    aiohttp_client: MakeClient, tmp_path: Any
) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    client = await aiohttp_client(create_app(settings_for(url, spool_dir=str(blocked))))
    response = await client.get("/readiness?scope=web")
    assert response.status == 503
    body = await response.json()
    assert body["failed"] == ["database"]
    assert body["checks"]["spool"] == "SpoolUnavailable"


# --------------------------------------------------------------------------- parse_json


def _strict(body: bytes) -> Any:
    """``parse_json`` as it was before its fast path: every check on every value."""
    text = body.decode("utf-8")
    if http.json_depth(text) > http.MAX_JSON_DEPTH:
        raise http.BadInput("deep")
    document = json.loads(
        text,
        parse_constant=http._reject_constant,
        parse_int=http._bounded_int,
        parse_float=http._finite_float,
        object_pairs_hook=http._unique_keys,
    )
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            http.check_text(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return document


_TEXT = st.text(st.sampled_from(["a", "é", "\x00", "\ud800", "\udfff", "\\", '"', "😀", "u"]))
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(_JSON, st.booleans())
def test_parse_json_refuses_and_accepts_exactly_what_every_check_would(
    document: Any, ascii_only: bool
) -> None:
    body = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        expected: Any = _strict(body)
    except (http.BadInput, UnicodeDecodeError):
        expected = http.BadInput
    try:
        got: Any = http.parse_json(body)
    except http.BadInput:
        got = http.BadInput
    assert got == expected


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("[" * 64 + "]" * 64, True),  # the limit itself
        ("[" * 65 + "]" * 65, False),
        ('{"a":' * 65 + "1" + "}" * 65, False),
        ('["' + "[{" * 100 + '"]', True),  # brackets inside a string do not nest
        ('{"a": "' + "[" * 100 + '", "b": ' + "[" * 63 + "]" * 63 + "}", True),
        ('{"a": "' + "]" * 100 + '", "b": ' + "[" * 64 + "]" * 64 + "}", False),
        ('["\\"' + "[" * 100 + '"]', True),  # an escaped quote does not end the string
        ("[" * 100_000, False),  # refused before the parser could recurse
    ],
)
def test_parse_json_refuses_only_what_nests_deeper_than_the_limit(
    text: str, accepted: bool
) -> None:
    if accepted:
        http.parse_json(text.encode())
    else:
        with pytest.raises(http.BadInput, match="nests deeper than 64 levels"):
            http.parse_json(text.encode())


@pytest.mark.parametrize("path", ["/api/v1/leaderboard", "/api/v1/badges", "/"])
async def test_a_page_that_needs_the_unreachable_database_is_503_not_500(
    aiohttp_client: MakeClient, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Any route: what it needs is down, not broken. Retry-After says when to come back;
    # nothing is counted or logged as a defect.
    app = create_app(settings_for("postgresql+psycopg://postgres@127.0.0.1:1/nowhere"))
    client = await aiohttp_client(app)
    response = await client.get(path)
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert await response.json() == {"error": "the database is unavailable"}
    metrics = await (await client.get("/metrics")).text()
    assert 'unhandled_errors_total{where="http"}' not in metrics
    said = [r for r in caplog.records if r.name == "bot.http" and r.levelno >= logging.WARNING]
    assert [(r.levelname, r.exc_info) for r in said] == [("WARNING", None)]
    assert said[0].getMessage().startswith(f"database unavailable for GET {path}:")
