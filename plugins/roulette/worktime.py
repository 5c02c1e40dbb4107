"""Working time: when someone is next at work, and how much working time lies between two
instants. Pure: no I/O, no clock.

A person works on weekdays (Monday to Friday) from ``window[0]`` o'clock to ``window[1]``
o'clock (``roulette.working_hours``, start included, end excluded; an end of 24 is
midnight) in their own timezone (an IANA name, UTC when None), except on their ``away``
dates (out-of-office days, local dates). Local times are turned into instants with
``zoneinfo``, so a day with a DST change counts its real length: 9:00 to 18:00 is 9 h of
working time on every weekday, and "back at 09:00" is 09:00 on the local wall clock.
Every ``datetime`` taken or returned is timezone-aware.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.settings import Settings
from plugins.roulette.config import RouletteConfig

# How far ahead ``next_at_work`` looks: a person away for longer is "not back soon".
HORIZON_DAYS = 400


def working_window(settings: Settings) -> tuple[int, int]:
    """The configured working hours, ``(start, end)`` local hours (``roulette.working_hours``;
    default ``(9, 18)``)."""
    hours = RouletteConfig.of(settings).working_hours
    return hours.start, hours.end


def zone(timezone: str | None) -> ZoneInfo:
    """The ``ZoneInfo`` of an IANA name; UTC for None, "" or a name zoneinfo does not know."""
    if not timezone:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(timezone)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return ZoneInfo("UTC")


def local_date(now: datetime, timezone: str | None) -> date:
    """The date at ``now`` (aware) where ``timezone`` is (UTC when None)."""
    return _aware(now).astimezone(zone(timezone)).date()


def _at(day: date, hour: int, tz: ZoneInfo) -> datetime:
    """The instant of ``hour`` o'clock (24: the next midnight) on the local ``day``, in UTC.

    A wall-clock time skipped by a DST change (02:30 on a spring-forward night) is read
    as the instant just after the gap, as ``zoneinfo`` does with ``fold=0``.
    """
    if hour >= 24:
        day, hour = day + timedelta(days=1), 0
    local = datetime.combine(day, time(hour), tzinfo=tz)
    # Normalise through UTC so that a non-existent local time lands after the gap.
    return local.astimezone(UTC)


def _is_working_day(day: date, away: Collection[date]) -> bool:
    return day.weekday() < 5 and day not in away


def _spans(
    first: date, last: date, tz: ZoneInfo, window: tuple[int, int], away: Collection[date]
) -> Iterator[tuple[datetime, datetime]]:
    """Each working day's ``[start, end)`` as UTC instants, from local ``first`` to ``last``."""
    day = first
    while day <= last:
        if _is_working_day(day, away):
            yield _at(day, window[0], tz), _at(day, window[1], tz)
        day += timedelta(days=1)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("working time needs timezone-aware datetimes")
    return moment.astimezone(UTC)


def next_at_work(
    now: datetime,
    timezone: str | None,
    window: tuple[int, int],
    away: Collection[date] = (),
) -> datetime | None:
    """When the person is next at work (the start of their next working span), or None
    when they are at work at ``now``.

    ``now`` is aware; the answer is aware, in the person's timezone (UTC when None).
    Weekends (Saturday, Sunday) and ``away`` dates (local) are skipped. Someone with no
    working day in the next ``HORIZON_DAYS`` days (away for longer) gets the start of the
    first working day after it.
    """
    tz = zone(timezone)
    instant = _aware(now)
    today = instant.astimezone(tz).date()
    last = today + timedelta(days=HORIZON_DAYS)
    for start, end in _spans(today, last, tz, window, away):
        if start <= instant < end:
            return None
        if start > instant:
            return start.astimezone(tz)
    day = last + timedelta(days=1)
    while not _is_working_day(day, ()):
        day += timedelta(days=1)
    return _at(day, window[0], tz).astimezone(tz)


def working_seconds(
    start: datetime,
    end: datetime,
    timezone: str | None,
    window: tuple[int, int],
    away: Collection[date] = (),
) -> float:
    """The working time between ``start`` and ``end`` (aware), in seconds: the part of
    ``[start, end)`` within the person's working spans (weekdays, ``window`` local hours,
    their timezone, UTC when None), ``away`` dates (local) left out. 0 when ``end`` is not
    after ``start``. Exact across DST changes (real elapsed seconds)."""
    begin, finish = _aware(start), _aware(end)
    if finish <= begin:
        return 0.0
    tz = zone(timezone)
    first = begin.astimezone(tz).date() - timedelta(days=1)
    last = finish.astimezone(tz).date()
    total = 0.0
    for span_start, span_end in _spans(first, last, tz, window, away):
        low, high = max(span_start, begin), min(span_end, finish)
        if high > low:
            total += (high - low).total_seconds()
    return total


def after_working(
    start: datetime,
    seconds: float,
    timezone: str | None,
    window: tuple[int, int],
    away: Collection[date] = (),
) -> datetime:
    """The instant (aware UTC) when ``seconds`` of working time have passed since ``start``
    (aware), by the same spans as ``working_seconds``; ``start`` itself when ``seconds`` is
    not positive. The inverse of ``working_seconds``: ``working_seconds(start,
    after_working(start, s, ...), ...) == s``."""
    begin = _aware(start)
    if seconds <= 0:
        return begin
    tz = zone(timezone)
    left = seconds
    day = begin.astimezone(tz).date() - timedelta(days=1)
    while True:
        last = day + timedelta(days=HORIZON_DAYS)
        for span_start, span_end in _spans(day, last, tz, window, away):
            low = max(span_start, begin)
            if span_end <= low:
                continue
            available = (span_end - low).total_seconds()
            if available >= left:
                return low + timedelta(seconds=left)
            left -= available
        day = last + timedelta(days=1)
        away = ()  # beyond a year of absences, count the days again
