"""How often each model of a roster is drawn: the real pairing code, N draws per strategy (issue 18).

    python -m benchmarks.bench_draws [--config models.yaml] [--draws 2000] [--seed 18]

Prints a table (draws per model and strategy, share of continuation battles) and the models no pool
can pair. Before continuation battles, the shipped roster's only base model was drawn 0 times.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from arena.pairing import STRATEGIES, PairSampler, unpairable
from arena.registry import load_registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="models.yaml")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    roster = list(load_registry(args.config, environ={}))
    counts: dict[str, Counter[str]] = {}
    pools: dict[str, Counter[str]] = {}
    for strategy in STRATEGIES:
        rng = np.random.default_rng(args.seed)
        sampler = PairSampler(strategy)
        counts[strategy], pools[strategy] = Counter(), Counter()
        for _ in range(args.draws):
            pair = sampler.draw(roster, rng)
            counts[strategy].update((pair.model_a, pair.model_b))
            pools[strategy][pair.pool] += 1
    print(f"{args.draws} draws per strategy on {args.config} (seed {args.seed})\n")
    print("| model | kind | " + " | ".join(STRATEGIES) + " |")
    print("|---|---|" + "--:|" * len(STRATEGIES))
    for m in roster:
        print(f"| {m.name} | {m.kind} | " + " | ".join(str(counts[s][m.name]) for s in STRATEGIES) + " |")
    print("| (continuation battles) | | " + " | ".join(str(pools[s]["base"]) for s in STRATEGIES) + " |")
    print(f"\nunpairable models: {', '.join(unpairable(roster)) or 'none'}")


if __name__ == "__main__":
    main()
