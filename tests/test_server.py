"""Graceful shutdown, in process: in-flight requests finish, new ones are refused."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.engine import URL

from bot.db import create_engine, create_sessionmaker
from bot.errors import CommandFailed
from bot.models import User
from bot.plugins import Plugin, route
from bot.sandbox.gitlab import GitLabStandIn
from bot.sandbox.gitlab import serve as serve_gitlab
from bot.server import run_server
from tests.conftest import settings_for


class Slow(Plugin):
    name = "slow"
    started = asyncio.Event()

    @route("GET", "/slow")
    async def slow(self, request: web.Request) -> web.Response:
        Slow.started.set()
        await asyncio.sleep(0.5)
        return web.Response(text="finished")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_until_up(base: str, deadline: float = 10.0) -> None:
    until = time.monotonic() + deadline
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < until:
            try:
                async with http.get(f"{base}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise AssertionError("the server never came up")


async def test_stop_lets_in_flight_requests_finish(database_url: URL) -> None:
    port = _free_port()
    settings = settings_for(database_url, http_host="127.0.0.1", http_port=port)
    stop = asyncio.Event()
    Slow.started = asyncio.Event()
    server = asyncio.create_task(run_server(settings, stop, plugins=[Slow]))
    base = f"http://127.0.0.1:{port}"
    await _wait_until_up(base)

    async with aiohttp.ClientSession() as http:
        in_flight = asyncio.create_task(http.get(f"{base}/slow"))
        await asyncio.wait_for(Slow.started.wait(), 5)
        stopped_at = time.monotonic()
        stop.set()
        response = await asyncio.wait_for(in_flight, 5)
        assert response.status == 200
        assert await response.text() == "finished"

    await asyncio.wait_for(server, 10)
    assert time.monotonic() - stopped_at < 10
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"{base}/health")


async def test_a_taken_port_fails_before_anything_starts(database_url: URL) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings_for(database_url, http_host="127.0.0.1", http_port=port)
        with pytest.raises(CommandFailed, match=f"cannot listen on 127.0.0.1:{port}: Address"):
            await run_server(settings, asyncio.Event())


async def test_serving_starts_before_gitlab_answers_then_syncs_its_groups(
    database_url: URL,
) -> None:
    gitlab = GitLabStandIn("token-for-the-server-test")
    for name in ("alice", "grace"):
        gitlab.add_user(name)
    gitlab.add_group("acme/backend", ["alice", "grace"])
    answer_groups = gitlab.hold_next(r"/groups/")  # GitLab is slow today
    async with serve_gitlab(gitlab) as gitlab_url:
        port = _free_port()
        settings = settings_for(
            database_url,
            http_host="127.0.0.1",
            http_port=port,
            gitlab_url=gitlab_url,
            gitlab_token="token-for-the-server-test",
            teams=[{"name": "backend", "gitlab_group": "acme/backend"}],
            users=[{"gitlab": "alice", "team": "backend"}],
        )
        stop = asyncio.Event()
        server = asyncio.create_task(run_server(settings, stop))
        # up while GitLab has not answered the groups yet: the probes did not wait for it
        await _wait_until_up(f"http://127.0.0.1:{port}")
        assert not any("/groups/" in path for *_, path in gitlab.timeline)
        answer_groups.set()

        engine = create_engine(settings.async_database_url)
        try:
            deadline = time.monotonic() + 10
            while True:
                async with create_sessionmaker(engine)() as session:
                    names = set((await session.scalars(select(User.gitlab_username))).all())
                if "grace" in names:
                    break
                assert time.monotonic() < deadline, names
                await asyncio.sleep(0.05)
        finally:
            await engine.dispose()
        stop.set()
        await asyncio.wait_for(server, 10)
