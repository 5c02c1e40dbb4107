"""``roulette-bot demo``: the installed command run as a newcomer runs it (a process of its
own, a working directory of its own, a clean environment), judged by its exit code and
what it prints; then the pieces it is made of."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.demo import port_number, story
from bot.demo.world import PEOPLE, StepTimedOut, as_seen, demo_settings, listen_socket, until
from bot.sandbox.webhooks import WebhookSender
from tests.test_cli import clean_env, cli

# Both runs ask for port 8080 (or one the test holds): one after the other, on one worker.
pytestmark = pytest.mark.xdist_group("demo")

RUN_TIMEOUT = 90.0  # a busy machine; the story itself takes a few seconds
NAMES = {p.username for p in PEOPLE}


def _dashboard(output: str) -> str:
    found = re.search(r"^    dashboard:\s+(http://127\.0\.0\.1:\d+/)$", output, re.MULTILINE)
    assert found, output
    return found.group(1)


def test_the_story_is_told_once_and_exits_0(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        cli("demo", "--once"),
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    took = time.monotonic() - started
    out = result.stdout
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.stderr == ""  # no log noise, no traceback
    print(f"demo --once: {took:.1f} s")

    # Every step, in order.
    numbers = [int(n) for n in re.findall(r"^\[(\d+)/11\] ", out, re.MULTILINE)]
    assert numbers == list(range(1, 12)), out

    # The absence and the busy status keep those two out.
    assert "~~@erin~~: out of office" in out
    assert "~~@frank~~: busy (GitLab status is busy)" in out

    # The reviewers, named in the channel and set in GitLab.
    found = re.search(r"^    GitLab, reviewers: (.+)$", out, re.MULTILINE)
    assert found, out
    picked = [name.lstrip("@") for name in found.group(1).split(", ")]
    assert picked and set(picked) <= NAMES - {"alice", "erin", "frank"}
    answer = out[out.index("~town-square:") : out.index("GitLab, note on !6:")]
    assert all(f"- @{name}:" in answer for name in picked), answer

    # The pass goes to someone else, and the MR is told.
    passer = picked[0]
    assert f"[6/11] {passer} clicks Pass" in out
    handed = re.search(rf"@{passer} handed this review over to @(\w+)", out)
    assert handed and handed.group(1) not in picked, out
    assert f"You passed this review; @{handed.group(1)} takes it over." in out

    # The accept, the approval and the merge are recorded.
    assert ":white_check_mark: You accepted this review." in out
    assert re.search(r"the bot records \w+'s first answer, [\d.]+ s after the request", out)
    assert "the bot records !6 as merged; " in out and f"@{passer} passed" in out

    # The daily jobs: the digest lists the pending MR, a badge is awarded.
    assert "**1 merge request waiting for review in frontend**" in out
    assert "- Dark mode for the cart by dave, waiting for @" in out
    assert "@carol earned the badge **Speed Demon**" in out

    # The dashboard answered, at the URL printed; the database is gone.
    url = _dashboard(out)
    assert f"GET {url} answered 200" in out
    database = re.search(r"^    database: (\S+) ", out, re.MULTILINE)
    assert database and not Path(database.group(1)).exists()
    assert not list(tmp_path.iterdir())  # nothing left in the working directory


@contextlib.contextmanager
def held_port(preferred: int = 8080) -> Iterator[int]:
    """A port this test listens on: 8080 when it can have it, else a free one."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError as e:
            assert e.errno == errno.EADDRINUSE
            sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


class Lines:
    """A process's stdout, read by a thread; wait for a line with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines.append("")  # the end
            self.changed.notify_all()

    def wait_for(self, text: str, within: float) -> str:
        with self.changed:
            found = self.changed.wait_for(
                lambda: any(text in line for line in self.lines) or "" in self.lines, within
            )
            assert found and "" not in self.lines, "".join(self.lines)
            return "".join(self.lines)


def test_a_taken_port_and_the_users_own_settings_change_nothing(tmp_path: Path) -> None:
    """Port taken: the demo says which one it took. A user's settings in the environment
    (an unreachable database, another GitLab, a missing configuration file, an unknown
    feature area) are ignored. Without --once the dashboard stays up until SIGTERM."""
    own = clean_env(
        DATABASE_URL="postgresql://nobody@203.0.113.1:5432/nope",
        ROULETTE_CONFIG="missing.yaml",
        GITLAB_URL="https://gitlab.example.com",
        MATTERMOST_URL="https://chat.example.com",
        PLUGINS="nonexistent",
        HTTP_PORT="1",
    )
    with held_port() as port:
        process = subprocess.Popen(
            cli("demo", "--port", str(port)),
            cwd=tmp_path,
            env=own,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            lines = Lines(process)
            out = lines.wait_for("The dashboard stays up until Ctrl-C.", RUN_TIMEOUT)
            url = _dashboard(out)
            assert f"    port {port} is in use; the dashboard is on {url}\n" in out
            assert f":{port}/" not in url
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with direct.open(url, timeout=10) as page:
                assert page.status == 200
                assert b"<html" in page.read().lower()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.stderr is not None
    assert process.stderr.read() == ""
    lines.thread.join(timeout=10)
    assert "".join(lines.lines).rstrip().endswith("Stopping.")
    assert not list(tmp_path.iterdir())


def test_stopped_during_the_story_it_exits_130_with_one_line(tmp_path: Path) -> None:
    process = subprocess.Popen(
        cli("demo", "--once", "--port", "0"),  # any free port
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        Lines(process).wait_for("[1/11] ", RUN_TIMEOUT)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    assert process.stderr.read() == "roulette-bot: stopped before the story ended\n"


async def test_a_step_that_does_not_happen_stops_the_demo_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Forged(WebhookSender):
        """A webhook whose secret the bot does not know: every delivery is refused."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "secret": "not-the-bots"})

    monkeypatch.setattr(story, "WebhookSender", Forged)
    monkeypatch.setattr(story, "STEP_TIMEOUT", 0.5)
    out = io.StringIO()
    with pytest.raises(StepTimedOut) as raised:
        await story.demo(True, 0, out)
    assert str(raised.value) == "step 2/11: the bot follows !1: not within 0.5 s"
    assert out.getvalue().rstrip().splitlines()[-1].startswith("[2/11] earlier today")


# --------------------------------------------------------------------------- its pieces


def test_the_port_asked_for_when_free_else_a_free_one_and_why() -> None:
    with held_port(0) as taken:
        sock, reason = listen_socket(taken)
        with sock:
            assert reason == "is in use"
            assert sock.getsockname()[1] != taken
    free, _ = listen_socket(0)  # the port of a socket just closed, probed here
    port = free.getsockname()[1]
    free.close()
    sock, reason = listen_socket(port)
    with sock:
        assert (sock.getsockname()[1], reason) == (port, None)


def test_the_settings_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@203.0.113.1/nope")
    monkeypatch.setenv("GITLAB_URL", "https://gitlab.example.com")
    monkeypatch.setenv("PLUGINS", "roulette")
    monkeypatch.setenv("ROULETTE__REVIEWERS", "9")
    settings = demo_settings({"database_url": "sqlite:///demo.db"})
    assert settings.database_url == "sqlite:///demo.db"
    assert settings.gitlab_url is None
    assert {"roulette", "handover", "digest", "badges", "dashboard"} <= set(settings.plugins)
    assert settings.model_dump()["roulette"]["reviewers"] == 3


def test_port_numbers() -> None:
    assert (port_number("8080"), port_number("0")) == (8080, 0)
    for bad in ("-1", "65536", "http"):
        with pytest.raises(Exception, match="port number"):
            port_number(bad)


async def test_until_returns_what_holds_or_names_what_did_not_happen() -> None:
    assert await until("a list", lambda: [1], 1) == [1]

    async def later() -> str:
        await asyncio.sleep(0)
        return "ok"

    assert await until("a coroutine", later, 1) == "ok"
    started = time.monotonic()
    with pytest.raises(StepTimedOut, match=r"^the bot answers: not within 0\.1 s$"):
        await until("the bot answers", lambda: None, 0.1)
    assert time.monotonic() - started < 5


def test_messages_are_shown_as_rendered() -> None:
    note = (
        "<!-- roulette:marker -->Reviewers for [acme/shop!6 Pay \\[card\\]](http://x/6):\n"
        "- @bob\n\n<details><summary>Why these reviewers</summary>\n\n| a | b |\n</details>\n"
    )
    assert as_seen(note) == (
        "Reviewers for acme/shop!6 Pay [card]:\n- @bob\n\n\N{BLACK RIGHT-POINTING SMALL TRIANGLE}"
        " Why these reviewers"
    )


def test_the_demo_is_documented_in_its_help(tmp_path: Path) -> None:
    result = subprocess.run(
        cli("demo", "--help"),
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for fact in ("--once", "--port PORT", "ignored", "LOG_LEVEL", "removed at exit", "8080"):
        assert fact in text, fact
