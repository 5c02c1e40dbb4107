"""The migrated databases the tests start from (copies of a template, ``tests/migrated.py``)
are what the migrations make: same tables, columns, constraints, indexes, sequences and
rows, on each engine."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, Connection, create_engine

from bot import migrate
from tests.conftest import _postgres_admin, _postgres_schema_url, postgres_schema
from tests.migrated import MigratedTemplates


def _sync(url: URL) -> URL:
    return (
        url.set(drivername="postgresql+psycopg") if url.drivername.startswith("postgres") else url
    )


def _shape(url: URL) -> dict[str, Any]:
    """Everything a test could notice of a database's schema, and its rows."""
    engine = create_engine(_sync(url))
    try:
        with engine.connect() as connection:
            return _described(connection)
    finally:
        engine.dispose()


def _described(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    tables: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        rows = connection.execute(text(f'SELECT * FROM "{table}"')).all()
        tables[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in inspector.get_columns(table)
            ],
            "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in inspector.get_foreign_keys(table)
            ),
            "unique": sorted(
                (u["name"] or "", tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "checks": sorted(c["name"] or "" for c in inspector.get_check_constraints(table)),
            "indexes": sorted(
                (i["name"] or "", tuple(map(str, i["column_names"])), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
            "rows": sorted(map(repr, rows)),
        }
    shape: dict[str, Any] = {"tables": tables}
    if connection.dialect.name == "sqlite":
        shape["journal_mode"] = connection.scalar(text("PRAGMA journal_mode"))
    else:
        # A sequence's next value: the migrations' rows took some.
        shape["sequences"] = sorted(
            (name, connection.scalar(text(f'SELECT last_value FROM "{name}"')))
            for name in inspector.get_sequence_names()
        )
    return shape


def test_a_copy_is_what_the_migrations_make(
    database_url: URL, migrated_templates: MigratedTemplates, tmp_path: Any
) -> None:
    migrated_templates.migrate(database_url)
    copy = _shape(database_url)
    if database_url.get_backend_name() == "sqlite":
        fresh_url = URL.create("sqlite", database=str(tmp_path / "fresh.db"))
        migrate.upgrade(fresh_url)
        fresh, revision = _shape(fresh_url), migrate.current_revision(fresh_url)
    else:
        with postgres_schema() as fresh_url:
            migrate.upgrade(fresh_url)
            fresh, revision = _shape(fresh_url), migrate.current_revision(fresh_url)
    assert copy["tables"], "the copy has no tables"
    assert copy == fresh
    assert revision is not None
    assert migrate.current_revision(database_url) == revision


@pytest.mark.postgres
def test_without_pg_dump_each_test_migrates(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_dump there
    libpq_url = URL.create("postgresql").render_as_string()  # never used: no pg_dump
    templates = MigratedTemplates(tmp_path, _postgres_admin, _postgres_schema_url, libpq_url)
    with postgres_schema() as url:
        templates.migrate(url)
        assert migrate.current_revision(url) is not None
    templates.close()
