"""Bradley-Terry ratings, confidence intervals and ranks from aggregated vote counts (pure numpy/choix).

The input is what the database returns from one GROUP BY: ``PairCount`` rows
``(model_a, model_b, winner, count)``. Everything here works on count matrices, so the cost
does not depend on the number of battles: one fit is one ``choix.ilsr_pairwise_dense`` call.

Model and scale
---------------
Bradley-Terry: ``P(i beats j) = 1 / (1 + exp(theta_j - theta_i))``. Ratings are on the
Elo-like scale used by Chatbot Arena, ``rating = 1000 + 400 / ln(10) * theta``, with the mean
rating of the rated models of each connected group equal to 1000 (or shifted so that an
``anchor`` model has a chosen rating).

Ties (``tie_policy``)
---------------------
``"half"`` (default, the Chatbot Arena convention): a tie and a "both bad" tie count as half a
win each way. This is a quasi-likelihood (a tie is not a Bernoulli outcome), which is why the
sandwich interval below uses the empirical score covariance rather than the model's Fisher
information. ``"exclude"``: ties and both-bad ties are dropped from the fit; they are still
counted in each model's votes and in the battle-count matrix.

Regularisation (``alpha``) and models that never lost
-----------------------------------------------------
choix's ``alpha`` adds ``alpha`` to every transition rate of the LSR Markov chain. At the fixed
point of ILSR this is exactly the maximum of the penalised log-likelihood
``l(theta) - alpha * n * sum_i (w_i - log w_i)`` with ``w_i = exp(theta_i)`` normalised so that
``sum_i w_i = n`` (``n`` = models in the group): a weak Gamma-type pull of every weight towards 1.

With ``alpha = 0`` the maximum-likelihood estimate exists only when the directed "who beat
whom" graph of a group is strongly connected. When a model never lost (or never won), its exact
rating is infinite. Rather than invent wins, such a group is fitted with
``alpha = FALLBACK_ALPHA`` (0.01): the smallest change that makes the estimate finite, which keeps
the unbeaten model on top, leaves the other models almost untouched, and is said in ``notes``.
Its intervals are then dominated by that pull; the bootstrap interval stays wide and honest, the
sandwich interval is narrower than the evidence warrants (also said in ``notes``). A fit that does
not converge is retried with a larger alpha (``ALPHA_LADDER``), and the result says so.

Models with no (counted) battles are not fitted at all: choix would rate them spuriously high.
They are listed in ``RatingsResult.unrated``.

Groups that cannot be compared
------------------------------
If the comparison graph is not connected, each connected group ("component") is fitted on its
own; ratings in different groups are not comparable (each group has mean 1000). Every row carries
its ``component`` id, ``RatingsResult.components`` lists the members, and ranks are computed
within a group.

Intervals
---------
Two 95% intervals are always computed; ``interval`` picks the one shown as
``ci_lower``/``ci_upper`` and used for ranks.

* Bootstrap over battles: each round draws ``n_battles`` battles with replacement, which on
  aggregated data is one multinomial draw over the count cells (pair, outcome); the fit is repeated
  and the 2.5th/97.5th percentiles of the (re-centred) ratings are taken.
* Sandwich (robust): with ``s_b = (y_b - p_ij)(e_i - e_j)`` the score of one battle between i and j
  (``y_b`` in {1, 1/2, 0}), the observed information is the weighted graph Laplacian
  ``H = sum_{i<j} n_ij p_ij (1 - p_ij) (e_i - e_j)(e_i - e_j)^T`` and the empirical score
  covariance is ``B = sum_b s_b s_b^T``, which per pair only needs the cell counts:
  ``m_ij = W_ij (1 - p_ij)^2 + L_ij p_ij^2 + T_ij (1/2 - p_ij)^2``. Both annihilate the all-ones
  vector (adding a constant to theta changes nothing), so on the sum-to-zero subspace
  ``theta_hat - theta ~= H^+ s`` with ``H^+ = (H + 11^T/n)^-1 - 11^T/n`` the pseudo-inverse, and
  ``Var(theta_hat) = H^+ B H^+``. With ``alpha > 0`` the penalised information
  ``H + alpha n diag(w)`` is invertible, and its inverse is used, followed by centring
  ``C V C`` with ``C = I - 11^T/n``. The interval is ``rating +/- 1.96 * SCALE * sqrt(V_ii)``;
  with an anchor it is the variance of ``theta_i - theta_anchor``.

What the intervals cover: the estimand is each model's true strength relative to the mean
strength of the rated models in its group (or relative to the anchor), because that is the only
thing the data identify.

Ranks and preliminary ratings
-----------------------------
``rank = 1 + number of ranked models in the same group whose lower bound is above this model's upper
bound``: models whose intervals overlap share a rank. A preliminary model (below) gets no rank
(``None``, shown as "—"), does not count against the others (its votes cannot carry one) and is
listed after the ranked models, whatever its rating. In a
group that is not strongly connected (exact ratings infinite), a model of another strongly connected
part counts as above only if it also beat this one head to head significantly (``_may_outrank``):
there the gap between the parts, and so the intervals, come from the alpha pull. A model with fewer
than ``min_votes`` battles (default ``DEFAULT_MIN_VOTES`` = 30) is marked ``preliminary``: below
that, a 95% interval is about +/- 125 points wide even against equal opponents (``1.96 * SCALE * 2 /
sqrt(30)``), and the normal approximation behind the sandwich interval and the percentile bootstrap
both start to under-cover.

Few votes
---------
With very few votes the bootstrap can be degenerate: after one battle (or three alike) every
resample is the same data, so its percentile interval has zero width. No interval is therefore
narrower than what the votes could support at best (``_least_sd``): without ties, by the
Cramer-Rao bound a rating from ``v`` votes has a standard deviation of at least ``f * 2 / sqrt(v)``
in theta (``f = (k - 1) / k`` in a group of k models, 1 against an anchor), i.e. a 95% half-width of
at least ``1.96 * SCALE * f * 2 / sqrt(v)`` points (about +/- 340 after one vote between two models).
A tie counted as half a win scores exactly what an even pair expects, so with a tie share ``t`` the
same evenly played design gives ``f * 2 * sqrt(1 - t) / sqrt(v)``; the floor uses that, with ``t``
shrunk to ``ties / (v + 2)``. (The floor without the tie term replaced the fitted width of 51 of 52
models on a real LMArena board with 27.5% ties, 1.15 times wider, and covered 97.4% at 30% ties in
tests/test_ratings.py; with it, coverage is 94-96% at 0%, 15% and 30% ties.) Both intervals are
widened to that when narrower, and ``notes`` names the models whose shown interval was narrower by
a fifth or more. The bound is attained by an evenly played, complete design of equal models, so
in a close arena the fitted intervals sit just above it and a bootstrap interval may dip under it
by Monte Carlo noise (mended without a note). It is a floor, not a cure: with a handful of votes
the estimate itself is far off, and coverage stays below 95% (docs/ratings.md gives measured
figures), which is why those ratings are marked preliminary and get no rank.

Level, scale and policies
-------------------------
``level`` (default 0.95) sets the confidence level of both intervals; ``scale`` the points per
unit of log-odds (default ``SCALE``); ``bothbad_policy`` treats "both bad" votes apart from ties
(default: as ``tie_policy``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import bdtrc, expit, ndtri

from arena.domain import WINNERS, IntervalMethod, PairCount, TiePolicy
from arena.messages import Message

if TYPE_CHECKING:
    from scipy import sparse

__all__ = [
    "ALPHA_LADDER",
    "BASE_RATING",
    "DEFAULT_LEVEL",
    "DEFAULT_MIN_VOTES",
    "FALLBACK_ALPHA",
    "INTERVAL_METHODS",
    "SCALE",
    "TIE_POLICIES",
    "IntervalMethod",
    "ModelRating",
    "RatingsResult",
    "TiePolicy",
    "fit_ratings",
]

TIE_POLICIES: tuple[TiePolicy, ...] = ("half", "exclude")
INTERVAL_METHODS: tuple[IntervalMethod, ...] = ("bootstrap", "sandwich")

SCALE = 400.0 / math.log(10.0)
BASE_RATING = 1000.0
DEFAULT_MIN_VOTES = 30
FALLBACK_ALPHA = 0.01
ALPHA_LADDER: tuple[float, ...] = (0.01, 0.1, 1.0)
Z95 = 1.959963984540054
DEFAULT_LEVEL = 0.95

# The main fit is held to a tight tolerance so ratings are exact to ~1e-7 points; bootstrap rounds
# use choix's default, far below their own sampling noise.
_FIT_TOL = 1e-11
_BOOT_TOL = 1e-7
_MAX_ITER = 2000
_BOOT_CHUNK = 200

# Outcome kinds of one cell, seen from the pair (i, j) with i < j.
_I_WINS, _J_WINS, _TIE, _BOTHBAD = 0, 1, 2, 3

Float = NDArray[np.float64]


@dataclass(frozen=True)
class ModelRating:
    """One rated model: rating, both 95% intervals, rank and its record."""

    model: str
    rating: float
    ci_lower: float  # the interval chosen by ``interval``
    ci_upper: float
    bootstrap_lower: float  # NaN when ``bootstrap_rounds == 0``
    bootstrap_upper: float
    sandwich_lower: float
    sandwich_upper: float
    rank: int | None  # within its component; None ("—") for a preliminary model
    votes: int  # every battle it took part in, ties included
    wins: int
    losses: int
    ties: int  # "tie" only
    bothbad: int  # "tie (bothbad)" only
    preliminary: bool  # fewer than ``min_votes`` votes
    component: int  # ratings are comparable only within one component

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (NaN and infinities become ``None``)."""
        return {k: _json_number(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True, eq=False)
class RatingsResult:
    """The leaderboard and everything needed to explain it.

    ``models`` orders the matrices: the rows' models (rating descending), then the unrated ones.
    ``win_rate[i, j]`` is i's observed score against j (ties count half, NaN without battles),
    ``battle_count[i, j]`` every battle between them (ties included, symmetric) and
    ``predicted[i, j]`` the fitted P(i beats j) (NaN across components or for unrated models).
    The matrices are read-only.
    """

    rows: tuple[ModelRating, ...]
    models: tuple[str, ...]
    unrated: tuple[str, ...]
    n_battles: int
    tie_policy: TiePolicy
    alpha: float
    alpha_used: float  # the largest alpha any component needed
    interval_method: IntervalMethod
    bootstrap_rounds: int
    min_votes: int
    anchor: tuple[str, float] | None
    components: tuple[tuple[str, ...], ...]
    notes: tuple[Message, ...]  # why the table looks as it does; str(note) is English
    win_rate: Float = field(repr=False)
    battle_count: NDArray[np.int64] = field(repr=False)
    predicted: Float = field(repr=False)
    bothbad_policy: TiePolicy = "half"
    level: float = DEFAULT_LEVEL
    scale: float = SCALE

    def row(self, model: str) -> ModelRating:
        """The row of ``model``.

        Raises
        ------
        KeyError
            If the model is unrated or unknown; see ``unrated`` and ``models``.
        """
        for r in self.rows:
            if r.model == model:
                return r
        hint = "it has no counted battles" if model in self.unrated else "it is not among the models"
        raise KeyError(f"{model!r} has no rating: {hint}.")

    def ratings(self) -> dict[str, float]:
        """``{model: rating}`` for the rated models."""
        return {r.model: r.rating for r in self.rows}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready mapping of the whole result (NaN and infinities become ``None``)."""

        def matrix(m: NDArray[Any]) -> list[list[Any]]:
            return [[_json_number(x.item()) for x in row] for row in m]

        return {
            "rows": [r.as_dict() for r in self.rows],
            "models": list(self.models),
            "unrated": list(self.unrated),
            "n_battles": self.n_battles,
            "tie_policy": self.tie_policy,
            "bothbad_policy": self.bothbad_policy,
            "level": self.level,
            "scale": self.scale,
            "alpha": self.alpha,
            "alpha_used": self.alpha_used,
            "interval_method": self.interval_method,
            "bootstrap_rounds": self.bootstrap_rounds,
            "min_votes": self.min_votes,
            "anchor": list(self.anchor) if self.anchor is not None else None,
            "components": [list(c) for c in self.components],
            "notes": [str(note) for note in self.notes],
            "win_rate": matrix(self.win_rate),
            "battle_count": matrix(self.battle_count),
            "predicted": matrix(self.predicted),
        }


def fit_ratings(
    counts: Sequence[PairCount],
    *,
    models: Sequence[str] | None = None,
    tie_policy: TiePolicy = "half",
    alpha: float = 0.0,
    interval: IntervalMethod = "bootstrap",
    bootstrap_rounds: int = 1000,
    seed: int | np.random.Generator = 0,
    min_votes: int = DEFAULT_MIN_VOTES,
    anchor: tuple[str, float] | None = None,
    weights: Sequence[float] | None = None,
    bothbad_policy: TiePolicy | None = None,
    level: float = DEFAULT_LEVEL,
    scale: float = SCALE,
) -> RatingsResult:
    """Fit Bradley-Terry ratings with 95% intervals and honest ranks from aggregated counts.

    Parameters
    ----------
    counts : sequence of PairCount
        ``(model_a, model_b, winner, count)`` rows; order and duplicates do not matter (duplicate
        rows add up), nor does which model was on side A. Rows of a model against itself carry
        no information and are ignored (and noted).
    models : sequence of str, optional
        The models to show. Battles involving any other model are ignored; listed models without
        battles are reported as unrated. Default: every model in ``counts``.
    tie_policy : {"half", "exclude"}, optional
        ``"half"``: ties and both-bad ties count half a win each way (default). ``"exclude"``:
        they are left out of the fit.
    alpha : float, optional
        choix regularisation (see the module docstring). Default 0: the exact MLE.
    interval : {"bootstrap", "sandwich"}, optional
        Which interval fills ``ci_lower``/``ci_upper`` and decides ranks. Both are always
        computed (the bootstrap one only when ``bootstrap_rounds > 0``).
    bootstrap_rounds : int, optional
        Bootstrap rounds (default 1000). 0 skips the bootstrap.
    seed : int or numpy.random.Generator, optional
        Seed or generator for the bootstrap; the same seed gives the same intervals.
    min_votes : int, optional
        Models with fewer votes are marked ``preliminary`` (default 30).
    anchor : (str, float), optional
        Pin this model to this rating; its component is shifted accordingly and its intervals
        become intervals of the difference to the anchor.
    bothbad_policy : {"half", "exclude"}, optional
        The same choice for "both bad" votes (``tie (bothbad)``) on their own; default: as
        ``tie_policy``.
    level : float, optional
        Confidence level of the intervals, in (0, 1) (default 0.95).
    scale : float, optional
        Rating points per unit of log-odds (default ``SCALE`` = 400 / ln 10, the Elo scale:
        400 points are odds of 10 to 1).
    weights : sequence of float, optional
        Inverse-propensity weighting (see "Weighted fits" below): ``weights[k]`` is the sum of
        the weights of the ``counts[k].count`` battles of row ``k`` (e.g. ``SUM(weight)`` next to
        ``COUNT(*)`` in the GROUP BY). Only the ratios matter: multiplying every weight by the
        same number changes nothing. Default: every battle weighs 1.

    Returns
    -------
    RatingsResult
        Rows sorted by rating, descending. No votes or a single model give a result with no rows,
        never an exception.

    Raises
    ------
    ValueError
        If a row has an unknown winner or a negative or non-integer count, if a parameter is out
        of range, or if the anchor model is unknown or unrated. The message says what to change.
    RuntimeError
        If a component cannot be fitted even with the largest alpha in ``ALPHA_LADDER``
        (this should not happen for valid counts; please report the counts).

    Notes
    -----
    Weighted fits: with ``weights`` the likelihood, the sandwich "bread" ``H`` and the bootstrap
    use the weighted counts, so a battle whose pair was drawn with propensity ``pi`` and weight
    ``(1/K) / pi`` counts as much as the battles uniform pairing would have collected in its place
    (:func:`arena.pairing.ipw_weights`). The sandwich "meat" needs the sum of squared weights of a
    cell; it is taken as ``weight_sum**2 / count``: exact when the battles of one cell share a
    weight, otherwise too small (by Cauchy-Schwarz), so intervals come out somewhat narrow when a
    cell's weights differ widely. Records (votes, wins, ``win_rate``,
    ``battle_count``) stay raw counts.
    """
    _check_parameters(tie_policy, alpha, interval, bootstrap_rounds, min_votes)
    bothbad_policy = _check_shape_parameters(tie_policy, bothbad_policy, level, scale)
    z = float(ndtri(0.5 + float(level) / 2.0))
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    notes: list[Message] = []
    raw = _tally(counts, models, notes, weights)
    # Excluded kinds keep their counts (votes, records) but weigh nothing in the fit; what is left
    # is fitted with the "half" rule, so each kind's policy applies on its own.
    tally = _policy_tally(raw, tie_policy, bothbad_policy)
    requested_policy = tie_policy
    tie_policy = "half"
    names = tally.names
    n_all = len(names)

    y = _effective_wins(tally.wins_w, tally.ties_w, tally.bothbad_w, tie_policy)
    played = (y + y.T) > 0
    rated_mask: NDArray[np.bool_] = np.asarray(played.any(axis=1), dtype=bool)
    rated_idx = np.flatnonzero(rated_mask)
    unrated = [names[i] for i in np.flatnonzero(~rated_mask)]
    if unrated:
        why = "note.unrated_no_battles" if requested_policy == "half" else "note.unrated_no_decisive"
        notes.append(Message(why, {"models": ", ".join(unrated)}))

    groups = _components(played, rated_idx)
    if len(groups) > 1:
        # Numbered from 1, as the group column of the tables and ratings.csv.
        listing = tuple(
            Message("note_part.group", {"k": k + 1, "models": ", ".join(names[i] for i in g)})
            for k, g in enumerate(groups)
        )
        notes.append(Message("note.groups", {"n": len(groups), "listing": listing}))

    theta, component_of, alphas, fit_notes = _fit_components(y, groups, alpha, names)
    notes.extend(fit_notes)

    anchor_idx = _anchor_index(anchor, names, rated_mask)
    if anchor is not None:
        k = int(component_of[anchor_idx])
        if len(groups) > 1:
            notes.append(Message("note.anchor_group", {"model": anchor[0], "k": k + 1}))

    sandwich_sd = _sandwich_sds(tally, groups, theta, alphas, anchor_idx, tie_policy)
    for k, g in enumerate(groups):
        if alphas[k] > 0 and _one_sided(y[np.ix_(g, g)]):
            notes.append(Message("note.sandwich_narrow", {"k": k + 1, "alpha": f"{alphas[k]:g}"}))

    ratings = _component_ratings(theta, groups, anchor_idx, anchor, scale)

    boot_lo = np.full(n_all, np.nan)
    boot_hi = np.full(n_all, np.nan)
    if bootstrap_rounds > 0 and groups:
        lo, hi, fallback_rounds = _bootstrap(
            tally,
            tie_policy=tie_policy,
            groups=groups,
            theta=theta,
            alphas=alphas,
            alpha=alpha,
            anchor_idx=anchor_idx,
            anchor=anchor,
            rounds=bootstrap_rounds,
            rng=rng,
            level=level,
            scale=scale,
        )
        boot_lo, boot_hi = lo, hi
        if fallback_rounds:
            notes.append(
                Message(
                    "note.bootstrap_fallback",
                    {"n": fallback_rounds, "rounds": bootstrap_rounds, "alpha": f"{FALLBACK_ALPHA:g}"},
                )
            )

    sand_lo = ratings - z * scale * sandwich_sd
    sand_hi = ratings + z * scale * sandwich_sd
    votes = tally.wins.sum(1) + tally.wins.sum(0) + tally.ties.sum(1) + tally.bothbad.sum(1)
    # No interval may claim more certainty than a model's votes can carry (see "Few votes" above).
    fitted_votes, tied_votes = _fitted_votes(tally)
    half = z * scale * _least_sd(fitted_votes, tied_votes, groups, anchor_idx)
    widened = {
        "bootstrap": _widen(boot_lo, boot_hi, ratings, half, rated_idx),
        "sandwich": _widen(sand_lo, sand_hi, ratings, half, rated_idx),
    }[interval]
    if widened:
        notes.append(Message("note.widened", {"models": ", ".join(sorted(names[i] for i in widened))}))
    shown_lo, shown_hi = (boot_lo, boot_hi) if interval == "bootstrap" else (sand_lo, sand_hi)
    may_outrank = _may_outrank(y, tally.wins, groups)
    # A preliminary model gets no rank ("—"), nor does it push anyone else down.
    settled = votes >= min_votes
    ranked_groups = [g[settled[g]] for g in groups]
    ranks = _ranks(shown_lo, shown_hi, ranked_groups, may_outrank)
    # Only a group that is not strongly connected can have a rank the head-to-head rule held back.
    by_intervals = ranks if may_outrank.all() else _ranks(shown_lo, shown_hi, ranked_groups)
    for k, g in enumerate(ranked_groups):
        held = [names[i] for i in g if ranks[i] != by_intervals[i]]
        if held:
            notes.append(Message("note.ranks_shared", {"models": ", ".join(sorted(held)), "alpha": f"{alphas[k]:g}"}))

    # Ranked models first, then the preliminary ones: a 2-vote newcomer with a lucky rating must not
    # head the table with its "—" (seen on real data).
    order = sorted(rated_idx.tolist(), key=lambda i: (not settled[i], -ratings[i], names[i]))
    rows = _rating_rows(
        order,
        tally,
        ratings=ratings,
        shown=(shown_lo, shown_hi),
        bootstrap=(boot_lo, boot_hi),
        sandwich=(sand_lo, sand_hi),
        ranks=ranks,
        votes=votes,
        min_votes=min_votes,
        component_of=component_of,
    )
    prelim = [r.model for r in rows if r.preliminary]
    if prelim:
        notes.append(Message("note.preliminary", {"n": min_votes, "models": ", ".join(prelim)}))
    if tally.n_battles == 0:
        notes.append(Message("note.no_votes"))
    elif not rows:
        notes.append(Message("note.nothing_to_rate"))

    perm = np.array(order + np.flatnonzero(~rated_mask).tolist(), dtype=np.int64)
    matrices = _matrices(tally, theta, component_of, perm)
    return RatingsResult(
        rows=rows,
        models=tuple(names[i] for i in perm),
        unrated=tuple(unrated),
        n_battles=tally.n_battles,
        tie_policy=requested_policy,
        bothbad_policy=bothbad_policy,
        level=float(level),
        scale=float(scale),
        alpha=float(alpha),
        alpha_used=max(alphas, default=float(alpha)),
        interval_method=interval,
        bootstrap_rounds=bootstrap_rounds,
        min_votes=min_votes,
        anchor=(anchor[0], float(anchor[1])) if anchor is not None else None,
        components=tuple(tuple(names[i] for i in sorted(g, key=lambda i: (-ratings[i], names[i]))) for g in groups),
        notes=tuple(notes),
        win_rate=matrices[0],
        battle_count=matrices[1],
        predicted=matrices[2],
    )


def _check_shape_parameters(
    tie_policy: TiePolicy, bothbad_policy: TiePolicy | None, level: float, scale: float
) -> TiePolicy:
    """Check ``bothbad_policy`` (returned, ``tie_policy`` when None), ``level`` and ``scale``."""
    if bothbad_policy is None:
        bothbad_policy = tie_policy
    if bothbad_policy not in TIE_POLICIES:
        raise ValueError(f"bothbad_policy must be one of {TIE_POLICIES}, not {bothbad_policy!r}.")
    if not (isinstance(level, float | int) and 0.5 <= float(level) < 1.0):
        raise ValueError(f"level must be a number in [0.5, 1), e.g. 0.95, not {level!r}.")
    if not (isinstance(scale, float | int) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number of points per log-odds unit, not {scale!r}.")
    return bothbad_policy


def _fit_components(
    y: Float, groups: list[NDArray[np.int64]], alpha: float, names: Sequence[str]
) -> tuple[Float, NDArray[np.int64], list[float], list[Message]]:
    """Fit each connected group on its own: strengths (NaN outside any group), each model's group
    (-1 outside any), the alpha each group needed, and the notes of the groups that needed one."""
    n_all = len(names)
    theta = np.full(n_all, np.nan)
    component_of = np.full(n_all, -1, dtype=np.int64)
    alphas: list[float] = []
    notes: list[Message] = []
    for k, g in enumerate(groups):
        component_of[g] = k
        th, a_used, group_notes = _fit_group(y[np.ix_(g, g)], alpha, [names[i] for i in g])
        notes.extend(group_notes)
        alphas.append(a_used)
        theta[g] = th
    return theta, component_of, alphas, notes


def _sandwich_sds(
    tally: _Tally,
    groups: list[NDArray[np.int64]],
    theta: Float,
    alphas: list[float],
    anchor_idx: int | None,
    tie_policy: TiePolicy,
) -> Float:
    """Each rated model's sandwich standard error (theta units; against the anchor in its group)."""
    sandwich_sd = np.full(theta.shape[0], np.nan)
    for k, g in enumerate(groups):
        var = _sandwich_covariance(theta[g], *_sandwich_inputs(tally, g), tie_policy, alphas[k])
        sandwich_sd[g] = np.sqrt(np.maximum(_contrast_variances(var, _local_index(g, anchor_idx)), 0.0))
    return sandwich_sd


def _component_ratings(
    theta: Float,
    groups: list[NDArray[np.int64]],
    anchor_idx: int | None,
    anchor: tuple[str, float] | None,
    scale: float,
) -> Float:
    """Strengths as ratings, each group centred on 1000 (or pinned to the anchor, in its group)."""
    ratings = np.full(theta.shape[0], np.nan)
    for g in groups:
        ratings[g] = _to_rating(theta[g], _local_index(g, anchor_idx), anchor, scale)
    return ratings


def _rating_rows(
    order: list[int],
    tally: _Tally,
    *,
    ratings: Float,
    shown: tuple[Float, Float],
    bootstrap: tuple[Float, Float],
    sandwich: tuple[Float, Float],
    ranks: NDArray[np.int64],
    votes: NDArray[np.int64],
    min_votes: int,
    component_of: NDArray[np.int64],
) -> tuple[ModelRating, ...]:
    """One table row per rated model, in ``order``; a preliminary model (fewer votes) has no rank."""
    return tuple(
        ModelRating(
            model=tally.names[i],
            rating=float(ratings[i]),
            ci_lower=float(shown[0][i]),
            ci_upper=float(shown[1][i]),
            bootstrap_lower=float(bootstrap[0][i]),
            bootstrap_upper=float(bootstrap[1][i]),
            sandwich_lower=float(sandwich[0][i]),
            sandwich_upper=float(sandwich[1][i]),
            rank=int(ranks[i]) if votes[i] >= min_votes else None,
            votes=int(votes[i]),
            wins=int(tally.wins[i].sum()),
            losses=int(tally.wins[:, i].sum()),
            ties=int(tally.ties[i].sum()),
            bothbad=int(tally.bothbad[i].sum()),
            preliminary=bool(votes[i] < min_votes),
            component=int(component_of[i]),
        )
        for i in order
    )


# --- counting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tally:
    names: tuple[str, ...]
    wins: NDArray[np.int64]  # wins[i, j]: i beat j
    ties: NDArray[np.int64]  # symmetric
    bothbad: NDArray[np.int64]  # symmetric
    n_battles: int
    # The same cells as weight sums (equal to the counts when the fit is unweighted).
    wins_w: Float
    ties_w: Float
    bothbad_w: Float


def _check_parameters(tie_policy: str, alpha: float, interval: str, rounds: int, min_votes: int) -> None:
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {TIE_POLICIES}, not {tie_policy!r}.")
    if interval not in INTERVAL_METHODS:
        raise ValueError(f"interval must be one of {INTERVAL_METHODS}, not {interval!r}.")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0 (0 gives the exact MLE), not {alpha!r}.")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"bootstrap_rounds must be an integer >= 0, not {rounds!r}.")
    if interval == "bootstrap" and rounds == 0:
        raise ValueError("interval='bootstrap' needs bootstrap_rounds > 0; pass interval='sandwich' to skip it.")
    if isinstance(min_votes, bool) or not isinstance(min_votes, int) or min_votes < 0:
        raise ValueError(f"min_votes must be an integer >= 0, not {min_votes!r}.")


def _tally(
    counts: Sequence[PairCount],
    models: Sequence[str] | None,
    notes: list[Message],
    weights: Sequence[float] | None = None,
) -> _Tally:
    if weights is not None and len(weights) != len(counts):
        raise ValueError(
            f"weights has {len(weights)} entries for {len(counts)} count rows; pass one weight sum per row."
        )
    if models is not None:
        names = list(dict.fromkeys(models))
        if len(names) != len(models):
            raise ValueError("models lists a model more than once; pass each name once.")
    else:
        names = sorted({r.model_a for r in counts} | {r.model_b for r in counts})
    index = {m: i for i, m in enumerate(names)}
    n = len(names)
    wins = np.zeros((n, n), dtype=np.int64)
    ties = np.zeros((n, n), dtype=np.int64)
    bothbad = np.zeros((n, n), dtype=np.int64)
    cells = (np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n)))  # weight sums of wins, ties, bothbad
    self_battles = 0
    for k, r in enumerate(counts):
        c = r.count
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 0:
            raise ValueError(
                f"count must be a non-negative integer, got {c!r} for {r.model_a} vs {r.model_b}; "
                "pass the raw COUNT(*) of the GROUP BY."
            )
        if r.winner not in WINNERS:
            raise ValueError(f"winner must be one of {WINNERS}, got {r.winner!r} for {r.model_a} vs {r.model_b}.")
        if r.model_a not in index or r.model_b not in index:
            continue
        if r.model_a == r.model_b:
            self_battles += int(c)
            continue
        w = float(c) if weights is None else _weight(weights[k], int(c), r)
        a, b = index[r.model_a], index[r.model_b]
        if r.winner == "model_a":
            wins[a, b] += c
            cells[0][a, b] += w
        elif r.winner == "model_b":
            wins[b, a] += c
            cells[0][b, a] += w
        else:
            tied, tied_w = (ties, cells[1]) if r.winner == "tie" else (bothbad, cells[2])
            tied[a, b] += c
            tied[b, a] += c
            tied_w[a, b] += w
            tied_w[b, a] += w
    if self_battles:
        notes.append(Message("note.self_battles", {"n": self_battles}))
    n_battles = int(wins.sum() + np.triu(ties).sum() + np.triu(bothbad).sum())
    return _Tally(tuple(names), wins, ties, bothbad, n_battles, *cells)


def _weight(value: float, count: int, row: PairCount) -> float:
    w = float(value)
    if not (math.isfinite(w) and w >= 0) or (count == 0 and w > 0):
        raise ValueError(
            f"weight must be a finite sum >= 0 (0 for a row with count 0), got {value!r} for "
            f"{row.model_a} vs {row.model_b}; pass the sum of the inverse-propensity weights of the row's battles."
        )
    return w


def _effective_wins(wins: Float, ties: Float, bothbad: Float, tie_policy: TiePolicy) -> Float:
    """``y[i, j]``: what counts as i's wins over j in the likelihood."""
    y = wins.astype(np.float64)
    if tie_policy == "half":
        y += 0.5 * (ties + bothbad)
    return y


def _sandwich_inputs(tally: _Tally, g: NDArray[np.int64]) -> tuple[Float, Float, Float, Float]:
    """Weighted wins and ties of group ``g`` for the bread, and their squared-weight sums for the meat.

    Unweighted, both are the counts. Weighted, a cell's sum of squared weights is taken as
    ``weight_sum**2 / count`` (its battles are assumed to share one weight).
    """
    ix = np.ix_(g, g)
    wins_h = tally.wins_w[ix]
    ties_h = (tally.ties_w + tally.bothbad_w)[ix]
    counts = (tally.wins[ix], tally.ties[ix], tally.bothbad[ix])
    sums = (wins_h, tally.ties_w[ix], tally.bothbad_w[ix])
    meat = []
    for c, w in zip(counts, sums, strict=True):
        with np.errstate(divide="ignore", invalid="ignore"):
            meat.append(np.where(c > 0, w * w / np.where(c > 0, c, 1), 0.0))
    return wins_h, ties_h, meat[0], meat[1] + meat[2]


def _components(played: NDArray[np.bool_], rated_idx: NDArray[np.int64]) -> list[NDArray[np.int64]]:
    if rated_idx.size == 0:
        return []
    # Imported on the first fit, like choix (scipy.sparse.csgraph: ~10 MB the app need not hold idle).
    from scipy import sparse
    from scipy.sparse import csgraph

    sub = sparse.csr_matrix(played[np.ix_(rated_idx, rated_idx)])
    n_comp, labels = csgraph.connected_components(sub, directed=False)
    groups = [rated_idx[labels == k] for k in range(n_comp)]
    # Largest group first, so group 0 is the main leaderboard.
    groups.sort(key=lambda g: (-g.size, int(g[0])))
    return groups


# --- fitting ----------------------------------------------------------------------------------


def _strongly_connected(y: Float) -> bool:
    """Whether every model can be reached from every other along "beat" edges.

    Dense breadth-first search from model 0 both ways; arena graphs have a diameter of one or
    two, so this is a few vector operations (scipy's csgraph costs ~0.5 ms per call in set-up).
    """
    beat = y > 0
    for adj in (beat, beat.T):
        reach = np.zeros(y.shape[0], dtype=bool)
        reach[0] = True
        while True:
            grown = reach | adj[reach].any(axis=0)
            if grown.sum() == reach.sum():
                break
            reach = grown
        if not reach.all():
            return False
    return True


def _one_sided(y: Float) -> bool:
    return not _strongly_connected(y)


def _choix_fit(y: Float, alpha: float, tol: float, init: Float | None = None) -> Float | None:
    """One choix fit, or None when it fails (no convergence, no unique stationary distribution)."""
    # Imported here, not at module level: choix imports scipy.stats (~1 s), and the app imports this
    # module (for the pairing sampler's types) long before the first fit.
    import choix

    try:
        # A weight that underflows to 0 makes log() warn; the finiteness check below handles it.
        with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
            th = choix.ilsr_pairwise_dense(y, alpha=alpha, initial_params=init, max_iter=_MAX_ITER, tol=tol)
    except (RuntimeError, ValueError, np.linalg.LinAlgError):
        return None
    if not np.all(np.isfinite(th)):
        return None
    return np.asarray(th - th.mean(), dtype=np.float64)


def _fit_group(y: Float, alpha: float, names: list[str]) -> tuple[Float, float, list[Message]]:
    """Fit one connected group; returns centred theta, the alpha used, and notes if it changed."""
    notes: list[Message] = []
    a = alpha
    if a == 0 and not _strongly_connected(y):
        a = FALLBACK_ALPHA
        wins, losses = y.sum(1), y.sum(0)
        unbeaten = [m for m, lo in zip(names, losses, strict=True) if lo == 0]
        winless = [m for m, w in zip(names, wins, strict=True) if w == 0]
        who: list[Message] = []
        if unbeaten:
            who.append(Message("note_part.never_lost", {"models": ", ".join(unbeaten)}))
        if winless:
            who.append(Message("note_part.never_won", {"models": ", ".join(winless)}))
        detail = tuple(who) or (Message("note_part.some_never_lost"),)
        notes.append(Message("note.infinite", {"detail": detail, "alpha": f"{a:g}"}))
    th = _choix_fit(y, a, _FIT_TOL)
    if th is not None:
        return th, a, notes
    for bigger in ALPHA_LADDER:
        if bigger <= a:
            continue
        th = _choix_fit(y, bigger, _FIT_TOL)
        if th is not None:
            refitted = {"models": ", ".join(names), "alpha": f"{a:g}", "bigger": f"{bigger:g}"}
            return th, bigger, [*notes, Message("note.refitted", refitted)]
    raise RuntimeError(
        f"Bradley-Terry fit failed for {', '.join(names)} even with alpha={ALPHA_LADDER[-1]:g}. "
        "Check the counts for absurd values and report them."
    )


def _sandwich_covariance(
    theta: Float,
    wins: Float,
    tie_total: Float,
    wins_sq: Float,
    tie_total_sq: Float,
    tie_policy: TiePolicy,
    alpha: float,
) -> Float:
    """Robust covariance of the centred theta (see the module docstring for the derivation).

    ``wins``/``tie_total`` are (weighted) counts for the bread, ``wins_sq``/``tie_total_sq`` the
    sums of squared weights for the meat; unweighted, both pairs are the counts.
    """
    n = theta.size
    p = expit(theta[:, None] - theta[None, :])  # p[i, j] = P(i beats j)
    w_f = np.asarray(wins, dtype=np.float64)
    t = np.asarray(tie_total, dtype=np.float64) if tie_policy == "half" else np.zeros_like(w_f)
    w_sq = np.asarray(wins_sq, dtype=np.float64)
    t_sq = np.asarray(tie_total_sq, dtype=np.float64) if tie_policy == "half" else np.zeros_like(w_f)
    n_ij = w_f + w_f.T + t
    info_w = n_ij * p * (1.0 - p)
    h = np.diag(info_w.sum(1)) - info_w
    meat_w = w_sq * (1.0 - p) ** 2 + w_sq.T * p**2 + t_sq * (0.5 - p) ** 2
    b = np.diag(meat_w.sum(1)) - meat_w
    ones = np.full((n, n), 1.0 / n)
    if alpha > 0:
        w = np.exp(theta)
        w *= n / w.sum()
        h_inv = np.linalg.inv(h + alpha * n * np.diag(w))
    else:
        h_inv = np.linalg.inv(h + ones) - ones
    c = np.eye(n) - ones
    return np.asarray(c @ h_inv @ b @ h_inv @ c, dtype=np.float64)


def _contrast_variances(var: Float, pin: int | None) -> Float:
    """Variances of theta_i (centred) or of theta_i - theta_pin when a model is anchored."""
    if pin is None:
        return np.diag(var).copy()
    d = np.diag(var)
    return np.asarray(d + d[pin] - 2.0 * var[:, pin], dtype=np.float64)


def _widen(lo: Float, hi: Float, ratings: Float, half: Float, idx: NDArray[np.int64]) -> list[int]:
    """Widen (in place) each computed interval to at least ``rating +/- half``.

    Returns the models whose interval was materially narrower: by a fifth of ``half`` or more on
    a side. (In a close, evenly played arena the bound is nearly attained, so a bootstrap interval
    dips under it by its own Monte Carlo noise; that is mended silently.)
    """
    changed = []
    for i in idx.tolist():
        if not math.isfinite(lo[i]):
            continue
        if min(ratings[i] - lo[i], hi[i] - ratings[i]) < 0.8 * half[i]:
            changed.append(i)
        lo[i], hi[i] = min(lo[i], ratings[i] - half[i]), max(hi[i], ratings[i] + half[i])
    return changed


def _least_sd(votes: Float, tied: Float, groups: list[NDArray[np.int64]], anchor_idx: int | None) -> Float:
    """The least standard deviation (theta units) the votes of each model can honestly carry.

    Without ties, Cramer-Rao: the Fisher information of the group is the Laplacian ``I`` of
    ``n_ij p_ij (1 - p_ij)``, so model i's diagonal is at most ``votes_i / 4``. For the contrast ``c``
    a rating estimates (``e_i`` minus the group mean, or minus the anchor), Cauchy-Schwarz with
    ``x = e_i`` centred gives ``c^T I^+ c >= (c^T x)^2 / I_ii >= f^2 * 4 / votes_i`` with
    ``f = (k - 1) / k`` in a group of k models and ``f = 1`` against an anchor (whose own rating is
    fixed: 0).

    A tie counted as half a win scores exactly what an even pair expects, so it adds to the bread
    of the sandwich but nothing to its meat: in the same evenly played design where a tie share
    ``t`` of the votes are ties, the sandwich variance is ``4 (1 - t) / votes`` rather than
    ``4 / votes`` (27.5% ties make the old floor 1.17 times too wide, which replaced the fitted
    width of 51 of 52 models on a real LMArena board). The floor uses ``t`` shrunk towards no ties,
    ``tied / (votes + 2)``, so one tied vote cannot make it vanish.
    """
    sd = np.zeros(votes.size)
    safe = np.maximum(votes, 1e-12)
    no_tie = 1.0 - tied / (safe + 2.0)
    for g in groups:
        pinned = anchor_idx is not None and bool((g == anchor_idx).any())
        f = 1.0 if pinned else (g.size - 1) / g.size
        sd[g] = f * 2.0 * np.sqrt(no_tie[g]) / np.sqrt(safe[g])
        if pinned:
            sd[anchor_idx] = 0.0
    return sd


def _fitted_votes(tally: _Tally) -> tuple[Float, Float]:
    """Per model: the votes that enter the fit (decisive + counted ties) and the counted ties."""
    counted_ties = (tally.ties_w > 0) * tally.ties + (tally.bothbad_w > 0) * tally.bothbad
    decisive = tally.wins.sum(1) + tally.wins.sum(0)
    tied = counted_ties.sum(1).astype(np.float64)
    return (decisive + tied).astype(np.float64), tied


def _policy_tally(tally: _Tally, tie_policy: TiePolicy, bothbad_policy: TiePolicy) -> _Tally:
    """The tally with the weights of excluded kinds set to 0 (their counts stay for the records)."""
    if tie_policy == "half" and bothbad_policy == "half":
        return tally
    ties_w = tally.ties_w if tie_policy == "half" else np.zeros_like(tally.ties_w)
    bothbad_w = tally.bothbad_w if bothbad_policy == "half" else np.zeros_like(tally.bothbad_w)
    return _Tally(tally.names, tally.wins, tally.ties, tally.bothbad, tally.n_battles, tally.wins_w, ties_w, bothbad_w)


def _anchor_index(anchor: tuple[str, float] | None, names: tuple[str, ...], rated: NDArray[np.bool_]) -> int | None:
    if anchor is None:
        return None
    model, value = anchor
    if not math.isfinite(float(value)):
        raise ValueError(f"The anchor rating must be a finite number, not {value!r}.")
    if model not in names:
        raise ValueError(f"The anchor model {model!r} is not among the models; pick one of {sorted(names)}.")
    i = names.index(model)
    if not rated[i]:
        raise ValueError(f"The anchor model {model!r} has no counted battles; anchor a model that has a rating.")
    return i


def _local_index(g: NDArray[np.int64], anchor_idx: int | None) -> int | None:
    if anchor_idx is None:
        return None
    hit = np.flatnonzero(g == anchor_idx)
    return int(hit[0]) if hit.size else None


def _to_rating(theta: Float, pin: int | None, anchor: tuple[str, float] | None, scale: float = SCALE) -> Float:
    """Centred theta (any leading axes) -> ratings, shifted to the anchor when it is in this group."""
    r = BASE_RATING + scale * theta
    if pin is not None and anchor is not None:
        r = r - r[..., pin : pin + 1] + float(anchor[1])
    return np.asarray(r, dtype=np.float64)


# --- bootstrap --------------------------------------------------------------------------------


def _cells(
    tally: _Tally,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], Float]:
    """The non-empty (pair, outcome) cells, with i < j: rows, columns, kinds, counts, mean weights."""
    iu, ju = np.triu_indices(len(tally.names), k=1)
    per_kind = (tally.wins[iu, ju], tally.wins[ju, iu], tally.ties[iu, ju], tally.bothbad[iu, ju])
    per_kind_w = (tally.wins_w[iu, ju], tally.wins_w[ju, iu], tally.ties_w[iu, ju], tally.bothbad_w[iu, ju])
    ci, cj, kind, cnt, mean_w = [], [], [], [], []
    for k, (c, w) in enumerate(zip(per_kind, per_kind_w, strict=True)):
        nz = np.flatnonzero(c)
        ci.append(iu[nz])
        cj.append(ju[nz])
        kind.append(np.full(nz.size, k))
        cnt.append(c[nz])
        mean_w.append(w[nz] / c[nz])
    return (
        np.concatenate(ci),
        np.concatenate(cj),
        np.concatenate(kind),
        np.concatenate(cnt),
        np.concatenate(mean_w).astype(np.float64),
    )


def _scatter(
    ci: NDArray[np.int64], cj: NDArray[np.int64], kind: NDArray[np.int64], n: int, tie_policy: TiePolicy
) -> sparse.csr_matrix:
    """Sparse map from cell counts to the flattened effective-wins matrix ``y``."""
    from scipy import sparse

    rows: list[NDArray[np.int64]] = []
    cols: list[NDArray[np.int64]] = []
    vals: list[Float] = []
    cell = np.arange(ci.size)
    m = kind == _I_WINS
    rows.append(cell[m])
    cols.append(ci[m] * n + cj[m])
    vals.append(np.ones(m.sum()))
    m = kind == _J_WINS
    rows.append(cell[m])
    cols.append(cj[m] * n + ci[m])
    vals.append(np.ones(m.sum()))
    if tie_policy == "half":
        m = (kind == _TIE) | (kind == _BOTHBAD)
        for a, b in ((ci, cj), (cj, ci)):
            rows.append(cell[m])
            cols.append(a[m] * n + b[m])
            vals.append(np.full(m.sum(), 0.5))
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(ci.size, n * n)
    )


def _bootstrap(
    tally: _Tally,
    *,
    tie_policy: TiePolicy,
    groups: list[NDArray[np.int64]],
    theta: Float,
    alphas: list[float],
    alpha: float,
    anchor_idx: int | None,
    anchor: tuple[str, float] | None,
    rounds: int,
    rng: np.random.Generator,
    level: float = DEFAULT_LEVEL,
    scale: float = SCALE,
) -> tuple[Float, Float, int]:
    """Percentile intervals from ``rounds`` multinomial resamples of all battles."""
    n = len(tally.names)
    ci, cj, kind, cnt, mean_w = _cells(tally)
    total = int(cnt.sum())
    scatter_t = _scatter(ci, cj, kind, n, tie_policy).T.tocsr()
    pvals = cnt / total
    samples = [np.full((rounds, g.size), np.nan) for g in groups]
    fallback_rounds = 0
    done = 0
    while done < rounds:
        size = min(_BOOT_CHUNK, rounds - done)
        # A drawn battle carries its cell's (mean) weight; unweighted, that is 1.
        draws = rng.multinomial(total, pvals, size=size).astype(np.float64) * mean_w
        ys = np.asarray(scatter_t @ draws.T).T.reshape(size, n, n)
        for r in range(size):
            used_fallback = False
            for k, g in enumerate(groups):
                th, fb = _fit_round(ys[r][np.ix_(g, g)], alphas[k], alpha, theta[g])
                used_fallback |= fb
                samples[k][done + r] = th
            fallback_rounds += used_fallback
        done += size
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    for k, g in enumerate(groups):
        rs = _to_rating(samples[k], _local_index(g, anchor_idx), anchor, scale)
        tail = 50.0 * (1.0 - level)
        for col, i in enumerate(g):
            vals = rs[:, col][np.isfinite(rs[:, col])]
            if vals.size:
                lo[i], hi[i] = np.percentile(vals, [tail, 100.0 - tail])
    return lo, hi, fallback_rounds


def _fit_round(y: Float, group_alpha: float, alpha: float, init: Float) -> tuple[Float, bool]:
    """One bootstrap fit of one group: centred theta (NaN for models absent from the draw)."""
    out = np.full(init.size, np.nan)
    present = ((y + y.T) > 0).any(axis=1)
    if present.sum() < 2:
        return out, False
    if not present.all():
        y = y[np.ix_(present, present)]
        init = init[present]
    a = group_alpha
    fallback = False
    if a == 0 and not _strongly_connected(y):
        a, fallback = max(FALLBACK_ALPHA, alpha), True
    th = _choix_fit(y, a, _BOOT_TOL, init - init.mean())
    for bigger in ALPHA_LADDER:
        if th is not None:
            break
        if bigger > a:
            th, fallback = _choix_fit(y, bigger, _BOOT_TOL), True
    if th is not None:
        out[present] = th
    return out, fallback


# --- ranks and matrices -----------------------------------------------------------------------


def _ranks(
    lo: Float, hi: Float, groups: list[NDArray[np.int64]], may_outrank: NDArray[np.bool_] | None = None
) -> NDArray[np.int64]:
    """``1 +`` the models of the group whose lower bound is above this one's upper bound.

    ``may_outrank[b, a]`` False keeps b from counting above a whatever the intervals say.
    """
    ranks = np.zeros(lo.size, dtype=np.int64)
    for g in groups:
        above = lo[g][None, :] > hi[g][:, None]  # above[a, b]: b's lower bound above a's upper bound
        if may_outrank is not None:
            above &= may_outrank[np.ix_(g, g)].T
        ranks[g] = 1 + above.sum(axis=1)
    return ranks


def _may_outrank(y: Float, wins: NDArray[np.int64], groups: list[NDArray[np.int64]]) -> NDArray[np.bool_]:
    """Which model may be ranked above which: ``out[b, a]`` False when only the alpha pull says so.

    In a group that is not strongly connected the exact ratings do not exist: between two of its
    strongly connected parts every result went one way, so the maximum-likelihood gap is infinite
    and the fitted gap, and the intervals around it, come from the alpha pull (after one vote, two
    models sat ~680 points apart with intervals that did not overlap). Such a pair may be ranked apart
    only if its own head-to-head record says so: b above a needs more decisive wins of b over a than
    the reverse, with a two-sided exact sign test below 5% (six wins to none, at least). Pairs within
    one part, and every pair of a strongly connected group, keep the interval rule.
    """
    from scipy.sparse.csgraph import connected_components

    out = np.ones(y.shape, dtype=bool)
    for g in groups:
        sub = y[np.ix_(g, g)]
        if _strongly_connected(sub):
            continue
        _, part = connected_components(sub > 0, directed=True, connection="strong")
        won = wins[np.ix_(g, g)]  # won[x, z]: decisive wins of g[x] over g[z]
        lost = won.T
        # P(at least `won` of won + lost fair coin flips), doubled: the two-sided exact p-value.
        significant = (won > lost) & (2.0 * bdtrc(won - 1, won + lost, 0.5) < 0.05)
        apart = part[:, None] != part[None, :]
        out[np.ix_(g, g)] = ~apart | significant
    return out


def _matrices(
    tally: _Tally, theta: Float, component_of: NDArray[np.int64], perm: NDArray[np.int64]
) -> tuple[Float, NDArray[np.int64], Float]:
    score = tally.wins + 0.5 * (tally.ties + tally.bothbad)
    battles = tally.wins + tally.wins.T + tally.ties + tally.bothbad
    with np.errstate(invalid="ignore", divide="ignore"):
        win_rate = np.where(battles > 0, score / np.where(battles > 0, battles, 1), np.nan)
    same = (component_of[:, None] == component_of[None, :]) & (component_of[:, None] >= 0)
    predicted = np.where(same, expit(np.nan_to_num(theta)[:, None] - np.nan_to_num(theta)[None, :]), np.nan)
    np.fill_diagonal(predicted, np.nan)

    def frozen(m: NDArray[Any]) -> NDArray[Any]:
        m = np.ascontiguousarray(m[np.ix_(perm, perm)])
        m.flags.writeable = False
        return m

    return frozen(win_rate).astype(np.float64, copy=False), frozen(battles), frozen(predicted)


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
