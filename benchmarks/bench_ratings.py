"""Leaderboard cost for 1M battles among 50 models: aggregated counts versus per-battle fitting.

Run: ``python -m benchmarks.bench_ratings`` (or ``python benchmarks/bench_ratings.py``) from the
repository root. Prints one table. Battles are simulated from known Bradley-Terry strengths without
ties (choix's per-battle API has no ties), then aggregated into ``PairCount`` rows as the
database's GROUP BY would; aggregation time is not counted, since the database does it.

The per-battle bootstrap (``choix.ilsr_pairwise`` on a resampled list of 1M pairs) takes seconds
per round, so only ``--battle-rounds`` rounds are run and the time for 1000 is extrapolated
linearly; the table says so.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import choix
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arena.domain import PairCount
from arena.ratings import fit_ratings


def simulate(n_models: int, n_battles: int, seed: int) -> tuple[list[PairCount], np.ndarray, np.ndarray]:
    """Aggregated rows plus the per-battle (winner, loser) arrays for the same battles."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1, n_models)
    a = rng.integers(0, n_models, n_battles)
    b = (a + rng.integers(1, n_models, n_battles)) % n_models
    a_wins = rng.random(n_battles) < 1 / (1 + np.exp(theta[b] - theta[a]))
    winner = np.where(a_wins, a, b)
    loser = np.where(a_wins, b, a)
    cell = (a * n_models + b) * 2 + (~a_wins)
    counts = np.bincount(cell, minlength=n_models * n_models * 2)
    rows = []
    for c in np.flatnonzero(counts):
        pair, outcome = divmod(int(c), 2)
        i, j = divmod(pair, n_models)
        rows.append(PairCount(f"m{i:02d}", f"m{j:02d}", "model_b" if outcome else "model_a", int(counts[c])))
    return rows, winner, loser


def timed(fn, repeat: int = 1) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--battles", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--battle-rounds", type=int, default=2, help="per-battle bootstrap rounds actually run")
    args = parser.parse_args()

    rows, winner, loser = simulate(args.models, args.battles, seed=0)
    n = args.models
    results: list[tuple[str, float, str]] = []

    fit_only = timed(lambda: fit_ratings(rows, interval="sandwich", bootstrap_rounds=0), repeat=3)
    results.append(("aggregated: fit + sandwich intervals", fit_only, "measured (best of 3)"))
    full = timed(lambda: fit_ratings(rows, bootstrap_rounds=args.rounds, seed=1))
    results.append((f"aggregated: fit + sandwich + {args.rounds} bootstrap rounds", full, "measured"))

    pairs = np.column_stack([winner, loser])
    one_fit = timed(lambda: choix.ilsr_pairwise(n, pairs))
    results.append(("per-battle: one choix.ilsr_pairwise fit", one_fit, "measured"))
    rng = np.random.default_rng(2)

    def battle_round() -> None:
        pick = rng.integers(0, len(pairs), len(pairs))
        choix.ilsr_pairwise(n, pairs[pick])

    per_round = timed(battle_round, repeat=args.battle_rounds)
    results.append(
        (
            f"per-battle: fit + {args.rounds} bootstrap rounds",
            one_fit + per_round * args.rounds,
            f"extrapolated from {args.battle_rounds} rounds ({per_round:.2f} s best)",
        )
    )

    agg = fit_ratings(rows, interval="sandwich", bootstrap_rounds=0)
    direct = choix.ilsr_pairwise(n, pairs)
    direct = direct - direct.mean()
    ours = np.array([(agg.row(f"m{i:02d}").rating - 1000) for i in range(n)]) / (400 / np.log(10))
    gap = float(np.max(np.abs(ours - ours.mean() - direct)))

    print(
        f"# {args.battles:,} battles, {n} models, {len(rows):,} aggregated rows; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    width = max(len(r[0]) for r in results)
    print(f"| {'step'.ljust(width)} | seconds | how |")
    print(f"|{'-' * (width + 2)}|--------:|-----|")
    for name, secs, how in results:
        print(f"| {name.ljust(width)} | {secs:7.2f} | {how} |")
    print(f"max |theta_aggregated - theta_per_battle| = {gap:.1e}")


if __name__ == "__main__":
    main()
