"""A small async cache: Redis when configured, an in-process dict otherwise.

The cache is an optimisation, never a dependency: :class:`RedisCache` turns every Redis
failure into a cache miss (or a dropped write), counts it in ``cache_errors_total`` and
stops calling Redis for ``retry_after`` seconds so that a dead server does not add a
timeout to every request. Only :meth:`Cache.ping` reports failures, for ``/readiness``.

Nothing here does I/O at import time or in a constructor.
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import heapq
import json
import logging
import math
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import redis.asyncio as redis
import redis.exceptions as redis_errors
from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = [
    "Cache",
    "CacheUnavailable",
    "MemoryCache",
    "RedisCache",
    "create_cache",
]

logger = logging.getLogger("bot.cache")

_T = TypeVar("_T")

Clock = Callable[[], float]

#: Operations labelled in ``cache_errors_total``; pre-initialised to 0 for dashboards.
OPERATIONS: Final = ("get", "set", "delete", "incr", "sadd", "srem", "smembers", "ping")

#: At most one warning of each kind (Redis down, request rejected) per this many seconds.
WARNING_INTERVAL: Final = 30.0

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_INTEGER = re.compile(r"-?[0-9]+")

# Errors meaning the server answered (or the request never left the client): the
# operation failed but Redis is up, so they do not open the circuit breaker.
_REQUEST_ERRORS: Final = (redis_errors.ResponseError, redis_errors.DataError)
# Everything else that a dead, slow or unreachable Redis can raise.
_BACKEND_ERRORS: Final = (redis_errors.RedisError, OSError, asyncio.TimeoutError)


class CacheUnavailable(Exception):
    """The cache backend does not answer; raised only by :meth:`Cache.ping`."""


def _check_ttl(ttl: float | None) -> None:
    if ttl is not None and not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"cache ttl must be a positive number of seconds, not {ttl!r}")


class _Metrics:
    """The cache's Prometheus series in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.errors = Counter(
            "cache_errors",
            "Cache operations that failed and were served as a miss.",
            ["backend", "operation"],
            registry=registry,
        )
        self.up = Gauge(
            "cache_up",
            "1 if the cache backend answered its last request, else 0.",
            registry=registry,
        )


# One set of collectors per registry, so that two caches on one registry do not collide.
_metrics_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = (
    weakref.WeakKeyDictionary()
)


def _metrics_for(registry: CollectorRegistry, backend: str) -> _Metrics:
    metrics = _metrics_by_registry.get(registry)
    if metrics is None:
        metrics = _metrics_by_registry[registry] = _Metrics(registry)
    for operation in OPERATIONS:
        metrics.errors.labels(backend=backend, operation=operation)
    metrics.up.set(1)
    return metrics


class Cache(abc.ABC):
    """The cache interface. Values are strings; sets hold strings; ``ttl`` is in seconds.

    A ``ttl`` of ``None`` means no expiry; any other value must be a positive, finite
    number of seconds (``ValueError`` otherwise, on every backend).
    """

    backend: str

    @abc.abstractmethod
    async def get(self, key: str) -> str | None:
        """The string stored at ``key``, or ``None`` if missing, expired or unavailable."""

    @abc.abstractmethod
    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store ``value``, replacing any value and expiry ``key`` had."""

    @abc.abstractmethod
    async def delete(self, *keys: str) -> None:
        """Remove ``keys``; missing keys are ignored."""

    @abc.abstractmethod
    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int | None:
        """Add ``amount`` to the integer at ``key`` (created at 0) and return the result.

        ``ttl`` applies only when this call creates the key: an existing key keeps its
        expiry (or lack of one). ``None`` if the backend failed or the value is not an
        integer.
        """

    @abc.abstractmethod
    async def sadd(self, key: str, *members: str, ttl: float | None = None) -> None:
        """Add ``members`` to the set at ``key``; a ``ttl`` (re)sets the key's expiry."""

    @abc.abstractmethod
    async def srem(self, key: str, *members: str) -> None:
        """Remove ``members`` from the set at ``key``; an emptied set disappears."""

    @abc.abstractmethod
    async def smembers(self, key: str) -> builtins.set[str]:
        """The members of the set at ``key``; empty if missing or unavailable."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise :class:`CacheUnavailable` if the backend does not answer."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the backend's connections. Never raises."""

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """The values at ``keys``, in order (``None`` where missing): one round trip on Redis."""
        return [await self.get(key) for key in keys]

    async def get_json_many(self, keys: Sequence[str]) -> list[Any | None]:
        """:meth:`get_json` for many keys at once."""
        values: list[Any | None] = []
        for key, raw in zip(keys, await self.get_many(keys), strict=True):
            try:
                values.append(None if raw is None else json.loads(raw))
            except ValueError:
                logger.warning("Cache value at %r is not valid JSON; treating it as a miss", key)
                values.append(None)
        return values

    async def get_json(self, key: str) -> Any | None:
        """The JSON value stored by :meth:`set_json`; ``None`` if missing or undecodable.

        A stored JSON ``null`` also reads as ``None``.
        """
        raw = await self.get(key)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            logger.warning("Cache value at %r is not valid JSON; treating it as a miss", key)
            return None

    async def set_json(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` as compact JSON; ``TypeError`` if it is not JSON-serialisable."""
        await self.set(key, json.dumps(value, separators=(",", ":"), ensure_ascii=False), ttl)


@dataclass(slots=True)
class _Entry:
    value: str | set[str]
    expires_at: float | None


class MemoryCache(Cache):
    """An in-process cache for a single event loop (every operation is atomic).

    Expiry is checked on access against ``clock`` (monotonic by default). Once
    ``max_entries`` keys are held, inserting a new key first drops expired keys, then
    the least recently written ones. Values of the wrong type (``get`` on a set,
    ``incr`` on a non-integer) behave like on Redis: a miss, logged and counted.
    """

    backend = "memory"

    def __init__(
        self,
        *,
        max_entries: int = 100_000,
        clock: Clock = time.monotonic,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        # Insertion order = write order: the first key is the least recently written.
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        # (expires_at, key) for every key written with a ttl; stale items are skipped.
        self._expiries: list[tuple[float, str]] = []
        self._metrics = _metrics_for(registry, self.backend) if registry is not None else None

    def __len__(self) -> int:
        """The number of keys held, including expired ones not yet purged."""
        return len(self._data)

    def _deadline(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    def _live(self, key: str) -> _Entry | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry.expires_at is not None and entry.expires_at <= self._clock():
            del self._data[key]
            return None
        return entry

    def _purge_expired(self) -> None:
        now = self._clock()
        heap = self._expiries
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            entry = self._data.get(key)
            if entry is not None and entry.expires_at == expires_at:
                del self._data[key]
        if len(heap) > 2 * len(self._data) + 1024:
            self._expiries = [
                (entry.expires_at, key)
                for key, entry in self._data.items()
                if entry.expires_at is not None
            ]
            heapq.heapify(self._expiries)

    def _track_expiry(self, key: str, entry: _Entry) -> None:
        if entry.expires_at is not None:
            heapq.heappush(self._expiries, (entry.expires_at, key))

    def _store(self, key: str, entry: _Entry) -> None:
        self._purge_expired()
        if key in self._data:
            self._data.move_to_end(key)
        else:
            while len(self._data) >= self.max_entries:
                self._data.popitem(last=False)
        self._data[key] = entry
        self._track_expiry(key, entry)

    def _wrong_type(self, operation: str, key: str) -> None:
        logger.warning("Cache %s on %r: the key holds the wrong type of value", operation, key)
        if self._metrics is not None:
            self._metrics.errors.labels(backend=self.backend, operation=operation).inc()

    async def get(self, key: str) -> str | None:
        entry = self._live(key)
        if entry is None:
            return None
        if not isinstance(entry.value, str):
            self._wrong_type("get", key)
            return None
        return entry.value

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        _check_ttl(ttl)
        self._store(key, _Entry(value, self._deadline(ttl)))

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int | None:
        _check_ttl(ttl)
        entry = self._live(key)
        if entry is None:
            current, expires_at = 0, self._deadline(ttl)
        elif isinstance(entry.value, str) and _INTEGER.fullmatch(entry.value):
            current, expires_at = int(entry.value), entry.expires_at
        else:
            self._wrong_type("incr", key)
            return None
        new = current + amount
        if not _INT64_MIN <= new <= _INT64_MAX:
            self._wrong_type("incr", key)
            return None
        if entry is None:
            self._store(key, _Entry(str(new), expires_at))
        else:
            entry.value = str(new)
            self._data.move_to_end(key)
        return new

    async def sadd(self, key: str, *members: str, ttl: float | None = None) -> None:
        _check_ttl(ttl)
        if not members:
            return
        entry = self._live(key)
        if entry is None:
            self._store(key, _Entry(set(members), self._deadline(ttl)))
        elif isinstance(entry.value, set):
            entry.value.update(members)
            if ttl is not None:
                entry.expires_at = self._deadline(ttl)
                self._track_expiry(key, entry)
            self._data.move_to_end(key)
        else:
            self._wrong_type("sadd", key)

    async def srem(self, key: str, *members: str) -> None:
        entry = self._live(key)
        if entry is None or not members:
            return
        if not isinstance(entry.value, set):
            self._wrong_type("srem", key)
            return
        entry.value.difference_update(members)
        if not entry.value:
            del self._data[key]

    async def smembers(self, key: str) -> builtins.set[str]:
        entry = self._live(key)
        if entry is None:
            return set()
        if not isinstance(entry.value, set):
            self._wrong_type("smembers", key)
            return set()
        return set(entry.value)

    async def ping(self) -> None:
        """Always answers: the process is the backend."""

    async def close(self) -> None:
        """Nothing to release; the data stays readable."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _millis(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


_DESCRIPTIONS: Final[tuple[tuple[type[BaseException], str], ...]] = (
    (redis_errors.AuthenticationError, "authentication failed"),
    (redis_errors.TimeoutError, "timed out"),
    (asyncio.TimeoutError, "timed out"),
    (redis_errors.ConnectionError, "connection failed"),
    (OSError, "connection failed"),
    (redis_errors.ResponseError, "request rejected"),
)


def _describe(exc: BaseException) -> str:
    """A short description that never quotes the exception's message (it may hold a URL)."""
    for kind, description in _DESCRIPTIONS:
        if isinstance(exc, kind):
            return description
    return "request failed"


class _WarningLimiter:
    """Lets one warning through per :data:`WARNING_INTERVAL` and counts the rest."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._suppressed = 0

    def admit(self, now: float) -> int | None:
        """``None`` to stay quiet; else how many warnings were suppressed since the last."""
        if self._last is not None and now - self._last < WARNING_INTERVAL:
            self._suppressed += 1
            return None
        suppressed, self._last, self._suppressed = self._suppressed, now, 0
        return suppressed


def _suppressed(count: int) -> str:
    return f" ({count} similar failures since the last report)" if count else ""


class RedisCache(Cache):
    """A Redis-backed cache that degrades to "no cache" when Redis fails.

    Keys are stored under ``key_prefix``. After a failure the circuit opens: calls are
    answered as misses without touching the network for ``retry_after`` seconds, then a
    single call probes Redis again. ``op_timeout`` bounds each call end to end,
    client retries included.
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        registry: CollectorRegistry,
        *,
        key_prefix: str = "roulette:",
        retry_after: float = 5.0,
        op_timeout: float = 2.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if retry_after < 0 or op_timeout <= 0:
            raise ValueError("retry_after must be >= 0 and op_timeout > 0")
        # from_url only parses the URL and builds a pool: no connection is made here.
        self._client: redis.Redis = redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=0.5,
            socket_timeout=1.0,
            health_check_interval=30,
        )
        self.key_prefix = key_prefix
        self.retry_after = retry_after
        self.op_timeout = op_timeout
        self._clock = clock
        self._metrics = _metrics_for(registry, self.backend)
        self._open_until: float | None = None  # None: the circuit is closed
        self._probing = False
        self._outage_warnings = _WarningLimiter()
        self._rejection_warnings = _WarningLimiter()

    def _key(self, key: str) -> str:
        return self.key_prefix + key

    # -- circuit breaker and reporting ------------------------------------------------

    def _admit(self) -> bool | None:
        """``None`` to skip Redis; else whether this call is the probe after an outage.

        Once the circuit has been open for ``retry_after`` seconds, a single call is let
        through to probe Redis while the others keep skipping it.
        """
        if self._open_until is None:
            return False
        if self._probing or self._clock() < self._open_until:
            return None
        self._probing = True
        return True

    def _succeeded(self) -> None:
        if self._open_until is not None:
            self._open_until = None
            logger.info("Redis cache recovered; using it again")
        self._metrics.up.set(1)

    def _failed(self, operation: str, exc: BaseException, *, backend_down: bool) -> None:
        self._metrics.errors.labels(backend=self.backend, operation=operation).inc()
        now = self._clock()
        if backend_down:
            self._open_until = now + self.retry_after
            self._metrics.up.set(0)
            suppressed = self._outage_warnings.admit(now)
            if suppressed is not None:
                logger.warning(
                    "Redis cache unavailable: %s %s (%s); serving without cache, retrying in %gs%s",
                    operation,
                    _describe(exc),
                    type(exc).__name__,
                    self.retry_after,
                    _suppressed(suppressed),
                )
        else:
            self._succeeded()  # the server answered
            suppressed = self._rejection_warnings.admit(now)
            if suppressed is not None:
                logger.warning(
                    "Redis cache %s %s (%s); treated as a miss%s",
                    operation,
                    _describe(exc),
                    type(exc).__name__,
                    _suppressed(suppressed),
                )

    async def _run(
        self,
        operation: str,
        call: Callable[[redis.Redis], Awaitable[_T]],
        default: _T,
    ) -> _T:
        """Run ``call`` against Redis, or return ``default`` if it fails or is skipped."""
        probe = self._admit()
        if probe is None:
            return default
        try:
            async with asyncio.timeout(self.op_timeout):
                result = await call(self._client)
        except _REQUEST_ERRORS as exc:
            self._failed(operation, exc, backend_down=False)
            return default
        except _BACKEND_ERRORS as exc:
            self._failed(operation, exc, backend_down=True)
            return default
        finally:
            if probe:
                self._probing = False
        self._succeeded()
        return result

    # -- operations ---------------------------------------------------------------------

    async def get(self, key: str) -> str | None:
        value = await self._run("get", lambda client: client.get(self._key(key)), None)
        return None if value is None else _text(value)

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        names = [self._key(key) for key in keys]
        values = await self._run("get", lambda client: client.mget(names), None)
        if values is None:
            return [None] * len(keys)
        return [None if value is None else _text(value) for value in values]

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        _check_ttl(ttl)
        px = None if ttl is None else _millis(ttl)
        await self._run("set", lambda client: client.set(self._key(key), value, px=px), None)

    async def delete(self, *keys: str) -> None:
        if keys:
            names = [self._key(key) for key in keys]
            await self._run("delete", lambda client: client.delete(*names), None)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int | None:
        _check_ttl(ttl)
        name = self._key(key)
        if ttl is None:
            return await self._run("incr", lambda client: client.incrby(name, amount), None)
        px = _millis(ttl)

        async def create_then_incr(client: redis.Redis) -> int | None:
            # SET NX gives the key its ttl only if this transaction creates it.
            async with client.pipeline(transaction=True) as pipe:
                pipe.set(name, 0, px=px, nx=True)
                pipe.incrby(name, amount)
                results = await pipe.execute()
            return int(results[1])

        return await self._run("incr", create_then_incr, None)

    async def sadd(self, key: str, *members: str, ttl: float | None = None) -> None:
        _check_ttl(ttl)
        if not members:
            return
        name = self._key(key)
        if ttl is None:
            await self._run("sadd", lambda client: client.sadd(name, *members), None)
            return
        px = _millis(ttl)

        async def add_then_expire(client: redis.Redis) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.sadd(name, *members)
                pipe.pexpire(name, px)
                await pipe.execute()

        await self._run("sadd", add_then_expire, None)

    async def srem(self, key: str, *members: str) -> None:
        if members:
            name = self._key(key)
            await self._run("srem", lambda client: client.srem(name, *members), None)

    async def smembers(self, key: str) -> builtins.set[str]:
        async def members(client: redis.Redis) -> builtins.set[str]:
            return {_text(member) for member in await client.smembers(self._key(key))}

        return await self._run("smembers", members, set())

    async def ping(self) -> None:
        """PING Redis, bypassing the circuit breaker; a success closes it."""
        try:
            async with asyncio.timeout(self.op_timeout):
                await self._client.ping()
        except _BACKEND_ERRORS as exc:
            self._failed("ping", exc, backend_down=True)
            raise CacheUnavailable(f"redis: {type(exc).__name__}") from exc
        self._succeeded()

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except _BACKEND_ERRORS as exc:
            logger.debug("Closing the Redis cache client failed: %s", type(exc).__name__)


def create_cache(
    redis_url: str | None,
    registry: CollectorRegistry,
    *,
    key_prefix: str = "roulette:",
) -> Cache:
    """A :class:`RedisCache` if ``redis_url`` is set, else a :class:`MemoryCache`.

    The cache's metrics are registered in ``registry``. No connection is made here.
    """
    if redis_url:
        return RedisCache(redis_url, registry, key_prefix=key_prefix)
    return MemoryCache(registry=registry)
