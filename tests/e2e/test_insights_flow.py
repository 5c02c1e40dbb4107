"""After the pick, end to end through the stand-ins: a review rolled from a GitLab comment,
answered, approved and merged; then ``roulette-bot run-job aggregate`` and ``run-job badges``
(the installed command, as an operator runs it); then ``/leaderboard`` and ``/badges`` in
Mattermost and ``GET /api/v1/leaderboard`` name the reviewer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import URL

from bot.app import create_app
from bot.http import CONTEXT
from bot.models import MrReview, ReviewerAssignment, WebhookDelivery
from bot.sandbox.gitlab import GitLabStandIn
from bot.sandbox.mattermost import MattermostStandIn
from bot.sandbox.webhooks import WebhookSender
from bot.users import sync_organisation
from tests.e2e.conftest import PROJECT, SECRET, MakeClient, e2e_settings
from tests.e2e.test_mattermost_flow import CHANNEL, TEAM, _until
from tests.e2e.test_mattermost_flow import mattermost as mattermost
from tests.e2e.test_mattermost_flow import port as port

ROOT = Path(__file__).resolve().parents[2]


def _run_job(url: URL, job: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATTERMOST_", "GITLAB_"))}
    env.update(DATABASE_URL=url.render_as_string(hide_password=False), PYTHONPATH=str(ROOT))
    env.pop("ROULETTE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "run-job", job],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


async def test_a_merged_review_reaches_the_leaderboard_and_the_badges(
    migrated_url: URL,
    gitlab_url: str,
    standin: GitLabStandIn,
    mattermost: tuple[MattermostStandIn, str],
    aiohttp_client: MakeClient,
    port: int,
    tmp_path: Path,
) -> None:
    mm, mm_url = mattermost
    settings = e2e_settings(
        migrated_url,
        gitlab_url,
        mattermost_url=mm_url,
        mattermost_token=mm.bot_token,
        mattermost_team=TEAM,
        public_url=f"http://127.0.0.1:{port}",
        users=[
            {"gitlab": "alice", "team": "backend", "role": "maintainer"},
            {"gitlab": "bob", "team": "backend"},
            {"gitlab": "carol", "team": "backend"},
            {"gitlab": "dave", "team": "frontend"},
            {"gitlab": "erin", "team": "frontend"},
            {"gitlab": "frank", "team": "platform"},
        ],
    )
    client = await aiohttp_client(create_app(settings), server_kwargs={"port": port})
    context = client.app[CONTEXT]
    await sync_organisation(context.sessions, settings)
    sender = WebhookSender(standin, str(client.make_url("/webhook/gitlab")), secret=SECRET)

    async def settled() -> bool:
        async with context.sessions() as session:
            rows = (await session.scalars(select(WebhookDelivery))).all()
        return bool(rows) and all(r.status == "done" for r in rows)

    # The review: rolled from a comment, answered, approved, merged.
    await sender.comment(PROJECT, 1, "alice", "/roulette")
    await _until(settled, within=20)
    reviewer = standin.merge_request(PROJECT, 1)["reviewers"][0]["username"]
    await sender.comment(PROJECT, 1, reviewer, "Could this query use the index on team_id?")
    standin.approve(PROJECT, 1, reviewer)
    await sender.mr_event(PROJECT, 1, "approval", reviewer)
    standin.merge(PROJECT, 1, by="alice")
    await sender.mr_event(PROJECT, 1, "merge", "alice")
    await _until(settled, within=20)

    # It happened yesterday: the daily jobs judge whole days.
    async with context.sessions.begin() as session:
        rows = [
            *(await session.scalars(select(MrReview))),
            *(await session.scalars(select(ReviewerAssignment))),
        ]
        for row in rows:
            for name in (
                "triggered_at",
                "first_review_at",
                "approved_at",
                "merged_at",
                "assigned_at",
                "first_response_at",
                "ended_at",
            ):
                value = getattr(row, name, None)
                if value is not None:
                    setattr(row, name, value - timedelta(days=1))

    # The operator's commands, as installed.
    for job in ("aggregate", "badges"):
        started = time.monotonic()
        done = await asyncio.to_thread(_run_job, migrated_url, job, tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{job}: done for "), done.stdout
        assert time.monotonic() - started < 60
    again = await asyncio.to_thread(_run_job, migrated_url, "aggregate", tmp_path)
    assert again.returncode == 0 and "skipped" in again.stdout, again.stdout + again.stderr

    # Chat and the API name the reviewer.
    status, board = await mm.run_slash_command(
        "alice", CHANNEL, "/leaderboard --period all", team=TEAM
    )
    assert status == 200, board
    posted = [p["message"] for p in mm.posts_in(mm.channel(TEAM, CHANNEL)["id"])]
    table = "\n".join([str(board.get("text", "")), *posted])
    assert f"@{reviewer}" in table, table

    status, badges = await mm.run_slash_command("alice", CHANNEL, f"/badges @{reviewer}", team=TEAM)
    assert status == 200 and reviewer in str(badges.get("text", "")), badges

    answer = await client.get("/api/v1/leaderboard", params={"period": "all"})
    assert answer.status == 200
    payload: dict[str, Any] = await answer.json()
    [first] = payload["entries"][:1]
    assert (first["username"], first["rank"], first["reviews_completed"]) == (reviewer, 1, 1)
