"""``roulette-bot``: the commands (listed in the README), thin: parse, build, run.

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
from typing import Any, NoReturn

from sqlalchemy.exc import SQLAlchemyError

from bot import demo as demo_command  # its arguments; the demo itself loads when it runs
from bot.errors import CommandFailed, one_line
from bot.logs import SecretMasker, configure_logging
from bot.plugins import Area, RegistryError, default_areas, find_areas
from bot.settings import ConfigError, Settings, load_settings

# Alembic, the demo and the server are imported by the commands that use them. The
# feature areas (about a second) are imported to validate their settings and to offer
# their commands: for serve, migrate and sync-users, a configuration file that cannot be
# read or parsed is reported before them (``_early``).

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
        migrate.upgrade(url, settings.plugins)
        after = migrate.current_revision(url)
    except migrate.MigrationError as e:
        raise CommandFailed(str(e)) from e
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {one_line(e)}") from e
    where = url.render_as_string(hide_password=True)
    if before == after:
        print(f"{where}: already at revision {after} (head)")
    else:
        print(f"{where}: migrated from {before or 'an empty database'} to {after} (head)")


async def _sync_users(settings: Settings) -> None:
    from bot.db import create_engine, create_sessionmaker
    from bot.users import gitlab_directory, sync_organisation

    engine = create_engine(settings.async_database_url)
    try:
        # GitLab problems (unknown names, unreadable groups) are in the report, not raised.
        async with gitlab_directory(settings) as gitlab:
            report = await sync_organisation(create_sessionmaker(engine), settings, gitlab)
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {one_line(e)}") from e
    finally:
        await engine.dispose()
    print(f"sync-users: {report.summary()}")
    for line in report.details():
        print(line)


def _sync_users_command(settings: Settings) -> None:
    try:
        from bot import migrate

        migrate.upgrade(settings.sync_database_url, settings.plugins)
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


async def _run_job(settings: Settings, name: str) -> None:
    from datetime import UTC, datetime

    from bot import migrate
    from bot.app import REGISTRY, one_shot_app
    from bot.http import CONTEXT
    from bot.scheduler import period_key, run_guarded

    try:
        await asyncio.to_thread(migrate.upgrade, settings.sync_database_url, settings.plugins)
    except migrate.MigrationError as e:
        raise CommandFailed(str(e)) from e
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {one_line(e)}") from e
    async with one_shot_app(settings) as app:
        handler = app[REGISTRY].jobs[name]
        kind = handler.spec.options.get("period", "minute")
        period = period_key(kind, datetime.now(UTC), settings.schedule.timezone)
        outcome = await run_guarded(app[CONTEXT], handler, period, scheduled=False)
    if outcome == "skipped":
        print(f"{name}: already run for {period} (by this or another process); skipped")
    elif outcome == "error":
        raise CommandFailed(f"{name} failed for {period}; the log has the details")
    else:
        print(f"{name}: done for {period}")


Run = Callable[[Settings, argparse.Namespace], None]


class Subcommands:
    """What a feature area's ``cli.py`` receives in ``add_commands(commands)``: adds
    ``roulette-bot NAME`` (with ``--config``), run as ``run(settings, args)`` once the
    settings are valid. ``run`` raises ``CommandFailed`` (exit 1) or ``UsageError``
    (exit 2) with a one-line reason; anything else is reported on one line too."""

    def __init__(
        self, commands: argparse._SubParsersAction[Any], common: argparse.ArgumentParser
    ) -> None:
        self._commands = commands
        self._common = common

    def add(self, name: str, help: str, run: Run) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._commands.add_parser(
            name, parents=[self._common], help=help
        )
        parser.set_defaults(run=run)
        return parser


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


# --------------------------------------------------------------------------- parsing


def _parser(areas: Sequence[Area]) -> argparse.ArgumentParser:
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
    jobs = sorted({job for area in areas for job in area.job_crons()})
    run_job = commands.add_parser(
        "run-job", parents=[common], help="run one scheduled job now, once for its period"
    )
    run_job.add_argument("job", choices=jobs, metavar="JOB", help=", ".join(jobs) or "none")
    demo_command.add_parser(commands)
    for area in areas:
        area.add_commands(Subcommands(commands, common))
    return parser


def _settings(config: str | None) -> Settings | ConfigError:
    """The settings, or why they are unusable."""
    try:
        return load_settings(config)
    except ConfigError as e:
        return e


def _areas(settings: Settings | ConfigError) -> list[Area]:
    """The areas whose commands to offer."""
    names = settings.plugins if isinstance(settings, Settings) else default_areas()
    try:
        return find_areas(names)
    except RegistryError:
        return []


_CORE_COMMANDS = frozenset({"serve", "migrate", "sync-users"})


def _early(argv: Sequence[str] | None) -> tuple[str | None, bool]:
    """The ``--config`` given on the command line (leniently: the full parser reports a
    malformed command line), and whether the rest is exactly one of
    :data:`_CORE_COMMANDS`, which needs no feature area to be parsed (``--help``, an
    area's command or anything argparse would refuse goes through the full parser)."""
    early = argparse.ArgumentParser(prog=PROG, add_help=False, exit_on_error=False)
    early.add_argument("--config", default=None)
    try:
        known, rest = early.parse_known_args(argv)
    except argparse.ArgumentError:
        return None, False
    return known.config, len(rest) == 1 and rest[0] in _CORE_COMMANDS


def _demo(args: argparse.Namespace) -> None:
    try:
        demo_command.run(args)
    except CommandFailed as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as e:
        log.debug("demo failed", exc_info=True)
        _fail(f"demo failed: {type(e).__name__}: {one_line(e)}", 1)


def main(argv: Sequence[str] | None = None) -> None:
    # Which areas' commands to offer depends on the configuration: read --config first.
    config, core_only = _early(argv)
    loaded = _settings(config)
    if isinstance(loaded, ConfigError) and core_only:
        _fail_config(loaded)  # at once: the feature areas take a second to import
    args = _parser(_areas(loaded)).parse_args(argv)
    if args.command == "demo":  # reads no configuration at all (see bot/demo)
        _demo(args)
        return
    if isinstance(loaded, ConfigError):
        _fail_config(loaded)
    settings = loaded
    secrets = settings.secret_values()
    # One-shot commands speak through their output and their one-line error; their logs
    # only show errors (everything with LOG_LEVEL=debug). ``serve`` logs as configured.
    quiet = args.command != "serve" and settings.log_level != "debug"
    configure_logging("error" if quiet else settings.log_level, settings.log_format, secrets)

    actions: dict[str, Callable[[], object]] = {
        "serve": lambda: asyncio.run(_serve(settings)),
        "migrate": lambda: _migrate(settings),
        "sync-users": lambda: _sync_users_command(settings),
        "run-job": lambda: asyncio.run(_run_job(settings, args.job)),
    }
    try:
        if args.command in actions:
            actions[args.command]()
        else:  # a feature area's command
            args.run(settings, args)
    except CommandFailed as e:
        _fail(str(e), e.exit_code, secrets)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as e:
        # The traceback is for debugging (LOG_LEVEL=debug); the user gets one line.
        log.debug("%s failed", args.command, exc_info=True)
        _fail(f"{args.command} failed: {type(e).__name__}: {one_line(e)}", 1, secrets)


if __name__ == "__main__":  # the console script is bot.console.main
    main()
