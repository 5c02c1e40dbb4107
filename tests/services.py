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
# A dedicated database number, so tests never touch a developer's cache.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def service_unavailable(service: str, reason: str) -> NoReturn:
    """Skip the test, or fail it under CI, because ``service`` cannot be reached."""
    message = f"{service} unreachable: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: real services are required)", pytrace=False)
    pytest.skip(message)
