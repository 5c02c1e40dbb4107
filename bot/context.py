"""The app's shared resources, and the small typed view of them a feature area gets.

``AppContext`` is the core's: ``bot/app.py`` fills its resources when the app starts
(``cleanup_ctx``), not when it is built, so its properties fail loudly before start-up.
``PluginContext`` is what a plugin's handlers use (``self.app``): the session factory,
the cache, GitLab, chat, the translator and the renderer, and which areas are enabled,
through public properties only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.i18n import Translator, environment, translator
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
    one_shot: bool = False  # a one-shot command (run-job): resources open, nothing served

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
    def reads(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for reads only: no write in them. Today they are :attr:`sessions`, in
        a transaction like any other session.

        Not in autocommit, which on PostgreSQL would spare each read its ``BEGIN`` and
        ``ROLLBACK`` round trips: the pool's connections are not in autocommit, SQLAlchemy
        switches a connection to it when it hands it out and back when it takes it back,
        and a task cancelled in between (a shutdown, a roll's timeout) left the connection
        to the garbage collector (one or two in 300 cancelled reads; none without the
        switch). An engine of its own, in autocommit from the start, would need a second
        pool beside ``DATABASE_POOL_SIZE``."""
        return self.sessions

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


class GitLabNotConfigured(RuntimeError):
    """GitLab is not configured (``GITLAB_URL``); check ``has_gitlab`` first."""


class PluginContext:
    """What a feature area's handlers may use; built by ``Plugin.__init__``."""

    def __init__(self, core: AppContext) -> None:
        self._core = core

    @property
    def settings(self) -> Settings:
        return self._core.settings

    @property
    def metrics(self) -> Metrics:
        """The process's metrics; ``metrics.registry`` takes the area's own collectors."""
        return self._core.metrics

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """One ``AsyncSession`` per event, request or job (``async with sessions.begin()``)."""
        return self._core.sessions

    @property
    def reads(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for reads only (see ``AppContext.reads``). Never write in them."""
        return self._core.reads

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``, for the few statements that differ (upserts)."""
        return self._core.engine.dialect.name

    @property
    def cache(self) -> Cache:
        return self._core.cache

    @property
    def has_gitlab(self) -> bool:
        return self._core.gitlab_ is not None

    @property
    def gitlab(self) -> GitLab:
        """The GitLab adapter; raises ``GitLabNotConfigured`` without ``GITLAB_URL``."""
        if self._core.gitlab_ is None:
            raise GitLabNotConfigured("GitLab is not configured (GITLAB_URL)")
        return self._core.gitlab_

    @property
    def chat(self) -> Mattermost | None:
        """The Mattermost adapter, or None when chat is not configured."""
        return self._core.chat_

    @property
    def serving(self) -> bool:
        """False in a one-shot command (``run-job``): no background work worth starting."""
        return not self._core.one_shot

    def enabled(self, area: str) -> bool:
        """Whether the feature area ``area`` is enabled (``plugins:``)."""
        return area in self._core.settings.plugins

    def translator(self, locale: str | None = None) -> Translator:
        """``_`` in ``locale``, else the configured ``locale``."""
        return translator(locale or self._core.settings.locale)

    def render(self, package: str, template: str, locale: str | None = None, **values: Any) -> str:
        """Render ``package``'s ``templates/<template>`` (Jinja2) for a reader of ``locale``;
        the template gets ``t``, the reader's translator."""
        page = environment(package).get_template(template)
        return page.render(t=self.translator(locale), **values)
