"""The typed context every plugin receives: the app's shared resources.

Resources are created when the app starts (``cleanup_ctx``), not when it is built, so
the context hands them out through properties that fail loudly before start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.metrics import Metrics
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.cache import Cache
    from bot.gitlab import GitLab
    from bot.mattermost import Mattermost


@dataclass
class AppContext:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    engine_: AsyncEngine | None = None
    sessions_: async_sessionmaker[AsyncSession] | None = None
    cache_: Cache | None = None
    gitlab_: GitLab | None = None  # None when GITLAB_URL is not configured
    chat_: Mattermost | None = None  # None when MATTERMOST_URL/TOKEN are not configured

    @property
    def engine(self) -> AsyncEngine:
        if self.engine_ is None:
            raise RuntimeError("the database is not open yet (the app has not started)")
        return self.engine_

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self.sessions_ is None:
            raise RuntimeError("the database is not open yet (the app has not started)")
        return self.sessions_

    @property
    def gitlab(self) -> GitLab:
        if self.gitlab_ is None:
            raise RuntimeError("GitLab is not configured (GITLAB_URL)")
        return self.gitlab_

    @property
    def cache(self) -> Cache:
        if self.cache_ is None:
            raise RuntimeError("the cache is not open yet (the app has not started)")
        return self.cache_
