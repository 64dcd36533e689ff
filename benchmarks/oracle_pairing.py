"""How many votes could *any* pairing save? A design that knows the true ratings, raced against uniform.

Run: ``python -m benchmarks.oracle_pairing`` from the repository root (``--help`` for options).
Prints one table and writes nothing else.

Issue 8 asks active pairing for 30% fewer votes than uniform pairing until the ranking reaches
Spearman >= 0.95 with the truth. This benchmark asks how much is there to gain at all, on the same
simulated arenas (``arena.simulate``: same truth, same outcomes model, same refits, same "votes
until it stays above the target" count):

* **uniform**: every pair equally likely (what the arena compares against);
* **oracle**: a fixed design computed *from the true ratings*, which no real arena knows. For each
  arena it chooses the share ``w_k`` of votes for every pair ``k`` that minimises the expected sum
  of squared rank errors after ``--design-votes`` votes, under the usual large-sample approximation:
  the fitted ratings are normal around the truth with covariance ``(N I(w))^+``, where
  ``I(w) = sum_k w_k p_k (1 - p_k) a_k a_k^T`` (Bradley-Terry information of a battle of pair
  ``k = (i, j)``, ``a_k = e_i - e_j``). Two models ``i, j`` are misordered with probability
  ``Phi(-|d_ij| / sd_ij)``, and a misorder between models ``g`` places apart adds ``2 g - 1`` to
  the expected squared rank displacement: the same proxy for Spearman's correlation the shipped
  ``active`` score uses (``arena/pairing.py``), here with the truth in place of the fit.

``--floor`` mixes that design with uniform, as the shipped sampler does (0 by default: the pure
design). The oracle sees every outcome of its arena only through the truth it was given; it does
not adapt. An adaptive sampler can in principle beat a fixed design, but it must first learn what
the oracle is told, so the oracle's saving is a fair yardstick for the 30% target.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import expit, ndtr

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arena.domain import PairCount
from arena.pairing import PairDistribution
from arena.ratings import SCALE, RatingsResult
from arena.registry import ModelSpec
from arena.simulate import SimulationConfig, race, saving, true_ratings

Float = NDArray[np.float64]


class RankError:
    """The expected sum of squared rank errors of a design, for fixed true ratings (theta units).

    Everything that depends only on the ratings (pair differences, their information ``p (1 - p)``,
    the pairs' difference vectors, their places apart in the true order) is computed once here, not
    at each of the optimiser's evaluations.
    """

    def __init__(self, theta: Float) -> None:
        n = theta.size
        iu, ju = np.triu_indices(n, k=1)
        self.d = theta[iu] - theta[ju]
        p = expit(self.d)
        self.q = p * (1.0 - p)
        self.a = np.zeros((iu.size, n))
        self.a[np.arange(iu.size), iu] = 1.0
        self.a[np.arange(iu.size), ju] = -1.0
        order = np.argsort(np.argsort(-theta))
        self.gap = np.abs(order[iu] - order[ju]).astype(np.float64)
        self.weight = 2.0 * (2.0 * self.gap - 1.0)  # both directions of the pair

    def __call__(self, w: Float, n_votes: float) -> tuple[float, Float]:
        """The loss of design ``w`` (pair shares, upper triangle order) after ``n_votes``, and its gradient."""
        info = (self.a * (w * self.q)[:, None]).T @ self.a
        cov = np.linalg.pinv(info)
        # Var(theta_i - theta_j) for every pair, and the covariances the gradient needs.
        b = self.a @ cov @ self.a.T  # b[k, l] = a_k' Cov a_l
        var = np.maximum(np.diag(b), 1e-12) / n_votes
        x = np.abs(self.d) / np.sqrt(var)
        loss = float((self.weight * ndtr(-x)).sum())
        # d loss / d var_k = weight_k phi(x_k) x_k / (2 var_k); d var_k / d w_l = -q_l b[k, l]^2 / n_votes.
        dvar = self.weight * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi) * x / (2.0 * var)
        grad = -self.q * ((dvar[:, None] * b * b).sum(axis=0)) / n_votes
        return loss, grad


def centred(theta_elo: Float) -> Float:
    """True ratings in Elo points, centred, in the fit's theta units."""
    return np.asarray((theta_elo - theta_elo.mean()) / SCALE, dtype=np.float64)


def oracle_design(theta_elo: Float, n_votes: float) -> Float:
    """Pair shares (upper triangle order) minimising :class:`RankError` for the true ratings."""
    loss_of = RankError(centred(theta_elo))
    k = loss_of.d.size

    def objective(z: Float) -> tuple[float, Float]:
        w = np.exp(z - z.max())
        w /= w.sum()
        loss, grad = loss_of(w, n_votes)
        return loss, w * (grad - w @ grad)  # through the softmax

    z = minimize(objective, np.zeros(k), jac=True, method="L-BFGS-B", options={"maxiter": 500}).x
    w = np.exp(z - z.max())
    return np.asarray(w / w.sum(), dtype=np.float64)


class FixedDesign:
    """A sampler that draws every pair with a fixed probability (it ignores the votes)."""

    def __init__(self, shares: Float, floor: float) -> None:
        self.shares = (1.0 - floor) * shares + floor / shares.size

    def distribution(self, models: Sequence[ModelSpec], available: frozenset[str] | None = None) -> PairDistribution:
        n = len(models)
        prob = np.zeros((n, n))
        prob[np.triu_indices(n, k=1)] = self.shares
        return PairDistribution(tuple(m.name for m in models), tuple(m.kind for m in models), prob)

    def update(self, result: RatingsResult | None, counts: Sequence[PairCount]) -> None:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=20, help="Models per arena (default 20).")
    parser.add_argument("--seeds", type=int, default=50, help="Simulated arenas (default 50).")
    parser.add_argument("--seed", type=int, default=0, help="Master random seed, as for `arena simulate` (default 0).")
    parser.add_argument("--spread", type=float, default=120.0, help="SD of the true ratings, Elo (default 120).")
    parser.add_argument(
        "--design-votes",
        type=float,
        default=2000.0,
        help="The vote count the oracle's design is optimised for (default 2000, about where uniform gets there).",
    )
    parser.add_argument("--floor", type=float, default=0.0, help="Share spread uniformly over all pairs (default 0).")
    args = parser.parse_args(argv)
    cfg = SimulationConfig(n_models=args.models, seeds=args.seeds, seed=args.seed, spread=args.spread)
    cfg.check()
    truth = true_ratings(cfg)
    started = time.monotonic()
    designs = [oracle_design(row, args.design_votes) for row in truth]
    design_seconds = time.monotonic() - started
    neighbours = np.mean([_neighbour_share(w, row) for w, row in zip(designs, truth, strict=True)])
    uniform = race(cfg, "uniform", truth, np.random.default_rng([cfg.seed, 1]))
    oracle = race(
        cfg,
        "oracle",
        truth,
        np.random.default_rng([cfg.seed, 2]),
        samplers=[FixedDesign(w, args.floor) for w in designs],
    )
    pct, (lo, hi) = saving(cfg, oracle, uniform)
    print(
        f"{cfg.seeds} simulated arenas of {cfg.n_models} models (true ratings ~ N(0, {cfg.spread:g}) Elo, "
        f"seed {cfg.seed}); oracle designed for {args.design_votes:g} votes, floor {args.floor:g} "
        f"({design_seconds:.0f} s to design; {neighbours:.0%} of its votes on neighbouring pairs)"
    )
    print()
    print(f"| strategy | votes to Spearman >= {cfg.target:g} (mean) | reached | first reach (mean) |")
    print("|---|---|---|---|")
    for run in (uniform, oracle):
        print(
            f"| {run.strategy} | {run.votes_to_target.mean():.0f} | {int(run.reached.sum())}/{cfg.seeds} "
            f"| {run.votes_to_first.mean():.0f} |"
        )
    print()
    print(f"oracle saving: {pct:.1f}% (95% CI [{lo:.1f}, {hi:.1f}])")
    return 0


def _neighbour_share(w: Float, theta_elo: Float) -> float:
    """The share of the design's votes on pairs next to each other in the true order."""
    return float(w[RankError(centred(theta_elo)).gap == 1].sum())


if __name__ == "__main__":
    raise SystemExit(main())
