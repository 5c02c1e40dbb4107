"""Where the real PostgreSQL and Redis are, and what to do when they are not there.

On a laptop without the servers, tests that need them skip with a clear reason.
With ``CI=true`` a missing server is a failure, never a skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _redis_url_of_this_worker(url: str) -> str:
    """``url`` with its database number lowered by the pytest-xdist worker's index
    (``gw0`` keeps it, ``gw1`` takes the one below...): the Redis tests empty their
    database, so workers running them at once must not share one. (``--dist loadgroup``
    cannot keep them on one worker: pytest-xdist 3.8 marks a group by rewriting
    ``item._nodeid``, which pytest 9.2 no longer reads.)"""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    base, _, number = url.rpartition("/")
    if not number.isdigit():
        return url
    return f"{base}/{max(0, int(number) - int(worker[2:] or 0))}"


# A dedicated database number (one per pytest-xdist worker, counting down from it), so
# tests never touch a developer's cache.
TEST_REDIS_URL = _redis_url_of_this_worker(
    os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def service_unavailable(service: str, reason: str) -> NoReturn:
    """Skip the test, or fail it under CI, because ``service`` cannot be reached."""
    message = f"{service} unreachable: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: real services are required)", pytrace=False)
    pytest.skip(message)
