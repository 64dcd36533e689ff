"""Which two models meet next: uniform, weighted or active choice of a pair within one pool.

Every strategy draws two distinct enabled, online models of one pool, shuffles the sides, and
returns the exact probability with which that unordered pair was drawn (``Pairing.propensity``),
so the fit can reweight battles by inverse propensity.

Pools
-----
``chat``
    Chat models (``kind: chat``) answering a conversation.
``base``
    Continuation battles: a raw text is continued. Its members are the base models and every
    chat model that can complete raw text (``ModelSpec.plays_continuation``: TGI's native route or
    an OpenAI server's ``/v1/completions``); each of its pairs has at least one base model in it,
    so a base model meets chat models on the same raw prompt but two chat models never meet here.
    A chat model may thus sit in both pools (and appear once per pool in a
    :class:`PairDistribution`). The pool has its own leaderboard slice (``pool:base``).

Strategies (see docs/active-sampling.md)
-----------------------------------------
``uniform``
    Every eligible pair equally likely.
``weighted``
    :func:`draw_pair`: models drawn by their models.yaml ``weight``.
``active``
    Models whose rank is least certain play more, each mostly against the opponents its order is
    least sure against. From the latest fit, for two models of the pool with ``d = theta_i - theta_j``
    and ``s^2 = var_i + var_j`` (sandwich variances):

    * the pair's weight ``w_ij = 2 Phi(-|d| / s) * (1 - 1 / sqrt(1 + s^2 p (1 - p)))`` (how unsure
      the order is, 1 for a coin flip and 0 for a settled order, times the share of the difference's
      standard error one more battle would remove, ``p = sigmoid(d)``);
    * model ``i``'s need ``E_i = sum_j (2 m_ij - 1) Phi(-|d_ij| / s_ij)``, where ``m_ij`` is the
      number of places between ``i`` and ``j`` in the fitted order of the pool's eligible models: the
      expected squared rank displacement of ``i`` (the squared number of models it is misordered
      with, if its misorders on one side are nested), which is what Spearman's correlation counts;
    * the pair's score ``E_i w_ij / W_i + E_j w_ij / W_j`` with ``W_i = sum_k w_ik``: the probability
      of drawing the unordered pair by picking a model in proportion to its need and then its
      opponent in proportion to the pair weights.

    Models the fit does not know, or that sit in a different connected group, count as unsettled
    (``d = 0``, ``s`` about 350 Elo, one place apart). A model below ``min_votes`` has its pairs'
    scores multiplied by ``1 + warmup_boost * (deficit_i + deficit_j)`` (a deficit is the missing
    share of ``min_votes``). Finally a share ``floor`` of the probability is spread uniformly, so
    every eligible pair of a pool with ``K`` pairs has probability at least ``floor / K`` within
    its pool. The table is computed for the pool's eligible models (cached until the next update).

The pool is chosen with probability proportional to its number of eligible pairs, whatever the
strategy, so the pools' shares of battles do not depend on the strategy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, ndtr

from arena.domain import PairCount, PairingStrategy, Pool
from arena.errors import NotEnoughModels
from arena.ratings import SCALE, RatingsResult
from arena.registry import ModelSpec

__all__ = [
    "DEFAULT_FLOOR",
    "DEFAULT_WARMUP_BOOST",
    "STRATEGIES",
    "NotEnoughModels",
    "PairDistribution",
    "PairSampler",
    "Pairing",
    "Strategy",
    "can_pair",
    "draw_pair",
    "ipw_weights",
    "unpairable",
]

Strategy = PairingStrategy
STRATEGIES: tuple[Strategy, ...] = ("uniform", "weighted", "active")
DEFAULT_FLOOR = 0.1
DEFAULT_WARMUP_BOOST = 4.0

# Standard error (theta units) assumed for a model the fit knows nothing about: about 350 Elo,
# wider than the spread of real leaderboards, so an unknown model's pairs count as unsettled.
_UNKNOWN_SD = 2.0

Float = NDArray[np.float64]


@dataclass(frozen=True)
class Pairing:
    model_a: str
    model_b: str
    pool: Pool
    propensity: float  # probability that this unordered pair was drawn
    # What uniform pairing would have given it (1 / eligible pairs of all pools): the battle's
    # inverse-propensity weight is ``uniform_propensity / propensity`` (see :func:`ipw_weights`).
    uniform_propensity: float | None = None


def _pools(models: Iterable[ModelSpec]) -> dict[Pool, list[ModelSpec]]:
    """Each pool's members (see the module docstring); a pool without a possible pair is left out."""
    models = list(models)
    chat = [m for m in models if m.kind == "chat"]
    base = [m for m in models if m.plays_continuation]
    pools: dict[Pool, list[ModelSpec]] = {}
    if len(chat) >= 2:
        pools["chat"] = chat
    if sum(m.kind == "base" for m in base) >= 1 and len(base) >= 2:
        pools["base"] = base
    return pools


def _pairs(pool: Pool, members: Sequence[ModelSpec]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The pool's possible pairs ``(members[iu[k]], members[ju[k]])``: in ``base``, only pairs with a base model."""
    iu, ju = _triu(len(members))
    if pool == "base":
        is_base = np.array([m.kind == "base" for m in members])
        keep = is_base[iu] | is_base[ju]
        iu, ju = iu[keep], ju[keep]
    return iu, ju


def _eligible_pools(models: Sequence[ModelSpec], available: frozenset[str] | None) -> dict[Pool, list[ModelSpec]]:
    eligible = [m for m in models if m.enabled and (available is None or m.name in available)]
    pools = _pools(eligible)
    if not pools:
        raise NotEnoughModels("fewer than two enabled, online models that can meet")
    return pools


def can_pair(models: Sequence[ModelSpec], available: frozenset[str] | None = None) -> bool:
    """Whether some pool has a possible pair among the enabled (and ``available``) models."""
    eligible = [m for m in models if m.enabled and (available is None or m.name in available)]
    return bool(_pools(eligible))


def unpairable(models: Sequence[ModelSpec]) -> list[str]:
    """Enabled models no pool can pair even with every model online (start-up warns about them).

    A lone base model with no chat model that completes raw text, or a lone chat model, is one.
    """
    enabled = [m for m in models if m.enabled]
    pools = _pools(enabled)
    playing: set[str] = set()
    for name, members in pools.items():
        iu, ju = _pairs(name, members)
        playing.update(members[int(i)].name for i in iu)
        playing.update(members[int(j)].name for j in ju)
    return [m.name for m in enabled if m.name not in playing]


def draw_pair(
    models: Sequence[ModelSpec],
    rng: np.random.Generator,
    *,
    available: frozenset[str] | None = None,
) -> Pairing:
    """Draw two distinct enabled models of one pool (see the module docstring).

    A pool is chosen with probability proportional to its number of possible pairs, then two
    models from it by weight (weights of 0 everywhere, or missing, mean uniform — never NaN);
    in the ``base`` pool a pair is drawn from the pairs with a base model in proportion to the same
    pair probabilities.

    Parameters
    ----------
    models:
        The roster.
    rng:
        Source of randomness (injected, so tests are reproducible).
    available:
        Names currently online; ``None`` means every enabled model.

    Raises
    ------
    NotEnoughModels
        When no pool has two models online.
    """
    pools = _eligible_pools(models, available)
    names = sorted(pools)
    sizes = np.array([_pairs(k, pools[k])[0].size for k in names], dtype=float)
    pool = names[int(rng.choice(len(names), p=sizes / sizes.sum()))]
    members = pools[pool]
    iu, ju = _pairs(pool, members)
    if iu.size < len(members) * (len(members) - 1) // 2:  # some pairs are not allowed: draw a pair
        q = _weighted_pair_probabilities(np.array([m.weight for m in members], dtype=float), iu, ju)
        q = q / q.sum() if q.sum() > 0 else np.full(iu.size, 1.0 / iu.size)
        c = int(rng.choice(iu.size, p=q))
        first, second = members[int(iu[c])].name, members[int(ju[c])].name
        if rng.random() < 0.5:
            first, second = second, first
        share = sizes[names.index(pool)] / sizes.sum()
        return Pairing(first, second, pool, float(q[c] * share), float(1.0 / sizes.sum()))
    weights = np.array([m.weight for m in members], dtype=float)
    if not np.isfinite(weights).all() or (weights > 0).sum() < 2:
        weights = np.ones(len(members))
    p = weights / weights.sum()
    i = int(rng.choice(len(members), p=p))
    rest = p.copy()
    rest[i] = 0.0
    j = int(rng.choice(len(members), p=rest / rest.sum()))
    # P({i, j}) = p_i p_j / (1 - p_i) + p_j p_i / (1 - p_j), times the pool's probability.
    propensity = p[i] * p[j] * (1 / (1 - p[i]) + 1 / (1 - p[j])) * sizes[names.index(pool)] / sizes.sum()
    first, second = members[i].name, members[j].name
    if rng.random() < 0.5:
        first, second = second, first
    return Pairing(first, second, pool, float(propensity), float(1.0 / sizes.sum()))


@dataclass(frozen=True)
class PairDistribution:
    """The probability of every eligible unordered pair under a sampler's current state.

    ``names[i]`` and ``names[j]`` meet with probability ``probability[i, j]`` (``i < j``; the
    matrix is upper triangular, zero across pools and on the diagonal, and sums to 1).
    """

    names: tuple[str, ...]
    pools: tuple[str, ...]  # the pool of each name
    probability: Float


@dataclass(frozen=True)
class _State:
    """What :meth:`PairSampler.update` learnt, replaced as a whole on each update."""

    index: dict[str, int]
    theta: Float  # NaN when unrated
    var: Float
    component: NDArray[np.int64]  # -1 when unrated
    votes: Float
    # Pair tables already computed from this state, by the tuple of eligible members of a pool.
    tables: dict[tuple[str, ...], Float]


@dataclass
class _Pool:
    name: Pool
    members: tuple[str, ...]
    iu: NDArray[np.int64]
    ju: NDArray[np.int64]
    q: Float  # probability of each (iu[k], ju[k]) within the pool


class PairSampler:
    """One pairing policy the service holds for its lifetime: ``update`` on new votes, ``draw`` per visitor.

    Parameters
    ----------
    strategy : {"uniform", "weighted", "active"}
        How pairs are chosen (see the module docstring).
    floor : float, optional
        Share of the probability spread uniformly over a pool's eligible pairs (``active`` only),
        so each of its ``K`` pairs is drawn with probability at least ``floor / K`` within the pool.
        Between 0 and 1; default 0.1.
    min_votes : int, optional
        A model with fewer votes gets the warm-up boost (``active`` only). Default 30.
    warmup_boost : float, optional
        A pair's score is multiplied by ``1 + warmup_boost * (deficit_i + deficit_j)``, where a
        model's deficit is the missing share of ``min_votes`` (1 with no votes, 0 from
        ``min_votes`` on). Default 4.

    Raises
    ------
    ValueError
        For an unknown strategy or a parameter out of range.

    Notes
    -----
    Before the first :meth:`update` (or with ``update(None, ...)``), ``active`` treats every pair
    as unsettled, which is uniform apart from the warm-up boost.
    """

    def __init__(
        self,
        strategy: Strategy = "active",
        *,
        floor: float = DEFAULT_FLOOR,
        min_votes: int = 30,
        warmup_boost: float = DEFAULT_WARMUP_BOOST,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}.")
        if not (math.isfinite(floor) and 0.0 <= floor <= 1.0):
            raise ValueError(f"floor must be between 0 and 1 (a share of the probability), not {floor!r}.")
        if min_votes < 0:
            raise ValueError(f"min_votes must be >= 0, not {min_votes!r}.")
        if not (math.isfinite(warmup_boost) and warmup_boost >= 0):
            raise ValueError(f"warmup_boost must be >= 0, not {warmup_boost!r}.")
        self.strategy: Strategy = strategy
        self.floor = float(floor)
        self.min_votes = int(min_votes)
        self.warmup_boost = float(warmup_boost)
        self._state = _State({}, np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0), {})

    # -- state -------------------------------------------------------------------------------------

    def update(self, result: RatingsResult | None, counts: Sequence[PairCount]) -> None:
        """Take in the latest fit and vote counts (the pair tables are then computed per pool on first use).

        Call it when votes arrive (e.g. after each refit of the leaderboard), not per request.

        Parameters
        ----------
        result : RatingsResult or None
            The latest fit (its sandwich intervals are used whatever ``interval`` it shows);
            ``None`` before the first fit.
        counts : sequence of PairCount
            The vote counts the fit was made from (for each model's number of votes).
        """
        names = set(result.models) if result is not None else set()
        for r in counts:
            if r.model_a != r.model_b:
                names.update((r.model_a, r.model_b))
        order = sorted(names)
        n = len(order)
        index = {m: i for i, m in enumerate(order)}
        battles = np.zeros((n, n))
        for r in counts:
            if r.model_a != r.model_b:
                i, j = index[r.model_a], index[r.model_b]
                battles[i, j] += r.count
                battles[j, i] += r.count
        theta = np.full(n, np.nan)
        var = np.full(n, _UNKNOWN_SD**2)
        component = np.full(n, -1, dtype=np.int64)
        votes = battles.sum(axis=1)
        if result is not None:
            for row in result.rows:
                i = index[row.model]
                sd = (row.sandwich_upper - row.sandwich_lower) / (2 * 1.959963984540054 * SCALE)
                if math.isfinite(row.rating) and math.isfinite(sd):
                    theta[i] = row.rating / SCALE
                    var[i] = min(sd * sd, _UNKNOWN_SD**2)
                    component[i] = row.component
        # One assignment, so a draw running meanwhile (the service updates from a worker thread)
        # sees either the old state or the new one, never a mix.
        self._state = _State(index, theta, var, component, votes, {})

    # -- drawing -----------------------------------------------------------------------------------

    def distribution(self, models: Sequence[ModelSpec], available: frozenset[str] | None = None) -> PairDistribution:
        """The exact probability of every eligible pair under the current state (``uniform``/``active``).

        For ``weighted`` the pair probabilities of :func:`draw_pair` are given.

        Raises
        ------
        NotEnoughModels
            When no pool has two models online.
        """
        pools = self._pool_tables(models, available)
        names: list[str] = []
        kinds: list[str] = []
        for p in pools:
            names.extend(p.members)
            kinds.extend([p.name] * len(p.members))
        prob = np.zeros((len(names), len(names)))
        total = sum(len(p.q) for p in pools)
        offset = 0
        for p in pools:
            prob[p.iu + offset, p.ju + offset] = p.q * len(p.q) / total
            offset += len(p.members)
        return PairDistribution(tuple(names), tuple(kinds), prob)

    def draw(
        self,
        models: Sequence[ModelSpec],
        rng: np.random.Generator,
        available: frozenset[str] | None = None,
    ) -> Pairing:
        """Draw the next pair, sides shuffled, with its exact propensity.

        Parameters
        ----------
        models:
            The roster (disabled models are skipped).
        rng:
            Source of randomness.
        available:
            Names currently online; ``None`` means every enabled model.

        Raises
        ------
        NotEnoughModels
            When no pool has two models online.
        """
        if self.strategy == "weighted":
            return draw_pair(models, rng, available=available)
        pools = self._pool_tables(models, available)
        sizes = np.array([len(p.q) for p in pools], dtype=np.float64)
        share = sizes / sizes.sum()
        k = int(rng.choice(len(pools), p=share)) if len(pools) > 1 else 0
        pool = pools[k]
        c = int(np.searchsorted(np.cumsum(pool.q), rng.random() * pool.q.sum(), side="right"))
        c = min(c, len(pool.q) - 1)
        first, second = pool.members[int(pool.iu[c])], pool.members[int(pool.ju[c])]
        if rng.random() < 0.5:
            first, second = second, first
        return Pairing(first, second, pool.name, float(share[k] * pool.q[c]), float(1.0 / sizes.sum()))

    def _pool_tables(self, models: Sequence[ModelSpec], available: frozenset[str] | None) -> list[_Pool]:
        pools = _eligible_pools(models, available)
        out = []
        for kind in sorted(pools):
            members = tuple(m.name for m in pools[kind])
            iu, ju = _pairs(kind, pools[kind])
            if self.strategy == "uniform":
                q = np.full(iu.size, 1.0 / iu.size)
            elif self.strategy == "weighted":
                q = _weighted_pair_probabilities(np.array([m.weight for m in pools[kind]], dtype=float), iu, ju)
                q = q / q.sum() if q.sum() > 0 else np.full(iu.size, 1.0 / iu.size)
            else:
                q = self._active_q(members, iu, ju)
            out.append(_Pool(kind, members, iu, ju, q))
        return out

    def _active_q(self, members: tuple[str, ...], iu: NDArray[np.int64], ju: NDArray[np.int64]) -> Float:
        state = self._state
        table = state.tables.get(members)
        if table is None:
            idx = [state.index.get(m, -1) for m in members]

            def pick(values: Float, fill: float) -> Float:
                # A model the last update did not know (added since) is unrated and unsettled.
                return np.array([values[i] if i >= 0 else fill for i in idx], dtype=np.float64)

            theta, var = pick(state.theta, np.nan), pick(state.var, _UNKNOWN_SD**2)
            comp = np.array([state.component[i] if i >= 0 else -1 for i in idx], dtype=np.int64)
            full = _active_scores(theta, var, comp, pick(state.votes, 0.0), self.min_votes, self.warmup_boost)
            table = full[iu, ju]
            # Several threads may compute the same table; they store equal values.
            state.tables[members] = table
        scores = table
        total = scores.sum()
        uniform = np.full(iu.size, 1.0 / iu.size)
        if not (np.isfinite(total) and total > 0):
            return uniform
        return np.asarray(self.floor * uniform + (1.0 - self.floor) * scores / total, dtype=np.float64)


_TRIU: dict[int, tuple[NDArray[np.int64], NDArray[np.int64]]] = {}


def _triu(n: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    if n not in _TRIU:
        iu, ju = np.triu_indices(n, k=1)
        _TRIU[n] = (iu.astype(np.int64), ju.astype(np.int64))
    return _TRIU[n]


def _weighted_pair_probabilities(weights: Float, iu: NDArray[np.int64], ju: NDArray[np.int64]) -> Float:
    """Pair probabilities of :func:`draw_pair` within one pool."""
    if not np.isfinite(weights).all() or (weights > 0).sum() < 2:
        weights = np.ones(weights.size)
    p = weights / weights.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        q = p[iu] * p[ju] * (1 / (1 - p[iu]) + 1 / (1 - p[ju]))
    return np.asarray(np.nan_to_num(q), dtype=np.float64)


def _active_scores(
    theta: Float,
    var: Float,
    component: NDArray[np.int64],
    votes: Float,
    min_votes: int,
    warmup_boost: float,
) -> Float:
    """Symmetric matrix of pair scores of one pool's models (see the module docstring); zero on the diagonal."""
    known = np.isfinite(theta) & (component >= 0)
    comparable = known[:, None] & known[None, :] & (component[:, None] == component[None, :])
    th = np.where(known, theta, 0.0)
    d = np.where(comparable, th[:, None] - th[None, :], 0.0)
    p = expit(d)
    info = p * (1.0 - p)
    s2 = np.where(comparable, var[:, None] + var[None, :], 2 * _UNKNOWN_SD**2)
    s = np.sqrt(np.maximum(s2, 1e-12))
    misorder = ndtr(-np.abs(d) / s)
    weight = 2.0 * misorder * (1.0 - 1.0 / np.sqrt(1.0 + s2 * info))
    np.fill_diagonal(weight, 0.0)
    np.fill_diagonal(misorder, 0.0)
    # Places between two models in the fitted order (ties broken by position); 1 when not comparable.
    place = np.argsort(np.argsort(np.where(known, th, np.inf), kind="stable"), kind="stable")
    gap = np.where(comparable, np.abs(place[:, None] - place[None, :]), 1).astype(np.float64)
    need = ((2.0 * gap - 1.0) * misorder).sum(axis=1)
    row = weight.sum(axis=1)
    share = np.divide(need, row, out=np.zeros_like(need), where=row > 0)
    scores = weight * (share[:, None] + share[None, :])
    if min_votes > 0 and warmup_boost > 0:
        deficit = np.clip(1.0 - votes / min_votes, 0.0, 1.0)
        scores = scores * (1.0 + warmup_boost * (deficit[:, None] + deficit[None, :]))
    np.fill_diagonal(scores, 0.0)
    return np.asarray(scores, dtype=np.float64)


def ipw_weights(propensity: Float, uniform_propensity: Float) -> Float:
    """Inverse-propensity weights of battles, normalised so a uniformly drawn battle weighs 1.

    ``w = uniform_propensity / propensity``: a battle whose pair was drawn twice as often as
    uniform pairing would have drawn it counts half. Weighted counts ``sum(w)`` per (pair,
    outcome) reproduce, in expectation, the counts uniform pairing would have collected.

    Parameters
    ----------
    propensity : array of float
        The stored ``Pairing.propensity`` of each battle (> 0).
    uniform_propensity : array of float
        ``1 / (number of eligible pairs)`` at the time of each battle.

    Raises
    ------
    ValueError
        If a propensity is not in (0, 1].
    """
    propensity = np.asarray(propensity, dtype=np.float64)
    if not np.all((propensity > 0) & (propensity <= 1)):
        raise ValueError("every propensity must be in (0, 1]; battles stored without one cannot be reweighted.")
    return np.asarray(np.asarray(uniform_propensity, dtype=np.float64) / propensity, dtype=np.float64)
