"""Migrated databases for the tests, made by copying one migrated database per engine.

The migrations take 0.2 s on SQLite and 0.3 s on PostgreSQL; some 800 tests start from a
migrated database. Each test process (pytest-xdist worker) runs the migrations once per
engine, into a template, and copies it for every test that asks: SQLite through its
online backup API (the copy is the migrated file page for page, WAL mode included), and
PostgreSQL by replaying ``pg_dump``'s dump of the template schema into the test's own
schema (tables, constraints, indexes, sequences and their values, and the rows the
migrations wrote, ``alembic_version`` among them). Without ``pg_dump`` on the PATH, or if
it fails, each test runs the migrations itself.

The migrations themselves are tested on fresh databases (``database_url``), never on a
copy. Sources: SQLite, "Online Backup API", https://www.sqlite.org/backup.html;
PostgreSQL, "pg_dump", https://www.postgresql.org/docs/current/app-pgdump.html
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import URL

from bot import migrate

# pg_dump 15.14 and later open and close the dump with psql meta-commands (``\restrict``)
# that only psql understands.
_META_COMMAND = "\\"
# The schema as the migrations left it, rows included, as plain SQL statements.
_DUMP_OPTIONS = ("--no-owner", "--no-privileges", "--inserts")


class MigratedTemplates:
    """One migrated template per engine for this test process, copied per test.

    ``folder`` holds the SQLite template; ``admin(statement)`` runs SQL on the test
    PostgreSQL server as its administrator; ``schema_url(name)`` is the URL of a schema
    there. :meth:`close` drops the PostgreSQL template."""

    def __init__(
        self,
        folder: Path,
        admin: Callable[[str], None],
        schema_url: Callable[[str], URL],
        libpq_url: str,
    ) -> None:
        self._folder = folder
        self._admin = admin
        self._schema_url = schema_url
        self._libpq_url = libpq_url
        self._sqlite: Path | None = None
        self._schema: str | None = None
        self._dump: str | None = None  # None once pg_dump is found missing or failing
        self._dump_tried = False

    def migrate(self, url: URL) -> None:
        """Make the fresh, empty database at ``url`` (a SQLite file not created yet, or a
        schema just created) a migrated one."""
        if url.get_backend_name() == "sqlite":
            self._copy_sqlite(Path(str(url.database)))
            return
        schema = _schema_of(url)
        dump = self._postgres_dump()
        if dump is None or schema is None:
            migrate.upgrade(url)
            return
        assert self._schema is not None
        self._admin(dump.replace(self._schema, schema))

    def close(self) -> None:
        if self._schema is not None:
            self._admin(f'DROP SCHEMA IF EXISTS "{self._schema}" CASCADE')

    def _copy_sqlite(self, target: Path) -> None:
        if self._sqlite is None:
            template = self._folder / "migrated.db"
            migrate.upgrade(URL.create("sqlite", database=str(template)))
            self._sqlite = template
        with (
            closing(sqlite3.connect(self._sqlite)) as source,
            closing(sqlite3.connect(target)) as copy,
        ):
            source.backup(copy)

    def _postgres_dump(self) -> str | None:
        """The template schema's dump (its ``CREATE SCHEMA`` left out), made once; None
        when ``pg_dump`` is missing or fails."""
        if self._dump_tried:
            return self._dump
        self._dump_tried = True
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            return None
        schema = f"rr_template_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE SCHEMA "{schema}"')
        self._schema = schema
        migrate.upgrade(self._schema_url(schema))
        done = subprocess.run(
            [pg_dump, f"--dbname={self._libpq_url}", f"--schema={schema}", *_DUMP_OPTIONS],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return None
        lines = [
            line
            for line in done.stdout.splitlines()
            if not line.startswith(_META_COMMAND) and line != f"CREATE SCHEMA {schema};"
        ]
        self._dump = "\n".join(lines) + "\n"
        return self._dump


def _schema_of(url: URL) -> str | None:
    """The schema a test URL names in its ``options`` (``-csearch_path=NAME``)."""
    options = url.query.get("options")
    prefix = "-csearch_path="
    if isinstance(options, str) and options.startswith(prefix):
        return options.removeprefix(prefix)
    return None
