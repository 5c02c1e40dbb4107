"""Leadership: one holder per installation, and installations in two schemas of one
PostgreSQL database do not wait for each other (advisory locks are per database)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import create_engine
from bot.leader import Leadership
from tests.conftest import postgres_schema, settings_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def other_schema() -> Iterator[URL]:
    with postgres_schema() as url:
        yield url


@asynccontextmanager
async def engine_for(url: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings_for(url).async_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_one_leader_per_schema(database_url: URL, other_schema: URL) -> None:
    async with (
        engine_for(database_url) as one,
        engine_for(database_url) as same,
        engine_for(other_schema) as other,
    ):
        first = Leadership(one, "mattermost-websocket")
        rival = Leadership(same, "mattermost-websocket")
        neighbour = Leadership(other, "mattermost-websocket")
        assert await first.try_acquire()
        assert not await rival.try_acquire()  # the same installation: it stands by
        assert await neighbour.try_acquire()  # another schema: its own leader
        drain = Leadership(same, "webhook-spool-drain")
        assert await drain.try_acquire()  # another lock
        await first.release()
        assert await rival.try_acquire()  # released: the standby takes over
        for leadership in (rival, neighbour, drain):
            await leadership.release()
