"""Several replicas on one PostgreSQL: only one holds the Mattermost websocket."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL

from bot.app import create_app
from bot.http import CONTEXT
from bot.sandbox.mattermost import MattermostStandIn
from tests.e2e.conftest import MakeClient, e2e_settings
from tests.e2e.test_mattermost_flow import TEAM, _free_port, _until
from tests.e2e.test_mattermost_flow import mattermost as mattermost


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_one_replica_holds_the_websocket_and_another_takes_over(
    migrated_url: URL,
    gitlab_url: str,
    mattermost: tuple[MattermostStandIn, str],
    aiohttp_client: MakeClient,
) -> None:
    mm, mm_url = mattermost
    replicas = []
    for _ in range(2):
        port = _free_port()
        settings = e2e_settings(
            migrated_url,
            gitlab_url,
            mattermost_url=mm_url,
            mattermost_token=mm.bot_token,
            mattermost_team=TEAM,
            public_url=f"http://127.0.0.1:{port}",
        )
        replicas.append(await aiohttp_client(create_app(settings), server_kwargs={"port": port}))

    def states() -> list[str]:
        return sorted(r.app[CONTEXT].chat_.state for r in replicas if not r.server.closed)

    await _until(lambda: states() == ["connected", "standby"])
    assert mm.websockets_open("roulette-bot") == 1

    leader = next(r for r in replicas if r.app[CONTEXT].chat_.state == "connected")
    await leader.close()
    await _until(lambda: states() == ["connected"], within=15)
    await _until(lambda: mm.websockets_open("roulette-bot") == 1)
