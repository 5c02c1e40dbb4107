"""Logging: JSON and console lines, request ids, and secrets that never reach the output."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot import logs
from bot.logs import (
    ConsoleFormatter,
    JsonFormatter,
    SecretMasker,
    bound_id,
    configure_logging,
    new_id,
    request_id,
)

SECRET = "mm-s3cr3t-t0ken-value"
GITLAB_TOKEN = "glpat-abcdefghijklmnopqrst"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Leave the root logger and the quietened loggers exactly as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    names = ["urllib3", "httpx", "httpcore", "apscheduler", "aiohttp.access", "alembic"]
    levels = {name: logging.getLogger(name).level for name in names}
    filtered = [logging.getLogger(n) for n in ("mattermostautodriver", "mattermostautodriver.api")]
    filtered.append(logging.getLogger("mattermostautodriver.websocket"))
    filters = {id(logger): logger.filters[:] for logger in filtered}
    yield
    for logger in filtered:
        logger.filters[:] = filters[id(logger)]
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


Capture = Callable[..., io.StringIO]


@pytest.fixture
def capture() -> Capture:
    """Configure logging into a fresh buffer and return the buffer."""

    def configure(level: str = "debug", fmt: str = "json", secrets: Any = ()) -> io.StringIO:
        stream = io.StringIO()
        configure_logging(level, fmt, secrets, stream=stream)
        return stream

    return configure


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def one_json_line(stream: io.StringIO) -> dict[str, Any]:
    lines = json_lines(stream)
    assert len(lines) == 1, lines
    return lines[0]


# ------------------------------------------------------------------------- JSON lines


def test_json_line_carries_the_standard_keys(capture: Capture) -> None:
    stream = capture()
    logging.getLogger("bot.test").info("picked %s for !%d", "alice", 42)

    entry = one_json_line(stream)
    assert entry["msg"] == "picked alice for !42"
    assert entry["level"] == "info"
    assert entry["logger"] == "bot.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
    assert "request_id" not in entry
    assert "exc" not in entry


def test_json_line_has_request_id_while_bound(capture: Capture) -> None:
    stream = capture()
    with bound_id("req-123"):
        logging.getLogger("bot.test").warning("inside")
    logging.getLogger("bot.test").warning("outside")

    inside, outside = json_lines(stream)
    assert inside["request_id"] == "req-123"
    assert inside["level"] == "warning"
    assert "request_id" not in outside


def test_json_line_includes_extras_and_stringifies_the_unserialisable(capture: Capture) -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    stream = capture()
    logging.getLogger("bot.test").info(
        "event", extra={"project_id": 7, "labels": ["a", "b"], "thing": Thing(), "ok": True}
    )

    entry = one_json_line(stream)
    assert entry["project_id"] == 7
    assert entry["labels"] == ["a", "b"]
    assert entry["thing"] == "a thing"
    assert entry["ok"] is True


def test_json_line_includes_the_traceback(capture: Capture) -> None:
    stream = capture()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("bot.test").exception("failed")

    entry = one_json_line(stream)
    assert entry["msg"] == "failed"
    assert entry["level"] == "error"
    assert "Traceback (most recent call last)" in entry["exc"]
    assert "RuntimeError: boom" in entry["exc"]


def bad_args_record(msg: str, *args: object) -> logging.LogRecord:
    # Built by hand: pytest's own capture handler would raise on such a record.
    return logging.LogRecord("bot.test", logging.INFO, __file__, 1, msg, args, None)


@pytest.mark.parametrize("formatter", [JsonFormatter(), ConsoleFormatter()])
def test_formatters_never_raise_on_bad_args(formatter: logging.Formatter) -> None:
    output = formatter.format(bad_args_record("two %s %s", "only-one"))
    assert "two %s %s" in output
    assert "could not be formatted" in output


def test_json_formatter_output_stays_json_on_bad_args() -> None:
    entry = json.loads(JsonFormatter().format(bad_args_record("bad %d", "x")))
    assert entry["level"] == "info"
    assert "bad %d" in entry["msg"]


@pytest.mark.parametrize("formatter_class", [JsonFormatter, ConsoleFormatter])
def test_secrets_masked_inside_unformattable_records(
    formatter_class: type[JsonFormatter] | type[ConsoleFormatter],
) -> None:
    formatter = formatter_class(SecretMasker([SECRET]))
    output = formatter.format(bad_args_record("bad %d", SECRET))
    assert_masked(output, SECRET)


# ------------------------------------------------------------------------ request ids


def test_new_id_is_short_random_hex() -> None:
    first, second = new_id(), new_id()
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert first != second


def test_bound_id_sets_and_resets() -> None:
    assert request_id.get() is None
    with bound_id("outer") as outer:
        assert outer == "outer"
        assert request_id.get() == "outer"
        with bound_id() as inner:
            assert re.fullmatch(r"[0-9a-f]{16}", inner)
            assert request_id.get() == inner
        assert request_id.get() == "outer"
    assert request_id.get() is None


def test_bound_id_resets_after_an_exception() -> None:
    with pytest.raises(ValueError), bound_id("doomed"):
        raise ValueError
    assert request_id.get() is None


async def test_task_created_inside_the_block_inherits_the_id() -> None:
    async def read_id() -> str | None:
        await asyncio.sleep(0)
        return request_id.get()

    with bound_id("evt-1"):
        task = asyncio.create_task(read_id())
    assert request_id.get() is None
    assert await task == "evt-1"


async def test_concurrent_tasks_keep_their_own_ids(capture: Capture) -> None:
    stream = capture()
    log = logging.getLogger("bot.test")

    async def handle(name: str) -> None:
        with bound_id(name):
            await asyncio.sleep(0)
            log.info("handling %s", name)

    await asyncio.gather(handle("a"), handle("b"))
    assert {(e["msg"], e["request_id"]) for e in json_lines(stream)} == {
        ("handling a", "a"),
        ("handling b", "b"),
    }


# ----------------------------------------------------------------------------- console


def test_console_line_is_readable(capture: Capture) -> None:
    stream = capture(fmt="console")
    with bound_id("abc123"):
        logging.getLogger("bot.roulette").warning(
            "no reviewer for %s", "!5", extra={"project": "web", "note": "two words"}
        )

    line = stream.getvalue().rstrip("\n")
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3} WARNING bot\.roulette \[abc123\] no reviewer for !5 "
        r'project=web note="two words"',
        line,
    ), line


def test_console_line_without_request_id_and_with_traceback(capture: Capture) -> None:
    stream = capture(fmt="CONSOLE")
    try:
        _ = dict[str, int]()["missing"]
    except KeyError:
        logging.getLogger("bot.x").error("lookup failed", exc_info=True)

    first, *rest = stream.getvalue().rstrip("\n").splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} ERROR bot\.x lookup failed", first), first
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "KeyError: 'missing'"


# ----------------------------------------------------------------------------- masking


@pytest.fixture(params=["json", "console"])
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def assert_masked(output: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in output, output
    assert "***" in output, output


def test_known_secret_in_message(capture: Capture, fmt: str) -> None:
    stream = capture(fmt=fmt, secrets=[SECRET, None, ""])
    logging.getLogger("bot.test").info(f"connecting with {SECRET}")
    assert_masked(stream.getvalue(), SECRET)


def test_known_secret_in_percent_args(capture: Capture, fmt: str) -> None:
    stream = capture(fmt=fmt, secrets=[SECRET])
    logging.getLogger("bot.test").info("connecting with %s", SECRET)
    assert_masked(stream.getvalue(), SECRET)


def test_known_secret_in_extras(capture: Capture, fmt: str) -> None:
    stream = capture(fmt=fmt, secrets=[SECRET])
    logging.getLogger("bot.test").info(
        "call", extra={"cfg": {"nested": [f"x{SECRET}y"]}, "plain": SECRET}
    )
    assert_masked(stream.getvalue(), SECRET)


def test_known_secret_in_exception_traceback(capture: Capture, fmt: str) -> None:
    stream = capture(fmt=fmt, secrets=[SECRET])
    try:
        raise ValueError(f"rejected credential {SECRET}")
    except ValueError:
        logging.getLogger("bot.test").exception("login failed")
    output = stream.getvalue()
    assert_masked(output, SECRET)
    assert "ValueError: rejected credential ***" in output


def test_secret_from_a_third_party_logger(capture: Capture, fmt: str) -> None:
    stream = capture(fmt=fmt, secrets=[SECRET])
    logging.getLogger("urllib3.connectionpool").warning("retrying with %s", SECRET)
    assert_masked(stream.getvalue(), SECRET)


def test_longest_secret_wins_and_short_ones_are_ignored(capture: Capture) -> None:
    stream = capture(secrets=["abcd", "abcdefgh", "xyz"])
    logging.getLogger("bot.test").info("abcdefgh xyz")
    assert one_json_line(stream)["msg"] == "*** xyz"


def test_json_escaped_secret_is_masked(capture: Capture) -> None:
    weird = 'pa"ss\\word'
    stream = capture(secrets=[weird])
    logging.getLogger("bot.test").info("plain %s and %s", weird, json.dumps({"k": weird}))
    entry = one_json_line(stream)
    assert weird not in entry["msg"]
    assert json.dumps(weird)[1:-1] not in entry["msg"]
    assert entry["msg"].startswith("plain *** and ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgresql+psycopg://bot:hunter22@db:5432/roulette",
            "postgresql+psycopg://bot:***@db:5432/roulette",
        ),
        ("redis://:hunter22@cache:6379/0", "redis://:***@cache:6379/0"),
        ("amqp://u:p%40ss@mq/vhost", "amqp://u:***@mq/vhost"),
    ],
)
def test_url_password(text: str, expected: str) -> None:
    assert SecretMasker().mask(f"connecting to {text} now") == f"connecting to {expected} now"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PRIVATE-TOKEN: glpat-xyz-123 sent", "PRIVATE-TOKEN: *** sent"),
        ("X-Gitlab-Token: hooksecret1", "X-Gitlab-Token: ***"),
        ("x-gitlab-token=hooksecret1", "x-gitlab-token=***"),
        ("Authorization: Bearer eyJ0eXAi.abc", "Authorization: Bearer ***"),
        ("authorization: Basic dXNlcjpwYXNz", "authorization: Basic ***"),
        ("Authorization: rawvalue99", "Authorization: ***"),
        (
            "GET /api/v4/projects?private_token=tok123&page=2",
            "GET /api/v4/projects?private_token=***&page=2",
        ),
        ("token=t0k3n, next=1", "token=***, next=1"),
        ("access_token=at-999&x=1", "access_token=***&x=1"),
        ("password: hunter22", "password: ***"),
        ("secret=s3", "secret=***"),
        ("api_key=k-123", "api_key=***"),
        ("WEBHOOK_SECRET=wh-1", "WEBHOOK_SECRET=***"),
        ("gitlab_token = 'abc def'", "gitlab_token = '***'"),
    ],
)
def test_secret_named_fields(text: str, expected: str) -> None:
    assert SecretMasker().mask(text) == expected


def test_json_ish_dicts() -> None:
    masker = SecretMasker()
    as_json = json.dumps(
        {"password": "p a s s", "token": "t0k", "Authorization": "Bearer abcdefgh1", "n": 1}
    )
    assert json.loads(masker.mask(as_json)) == {
        "password": "***",
        "token": "***",
        "Authorization": "Bearer ***",
        "n": 1,
    }
    as_repr = repr({"PRIVATE-TOKEN": "glpat-zz", "private_token": "pt", "project": "web"})
    assert masker.mask(as_repr) == (
        "{'PRIVATE-TOKEN': '***', 'private_token': '***', 'project': 'web'}"
    )


def test_headers_in_extras_are_masked_field_by_field(capture: Capture) -> None:
    stream = capture()
    logging.getLogger("bot.test").info(
        "request",
        extra={
            "headers": {"PRIVATE-TOKEN": "pt-1234", "Authorization": "Bearer bt-5678xyz"},
            "webhook_secret": "ws-9999",
            "method": "GET",
        },
    )
    entry = one_json_line(stream)
    assert entry["headers"] == {"PRIVATE-TOKEN": "***", "Authorization": "Bearer ***"}
    assert entry["webhook_secret"] == "***"
    assert entry["method"] == "GET"


def test_headers_in_extras_console(capture: Capture) -> None:
    stream = capture(fmt="console")
    logging.getLogger("bot.test").info(
        "request", extra={"headers": {"X-Gitlab-Token": "ht-1234"}, "api_key": "ak 5678"}
    )
    output = stream.getvalue()
    assert_masked(output, "ht-1234", "ak 5678", "5678")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sent Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig to mm", "sent Bearer *** to mm"),
        ("signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=", "signing with whsec_***"),
        (f"token is {GITLAB_TOKEN}", "token is glpat-***"),
    ],
)
def test_bearer_whsec_and_gitlab_tokens(text: str, expected: str) -> None:
    assert SecretMasker().mask(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "the token expired, please create a new one",
        "tokens=3 token_count=4 max_tokens: 5",
        "if password == expected: return",
        "missing Bearer token",
        "picked @alice for https://gitlab.example.com/group/web/-/merge_requests/5",
        "see https://host:8443/path?x=1 and user@example.com",
        "ratio 3:4, time 12:30:45, a=b&c=d",
        "gitlab_token=SecretStr('**********')",
        "",
    ],
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert SecretMasker(["unrelated-secret"]).mask(text) == text


def test_masking_is_idempotent() -> None:
    masker = SecretMasker([SECRET])
    once = masker.mask(f"token={SECRET} Authorization: Bearer {SECRET} redis://:{SECRET}@h")
    assert masker.mask(once) == once


# ---------------------------------------------------------------------- configuration


def test_configure_logging_is_idempotent() -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    configure_logging("info", "json", stream=second)

    assert len(root.handlers) == before + 1
    logging.getLogger("bot.test").info("once")
    assert first.getvalue() == ""
    assert len(json_lines(second)) == 1


def test_configure_logging_writes_to_stderr_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = io.StringIO()
    monkeypatch.setattr("sys.stderr", fake)
    configure_logging()
    logging.getLogger("bot.test").info("hello")
    assert json.loads(fake.getvalue())["msg"] == "hello"


def test_configure_logging_picks_the_formatter() -> None:
    configure_logging("info", "console", stream=io.StringIO())
    installed = [h for h in logging.getLogger().handlers if isinstance(h, logs._RouletteHandler)]
    assert len(installed) == 1
    assert isinstance(installed[0].formatter, ConsoleFormatter)
    configure_logging("info", "Json", stream=io.StringIO())
    installed = [h for h in logging.getLogger().handlers if isinstance(h, logs._RouletteHandler)]
    assert isinstance(installed[0].formatter, JsonFormatter)


def test_level_filters_records(capture: Capture) -> None:
    stream = capture(level="WARNING")
    log = logging.getLogger("bot.test")
    log.info("hidden")
    log.warning("shown")
    assert [e["msg"] for e in json_lines(stream)] == ["shown"]
    assert logging.getLogger().level == logging.WARNING


def test_noisy_loggers_quiet_unless_debug(capture: Capture) -> None:
    capture(level="info")
    for name in ("urllib3", "httpx", "httpcore", "apscheduler", "aiohttp.access"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    assert logging.getLogger("alembic.runtime.migration").getEffectiveLevel() == logging.INFO

    stream = capture(level="debug")
    for name in ("urllib3", "httpx", "httpcore", "apscheduler"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.DEBUG, name
    assert logging.getLogger("aiohttp.access").getEffectiveLevel() == logging.WARNING
    logging.getLogger("httpx").debug("verbose now")
    assert one_json_line(stream)["msg"] == "verbose now"


@pytest.mark.parametrize(
    ("kwargs", "variable"),
    [({"level": "loud"}, "LOG_LEVEL"), ({"fmt": "xml"}, "LOG_FORMAT")],
)
def test_bad_settings_raise_value_error(kwargs: dict[str, str], variable: str) -> None:
    root = logging.getLogger()
    handlers = root.handlers[:]
    with pytest.raises(ValueError, match=variable) as info:
        configure_logging(**kwargs, stream=io.StringIO())
    assert "\n" not in str(info.value)
    assert root.handlers == handlers
