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

from sqlalchemy.exc import SQLAlchemyError

from bot.errors import CommandFailed, one_line
from bot.logs import SecretMasker, configure_logging
from bot.settings import ConfigError, Settings, load_settings

# The heavy modules (aiohttp, Alembic, the app and its plugins) are imported by the
# commands that use them, after the configuration is validated: a bad configuration
# (or ``--help``) answers at once.

log = logging.getLogger("bot.cli")
PROG = "roulette-bot"


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
    from bot import migrate

    url = settings.sync_database_url
    try:
        before = migrate.current_revision(url)
        migrate.upgrade(url)
        after = migrate.current_revision(url)
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {one_line(e)}") from e
    where = url.render_as_string(hide_password=True)
    if before == after:
        print(f"{where}: already at revision {after} (head)")
    else:
        print(f"{where}: migrated from {before or 'an empty database'} to {after} (head)")


async def _sync_users(settings: Settings) -> None:
    from bot.db import create_engine, create_sessionmaker
    from bot.users import sync_organisation

    engine = create_engine(settings.async_database_url)
    try:
        report = await sync_organisation(create_sessionmaker(engine), settings)
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {one_line(e)}") from e
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
        from bot import migrate

        migrate.upgrade(settings.sync_database_url)
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {one_line(e)}") from e
    asyncio.run(_sync_users(settings))


async def _serve(settings: Settings) -> None:
    from bot.server import run_server

    # From the start, SIGTERM/SIGINT mean "stop cleanly", even while still starting.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_server(settings, stop)


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
        _fail(f"{args.command} failed: {type(e).__name__}: {one_line(e)}", 1, secrets)


if __name__ == "__main__":
    main()
