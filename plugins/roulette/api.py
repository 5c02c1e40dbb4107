"""What other feature areas may ask the roulette area: who can be picked now.

``availability`` lists everyone of the organisation as the roulette sees them (the
configured users, then those only stored: members read from GitLab groups and people who
left), by the selection engine's own rules (``engine.unavailability``, read through
``RouletteService.standings``) minus the ones that belong to one merge request (its
author, ``--exclude``): nothing here decides availability on its own. Nothing else of the
area is public.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.context import PluginContext
from bot.i18n import Message
from plugins.roulette.service import RouletteService, Standing
from plugins.roulette.worktime import next_at_work, working_seconds, working_window

__all__ = [
    "PersonAvailability",
    "availability",
    "next_at_work",
    "working_seconds",
    "working_window",
]


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
