"""The cache: behaviour on both backends, Redis degradation, and the in-memory bound."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import AsyncMock

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
# Every operation with the value it returns when the cache cannot answer.
MISS_CALLS: list[tuple[str, Callable[[Cache], Awaitable[Any]], Any]] = [
    ("get", lambda c: c.get("k"), None),
    ("set", lambda c: c.set("k", "v", ttl=10), None),
    ("delete", lambda c: c.delete("k", "l"), None),
    ("incr", lambda c: c.incr("n"), None),
    ("incr", lambda c: c.incr("n", 2, ttl=10), None),
    ("sadd", lambda c: c.sadd("s", "a"), None),
    ("sadd", lambda c: c.sadd("s", "a", "b", ttl=10), None),
    ("srem", lambda c: c.srem("s", "a"), None),
    ("smembers", lambda c: c.smembers("s"), set()),
    ("get", lambda c: c.get_json("j"), None),
    ("set", lambda c: c.set_json("j", {"a": 1}), None),
]


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
    """A ready cache of one backend, and how to make time pass for it."""

    kind: str
    cache: Cache
    registry: CollectorRegistry
    clock: FakeClock | None = None  # memory: the injected clock
    raw: redis.Redis | None = None  # redis: a plain client on the test database
    others: list[Cache] = field(default_factory=list)

    def make(self, key_prefix: str) -> Cache:
        """Another cache of the same backend (its own keyspace for memory)."""
        cache: Cache
        if self.kind == "memory":
            assert self.clock is not None
            cache = MemoryCache(clock=self.clock)
        else:
            cache = RedisCache(TEST_REDIS_URL, CollectorRegistry(), key_prefix=key_prefix)
        self.others.append(cache)
        return cache

    async def wait_until(self, condition: Callable[[], Awaitable[bool]], ttl: float) -> None:
        """Let ``ttl`` seconds pass, then require ``condition``.

        The memory clock jumps; Redis is polled until the condition holds, with a margin.
        """
        if self.clock is not None:
            self.clock.advance(ttl + 0.001)
            assert await condition()
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ttl + 3.0
        while not await condition():
            if loop.time() > deadline:
                pytest.fail(f"condition still false {ttl + 3.0}s later")
            await asyncio.sleep(0.05)

    async def let_pass(self, seconds: float) -> None:
        """Let time pass without waiting for anything (memory only moves its clock)."""
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)


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
        for cache in [h.cache, *h.others]:
            await cache.close()
        await raw.flushdb()
        await raw.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    registry = CollectorRegistry()
    if request.param == "memory":
        clock = FakeClock()
        yield Harness("memory", MemoryCache(clock=clock, registry=registry), registry, clock=clock)
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


# -- behaviour on both backends ----------------------------------------------------------


async def test_get_set_delete(harness: Harness) -> None:
    cache = harness.cache
    assert await cache.get("a") is None
    await cache.set("a", "1")
    await cache.set("b", "two")
    assert await cache.get("a") == "1"
    await cache.set("a", "one again")
    assert await cache.get("a") == "one again"
    await cache.delete("a", "missing")
    await cache.delete()
    assert await cache.get("a") is None
    assert await cache.get("b") == "two"


async def test_values_are_text(harness: Harness) -> None:
    await harness.cache.set("u", "héllo ✓ 🎲")
    await harness.cache.set("empty", "")
    assert await harness.cache.get("u") == "héllo ✓ 🎲"
    assert await harness.cache.get("empty") == ""


async def test_set_ttl_expires(harness: Harness) -> None:
    cache = harness.cache
    await cache.set("short", "v", ttl=1)
    await cache.set("long", "v", ttl=600)
    await cache.set("forever", "v")
    assert await cache.get("short") == "v"

    async def short_gone() -> bool:
        return await cache.get("short") is None

    await harness.wait_until(short_gone, ttl=1)
    assert await cache.get("long") == "v"
    assert await cache.get("forever") == "v"


async def test_set_without_ttl_removes_expiry(harness: Harness) -> None:
    cache = harness.cache
    await cache.set("k", "old", ttl=1)
    await cache.set("k", "new")
    await cache.set("marker", "m", ttl=1)

    async def marker_gone() -> bool:
        return await cache.get("marker") is None

    await harness.wait_until(marker_gone, ttl=1)
    assert await cache.get("k") == "new"


async def test_incr_creates_with_ttl_and_keeps_counting(harness: Harness) -> None:
    cache = harness.cache
    assert await cache.incr("n", ttl=1) == 1
    assert await cache.incr("n", ttl=1) == 2
    assert await cache.incr("n", 5, ttl=1) == 7
    assert await cache.get("n") == "7"

    async def gone() -> bool:
        return await cache.get("n") is None

    await harness.wait_until(gone, ttl=1)
    assert await cache.incr("n", ttl=1) == 1


async def test_incr_does_not_reset_an_existing_ttl(harness: Harness) -> None:
    cache = harness.cache
    assert await cache.incr("n", ttl=1) == 1
    # A later, longer ttl must not extend the key's life.
    assert await cache.incr("n", ttl=600) == 2

    async def gone() -> bool:
        return await cache.get("n") is None

    await harness.wait_until(gone, ttl=1)


async def test_incr_does_not_add_a_ttl_to_an_existing_key(harness: Harness) -> None:
    cache = harness.cache
    await cache.set("n", "41")
    assert await cache.incr("n", ttl=1) == 42
    await cache.set("marker", "m", ttl=1)

    async def marker_gone() -> bool:
        return await cache.get("marker") is None

    await harness.wait_until(marker_gone, ttl=1)
    assert await cache.get("n") == "42"


async def test_incr_without_ttl_and_negative_amounts(harness: Harness) -> None:
    cache = harness.cache
    assert await cache.incr("n") == 1
    assert await cache.incr("n", -3) == -2
    assert await cache.incr("fresh", -1) == -1
    assert await cache.get("n") == "-2"


async def test_incr_on_a_non_integer_is_a_counted_miss(
    harness: Harness, cache_log: pytest.LogCaptureFixture
) -> None:
    cache = harness.cache
    await cache.set("word", "abc")
    assert await cache.incr("word") is None
    assert await cache.get("word") == "abc"  # the server answered: no circuit opened
    assert errors(harness.registry, "incr", harness.kind) == 1
    assert warnings_of(cache_log)


async def test_wrong_type_is_a_miss_and_does_not_break_the_cache(harness: Harness) -> None:
    cache = harness.cache
    await cache.set("str", "v")
    await cache.sadd("set", "m")
    assert await cache.smembers("str") == set()
    assert await cache.get("set") is None
    await cache.sadd("str", "x")
    await cache.srem("str", "x")
    assert await cache.incr("set") is None
    assert await cache.get("str") == "v"
    assert await cache.smembers("set") == {"m"}
    assert errors(harness.registry, "smembers", harness.kind) == 1
    assert errors(harness.registry, "get", harness.kind) == 1


async def test_set_members_add_remove_list(harness: Harness) -> None:
    cache = harness.cache
    assert await cache.smembers("s") == set()
    await cache.sadd("s", "alice", "bob")
    await cache.sadd("s", "bob", "carol")
    await cache.sadd("s")
    assert await cache.smembers("s") == {"alice", "bob", "carol"}
    await cache.srem("s", "bob", "nobody")
    await cache.srem("s")
    await cache.srem("missing", "alice")
    assert await cache.smembers("s") == {"alice", "carol"}
    returned = await cache.smembers("s")
    returned.add("mallory")  # a copy, not the stored set
    assert await cache.smembers("s") == {"alice", "carol"}
    await cache.srem("s", "alice", "carol")
    assert await cache.smembers("s") == set()
    await cache.set("s", "now a string")  # the emptied set is gone, not in the way
    assert await cache.get("s") == "now a string"


async def test_sadd_ttl_is_reset_by_each_call_with_ttl(harness: Harness) -> None:
    cache = harness.cache
    await cache.sadd("s", "a", ttl=600)
    await cache.sadd("s", "b", ttl=1)  # shortens: the ttl is set, not only created

    async def gone() -> bool:
        return await cache.smembers("s") == set()

    await harness.wait_until(gone, ttl=1)


async def test_sadd_without_ttl_keeps_the_existing_ttl(harness: Harness) -> None:
    cache = harness.cache
    await cache.sadd("s", "a", ttl=1)
    await cache.sadd("s", "b")
    assert await cache.smembers("s") == {"a", "b"}

    async def gone() -> bool:
        return await cache.smembers("s") == set()

    await harness.wait_until(gone, ttl=1)


async def test_json_round_trip(harness: Harness) -> None:
    cache = harness.cache
    value = {"user": "émilie", "ids": [1, 2, 3], "weight": 0.5, "on": True, "none": None}
    await cache.set_json("j", value)
    assert await cache.get_json("j") == value
    for other in ([1, "two"], "text", 42, 1.5, False):
        await cache.set_json("j", other)
        assert await cache.get_json("j") == other
    assert await cache.get_json("missing") is None


async def test_json_with_ttl_expires(harness: Harness) -> None:
    cache = harness.cache
    await cache.set_json("j", {"a": 1}, ttl=1)
    assert await cache.get_json("j") == {"a": 1}

    async def gone() -> bool:
        return await cache.get_json("j") is None

    await harness.wait_until(gone, ttl=1)


async def test_invalid_json_reads_as_a_miss(
    harness: Harness, cache_log: pytest.LogCaptureFixture
) -> None:
    await harness.cache.set("j", "{not json")
    assert await harness.cache.get_json("j") is None
    assert any("not valid JSON" in r.getMessage() for r in warnings_of(cache_log))


async def test_set_json_rejects_unserialisable_values(harness: Harness) -> None:
    with pytest.raises(TypeError):
        await harness.cache.set_json("j", object())


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf])
async def test_invalid_ttl_is_rejected(harness: Harness, ttl: float) -> None:
    cache = harness.cache
    with pytest.raises(ValueError, match="ttl"):
        await cache.set("k", "v", ttl=ttl)
    with pytest.raises(ValueError, match="ttl"):
        await cache.incr("k", ttl=ttl)
    with pytest.raises(ValueError, match="ttl"):
        await cache.sadd("k", "m", ttl=ttl)
    assert await cache.get("k") is None


async def test_key_isolation(harness: Harness) -> None:
    cache = harness.cache
    other = harness.make("roulette-other:")
    await cache.set("a", "mine")
    await cache.set("ab", "longer")
    await cache.sadd("members", "x")
    assert await other.get("a") is None
    assert await other.smembers("members") == set()
    await other.set("a", "theirs")
    assert await cache.get("a") == "mine"
    assert await other.get("a") == "theirs"
    await cache.delete("a")
    assert await cache.get("ab") == "longer"
    assert await other.get("a") == "theirs"


async def test_ping_answers(harness: Harness) -> None:
    await harness.cache.ping()
    assert harness.registry.get_sample_value("cache_up") == 1


async def test_metrics_start_at_zero(harness: Harness) -> None:
    for operation in OPERATIONS:
        assert errors(harness.registry, operation, harness.kind) == 0


# -- Redis specifics ------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_keys_are_prefixed_and_ttls_are_native(redis_harness: Harness) -> None:
    raw, cache = redis_harness.raw, redis_harness.cache
    assert raw is not None
    assert cache.backend == "redis"
    await cache.set("plain", "v")
    await cache.incr("counter", ttl=60)
    await cache.sadd("set", "m", ttl=60)
    assert set(await raw.keys("*")) == {PREFIX + "plain", PREFIX + "counter", PREFIX + "set"}
    assert await raw.ttl(PREFIX + "plain") == -1
    assert 0 < await raw.pttl(PREFIX + "counter") <= 60_000
    assert 0 < await raw.pttl(PREFIX + "set") <= 60_000
    await cache.incr("plain-counter")
    await cache.incr("plain-counter", ttl=60)  # existing key without a ttl keeps none
    assert await raw.ttl(PREFIX + "plain-counter") == -1


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


async def test_dead_redis_every_operation_is_a_miss(
    dead_redis: Callable[..., RedisCache],
    registry: CollectorRegistry,
    cache_log: pytest.LogCaptureFixture,
) -> None:
    cache = dead_redis(retry_after=0)  # no circuit breaker: every call hits the network
    expected: dict[str, int] = {}
    for operation, call, miss in MISS_CALLS:
        assert await call(cache) == miss
        expected[operation] = expected.get(operation, 0) + 1
    for operation, count in expected.items():
        assert errors(registry, operation) == count, operation
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


async def test_circuit_breaker_skips_redis_within_the_window(
    dead_redis: Callable[..., RedisCache],
    registry: CollectorRegistry,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = dead_redis(retry_after=5.0)
    assert await cache.get("k") is None
    assert errors(registry, "get") == 1

    spy = AsyncMock(return_value="v")
    monkeypatch.setattr(cache._client, "get", spy)
    clock.advance(4.9)
    for _, call, miss in MISS_CALLS:
        assert await call(cache) == miss
    spy.assert_not_called()
    assert errors(registry, "get") == 1  # skipped calls are not failures
    assert errors(registry, "set") == 0

    clock.advance(0.2)
    assert await cache.get("k") == "v"
    spy.assert_awaited_once_with("roulette:k")  # the default prefix
    assert registry.get_sample_value("cache_up") == 1


async def test_circuit_breaker_lets_a_single_probe_through(
    dead_redis: Callable[..., RedisCache],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = dead_redis(retry_after=5.0)
    assert await cache.get("k") is None
    clock.advance(5.0)

    started, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def slow_get(name: str) -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "v"

    monkeypatch.setattr(cache._client, "get", slow_get)
    probe = asyncio.create_task(cache.get("k"))
    await started.wait()
    assert await cache.get("k") is None  # the probe is in flight: skip Redis
    release.set()
    assert await probe == "v"
    assert await cache.get("k") == "v"  # closed again
    assert calls == 2


async def test_failed_probe_reopens_the_circuit(
    dead_redis: Callable[..., RedisCache], registry: CollectorRegistry, clock: FakeClock
) -> None:
    cache = dead_redis(retry_after=5.0)
    assert await cache.get("k") is None
    clock.advance(5.0)
    assert await cache.get("k") is None  # the probe fails...
    assert errors(registry, "get") == 2
    assert await cache.get("k") is None  # ...and the next call is skipped again
    assert errors(registry, "get") == 2


async def test_warnings_are_rate_limited_and_recovery_is_logged(
    dead_redis: Callable[..., RedisCache],
    registry: CollectorRegistry,
    clock: FakeClock,
    cache_log: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = dead_redis(retry_after=5.0)
    for _ in range(5):
        assert await cache.get("k") is None
        clock.advance(5.0)
    assert len(warnings_of(cache_log)) == 1  # 5 failures within 30 s: one warning
    clock.advance(10.0)
    assert await cache.get("k") is None
    warnings = warnings_of(cache_log)
    assert len(warnings) == 2
    assert "4 similar failures" in warnings[1].getMessage()
    assert not [r for r in cache_log.records if r.levelno == logging.INFO]

    monkeypatch.setattr(cache._client, "get", AsyncMock(return_value="back"))
    clock.advance(5.0)
    assert await cache.get("k") == "back"
    assert await cache.get("k") == "back"
    infos = [r for r in cache_log.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert "recovered" in infos[0].getMessage()
    assert registry.get_sample_value("cache_up") == 1
    assert PASSWORD not in cache_log.text


async def test_ping_bypasses_the_circuit_and_closes_it(
    dead_redis: Callable[..., RedisCache],
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = dead_redis(retry_after=60.0)
    assert await cache.get("k") is None
    with pytest.raises(CacheUnavailable):
        await cache.ping()  # still tried although the circuit is open
    assert errors(registry, "ping") == 1
    monkeypatch.setattr(cache._client, "ping", AsyncMock(return_value=True))
    spy = AsyncMock(return_value="v")
    monkeypatch.setattr(cache._client, "get", spy)
    await cache.ping()
    assert await cache.get("k") == "v"
    assert registry.get_sample_value("cache_up") == 1


async def test_a_hung_redis_is_bounded_by_op_timeout(
    dead_redis: Callable[..., RedisCache],
    registry: CollectorRegistry,
    cache_log: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = dead_redis(op_timeout=0.05)

    async def hang(*args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(30)

    monkeypatch.setattr(cache._client, "get", hang)
    monkeypatch.setattr(cache._client, "ping", hang)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await cache.get("k") is None
    with pytest.raises(CacheUnavailable, match="TimeoutError"):
        await cache.ping()
    assert loop.time() - started < 2.0
    assert errors(registry, "get") == 1
    assert "timed out" in warnings_of(cache_log)[0].getMessage()


# -- the in-memory bound ------------------------------------------------------------------


async def test_memory_cache_evicts_the_oldest_beyond_max_entries(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=3, clock=clock)
    for key in "abc":
        await cache.set(key, key)
    await cache.set("a", "a2")  # rewriting makes "a" the newest
    await cache.set("d", "d")
    assert len(cache) == 3
    assert await cache.get("b") is None
    assert [await cache.get(k) for k in "acd"] == ["a2", "c", "d"]
    await cache.incr("n")
    await cache.sadd("s", "m")
    assert len(cache) == 3
    assert await cache.get("a") is None
    assert await cache.get("c") is None


async def test_memory_cache_evicts_expired_entries_first(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=3, clock=clock)
    await cache.set("old", "v")
    await cache.set("short", "v", ttl=1)
    await cache.set("new", "v")
    clock.advance(2)
    await cache.set("newest", "v")
    assert len(cache) == 3
    assert await cache.get("old") == "v"
    assert await cache.get("short") is None


async def test_memory_cache_expiry_bookkeeping_stays_bounded(clock: FakeClock) -> None:
    cache = MemoryCache(clock=clock)
    for i in range(20_000):
        await cache.set("k", str(i), ttl=60)
        await cache.incr(f"n{i % 10}", ttl=60)
    assert len(cache) == 11
    assert len(cache._expiries) <= 2 * len(cache) + 1024
    clock.advance(61)
    await cache.set("fresh", "v")
    assert len(cache) == 1  # expired keys are purged on write, even unread


async def test_memory_cache_rejects_a_zero_bound() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(max_entries=0)


async def test_memory_cache_without_registry_still_works(clock: FakeClock) -> None:
    cache = MemoryCache(clock=clock)
    await cache.set("k", "v")
    await cache.sadd("k", "m")  # wrong type: logged, not counted anywhere, not raised
    await cache.ping()
    await cache.close()
    assert await cache.get("k") == "v"
