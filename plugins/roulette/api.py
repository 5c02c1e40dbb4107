"""What other feature areas may ask the roulette area: who can be picked now.

``availability`` lists everyone of the organisation as the roulette sees them (the
configured users, then those only stored: members read from GitLab groups and people who
left), by the selection engine's own rules (``engine.unavailability``, read through
``RouletteService.standings``) minus the ones that belong to one merge request (its
author, ``--exclude``): nothing here decides availability on its own. Nothing else of the
area is public.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.context import PluginContext
from bot.gitlab import MergeRequestRef
from bot.i18n import Message
from plugins.roulette import tracking
from plugins.roulette.config import RouletteConfig
from plugins.roulette.reply import find_handover, handover_note
from plugins.roulette.service import RouletteService, Standing
from plugins.roulette.worktime import next_at_work, working_seconds, working_window

__all__ = [
    "PersonAvailability",
    "availability",
    "next_at_work",
    "replace_reviewer",
    "working_seconds",
    "working_window",
]


log = logging.getLogger("plugins.roulette")

# How many of the MR's latest notes are searched for an earlier hand-over note.
RECENT_NOTES = 100


@dataclass(frozen=True)
class PersonAvailability:
    """One person, and whether the roulette could pick them now.

    ``role`` is ``maintainer``, ``reviewer`` or ``trainee``; ``team`` None for someone in
    no team. ``reason`` is None when available, else the engine's code: ``ooo`` (an
    out-of-office period today, in their timezone), ``busy`` (GitLab status busy),
    ``away`` (GitLab status message or emoji says so), ``capacity`` (active reviews >=
    ``max_active_reviews``) or ``inactive`` (no longer in the organisation). ``detail`` is
    the English explanation (``str(Message)``; e.g. "GitLab status is busy", "2 active
    reviews, at most 2", or for someone available "GitLab status check failed" when GitLab
    could not be asked), None when there is nothing to say. It never carries the reason
    someone gave for an absence.
    """

    username: str
    team: str | None
    role: str
    available: bool
    reason: str | None
    detail: str | None


def _entry(standing: Standing) -> PersonAvailability:
    person, exclusion = standing.person, standing.exclusion
    reason: str | None
    detail: Message | None
    if exclusion is not None:
        reason, detail = exclusion.reason, exclusion.detail
    else:  # available; "GitLab status check failed" when GitLab could not tell
        reason, detail = None, standing.availability.detail
    return PersonAvailability(
        username=person.username,
        team=person.team,
        role=person.role,
        available=exclusion is None,
        reason=reason,
        detail=str(detail) if detail is not None else None,
    )


def _order(entry: PersonAvailability) -> tuple[bool, str, str]:
    return (entry.team is None, (entry.team or "").casefold(), entry.username.casefold())


async def availability(app: PluginContext, now: datetime | None = None) -> list[PersonAvailability]:
    """Everyone of the organisation with whether they can be picked at ``now`` (aware;
    default: the current time), sorted by team (case-insensitive; people without a team
    last), then username.

    Out-of-office periods come from the ooo area when it is enabled; GitLab statuses from
    the roulette's cache (five minutes), else GitLab, one call per person at most (GitLab
    unreachable: available, with the detail "GitLab status check failed", as the engine
    counts them); without GitLab configured, statuses are not read. When the database
    cannot be read, the roulette's own fallback applies: the configured people only, with
    no load and no absences.
    """
    service = RouletteService(
        app.settings, app.sessions, app.cache, app.gitlab if app.has_gitlab else None
    )
    return sorted((_entry(s) for s in await service.standings(now)), key=_order)


async def replace_reviewer(
    app: PluginContext,
    project_path: str,
    iid: int,
    passer: str,
    *,
    reason: str,
    now: datetime | None = None,
) -> str | None:
    """Hand ``passer``'s review of the MR ``project_path!iid`` over to someone else.

    Re-rolls their one slot with the roulette's rules (``RouletteService.replacement``:
    the pool of their assignment's role, availability, load, scores), excluding ``passer``
    and everyone already picked on the MR (its current reviewers and every assignment
    recorded on it); with ``roulette.assign_in_gitlab`` sets the new reviewer in GitLab in
    place of the passer, keeping the others; posts ONE note on the MR naming the hand-over,
    ``reason`` (a short text, shown as given) and, when the new reviewer is not at work at
    ``now`` (aware; default: the current time), when they are back; records it: the
    passer's assignment ends as ``passed`` (neither load nor a review), the new one is
    active. Sends no direct message (the handover area does).

    Returns the new reviewer's GitLab username, or None when nobody in the pool is
    available (the note says so; the passer stays released) or the MR is no longer open
    (then nothing is done). Safe to retry: the note carries a marker naming the hand-over
    (the MR, the passer, their assignment) and who took it, so a retry after a crash
    re-applies what the note said instead of rolling again. GitLab errors
    (``bot.gitlab.GitLabError``) propagate.
    """
    now = now or datetime.now(UTC)
    gitlab = app.gitlab
    service = RouletteService(app.settings, app.sessions, app.cache, gitlab)
    ref = MergeRequestRef(project_path, iid)
    mr = await gitlab.merge_request(ref)
    if mr.state != "opened":
        log.info("hand-over of @%s on %s: the merge request is %s", passer, ref, mr.state)
        return None
    seats = await tracking.seats(app.sessions, mr.project_id, mr.iid)
    seat = next((s for s in reversed(seats) if s.username.lower() == passer.lower()), None)
    role = seat.role if seat is not None else "manual"
    since = seat.assigned_at.isoformat() if seat is not None else "-"
    key = f"handover:{mr.project_id}:{mr.iid}:{passer.lower()}:{since}"

    notes = await gitlab.recent_notes(mr.project_id, mr.iid, limit=RECENT_NOTES)
    earlier = find_handover([n.body for n in notes], key)
    if earlier is not None:
        log.info("hand-over of @%s on %s already announced; finishing its work", passer, ref)
        new, new_role = earlier.to, earlier.role
    else:
        exclude = [*mr.reviewers, *(s.username for s in seats)]
        replacement = await service.replacement(
            ref, passer, role, exclude, now=now, rng=random.Random(key)
        )
        pick = replacement.pick
        new = pick.username if pick is not None else None
        new_role = pick.role if pick is not None else role
        note = handover_note(
            replacement.plan, passer, pick, reason, key, role=new_role, locale=app.settings.locale
        )
        await gitlab.post_note(mr.project_id, mr.iid, note)

    kept = [r for r in mr.reviewers if r.lower() != passer.lower()]
    wanted = kept
    assign = RouletteConfig.of(app.settings).assign_in_gitlab
    if new is not None and assign and new.lower() not in {r.lower() for r in kept}:
        wanted = [*kept, new]
    if [r.lower() for r in wanted] != [r.lower() for r in mr.reviewers]:
        ids = await tracking.reviewer_ids(app.sessions, gitlab, wanted, mr)
        if set(ids) != set(mr.reviewer_ids):
            await gitlab.set_reviewers(mr.project_id, mr.iid, ids)
    team = service.team_of(mr, service.people())
    replacing = (new, new_role) if new is not None else None
    recorded = await tracking.record_handover(app.sessions, mr, team, passer, replacing)
    if recorded.missing:
        log.warning("hand-over to users missing from the database: %s", recorded.missing)
    log.info("hand-over on %s: @%s -> %s", ref, passer, f"@{new}" if new else "nobody")
    return new
