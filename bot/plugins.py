"""Plugin base, handler decorators and the registry that collects them.

The decorators only attach metadata to the function. At start-up ``Registry`` walks each
plugin instance, checks every handler's signature and refuses duplicates, so that a
mistake fails at start, not at 2 a.m.::

    class Ooo(Plugin):
        name = "ooo"

        @command("ooo", description="Record an out-of-office period", hint="[start end reason]")
        async def ooo(self, ctx: CommandContext) -> Reply: ...

        @route("GET", "/api/v1/availability")
        async def availability(self, request: web.Request) -> web.StreamResponse: ...
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from bot.context import AppContext

HandlerKind = Literal["command", "gitlab", "job", "route", "dialog"]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_ATTR = "__roulette_handlers__"
GITLAB_EVENTS = frozenset({"note", "merge_request"})
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_COMMAND_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_JOB_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
# What each kind of handler receives, besides ``self``.
_PARAMETER = {
    "command": "ctx",
    "gitlab": "event",
    "job": "run",
    "route": "request",
    "dialog": "submission",
}


class RegistryError(Exception):
    """A plugin declares something the registry cannot accept; fails start-up."""


@dataclass(frozen=True)
class HandlerSpec:
    kind: HandlerKind
    key: str
    options: dict[str, Any] = field(default_factory=dict)


def _attach(spec: HandlerSpec) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        specs: list[HandlerSpec] = list(getattr(func, _ATTR, ()))
        specs.append(spec)
        setattr(func, _ATTR, tuple(specs))
        return func

    return decorate


def command(
    name: str, *, description: str = "", hint: str = "", opens_dialog: bool = False
) -> Callable[[F], F]:
    """A Mattermost slash command ``/name``; the handler receives a command context.

    ``opens_dialog``: the command may answer with a dialog, which must open within the
    trigger id's life (3 s on older servers), so the handler is called before any other
    I/O, with the user as the request carries them; it calls ``await ctx.resolved()``
    for the rest (locale, timezone) on its other paths.
    """
    if not _COMMAND_NAME.fullmatch(name):
        raise RegistryError(f"command name {name!r}: use lowercase letters, digits, - and _")
    options = {"description": description, "hint": hint, "opens_dialog": opens_dialog}
    return _attach(HandlerSpec("command", name, options))


def on_gitlab(event: str) -> Callable[[F], F]:
    """A GitLab webhook event (``note``, ``merge_request``); the handler receives the event."""
    if event not in GITLAB_EVENTS:
        raise RegistryError(f"GitLab event {event!r}: expected one of {sorted(GITLAB_EVENTS)}")
    return _attach(HandlerSpec("gitlab", event))


def job(name: str, *, cron: str | None = None) -> Callable[[F], F]:
    """A scheduled job; its cron comes from ``schedule.<name>`` in the settings unless given."""
    if not _JOB_NAME.fullmatch(name):
        raise RegistryError(f"job name {name!r}: use lowercase letters, digits and _")
    return _attach(HandlerSpec("job", name, {"cron": cron}))


def dialog(callback_id: str) -> Callable[[F], F]:
    """Submissions of the interactive dialogs opened with this ``callback_id``."""
    if not _COMMAND_NAME.fullmatch(callback_id):
        raise RegistryError(f"dialog {callback_id!r}: use lowercase letters, digits, - and _")
    return _attach(HandlerSpec("dialog", callback_id))


def route(method: str, path: str) -> Callable[[F], F]:
    """An HTTP route on the embedded server; the handler receives the aiohttp request."""
    method = method.upper()
    if method not in HTTP_METHODS:
        raise RegistryError(f"route {path!r}: unsupported method {method!r}")
    if not path.startswith("/"):
        raise RegistryError(f"route {path!r}: the path must start with /")
    return _attach(HandlerSpec("route", f"{method} {path}", {"method": method, "path": path}))


class Plugin:
    """A feature area. Constructors do no I/O; ``on_start``/``on_stop`` may."""

    name: ClassVar[str] = ""

    def __init__(self, app: AppContext) -> None:
        self.app = app

    async def on_start(self) -> None:
        """Called once the app's resources are open."""

    async def on_stop(self) -> None:
        """Called before the app's resources close."""


@dataclass(frozen=True)
class Handler:
    plugin: Plugin
    spec: HandlerSpec
    func: Callable[..., Awaitable[Any]]

    @property
    def qualname(self) -> str:
        return f"{type(self.plugin).__name__}.{self.func.__name__}"


def _check_signature(plugin: Plugin, name: str, spec: HandlerSpec) -> Callable[..., Awaitable[Any]]:
    where = f"{type(plugin).__name__}.{name} ({spec.kind} {spec.key!r})"
    func = getattr(plugin, name)
    if not inspect.iscoroutinefunction(func):
        raise RegistryError(f"{where}: a handler must be an async method")
    parameters = list(inspect.signature(func).parameters.values())
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    required_keyword = [p for p in parameters if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if len(positional) != 1 or required_keyword:
        expected = _PARAMETER[spec.kind]
        found = ", ".join(p.name for p in parameters) or "nothing"
        raise RegistryError(f"{where}: expected (self, {expected}), found (self, {found})")
    return func  # type: ignore[no-any-return]


class Registry:
    """Every handler of every plugin, checked; built once at start-up."""

    def __init__(self, plugins: Sequence[Plugin], reserved_routes: Iterable[str] = ()) -> None:
        self.plugins = tuple(plugins)
        self.commands: dict[str, Handler] = {}
        self.gitlab: dict[str, list[Handler]] = {event: [] for event in sorted(GITLAB_EVENTS)}
        self.jobs: dict[str, Handler] = {}
        self.routes: dict[str, Handler] = {}
        self.dialogs: dict[str, Handler] = {}
        reserved = set(reserved_routes)
        names: dict[str, Plugin] = {}
        for plugin in self.plugins:
            label = plugin.name or type(plugin).__name__
            if label in names:
                raise RegistryError(f"plugin {label!r} is registered twice")
            names[label] = plugin
            for attr in sorted(dir(type(plugin))):
                specs: tuple[HandlerSpec, ...] = getattr(getattr(type(plugin), attr), _ATTR, ())
                for spec in specs:
                    self._add(Handler(plugin, spec, _check_signature(plugin, attr, spec)), reserved)

    def _add(self, handler: Handler, reserved: set[str]) -> None:
        spec = handler.spec
        if spec.kind == "gitlab":
            self.gitlab[spec.key].append(handler)
            return
        tables = {
            "command": self.commands,
            "job": self.jobs,
            "route": self.routes,
            "dialog": self.dialogs,
        }
        table = tables[spec.kind]
        if spec.key in table or (spec.kind == "route" and spec.key in reserved):
            other = table[spec.key].qualname if spec.key in table else "the core"
            raise RegistryError(
                f"{handler.qualname}: {spec.kind} {spec.key!r} is already declared by {other}"
            )
        table[spec.key] = handler


def load_plugins(names: Iterable[str], app: AppContext) -> list[Plugin]:
    """Instantiate ``plugins.<name>.plugin.<X>Plugin`` for each enabled feature area."""
    found: list[Plugin] = []
    for name in names:
        module = importlib.import_module(f"plugins.{name}.plugin")
        classes = [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type)
            and issubclass(obj, Plugin)
            and obj is not Plugin
            and obj.__module__ == module.__name__
        ]
        if len(classes) != 1:
            raise RegistryError(f"plugins.{name}.plugin must define exactly one Plugin class")
        found.append(classes[0](app))
    return found
