"""What other feature areas may ask the metrics area: reviewers' totals over a period,
weekly review times per team, the periods, and the engagement formula.

Everything reads ``review_metrics`` (the daily aggregates, see
:mod:`plugins.metrics.service`) and ``review_metrics_monthly`` (each reviewer's monthly
sums of them) in the caller's session; the figures are as fresh as the last aggregation
of each day (the ``aggregate_today`` job refreshes today every 15 minutes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    ColumnExpressionArgument,
    Date,
    DateTime,
    Select,
    and_,
    cast,
    func,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from bot.models import Team, User
from plugins.metrics.models import ReviewMetric, ReviewMetricMonth

PERIODS = ("day", "week", "month", "all")
EPOCH = date(1970, 1, 1)

# The engagement formula (docs/metrics.md; the reviewer_engagement_score metric), per
# assignment.
POINTS_PER_COMMENT = 10.0
CHARS_PER_POINT = 100.0
FAST_RESPONSE = timedelta(hours=1)
FAST_RESPONSE_POINTS = 20.0
PROMPT_RESPONSE = timedelta(hours=4)
PROMPT_RESPONSE_POINTS = 10.0
LONG_COMMENTS_CHARS = 200
LONG_COMMENTS_POINTS = 10.0


def engagement_score(comments: int, chars: int, first_response_after: timedelta | None) -> float:
    """One assignment's engagement: ``comments * 10 + chars / 100``, plus 20 when the
    first response came within 1 h of the assignment (else 10 within 4 h; nothing
    without a response), plus 10 when the comments hold more than 200 characters.

    The aggregation computes the same formula in SQL (:mod:`plugins.metrics.service`).
    """
    score = comments * POINTS_PER_COMMENT + chars / CHARS_PER_POINT
    if first_response_after is not None:
        if first_response_after <= FAST_RESPONSE:
            score += FAST_RESPONSE_POINTS
        elif first_response_after <= PROMPT_RESPONSE:
            score += PROMPT_RESPONSE_POINTS
    if chars > LONG_COMMENTS_CHARS:
        score += LONG_COMMENTS_POINTS
    return score


def period_range(period: str, today: date) -> tuple[date, date]:
    """The days (both included) of ``period`` up to ``today``: ``day`` (today), ``week``
    (its ISO week's Monday to today), ``month`` (the 1st to today), ``all`` (1970-01-01 to
    today). Raises ``ValueError`` for another period."""
    if period == "day":
        return today, today
    if period == "week":
        return today - timedelta(days=today.weekday()), today
    if period == "month":
        return today.replace(day=1), today
    if period == "all":
        return EPOCH, today
    raise ValueError(f"unknown period {period!r}: expected one of {', '.join(PERIODS)}")


def month_bounds(day: date) -> tuple[date, date]:
    """The first and the last day of ``day``'s calendar month."""
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


def _whole_months(start: date, end: date) -> tuple[date, date] | None:
    """The first days of the first and the last calendar months lying wholly within
    ``start``..``end``; None when there is none."""
    first = start if start.day == 1 else month_bounds(start)[1] + timedelta(days=1)
    last_month, last_day = month_bounds(end)
    last = last_month if end == last_day else month_bounds(last_month - timedelta(days=1))[0]
    return (first, last) if first <= last else None


def _day_spans(
    start: date, end: date, whole: tuple[date, date] | None, rolled: set[date]
) -> list[tuple[date, date]]:
    """The days of ``start``..``end`` to read from the daily rows: the partial months at
    the edges and any whole month without rollups (days aggregated before the rollups
    existed, or rows written by other means), as few ordered ``(first, last)`` spans."""
    if whole is None:
        return [(start, end)]
    spans: list[tuple[date, date]] = []

    def add(first: date, last: date) -> None:
        if spans and spans[-1][1] + timedelta(days=1) == first:
            spans[-1] = (spans[-1][0], last)
        else:
            spans.append((first, last))

    if start < whole[0]:
        add(start, whole[0] - timedelta(days=1))
    month = whole[0]
    while month <= whole[1]:
        last = month_bounds(month)[1]
        if month not in rolled:
            add(month, last)
        month = last + timedelta(days=1)
    if month <= end:
        add(month, end)
    return spans


def _exact(total: object) -> float:
    """A float sum rounded to 6 decimals: the figures are multiples of 1e-6 (seconds to
    the microsecond, engagement in hundredths), so the rounded sum is the exact figure
    whatever the order of addition (daily rows, monthly rollups, either engine)."""
    return round(float(total), 6)  # type: ignore[arg-type]


def _ratio(total: float, count: int, scale: float = 1.0) -> float | None:
    return total / count / scale if count else None


@dataclass(frozen=True)
class ReviewerTotals:
    """One reviewer's sums over a range of days (their daily ``user`` rows).

    ``username`` is the GitLab username, ``mattermost`` the Mattermost one, ``team`` the
    reviewer's current team's name. Times are in seconds (sums) with their counts;
    ``engagement`` is the sum of the assignments' engagement scores.
    """

    user_id: int
    username: str
    mattermost: str | None
    team: str | None
    reviews_assigned: int
    reviews_completed: int
    reviews_other_teams: int
    comments: int
    comment_chars: int
    ttfr_seconds_sum: float
    ttfr_count: int
    approval_seconds_sum: float
    approval_count: int
    engagement: float

    @property
    def avg_ttfr_hours(self) -> float | None:
        """Average time from assignment to first response, in hours (None: no response)."""
        return _ratio(self.ttfr_seconds_sum, self.ttfr_count, 3600.0)

    @property
    def avg_approval_hours(self) -> float | None:
        """Average time from assignment to approval, in hours (None: no approval)."""
        return _ratio(self.approval_seconds_sum, self.approval_count, 3600.0)

    @property
    def avg_comments_per_review(self) -> float | None:
        """Comments per completed review (None: nothing completed)."""
        return _ratio(self.comments, self.reviews_completed)

    @property
    def avg_comment_length(self) -> float | None:
        """Characters per comment (None: no comment)."""
        return _ratio(self.comment_chars, self.comments)


# The figures of ReviewerTotals, in its order (engagement from engagement_score).
_TOTALS = (
    "reviews_assigned",
    "reviews_completed",
    "reviews_other_teams",
    "comments",
    "comment_chars",
    "ttfr_seconds_sum",
    "ttfr_count",
    "approval_seconds_sum",
    "approval_count",
    "engagement_score",
)


async def reviewer_totals(
    session: AsyncSession, start: date, end: date, *, team: str | None = None
) -> list[ReviewerTotals]:
    """Each reviewer's sums of their daily rows for the days ``start``..``end`` (both
    included); ``team`` keeps the reviewers whose team has that name (case-insensitive).
    Only users with at least one row in the range appear, ordered by GitLab username.

    The calendar months lying wholly in the range are read from their monthly rollups
    (``review_metrics_monthly``, one row per reviewer and month), the days of the
    partial months at the edges from the daily rows: one ``SUM ... GROUP BY`` over a
    ``UNION ALL`` of the two, after a small query for the months that have rollups (a
    whole month without any is read day by day, so rows the aggregation did not write
    still count). The figures equal the sums of the daily rows; float sums may differ
    from a day-by-day sum in their last bits only (another order of addition)."""
    m, r = ReviewMetric, ReviewMetricMonth
    whole = _whole_months(start, end)
    rolled: set[date] = set()
    if whole is not None:
        found = await session.scalars(
            select(r.month).where(r.month >= whole[0], r.month <= whole[1]).distinct()
        )
        rolled = {_as_date(month) for month in found}
    spans = _day_spans(start, end, whole, rolled)
    parts: list[Select[Any]] = []
    if spans:
        parts.append(
            select(m.subject_id, *[getattr(m, name) for name in _TOTALS]).where(
                m.scope == "user", or_(*[and_(m.day >= a, m.day <= b) for a, b in spans])
            )
        )
    if rolled:
        parts.append(
            select(r.subject_id, *[getattr(r, name) for name in _TOTALS]).where(
                r.month.in_(sorted(rolled))
            )
        )
    both = union_all(*parts).subquery("parts")
    query = (
        select(
            User.id,
            User.gitlab_username,
            User.mattermost_username,
            Team.name,
            *[func.sum(both.c[name]) for name in _TOTALS],
        )
        .select_from(both)
        .join(User, User.id == both.c.subject_id)
        .outerjoin(Team, Team.id == User.team_id)
        .group_by(User.id, User.gitlab_username, User.mattermost_username, Team.name)
        .order_by(User.gitlab_username)
    )
    if team is not None:
        query = query.where(func.lower(Team.name) == team.lower())
    rows = await session.execute(query)
    return [
        ReviewerTotals(
            user_id=int(r[0]),
            username=str(r[1]),
            mattermost=r[2],
            team=r[3],
            reviews_assigned=int(r[4]),
            reviews_completed=int(r[5]),
            reviews_other_teams=int(r[6]),
            comments=int(r[7]),
            comment_chars=int(r[8]),
            ttfr_seconds_sum=_exact(r[9]),
            ttfr_count=int(r[10]),
            approval_seconds_sum=_exact(r[11]),
            approval_count=int(r[12]),
            engagement=_exact(r[13]),
        )
        for r in rows.all()
    ]


@dataclass(frozen=True)
class WeeklyTeamTimes:
    """One ISO week's review times for one team (``team`` None: the whole organisation,
    every MR whatever its team). ``week`` is the Monday; ``reviews`` the assignments made
    that week; averages in hours over the assignments that had a first response
    (resp. an approval), None when none had."""

    week: date
    team: str | None
    reviews: int
    avg_ttfr_hours: float | None
    avg_approval_hours: float | None


def _monday(day: ColumnExpressionArgument[date], dialect: str) -> ColumnElement[date]:
    """The Monday of ``day``'s ISO week, as a SQL expression of the dialect."""
    if dialect == "postgresql":
        return cast(func.date_trunc("week", cast(day, DateTime)), Date)
    # SQLite: to the next Sunday (the day itself if a Sunday), then back six days.
    return type_coerce(func.date(day, "weekday 0", "-6 days"), Date)


async def weekly_team_times(session: AsyncSession, start: date, end: date) -> list[WeeklyTeamTimes]:
    """Per ISO week and team, the assignments and average review times of the days
    ``start``..``end`` (both included; the first and last weeks may be partial): each
    team's rows (the MR's team), then a ``team=None`` row per week for the whole
    organisation (every project). Ordered by week, then team name (None last)."""
    m = ReviewMetric
    week = _monday(m.day, session.get_bind().dialect.name).label("week")
    sums = (
        func.sum(m.reviews_assigned),
        func.sum(m.ttfr_seconds_sum),
        func.sum(m.ttfr_count),
        func.sum(m.approval_seconds_sum),
        func.sum(m.approval_count),
    )
    in_range = and_(m.day >= start, m.day <= end)
    teams = (
        select(week, Team.name, *sums)
        .select_from(m)
        .join(Team, Team.id == m.subject_id)
        .where(m.scope == "team", in_range)
        .group_by(week, Team.name)
    )
    everyone = (
        select(week, type_coerce(None, Team.name.type), *sums)
        .where(m.scope == "project", in_range)
        .group_by(week)
    )
    rows = (await session.execute(teams.union_all(everyone))).all()
    found = [
        WeeklyTeamTimes(
            week=_as_date(r[0]),
            team=r[1],
            reviews=int(r[2]),
            avg_ttfr_hours=_ratio(float(r[3]), int(r[4]), 3600.0),
            avg_approval_hours=_ratio(float(r[5]), int(r[6]), 3600.0),
        )
        for r in rows
    ]
    return sorted(found, key=lambda w: (w.week, w.team is None, w.team or ""))


def _as_date(value: object) -> date:
    """A week from either engine (PostgreSQL's ``date_trunc`` gives a timestamp)."""
    if isinstance(value, date):
        return value if type(value) is date else date(value.year, value.month, value.day)
    return date.fromisoformat(str(value)[:10])
