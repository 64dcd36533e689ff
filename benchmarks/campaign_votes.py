"""Votes needed to name the best of K release candidates with 95% confidence: adaptive vs uniform choice.

``python -m benchmarks.campaign_votes [--candidates 4 8] [--seeds 60] [--max-votes 4000]``

Each simulated campaign draws true ratings for K candidates (normal, SD ``--spread`` Elo: release
candidates of one model are close) and lets judges vote on pairs chosen by the campaign chooser
(``arena.campaigns.chooser.pair_probabilities``: ``top`` or ``uniform``). Outcomes follow
Bradley-Terry, with ``--tie-rate`` of the votes a draw. Every ``--refit-every`` votes the arena's own
fit (``arena.ratings.fit_ratings``, sandwich intervals) is refitted; the chooser's table is refreshed
from it, and the campaign stops when the leader's probability of being the best
(``arena.campaigns.chooser.probability_best``, from the fit and the joint covariance of the ratings)
reaches 95%. Both strategies see the same true
ratings and the same random stream of outcomes per seed, so the comparison is paired.

Reported per K and strategy: the median and mean votes to stop (campaigns that hit ``--max-votes``
count as ``--max-votes``), how many stopped, and how often the named candidate was the true best.
Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import Counter
from itertools import combinations

import numpy as np

from arena.campaigns.chooser import pair_probabilities, probability_best
from arena.domain import PairCount, Winner
from arena.ratings import SCALE, fit_ratings


def _counts(tally: Counter[tuple[str, str, str]]) -> list[PairCount]:
    return [PairCount(a, b, w, n) for (a, b, w), n in tally.items()]  # type: ignore[arg-type]


def run_one(k: int, strategy: str, seed: int, args: argparse.Namespace) -> tuple[int, bool, bool]:
    """(votes used, stopped with 95% confidence, named the true best)."""
    truth_rng = np.random.default_rng(seed)
    theta = truth_rng.normal(0.0, args.spread / SCALE, size=k)
    names = [f"rc{i}" for i in range(k)]
    rng = np.random.default_rng(10_000 + seed)  # the same stream for both strategies
    pairs = list(combinations(names, 2))
    probs = pair_probabilities(names, None, strategy="uniform")
    tally: Counter[tuple[str, str, str]] = Counter()
    votes = 0
    while votes < args.max_votes:
        for _ in range(args.refit_every):
            weights = np.array([probs[p] for p in pairs])
            a, b = pairs[int(rng.choice(len(pairs), p=weights / weights.sum()))]
            i, j = names.index(a), names.index(b)
            u = rng.random()
            winner: Winner
            if u < args.tie_rate:
                winner = "tie"
            else:
                p = 1.0 / (1.0 + math.exp(theta[j] - theta[i]))
                winner = "model_a" if rng.random() < p else "model_b"
            tally[(a, b, winner)] += 1
            votes += 1
        counts = _counts(tally)
        fit = fit_ratings(counts, interval="sandwich", bootstrap_rounds=0)
        if len(fit.rows) == k and len(fit.components) == 1:
            best = probability_best(names, fit, counts)
            leader = int(best.argmax())
            if best[leader] >= 0.95:
                return votes, True, leader == int(theta.argmax())
        probs = pair_probabilities(names, fit, counts, strategy=strategy, floor=args.floor)  # type: ignore[arg-type]
    counts = _counts(tally)
    fit = fit_ratings(counts, interval="sandwich", bootstrap_rounds=0)
    leader = int(probability_best(names, fit, counts).argmax())
    return votes, False, leader == int(theta.argmax())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--candidates", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--seeds", type=int, default=60)
    parser.add_argument("--spread", type=float, default=100.0, help="SD of the true ratings, Elo points.")
    parser.add_argument("--tie-rate", type=float, default=0.15)
    parser.add_argument("--max-votes", type=int, default=4000)
    parser.add_argument("--refit-every", type=int, default=10)
    parser.add_argument("--floor", type=float, default=0.1)
    args = parser.parse_args(argv)
    print(
        f"spread {args.spread:g} Elo, ties {args.tie_rate:g}, refit every {args.refit_every}, floor {args.floor:g}, "
        f"cap {args.max_votes} votes, {args.seeds} seeds",
        file=sys.stderr,
    )
    rows = []
    for k in args.candidates:
        results: dict[str, list[tuple[int, bool, bool]]] = {}
        for strategy in ("uniform", "top"):
            start = time.perf_counter()
            results[strategy] = [run_one(k, strategy, seed, args) for seed in range(args.seeds)]
            print(f"K={k} {strategy}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        paired = [t[0] / u[0] for u, t in zip(results["uniform"], results["top"], strict=True)]
        for strategy, res in results.items():
            used = [v for v, _, _ in res]
            rows.append(
                (
                    k,
                    strategy,
                    statistics.median(used),
                    statistics.fmean(used),
                    sum(s for _, s, _ in res),
                    sum(c for _, s, c in res if s),
                    statistics.median(paired) if strategy == "top" else None,
                )
            )
    print(
        "| candidates | choice | median votes | mean votes | stopped (of seeds) | right when stopped "
        "| median top/uniform (paired) |"
    )
    print("|---|---|---|---|---|---|---|")
    for k, strategy, med, mean, stopped, right, ratio in rows:
        ratio_text = "" if ratio is None else f"{ratio:.2f}"
        print(
            f"| {k} | {strategy} | {med:.0f} | {mean:.0f} | {stopped}/{args.seeds} | {right}/{stopped} | {ratio_text} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
