"""The Grafana dashboard and the alerts ask only for series the bot exports.

Every PromQL expression of the dashboard (panels and variables) and of the chart's
PrometheusRule is parsed with a real PromQL parser (promql-parser, a binding of the
Rust ``promql-parser`` crate), and each metric it names must be exposed by ``/metrics``
of the real app with every feature area enabled and Mattermost connected. A metric
family's exposed names follow the Prometheus text format as prometheus_client writes it:
a counter ``x`` is ``x_total`` (and ``x_created``), a histogram ``h`` is ``h_bucket``,
``h_sum``, ``h_count``, a summary ``s`` is ``s_sum``, ``s_count``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import promql_parser
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from bot import migrate
from bot.app import create_app
from bot.plugins import default_areas
from bot.sandbox.mattermost import MattermostStandIn, serve
from tests.conftest import settings_for

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "reviewer-roulette"
DASHBOARD = CHART / "dashboards" / "reviewer-roulette.json"
PROMETHEUS_OWN = {"up"}  # written by Prometheus for each target, not by the bot
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
# Grafana's variables in a range or a duration, e.g. [$__rate_interval]: a parser needs
# a duration there (Grafana substitutes one before sending the query).
_RANGE_VARIABLE = re.compile(r"\[\$\{?\w+\}?\]")
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (a syntax error fails the test)."""
    tree = promql_parser.parse(_RANGE_VARIABLE.sub("[5m]", expr))
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers if node.matchers else []:
                if matcher.name == "__name__":
                    names.add(matcher.value)

    promql_parser.walk(tree, visit)
    assert names, f"no metric in {expr!r}"
    return names


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # panels of a collapsed row
    return found


def dashboard_expressions() -> dict[str, str]:
    """Every query of the dashboard, by where it is."""
    board = dashboard()
    queries = {
        f"panel {p['title']!r} {t['refId']}": t["expr"]
        for p in panels(board)
        for t in p.get("targets", [])
    }
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = _LABEL_VALUES.match(text)
            assert match, f"variable {variable['name']}: {text!r}"
            queries[f"variable {variable['name']}"] = match.group(1)
    return queries


def alert_expressions() -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(
            {"metrics": {"prometheusRule": {"enabled": True}}}, name="rr", namespace="roulette"
        )
    (rule,) = yaml.safe_load_all(manifests["reviewer-roulette/templates/prometheusrule.yaml"])
    return {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}


@pytest.fixture
async def exported(tmp_path: Path, aiohttp_client: MakeClient) -> AsyncIterator[set[str]]:
    """Every series name ``/metrics`` exposes: the app with every built-in area enabled,
    Mattermost connected (its websocket gauge exists only then)."""
    url = make_url(f"sqlite:///{tmp_path / 'roulette.db'}")
    migrate.upgrade(url, default_areas())
    mattermost = MattermostStandIn()
    mattermost.add_team("acme", members=["roulette-bot"])
    async with serve(mattermost) as mattermost_url:
        settings = settings_for(
            url,
            mattermost_url=mattermost_url,
            mattermost_token=mattermost.bot_token,
            mattermost_team="acme",
        )
        assert set(settings.plugins) == set(default_areas())
        client = await aiohttp_client(create_app(settings))
        response = await client.get("/metrics")
        assert response.status == 200
        text = await response.text()
        names: set[str] = set()
        for family in text_string_to_metric_families(text):
            names.update(sample.name for sample in family.samples)
            names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
        yield names
        await client.close()


async def test_every_metric_of_the_dashboard_is_exported(exported: set[str]) -> None:
    queries = dashboard_expressions()
    assert len(queries) > 30
    missing = {
        where: sorted(metric_names(expr) - exported - PROMETHEUS_OWN)
        for where, expr in queries.items()
    }
    assert {where: names for where, names in missing.items() if names} == {}


async def test_every_alert_reads_exported_metrics(exported: set[str]) -> None:
    alerts = alert_expressions()
    assert len(alerts) >= 10
    missing = {
        name: sorted(metric_names(expr) - exported - PROMETHEUS_OWN)
        for name, expr in alerts.items()
    }
    assert {name: names for name, names in missing.items() if names} == {}


def test_the_checks_above_would_see_a_misspelt_metric() -> None:
    assert metric_names(
        'histogram_quantile(0.9, sum by (le) (rate(review_ttfr_second_bucket{job=~"$job"}'
        "[$__rate_interval])))"
    ) == {"review_ttfr_second_bucket"}
    assert metric_names('max({__name__="mattermost_connected"}) or vector(0)') == {
        "mattermost_connected"
    }


def test_the_dashboard_shows_what_operators_look_at() -> None:
    read = set().union(*(metric_names(e) for e in dashboard_expressions().values()))
    assert {
        "reviews_completed_total",
        "review_ttfr_seconds_bucket",
        "review_time_to_approval_seconds_bucket",
        "active_reviews",
        "available_reviewers",
        "roulette_triggers_total",
        "http_request_duration_seconds_bucket",
        "webhook_dead_letters_total",
        "mattermost_connected",
        "review_handovers_total",
    } <= read
    ack = [e for e in dashboard_expressions().values() if "http_request_duration" in e]
    assert ack and all('route="/webhook/gitlab"' in e for e in ack)


def test_the_dashboard_is_importable_as_is() -> None:
    board = dashboard()
    assert board["uid"] == "reviewer-roulette"
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "team" in variables
    seen_ids: set[int] = set()
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(board):
        assert panel["id"] not in seen_ids, f"panel id {panel['id']} twice"
        seen_ids.add(panel["id"])
        if panel["type"] != "row":
            # No data source is hard-wired: the one picked in the variable is used.
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
        # Panels do not overlap on Grafana's 24-column grid.
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]
