"""Turning a plan into what ``roulette-bot pick`` prints: text for people, JSON for tools."""

from __future__ import annotations

from typing import Any

from plugins.roulette.engine import Pool, Selection
from plugins.roulette.service import Plan

ROLE_NAMES: dict[str, str] = {
    "codeowner": "code owner",
    "team": "team member",
    "external": "external",
}
EMPTY_POOL: dict[Pool, str] = {
    "codeowner": "no available code owner for these files",
    "team": "no available member of the MR's team",
    "external": "no available reviewer outside the MR's team",
}
# The reasons ``pick --json`` may list under "unavailable" (a stable interface).
UNAVAILABLE_REASONS = ("author", "ooo", "busy", "away", "capacity", "inactive")


def _score(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def plan_json(plan: Plan, url: str) -> dict[str, Any]:
    """The object ``pick --json`` prints: mr, owners, reviewers, unavailable."""
    selection = plan.selection
    scores = {c.username: c.score for c in selection.candidates}
    return {
        "mr": url,
        "owners": sorted(selection.owners, key=str.lower),
        "reviewers": [
            {
                "username": p.username,
                "role": p.role,
                "score": _score(p.score if p.score is not None else scores.get(p.username)),
            }
            for p in selection.picks
        ],
        "unavailable": [
            {"username": e.username, "reason": e.reason}
            for e in selection.excluded
            if e.reason in UNAVAILABLE_REASONS
        ],
    }


def _explain(selection: Selection) -> list[str]:
    lines = ["", "Candidates (best first):"]
    if not selection.candidates:
        lines.append("  nobody is available")
    for c in selection.candidates:
        parts = ", ".join(
            f"{name.replace('_', ' ')} {value:+g}"
            for name, value in c.components.items()
            if name != "base" and value
        )
        pools = "/".join(ROLE_NAMES[p] for p in c.pools)
        detail = f" ({parts})" if parts else ""
        lines.append(f"  @{c.username:<20} {c.score:7.2f}  {pools}{detail}")
    if selection.excluded:
        lines += ["", "Not picked:"]
        lines += [f"  @{e.username:<20} {e.reason}: {e.detail}" for e in selection.excluded]
    return lines


def plan_text(plan: Plan, explain: bool = False) -> str:
    mr, selection = plan.mr, plan.selection
    header = f"{mr.project_path}!{mr.iid} “{mr.title}” by @{mr.author}"
    if plan.team:
        header += f" (team {plan.team})"
    lines = [header, f"{len(plan.changed_paths)} changed file(s)"]
    lines += [f"Note: {note}" for note in selection.notes + plan.problems]
    lines += ["", "Reviewers:"] if selection.picks else ["", "Nobody can review it now."]
    for p in selection.picks:
        role = ROLE_NAMES[p.role] + (" (extra)" if p.extra else "")
        state = "already a reviewer" if p.kept else f"score {p.score:.2f}"
        lines.append(
            f"  @{p.username:<20} {role:<18} {state:<20} {p.active_reviews} active review(s)"
        )
    lines += [f"  ({EMPTY_POOL[pool]})" for pool in selection.empty_pools]
    if selection.owners:
        lines += ["", "Code owners: " + ", ".join(f"@{o}" for o in selection.owners)]
    if explain:
        lines += _explain(selection)
        if plan.codeowners_path:
            lines.append(f"\nCODEOWNERS read from {plan.codeowners_path} on {mr.target_branch}")
    lines += [f"Warning: {w}" for w in plan.warnings]
    return "\n".join(lines)
