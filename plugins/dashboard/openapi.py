"""The OpenAPI 3.1 document of the HTTP API, generated from the declared routes.

Every route under ``/api/`` of every enabled area carries its Operation Object (the
``openapi=`` of ``bot.plugins.route``); ``document`` gathers them with the shared
components below. The schemas are JSON Schema 2020-12 (OpenAPI 3.1's dialect), so the
tests validate the API's answers against them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

API_PREFIX = "/api/"
_TEMPLATE_REGEX = re.compile(r":[^{}]*\}")  # the ":regex}" of aiohttp's "{name:regex}"
# The badges area's vocabulary (``plugins.badges.config``), repeated so the document does
# not import an area that may be disabled; tests/test_schemathesis.py keeps them equal.
BADGE_METRICS = (
    "reviews_completed",
    "reviews_other_teams",
    "comments",
    "avg_ttfr_hours",
    "avg_approval_hours",
    "avg_comments_per_review",
    "avg_comment_length",
    "engagement",
)
BADGE_OPERATORS = ("<", "<=", ">", ">=", "==", "top")
BADGE_PERIODS = ("day", "week", "month", "all")
VERSION = "1.0.0"


def ref(name: str) -> dict[str, str]:
    """A reference to ``#/components/schemas/<name>``."""
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def json_content(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A ``content`` map for ``application/json`` with ``schema``."""
    return {"application/json": {"schema": dict(schema)}}


def answer(description: str, schema: str = "Error") -> dict[str, Any]:
    """A Response Object with a JSON body of the component ``schema``."""
    return {"description": description, "content": json_content(ref(schema))}


NOT_FOUND = answer("Unknown user, team or badge, or the area serving it is not enabled")
BAD_REQUEST = answer("Bad parameter or body")
UNAUTHORISED = answer("No valid bearer token (API_TOKENS)")
# Every route answers this while the database cannot serve it (bot.http's middleware).
UNAVAILABLE = answer("The database is unavailable: retry after Retry-After seconds") | {
    "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}
}

_STATS = {
    "reviews_assigned": {"type": "integer"},
    "reviews_completed": {"type": "integer"},
    "reviews_other_teams": {"type": "integer"},
    "comments": {"type": "integer"},
    "comment_chars": {"type": "integer"},
    "engagement": {"type": "number"},
    "avg_ttfr_hours": _nullable("number"),
    "avg_approval_hours": _nullable("number"),
    "avg_comments_per_review": _nullable("number"),
    "avg_comment_length": _nullable("number"),
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Entry": {
        "type": "object",
        "required": [
            "rank",
            "username",
            "mattermost",
            "team",
            "reviews_completed",
            "engagement",
            "avg_ttfr_hours",
            "value",
        ],
        "properties": {
            "rank": {"type": "integer", "minimum": 1},
            "username": {"type": "string"},
            "mattermost": _nullable("string"),
            "team": _nullable("string"),
            "reviews_completed": {"type": "integer"},
            "engagement": {"type": "number"},
            "avg_ttfr_hours": _nullable("number"),
            "value": {"type": "number", "description": "what the entry is ranked by"},
        },
        "additionalProperties": False,
    },
    "Leaderboard": {
        "type": "object",
        "required": ["period", "by", "team", "start", "end", "entries"],
        "properties": {
            "period": {"enum": ["day", "week", "month", "all"]},
            "by": {"enum": ["reviews", "engagement", "speed"]},
            "team": _nullable("string"),
            "start": {"type": "string", "format": "date"},
            "end": {"type": "string", "format": "date"},
            "entries": {"type": "array", "items": ref("Entry"), "maxItems": 100},
        },
        "additionalProperties": False,
    },
    "User": {
        "type": "object",
        "required": ["id", "username", "mattermost", "team", "role", "active"],
        "properties": {
            "id": {"type": "integer"},
            "username": {"type": "string", "description": "GitLab username"},
            "mattermost": _nullable("string"),
            "team": _nullable("string"),
            "role": {"type": "string"},
            "active": {"type": "boolean"},
        },
        "additionalProperties": False,
    },
    "UserStats": {
        "type": "object",
        "required": ["user", "period", "start", "end", *_STATS],
        "properties": {
            "user": ref("User"),
            "period": {"enum": ["day", "week", "month", "all"]},
            "start": {"type": "string", "format": "date"},
            "end": {"type": "string", "format": "date"},
            **_STATS,
        },
        "additionalProperties": False,
    },
    "Badge": {
        "type": "object",
        "required": [
            "slug",
            "name",
            "description",
            "emoji",
            "metric",
            "operator",
            "value",
            "period",
            "min_reviews",
            "holders",
        ],
        "properties": {
            "slug": {"type": "string"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "emoji": {"type": "string"},
            "metric": {"type": "string"},
            "operator": {"type": "string"},
            "value": {"type": "number"},
            "period": {"type": "string"},
            "min_reviews": {"type": "integer"},
            "holders": {"type": "integer"},
        },
        "additionalProperties": False,
    },
    "Award": {
        "type": "object",
        "required": ["slug", "name", "emoji", "username", "period", "awarded_at"],
        "properties": {
            "slug": {"type": "string"},
            "name": {"type": "string"},
            "emoji": {"type": "string"},
            "username": {"type": "string"},
            "period": {"type": "string"},
            "awarded_at": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": False,
    },
    "BadgeDefinition": {
        "type": "object",
        "description": "A badge is awarded to whoever's metric over the period passes "
        "'operator value' with at least min_reviews completed reviews (operator top: among "
        "the value best). Without a slug, it is made from the name (ASCII letters and digits, "
        "accents dropped, dashes between words), and a default badge's name changes that badge.",
        "required": ["name", "metric", "operator", "value"],
        "properties": {
            "slug": {
                "type": ["string", "null"],
                "pattern": "^[a-z0-9][a-z0-9-]{0,63}$",
            },
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "description": {"type": ["string", "null"], "maxLength": 500},
            "emoji": {"type": ["string", "null"], "maxLength": 64},
            "metric": {"enum": list(BADGE_METRICS)},
            "operator": {"enum": list(BADGE_OPERATORS)},
            "value": {"type": "number"},
            "period": {"enum": list(BADGE_PERIODS), "default": "month"},
            "min_reviews": {"type": "integer", "minimum": 0, "maximum": 100_000, "default": 0},
        },
        "additionalProperties": False,
        "allOf": [
            {
                # No slug: the name must give one.
                "if": {"required": ["slug"], "properties": {"slug": {"type": "string"}}},
                "else": {"properties": {"name": {"pattern": "[A-Za-z0-9]"}}},
            },
            {
                # top: a whole number of places, at least 1.
                "if": {"required": ["operator"], "properties": {"operator": {"const": "top"}}},
                "then": {"properties": {"value": {"multipleOf": 1, "minimum": 1}}},
            },
        ],
    },
    "OooRequest": {
        "type": "object",
        "required": ["user", "start", "end"],
        "properties": {
            "user": {"type": "string", "description": "Mattermost or GitLab username"},
            "start": {"type": "string", "description": "YYYY-MM-DD, today or tomorrow"},
            "end": {"type": "string", "description": "YYYY-MM-DD, the last day included"},
            "reason": _nullable("string"),
        },
        "additionalProperties": False,
    },
    "OooPeriod": {
        "type": "object",
        "required": ["id", "user", "start", "end", "reason"],
        "properties": {
            "id": {"type": "integer"},
            "user": {"type": "string", "description": "GitLab username"},
            "start": {"type": "string", "format": "date"},
            "end": {"type": "string", "format": "date"},
            "reason": _nullable("string"),
        },
        "additionalProperties": False,
    },
    "Person": {
        "type": "object",
        "required": ["username", "role", "available", "reason", "detail"],
        "properties": {
            "username": {"type": "string"},
            "role": {"type": "string"},
            "available": {"type": "boolean"},
            "reason": {"enum": [None, "ooo", "busy", "away", "capacity", "inactive"]},
            "detail": _nullable("string"),
        },
        "additionalProperties": False,
    },
    "Availability": {
        "type": "object",
        "required": ["at", "teams"],
        "properties": {
            "at": {"type": "string", "format": "date-time"},
            "teams": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["team", "available", "people"],
                    "properties": {
                        "team": _nullable("string"),
                        "available": {"type": "integer", "minimum": 0},
                        "people": {"type": "array", "items": ref("Person")},
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    },
}

SECURITY_SCHEMES = {"bearer": {"type": "http", "scheme": "bearer"}}
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def document(
    operations: Iterable[tuple[str, str, Mapping[str, Any]]], server: str | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` (method, aiohttp path, Operation Object),
    keeping the paths under ``/api/``. aiohttp's ``{name}`` templates are OpenAPI's (a
    ``{name:regex}`` one loses its regex); a path parameter an operation does not declare
    is added as a required string."""
    paths: dict[str, dict[str, Any]] = {}
    for method, route_path, operation in sorted(operations, key=lambda o: (o[1], o[0])):
        if not route_path.startswith(API_PREFIX):
            continue
        path = _TEMPLATE_REGEX.sub("}", route_path)  # {team:.+} -> {team}
        op = dict(operation)
        declared = {p.get("name") for p in op.get("parameters", ()) if p.get("in") == "path"}
        names = [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]
        extra = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in names
            if n not in declared
        ]
        if extra:
            op["parameters"] = [*op.get("parameters", ()), *extra]
        op["responses"] = {**op.get("responses", {}), "503": UNAVAILABLE}
        paths.setdefault(path, {})[method.lower()] = op
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Reviewer Roulette API",
            "version": VERSION,
            "description": "Leaderboards, statistics, badges, out-of-office periods and "
            'availability. Errors are JSON {"error": ...} with a 4xx status, or 503 while '
            "the database is unavailable.",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }
    if server:
        doc["servers"] = [{"url": server}]
    return doc
