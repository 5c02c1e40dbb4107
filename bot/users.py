"""Loading the configured organisation (teams and users) into the database.

Idempotent: running it twice changes nothing the second time. A user or team that is no
longer configured becomes inactive; its history (reviews, badges, metrics) stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.models import Team, User
from bot.settings import Settings

log = logging.getLogger("bot.users")


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    teams_created: list[str] = field(default_factory=list)
    teams_updated: list[str] = field(default_factory=list)
    teams_deactivated: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(vars(self).values())

    def summary(self) -> str:
        parts = [
            f"{len(self.teams_created)} team(s) created",
            f"{len(self.teams_updated)} updated",
            f"{len(self.teams_deactivated)} deactivated",
            f"{len(self.created)} user(s) created",
            f"{len(self.updated)} updated",
            f"{len(self.deactivated)} deactivated",
        ]
        return ", ".join(parts)


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


async def sync_organisation(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> SyncReport:
    """Bring the teams and users tables in line with the configuration, in one transaction."""
    report = SyncReport()
    async with sessions.begin() as session:
        teams = await _sync_teams(session, settings, report)
        stored = {u.gitlab_username.lower(): u for u in (await session.scalars(select(User))).all()}
        wanted = {u.gitlab.lower(): u for u in settings.users}
        claimed = {u.mattermost_username.lower() for u in settings.users}
        # Release every Mattermost name that moves (a swap, or a name freed by a user who
        # left) before assigning, so the unique constraint never sees two holders.
        for key, row in stored.items():
            desired = wanted[key].mattermost_username if key in wanted else None
            current = row.mattermost_username
            moves = current is not None and current != desired
            if moves and (key in wanted or str(current).lower() in claimed):
                row.mattermost_username = None
        await session.flush()

        for key, user in wanted.items():
            values: dict[str, object] = {
                "gitlab_username": user.gitlab,
                "mattermost_username": user.mattermost_username,
                "team_id": teams[user.team.lower()].id if user.team else None,
                "role": user.role,
                "timezone": user.timezone,
                "email": user.email,
                "max_active_reviews": user.max_active_reviews,
                "is_active": True,
            }
            existing = stored.get(key)
            if existing is None:
                session.add(User(**values))
                report.created.append(user.gitlab)
            elif _assign(existing, values):
                report.updated.append(user.gitlab)

        leaving = [row for key, row in stored.items() if key not in wanted and row.is_active]
        if leaving and not settings.users:
            log.warning(
                "no users configured: leaving the %d stored user(s) as they are", len(leaving)
            )
        elif leaving:
            for row in leaving:
                row.is_active = False
                report.deactivated.append(row.gitlab_username)
    log.info("organisation synced: %s", report.summary())
    return report


async def active_user_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        count = await session.scalar(select(func.count()).select_from(User).where(User.is_active))
        return int(count or 0)
