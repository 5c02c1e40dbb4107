"""Where webhook deliveries wait while the database is down: a durable spool.

GitLab never re-sends a delivery that failed, and disables a webhook after four failures
in a row, so a delivery that cannot be written to ``webhook_inbox`` is written here
instead and acknowledged; once the database answers again, :class:`SpoolDrainer` moves
it into the inbox, where it is processed as usual.

Two spools, tried in this order by the intake (:mod:`bot.webhooks`):

- :class:`RedisStreamSpool`, when ``REDIS_URL`` is set: one stream shared by every
  replica (``XADD`` in a script that refuses past the bound, ``XRANGE``, ``XDEL``). It is
  as durable as Redis's persistence: with ``appendonly yes`` and ``appendfsync
  everysec``, a Redis crash loses at most the last second. Its keys have no expiry, so an
  eviction policy of ``noeviction`` or ``volatile-*`` keeps them (the cache's keys all
  carry a time to live);
- :class:`JournalSpool`: an append-only file in ``SPOOL_DIR`` on the replica's own
  volume, written and ``fsync``'d (and its directory, when the file is created) before
  the delivery is acknowledged. Each replica drains its own journal.

Each spool holds at most ``SPOOL_MAX_BYTES``; past it :class:`SpoolFull` is raised, and
:class:`SpoolUnavailable` when it cannot be written at all. The intake then answers 503
with ``Retry-After``.

A spooled delivery carries the inbox key the intake computed (:func:`bot.webhooks.
inbox_key`), its event kind, payload and arrival time. The drainer inserts with ``ON
CONFLICT DO NOTHING`` on that key, in arrival order, and removes the spooled records only
once the insert has committed: a crash in between inserts them again, which the key makes
harmless. Each delivery is therefore stored once, and answered once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

import redis.asyncio as redis
import redis.exceptions as redis_errors
from prometheus_client import Gauge
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bot.db import is_unavailable
from bot.leader import Leadership

log = logging.getLogger("bot.spool")

#: Deliveries moved from a spool into the inbox per transaction at most.
DRAIN_BATCH: Final = 200
#: Seconds between two looks at the spools while they hold deliveries.
DRAIN_POLL: Final = 1.0
#: Seconds between two looks at the spools while they are empty (a delivery spooled by
#: this replica wakes the drainer at once; this covers other replicas' in a shared stream).
IDLE_POLL: Final = 5.0
#: At most one "still waiting for the database" line per this many seconds.
QUIET: Final = 30.0

_VERSION: Final = 1


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SpooledDelivery:
    """One delivery as spooled: what the intake would have written to the inbox.

    ``key`` is its inbox key (``webhook_inbox.delivery_key``), ``kind`` its event
    (``note``, ``merge_request``), ``payload`` the JSON object GitLab sent (already
    checked by the strict loader), ``received_at`` when the bot received it (UTC).
    """

    key: str
    kind: str
    payload: dict[str, Any]
    received_at: datetime

    def encode(self) -> bytes:
        """Compact ASCII JSON (no raw newline can appear in it)."""
        record = {
            "v": _VERSION,
            "key": self.key,
            "kind": self.kind,
            "received_at": self.received_at.isoformat(),
            "payload": self.payload,
        }
        return json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode("ascii")

    @classmethod
    def decode(cls, data: bytes) -> SpooledDelivery:
        """The delivery :meth:`encode` wrote; ``ValueError`` for anything else."""
        record = json.loads(data)
        if not isinstance(record, dict) or record.get("v") != _VERSION:
            raise ValueError("not a spooled delivery of this version")
        key, kind, payload = record.get("key"), record.get("kind"), record.get("payload")
        received_at = datetime.fromisoformat(str(record.get("received_at")))
        if not (isinstance(key, str) and isinstance(kind, str) and isinstance(payload, dict)):
            raise ValueError("a spooled delivery lacks its key, kind or payload")
        if received_at.tzinfo is None:
            raise ValueError("a spooled delivery's arrival time has no timezone")
        return cls(key=key, kind=kind, payload=payload, received_at=received_at)


#: What :meth:`Spool.head` returns: an id to remove it by, and the delivery, or None for
#: a record that cannot be read (corrupt, or torn by a crash): removed, never inserted.
Entry = tuple[str, SpooledDelivery | None]


class SpoolError(Exception):
    """A spool cannot take a delivery; ``reason`` labels ``webhook_refused_total``."""

    reason = "spool_unavailable"


class SpoolFull(SpoolError):
    """The spool holds ``SPOOL_MAX_BYTES`` already (or the delivery alone is larger)."""

    reason = "spool_full"


class SpoolUnavailable(SpoolError):
    """The spool cannot be written (Redis down, a read-only or full disk...)."""

    reason = "spool_unavailable"


class Spool(Protocol):
    """A durable, bounded FIFO of :class:`SpooledDelivery`.

    ``name`` labels the metrics (``redis``, ``journal``); ``shared`` says whether several
    replicas write and drain the same one (then one replica drains it at a time).
    """

    name: str
    shared: bool

    async def append(self, deliveries: Sequence[SpooledDelivery]) -> None:
        """Store ``deliveries`` durably, all or none; return only once they are.

        Raises:
            SpoolFull: they would take the spool past its bound.
            SpoolUnavailable: the spool cannot be written.
        """
        ...

    async def head(self, limit: int) -> list[Entry]:
        """The oldest ``limit`` records at most, in arrival order, left in place."""
        ...

    async def remove(self, ids: Sequence[str]) -> None:
        """Forget the records of ``ids``, a prefix of what :meth:`head` returned."""
        ...

    async def depth(self) -> int:
        """How many records the spool holds."""
        ...

    async def check(self, *, touch: bool = True) -> None:
        """Raise :class:`SpoolError` if a delivery could not be appended now. With
        ``touch=False`` nothing is created (a start-up check)."""
        ...

    async def close(self) -> None:
        """Release connections and locks; never raises."""
        ...


# --------------------------------------------------------------------------- the journal


def _line(delivery: SpooledDelivery) -> bytes:
    """``<crc32 of the JSON, 8 hex digits> <JSON>\\n``."""
    data = delivery.encode()
    return b"%08x %s\n" % (zlib.crc32(data), data)


def _parse(line: bytes) -> SpooledDelivery:
    """The delivery of a complete journal line; ``ValueError`` when it does not check."""
    checksum, _, data = line.rstrip(b"\n").partition(b" ")
    if len(checksum) != 8 or int(checksum, 16) != zlib.crc32(data):
        raise ValueError("checksum mismatch")
    return SpooledDelivery.decode(data)


def _fsync_directory(path: Path) -> None:
    """Make a file's creation, rename or removal in ``path`` durable (POSIX fsync(2))."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class JournalSpool:
    """An append-only journal in ``directory``, bounded to ``max_bytes``.

    Files: ``journal.log`` takes the appends; ``draining.log`` is the journal being
    drained (``journal.log`` renamed, so appends never wait for a drain); ``spool.lock``
    serialises appends and that rename across processes (``flock``); ``drain.lock`` is
    held by the one process draining the directory. Each record is one line,
    ``<crc32> <JSON>``; a line that does not check (a torn write after a crash, a damaged
    disk) is reported and skipped, never misread. Before appending after a torn record, a
    newline closes it, so the torn bytes never swallow the next record. A drained journal
    is deleted.

    Blocking file work runs in a thread (``asyncio.to_thread``).
    """

    name = "journal"
    shared = False

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.directory = Path(directory).absolute()
        self.max_bytes = max_bytes
        self.journal = self.directory / "journal.log"
        self.draining = self.directory / "draining.log"
        self._appending = asyncio.Lock()
        self._cursor = 0  # where the next record of draining.log starts
        self._count: int | None = None  # records held; counted once, then kept up to date
        self._drain_lock: int | None = None  # fd of drain.lock while this process holds it

    # -- appending ------------------------------------------------------------------

    async def append(self, deliveries: Sequence[SpooledDelivery]) -> None:
        """Append and ``fsync`` the records (one write, one fsync for the batch)."""
        data = b"".join(_line(d) for d in deliveries)
        async with self._appending:
            await asyncio.to_thread(self._append, data)
            if self._count is not None:
                self._count += len(deliveries)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / "spool.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _ensure_directory(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            _fsync_directory(self.directory.parent)

    def _append(self, data: bytes) -> None:
        try:
            self._ensure_directory()
            with self._locked():
                used = _size(self.journal) + _size(self.draining)
                if used + len(data) > self.max_bytes:
                    raise SpoolFull(
                        f"the journal holds {used} bytes; SPOOL_MAX_BYTES is {self.max_bytes}"
                    )
                created = not self.journal.exists()
                fd = os.open(self.journal, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    self._write(fd, data)
                finally:
                    os.close(fd)
                if created:
                    _fsync_directory(self.directory)
        except SpoolError:
            raise
        except OSError as e:
            raise SpoolUnavailable(f"the journal in {self.directory}: {e.strerror or e}") from e

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        """Write ``data`` at the end and fsync; on failure, cut the file back as it was."""
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # close a record torn by a crash, so it stays one bad line
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise

    # -- draining -------------------------------------------------------------------

    async def head(self, limit: int) -> list[Entry]:
        """The oldest records, from ``draining.log``, or ``journal.log`` once renamed to it;
        empty when there are none or another process drains this directory."""
        return await asyncio.to_thread(self._head, limit)

    def _head(self, limit: int) -> list[Entry]:
        if not self._hold_drain_lock():
            return []
        for _ in range(2):  # the draining file, then the journal renamed to it
            if not self.draining.exists():
                self._cursor = 0
                if not self._rotate():
                    return []
            entries = self._read(limit)
            if entries:
                return entries
            self._finish()  # only unreadable bytes were left, or nothing
        return []

    def _hold_drain_lock(self) -> bool:
        if self._drain_lock is not None:
            return True
        if not self.directory.is_dir():
            return False
        fd = os.open(self.directory / "drain.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._drain_lock = fd
        return True

    def _rotate(self) -> bool:
        """Rename a non-empty journal to the draining file; whether there is one now."""
        with self._locked():
            if _size(self.journal) == 0:
                return False
            os.rename(self.journal, self.draining)
            _fsync_directory(self.directory)
        return True

    def _read(self, limit: int) -> list[Entry]:
        entries: list[Entry] = []
        with self.draining.open("rb") as journal:
            journal.seek(self._cursor)
            while len(entries) < limit:
                start = journal.tell()
                line = journal.readline()
                if not line:
                    break
                end = journal.tell()
                if not line.endswith(b"\n"):
                    log.warning(
                        "%s: a record torn by a crash while writing it (%d bytes at %d) is"
                        " ignored; it had not been acknowledged",
                        self.draining,
                        len(line),
                        start,
                    )
                    entries.append((str(end), None))
                    break
                try:
                    entries.append((str(end), _parse(line)))
                except ValueError as e:
                    log.error(
                        "%s: the record at byte %d does not check (%s); skipped",
                        self.draining,
                        start,
                        e,
                    )
                    entries.append((str(end), None))
        return entries

    def _finish(self) -> None:
        """Delete the drained file (and make that durable)."""
        with contextlib.suppress(FileNotFoundError):
            self.draining.unlink()
            _fsync_directory(self.directory)
        self._cursor = 0

    async def remove(self, ids: Sequence[str]) -> None:
        """Move past the records (in memory: a crash re-reads them, which is harmless);
        once the draining file is read to its end, delete it."""
        if not ids:
            return
        self._cursor = int(ids[-1])
        if self._count is not None:
            self._count = max(0, self._count - len(ids))
        if self._cursor >= _size(self.draining):
            await asyncio.to_thread(self._finish)

    # -- state ----------------------------------------------------------------------

    async def depth(self) -> int:
        """Records held: counted from the files once, then kept up to date; never 0
        while either file holds a byte (so the drainer always gets to what is there)."""
        async with self._appending:  # no append changes the files meanwhile
            if _size(self.journal) + _size(self.draining) == 0:
                self._count = 0
                return 0
            if self._count is None:
                self._count = await asyncio.to_thread(self._count_records)
            return max(self._count, 1)

    def _count_records(self) -> int:
        count = 0
        for path, start in ((self.draining, self._cursor), (self.journal, 0)):
            try:
                with path.open("rb") as journal:
                    journal.seek(start)
                    tail = b""
                    while chunk := journal.read(1 << 20):
                        count += chunk.count(b"\n")
                        tail = chunk[-1:]
                    if tail and tail != b"\n":
                        count += 1  # a torn last record: an entry head() returns too
            except FileNotFoundError:
                continue
        return count

    async def check(self, *, touch: bool = True) -> None:
        """Raise :class:`SpoolError` unless one more small delivery would fit and the
        directory can be written. ``touch=False``: only whether the directory (or the
        folder it would be made in) can be written, creating nothing."""
        await asyncio.to_thread(self._check if touch else self._check_untouched)

    def _check_untouched(self) -> None:
        folder = self.directory.absolute()
        try:
            while not folder.exists() and folder.parent != folder:
                folder = folder.parent
            is_folder = folder.is_dir()
        except OSError as e:  # a folder above it cannot be read (EACCES)
            raise SpoolUnavailable(f"the journal in {self.directory}: {e.strerror or e}") from e
        if not is_folder:
            raise SpoolUnavailable(f"the journal in {self.directory}: {folder} is not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise SpoolUnavailable(f"the journal in {self.directory}: {folder} is not writable")

    def _check(self) -> None:
        try:
            self._ensure_directory()
            with self._locked():
                used = _size(self.journal) + _size(self.draining)
        except OSError as e:
            raise SpoolUnavailable(f"the journal in {self.directory}: {e.strerror or e}") from e
        if used >= self.max_bytes:
            raise SpoolFull(f"the journal holds {used} bytes of {self.max_bytes}")

    async def close(self) -> None:
        """Let another process drain this directory."""
        fd, self._drain_lock = self._drain_lock, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


# --------------------------------------------------------------------------- the stream

# KEYS: the stream, its byte count. ARGV: the bytes added, the bound, then the records.
# Refuses (-1) past the bound; the count restarts from 0 whenever the stream is empty.
_APPEND: Final = """
local used = 0
if redis.call('XLEN', KEYS[1]) > 0 then
  used = tonumber(redis.call('GET', KEYS[2]) or '0')
end
local adding = tonumber(ARGV[1])
if used + adding > tonumber(ARGV[2]) then
  return -1
end
for i = 3, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'd', ARGV[i])
end
redis.call('SET', KEYS[2], used + adding)
return redis.call('XLEN', KEYS[1])
"""

# KEYS: the stream, its byte count. ARGV: the ids. Removing an id twice counts it once.
_REMOVE: Final = """
local freed = 0
for i = 1, #ARGV do
  local entry = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #entry > 0 then
    freed = freed + string.len(entry[1][2][2])
    redis.call('XDEL', KEYS[1], ARGV[i])
  end
end
local left = redis.call('XLEN', KEYS[1])
local used = 0
if left > 0 then
  used = math.max(0, tonumber(redis.call('GET', KEYS[2]) or '0') - freed)
end
redis.call('SET', KEYS[2], used)
return left
"""

_REDIS_ERRORS: Final = (redis_errors.RedisError, OSError, asyncio.TimeoutError)


class RedisStreamSpool:
    """A Redis stream (``<prefix>spool``) shared by the replicas, bounded to ``max_bytes``
    of records (counted in ``<prefix>spool:bytes``, updated in the same scripts).

    Every Redis failure is raised as :class:`SpoolUnavailable` (never quoting the URL).
    No connection is made until the first call.
    """

    name = "redis"
    shared = True

    def __init__(
        self, url: str, max_bytes: int, *, key_prefix: str = "roulette:", timeout: float = 2.0
    ) -> None:
        self._client: redis.Redis = redis.from_url(  # one retry: a restart breaks the pool
            url,
            socket_connect_timeout=0.5,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), retries=1),
            retry_on_error=[redis_errors.ConnectionError],
        )
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.stream = f"{key_prefix}spool"
        self.bytes_key = f"{key_prefix}spool:bytes"
        self._append_script = self._client.register_script(_APPEND)
        self._remove_script = self._client.register_script(_REMOVE)

    async def _call(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                return await call()
        except _REDIS_ERRORS as e:
            raise SpoolUnavailable(f"the Redis stream ({what}): {type(e).__name__}") from e

    async def append(self, deliveries: Sequence[SpooledDelivery]) -> None:
        """``XADD`` every record in one script, unless past the bound."""
        records = [d.encode() for d in deliveries]
        adding = sum(len(r) for r in records)
        keys = [self.stream, self.bytes_key]
        left = await self._call(
            "append",
            lambda: self._append_script(keys=keys, args=[adding, self.max_bytes, *records]),
        )
        if int(left) < 0:
            raise SpoolFull(f"the Redis stream would exceed SPOOL_MAX_BYTES ({self.max_bytes})")

    async def head(self, limit: int) -> list[Entry]:
        """``XRANGE - + COUNT limit``."""
        raw = await self._call("read", lambda: self._client.xrange(self.stream, count=limit))
        entries: list[Entry] = []
        for entry_id, fields in raw:
            ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            try:
                entries.append((ident, SpooledDelivery.decode(fields[b"d"])))
            except (KeyError, ValueError) as e:
                log.error("the Redis spool's record %s cannot be read (%s); skipped", ident, e)
                entries.append((ident, None))
        return entries

    async def remove(self, ids: Sequence[str]) -> None:
        """``XDEL`` the ids and lower the byte count by what they held."""
        if ids:
            keys = [self.stream, self.bytes_key]
            await self._call("remove", lambda: self._remove_script(keys=keys, args=list(ids)))

    async def depth(self) -> int:
        """``XLEN``."""
        return int(await self._call("length", lambda: self._client.xlen(self.stream)))

    async def check(self, *, touch: bool = True) -> None:
        """Redis answers, and the stream is below its bound (``touch`` changes nothing)."""
        used = await self._call("check", lambda: self._client.get(self.bytes_key))
        if used is not None and int(used) >= self.max_bytes:
            raise SpoolFull(f"the Redis stream holds {int(used)} bytes of {self.max_bytes}")

    async def close(self) -> None:
        """Close the connection pool."""
        with contextlib.suppress(*_REDIS_ERRORS):
            await self._client.aclose()


# --------------------------------------------------------------------------- the drainer

Store = Callable[[Sequence[SpooledDelivery]], Awaitable[None]]


class SpoolDrainer:
    """Moves spooled deliveries into the inbox once the database answers (every replica).

    Every :data:`DRAIN_POLL` seconds while a spool holds deliveries (at once when
    :meth:`wake` is called, every :data:`IDLE_POLL` seconds otherwise), each spool is
    drained in arrival order once ``probe`` (a database ping) succeeds,
    :data:`DRAIN_BATCH` records at a time: ``store`` inserts
    them (``ON CONFLICT DO NOTHING`` on their keys) and commits, then they are removed
    from the spool. A shared spool is drained by one replica at a time (``lock``, a
    PostgreSQL advisory lock; always granted on SQLite); a replica's journal by that
    replica. ``on_settled`` is called when every spool was found empty, or when draining
    failed for another reason than the database being unavailable (a defect, logged and
    counted in ``unhandled_errors_total{where="webhook_spool"}``).
    """

    def __init__(
        self,
        spools: Sequence[Spool],
        store: Store,
        *,
        probe: Callable[[], Awaitable[None]],
        lock: Leadership | None,
        depth: Gauge,
        unhandled: Callable[[], None],
        on_settled: Callable[[], None],
    ) -> None:
        self.spools = list(spools)
        self.store = store
        self.probe = probe
        self.lock = lock
        self.depth_gauge = depth
        self.unhandled = unhandled
        self.on_settled = on_settled
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_logged: dict[str, float] = {}
        for spool in self.spools:
            depth.labels(spool.name).set(0)

    def start(self) -> None:
        """Start the drain loop (no-op without spools)."""
        if self.spools and self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="webhook-spool-drain")

    def wake(self) -> None:
        """Look at the spools now (a delivery was just spooled)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop the loop. A drain cut short leaves its records spooled (drained again
        later: the keys make that harmless)."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                held = await self.drain()
            except Exception:  # never let the loop die: the spool would never drain
                log.exception("the spool drain failed")
                self.unhandled()
                held = 1
            timeout = DRAIN_POLL if held else IDLE_POLL
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def drain(self) -> int:
        """One pass over every spool; how many records are left (0: all drained)."""
        held = 0
        settled = True
        database_answers: bool | None = None
        for spool in self.spools:
            try:
                if await self._depth(spool):
                    if database_answers is None:  # asked once per pass, only when needed
                        await self.probe()
                        database_answers = True
                    await self._drain(spool)
                left = await self._depth(spool)
            except SpoolError as e:
                # The spool itself cannot be read (Redis down): its records wait for it,
                # and the intake need not keep spooling for them (it could not order
                # the new deliveries behind them anyway).
                self._quietly(
                    f"{spool.name}-spool", "the %s spool cannot be drained now: %s", spool.name, e
                )
                held += 1
                continue
            except Exception as e:
                if is_unavailable(e):
                    self._quietly(
                        "database",
                        "the database is still unavailable (%s); deliveries wait in the %s spool",
                        type(e).__name__,
                        spool.name,
                    )
                    settled = False
                    held += 1
                    continue
                log.exception("draining the %s spool failed", spool.name)
                self.unhandled()
                left = 0  # a defect: let the intake write to the database meanwhile
            held += left
            settled = settled and left == 0
        if settled:
            self.on_settled()
        return held

    async def _depth(self, spool: Spool) -> int:
        depth = await spool.depth()
        self.depth_gauge.labels(spool.name).set(depth)
        return depth

    async def _drain(self, spool: Spool) -> None:
        if spool.shared and self.lock is not None:
            if not await self.lock.try_acquire():
                return  # another replica drains it
            try:
                await self._move(spool)
            finally:
                await self.lock.release()
        else:
            await self._move(spool)

    async def _move(self, spool: Spool) -> None:
        moved = 0
        while True:
            entries = await spool.head(DRAIN_BATCH)
            if not entries:
                break
            deliveries = [d for _, d in entries if d is not None]
            if deliveries:
                await self.store(deliveries)
            await spool.remove([ident for ident, _ in entries])
            moved += len(deliveries)
        if moved:
            log.info("%d spooled deliveries moved into the inbox (%s spool)", moved, spool.name)

    def _quietly(self, topic: str, message: str, *args: Any) -> None:
        """Log a warning about ``topic`` at most once per :data:`QUIET` seconds."""
        now = asyncio.get_running_loop().time()
        last = self._last_logged.get(topic)
        if last is None or now - last >= QUIET:
            self._last_logged[topic] = now
            log.warning(message, *args)


def build_spools(
    spool_dir: str, max_bytes: int, redis_url: str | None, *, key_prefix: str = "roulette:"
) -> list[Spool]:
    """The spools the intake tries in order: the Redis stream when ``redis_url`` is set,
    then the journal in ``spool_dir``; none when ``max_bytes`` is 0 (spooling off)."""
    if max_bytes <= 0:
        return []
    spools: list[Spool] = []
    if redis_url:
        spools.append(RedisStreamSpool(redis_url, max_bytes, key_prefix=key_prefix))
    spools.append(JournalSpool(spool_dir, max_bytes))
    return spools
