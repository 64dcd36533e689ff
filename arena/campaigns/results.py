"""Campaign results: win/loss/draw, Bradley-Terry with intervals, per category and language, exports.

Everything works on :class:`~arena.domain.PairCount` rows (one GROUP BY), through the arena's own
:func:`arena.ratings.fit_ratings`. Draws are "tie" and "tie (bothbad)" together; ``win %`` is wins
over judgments and ``win+draw %`` is (wins + draws) over judgments, Shisa's two figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from arena.campaigns.formats import dump_csv, fastchat_question_id
from arena.campaigns.model import CampaignVote
from arena.domain import IntervalMethod, PairCount
from arena.ratings import RatingsResult, fit_ratings

__all__ = [
    "JUDGMENT_COLUMNS",
    "RESULT_COLUMNS",
    "CandidateRow",
    "SliceResult",
    "candidate_rows",
    "fit_slice",
    "head_to_head",
    "judgment_row",
    "judgments_csv",
    "results_csv",
]


@dataclass(frozen=True)
class CandidateRow:
    """One candidate's record and rating in one slice of a campaign."""

    candidate: str
    judgments: int
    wins: int
    losses: int
    draws: int
    rating: float | None
    ci_lower: float | None
    ci_upper: float | None
    rank: int | None
    preliminary: bool

    @property
    def win_pct(self) -> float | None:
        return 100.0 * self.wins / self.judgments if self.judgments else None

    @property
    def win_draw_pct(self) -> float | None:
        return 100.0 * (self.wins + self.draws) / self.judgments if self.judgments else None


@dataclass(frozen=True)
class SliceResult:
    """The results of one slice: ``overall``, ``category:X``, ``language:X`` or ``setting:X``."""

    name: str
    rows: tuple[CandidateRow, ...]
    fit: RatingsResult | None
    judgments: int


def _records(counts: Iterable[PairCount], candidates: Sequence[str]) -> dict[str, list[int]]:
    rec = {c: [0, 0, 0] for c in candidates}  # wins, losses, draws
    for p in counts:
        if p.model_a == p.model_b:
            continue
        for name in (p.model_a, p.model_b):
            rec.setdefault(name, [0, 0, 0])
        if p.winner == "model_a":
            rec[p.model_a][0] += p.count
            rec[p.model_b][1] += p.count
        elif p.winner == "model_b":
            rec[p.model_b][0] += p.count
            rec[p.model_a][1] += p.count
        else:
            rec[p.model_a][2] += p.count
            rec[p.model_b][2] += p.count
    return rec


def fit_slice(
    name: str,
    counts: Sequence[PairCount],
    candidates: Sequence[str] = (),
    *,
    bootstrap_rounds: int = 200,
    interval: IntervalMethod = "bootstrap",
    min_votes: int = 30,
    seed: int = 0,
) -> SliceResult:
    """Win/loss/draw and a Bradley-Terry fit (95% intervals) of one slice's counts."""
    counts = [p for p in counts if p.model_a != p.model_b]
    rec = _records(counts, candidates)
    fit = None
    if counts:
        fit = fit_ratings(
            counts,
            interval=interval,
            bootstrap_rounds=bootstrap_rounds if interval == "bootstrap" else 0,
            seed=seed,
            min_votes=min_votes,
        )
    return SliceResult(name, tuple(candidate_rows(rec, fit)), fit, sum(p.count for p in counts))


def candidate_rows(rec: dict[str, list[int]], fit: RatingsResult | None) -> list[CandidateRow]:
    """Rows ordered by rating (unrated candidates last, by name)."""
    rated = {r.model: r for r in fit.rows} if fit is not None else {}
    rows = []
    for name, (w, lo, d) in rec.items():
        r = rated.get(name)
        rows.append(
            CandidateRow(
                candidate=name,
                judgments=w + lo + d,
                wins=w,
                losses=lo,
                draws=d,
                rating=None if r is None else r.rating,
                ci_lower=None if r is None else r.ci_lower,
                ci_upper=None if r is None else r.ci_upper,
                rank=None if r is None else r.rank,
                preliminary=True if r is None else r.preliminary,
            )
        )
    return sorted(rows, key=lambda x: (x.rating is None, -(x.rating or 0.0), x.candidate))


def head_to_head(counts: Sequence[PairCount], candidates: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """A matrix of "W-L-D" of the row candidate against the column candidate (header, rows)."""
    names = list(candidates) or sorted({n for p in counts for n in (p.model_a, p.model_b)})
    index = {n: i for i, n in enumerate(names)}
    k = len(names)
    w = np.zeros((k, k), dtype=int)
    d = np.zeros((k, k), dtype=int)
    for p in counts:
        if p.model_a not in index or p.model_b not in index or p.model_a == p.model_b:
            continue
        i, j = index[p.model_a], index[p.model_b]
        if p.winner == "model_a":
            w[i, j] += p.count
        elif p.winner == "model_b":
            w[j, i] += p.count
        else:
            d[i, j] += p.count
            d[j, i] += p.count
    rows = []
    for i, name in enumerate(names):
        cells = ["" if i == j else f"{w[i, j]}-{w[j, i]}-{d[i, j]}" for j in range(k)]
        rows.append([name, *cells])
    return ["", *names], rows


RESULT_COLUMNS = [
    "slice",
    "candidate",
    "rank",
    "rating",
    "ci_lower",
    "ci_upper",
    "judgments",
    "wins",
    "losses",
    "draws",
    "win_pct",
    "win_draw_pct",
    "preliminary",
]


def _round(x: float | None, digits: int = 1) -> Any:
    return "" if x is None else round(x, digits)


def results_csv(slices: Iterable[SliceResult]) -> str:
    """Every slice's rows as CSV (``RESULT_COLUMNS``)."""
    rows = []
    for s in slices:
        for r in s.rows:
            rows.append(
                [
                    s.name,
                    r.candidate,
                    "" if r.rank is None else r.rank,
                    _round(r.rating),
                    _round(r.ci_lower),
                    _round(r.ci_upper),
                    r.judgments,
                    r.wins,
                    r.losses,
                    r.draws,
                    _round(r.win_pct),
                    _round(r.win_draw_pct),
                    str(r.preliminary).lower(),
                ]
            )
    return dump_csv(RESULT_COLUMNS, rows)


JUDGMENT_COLUMNS = [
    # MT-Bench human judgments' columns ...
    "question_id",
    "model_a",
    "model_b",
    "winner",
    "judge",
    "turn",
    # ... and the arena's own.
    "comparison_id",
    "campaign",
    "category",
    "language",
    "setting",
    "answer_a",
    "answer_b",
    "reason",
    "flags",
    "propensity",
    "uniform_propensity",
    "shown_at",
    "tstamp",
]


def judgment_row(v: CampaignVote) -> dict[str, Any]:
    """One judgment in MT-Bench's human-judgment columns plus the arena's (``judge`` is a salted hash)."""
    return {
        "question_id": fastchat_question_id(v.prompt_id),
        "model_a": v.model_a,
        "model_b": v.model_b,
        "winner": v.winner,
        "judge": f"arena_{v.client_hash[:16]}",
        "turn": v.turns,
        "comparison_id": v.id,
        "campaign": v.campaign_id,
        "category": v.category,
        "language": v.language,
        "setting": v.setting,
        "answer_a": v.answer_a,
        "answer_b": v.answer_b,
        "reason": v.reason,
        "flags": ",".join(v.flags),
        "propensity": v.propensity,
        "uniform_propensity": v.uniform_propensity,
        "shown_at": v.shown_at.isoformat(),
        "tstamp": v.created_at.timestamp(),
    }


def judgments_csv(votes: Iterable[CampaignVote]) -> str:
    return dump_csv(
        JUDGMENT_COLUMNS,
        ([("" if (x := judgment_row(v)[c]) is None else x) for c in JUDGMENT_COLUMNS] for v in votes),
    )
