"""Alembic environment: migrations run on a synchronous connection given by bot.migrate,
which also sets the version locations (the core's and each enabled area's) and imports
the areas' models, so ``Base.metadata`` holds every table. Run them with
``roulette-bot migrate``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from bot.models import Base

config = context.config
if "areas" not in config.attributes:  # run by the alembic command itself: every area
    from bot.plugins import default_areas, find_areas

    for _area in find_areas(default_areas()):
        _area.module("models")
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _standalone_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return url
    from bot.settings import load_settings

    return load_settings().sync_database_url.render_as_string(hide_password=False)


connection = config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url=_standalone_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    _configure(connection)
else:
    engine = create_engine(_standalone_url())
    with engine.connect() as standalone:
        _configure(standalone)
        standalone.commit()
    engine.dispose()
