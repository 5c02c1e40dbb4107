"""Migrations: up, down, up again on both engines; the result matches the models."""

from __future__ import annotations

import itertools

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from bot import migrate
from bot.models import Base

TABLES = {
    "users",
    "teams",
    "ooo_status",
    "mr_reviews",
    "reviewer_assignments",
    "configuration",
    "webhook_inbox",
    "job_runs",
    "badges",
    "user_badges",
    "badge_progress",
    "review_metrics",
    "review_metrics_monthly",
    "review_requests",
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


def test_a_database_from_before_the_areas_had_revisions_upgrades(database_url: URL) -> None:
    """Revision 0001 used to create ``ooo_status`` and three unused tables: the ooo area
    adopts its table with its rows, and revision 0003 drops the unused ones."""
    migrate.upgrade(database_url, revision="0001")
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            from plugins.ooo.models import OooStatus

            OooStatus.__table__.create(connection)
            for table in ("review_metrics", "badges", "user_badges"):
                connection.execute(text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)"))
            connection.execute(
                text(
                    "INSERT INTO users (gitlab_username, role, is_active, created_at, updated_at)"
                    " VALUES ('alice', 'reviewer', true, '2026-11-01', '2026-11-01')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO ooo_status (user_id, start_date, end_date, created_at)"
                    " SELECT id, '2026-12-01', '2026-12-05', '2026-11-01' FROM users"
                )
            )
    finally:
        engine.dispose()

    migrate.upgrade(database_url)
    assert _tables(database_url) == TABLES
    assert migrate.current_revision(database_url) == migrate.head_revision()
    assert _differences(database_url) == []
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            kept = connection.execute(text("SELECT start_date FROM ooo_status")).scalars().all()
    finally:
        engine.dispose()
    assert [str(day) for day in kept] == ["2026-12-01"]


_UNIQUE = itertools.count(1)


def _assignment_status(url: URL, status: str, role: str = "team") -> None:
    """A new user, review and assignment with ``status`` (raises if the database refuses)."""
    from bot.models import MrReview, ReviewerAssignment, User

    unique = next(_UNIQUE)
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            user = connection.execute(
                User.__table__.insert().values(gitlab_username=f"u{unique}")
            ).inserted_primary_key[0]
            review = connection.execute(
                MrReview.__table__.insert().values(
                    project_id=1,
                    project_path="a/b",
                    mr_iid=unique,
                    web_url="u",
                    author_username="x",
                )
            ).inserted_primary_key[0]
            connection.execute(
                ReviewerAssignment.__table__.insert().values(
                    review_id=review, user_id=user, role=role, status=status
                )
            )
    finally:
        engine.dispose()


def _statuses(url: URL) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            query = text("SELECT status FROM reviewer_assignments ORDER BY id")
            return list(connection.execute(query).scalars().all())
    finally:
        engine.dispose()


def test_assignment_status_passed_up_and_down(database_url: URL) -> None:
    """Revision 0004 allows ``passed`` (a reviewer who handed the review over); going back
    to 0003 turns it into ``removed`` and refuses it again."""
    migrate.upgrade(database_url, revision="0003", areas=())
    with pytest.raises(IntegrityError):
        _assignment_status(database_url, "passed")
    migrate.upgrade(database_url, revision="0004", areas=())
    _assignment_status(database_url, "passed")
    with pytest.raises(IntegrityError):
        _assignment_status(database_url, "skipped")
    with pytest.raises(IntegrityError):  # the table's other checks are kept (SQLite copies it)
        _assignment_status(database_url, "passed", role="boss")
    assert _statuses(database_url) == ["passed"]

    migrate.downgrade(database_url, "0003", areas=())
    assert _statuses(database_url) == ["removed"]
    with pytest.raises(IntegrityError):
        _assignment_status(database_url, "passed")
    migrate.upgrade(database_url, revision="0004", areas=())
    _assignment_status(database_url, "passed")
    assert _statuses(database_url) == ["removed", "passed"]


def test_an_area_turned_off_keeps_its_tables_and_the_rest_still_migrates(
    database_url: URL,
) -> None:
    """Areas are enabled by configuration alone: turning one off after it was migrated
    leaves its tables (and its history) as they are; turning it on again goes on."""
    migrate.upgrade(database_url)
    everything = migrate.current_revision(database_url)
    migrate.upgrade(database_url, ["roulette"])
    assert _tables(database_url) == TABLES
    assert migrate.current_revision(database_url) == everything
    migrate.upgrade(database_url)
    assert migrate.current_revision(database_url) == migrate.head_revision()


def test_a_fresh_database_gets_only_the_enabled_areas_tables(database_url: URL) -> None:
    migrate.upgrade(database_url, ["roulette"])
    assert "ooo_status" not in _tables(database_url)
    assert migrate.current_revision(database_url) == migrate.head_revision(["roulette"])
