"""Alembic, driven from code: the migrations live in the top-level db/ folder, whatever the current directory."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from arena.storage.store import DB_DIR
from arena.storage.tables import Base


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic configuration pointing at db/; ``connection`` is the one db/env.py migrates."""
    cfg = Config()
    # ConfigParser interpolates "%": escape it in the path.
    cfg.set_main_option("script_location", str(DB_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest migration's revision id."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:  # pragma: no cover - db/versions always holds the initial migration
        raise RuntimeError(f"no migrations found in {DB_DIR / 'versions'}")
    return revision


def current(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def create_schema(engine: sa.Engine) -> None:
    """create_all() and stamp head on a fresh database; upgrade one that migrations already manage."""
    with engine.begin() as conn:
        if MigrationContext.configure(conn).get_current_revision() is not None:
            command.upgrade(alembic_config(conn), "head")
            return
        Base.metadata.create_all(conn)
        command.stamp(alembic_config(conn), "head")
