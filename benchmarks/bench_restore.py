"""Start-up restore time against the number of votes: replay everything (before) vs the journal's tail (now).

    python benchmarks/bench_restore.py [--sizes 2000 8000 20000]

A persistent disk, no sync target (finding 6 of issue 17): a process journals N votes and closes,
then the next start restores. "replay all" is the previous behaviour, reproduced by clearing the
database's sync marks (every journal line is merged again, adding nothing); "tail" is what a
restart does now. Both run in one process, size after size, so the ratio is what to quote.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arena.storage import Store
from arena.sync import Sync
from tests.test_journal import play


def timed_restore(db: Path, folder: Path, *, forget_marks: bool) -> tuple[float, int]:
    with Store(f"sqlite:///{db}") as store:
        if forget_marks:
            with store.engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM sync_marks"))
        started = time.perf_counter()
        restored = Sync(store, folder).restore()
        return time.perf_counter() - started, restored.journal_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 20000])
    args = parser.parse_args()
    print("| votes | replay all: s | lines | tail: s | lines | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            db, folder = Path(tmp) / "arena.sqlite3", Path(tmp) / "sync"
            with Store(f"sqlite:///{db}") as store:
                store.upgrade()
                sync = Sync(store, folder)
                journal = sync.start()
                for i in range(n):
                    play(store, journal, i)
                journal.flush(timeout=600)
                sync.close()
            tail_s, tail_lines = timed_restore(db, folder, forget_marks=False)
            all_s, all_lines = timed_restore(db, folder, forget_marks=True)
            print(f"| {n:,} | {all_s:.2f} | {all_lines:,} | {tail_s:.3f} | {tail_lines:,} | {all_s / tail_s:,.0f}x |")


if __name__ == "__main__":
    main()
