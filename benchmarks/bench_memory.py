"""Peak memory of the leaderboard's aggregation + fit at 10k and 10M votes (SQLite; PostgreSQL with --pg URL).

    python benchmarks/bench_memory.py [--sizes 10000 10000000] [--pg postgresql+psycopg://postgres@127.0.0.1/db]

Each database is filled with bulk SQL (a recursive CTE on SQLite, generate_series on PostgreSQL),
then a fresh subprocess runs Store.pair_counts() (one GROUP BY) and fit_ratings() and reports its
peak RSS (ru_maxrss) next to the same subprocess's RSS before the query. Benchmarks are not app code,
so this script may use SQLAlchemy Core directly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = [f"model-{i:02d}" for i in range(20)]

CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
from arena.storage import Store
from arena.ratings import fit_ratings
store = Store(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
counts = store.pair_counts()
fit = fit_ratings(counts, tie_policy="half", interval="sandwich", bootstrap_rounds=0)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kib": before, "peak_kib": peak, "seconds": seconds,
                  "votes": sum(c.count for c in counts), "models": len(fit.rows)}))
"""


def fill(url: str, n: int) -> float:
    """Create the schema and ``n`` voted battles among 20 models; returns seconds taken."""
    from arena.storage import Store

    t = time.perf_counter()
    store = Store(url)
    store.upgrade()
    engine = store.engine
    k = len(MODELS)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO models (name) VALUES " + ",".join(f"('{m}')" for m in MODELS)))
        # Pair i: model (i % k) vs model ((i // k + i + 1) % k) when different, else the next one.
        a = f"'model-' || substr('0' || ((i % {k})), -2, 2)"
        b = f"'model-' || substr('0' || (((i % {k}) + 1 + (i / {k}) % ({k} - 1)) % {k}), -2, 2)"
        winner = "CASE i % 4 WHEN 0 THEN 'model_a' WHEN 1 THEN 'model_b' WHEN 2 THEN 'model_a' ELSE 'tie' END"
        if engine.dialect.name == "sqlite":
            series = f"WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < {n}) "
            src = "FROM s"
            ts = "'2026-01-01 00:00:00'"
        else:
            series = ""
            src = f"FROM generate_series(0, {n - 1}) AS s(i)"
            a = a.replace("substr('0' || ((i % 20)), -2, 2)", "lpad((i % 20)::text, 2, '0')")
            b = f"'model-' || lpad(((((i % {k}) + 1 + (i / {k}) % ({k} - 1)) % {k}))::text, 2, '0')"
            ts = "timestamptz '2026-01-01 00:00:00+00'"
        conn.execute(
            sa.text(
                f"{series}INSERT INTO battles (id, model_a, model_b, mode, pool, created_at, client_hash, language, "
                f"propensity) SELECT 'b' || i, {a}, {b}, 'anonymous', 'chat', {ts}, 'judge', 'pl', NULL {src}"
            )
        )
        conn.execute(
            sa.text(
                f"{series}INSERT INTO votes (battle_id, winner, created_at, flags) "
                f"SELECT 'b' || i, {winner}, {ts}, '' {src}"
            )
        )
    store.dispose()
    return time.perf_counter() - t


def measure(url: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, url, str(ROOT)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 10_000_000])
    parser.add_argument("--pg", help="a PostgreSQL server URL ending in a database name that may be replaced")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            targets = [("sqlite", f"sqlite:///{tmp}/votes-{n}.sqlite3")]
            if args.pg:
                targets.append(("postgresql", _fresh_pg(args.pg, n)))
            for backend, url in targets:
                filled = fill(url, n)
                r = measure(url)
                assert r["votes"] == n, r
                rows.append((backend, n, filled, r))
                print(f"{backend} {n}: done", file=sys.stderr)
    print("| backend | votes | fill s | query+fit s | RSS before query MiB | peak RSS MiB | growth MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for backend, n, filled, r in rows:
        print(
            f"| {backend} | {n:,} | {filled:.1f} | {r['seconds']:.2f} | {r['before_kib'] / 1024:.1f} | "
            f"{r['peak_kib'] / 1024:.1f} | {(r['peak_kib'] - r['before_kib']) / 1024:.1f} |"
        )


def _fresh_pg(server_url: str, n: int) -> str:
    base, _, _ = server_url.rpartition("/")
    name = f"arena_bench_{n}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{base}/{name}"


if __name__ == "__main__":
    main()
