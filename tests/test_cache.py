"""The cache: JSON values on both backends, expiry, Redis degradation, the in-memory bound."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from unittest.mock import AsyncMock
from urllib.parse import urlsplit

import prometheus_client
import pytest
import redis.asyncio as redis
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from bot.cache import (
    OPERATIONS,
    Cache,
    CacheUnavailable,
    MemoryCache,
    RedisCache,
    create_cache,
)
from tests.services import TEST_REDIS_URL, service_unavailable

PREFIX = "roulette-test:"
PASSWORD = "s3cretpw"
# Nothing listens on port 1: connections are refused at once.
DEAD_URL = f"redis://:{PASSWORD}@127.0.0.1:1/0"
TIMEOUT = 5.0  # seconds: the longest any awaited condition may take


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    """A ready cache of one backend."""

    kind: str
    cache: Cache
    registry: CollectorRegistry
    raw: redis.Redis | None = None  # redis: a plain client on the test database


async def raw_redis() -> redis.Redis:
    client = redis.from_url(TEST_REDIS_URL, decode_responses=True, socket_connect_timeout=1.0)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        service_unavailable("Redis", f"{type(exc).__name__}: {exc}")
    return client


@asynccontextmanager
async def redis_harness_for(registry: CollectorRegistry) -> AsyncIterator[Harness]:
    """A cache on the test database, flushed before and after."""
    raw = await raw_redis()
    await raw.flushdb()
    h = Harness(
        "redis", create_cache(TEST_REDIS_URL, registry, key_prefix=PREFIX), registry, raw=raw
    )
    try:
        yield h
    finally:
        await h.cache.close()
        await raw.flushdb()
        await raw.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    registry = CollectorRegistry()
    if request.param == "memory":
        yield Harness("memory", MemoryCache(clock=FakeClock(), registry=registry), registry)
        return
    async with redis_harness_for(registry) as h:
        yield h


@pytest.fixture
async def redis_harness() -> AsyncIterator[Harness]:
    async with redis_harness_for(CollectorRegistry()) as h:
        yield h


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def dead_redis(
    clock: FakeClock, registry: CollectorRegistry
) -> AsyncIterator[Callable[..., RedisCache]]:
    """Make RedisCaches pointed where no Redis listens, sharing ``clock`` and ``registry``."""
    made: list[RedisCache] = []

    def make(**kwargs: Any) -> RedisCache:
        cache = RedisCache(DEAD_URL, registry, clock=clock, **kwargs)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.close()


@pytest.fixture
def cache_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="bot.cache")
    yield caplog


def errors(registry: CollectorRegistry, operation: str, backend: str = "redis") -> float | None:
    return registry.get_sample_value(
        "cache_errors_total", {"backend": backend, "operation": operation}
    )


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bot.cache" and r.levelno == logging.WARNING]


class RedisRelay:
    """A TCP relay in front of the test Redis that can be cut (an outage) and restored.

    ``url`` is ``TEST_REDIS_URL`` with the relay's address; the port stays the same
    across a cut, as a restarted Redis would.
    """

    def __init__(self) -> None:
        target = urlsplit(TEST_REDIS_URL)
        self._target = (target.hostname or "127.0.0.1", target.port or 6379)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.url = ""

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        target = urlsplit(TEST_REDIS_URL)
        credentials = target.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        self.url = target._replace(netloc=netloc).geturl()

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()


@pytest.fixture
async def relay(redis_harness: Harness) -> AsyncIterator[RedisRelay]:
    relay = RedisRelay()
    await relay.restore()
    yield relay
    await relay.cut()


# -- behaviour on both backends ----------------------------------------------------------


async def test_json_round_trip(harness: Harness) -> None:
    cache = harness.cache
    value = {"user": "émilie", "ids": [1, 2, 3], "weight": 0.5, "on": True, "none": None}
    await cache.set_json("j", value)
    assert await cache.get_json("j") == value
    others: list[Any] = [[1, "two"], "text ✓ 🎲", "", 42, 1.5, False, {}]
    for other in others:
        await cache.set_json("j", other)
        assert await cache.get_json("j") == other
    assert await cache.get_json("missing") is None


async def test_get_json_many_keeps_order_and_misses(harness: Harness) -> None:
    cache = harness.cache
    await cache.set_json("a", {"n": 1})
    await cache.set_json("c", [3])
    assert await cache.get_json_many(["a", "b", "c", "a"]) == [{"n": 1}, None, [3], {"n": 1}]
    assert await cache.get_json_many(["nothing", "here"]) == [None, None]
    assert await cache.get_json_many([]) == []


async def test_get_text_many_gives_the_stored_texts_undecoded(harness: Harness) -> None:
    cache = harness.cache
    await cache.set_json("a", {"n": 1, "text": "✓"})
    texts = await cache.get_text_many(["a", "missing", "a"])
    assert texts == ['{"n":1,"text":"✓"}', None, '{"n":1,"text":"✓"}']
    assert cache.decode("a", texts[0]) == {"n": 1, "text": "✓"}
    assert cache.decode("missing", None) is None
    assert cache.decode("damaged", "{not json") is None
    assert await cache.get_text_many([]) == []


async def test_values_are_not_shared_between_callers(harness: Harness) -> None:
    cache = harness.cache
    stored: dict[str, Any] = {"names": ["alice"], "status": {"emoji": "palm_tree"}}
    await cache.set_json("k", stored)
    stored["names"].append("written after set_json")

    first: Any = await cache.get_json("k")
    first["names"].append("mallory")
    first["status"]["emoji"] = "x"
    many: list[Any] = await cache.get_json_many(["k"])
    many[0]["names"].clear()

    expected = {"names": ["alice"], "status": {"emoji": "palm_tree"}}
    assert await cache.get_json("k") == expected
    assert await cache.get_json_many(["k"]) == [expected]


async def test_set_json_rejects_unserialisable_values(harness: Harness) -> None:
    with pytest.raises(TypeError):
        await harness.cache.set_json("j", object())
    assert await harness.cache.get_json("j") is None


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf])
async def test_invalid_ttl_is_rejected(harness: Harness, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await harness.cache.set_json("k", "v", ttl=ttl)
    assert await harness.cache.get_json("k") is None


async def test_ping_answers_and_metrics_start_at_zero(harness: Harness) -> None:
    await harness.cache.ping()
    assert harness.registry.get_sample_value("cache_up") == 1
    for operation in OPERATIONS:
        assert errors(harness.registry, operation, harness.kind) == 0


# -- expiry ---------------------------------------------------------------------------------


async def test_memory_entries_expire_on_their_own_ttl(clock: FakeClock) -> None:
    cache = MemoryCache(clock=clock)
    await cache.set_json("short", 1, ttl=1)
    await cache.set_json("long", 2, ttl=600)
    await cache.set_json("forever", 3)
    clock.advance(0.999)
    assert await cache.get_json_many(["short", "long", "forever"]) == [1, 2, 3]
    clock.advance(0.002)
    assert await cache.get_json_many(["short", "long", "forever"]) == [None, 2, 3]
    clock.advance(600)
    assert await cache.get_json_many(["short", "long", "forever"]) == [None, None, 3]
    clock.advance(10**9)
    assert await cache.get_json("forever") == 3


async def test_memory_rewrite_replaces_the_expiry(clock: FakeClock) -> None:
    cache = MemoryCache(clock=clock)
    await cache.set_json("kept", "old", ttl=1)
    await cache.set_json("kept", "new")  # no ttl: no longer expires
    await cache.set_json("shortened", "old", ttl=600)
    await cache.set_json("shortened", "new", ttl=1)
    clock.advance(2)
    assert await cache.get_json("kept") == "new"
    assert await cache.get_json("shortened") is None


async def test_memory_tiny_ttl_still_replaces_the_value() -> None:
    clock = FakeClock(now=1e9)  # far from 0: now + 1e-12 == now in floating point
    cache = MemoryCache(clock=clock)
    await cache.set_json("k", "old")
    await cache.set_json("k", "new", ttl=1e-12)  # lives 1 ms, like Redis's PX 1
    assert await cache.get_json("k") == "new"
    clock.advance(0.001)
    assert await cache.get_json("k") is None


@pytest.mark.redis
async def test_redis_keys_are_prefixed_and_ttls_are_native_milliseconds(
    redis_harness: Harness,
) -> None:
    raw, cache = redis_harness.raw, redis_harness.cache
    assert raw is not None
    await cache.set_json("short", {"a": 1}, ttl=1.5)
    await cache.set_json("rounded", 1, ttl=0.0001)  # rounded up to 1 ms, never "no expiry"
    await cache.set_json("forever", "v")
    assert 0 < await raw.pttl(PREFIX + "short") <= 1500
    assert await raw.pttl(PREFIX + "rounded") in (-2, 0, 1)  # gone, or at most 1 ms left
    assert await raw.pttl(PREFIX + "forever") == -1
    assert await raw.get(PREFIX + "short") == '{"a":1}'
    assert set(await raw.keys("*")) <= {PREFIX + "short", PREFIX + "rounded", PREFIX + "forever"}
    await cache.set_json("short", {"a": 2})  # rewriting without a ttl removes the expiry
    assert await raw.pttl(PREFIX + "short") == -1


@pytest.mark.redis
async def test_redis_prefixes_keep_caches_apart(redis_harness: Harness) -> None:
    mine = redis_harness.cache
    theirs = RedisCache(TEST_REDIS_URL, CollectorRegistry(), key_prefix="roulette-other:")
    try:
        await mine.set_json("a", "mine")
        assert await theirs.get_json("a") is None
        await theirs.set_json("a", "theirs")
        assert await mine.get_json_many(["a"]) == ["mine"]
        assert await theirs.get_json_many(["a"]) == ["theirs"]
    finally:
        await theirs.close()


@pytest.mark.redis
async def test_redis_foreign_values_read_as_misses_without_opening_the_circuit(
    redis_harness: Harness, cache_log: pytest.LogCaptureFixture
) -> None:
    raw, cache, registry = redis_harness.raw, redis_harness.cache, redis_harness.registry
    assert raw is not None
    await raw.set(PREFIX + "text", "{not json")
    await raw.sadd(PREFIX + "set", "m")  # GET on a set: WRONGTYPE, the server answered
    await cache.set_json("ok", 1)
    assert await cache.get_json("text") is None
    assert await cache.get_json_many(["text", "ok"]) == [None, 1]
    assert any("not valid JSON" in r.getMessage() for r in warnings_of(cache_log))
    assert await cache.get_json("set") is None
    assert errors(registry, "get") == 1
    assert registry.get_sample_value("cache_up") == 1
    assert await cache.get_json("ok") == 1  # no circuit opened


# -- backend choice and metrics ---------------------------------------------------------------


async def test_create_cache_picks_the_backend(registry: CollectorRegistry) -> None:
    memory = create_cache(None, registry)
    assert isinstance(memory, MemoryCache)
    assert memory.backend == "memory"
    assert isinstance(create_cache("", CollectorRegistry()), MemoryCache)
    redis_cache = create_cache(DEAD_URL, CollectorRegistry(), key_prefix="x:")
    try:
        assert isinstance(redis_cache, RedisCache)
        assert redis_cache.backend == "redis"
        assert redis_cache.key_prefix == "x:"
    finally:
        await redis_cache.close()


async def test_metrics_live_in_the_given_registry(registry: CollectorRegistry) -> None:
    first = RedisCache(DEAD_URL, registry)
    second = RedisCache(DEAD_URL, registry)  # same registry: no duplicate registration
    third = RedisCache(DEAD_URL, CollectorRegistry())
    try:
        assert registry.get_sample_value("cache_up") == 1
        assert errors(registry, "get") == 0
        default = prometheus_client.REGISTRY
        assert default.get_sample_value("cache_errors_total", {"backend": "redis"}) is None
        assert default.get_sample_value("cache_up") is None
    finally:
        for cache in (first, second, third):
            await cache.close()


# -- degradation when Redis is down ---------------------------------------------------------


async def test_dead_redis_every_operation_is_a_counted_miss(
    dead_redis: Callable[..., RedisCache],
    registry: CollectorRegistry,
    cache_log: pytest.LogCaptureFixture,
) -> None:
    cache = dead_redis(retry_after=0)  # no circuit breaker: every call hits the network
    assert await cache.get_json("k") is None
    assert await cache.get_json_many(["k", "l"]) == [None, None]
    await cache.set_json("k", {"a": 1}, ttl=10)
    assert errors(registry, "get") == 2  # one GET, one MGET
    assert errors(registry, "set") == 1
    assert registry.get_sample_value("cache_up") == 0
    warnings = warnings_of(cache_log)
    assert len(warnings) == 1  # rate limited
    assert "ConnectionError" in warnings[0].getMessage()
    assert PASSWORD not in cache_log.text
    assert "127.0.0.1:1" not in cache_log.text


async def test_dead_redis_ping_raises_cache_unavailable(
    dead_redis: Callable[..., RedisCache],
    registry: CollectorRegistry,
    cache_log: pytest.LogCaptureFixture,
) -> None:
    cache = dead_redis()
    with pytest.raises(CacheUnavailable) as raised:
        await cache.ping()
    assert str(raised.value) == "redis: ConnectionError"
    assert PASSWORD not in str(raised.value)
    assert errors(registry, "ping") == 1
    assert registry.get_sample_value("cache_up") == 0
    assert PASSWORD not in cache_log.text
    await cache.close()
    await cache.close()  # closing twice never raises


@pytest.mark.redis
async def test_circuit_opens_when_redis_goes_away_and_closes_when_it_is_back(
    relay: RedisRelay,
    registry: CollectorRegistry,
    clock: FakeClock,
    cache_log: pytest.LogCaptureFixture,
) -> None:
    cache = RedisCache(
        relay.url, registry, key_prefix=PREFIX, retry_after=5.0, op_timeout=TIMEOUT, clock=clock
    )
    try:
        await cache.set_json("k", {"v": 1})
        assert await cache.get_json("k") == {"v": 1}

        await relay.cut()
        assert await cache.get_json("k") is None  # served as a miss, not raised
        assert errors(registry, "get") == 1
        assert registry.get_sample_value("cache_up") == 0
        assert len(warnings_of(cache_log)) == 1

        # Open: Redis is not called, so nothing more fails or is counted.
        assert await cache.get_json_many(["k"]) == [None]
        await cache.set_json("k", {"v": 2})
        assert (errors(registry, "get"), errors(registry, "set")) == (1, 0)

        await relay.restore()
        clock.advance(4.9)
        assert await cache.get_json("k") is None  # Redis is back, the circuit still open
        clock.advance(0.1)
        assert await cache.get_json("k") == {"v": 1}  # the probe succeeds: closed again
        assert await cache.get_json_many(["k"]) == [{"v": 1}]
        assert registry.get_sample_value("cache_up") == 1
        assert errors(registry, "get") == 1
        assert [r.getMessage() for r in cache_log.records if r.levelno == logging.INFO] == [
            "Redis cache recovered; using it again"
        ]
    finally:
        await cache.close()


async def test_circuit_breaker_lets_a_single_probe_through(
    dead_redis: Callable[..., RedisCache],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = dead_redis(retry_after=5.0)
    assert await cache.get_json("k") is None
    clock.advance(5.0)

    started, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def slow_get(name: str) -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return '"v"'

    monkeypatch.setattr(cache._client, "get", slow_get)
    probe = asyncio.create_task(cache.get_json("k"))
    async with asyncio.timeout(TIMEOUT):
        await started.wait()
    assert await cache.get_json("k") is None  # the probe is in flight: skip Redis
    release.set()
    assert await probe == "v"
    assert await cache.get_json("k") == "v"  # closed again
    assert calls == 2


async def test_failed_probe_reopens_the_circuit(
    dead_redis: Callable[..., RedisCache], registry: CollectorRegistry, clock: FakeClock
) -> None:
    cache = dead_redis(retry_after=5.0)
    assert await cache.get_json("k") is None
    clock.advance(5.0)
    assert await cache.get_json("k") is None  # the probe fails...
    assert errors(registry, "get") == 2
    assert await cache.get_json("k") is None  # ...and the next call is skipped again
    assert errors(registry, "get") == 2


async def test_warnings_are_rate_limited(
    dead_redis: Callable[..., RedisCache],
    clock: FakeClock,
    cache_log: pytest.LogCaptureFixture,
) -> None:
    cache = dead_redis(retry_after=5.0)
    for _ in range(5):
        assert await cache.get_json("k") is None
        clock.advance(5.0)
    assert len(warnings_of(cache_log)) == 1  # 5 failures within 30 s: one warning
    clock.advance(10.0)
    assert await cache.get_json("k") is None
    warnings = warnings_of(cache_log)
    assert len(warnings) == 2
    assert "4 similar failures" in warnings[1].getMessage()
    assert PASSWORD not in cache_log.text


async def test_ping_bypasses_the_circuit_and_closes_it(
    dead_redis: Callable[..., RedisCache],
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = dead_redis(retry_after=60.0)
    assert await cache.get_json("k") is None
    with pytest.raises(CacheUnavailable):
        await cache.ping()  # still tried although the circuit is open
    assert errors(registry, "ping") == 1
    monkeypatch.setattr(cache._client, "ping", AsyncMock(return_value=True))
    monkeypatch.setattr(cache._client, "get", AsyncMock(return_value='"v"'))
    await cache.ping()
    assert await cache.get_json("k") == "v"
    assert registry.get_sample_value("cache_up") == 1


async def test_a_hung_redis_is_bounded_by_op_timeout(
    dead_redis: Callable[..., RedisCache],
    registry: CollectorRegistry,
    cache_log: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = dead_redis(op_timeout=0.05)
    never = asyncio.Event()

    async def hang(*args: Any, **kwargs: Any) -> None:
        await never.wait()

    monkeypatch.setattr(cache._client, "get", hang)
    monkeypatch.setattr(cache._client, "ping", hang)
    async with asyncio.timeout(TIMEOUT):
        assert await cache.get_json("k") is None
        with pytest.raises(CacheUnavailable, match="TimeoutError"):
            await cache.ping()
    assert errors(registry, "get") == 1
    assert "timed out" in warnings_of(cache_log)[0].getMessage()


# -- the in-memory bound ------------------------------------------------------------------


async def test_memory_cache_evicts_the_least_recently_used_beyond_max_entries(
    clock: FakeClock,
) -> None:
    cache = MemoryCache(max_entries=3, clock=clock)
    for key in "abc":
        await cache.set_json(key, key)
    assert await cache.get_json("a") == "a"  # reading makes "a" the most recently used
    await cache.set_json("d", "d")
    assert await cache.get_json_many(list("abcd")) == ["a", None, "c", "d"]


async def test_memory_cache_evicts_expired_entries_first(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=3, clock=clock)
    await cache.set_json("old", "v")
    await cache.set_json("short", "v", ttl=1)
    await cache.set_json("new", "v")
    clock.advance(2)
    await cache.set_json("newest", "v")
    assert await cache.get_json_many(["old", "short", "new", "newest"]) == ["v", None, "v", "v"]


async def test_memory_cache_rejects_a_zero_bound() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(max_entries=0)


async def test_memory_cache_without_registry_still_works(clock: FakeClock) -> None:
    cache = MemoryCache(clock=clock)
    await cache.set_json("k", "v")
    await cache.ping()
    await cache.close()
    assert await cache.get_json("k") == "v"
