"""The page at ``/`` on seeded data (both engines): leaderboard, period and team
switches, pending reviews, the SVG charts, no outside script, escaped names."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.dashboard.conftest import ALL, HOSTILE, areas

Client = TestClient[Any, Any]


async def page(client: Client, query: str = "", **headers: str) -> str:
    response = await client.get(f"/{query}", headers=headers)
    assert response.status == 200
    assert response.content_type == "text/html"
    return await response.text()


async def test_the_page_shows_the_seeded_figures(client: Client) -> None:
    html = await page(client)
    assert "<title>Reviewer Roulette dashboard</title>" in html
    if "leaderboard" in areas(*ALL):
        assert html.count('<tr class="entry">') == 3
        assert html.index(">alice<") < html.index(">bob<")
    assert "Add &lt;b&gt;checkout&lt;/b&gt;" in html  # pending review, escaped
    assert "bob, dave" in html
    assert html.count("<svg") == 2
    assert "<script" not in html.replace("&lt;script", "")  # no script of any site
    assert "kozea.github.io" not in html


async def test_names_are_escaped(client: Client) -> None:
    html = await page(client, "?period=all")
    assert HOSTILE not in html
    if "leaderboard" in areas(*ALL):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_period_team_and_language(client: Client) -> None:
    backend = await page(client, "?period=month&team=BACKEND")
    if "leaderboard" in areas(*ALL):
        assert backend.count('<tr class="entry">') == 2
    assert 'class="current">backend<' in backend
    odd = await page(client, "?period=<x>&team=nope")
    assert "<x>" not in odd
    french = await page(client, **{"Accept-Language": "fr-FR,fr;q=0.9"})
    assert "Tableau de bord de Reviewer Roulette" in french and 'lang="fr"' in french
