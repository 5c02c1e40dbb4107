"""The metrics area's ``roulette-bot aggregate [--date D] [--from D --to D]``.

Runs (or backfills) the daily aggregation: ``--date`` one day, ``--from``/``--to`` every
day between them (both included, at most 3660), default yesterday in
``schedule.timezone``. Applies pending migrations first (as ``sync-users`` does), opens
the database itself, aggregates one day per transaction and prints one summary line.
Running it twice changes nothing. Bad dates exit 2 with one line.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import date, timedelta

from sqlalchemy.exc import SQLAlchemyError

from bot.cli import Subcommands
from bot.errors import CommandFailed, UsageError, one_line
from bot.settings import Settings


def add_commands(commands: Subcommands) -> None:
    """``aggregate``."""
    parser = commands.add(
        "aggregate",
        "run or backfill the daily aggregation (default: yesterday); twice changes nothing",
        _aggregate,
    )
    parser.add_argument("--date", metavar="D", help="one day, YYYY-MM-DD")
    parser.add_argument("--from", dest="start", metavar="D", help="first day, YYYY-MM-DD")
    parser.add_argument("--to", dest="end", metavar="D", help="last day (included), YYYY-MM-DD")


def _day(option: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: not a date (YYYY-MM-DD)") from None


def days_asked(args: argparse.Namespace, today: date) -> tuple[date, date]:
    """The first and last day the command line asks for; ``UsageError`` (one line)."""
    from plugins.metrics.service import MAX_BACKFILL_DAYS

    if args.date is not None and (args.start is not None or args.end is not None):
        raise UsageError("give either --date or --from/--to, not both")
    if args.date is not None:
        day = _day("--date", args.date)
        return day, day
    if (args.start is None) != (args.end is None):
        raise UsageError("--from and --to go together")
    if args.start is None:
        yesterday = today - timedelta(days=1)
        return yesterday, yesterday
    start, end = _day("--from", args.start), _day("--to", args.end)
    if start > end:
        raise UsageError(f"--from {start} is after --to {end}")
    if (end - start).days + 1 > MAX_BACKFILL_DAYS:
        raise UsageError(f"--from {start} --to {end}: at most {MAX_BACKFILL_DAYS} days at once")
    return start, end


def _aggregate(settings: Settings, args: argparse.Namespace) -> None:
    from bot import migrate
    from bot.db import utcnow
    from plugins.metrics.service import local_today

    start, end = days_asked(args, local_today(utcnow(), settings.schedule.timezone))
    try:
        migrate.upgrade(settings.sync_database_url, settings.plugins)
    except migrate.MigrationError as e:
        raise CommandFailed(str(e)) from e
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {one_line(e)}") from e
    asyncio.run(_run(settings, start, end))


async def _run(settings: Settings, start: date, end: date) -> None:
    from bot.db import create_engine, create_sessionmaker
    from plugins.metrics.service import aggregate_range

    engine = create_engine(settings.async_database_url)
    began = time.perf_counter()
    try:
        result = await aggregate_range(
            create_sessionmaker(engine), start, end, settings.schedule.timezone
        )
    except (SQLAlchemyError, OSError) as e:
        raise CommandFailed(f"database unreachable: {one_line(e)}") from e
    finally:
        await engine.dispose()
    seconds = time.perf_counter() - began
    days = len(result.days)
    span = f"{start}" if start == end else f"{start} to {end}"
    print(
        f"aggregate: {days} day{'s' if days != 1 else ''} ({span}, {settings.schedule.timezone}),"
        f" {result.written} row(s) written, {result.deleted} deleted, {seconds:.2f} s"
    )
