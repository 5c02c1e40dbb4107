"""The selection engine: who reviews this MR, and why. Pure: no I/O, no clock, no globals.

``select`` takes a snapshot of the facts (the organisation, the MR, each person's
availability and load) and returns the picks with a full explanation. The service
gathers the facts; the simulator feeds synthetic ones; both call this same function.

Score: ``100 - active * w.active_review - (recent ? w.recent_review : 0)
+ (owns a changed file ? w.expertise : 0)``, plus a working-hours bonus. Picking fills
one slot per pool in order (code owner, team member, external) with a random choice
among the candidates within ``margin`` of the pool's best score, so equals share load.

Trainees (``trainees: extra``, the default) are never one of those picks: one trainee of
the MR's own team may come beside them, load-balanced like everyone (see ``_extra_trainee``):
only on a share of rolls (``trainee_share``, drawn from the roll's ``rng``), only while the
trainee's active load is not above the median of their team's available regular reviewers
(nor the team's highest while a colleague is free), and the least loaded trainee first.
An MR without a team, or whose team has no trainee available, gets none.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from bot.i18n import Message

Pool = Literal["codeowner", "team", "external"]
Reason = Literal[
    "author", "inactive", "ooo", "busy", "away", "capacity", "excluded", "rerolled", "trainee"
]
POOLS: tuple[Pool, ...] = ("codeowner", "team", "external")
BASE_SCORE = 100.0
UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class Person:
    """A member of the organisation, as the engine needs to know them."""

    username: str
    team: str | None = None
    role: str = "reviewer"  # maintainer | reviewer | trainee
    timezone: str | None = None
    max_active_reviews: int | None = None
    active: bool = True


@dataclass(frozen=True)
class Availability:
    """What the outside world says about a person today.

    ``detail`` says why, for the reader (``--explain``), as a ``Message`` rendered in the
    reader's language (e.g. "GitLab status emoji :palm_tree:", "GitLab status check
    failed"); None when there is nothing to say. It never carries the reason a person
    typed for an absence.
    """

    ooo: bool = False
    status: Literal["available", "busy", "away", "unknown"] = "available"
    detail: Message | None = None


AVAILABLE = Availability()  # whoever nothing is known of (immutable: shared)


@dataclass(frozen=True)
class MergeRequestFacts:
    author: str
    team: str | None  # the MR's team: by label, else the author's team
    draft: bool = False
    owners: frozenset[str] = frozenset()  # usernames owning at least one changed file
    current_reviewers: tuple[str, ...] = ()
    responded: frozenset[str] = frozenset()  # current reviewers who already answered


@dataclass(frozen=True)
class Weights:
    active_review: float = 10.0
    recent_review: float = 5.0
    expertise: float = 2.0
    working_hours: float = 3.0


@dataclass(frozen=True)
class Options:
    reviewers: int = 3
    weights: Weights = Weights()
    margin: float = 0.0  # candidates within this much of the best score are equals
    working_hours: tuple[int, int] = (9, 18)  # local [start, end) hours
    trainees: Literal["extra", "regular", "off"] = "extra"
    # With ``trainees: extra``: the share of rolls (0..1) on which a trainee may be added.
    trainee_share: float = 0.5
    force: bool = False
    reroll: bool = False
    no_codeowner: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Load:
    active: Mapping[str, int] = field(default_factory=dict)  # open assignments per user
    recent: frozenset[str] = frozenset()  # assigned in the last 24 h


@dataclass(frozen=True)
class Candidate:
    username: str
    pools: tuple[Pool, ...]
    active_reviews: int
    components: Mapping[str, float]  # base, active_review, recent_review, expertise, working_hours
    # The sum of the components, worked out once: a roll compares scores often.
    score: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "score", sum(self.components.values()))


@dataclass(frozen=True)
class Exclusion:
    """Why ``username`` cannot be picked: ``reason`` is a stable code (``pick --json``'s
    "reason"), ``detail`` the explanation shown by ``--explain``, a ``Message``
    rendered in the reader's language (``str(detail)`` is English, for the command line).
    """

    username: str
    reason: Reason
    detail: Message


@dataclass(frozen=True)
class Pick:
    username: str
    role: Pool
    score: float | None  # None for reviewers kept as they were set on the MR
    active_reviews: int
    kept: bool = False  # already a reviewer of the MR, kept in its slot
    extra: bool = False  # a trainee added beyond the configured count
    included: bool = False  # asked for with --include


@dataclass(frozen=True)
class Selection:
    picks: tuple[Pick, ...]
    candidates: tuple[Candidate, ...]  # every eligible person, best first
    excluded: tuple[Exclusion, ...]  # everyone who could not be picked, with why
    empty_pools: tuple[Pool, ...]  # slots left empty: nobody available in that pool
    owners: tuple[str, ...]  # every code owner of the changed files, sorted
    notes: tuple[str, ...]  # user-facing remarks (draft, include refused, ...)

    @property
    def reviewers(self) -> tuple[str, ...]:
        return tuple(p.username for p in self.picks)


# --------------------------------------------------------------------------- availability


def unavailability(
    person: Person,
    mr: MergeRequestFacts,
    availability: Availability,
    active_reviews: int,
) -> Exclusion | None:
    """Why ``person`` can never be picked for ``mr`` right now, or None."""
    name = person.username
    if name.lower() == mr.author.lower():
        return Exclusion(name, "author", Message("wrote this merge request"))
    if not person.active:
        return Exclusion(name, "inactive", Message("no longer in the organisation"))
    if availability.ooo:
        return Exclusion(name, "ooo", availability.detail or Message("out of office today"))
    if availability.status == "busy":
        return Exclusion(name, "busy", availability.detail or Message("GitLab status is busy"))
    if availability.status == "away":
        return Exclusion(name, "away", availability.detail or Message("GitLab status says away"))
    cap = person.max_active_reviews
    if cap is not None and active_reviews >= cap:
        return Exclusion(name, "capacity", at_capacity(active_reviews, cap))
    return None


def at_capacity(active_reviews: int, capacity: int) -> Message:
    """The ``capacity`` detail: "3 active reviews, at most 3", its count in the
    reader's plural form (``ngettext``)."""
    return Message(
        "{count} active review, at most {capacity}",
        {"count": active_reviews, "capacity": capacity},
        plural="{count} active reviews, at most {capacity}",
        count=active_reviews,
    )


def in_working_hours(timezone: str | None, now: datetime, hours: tuple[int, int]) -> bool:
    """Whether it is a weekday within ``hours`` where ``timezone`` (UTC when None) is."""
    local = now.astimezone(ZoneInfo(timezone) if timezone else UTC)
    start, end = hours
    return local.weekday() < 5 and start <= local.hour < end


# --------------------------------------------------------------------------- scoring


def score_components(
    person: Person,
    *,
    active_reviews: int,
    recent: bool,
    owner: bool,
    working: bool,
    options: Options,
) -> dict[str, float]:
    w = options.weights
    return {
        "base": BASE_SCORE,
        "active_review": -active_reviews * w.active_review,
        "recent_review": -w.recent_review if recent and not options.force else 0.0,
        "expertise": w.expertise if owner else 0.0,
        "working_hours": w.working_hours if working else 0.0,
    }


def pools_of(person: Person, mr: MergeRequestFacts, owners: frozenset[str]) -> tuple[Pool, ...]:
    """The pools ``person`` counts in for ``mr``: ``codeowner`` first when their name
    (lower-cased) is in ``owners``, then ``team`` (the MR's team, any case) or
    ``external``."""
    team, mr_team = person.team, mr.team
    same_team = team is not None and mr_team is not None and team.lower() == mr_team.lower()
    return _POOLS[person.username.lower() in owners, same_team]


# (a code owner, of the MR's team) -> pools_of's answer (tuples made once)
_POOLS: dict[tuple[bool, bool], tuple[Pool, ...]] = {
    (True, True): ("codeowner", "team"),
    (True, False): ("codeowner", "external"),
    (False, True): ("team",),
    (False, False): ("external",),
}


def choose(candidates: Sequence[Candidate], margin: float, rng: random.Random) -> Candidate | None:
    """A random candidate among those within ``margin`` of the best score."""
    if not candidates:
        return None
    best = max(c.score for c in candidates)
    equals = [c for c in candidates if c.score >= best - margin - 1e-9]
    return rng.choice(equals)


# --------------------------------------------------------------------------- selection


def _slots(options: Options) -> list[Pool | None]:
    order: list[Pool] = [p for p in POOLS if not (p == "codeowner" and options.no_codeowner)]
    slots: list[Pool | None] = list(order[: options.reviewers])
    slots += [None] * (options.reviewers - len(slots))  # beyond one per pool: anyone
    return slots


def _role_of(candidate: Candidate, options: Options) -> Pool:
    """The pool a candidate picked outside a slot of its own counts for."""
    pools = [p for p in candidate.pools if not (p == "codeowner" and options.no_codeowner)]
    return pools[0]


def _lower(names: Iterable[str]) -> set[str]:
    return {n.lower().removeprefix("@") for n in names}


def _extra_trainee(
    trainees: Sequence[Candidate],
    regulars: Sequence[Candidate],
    options: Options,
    rng: random.Random,
) -> Candidate | None:
    """The trainee to add beside the regular picks (``trainees: extra``), or None.

    ``trainees`` are the available trainees not picked yet, ``regulars`` every available
    regular candidate (picked or not), both scored on their load before this roll. Only a
    trainee of the MR's team qualifies (the "team" pool; none when the MR has no team).
    When one does, one draw of ``rng`` decides whether this roll takes a trainee at all
    (probability ``options.trainee_share``). The active loads (open reviews) of the team's
    available regular reviewers (of every available regular reviewer when the team has
    none) are the yardstick: a trainee is skipped when their load is above the median, or
    when they already hold the highest load while a colleague holds none, so a trainee never
    carries more than a typical colleague. Among those left, the best score wins, at random
    among equals (``options.margin``).
    """
    own_team = [c for c in trainees if "team" in c.pools]
    if not own_team or rng.random() >= options.trainee_share:
        return None
    team_loads = [c.active_reviews for c in regulars if "team" in c.pools]
    loads = team_loads or [c.active_reviews for c in regulars] or [0]
    median, highest, someone_free = statistics.median(loads), max(loads), min(loads) == 0

    def balanced(trainee: Candidate) -> bool:
        load = trainee.active_reviews
        return load <= median and not (load > 0 and load >= highest and someone_free)

    return choose([c for c in own_team if balanced(c)], options.margin, rng)


def select(
    mr: MergeRequestFacts,
    people: Sequence[Person],
    availability: Mapping[str, Availability],
    load: Load,
    options: Options,
    rng: random.Random,
    now: datetime,
) -> Selection:
    """Pick the reviewers of ``mr``. Deterministic for a given ``rng`` state."""
    owners = frozenset(o.lower() for o in mr.owners)
    excluded_names = _lower(options.exclude)
    current = list(dict.fromkeys(mr.current_reviewers))
    responded = _lower(mr.responded)
    notes: list[str] = []
    if mr.draft:
        notes.append("This merge request is still a draft.")

    # Who stays: reviewers already on the MR fill their slots, unless --force; with
    # reroll only those who already answered stay, the others are replaced.
    kept_names: list[str] = []
    rerolled: set[str] = set()
    if options.reroll:
        kept_names = [r for r in current if r.lower() in responded]
        rerolled = {r.lower() for r in current if r.lower() not in responded}
    elif not options.force:
        kept_names = current

    by_name = {p.username.lower(): p for p in people} if kept_names else {}
    zones: dict[str | None, bool] = {}

    def working(timezone: str | None) -> bool:
        if timezone not in zones:
            zones[timezone] = in_working_hours(timezone, now, options.working_hours)
        return zones[timezone]

    excluded: list[Exclusion] = []
    # (lower-cased username, candidate)
    eligible: list[tuple[str, Candidate]] = []
    trainees: list[tuple[str, Candidate]] = []
    for person in people:
        key = person.username.lower()
        active_reviews = load.active.get(person.username, 0)
        facts = availability.get(person.username, AVAILABLE)
        reason = unavailability(person, mr, facts, active_reviews)
        if reason is None and key in excluded_names:
            reason = Exclusion(person.username, "excluded", Message("excluded with --exclude"))
        if reason is None and key in rerolled:
            reason = Exclusion(person.username, "rerolled", Message("has not answered; replaced"))
        if reason is None and person.role == "trainee" and options.trainees == "off":
            reason = Exclusion(person.username, "trainee", Message("trainees are not picked"))
        if reason is not None:
            excluded.append(reason)
            continue
        is_owner = key in owners
        candidate = Candidate(
            username=person.username,
            pools=pools_of(person, mr, owners),
            active_reviews=active_reviews,
            components=score_components(
                person,
                active_reviews=active_reviews,
                recent=person.username in load.recent,
                owner=is_owner,
                working=working(person.timezone),
                options=options,
            ),
        )
        if facts.status == "unknown" and facts.detail is not None:
            notes.append(f"@{person.username}: {facts.detail}; counted as available.")
        if person.role == "trainee" and options.trainees == "extra":
            trainees.append((key, candidate))
        else:
            eligible.append((key, candidate))

    picks: list[Pick] = []
    taken: set[str] = set()
    slots = _slots(options)

    def occupy(name: str, role: Pool) -> None:
        taken.add(name.lower())
        if role in slots:
            slots.remove(role)
        elif None in slots:
            slots.remove(None)
        elif slots:
            slots.pop()  # the least important slot left

    kept_trainee = False
    for name in kept_names:
        person = by_name.get(name.lower(), Person(name))
        pools = pools_of(person, mr, owners)
        active_reviews = load.active.get(person.username, 0)
        if person.role == "trainee" and options.trainees == "extra":
            # The extra trainee set by an earlier roll stays the extra trainee.
            role: Pool = "team" if "team" in pools else pools[-1]
            picks.append(Pick(person.username, role, None, active_reviews, kept=True, extra=True))
            taken.add(person.username.lower())
            kept_trainee = True
            continue
        if sum(not p.extra for p in picks) >= options.reviewers:
            continue
        picks.append(Pick(person.username, pools[0], None, active_reviews, kept=True))
        occupy(person.username, pools[0])

    pool_of = dict(eligible + trainees)
    for name in options.include:
        key = name.lower().removeprefix("@")
        if key in taken or sum(not p.extra for p in picks) >= options.reviewers:
            continue
        wanted = pool_of.get(key)
        if wanted is None:
            why = next((e for e in excluded if e.username.lower() == key), None)
            because = f"{why.reason}: {why.detail}" if why else "not in the organisation"
            notes.append(f"@{key} cannot be included ({because}).")
            continue
        role = next((p for p in wanted.pools if p in slots), _role_of(wanted, options))
        picks.append(
            Pick(wanted.username, role, wanted.score, wanted.active_reviews, included=True)
        )
        occupy(wanted.username, role)

    empty: list[Pool] = []
    for slot in list(slots):
        pool = [c for key, c in eligible if key not in taken and (slot is None or slot in c.pools)]
        chosen = choose(pool, options.margin, rng)
        if chosen is None:
            if slot is not None:
                empty.append(slot)
            continue
        role = slot or _role_of(chosen, options)
        picks.append(Pick(chosen.username, role, chosen.score, chosen.active_reviews))
        taken.add(chosen.username.lower())

    if options.trainees == "extra" and not kept_trainee:
        trainee = _extra_trainee(
            [c for key, c in trainees if key not in taken],
            [c for _, c in eligible],
            options,
            rng,
        )
        if trainee is not None:
            picks.append(
                Pick(trainee.username, "team", trainee.score, trainee.active_reviews, extra=True)
            )

    ranked = sorted(eligible + trainees, key=lambda pair: (-pair[1].score, pair[0]))
    candidates = [c for _, c in ranked]
    return Selection(
        picks=tuple(picks),
        candidates=tuple(candidates),
        excluded=tuple(sorted(excluded, key=lambda e: e.username.lower())),
        empty_pools=tuple(empty),
        owners=tuple(sorted(mr.owners, key=str.lower)),
        notes=tuple(dict.fromkeys(notes)),
    )
