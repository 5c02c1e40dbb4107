"""``roulette-bot``: the commands of SPEC.md, thin: parse, build, run.

Exit codes: 0 success; 1 a service is unreachable or the command failed; 2 bad
configuration or usage. Failures print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bot import migrate
from bot.app import create_app
from bot.db import create_engine, create_sessionmaker
from bot.http import CONTEXT
from bot.logs import SecretMasker, configure_logging
from bot.settings import ConfigError, Settings, load_settings
from bot.users import sync_organisation

log = logging.getLogger("bot.cli")
PROG = "roulette-bot"


class CommandFailed(Exception):
    """A command could not do its work; the message is the one line the user sees."""


# SQLAlchemy appends "(Background on this error at: https://sqlalche.me/...)".
_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")


def _one_line(error: BaseException) -> str:
    text = " ".join(_BACKGROUND.sub("", str(error)).split()) or type(error).__name__
    return text[:400]


def _socket_reason(error: OSError) -> str:
    if error.errno and error.errno > 0 and not isinstance(error, socket.gaierror):
        return os.strerror(error.errno)
    return error.strerror or _one_line(error)


def _fail(message: str, code: int, secrets: Sequence[str] = ()) -> NoReturn:
    print(f"{PROG}: {SecretMasker(secrets).mask(message)}", file=sys.stderr)
    raise SystemExit(code)


def _fail_config(error: ConfigError) -> NoReturn:
    # "field: problem": mask only the problem, or a field called ``*_token`` would lose
    # the problem's first word to the masker's ``name: value`` rule.
    field, sep, problem = str(error).partition(": ")
    masked = f"{field}{sep}{SecretMasker().mask(problem)}" if sep else SecretMasker().mask(field)
    print(f"{PROG}: config error: {masked}", file=sys.stderr)
    raise SystemExit(2)


# --------------------------------------------------------------------------- commands


def _migrate(settings: Settings) -> None:
    url = settings.sync_database_url
    try:
        before = migrate.current_revision(url)
        migrate.upgrade(url)
        after = migrate.current_revision(url)
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {_one_line(e)}") from e
    where = url.render_as_string(hide_password=True)
    if before == after:
        print(f"{where}: already at revision {after} (head)")
    else:
        print(f"{where}: migrated from {before or 'an empty database'} to {after} (head)")


async def _sync_users(settings: Settings) -> None:
    engine = create_engine(settings.async_database_url)
    try:
        report = await sync_organisation(create_sessionmaker(engine), settings)
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {_one_line(e)}") from e
    finally:
        await engine.dispose()
    print(f"sync-users: {report.summary()}")
    for label, names in (
        ("created", report.created),
        ("updated", report.updated),
        ("deactivated", report.deactivated),
    ):
        if names:
            print(f"  {label}: {', '.join(sorted(names))}")


def _sync_users_command(settings: Settings) -> None:
    try:
        _migrate_quietly(settings)
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {_one_line(e)}") from e
    asyncio.run(_sync_users(settings))


def _migrate_quietly(settings: Settings) -> None:
    migrate.upgrade(settings.sync_database_url)


async def _check_port(host: str, port: int) -> None:
    """Fail fast, before touching the database, when the address cannot be listened on."""
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(
            asyncio.Protocol, host, port, reuse_address=True, start_serving=False
        )
    except OSError as e:
        raise CommandFailed(f"cannot listen on {host}:{port}: {_socket_reason(e)}") from e
    server.close()
    await server.wait_closed()


async def _serve(settings: Settings) -> None:
    # From the start, SIGTERM/SIGINT mean "stop cleanly", even while still starting.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    await _check_port(settings.http_host, settings.http_port)
    try:
        await asyncio.to_thread(_migrate_quietly, settings)
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {_one_line(e)}") from e
    if stop.is_set():
        log.info("stopped before serving")
        return

    app = create_app(settings)
    runner = web.AppRunner(
        app, shutdown_timeout=settings.shutdown_timeout, access_log=None, handle_signals=False
    )
    try:
        # Inside the try: when a resource fails to start, those already started close.
        await runner.setup()
        try:
            await sync_organisation(app[CONTEXT].sessions, settings)
        except (SQLAlchemyError, OSError) as e:
            raise CommandFailed(f"database unreachable: {_one_line(e)}") from e
        site = web.TCPSite(
            runner,
            settings.http_host,
            settings.http_port,
            shutdown_timeout=settings.shutdown_timeout,
        )
        try:
            await site.start()
        except OSError as e:
            where = f"{settings.http_host}:{settings.http_port}"
            raise CommandFailed(f"cannot listen on {where}: {_socket_reason(e)}") from e

        log.info(
            "serving on %s:%s (public URL %s)",
            settings.http_host,
            settings.http_port,
            settings.public_url,
        )
        await stop.wait()
        log.info("shutting down: no new requests, finishing the ones in flight")
    finally:
        # Stop accepting, let in-flight requests finish, then close every resource.
        try:
            await asyncio.wait_for(runner.cleanup(), timeout=settings.shutdown_timeout + 1)
        except TimeoutError:
            log.warning("shutdown took longer than %ss; exiting anyway", settings.shutdown_timeout)
    log.info("stopped")


# --------------------------------------------------------------------------- parsing


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="YAML configuration file (default: $ROULETTE_CONFIG, else built-in defaults)",
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Reviewer Roulette: picks GitLab merge-request reviewers from Mattermost.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "serve", parents=[common], help="migrate, load the organisation, run until SIGTERM"
    )
    commands.add_parser("migrate", parents=[common], help="apply pending database migrations")
    commands.add_parser(
        "sync-users", parents=[common], help="load teams and users from the configuration"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigError as e:
        _fail_config(e)
    secrets = settings.secret_values()
    configure_logging(settings.log_level, settings.log_format, secrets)

    actions: dict[str, Callable[[], object]] = {
        "serve": lambda: asyncio.run(_serve(settings)),
        "migrate": lambda: _migrate(settings),
        "sync-users": lambda: _sync_users_command(settings),
    }
    try:
        actions[args.command]()
    except CommandFailed as e:
        _fail(str(e), 1, secrets)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as e:
        # The traceback is for debugging (LOG_LEVEL=debug); the user gets one line.
        log.debug("%s failed", args.command, exc_info=True)
        _fail(f"{args.command} failed: {type(e).__name__}: {_one_line(e)}", 1, secrets)


if __name__ == "__main__":
    main()
