"""A small async cache of JSON values: Redis when configured, in-process otherwise.

The bot only stores JSON values with a time to live and reads them back, one or many at
a time, so that is all a :class:`Cache` does: :meth:`~Cache.get_json`,
:meth:`~Cache.set_json`, :meth:`~Cache.get_json_many` (and :meth:`~Cache.get_text_many`,
undecoded), plus :meth:`~Cache.ping` for
``/readiness`` and :meth:`~Cache.close`.

Values are stored as compact JSON text on both backends, so a caller never shares an
object with the cache: what it stored is copied at write time, and every read decodes a
fresh object.

The cache is an optimisation, never a dependency: :class:`RedisCache` turns every Redis
failure into a cache miss (or a dropped write), counts it in ``cache_errors_total`` and
stops calling Redis for ``retry_after`` seconds so that a dead server does not add a
timeout to every request. Only :meth:`Cache.ping` reports failures, for ``/readiness``.

Nothing here does I/O at import time or in a constructor.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, NamedTuple, TypeVar

import cachetools
import redis.asyncio as redis
import redis.exceptions as redis_errors
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = [
    "Cache",
    "CacheUnavailable",
    "MemoryCache",
    "RedisCache",
    "create_cache",
]

logger = logging.getLogger("bot.cache")

_T = TypeVar("_T")

#: A monotonic clock in seconds.
Clock = Callable[[], float]

#: Operations labelled in ``cache_errors_total``; pre-initialised to 0 for dashboards.
#: ``get`` counts single reads and ``get_json_many`` (one MGET) alike.
OPERATIONS: Final = ("get", "set", "ping")

#: At most one warning of each kind (Redis down, request rejected) per this many seconds.
WARNING_INTERVAL: Final = 30.0

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


def _decode(key: str, raw: str | None) -> Any | None:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        logger.warning("Cache value at %r is not valid JSON; treating it as a miss", key)
        return None


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
    """A cache of JSON values under string keys; ``ttl`` is in seconds.

    A ``ttl`` of ``None`` means no expiry; any other value must be a positive, finite
    number of seconds (``ValueError`` otherwise, on every backend). Reads never raise:
    a missing, expired, undecodable or unreachable value reads as ``None`` (as does a
    stored JSON ``null``). Backends store the JSON text through :meth:`_get`,
    :meth:`_get_many` and :meth:`_set`.
    """

    #: ``"memory"`` or ``"redis"``: the ``backend`` label of the metrics.
    backend: str

    async def get_json(self, key: str) -> Any | None:
        """The value stored at ``key`` by :meth:`set_json`, freshly decoded; else ``None``."""
        return _decode(key, await self._get(key))

    async def get_json_many(self, keys: Sequence[str]) -> list[Any | None]:
        """:meth:`get_json` for each of ``keys``, in order: one round trip on Redis."""
        raws = await self.get_text_many(keys)
        return [_decode(key, raw) for key, raw in zip(keys, raws, strict=True)]

    async def get_text_many(self, keys: Sequence[str]) -> list[str | None]:
        """The JSON texts stored at ``keys``, in order, not decoded (``None`` where
        missing): for a caller that remembers what it made of a text, and so decodes
        each distinct text once (:meth:`decode`). One round trip on Redis."""
        if not keys:
            return []
        return await self._get_many(keys)

    @staticmethod
    def decode(key: str, text: str | None) -> Any | None:
        """A text of :meth:`get_text_many` decoded, as :meth:`get_json` would: ``None``
        when missing or not valid JSON (logged with ``key``)."""
        return _decode(key, text)

    async def set_json(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` as compact JSON, replacing any value and expiry ``key`` had.

        Raises ``TypeError`` if ``value`` is not JSON-serialisable and ``ValueError`` on
        an invalid ``ttl``; later changes to ``value`` do not reach the cache.
        """
        _check_ttl(ttl)
        await self._set(key, json.dumps(value, separators=(",", ":"), ensure_ascii=False), ttl)

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise :class:`CacheUnavailable` if the backend does not answer."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the backend's connections. Never raises."""

    @abc.abstractmethod
    async def _get(self, key: str) -> str | None:
        """The text stored at ``key``; ``None`` if missing, expired or unavailable."""

    @abc.abstractmethod
    async def _get_many(self, keys: Sequence[str]) -> list[str | None]:
        """The texts stored at ``keys`` (not empty), in order, ``None`` where missing."""

    @abc.abstractmethod
    async def _set(self, key: str, text: str, ttl: float | None) -> None:
        """Store ``text`` at ``key`` for ``ttl`` seconds (already checked), or forever."""


class _Stored(NamedTuple):
    text: str
    ttl: float | None


#: The shortest life of an entry, in seconds: Redis's ``PX`` unit, and long enough that
#: ``now + ttl > now`` so that TLRUCache never skips the write and keeps an older value.
_MIN_TTL: Final = 0.001


def _expires_at(_key: str, stored: _Stored, now: float) -> float:
    """The ``ttu`` of :class:`cachetools.TLRUCache`: each entry carries its own ttl."""
    return math.inf if stored.ttl is None else now + max(stored.ttl, _MIN_TTL)


class MemoryCache(Cache):
    """An in-process cache on :class:`cachetools.TLRUCache`, for a single event loop.

    Each entry expires ``ttl`` seconds after it was written, measured on ``clock``
    (monotonic by default; tests pass a fake one). At most ``max_entries`` keys are held:
    a write first drops expired keys, then the least recently used ones. ``registry``,
    when given, holds the ``cache_up`` / ``cache_errors_total`` series (always 1 and 0:
    the process is the backend).
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
        self._data: cachetools.TLRUCache[str, _Stored] = cachetools.TLRUCache(
            maxsize=max_entries, ttu=_expires_at, timer=clock
        )
        if registry is not None:
            _metrics_for(registry, self.backend)

    async def _get(self, key: str) -> str | None:
        stored = self._data.get(key)
        return None if stored is None else stored.text

    async def _get_many(self, keys: Sequence[str]) -> list[str | None]:
        get = self._data.get
        return [None if (stored := get(key)) is None else stored.text for key in keys]

    async def _set(self, key: str, text: str, ttl: float | None) -> None:
        self._data[key] = _Stored(text, ttl)

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
    """A Redis-backed cache (``redis.asyncio``) that degrades to "no cache" when Redis fails.

    Keys are stored under ``key_prefix``, ttls as ``SET ... PX`` milliseconds, and
    :meth:`get_json_many` is one ``MGET``. After a failure the circuit opens: calls are
    answered as misses without touching the network for ``retry_after`` seconds, then a
    single call probes Redis again. ``op_timeout`` bounds each call end to end, client
    retries included. A command that fails on a broken connection is sent once more on
    a new one (after Redis restarts, every pooled connection is broken: without it each
    would reopen the circuit once, and the cache would come back only after as many
    ``retry_after`` periods). Warnings are rate limited and never quote the URL.
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
            retry=Retry(NoBackoff(), retries=1),
            retry_on_error=[redis_errors.ConnectionError],
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

    async def _get(self, key: str) -> str | None:
        value = await self._run("get", lambda client: client.get(self._key(key)), None)
        return None if value is None else _text(value)

    async def _get_many(self, keys: Sequence[str]) -> list[str | None]:
        names = [self._key(key) for key in keys]
        values = await self._run("get", lambda client: client.mget(names), None)
        if values is None:
            return [None] * len(keys)
        return [None if value is None else _text(value) for value in values]

    async def _set(self, key: str, text: str, ttl: float | None) -> None:
        px = None if ttl is None else _millis(ttl)
        await self._run("set", lambda client: client.set(self._key(key), text, px=px), None)

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
        """Close the connection pool; a failure is logged at debug level, never raised."""
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
