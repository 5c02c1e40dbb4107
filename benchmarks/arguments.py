"""Argument types the benchmarks share: a value out of range ends in argparse's usage
line and exit 2 (``--deliveries 0: a number from 1 up``), never in a traceback from deep
inside a run (a division by zero, an empty list, a settings validation dump)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def count(lowest: int = 1, highest: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``lowest`` to ``highest`` (no upper
    bound when None)."""
    within = f"from {lowest} to {highest}" if highest is not None else f"from {lowest} up"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: a whole number {within}") from None
        if value < lowest or (highest is not None and value > highest):
            raise argparse.ArgumentTypeError(f"{text!r}: a number {within}")
        return value

    return parse


def positive_seconds(text: str) -> float:
    """An argparse ``type``: a duration in seconds, more than 0 (``20``, ``0.5``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: a number of seconds above 0")
    return value
