"""Alembic's entry point for the arena's migrations (run through arena.storage.migrations or the alembic CLI)."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from alembic import context

from arena.storage.store import default_url, make_engine
from arena.storage.tables import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: Any) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)


def _run_online(connection: sa.Connection) -> None:
    # SQLite cannot ALTER most things: later migrations use batch mode (copy and move) there.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL") or default_url()
    if context.is_offline_mode():
        _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_online(connection)
        return
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _run_online(conn)
    finally:
        engine.dispose()


main()
