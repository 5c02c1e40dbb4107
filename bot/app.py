"""``create_app(settings)``: the one place where everything is wired.

The HTTP server, the scheduler and (later) the Mattermost connection share the app's
event loop. Each resource opens and closes in its own ``cleanup_ctx`` generator, in
order: database, cache, GitLab, plugins, Mattermost, webhook inbox, scheduler; they close
in reverse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiohttp import web

from bot.cache import create_cache
from bot.chatcursor import DatabaseCursor
from bot.chatops import ChatOps
from bot.context import AppContext
from bot.db import create_engine, create_sessionmaker
from bot.gitlab import GitLab
from bot.http import CONTEXT, CORE_ROUTES, MAX_BODY, SPOOL_CHECK, add_core_routes, observe
from bot.leader import Leadership
from bot.mattermost import CommandDefinition, Mattermost
from bot.plugins import Plugin, Registry, load_plugins
from bot.scheduler import Scheduler
from bot.settings import Settings
from bot.webhooks import Inbox

REGISTRY = web.AppKey("registry", Registry)
SCHEDULER = web.AppKey("scheduler", Scheduler)
INBOX = web.AppKey("inbox", Inbox)
CHATOPS = web.AppKey("chatops", ChatOps)
ONE_SHOT = web.AppKey("one_shot", bool)


async def _database(app: web.Application) -> AsyncIterator[None]:
    context = app[CONTEXT]
    settings = context.settings
    engine = create_engine(
        settings.async_database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    context.engine_ = engine
    context.sessions_ = create_sessionmaker(engine)
    yield
    await engine.dispose()


async def _cache(app: web.Application) -> AsyncIterator[None]:
    context = app[CONTEXT]
    redis_url = context.settings.redis_url
    context.cache_ = create_cache(
        redis_url.get_secret_value() if redis_url else None, context.metrics.registry
    )
    yield
    await context.cache_.close()


async def _gitlab(app: web.Application) -> AsyncIterator[None]:
    context = app[CONTEXT]
    settings = context.settings
    if settings.gitlab_url:
        token = settings.gitlab_token.get_secret_value() if settings.gitlab_token else None
        context.gitlab_ = GitLab(
            settings.gitlab_url, token, concurrency=settings.gitlab_concurrency
        )
    yield
    if context.gitlab_ is not None:
        await context.gitlab_.close()


async def _chat(app: web.Application) -> AsyncIterator[None]:
    context, chatops = app[CONTEXT], app[CHATOPS]
    settings = context.settings
    if not (settings.mattermost_url and settings.mattermost_token):
        yield
        return
    cursor = DatabaseCursor(context.sessions)  # catch-up survives restarts and replicas
    chat = Mattermost(settings, context.metrics.registry, cursor=cursor)
    context.chat_ = chatops.chat = chat
    commands = [
        CommandDefinition(name, h.spec.options["description"], h.spec.options["hint"])
        for name, h in sorted(app[REGISTRY].commands.items())
    ]
    if app[ONE_SHOT]:  # REST only: no websocket, no command registration
        await chat.start(commands, chatops.on_message, listen=False)
    else:
        leadership = Leadership(context.engine, "mattermost-websocket", poll=2.0)
        await chat.start(commands, chatops.on_message, leadership)
    yield
    await chatops.drain(grace=settings.shutdown_timeout / 4)
    await chat.stop()


async def _inbox(app: web.Application) -> AsyncIterator[None]:
    inbox = app[INBOX]
    await inbox.warn_without_spool()
    inbox.start()
    yield
    await inbox.stop(grace=app[CONTEXT].settings.shutdown_timeout / 2)


async def _plugins(app: web.Application) -> AsyncIterator[None]:
    started: list[Plugin] = []
    try:
        for plugin in app[REGISTRY].plugins:
            await plugin.on_start()
            started.append(plugin)
        yield
    finally:
        for plugin in reversed(started):
            await plugin.on_stop()


async def _scheduler(app: web.Application) -> AsyncIterator[None]:
    scheduler = app[SCHEDULER]
    scheduler.start()
    yield
    await scheduler.stop(grace=app[CONTEXT].settings.shutdown_timeout / 2)


def create_app(
    settings: Settings,
    plugins: Sequence[type[Plugin]] | None = None,
    *,
    one_shot: bool = False,
) -> web.Application:
    """Build the application; no I/O happens until it starts.

    The feature areas are those ``settings.plugins`` enables; ``plugins`` replaces them
    with these classes (tests pass their own). ``one_shot`` (``run-job`` and other
    one-shot commands) opens the resources without the webhook workers, the scheduler
    or the Mattermost websocket.
    """
    context = AppContext(settings=settings, one_shot=one_shot)
    instances = (
        [cls(context) for cls in plugins]
        if plugins is not None
        else load_plugins(settings.plugins, context)
    )
    registry = Registry(instances, reserved_routes=CORE_ROUTES)

    app = web.Application(middlewares=[observe], client_max_size=MAX_BODY)
    app[CONTEXT] = context
    app[REGISTRY] = registry
    app[SCHEDULER] = Scheduler(context, registry)
    app[INBOX] = inbox = Inbox(context, registry)
    app[SPOOL_CHECK] = inbox.spool_check
    app[CHATOPS] = chatops = ChatOps(context, registry)
    add_core_routes(app)
    app.router.add_post("/webhook/gitlab", inbox.receive)
    app.router.add_post("/mattermost/command", chatops.command_endpoint)
    app.router.add_get("/mattermost/command", chatops.command_endpoint, allow_head=False)
    app.router.add_post("/mattermost/dialog", chatops.dialog_endpoint)
    app.router.add_post("/mattermost/action", chatops.action_endpoint)
    for handler in registry.routes.values():
        app.router.add_route(
            handler.spec.options["method"], handler.spec.options["path"], handler.func
        )
    app[ONE_SHOT] = one_shot
    resources = [_database, _cache, _gitlab, _plugins, _chat]
    app.cleanup_ctx.extend(resources if one_shot else [*resources, _inbox, _scheduler])
    return app


@asynccontextmanager
async def one_shot_app(settings: Settings) -> AsyncIterator[web.Application]:
    """The app with its resources open (database, cache, GitLab, the areas, Mattermost
    REST) but nothing serving, for one-shot commands (``run-job``, ``aggregate``)."""
    app = create_app(settings, one_shot=True)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        yield app
    finally:
        await runner.cleanup()
