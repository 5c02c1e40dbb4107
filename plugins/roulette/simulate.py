"""Replaying reviewer selection over a stream of merge requests, to compare strategies.

A deterministic (seeded) world: an organisation (synthetic, or the configured one),
code areas with their owners, out-of-office periods and GitLab statuses that change day
by day, and a stream of MRs whose reviews complete over time. Each strategy staffs the
same stream; we measure how evenly the work spreads and what each one gets wrong.

Strategies:
- ``engine``: this project's selection (``engine.select``) with the configured options;
- ``random``: three distinct people uniformly at random (the author excluded);
- ``round-robin``: the same slots as the engine (code owner, team, external), each
  filled by rotating through that pool's members (the author skipped), blind to load
  and availability, as a typical rotation bot does;
- ``plain``: the seed's plain formula (``100 - 10·active - 5·recent + 2·expertise``) over
  everyone but the author, best three, blind to availability and pools.

The hand-over policy (``handover``, ``simulate --silent-share``) replays the engine's picks
through a synthetic response-time model, once without and once with nudges and hand-over:

- a share ``silent_share`` of the people (drawn once per person) never answer a review
  request, nudged or not;
- every other reviewer answers after a working time drawn from a log-normal law (median
  ``RESPONSE_MEDIAN_HOURS`` = 3 working hours, sigma 0.9), counted on their own working
  hours (timezone, ``roulette.working_hours``, weekdays, out-of-office days);
- a nudge (after ``nudge_after`` working hours without an answer) makes a reviewer who
  would have answered later answer within ``NUDGED_HOURS`` (half a working hour), with
  probability ``NUDGE_EFFECT`` (0.5), else as before; a silent one stays silent;
- after ``reassign_after`` working hours without an answer the slot is handed over: a new
  reviewer (anyone available that day who is not the author nor already on the MR, at
  random) starts the same clock from then; each slot is handed over at most once.

An MR's time to first response is the wall-clock time from its creation to the first
answer of any of its reviewers; an MR nobody answers within ``HORIZON_DAYS`` counts as
never answered. Both runs draw the same response times (the same seed per MR and person),
so the difference is the policy's.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from plugins.roulette import engine, worktime

STRATEGIES = ("engine", "random", "round-robin", "plain")
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
TIMEZONES = ("Europe/Paris", "Europe/London", "America/New_York", "Asia/Tokyo", None)


@dataclass(frozen=True)
class World:
    people: tuple[engine.Person, ...]
    areas: tuple[frozenset[str], ...]  # owners of each code area
    unavailable: dict[tuple[str, int], str]  # (username, day) -> ooo | busy | away
    mrs: tuple[SimulatedMR, ...]


@dataclass(frozen=True)
class SimulatedMR:
    at: datetime
    author: str
    team: str | None
    owners: frozenset[str]
    review_hours: tuple[float, ...]  # how long each of up to 4 reviews will take


@dataclass
class Report:
    """What one strategy did to the stream: assignments and peak concurrent load per person
    (trainees included, extra trainees too), owner coverage and rule violations."""

    strategy: str
    assignments: Counter[str] = field(default_factory=Counter)
    max_load: int = 0
    peak: Counter[str] = field(default_factory=Counter)  # highest concurrent load per person
    with_owners: int = 0
    owner_covered: int = 0
    author_violations: int = 0
    unavailable_violations: int = 0
    picks: list[tuple[str, ...]] = field(default_factory=list)  # per MR of the stream

    def cv(self, people: Sequence[engine.Person]) -> float:
        counts = [self.assignments[p.username] for p in people if p.role != "trainee"]
        mean = statistics.fmean(counts) if counts else 0.0
        return statistics.pstdev(counts) / mean if mean else 0.0

    def load(self, people: Sequence[engine.Person], *, trainees: bool) -> GroupLoad:
        """Assignments and peak concurrent load of the trainees (or of everyone else)."""
        names = [p.username for p in people if (p.role == "trainee") == trainees]
        counts = [self.assignments[n] for n in names]
        return GroupLoad(
            people=len(names),
            fewest=min(counts, default=0),
            most=max(counts, default=0),
            mean=statistics.fmean(counts) if counts else 0.0,
            max_load=max((self.peak[n] for n in names), default=0),
        )

    @property
    def coverage(self) -> float:
        return self.owner_covered / self.with_owners if self.with_owners else 1.0

    @property
    def violations(self) -> int:
        return self.author_violations + self.unavailable_violations


@dataclass(frozen=True)
class GroupLoad:
    """Assignments per person of a group (trainees, or regular reviewers) over a replay,
    and the highest number of reviews any of them held at once."""

    people: int
    fewest: int
    most: int
    mean: float
    max_load: int


# --------------------------------------------------------------------------- the world


def synthetic_people(rng: random.Random, teams: int = 4, size: int = 10) -> list[engine.Person]:
    people = []
    for t in range(teams):
        for i in range(size):
            role = "trainee" if i == size - 1 else ("maintainer" if i < 2 else "reviewer")
            people.append(
                engine.Person(
                    username=f"{chr(ord('a') + t)}{i:02d}",
                    team=f"team-{t}",
                    role=role,
                    timezone=rng.choice(TIMEZONES),
                )
            )
    return people


def build_world(
    rng: random.Random,
    people: Sequence[engine.Person],
    mrs: int,
    days: int,
    areas_per_team: int = 3,
) -> World:
    teams = sorted({p.team or "" for p in people})
    regulars = [p for p in people if p.role != "trainee"]
    areas: list[frozenset[str]] = []
    for team in teams:
        members = [p.username for p in regulars if (p.team or "") == team]
        others = [p.username for p in regulars if (p.team or "") != team]
        for _ in range(areas_per_team):
            area = rng.sample(members, min(3, len(members)))
            if others and rng.random() < 0.5:
                area.append(rng.choice(others))
            areas.append(frozenset(area))

    unavailable: dict[tuple[str, int], str] = {}
    for person in people:
        day = 0
        while day < days:
            roll = rng.random()
            if roll < 0.015:  # an out-of-office period of 1 to 5 days
                for d in range(day, min(days, day + rng.randint(1, 5))):
                    unavailable[(person.username, d)] = "ooo"
                day += 5
                continue
            if roll < 0.035:
                unavailable[(person.username, day)] = "busy"
            elif roll < 0.05:
                unavailable[(person.username, day)] = "away"
            day += 1

    authors = [p for p in people if p.role != "trainee"]
    stream = []
    for _ in range(mrs):
        at = START + timedelta(days=rng.randrange(days), hours=rng.uniform(7, 19))
        author = rng.choice(authors)
        touched = rng.sample(range(len(areas)), rng.choice((1, 1, 2)))
        touched_owners: frozenset[str] = frozenset().union(*(areas[i] for i in touched))
        owners = touched_owners - {author.username}
        hours = tuple(rng.lognormvariate(math.log(10), 0.8) for _ in range(4))
        stream.append(SimulatedMR(at, author.username, author.team, owners, hours))
    stream.sort(key=lambda mr: mr.at)
    return World(tuple(people), tuple(areas), unavailable, tuple(stream))


# --------------------------------------------------------------------------- strategies

Chooser = Callable[[SimulatedMR, dict[str, int], frozenset[str], int], list[tuple[str, str]]]


def _engine(world: World, options: engine.Options, rng: random.Random) -> Chooser:
    def choose(
        mr: SimulatedMR, active: dict[str, int], recent: frozenset[str], day: int
    ) -> list[tuple[str, str]]:
        availability = {}
        for person in world.people:
            state = world.unavailable.get((person.username, day))
            if state == "ooo":
                availability[person.username] = engine.Availability(ooo=True)
            elif state == "busy":
                availability[person.username] = engine.Availability(status="busy")
            elif state == "away":
                availability[person.username] = engine.Availability(status="away")
        facts = engine.MergeRequestFacts(author=mr.author, team=mr.team, owners=mr.owners)
        load = engine.Load(active=active, recent=recent)
        selection = engine.select(facts, world.people, availability, load, options, rng, mr.at)
        return [(p.username, "extra" if p.extra else p.role) for p in selection.picks]

    return choose


def _random(world: World, rng: random.Random) -> Chooser:
    def choose(mr: SimulatedMR, *_: object) -> list[tuple[str, str]]:
        pool = [p.username for p in world.people if p.username != mr.author]
        return [(name, "any") for name in rng.sample(pool, 3)]

    return choose


def _round_robin(world: World) -> Chooser:
    turn: Counter[str] = Counter()

    def next_in(pool_key: str, members: Sequence[str], taken: set[str]) -> str | None:
        for _ in range(len(members)):
            name = members[turn[pool_key] % len(members)]
            turn[pool_key] += 1
            if name not in taken:
                return name
        return None

    regulars = [p for p in world.people if p.role != "trainee"]

    def choose(mr: SimulatedMR, *_: object) -> list[tuple[str, str]]:
        taken = {mr.author}
        picks = []
        pools = (
            ("codeowner", sorted(mr.owners)),
            (f"team:{mr.team}", [p.username for p in regulars if p.team == mr.team]),
            (f"ext:{mr.team}", [p.username for p in regulars if p.team != mr.team]),
        )
        for key, members in pools:
            pool_key = key if key != "codeowner" else f"co:{','.join(members)}"
            name = next_in(pool_key, members, taken) if members else None
            if name is not None:
                picks.append((name, key.split(":")[0]))
                taken.add(name)
        return picks

    return choose


def _plain(world: World, rng: random.Random) -> Chooser:
    def choose(
        mr: SimulatedMR, active: dict[str, int], recent: frozenset[str], day: int
    ) -> list[tuple[str, str]]:
        scored = []
        for p in world.people:
            if p.username == mr.author:
                continue
            score = 100 - 10 * active.get(p.username, 0) - (5 if p.username in recent else 0)
            score += 2 if p.username in mr.owners else 0
            scored.append((-score, rng.random(), p.username))
        return [(name, "any") for _, _, name in sorted(scored)[:3]]

    return choose


# --------------------------------------------------------------------------- replay


def replay(world: World, strategy: str, options: engine.Options, seed: int) -> Report:
    rng = random.Random(f"{seed}:{strategy}")
    choosers: dict[str, Callable[[], Chooser]] = {
        "engine": lambda: _engine(world, options, rng),
        "random": lambda: _random(world, rng),
        "round-robin": lambda: _round_robin(world),
        "plain": lambda: _plain(world, rng),
    }
    choose = choosers[strategy]()
    report = Report(strategy)
    active: dict[str, int] = defaultdict(int)
    finishing: list[tuple[datetime, str]] = []  # (done_at, username)
    assigned: list[tuple[datetime, str]] = []  # for the 24 h "recent" window
    for mr in world.mrs:
        while finishing and finishing[0][0] <= mr.at:
            _, name = heapq.heappop(finishing)
            active[name] -= 1
        window = mr.at - timedelta(hours=24)
        recent = frozenset(name for at, name in assigned if at >= window)
        day = (mr.at - START).days
        picks = choose(mr, dict(active), recent, day)
        report.picks.append(tuple(name for name, _ in picks))
        if mr.owners:
            report.with_owners += 1
            report.owner_covered += any(name in mr.owners for name, _ in picks)
        for (name, _), hours in zip(picks, mr.review_hours, strict=False):
            report.assignments[name] += 1
            if name == mr.author:
                report.author_violations += 1
            elif (name, day) in world.unavailable:
                report.unavailable_violations += 1
            active[name] += 1
            report.max_load = max(report.max_load, active[name])
            report.peak[name] = max(report.peak[name], active[name])
            heapq.heappush(finishing, (mr.at + timedelta(hours=hours), name))
            assigned.append((mr.at, name))
        assigned = [(at, name) for at, name in assigned if at >= window]
    return report


def simulate(
    people: Sequence[engine.Person],
    options: engine.Options,
    *,
    mrs: int = 500,
    days: int = 30,
    seed: int = 1,
    strategies: Sequence[str] = STRATEGIES,
) -> list[Report]:
    world = build_world(random.Random(seed), people, mrs, days)
    return [replay(world, s, options, seed) for s in strategies]


def format_reports(reports: Sequence[Report], people: Sequence[engine.Person]) -> str:
    lines = [
        f"{'strategy':<12} {'CV':>6} {'max load':>9} {'owner cov.':>11} "
        f"{'author':>7} {'unavail.':>9}"
    ]
    for r in reports:
        lines.append(
            f"{r.strategy:<12} {r.cv(people):>6.3f} {r.max_load:>9} "
            f"{r.coverage:>10.1%} {r.author_violations:>7} {r.unavailable_violations:>9}"
        )
    if any(p.role == "trainee" for p in people):
        lines += [
            "",
            "Trainees vs regular reviewers: assignments per person (fewest-most, mean), "
            "max concurrent load",
            f"{'strategy':<12} {'regular':>16} {'trainee':>16} {'reg. max':>9} {'tr. max':>8}",
        ]
        for r in reports:
            regular, trainee = r.load(people, trainees=False), r.load(people, trainees=True)
            lines.append(
                f"{r.strategy:<12} {_spread(regular):>16} {_spread(trainee):>16} "
                f"{regular.max_load:>9} {trainee.max_load:>8}"
            )
    return "\n".join(lines)


def _spread(group: GroupLoad) -> str:
    return f"{group.fewest}-{group.most} ({group.mean:.1f})"


# --------------------------------------------------------------------------- hand-over

RESPONSE_MEDIAN_HOURS = 3.0
RESPONSE_SIGMA = 0.9
NUDGED_HOURS = 0.5
NUDGE_EFFECT = 0.5
HORIZON_DAYS = 30


@dataclass(frozen=True)
class ResponseTimes:
    """Time to first response over a stream (wall-clock hours), one policy."""

    policy: str  # "without" or "with" nudges and hand-over
    hours: tuple[float, ...]  # the answered MRs, sorted
    never: int  # MRs nobody answered within HORIZON_DAYS
    nudges: int = 0
    handovers: int = 0

    @property
    def total(self) -> int:
        return len(self.hours) + self.never

    def percentile(self, share: float) -> float | None:
        """The ``share`` quantile (0..1) over every MR, never-answered ones counting as
        longest; None when it falls among those."""
        if not self.total:
            return None
        rank = max(0, math.ceil(share * self.total) - 1)
        return self.hours[rank] if rank < len(self.hours) else None

    def within(self, hours: float) -> float:
        """The share of MRs answered within ``hours``."""
        return sum(h <= hours for h in self.hours) / self.total if self.total else 0.0


def handover(
    world: World,
    picks: Sequence[tuple[str, ...]],
    options: engine.Options,
    *,
    silent_share: float,
    nudge_after: float = 4.0,
    reassign_after: float | None = 16.0,
    seed: int = 1,
) -> tuple[ResponseTimes, ResponseTimes]:
    """Time to first response on ``world``'s stream staffed with ``picks`` (one tuple of
    usernames per MR, e.g. ``Report.picks`` of the engine), without and with nudges
    (``nudge_after`` working hours) and hand-over (``reassign_after`` working hours; None:
    off), by the model of this module's docstring. ``silent_share`` is 0..1."""
    window = options.working_hours
    silent_draw = random.Random(f"{seed}:silent")
    silent = {p.username for p in world.people if silent_draw.random() < silent_share}
    zones = {p.username: p.timezone for p in world.people}
    away: dict[str, set[date]] = defaultdict(set)
    for (name, day), state in world.unavailable.items():
        if state == "ooo":
            away[name].add((START + timedelta(days=day)).date())

    def after(name: str, start: datetime, hours: float) -> datetime:
        return worktime.after_working(start, hours * 3600, zones.get(name), window, away[name])

    def answer(name: str, start: datetime, key: str, policy: bool) -> tuple[datetime | None, bool]:
        """When ``name``, asked at ``start``, answers (None: never), and whether they
        were nudged; the same draws for both policies."""
        rng = random.Random(f"{seed}:{key}")
        hours = rng.lognormvariate(math.log(RESPONSE_MEDIAN_HOURS), RESPONSE_SIGMA)
        effect = rng.random() < NUDGE_EFFECT
        nudged = policy and (name in silent or hours > nudge_after)
        if name in silent:
            return None, nudged
        if nudged and effect:
            hours = nudge_after + NUDGED_HOURS
        return after(name, start, hours), nudged

    def run(policy: bool) -> ResponseTimes:
        answered: list[float] = []
        never = nudges = handovers = 0
        for index, (mr, names) in enumerate(zip(world.mrs, picks, strict=True)):
            limit = mr.at + timedelta(days=HORIZON_DAYS)
            first: datetime | None = None
            taken = {mr.author, *names}
            for name in names:
                at, nudged = answer(name, mr.at, f"{index}:{name}", policy)
                nudges += nudged
                if policy and reassign_after is not None:
                    deadline = after(name, mr.at, reassign_after)
                    if at is None or at > deadline:
                        day = (deadline - START).days
                        free = sorted(
                            p.username
                            for p in world.people
                            if p.username not in taken
                            and (p.username, day) not in world.unavailable
                        )
                        if free:
                            chooser = random.Random(f"{seed}:{index}:{name}:handover")
                            other = chooser.choice(free)
                            taken.add(other)
                            handovers += 1
                            at, nudged = answer(other, deadline, f"{index}:{other}", policy)
                            nudges += nudged
                if at is not None and at <= limit and (first is None or at < first):
                    first = at
            if first is None:
                never += 1
            else:
                answered.append((first - mr.at).total_seconds() / 3600)
        return ResponseTimes(
            "with" if policy else "without", tuple(sorted(answered)), never, nudges, handovers
        )

    return run(False), run(True)


def format_handover(
    without: ResponseTimes,
    with_policy: ResponseTimes,
    *,
    silent_share: float,
    nudge_after: float,
    reassign_after: float | None,
) -> str:
    """The two policies side by side: median, 90th percentile, answered within 4 h and
    24 h, never answered; nudges and hand-overs sent."""
    handing = (
        f"hand-over after {reassign_after:g}" if reassign_after is not None else "no hand-over"
    )
    lines = [
        f"Time to first response, {silent_share:.0%} of reviewers silent "
        f"(nudge after {nudge_after:g} working h, {handing} working h):",
        f"{'':<24} {'without':>10} {'with nudges+hand-over':>22}",
    ]

    def hours(value: float | None) -> str:
        return "never" if value is None else f"{value:.1f} h"

    rows = [
        ("median", hours(without.percentile(0.5)), hours(with_policy.percentile(0.5))),
        ("90th percentile", hours(without.percentile(0.9)), hours(with_policy.percentile(0.9))),
        ("answered within 4 h", f"{without.within(4):.1%}", f"{with_policy.within(4):.1%}"),
        ("answered within 24 h", f"{without.within(24):.1%}", f"{with_policy.within(24):.1%}"),
        (
            "never answered",
            f"{without.never / max(1, without.total):.1%}",
            f"{with_policy.never / max(1, with_policy.total):.1%}",
        ),
        ("nudges / hand-overs", "0 / 0", f"{with_policy.nudges} / {with_policy.handovers}"),
    ]
    lines += [f"{name:<24} {a:>10} {b:>22}" for name, a, b in rows]
    return "\n".join(lines)
