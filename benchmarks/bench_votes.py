"""Vote commit latency under battle load, on SQLite and on PostgreSQL.

Run: ``python -m benchmarks.bench_votes`` from the repository root (``--help`` for options). Needs
PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) for the PostgreSQL row; a fresh database
is created for the run and dropped after it. Prints one table.

The load is bench_battles' arena phase (``--visitors`` visitors, default 64, running full
battles). Two figures per vote:

* **server**: the store's own time for the vote's transaction (connect from the pool, take the
  write lock, insert, commit), logged by ``Store`` at DEBUG as ``committed vote in X ms``; the
  app runs with only the ``arena.storage.store`` logger at DEBUG, so nothing else changes.
* **client**: the ``/vote_*`` event's round trip as a visitor sees it (queue join to completion),
  which adds the Gradio queue, the worker-thread hop and the page update.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_battles import NO_RATE_LIMITS, arena_phase, warm_up
from benchmarks.loadgen import App, Endpoints, loadavg, percentile, write_times

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new, empty database for this run; dropped afterwards (even if the run fails)."""
    import psycopg

    name = f"arena_bench_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(db: str, label: str, args: argparse.Namespace, endpoints: Endpoints, tmp: Path) -> str:
    app = App(
        ["--config", "arena/backends/demo_models.yaml", "--db", db],
        env={**endpoints.environ, **NO_RATE_LIMITS},
        log_path=tmp / f"app-{label}.log",
        store_debug=True,
    )
    try:
        app.wait_ready()
        asyncio.run(warm_up(app.url, args.answer_tokens))
        skip = len(write_times(app.log(), "vote"))
        phase = asyncio.run(arena_phase(app.url, args.visitors, args.duration, args.answer_tokens, {"app": app.pid}))
        server = write_times(app.log(), "vote")[skip:]
        battles = write_times(app.log(), "battle")[skip:]
    finally:
        app.stop()
    client = [1000 * s for s in phase.vote]
    errors = sum(phase.errors.values())
    return (
        f"| {label} | {args.visitors} | {len(server)} | {percentile(server, 50):.1f} | {percentile(server, 99):.1f} "
        f"| {max(server, default=float('nan')):.1f} | {percentile(client, 50):.0f} | {percentile(client, 99):.0f} "
        f"| {percentile(battles, 50):.1f} / {percentile(battles, 99):.1f} | {errors} | {phase.loadavg} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_votes", description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=64)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--answer-tokens", type=int, default=200)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-votes-"))
    endpoints = Endpoints(token_rate=50.0, first_token_delay=0.2, answer_tokens=args.answer_tokens)
    rows = []
    try:
        print(f"SQLite ... (loadavg {loadavg()})", file=sys.stderr, flush=True)
        rows.append(measure(f"sqlite:///{tmp / 'votes.sqlite3'}", "SQLite", args, endpoints, tmp))
        print(rows[-1], file=sys.stderr, flush=True)
        if not args.skip_postgres:
            print(f"PostgreSQL ... (loadavg {loadavg()})", file=sys.stderr, flush=True)
            with fresh_postgres() as url:
                rows.append(measure(url, "PostgreSQL", args, endpoints, tmp))
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        endpoints.stop()
    print(
        "| database | visitors | votes | server commit p50 ms | p99 ms | max ms | client round trip p50 ms | p99 ms "
        "| battle insert p50 / p99 ms | errors | loadavg after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
