"""Schema migrations (Alembic), run programmatically by ``migrate`` and ``serve``.

The core's revisions are one chain in ``migrations/versions/``; each enabled feature area
adds its own folder (``plugins/<area>/migrations/``, an Alembic version location) holding a
branch labelled with the area's name, whose first revision depends on the core revision it
was written against. ``upgrade`` applies every branch up to its head ("heads"): the core's
first, then the areas' in dependency order. The areas' ``models`` modules are imported so
that the metadata (and autogenerate) sees their tables.

Migrations use a synchronous connection on the same database (sqlite3 or psycopg), so
they can run in a worker thread while the event loop is up. On PostgreSQL an advisory
lock serialises replicas that start together. A SQLite database is put in WAL mode here,
before the app opens its pool, so that its connections never race to switch it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import URL

import migrations
from bot.db import sqlite_migration_pragmas
from bot.plugins import Area, RegistryError, default_areas, find_areas

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
_LOCK_ID = 0x726F756C  # "roul"


class MigrationError(Exception):
    """The schema could not be brought up to date; the message is one line."""


def areas_of(names: Iterable[str] | None) -> list[Area]:
    """The enabled areas (every built-in and installed one when ``names`` is None);
    an unknown one raises ``MigrationError`` (one line)."""
    try:
        return find_areas(default_areas() if names is None else names)
    except RegistryError as e:
        raise MigrationError(str(e)) from None


def alembic_config(
    connection: Connection | None = None, areas: Iterable[str] | None = None
) -> Config:
    """The Alembic configuration: the core's script directory plus each area's revisions.

    ``areas`` are names of the enabled feature areas (None: every built-in and installed
    one); their ``models`` modules are imported so that ``Base.metadata`` holds their
    tables. The revisions of every known area are located, enabled or not, so that a
    database once migrated with an area that is now turned off still reads its history
    (``upgrade`` only moves the enabled ones; the others' tables stay as they are).
    """
    found = areas_of(areas)
    known = {area.package: area for area in areas_of(None)} | {a.package: a for a in found}
    locations = [str(MIGRATIONS_DIR / "versions")]
    for area in known.values():
        if area.migrations is not None:
            locations.append(str(area.migrations))
    for area in found:
        area.module("models")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(locations))
    config.attributes["areas"] = list(default_areas() if areas is None else areas)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _connection(url: URL) -> Iterator[Connection]:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", sqlite_migration_pragmas)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _LOCK_ID})
                connection.commit()
            try:
                yield connection
            finally:
                if connection.dialect.name == "postgresql":
                    connection.rollback()
                    connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _LOCK_ID})
                    connection.commit()
    finally:
        engine.dispose()


def _enabled_heads(config: Config) -> list[str]:
    """The heads of the core's chain and of the enabled areas' branches."""
    script = ScriptDirectory.from_config(config)
    enabled = {MIGRATIONS_DIR / "versions"} | {
        area.migrations for area in areas_of(config.attributes["areas"]) if area.migrations
    }
    heads = []
    for head in script.get_heads():
        path = script.get_revision(head).path
        if Path(path).resolve().parent in enabled:
            heads.append(head)
    return sorted(heads)


def upgrade(url: URL, areas: Iterable[str] | None = None, revision: str = "heads") -> None:
    """Apply every pending migration of the core and of the enabled ``areas`` (up to
    ``revision``; ``heads``: the newest of the core and of each enabled area)."""
    config = alembic_config(areas=areas)
    targets = _enabled_heads(config) if revision == "heads" else [revision]
    with _connection(url) as connection:
        config.attributes["connection"] = connection
        for target in targets:
            command.upgrade(config, target)
        connection.commit()


def downgrade(url: URL, revision: str = "base", areas: Iterable[str] | None = None) -> None:
    """Undo migrations down to ``revision`` (``base``: an empty database)."""
    config = alembic_config(areas=areas)
    with _connection(url) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
        connection.commit()


def current_revision(url: URL) -> str | None:
    """The database's revisions (one per branch, sorted and comma-separated), or None."""
    with _connection(url) as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return ",".join(sorted(heads)) or None


def head_revision(areas: Iterable[str] | None = None) -> str | None:
    """What ``current_revision`` says once every migration of the core and ``areas`` is
    applied: the newest revision of each branch, less those another one depends on
    (Alembic records only the latter)."""
    config = alembic_config(areas=areas)
    script = ScriptDirectory.from_config(config)
    heads = _enabled_heads(config)
    below: set[str] = set()
    for head in heads:
        below |= {r.revision for r in script.iterate_revisions(head, "base")} - {head}
    return ",".join(sorted(set(heads) - below)) or None
