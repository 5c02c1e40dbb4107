"""Benchmark: how fast bad input is refused, and that none of it is a 5xx.

    python -m benchmarks.fuzz [--seconds 20] [--database-url URL] [--seed S] [--json PATH]

The real app (``create_app``, every area enabled) serves on a localhost port against a
freshly migrated database (a temporary SQLite file, or a throwaway PostgreSQL schema).
A seeded mutator takes a real GitLab Note Hook and a real Mattermost slash-command form
and damages them the ways the input tests name: bytes flipped, inserted, deleted or cut
off (invalid UTF-8 included), and values swapped for ``NaN``, ``\\u0000``, a lone
surrogate, a 70-bit integer, 100-deep nesting, a key given twice, a wrong type. Eight
senders post them to ``/webhook/gitlab`` and ``/mattermost/command`` for ``--seconds``.

Prints the fuzz rate (inputs checked per second) next to a baseline measured in the
same run on the same connections: the rate of the same endpoints with the unmutated
inputs. Also the answers by status, and ``GET /health`` after the run. Target: no 5xx,
no dropped connection, health still 200. Exits non-zero on FAIL.
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
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from benchmarks.arguments import positive_seconds
from benchmarks.webhooks import (
    SECRET,
    organisation,
    spool_setting,
    temporary_database,
    temporary_spool,
)
from bot.app import create_app
from bot.http import CONTEXT
from bot.logs import configure_logging
from bot.sandbox.mattermost import MattermostStandIn
from bot.sandbox.mattermost import serve as serve_mattermost
from bot.settings import Settings
from bot.users import sync_organisation

SENDERS = 8
COMMAND_TOKEN = "fuzz-command-token"  # noqa: S105 - the benchmark's own token

NOTE: dict[str, Any] = {
    "object_kind": "note",
    "event_type": "note",
    "user": {"id": 7, "name": "Bob", "username": "backend02", "email": "[REDACTED]"},
    "project_id": 3,
    "project": {"id": 3, "name": "shop", "path_with_namespace": "acme/shop"},
    "object_attributes": {
        "id": 1234,
        "note": "/roulette --explain",
        "noteable_type": "MergeRequest",
        "author_id": 7,
        "created_at": "2026-11-30 09:00:00 UTC",
        "updated_at": "2026-11-30 09:00:00 UTC",
        "project_id": 3,
        "system": False,
        "action": "create",
        "url": "http://gitlab.test/acme/shop/-/merge_requests/1#note_1234",
    },
    "merge_request": {"id": 99, "iid": 1, "target_branch": "main", "title": "Checkout"},
}
FORM = {
    "channel_id": "c" * 26,
    "channel_name": "reviews",
    "command": "/roulette",
    "response_url": "http://127.0.0.1:9/hooks/commands/x",
    "team_domain": "acme",
    "team_id": "t" * 26,
    "text": "help",
    "token": COMMAND_TOKEN,
    "trigger_id": "trigger",
    "user_id": "",  # the stand-in's id of backend02, set at the start
    "user_name": "backend02",
}
BAD_VALUES: tuple[Callable[[], Any], ...] = (
    lambda: float("nan"),
    lambda: "\u0000",
    lambda: "\ud800",
    lambda: 2**70,
    lambda: json.loads("[" * 100 + "]" * 100),
    lambda: {"a": [1, {"b": None}]},
    lambda: 12,
    lambda: None,
    lambda: "x" * 5000,
)


class Mutator:
    """Damaged copies of a JSON payload or a form, from one seeded random stream."""

    def __init__(self, seed: int, form: dict[str, str]) -> None:
        self.rng = random.Random(seed)
        self.valid_form = form

    def note(self) -> bytes:
        if self.rng.random() < 0.5:
            return self.damage(json.dumps(NOTE).encode())
        payload = json.loads(json.dumps(NOTE))
        target = payload
        keys = [k for k in target if isinstance(target[k], dict)]
        if keys and self.rng.random() < 0.6:
            target = target[self.rng.choice(keys)]
        key = self.rng.choice(list(target))
        if self.rng.random() < 0.15:  # a key given twice
            text = json.dumps(payload)
            return text.replace("{", '{"object_kind": "note", ', 1).encode()
        target[key] = self.rng.choice(BAD_VALUES)()
        return json.dumps(payload, allow_nan=True).encode("utf-8", "surrogatepass")

    def form(self) -> bytes:
        form = dict(self.valid_form)
        if self.rng.random() < 0.5:
            return self.damage(urlencode(form).encode())
        key = self.rng.choice(list(form))
        form[key] = self.rng.choice(("%00", "\u0000", "x" * 5000, "", "é" * 10, "\ud800"))
        text = urlencode(form, errors="surrogatepass")
        if self.rng.random() < 0.2:  # a field twice
            text += f"&{key}=again"
        return text.encode()

    def damage(self, data: bytes) -> bytes:
        raw = bytearray(data)
        for _ in range(self.rng.randint(1, 4)):
            if not raw:
                break
            at = self.rng.randrange(len(raw))
            action = self.rng.randrange(4)
            if action == 0:
                raw[at] ^= 1 << self.rng.randrange(8)
            elif action == 1:
                raw.insert(at, self.rng.randrange(256))
            elif action == 2:
                del raw[at]
            else:
                del raw[at:]
        return bytes(raw)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    teams, users = organisation()
    mm = MattermostStandIn()  # slash commands need a Mattermost to answer through
    for user in users:
        mm.add_user(user["gitlab"])
    mm.add_team("acme", members=["roulette-bot", *(u["gitlab"] for u in users)])
    form = FORM | {"user_id": mm.user("backend02")["id"]}
    with temporary_database(args.database_url) as (url, database), temporary_spool() as spool:
        async with serve_mattermost(mm) as mattermost_url:
            settings = Settings(
                database_url=url.render_as_string(hide_password=False),
                teams=teams,
                users=users,
                gitlab_webhook_secret=SECRET,
                mattermost_url=mattermost_url,
                mattermost_token=mm.bot_token,
                mattermost_team="acme",
                mattermost_command_tokens=[COMMAND_TOKEN],
                webhook_workers=0,  # the intake alone: nothing stored is processed
                shutdown_timeout=5,
                **spool_setting(spool),
            )
            runner = web.AppRunner(create_app(settings), access_log=None, handle_signals=False)
            await runner.setup()
            try:
                context = runner.app[CONTEXT]
                await sync_organisation(context.sessions, settings)
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                base = f"http://127.0.0.1:{runner.addresses[0][1]}"
                valid = Mutator(args.seed, form)
                baseline = await hammer(base, args.seconds / 4, valid, mutate=False)
                fuzzed = await hammer(base, args.seconds, Mutator(args.seed, form), mutate=True)
                async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as health:
                    healthy = health.status == 200
            finally:
                await runner.cleanup()
    return {"database": database, "baseline": baseline, "fuzzed": fuzzed, "healthy": healthy}


async def hammer(base: str, seconds: float, mutator: Mutator, *, mutate: bool) -> dict[str, Any]:
    """``SENDERS`` senders posting for ``seconds``: inputs sent, per second, statuses."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    sent = 0

    async def sender(http: aiohttp.ClientSession) -> None:
        nonlocal sent
        n = 0
        while time.monotonic() < deadline:
            n += 1
            if n % 2:
                body = mutator.note() if mutate else json.dumps(NOTE).encode()
                headers = {
                    "X-Gitlab-Event": "Note Hook",
                    "X-Gitlab-Token": SECRET,
                    "Content-Type": "application/json",
                    "Idempotency-Key": str(uuid.uuid4()),
                }
                target = f"{base}/webhook/gitlab"
            else:
                body = mutator.form() if mutate else urlencode(mutator.valid_form).encode()
                headers = {"Content-Type": "application/x-www-form-urlencoded"}
                target = f"{base}/mattermost/command"
            try:
                async with http.post(target, data=body, headers=headers) as response:
                    await response.read()
                    statuses[response.status] += 1
            except aiohttp.ClientError:
                statuses[0] += 1  # a dropped connection: counted, and fails the run
            sent += 1

    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await asyncio.gather(*(sender(http) for _ in range(SENDERS)))
    elapsed = time.monotonic() - started
    return {"inputs": sent, "per_s": sent / elapsed, "statuses": dict(sorted(statuses.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=positive_seconds, default=20.0, help="how long to fuzz")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a temp SQLite file)")
    parser.add_argument("--seed", type=int, default=20_261_130)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as one JSON object")
    args = parser.parse_args()
    # Thousands of refusals are logged at info and warning: errors only, through the
    # bot's own logging (which drops the errors a client library logs before raising).
    configure_logging("error", "console")
    result = asyncio.run(run(args))
    base, fuzz = result["baseline"], result["fuzzed"]
    server_errors = sum(n for status, n in fuzz["statuses"].items() if status >= 500 or not status)
    ok = server_errors == 0 and result["healthy"]
    print(f"database:  {result['database']}")
    print(
        f"baseline:  {base['per_s']:7.0f} valid inputs/s ({base['inputs']} sent,"
        f" statuses {base['statuses']})"
    )
    print(
        f"fuzz rate: {fuzz['per_s']:7.0f} damaged inputs/s ({fuzz['inputs']} sent,"
        f" {fuzz['per_s'] / base['per_s']:.2f}x the baseline), statuses {fuzz['statuses']}"
    )
    print(f"5xx or dropped: {server_errors} (want 0); /health after: {result['healthy']}")
    print("PASS" if ok else "FAIL")
    if args.json:
        figures = {
            "database": result["database"],
            "baseline_per_s": round(base["per_s"], 1),
            "fuzz_per_s": round(fuzz["per_s"], 1),
            "fuzz_inputs": fuzz["inputs"],
            "statuses": fuzz["statuses"],
            "server_errors": server_errors,
            "pass": ok,
        }
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=2)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
