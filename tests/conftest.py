"""Shared fixtures: settings, databases on both engines, the app over real HTTP.

Every database test runs twice, on SQLite and on the real PostgreSQL; each PostgreSQL
test gets a schema of its own (dropped afterwards), so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import compileall
import inspect
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import webhooks
from bot.db import create_engine, create_sessionmaker
from bot.settings import Settings, build_settings
from tests.migrated import MigratedTemplates
from tests.services import TEST_DATABASE_URL, service_unavailable

# Variables that would leak the developer's own environment into the tests.
_ENVIRONMENT = (
    "ROULETTE_CONFIG",
    "DATABASE_URL",
    "REDIS_URL",
    "HTTP_HOST",
    "HTTP_PORT",
    "PUBLIC_URL",
    "GITLAB_URL",
    "GITLAB_TOKEN",
    "GITLAB_WEBHOOK_SECRET",
    "GITLAB_WEBHOOK_SIGNING_TOKEN",
    "API_TOKENS",
    "MATTERMOST_URL",
    "MATTERMOST_TOKEN",
    "MATTERMOST_TEAM",
    "MATTERMOST_COMMAND_TOKENS",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "LOCALE",
    "USERS",
    "TEAMS",
    "ROULETTE",
    "SCHEDULE",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def _postgres_schema_url(schema: str) -> URL:
    base = make_url(TEST_DATABASE_URL)
    return base.update_query_dict({"options": f"-csearch_path={schema}"})


def _postgres_admin(statement: str) -> None:
    base = make_url(TEST_DATABASE_URL)
    conninfo = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        connection = psycopg.connect(conninfo, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        service_unavailable("PostgreSQL", f"{base.render_as_string()}: {e}".splitlines()[0])
    with connection:
        # A test that leaves a transaction open must fail, not hang the run.
        connection.execute("SET lock_timeout = '15s'")
        connection.execute(statement)  # type: ignore[arg-type]


@contextmanager
def postgres_schema() -> Iterator[URL]:
    """A URL to a fresh, empty schema of the test PostgreSQL database, dropped after."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _postgres_admin(f'CREATE SCHEMA "{schema}"')
    try:
        yield _postgres_schema_url(schema)
    finally:
        _postgres_admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[URL]:
    """A URL to a fresh, empty database, on each engine in turn."""
    if request.param == "sqlite":
        yield make_url(f"sqlite:///{tmp_path / 'roulette.db'}")
        return
    with postgres_schema() as url:
        yield url


async def until(
    condition: Callable[[], Awaitable[Any] | Any], within: float = 30.0, what: str = "condition"
) -> None:
    """Wait (real time, polled every 50 ms) until ``condition()``, sync or async, is true;
    fails the test after ``within`` seconds, naming ``what``."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, f"not within {within:.0f} s: {what}"
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    """This test process's migrated templates, one per engine, made when first asked."""
    libpq_url = make_url(TEST_DATABASE_URL).set(drivername="postgresql")
    templates = MigratedTemplates(
        tmp_path_factory.mktemp("migrated"),
        _postgres_admin,
        _postgres_schema_url,
        libpq_url.render_as_string(hide_password=False),
    )
    yield templates
    templates.close()


@pytest.fixture
def migrated_url(database_url: URL, migrated_templates: MigratedTemplates) -> URL:
    """``database_url`` with every migration applied (a copy of a migrated template)."""
    migrated_templates.migrate(database_url)
    return database_url


# The test being run's own spool folder (see ``settings_for``).
_spool_dir: list[Path] = []


@pytest.fixture(autouse=True)
def _a_spool_folder_per_test(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``SPOOL_DIR`` defaults to ``spool`` in the working directory, which every test of a
    pytest-xdist worker shares: a delivery one test spooled would be drained by the next
    test's app into its own inbox. Each test gets a folder of its own (made lazily by the
    spool, under this empty base)."""
    _spool_dir[:] = [tmp_path_factory.mktemp("spool", numbered=True)]
    yield
    _spool_dir.clear()


@pytest.fixture(autouse=True)
def _patient_intake(monkeypatch: pytest.MonkeyPatch) -> None:
    """The intake spools a delivery whose commit takes longer than ``STORE_TIMEOUT``
    (0.8 s), and keeps spooling until the spool is drained. On a loaded test machine (three
    pytest workers on two cores, fsync stalls) a commit now and then does take that long,
    and a test expecting ``accepted`` gets ``spooled``. The tests of the spool make the
    database refuse at once (or stop it) and do not rely on the 0.8 s; ``serve``
    subprocesses keep the real value."""
    monkeypatch.setattr(webhooks, "STORE_TIMEOUT", 10.0)


def settings_for(url: URL | str, **values: Any) -> Settings:
    """Settings for ``url`` and ``values``; ``spool_dir`` defaults to the test's own."""
    if isinstance(url, URL):
        url = url.render_as_string(hide_password=False)
    if _spool_dir:
        values.setdefault("spool_dir", str(_spool_dir[0] / "spool"))
    return build_settings({"database_url": url, **values})


@pytest.fixture
def settings(migrated_url: URL) -> Settings:
    return settings_for(migrated_url)


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.async_database_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


# ---------------------------------------------------------------- which real services ran

_SERVICE_MARKERS = {"postgres": "PostgreSQL", "redis": "Redis"}
_outcomes: Counter[tuple[str, str]] = Counter()


def pytest_configure(config: pytest.Config) -> None:
    # Many tests start the bot in a fresh interpreter (the CLI, serve replicas, the demo).
    # Where PYTHONDONTWRITEBYTECODE is set, each of them would compile the project's
    # sources again: they are compiled once here, before pytest-xdist starts its workers.
    if not hasattr(config, "workerinput"):
        root = Path(__file__).resolve().parent.parent
        for package in ("bot", "plugins", "benchmarks"):
            compileall.compile_dir(root / package, quiet=1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The Redis tests empty their database: each pytest-xdist worker has its own number
    # (``tests/services.py``). The group mark is kept for a pytest-xdist whose loadgroup
    # works with this pytest again (3.8 on pytest 9.2 ignores it).
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)  # also when parametrized indirectly
        if item.get_closest_marker("redis") is not None:
            item.add_marker(pytest.mark.xdist_group("redis"))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # ``report.keywords`` holds the markers, also in the reports pytest-xdist's workers
    # send back, so the counts below are right with and without workers.
    names = [name for name in _SERVICE_MARKERS if name in report.keywords]
    if names and (report.when == "call" or (report.when == "setup" and not report.passed)):
        for name in names:
            _outcomes[(name, report.outcome)] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how many tests really ran against PostgreSQL and Redis (CI logs show it)."""
    for marker, service in _SERVICE_MARKERS.items():
        counts = {o: _outcomes[(marker, o)] for o in ("passed", "failed", "skipped")}
        line = ", ".join(f"{n} {o}" for o, n in counts.items())
        terminalreporter.write_line(f"real {service} tests: {line}")
