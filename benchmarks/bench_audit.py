"""Cost of the audit (``python -m arena audit``) for 1M battles among 50 models with 1000 resamples.

Run: ``python -m benchmarks.bench_audit`` from the repository root. Prints one table. Battles are
simulated (Bradley-Terry strengths, Rao-Kupper ties, random sides, votes from ``--voters`` voters
of unequal activity) and aggregated into ``(model_a, model_b, winner, voter, count)`` rows as the
database's GROUP BY (``Store.voter_counts``) returns them; that query is not timed here. The
leaderboard's own fit (1000 bootstrap rounds) is timed on the same votes for comparison: the audit
runs once per change of a slice's votes, right after that fit. ``--ipw`` also times both weighted by
inverse propensity (``ARENA_IPW``): each pair gets a propensity drawn from a skewed design (as active
pairing draws close pairs more often) and each row the weight sum ``count * (1/K) / propensity``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arena.audit import audit
from arena.domain import WINNERS, PairCount
from arena.ratings import fit_ratings


def simulate(n_models: int, n_battles: int, voters: int, seed: int) -> list[tuple[str, str, str, str, int]]:
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1, n_models)
    a = rng.integers(0, n_models, n_battles)
    b = (a + rng.integers(1, n_models, n_battles)) % n_models
    d = theta[a] - theta[b]
    eta = 0.3
    pa, pb = 1 / (1 + np.exp(-(d - eta))), 1 / (1 + np.exp(-(-d - eta)))
    u = rng.random(n_battles)
    kind = np.where(u < pa, 0, np.where(u < pa + pb, 1, np.where(rng.random(n_battles) < 0.7, 2, 3)))
    activity = rng.pareto(1.2, voters) + 1  # a few busy voters, many occasional ones
    voter = rng.choice(voters, n_battles, p=activity / activity.sum())
    key = ((a * n_models + b) * 4 + kind) * voters + voter
    uniq, counts = np.unique(key, return_counts=True)
    v = uniq % voters
    rest = uniq // voters
    k = rest % 4
    pair = rest // 4
    names = [f"model-{i:02d}" for i in range(n_models)]
    return [
        (names[p // n_models], names[p % n_models], WINNERS[kk], f"voter-{vv}", int(c))
        for p, kk, vv, c in zip(pair.tolist(), k.tolist(), v.tolist(), counts.tolist(), strict=True)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--battles", type=int, default=1_000_000)
    ap.add_argument("--voters", type=int, default=2000)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ipw", action="store_true", help="Also time the audit and the fit with IPW weights.")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = simulate(args.models, args.battles, args.voters, seed=1)
    sim = time.perf_counter() - t0
    pair_rows: dict[tuple[str, str, str], int] = {}
    for a, b, w, _, c in rows:
        pair_rows[(a, b, w)] = pair_rows.get((a, b, w), 0) + c
    counts = [PairCount(a, b, w, c) for (a, b, w), c in pair_rows.items()]  # type: ignore[arg-type]

    def timed(fn: object, repeat: int) -> tuple[float, object]:
        best, out = float("inf"), None
        for _ in range(repeat):
            t = time.perf_counter()
            out = fn()  # type: ignore[operator]
            best = min(best, time.perf_counter() - t)
        return best, out

    t_audit, result = timed(lambda: audit(rows, resamples=args.resamples, seed=0), args.repeat)
    t_fit, _ = timed(lambda: fit_ratings(counts, bootstrap_rounds=args.resamples, seed=0), 1)
    load = os.getloadavg()
    print(f"# bench_audit: {args.battles} battles, {args.models} models, {args.voters} voters, {len(rows)} cells")
    print(f"# {platform.machine()} {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f}; simulate {sim:.1f} s")
    print(f"| what | resamples | seconds (best of {args.repeat}) |")
    print("|---|---|---|")
    print(f"| audit: all nine probes | {args.resamples} (battles) + {args.resamples} (voters) | {t_audit:.2f} |")
    print(f"| leaderboard fit (fit_ratings, bootstrap) | {args.resamples} | {t_fit:.2f} (1 run) |")
    print(f"| ratio audit / fit | | {t_audit / t_fit:.2f} |")
    if args.ipw:
        design = np.random.default_rng(2).gamma(0.5, size=args.models * args.models) + 0.05
        design /= design.sum()
        index = {f"model-{i:02d}": i for i in range(args.models)}
        k = args.models * (args.models - 1)

        def weight(a: str, b: str, c: int) -> float:
            return c * (1 / k) / float(design[index[a] * args.models + index[b]])

        w_rows = [weight(a, b, c) for a, b, _, _, c in rows]
        w_counts = [weight(c.model_a, c.model_b, c.count) for c in counts]
        t_w, _ = timed(lambda: audit(rows, resamples=args.resamples, seed=0, weights=w_rows), args.repeat)
        t_wfit, _ = timed(lambda: fit_ratings(counts, bootstrap_rounds=args.resamples, seed=0, weights=w_counts), 1)
        print(f"| audit, weighted (ARENA_IPW) | {args.resamples} + {args.resamples} | {t_w:.2f} |")
        print(f"| leaderboard fit, weighted | {args.resamples} | {t_wfit:.2f} (1 run) |")
        print(f"| ratio weighted audit / unweighted audit | | {t_w / t_audit:.2f} |")
    fired = [p.name for p in result.probes if p.fired]  # type: ignore[attr-defined]
    print(f"# probes fired on the simulated board: {', '.join(fired) or 'none'}")


if __name__ == "__main__":
    main()
