"""``roulette-bot`` driven as a user drives it: a real process, a clean environment, a
working directory of its own, and only its exit code and output to judge it by."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from bot.settings import Settings
from tests.services import TEST_DATABASE_URL, TEST_REDIS_URL, service_unavailable

COMMANDS = ("serve", "migrate", "sync-users")
PREFIX = "roulette-bot: config error: "
RUN_TIMEOUT = 30.0
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

_FIELD_VARIABLES = {name.upper() for name in Settings.model_fields}


def _is_bot_variable(name: str) -> bool:
    upper = name.upper()
    return (
        upper == "ROULETTE_CONFIG"
        or upper in _FIELD_VARIABLES
        or upper.split("__", 1)[0] in _FIELD_VARIABLES
        or upper.startswith("RR_")  # this file's own ${VAR} names
    )


def clean_env(**values: str) -> dict[str, str]:
    """The test runner's environment without anything the bot would read, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not _is_bot_variable(k)}
    env.update(values)
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot.cli", *args]


def run(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The process failed with ``code`` and said why in exactly one stderr line."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].strip()
    assert lines[0].startswith("roulette-bot: ")
    return lines[0]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- bad configs


@dataclass(frozen=True)
class BadConfig:
    name: str
    yaml: str | bytes | None  # None: no file at all (the environment is wrong)
    env: dict[str, str]
    expected: str  # what the one line must contain: the field and the problem
    secret: str | None = None  # must not be shown


UNKNOWN_TEAM = """\
teams:
  - name: backend
users:
  - gitlab: alice
    team: backend
  - gitlab: bob
    team: x
"""

BAD_CONFIGS = [
    BadConfig("malformed-yaml", "teams: [backend\n", {}, "roulette.yaml: invalid YAML at line"),
    BadConfig("unknown-team", UNKNOWN_TEAM, {}, "users[1].team: unknown team 'x'"),
    BadConfig(
        "duplicate-username",
        "users:\n  - gitlab: alice\n  - gitlab: ALICE\n",
        {},
        "users[1].gitlab: duplicate username 'ALICE'",
    ),
    BadConfig(
        "bad-cron",
        "schedule:\n  digest: '0 25 * * *'\n",
        {},
        "schedule.digest: bad cron expression '0 25 * * *'",
    ),
    BadConfig(
        "unparsable-database-url",
        None,
        {"DATABASE_URL": "::not a url::"},
        "database_url: not a database URL",
    ),
    BadConfig(
        "unknown-timezone",
        "users:\n  - gitlab: alice\n    timezone: Europe/Atlantis\n",
        {},
        "users[0].timezone: unknown timezone 'Europe/Atlantis'",
    ),
    BadConfig(
        "bad-role",
        "users:\n  - gitlab: alice\n    role: overlord\n",
        {},
        "users[0].role: Input should be 'maintainer', 'reviewer' or 'trainee'",
    ),
    BadConfig("unknown-key", "reviewerz: 3\n", {}, "reviewerz: unknown setting"),
    BadConfig("bad-log-level", None, {"LOG_LEVEL": "loud"}, "log_level: Input should be"),
    BadConfig("bad-log-format", None, {"LOG_FORMAT": "xml"}, "log_format: Input should be"),
    BadConfig(
        "non-numeric-http-port",
        None,
        {"HTTP_PORT": "eighty"},
        "http_port: Input should be a valid integer",
    ),
    BadConfig(
        "unset-variable",
        "gitlab_url: ${RR_UNSET_VARIABLE}\n",
        {},
        "gitlab_url: ${RR_UNSET_VARIABLE} is not set and has no default",
    ),
    BadConfig("missing-file", None, {"ROULETTE_CONFIG": "nope.yaml"}, "nope.yaml: cannot read"),
    BadConfig("not-utf8", "locale: fr # caf\xe9\n".encode("latin-1"), {}, "not UTF-8 text"),
    # A field named *_token: the masker must not eat the problem, nor show the value.
    BadConfig(
        "bad-signing-token",
        None,
        {"GITLAB_WEBHOOK_SIGNING_TOKEN": "s3cret-signing-value"},
        "gitlab_webhook_signing_token: must be a Standard Webhooks token",
        secret="s3cret-signing-value",
    ),
]


# Each case runs with one of the commands, in turn: they all read the configuration the
# same way, and every fresh interpreter costs a couple of seconds of CPU. A feature area's
# command (aggregate) is parsed with the areas loaded, the others before (bot.cli._early).
BAD_CONFIG_COMMANDS = (*COMMANDS, "aggregate")
BAD_CONFIG_RUNS = [
    (case, BAD_CONFIG_COMMANDS[n % len(BAD_CONFIG_COMMANDS)]) for n, case in enumerate(BAD_CONFIGS)
]


@pytest.fixture(scope="module")
def bad_config_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[tuple[str, str], Future[subprocess.CompletedProcess[str]]]]:
    """Every (case, command) run, started together: each process is a fresh interpreter."""
    runs: dict[tuple[str, str], Future[subprocess.CompletedProcess[str]]] = {}
    with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 1) * 2)) as pool:
        for case, command in BAD_CONFIG_RUNS:
            cwd = tmp_path_factory.mktemp(f"{case.name}-{command}")
            args = [command]
            if isinstance(case.yaml, bytes):
                (cwd / "roulette.yaml").write_bytes(case.yaml)
                args += ["--config", "roulette.yaml"]
            elif case.yaml is not None:
                write(cwd / "roulette.yaml", case.yaml)
                args += ["--config", "roulette.yaml"]
            # A free port: should a bad config ever be accepted, serve must not collide.
            env = clean_env(HTTP_HOST="127.0.0.1", HTTP_PORT=str(free_port()))
            env.update(case.env)
            runs[case.name, command] = pool.submit(run, cli(*args), cwd, env)
        yield runs


@pytest.mark.parametrize(
    ("case", "command"), BAD_CONFIG_RUNS, ids=[f"{c.name}-{m}" for c, m in BAD_CONFIG_RUNS]
)
def test_bad_config_exits_2_with_one_line(
    bad_config_runs: dict[tuple[str, str], Future[subprocess.CompletedProcess[str]]],
    case: BadConfig,
    command: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    result = bad_config_runs[case.name, command].result()
    line = assert_one_line_error(result, 2)
    assert line.startswith(PREFIX), line
    assert case.expected in line, line
    assert result.stdout == ""
    if case.secret is not None:
        assert case.secret not in result.stdout + result.stderr


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_config_option_before_or_after_the_command_or_from_env(tmp_path: Path, where: str) -> None:
    write(tmp_path / "custom.yaml", "database_url: sqlite:///./custom.db\n")
    env = clean_env()
    if where == "before":
        args = cli("--config", "custom.yaml", "migrate")
    elif where == "after":
        args = cli("migrate", "--config", "custom.yaml")
    else:
        args = cli("migrate")
        env["ROULETTE_CONFIG"] = "custom.yaml"
    result = run(args, tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "custom.db" in result.stdout
    assert (tmp_path / "custom.db").exists()
    assert not (tmp_path / "roulette.db").exists()


def test_config_option_wins_over_roulette_config(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", "locale: fr\n")
    write(tmp_path / "bad.yaml", "locale: xx\n")
    env = clean_env(ROULETTE_CONFIG="bad.yaml")
    result = run(cli("migrate", "--config", "good.yaml"), tmp_path, env)
    assert result.returncode == 0, result.stderr
    line = assert_one_line_error(run(cli("migrate"), tmp_path, env), 2)
    assert line.startswith(PREFIX + "locale: ")


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "roulette-bot"
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    helped = run([str(script), "--help"], tmp_path, clean_env())
    assert helped.returncode == 0
    for command in COMMANDS:
        assert command in helped.stdout
    line = assert_one_line_error(
        run([str(script), "migrate"], tmp_path, clean_env(LOG_FORMAT="yaml")), 2
    )
    assert line.startswith(PREFIX + "log_format: ")


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in (cli(), cli("frobnicate"), cli("migrate", "--config")):
        result = run(args, tmp_path, clean_env())
        assert result.returncode == 2, args
        assert "usage: roulette-bot" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "core"),
    [
        (["migrate"], True),
        (["--config", "x.yaml", "serve"], True),
        (["sync-users", "--config=x.yaml"], True),
        (["migrate", "--config", "serve"], True),  # "serve" is the file, as for argparse
        ([], False),
        (["--help"], False),
        (["migrate", "--help"], False),
        (["migrate", "--conf", "x.yaml"], True),  # argparse takes the abbreviation too
        (["migrate", "--config"], False),
        (["migrate", "serve"], False),
        (["run-job", "digest"], False),
        (["leaderboard"], False),
        # --config then an option: argparse refuses it, so the full parser says why
        (["serve", "--config", "-h"], False),
        (["--config", "--help", "serve"], False),
        (["--config", "--config=x.yaml", "serve"], False),
        (["migrate", "--"], False),
    ],
)
def test_which_command_lines_are_parsed_without_the_feature_areas(
    argv: list[str], core: bool
) -> None:
    from bot.cli import _early

    assert _early(argv)[1] is core


def test_an_unreadable_configuration_is_reported_before_the_feature_areas_load(
    tmp_path: Path,
) -> None:
    # Importing the feature areas takes about a second: an operator fixing a typo in the
    # file's name (or its YAML) should not wait for them.
    code = textwrap.dedent(
        """
        import sys
        from bot.cli import main
        try:
            main(["migrate", "--config", "nope.yaml"])
        except SystemExit as e:
            print(e.code, sorted(name for name in sys.modules if name.startswith("plugins.")))
        """
    )
    result = run([sys.executable, "-c", code], tmp_path, clean_env())
    assert result.stdout == "2 []\n", result.stdout + result.stderr
    assert result.stderr.startswith(PREFIX + "config file nope.yaml: cannot read")


# --------------------------------------------------------------------------- migrate


def _tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def test_migrate_a_fresh_sqlite_file_then_again(tmp_path: Path) -> None:
    database = tmp_path / "fresh.db"
    env = clean_env(DATABASE_URL=f"sqlite:///{database}")
    first = run(cli("migrate"), tmp_path, env)
    assert first.returncode == 0, first.stderr
    assert "migrated from an empty database to" in first.stdout
    assert "(head)" in first.stdout
    tables = _tables(database)
    for table in (
        "alembic_version",
        "users",
        "ooo_status",
        "mr_reviews",
        "reviewer_assignments",
        "configuration",
    ):
        assert table in tables

    again = run(cli("migrate"), tmp_path, env)
    assert again.returncode == 0, again.stderr
    assert "already at revision" in again.stdout
    assert "(head)" in again.stdout
    assert "Traceback" not in first.stderr + again.stderr


# --------------------------------------------------------------------------- sync-users

ORGANISATION = """\
teams:
  - name: backend
    labels: ["team::backend"]
    channel: backend-reviews
  - name: frontend
    labels: ["team::frontend"]
users:
  - gitlab: alice
    team: backend
    role: maintainer
    timezone: Europe/Paris
  - gitlab: bob
    mattermost: bobby
    team: backend
  - gitlab: carol
    team: frontend
    role: trainee
"""


def _users(database: Path) -> dict[str, tuple[int, str | None]]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT gitlab_username, is_active, mattermost_username FROM users"
        )
        return {name: (int(active), mattermost) for name, active, mattermost in rows}


def test_sync_users_creates_is_idempotent_and_deactivates(tmp_path: Path) -> None:
    config = write(tmp_path / "org.yaml", ORGANISATION)
    env = clean_env(ROULETTE_CONFIG=str(config))
    database = tmp_path / "roulette.db"  # the default URL, relative to the cwd

    first = run(cli("sync-users"), tmp_path, env)
    assert first.returncode == 0, first.stderr
    assert "2 team(s) created" in first.stdout
    assert "3 user(s) created" in first.stdout
    assert "created: alice, bob, carol" in first.stdout
    assert _users(database) == {
        "alice": (1, "alice"),
        "bob": (1, "bobby"),
        "carol": (1, "carol"),
    }

    again = run(cli("sync-users"), tmp_path, env)
    assert again.returncode == 0, again.stderr
    assert (
        "0 team(s) created, 0 updated, 0 deactivated, 0 user(s) created, 0 updated, 0 deactivated"
    ) in again.stdout
    assert "created:" not in again.stdout
    assert "updated:" not in again.stdout

    write(
        config,
        ORGANISATION.replace("  - gitlab: carol\n    team: frontend\n    role: trainee\n", ""),
    )
    removed = run(cli("sync-users", "--config", str(config)), tmp_path, clean_env())
    assert removed.returncode == 0, removed.stderr
    assert "1 deactivated" in removed.stdout
    assert "deactivated: carol" in removed.stdout
    assert _users(database) == {
        "alice": (1, "alice"),
        "bob": (1, "bobby"),
        "carol": (0, "carol"),  # kept, with its history, but inactive
    }
    assert "Traceback" not in first.stderr + again.stderr + removed.stderr


# --------------------------------------------------------------------------- unreachable

UNREACHABLE_DB = "postgresql+psycopg://u:hunter2pw@127.0.0.1:1/x"


@pytest.mark.parametrize("command", ["migrate", "sync-users"])
def test_unreachable_database_exits_1_without_the_password(tmp_path: Path, command: str) -> None:
    result = run(cli(command), tmp_path, clean_env(DATABASE_URL=UNREACHABLE_DB))
    line = assert_one_line_error(result, 1)
    assert "database unreachable" in line
    assert "hunter2pw" not in result.stdout + result.stderr
    assert "sqlalche.me" not in line


# --------------------------------------------------------------------------- serve


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str, str]:
    """Status, content type and body; an HTTP error status is an answer too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


@dataclass
class Server:
    process: subprocess.Popen[str]
    base: str
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"serve exited with {self.process.returncode}: {self.output()}")
            try:
                status, _, body = http_get(f"{self.base}/health", timeout=1)
            except OSError as e:  # not listening yet
                last = e
            else:
                if status == 200 and body == "ok":
                    return
                last = (status, body)
            time.sleep(0.05)
        pytest.fail(f"/health not ok within {STARTUP_TIMEOUT}s (last: {last}): {self.output()}")

    def stop(self, signum: signal.Signals) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=STOP_TIMEOUT)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(cwd: Path, **env: str) -> Server:
        port = free_port()
        logs = tmp_path / f"logs-{len(servers)}"
        logs.mkdir()
        stdout, stderr = logs / "stdout", logs / "stderr"
        with stdout.open("w") as out, stderr.open("w") as err:
            process = subprocess.Popen(
                cli("serve"),
                cwd=cwd,
                env=clean_env(HTTP_HOST="127.0.0.1", HTTP_PORT=str(port), **env),
                stdout=out,
                stderr=err,
                text=True,
            )
        server = Server(process, f"http://127.0.0.1:{port}", stdout, stderr)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=STOP_TIMEOUT)


SERVE_SECRETS = {
    "API_TOKENS": "api-s3cret-token-1,api-s3cret-token-2",
    "GITLAB_WEBHOOK_SECRET": "hook-s3cret-value",
    "MATTERMOST_COMMAND_TOKENS": "cmd-s3cret-token",
}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_with_no_config_at_all(
    tmp_path: Path, start_server: Callable[..., Server], signum: signal.Signals
) -> None:
    cwd = tmp_path / "empty"
    cwd.mkdir()
    server = start_server(cwd, **SERVE_SECRETS)
    server.wait_healthy()

    status, _, body = http_get(f"{server.base}/readiness")
    assert status == 200, body
    assert json.loads(body)["checks"] == {"database": "ok"}

    status, content_type, body = http_get(f"{server.base}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert "# TYPE http_requests_total counter" in body
    assert "http_requests_total{" in body

    assert server.stop(signum) == 0, server.output()
    assert (cwd / "roulette.db").exists()
    assert not (cwd / "spool").exists()  # the spool folder is made when first needed
    assert "users" in _tables(cwd / "roulette.db")
    output = server.output()
    assert "Traceback" not in output
    for secret in ",".join(SERVE_SECRETS.values()).split(","):
        assert secret not in output


def _postgres_admin(statement: str) -> None:
    url = make_url(TEST_DATABASE_URL).set(drivername="postgresql")
    try:
        with psycopg.connect(
            url.render_as_string(hide_password=False), autocommit=True, connect_timeout=3
        ) as connection:
            connection.execute(statement)  # type: ignore[arg-type]
    except psycopg.OperationalError as e:
        service_unavailable("PostgreSQL", str(e).splitlines()[0])


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search path is a fresh schema of its own (dropped afterwards)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _postgres_admin(f'CREATE SCHEMA "{schema}"')
    try:
        url = make_url(TEST_DATABASE_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        _postgres_admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as e:
        service_unavailable("Redis", f"{TEST_REDIS_URL}: {e}")
    finally:
        client.close()
    return TEST_REDIS_URL


@pytest.mark.postgres
@pytest.mark.redis
def test_serve_on_postgresql_and_redis(
    tmp_path: Path,
    start_server: Callable[..., Server],
    postgres_url: str,
    redis_url: str,
) -> None:
    config = write(tmp_path / "org.yaml", ORGANISATION)
    server = start_server(
        tmp_path, DATABASE_URL=postgres_url, REDIS_URL=redis_url, ROULETTE_CONFIG=str(config)
    )
    server.wait_healthy()

    status, _, body = http_get(f"{server.base}/readiness")
    assert status == 200, body
    assert json.loads(body) == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}

    assert server.stop(signal.SIGTERM) == 0, server.output()
    assert not (tmp_path / "roulette.db").exists()
    assert "Traceback" not in server.output()

    # serve migrated the schema and loaded the organisation (as sync-users).
    url = make_url(postgres_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), connect_timeout=3) as db:
        rows = db.execute("SELECT gitlab_username, is_active FROM users ORDER BY 1").fetchall()
    assert rows == [("alice", True), ("bob", True), ("carol", True)]


def test_serve_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(HTTP_HOST="127.0.0.1", HTTP_PORT=str(port))
        result = run(cli("serve"), tmp_path, env)
    line = assert_one_line_error(result, 1)
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert "in use" in line.lower()
    # It failed before touching the database.
    assert not (tmp_path / "roulette.db").exists()


class _InterruptedImport:
    """A meta path finder standing for a Ctrl-C while ``bot.cli`` is being imported."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "bot.cli":
            raise KeyboardInterrupt


@pytest.mark.parametrize("when", ["importing", "running"])
def test_ctrl_c_at_any_moment_exits_130_without_a_traceback(
    when: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.metadata

    import bot.cli
    from bot import console

    (script,) = importlib.metadata.entry_points(group="console_scripts", name="roulette-bot")
    assert script.value == "bot.console:main"  # the installed roulette-bot is guarded
    if when == "importing":
        monkeypatch.delitem(sys.modules, "bot.cli")
        monkeypatch.setattr(sys, "meta_path", [_InterruptedImport(), *sys.meta_path])
    else:

        def interrupted(argv: object = None) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(bot.cli, "main", interrupted)
    with pytest.raises(SystemExit) as exited:
        console.main()
    assert exited.value.code == 130
    assert capsys.readouterr() == ("", "")
