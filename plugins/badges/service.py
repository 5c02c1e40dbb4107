"""Badges: the definitions (defaults, configuration, API), their daily evaluation, and
the questions the command and the API ask. No transport.

A badge holds when a reviewer's ``metric`` over the badge's period passes ``operator
value`` and they completed at least ``min_reviews`` reviews in it. The figures come from
the metrics area (``plugins.metrics.api.reviewer_totals``, the daily aggregates).

Evaluation (``evaluate``) runs for one ``day``, the last day with complete data (the job
passes yesterday): for each active badge it takes the period containing that day, up to
that day (``period_range``), records every reviewer's progress (``badge_progress``, one
multi-row upsert), then awards from the progress rows that are met (one ``INSERT ...
SELECT ... ON CONFLICT DO NOTHING``): at most once per badge, user and period, however
often it runs. A ``top`` badge (the N best of the period) is awarded only once its period
is over (the day evaluated is the period's last day; ``all`` never ends, so at once):
a rank on part of a month is not final; its progress still shows who leads.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, and_, func, literal, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import utcnow
from bot.i18n import Message
from bot.models import Team, User
from plugins.badges.config import BadgeCriterion, BadgesConfig
from plugins.badges.models import Badge, BadgeProgress, UserBadge
from plugins.metrics.api import period_range, reviewer_totals

DEFAULTS: tuple[BadgeCriterion, ...] = (
    BadgeCriterion(
        name="Speed Demon",
        slug="speed-demon",
        metric="avg_ttfr_hours",
        operator="<",
        value=2,
        period="month",
        min_reviews=5,
        description="First review within 2 hours on average over a month",
        emoji=":zap:",
    ),
    BadgeCriterion(
        name="Thorough Reviewer",
        slug="thorough-reviewer",
        metric="avg_comments_per_review",
        operator=">=",
        value=5,
        period="month",
        min_reviews=5,
        description="At least 5 comments per review on average over a month",
        emoji=":mag:",
    ),
    BadgeCriterion(
        name="Team Player",
        slug="team-player",
        metric="reviews_completed",
        operator="top",
        value=1,
        period="month",
        min_reviews=1,
        description="The most reviews completed in a month",
        emoji=":handshake:",
    ),
    BadgeCriterion(
        name="Mentor",
        slug="mentor",
        metric="reviews_other_teams",
        operator="top",
        value=1,
        period="month",
        min_reviews=1,
        description="The most reviews for other teams in a month",
        emoji=":mortar_board:",
    ),
)

# The defaults' texts in the reader's language (shown while unchanged).
DEFAULT_TEXTS: dict[str, tuple[Message, Message]] = {
    "speed-demon": (
        Message("Speed Demon"),
        Message("First review within 2 hours on average over a month"),
    ),
    "thorough-reviewer": (
        Message("Thorough Reviewer"),
        Message("At least 5 comments per review on average over a month"),
    ),
    "team-player": (Message("Team Player"), Message("The most reviews completed in a month")),
    "mentor": (Message("Mentor"), Message("The most reviews for other teams in a month")),
}


TotalsSource = Callable[[AsyncSession, date, date], Awaitable[Sequence[Any]]]


async def metrics_totals(session: AsyncSession, start: date, end: date) -> Sequence[Any]:
    """Every reviewer's totals for ``start``..``end`` from the metrics area."""
    return await reviewer_totals(session, start, end)


def period_key(period: str, day: date) -> str:
    """The period of a badge containing ``day``: ``2026-11-30`` (day), ``2026-W48`` (ISO
    week), ``2026-11`` (month) or ``all``. Raises ``ValueError`` for another period."""
    if period == "day":
        return day.isoformat()
    if period == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return day.strftime("%Y-%m")
    if period == "all":
        return "all"
    raise ValueError(f"unknown period {period!r}")


def period_over(period: str, day: date) -> bool:
    """Whether ``day`` is the last day of its ``period`` (``all`` never ends: False)."""
    if period == "day":
        return True
    if period == "week":
        return day.isoweekday() == 7
    if period == "month":
        return (day + timedelta(days=1)).day == 1
    return False


def passes(operator: str, value: float, goal: float) -> bool:
    """``value operator goal`` for the comparison operators (``==`` within 1e-9)."""
    if operator == "<":
        return value < goal
    if operator == "<=":
        return value <= goal
    if operator == ">":
        return value > goal
    if operator == ">=":
        return value >= goal
    if operator == "==":
        return math.isclose(value, goal, rel_tol=1e-9, abs_tol=1e-9)
    raise ValueError(f"not a comparison operator: {operator!r}")


def metric_value(totals: Any, metric: str) -> float | None:
    """``totals``' figure ``metric`` (a field or property of ``ReviewerTotals``)."""
    value = getattr(totals, metric)
    return None if value is None else float(value)


@dataclass(frozen=True)
class Standing:
    """One reviewer's progress on one badge: metric value, completed reviews, met."""

    user_id: int
    value: float | None
    reviews: int
    met: bool


def standings(
    operator: str, goal: float, min_reviews: int, metric: str, rows: Sequence[Any]
) -> list[Standing]:
    """Each reviewer's standing on a criterion, from their totals over the period.

    ``top``: among the reviewers with at least ``min_reviews`` reviews and a value above
    zero, those whose rank (1 + how many have more; ties share a rank) is at most
    ``goal``. Else ``value operator goal`` with at least ``min_reviews`` reviews; a missing
    value (an average of nothing) never passes.
    """
    values = [(r, metric_value(r, metric), int(r.reviews_completed)) for r in rows]
    result: list[Standing] = []
    if operator == "top":
        eligible = sorted(
            (v for _, v, n in values if v is not None and v > 0 and n >= min_reviews),
            reverse=True,
        )
        for row, value, reviews in values:
            met = False
            if value is not None and value > 0 and reviews >= min_reviews:
                rank = 1 + sum(1 for other in eligible if other > value)
                met = rank <= goal
            result.append(Standing(int(row.user_id), value, reviews, met))
        return result
    for row, value, reviews in values:
        met = value is not None and reviews >= min_reviews and passes(operator, value, goal)
        result.append(Standing(int(row.user_id), value, reviews, met))
    return result


@dataclass(frozen=True)
class NewAward:
    """An award made by this evaluation: the badge, who, and the period's key."""

    slug: str
    name: str
    emoji: str
    user_id: int
    username: str
    mattermost: str | None
    team: str | None
    period: str


def _insert(session: AsyncSession, table: Any) -> Any:
    """The dialect's INSERT (for ``ON CONFLICT``): PostgreSQL's or SQLite's."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def evaluate(
    session: AsyncSession,
    day: date,
    *,
    totals: TotalsSource = metrics_totals,
    now: datetime | None = None,
) -> list[NewAward]:
    """Evaluate every active badge on the data up to ``day`` (the job passes yesterday):
    record the progress of each reviewer with figures in the badge's period, and award
    the badge to those who meet it (once per badge, user and period; a ``top`` badge
    only on its period's last day). Returns the awards made now, not those made before.
    """
    moment = now or utcnow()
    badges = (await session.scalars(select(Badge).where(Badge.is_active.is_(True)))).all()
    cache: dict[tuple[date, date], Sequence[Any]] = {}
    made: list[NewAward] = []
    for badge in sorted(badges, key=lambda b: b.id):
        span = period_range(badge.period, day)
        if span not in cache:
            cache[span] = await totals(session, *span)
        key = period_key(badge.period, day)
        found = standings(badge.operator, badge.value, badge.min_reviews, badge.metric, cache[span])
        if found:
            statement = _insert(session, BadgeProgress).values(
                [
                    {
                        "user_id": s.user_id,
                        "badge_id": badge.id,
                        "period": key,
                        "value": s.value,
                        "reviews": s.reviews,
                        "met": s.met,
                        "updated_at": moment,
                    }
                    for s in found
                ]
            )
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["user_id", "badge_id", "period"],
                    set_={
                        "value": statement.excluded.value,
                        "reviews": statement.excluded.reviews,
                        "met": statement.excluded.met,
                        "updated_at": statement.excluded.updated_at,
                    },
                )
            )
        if badge.operator == "top" and badge.period != "all" and not period_over(badge.period, day):
            continue
        made += await _award(session, badge, key, moment)
    return made


async def _award(session: AsyncSession, badge: Badge, key: str, moment: datetime) -> list[NewAward]:
    """Award ``badge`` for ``key`` to every progress row met: one set-based statement."""
    reason = f"{badge.metric} {badge.operator} {badge.value:g}"
    p = BadgeProgress
    source = select(
        p.user_id, p.badge_id, p.period, literal(moment, UserBadge.awarded_at.type), literal(reason)
    ).where(p.badge_id == badge.id, p.period == key, p.met.is_(True))
    statement = (
        _insert(session, UserBadge)
        .from_select(["user_id", "badge_id", "period", "awarded_at", "reason"], source)
        .on_conflict_do_nothing(index_elements=["user_id", "badge_id", "period"])
        .returning(UserBadge.user_id)
    )
    winners = [int(u) for u in (await session.scalars(statement)).all()]
    if not winners:
        return []
    rows = await session.execute(
        select(User.id, User.gitlab_username, User.mattermost_username, Team.name)
        .outerjoin(Team, Team.id == User.team_id)
        .where(User.id.in_(winners))
        .order_by(User.gitlab_username)
    )
    return [
        NewAward(badge.slug, badge.name, badge.emoji, int(i), str(u), m, t, key)
        for i, u, m, t in rows.all()
    ]


# ----------------------------------------------------------------- definitions


def _matching_default(criterion: BadgeCriterion) -> BadgeCriterion | None:
    name = criterion.name.casefold()
    return next((d for d in DEFAULTS if d.key == criterion.key or d.name.casefold() == name), None)


def configured(config: BadgesConfig) -> list[dict[str, Any]]:
    """The configuration's definitions (row values): an entry naming a default badge
    changes it (keeping its slug, and its description and emoji unless given)."""
    rows = []
    for criterion in config.root:
        row = criterion.definition()
        default = _matching_default(criterion)
        if default is not None:
            row["slug"] = default.key
            row["description"] = criterion.description or default.description or ""
            row["emoji"] = criterion.emoji or default.emoji or ""
        rows.append(row)
    return rows


async def seed(session: AsyncSession, config: BadgesConfig, now: datetime | None = None) -> None:
    """Bring the definitions in line with the defaults and the configuration (at start).

    Defaults the configuration does not change are upserted by slug, unless changed
    through the API since (``source`` ``api``); the configuration's entries are upserted
    (the configuration wins at start); a badge that only came from the configuration and
    left it is deactivated (its awards stay).
    """
    moment = now or utcnow()
    changed = configured(config)
    changed_slugs = {row["slug"] for row in changed}
    defaults = [
        {**d.definition(), "source": "default", "is_active": True}
        for d in DEFAULTS
        if d.key not in changed_slugs
    ]
    for rows, guard in (
        (defaults, Badge.source != "api"),
        ([{**r, "source": "config", "is_active": True} for r in changed], true()),
    ):
        if rows:
            await _upsert(session, rows, moment, guard)
    default_slugs = {d.key for d in DEFAULTS}
    await session.execute(
        update(Badge)
        .where(
            Badge.source == "config",
            Badge.slug.not_in(changed_slugs | default_slugs),
        )
        .values(is_active=False, updated_at=moment)
    )


async def _upsert(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    moment: datetime,
    guard: ColumnElement[bool],
) -> None:
    statement = _insert(session, Badge).values(
        [{**r, "created_at": moment, "updated_at": moment} for r in rows]
    )
    columns = [c for c in rows[0] if c != "slug"] + ["updated_at"]
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["slug"],
            set_={c: getattr(statement.excluded, c) for c in columns},
            where=guard,
        )
    )


def criterion_from(definition: Mapping[str, Any]) -> BadgeCriterion:
    """A definition given to the API, validated; ``ValueError`` with one line naming the
    field at fault (``operator: ...``). JSON types are strict, as the API's document says:
    ``"5"`` is not a number, ``true`` not an integer (the YAML configuration stays lax)."""
    try:
        return BadgeCriterion.model_validate(dict(definition), strict=True)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "definition"
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        elif first["type"] == "missing":
            message = "required"
        raise ValueError(f"{where}: {message}".replace("\n", " ")) from None


async def define(session: AsyncSession, definition: Mapping[str, Any]) -> Badge:
    """Create or change a badge (``source`` ``api``: kept across restarts unless the
    configuration names it). Raises ``ValueError`` (one line) for a bad definition."""
    criterion = criterion_from(definition)
    row = criterion.definition()
    default = _matching_default(criterion) if "slug" not in definition else None
    if default is not None:
        row["slug"] = default.key
    await _upsert(session, [{**row, "source": "api", "is_active": True}], utcnow(), true())
    badge = await session.scalar(select(Badge).where(Badge.slug == row["slug"]))
    assert badge is not None  # just written
    await session.refresh(badge)
    return badge


# ----------------------------------------------------------------- questions


def user_named(username: str) -> ColumnElement[bool]:
    """The user whose GitLab or Mattermost username is ``username`` (any case, ``@``)."""
    name = username.strip().lstrip("@").lower()
    return or_(
        func.lower(User.gitlab_username) == name, func.lower(User.mattermost_username) == name
    )


async def find_user(session: AsyncSession, username: str) -> User | None:
    """The active member called ``username`` (GitLab or Mattermost name), if any."""
    return await session.scalar(
        select(User)
        .where(user_named(username), User.is_active.is_(True))
        .order_by(User.id)
        .limit(1)
    )


async def active_badges(session: AsyncSession) -> list[tuple[Badge, int]]:
    """Every active badge with how many people hold it (in any period), by id."""
    holders = func.count(func.distinct(UserBadge.user_id))
    rows = await session.execute(
        select(Badge, holders)
        .outerjoin(UserBadge, UserBadge.badge_id == Badge.id)
        .where(Badge.is_active.is_(True))
        .group_by(Badge.id)
        .order_by(Badge.id)
    )
    return [(badge, int(count)) for badge, count in rows.all()]


async def awards(
    session: AsyncSession,
    *,
    badge_slug: str | None = None,
    user: User | None = None,
    limit: int | None = None,
) -> list[tuple[Badge, UserBadge, User]]:
    """Awards, newest first: of one badge, of one user, or all of them."""
    query = (
        select(Badge, UserBadge, User)
        .join(UserBadge, UserBadge.badge_id == Badge.id)
        .join(User, User.id == UserBadge.user_id)
        .order_by(UserBadge.awarded_at.desc(), UserBadge.id.desc())
    )
    if badge_slug is not None:
        query = query.where(Badge.slug == badge_slug)
    if user is not None:
        query = query.where(UserBadge.user_id == user.id)
    if limit is not None:
        query = query.limit(limit)
    rows = await session.execute(query)
    return [(b, a, u) for b, a, u in rows.all()]


async def progress(
    session: AsyncSession, user_id: int, day: date
) -> list[tuple[Badge, BadgeProgress | None]]:
    """Each active badge with the user's progress in its period containing ``day``
    (None: nothing recorded there yet), by badge id."""
    badges = (
        await session.scalars(select(Badge).where(Badge.is_active.is_(True)).order_by(Badge.id))
    ).all()
    if not badges:
        return []
    wanted = [
        and_(BadgeProgress.badge_id == b.id, BadgeProgress.period == period_key(b.period, day))
        for b in badges
    ]
    rows = await session.scalars(
        select(BadgeProgress).where(BadgeProgress.user_id == user_id, or_(*wanted))
    )
    found = {row.badge_id: row for row in rows.all()}
    return [(badge, found.get(badge.id)) for badge in badges]
