"""The roulette's ``roulette-bot`` commands: ``pick``, ``repair`` and ``simulate``.

Contributed to the command line by ``add_commands`` (see ``bot.plugins.Area``); the heavy
modules are imported by the command that runs, after the configuration is validated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from sqlalchemy.exc import SQLAlchemyError

from bot.cli import PROG, Subcommands, positive
from bot.errors import CommandFailed, UsageError, one_line
from bot.settings import Settings


def add_commands(commands: Subcommands) -> None:
    """``pick``, ``repair`` and ``simulate``."""
    pick = commands.add(
        "pick",
        "dry run: who would review MR_URL, and why",
        lambda settings, args: asyncio.run(_pick(settings, args.mr_url, args.explain, args.json)),
    )
    pick.add_argument("mr_url", metavar="MR_URL", help="the merge request's web URL")
    pick.add_argument("--explain", action="store_true", help="every candidate's score and why")
    pick.add_argument("--json", action="store_true", help="print one JSON object")
    fix = commands.add(
        "repair",
        "set right stored reviews that disagree with GitLab (merged, closed, reviewers)",
        lambda settings, args: asyncio.run(_repair(settings, args.dry_run)),
    )
    fix.add_argument(
        "--dry-run", action="store_true", help="print what would be fixed, change nothing"
    )
    sim = commands.add(
        "simulate",
        "replay the selection and measure its fairness",
        lambda settings, args: _simulate(
            settings,
            args.mrs,
            args.days,
            args.seed,
            args.strategy,
            silent_share=args.silent_share,
            nudge_after=args.nudge_after,
            reassign_after=args.reassign_after,
        ),
    )
    sim.add_argument("--mrs", type=positive, default=500, metavar="N", help="merge requests")
    sim.add_argument("--days", type=positive, default=30, metavar="N", help="days replayed")
    sim.add_argument("--seed", type=int, default=1, metavar="S", help="random seed")
    sim.add_argument(
        "--strategy",
        default="all",
        choices=("all", "engine", "random", "round-robin", "plain"),
        metavar="S",
        help="engine, random, round-robin, plain or all (default)",
    )
    sim.add_argument(
        "--silent-share",
        type=_share,
        default=None,
        metavar="X",
        help="also replay the hand-over policy, X (0 to 1) of the reviewers never answering: "
        "time to first response without and with nudges and hand-over",
    )
    sim.add_argument(
        "--nudge-after",
        type=positive_hours,
        default=4.0,
        metavar="H",
        help="working hours before the nudge (default 4)",
    )
    sim.add_argument(
        "--reassign-after",
        type=hours_or_off,
        default=16.0,
        metavar="H",
        help="working hours before the hand-over, or off (default 16)",
    )


def _share(text: str) -> float:
    """A share from 0 to 1 (``argparse`` type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def positive_hours(text: str) -> float:
    """A positive number of hours (``argparse`` type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if not 0 < value < 10_000:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of hours")
    return value


def hours_or_off(text: str) -> float | None:
    """A positive number of hours, or ``off`` (None) (``argparse`` type)."""
    return None if text.strip().lower() == "off" else positive_hours(text)


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


def _simulate(
    settings: Settings,
    mrs: int,
    days: int,
    seed: int,
    strategy: str,
    *,
    silent_share: float | None = None,
    nudge_after: float = 4.0,
    reassign_after: float | None = 16.0,
) -> None:
    import random

    from plugins.roulette.config import RouletteConfig
    from plugins.roulette.flags import Flags
    from plugins.roulette.service import configured_people, options_from
    from plugins.roulette.simulate import (
        STRATEGIES,
        build_world,
        format_handover,
        format_reports,
        handover,
        replay,
        simulate,
        synthetic_people,
    )

    if len(settings.users) >= 6:
        people = configured_people(settings)
        origin = f"the configured organisation ({len(people)} people)"
    else:
        people = synthetic_people(random.Random(seed))
        origin = f"a synthetic organisation ({len(people)} people in 4 teams)"
    strategies = STRATEGIES if strategy == "all" else (strategy,)
    options = options_from(RouletteConfig.of(settings), Flags())
    reports = simulate(people, options, mrs=mrs, days=days, seed=seed, strategies=strategies)
    print(f"{mrs} merge requests over {days} days, seed {seed}, {origin}")
    print("CV: coefficient of variation of assignments per (non-trainee) person; lower is fairer")
    print(format_reports(reports, people))
    if silent_share is not None:
        world = build_world(random.Random(seed), people, mrs, days)
        picks = replay(world, "engine", options, seed).picks
        without, with_policy = handover(
            world,
            picks,
            options,
            silent_share=silent_share,
            nudge_after=nudge_after,
            reassign_after=reassign_after,
            seed=seed,
        )
        print()
        print(
            format_handover(
                without,
                with_policy,
                silent_share=silent_share,
                nudge_after=nudge_after,
                reassign_after=reassign_after,
            )
        )
