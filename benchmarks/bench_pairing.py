"""Time per pair draw for 10 and 50 models, per pairing strategy.

Run: ``python benchmarks/bench_pairing.py`` from the repository root. Prints one table. The active
sampler is first updated from a fit of simulated votes (``update`` is timed too: the service calls
it when votes arrive, not per visitor).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arena.domain import PairCount
from arena.pairing import STRATEGIES, PairSampler
from arena.ratings import fit_ratings
from arena.registry import ModelSpec


def _counts(n: int, rng: np.random.Generator) -> list[PairCount]:
    theta = rng.normal(0, 0.7, n)
    rows = []
    for i in range(n):
        for j in range(i + 1, n):
            k = 20
            w = int(rng.binomial(k, 1 / (1 + np.exp(theta[j] - theta[i]))))
            rows += [PairCount(f"m{i}", f"m{j}", "model_a", w), PairCount(f"m{i}", f"m{j}", "model_b", k - w)]
    return rows


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"{'models':>6} {'strategy':>9} {'draw (ms)':>10} {'update (ms)':>12}")
    for n in (10, 50):
        models = [ModelSpec(name=f"m{i}", backend="tgi", url="http://127.0.0.1:1") for i in range(n)]
        counts = _counts(n, rng)
        result = fit_ratings(counts, interval="sandwich", bootstrap_rounds=0)
        for strategy in STRATEGIES:
            sampler = PairSampler(strategy)
            t = time.perf_counter()
            for _ in range(20):
                sampler.update(result, counts)
            update_ms = (time.perf_counter() - t) / 20 * 1000
            reps = 2000
            t = time.perf_counter()
            for _ in range(reps):
                sampler.draw(models, rng)
            draw_ms = (time.perf_counter() - t) / reps * 1000
            print(f"{n:>6} {strategy:>9} {draw_ms:>10.3f} {update_ms:>12.2f}")


if __name__ == "__main__":
    main()
