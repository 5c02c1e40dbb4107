"""``roulette-bot``: the commands of SPEC.md, thin: parse, build, run.

Exit codes: 0 success; 1 a service is unreachable or the command failed; 2 bad
configuration or usage. Failures print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from sqlalchemy.exc import SQLAlchemyError

from bot.errors import CommandFailed, UsageError, one_line
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


async def _pick(settings: Settings, url: str, explain: bool, as_json: bool) -> None:
    from bot.cache import MemoryCache
    from bot.db import create_engine, create_sessionmaker
    from bot.gitlab import GitLab, GitLabError, GitLabNotFound, parse_mr_url
    from plugins.roulette.flags import Flags
    from plugins.roulette.render import plan_json, plan_text
    from plugins.roulette.service import RouletteService

    if not settings.gitlab_url:
        raise UsageError("GITLAB_URL is not set: pick reads the merge request from GitLab")
    try:
        ref = parse_mr_url(url, settings.gitlab_url)
    except ValueError as e:
        raise UsageError(str(e)) from None
    token = settings.gitlab_token.get_secret_value() if settings.gitlab_token else None
    # A dry run: the database is opened read-only and the cache is this process's own.
    engine = create_engine(settings.async_database_url, read_only=True)
    service = RouletteService(
        settings, create_sessionmaker(engine), MemoryCache(), GitLab(settings.gitlab_url, token)
    )
    try:
        plan = await service.plan(ref, Flags(explain=explain))
    except GitLabNotFound:
        raise UsageError(f"no merge request at {url} (or the token cannot see it)") from None
    except GitLabError as e:
        raise CommandFailed(f"GitLab: {one_line(e)}") from e
    finally:
        await engine.dispose()
    # A roulette there would assign nobody; the dry run still shows who it would pick.
    ended = f"Note: {ref} is {plan.mr.state}: /roulette there assigns nobody"
    if as_json:
        if plan.mr.state != "opened":
            print(f"{PROG}: {ended[len('Note: ') :]}", file=sys.stderr)
        print(json.dumps(plan_json(plan, url), ensure_ascii=False))
    else:
        text = plan_text(plan, explain)
        print(text if plan.mr.state == "opened" else f"{ended}\n{text}")


async def _repair(settings: Settings, dry_run: bool) -> None:
    from bot.db import create_engine, create_sessionmaker
    from bot.gitlab import GitLab, GitLabError
    from plugins.roulette.tracking import repair

    if not settings.gitlab_url:
        raise UsageError("GITLAB_URL is not set: repair reads the merge requests from GitLab")
    token = settings.gitlab_token.get_secret_value() if settings.gitlab_token else None
    # A dry run cannot write (nor create a missing SQLite file); a real run writes only fixes.
    engine = create_engine(settings.async_database_url, read_only=dry_run)
    gitlab = GitLab(settings.gitlab_url, token)
    try:
        report = await repair(create_sessionmaker(engine), gitlab, dry_run=dry_run)
    except GitLabError as e:
        raise CommandFailed(f"GitLab: {one_line(e)}") from e
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {one_line(e)}") from e
    finally:
        await gitlab.close()
        await engine.dispose()
    for fixed in report.repairs:
        print(fixed.line(dry_run))
    for where in report.unreadable:
        print(f"{where} (left alone)")
    print(f"repair: {report.summary(dry_run)}")


def _simulate(settings: Settings, mrs: int, days: int, seed: int, strategy: str) -> None:
    import random

    from plugins.roulette.flags import Flags
    from plugins.roulette.service import configured_people, options_from
    from plugins.roulette.simulate import STRATEGIES, format_reports, simulate, synthetic_people

    if len(settings.users) >= 6:
        people = configured_people(settings)
        origin = f"the configured organisation ({len(people)} people)"
    else:
        people = synthetic_people(random.Random(seed))
        origin = f"a synthetic organisation ({len(people)} people in 4 teams)"
    strategies = STRATEGIES if strategy == "all" else (strategy,)
    options = options_from(settings.roulette, Flags())
    reports = simulate(people, options, mrs=mrs, days=days, seed=seed, strategies=strategies)
    print(f"{mrs} merge requests over {days} days, seed {seed}, {origin}")
    print("CV: coefficient of variation of assignments per (non-trainee) person; lower is fairer")
    print(format_reports(reports, people))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


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
    pick = commands.add_parser(
        "pick", parents=[common], help="dry run: who would review MR_URL, and why"
    )
    pick.add_argument("mr_url", metavar="MR_URL", help="the merge request's web URL")
    pick.add_argument("--explain", action="store_true", help="every candidate's score and why")
    pick.add_argument("--json", action="store_true", help="print one JSON object")
    fix = commands.add_parser(
        "repair",
        parents=[common],
        help="set right stored reviews that disagree with GitLab (merged, closed, reviewers)",
    )
    fix.add_argument(
        "--dry-run", action="store_true", help="print what would be fixed, change nothing"
    )
    sim = commands.add_parser(
        "simulate", parents=[common], help="replay the selection and measure its fairness"
    )
    sim.add_argument("--mrs", type=_positive, default=500, metavar="N", help="merge requests")
    sim.add_argument("--days", type=_positive, default=30, metavar="N", help="days replayed")
    sim.add_argument("--seed", type=int, default=1, metavar="S", help="random seed")
    sim.add_argument(
        "--strategy",
        default="all",
        choices=("all", "engine", "random", "round-robin", "plain"),
        metavar="S",
        help="engine, random, round-robin, plain or all (default)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigError as e:
        _fail_config(e)
    secrets = settings.secret_values()
    # One-shot commands speak through their output and their one-line error; their logs
    # only show errors (everything with LOG_LEVEL=debug). ``serve`` logs as configured.
    quiet = args.command != "serve" and settings.log_level != "debug"
    configure_logging("error" if quiet else settings.log_level, settings.log_format, secrets)

    actions: dict[str, Callable[[], object]] = {
        "serve": lambda: asyncio.run(_serve(settings)),
        "migrate": lambda: _migrate(settings),
        "sync-users": lambda: _sync_users_command(settings),
        "pick": lambda: asyncio.run(_pick(settings, args.mr_url, args.explain, args.json)),
        "repair": lambda: asyncio.run(_repair(settings, args.dry_run)),
        "simulate": lambda: _simulate(settings, args.mrs, args.days, args.seed, args.strategy),
    }
    try:
        actions[args.command]()
    except CommandFailed as e:
        _fail(str(e), e.exit_code, secrets)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as e:
        # The traceback is for debugging (LOG_LEVEL=debug); the user gets one line.
        log.debug("%s failed", args.command, exc_info=True)
        _fail(f"{args.command} failed: {type(e).__name__}: {one_line(e)}", 1, secrets)


if __name__ == "__main__":
    main()
