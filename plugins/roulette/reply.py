"""The note the bot posts on a merge request, and the invisible marker inside it.

Every reply carries an HTML comment naming the delivery it answers and the reviewers it
announced, so that a worker retrying a delivery can tell the note is already there (and
what it said) instead of posting it twice.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from typing import cast

import jinja2

from plugins.roulette.engine import Pick, Pool
from plugins.roulette.flags import USAGE
from plugins.roulette.render import EMPTY_POOL, ROLE_NAMES
from plugins.roulette.service import Plan

MARKER_PREFIX = "<!-- roulette-bot"
_MARKER = re.compile(r"<!-- roulette-bot delivery=([0-9a-f]{32})(?: picks=([^ ]*))? -->")
_PICK = re.compile(r"([A-Za-z0-9_.\-]+):(codeowner|team|external)")


@dataclass(frozen=True)
class Announced:
    """What an earlier reply to the same delivery said."""

    picks: tuple[tuple[str, Pool], ...]


def delivery_tag(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def marker(key: str, picks: tuple[Pick, ...] = ()) -> str:
    listed = ",".join(f"{p.username}:{p.role}" for p in picks)
    return f"{MARKER_PREFIX} delivery={delivery_tag(key)} picks={listed} -->"


def find_reply(bodies: list[str], key: str) -> Announced | None:
    """The earlier reply to delivery ``key`` among ``bodies``, if one was posted."""
    tag = delivery_tag(key)
    for body in bodies:
        for found in _MARKER.finditer(body):
            if found.group(1) == tag:
                picks: list[tuple[str, Pool]] = []
                for m in _PICK.finditer(found.group(2) or ""):
                    role = m.group(2)
                    if role in ("codeowner", "team", "external"):
                        picks.append((m.group(1), cast(Pool, role)))
                return Announced(tuple(picks))
    return None


def is_bot_reply(body: str) -> bool:
    return MARKER_PREFIX in body


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("plugins.roulette", "templates"),
        autoescape=False,  # noqa: S701 - GitLab markdown, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )


def _details(components: dict[str, float]) -> str:
    parts = [f"{k.replace('_', ' ')} {v:+g}" for k, v in components.items() if k != "base" and v]
    return ", ".join(parts) or "-"


def reply_note(plan: Plan, key: str, *, explain: bool) -> str:
    selection = plan.selection
    draft = any("draft" in note for note in selection.notes)
    context = {
        "team": plan.team,
        "picks": selection.picks,
        "role_names": ROLE_NAMES,
        "empty_pools": selection.empty_pools,
        "empty_texts": EMPTY_POOL,
        "notes": {
            "draft": draft,
            "other": [n for n in selection.notes if "draft" not in n] + list(plan.problems),
        },
        "explain": explain,
        "candidates": [
            {
                "username": c.username,
                "score": c.score,
                "pools": ", ".join(ROLE_NAMES[p] for p in c.pools),
                "details": _details(dict(c.components)),
            }
            for c in selection.candidates
        ],
        "excluded": selection.excluded,
        "owners": ", ".join(f"@{o}" for o in selection.owners),
        "warnings": plan.warnings,
        "marker": marker(key, selection.picks),
    }
    return _environment().get_template("reply.md.j2").render(context).strip() + "\n"


def help_note(key: str) -> str:
    return (
        "**Reviewer roulette** picks reviewers for this merge request: one code owner of "
        "the changed files, one member of its team and one from another team, weighing "
        "their current load and availability.\n\n"
        f"Usage: `{USAGE}`\n\n"
        "- `--explain`: every candidate's score and why\n"
        "- `--force`: ignore recent reviews and the reviewers already set\n"
        "- `--include @user` / `--exclude @user`: ask for / leave out someone\n"
        "- `--no-codeowner`: no code-owner slot\n"
        "- `reroll`: replace the reviewers who have not answered yet\n\n"
        f"{marker(key)}\n"
    )


def error_note(reason: str, key: str) -> str:
    return (
        f":warning: **Reviewer roulette** could not run: {reason}\n\n"
        f"Usage: `{USAGE}`\n\n{marker(key)}\n"
    )
