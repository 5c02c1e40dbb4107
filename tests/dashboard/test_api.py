"""The API v1 on seeded data (both engines): answers, 404s, 400s, 401s, each answer
validated against the schema its route declares in the OpenAPI document."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.engine import URL

from bot.app import REGISTRY
from tests.dashboard.conftest import ALL, HOSTILE, TOKEN, MakeClient, areas, start

AUTH = {"Authorization": f"Bearer {TOKEN}"}
Client = TestClient[Any, Any]


async def checked(client: Client, method: str, path: str, status: int, **kw: Any) -> Any:
    """The JSON answer of ``method path`` (status checked), validated against the schema
    that the OpenAPI document declares for that route and status."""
    response = await client.request(method, path, **kw)
    body = await response.json()
    assert response.status == status, body
    assert response.headers["Content-Type"] == "application/json"
    document = await (await client.get("/api/v1/openapi.json")).json()
    template = response.request_info.url.path
    resource = client.app.router.resources()
    matched = next(
        r.canonical for r in resource if r.canonical.startswith("/api/") and _matches(r, template)
    )
    operation = document["paths"][matched][method.lower()]
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    jsonschema.validate(
        body,
        {**schema, "components": document["components"]},
        cls=jsonschema.Draft202012Validator,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    return body


def _matches(resource: Any, path: str) -> bool:
    info = resource._match(path) if hasattr(resource, "_match") else None
    return info is not None


async def test_user_stats_sum_the_period(client: Client) -> None:
    body = await checked(client, "GET", "/api/v1/users/alice/stats?period=week", 200)
    assert body["user"]["username"] == "alice" and body["user"]["team"] == "backend"
    assert body["reviews_completed"] == 3 and body["comments"] == 6
    assert body["avg_ttfr_hours"] == pytest.approx(2.0)
    month = await checked(
        client, "GET", f"/api/v1/users/{body['user']['id']}/stats?period=all", 200
    )
    assert month["reviews_completed"] == 6
    nobody = await checked(client, "GET", "/api/v1/users/dave/stats", 200)
    assert nobody["reviews_completed"] == 0 and nobody["avg_ttfr_hours"] is None


async def test_unknown_and_bad_input(client: Client) -> None:
    await checked(client, "GET", "/api/v1/users/nobody/stats", 404)
    await checked(client, "GET", "/api/v1/users/99999999999999/stats", 404)
    await checked(client, "GET", "/api/v1/users/alice/stats?period=year", 400)
    if "leaderboard" in areas(*ALL):
        await checked(client, "GET", "/api/v1/leaderboard/nope", 404)
        await checked(client, "GET", "/api/v1/leaderboard?by=luck", 400)
    if "badges" in areas(*ALL):
        await checked(client, "GET", "/api/v1/badges/no-such-badge", 404)
        await checked(client, "GET", "/api/v1/badges/no-such-badge/holders", 404)


async def test_an_area_not_enabled_is_a_clear_404(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    client = await start(aiohttp_client, migrated_url, areas("roulette", "metrics", "dashboard"))
    for path in ("/api/v1/leaderboard", "/api/v1/badges", "/api/v1/users/alice/badges"):
        response = await client.get(path)
        assert response.status == 404
        assert "feature area is not enabled" in (await response.json())["error"]
    response = await client.post("/api/v1/ooo", json={}, headers=AUTH)
    assert response.status == 404 and "ooo" in (await response.json())["error"]


@pytest.mark.skipif("leaderboard" not in areas(*ALL), reason="the leaderboard area is not here yet")
async def test_leaderboards(client: Client) -> None:
    body = await checked(client, "GET", "/api/v1/leaderboard?period=week&by=reviews", 200)
    assert [(e["rank"], e["username"]) for e in body["entries"]][:3] == [
        (1, "alice"),
        (2, "erin"),
        (3, "bob"),
    ]
    team = await checked(client, "GET", "/api/v1/leaderboard/BACKEND?period=all", 200)
    assert team["team"] == "backend"
    assert {e["username"] for e in team["entries"]} == {"alice", "bob"}
    speed = await checked(client, "GET", "/api/v1/leaderboard?by=speed", 200)
    assert speed["entries"][0]["username"] == "erin"


@pytest.mark.skipif("badges" not in areas(*ALL), reason="the badges area is not here yet")
async def test_badges_catalogue_definition_and_holders(client: Client) -> None:
    catalogue = await checked(client, "GET", "/api/v1/badges", 200)
    definition = {
        "slug": "speedy",
        "name": "Speedy",
        "description": "fast first reviews",
        "emoji": ":zap:",
        "metric": "avg_ttfr_hours",
        "operator": "<=",
        "value": 1,
        "period": "week",
        "min_reviews": 1,
    }
    bad = await client.post(
        "/api/v1/admin/badges", json={"slug": "x", "operator": "~"}, headers=AUTH
    )
    assert bad.status == 400 and (await bad.json())["error"]
    defined = await checked(
        client, "POST", "/api/v1/admin/badges", 200, json=definition, headers=AUTH
    )
    assert defined["slug"] == "speedy"
    again = await checked(client, "GET", "/api/v1/badges", 200)
    assert len(again) == len(catalogue) + (
        0 if any(b["slug"] == "speedy" for b in catalogue) else 1
    )
    assert (await checked(client, "GET", "/api/v1/badges/speedy", 200))["name"] == "Speedy"
    assert await checked(client, "GET", "/api/v1/badges/speedy/holders", 200) == []
    assert await checked(client, "GET", "/api/v1/users/alice/badges", 200) == []


async def test_write_endpoints_need_a_valid_bearer_token(client: Client) -> None:
    for method, path in (
        ("POST", "/api/v1/ooo"),
        ("GET", "/api/v1/availability"),
        ("POST", "/api/v1/admin/badges"),
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = await client.request(method, path, headers=headers, json={})
            assert response.status == 401, (method, path, headers)
            assert (await response.json())["error"]


async def test_no_token_configured_refuses_everyone(
    migrated_url: URL, aiohttp_client: MakeClient
) -> None:
    client = await start(aiohttp_client, migrated_url, areas(*ALL), api_tokens="")
    response = await client.get("/api/v1/availability", headers={"Authorization": "Bearer "})
    assert response.status == 401


async def test_record_ooo_with_the_rules_of_the_command(client: Client) -> None:
    body = {"user": "bob", "start": "2026-03-12", "end": "2026-03-13", "reason": "holiday"}
    period = await checked(client, "POST", "/api/v1/ooo", 201, json=body, headers=AUTH)
    assert period["user"] == "bob" and period["start"] == "2026-03-12"
    overlap = await checked(
        client, "POST", "/api/v1/ooo", 400, json={**body, "start": "2026-03-13"}, headers=AUTH
    )
    assert "overlap" in overlap["error"]
    reversed_ = {"user": "bob", "start": "2026-03-20", "end": "2026-03-19"}
    assert (
        "before"
        in (await checked(client, "POST", "/api/v1/ooo", 400, json=reversed_, headers=AUTH))[
            "error"
        ]
    )
    stranger = {"user": "mallory", "start": "2026-03-20", "end": "2026-03-21"}
    await checked(client, "POST", "/api/v1/ooo", 400, json=stranger, headers=AUTH)
    for bad in (b"{", b"[]", b'{"user": 1, "start": "x", "end": "y"}'):
        response = await client.post("/api/v1/ooo", data=bad, headers=AUTH)
        assert response.status == 400


async def test_availability_per_team_with_reasons(client: Client) -> None:
    body = {"user": "alice", "start": "2026-03-11", "end": "2026-03-12"}
    await checked(client, "POST", "/api/v1/ooo", 201, json=body, headers=AUTH)
    answer = await checked(client, "GET", "/api/v1/availability", 200, headers=AUTH)
    people = {p["username"]: p for team in answer["teams"] for p in team["people"]}
    assert people["alice"]["reason"] == "ooo" and not people["alice"]["available"]
    assert people["dave"]["reason"] == "capacity"  # one active review, at most one
    assert people["bob"]["available"] and people["erin"]["available"]
    backend = next(t for t in answer["teams"] if t["team"] == "backend")
    assert backend["available"] == 1


async def test_openapi_covers_every_api_route(client: Client) -> None:
    """The meta-test: every /api/ route of every enabled area is in the document, with
    its responses; the document is valid OpenAPI 3.1 JSON Schema-wise."""
    document = await checked(client, "GET", "/api/v1/openapi.json", 200)
    assert document["openapi"].startswith("3.1")
    for key, handler in client.app[REGISTRY].routes.items():
        method, path = handler.spec.options["method"], handler.spec.options["path"]
        if not path.startswith("/api/"):
            continue
        path = re.sub(r":[^{}]*\}", "}", path)  # aiohttp's {team:.+} is OpenAPI's {team}
        operation = document["paths"].get(path, {}).get(method.lower())
        assert operation is not None, f"{key} is missing from the OpenAPI document"
        assert operation.get("responses"), f"{key} declares no responses"
        assert "Retry-After" in operation["responses"]["503"]["headers"], key  # database down
        for response in operation["responses"].values():
            for content in response.get("content", {}).values():
                jsonschema.Draft202012Validator.check_schema(content["schema"])
    for name, schema in document["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema), name


async def test_hostile_names_are_data(client: Client) -> None:
    body = await checked(client, "GET", "/api/v1/users/erin/stats", 200)
    assert body["user"]["mattermost"] == HOSTILE
