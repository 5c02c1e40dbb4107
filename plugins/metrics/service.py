"""The daily aggregation: the review lifecycle of one day into ``review_metrics``.

A day is a calendar day in ``schedule.timezone``: its bounds are computed here, in
Python, and passed to the SQL as parameters, so that both engines run the same
statements. For one day, each scope is written by ONE statement,
``INSERT INTO review_metrics ... SELECT ... GROUP BY ... ON CONFLICT (day, scope,
subject_id) DO UPDATE``, after a ``DELETE`` of that day's rows of the scope that the data
no longer produces: a rerun after the data changed is exact, and a rerun on the same data
writes nothing (a row is updated only when one of its figures differs).

Attribution (also in ``docs/metrics.md``):

- a review's **trigger** counts on the day of ``mr_reviews.triggered_at``, for the MR's
  team (``team`` scope, when it has one) and its GitLab project (``project`` scope);
  ``user`` rows count no triggers;
- an **assignment** counts on the day of its ``assigned_at``, for the reviewer (``user``),
  the MR's team (``team``, when it has one) and the MR's project (``project``):
  ``reviews_assigned`` +1; ``reviews_completed`` +1 when its status is ``completed``;
  ``reviews_other_teams`` +1 when completed and the MR's team and the reviewer's (current)
  team are both known and differ; ``comments`` and ``comment_chars`` its comment count and
  length; ``ttfr_seconds_sum``/``ttfr_count`` its time to first review
  (``first_response_at - assigned_at``) when it has one; ``approval_seconds_sum``/
  ``approval_count`` its time to approval (``approved_at - assigned_at``) when it has one;
  ``engagement_score`` its :func:`plugins.metrics.api.engagement_score`, computed in SQL.

Time differences are exact to the microsecond on both engines: PostgreSQL's
``EXTRACT(EPOCH FROM a - b)``; on SQLite (where ``UTCDateTime`` stores naive UTC text,
``YYYY-MM-DD HH:MM:SS.ffffff``) the whole seconds through ``unixepoch`` and the
microseconds from the text, because SQLite's date functions round to milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnExpressionArgument,
    Date,
    Float,
    Integer,
    Numeric,
    Select,
    String,
    and_,
    case,
    cast,
    delete,
    extract,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from bot.db import UTCDateTime, utcnow
from bot.models import MrReview, ReviewerAssignment, User
from plugins.metrics.api import (
    CHARS_PER_POINT,
    FAST_RESPONSE,
    FAST_RESPONSE_POINTS,
    LONG_COMMENTS_CHARS,
    LONG_COMMENTS_POINTS,
    POINTS_PER_COMMENT,
    PROMPT_RESPONSE,
    PROMPT_RESPONSE_POINTS,
    month_bounds,
)
from plugins.metrics.models import SCOPES, ReviewMetric, ReviewMetricMonth

# The figures of a row, in the order the statements select them.
FIGURES = (
    "reviews_triggered",
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
FLOAT_FIGURES = frozenset({"ttfr_seconds_sum", "approval_seconds_sum", "engagement_score"})
# The figures of a monthly rollup (a user's rows count no triggers).
USER_FIGURES = FIGURES[1:]
MAX_BACKFILL_DAYS = 3660
# Float figures are sums of multiples of 1e-6 (microseconds; engagement in hundredths):
# rounded to 6 decimals, a sum is the same whatever the order of addition (the float
# error of a sum this size is far below 5e-7), so reruns and rollups find the same values.
FLOAT_DECIMALS = 6


def rounded_sum(column: ColumnExpressionArgument[Any], dialect: str) -> ColumnElement[Any]:
    """``SUM(column)``, rounded to ``FLOAT_DECIMALS`` for a float figure (PostgreSQL
    rounds a ``numeric``; SQLite's ``round`` takes the float)."""
    total: ColumnElement[Any] = func.sum(column)
    if dialect == "postgresql":
        return cast(func.round(cast(total, Numeric), FLOAT_DECIMALS), Float)
    return cast(func.round(total, FLOAT_DECIMALS), Float)


def _sum(name: str, column: ColumnExpressionArgument[Any], dialect: str) -> ColumnElement[Any]:
    """The SQL sum of figure ``name`` (rounded when a float)."""
    if name in FLOAT_FIGURES:
        return rounded_sum(column, dialect).label(name)
    return func.sum(column).label(name)


def day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """The UTC instants ``[start, end)`` of ``day`` in ``timezone`` (23, 24 or 25 hours)."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC)
    return start, end


def local_today(now: datetime, timezone: str) -> date:
    """The date at ``now`` (aware) in ``timezone``."""
    return now.astimezone(ZoneInfo(timezone)).date()


def seconds_between(
    later: ColumnExpressionArgument[Any], earlier: ColumnExpressionArgument[Any], dialect: str
) -> ColumnElement[float]:
    """``later - earlier`` in seconds (a float, exact to the microsecond) as SQL."""
    if dialect == "postgresql":
        difference = type_coerce(later, UTCDateTime) - type_coerce(earlier, UTCDateTime)
        return cast(extract("epoch", difference), Float)
    whole = func.unixepoch(func.substr(later, 1, 19)) - func.unixepoch(func.substr(earlier, 1, 19))
    micro = cast(func.substr(later, 21, 6), Integer) - cast(func.substr(earlier, 21, 6), Integer)
    return cast(whole + micro / literal_column("1000000.0"), Float)


def _facts(scope: str, start: datetime, end: datetime, dialect: str) -> Select[Any]:
    """One row per fact of the day for ``scope``: ``subject`` and the figures it adds
    (assignments, and for team and project the triggers)."""
    a, r = ReviewerAssignment, MrReview
    reviewer = aliased(User)
    ttfr = seconds_between(a.first_response_at, a.assigned_at, dialect)
    approval = seconds_between(a.approved_at, a.assigned_at, dialect)
    completed = a.status == "completed"
    other_team = and_(
        completed,
        r.team_id.is_not(None),
        reviewer.team_id.is_not(None),
        r.team_id != reviewer.team_id,
    )
    responded = a.first_response_at.is_not(None)
    engagement = cast(
        a.comment_count * POINTS_PER_COMMENT
        + a.comment_chars / literal_column(repr(CHARS_PER_POINT))
        + case(
            (and_(responded, ttfr <= FAST_RESPONSE.total_seconds()), FAST_RESPONSE_POINTS),
            (and_(responded, ttfr <= PROMPT_RESPONSE.total_seconds()), PROMPT_RESPONSE_POINTS),
            else_=0.0,
        )
        + case((a.comment_chars > LONG_COMMENTS_CHARS, LONG_COMMENTS_POINTS), else_=0.0),
        Float,
    )
    subject: Any = {"user": a.user_id, "team": r.team_id, "project": r.project_id}[scope]
    zero: ColumnElement[int] = literal_column("0")
    zero_f = cast(literal_column("0.0"), Float)
    assignments = (
        select(
            subject.label("subject"),
            zero.label("reviews_triggered"),
            literal_column("1").label("reviews_assigned"),
            case((completed, 1), else_=0).label("reviews_completed"),
            case((other_team, 1), else_=0).label("reviews_other_teams"),
            a.comment_count.label("comments"),
            a.comment_chars.label("comment_chars"),
            case((responded, ttfr), else_=zero_f).label("ttfr_seconds_sum"),
            case((responded, 1), else_=0).label("ttfr_count"),
            case((a.approved_at.is_not(None), approval), else_=zero_f).label(
                "approval_seconds_sum"
            ),
            case((a.approved_at.is_not(None), 1), else_=0).label("approval_count"),
            engagement.label("engagement_score"),
        )
        .select_from(a)
        .join(r, r.id == a.review_id)
        .join(reviewer, reviewer.id == a.user_id)
        .where(a.assigned_at >= start, a.assigned_at < end, subject.is_not(None))
    )
    if scope == "user":
        return assignments
    triggers = select(
        subject.label("subject"),
        literal_column("1"),
        *[zero] * 5,
        zero_f,
        zero,
        zero_f,
        zero,
        zero_f,
    ).where(r.triggered_at >= start, r.triggered_at < end, subject.is_not(None))
    return assignments.union_all(triggers)  # type: ignore[return-value]


@dataclass(frozen=True)
class DayResult:
    """What aggregating one day did: rows inserted or changed, rows deleted, and the
    engagement score of every reviewer with a row that day (for the summary metric);
    ``rollups_written``/``rollups_deleted``: the monthly rollup rows (of the day's month)
    inserted or changed, and deleted."""

    day: date
    written: int
    deleted: int
    engagement_scores: tuple[float, ...]
    rollups_written: int = 0
    rollups_deleted: int = 0


async def aggregate_day(
    session: AsyncSession, day: date, timezone: str, *, now: datetime | None = None
) -> DayResult:
    """Aggregate ``day`` (in ``timezone``) into ``review_metrics``, in the caller's
    transaction: per scope a DELETE of the rows the data no longer produces and one
    ``INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE`` (only rows whose figures
    differ are updated, their ``updated_at`` set to ``now``); then the monthly rollups of
    the day's month (:func:`rollup_month`)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    start, end = day_bounds(day, timezone)
    stamp = now or utcnow()
    m = ReviewMetric.__table__
    written = deleted = 0
    for scope in SCOPES:
        facts = _facts(scope, start, end, dialect).subquery("facts")
        gone = await session.execute(
            delete(ReviewMetric)
            .where(
                ReviewMetric.day == day,
                ReviewMetric.scope == scope,
                ReviewMetric.subject_id.not_in(select(facts.c.subject)),
            )
            .returning(ReviewMetric.id)
        )
        deleted += _count(gone)
        rows = select(
            literal(day, Date).label("day"),
            literal(scope, String).label("scope"),
            facts.c.subject,
            *[_sum(name, facts.c[name], dialect) for name in FIGURES],
            literal(stamp, UTCDateTime).label("updated_at"),
        ).group_by(facts.c.subject)
        statement = insert(ReviewMetric).from_select(
            ["day", "scope", "subject_id", *FIGURES, "updated_at"], rows
        )
        excluded = statement.excluded
        upsert = statement.on_conflict_do_update(
            index_elements=["day", "scope", "subject_id"],
            set_={name: excluded[name] for name in (*FIGURES, "updated_at")},
            where=or_(*[m.c[name].is_distinct_from(excluded[name]) for name in FIGURES]),
        ).returning(m.c.id)
        written += _count(await session.execute(upsert))
    rolled = await rollup_month(session, day, now=stamp)
    scores = await session.scalars(
        select(ReviewMetric.engagement_score).where(
            ReviewMetric.day == day, ReviewMetric.scope == "user"
        )
    )
    return DayResult(day, written, deleted, tuple(float(s) for s in scores), *rolled)


async def rollup_month(
    session: AsyncSession, day: date, *, now: datetime | None = None
) -> tuple[int, int]:
    """Rebuild the ``review_metrics_monthly`` rows of ``day``'s month from that month's
    daily ``user`` rows, in the caller's transaction: a DELETE of the reviewers left
    without any daily row in the month, then ONE ``INSERT ... SELECT SUM(...) ... GROUP
    BY subject_id ON CONFLICT (month, subject_id) DO UPDATE`` (a row is updated only when
    one of its figures differs). Every reviewer of the month is summed again (at most
    one row per reviewer and day: a few thousand rows, on the ``(scope, day,
    subject_id)`` index), so the month is right whatever wrote its days. Returns (rows
    inserted or changed, rows deleted)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    first, last = month_bounds(day)
    m, r = ReviewMetric, ReviewMetricMonth.__table__
    in_month = and_(m.scope == "user", m.day >= first, m.day <= last)
    gone = await session.execute(
        delete(ReviewMetricMonth)
        .where(
            ReviewMetricMonth.month == first,
            ReviewMetricMonth.subject_id.not_in(select(m.subject_id).where(in_month)),
        )
        .returning(ReviewMetricMonth.id)
    )
    rows = (
        select(
            literal(first, Date).label("month"),
            m.subject_id,
            *[_sum(name, getattr(m, name), dialect) for name in USER_FIGURES],
            literal(now or utcnow(), UTCDateTime).label("updated_at"),
        )
        .where(in_month)
        .group_by(m.subject_id)
    )
    statement = insert(ReviewMetricMonth).from_select(
        ["month", "subject_id", *USER_FIGURES, "updated_at"], rows
    )
    excluded = statement.excluded
    upsert = statement.on_conflict_do_update(
        index_elements=["month", "subject_id"],
        set_={name: excluded[name] for name in (*USER_FIGURES, "updated_at")},
        where=or_(*[r.c[name].is_distinct_from(excluded[name]) for name in USER_FIGURES]),
    ).returning(r.c.id)
    return _count(await session.execute(upsert)), _count(gone)


def _count(result: Result[Any]) -> int:
    """The rows a statement's ``RETURNING`` gave back (``rowcount`` is -1 for an
    ``INSERT ... SELECT ... ON CONFLICT`` through psycopg)."""
    return len(result.all())


@dataclass(frozen=True)
class RangeResult:
    """A backfill: the days aggregated (both included) and what it did."""

    start: date
    end: date
    days: tuple[DayResult, ...]

    @property
    def written(self) -> int:
        return sum(d.written for d in self.days)

    @property
    def deleted(self) -> int:
        return sum(d.deleted for d in self.days)

    @property
    def rollups_written(self) -> int:
        return sum(d.rollups_written for d in self.days)

    @property
    def rollups_deleted(self) -> int:
        return sum(d.rollups_deleted for d in self.days)


def days_between(start: date, end: date) -> list[date]:
    """``start``..``end``, both included; ``ValueError`` when reversed or longer than
    ``MAX_BACKFILL_DAYS``."""
    if start > end:
        raise ValueError(f"{start} is after {end}")
    count = (end - start).days + 1
    if count > MAX_BACKFILL_DAYS:
        raise ValueError(f"{count} days: at most {MAX_BACKFILL_DAYS} at once")
    return [start + timedelta(days=i) for i in range(count)]


async def aggregate_range(
    sessions: async_sessionmaker[AsyncSession],
    start: date,
    end: date,
    timezone: str,
    *,
    now: Callable[[], datetime] = utcnow,
) -> RangeResult:
    """Aggregate every day of ``start``..``end`` (both included), one transaction per
    day; ``ValueError`` as :func:`days_between`."""
    done: list[DayResult] = []
    for day in days_between(start, end):
        async with sessions.begin() as session:
            done.append(await aggregate_day(session, day, timezone, now=now()))
    return RangeResult(start, end, tuple(done))
