"""``roulette-bot demo``: the bot between the bundled GitLab and Mattermost stand-ins,
in one process, playing one merge request from ``/roulette`` to its merge.

This module is what the command line needs to offer the command (its arguments and
help); the story itself (``bot.demo.story``) and its world (``bot.demo.world``) are
imported only when the command runs, so that ``roulette-bot --help`` stays quick.
"""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_PORT = 8080

DESCRIPTION = f"""\
Start a GitLab and a Mattermost stand-in and the bot, all in this one process on
127.0.0.1; seed a sample organisation (three teams, ten people, a project with a
CODEOWNERS file); then play a merge request from /roulette through a hand-over to its
merge, run the daily jobs (aggregation, badges, digest), and keep the dashboard up
until Ctrl-C (exit 0).

Nothing outside this machine is contacted, and no configuration is read: the
configuration file (--config, ROULETTE_CONFIG) and the bot's environment variables
(DATABASE_URL, REDIS_URL, GITLAB_URL, MATTERMOST_URL, PLUGINS...) are ignored, so that
your own settings can neither leak into the demo nor be touched by it. Only LOG_LEVEL
is read: unset, the bot logs nothing but errors (LOG_LEVEL=info shows its logs).

The database is a fresh SQLite file in a temporary directory (its path is printed),
removed at exit; the cache is the in-process one. The bot listens on port {DEFAULT_PORT}
(or --port); when that port is taken it takes a free one and says so.

Exit status: 0 after the story (--once) or on Ctrl-C/SIGTERM once it has run; 1 when a
step of the story did not happen in time (one line says which); 130 when interrupted
during the story."""


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0 to 65535)")
    return value


def add_parser(commands: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Add ``demo`` (``--once``, ``--port``) to the ``roulette-bot`` subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "demo",
        help="play a review end to end against bundled stand-ins; no configuration needed",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="exit 0 after the story instead of keeping the dashboard up",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"the port to try first for the bot and its dashboard (default {DEFAULT_PORT});"
        " taken, or 0: a free one",
    )
    return parser


def run(args: argparse.Namespace) -> None:
    """Run the demo as ``args`` ask; raises ``bot.errors.CommandFailed`` (one line) when
    a step does not happen in time, ``KeyboardInterrupt`` when stopped during the story."""
    from bot.demo.story import main

    main(once=bool(args.once), port=int(args.port))
