"""Loading the organisation (teams and users) into the database: from the configuration,
and from GitLab where one is given.

Idempotent: running it twice changes nothing the second time. A user or team that is no
longer configured becomes inactive; its history (reviews, badges, metrics) stays.

With GitLab (``gitlab``, anything with ``user`` and ``group_members``, as
:class:`bot.gitlab.GitLab`):

- every configured username is resolved to its GitLab id (``users.gitlab_id``); a name
  GitLab does not know is reported in ``SyncReport.unknown`` and the user still synced;
- a team naming a ``gitlab_group`` also gets the group's direct, active members who are
  not configured users: role reviewer, Mattermost name = GitLab username. A configured
  user is described by the configuration alone (its team included); when a group says
  otherwise, that is reported as a conflict. A member of several teams' groups joins the
  first of those teams in the configuration's order;
- a group-derived user who is in no group any more (and not configured) becomes inactive
  like a removed configured user. When a group cannot be read (GitLab unreachable, 403,
  404, or no GitLab given at all) nobody in that team is deactivated: whether they left
  cannot be known;
- the GitLab ids are unique: when GitLab says an id belongs to a name while another row
  holds it, that row is the same GitLab account under its former name. If the former name
  is wanted no more and the new name has no row of its own, the row is renamed (so the
  history follows the person); otherwise the old row releases the id.

GitLab is read before the database transaction opens (no network I/O inside it); its
failures are reported (``SyncReport.problems``), never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.gitlab import GitLab, GitLabError, GitLabUnavailable, GitLabUser
from bot.models import Team, User
from bot.settings import Settings

log = logging.getLogger("bot.users")

T = TypeVar("T")

#: GitLab lookups in flight at once during a sync.
LOOKUP_CONCURRENCY = 8


class GitLabDirectory(Protocol):
    """What the sync reads from GitLab; :class:`bot.gitlab.GitLab` is one."""

    async def user(self, username: str) -> GitLabUser | None: ...

    async def group_members(self, group: str) -> list[GitLabUser]: ...


@contextlib.asynccontextmanager
async def gitlab_directory(settings: Settings) -> AsyncIterator[GitLab | None]:
    """The GitLab adapter when ``GITLAB_URL`` is set (closed afterwards), else ``None``."""
    if not settings.gitlab_url:
        yield None
        return
    token = settings.gitlab_token.get_secret_value() if settings.gitlab_token else None
    gitlab = GitLab(settings.gitlab_url, token, concurrency=settings.gitlab_concurrency)
    try:
        yield gitlab
    finally:
        await gitlab.close()


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    teams_created: list[str] = field(default_factory=list)
    teams_updated: list[str] = field(default_factory=list)
    teams_deactivated: list[str] = field(default_factory=list)
    #: "old → new": a row (and its history) that followed a GitLab account's new name.
    renamed: list[str] = field(default_factory=list)
    #: username → team: group members created or reactivated by this sync.
    from_groups: dict[str, str] = field(default_factory=dict)
    # What the sync noticed but changed nothing for; not part of ``changed``.
    #: configured usernames GitLab does not know.
    unknown: list[str] = field(default_factory=list)
    #: where GitLab and the configuration disagree (the configuration wins).
    conflicts: list[str] = field(default_factory=list)
    #: GitLab failures: what could not be read, and what was therefore left as it was.
    problems: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(
            (
                self.created,
                self.updated,
                self.deactivated,
                self.teams_created,
                self.teams_updated,
                self.teams_deactivated,
                self.renamed,
                self.from_groups,
            )
        )

    def summary(self) -> str:
        parts = [
            f"{len(self.teams_created)} team(s) created",
            f"{len(self.teams_updated)} updated",
            f"{len(self.teams_deactivated)} deactivated",
            f"{len(self.created)} user(s) created",
            f"{len(self.updated)} updated",
            f"{len(self.deactivated)} deactivated",
        ]
        for count, what in (
            (len(self.renamed), "renamed"),
            (len(self.from_groups), "added from GitLab groups"),
            (len(self.unknown), "unknown GitLab username(s)"),
            (len(self.conflicts), "conflict(s)"),
            (len(self.problems), "GitLab problem(s)"),
        ):
            if count:
                parts.append(f"{count} {what}")
        return ", ".join(parts)

    def details(self) -> list[str]:
        """One line per non-empty finding, to print under the summary."""
        lines = [
            f"  {label}: {', '.join(sorted(names))}"
            for label, names in (
                ("created", self.created),
                ("updated", self.updated),
                ("deactivated", self.deactivated),
                ("renamed", self.renamed),
                ("added from GitLab groups", [f"{u} ({t})" for u, t in self.from_groups.items()]),
                ("unknown GitLab usernames", self.unknown),
            )
            if names
        ]
        lines += [f"  conflict: {text}" for text in self.conflicts]
        lines += [f"  GitLab problem: {text}" for text in self.problems]
        return lines


# --------------------------------------------------------------------------- GitLab


@dataclass
class _Outcome(Generic[T]):
    value: T | None = None
    error: GitLabError | None = None
    skipped: bool = False


@dataclass
class _Directory:
    """What GitLab said, read before the transaction."""

    #: lower-cased username → GitLab user, for every name GitLab told us about.
    users: dict[str, GitLabUser] = field(default_factory=dict)
    #: lower-cased team name → its group's active direct members, for the groups read.
    members: dict[str, list[GitLabUser]] = field(default_factory=dict)
    #: lower-cased names of the teams whose group could not be read.
    unread: set[str] = field(default_factory=set)


async def _read_gitlab(
    settings: Settings, gitlab: GitLabDirectory | None, report: SyncReport
) -> _Directory:
    directory = _Directory()
    grouped = [t for t in settings.teams if t.gitlab_group]
    if gitlab is None:
        for team in grouped:
            directory.unread.add(team.name.lower())
            report.problems.append(
                f"team {team.name}: GitLab group {team.gitlab_group} not read (GITLAB_URL is not"
                " set); its members are left as they are"
            )
        return directory

    source: GitLabDirectory = gitlab
    limit = asyncio.Semaphore(LOOKUP_CONCURRENCY)
    down: list[GitLabUnavailable] = []  # once GitLab is unreachable, ask it nothing more

    async def attempt(call: Callable[[], Awaitable[T]]) -> _Outcome[T]:
        async with limit:
            if down:
                return _Outcome(skipped=True)
            try:
                return _Outcome(value=await call())
            except GitLabUnavailable as e:
                if not down:
                    report.problems.append(str(e))
                down.append(e)
                return _Outcome(error=e, skipped=True)
            except GitLabError as e:
                return _Outcome(error=e)

    def members_of(group: str) -> Callable[[], Awaitable[list[GitLabUser]]]:
        return lambda: source.group_members(group)

    groups = await asyncio.gather(*(attempt(members_of(str(t.gitlab_group))) for t in grouped))
    for team, outcome in zip(grouped, groups, strict=True):
        key = team.name.lower()
        if outcome.value is None:
            directory.unread.add(key)
            if outcome.error is not None and not outcome.skipped:
                report.problems.append(f"team {team.name}: {outcome.error}")
            continue
        for member in outcome.value:
            directory.users.setdefault(member.username.lower(), member)
        # A blocked or deactivated account cannot review: it is no member for the bot.
        directory.members[key] = [m for m in outcome.value if m.state == "active"]

    def lookup(username: str) -> Callable[[], Awaitable[GitLabUser | None]]:
        return lambda: source.user(username)

    # Configured users a group listed are known already; the others are looked up.
    asked = [u.gitlab for u in settings.users if u.gitlab.lower() not in directory.users]
    found = await asyncio.gather(*(attempt(lookup(name)) for name in asked))
    unresolved = 0
    for name, result in zip(asked, found, strict=True):
        if result.value is not None:
            directory.users[name.lower()] = result.value
        elif result.skipped:
            unresolved += 1
        elif result.error is not None:
            report.problems.append(str(result.error))
        else:
            report.unknown.append(name)
            log.warning("GitLab knows no user %r (configured in users)", name)
    if down:
        not_read = sum(1 for o in groups if o.skipped)
        report.problems.append(
            f"GitLab unavailable: {not_read} group(s) not read, {unresolved} username(s) not"
            " resolved; their users are left as they are"
        )
    for problem in report.problems:
        log.warning("%s", problem)
    return directory


# --------------------------------------------------------------------------- database


def _assign(row: object, values: dict[str, object]) -> bool:
    changed = False
    for key, value in values.items():
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed = True
    return changed


async def _sync_teams(
    session: AsyncSession, settings: Settings, report: SyncReport
) -> dict[str, Team]:
    stored = {t.name.lower(): t for t in (await session.scalars(select(Team))).all()}
    configured: dict[str, Team] = {}
    for team in settings.teams:
        values: dict[str, object] = {
            "name": team.name,
            "labels": list(team.labels),
            "channel": team.channel,
            "gitlab_group": team.gitlab_group,
            "is_active": True,
        }
        row = stored.get(team.name.lower())
        if row is None:
            row = Team(**values)
            session.add(row)
            report.teams_created.append(team.name)
        elif _assign(row, values):
            report.teams_updated.append(team.name)
        configured[team.name.lower()] = row
    for key, row in stored.items():
        if key not in configured and row.is_active and settings.teams:
            row.is_active = False
            report.teams_deactivated.append(row.name)
    await session.flush()
    return configured


@dataclass
class _Wanted:
    username: str
    values: dict[str, object]
    gitlab_id: int | None  # None: not resolved this time, the stored id stays
    group_team: str | None = None  # the team a group-derived user joins


def _wanted_users(
    settings: Settings, teams: dict[str, Team], directory: _Directory, report: SyncReport
) -> dict[str, _Wanted]:
    """Every user the organisation has: configured ones, then group-derived ones."""
    team_names = {t.name.lower(): t.name for t in settings.teams}
    group_of = {t.name.lower(): t.gitlab_group for t in settings.teams}
    memberships: dict[str, list[str]] = {}  # lower username → team keys, config order
    for team in settings.teams:
        key = team.name.lower()
        for member in directory.members.get(key, ()):
            memberships.setdefault(member.username.lower(), []).append(key)

    wanted: dict[str, _Wanted] = {}
    for user in settings.users:
        key = user.gitlab.lower()
        found = directory.users.get(key)
        wanted[key] = _Wanted(
            username=user.gitlab,
            values={
                "gitlab_username": user.gitlab,
                "mattermost_username": user.mattermost_username,
                "team_id": teams[user.team.lower()].id if user.team else None,
                "role": user.role,
                "timezone": user.timezone,
                "email": user.email,
                "max_active_reviews": user.max_active_reviews,
                "is_active": True,
            },
            gitlab_id=found.id if found else None,
        )
        own = user.team.lower() if user.team else None
        others = [t for t in memberships.get(key, ()) if t != own]
        if others:
            configured = f"in team {user.team}" if user.team else "without a team"
            groups = ", ".join(f"{group_of[t]} (team {team_names[t]})" for t in others)
            report.conflicts.append(
                f"{user.gitlab}: configured {configured}, but also in GitLab group(s) {groups};"
                " the configuration wins"
            )

    claimed = {u.mattermost_username.lower() for u in settings.users}
    for key, team_keys in memberships.items():
        if key in wanted:
            continue
        member = directory.users[key]
        team_key = team_keys[0]
        if len(team_keys) > 1:
            names = ", ".join(team_names[t] for t in team_keys)
            report.conflicts.append(
                f"{member.username}: in the GitLab groups of teams {names};"
                f" joins {team_names[team_key]}"
            )
        mattermost: str | None = member.username
        if member.username.lower() in claimed:
            report.conflicts.append(
                f"{member.username}: Mattermost name {member.username!r} is a configured"
                " user's; left unset"
            )
            mattermost = None
        wanted[key] = _Wanted(
            username=member.username,
            values={
                "gitlab_username": member.username,
                "mattermost_username": mattermost,
                "team_id": teams[team_key].id,
                "role": "reviewer",
                "timezone": None,
                "email": None,
                "max_active_reviews": None,
                "is_active": True,
            },
            gitlab_id=member.id,
            group_team=team_names[team_key],
        )
    return wanted


def _follow_gitlab_ids(
    stored: dict[str, User], wanted: dict[str, _Wanted], report: SyncReport
) -> set[str]:
    """Make room for every resolved GitLab id; returns the keys of rows that released one.

    A row holding an id that GitLab now gives to another name is that account under its
    former name: it is renamed when nothing else claims it, else it releases the id.
    """
    released: set[str] = set()
    holders = {row.gitlab_id: row for row in stored.values() if row.gitlab_id is not None}
    for key, want in wanted.items():
        holder = holders.get(want.gitlab_id) if want.gitlab_id is not None else None
        if holder is None or holder.gitlab_username.lower() == key:
            continue
        old_key, old_name = holder.gitlab_username.lower(), holder.gitlab_username
        if old_key not in wanted and key not in stored:
            del stored[old_key]
            stored[key] = holder
            holder.gitlab_username = want.username
            report.renamed.append(f"{old_name} → {want.username}")
        else:
            holder.gitlab_id = None
            released.add(old_key)
            report.conflicts.append(
                f"{want.username}: GitLab id {want.gitlab_id} was held by {old_name},"
                f" which releases it"
            )
    return released


async def sync_organisation(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    gitlab: GitLabDirectory | None = None,
) -> SyncReport:
    """Bring the teams and users tables in line with the configuration (and GitLab).

    GitLab is read first; the database changes in one transaction.
    """
    report = SyncReport()
    directory = await _read_gitlab(settings, gitlab, report)
    async with sessions.begin() as session:
        teams = await _sync_teams(session, settings, report)
        stored = {u.gitlab_username.lower(): u for u in (await session.scalars(select(User))).all()}
        wanted = _wanted_users(settings, teams, directory, report)
        released = _follow_gitlab_ids(stored, wanted, report)
        claimed = {
            name.lower()
            for w in wanted.values()
            if isinstance(name := w.values["mattermost_username"], str)
        }
        # Release every Mattermost name that moves (a swap, or a name freed by a user who
        # left) before assigning, so the unique constraint never sees two holders; the
        # GitLab ids released above are flushed with them, for the same reason.
        for key, row in stored.items():
            desired = wanted[key].values["mattermost_username"] if key in wanted else None
            current = row.mattermost_username
            moves = current is not None and current != desired
            if moves and (key in wanted or str(current).lower() in claimed):
                row.mattermost_username = None
        await session.flush()

        for key, want in wanted.items():
            values = dict(want.values)
            if want.gitlab_id is not None:
                values["gitlab_id"] = want.gitlab_id
            existing = stored.get(key)
            joins = existing is None or not existing.is_active
            if existing is None:
                session.add(User(**values))
                report.created.append(want.username)
            elif _assign(existing, values) or key in released:
                report.updated.append(want.username)
            if want.group_team and joins:
                report.from_groups[want.username] = want.group_team

        unread = {teams[key].id for key in directory.unread}
        leaving = [row for key, row in stored.items() if key not in wanted and row.is_active]
        kept = [row for row in leaving if row.team_id in unread]
        leaving = [row for row in leaving if row.team_id not in unread]
        if kept:
            names = ", ".join(sorted(row.gitlab_username for row in kept))
            report.problems.append(
                f"not deactivated, as their team's GitLab group was not read: {names}"
            )
            log.warning("%s", report.problems[-1])
        if leaving and not wanted:
            log.warning(
                "no users configured: leaving the %d stored user(s) as they are", len(leaving)
            )
        elif leaving:
            for row in leaving:
                row.is_active = False
                report.deactivated.append(row.gitlab_username)
        for key in sorted(released - wanted.keys()):
            if stored[key].gitlab_username not in report.deactivated:
                report.updated.append(stored[key].gitlab_username)
    log.info("organisation synced: %s", report.summary())
    return report


async def active_user_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        count = await session.scalar(select(func.count()).select_from(User).where(User.is_active))
        return int(count or 0)
