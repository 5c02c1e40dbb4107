"""``roulette-bot pick``: SPEC's output, read-only, one-line errors; run as a user would."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import URL, make_url

from bot import migrate
from bot.sandbox.gitlab import GitLabStandIn
from tests.roulette.conftest import TEAMS, TOKEN, USERS


def _config(tmp_path: Path, gitlab_url: str, database_url: str) -> Path:
    path = tmp_path / "roulette.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database_url": database_url,
                "gitlab_url": gitlab_url,
                "teams": TEAMS,
                "users": USERS,
            }
        )
    )
    return path


async def pick(cwd: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("GITLAB", "DATABASE"))}
    environment |= {"GITLAB_TOKEN": TOKEN, "LOG_LEVEL": "warning"} | (env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "pick",
        *args,
        cwd=cwd,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def mr_url(gitlab_url: str) -> str:
    return f"{gitlab_url}/acme/shop/-/merge_requests/1"


async def test_json_is_exactly_the_spec_object(
    tmp_path: Path, gitlab_url: str, mr_url: str, migrated_url: URL, standin: GitLabStandIn
) -> None:
    standin.set_status("bob", availability="busy")
    config = _config(tmp_path, gitlab_url, migrated_url.render_as_string(hide_password=False))
    code, out, err = await pick(tmp_path, mr_url, "--json", "--config", str(config))
    assert (code, err) == (0, "")
    result: dict[str, Any] = json.loads(out)
    assert list(result) == ["mr", "owners", "reviewers", "unavailable"]
    assert result["mr"] == mr_url
    assert result["owners"] == ["bob", "carol", "dave", "erin", "frank", "outsider"]
    reviewers = result["reviewers"]
    assert 1 <= len(reviewers) <= 3
    for reviewer in reviewers:
        assert list(reviewer) == ["username", "role", "score"]
        assert reviewer["role"] in ("codeowner", "team", "external")
        assert isinstance(reviewer["score"], float | int)
    assert len({r["username"] for r in reviewers}) == len(reviewers)
    assert {"alice", "bob"}.isdisjoint(r["username"] for r in reviewers)
    assert {"username": "alice", "reason": "author"} in result["unavailable"]
    assert {"username": "bob", "reason": "busy"} in result["unavailable"]


async def test_explain_shows_every_candidate_and_why(
    tmp_path: Path, gitlab_url: str, mr_url: str, migrated_url: URL
) -> None:
    config = _config(tmp_path, gitlab_url, migrated_url.render_as_string(hide_password=False))
    code, out, _ = await pick(tmp_path, mr_url, "--explain", "--config", str(config))
    assert code == 0
    assert "acme/shop!1" in out and "Reviewers:" in out
    assert "Candidates (best first):" in out
    for name in ("bob", "carol", "dave", "erin", "frank"):
        assert f"@{name}" in out
    assert "@alice" in out and "author: wrote this merge request" in out


async def test_pick_changes_nothing(
    tmp_path: Path, gitlab_url: str, mr_url: str, standin: GitLabStandIn
) -> None:
    database = tmp_path / "existing.db"
    migrate.upgrade(make_url(f"sqlite:///{database}"))
    before = _digest(database)
    config = _config(tmp_path, gitlab_url, f"sqlite:///{database}")
    code, _, _ = await pick(tmp_path, mr_url, "--config", str(config))
    assert code == 0
    assert _digest(database) == before
    assert not any(method != "GET" for method, _ in standin.requests)


async def test_pick_does_not_create_a_missing_database(
    tmp_path: Path, gitlab_url: str, mr_url: str
) -> None:
    config = _config(tmp_path, gitlab_url, "sqlite:///./nothing-here.db")
    code, out, _ = await pick(tmp_path, mr_url, "--config", str(config))
    assert code == 0
    assert "no review history could be read" in out
    assert not (tmp_path / "nothing-here.db").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://elsewhere.example.com/acme/shop/-/merge_requests/1", "not on the configured"),
        ("{gitlab}/acme/shop/-/issues/1", "not a merge request URL"),
        ("{gitlab}/acme/shop/-/merge_requests/99", "no merge request at"),
        ("{gitlab}/acme/nothing/-/merge_requests/1", "no merge request at"),
    ],
)
async def test_a_bad_url_exits_2_with_one_line(
    tmp_path: Path, gitlab_url: str, url: str, message: str
) -> None:
    config = _config(tmp_path, gitlab_url, "sqlite:///./r.db")
    code, out, err = await pick(tmp_path, url.format(gitlab=gitlab_url), "--config", str(config))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert "Traceback" not in err


async def test_an_unreachable_gitlab_exits_1(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:1", "sqlite:///./r.db")
    code, _, err = await pick(
        tmp_path, "http://127.0.0.1:1/acme/shop/-/merge_requests/1", "--config", str(config)
    )
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "GitLab" in err
    assert TOKEN not in err


async def test_without_gitlab_url_exits_2(tmp_path: Path) -> None:
    code, _, err = await pick(tmp_path, "https://gitlab.example.com/a/b/-/merge_requests/1")
    assert code == 2
    assert "GITLAB_URL is not set" in err
