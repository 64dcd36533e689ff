"""Simulated arenas with known strengths: how many votes each pairing strategy needs for a trusted ranking.

The truth
---------
Each seed draws ``n_models`` true ratings from a normal distribution with standard deviation
``spread`` Elo points (default 120: the top and bottom of a 20-model arena end up ~450-550 points
apart, like Chatbot Arena's open-model range). Outcomes follow a Davidson tie model on the
Bradley-Terry strengths ``pi = exp(rating / SCALE)``::

    P(i wins) : P(j wins) : P(tie) = pi_i : pi_j : nu * sqrt(pi_i * pi_j)

with ``nu = 2 t / (1 - t)`` so that two equal models tie with probability ``t`` (``tie_rate``,
default 0.3, about Chatbot Arena's share of ties plus both-bad votes); half of the ties are
recorded as "tie", half as "tie (bothbad)". The fit counts a tie as half a win each way, which
does not match the Davidson model exactly, so fitted ratings are pulled towards the mean for every
strategy; this is the kind of misspecification under which a non-uniform design can shift the
estimates, and the reason inverse-propensity weighting exists.

The race
--------
All seeds run side by side (vectorised). Votes arrive in batches of ``refit_every`` (default 20,
the service's ``ARENA_PAIRING_REFRESH_VOTES``): the pairs of one batch are drawn from the
sampler's pair distribution, the outcomes from the truth, then :func:`arena.ratings.fit_ratings`
(sandwich intervals, no bootstrap) is refitted and the sampler updated, exactly as the service
does. After every batch the leaderboard's Spearman correlation with the truth is recorded (the
leaderboard is the unweighted fit, or with ``ipw`` the inverse-propensity weighted one for
non-uniform strategies; the sampler always learns from the unweighted fit, as the service's does).
"Votes to target" is the first checkpoint from which the Spearman correlation stays at or above
``target`` up to ``max_votes`` (runs that never get there count as ``max_votes``; the report says
how many). The report also gives the *first* checkpoint at or above ``target`` (which may dip
again), the other reading of "votes until the ranking reaches"; the ``saving`` line uses the
stricter one. Both strategies see the same true strengths per seed.

Bias: the final ratings' mean absolute error against the (centred) truth, for the leaderboard and
for the fit with inverse-propensity weights ``(1/K) / propensity`` (``fit_ratings(weights=...)``,
the weight sums per count row, as the database would return them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from arena.domain import PairCount, Winner
from arena.pairing import DEFAULT_FLOOR, PairDistribution, PairSampler, Strategy
from arena.ratings import BASE_RATING, SCALE, RatingsResult, fit_ratings
from arena.registry import ModelSpec

__all__ = [
    "Sampler",
    "SimulationConfig",
    "SimulationResult",
    "StrategyRun",
    "format_report",
    "race",
    "roster",
    "run_simulation",
    "saving",
    "true_ratings",
    "write_plot",
]

Float = NDArray[np.float64]


@dataclass(frozen=True)
class SimulationConfig:
    """Everything a simulation run depends on (the defaults are the documented ones)."""

    n_models: int = 20
    seeds: int = 50
    spread: float = 120.0  # sd of the true ratings, Elo points
    tie_rate: float = 0.3  # tie share between two equal models (Davidson)
    target: float = 0.95  # Spearman correlation with the truth
    max_votes: int = 6000
    refit_every: int = 20  # the service refreshes the sampler every ARENA_PAIRING_REFRESH_VOTES (20) votes
    floor: float = DEFAULT_FLOOR
    min_votes: int = 30
    ipw: bool = False  # fit the active arm with inverse-propensity weights
    seed: int = 0
    bootstrap_rounds: int = 2000  # for the saving's confidence interval (over seeds)
    strategies: tuple[Strategy, ...] = ("uniform", "active")

    def check(self) -> None:
        """Raise ``ValueError`` naming the option to change when a value is out of range."""
        if self.n_models < 3:
            raise ValueError("--models must be at least 3 (a ranking of two is a coin flip, not a ranking).")
        if self.seeds < 2:
            raise ValueError("--seeds must be at least 2 (the confidence interval needs several).")
        if not (self.spread > 0 and math.isfinite(self.spread)):
            raise ValueError("--spread must be a positive number of Elo points.")
        if not 0 <= self.tie_rate < 1:
            raise ValueError("--tie-rate must be in [0, 1).")
        if not -1 < self.target <= 1:
            raise ValueError("--target must be a Spearman correlation in (-1, 1].")
        if self.refit_every < 1 or self.max_votes < self.refit_every:
            raise ValueError("--refit-every must be >= 1 and no larger than --max-votes.")


@dataclass
class StrategyRun:
    """One strategy over every seed."""

    strategy: str
    checkpoints: NDArray[np.int64]  # votes after each batch
    spearman: Float  # (seeds, checkpoints)
    votes_to_target: Float  # (seeds,), censored at max_votes
    reached: NDArray[np.bool_]  # (seeds,)
    votes_to_first: Float  # (seeds,): first checkpoint at or above target (it may dip again), censored
    votes_to_top: Float  # (seeds,), NaN when the top model was never separated
    final_error: Float  # (seeds,): mean |fitted - true| rating (both centred), Elo points, of the leaderboard
    final_error_ipw: Float  # (seeds,): the same for the inverse-propensity weighted fit


@dataclass
class SimulationResult:
    config: SimulationConfig
    runs: dict[str, StrategyRun] = field(default_factory=dict)
    saving: float = math.nan
    saving_ci: tuple[float, float] = (math.nan, math.nan)


def _outcome_tables(ratings: Float, tie_rate: float) -> tuple[Float, Float]:
    """``p_win[s, i, j]`` (i beats j) and ``p_tie[s, i, j]`` under the Davidson model."""
    nu = 2 * tie_rate / (1 - tie_rate)
    pi = np.exp((ratings - ratings.mean(axis=1, keepdims=True)) / SCALE)
    pi_i, pi_j = pi[:, :, None], pi[:, None, :]
    tie = nu * np.sqrt(pi_i * pi_j)
    total = pi_i + pi_j + tie
    return pi_i / total, tie / total


def _rows(
    names: Sequence[str],
    counts: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]],
    weight_sums: tuple[Float, Float, Float],
) -> tuple[list[PairCount], list[float]]:
    """What the database's GROUP BY returns: count rows, and each row's sum of IPW weights."""
    wins, ties, bad = counts
    rows: list[PairCount] = []
    weights: list[float] = []
    n = len(names)
    for i, j in zip(*np.nonzero(wins), strict=True):
        rows.append(PairCount(names[i], names[j], "model_a", int(wins[i, j])))
        weights.append(float(weight_sums[0][i, j]))
    iu, ju = np.triu_indices(n, k=1)
    tie_kinds: tuple[tuple[NDArray[np.int64], Float, Winner], ...] = (
        (ties, weight_sums[1], "tie"),
        (bad, weight_sums[2], "tie (bothbad)"),
    )
    for matrix, w_matrix, kind in tie_kinds:
        for i, j in zip(iu.tolist(), ju.tolist(), strict=True):
            if matrix[i, j]:
                rows.append(PairCount(names[i], names[j], kind, int(matrix[i, j])))
                weights.append(float(w_matrix[i, j]))
    return rows, weights


def _spearman(x: Float, y: Float) -> float:
    rx = np.argsort(np.argsort(x)).astype(np.float64)
    ry = np.argsort(np.argsort(y)).astype(np.float64)
    rx -= rx.mean()
    ry -= ry.mean()
    return float((rx @ ry) / math.sqrt((rx @ rx) * (ry @ ry)))


def _fitted(result: RatingsResult, names: Sequence[str]) -> tuple[Float, Float, Float]:
    """Ratings, sandwich lower and upper bounds in roster order (unrated: mean rating, no interval)."""
    r = np.full(len(names), BASE_RATING)
    lo = np.full(len(names), -np.inf)
    hi = np.full(len(names), np.inf)
    index = {m: i for i, m in enumerate(names)}
    for row in result.rows:
        i = index[row.model]
        r[i], lo[i], hi[i] = row.rating, row.sandwich_lower, row.sandwich_upper
    return r, lo, hi


class Sampler(Protocol):
    """What the race needs of a pairing policy (:class:`arena.pairing.PairSampler` is one)."""

    def distribution(self, models: Sequence[ModelSpec], available: frozenset[str] | None = None) -> PairDistribution:
        """The probability of every pair of ``models`` (upper triangle, sums to 1)."""
        ...

    def update(self, result: RatingsResult | None, counts: Sequence[PairCount]) -> None:
        """Take in the latest fit and the counts it was made from."""
        ...


def roster(n: int) -> list[ModelSpec]:
    """The simulated arena's models, in the order of the truth's columns."""
    return [ModelSpec(name=f"m{i:02d}", backend="tgi", url="http://127.0.0.1:1") for i in range(n)]


def race(
    cfg: SimulationConfig,
    strategy: Strategy,
    truth: Float,
    rng: np.random.Generator,
    samplers: Sequence[Sampler] | None = None,
) -> StrategyRun:
    """Run one pairing policy on every simulated arena (a row of ``truth``, true ratings in Elo).

    ``samplers`` (one per arena) default to ``PairSampler(strategy)`` with ``cfg``'s floor and
    warm-up; a benchmark may pass its own (e.g. one that knows the truth).
    """
    s_count, n = truth.shape
    models = roster(n)
    names = [m.name for m in models]
    p_win, p_tie = _outcome_tables(truth, cfg.tie_rate)
    iu, ju = np.triu_indices(n, k=1)
    n_pairs = iu.size
    wins = np.zeros((s_count, n, n), dtype=np.int64)
    ties = np.zeros((s_count, n, n), dtype=np.int64)
    bad = np.zeros((s_count, n, n), dtype=np.int64)
    # The same cells as sums of inverse-propensity weights (1/K) / propensity, K = n_pairs.
    wins_w = np.zeros((s_count, n, n))
    ties_w = np.zeros((s_count, n, n))
    bad_w = np.zeros((s_count, n, n))
    if samplers is None:
        samplers = [PairSampler(strategy, floor=cfg.floor, min_votes=cfg.min_votes) for _ in range(s_count)]
    n_checks = cfg.max_votes // cfg.refit_every
    checkpoints = cfg.refit_every * np.arange(1, n_checks + 1)
    spearman = np.zeros((s_count, n_checks))
    top_at = np.full(s_count, np.nan)
    true_top = truth.argmax(axis=1)
    final = np.zeros((s_count, n))
    final_ipw = np.zeros((s_count, n))
    k = cfg.refit_every
    seed_rows = np.arange(s_count)[:, None]
    weighted_board = cfg.ipw and strategy != "uniform"
    for c in range(n_checks):
        prob = np.empty((s_count, n_pairs))
        for s in range(s_count):
            dist = samplers[s].distribution(models)
            prob[s] = dist.probability[iu, ju]
        cum = np.cumsum(prob, axis=1)
        u = rng.random((s_count, k)) * cum[:, -1:]
        pick = np.minimum((cum[:, None, :] <= u[:, :, None]).sum(axis=2), n_pairs - 1)  # (S, k)
        a, b = iu[pick], ju[pick]
        draw = rng.random((s_count, k))
        pw = p_win[seed_rows, a, b]
        pt = p_tie[seed_rows, a, b]
        a_wins = draw < pw
        tied = (draw >= pw) & (draw < pw + pt)
        b_wins = ~(a_wins | tied)
        bothbad = tied & (rng.random((s_count, k)) < 0.5)
        plain_tie = tied & ~bothbad
        ss = np.broadcast_to(seed_rows, (s_count, k))
        weight = (1.0 / n_pairs) / prob[seed_rows, pick]
        for flag, first, second in ((a_wins, a, b), (b_wins, b, a)):
            np.add.at(wins, (ss[flag], first[flag], second[flag]), 1)
            np.add.at(wins_w, (ss[flag], first[flag], second[flag]), weight[flag])
        for m, m_w, flag in ((ties, ties_w, plain_tie), (bad, bad_w, bothbad)):
            for first, second in ((a, b), (b, a)):
                np.add.at(m, (ss[flag], first[flag], second[flag]), 1)
                np.add.at(m_w, (ss[flag], first[flag], second[flag]), weight[flag])
        last = c == n_checks - 1
        for s in range(s_count):
            rows, weights = _rows(names, (wins[s], ties[s], bad[s]), (wins_w[s], ties_w[s], bad_w[s]))
            # The sampler always learns from the unweighted fit, as the service's refresh does.
            result = fit_ratings(rows, models=names, interval="sandwich", bootstrap_rounds=0, min_votes=cfg.min_votes)
            samplers[s].update(result, rows)
            board = result
            if weighted_board or last:
                weighted = fit_ratings(
                    rows,
                    models=names,
                    interval="sandwich",
                    bootstrap_rounds=0,
                    min_votes=cfg.min_votes,
                    weights=weights,
                )
                board = weighted if weighted_board else result
                if last:
                    final_ipw[s] = _fitted(weighted, names)[0]
            fitted, lo, hi = _fitted(board, names)
            spearman[s, c] = _spearman(fitted, truth[s])
            if np.isnan(top_at[s]):
                top = int(fitted.argmax())
                others = np.delete(hi, top)
                if top == true_top[s] and lo[top] > others.max():
                    top_at[s] = checkpoints[c]
            if last:
                final[s] = fitted
    below = spearman < cfg.target
    # First checkpoint after the last one below target.
    last_below = np.where(below.any(axis=1), n_checks - 1 - np.argmax(below[:, ::-1], axis=1), -1)
    reached = last_below < n_checks - 1
    votes = np.where(reached, checkpoints[np.minimum(last_below + 1, n_checks - 1)], cfg.max_votes).astype(np.float64)
    above = ~below
    first = np.where(above.any(axis=1), checkpoints[np.argmax(above, axis=1)], cfg.max_votes).astype(np.float64)
    return StrategyRun(
        strategy,
        checkpoints,
        spearman,
        votes,
        reached,
        first,
        top_at,
        _abs_error(final, truth),
        _abs_error(final_ipw, truth),
    )


def _abs_error(fitted: Float, truth: Float) -> Float:
    """Mean |fitted - true| rating per seed, both centred (Elo points)."""
    centred_truth = truth - truth.mean(axis=1, keepdims=True)
    centred_fit = fitted - fitted.mean(axis=1, keepdims=True)
    return np.asarray(np.abs(centred_fit - centred_truth).mean(axis=1), dtype=np.float64)


def run_simulation(cfg: SimulationConfig) -> SimulationResult:
    """Race every strategy in ``cfg.strategies`` on the same simulated arenas.

    Raises
    ------
    ValueError
        When a setting is out of range (the message names the option).
    """
    cfg.check()
    truth = true_ratings(cfg)
    out = SimulationResult(cfg)
    for k, strategy in enumerate(cfg.strategies):
        out.runs[strategy] = race(cfg, strategy, truth, np.random.default_rng([cfg.seed, k + 1]))
    if "active" in out.runs and "uniform" in out.runs:
        out.saving, out.saving_ci = saving(cfg, out.runs["active"], out.runs["uniform"])
    return out


def true_ratings(cfg: SimulationConfig) -> Float:
    """The true ratings (Elo) of every simulated arena, one row per seed, as :func:`run_simulation` draws them."""
    return np.random.default_rng(cfg.seed).normal(0.0, cfg.spread, size=(cfg.seeds, cfg.n_models))


def saving(cfg: SimulationConfig, run: StrategyRun, baseline: StrategyRun) -> tuple[float, tuple[float, float]]:
    """Percent fewer votes (mean over arenas) ``run`` needed than ``baseline``, with a bootstrap 95% interval."""
    a, u = run.votes_to_target, baseline.votes_to_target
    boot = np.random.default_rng([cfg.seed, 99]).integers(0, cfg.seeds, size=(cfg.bootstrap_rounds, cfg.seeds))
    savings = 100.0 * (1.0 - a[boot].mean(axis=1) / u[boot].mean(axis=1))
    lo, hi = np.percentile(savings, [2.5, 97.5])
    return 100.0 * (1.0 - a.mean() / u.mean()), (float(lo), float(hi))


def format_report(result: SimulationResult) -> list[str]:
    """The report's lines; the last two are the ``saving:`` and ``bias:`` lines."""
    cfg = result.config
    lines = [
        f"{cfg.seeds} simulated arenas of {cfg.n_models} models (true ratings ~ N(0, {cfg.spread:g}) Elo, "
        f"Davidson ties {cfg.tie_rate:.0%} between equals), refit every {cfg.refit_every} votes, "
        f"floor {cfg.floor:g}, ipw {'on' if cfg.ipw else 'off'}",
        f"{'strategy':<10} {'votes to Spearman>=' + format(cfg.target, 'g'):>26} {'reached':>8} "
        f"{'votes to top separated':>24} {'final |error| Elo':>18}",
    ]
    for name, run in result.runs.items():
        top = run.votes_to_top[np.isfinite(run.votes_to_top)]
        top_text = f"{np.median(top):.0f} median ({top.size}/{cfg.seeds})" if top.size else f"never (0/{cfg.seeds})"
        lines.append(
            f"{name:<10} {run.votes_to_target.mean():>19.0f} mean {int(run.reached.sum()):>5}/{cfg.seeds:<2} "
            f"{top_text:>24} {run.final_error.mean():>18.1f}"
        )
    for name, run in result.runs.items():
        if name != "uniform":
            lines.append(
                f"{name}: final |error| {run.final_error_ipw.mean():.1f} Elo with inverse-propensity weights, "
                f"{run.final_error.mean():.1f} as shown above (leaderboard {'weighted' if cfg.ipw else 'unweighted'})"
            )
    if "active" in result.runs and "uniform" in result.runs:
        a, u = result.runs["active"].votes_to_first.mean(), result.runs["uniform"].votes_to_first.mean()
        lines.append(
            f"first reach (the first refit at or above {cfg.target:g}, which may dip again): active {a:.0f}, "
            f"uniform {u:.0f} votes mean, {100.0 * (1.0 - a / u):.1f}% fewer; the saving below counts until it stays"
        )
        lo, hi = result.saving_ci
        lines.append(f"saving: {result.saving:.1f}% (95% CI [{lo:.1f}, {hi:.1f}])")
        lines.append(
            f"bias: active {result.runs['active'].final_error.mean():.1f} "
            f"uniform {result.runs['uniform'].final_error.mean():.1f}"
        )
    return lines


_COLOURS = {"uniform": "#1f77b4", "active": "#d62728", "weighted": "#2ca02c"}


def write_plot(result: SimulationResult, path: str) -> str:
    """Plot mean Spearman correlation against votes for each strategy; returns the file written.

    ``.html`` writes an interactive plotly file (plotly is in the venv; kaleido, which plotly needs
    for PNG, and matplotlib are not, so no PNG can be written offline). Any other suffix writes a
    hand-made SVG, with the suffix replaced by ``.svg``.
    """
    from pathlib import Path

    cfg = result.config
    target = Path(path)
    if target.suffix.lower() == ".html":
        import plotly.graph_objects as go

        fig = go.Figure()
        for name, run in result.runs.items():
            fig.add_scatter(x=run.checkpoints, y=run.spearman.mean(axis=0), name=name, mode="lines")
        fig.add_hline(y=cfg.target, line_dash="dot")
        fig.update_layout(xaxis_title="votes", yaxis_title="Spearman with the truth (mean over seeds)")
        fig.write_html(str(target), include_plotlyjs=True)
        return str(target)
    target = target.with_suffix(".svg")
    width, height, margin = 720, 440, 60
    x_max = float(cfg.max_votes)
    y_min = 0.5

    def xy(x: float, y: float) -> tuple[float, float]:
        px = margin + (width - 2 * margin) * x / x_max
        py = height - margin - (height - 2 * margin) * (max(y, y_min) - y_min) / (1 - y_min)
        return px, py

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for k in range(6):
        y = y_min + k * (1 - y_min) / 5
        _, py = xy(0, y)
        parts.append(f'<line x1="{margin}" x2="{width - margin}" y1="{py:.1f}" y2="{py:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{margin - 6}" y="{py + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    for k in range(6):
        x = k * x_max / 5
        px, _ = xy(x, y_min)
        parts.append(f'<text x="{px:.1f}" y="{height - margin + 18}" text-anchor="middle">{x:.0f}</text>')
    _, ty = xy(0, cfg.target)
    parts.append(
        f'<line x1="{margin}" x2="{width - margin}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#555" stroke-dasharray="4 4"/>'
    )
    for k, (name, run) in enumerate(result.runs.items()):
        points = " ".join(
            "{:.1f},{:.1f}".format(*xy(float(x), float(y)))
            for x, y in zip(run.checkpoints, run.spearman.mean(axis=0), strict=True)
        )
        colour = _COLOURS.get(name, "#000")
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(
            f'<text x="{width - margin - 80}" y="{height - margin - 20 - 16 * k}" fill="{colour}">{name}</text>'
        )
    parts.append(f'<text x="{width / 2}" y="{height - 15}" text-anchor="middle">votes</text>')
    parts.append(
        f'<text x="15" y="{height / 2}" transform="rotate(-90 15 {height / 2})" text-anchor="middle">'
        f"Spearman with the truth (mean of {cfg.seeds} seeds, {cfg.n_models} models)</text>"
    )
    parts.append("</svg>")
    target.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return str(target)
