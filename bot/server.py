"""Running the app: migrate, start, serve until asked to stop, then shut down cleanly.

Shutdown order: stop accepting connections, let in-flight requests finish (up to
``shutdown_timeout``), stop the scheduler and the plugins, close the cache and the
database. The whole of it is bounded, so SIGTERM always ends the process in time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Sequence

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import migrate
from bot.app import create_app
from bot.errors import CommandFailed, one_line, socket_reason
from bot.gitlab import GitLab
from bot.http import CONTEXT
from bot.plugins import Plugin
from bot.settings import Settings
from bot.users import sync_organisation

log = logging.getLogger("bot.server")


async def _check_port(host: str, port: int) -> None:
    """Fail fast, before touching the database, when the address cannot be listened on."""
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(
            asyncio.Protocol, host, port, reuse_address=True, start_serving=False
        )
    except OSError as e:
        raise CommandFailed(f"cannot listen on {host}:{port}: {socket_reason(e)}") from e
    server.close()
    await server.wait_closed()


async def _sync_from_gitlab(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, gitlab: GitLab
) -> None:
    try:
        await sync_organisation(sessions, settings, gitlab)
    except (SQLAlchemyError, OSError) as e:
        log.warning("organisation not synced from GitLab: %s", one_line(e))


async def run_server(
    settings: Settings,
    stop: asyncio.Event,
    plugins: Sequence[type[Plugin]] | None = None,
) -> None:
    """Serve until ``stop`` is set; raise ``CommandFailed`` when it cannot start."""
    await _check_port(settings.http_host, settings.http_port)
    try:
        await asyncio.to_thread(migrate.upgrade, settings.sync_database_url, settings.plugins)
    except migrate.MigrationError as e:
        raise CommandFailed(str(e)) from e
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {one_line(e)}") from e
    if stop.is_set():
        log.info("stopped before serving")
        return

    app = create_app(settings, plugins)
    runner = web.AppRunner(
        app, shutdown_timeout=settings.shutdown_timeout, access_log=None, handle_signals=False
    )
    try:
        # Inside the try: when a resource fails to start, those already started close.
        await runner.setup()
        context = app[CONTEXT]
        try:
            # The configuration first (fast, local); GitLab's groups and ids once serving,
            # so that a slow GitLab never holds the probes back.
            await sync_organisation(context.sessions, settings)
        except (SQLAlchemyError, OSError) as e:
            raise CommandFailed(f"database unreachable: {one_line(e)}") from e
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        try:
            await site.start()
        except OSError as e:
            where = f"{settings.http_host}:{settings.http_port}"
            raise CommandFailed(f"cannot listen on {where}: {socket_reason(e)}") from e

        # Everything built at start-up lives until shutdown: keep it out of the cyclic
        # garbage collector's scans, which otherwise stall requests for tens of ms.
        gc.freeze()
        log.info(
            "serving on %s:%s (public URL %s)",
            settings.http_host,
            settings.http_port,
            settings.public_url,
        )
        from_gitlab = (
            asyncio.create_task(_sync_from_gitlab(context.sessions, settings, context.gitlab_))
            if context.gitlab_ is not None
            else None
        )
        await stop.wait()
        log.info("shutting down: no new requests, finishing the ones in flight")
        if from_gitlab is not None and not from_gitlab.done():
            from_gitlab.cancel()
            await asyncio.gather(from_gitlab, return_exceptions=True)
    finally:
        try:
            await asyncio.wait_for(runner.cleanup(), timeout=settings.shutdown_timeout + 1)
        except TimeoutError:
            log.warning("shutdown took longer than %ss; exiting anyway", settings.shutdown_timeout)
    log.info("stopped")
