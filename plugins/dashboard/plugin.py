"""The dashboard: the JSON API v1 (read-only rankings, statistics and badges; bearer-token
write and availability endpoints), its OpenAPI document, and the HTML page at ``/``.

The figures are the other areas' (``plugins.metrics.api``, ``plugins.leaderboard.api``,
``plugins.badges.api``, ``plugins.ooo.api``, ``plugins.roulette.api``), asked only when
that area is enabled: otherwise the endpoint answers 404 naming the area. Errors are JSON
``{"error": ...}`` with a 4xx status; API error texts are English (for programs), the
page is in the reader's language (``Accept-Language``, else the configured locale).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.app import REGISTRY
from bot.context import AppContext, PluginContext
from bot.db import utcnow
from bot.http import BadInput, error_response, json_response, parse_json_object
from bot.i18n import normalise
from bot.plugins import Plugin, route
from plugins.dashboard import openapi as oa
from plugins.dashboard import service
from plugins.dashboard.openapi import BAD_REQUEST, BEARER, NOT_FOUND, UNAUTHORISED, answer, ref

PERIODS = ("day", "week", "month", "all")
BY = ("reviews", "engagement", "speed")
CHART_WEEKS = 12
PAGE_ROWS = 20


def _query(name: str, description: str, values: tuple[str, ...], default: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"enum": list(values), "default": default},
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


PERIOD = _query("period", "the days counted", PERIODS, "week")
BY_PARAMETER = _query("by", "what the ranking is by (speed: time to first review)", BY, "reviews")
USER = _path("user", "the user's id, GitLab or Mattermost username")
BADGE = _path("badge", "the badge's slug")
TEAM = _path("team", "the team's name (case-insensitive)")


class NotFound(Exception):
    """A 404 with a reason."""


def _choice(request: web.Request, name: str, values: tuple[str, ...], default: str) -> str:
    value = request.query.get(name, default)
    if value not in values:
        raise BadInput(f"{name} must be one of {', '.join(values)}")
    return value


class DashboardPlugin(Plugin):
    """The API v1, its OpenAPI document, and the page at ``/``."""

    name = "dashboard"

    def __init__(self, app: AppContext | PluginContext) -> None:
        super().__init__(app)
        self.now: Callable[[], datetime] = utcnow  # the clock (UTC-aware); tests set it

    def today(self) -> date:
        """Today in ``schedule.timezone``."""
        return self.now().astimezone(ZoneInfo(self.app.settings.schedule.timezone)).date()

    def _need(self, area: str) -> None:
        if not self.app.enabled(area):
            raise NotFound(f"the {area} feature area is not enabled")

    async def _guard(self, call: Callable[[], Any]) -> web.Response:
        try:
            result: web.Response = await call()
        except NotFound as e:
            return error_response(404, str(e))
        except BadInput as e:
            return error_response(e.status, str(e))
        return result

    def _authorised(self, request: web.Request) -> bool:
        """A bearer token of ``API_TOKENS`` (compared in constant time); none configured: no."""
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return False
        token = given.strip().encode()
        matched = False
        for accepted in self.app.settings.api_tokens:
            matched |= hmac.compare_digest(token, accepted.get_secret_value().encode())
        return matched

    # ----------------------------------------------------------------- leaderboards

    async def _leaderboard(self, request: web.Request, team: str | None) -> web.Response:
        from plugins.leaderboard import api as leaderboard_api
        from plugins.metrics import api as metrics_api

        period = _choice(request, "period", PERIODS, "week")
        by = _choice(request, "by", BY, "reviews")
        self._need("leaderboard")
        today = self.today()
        async with self.app.sessions() as session:
            if team is not None:
                found = await service.find_team(session, team)
                if found is None:
                    raise NotFound(f"no team called {team[:100]!r}")
                team = found
            entries = await leaderboard_api.leaderboard(
                session, team=team, period=period, by=by, today=today, limit=100
            )
        start, end = metrics_api.period_range(period, today)
        return json_response(
            {
                "period": period,
                "by": by,
                "team": team,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "entries": [asdict(entry) for entry in entries],
            }
        )

    @route(
        "GET",
        "/api/v1/leaderboard",
        openapi={
            "summary": "The reviewers' ranking (top 100)",
            "parameters": [PERIOD, BY_PARAMETER],
            "responses": {
                "200": answer("The ranking; ties share a rank", "Leaderboard"),
                "400": BAD_REQUEST,
                "404": NOT_FOUND,
            },
        },
    )
    async def leaderboard(self, request: web.Request) -> web.Response:
        return await self._guard(lambda: self._leaderboard(request, None))

    @route(
        "GET",
        # A team's name may hold "/" (sent as %2F): the rest of the path is the name.
        "/api/v1/leaderboard/{team:.+}",
        openapi={
            "summary": "One team's ranking (top 100)",
            "parameters": [TEAM, PERIOD, BY_PARAMETER],
            "responses": {
                "200": answer("The team's ranking", "Leaderboard"),
                "400": BAD_REQUEST,
                "404": NOT_FOUND,
            },
        },
    )
    async def team_leaderboard(self, request: web.Request) -> web.Response:
        return await self._guard(lambda: self._leaderboard(request, request.match_info["team"]))

    # ----------------------------------------------------------------- users

    @route(
        "GET",
        "/api/v1/users/{user}/stats",
        openapi={
            "summary": "A reviewer's statistics over a period",
            "parameters": [USER, PERIOD],
            "responses": {
                "200": answer("Sums and averages of the period's daily figures", "UserStats"),
                "400": BAD_REQUEST,
                "404": NOT_FOUND,
            },
        },
    )
    async def user_stats(self, request: web.Request) -> web.Response:
        return await self._guard(lambda: self._user_stats(request))

    async def _user_stats(self, request: web.Request) -> web.Response:
        from plugins.metrics import api as metrics_api

        period = _choice(request, "period", PERIODS, "week")
        self._need("metrics")
        start, end = metrics_api.period_range(period, self.today())
        async with self.app.sessions() as session:
            member = await self._member(session, request.match_info["user"])
            totals = [
                t
                for t in await metrics_api.reviewer_totals(session, start, end)
                if t.user_id == member.id
            ]
        figures: dict[str, Any] = {
            "reviews_assigned": 0,
            "reviews_completed": 0,
            "reviews_other_teams": 0,
            "comments": 0,
            "comment_chars": 0,
            "engagement": 0.0,
            "avg_ttfr_hours": None,
            "avg_approval_hours": None,
            "avg_comments_per_review": None,
            "avg_comment_length": None,
        }
        if totals:
            t = totals[0]
            figures.update(
                reviews_assigned=t.reviews_assigned,
                reviews_completed=t.reviews_completed,
                reviews_other_teams=t.reviews_other_teams,
                comments=t.comments,
                comment_chars=t.comment_chars,
                engagement=t.engagement,
                avg_ttfr_hours=t.avg_ttfr_hours,
                avg_approval_hours=t.avg_approval_hours,
                avg_comments_per_review=t.avg_comments_per_review,
                avg_comment_length=t.avg_comment_length,
            )
        return json_response(
            {
                "user": asdict(member),
                "period": period,
                "start": start.isoformat(),
                "end": end.isoformat(),
                **figures,
            }
        )

    async def _member(self, session: Any, ref_: str) -> service.Member:
        member = await service.find_member(session, ref_)
        if member is None:
            raise NotFound(f"no user {ref_[:100]!r}")
        return member

    @route(
        "GET",
        "/api/v1/users/{user}/badges",
        openapi={
            "summary": "The badges a user holds, newest first",
            "parameters": [USER],
            "responses": {
                "200": {
                    "description": "The user's awards",
                    "content": oa.json_content({"type": "array", "items": ref("Award")}),
                },
                "404": NOT_FOUND,
            },
        },
    )
    async def user_badges(self, request: web.Request) -> web.Response:
        return await self._guard(lambda: self._user_badges(request))

    async def _user_badges(self, request: web.Request) -> web.Response:
        from plugins.badges import api as badges_api

        self._need("badges")
        async with self.app.sessions() as session:
            member = await self._member(session, request.match_info["user"])
            awards = await badges_api.user_badges(session, member.username)
        return json_response([_award(a) for a in awards])

    # ----------------------------------------------------------------- badges

    @route(
        "GET",
        "/api/v1/badges",
        openapi={
            "summary": "The badge catalogue",
            "responses": {
                "200": {
                    "description": "Every badge with its criterion and number of holders",
                    "content": oa.json_content({"type": "array", "items": ref("Badge")}),
                },
                "404": NOT_FOUND,
            },
        },
    )
    async def badges(self, request: web.Request) -> web.Response:
        return await self._guard(self._badges)

    async def _badges(self) -> web.Response:
        from plugins.badges import api as badges_api

        self._need("badges")
        async with self.app.sessions() as session:
            catalogue = await badges_api.catalogue(session)
        return json_response([asdict(b) for b in catalogue])

    @route(
        "GET",
        "/api/v1/badges/{badge}",
        openapi={
            "summary": "One badge",
            "parameters": [BADGE],
            "responses": {"200": answer("The badge", "Badge"), "404": NOT_FOUND},
        },
    )
    async def badge(self, request: web.Request) -> web.Response:
        return await self._guard(lambda: self._badge(request.match_info["badge"]))

    async def _badge(self, slug: str) -> web.Response:
        from plugins.badges import api as badges_api

        self._need("badges")
        async with self.app.sessions() as session:
            found = await badges_api.badge(session, slug)
        if found is None:
            raise NotFound(f"no badge {slug[:100]!r}")
        return json_response(asdict(found))

    @route(
        "GET",
        "/api/v1/badges/{badge}/holders",
        openapi={
            "summary": "Who holds a badge",
            "parameters": [BADGE],
            "responses": {
                "200": {
                    "description": "The badge's awards, newest first",
                    "content": oa.json_content({"type": "array", "items": ref("Award")}),
                },
                "404": NOT_FOUND,
            },
        },
    )
    async def badge_holders(self, request: web.Request) -> web.Response:
        return await self._guard(lambda: self._holders(request.match_info["badge"]))

    async def _holders(self, slug: str) -> web.Response:
        from plugins.badges import api as badges_api

        self._need("badges")
        async with self.app.sessions() as session:
            if await badges_api.badge(session, slug) is None:
                raise NotFound(f"no badge {slug[:100]!r}")
            awards = await badges_api.holders(session, slug)
        return json_response([_award(a) for a in awards])

    @route(
        "POST",
        "/api/v1/admin/badges",
        openapi={
            "summary": "Create or change a badge definition",
            "security": BEARER,
            "requestBody": {
                "required": True,
                "content": oa.json_content(ref("BadgeDefinition")),
            },
            "responses": {
                "200": answer("The badge as now defined", "Badge"),
                "400": BAD_REQUEST,
                "401": UNAUTHORISED,
                "404": NOT_FOUND,
            },
        },
    )
    async def define_badge(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return error_response(401, "a valid bearer token is required")
        return await self._guard(lambda: self._define(request))

    async def _define(self, request: web.Request) -> web.Response:
        from plugins.badges import api as badges_api

        self._need("badges")
        body = parse_json_object(await request.read())
        try:
            async with self.app.sessions.begin() as session:
                defined = await badges_api.define(session, body)
        except ValueError as e:
            raise BadInput(str(e).splitlines()[0] if str(e) else "bad badge definition") from e
        return json_response(asdict(defined))

    # ----------------------------------------------------------------- ooo, availability

    @route(
        "POST",
        "/api/v1/ooo",
        openapi={
            "summary": "Record an out-of-office period (the rules of /ooo)",
            "security": BEARER,
            "requestBody": {"required": True, "content": oa.json_content(ref("OooRequest"))},
            "responses": {
                "201": answer("The period recorded", "OooPeriod"),
                "400": BAD_REQUEST,
                "401": UNAUTHORISED,
                "404": NOT_FOUND,
            },
        },
    )
    async def record_ooo(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return error_response(401, "a valid bearer token is required")
        return await self._guard(lambda: self._record_ooo(request))

    async def _record_ooo(self, request: web.Request) -> web.Response:
        from plugins.ooo import api as ooo_api

        self._need("ooo")
        body = parse_json_object(await request.read())
        unknown = sorted(set(body) - {"user", "start", "end", "reason"})
        if unknown:
            raise BadInput(f"unknown field {unknown[0][:40]!r}")
        for name in ("user", "start", "end"):
            if not isinstance(body.get(name), str):
                raise BadInput(f"{name} is required (a string)")
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise BadInput("reason must be a string")
        try:
            period = await ooo_api.record(
                self.app.sessions,
                self.app.settings,
                body["user"],
                body["start"],
                body["end"],
                reason,
                now=self.now(),
                locale="en",
            )
        except ooo_api.Refused as e:
            raise BadInput(str(e)) from e
        return json_response(period, status=201)

    @route(
        "GET",
        "/api/v1/availability",
        openapi={
            "summary": "Who can be picked as a reviewer now, per team, with why not",
            "security": BEARER,
            "responses": {
                "200": answer("Each team's members", "Availability"),
                "401": UNAUTHORISED,
                "404": NOT_FOUND,
            },
        },
    )
    async def availability(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return error_response(401, "a valid bearer token is required")
        return await self._guard(self._availability)

    async def _availability(self) -> web.Response:
        from plugins.roulette import api as roulette_api

        self._need("roulette")
        now = self.now()
        people = await roulette_api.availability(self.app, now)
        teams: dict[str | None, list[dict[str, Any]]] = {}
        for person in people:
            teams.setdefault(person.team, []).append(
                {
                    "username": person.username,
                    "role": person.role,
                    "available": person.available,
                    "reason": person.reason,
                    "detail": person.detail,
                }
            )
        return json_response(
            {
                "at": now.astimezone(UTC).isoformat(),
                "teams": [
                    {
                        "team": team,
                        "available": sum(1 for p in members if p["available"]),
                        "people": members,
                    }
                    for team, members in teams.items()
                ],
            }
        )

    # ----------------------------------------------------------------- OpenAPI

    @route(
        "GET",
        "/api/v1/openapi.json",
        openapi={
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 document of the API",
                    "content": oa.json_content({"type": "object"}),
                }
            },
        },
    )
    async def openapi(self, request: web.Request) -> web.Response:
        routes = request.app[REGISTRY].routes.values()
        operations = [
            (h.spec.options["method"], h.spec.options["path"], h.spec.options["openapi"])
            for h in routes
        ]
        return json_response(oa.document(operations, self.app.settings.public_url))

    # ----------------------------------------------------------------- the page

    @route("GET", "/")
    async def page(self, request: web.Request) -> web.Response:
        period = request.query.get("period", "week")
        if period not in PERIODS:
            period = "week"
        team = request.query.get("team") or None
        locale = normalise(
            request.headers.get("Accept-Language", "").split(",")[0].split(";")[0].strip(),
            self.app.settings.locale,
        )
        _ = self.app.translator(locale)
        today, now = self.today(), self.now()
        entries: list[Any] = []
        awards: list[Any] = []
        charts: list[str] = []
        async with self.app.sessions() as session:
            teams = await service.team_names(session)
            if team is not None:
                team = await service.find_team(session, team)
            if self.app.enabled("leaderboard"):
                from plugins.leaderboard import api as leaderboard_api

                entries = await leaderboard_api.leaderboard(
                    session, team=team, period=period, by="reviews", today=today, limit=PAGE_ROWS
                )
            if self.app.enabled("badges"):
                from plugins.badges import api as badges_api

                awards = await badges_api.recent_awards(session, limit=10)
            pending = await service.pending_by_team(session, now)
            if self.app.enabled("metrics"):
                from plugins.metrics import api as metrics_api

                start = today - timedelta(days=today.weekday() + 7 * (CHART_WEEKS - 1))
                weeks = await metrics_api.weekly_team_times(session, start, today)
                charts = _charts(weeks, _)
        html = (
            service.page_environment()
            .get_template("page.html.j2")
            .render(
                t=_,
                lang=locale,
                period=period,
                periods=PERIODS,
                team=team,
                teams=teams,
                entries=entries,
                awards=awards,
                pending=pending,
                charts=charts,
                today=today.isoformat(),
            )
        )
        return web.Response(text=html, content_type="text/html", charset="utf-8")


def _award(award: Any) -> dict[str, Any]:
    data = asdict(award)
    data["awarded_at"] = award.awarded_at.astimezone(UTC).isoformat()
    return data


def _charts(weeks: list[Any], _: Any) -> list[str]:
    """Two inline SVG charts (time to first review, time to approval) per week and team."""
    labels = sorted({w.week for w in weeks})
    x_labels = [d.isoformat() for d in labels]
    teams = sorted({w.team for w in weeks}, key=lambda t: (t is None, t or ""))
    charts = []
    for field, title in (
        ("avg_ttfr_hours", _("Time to first review")),
        ("avg_approval_hours", _("Time to approval")),
    ):
        series = []
        for team in teams:
            by_week = {w.week: getattr(w, field) for w in weeks if w.team == team}
            values = tuple(
                None if by_week.get(d) is None else round(float(by_week[d]), 2) for d in labels
            )
            series.append(service.Series(team or _("Everyone"), values))
        charts.append(service.line_chart(title, x_labels, series, _("hours")))
    return charts
