"""The leaderboard audits itself: what the votes support, who cast them, and what the fit assumes.

Pure numpy/scipy on aggregated counts: the input is one GROUP BY of the votes per
``(model_a, model_b, winner, voter)`` (:meth:`arena.storage.store.Store.voter_counts`), so the cost
depends on the number of distinct cells, not of battles. Every probe answers one question with a
figure and one plain sentence, and fires only when the figure clears a bar named in
:data:`THRESHOLDS` (the only place thresholds live). docs/ratings.md explains each probe. Ties and
inverse-propensity weights enter as the leaderboard's fit takes them (:func:`audit`), so the rank
ranges and tiers belong to the ratings shown beside them.

Probes
------
``separation``          which neighbouring pairs the votes separate: a studentised bootstrap of each
                        neighbouring *difference*, one pair at a time and simultaneously (max-t over
                        all neighbouring pairs). Fires when too many neighbours are not separated.
``rank_intervals``      each model's 95% range of ranks over the same resamples.
``voter_concentration`` intervals from a bootstrap that resamples voters instead of battles, and how
                        much wider they are; the share of votes of the busiest tenth of the voters.
``annotator_influence`` whether leaving out any one (busy) voter moves a model by a whole rung
                        (the median gap between neighbours).
``position_bias``       the advantage of being shown first (the fit's intercept, in log-odds) and
                        whether correcting for it reorders a separated pair.
``tie_convention``      whether a separated pair reverses when ties are counted another way than
                        the fit counts them (split half and half, dropped, or Rao-Kupper).
``intransitivity``      cyclic triads of the who-beat-whom majority graph against what the fit predicts.
``connectivity``        groups of models that never met.
``coverage``            models with too few battles, and battles spread unevenly over models (Gini).

Why not arenakit
----------------
``arenakit`` (PyPI, MIT, 0.1.1) runs the same kind of audit, but it needs matplotlib and pydantic at
import, takes one validated object per battle (a million pydantic objects for a large board) and
fits one resample at a time; this module works on the GROUP BY cells and fits all resamples at once
with a batched Newton step, which is what keeps the audit of 1M battles and 1000 resamples in
seconds (benchmarks/bench_audit.py). The definitions follow the same statistics, and
tests/test_audit.py compares the shared quantities with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, log_expit

from arena.ratings import DEFAULT_MIN_VOTES, SCALE

__all__ = [
    "PROBE_NAMES",
    "THRESHOLDS",
    "AuditResult",
    "Board",
    "Probe",
    "Thresholds",
    "audit",
]

Float = NDArray[np.float64]
Int = NDArray[np.int64]

PROBE_NAMES = (
    "separation",
    "rank_intervals",
    "voter_concentration",
    "annotator_influence",
    "position_bias",
    "tie_convention",
    "intransitivity",
    "connectivity",
    "coverage",
)

# Outcome kinds of a cell, seen from the battle's sides: A won, B won, tie, both bad.
A_WINS, B_WINS, TIE, BOTHBAD = 0, 1, 2, 3
_KIND = {"model_a": A_WINS, "model_b": B_WINS, "tie": TIE, "tie (bothbad)": BOTHBAD}


@dataclass(frozen=True)
class Thresholds:
    """Every bar a probe must clear to fire, in one place (docs/ratings.md gives the reasons)."""

    level: float = 0.95  # of every interval and test
    # separation: share of neighbouring pairs the simultaneous (max-t) test does not separate.
    max_unseparated_share: float = 0.25
    # rank_intervals: median width (highest - lowest rank) of the 95% rank ranges (the upper median,
    # a whole number): above 1, the median model could take three places or more.
    max_median_rank_width: float = 1.0
    # voter_concentration: voter-bootstrap standard errors over battle-bootstrap ones.
    max_voter_se_ratio: float = 1.15
    min_voters: int = 20  # fewer distinct voters: too few to resample
    busiest_share: float = 0.10  # "the busiest voters" are this share of them
    # annotator_influence: largest move from leaving one voter out, in median neighbour gaps.
    max_influence_rungs: float = 1.0
    influence_voters: int = 25  # the busiest this many voters are left out one at a time
    min_influence_voters: int = 3
    # position_bias: log-odds of the first slot that counts as material (0.05: 1.2 points of win rate).
    max_position_logodds: float = 0.05
    # tie_convention: ties below this share of the votes cannot decide anything.
    min_tie_share: float = 0.01
    # intransitivity: cyclic share of decided triads above the fit's prediction.
    max_cycle_excess: float = 0.01
    min_decided_triads: int = 10
    cycle_simulations: int = 200
    # coverage: fewest votes for a rank (as the leaderboard), and the Gini of votes per model.
    min_votes: int = DEFAULT_MIN_VOTES
    max_votes_gini: float = 0.25


THRESHOLDS = Thresholds()

# A weak ridge (in log-odds^-2) keeps every resample finite when a model never lost in it; it is
# worth ~0.04 battles against an equal opponent, far below any board's evidence.
_RIDGE = 0.01
_NEWTON_STEPS = 30
_MAX_STEP = 2.0


@dataclass(frozen=True)
class Probe:
    """One probe's verdict: whether it fired, the figure behind it, one plain sentence."""

    name: str
    fired: bool
    value: float | int | None
    reason: str
    detail: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        return {"name": self.name, "fired": self.fired, "value": value, "reason": self.reason}


@dataclass(frozen=True)
class Board:
    """The votes as cells ``(a, b, kind, voter) -> count``; ``a`` was shown first."""

    models: tuple[str, ...]
    voters: tuple[str, ...]
    a: Int
    b: Int
    kind: Int
    voter: Int
    count: Int
    # The cells' sums of inverse-propensity weights (None: unweighted, every battle weighs 1).
    weight: Float | None = None

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[str, str, str, str, int]], weights: Sequence[float] | None = None) -> Board:
        """From ``(model_a, model_b, winner, voter, count)`` rows and, optionally, each row's sum of
        inverse-propensity weights; self-battles and empty rows are dropped."""
        weight = None
        if weights is not None:
            if len(weights) != len(rows):
                raise ValueError(f"weights has {len(weights)} entries for {len(rows)} rows; pass one sum per row.")
            bad = [w for w in weights if not (math.isfinite(w) and w >= 0)]
            if bad:
                raise ValueError(f"weights must be finite sums >= 0, got {bad[0]!r}.")
            weight = np.asarray([float(w) for r, w in zip(rows, weights, strict=True) if r[0] != r[1] and r[4] > 0])
        rows = [r for r in rows if r[0] != r[1] and r[4] > 0]
        models = tuple(sorted({r[0] for r in rows} | {r[1] for r in rows}))
        voters = tuple(sorted({r[3] for r in rows}))
        mi = {m: i for i, m in enumerate(models)}
        vi = {v: i for i, v in enumerate(voters)}
        for r in rows:
            if r[2] not in _KIND:
                raise ValueError(f"winner must be one of {tuple(_KIND)}, got {r[2]!r}.")

        def col(values: list[int]) -> Int:
            return np.asarray(values, dtype=np.int64)

        return cls(
            models,
            voters,
            col([mi[r[0]] for r in rows]),
            col([mi[r[1]] for r in rows]),
            col([_KIND[r[2]] for r in rows]),
            col([vi[r[3]] for r in rows]),
            col([int(r[4]) for r in rows]),
            weight,
        )

    @property
    def n_battles(self) -> int:
        return int(self.count.sum())

    @property
    def mass(self) -> Float:
        """What each cell weighs in a fit: its weight sum when weighted, else its count."""
        return self.count.astype(np.float64) if self.weight is None else self.weight

    def collapsed(self) -> Board:
        """The same votes with the voters merged: one cell per (a, b, kind), far fewer cells."""
        n = max(len(self.models), 1)
        key = (self.a * n + self.b) * 4 + self.kind
        uniq, inverse = np.unique(key, return_inverse=True)
        count = np.bincount(inverse, weights=self.count).astype(np.int64)
        weight = None if self.weight is None else np.bincount(inverse, weights=self.weight).astype(np.float64)
        zeros = np.zeros(uniq.size, dtype=np.int64)
        return Board(self.models, ("*",), (uniq // 4) // n, (uniq // 4) % n, uniq % 4, zeros, count, weight)

    def subset(self, keep: NDArray[np.bool_]) -> Board:
        return Board(
            self.models,
            self.voters,
            self.a[keep],
            self.b[keep],
            self.kind[keep],
            self.voter[keep],
            self.count[keep],
            None if self.weight is None else self.weight[keep],
        )


@dataclass(frozen=True)
class AuditResult:
    """The probes, and what the leaderboard shows from them (rank ranges and tiers)."""

    probes: tuple[Probe, ...]
    models: tuple[str, ...]  # the audited models (the largest group of settled ones), best first
    ratings: tuple[float, ...]  # their ratings (ties counted, battles weighted), as on the leaderboard
    rank_low: tuple[int, ...]  # 95% range of ranks
    rank_high: tuple[int, ...]
    tier: tuple[int, ...]  # 1, 2, ...: a new tier starts where the simultaneous test separates neighbours
    n_battles: int
    resamples: int
    weighted: bool = False  # battles weighted by inverse propensity (as the leaderboard with ARENA_IPW)

    def probe(self, name: str) -> Probe:
        for p in self.probes:
            if p.name == name:
                return p
        raise KeyError(f"No probe {name!r}; the probes are {', '.join(PROBE_NAMES)}.")

    def as_dict(self) -> dict[str, Any]:
        """``{"probes": [{"name", "fired", "value", "reason"}, ...]}`` (the ``--json`` output)."""
        return {"probes": [p.as_dict() for p in self.probes]}


# --- fitting ------------------------------------------------------------------------------------


def _matrices(board: Board, n: int, weights: Float | None = None, ties: str = "half") -> tuple[Float, Float]:
    """``Y[i, j]`` i's score against j (wins + half ties) and ``N[i, j]`` their counted battles, each
    cell weighing ``weights`` (default: the board's weight sums when weighted, else its counts)."""
    c = board.mass if weights is None else weights
    y = np.zeros((n, n))
    nn = np.zeros((n, n))
    decisive = board.kind <= B_WINS
    win_a = board.kind == A_WINS
    np.add.at(y, (board.a[win_a], board.b[win_a]), c[win_a])
    win_b = board.kind == B_WINS
    np.add.at(y, (board.b[win_b], board.a[win_b]), c[win_b])
    counted = decisive if ties == "drop" else np.ones_like(decisive)
    if ties == "half":
        tied = ~decisive
        np.add.at(y, (board.a[tied], board.b[tied]), 0.5 * c[tied])
        np.add.at(y, (board.b[tied], board.a[tied]), 0.5 * c[tied])
    np.add.at(nn, (board.a[counted], board.b[counted]), c[counted])
    return y, nn + nn.T


def _scatter(board: Board, n: int) -> tuple[Any, Any]:
    """Sparse maps from cell weights to flattened ``Y`` and ``N`` (ties split), for batched resamples."""
    from scipy import sparse

    cells = np.arange(board.count.size)
    rows, cols, vals = [], [], []
    for kind, (i, j) in ((A_WINS, (board.a, board.b)), (B_WINS, (board.b, board.a))):
        m = board.kind == kind
        rows.append(cells[m])
        cols.append(i[m] * n + j[m])
        vals.append(np.ones(m.sum()))
    tied = board.kind >= TIE
    for i, j in ((board.a, board.b), (board.b, board.a)):
        rows.append(cells[tied])
        cols.append(i[tied] * n + j[tied])
        vals.append(np.full(tied.sum(), 0.5))
    shape = (board.count.size, n * n)
    s_y = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)
    both = np.concatenate([board.a * n + board.b, board.b * n + board.a])
    s_n = sparse.csr_matrix((np.ones(both.size), (np.tile(cells, 2), both)), shape=shape)
    return s_y, s_n


def fit_batch(y: Float, nn: Float, theta0: Float | None = None, ridge: float = _RIDGE) -> Float:
    """Bradley-Terry strengths (log-odds, mean 0) of a batch of boards ``y``/``nn`` of shape (R, n, n).

    Newton's method on the log-likelihood with a weak ridge, all boards at once: one batched
    ``n x n`` solve per step. Steps are capped so a model that never lost in a resample moves
    towards the ridge's finite answer instead of overshooting.
    """
    r, n, _ = y.shape
    th = np.zeros((r, n)) if theta0 is None else np.broadcast_to(theta0, (r, n)).copy()
    score = y.sum(axis=2)
    eye = np.eye(n)
    for _ in range(_NEWTON_STEPS):
        p = expit(th[:, :, None] - th[:, None, :])
        grad = score - (nn * p).sum(axis=2) - ridge * th
        w = nn * p * (1.0 - p)
        hess = w.sum(axis=2)[:, :, None] * eye - w + ridge * eye
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        big = np.abs(step).max(axis=1, keepdims=True)
        step *= np.minimum(1.0, _MAX_STEP / np.maximum(big, 1e-300))
        th += step
        if float(np.abs(step).max()) < 1e-9:
            break
    return np.asarray(th - th.mean(axis=1, keepdims=True), dtype=np.float64)


def fit_one(y: Float, nn: Float, theta0: Float | None = None) -> Float:
    theta: Float = fit_batch(y[None], nn[None], None if theta0 is None else theta0[None])[0]
    return theta


def _fit_position(board: Board, n: int) -> tuple[Float, float, float]:
    """Strengths with a first-slot advantage ``h``: ``P(A wins) = sigma(theta_a - theta_b + h)``.

    Ties count half. Returns (theta, h, standard error of h): from the information, or, on a
    weighted board, from the sandwich whose meat takes a cell's squared weights as
    ``weight_sum**2 / count`` (as :func:`arena.ratings.fit_ratings` does).
    """
    c = board.mass
    score_a = np.where(board.kind == A_WINS, 1.0, np.where(board.kind == B_WINS, 0.0, 0.5)) * c
    th = np.zeros(n + 1)  # the last entry is h
    eye = np.eye(n + 1)
    for _ in range(_NEWTON_STEPS):
        eta = th[board.a] - th[board.b] + th[n]
        p = expit(eta)
        resid = score_a - c * p
        grad = np.zeros(n + 1)
        np.add.at(grad, board.a, resid)
        np.add.at(grad, board.b, -resid)
        grad[n] = resid.sum()
        hess = _position_information(board, n, c * p * (1 - p)) + _RIDGE * eye
        step = np.linalg.solve(hess, grad)
        step *= min(1.0, _MAX_STEP / max(float(np.abs(step).max()), 1e-300))
        th += step
        if float(np.abs(step).max()) < 1e-10:
            break
    cov = np.linalg.inv(hess)
    if board.weight is not None:
        p = expit(th[board.a] - th[board.b] + th[n])
        meat = _position_information(board, n, c**2 / np.maximum(board.count, 1) * p * (1 - p))
        cov = cov @ meat @ cov
    theta = th[:n] - th[:n].mean()
    return theta, float(th[n]), float(math.sqrt(max(cov[n, n], 0.0)))


def _position_information(board: Board, n: int, w: Float) -> Float:
    """``sum_cells w x x^T`` with ``x`` the cell's design row (+1 for A, -1 for B, +1 for the first slot)."""
    out = np.zeros((n + 1, n + 1))
    for u, su in ((board.a, 1.0), (board.b, -1.0), (np.full_like(board.a, n), 1.0)):
        for v, sv in ((board.a, 1.0), (board.b, -1.0), (np.full_like(board.a, n), 1.0)):
            np.add.at(out, (u, v), su * sv * w)
    return out


def _fit_rao_kupper(board: Board, n: int, theta0: Float) -> Float:
    """Strengths under Rao-Kupper ties: ``P(i wins) = sigma(d - eta)``, tie otherwise (``eta >= 0``)."""
    from scipy.optimize import minimize

    c = board.mass
    win_a = c * (board.kind == A_WINS)
    win_b = c * (board.kind == B_WINS)
    tied = c * (board.kind >= TIE)
    a, b = board.a, board.b

    def nll(x: Float) -> tuple[float, Float]:
        th, eta = x[:n], math.exp(x[n])
        d = th[a] - th[b]
        la, lb = log_expit(d - eta), log_expit(-d - eta)
        pa, pb = np.exp(la), np.exp(lb)
        pt = np.maximum(1.0 - pa - pb, 1e-300)
        ll = win_a @ la + win_b @ lb + tied @ np.log(pt)
        # Derivatives of the three log-probabilities with respect to d and eta.
        qa, qb = 1 - pa, 1 - pb  # d log sigma(z)/dz = 1 - sigma(z)
        dpa, dpb = pa * qa, pb * qb
        g_d = win_a * qa - win_b * qb + tied * (-dpa + dpb) / pt
        g_eta = -win_a * qa - win_b * qb + tied * (dpa + dpb) / pt
        grad = np.zeros(n + 1)
        np.add.at(grad, a, g_d)
        np.add.at(grad, b, -g_d)
        grad[n] = g_eta.sum() * eta
        grad[:n] -= _RIDGE * th
        return -(ll - 0.5 * _RIDGE * float(th @ th)), -grad

    x0 = np.concatenate([theta0, [math.log(0.5)]])
    res = minimize(nll, x0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    th = np.asarray(res.x[:n], dtype=np.float64)
    return np.asarray(th - th.mean(), dtype=np.float64)


def _components(nn: Float) -> list[Int]:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    present = np.flatnonzero(nn.sum(axis=1) > 0)
    if present.size == 0:
        return []
    k, labels = connected_components(csr_matrix(nn[np.ix_(present, present)] > 0), directed=False)
    groups = [present[labels == g] for g in range(k)]
    groups.sort(key=lambda g: (-g.size, int(g[0])))
    return groups


# --- resampling ---------------------------------------------------------------------------------


def _bootstrap(board: Board, n: int, theta: Float, resamples: int, rng: np.random.Generator) -> Float:
    """Strength draws (resamples, n) from Poisson weights per battle cell (a battle bootstrap).

    On a weighted board a drawn battle carries its cell's mean weight, as in the leaderboard's own
    bootstrap (:func:`arena.ratings.fit_ratings`): battles are resampled, not weights.
    """
    s_y, s_n = _scatter(board, n)
    out = np.empty((resamples, n))
    chunk = max(1, min(resamples, 4_000_000 // max(board.count.size, 1)))
    counts = board.count.astype(np.float64)
    mean_w = None if board.weight is None else board.weight / np.maximum(counts, 1.0)
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        w = rng.poisson(np.broadcast_to(counts, (size, counts.size))).astype(np.float64)
        if mean_w is not None:
            w *= mean_w
        y = np.asarray((s_y.T @ w.T).T).reshape(size, n, n)
        nn = np.asarray((s_n.T @ w.T).T).reshape(size, n, n)
        out[done : done + size] = fit_batch(y, nn, theta)
        done += size
    return out


def _voter_matrices(board: Board, n: int) -> tuple[Any, Any]:
    """Each voter's ``Y`` and ``N`` flattened (weighted when the board is), as (voters, n*n)
    matrices: dense when small enough for BLAS (the usual case), sparse otherwise."""
    from scipy import sparse

    s_y, s_n = _scatter(board, n)
    voters = len(board.voters)
    pick = sparse.csr_matrix(
        (board.mass, (board.voter, np.arange(board.count.size))),
        shape=(voters, board.count.size),
    )
    yv, nv = (pick @ s_y).tocsr(), (pick @ s_n).tocsr()
    if voters * n * n <= 40_000_000:
        return yv.toarray(), nv.toarray()
    return yv, nv


def _bootstrap_voters(yv: Any, nv: Any, n: int, theta: Float, resamples: int, rng: np.random.Generator) -> Float:
    """Strength draws (resamples, n) from Poisson weights per voter (a voter-clustered bootstrap)."""
    voters = yv.shape[0]
    out = np.empty((resamples, n))
    chunk = max(1, min(resamples, 2_000_000 // max(voters, n * n)))
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        mult = rng.poisson(1.0, size=(size, voters)).astype(np.float64)
        y = np.asarray(yv.T @ mult.T).T.reshape(size, n, n)
        nn = np.asarray(nv.T @ mult.T).T.reshape(size, n, n)
        out[done : done + size] = fit_batch(y, nn, theta)
        done += size
    return out


# --- the audit ----------------------------------------------------------------------------------


def _points(x: Float | float) -> Any:
    return np.asarray(x) * SCALE


def _separation(theta: Float, draws: Float, level: float) -> dict[str, Any]:
    """Studentised bootstrap test of every neighbouring difference (theta sorted descending)."""
    order = np.argsort(-theta, kind="stable")
    up, low = order[:-1], order[1:]
    gap = theta[up] - theta[low]
    diffs = draws[:, up] - draws[:, low]
    se = diffs.std(axis=0, ddof=1)
    ok = se > 1e-12
    t_star = np.zeros_like(diffs)
    t_star[:, ok] = (diffs[:, ok] - gap[ok]) / se[ok]
    t_obs = np.where(ok, gap / np.where(ok, se, 1.0), 0.0)
    crit = np.quantile(np.abs(t_star), level, axis=0) if diffs.shape[1] else np.zeros(0)
    crit_max = float(np.quantile(np.abs(t_star).max(axis=1), level)) if diffs.shape[1] else 0.0
    return {
        "order": order,
        "gap": gap,
        "se": se,
        "t": t_obs,
        "pairwise": ok & (t_obs > crit),
        "simultaneous": ok & (t_obs > crit_max),
        "critical_max_t": crit_max,
    }


def audit(
    rows: Sequence[tuple[str, str, str, str, int]],
    *,
    resamples: int = 1000,
    seed: int = 0,
    thresholds: Thresholds = THRESHOLDS,
    tie_policy: str = "half",
    bothbad_policy: str | None = None,
    weights: Sequence[float] | None = None,
) -> AuditResult:
    """Run every probe on ``(model_a, model_b, winner, voter, count)`` rows.

    Ties and both-bad votes enter as the leaderboard's fit takes them: ``tie_policy`` ``"half"`` (a
    half win each way, the default) or ``"exclude"``, and ``bothbad_policy`` the same for both-bad
    votes (default: as ``tie_policy``), so the rank ranges and tiers belong to the ratings shown
    beside them. The audited models are the largest group that the models with at least
    ``thresholds.min_votes`` votes (of every kind, as the leaderboard counts them) form among
    themselves (all models' largest group when fewer than two have that many); ``connectivity``
    and ``coverage`` look at every model.

    ``weights`` (one per row: the sum of its battles' inverse-propensity weights, as
    ``Store.voter_counts(weighted=True)`` gives it) weighs the battles as the leaderboard does with
    ``ARENA_IPW``: the fit, both bootstraps (a drawn battle or voter carries its weights), the
    leave-one-voter-out refits, the first-slot fit (with a sandwich standard error) and the tie
    conventions. ``intransitivity`` still reads who beat whom from the unweighted battles (its sign
    test and simulation need whole battles; a pair's weights change how much it counts against other
    pairs, not who won it), and says so; ``connectivity``, ``coverage`` and the vote shares count votes.

    Raises
    ------
    ValueError
        For an unknown winner or policy, weights that do not match the rows, or ``resamples < 20``
        (too few to estimate a 95% quantile).
    """
    if resamples < 20:
        raise ValueError(f"resamples must be at least 20 for {thresholds.level:.0%} quantiles, not {resamples}.")
    bothbad_policy = tie_policy if bothbad_policy is None else bothbad_policy
    for name, policy in (("tie_policy", tie_policy), ("bothbad_policy", bothbad_policy)):
        if policy not in ("half", "exclude"):
            raise ValueError(f"{name} must be 'half' or 'exclude', not {policy!r}.")
    full = Board.from_rows(rows, weights)
    weighted = full.weight is not None
    rng = np.random.default_rng(seed)
    n_all = len(full.models)
    _, nn_all = _matrices(full, n_all, full.count.astype(np.float64))  # votes, not weights
    groups = _components(nn_all)
    votes_all = nn_all.sum(axis=1)
    probes: dict[str, Probe] = {}
    probes["connectivity"] = _probe_connectivity(full, groups)
    probes["coverage"] = _probe_coverage(full, votes_all, thresholds)

    # The rest judge the order of the models whose votes can carry a rank (as on the leaderboard):
    # the largest group that the models with at least ``min_votes`` votes form among themselves.
    settled = votes_all >= thresholds.min_votes
    settled_groups = _components(nn_all * settled[:, None] * settled[None, :])
    main = settled_groups[0] if settled_groups else np.zeros(0, dtype=np.int64)
    if main.size < 2:
        main = groups[0] if groups else main
    if main.size < 2:
        for name in PROBE_NAMES:
            probes.setdefault(name, Probe(name, False, None, "Fewer than two models have met: nothing to audit."))
        return AuditResult(
            tuple(probes[p] for p in PROBE_NAMES), (), (), (), (), (), full.n_battles, resamples, weighted
        )

    # Re-index the largest group as its own board: every vote (for the tie probe), and the votes the
    # fit counts (for everything else).
    remap = np.full(n_all, -1, dtype=np.int64)
    remap[main] = np.arange(main.size)
    keep = (remap[full.a] >= 0) & (remap[full.b] >= 0)
    sub = full.subset(keep)
    every = Board(
        tuple(full.models[i] for i in main),
        full.voters,
        remap[sub.a],
        remap[sub.b],
        sub.kind,
        sub.voter,
        sub.count,
        sub.weight,
    )
    left_out = ((every.kind == TIE) & (tie_policy == "exclude")) | (
        (every.kind == BOTHBAD) & (bothbad_policy == "exclude")
    )
    board = every.subset(~left_out)
    n = main.size
    flat = board.collapsed()  # what needs no voters works on far fewer cells
    y, nn = _matrices(flat, n)
    theta = fit_one(y, nn)
    draws = _bootstrap(flat, n, theta, resamples, rng)
    sep = _separation(theta, draws, thresholds.level)
    names = board.models

    probes["separation"] = _probe_separation(names, sep, thresholds)
    ranks_low, ranks_high, probe_ranks = _probe_rank_intervals(theta, draws, thresholds)
    probes["rank_intervals"] = probe_ranks
    probes["voter_concentration"] = _probe_voters(board, n, theta, draws, sep, resamples, rng, thresholds)
    probes["annotator_influence"] = _probe_influence(board, n, theta, thresholds)
    probes["position_bias"] = _probe_position(flat, n, theta, sep, thresholds)
    probes["tie_convention"] = _probe_ties(every.collapsed(), n, theta, sep, thresholds, (tie_policy, bothbad_policy))
    probes["intransitivity"] = _probe_cycles(flat, n, rng, thresholds)

    order = sep["order"]
    tiers = np.ones(n, dtype=np.int64)
    t = 1
    for k in range(1, n):
        if sep["simultaneous"][k - 1]:
            t += 1
        tiers[order[k]] = t
    ratings = 1000.0 + SCALE * theta
    return AuditResult(
        probes=tuple(probes[p] for p in PROBE_NAMES),
        models=tuple(names[i] for i in order),
        ratings=tuple(float(ratings[i]) for i in order),
        rank_low=tuple(int(ranks_low[i]) for i in order),
        rank_high=tuple(int(ranks_high[i]) for i in order),
        tier=tuple(int(tiers[i]) for i in order),
        n_battles=full.n_battles,
        resamples=resamples,
        weighted=weighted,
    )


# --- probes -------------------------------------------------------------------------------------


def _probe_connectivity(board: Board, groups: list[Int]) -> Probe:
    k = len(groups)
    if k <= 1:
        return Probe("connectivity", False, k, "Every model has met the others, directly or through other models.")
    sizes = ", ".join(str(g.size) for g in groups)
    example = ", ".join(board.models[i] for i in groups[1][:3])
    return Probe(
        "connectivity",
        True,
        k,
        f"The models form {k} groups that never met (sizes {sizes}); ratings compare only within a group "
        f"(e.g. {example} never met the largest group).",
        {"groups": [[board.models[i] for i in g] for g in groups]},
    )


def _gini(x: Float) -> float:
    x = np.sort(np.asarray(x, dtype=np.float64))
    if x.size == 0 or x.sum() == 0:
        return 0.0
    k = np.arange(1, x.size + 1)
    return float((2 * k - x.size - 1) @ x / (x.size * x.sum()))


def _probe_coverage(board: Board, votes: Float, th: Thresholds) -> Probe:
    present = votes > 0
    few = [board.models[i] for i in np.flatnonzero(present & (votes < th.min_votes))]
    gini = _gini(votes[present])
    fired = bool(few) or gini > th.max_votes_gini
    parts = []
    if few:
        parts.append(f"{len(few)} model(s) have fewer than {th.min_votes} votes ({', '.join(few[:5])})")
    parts.append(
        f"the votes per model have a Gini of {gini:.2f} (0 is an even spread; above {th.max_votes_gini} is uneven)"
    )
    sentence = "; ".join(parts)
    return Probe("coverage", fired, round(gini, 4), sentence[0].upper() + sentence[1:] + ".", {"few_votes": few})


def _probe_separation(names: tuple[str, ...], sep: dict[str, Any], th: Thresholds) -> Probe:
    pairs = len(sep["gap"])
    joint = int(sep["simultaneous"].sum())
    single = int(sep["pairwise"].sum())
    share = 1.0 - joint / pairs if pairs else 0.0
    fired = share > th.max_unseparated_share
    return Probe(
        "separation",
        fired,
        round(share, 4),
        f"{joint} of {pairs} neighbouring pairs are separated when all are tested together "
        f"({single} one pair at a time); {share:.0%} of the order between neighbours is not carried by the votes.",
        {
            "pairs": [
                {
                    "upper": names[int(u)],
                    "lower": names[int(lo)],
                    "gap_points": float(_points(g)),
                    "t": float(t),
                    "pairwise": bool(pw),
                    "simultaneous": bool(sm),
                }
                for u, lo, g, t, pw, sm in zip(
                    sep["order"][:-1],
                    sep["order"][1:],
                    sep["gap"],
                    sep["t"],
                    sep["pairwise"],
                    sep["simultaneous"],
                    strict=True,
                )
            ],
            "critical_max_t": sep["critical_max_t"],
        },
    )


def _probe_rank_intervals(theta: Float, draws: Float, th: Thresholds) -> tuple[Int, Int, Probe]:
    n = theta.size
    # Rank of each model in each resample (1 = best).
    ranks = np.empty_like(draws, dtype=np.int64)
    order = np.argsort(-draws, axis=1, kind="stable")
    rows = np.arange(draws.shape[0])[:, None]
    ranks[rows, order] = np.arange(1, n + 1)[None, :]
    tail = (1 - th.level) / 2
    low = np.floor(np.quantile(ranks, tail, axis=0)).astype(np.int64)
    high = np.ceil(np.quantile(ranks, 1 - tail, axis=0)).astype(np.int64)
    width = high - low
    # The upper median: a whole number of ranks that at least half the models' ranges reach (the
    # plain median of 0, 0, 1, 1 would be a range "0.5 ranks" wide, which no model has).
    median = int(np.quantile(width, 0.5, method="higher"))
    fired = median > th.max_median_rank_width
    widest = int(np.argmax(width))
    places = median + 1
    return (
        low,
        high,
        Probe(
            "rank_intervals",
            fired,
            median,
            f"The median model's {th.level:.0%} range of ranks spans {places} place{'' if places == 1 else 's'} "
            f"(2-4 spans 3); the widest spans ranks {low[widest]}-{high[widest]}.",
        ),
    )


def _probe_voters(
    board: Board, n: int, theta: Float, draws: Float, sep: dict[str, Any], resamples: int,
    rng: np.random.Generator, th: Thresholds,
) -> Probe:  # fmt: skip
    per_voter = np.bincount(board.voter, weights=board.count, minlength=len(board.voters))
    per_voter = per_voter[per_voter > 0]
    v = per_voter.size
    busiest = max(1, math.ceil(th.busiest_share * v))
    share = float(np.sort(per_voter)[::-1][:busiest].sum() / per_voter.sum()) if v else 0.0
    if v < th.min_voters:
        return Probe(
            "voter_concentration",
            False,
            None,
            f"Only {v} distinct voter(s) are recorded, too few to resample voters (needs {th.min_voters}).",
            {"voters": v, "busiest_share": share},
        )
    yv, nv = _voter_matrices(board, n)
    clustered = _bootstrap_voters(yv, nv, n, theta, resamples, rng)
    ratio = float(clustered.std(axis=0, ddof=1).mean() / max(draws.std(axis=0, ddof=1).mean(), 1e-300))
    sep_v = _separation(theta, clustered, th.level)
    lost = int(sep["simultaneous"].sum() - sep_v["simultaneous"].sum())
    fired = ratio > th.max_voter_se_ratio
    return Probe(
        "voter_concentration",
        fired,
        round(ratio, 4),
        f"Resampling voters instead of battles makes the intervals {ratio:.2f} times as wide and "
        f"separates {lost} neighbouring pair(s) fewer; the busiest {th.busiest_share:.0%} of the {v} voters "
        f"cast {share:.0%} of the votes.",
        {"voters": v, "busiest_share": share, "pairs_lost": lost},
    )


def _probe_influence(board: Board, n: int, theta: Float, th: Thresholds) -> Probe:
    per_voter = np.bincount(board.voter, weights=board.count, minlength=len(board.voters))
    active = np.flatnonzero(per_voter > 0)
    if active.size < th.min_influence_voters:
        return Probe(
            "annotator_influence",
            False,
            None,
            f"Only {active.size} voter(s) recorded: leaving one out is not a test of anything.",
        )
    gaps = np.abs(np.diff(np.sort(theta)))
    rung = float(np.median(gaps)) if gaps.size else 0.0
    if rung <= 1e-9:
        return Probe("annotator_influence", False, None, "All models are rated alike: there is no rung to move by.")
    busiest = active[np.argsort(-per_voter[active], kind="stable")][: th.influence_voters]
    # Leaving voter v out: the board's matrices less v's own.
    keep = np.isin(board.voter, busiest)
    yv, nv = _voter_matrices(board.subset(keep), n)
    yv, nv = (
        np.asarray(yv[busiest].todense() if hasattr(yv, "todense") else yv[busiest]),
        np.asarray(nv[busiest].todense() if hasattr(nv, "todense") else nv[busiest]),
    )
    y_all, nn_all = _matrices(board.collapsed(), n)
    alt = fit_batch(y_all[None] - yv.reshape(-1, n, n), nn_all[None] - nv.reshape(-1, n, n), theta)
    shift = np.abs(alt - theta[None, :])
    worst = np.unravel_index(int(np.argmax(shift)), shift.shape)
    value = float(shift[worst] / rung)
    voter_share = float(per_voter[busiest[worst[0]]] / per_voter.sum())
    return Probe(
        "annotator_influence",
        value >= th.max_influence_rungs,
        round(value, 4),
        f"Leaving out the voter who cast {voter_share:.0%} of the votes moves {board.models[worst[1]]} by "
        f"{value:.2f} of the median gap between neighbours ({float(_points(shift[worst])):.0f} points).",
        {"voter_share": voter_share, "model": board.models[worst[1]]},
    )


def _reversals(alt: Float, sep: dict[str, Any]) -> list[tuple[int, int]]:
    """Separated neighbouring pairs (simultaneous test) whose order ``alt`` reverses."""
    out = []
    for k, ok in enumerate(sep["simultaneous"]):
        u, lo = int(sep["order"][k]), int(sep["order"][k + 1])
        if ok and alt[u] < alt[lo]:
            out.append((u, lo))
    return out


def _probe_position(board: Board, n: int, theta: Float, sep: dict[str, Any], th: Thresholds) -> Probe:
    corrected, h, se = _fit_position(board, n)
    z = 1.959963984540054
    significant = abs(h) - z * se > th.max_position_logodds
    flips = _reversals(corrected, sep)
    fired = bool(significant or flips)
    first = expit(h)
    text = (
        f"Being shown first is worth {h:+.2f} log-odds (an even pair wins {first:.0%} from the first slot, "
        f"95% interval {expit(h - z * se):.0%}-{expit(h + z * se):.0%})"
    )
    if flips:
        text += "; correcting for it reorders " + ", ".join(f"{board.models[u]} / {board.models[v]}" for u, v in flips)
    else:
        text += "; correcting for it reorders no separated pair"
    return Probe("position_bias", fired, round(h, 4), text + ".", {"se": se, "reordered": len(flips)})


def _probe_ties(
    board: Board, n: int, theta: Float, sep: dict[str, Any], th: Thresholds, policies: tuple[str, str]
) -> Probe:
    """Whether counting ties another way reverses a separated pair; ``board`` holds every vote and
    ``policies`` says how the fit behind ``theta`` and ``sep`` counted ties and both-bad votes."""
    c = board.count
    tie_share = float(c[board.kind >= TIE].sum() / max(c.sum(), 1))
    if tie_share < th.min_tie_share:
        return Probe(
            "tie_convention",
            False,
            0,
            f"Only {tie_share:.1%} of the votes are ties or both bad: how they are counted cannot change the order.",
        )
    alternatives: list[Float] = []
    if policies != ("exclude", "exclude"):
        y_d, nn_d = _matrices(board, n, ties="drop")
        alternatives.append(fit_one(y_d, nn_d, theta))
    if policies != ("half", "half"):
        y_h, nn_h = _matrices(board, n)
        alternatives.append(fit_one(y_h, nn_h, theta))
    alternatives.append(_fit_rao_kupper(board, n, theta))
    flips = sorted({pair for alt in alternatives for pair in _reversals(alt, sep)})
    listing = ", ".join(f"{board.models[u]} / {board.models[v]}" for u, v in flips)
    other_ways = {
        ("half", "half"): "dropping them or modelling them (Rao-Kupper) instead of splitting them",
        ("exclude", "exclude"): "splitting them or modelling them (Rao-Kupper) instead of leaving them out",
    }.get(policies, "counting them another way (split, left out or Rao-Kupper)")
    text = f"{tie_share:.0%} of the votes are ties or both bad; {other_ways} reverses " + (
        f"{listing}." if flips else "no separated pair."
    )
    pairs = [f"{board.models[u]} / {board.models[v]}" for u, v in flips]
    return Probe("tie_convention", bool(flips), len(flips), text, {"tie_share": tie_share, "pairs": pairs})


def _cyclic(wins: Float) -> tuple[Float, Float]:
    """(cyclic triads, fully decided triads) of the majority graphs of a batch (R, n, n).

    An edge i -> j counts only when i's majority over j is clear (sign test, normal approximation,
    5% two-sided): between near-equal models the majority is a coin flip, and coin flips go round in
    circles a quarter of the time without saying anything about the board.
    """
    lost = np.swapaxes(wins, 1, 2)
    a = (wins - lost > 1.959963984540054 * np.sqrt(wins + lost)).astype(np.float64)
    d = a + np.swapaxes(a, 1, 2)
    cyc = np.einsum("rij,rjk,rki->r", a, a, a) / 3.0
    tri = np.einsum("rij,rjk,rki->r", d, d, d) / 6.0
    return cyc, tri


def _probe_cycles(board: Board, n: int, rng: np.random.Generator, th: Thresholds) -> Probe:
    # Decisive battles, unweighted: cycles are read off who beat whom, and the sign test and the
    # simulation count whole battles (weights would say how much a pair counts, not who won it).
    y, nn = _matrices(board, n, board.count.astype(np.float64), ties="drop")
    cyc, tri = _cyclic(y[None])
    unweighted = " (battles counted unweighted: who won each pair does not depend on how often it was drawn)"
    note = unweighted if board.weight is not None else ""
    if tri[0] < th.min_decided_triads:
        return Probe(
            "intransitivity",
            False,
            None,
            f"Only {int(tri[0])} triads of models have a clear winner in each pair: too few to judge cycles{note}.",
        )
    theta = fit_one(y, nn)
    p = expit(theta[:, None] - theta[None, :])
    iu = np.triu_indices(n, k=1)
    trials = np.round(nn[iu]).astype(np.int64)
    won = rng.binomial(trials, p[iu], size=(th.cycle_simulations, trials.size))
    sim = np.zeros((th.cycle_simulations, n, n))
    sim[:, iu[0], iu[1]] = won
    sim[:, iu[1], iu[0]] = trials - won
    s_cyc, s_tri = _cyclic(sim)
    observed = float(cyc[0] / tri[0])
    expected_all = s_cyc / np.maximum(s_tri, 1)
    expected = float(expected_all.mean())
    beyond = observed > float(np.quantile(expected_all, th.level))
    excess = observed - expected
    fired = bool(beyond and excess > th.max_cycle_excess)
    return Probe(
        "intransitivity",
        fired,
        round(excess, 4),
        f"{int(cyc[0])} of {int(tri[0])} clearly decided triads go round in a circle ({observed:.1%}); with the fitted "
        f"strengths and the same battles one expects {expected:.1%}{note}.",
        {"observed": observed, "expected": expected},
    )
