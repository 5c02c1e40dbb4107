"""The API v1 against its own OpenAPI document, by schemathesis (both engines).

The real app (``create_app``, every built-in area) runs on a seeded database: members,
daily metrics, an open review, the badges' catalogue and an award, so answers are not
all empty. schemathesis' own command (``st run``, as a person runs it) reads
``/api/v1/openapi.json`` from the running server and tests every operation in all its
phases (the document's examples, coverage of boundaries and invalid values, fuzzing,
stateful links) with every check: no 5xx, a declared status, the declared content type
and headers, a body matching the declared schema, invalid input refused with a 4xx,
valid input accepted, a request without the token refused.

Path parameters and the out-of-office body draw half their values from the seeded data
(schemathesis dictionaries), so the 200 answers are tested too, not only the 404s.

Bounded and reproducible: at most ``MAX_EXAMPLES`` cases per operation, deterministic
generation (the same requests on every run). The command runs as a subprocess while the
test's event loop serves it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import URL

from bot.http import CONTEXT
from bot.models import User
from plugins.dashboard import openapi
from tests.dashboard.conftest import ALL, NOW, TOKEN, MakeClient, areas, start

Client = TestClient[Any, Any]
MAX_EXAMPLES = 25  # per operation and phase
RUN_TIMEOUT = 120.0  # seconds; the run takes about 5
BEARER_ONLY = r"^/api/v1/(ooo|availability|admin/badges)$"

# What the seeded organisation holds (tests/dashboard/conftest.py), in the spellings the
# API accepts: GitLab and Mattermost names, ids, any case, a leading @.
DICTIONARIES = {
    "users": ["alice", "bob", "dave", "erin", "ALICE", "@bob", "1", "2"],
    "teams": ["backend", "frontend", "BACKEND"],
    "badges": ["speed-demon", "thorough-reviewer", "team-player", "mentor"],
    "days": ["today", "tomorrow", "2026-03-12", "2026-03-20", "2026-03-10"],
}
PARAMETERS = {
    "path.user": "users",
    "path.team": "teams",
    "path.badge": "badges",
    "body.user": "users",
    "body.start": "days",
    "body.end": "days",
}


def config_file(folder: Path) -> Path:
    """schemathesis.toml: the dictionaries above, and the one check relaxed for POST
    /api/v1/ooo: a schema-valid period may still break the rules of ``/ooo`` (an unknown
    member, a day in the past, reversed days, an overlap, a date that does not exist:
    rules that depend on the data and the day, which JSON Schema cannot state), refused
    with the 400 the operation declares (and without the token, 401)."""
    lines = ["[warnings]", 'fail-on = ["missing_test_data"]', ""]
    for name, values in DICTIONARIES.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    for key, dictionary in PARAMETERS.items():
        lines.append(f'"{key}" = {{ dictionary = "{dictionary}", probability = 0.5 }}')
    lines += [
        "",
        "[[operations]]",
        'include-path = "/api/v1/ooo"',  # POST only (with include-method too, either matches)
        "checks.positive_data_acceptance.expected-statuses = [201, 400, 401]",
    ]
    path = folder / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def seed_badges(client: Client) -> None:
    """One award of the first badge of the catalogue (the defaults the area seeds) to
    alice, so the holders and the user's badges are not empty."""
    if "badges" not in areas(*ALL):
        return
    from plugins.badges.models import Badge, UserBadge

    async with client.app[CONTEXT].sessions.begin() as session:
        alice = await session.scalar(select(User).where(User.gitlab_username == "alice"))
        badge = (await session.scalars(select(Badge).order_by(Badge.id))).first()
        assert alice is not None and badge is not None, "the catalogue is seeded"
        session.add(
            UserBadge(
                user_id=alice.id,
                badge_id=badge.id,
                period="2026-W10",
                awarded_at=NOW - timedelta(days=1),
            )
        )


async def schemathesis(config: Path, *arguments: str) -> tuple[int, str]:
    """``st run`` with ``arguments``: its exit code and its output (stdout and stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "--config-file",
        str(config),
        "run",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=config.parent,  # its cache (.schemathesis/) goes there, not into the tree
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"schemathesis did not finish within {RUN_TIMEOUT} s") from None
    return process.returncode or 0, output.decode(errors="replace")


@pytest.mark.parametrize("token", [True, False], ids=["with-token", "without-token"])
async def test_every_answer_matches_the_document(
    migrated_url: URL, aiohttp_client: MakeClient, tmp_path: Path, token: bool
) -> None:
    client = await start(aiohttp_client, migrated_url, areas(*ALL))
    await seed_badges(client)
    document = await (await client.get("/api/v1/openapi.json")).json()
    url = str(client.make_url("/api/v1/openapi.json"))
    operations = [
        operation
        for path, methods in document["paths"].items()
        if path != "/api/v1/openapi.json"  # the document itself: st run leaves it out
        for operation in methods.values()
    ]
    if token:
        arguments = ["--header", f"Authorization: Bearer {TOKEN}", url]
        expected = len(operations)
    else:  # the operations that need the token, without it
        arguments = ["--include-path-regex", BEARER_ONLY, url]
        expected = sum(1 for operation in operations if operation.get("security"))
    code, output = await schemathesis(config_file(tmp_path), *arguments)
    assert code == 0, output
    assert f"Tested: {expected}" in output, output
    # Without the token, every request to these operations was refused (401), whatever
    # schemathesis sent; with it, some were let through.
    refused = f"Authentication failed: {expected} operations returned only 401/403"
    assert (refused in output) is not token, output
    assert expected >= (10 if token else 3), document["paths"].keys()


def test_the_documented_badge_vocabulary_is_the_badges_area_s() -> None:
    """The document repeats the badges area's metrics, operators and periods (it must not
    import an area that may be disabled): they stay the same."""
    from plugins.badges import config

    assert openapi.BADGE_METRICS == config.METRICS
    assert openapi.BADGE_OPERATORS == config.OPERATORS
    assert openapi.BADGE_PERIODS == config.PERIODS
