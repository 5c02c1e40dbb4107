"""``roulette-bot repair`` (and ``pick`` on a merged MR), run as an operator would: a real
process against the GitLab stand-in and the database, on both engines."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db import create_engine, create_sessionmaker
from bot.gitlab import GitLab, MergeRequestRef
from bot.models import MrReview, ReviewerAssignment, User
from bot.sandbox.gitlab import GitLabStandIn
from bot.settings import Settings
from bot.users import sync_organisation
from plugins.roulette import tracking
from tests.roulette.conftest import TEAMS, TOKEN, USERS

PROJECT = "acme/shop"
Sessions = async_sessionmaker[AsyncSession]


async def run(cwd: Path, *args: str) -> tuple[int, str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("GITLAB", "DATABASE"))}
    environment |= {"GITLAB_TOKEN": TOKEN, "LOG_LEVEL": "warning"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        cwd=cwd,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _config(tmp_path: Path, gitlab_url: str, database_url: str) -> str:
    path = tmp_path / "roulette.yaml"
    config = {"database_url": database_url, "gitlab_url": gitlab_url, "teams": TEAMS}
    path.write_text(yaml.safe_dump(config | {"users": USERS}))
    return str(path)


@pytest.fixture
async def sessions(org: Settings) -> AsyncIterator[Sessions]:
    engine = create_engine(org.async_database_url)
    made = create_sessionmaker(engine)
    await sync_organisation(made, org)
    yield made
    await engine.dispose()


async def _snapshot(sessions: Sessions) -> list[tuple[Any, ...]]:
    async with sessions() as session:
        reviews = await session.execute(
            select(MrReview.mr_iid, MrReview.state, MrReview.merged_at, MrReview.closed_at)
        )
        rows = await session.execute(
            select(MrReview.mr_iid, User.gitlab_username, ReviewerAssignment.status)
            .join(MrReview, MrReview.id == ReviewerAssignment.review_id)
            .join(User, User.id == ReviewerAssignment.user_id)
        )
        return sorted(tuple(r) for r in reviews.all()) + sorted(tuple(r) for r in rows.all())


async def test_repair_fixes_a_corrupted_review_once_and_leaves_a_healthy_one(
    tmp_path: Path,
    gitlab_url: str,
    gitlab: GitLab,
    standin: GitLabStandIn,
    sessions: Sessions,
    migrated_url: URL,
) -> None:
    standin.add_merge_request(PROJECT, author="erin", changes=["web/app.ts"])
    for iid, names in ((1, ("bob", "dave")), (2, ("bob", "frank"))):
        mr = await gitlab.merge_request(MergeRequestRef(PROJECT, iid))
        await tracking.record_roll(sessions, mr, "backend", [(n, "team") for n in names], [], [])
        standin.set_reviewers(PROJECT, iid, names)
    standin.merge(PROJECT, 1)  # merged in GitLab; the hook never reached the bot
    config = _config(tmp_path, gitlab_url, migrated_url.render_as_string(hide_password=False))
    before = await _snapshot(sessions)

    code, out, err = await run(tmp_path, "repair", "--dry-run", "--config", config)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "acme/shop!1: merged in GitLab but open here: would mark merged; would release @bob, @dave",
        "repair: 2 stored review(s) checked against GitLab, 1 would be fixed "
        "(2 assignment(s) released), 0 unreadable; dry run, nothing changed",
    ]
    assert await _snapshot(sessions) == before

    code, out, err = await run(tmp_path, "repair", "--config", config)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == (
        "acme/shop!1: merged in GitLab but open here: marked merged; released @bob, @dave"
    )
    assert "1 fixed (2 assignment(s) released)" in out.splitlines()[-1]
    after = await _snapshot(sessions)
    assert after[0][:2] == (1, "merged") and after[0][2] is not None
    assert after[1] == (2, "open", None, None)
    assert (1, "bob", "completed") in after and (1, "dave", "completed") in after
    assert (2, "bob", "active") in after and (2, "frank", "active") in after

    code, out, _ = await run(tmp_path, "repair", "--config", config)
    assert code == 0
    assert out.splitlines() == [
        "repair: 1 stored review(s) checked against GitLab, 0 fixed "
        "(0 assignment(s) released), 0 unreadable"
    ]
    assert await _snapshot(sessions) == after


async def test_repair_exits_1_with_one_line_when_gitlab_is_unreachable(
    tmp_path: Path, gitlab: GitLab, sessions: Sessions, migrated_url: URL
) -> None:
    mr = await gitlab.merge_request(MergeRequestRef(PROJECT, 1))
    await tracking.record_roll(sessions, mr, "backend", [("bob", "team")], [], [])
    config = _config(tmp_path, "http://127.0.0.1:1", migrated_url.render_as_string())
    code, out, err = await run(tmp_path, "repair", "--config", config)
    assert code == 1 and out == ""
    [line] = err.splitlines()
    assert line.startswith("roulette-bot: GitLab: ") and "unreachable" in line
    assert TOKEN not in err


async def test_repair_without_gitlab_or_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    code, _, err = await run(tmp_path, "repair")
    assert code == 2 and err.splitlines() == [
        "roulette-bot: GITLAB_URL is not set: repair reads the merge requests from GitLab"
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("roulette: {reviewers: many}\n")
    code, _, err = await run(tmp_path, "repair", "--config", str(bad))
    assert code == 2 and len(err.splitlines()) == 1 and "config error" in err


async def test_pick_on_a_merged_mr_says_so(
    tmp_path: Path, gitlab_url: str, standin: GitLabStandIn, migrated_url: URL
) -> None:
    standin.merge(PROJECT, 1)
    config = _config(tmp_path, gitlab_url, migrated_url.render_as_string(hide_password=False))
    url = f"{gitlab_url}/{PROJECT}/-/merge_requests/1"
    code, out, _ = await run(tmp_path, "pick", url, "--config", config)
    assert code == 0
    assert out.splitlines()[0] == "Note: acme/shop!1 is merged: /roulette there assigns nobody"
    assert "Reviewers:" in out  # the dry run is still shown
    code, out, err = await run(tmp_path, "pick", url, "--json", "--config", config)
    assert code == 0 and out.startswith("{")
    assert err.splitlines() == [
        "roulette-bot: acme/shop!1 is merged: /roulette there assigns nobody"
    ]
