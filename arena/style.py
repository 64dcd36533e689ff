"""Style control: Bradley-Terry ratings with answer length and markdown features as covariates.

A vote for the longer or better formatted answer says something about style as well as about the
model. As LMArena's ``arena-rank`` does, each battle gets the normalised difference of four
features of the two answers, ``(f_a - f_b) / (f_a + f_b)`` (0 when both are 0):

``length``   words in the model's answers (whitespace-separated tokens, all turns)
``headers``  markdown header lines (``#`` to ``######``)
``lists``    list item lines (``-``, ``*``, ``+`` or ``1.``)
``bold``     bold spans (``**...**`` or ``__...__``)

Each difference is standardised over the battles (mean 0, standard deviation 1), and the model
``P(A wins) = sigma(theta_a - theta_b + beta . x)`` is fitted by maximum likelihood (Newton; ties
and both-bad votes count half a win each way, as the plain leaderboard). ``beta`` are the style
coefficients: the log-odds a one-standard-deviation style advantage is worth. Intervals are the
sandwich (robust) ones, over battles, at the same level as the leaderboard's. The ratings are on the
leaderboard's scale with mean 1000 over the models, so they read beside the plain ones.

Pure numpy/scipy; the answers come from :meth:`arena.storage.store.Store.iter_battles`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, ndtri

from arena.ratings import BASE_RATING, SCALE

__all__ = ["FEATURES", "StyleBattle", "StyleCoefficient", "StyleResult", "StyleRow", "features", "fit_style"]

FEATURES = ("length", "headers", "lists", "bold")
_HEADER = re.compile(r"^\s{0,3}#{1,6}\s", re.MULTILINE)
_LIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+?\*\*|__[^_\n]+?__")
_SCORE = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}
_RIDGE = 0.01
Float = NDArray[np.float64]


def features(text: str) -> tuple[float, float, float, float]:
    """(words, header lines, list item lines, bold spans) of one side's answers."""
    return (
        float(len(text.split())),
        float(len(_HEADER.findall(text))),
        float(len(_LIST.findall(text))),
        float(len(_BOLD.findall(text))),
    )


@dataclass(frozen=True)
class StyleBattle:
    """One voted battle: the models, the winner and the two sides' answers (all turns joined)."""

    model_a: str
    model_b: str
    winner: str
    answer_a: str
    answer_b: str


@dataclass(frozen=True)
class StyleRow:
    model: str
    rating: float  # style-controlled
    ci_lower: float
    ci_upper: float
    plain: float  # the same fit without style covariates
    votes: int


@dataclass(frozen=True)
class StyleCoefficient:
    feature: str
    value: float  # log-odds per standard deviation of the feature difference
    ci_lower: float
    ci_upper: float

    @property
    def significant(self) -> bool:
        return self.ci_lower > 0 or self.ci_upper < 0


@dataclass(frozen=True)
class StyleResult:
    rows: tuple[StyleRow, ...]  # style-controlled rating, descending
    coefficients: tuple[StyleCoefficient, ...]
    n_battles: int
    level: float


def _differences(battles: Sequence[StyleBattle]) -> Float:
    fa = np.array([features(b.answer_a) for b in battles], dtype=np.float64).reshape(-1, len(FEATURES))
    fb = np.array([features(b.answer_b) for b in battles], dtype=np.float64).reshape(-1, len(FEATURES))
    total = fa + fb
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(total > 0, (fa - fb) / np.where(total > 0, total, 1.0), 0.0)
    sd = x.std(axis=0)
    return np.asarray((x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0), dtype=np.float64)


def _newton(a: NDArray[np.int64], b: NDArray[np.int64], y: Float, x: Float, n: int) -> tuple[Float, Float]:
    """MLE of (theta, beta) and its sandwich covariance; theta is pinned to mean 0 by a constraint row."""
    from scipy import sparse

    m, k = x.shape
    rows = np.repeat(np.arange(m), 2)
    cols = np.stack([a, b], axis=1).ravel()
    vals = np.tile([1.0, -1.0], m)
    design = sparse.hstack([sparse.csr_matrix((vals, (rows, cols)), shape=(m, n)), sparse.csr_matrix(x)]).tocsr()
    p_dim = n + k
    params = np.zeros(p_dim)
    centre = np.zeros(p_dim)
    centre[:n] = 1.0 / n
    for _ in range(50):
        p = expit(design @ params)
        grad = design.T @ (y - p) - _RIDGE * params
        w = p * (1 - p)
        hess = np.asarray((design.T @ sparse.diags(w) @ design).todense()) + _RIDGE * np.eye(p_dim)
        hess += np.outer(centre, centre) * n  # fixes the free shift of theta
        step = np.linalg.solve(hess, grad)
        big = float(np.abs(step).max())
        params += step * min(1.0, 2.0 / max(big, 1e-300))
        params[:n] -= params[:n].mean()
        if big < 1e-10:
            break
    resid = y - expit(design @ params)
    meat = np.asarray((design.T @ sparse.diags(resid**2) @ design).todense())
    bread = np.linalg.inv(hess)
    c = np.eye(p_dim)
    c[:n, :n] -= 1.0 / n
    cov = c @ bread @ meat @ bread @ c.T
    return params, cov


def fit_style(battles: Iterable[StyleBattle], *, level: float = 0.95, scale: float = SCALE) -> StyleResult:
    """Style-controlled ratings and style coefficients from voted battles with their answers.

    Battles of a model against itself, or without a known winner, are ignored. Fewer than two
    models give an empty result.
    """
    kept = [b for b in battles if b.model_a != b.model_b and b.winner in _SCORE]
    models = sorted({b.model_a for b in kept} | {b.model_b for b in kept})
    if len(models) < 2:
        return StyleResult((), (), len(kept), level)
    idx = {m: i for i, m in enumerate(models)}
    n = len(models)
    a = np.array([idx[b.model_a] for b in kept], dtype=np.int64)
    bb = np.array([idx[b.model_b] for b in kept], dtype=np.int64)
    y = np.array([_SCORE[b.winner] for b in kept], dtype=np.float64)
    x = _differences(kept)
    z = float(ndtri(0.5 + level / 2))
    params, cov = _newton(a, bb, y, x, n)
    plain, _ = _newton(a, bb, y, np.zeros((len(kept), 0)), n)
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    votes = np.bincount(a, minlength=n) + np.bincount(bb, minlength=n)
    rows = [
        StyleRow(
            model=models[i],
            rating=BASE_RATING + scale * params[i],
            ci_lower=BASE_RATING + scale * (params[i] - z * sd[i]),
            ci_upper=BASE_RATING + scale * (params[i] + z * sd[i]),
            plain=BASE_RATING + scale * plain[i],
            votes=int(votes[i]),
        )
        for i in range(n)
    ]
    rows.sort(key=lambda r: (-r.rating, r.model))
    coefs = tuple(
        StyleCoefficient(
            f,
            float(params[n + j]),
            float(params[n + j] - z * sd[n + j]),
            float(params[n + j] + z * sd[n + j]),
        )
        for j, f in enumerate(FEATURES)
    )
    if not all(math.isfinite(r.rating) for r in rows):
        raise RuntimeError("The style-controlled fit did not converge; report the slice's battles.")
    return StyleResult(tuple(rows), coefs, len(kept), level)
