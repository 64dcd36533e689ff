"""A confirmed vote is never lost: SIGKILL after confirmations, a locked or cut-off database, a short soak."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest
import sqlalchemy as sa

from arena.backends.demo import DemoServer
from arena.errors import StorageError
from arena.exchange import export_battles
from arena.storage import Store
from tests.support.services import battle, close, make_service, play, tgi_spec

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Name three rivers, please."
UNICODE = "Zażółć gęślą jaźń — 東京の天気 / 請告訴我們台灣的歷史 🙂👍🏽 שלום مرحبا\u200f <b>&amp;</b>"


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Another connection holds SQLite's exclusive lock on ``path`` until the block ends."""
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        locker.execute("ROLLBACK")
        locker.close()


@pytest.fixture(scope="module")
def server() -> Iterator[DemoServer]:
    with DemoServer("demo/durable-7b", token_rate=500, first_token_delay=0.01) as s:
        yield s


def test_locked_sqlite_fails_clearly_then_recovers(server: DemoServer, tmp_path: Path) -> None:
    path = tmp_path / "arena.sqlite3"

    async def main() -> None:
        with Store(f"sqlite:///{path}", busy_timeout=0.3) as store:
            service = make_service([tgi_spec("m1", server.url), tgi_spec("m2", server.url)], store)
            try:
                session = service.new_session("10.3.0.1")
                await play(service, session, PROMPT)
                with exclusive_lock(path):
                    with pytest.raises(StorageError) as info:
                        await service.vote(session, "model_a")
                    assert "could not be saved" in str(info.value.message)
                    assert session.status == "ready"  # the visitor may try again
                    # A new battle cannot start either, and leaves nothing behind.
                    other = service.new_session("10.3.0.1")
                    with pytest.raises(StorageError):
                        await play(service, other, PROMPT)
                    assert other.battle_id is None and other.status == "new"
                    assert other.turn == 0 and other.history == ([], [])  # as if never sent
                assert store.vote_total(exclude_flags=()) == 0 and store.battle_count() == 1  # nothing half-written
                await service.vote(session, "model_a")  # the same click works once the lock is gone
                await battle(service, "10.3.0.1", PROMPT)
                assert store.vote_total(exclude_flags=()) == 2
            finally:
                await close(service)

    asyncio.run(main())


def test_the_models_are_asked_while_the_battle_is_being_stored(server: DemoServer, tmp_path: Path) -> None:
    """The battle's row is written while both models are asked, not before: it is not in the wait for a token."""
    path = tmp_path / "arena.sqlite3"

    async def main() -> None:
        with Store(f"sqlite:///{path}", busy_timeout=10.0) as store:
            service = make_service([tgi_spec("m1", server.url), tgi_spec("m2", server.url)], store)
            try:
                await battle(service, "10.5.0.1", PROMPT)
                asked = len(server.requests)
                with exclusive_lock(path):  # the battle's INSERT waits for this lock
                    session = service.new_session("10.5.0.1")
                    playing = asyncio.create_task(play(service, session, PROMPT))
                    for _ in range(200):
                        if len(server.requests) >= asked + 2:
                            break
                        await asyncio.sleep(0.025)
                    assert len(server.requests) == asked + 2  # both models asked ...
                    assert session.battle_id is None and not playing.done()  # ... while the row waits
                views = await playing
                assert session.battle_id is not None and views[-1].can_vote
                assert all(view.answers for view in views)
                assert store.battle_count() == 2
                await service.vote(session, "model_b")
                assert store.vote_total(exclude_flags=()) == 2
            finally:
                await close(service)

    asyncio.run(main())


def test_a_battle_abandoned_before_its_first_token_is_still_stored(tmp_path: Path) -> None:
    """New round while the battle's row waits for the database: the write still finishes, and is journalled."""
    path = tmp_path / "arena.sqlite3"
    lines: list[dict[str, object]] = []

    async def main() -> None:
        with (
            DemoServer("demo/slow-7b", token_rate=500, first_token_delay=5.0) as slow,
            Store(f"sqlite:///{path}", busy_timeout=10.0) as store,
        ):
            service = make_service([tgi_spec("m1", slow.url), tgi_spec("m2", slow.url)], store)
            service.journal = lines.append
            try:
                session = service.new_session("10.6.0.1")
                with exclusive_lock(path):
                    playing = asyncio.create_task(play(service, session, PROMPT))
                    for _ in range(200):
                        if len(slow.requests) >= 2:
                            break
                        await asyncio.sleep(0.025)
                    service.abandon(session)  # the visitor pressed "New round" before any token
                    assert await playing == [] and session.status == "failed" and session.battle_id is None
                    assert len(service._pending) == 1  # the write still waits for the lock
                for _ in range(200):
                    if not service._pending:
                        break
                    await asyncio.sleep(0.025)
                assert not service._pending and session.battle_id is not None
                assert store.battle_count() == 1
                assert [line["event"] for line in lines] == ["battle"] and lines[0]["battle_id"] == session.battle_id
            finally:
                await close(service)

    asyncio.run(main())


def test_postgresql_cut_off_and_locked_then_recovers(server: DemoServer, pg_database: Callable[[], str]) -> None:
    """Connections killed under the app (pg_terminate_backend) and a table lock held elsewhere."""
    url = pg_database()

    async def main() -> None:
        with Store(url, busy_timeout=0.5) as store:
            service = make_service([tgi_spec("m1", server.url), tgi_spec("m2", server.url)], store)
            admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
            try:
                await battle(service, "10.4.0.1", PROMPT)
                # Kill every connection of the app's pool: the next request must reconnect by itself.
                with admin.connect() as conn:
                    killed = conn.execute(
                        sa.text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    ).scalar_one()
                assert killed >= 1
                await battle(service, "10.4.0.1", PROMPT)

                session = service.new_session("10.4.0.1")
                await play(service, session, PROMPT)
                holder = admin.connect()
                holder.execute(sa.text("BEGIN"))
                holder.execute(sa.text("LOCK TABLE votes IN ACCESS EXCLUSIVE MODE"))
                try:
                    with pytest.raises(StorageError):
                        await service.vote(session, "tie")
                    assert session.status == "ready"
                finally:
                    holder.execute(sa.text("ROLLBACK"))
                    holder.close()
                assert store.vote_total(exclude_flags=()) == 2
                await service.vote(session, "tie")
                assert store.vote_total(exclude_flags=()) == 3
            finally:
                admin.dispose()
                await close(service)

    asyncio.run(main())


def test_unicode_round_trips_through_the_database_and_exports(server: DemoServer, db_url: str) -> None:
    async def main() -> None:
        with Store(db_url) as store:
            service = make_service([tgi_spec("m1", server.url), tgi_spec("m2", server.url)], store)
            try:
                session, views, _ = await battle(service, "10.5.0.1", UNICODE)
                answer = views[-1].answers[0].text
                assert session.battle_id is not None
                stored = store.messages(session.battle_id)
                assert [m.content for m in stored if m.role == "user"] == [UNICODE, UNICODE]
                assert next(m.content for m in stored if m.role == "assistant") == answer
                formats: tuple[Literal["jsonl", "csv"], ...] = ("jsonl", "csv")
                for fmt in formats:
                    out = io.StringIO()
                    export_battles(store, out, fmt=fmt, with_conversations=True)
                    if fmt == "jsonl":
                        row = json.loads(out.getvalue().splitlines()[0])
                        conversation = row["conversation_a"]
                    else:
                        row = next(csv.DictReader(io.StringIO(out.getvalue())))
                        conversation = json.loads(row["conversation_a"])
                    assert conversation[0]["content"] == UNICODE, fmt
                    assert conversation[1]["content"] == answer, fmt
            finally:
                await close(service)

    asyncio.run(main())


def test_soak_then_sigkill_loses_no_confirmed_vote(tmp_path: Path) -> None:
    """benchmarks/soak.py in small: 8 visitors for 12 s against demo servers failing 5% of the time, then
    SIGKILL the moment the last vote is confirmed: every confirmed vote is in the database, exactly once."""
    from benchmarks.soak import run_soak

    report = run_soak(visitors=8, seconds=12, fault_rate=0.05, workdir=tmp_path, quiet=True, kill=True)
    assert report.unhandled == [], report.unhandled[:5]
    assert report.confirmed > 10
    assert report.stored_votes == report.confirmed  # none lost to the kill, none stored twice
    assert report.duplicates == 0
