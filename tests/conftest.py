"""Shared fixtures: database URLs for SQLite files and the real PostgreSQL server."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from arena.backends.demo import DemoServer

PG_URL = os.environ.get("ARENA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_admin_conninfo() -> str:
    # psycopg wants a libpq URL without the SQLAlchemy driver suffix.
    return PG_URL.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium per test module; fails (never skips) when Debian's chromium is missing."""
    from tests.support.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: install Debian's package with `apt-get install chromium` (.ci/run does).")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shared() -> Iterator[DemoServer]:
    """One fast demo server per test module (both protocols); use ``server`` for a reset one."""
    with DemoServer("demo/test-7b", token_rate=400, first_token_delay=0.01) as server:
        yield server


@pytest.fixture
def server(shared: DemoServer) -> DemoServer:
    """The module's demo server, with no fault, its own model id, and empty request records."""
    shared.fault = None
    shared.model_id = "demo/test-7b"
    shared.sampling = False
    shared.requests.clear()
    shared.headers.clear()
    shared.clients.clear()
    return shared


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test run; dropped afterwards.

    Fails (never skips) when the server is unreachable: PostgreSQL is part of the test contract.
    """
    import psycopg

    name = f"arena_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with psycopg.connect(_pg_admin_conninfo(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as e:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_URL} ({e}). Start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or set ARENA_TEST_PG_URL.",
            pytrace=False,
        )
    base, _, _ = PG_URL.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(_pg_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs twice: on a fresh SQLite file and on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'arena.sqlite3'}"
        return
    server_url: str = request.getfixturevalue("pg_server_url")
    import sqlalchemy as sa

    # Each test gets an empty database: drop everything the previous test created.
    engine = sa.create_engine(server_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    yield server_url


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases, each dropped at the end of the run."""
    import psycopg

    created: list[str] = []

    def make() -> str:
        name = f"arena_test_{os.getpid()}_{secrets.token_hex(3)}"
        try:
            with psycopg.connect(_pg_admin_conninfo(), autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as e:
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL} ({e}).", pytrace=False)
        created.append(name)
        base, _, _ = PG_URL.rpartition("/")
        return f"{base}/{name}"

    yield make
    with psycopg.connect(_pg_admin_conninfo(), autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
