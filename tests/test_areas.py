"""Feature areas: the conventions that keep one area one folder (meta-tests), and a
throwaway area built in a temporary folder and enabled by configuration alone."""

from __future__ import annotations

import ast
import asyncio
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL

from bot import migrate
from bot.app import REGISTRY, create_app
from bot.http import CONTEXT
from bot.plugins import builtin_areas, find_area
from bot.sandbox.mattermost import MattermostStandIn, serve
from bot.scheduler import run_guarded
from bot.settings import ConfigError, load_settings, settings_model
from tests.conftest import settings_for

ROOT = Path(__file__).resolve().parent.parent
AREAS = ROOT / "plugins"


# ------------------------------------------------------------------- the conventions


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (at any depth of the file), with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from a.b import c``: a.b.c (a name in a.b, or its submodule c).
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_the_core_imports_no_feature_area() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted((ROOT / "bot").rglob("*.py"))
        for line, module in _imports(path)
        if module == "plugins" or module.startswith("plugins.")
    ]
    assert not offences, "the core finds areas by name, it does not import them:\n" + "\n".join(
        offences
    )


def test_an_area_uses_another_only_through_its_api() -> None:
    offences = []
    for area in builtin_areas():
        for path in sorted((AREAS / area).rglob("*.py")):
            for line, module in _imports(path):
                parts = module.split(".")
                if parts[0] != "plugins" or len(parts) < 2 or parts[1] == area:
                    continue
                if parts[2:3] != ["api"]:
                    offences.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert not offences, "import another area's api.py only:\n" + "\n".join(offences)


@pytest.mark.parametrize("area", builtin_areas())
def test_every_area_has_its_plugin_and_its_tests(area: str) -> None:
    assert (AREAS / area / "plugin.py").is_file()
    tests = ROOT / "tests" / area
    assert tests.is_dir() and any(tests.glob("test_*.py")), f"tests/{area}/ has no tests"
    assert find_area(area).plugin.name == area


def test_the_built_in_areas_are_found_and_enabled_by_default() -> None:
    assert {"roulette", "ooo"} <= set(builtin_areas())
    assert load_settings().plugins == builtin_areas()


# ------------------------------------------------------------------- a throwaway area

THROWAWAY = {
    "__init__.py": "",
    "config.py": """
        from typing import ClassVar

        from bot.settings import AreaConfig


        class ThrowawayConfig(AreaConfig):
            key: ClassVar[str] = "throwaway"
            greeting: str = "hello"
        """,
    "models.py": """
        from sqlalchemy import Integer, String
        from sqlalchemy.orm import Mapped, mapped_column

        from bot.db import Base


        class Note(Base):
            __tablename__ = "throwaway_notes"

            id: Mapped[int] = mapped_column(Integer, primary_key=True)
            text: Mapped[str] = mapped_column(String(100))
        """,
    "migrations/__init__.py": "",
    "migrations/tw_0001_notes.py": '''
        """throwaway: notes

        Revision ID: tw_0001
        Revises:
        """

        import sqlalchemy as sa
        from alembic import op

        revision = "tw_0001"
        down_revision = None
        branch_labels = ("throwaway",)
        depends_on = "0003"


        def upgrade() -> None:
            op.create_table(
                "throwaway_notes",
                sa.Column("id", sa.Integer(), nullable=False),
                sa.Column("text", sa.String(length=100), nullable=False),
                sa.PrimaryKeyConstraint("id", name=op.f("pk_throwaway_notes")),
            )


        def downgrade() -> None:
            op.drop_table("throwaway_notes")
        ''',
    "plugin.py": """
        from bot.chat import CommandContext, Reply
        from bot.plugins import Plugin, command, job
        from bot.scheduler import JobRunContext

        from .config import ThrowawayConfig
        from .models import Note


        class ThrowawayPlugin(Plugin):
            name = "throwaway"
            config_model = ThrowawayConfig

            @command("throwaway", description="Say the configured greeting", hint="")
            async def greet(self, ctx: CommandContext) -> Reply:
                _ = self.app.translator(ctx.user.locale)
                return Reply(ThrowawayConfig.of(self.app.settings).greeting)

            @job("tidy", cron="*/5 * * * *")
            async def tidy(self, run: JobRunContext) -> None:
                async with self.app.sessions.begin() as session:
                    session.add(Note(text=f"tidied {run.period}"))
        """,
    "cli.py": """
        from bot.cli import Subcommands


        def add_commands(commands: Subcommands) -> None:
            commands.add("throwaway-hello", "say hello", lambda settings, args: print("hello"))
        """,
}


@pytest.fixture(scope="module")
def throwaway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``extra_areas/throwaway``, importable, as a new package would be (for this module:
    its table leaves the shared metadata afterwards, as later tests compare the two)."""
    root = tmp_path_factory.mktemp("areas")
    for name, source in THROWAWAY.items():
        path = root / "extra_areas" / "throwaway" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    (root / "extra_areas" / "__init__.py").write_text("", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        yield root
    from bot.db import Base

    table = Base.metadata.tables.get("throwaway_notes")
    if table is not None:
        Base.metadata.remove(table)
    for module in [m for m in sys.modules if m.startswith("extra_areas")]:
        del sys.modules[module]
    find_area.cache_clear()
    settings_model.cache_clear()


ENABLED = ["roulette", "ooo", "extra_areas.throwaway"]


def test_a_new_area_is_enabled_by_configuration_alone(
    throwaway: Path, database_url: URL, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "plugins: [roulette, ooo, extra_areas.throwaway]\nthrowaway: {greeting: bonjour}\n",
        encoding="utf-8",
    )
    settings = load_settings(config)
    assert settings.plugins == tuple(ENABLED)
    assert settings.throwaway.greeting == "bonjour"  # type: ignore[attr-defined]

    # Its settings are validated like the core's: one line naming the field.
    config.write_text("plugins: [extra_areas.throwaway]\nthrowaway: {greting: x}\n")
    with pytest.raises(ConfigError, match=r"^throwaway\.greting: unknown setting"):
        load_settings(config)
    # A key no enabled area owns is refused.
    config.write_text("plugins: [roulette]\nthrowaway: {greeting: x}\n")
    with pytest.raises(ConfigError, match=r"^throwaway: unknown setting"):
        load_settings(config)
    config.write_text("plugins: [roulette, nowhere]\n")
    with pytest.raises(ConfigError, match=r"^plugins: unknown feature area 'nowhere'"):
        load_settings(config)

    # Its migrations run after the core's, on both engines, and go back down.
    migrate.upgrade(database_url, ENABLED)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            assert "throwaway_notes" in inspect(connection).get_table_names()
        assert migrate.current_revision(database_url) == migrate.head_revision(ENABLED)
        migrate.downgrade(database_url, "throwaway@base", ENABLED)
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
        assert "throwaway_notes" not in tables and "ooo_status" in tables
    finally:
        engine.dispose()


Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def mattermost() -> AsyncIterator[tuple[MattermostStandIn, str]]:
    mm = MattermostStandIn()
    mm.add_user("alice")
    mm.add_team("acme", members=["roulette-bot", "alice"])
    mm.add_channel("acme", "town", members=["roulette-bot", "alice"])
    async with serve(mm) as url:
        yield mm, url


async def test_a_new_area_loads_registers_its_command_and_runs_its_job_once(
    throwaway: Path,
    database_url: URL,
    mattermost: tuple[MattermostStandIn, str],
    aiohttp_client: object,
) -> None:
    mm, url = mattermost
    migrate.upgrade(database_url, ENABLED)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    settings = settings_for(
        database_url,
        plugins=ENABLED,
        throwaway={"greeting": "bonjour"},
        mattermost_url=url,
        mattermost_token=mm.bot_token,
        mattermost_team="acme",
        public_url=f"http://127.0.0.1:{port}",
    )
    app = create_app(settings)
    client: Client = await aiohttp_client(app, server_kwargs={"port": port})  # type: ignore[operator]
    registry = client.app[REGISTRY]
    assert "throwaway" in registry.commands and "tidy" in registry.jobs

    deadline = asyncio.get_running_loop().time() + 10
    while "throwaway" not in {c["trigger"] for c in mm.commands_in("acme")}:
        assert asyncio.get_running_loop().time() < deadline, "command not registered"
        await asyncio.sleep(0.02)
    status, answer = await mm.run_slash_command("alice", "town", "/throwaway", team="acme")
    assert status == 200 and answer["text"] == "bonjour"

    context = client.app[CONTEXT]
    handler = registry.jobs["tidy"]
    outcomes = await asyncio.gather(
        run_guarded(context, handler, "2026-11-30T10:05"),
        run_guarded(context, handler, "2026-11-30T10:05"),
    )
    assert sorted(outcomes) == ["ok", "skipped"]
    async with context.sessions() as session:
        notes = (await session.execute(text("SELECT text FROM throwaway_notes"))).scalars().all()
    assert notes == ["tidied 2026-11-30T10:05"]


def test_a_new_area_contributes_its_command_line(throwaway: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("plugins: [roulette, ooo, extra_areas.throwaway]\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in {"ROULETTE_CONFIG", "PLUGINS"}}
    env["PYTHONPATH"] = os.pathsep.join([str(throwaway), str(ROOT)])
    run = [sys.executable, "-m", "bot.cli", "--config", str(config)]
    listed = subprocess.run([*run, "--help"], capture_output=True, text=True, env=env, check=False)
    assert listed.returncode == 0, listed.stderr
    for name in ("pick", "simulate", "repair", "throwaway-hello"):
        assert name in listed.stdout
    said = subprocess.run(
        [*run, "throwaway-hello"], capture_output=True, text=True, env=env, check=False
    )
    assert (said.returncode, said.stdout) == (0, "hello\n"), said.stderr


def test_an_installed_area_is_found_by_its_entry_point(
    throwaway: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package declaring ``throwaway = "extra_areas.throwaway"`` in the group
    ``reviewer_roulette.plugins`` is enabled by default and found by its short name."""
    from bot import plugins

    monkeypatch.setattr(plugins, "_entry_points", lambda: {"throwaway": "extra_areas.throwaway"})
    find_area.cache_clear()
    try:
        assert plugins.default_areas() == (*builtin_areas(), "throwaway")
        area = find_area("throwaway")
        assert (area.package, area.plugin.name) == ("extra_areas.throwaway", "throwaway")
        assert area.job_crons() == {"tidy": "*/5 * * * *"}
        assert area.migrations is not None and area.migrations.name == "migrations"
    finally:
        find_area.cache_clear()
