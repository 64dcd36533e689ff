"""Which comparison a judge sees next: two candidates, one prompt, one answer of each under one setting.

Strategies
----------
``uniform``
    Every pair of candidates with something left to judge is equally likely.
``top`` (default)
    Favour what is still uncertain about the best candidates. From the latest fit and the joint
    covariance of the ratings (the inverse Bradley-Terry information of the judgments' counts),
    ``P(best_i)`` is the probability that candidate ``i`` has the highest true rating (Monte Carlo
    over normal ratings, a fixed seed so the table depends only on the data), and each pair gets the
    score ``(P(best_i) + P(best_j)) * 2 Phi(-|d_ij| / s_ij)`` (``s_ij`` the standard error of the
    difference): pairs with a
    likely winner among them and an order still in doubt. A share ``floor`` is spread uniformly, so
    every pair keeps a probability of at least ``floor / K``. Before any fit: uniform.

The chosen pair's probability is returned as the comparison's ``propensity`` (and uniform choice's,
``1 / K``, as ``uniform_propensity``), so results can be reweighted like live battles.

Within the pair, the prompt and setting are drawn uniformly among those where both candidates have
an answer the judge has not compared yet, then one run of each; sides are shuffled. Answers are
matched on setting and language because both answer the same prompt under the same setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, ndtr

from arena.campaigns.model import pair_key
from arena.domain import PairCount
from arena.ratings import SCALE, RatingsResult

__all__ = ["STRATEGIES", "Choice", "Item", "choose", "pair_probabilities", "probability_best"]

Strategy = Literal["uniform", "top"]
STRATEGIES: tuple[Strategy, ...] = ("uniform", "top")
DEFAULT_FLOOR = 0.1
_UNKNOWN_SD = 2.0  # theta units (~350 Elo): a candidate the fit does not know is wide open
_DRAWS = 4000

Float = NDArray[np.float64]


@dataclass(frozen=True)
class Item:
    """One prompt under one setting, with each candidate's answer ids (one per run)."""

    prompt_id: str
    setting: str
    answers: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Choice:
    prompt_id: str
    setting: str
    model_a: str
    model_b: str
    answer_a: str
    answer_b: str
    propensity: float
    uniform_propensity: float


def _posterior(
    candidates: Sequence[str], fit: RatingsResult | None, counts: Sequence[PairCount]
) -> tuple[Float, Float]:
    """Ratings (theta units) and their joint covariance, from the fit and the judgments' count matrix.

    The covariance is the inverse of the Bradley-Terry information ``sum_ij n_ij p_ij (1 - p_ij)
    (e_i - e_j)(e_i - e_j)^T`` plus a weak prior precision ``1 / _UNKNOWN_SD^2`` on each candidate (so a
    candidate without judgments is wide open rather than undefined). It is joint, not per candidate:
    two candidates judged often against each other have a well-known difference even when both are
    uncertain against the rest, which is what naming the best turns on.
    """
    k = len(candidates)
    index = {name: i for i, name in enumerate(candidates)}
    theta = np.zeros(k)
    if fit is not None:
        rows = {r.model: r for r in fit.rows}
        first = fit.components[0] if fit.components else ()
        for name, i in index.items():
            r = rows.get(name)
            if r is not None and name in first:  # others are unknown: 0, wide open
                theta[i] = (r.rating - 1000.0) / SCALE
    n = np.zeros((k, k))
    for c in counts:
        if c.model_a in index and c.model_b in index and c.model_a != c.model_b:
            i, j = index[c.model_a], index[c.model_b]
            n[i, j] += c.count
            n[j, i] += c.count
    p = expit(theta[:, None] - theta[None, :])
    w = n * p * (1.0 - p)
    info = np.diag(w.sum(axis=1)) - w + np.eye(k) / _UNKNOWN_SD**2
    return theta, np.linalg.inv(info)


def probability_best(candidates: Sequence[str], fit: RatingsResult | None, counts: Sequence[PairCount] = ()) -> Float:
    """P(candidate i has the highest true rating): normal draws around the fit with the joint covariance."""
    theta, cov = _posterior(candidates, fit, counts)
    draws = np.random.default_rng(0).multivariate_normal(theta, cov, size=_DRAWS, method="cholesky")
    return np.bincount(draws.argmax(axis=1), minlength=len(candidates)) / _DRAWS


def pair_probabilities(
    candidates: Sequence[str],
    fit: RatingsResult | None,
    counts: Sequence[PairCount] = (),
    *,
    strategy: Strategy = "top",
    floor: float = DEFAULT_FLOOR,
) -> dict[tuple[str, str], float]:
    """The probability of each unordered pair (names in ``candidates`` order); sums to 1.

    ``fit`` and ``counts`` are the latest fit of the campaign's judgments and the counts it was made from.
    """
    pairs = list(combinations(range(len(candidates)), 2))
    if not pairs:
        return {}
    k = len(pairs)
    if strategy == "uniform" or fit is None:
        return {(candidates[i], candidates[j]): 1.0 / k for i, j in pairs}
    theta, cov = _posterior(candidates, fit, counts)
    pb = probability_best(candidates, fit, counts)
    score = np.array(
        [
            (pb[i] + pb[j])
            * 2.0
            * ndtr(-abs(theta[i] - theta[j]) / np.sqrt(max(cov[i, i] + cov[j, j] - 2 * cov[i, j], 1e-12)))
            for i, j in pairs
        ]
    )
    total = score.sum()
    q = score / total if total > 0 else np.full(k, 1.0 / k)
    q = (1.0 - floor) * q + floor / k
    return {(candidates[i], candidates[j]): float(p) for (i, j), p in zip(pairs, q, strict=True)}


def _open_combos(item: Item, a: str, b: str, judged: set[str]) -> list[tuple[str, str]]:
    return [(x, y) for x in item.answers.get(a, ()) for y in item.answers.get(b, ()) if pair_key(x, y) not in judged]


def _open_pairs(
    items: Sequence[Item], probabilities: Mapping[tuple[str, str], float], judged: set[str]
) -> list[tuple[str, str]]:
    """The pairs with a comparison left for this judge: fewer judged than the pair has (linear time)."""
    owner: dict[str, str] = {}
    total: dict[frozenset[str], int] = {}
    for it in items:
        for name, ids in it.answers.items():
            for answer in ids:
                owner[answer] = name
        names = list(it.answers)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                key = frozenset((a, b))
                total[key] = total.get(key, 0) + len(it.answers[a]) * len(it.answers[b])
    done: dict[frozenset[str], int] = {}
    for judged_key in judged:
        x, _, y = judged_key.partition(":")
        if x in owner and y in owner:
            pair = frozenset((owner[x], owner[y]))
            done[pair] = done.get(pair, 0) + 1
    return [p for p in probabilities if done.get(frozenset(p), 0) < total.get(frozenset(p), 0)]


def choose(
    items: Sequence[Item],
    probabilities: Mapping[tuple[str, str], float],
    judged: set[str],
    rng: np.random.Generator,
) -> Choice | None:
    """The next comparison for a judge who has compared ``judged`` (pair keys); None when nothing is left."""
    pairs = _open_pairs(items, probabilities, judged)
    if not pairs:
        return None
    weights = np.array([probabilities[p] for p in pairs])
    weights = weights / weights.sum()
    index = int(rng.choice(len(pairs), p=weights))
    a, b = pairs[index]
    # The first open item of a random order: uniform among the items with a comparison left.
    for position in rng.permutation(len(items)):
        item = items[int(position)]
        combos = _open_combos(item, a, b, judged)
        if combos:
            break
    else:  # pragma: no cover - _open_pairs said the pair has one
        raise AssertionError(f"no open comparison for {a} and {b}")
    answer_a, answer_b = combos[int(rng.integers(len(combos)))]
    if rng.random() < 0.5:
        a, b, answer_a, answer_b = b, a, answer_b, answer_a
    return Choice(
        prompt_id=item.prompt_id,
        setting=item.setting,
        model_a=a,
        model_b=b,
        answer_a=answer_a,
        answer_b=answer_b,
        propensity=float(weights[index]),
        uniform_propensity=1.0 / len(pairs),
    )
