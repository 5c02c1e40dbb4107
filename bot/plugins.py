"""Feature areas: the Plugin base, handler decorators, the registry, and the loader.

A feature area is a package (``plugins/<area>/`` for the built-in ones) with a
``plugin.py`` defining one ``Plugin`` subclass, and where it needs them ``models.py``
(tables on the shared metadata), ``migrations/`` (its Alembic revisions), ``config.py``
(its settings model, owning one YAML key), ``cli.py`` (its ``roulette-bot`` subcommands),
``templates/`` and ``api.py`` (what other areas may call). The core finds areas by name
(``plugins: [...]`` in the configuration, default: every built-in area and every installed
entry point of the group ``reviewer_roulette.plugins``); it imports no area itself.

The decorators only attach metadata to the function. At start-up ``Registry`` walks each
plugin instance, checks every handler's signature and refuses duplicates, so that a
mistake fails at start, not at 2 a.m.::

    class Ooo(Plugin):
        name = "ooo"

        @command("ooo", description="Record an out-of-office period", hint="[start end reason]")
        async def ooo(self, ctx: CommandContext) -> Reply: ...

        @job("reminders", cron="0 8 * * 1-5")   # schedule.reminders overrides the cron
        async def reminders(self, run: JobRun) -> None: ...
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel

from bot.context import AppContext, PluginContext

if TYPE_CHECKING:
    from bot.cli import Subcommands

HandlerKind = Literal["command", "gitlab", "job", "route", "dialog", "action"]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_ATTR = "__roulette_handlers__"
#: The GitLab events a handler may take: a payload's ``object_kind`` (the one list).
GITLAB_EVENTS = frozenset({"note", "merge_request"})
BUILTIN_PACKAGE = "plugins"
ENTRY_POINT_GROUP = "reviewer_roulette.plugins"
_AREA_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}(\.[a-z_][a-z0-9_]*)*")
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
    "action": "ctx",
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


JOB_PERIODS = ("minute", "day", "week", "month")


def job(name: str, *, cron: str, period: str = "minute") -> Callable[[F], F]:
    """A scheduled job run on ``cron`` (five fields, in ``schedule.timezone``), which
    ``schedule.<name>`` in the configuration overrides. It runs once per ``period``
    (``minute``, ``day``, ``week`` or ``month``) across replicas, whether the scheduler
    or ``roulette-bot run-job`` starts it. The handler receives a ``JobRunContext``."""
    if not _JOB_NAME.fullmatch(name):
        raise RegistryError(f"job name {name!r}: use lowercase letters, digits and _")
    if period not in JOB_PERIODS:
        raise RegistryError(f"job {name!r}: period must be one of {', '.join(JOB_PERIODS)}")
    return _attach(HandlerSpec("job", name, {"cron": cron, "period": period}))


def dialog(callback_id: str) -> Callable[[F], F]:
    """Submissions of the interactive dialogs opened with this ``callback_id``."""
    if not _COMMAND_NAME.fullmatch(callback_id):
        raise RegistryError(f"dialog {callback_id!r}: use lowercase letters, digits, - and _")
    return _attach(HandlerSpec("dialog", callback_id))


def action(name: str) -> Callable[[F], F]:
    """Clicks on the message buttons (``bot.chat.Button``) whose ``action`` is ``name``;
    the handler receives a verified ``ActionContext`` and returns an ``ActionResult``."""
    if not _COMMAND_NAME.fullmatch(name):
        raise RegistryError(f"action {name!r}: use lowercase letters, digits, - and _")
    return _attach(HandlerSpec("action", name))


def route(method: str, path: str, *, openapi: Mapping[str, Any] | None = None) -> Callable[[F], F]:
    """An HTTP route on the embedded server; the handler receives the aiohttp request.

    ``openapi``: the route's OpenAPI 3.1 Operation Object (``summary``, ``parameters``,
    ``requestBody``, ``responses`` with their JSON schemas, ``security``), from which the
    API document is generated.
    """
    method = method.upper()
    if method not in HTTP_METHODS:
        raise RegistryError(f"route {path!r}: unsupported method {method!r}")
    if not path.startswith("/"):
        raise RegistryError(f"route {path!r}: the path must start with /")
    options = {"method": method, "path": path, "openapi": dict(openapi or {})}
    return _attach(HandlerSpec("route", f"{method} {path}", options))


class Plugin:
    """A feature area's handlers. Constructors do no I/O; ``on_start``/``on_stop`` may.

    ``name`` is the area's name; ``config_model`` its settings model (an ``AreaConfig``
    subclass naming the YAML key it owns in ``key``), or None: the validated section is
    ``TheConfig.of(self.app.settings)``. ``self.app`` is the typed context the handlers use.
    """

    name: ClassVar[str] = ""
    # An ``AreaConfig`` (or a pydantic ``RootModel`` with a ``key`` ClassVar, for a list).
    config_model: ClassVar[type[BaseModel] | None] = None
    # The areas this one cannot work without (it calls their ``api.py``); checked at start.
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, app: AppContext | PluginContext) -> None:
        self.app = app if isinstance(app, PluginContext) else PluginContext(app)

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
        self.actions: dict[str, Handler] = {}
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
            "action": self.actions,
        }
        table = tables[spec.kind]
        if spec.key in table or (spec.kind == "route" and spec.key in reserved):
            other = table[spec.key].qualname if spec.key in table else "the core"
            raise RegistryError(
                f"{handler.qualname}: {spec.kind} {spec.key!r} is already declared by {other}"
            )
        table[spec.key] = handler


@dataclass(frozen=True)
class Area:
    """A feature area found by name: its package and its ``Plugin`` class."""

    name: str
    package: str  # import path: ``plugins.roulette``, or an installed package's
    plugin: type[Plugin]

    @property
    def path(self) -> Path:
        module = importlib.import_module(self.package)
        return Path(next(iter(module.__path__))).resolve()

    @property
    def migrations(self) -> Path | None:
        """The folder of the area's Alembic revisions, if it has any."""
        folder = self.path / "migrations"
        return folder if folder.is_dir() and any(folder.glob("*.py")) else None

    def module(self, name: str) -> ModuleType | None:
        """``<package>.<name>`` (``models``, ``cli``...), or None when the area has none."""
        full = f"{self.package}.{name}"
        if importlib.util.find_spec(full) is None:
            return None
        return importlib.import_module(full)

    def add_commands(self, commands: Subcommands) -> None:
        """The area's ``roulette-bot`` subcommands: ``cli.py``'s ``add_commands``, if any."""
        cli = self.module("cli")
        add = getattr(cli, "add_commands", None) if cli is not None else None
        if add is not None:
            add(commands)

    def job_crons(self) -> dict[str, str]:
        """Job name -> default cron, as the area's handlers declare them."""
        crons: dict[str, str] = {}
        for attr in dir(self.plugin):
            for spec in getattr(getattr(self.plugin, attr), _ATTR, ()):
                if spec.kind == "job":
                    crons[spec.key] = spec.options["cron"]
        return crons


def _entry_points() -> dict[str, str]:
    """Installed areas: entry-point name -> package, group ``reviewer_roulette.plugins``."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def builtin_areas() -> tuple[str, ...]:
    """The built-in areas: the folders of ``plugins/`` that have a ``plugin.py``."""
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return ()
    root = Path(next(iter(spec.submodule_search_locations)))
    return tuple(sorted(p.parent.name for p in root.glob("*/plugin.py")))


def default_areas() -> tuple[str, ...]:
    """What ``plugins:`` defaults to: every built-in area, then every installed one."""
    builtin = builtin_areas()
    return builtin + tuple(sorted(set(_entry_points()) - set(builtin)))


@cache
def find_area(name: str) -> Area:
    """The area called ``name``: an installed entry point of that name, a dotted package
    path (``mycompany.reviews.sla``), else the built-in ``plugins.<name>``.

    Raises ``RegistryError`` (one line) when there is no such area or its ``plugin.py``
    does not define exactly one ``Plugin`` subclass.
    """
    if not _AREA_NAME.fullmatch(name):
        raise RegistryError(f"feature area {name!r}: not a valid name")
    package = _entry_points().get(name) or (name if "." in name else f"{BUILTIN_PACKAGE}.{name}")
    try:
        module = importlib.import_module(f"{package}.plugin")
    except ModuleNotFoundError as e:
        if e.name is not None and (package.startswith(e.name) or e.name.endswith(".plugin")):
            raise RegistryError(
                f"unknown feature area {name!r} (no {package}.plugin module; the built-in"
                f" areas are {', '.join(builtin_areas())})"
            ) from None
        raise
    classes = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Plugin)
        and obj is not Plugin
        and obj.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise RegistryError(f"{package}.plugin must define exactly one Plugin class")
    return Area(name=classes[0].name or name, package=package, plugin=classes[0])


def find_areas(names: Iterable[str]) -> list[Area]:
    """``find_area`` for each name, in order; a name given twice is refused."""
    areas: list[Area] = []
    for name in names:
        area = find_area(name)
        if any(a.package == area.package for a in areas):
            raise RegistryError(f"feature area {name!r} is enabled twice")
        areas.append(area)
    return areas


def load_plugins(names: Iterable[str], app: AppContext) -> list[Plugin]:
    """One instance of each enabled area's ``Plugin`` class (no I/O)."""
    return [area.plugin(app) for area in find_areas(names)]
