"""Sync: a restart on a wiped disk restores every vote; snapshots are consistent under writes."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from gradio_client import Client

from arena.domain import VoteRecord
from arena.storage import Store
from arena.sync import FolderTarget, Sync, SyncError
from tests.support.app_process import AppProcess
from tests.test_journal import T0, play, vote_event


def everything(store: Store) -> list[object]:
    """Every battle with its vote and messages, comparable across databases."""
    return list(store.iter_battles(voted_only=False, with_messages=True))


def test_restore_brings_back_snapshot_and_later_journal_lines(db_url: str, tmp_path: Path) -> None:
    target = FolderTarget(tmp_path / "target", every=60)
    with Store(db_url) as store:
        store.upgrade()
        sync = Sync(store, tmp_path / "local", target)
        journal = sync.start()  # the first push takes an (empty) snapshot only when pushed
        for i in range(6):
            play(store, journal, i, vote=i != 5)
        journal.flush()
        target.push_now()  # snapshot (SQLite) + journal
        play(store, journal, 6)  # after the snapshot: only in the journal
        late = VoteRecord("b00005", "model_b", T0)  # a battle in the snapshot, voted after it
        store.record_vote(late)
        journal(vote_event(late))
        journal.flush()
        sync.snapshot_every = 60  # the next push carries the journal, not a new snapshot
        target.push_now()
        before = everything(store)
        sync.journal.close()  # type: ignore[union-attr]
        target._stopping.set()  # a crash: no final push (what was pushed is all there is)

    fresh = tmp_path / "fresh.sqlite3"
    with Store(f"sqlite:///{fresh}") as store:
        store.upgrade()
        restored = Sync(store, tmp_path / "wiped", FolderTarget(tmp_path / "target")).restore()
        assert everything(store) == before
        assert store.vote_total() == 7
        assert restored.snapshot is (db_url.startswith("sqlite"))
        # Idempotent: a second restore adds nothing.
        again = Sync(store, tmp_path / "wiped", FolderTarget(tmp_path / "target")).restore()
        assert (again.battles, again.votes) == (0, 0)
        assert everything(store) == before


def test_snapshot_taken_while_writing_is_consistent(tmp_path: Path) -> None:
    db = tmp_path / "live.sqlite3"
    writers, per_writer = 3, 40
    with Store(f"sqlite:///{db}") as store:
        store.upgrade()
        stop = threading.Event()
        errors: list[BaseException] = []

        def write(w: int) -> None:
            try:
                for k in range(per_writer):
                    play(store, None, w * 1000 + k)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        snapshots = []
        while any(t.is_alive() for t in threads) and not stop.is_set():
            path = tmp_path / f"snap{len(snapshots)}.sqlite3"
            store.snapshot(path)
            snapshots.append(path)
        for t in threads:
            t.join()
        assert not errors
        assert len(snapshots) >= 3
        for path in snapshots:
            conn = sqlite3.connect(path)
            try:
                assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
                battles = {r[0] for r in conn.execute("SELECT id FROM battles")}
                voted = {r[0] for r in conn.execute("SELECT battle_id FROM votes")}
                counts = dict(conn.execute("SELECT battle_id, count(*) FROM messages GROUP BY battle_id").fetchall())
            finally:
                conn.close()
            for w in range(writers):
                mine = sorted(int(b[1:]) - w * 1000 for b in battles if int(b[1:]) // 1000 == w)
                assert mine == list(range(len(mine))), "each writer's battles form a prefix"
                for k in mine[:-1]:  # all but the newest battle are complete: 4 messages and a vote
                    bid = f"b{w * 1000 + k:05d}"
                    assert counts.get(bid) == 4 and bid in voted
                if mine:  # the newest has all of its messages or none (one transaction)
                    assert counts.get(f"b{w * 1000 + mine[-1]:05d}", 0) in (0, 4)
        # The last snapshot, taken after the writers finished, holds everything.
        store.snapshot(tmp_path / "final.sqlite3")
        with Store(f"sqlite:///{tmp_path / 'final.sqlite3'}") as copy:
            assert copy.vote_total() == writers * per_writer


def test_copying_the_file_is_not_a_snapshot(tmp_path: Path) -> None:
    """Why the backup API: with WAL, a plain copy of the file misses committed rows."""
    db = tmp_path / "live.sqlite3"
    with Store(f"sqlite:///{db}") as store:
        store.upgrade()
        for i in range(5):
            play(store, None, i)
        keep_open = store.engine.connect()  # a pooled connection keeps the -wal file from being folded in
        shutil.copy(db, tmp_path / "copy.sqlite3")
        store.snapshot(tmp_path / "snap.sqlite3")
        keep_open.close()
    copied = sqlite3.connect(tmp_path / "copy.sqlite3")
    try:
        try:
            n = copied.execute("SELECT count(*) FROM votes").fetchone()[0]
        except sqlite3.OperationalError:
            n = 0  # "no such table": even the schema was still in the -wal file
    finally:
        copied.close()
    assert n < 5
    with Store(f"sqlite:///{tmp_path / 'snap.sqlite3'}") as snap:
        assert snap.vote_total() == 5


def visitor(url: str) -> Client:
    """One visitor session, past the terms notice when the page has one."""
    client = Client(url, verbose=False)
    if "/accept_terms" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]:
        client.predict(api_name="/accept_terms")
    return client


def _vote_once(client: Client, prompt: str) -> None:
    client.predict(prompt, api_name="/send")
    client.predict(api_name="/vote_a")
    client.predict(api_name="/new_round")


def _wait_until_pushed(target: Path, votes: int, scratch: Path, timeout: float = 60.0) -> None:
    """Until what ``target`` holds restores to ``votes`` votes: the scheduled pushes have caught up."""
    deadline = time.monotonic() + timeout
    for attempt in range(1, 10**6):
        work = scratch / f"probe{attempt}"
        work.mkdir(parents=True)
        with Store(f"sqlite:///{work / 'probe.sqlite3'}") as store:
            store.upgrade()
            try:
                Sync(store, work / "journal", FolderTarget(target)).restore()
            except SyncError:
                pass  # read while a push was writing: look again
            else:
                if store.vote_total(mode=None, exclude_flags=()) >= votes:
                    return
        if time.monotonic() > deadline:
            pytest.fail(f"the sync target did not hold {votes} votes within {timeout:g} s")
        time.sleep(0.2)  # a poll interval, not a guess at how long a push takes


def test_the_app_restarted_on_a_wiped_disk_keeps_every_vote(tmp_path: Path) -> None:
    target = tmp_path / "target"
    env = {
        "ARENA_SYNC_FOLDER": str(target),
        "ARENA_SYNC_MINUTES": "0.01",  # a push every 0.6 s
        "ARENA_SNAPSHOT_MINUTES": "60",  # one snapshot at start, then journal-only pushes
        "ARENA_DEMO_TOKEN_RATE": "200",
        "ARENA_DEMO_FIRST_TOKEN_DELAY": "0.01",
        "ARENA_MIN_READ_SECONDS": "0",
        "ARENA_HEALTH_INTERVAL": "0",
    }

    def run(disk: Path, votes: int, *, crash: bool) -> int:
        app = AppProcess(
            ["--demo", "--db", f"sqlite:///{disk / 'arena.sqlite3'}"], env=env, log_path=disk.with_suffix(".log")
        )
        try:
            app.wait_ready()
            client = visitor(app.url)
            for i in range(votes):
                _vote_once(client, f"Pytanie numer {i}: co słychać?")
            client.close()
            with Store(f"sqlite:///{disk / 'arena.sqlite3'}") as store:
                total = store.vote_total(mode=None, exclude_flags=())
            if crash:
                _wait_until_pushed(target, total, disk.with_name(disk.name + "-probes"))  # scheduled pushes
                app.stop(sig=9)  # no final push
            else:
                app.stop()
        finally:
            app.stop()
        shutil.rmtree(disk)  # the host wipes the disk
        return total

    assert run(tmp_path / "disk1", 3, crash=False) == 3  # clean stop: the last push has everything
    assert run(tmp_path / "disk2", 2, crash=True) == 5  # restored 3, added 2, then killed
    # After the crash only the scheduled pushes are left: the start-up snapshot plus journal lines.
    with Store(f"sqlite:///{tmp_path / 'restored.sqlite3'}") as store:
        store.upgrade()
        restored = Sync(store, tmp_path / "disk3", FolderTarget(target)).restore()
        assert restored.snapshot and restored.journal_lines >= 4  # two battles and two votes after it
        assert store.vote_total(mode=None, exclude_flags=()) == 5
        assert all(item["messages"] for item in store.iter_battles(with_messages=True))  # conversations too
