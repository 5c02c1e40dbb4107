"""``plugins.metrics.api``: the engagement formula at its thresholds, the periods, and
the reviewers' totals and weekly team times read from the aggregates (both engines)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from plugins.metrics.api import (
    engagement_score,
    period_range,
    reviewer_totals,
    weekly_team_times,
)
from plugins.metrics.models import ReviewMetric
from plugins.metrics.service import aggregate_range
from tests.metrics.history import Sessions, seed

H = timedelta(hours=1)
US = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("comments", "chars", "after", "expected"),
    [
        (0, 0, None, 0.0),
        (1, 0, None, 10.0),
        (0, 100, None, 1.0),
        (3, 250, None, 30 + 2.5 + 10),
        (0, 200, None, 2.0),  # exactly 200 characters: no bonus
        (0, 201, None, 2.01 + 10),  # more than 200: +10
        (0, 0, timedelta(0), 20.0),
        (0, 0, H, 20.0),  # exactly 1 h: +20
        (0, 0, H + US, 10.0),  # just over 1 h: +10
        (0, 0, 4 * H, 10.0),  # exactly 4 h: +10
        (0, 0, 4 * H + US, 0.0),  # just over 4 h: nothing
        (0, 0, 30 * H, 0.0),
        (2, 201, H - US, 20 + 2.01 + 20 + 10),
    ],
)
def test_engagement_formula(
    comments: int, chars: int, after: timedelta | None, expected: float
) -> None:
    assert engagement_score(comments, chars, after) == pytest.approx(expected)


def test_period_ranges() -> None:
    today = date(2026, 11, 12)  # a Thursday
    assert period_range("day", today) == (today, today)
    assert period_range("week", today) == (date(2026, 11, 9), today)
    assert period_range("week", date(2026, 11, 9)) == (date(2026, 11, 9), date(2026, 11, 9))
    assert period_range("week", date(2026, 11, 15)) == (date(2026, 11, 9), date(2026, 11, 15))
    assert period_range("month", today) == (date(2026, 11, 1), today)
    assert period_range("all", today) == (date(1970, 1, 1), today)
    # an ISO week across the new year
    assert period_range("week", date(2027, 1, 1)) == (date(2026, 12, 28), date(2027, 1, 1))
    with pytest.raises(ValueError, match="unknown period 'year'"):
        period_range("year", today)


async def test_reviewer_totals_sum_the_days_and_filter_by_team(sessions: Sessions) -> None:
    await seed(sessions)
    await aggregate_range(sessions, date(2026, 11, 9), date(2026, 11, 11), "UTC")
    async with sessions() as session:
        everyone = await reviewer_totals(session, date(2026, 11, 9), date(2026, 11, 11))
        backend = await reviewer_totals(
            session, date(2026, 11, 9), date(2026, 11, 11), team="BackEnd"
        )
        tenth = await reviewer_totals(session, date(2026, 11, 10), date(2026, 11, 10))
        nobody = await reviewer_totals(session, date(2026, 12, 1), date(2026, 12, 31))
        unknown = await reviewer_totals(session, date(2026, 11, 1), date(2026, 11, 30), team="x")
    assert [t.username for t in everyone] == ["alice", "bob", "carol", "dave"]
    assert [t.username for t in backend] == ["alice", "bob"]
    assert (nobody, unknown) == ([], [])
    bob = backend[1]
    assert (bob.mattermost, bob.team) == ("mm-bob", "backend")
    assert (bob.reviews_assigned, bob.reviews_completed, bob.reviews_other_teams) == (2, 2, 0)
    assert (bob.comments, bob.comment_chars) == (4, 350)
    assert bob.ttfr_seconds_sum == pytest.approx(1800.5 + 14400)
    assert bob.ttfr_count == 2
    assert bob.avg_ttfr_hours == pytest.approx((1800.5 + 14400) / 2 / 3600)
    assert bob.avg_approval_hours == pytest.approx((7200 + 16200) / 2 / 3600)
    assert bob.avg_comments_per_review == pytest.approx(2.0)
    assert bob.avg_comment_length == pytest.approx(87.5)
    assert bob.engagement == pytest.approx(62.5 + 21)
    alice = backend[0]
    assert (alice.reviews_assigned, alice.reviews_completed) == (2, 1)
    assert alice.avg_approval_hours is None
    assert alice.avg_comment_length is None
    assert alice.avg_comments_per_review == 0.0
    dave = everyone[3]
    assert (dave.team, dave.engagement) == (None, pytest.approx(52.01))
    assert [t.username for t in tenth] == ["alice", "bob", "carol", "dave"]
    assert tenth[1].reviews_assigned == 1


async def test_weekly_team_times(sessions: Sessions) -> None:
    await seed(sessions)
    await aggregate_range(sessions, date(2026, 11, 9), date(2026, 11, 11), "UTC")
    async with sessions() as session:
        weeks = await weekly_team_times(session, date(2026, 11, 1), date(2026, 11, 30))
        none = await weekly_team_times(session, date(2026, 12, 1), date(2026, 12, 31))
    assert none == []
    assert [(w.week, w.team, w.reviews) for w in weeks] == [
        (date(2026, 11, 9), "backend", 3),
        (date(2026, 11, 9), "frontend", 2),
        (date(2026, 11, 9), None, 6),
    ]
    backend, frontend, everyone = weeks
    assert backend.avg_ttfr_hours == pytest.approx((3600 + 12600.5) / 3 / 3600)
    assert backend.avg_approval_hours == pytest.approx(2.0)
    assert frontend.avg_ttfr_hours == pytest.approx(25199.749999 / 2 / 3600)
    assert everyone.avg_ttfr_hours == pytest.approx(
        (3600 + 12600.5 + 25199.749999 + 14400) / 6 / 3600
    )
    assert everyone.avg_approval_hours == pytest.approx((7200 + 3600 + 16200) / 3 / 3600)


async def test_weeks_start_on_monday(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        for day in (date(2026, 11, 15), date(2026, 11, 16), date(2026, 11, 22)):
            session.add(
                ReviewMetric(
                    day=day,
                    scope="project",
                    subject_id=2**40,
                    reviews_assigned=1,
                    ttfr_seconds_sum=3600.0,
                    ttfr_count=1,
                )
            )
    async with sessions() as session:
        weeks = await weekly_team_times(session, date(2026, 11, 1), date(2026, 11, 30))
    assert [(w.week, w.team, w.reviews) for w in weeks] == [
        (date(2026, 11, 9), None, 1),  # Sunday the 15th
        (date(2026, 11, 16), None, 2),  # Monday the 16th to Sunday the 22nd
    ]
    assert weeks[0].avg_ttfr_hours == 1.0
    assert weeks[0].avg_approval_hours is None
