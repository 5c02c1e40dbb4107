"""The metrics and the leaderboard at scale: 500 reviewers, 1,000,000 assignments, a year.

    python -m benchmarks.dbscale [--database-url URL] [--json PATH] [--assignments N]
                                 [--runs N] [--baseline-runs N]

On PostgreSQL (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), in a schema
of its own created for the run and dropped at the end: migrates, then seeds 500 users in
10 teams and 1,000,000 reviewer assignments (two or three per MR review) over the 365
days up to 2026-11-30 through ``COPY`` (timed), and runs ``ANALYZE``.

Prints:

- the full-year aggregation backfill (``aggregate_range``, one transaction per day), then
  its rerun, and whether the rerun changed anything: an md5 checksum over every
  ``review_metrics`` row's figures (``updated_at`` aside), and the rows the rerun wrote;
- the leaderboard's p50/p99 through ``plugins.leaderboard.api.leaderboard`` (one session
  per query, as a request has) for the global (period ``all``), team (one team, ``all``)
  and month (everyone, ``month``) rankings; when the leaderboard area is missing, the
  metrics area's ``reviewer_totals`` sorted in Python, and the output says so;
- next to each, a baseline measured in the same run: the same ranking computed by a
  plain ORM loop over ``reviewer_assignments`` in Python (no aggregates).

Targets: leaderboard p50 <= 50 ms; full-year backfill <= 60 s; the rerun changes nothing.
``--json PATH`` writes the figures as one object. Exits 0 (1 when a target is missed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from benchmarks.arguments import count
from bot import migrate
from bot.db import create_engine, create_sessionmaker
from bot.models import ReviewerAssignment, Team, User
from plugins.metrics.api import period_range, reviewer_totals
from plugins.metrics.service import aggregate_range

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
USERS, TEAMS, DAYS, PROJECTS = 500, 10, 365, 200
END = date(2026, 11, 30)
TARGET_P50_MS, TARGET_BACKFILL_S = 50.0, 60.0
STATUSES = ("completed",) * 7 + ("active", "abandoned", "removed")
STAMP = "%Y-%m-%d %H:%M:%S.%f+00"

try:
    from plugins.leaderboard.api import leaderboard as _leaderboard

    LEADERBOARD = "plugins.leaderboard.api.leaderboard"
except ImportError:  # the leaderboard area is not there (yet)
    _leaderboard = None
    LEADERBOARD = "reviewer_totals + a sort in Python (plugins.leaderboard is missing)"


@contextmanager
def throwaway_schema(base: URL) -> Iterator[URL]:
    """A fresh schema in ``base``'s database, dropped afterwards."""
    conninfo = base.set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"dbscale_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')  # type: ignore[arg-type]
        try:
            yield base.update_query_dict({"options": f"-csearch_path={schema}"})
        finally:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


def _stamp(moment: datetime) -> str:
    return moment.strftime(STAMP)


def seed(url: URL, assignments: int, days: int = DAYS, seed_value: int = 1) -> tuple[int, int]:
    """COPY the organisation, the reviews and ``assignments`` assignments; returns
    (reviews, assignments)."""
    rng = random.Random(seed_value)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    created = _stamp(datetime(2025, 1, 1, tzinfo=UTC))
    team_of = [1 + i % TEAMS for i in range(USERS)]
    with psycopg.connect(conninfo) as connection, connection.cursor() as cursor:
        with cursor.copy(
            "COPY teams (id, name, labels, is_active, created_at, updated_at) FROM STDIN"
        ) as copy:
            for t in range(1, TEAMS + 1):
                copy.write_row((t, f"team-{t}", "[]", True, created, created))
        columns = (
            "id, gitlab_username, mattermost_username, team_id, role, is_active,"
            " created_at, updated_at"
        )
        with cursor.copy(f"COPY users ({columns}) FROM STDIN") as copy:  # type: ignore[arg-type]
            for u in range(USERS):
                copy.write_row(
                    (
                        u + 1,
                        f"u{u:03d}",
                        f"u{u:03d}",
                        team_of[u],
                        "reviewer",
                        True,
                        created,
                        created,
                    )
                )
        review_rows: list[tuple[Any, ...]] = []
        assignment_rows: list[tuple[Any, ...]] = []
        review_id = 0
        first = END - timedelta(days=days - 1)
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        while len(assignment_rows) < assignments:
            review_id += 1
            triggered = start + timedelta(seconds=rng.uniform(0, days * 86400 - 1))
            author = rng.randrange(USERS)
            project = rng.randrange(1, PROJECTS + 1)
            review_rows.append(
                (
                    review_id,
                    project,
                    f"group/p{project}",
                    review_id,
                    f"https://gitlab.example.com/group/p{project}/-/merge_requests/{review_id}",
                    author + 1,
                    f"u{author:03d}",
                    team_of[author] if rng.random() < 0.9 else None,
                    "merged",
                    False,
                    _stamp(triggered),
                    created,
                    created,
                )
            )
            count = min(rng.choice((2, 3)), assignments - len(assignment_rows))
            picked = [u for u in rng.sample(range(USERS), count + 1) if u != author][:count]
            for reviewer in picked:
                assigned = triggered + timedelta(seconds=rng.uniform(0, 600))
                responded = assigned + timedelta(seconds=rng.expovariate(1 / 14400))
                approved = responded + timedelta(seconds=rng.expovariate(1 / 7200))
                comments = rng.randrange(0, 8)
                assignment_rows.append(
                    (
                        len(assignment_rows) + 1,
                        review_id,
                        reviewer + 1,
                        rng.choice(("codeowner", "team", "external")),
                        rng.choice(STATUSES),
                        _stamp(assigned),
                        _stamp(responded) if rng.random() < 0.85 else None,
                        _stamp(approved) if rng.random() < 0.6 else None,
                        comments,
                        comments * rng.randrange(10, 120),
                    )
                )
        columns = (
            "id, project_id, project_path, mr_iid, web_url, author_id, author_username, team_id,"
            " state, draft, triggered_at, created_at, updated_at"
        )
        with cursor.copy(f"COPY mr_reviews ({columns}) FROM STDIN") as copy:  # type: ignore[arg-type]
            for r in review_rows:
                copy.write_row(r)
        columns = (
            "id, review_id, user_id, role, status, assigned_at, first_response_at, approved_at,"
            " comment_count, comment_chars"
        )
        with cursor.copy(f"COPY reviewer_assignments ({columns}) FROM STDIN") as copy:  # type: ignore[arg-type]
            for a in assignment_rows:
                copy.write_row(a)
        connection.commit()
        connection.autocommit = True
        cursor.execute("ANALYZE")
    return len(review_rows), len(assignment_rows)


async def checksum(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, int]:
    """md5 over every ``review_metrics`` row's figures, in key order, then over every
    monthly rollup's (``daily/monthly``); and the daily row count."""
    query = text(
        "SELECT md5(string_agg(concat_ws(',', day, scope, subject_id, reviews_triggered,"
        " reviews_assigned, reviews_completed, reviews_other_teams, comments, comment_chars,"
        " ttfr_seconds_sum, ttfr_count, approval_seconds_sum, approval_count,"
        " engagement_score), ';' ORDER BY day, scope, subject_id)), count(*)"
        " FROM review_metrics"
    )
    monthly = text(
        "SELECT md5(string_agg(concat_ws(',', month, subject_id, reviews_assigned,"
        " reviews_completed, reviews_other_teams, comments, comment_chars, ttfr_seconds_sum,"
        " ttfr_count, approval_seconds_sum, approval_count, engagement_score), ';'"
        " ORDER BY month, subject_id)) FROM review_metrics_monthly"
    )
    async with sessions() as session:
        digest, count = (await session.execute(query)).one()
        rollups = await session.scalar(monthly)
    return f"{digest}/{rollups}", int(count)


async def ranked(session: AsyncSession, team: str | None, period: str) -> list[str]:
    """The ranking by completed reviews through the leaderboard area (or its stand-in)."""
    if _leaderboard is not None:
        entries = await _leaderboard(session, team=team, period=period, by="reviews", today=END)
        return [e.username for e in entries]
    start, end = period_range(period, END)
    totals = await reviewer_totals(session, start, end, team=team)
    totals.sort(key=lambda t: (-t.reviews_completed, t.username))
    return [t.username for t in totals[:100]]


async def baseline(session: AsyncSession, team: str | None, period: str) -> list[str]:
    """The same ranking the plain way: every assignment of the period as an ORM object,
    counted in a Python loop."""
    start, end = period_range(period, END)
    query = (
        select(ReviewerAssignment, User)
        .join(User, User.id == ReviewerAssignment.user_id)
        .where(
            ReviewerAssignment.assigned_at
            >= datetime(start.year, start.month, start.day, tzinfo=UTC),
            ReviewerAssignment.assigned_at
            < datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1),
        )
    )
    if team is not None:
        query = query.join(Team, Team.id == User.team_id).where(Team.name == team)
    completed: Counter[str] = Counter()
    for assignment, user in (await session.execute(query)).all():
        completed[user.gitlab_username] += assignment.status == "completed"
    return [name for name, _ in sorted(completed.items(), key=lambda kv: (-kv[1], kv[0]))[:100]]


async def timings(
    sessions: async_sessionmaker[AsyncSession],
    query: Callable[[AsyncSession], Awaitable[list[str]]],
    runs: int,
) -> tuple[list[float], list[str]]:
    times: list[float] = []
    result: list[str] = []
    for _ in range(runs):
        began = time.perf_counter()
        async with sessions() as session:
            result = await query(session)
        times.append((time.perf_counter() - began) * 1000)
    return times, result


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: URL, args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"assignments_asked": args.assignments, "days": args.days}
    began = time.perf_counter()
    migrate.upgrade(url)
    figures["migrate_s"] = time.perf_counter() - began
    began = time.perf_counter()
    reviews, assignments = seed(url, args.assignments, args.days)
    start = END - timedelta(days=args.days - 1)
    figures.update(seed_s=time.perf_counter() - began, reviews=reviews, assignments=assignments)
    print(
        f"seeded {USERS} users in {TEAMS} teams, {reviews:,} reviews, {assignments:,} assignments"
        f" over {args.days} days (COPY) in {figures['seed_s']:.1f} s"
    )
    engine = create_engine(url.set(drivername="postgresql+psycopg"))
    sessions = create_sessionmaker(engine)
    try:
        began = time.perf_counter()
        first = await aggregate_range(sessions, start, END, "UTC")
        figures["backfill_s"] = time.perf_counter() - began
        digest, rows = await checksum(sessions)
        began = time.perf_counter()
        again = await aggregate_range(sessions, start, END, "UTC")
        figures["rerun_s"] = time.perf_counter() - began
        digest_again, rows_again = await checksum(sessions)
        figures.update(
            metric_rows=rows,
            rows_written=first.written,
            rerun_rows_written=again.written,
            rerun_rows_deleted=again.deleted,
            rollups_written=first.rollups_written,
            rerun_rollups_written=again.rollups_written,
            rerun_rollups_deleted=again.rollups_deleted,
            rerun_changed_nothing=(digest, rows) == (digest_again, rows_again)
            and again.written == again.deleted == 0
            and again.rollups_written == again.rollups_deleted == 0,
            checksum=digest,
        )
        print(
            f"backfill: {figures['backfill_s']:.1f} s ({args.days} days, {rows:,} rows)"
            f" [target <= {TARGET_BACKFILL_S:.0f} s]; rerun: {figures['rerun_s']:.1f} s,"
            f" {again.written} written, {again.deleted} deleted (rollups: {first.rollups_written}"
            f" written by the backfill, {again.rollups_written} and {again.rollups_deleted} by"
            " the rerun), checksum"
            f" {'unchanged' if figures['rerun_changed_nothing'] else 'CHANGED'} ({digest})"
        )
        print(f"leaderboard through {LEADERBOARD}; {args.runs} runs each, one session per query")
        figures["leaderboard"] = LEADERBOARD
        for name, team, period in (
            ("global", None, "all"),
            ("team", "team-3", "all"),
            ("month", None, "month"),
        ):
            fast, top = await timings(
                sessions, lambda s, t=team, q=period: ranked(s, t, q), args.runs
            )
            slow, plain = await timings(
                sessions, lambda s, t=team, q=period: baseline(s, t, q), args.baseline_runs
            )
            same = [n for n in top[:10]] == [n for n in plain[:10]]
            figures[name] = {
                "p50_ms": p(fast, 0.5),
                "p99_ms": p(fast, 0.99),
                "baseline_p50_ms": p(slow, 0.5),
                "baseline_runs": len(slow),
                "same_top10": same,
            }
            print(
                f"  {name:<6} p50 {p(fast, 0.5):7.1f} ms  p99 {p(fast, 0.99):7.1f} ms"
                f"   baseline (ORM loop over assignments) p50 {p(slow, 0.5):8.1f} ms"
                f" ({len(slow)} runs); same top 10: {'yes' if same else 'NO'}"
            )
    finally:
        await engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", default=DEFAULT_URL, help="PostgreSQL URL")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as one JSON object")
    parser.add_argument("--assignments", type=count(1), default=1_000_000)
    parser.add_argument(
        "--days", type=count(1), default=DAYS, help="days of history (and backfilled)"
    )
    parser.add_argument("--runs", type=count(1), default=50, help="leaderboard queries per kind")
    parser.add_argument("--baseline-runs", type=count(1), default=3, help="baseline runs per kind")
    args = parser.parse_args()
    base = make_url(args.database_url)
    if base.get_backend_name() != "postgresql":
        parser.error("--database-url: a PostgreSQL URL (the benchmark seeds through COPY)")
    with throwaway_schema(base) as url:
        print(f"PostgreSQL {base.render_as_string()} (a schema of its own, dropped after)")
        figures = asyncio.run(measure(url, args))
    met = (
        max(figures[k]["p50_ms"] for k in ("global", "team", "month")) <= TARGET_P50_MS
        and figures["backfill_s"] <= TARGET_BACKFILL_S
        and figures["rerun_changed_nothing"]
    )
    figures["targets_met"] = met
    print(
        f"targets (leaderboard p50 <= {TARGET_P50_MS:.0f} ms,"
        f" backfill <= {TARGET_BACKFILL_S:.0f} s, rerun changes nothing):"
        f" {'PASS' if met else 'FAIL'}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=2)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
