"""A small organisation, its GitLab (the stand-in) and its database, for selection tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.engine import URL

from bot.gitlab import GitLab
from bot.sandbox.gitlab import GitLabStandIn, serve
from bot.settings import Settings
from tests.conftest import settings_for

TOKEN = "glpat-roulette-test-token"

CODEOWNERS = """\
# Default owners of everything
* @platform-team

[Backend]
/api/ @bob
*.sql dba@example.com

[Frontend]
/web/ @acme/frontend

^[Docs]
*.md @@maintainer
"""

TEAMS = [
    {"name": "backend", "labels": ["team::backend"]},
    {"name": "frontend", "labels": ["team::frontend"]},
    {"name": "platform", "labels": []},
]
USERS: list[dict[str, Any]] = [
    {"gitlab": "alice", "team": "backend", "role": "maintainer", "timezone": "Europe/Paris"},
    {"gitlab": "bob", "team": "backend"},
    {"gitlab": "carol", "team": "backend", "email": "dba@example.com"},
    {"gitlab": "dave", "team": "frontend", "timezone": "Asia/Tokyo"},
    {"gitlab": "erin", "team": "frontend"},
    {"gitlab": "frank", "team": "platform"},
]


@pytest.fixture
def standin() -> GitLabStandIn:
    gl = GitLabStandIn(TOKEN)
    for user in USERS:
        gl.add_user(user["gitlab"])
    gl.add_user("outsider")
    gl.add_group("platform-team", ["frank", "outsider"])
    gl.add_group("acme/frontend", ["dave", "erin"])
    gl.add_project(
        "acme/shop",
        members={"alice": 40, "frank": 50, "bob": 30},
        files={"main": {".gitlab/CODEOWNERS": CODEOWNERS}},
    )
    gl.add_merge_request(
        "acme/shop",
        author="alice",
        title="Checkout rework",
        labels=["team::backend"],
        changes=["api/orders.py", "db/orders.sql", "web/cart.ts"],
    )
    return gl


@pytest.fixture
async def gitlab_url(standin: GitLabStandIn) -> AsyncIterator[str]:
    async with serve(standin) as url:
        yield url


@pytest.fixture
def gitlab(gitlab_url: str) -> GitLab:
    return GitLab(gitlab_url, TOKEN, max_retries=1)


@pytest.fixture
def org(migrated_url: URL, gitlab_url: str) -> Settings:
    return settings_for(
        migrated_url, teams=TEAMS, users=USERS, gitlab_url=gitlab_url, gitlab_token=TOKEN
    )
