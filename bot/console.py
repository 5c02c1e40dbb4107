"""The ``roulette-bot`` console script: :func:`bot.cli.main`, with Ctrl-C honoured from the
first instant.

Importing the command line (SQLAlchemy, the settings, the feature areas) takes a moment;
a Ctrl-C meanwhile would end in Python's traceback. Here the import itself is guarded:
an interrupt at any point exits with status 130 (128 + SIGINT, as shells report it) and
prints nothing.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130


def main() -> None:
    """Run ``roulette-bot``; exits 130 on Ctrl-C, whenever it comes."""
    try:
        from bot.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
