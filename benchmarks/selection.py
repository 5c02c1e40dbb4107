"""One full pick on a 500-person organisation and a 200-file MR, GitLab served from cache.

    python -m benchmarks.selection [--runs N]

Prints the p50/p99 time of ``RouletteService.plan`` once its caches are warm (the MR and
its diff come from an in-memory GitLab; statuses, CODEOWNERS and group members from the
bot's cache), next to the engine alone and a cold first pick measured in the same run.
Target: p99 < 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url

from benchmarks.arguments import count
from bot import migrate
from bot.cache import MemoryCache
from bot.db import create_engine, create_sessionmaker
from bot.gitlab import GitLabUser, MergeRequestInfo, MergeRequestRef, UserStatus
from bot.models import MrReview, ReviewerAssignment, User
from bot.settings import Settings
from bot.users import sync_organisation
from plugins.roulette import engine
from plugins.roulette.flags import Flags
from plugins.roulette.service import RouletteService

TARGET_P99_MS = 20.0
PEOPLE, TEAMS, FILES, RULES = 500, 10, 200, 400


class MemoryGitLab:
    """Answers instantly from memory and counts the calls it gets."""

    def __init__(self, rng: random.Random) -> None:
        self.calls = 0
        self.paths = [
            f"services/svc{rng.randrange(40)}/src/module{rng.randrange(30)}/file{i}.py"
            for i in range(FILES)
        ]
        rules = ["* @u000"]
        for i in range(RULES):
            owner = f"@u{rng.randrange(PEOPLE):03d}" if i % 5 else f"@team-{rng.randrange(TEAMS)}"
            rules.append(f"/services/svc{i % 40}/src/module{rng.randrange(30)}/ {owner}")
        rules += ["[Docs]", "*.md @u001", "^[Python][2]", "*.py @u002 @u003"]
        self.codeowners = "\n".join(rules)

    async def merge_request(self, ref: MergeRequestRef) -> MergeRequestInfo:
        self.calls += 1
        return MergeRequestInfo(
            project_id=1,
            project_path=ref.project,
            iid=ref.iid,
            id=1000 + ref.iid,
            title="A large change",
            author="u007",
            author_id=8,
            labels=("team::team-3",),
            draft=False,
            state="opened",
            target_branch="main",
            web_url=f"https://gitlab.example.com/{ref.project}/-/merge_requests/{ref.iid}",
            reviewers=(),
            reviewer_ids=(),
        )

    async def changed_paths(self, project: int | str, iid: int) -> list[str]:
        self.calls += 1
        return list(self.paths)

    async def codeowners_file(self, project_id: int, ref: str) -> tuple[str, str] | None:
        self.calls += 1
        return "CODEOWNERS", self.codeowners

    async def user_status(self, user: str | int) -> UserStatus:
        self.calls += 1
        busy = hash(user) % 20 == 0
        return UserStatus("busy" if busy else "not_set", None, None)

    async def user(self, username: str) -> GitLabUser | None:
        self.calls += 1
        if username.startswith("team-"):
            return None
        return GitLabUser(1, username, username, "active", None)

    async def user_by_email(self, email: str) -> GitLabUser | None:
        self.calls += 1
        return None

    async def group_members(self, group: str) -> list[GitLabUser]:
        self.calls += 1
        team = int(group.removeprefix("team-"))
        return [GitLabUser(i, f"u{i:03d}", "", "active", None) for i in range(team, PEOPLE, TEAMS)]

    async def project_members(self, project_id: int) -> list[tuple[GitLabUser, int]]:
        self.calls += 1
        return []


def organisation(url: str) -> Settings:
    teams = [{"name": f"team-{t}", "labels": [f"team::team-{t}"]} for t in range(TEAMS)]
    users = [
        {"gitlab": f"u{i:03d}", "team": f"team-{i % TEAMS}", "timezone": "Europe/Paris"}
        for i in range(PEOPLE)
    ]
    return Settings(database_url=url, teams=teams, users=users)


async def seed_history(settings: Settings, rng: random.Random) -> None:
    """A few thousand assignments, so the load queries read real rows."""
    db = create_engine(settings.async_database_url)
    sessions = create_sessionmaker(db)
    await sync_organisation(sessions, settings)
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        ids = list((await session.scalars(select(User.id))).all())
    async with sessions.begin() as session:
        for iid in range(1, 1001):
            review = MrReview(
                project_id=1,
                project_path="acme/mono",
                mr_iid=iid + 100,
                web_url="u",
                author_username="u001",
                state=rng.choice(("open", "merged")),
            )
            session.add(review)
            await session.flush()
            for user_id in rng.sample(ids, 3):
                session.add(
                    ReviewerAssignment(
                        review_id=review.id,
                        user_id=user_id,
                        role="team",
                        status=rng.choice(("active", "completed")),
                        assigned_at=now - timedelta(hours=rng.uniform(0, 240)),
                    )
                )
    await db.dispose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(runs: int, json_path: str | None = None) -> bool:
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        migrate.upgrade(make_url(url))
        settings = organisation(url)
        await seed_history(settings, rng)
        gitlab = MemoryGitLab(rng)
        db = create_engine(settings.async_database_url)
        service = RouletteService(settings, create_sessionmaker(db), MemoryCache(), gitlab)
        ref = MergeRequestRef("acme/mono", 42)

        started = time.perf_counter()
        plan = await service.plan(ref, Flags(), rng=random.Random(0))
        cold = (time.perf_counter() - started) * 1000
        cold_calls = gitlab.calls
        gc.freeze()  # as ``serve`` does once started: start-up objects leave the GC's scans

        times = []
        for i in range(runs):
            started = time.perf_counter()
            plan = await service.plan(ref, Flags(), rng=random.Random(i))
            times.append((time.perf_counter() - started) * 1000)
        warm_calls = (gitlab.calls - cold_calls) / runs

        people = service.people()
        facts = engine.MergeRequestFacts("u007", "team-3", owners=frozenset(plan.selection.owners))
        options = engine.Options()
        engine_times = []
        now = datetime.now(UTC)
        for i in range(runs):
            started = time.perf_counter()
            engine.select(facts, people, {}, engine.Load(), options, random.Random(i), now)
            engine_times.append((time.perf_counter() - started) * 1000)
        await db.dispose()

    p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
    print(f"organisation: {PEOPLE} people in {TEAMS} teams; MR: {FILES} changed files;")
    print(f"CODEOWNERS: {RULES + 5} rules; history: 1000 reviews, 3000 assignments (SQLite)")
    print(f"picked: {', '.join(plan.selection.reviewers)} ({len(plan.selection.owners)} owners)")
    print(f"cold first pick:        {cold:8.2f} ms  ({cold_calls} GitLab calls)")
    print(f"warm pick p50:          {p50:8.2f} ms  ({warm_calls:.0f} GitLab calls per pick)")
    print(f"warm pick p99:          {p99:8.2f} ms  (target < {TARGET_P99_MS:.0f} ms)")
    print(f"engine alone p50:       {statistics.median(engine_times):8.2f} ms")
    print(f"warm / cold ratio:      {p50 / cold:8.3f}")
    ok = p99 < TARGET_P99_MS
    print("PASS" if ok else "FAIL")
    if json_path:
        figures = {
            "people": PEOPLE,
            "changed_files": FILES,
            "cold_ms": round(cold, 2),
            "cold_gitlab_calls": cold_calls,
            "warm_p50_ms": round(p50, 2),
            "warm_p99_ms": round(p99, 2),
            "warm_gitlab_calls": warm_calls,
            "engine_p50_ms": round(statistics.median(engine_times), 3),
            "pass": ok,
        }
        text = json.dumps(figures, indent=2) + "\n"
        await asyncio.to_thread(Path(json_path).write_text, text)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=count(1), default=300)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as one JSON object")
    args = parser.parse_args()
    sys.exit(0 if asyncio.run(measure(args.runs, args.json)) else 1)


if __name__ == "__main__":
    main()
