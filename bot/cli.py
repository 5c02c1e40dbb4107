"""``roulette-bot``: the commands of SPEC.md, thin: parse, build, run.

Exit codes: 0 success; 1 a service is unreachable or the command failed; 2 bad
configuration or usage. Failures print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
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


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:400]


def _fail(message: str, code: int, secrets: Sequence[str] = ()) -> NoReturn:
    print(f"{PROG}: {SecretMasker(secrets).mask(message)}", file=sys.stderr)
    raise SystemExit(code)


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


async def _serve(settings: Settings) -> None:
    try:
        await asyncio.to_thread(_migrate_quietly, settings)
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {_one_line(e)}") from e

    app = create_app(settings)
    runner = web.AppRunner(
        app, shutdown_timeout=settings.shutdown_timeout, access_log=None, handle_signals=False
    )
    await runner.setup()
    try:
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
            raise CommandFailed(f"cannot listen on {where}: {e.strerror or e}") from e

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
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
        _fail(f"config error: {e}", 2)
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
        log.exception("%s failed", args.command)
        _fail(f"{args.command} failed: {type(e).__name__}: {_one_line(e)}", 1, secrets)


if __name__ == "__main__":
    main()
