"""A seeded review lifecycle: teams, users, MR reviews and assignments with given times,
and the exact figures the aggregation must find for it (by hand, from the attribution
rules of ``docs/metrics.md``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.models import MrReview, ReviewerAssignment, Team, User
from plugins.metrics.models import ReviewMetric

Sessions = async_sessionmaker[AsyncSession]


def at(text: str) -> datetime:
    """``"2026-11-10 09:30:00.5"`` as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Assign:
    reviewer: str
    assigned: str
    status: str = "completed"
    first_response: str | None = None
    approved: str | None = None
    comments: int = 0
    chars: int = 0
    role: str = "team"


@dataclass(frozen=True)
class Review:
    project_id: int
    iid: int
    team: str | None
    author: str
    triggered: str
    assignments: tuple[Assign, ...] = field(default_factory=tuple)


TEAMS = ("backend", "frontend")
USERS = {"alice": "backend", "bob": "backend", "carol": "frontend", "dave": None}

HISTORY = (
    Review(
        100,
        1,
        "backend",
        "alice",
        "2026-11-10 09:00:00",
        (
            Assign(
                "bob",
                "2026-11-10 09:00:00",
                first_response="2026-11-10 09:30:00.5",  # 1800.5 s: +20
                approved="2026-11-10 11:00:00",
                comments=3,
                chars=250,  # > 200: +10
            ),
            Assign(
                "carol",
                "2026-11-10 09:00:00",
                first_response="2026-11-10 12:00:00",  # 3 h: +10
                comments=1,
                chars=50,
                role="external",
            ),
        ),
    ),
    Review(
        200,
        7,
        "frontend",
        "carol",
        "2026-11-10 14:00:00",
        (
            Assign(
                "alice",
                "2026-11-10 14:00:00.25",
                status="active",
                first_response="2026-11-10 20:00:00",  # 5 h 59 min 59.75 s: nothing
                role="external",
            ),
            Assign(
                "dave",
                "2026-11-10 14:00:00",
                first_response="2026-11-10 14:59:59.999999",  # just within 1 h: +20
                approved="2026-11-10 15:00:00",
                comments=2,
                chars=201,  # > 200: +10
            ),
        ),
    ),
    Review(
        100,
        2,
        None,
        "dave",
        "2026-11-11 00:30:00",
        (
            Assign(
                "bob",
                "2026-11-11 00:30:00",
                first_response="2026-11-11 04:30:00",  # exactly 4 h: +10
                approved="2026-11-11 05:00:00",
                comments=1,
                chars=100,
            ),
        ),
    ),
    Review(
        300,
        1,
        "backend",
        "bob",
        "2026-11-09 23:30:00",  # 2026-11-10 00:30 in Paris
        (
            Assign(
                "alice",
                "2026-11-09 23:30:00",
                first_response="2026-11-10 00:30:00",  # exactly 1 h: +20
            ),
        ),
    ),
)

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


def row(*values: float) -> dict[str, float]:
    assert len(values) == len(FIGURES)
    return dict(zip(FIGURES, values, strict=True))


# (day, scope, subject name) -> figures, days in UTC.
EXPECTED_UTC: dict[tuple[date, str, str], dict[str, float]] = {
    (date(2026, 11, 9), "user", "alice"): row(0, 1, 1, 0, 0, 0, 3600, 1, 0, 0, 20),
    (date(2026, 11, 9), "team", "backend"): row(1, 1, 1, 0, 0, 0, 3600, 1, 0, 0, 20),
    (date(2026, 11, 9), "project", "300"): row(1, 1, 1, 0, 0, 0, 3600, 1, 0, 0, 20),
    (date(2026, 11, 10), "user", "alice"): row(0, 1, 0, 0, 0, 0, 21599.75, 1, 0, 0, 0),
    (date(2026, 11, 10), "user", "bob"): row(0, 1, 1, 0, 3, 250, 1800.5, 1, 7200, 1, 62.5),
    (date(2026, 11, 10), "user", "carol"): row(0, 1, 1, 1, 1, 50, 10800, 1, 0, 0, 20.5),
    (date(2026, 11, 10), "user", "dave"): row(0, 1, 1, 0, 2, 201, 3599.999999, 1, 3600, 1, 52.01),
    (date(2026, 11, 10), "team", "backend"): row(1, 2, 2, 1, 4, 300, 12600.5, 2, 7200, 1, 83),
    (date(2026, 11, 10), "team", "frontend"): row(
        1, 2, 1, 0, 2, 201, 25199.749999, 2, 3600, 1, 52.01
    ),
    (date(2026, 11, 10), "project", "100"): row(1, 2, 2, 1, 4, 300, 12600.5, 2, 7200, 1, 83),
    (date(2026, 11, 10), "project", "200"): row(
        1, 2, 1, 0, 2, 201, 25199.749999, 2, 3600, 1, 52.01
    ),
    (date(2026, 11, 11), "user", "bob"): row(0, 1, 1, 0, 1, 100, 14400, 1, 16200, 1, 21),
    (date(2026, 11, 11), "project", "100"): row(1, 1, 1, 0, 1, 100, 14400, 1, 16200, 1, 21),
}


async def seed(sessions: Sessions, history: tuple[Review, ...] = HISTORY) -> None:
    """Insert ``TEAMS``, ``USERS`` and ``history`` (the reviews and their assignments)."""
    async with sessions.begin() as session:
        teams = {name: Team(name=name) for name in TEAMS}
        session.add_all(teams.values())
        await session.flush()
        users = {
            name: User(gitlab_username=name, mattermost_username=f"mm-{name}") for name in USERS
        }
        for name, team in USERS.items():
            users[name].team_id = teams[team].id if team else None
        session.add_all(users.values())
        await session.flush()
        for review in history:
            mr = MrReview(
                project_id=review.project_id,
                project_path=f"group/p{review.project_id}",
                mr_iid=review.iid,
                web_url=f"https://gitlab.example.com/group/p{review.project_id}/-/merge_requests/{review.iid}",
                author_id=users[review.author].id,
                author_username=review.author,
                team_id=teams[review.team].id if review.team else None,
                triggered_at=at(review.triggered),
            )
            session.add(mr)
            await session.flush()
            for a in review.assignments:
                session.add(
                    ReviewerAssignment(
                        review_id=mr.id,
                        user_id=users[a.reviewer].id,
                        role=a.role,
                        status=a.status,
                        assigned_at=at(a.assigned),
                        first_response_at=at(a.first_response) if a.first_response else None,
                        approved_at=at(a.approved) if a.approved else None,
                        comment_count=a.comments,
                        comment_chars=a.chars,
                    )
                )


async def stored(sessions: Sessions) -> dict[tuple[date, str, str], dict[str, Any]]:
    """Every ``review_metrics`` row, keyed by (day, scope, subject's name), with its
    figures and ``updated_at``."""
    async with sessions() as session:
        users = {r[0]: r[1] for r in await session.execute(select(User.id, User.gitlab_username))}
        teams = {r[0]: r[1] for r in await session.execute(select(Team.id, Team.name))}
        rows = (await session.scalars(select(ReviewMetric))).all()
    names = {"user": users, "team": teams}
    found: dict[tuple[date, str, str], dict[str, Any]] = {}
    for r in rows:
        subject = names[r.scope][r.subject_id] if r.scope in names else str(r.subject_id)
        values: dict[str, Any] = {name: getattr(r, name) for name in FIGURES}
        values["updated_at"] = r.updated_at
        found[(r.day, r.scope, subject)] = values
    return found


def figures(rows: dict[tuple[date, str, str], dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """``rows`` without ``updated_at``."""
    return {k: {n: v for n, v in r.items() if n != "updated_at"} for k, r in rows.items()}


def assert_same(found: dict[Any, dict[str, Any]], expected: dict[Any, dict[str, float]]) -> None:
    """The same keys, integers equal, floats within 1e-6."""
    assert sorted(found) == sorted(expected)
    for key, values in expected.items():
        for name, value in values.items():
            got = found[key][name]
            if isinstance(value, float) or name.endswith(("_sum", "_score")):
                assert abs(got - value) <= 1e-6, (key, name, got, value)
            else:
                assert got == value, (key, name, got, value)
