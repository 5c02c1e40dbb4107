"""Migrations: up, down, up again on both engines; the result matches the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL

from bot import migrate
from bot.models import Base

TABLES = {
    "users",
    "teams",
    "ooo_status",
    "mr_reviews",
    "reviewer_assignments",
    "review_metrics",
    "badges",
    "user_badges",
    "configuration",
    "webhook_inbox",
    "job_runs",
}


def _tables(url: URL) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _differences(url: URL) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(database_url: URL) -> None:
    migrate.upgrade(database_url)
    assert _tables(database_url) == TABLES
    assert migrate.current_revision(database_url) == migrate.head_revision()

    migrate.downgrade(database_url, "base")
    assert _tables(database_url) == set()
    assert migrate.current_revision(database_url) is None

    migrate.upgrade(database_url)
    assert _tables(database_url) == TABLES


def test_migrated_schema_matches_models(database_url: URL) -> None:
    migrate.upgrade(database_url)
    assert _differences(database_url) == []


def test_upgrade_is_idempotent(database_url: URL) -> None:
    migrate.upgrade(database_url)
    migrate.upgrade(database_url)
    assert migrate.current_revision(database_url) == migrate.head_revision()


def test_every_model_table_has_a_migration() -> None:
    assert set(Base.metadata.tables) == TABLES
