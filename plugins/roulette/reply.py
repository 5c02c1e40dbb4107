"""The note the bot posts on a merge request, and the invisible marker inside it.

Every reply carries an HTML comment naming the delivery it answers and the reviewers it
announced, so that a worker retrying a delivery can tell the note is already there (and
what it said) instead of posting it twice.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import cast

from bot.i18n import Gettext, Message, environment, translator
from plugins.roulette.chat import (
    component_name,
    empty_pool,
    exclusion_line,
    pick_back,
    pick_marks,
    role_name,
)
from plugins.roulette.engine import Pick, Pool
from plugins.roulette.flags import USAGE
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


def _details(components: dict[str, float], _: Gettext) -> str:
    """ "active review -10, working hours +3": each component but the base, named in
    ``_``'s language; the numbers as they are."""
    parts = [f"{component_name(k, _)} {v:+g}" for k, v in components.items() if k != "base" and v]
    return ", ".join(parts) or "-"


def reply_note(plan: Plan, key: str, *, explain: bool, locale: str) -> str:
    """The note answering a ``/roulette``, in ``locale`` (GitLab has no per-user locale)."""
    selection = plan.selection
    _ = translator(locale)
    context = {
        "t": _,
        "role": lambda role: role_name(role, _),
        "marks": lambda pick: pick_marks(pick, _),
        "back": lambda pick: pick_back(plan, pick, _),
        "empty": lambda pool: empty_pool(pool, _),
        "team": plan.team,
        "picks": selection.picks,
        "empty_pools": selection.empty_pools,
        "draft": plan.mr.draft,
        "notes": [n for n in selection.notes if "draft" not in n] + list(plan.problems),
        "explain": explain,
        "marker": marker(key, selection.picks),
    }
    if explain:  # the table is made only when shown: each candidate's line is translated
        context |= {
            "candidates": [
                {
                    "username": c.username,
                    "score": c.score,
                    "pools": ", ".join(role_name(p, _) for p in c.pools),
                    "details": _details(dict(c.components), _),
                }
                for c in selection.candidates
            ],
            "excluded": [exclusion_line(f"@{e.username}", e, _) for e in selection.excluded],
            "owners": ", ".join(f"@{o}" for o in selection.owners),
            "warnings": plan.warnings,
        }
    template = environment("plugins.roulette").get_template("reply.md.j2")
    return template.render(context).strip() + "\n"


def help_note(key: str, locale: str) -> str:
    _ = translator(locale)
    return (
        "\n".join(
            [
                _(
                    "**Reviewer roulette** picks reviewers for this merge request: one code "
                    "owner of the changed files, one member of its team and one from another "
                    "team, weighing their current load and availability."
                ),
                "",
                _("Usage: `{usage}`", usage=USAGE),
                "",
                _("- `--explain`: every candidate's score and why"),
                _("- `--force`: ignore recent reviews and the reviewers already set"),
                _("- `--include @user` / `--exclude @user`: ask for / leave out someone"),
                _("- `--no-codeowner`: no code-owner slot"),
                _("- `reroll`: replace the reviewers who have not answered yet"),
                "",
                marker(key),
            ]
        )
        + "\n"
    )


def error_note(reason: str | Message, key: str, locale: str) -> str:
    """The note answering a ``/roulette`` that could not run: ``reason`` in ``locale``."""
    _ = translator(locale)
    return (
        "\n".join(
            [
                _(
                    ":warning: **Reviewer roulette** could not run: {reason}",
                    reason=_.render(reason),
                ),
                "",
                _("Usage: `{usage}`", usage=USAGE),
                "",
                marker(key),
            ]
        )
        + "\n"
    )


def ended_note(state: str, key: str, locale: str) -> str:
    """The short note answering ``/roulette`` on a merge request that is not open:
    ``state`` is GitLab's (``merged``, ``closed``, or ``locked`` while being merged)."""
    _ = translator(locale)
    if state == "closed":
        text = _(
            ":information_source: **Reviewer roulette**: this merge request is closed, "
            "so nobody was assigned. Reopen it first."
        )
    else:
        text = _(
            ":information_source: **Reviewer roulette**: this merge request is already "
            "merged, so nobody was assigned."
        )
    return f"{text}\n\n{marker(key)}\n"


# A hand-over note's marker: the hand-over it records (a hash of the MR, the passer and
# their assignment), who took the slot ("-" for nobody) and the slot's role.
_HANDOVER = re.compile(
    r"<!-- roulette-bot handover=([0-9a-f]{32}) to=([A-Za-z0-9_.\-]+) role=([a-z]+) -->"
)


@dataclass(frozen=True)
class HandedOver:
    """What an earlier hand-over note said: the new reviewer (None: nobody) and the role."""

    to: str | None
    role: str


def handover_marker(key: str, to: str | None, role: str) -> str:
    """The invisible marker of the hand-over ``key`` (see ``find_handover``)."""
    return f"{MARKER_PREFIX} handover={delivery_tag(key)} to={to or '-'} role={role} -->"


def find_handover(bodies: list[str], key: str) -> HandedOver | None:
    """The earlier note of the hand-over ``key`` among ``bodies``, if one was posted."""
    tag = delivery_tag(key)
    for body in bodies:
        for found in _HANDOVER.finditer(body):
            if found.group(1) == tag:
                to = found.group(2)
                return HandedOver(None if to == "-" else to, found.group(3))
    return None


def handover_note(
    plan: Plan,
    passer: str,
    pick: Pick | None,
    reason: str,
    key: str,
    *,
    role: str,
    locale: str,
) -> str:
    """The one note telling the MR that ``passer`` handed their review over, in ``locale``:
    to whom (``pick``, with their role, load and when they are back at work if not now),
    or that nobody else is available; then ``reason`` (a short text as the caller words
    it: the passer's own reason, or why the bot handed over), and the marker."""
    _ = translator(locale)
    if pick is not None:
        line = _.ngettext(
            ":arrows_counterclockwise: **Reviewer roulette**: @{passer} handed this review "
            "over to @{name} ({role}, {count} active review).",
            ":arrows_counterclockwise: **Reviewer roulette**: @{passer} handed this review "
            "over to @{name} ({role}, {count} active reviews).",
            pick.active_reviews,
            passer=passer,
            name=pick.username,
            role=role_name(pick.role, _),
            count=pick.active_reviews,
        )
        back = pick_back(plan, pick, _)
        if back:
            line = f"{line[:-1]} — {back}."
    else:
        line = _(
            ":warning: **Reviewer roulette**: @{passer} handed this review over, but nobody "
            "else is available to take it right now.",
            passer=passer,
        )
    lines = [line]
    if reason.strip():
        lines += ["", _("Reason: {reason}", reason=" ".join(reason.split())[:500])]
    lines += ["", handover_marker(key, pick.username if pick else None, role)]
    return "\n".join(lines) + "\n"
