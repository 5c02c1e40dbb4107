"""Gathering the facts for a selection: GitLab, the database, the cache. No transport.

``RouletteService.plan`` reads everything the engine needs and returns the engine's
answer with its context; it writes nothing. GitLab answers are cached (statuses 5 min,
CODEOWNERS per project and ref, group members), so a pick costs a few calls at most.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, case, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cache import Cache
from bot.context import GitLabNotConfigured
from bot.gitlab import (
    GitLabError,
    GitLabForbidden,
    GitLabUser,
    MergeRequestInfo,
    MergeRequestRef,
    UserStatus,
    gather_all,
)
from bot.i18n import Message
from bot.models import MrReview, ReviewerAssignment, Team, User
from bot.settings import Settings
from plugins.ooo import api as ooo_api
from plugins.roulette import engine, worktime
from plugins.roulette.codeowners import CodeOwners, Owner, parse
from plugins.roulette.config import RouletteConfig
from plugins.roulette.flags import Flags

log = logging.getLogger("plugins.roulette")

STATUS_TTL = 300.0  # a GitLab status is read at most every 5 minutes per person
CODEOWNERS_TTL = 300.0
MEMBERS_TTL = 300.0
ROLE_ACCESS = {"developer": 30, "maintainer": 40, "owner": 50}
_STATUS_CONCURRENCY = 16


class GitLabReader(Protocol):
    """What the selection reads from GitLab (``bot.gitlab.GitLab`` provides it)."""

    async def merge_request(self, ref: MergeRequestRef) -> MergeRequestInfo: ...
    async def changed_paths(self, project: int | str, iid: int) -> list[str]: ...
    async def codeowners_file(self, project_id: int, ref: str) -> tuple[str, str] | None: ...
    async def user_status(self, user: str | int) -> UserStatus: ...
    async def user(self, username: str) -> GitLabUser | None: ...
    async def user_by_email(self, email: str) -> GitLabUser | None: ...
    async def group_members(self, group: str) -> list[GitLabUser]: ...
    async def project_members(self, project_id: int) -> list[tuple[GitLabUser, int]]: ...


@dataclass
class Reads:
    """The GitLab reads of one plan, started together (``RouletteService.start_reads``).

    ``codeowners`` is the CODEOWNERS of ``codeowners_branch``, when the caller knew the
    MR's target branch; ``statuses`` fills the cache with every active person's status.
    """

    mr: asyncio.Future[MergeRequestInfo]
    paths: asyncio.Future[list[str]]
    codeowners: asyncio.Future[_OwnersFile] | None
    codeowners_branch: str | None
    statuses: asyncio.Future[Any]

    def futures(self) -> list[asyncio.Future[Any]]:
        started: list[asyncio.Future[Any]] = [self.mr, self.paths, self.statuses]
        return started + ([self.codeowners] if self.codeowners is not None else [])

    async def close(self) -> None:
        """Cancel what was not awaited (the plan stopped early) and collect every result,
        so that no error is left unretrieved."""
        for future in self.futures():
            if not future.done():
                future.cancel()
        await asyncio.gather(*self.futures(), return_exceptions=True)


#: Someone away today, as the selection sees them (only that: their reason stays theirs).
OUT_OF_OFFICE = engine.Availability(ooo=True, detail=Message("out of office today"))


def _out_of_office(
    fetched: Mapping[str, engine.Availability], ooo: frozenset[str]
) -> dict[str, engine.Availability]:
    """``fetched`` (statuses read before the database said who is away) with everyone in
    ``ooo`` marked out of office, as ``RouletteService.availability`` would have it."""
    return {name: OUT_OF_OFFICE if name in ooo else value for name, value in fetched.items()} | {
        name: OUT_OF_OFFICE for name in ooo
    }


# No merge request: the engine's rules for "unavailable" without the MR-specific ones
# (author, --exclude), for the organisation-wide view (``api.availability``, the gauge).
NO_MR = engine.MergeRequestFacts(author="", team=None)


@dataclass(frozen=True)
class Standing:
    """Whether one person can be picked now, by the engine's own rules (``engine.unavailability``)
    without those of a particular MR (author, excluded).

    ``exclusion`` is None when they can be picked, else the engine's code (``ooo``, ``busy``,
    ``away``, ``capacity``, ``inactive``) and its detail; ``availability`` is what their
    status said (``status == "unknown"``: GitLab could not be asked, counted available).
    """

    person: engine.Person
    availability: engine.Availability
    active_reviews: int
    exclusion: engine.Exclusion | None

    @property
    def available(self) -> bool:
        return self.exclusion is None


def standings_of(
    people: Iterable[engine.Person],
    availability: Mapping[str, engine.Availability],
    load: engine.Load,
) -> list[Standing]:
    """Each person's ``Standing`` from the facts a plan gathers (no I/O).

    ``availability`` is keyed by username; someone missing from it counts as available.
    """
    standings = []
    for person in people:
        facts = availability.get(person.username, engine.AVAILABLE)
        active = load.active.get(person.username, 0)
        reason = engine.unavailability(person, NO_MR, facts, active)
        standings.append(Standing(person, facts, active, reason))
    return standings


@dataclass(frozen=True)
class Plan:
    """A selection with what it was made from."""

    mr: MergeRequestInfo
    team: str | None
    changed_paths: tuple[str, ...]
    codeowners_path: str | None
    selection: engine.Selection
    problems: tuple[str, ...]  # what the people asking should know (no CODEOWNERS...)
    warnings: tuple[str, ...]  # details for --explain and the logs
    # Everyone's availability apart from this MR (the author's status from the cache
    # only): what the ``available_reviewers`` gauge counts after a roll.
    standings: tuple[Standing, ...] = ()
    # When each picked reviewer who is not at work at ``planned_at`` is next at work
    # (aware, in their timezone; ``worktime.next_at_work``), by GitLab username; those at
    # work now are absent. Never why they are away.
    back_at: Mapping[str, datetime] = field(default_factory=dict)
    planned_at: datetime | None = None  # the ``now`` of the plan (aware)

    def back(self, username: str) -> datetime | None:
        """When ``username`` is next at work, or None when at work now (or unknown)."""
        return self.back_at.get(username)


@dataclass(frozen=True)
class Replacement:
    """One slot re-rolled in place of a reviewer who passed (``RouletteService.replacement``).

    ``pick`` is the new reviewer (None when nobody is available in the slot's pool);
    ``plan`` the plan it was chosen from (its ``back_at`` covers ``pick``).
    """

    plan: Plan
    passer: str
    role: str
    pick: engine.Pick | None


@dataclass(frozen=True)
class _OwnersFile:
    path: str | None
    parsed: CodeOwners | None
    problem: str | None


def options_from(config: RouletteConfig, flags: Flags) -> engine.Options:
    w = config.weights
    return engine.Options(
        reviewers=config.reviewers,
        weights=engine.Weights(w.active_review, w.recent_review, w.expertise, w.working_hours),
        margin=config.margin,
        working_hours=(config.working_hours.start, config.working_hours.end),
        trainees=config.trainees,
        trainee_share=config.trainee_share,
        force=flags.force,
        reroll=flags.reroll,
        no_codeowner=flags.no_codeowner,
        include=flags.include,
        exclude=flags.exclude,
    )


def configured_people(settings: Settings) -> list[engine.Person]:
    """The configured organisation (the source of truth; the database mirrors it)."""
    return [
        engine.Person(
            username=u.gitlab,
            team=u.team,
            role=u.role,
            timezone=u.timezone,
            max_active_reviews=u.max_active_reviews,
        )
        for u in settings.users
    ]


# Punctuation that ends a clause in a status message: a back keyword cancels the away
# keywords after it up to the next one ("Absent, de retour le 12" stays away). A hyphen
# joins words ("out-of-office"); a dash between spaces, or an en or em dash, separates.
_CLAUSE_END = re.compile(
    r"[,;:.!?()\[\]{}<>/\\|\"\n\r"
    "\u201c\u201d\u00ab\u00bb\u2026\u2013\u2014]+"  # quotes, ellipsis, en and em dashes
    r"|\s-+\s"
)
_SEPARATORS = re.compile(r"(?:[^\w\n]|_)+")


def fold_status_text(text: str, *, clauses: bool = True) -> str:
    """Status text reduced to what the matching compares: lower-case words, no accents.

    NFKD-decomposes ``text`` and drops the combining marks ("congés" -> "conges"),
    case-folds it, and turns every run of other characters (spaces, hyphens,
    underscores, apostrophes, emoji...) into one space, so that "Out_Of-Office" and
    "out  of office" both read ``"out of office"``. With ``clauses`` the clause-ending
    punctuation of ``_CLAUSE_END`` becomes a line break, which no keyword spans;
    without it (for the keywords themselves) it is one more separator.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    plain = _CLAUSE_END.sub("\n" if clauses else " ", plain)
    words = (_SEPARATORS.sub(" ", line).strip() for line in plain.split("\n"))
    return "\n".join(line for line in words if line)


class StatusReader:
    """Turns a GitLab status into availability: busy, away (message or emoji) or available.

    ``away_keywords`` and ``back_keywords`` are words or phrases (the configuration's
    ``roulette.away_keywords`` / ``roulette.back_keywords``), ``away_emojis`` emoji names
    with or without colons. All are compiled here, once, into one regular expression over
    the folded text of ``fold_status_text``: a keyword matches whole words only ("pto"
    is not in "Ptolemy", "back from" not in "backlog from"), ignoring case, accents,
    hyphens, underscores and spacing. Reading a status (GitLab's ``GET /users/:id/status``:
    ``availability`` "busy" or "not_set", ``message``, ``emoji``; PROTOCOLS.md) is then:

    - ``availability == "busy"``: busy;
    - else an away keyword in the message that no back keyword comes before in the same
      clause (a clause ends at , ; : . ! ? brackets, slashes, quotes or a spaced dash):
      away ("On PTO" is away, "back from PTO", "not OOO" and "OOO? No longer" are not,
      "OOO, back Monday" and "Absent, de retour le 12" are);
    - else an away emoji: away;
    - else available.
    """

    def __init__(
        self,
        away_keywords: Iterable[str],
        emojis: Iterable[str],
        back_keywords: Iterable[str] = (),
    ) -> None:
        self._names: dict[str, str] = {}  # folded keyword -> as configured, for the detail
        for keyword in away_keywords:
            self._names.setdefault(fold_status_text(keyword, clauses=False), keyword.strip())
        self._names.pop("", None)
        back = {fold_status_text(k, clauses=False) for k in back_keywords} - {""}

        def alternatives(phrases: Iterable[str]) -> str:
            # Longest first, so that "en conges" wins over "conges" in the detail.
            ordered = sorted(phrases, key=lambda p: (-len(p), p))
            return "|".join(re.escape(p) for p in ordered) or "(?!)"

        # One pass over the folded message: a line break ends a clause, a back keyword
        # cancels the rest of its clause, the first away keyword not cancelled decides.
        self._pattern = re.compile(
            rf"(?P<clause>\n)|(?<!\S)(?:(?P<back>{alternatives(back)})"
            rf"|(?P<away>{alternatives(self._names)}))(?!\S)"
        )
        self._emojis = {e.strip().strip(":").casefold() for e in emojis} - {""}
        # status -> its availability (immutable: shared by everyone with that status)
        self._readings: dict[UserStatus, engine.Availability] = {}

    def away_keyword(self, message: str | None) -> str | None:
        """The configured away keyword that marks ``message`` away, or None if none does."""
        if not message or not self._names:
            return None
        cancelled = False
        for found in self._pattern.finditer(fold_status_text(message)):
            if found.lastgroup == "clause":
                cancelled = False
            elif found.lastgroup == "back":
                cancelled = True
            elif not cancelled:
                return self._names[found.group("away")]
        return None

    def availability(self, status: UserStatus) -> engine.Availability:
        """The availability that ``status`` gives its user (see the class docstring).

        Remembered per distinct status (a pick reads every active person's, and most
        are alike), up to :data:`_READINGS_KEPT` of them."""
        found = self._readings.get(status)
        if found is None:
            if len(self._readings) >= _READINGS_KEPT:
                self._readings.clear()
            found = self._readings[status] = self._read(status)
        return found

    def _read(self, status: UserStatus) -> engine.Availability:
        if status.availability == "busy":
            return engine.Availability(status="busy", detail=Message("GitLab status is busy"))
        if (keyword := self.away_keyword(status.message)) is not None:
            # The configured keyword that matched, never the message the person typed.
            detail = Message("GitLab status message says '{keyword}'", {"keyword": keyword})
            return engine.Availability(status="away", detail=detail)
        emoji = (status.emoji or "").strip(":").casefold()
        if emoji and emoji in self._emojis:
            detail = Message("GitLab status emoji :{emoji}:", {"emoji": emoji})
            return engine.Availability(status="away", detail=detail)
        return engine.Availability()


_READINGS_KEPT = 4096  # distinct statuses whose reading is remembered (then started afresh)


def _status_key(username: str) -> str:
    return f"gl:status:{username.lower()}"


def _status_from(cached: dict[str, Any]) -> UserStatus:
    return UserStatus(
        availability=str(cached.get("availability") or "not_set"),
        emoji=cached.get("emoji"),
        message=cached.get("message"),
    )


class _Parsed:
    """A small in-process memo of parsed CODEOWNERS files, by content hash."""

    def __init__(self, size: int = 32) -> None:
        self._items: OrderedDict[str, CodeOwners] = OrderedDict()
        self._size = size

    def get(self, text: str) -> CodeOwners:
        key = hashlib.sha256(text.encode()).hexdigest()
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        parsed = parse(text)
        self._items[key] = parsed
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return parsed


class RouletteService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession] | None,
        cache: Cache,
        gitlab: GitLabReader | None,
    ) -> None:
        self.settings = settings
        self.config = config = RouletteConfig.of(settings)
        self.sessions = sessions
        self.cache = cache
        self._gitlab = gitlab
        # Out-of-office periods are the ooo area's; without it nobody is away by date.
        self.with_ooo = "ooo" in settings.plugins
        self.statuses = StatusReader(config.away_keywords, config.away_emojis, config.back_keywords)
        # a cached status's text -> its availability (see ``availability``)
        self._status_texts: dict[str, engine.Availability] = {}
        self._parsed = _Parsed()
        # The settings are frozen: the organisation is read from them once, not per pick.
        self._people = tuple(configured_people(settings))
        self._usernames = {u.gitlab.lower(): u.gitlab for u in settings.users}
        self._emails = {u.email.lower(): u.gitlab for u in settings.users if u.email}

    @property
    def has_gitlab(self) -> bool:
        """Whether GitLab is configured (without it, statuses are not read)."""
        return self._gitlab is not None

    @property
    def gitlab(self) -> GitLabReader:
        """GitLab; raises ``GitLabNotConfigured`` when the service was built without it."""
        if self._gitlab is None:
            raise GitLabNotConfigured("GitLab is not configured (GITLAB_URL)")
        return self._gitlab

    # ----------------------------------------------------------------- the plan

    def start_reads(
        self,
        ref: MergeRequestRef,
        *,
        project_id: int | None = None,
        target_branch: str | None = None,
    ) -> Reads:
        """Start the GitLab reads of one plan that need only the MR's reference, at once.

        The MR, its changed files and every active person's status (into the cache)
        always; the CODEOWNERS file too when the caller knows the MR's project id and
        target branch (a webhook's ``merge_request.target_branch``), else ``plan`` reads
        it once the MR says which branch. With GitLab tens of milliseconds away per call,
        these reads together cost one round trip instead of one each.
        """
        people = [p for p in self.people() if p.active]
        codeowners = (
            asyncio.ensure_future(self.codeowners(project_id, target_branch))
            if project_id is not None and target_branch
            else None
        )
        return Reads(
            mr=asyncio.ensure_future(self.gitlab.merge_request(ref)),
            paths=asyncio.ensure_future(
                self.gitlab.changed_paths(project_id or ref.project, ref.iid)
            ),
            codeowners=codeowners,
            codeowners_branch=target_branch if codeowners is not None else None,
            statuses=asyncio.ensure_future(self.availability(people, frozenset())),
        )

    async def plan(
        self,
        ref: MergeRequestRef,
        flags: Flags | None = None,
        *,
        now: datetime | None = None,
        rng: random.Random | None = None,
        reads: Reads | None = None,
    ) -> Plan:
        """Gather the facts of ``ref`` and select its reviewers (nothing is written).

        ``reads``: the GitLab reads already started (``start_reads``), else started here.
        Raises ``GitLabError`` (and its kinds) when GitLab cannot answer what is needed.
        """
        reads = reads if reads is not None else self.start_reads(ref)
        try:
            return await self._plan(ref, flags or Flags(), now or datetime.now(UTC), rng, reads)
        finally:
            await reads.close()

    async def _plan(
        self,
        ref: MergeRequestRef,
        flags: Flags,
        now: datetime,
        rng: random.Random | None,
        reads: Reads,
    ) -> Plan:
        mr = await reads.mr
        # The database's part (load, out of office, responses) meanwhile.
        pending_history = asyncio.ensure_future(
            self.history(self.people(), mr, now, with_responses=flags.reroll)
        )
        try:
            if reads.codeowners is not None and reads.codeowners_branch == mr.target_branch:
                codeowners_read: Awaitable[_OwnersFile] = reads.codeowners
            else:
                codeowners_read = self.codeowners(mr.project_id, mr.target_branch)
            paths, codeowners = await gather_all(reads.paths, codeowners_read)
            warnings: list[str] = []
            owner_names: set[str] = set()
            if codeowners.parsed is not None:
                warnings += codeowners.parsed.warnings
                owner_names = await self.resolve_owners(
                    codeowners.parsed.all_owners(paths), mr.project_id, warnings
                )
            fetched: dict[str, engine.Availability] = await reads.statuses
            history = await pending_history
        finally:
            if not pending_history.done():
                pending_history.cancel()
                await asyncio.gather(pending_history, return_exceptions=True)
        people = list(history.people)
        team = self.team_of(mr, people)
        candidates = [p for p in people if p.active and p.username.lower() != mr.author.lower()]
        # Statuses read with the MR (``start_reads``), out of office as the database says;
        # the few candidates they missed (stored, not configured) asked now.
        known = _out_of_office(fetched, history.ooo)
        availability = {p.username: known[p.username] for p in candidates if p.username in known}
        missed = [p for p in candidates if p.username not in known]
        availability |= await self.availability(missed, history.ooo)
        # The others (the author) only as far as already known: no extra GitLab call.
        others = [p for p in people if p.active and p.username not in availability]
        everyone = (
            availability
            | {p.username: known[p.username] for p in others if p.username in known}
            | await self.availability(
                [p for p in others if p.username not in known], history.ooo, ask=False
            )
        )
        facts = engine.MergeRequestFacts(
            author=mr.author,
            team=team,
            draft=mr.draft,
            owners=frozenset(owner_names),
            current_reviewers=mr.reviewers,
            responded=history.responded,
        )
        selection = engine.select(
            facts,
            people,
            availability,
            history.load,
            options_from(self.config, flags),
            rng or random.Random(),
            now,
        )
        zones = {p.username: p.timezone for p in people}
        return Plan(
            mr=mr,
            team=team,
            changed_paths=tuple(paths),
            codeowners_path=codeowners.path,
            selection=selection,
            problems=(codeowners.problem,) if codeowners.problem else (),
            warnings=tuple(dict.fromkeys(warnings + list(history.warnings))),
            standings=tuple(standings_of(people, everyone, history.load)),
            back_at=await self.back_at(
                {p.username: zones.get(p.username) for p in selection.picks}, history.ooo, now
            ),
            planned_at=now,
        )

    async def replacement(
        self,
        ref: MergeRequestRef,
        passer: str,
        role: str,
        exclude: Iterable[str] = (),
        *,
        now: datetime | None = None,
        rng: random.Random | None = None,
    ) -> Replacement:
        """Re-roll the one slot of ``passer`` (their assignment's ``role``: ``codeowner``,
        ``team``, ``external``, or ``manual`` for anyone), with the roulette's own rules.

        The plan is the roulette's (``plan``: availability, load, scores), with ``passer``
        and ``exclude`` (everyone already picked on the MR) excluded; the new reviewer is
        chosen as the engine fills a slot (``engine.choose``: at random among the best of
        the pool, ``margin``). A trainee replaces only a trainee (``trainees: extra``) and
        only people of the slot's pool qualify: an empty pool gives ``pick`` None.
        """
        now = now or datetime.now(UTC)
        rng = rng or random.Random()
        excluded = tuple(dict.fromkeys([passer, *exclude]))
        plan = await self.plan(ref, Flags(exclude=excluded), now=now, rng=rng)
        roles = {s.person.username.lower(): s.person.role for s in plan.standings}
        extra_trainee = self.config.trainees == "extra"
        passer_trainee = extra_trainee and roles.get(passer.lower()) == "trainee"
        banned = {n.lower().removeprefix("@") for n in excluded}

        def fits(candidate: engine.Candidate) -> bool:
            if candidate.username.lower() in banned:
                return False
            trainee = extra_trainee and roles.get(candidate.username.lower()) == "trainee"
            if trainee != passer_trainee:
                return False
            pools = [p for p in candidate.pools if p in engine.POOLS]
            return role not in engine.POOLS or role in pools

        pool = [c for c in plan.selection.candidates if fits(c)]
        chosen = engine.choose(pool, self.config.margin, rng)
        pick: engine.Pick | None = None
        back_at: dict[str, datetime] = {}
        if chosen is not None:
            slot = role if role in engine.POOLS else chosen.pools[0]
            pick = engine.Pick(
                chosen.username,
                slot,
                chosen.score,
                chosen.active_reviews,
                extra=passer_trainee,
            )
            zones = {s.person.username: s.person.timezone for s in plan.standings}
            back_at = await self.back_at({chosen.username: zones.get(chosen.username)}, None, now)
        plan = replace(plan, back_at=back_at)
        return Replacement(plan=plan, passer=passer, role=role, pick=pick)

    async def back_at(
        self,
        timezones: Mapping[str, str | None],
        ooo_today: frozenset[str] | None,
        now: datetime,
    ) -> dict[str, datetime]:
        """When each of ``timezones`` (GitLab username -> IANA zone, None: UTC) is next at
        work after ``now``, for those not at work now (``worktime.next_at_work`` with the
        working-hours window, weekends and their out-of-office days).

        Out-of-office days come from the ooo area (``away_days``, over the coming
        ``worktime.HORIZON_DAYS``) when it is enabled; when the database cannot be read,
        ``ooo_today`` (who is away today, from the history) stands in for today only.
        """
        window = worktime.working_window(self.settings)
        away: dict[str, set[date]] = {name: set() for name in timezones}
        asking = dict(timezones)
        if ooo_today is not None:  # at work now and not away today: nothing to look up
            asking = {
                name: zone
                for name, zone in timezones.items()
                if name in ooo_today or worktime.next_at_work(now, zone, window) is not None
            }
        if self.with_ooo and self.sessions is not None and asking:
            spans = {}
            for name, zone in asking.items():
                start = worktime.local_date(now, zone)
                spans[name] = (start, start + timedelta(days=worktime.HORIZON_DAYS))
            try:
                async with self.sessions() as session:  # one query for them all
                    away.update(await ooo_api.away_days_of(session, spans))
            except SQLAlchemyError as e:
                log.warning("no out-of-office days: %s", type(e).__name__)
                for name, zone in asking.items():
                    if ooo_today and name in ooo_today:
                        away[name] = {worktime.local_date(now, zone)}
        result: dict[str, datetime] = {}
        for name, zone in timezones.items():
            back = worktime.next_at_work(now, zone, window, away[name])
            if back is not None:
                result[name] = back
        return result

    async def standings(self, now: datetime | None = None) -> list[Standing]:
        """Everyone of the organisation (configured, then only stored: GitLab group members
        and those who left), each with whether they can be picked at ``now`` (default: the
        current time) and why not, by the engine's rules minus the MR's own (author,
        excluded). Statuses come from the cache, else GitLab (one call per person at most,
        cached five minutes; GitLab failing: available, with a detail); without GitLab
        configured, statuses are not read (only ooo, capacity and inactive count).
        """
        now = now or datetime.now(UTC)
        history = await self.history(self.people(), None, now)
        active = [p for p in history.people if p.active]
        availability = await self.availability(active, history.ooo)
        return standings_of(history.people, availability, history.load)

    # ----------------------------------------------------------------- organisation

    def people(self) -> list[engine.Person]:
        """The configured organisation (a new list: the caller may add to it)."""
        return list(self._people)

    def team_of(self, mr: MergeRequestInfo, people: Sequence[engine.Person]) -> str | None:
        """The MR's team: the first team with one of the MR's labels, else the author's."""
        labels = set(mr.labels)
        for team in self.settings.teams:
            if labels.intersection(team.labels):
                return team.name
        author = next((p for p in people if p.username.lower() == mr.author.lower()), None)
        return author.team if author else None

    # ----------------------------------------------------------------- CODEOWNERS

    async def codeowners(self, project_id: int, ref: str) -> _OwnersFile:
        """The project's CODEOWNERS on ``ref`` (cached), or why there is none."""
        key = f"codeowners:{project_id}:{hashlib.sha1(ref.encode()).hexdigest()}"  # noqa: S324
        cached = await self.cache.get_json(key)
        if not isinstance(cached, dict):
            cached = {"path": None, "text": None, "problem": None}
            try:
                found = await self.gitlab.codeowners_file(project_id, ref)
            except GitLabForbidden:
                log.warning("cannot read CODEOWNERS of project %s", project_id)
                cached["problem"] = "the bot cannot read this project's CODEOWNERS (no access)"
            else:
                if found is None:
                    cached["problem"] = f"this project has no CODEOWNERS file on {ref}"
                else:
                    cached["path"], cached["text"] = found
            await self.cache.set_json(key, cached, ttl=CODEOWNERS_TTL)
        text, path, problem = cached.get("text"), cached.get("path"), cached.get("problem")
        return _OwnersFile(
            path=path if isinstance(path, str) else None,
            parsed=self._parsed.get(text) if isinstance(text, str) else None,
            problem=problem if isinstance(problem, str) else None,
        )

    async def resolve_owners(
        self, owners: Iterable[Owner], project_id: int, warnings: list[str]
    ) -> set[str]:
        """GitLab usernames behind the owners: users, group members, emails, roles."""
        configured, emails = self._usernames, self._emails

        async def resolve(owner: Owner) -> tuple[list[str], list[str]]:
            """(usernames, warnings) of one owner."""
            if owner.kind == "name":
                if owner.value.lower() in configured:
                    return [configured[owner.value.lower()]], []
                if await self._cached_user(owner.value):
                    return [owner.value], []
                return await self._group_members(owner.value), []
            if owner.kind == "group":
                return await self._group_members(owner.value), []
            if owner.kind == "email":
                if owner.value in emails:
                    return [emails[owner.value]], []
                if (user := await self._user_by_email(owner.value)) is not None:
                    return [user], []
                return [], [f"no user has the public email {owner.value}"]
            if owner.kind == "role":
                found: list[str] = []
                return await self._role_members(project_id, owner.value, found), found
            return [], []

        # Configured people at once; every other owner at once (each lookup is cached; a
        # cold one is a GitLab round trip), their warnings in the owners' order.
        names: set[str] = set()
        others: list[Owner] = []
        for owner in sorted(owners):
            known = None
            if owner.kind == "name":
                known = configured.get(owner.value.lower())
            elif owner.kind == "email":
                known = emails.get(owner.value)
            if known:
                names.add(known)
            else:
                others.append(owner)
        for found, said in await gather_all(*(resolve(o) for o in others)):
            names.update(found)
            warnings.extend(said)
        return names

    async def _remember(self, key: str, ttl: float, load: Any) -> Any:
        cached = await self.cache.get_json(key)
        if cached is not None:
            return cached
        value = await load()
        await self.cache.set_json(key, value, ttl=ttl)
        return value

    async def _cached_user(self, username: str) -> bool:
        async def load() -> bool:
            try:
                return await self.gitlab.user(username) is not None
            except GitLabError:
                return False

        return bool(await self._remember(f"gl:user:{username.lower()}", MEMBERS_TTL, load))

    async def _user_by_email(self, email: str) -> str | None:
        async def load() -> str:
            try:
                user = await self.gitlab.user_by_email(email)
            except GitLabError:
                return ""
            return user.username if user else ""

        found = await self._remember(f"gl:email:{email}", MEMBERS_TTL, load)
        return str(found) or None

    async def _group_members(self, group: str) -> list[str]:
        async def load() -> list[str]:
            try:
                return [m.username for m in await self.gitlab.group_members(group)]
            except GitLabError:
                log.warning("cannot read the members of group %s", group)
                return []

        members = await self._remember(f"gl:group:{group.lower()}", MEMBERS_TTL, load)
        return [str(m) for m in members]

    async def _role_members(self, project_id: int, role: str, warnings: list[str]) -> list[str]:
        async def load() -> list[list[Any]]:
            members = await self.gitlab.project_members(project_id)
            return [[m.username, level] for m, level in members]

        try:
            members = await self._remember(f"gl:members:{project_id}", MEMBERS_TTL, load)
        except GitLabError:
            warnings.append(f"@@{role}: cannot read the project's members; ignored")
            return []
        wanted = ROLE_ACCESS.get(role.rstrip("s"), 0)
        return [str(name) for name, level in members if int(level) >= wanted]

    # ----------------------------------------------------------------- availability

    async def availability(
        self, people: Sequence[engine.Person], ooo: frozenset[str], *, ask: bool = True
    ) -> dict[str, engine.Availability]:
        """Each person's availability: out of office, else their (cached) GitLab status.

        A status missing from the cache is asked of GitLab when ``ask`` (and GitLab is
        configured), else that person counts as available (``engine.Availability()``).
        """
        # Only that they are away today: the reason they gave stays theirs.
        result = {p.username: OUT_OF_OFFICE for p in people if p.username in ooo}
        asking = [p.username for p in people if p.username not in ooo]
        keys = [_status_key(name) for name in asking]
        texts = await self.cache.get_text_many(keys)
        # What each cached text gives, decoded once: most are alike ({"availability":
        # "not_set", ...}), and a pick reads every active person's.
        readings = self._status_texts
        missing = []
        for name, key, text in zip(asking, keys, texts, strict=True):
            if text is None:
                missing.append(name)
                continue
            found = readings.get(text)
            if found is None:
                value = self.cache.decode(key, text)
                if not isinstance(value, dict):
                    missing.append(name)
                    continue
                if len(readings) >= _READINGS_KEPT:
                    readings.clear()
                found = readings[text] = self.statuses.availability(_status_from(value))
            result[name] = found
        if not (ask and self.has_gitlab):
            result.update((name, engine.AVAILABLE) for name in missing)
            missing = []
        if missing:
            limit = asyncio.Semaphore(_STATUS_CONCURRENCY)

            async def fetch(name: str) -> tuple[str, engine.Availability]:
                async with limit:
                    return name, await self.status_of(name)

            result.update(await asyncio.gather(*(fetch(name) for name in missing)))
        return result

    async def status_of(self, username: str) -> engine.Availability:
        """One person's availability from GitLab, cached for five minutes."""
        key = _status_key(username)
        cached = await self.cache.get_json(key)
        if isinstance(cached, dict):
            return self.statuses.availability(_status_from(cached))
        try:
            status = await self.gitlab.user_status(username)
        except GitLabError as e:
            log.info("GitLab status of %s unavailable: %s", username, type(e).__name__)
            failed = Message("GitLab status check failed")
            return engine.Availability(status="unknown", detail=failed)
        await self.cache.set_json(key, vars(status).copy(), ttl=STATUS_TTL)
        return self.statuses.availability(status)

    # ----------------------------------------------------------------- history

    async def history(
        self,
        people: Sequence[engine.Person],
        mr: MergeRequestInfo | None,
        now: datetime,
        with_responses: bool = False,
    ) -> _History:
        """The organisation, its load and today's absences (see ``_read_history``); who
        already answered on ``mr`` with ``with_responses`` (``mr`` None: nobody)."""
        if self.sessions is None:
            return _History(tuple(people), engine.Load(), frozenset(), frozenset())
        try:
            async with self.sessions() as session:
                return await _read_history(
                    session, people, mr, now, with_responses, with_ooo=self.with_ooo
                )
        except SQLAlchemyError as e:
            log.warning("no review history: %s", type(e).__name__)
            return _History(
                tuple(people),
                engine.Load(),
                frozenset(),
                frozenset(),
                warnings=("no review history could be read (is the database migrated?)",),
            )


@dataclass(frozen=True)
class _History:
    people: tuple[engine.Person, ...]  # the configured people, then those only stored
    load: engine.Load
    ooo: frozenset[str]
    responded: frozenset[str]
    warnings: tuple[str, ...] = ()


# The statements of a pick's history, built once: building a statement and its cache key
# took more time than SQLite took to run it (2.5 of the 4.2 ms of the load's part, for
# ``benchmarks.selection``'s 3,000 assignments).
_IS_OPEN = (ReviewerAssignment.status == "active") & (MrReview.state == "open")
_IS_RECENT = ReviewerAssignment.assigned_at >= bindparam("since")
# user id -> open assignments, and 1 if one was made since ``since``.
_LOAD = (
    select(
        ReviewerAssignment.user_id,
        func.sum(case((_IS_OPEN, 1), else_=0)).label("open"),
        func.max(case((_IS_RECENT, 1), else_=0)).label("recent"),
    )
    .join(MrReview, MrReview.id == ReviewerAssignment.review_id)
    .where(_IS_OPEN | _IS_RECENT)
    .group_by(ReviewerAssignment.user_id)
    .subquery("load")
)
# Every stored person with their load (NULL without an open or recent assignment): one
# statement, one round trip.
_STORED_PEOPLE = (
    select(
        User.gitlab_username,
        Team.name,
        User.role,
        User.timezone,
        User.max_active_reviews,
        User.is_active,
        _LOAD.c.open,
        _LOAD.c.recent,
    )
    .outerjoin(Team, Team.id == User.team_id)
    .outerjoin(_LOAD, _LOAD.c.user_id == User.id)
    .order_by(User.gitlab_username)
)
# The usernames that answered on the MR ``project_id``, ``mr_iid``.
_RESPONDED = (
    select(User.gitlab_username)
    .join(ReviewerAssignment, ReviewerAssignment.user_id == User.id)
    .join(MrReview, MrReview.id == ReviewerAssignment.review_id)
    .where(
        MrReview.project_id == bindparam("project_id"),
        MrReview.mr_iid == bindparam("mr_iid"),
        ReviewerAssignment.first_response_at.is_not(None)
        | ReviewerAssignment.approved_at.is_not(None),
    )
)


async def _read_history(
    session: AsyncSession,
    people: Sequence[engine.Person],
    mr: MergeRequestInfo | None,
    now: datetime,
    with_responses: bool,
    *,
    with_ooo: bool,
) -> _History:
    """The organisation, open and 24 h assignments per user, today's absences (when the
    ooo area is enabled), who answered.

    The configured people come first and are described by the configuration; the
    database adds members read from GitLab groups and those who left (inactive).
    """
    # Core results, not the ORM's: the rows are plain columns, which the ORM's loading
    # turned into rows again in Python (a tenth of the instructions of this read, for
    # ``benchmarks.selection``'s 500 people, measured with callgrind). The statements are
    # built once (see _STORED_PEOPLE).
    connection = await session.connection()
    configured = {p.username.lower() for p in people}
    stored = await connection.execute(_STORED_PEOPLE, {"since": now - timedelta(hours=24)})
    people = list(people)
    active: dict[str, int] = {}
    recent: set[str] = set()
    for name, team, role, zone, cap, is_active, open_count, was_recent in stored.all():
        username = str(name)
        if open_count:
            active[username] = int(open_count)
        if was_recent:
            recent.add(username)
        if username.lower() not in configured:
            people.append(engine.Person(username, team, role, zone, cap, bool(is_active)))

    # Out of office "today in the reviewer's timezone", asked of the ooo area (if enabled).
    away: set[str] = set()
    if with_ooo:
        away = await ooo_api.away_now(session, {p.username: p.timezone for p in people}, now)

    responded: frozenset[str] = frozenset()
    if with_responses and mr is not None:
        responded_rows = await connection.execute(
            _RESPONDED, {"project_id": mr.project_id, "mr_iid": mr.iid}
        )
        responded = frozenset(str(n) for n in responded_rows.scalars().all())

    return _History(
        people=tuple(people),
        load=engine.Load(active=active, recent=frozenset(recent)),
        ooo=frozenset(away),
        responded=responded,
    )
