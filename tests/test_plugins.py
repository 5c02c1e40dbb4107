"""The plugin registry: what it collects, and the mistakes it refuses at start-up."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from bot.context import AppContext
from bot.http import CORE_ROUTES
from bot.plugins import Plugin, Registry, RegistryError, command, job, on_gitlab, route
from bot.settings import Settings


@pytest.fixture
def context() -> AppContext:
    return AppContext(settings=Settings())


class Good(Plugin):
    name = "good"

    @command("roulette", description="Pick reviewers", hint="MR_URL")
    async def roulette(self, ctx: Any) -> str:
        return "picked"

    @on_gitlab("note")
    async def note(self, event: Any) -> None:
        pass

    @on_gitlab("merge_request")
    async def merge_request(self, event: Any) -> None:
        pass

    @job("digest", cron="0 9 * * *")
    async def digest(self, run: Any) -> None:
        pass

    @route("GET", "/api/v1/badges")
    @route("GET", "/api/v1/badges/{id}")
    async def badges(self, request: web.Request) -> web.Response:
        return web.Response(text="badges")


class AlsoNote(Plugin):
    name = "also"

    @on_gitlab("note")
    async def note(self, event: Any) -> None:
        pass


def test_collects_every_kind_of_handler(context: AppContext) -> None:
    registry = Registry([Good(context), AlsoNote(context)], reserved_routes=CORE_ROUTES)
    assert set(registry.commands) == {"roulette"}
    assert registry.commands["roulette"].spec.options == {
        "description": "Pick reviewers",
        "hint": "MR_URL",
        "opens_dialog": False,
    }
    assert [h.qualname for h in registry.gitlab["note"]] == ["Good.note", "AlsoNote.note"]
    assert [h.qualname for h in registry.gitlab["merge_request"]] == ["Good.merge_request"]
    assert set(registry.jobs) == {"digest"}
    assert set(registry.routes) == {"GET /api/v1/badges", "GET /api/v1/badges/{id}"}


async def test_handlers_are_bound_to_their_plugin(context: AppContext) -> None:
    registry = Registry([Good(context)])
    assert await registry.commands["roulette"].func(object()) == "picked"


def test_decorators_only_attach_metadata() -> None:
    async def handler(self: Any, ctx: Any) -> str:
        return "same"

    decorated = command("x")(handler)
    assert decorated is handler


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def handler(self, ctx): pass", "must be an async method"),
        ("async def handler(self): pass", r"expected \(self, ctx\), found \(self, nothing\)"),
        ("async def handler(self, ctx, extra): pass", r"found \(self, ctx, extra\)"),
        ("async def handler(self, ctx, *, flag): pass", r"found \(self, ctx, flag\)"),
    ],
)
def test_a_wrong_signature_fails_start_up(context: AppContext, source: str, message: str) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    bad = type("Bad", (Plugin,), {"handler": command("bad")(namespace["handler"])})
    with pytest.raises(RegistryError, match=message) as caught:
        Registry([bad(context)])
    assert "Bad.handler" in str(caught.value)
    assert "'bad'" in str(caught.value)


def test_optional_extra_parameters_are_allowed(context: AppContext) -> None:
    class Fine(Plugin):
        @command("fine")
        async def handler(self, ctx: Any, verbose: bool = False) -> None:
            pass

    assert set(Registry([Fine(context)]).commands) == {"fine"}


def test_a_duplicate_command_fails_start_up(context: AppContext) -> None:
    class Other(Plugin):
        name = "other"

        @command("roulette")
        async def mine(self, ctx: Any) -> None:
            pass

    with pytest.raises(RegistryError, match=r"'roulette' is already declared by Good\.roulette"):
        Registry([Good(context), Other(context)])


def test_a_duplicate_route_fails_start_up(context: AppContext) -> None:
    class Other(Plugin):
        name = "other"

        @route("get", "/api/v1/badges")
        async def mine(self, request: web.Request) -> web.Response:
            return web.Response()

    with pytest.raises(RegistryError, match="GET /api/v1/badges' is already declared"):
        Registry([Good(context), Other(context)])


def test_a_route_may_not_shadow_the_core(context: AppContext) -> None:
    class Shadow(Plugin):
        @route("GET", "/health")
        async def mine(self, request: web.Request) -> web.Response:
            return web.Response()

    with pytest.raises(RegistryError, match="already declared by the core"):
        Registry([Shadow(context)], reserved_routes=CORE_ROUTES)


def test_a_duplicate_job_fails_start_up(context: AppContext) -> None:
    class Other(Plugin):
        name = "other"

        @job("digest", cron="0 9 * * *")
        async def mine(self, run: Any) -> None:
            pass

    with pytest.raises(RegistryError, match="job 'digest'"):
        Registry([Good(context), Other(context)])


def test_the_same_plugin_twice_fails_start_up(context: AppContext) -> None:
    with pytest.raises(RegistryError, match="plugin 'good' is registered twice"):
        Registry([Good(context), Good(context)])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: command("Bad Name"), "command name 'Bad Name'"),
        (lambda: on_gitlab("push"), "GitLab event 'push'"),
        (lambda: job("daily-digest", cron="0 9 * * *"), "job name 'daily-digest'"),
        (lambda: route("TRACE", "/x"), "unsupported method 'TRACE'"),
        (lambda: route("GET", "x"), "must start with /"),
    ],
)
def test_bad_declarations_fail_at_once(make: Any, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        make()
