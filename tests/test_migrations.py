"""The migrations in db/ build exactly the schema the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from arena.commands import db as db_command
from arena.storage import Store
from arena.storage.migrations import alembic_config, head
from arena.storage.tables import Base

ROOT = Path(__file__).resolve().parents[1]
TABLES = {"models", "battles", "messages", "votes", "named_prompts", "sync_marks"}
TABLES |= {"campaigns", "campaign_prompts", "campaign_answers", "campaign_votes"}  # evaluation campaigns


def schema_diff(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def snapshot(store: Store) -> dict[str, Any]:
    """Everything the database says about its tables, in a comparable form."""
    insp = sa.inspect(store.engine)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table),
            "fks": sorted(
                (f["name"], f["constrained_columns"], f["referred_table"], f["referred_columns"], f.get("options"))
                for f in insp.get_foreign_keys(table)
            ),
            "indexes": sorted((i["name"], i["column_names"], i["unique"]) for i in insp.get_indexes(table)),
            "uniques": sorted((u["name"], u["column_names"]) for u in insp.get_unique_constraints(table)),
            "checks": sorted((c["name"], c["sqltext"]) for c in insp.get_check_constraints(table)),
        }
    return out


def wipe(store: Store) -> None:
    """Drop everything, leaving an empty database at the same URL."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        else:
            conn.execute(sa.text("PRAGMA foreign_keys=OFF"))
            for table in sa.inspect(conn).get_table_names():
                conn.execute(sa.text(f'DROP TABLE "{table}"'))
    store.dispose()


def test_upgrade_to_head_matches_the_models(db_url: str) -> None:
    with Store(db_url) as store:
        assert store.current_revision() is None
        store.upgrade()
        assert store.current_revision() == head()
        assert set(sa.inspect(store.engine).get_table_names()) >= TABLES
        assert schema_diff(store) == []
        store.upgrade()  # already at head: nothing to do
        assert store.current_revision() == head()


def test_create_schema_gives_the_same_tables_as_migrations(db_url: str) -> None:
    with Store(db_url) as store:
        store.upgrade()
        migrated = snapshot(store)
        wipe(store)
        assert snapshot(store) == {}
        store.create_schema()
        created = snapshot(store)
        assert store.current_revision() == head()  # stamped, so later upgrades apply cleanly
        assert schema_diff(store) == []
    assert set(created) == TABLES | {"alembic_version"}
    assert created == migrated
    # The constraints that guard the data made it into both.
    assert ("uq_votes_battle_id", ["battle_id"]) in created["votes"]["uniques"]
    assert [name for name, _ in created["votes"]["checks"]] == ["ck_votes_winner"]


def test_downgrade_removes_everything(db_url: str) -> None:
    with Store(db_url) as store:
        store.upgrade()
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert set(sa.inspect(store.engine).get_table_names()) <= {"alembic_version"}
        assert store.current_revision() is None


def _db_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    db_command.add_arguments(parser)
    return parser.parse_args(argv)


def test_db_command_upgrades_from_any_directory(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process through the command module: __main__ imports every command, and the prompt
    # command may not exist yet (see the subprocess test below).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert db_command.run(_db_args("current", "--db", db_url)) == 0
    assert "no schema yet" in capsys.readouterr().out
    assert db_command.run(_db_args("upgrade", "--db", db_url)) == 0
    assert f"to revision {head()}" in capsys.readouterr().out
    assert db_command.run(_db_args("upgrade", "--db", db_url)) == 0
    assert f"already at revision {head()}" in capsys.readouterr().out
    assert db_command.run(_db_args("current", "--db", db_url)) == 0
    assert head() in capsys.readouterr().out
    with Store(db_url) as store:
        assert schema_diff(store) == []


def test_db_command_reads_database_url_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nested" / "from-env.sqlite3"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    assert db_command.run(_db_args("upgrade")) == 0
    assert path.exists()
    assert str(path) in capsys.readouterr().out


def test_python_m_arena_db_upgrade(db_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "arena", "db", "upgrade", "--db", db_url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"revision {head()}" in done.stdout
    with Store(db_url) as store:
        assert store.current_revision() == head()
        assert schema_diff(store) == []
