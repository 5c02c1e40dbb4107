"""Working time (plugins.roulette.worktime): weekends, away days, DST, a 9-18 window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from plugins.roulette import api
from plugins.roulette.worktime import next_at_work, working_seconds, working_window
from tests.conftest import settings_for

PARIS = ZoneInfo("Europe/Paris")
NY = ZoneInfo("America/New_York")
WINDOW = (9, 18)
H = 3600.0


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("now", "timezone", "away", "expected"),
    [
        # Tuesday 10:00 in Paris: at work.
        (paris(2026, 3, 10, 10, 0), "Europe/Paris", (), None),
        # Tuesday 08:59: back at 09:00 the same day.
        (paris(2026, 3, 10, 8, 59), "Europe/Paris", (), paris(2026, 3, 10, 9, 0)),
        # 18:00 is the end (excluded): next morning.
        (paris(2026, 3, 10, 18, 0), "Europe/Paris", (), paris(2026, 3, 11, 9, 0)),
        # Friday evening: Monday.
        (paris(2026, 3, 13, 19, 0), "Europe/Paris", (), paris(2026, 3, 16, 9, 0)),
        # Saturday noon: Monday.
        (paris(2026, 3, 14, 12, 0), "Europe/Paris", (), paris(2026, 3, 16, 9, 0)),
        # Away Monday and Tuesday: Wednesday.
        (
            paris(2026, 3, 14, 12, 0),
            "Europe/Paris",
            {date(2026, 3, 16), date(2026, 3, 17)},
            paris(2026, 3, 18, 9, 0),
        ),
        # Away today while it is working time: next working day.
        (paris(2026, 3, 10, 10, 0), "Europe/Paris", {date(2026, 3, 10)}, paris(2026, 3, 11, 9)),
        # Sunday 29 March 2026 Paris springs forward: Monday 09:00 CEST is 07:00 UTC.
        (paris(2026, 3, 28, 12, 0), "Europe/Paris", (), datetime(2026, 3, 30, 7, tzinfo=UTC)),
        # No timezone: UTC.
        (datetime(2026, 3, 10, 20, 0, tzinfo=UTC), None, (), datetime(2026, 3, 11, 9, tzinfo=UTC)),
    ],
)
def test_next_at_work(
    now: datetime, timezone: str | None, away: set[date], expected: datetime | None
) -> None:
    found = next_at_work(now, timezone, WINDOW, away)
    assert found == expected
    if found is not None:
        assert found.utcoffset() == found.astimezone(ZoneInfo(timezone or "UTC")).utcoffset()
        assert found.astimezone(ZoneInfo(timezone or "UTC")).hour == 9


def test_next_at_work_answers_in_the_persons_timezone() -> None:
    found = next_at_work(datetime(2026, 3, 10, 3, tzinfo=UTC), "Asia/Tokyo", WINDOW)
    assert found is None  # 12:00 in Tokyo
    found = next_at_work(datetime(2026, 3, 10, 10, tzinfo=UTC), "Asia/Tokyo", WINDOW)
    assert found is not None and str(found.tzinfo) == "Asia/Tokyo"
    assert (found.day, found.hour) == (11, 9)


def test_next_at_work_far_away() -> None:
    away = {date(2026, 1, 1) + timedelta(days=n) for n in range(800)}
    found = next_at_work(datetime(2026, 1, 1, tzinfo=UTC), None, WINDOW, away)
    assert found is not None and found.weekday() < 5 and found.hour == 9


@pytest.mark.parametrize(
    ("start", "end", "timezone", "away", "hours"),
    [
        # Within one day.
        (paris(2026, 3, 10, 10), paris(2026, 3, 10, 12), "Europe/Paris", (), 2),
        # Overnight: 17:00 to 10:00 next day = 1 + 1.
        (paris(2026, 3, 10, 17), paris(2026, 3, 11, 10), "Europe/Paris", (), 2),
        # A whole week: five days of nine hours.
        (paris(2026, 3, 9, 0), paris(2026, 3, 16, 0), "Europe/Paris", (), 45),
        # A weekend counts nothing.
        (paris(2026, 3, 13, 18), paris(2026, 3, 16, 9), "Europe/Paris", (), 0),
        # Friday 16:00 to Monday 11:00: 2 + 2.
        (paris(2026, 3, 13, 16), paris(2026, 3, 16, 11), "Europe/Paris", (), 4),
        # Monday away.
        (
            paris(2026, 3, 13, 16),
            paris(2026, 3, 16, 11),
            "Europe/Paris",
            {date(2026, 3, 16)},
            2,
        ),
        # Across the spring-forward weekend (29 March 2026): still 9 h a day.
        (paris(2026, 3, 27, 9), paris(2026, 3, 31, 9), "Europe/Paris", (), 18),
        # Across the autumn change (25 October 2026).
        (paris(2026, 10, 23, 12), paris(2026, 10, 26, 12), "Europe/Paris", (), 9),
        # Reversed or empty: nothing.
        (paris(2026, 3, 10, 12), paris(2026, 3, 10, 10), "Europe/Paris", (), 0),
        # New York, given in UTC instants; the US changes on 8 March 2026.
        (
            datetime(2026, 3, 6, 14, tzinfo=UTC),  # Friday 09:00 EST
            datetime(2026, 3, 9, 13, tzinfo=UTC),  # Monday 09:00 EDT
            "America/New_York",
            (),
            9,
        ),
    ],
)
def test_working_seconds(
    start: datetime, end: datetime, timezone: str, away: set[date], hours: float
) -> None:
    assert working_seconds(start, end, timezone, WINDOW, away) == hours * H


def test_working_seconds_window_until_midnight() -> None:
    start, end = paris(2026, 3, 10, 0), paris(2026, 3, 11, 0)
    assert working_seconds(start, end, "Europe/Paris", (20, 24)) == 4 * H


def test_working_seconds_needs_aware_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        working_seconds(datetime(2026, 3, 10), paris(2026, 3, 11), None, WINDOW)


def test_working_window_from_the_settings() -> None:
    assert working_window(settings_for("sqlite:///unused.db")) == (9, 18)
    hours = {"working_hours": {"start": 8, "end": 17}}
    custom = settings_for("sqlite:///unused.db", roulette=hours)
    assert working_window(custom) == (8, 17)
    assert api.working_window(custom) == (8, 17)
