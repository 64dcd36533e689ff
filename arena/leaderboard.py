"""Leaderboard slices, the cached fit per slice, and the data of its table and plots (no Gradio).

Slices
------
``overall``      every anonymous chat battle (the default leaderboard)
``lang:<code>``  anonymous chat battles whose first prompt is in that language (``lang:pl``, ``lang:zh-Hant``)
``pool:base``    anonymous continuation battles (base models, and chat models completing raw text)
``pool:chat``    the same battles as ``overall`` (the chat pool; a name kept for scripts)
``named``        battles where the visitor chose the models (never mixed with anonymous ones)
``cat:<name>``   anonymous chat battles of one prompt category (imported data: ``cat:code``, ``cat:math``)

Continuation battles count on ``pool:base`` only: a chat model's place on the chat boards comes from
chat battles alone, whatever share of its battles are continuations (4 of the shipped roster's 10 pairs).

Votes flagged ``identity_leak``, ``too_fast`` or ``replayed`` are left out of every slice (the store's default).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from arena.errors import UnknownSlice
from arena.ratings import (
    DEFAULT_LEVEL,
    DEFAULT_MIN_VOTES,
    SCALE,
    IntervalMethod,
    RatingsResult,
    TiePolicy,
    fit_ratings,
)

if TYPE_CHECKING:
    from arena.audit import AuditResult
    from arena.domain import PairCount
    from arena.storage.store import Store, VoteGroup
    from arena.style import StyleResult

__all__ = [
    "COLUMNS",
    "DEFAULT_SLICE",
    "FitParams",
    "LeaderboardCache",
    "LeaderboardView",
    "Slice",
    "SliceInfo",
    "UnknownSlice",
    "available_slices",
    "fit_slice",
    "heatmap_data",
    "heatmap_figure",
    "leaderboard_rows",
    "parse_slice",
    "ratings_figure",
    "ratings_plot_data",
]

COLUMNS = ("Rank", "Model", "Rating", "95% interval", "Votes", "Win rate", "Note")
NO_RANK = "—"  # a preliminary model: its votes cannot carry a rank
DEFAULT_SLICE = "overall"
MAX_SLICE_NAME = 40  # "lang:" and a language code; a longer name is refused before anything else
_FIXED_SLICES = ("overall", "named", "pool:chat", "pool:base")


# --- slices -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slice:
    """One leaderboard: which battles count."""

    name: str
    mode: str
    pool: str | None = None
    language: str | None = None
    category: str | None = None

    @property
    def label(self) -> str:
        if self.name == "overall":
            return "All anonymous chat battles"
        if self.name == "named":
            return "Named battles (models chosen by the visitor)"
        if self.category is not None:
            return f"Category: {self.category}"
        if self.language is not None:
            return f"Language: {self.language}"
        return f"Pool: {self.pool}"

    def filters(self) -> dict[str, Any]:
        """Keyword arguments of ``Store.pair_counts`` / ``Store.iter_battles`` selecting this slice."""
        out: dict[str, Any] = {"mode": self.mode, "pool": self.pool, "language": self.language}
        if self.category is not None:
            out["category"] = self.category
        return out

    def matches(self, group: VoteGroup) -> bool:
        return (
            group.mode == self.mode
            and (self.pool is None or group.pool == self.pool)
            and (self.language is None or group.language == self.language)
            and (self.category is None or self.category in group.categories)
        )


def parse_slice(name: str) -> Slice:
    """The slice called ``name``.

    Raises
    ------
    UnknownSlice
        For an unknown name; the detail lists the forms that exist.
    """
    if len(name) > MAX_SLICE_NAME:
        raise UnknownSlice(f"Unknown slice (a name of {len(name)} characters): slice names are short, e.g. lang:pl.")
    name = name.strip()
    if name == "overall":
        return Slice(name, "anonymous", pool="chat")
    if name == "named":
        return Slice(name, "named")
    kind, sep, value = name.partition(":")
    if sep and value and kind == "pool" and value in ("chat", "base"):
        return Slice(name, "anonymous", pool=value)
    if sep and value and kind == "lang":
        return Slice(name, "anonymous", pool="chat", language=value)
    if sep and value and kind == "cat" and "," not in value:
        return Slice(name, "anonymous", pool="chat", category=value)
    raise UnknownSlice(
        f"Unknown slice {name!r}: use overall, named, pool:chat, pool:base, lang:<code> (e.g. lang:pl, lang:zh-Hant) "
        "or cat:<category> (e.g. cat:code)."
    )


@dataclass(frozen=True)
class SliceInfo:
    name: str
    label: str
    votes: int


def _slice_state(groups: Sequence[VoteGroup], sl: Slice) -> tuple[int, int]:
    """(votes, newest vote id) of a slice: equal states mean equal counts, so no refit is needed."""
    hits = [g for g in groups if sl.matches(g)]
    return sum(g.votes for g in hits), max((g.last_vote_id for g in hits), default=0)


def available_slices(groups: Sequence[VoteGroup]) -> list[SliceInfo]:
    """The slices that have counted votes: overall, continuations, languages (most votes first), named."""
    candidates = [parse_slice("overall"), parse_slice("pool:base")]  # pool:chat is overall
    languages: dict[str, int] = {}
    for g in groups:
        if g.mode == "anonymous" and g.language:
            languages[g.language] = languages.get(g.language, 0) + g.votes
    candidates += [parse_slice(f"lang:{c}") for c, _ in sorted(languages.items(), key=lambda kv: (-kv[1], kv[0]))]
    categories: dict[str, int] = {}
    for g in groups:
        if g.mode == "anonymous":
            for c in g.categories:
                categories[c] = categories.get(c, 0) + g.votes
    candidates += [parse_slice(f"cat:{c}") for c, _ in sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))]
    candidates.append(parse_slice("named"))
    out = []
    overall = _slice_state(groups, candidates[0])
    for sl in candidates:
        state = _slice_state(groups, sl)
        # A slice holding exactly the overall battles (imported data is all pool:chat; a board in one
        # language) would be the same fit listed twice.
        if state[0] and (sl.name == "overall" or sl.mode != "anonymous" or state != overall):
            out.append(SliceInfo(sl.name, sl.label, state[0]))
    return out


# --- fitting and the cache --------------------------------------------------------------------


@dataclass(frozen=True)
class FitParams:
    """How a slice is fitted (see :func:`arena.ratings.fit_ratings`)."""

    tie_policy: TiePolicy = "half"
    alpha: float = 0.0
    interval: IntervalMethod = "bootstrap"
    bootstrap_rounds: int = 1000
    seed: int = 0  # fixed, so the same votes always show the same intervals
    min_votes: int = DEFAULT_MIN_VOTES
    bothbad_policy: TiePolicy | None = None  # None: as tie_policy
    level: float = DEFAULT_LEVEL
    scale: float = SCALE
    anchor: tuple[str, float] | None = None
    ipw: bool = False  # weight battles by inverse propensity (ARENA_IPW; docs/active-sampling.md)
    audit_resamples: int = 1000  # resamples of the audit run with each fit (0: no audit)


def fit_slice(store: Store, sl: Slice, params: FitParams) -> RatingsResult:
    """Read one slice's counts (one GROUP BY) and fit them."""
    counts = store.pair_counts(**sl.filters(), weighted=params.ipw)
    weights = [c.weight or 0.0 for c in counts] if params.ipw else None  # weighted counts always carry one
    return fit_ratings(
        counts,
        weights=weights,
        tie_policy=params.tie_policy,
        alpha=params.alpha,
        interval=params.interval,
        bootstrap_rounds=params.bootstrap_rounds,
        seed=params.seed,
        min_votes=params.min_votes,
        bothbad_policy=params.bothbad_policy,
        level=params.level,
        scale=params.scale,
        anchor=_anchor_in(params.anchor, counts),
    )


def _anchor_in(anchor: tuple[str, float] | None, counts: Sequence[PairCount]) -> tuple[str, float] | None:
    """The anchor when its model has a decided battle against another model in this slice; else None
    (a slice without the anchor model keeps mean 1000 instead of failing)."""
    if anchor is None:
        return None
    present = any(anchor[0] in (c.model_a, c.model_b) and c.model_a != c.model_b and c.count for c in counts)
    return anchor if present else None


def audit_slice(store: Store, sl: Slice, params: FitParams) -> AuditResult:
    """Read one slice's votes per (pair, outcome, voter) (one GROUP BY) and audit them as
    :func:`fit_slice` fits them: ties counted and battles weighted alike."""
    from arena.audit import THRESHOLDS, Thresholds, audit

    rows: Sequence[tuple[str, str, str, str, int]]
    weights: list[float] | None = None
    if params.ipw:
        weighted = store.voter_counts(**sl.filters(), weighted=True)
        rows, weights = [r[:5] for r in weighted], [r[5] for r in weighted]
    else:
        rows = store.voter_counts(**sl.filters())
    th = THRESHOLDS if params.min_votes == THRESHOLDS.min_votes else Thresholds(min_votes=params.min_votes)
    return audit(
        rows,
        weights=weights,
        resamples=max(params.audit_resamples, 20),
        seed=params.seed,
        thresholds=th,
        tie_policy=params.tie_policy,
        bothbad_policy=params.bothbad_policy,
    )


def style_slice(store: Store, sl: Slice, params: FitParams) -> StyleResult:
    """Style-controlled ratings of one slice: reads every counted battle's answers (docs/ratings.md)."""
    from arena.storage.store import DEFAULT_EXCLUDED_FLAGS
    from arena.style import StyleBattle, fit_style

    def battles() -> Iterator[StyleBattle]:
        for item in store.iter_battles(**sl.filters(), exclude_flags=DEFAULT_EXCLUDED_FLAGS, with_messages=True):
            vote = item["vote"]
            if vote is None:
                continue
            sides: dict[str, list[str]] = {"a": [], "b": []}
            for m in item["messages"]:
                if m.role == "assistant":
                    sides[m.side].append(m.content)
            b = item["battle"]
            answers = ("\n\n".join(sides["a"]), "\n\n".join(sides["b"]))
            yield StyleBattle(b.model_a, b.model_b, vote.winner, *answers)

    return fit_style(battles(), level=params.level, scale=params.scale)


@dataclass(frozen=True)
class LeaderboardView:
    """Everything the leaderboard tab shows for one slice."""

    slice: Slice
    result: RatingsResult
    slices: tuple[SliceInfo, ...]  # every slice with votes, for the selector
    votes: int  # counted votes in this slice
    updated_at: datetime  # when the counts behind ``result`` were read (the ratings' cutoff)
    audit: AuditResult | None = None  # None when the audit is switched off (``audit_resamples=0``)


@dataclass
class _Entry:
    state: tuple[int, int]
    result: RatingsResult
    updated_at: datetime
    audit: AuditResult | None = None


@dataclass
class LeaderboardCache:
    """Fits each slice once per state of its votes; page views in between reuse the fit.

    Checking costs one cheap GROUP BY (:meth:`Store.vote_groups`); a refit happens only when a
    slice's vote count or newest vote changed. Thread-safe: concurrent requests for the same
    stale slice wait for one fit instead of each running their own. Blocking: call it from a
    worker thread.
    """

    params: FitParams = field(default_factory=FitParams)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    fits: int = 0  # how many fits ran (tests and metrics)
    _entries: dict[str, _Entry] = field(default_factory=dict, repr=False)
    _styles: dict[str, tuple[tuple[int, int], StyleResult]] = field(default_factory=dict, repr=False)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    group_reads: int = 0  # how many vote_groups queries ran (tests and metrics)
    _reading: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _read_busy: bool = field(default=False, repr=False)
    _last_read: tuple[int, int, Sequence[VoteGroup] | BaseException] | None = field(default=None, repr=False)

    def _groups(self, store: Store) -> Sequence[VoteGroup]:
        """The counted votes per group, read by one query at a time however many callers ask.

        A caller uses a read that *started after it arrived* (so it sees every vote committed
        before it asked), but callers arriving while a read runs share the next one: a flood of
        leaderboard requests costs one GROUP BY at a time, back to back, not one each at once.
        """
        with self._reading:
            needed = self.group_reads + 1
            while True:
                last = self._last_read
                if last is not None and last[0] >= needed and last[1] == id(store):
                    result = last[2]
                    if isinstance(result, BaseException):
                        raise result
                    return result
                if not self._read_busy:
                    self._read_busy = True
                    self.group_reads += 1
                    generation = self.group_reads
                    break
                self._reading.wait()
        outcome: Sequence[VoteGroup] | BaseException
        try:
            outcome = store.vote_groups()
        except BaseException as e:
            outcome = e
        with self._reading:
            self._last_read = (generation, id(store), outcome)
            self._read_busy = False
            self._reading.notify_all()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def view(self, store: Store, slice_name: str = DEFAULT_SLICE) -> LeaderboardView:
        """The leaderboard of one slice, refitted only if its votes changed.

        Only slices that exist are fitted and cached: the four fixed ones and the languages and
        categories that have counted votes. So the cache holds at most 4 + (languages and categories
        with votes) entries, whatever names are asked for.

        Raises
        ------
        UnknownSlice
            For an unknown slice name, or a language or category without counted votes (before any fit).
        StorageError
            When the database cannot be read.
        """
        sl = parse_slice(slice_name)
        groups = self._groups(store)
        if sl.name not in _FIXED_SLICES and not any(sl.matches(g) and g.votes for g in groups):
            raise UnknownSlice(f"No counted votes in slice {sl.name!r}.")
        state = _slice_state(groups, sl)
        with self._guard:
            lock = self._locks.setdefault(sl.name, threading.Lock())
        with lock:
            entry = self._entries.get(sl.name)
            if entry is None or entry.state != state:
                updated_at = self.now()
                result = fit_slice(store, sl, self.params)
                # The audit is computed with the fit, once per change of the slice's votes.
                audit = audit_slice(store, sl, self.params) if self.params.audit_resamples > 0 else None
                self.fits += 1
                # The state read before the fit: a vote arriving meanwhile triggers one more fit later.
                entry = self._entries[sl.name] = _Entry(state, result, updated_at, audit)
        return LeaderboardView(
            sl, entry.result, tuple(available_slices(groups)), state[0], entry.updated_at, entry.audit
        )

    def style(self, store: Store, slice_name: str = DEFAULT_SLICE) -> StyleResult:
        """The style-controlled ratings of one slice, refitted only if its votes changed.

        Raises
        ------
        UnknownSlice
            For an unknown slice name.
        StorageError
            When the database cannot be read.
        """
        sl = parse_slice(slice_name)
        state = _slice_state(store.vote_groups(), sl)
        with self._guard:
            lock = self._locks.setdefault(f"style {sl.name}", threading.Lock())
        with lock:
            cached = self._styles.get(sl.name)
            if cached is None or cached[0] != state:
                cached = self._styles[sl.name] = (state, style_slice(store, sl, self.params))
        return cached[1]


# --- table ------------------------------------------------------------------------------------


def _win_rate(wins: int, losses: int, ties: int, bothbad: int) -> float | None:
    decided = wins + losses + ties + bothbad
    return (wins + 0.5 * (ties + bothbad)) / decided if decided else None


def has_groups(result: RatingsResult) -> bool:
    """Whether the models form groups that never met (then every table shows a group column)."""
    return len(result.components) > 1


def leaderboard_rows(result: RatingsResult) -> list[list[object]]:
    """One row per rated model, best first, as the leaderboard table shows it.

    The rank is ``NO_RANK`` for a preliminary model. When groups never met (:func:`has_groups`),
    a last column gives each row's group (1, 2, ...): ranks and ratings compare only within one.
    """
    rows: list[list[object]] = []
    grouped = has_groups(result)
    # Groups that never met are listed one after the other (largest first), each best first.
    for r in sorted(result.rows, key=lambda r: r.component) if grouped else result.rows:
        rate = _win_rate(r.wins, r.losses, r.ties, r.bothbad)
        rows.append(
            [
                NO_RANK if r.rank is None else r.rank,
                r.model,
                round(r.rating),
                f"{round(r.ci_lower)} – {round(r.ci_upper)}" if math.isfinite(r.ci_lower) else "",
                r.votes,
                "" if rate is None else f"{rate:.0%}",
                "preliminary" if r.preliminary else "",
                *([r.component + 1] if grouped else []),
            ]
        )
    return rows


# --- plots ------------------------------------------------------------------------------------


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def ratings_plot_data(result: RatingsResult) -> dict[str, list[Any]]:
    """Per rated model (best first): rating and the distances to its interval's ends (error bars)."""
    return {
        "models": [r.model for r in result.rows],
        "ratings": [r.rating for r in result.rows],
        "error_minus": [_num(r.rating - r.ci_lower) for r in result.rows],
        "error_plus": [_num(r.ci_upper - r.rating) for r in result.rows],
        "preliminary": [r.preliminary for r in result.rows],
    }


def heatmap_data(result: RatingsResult, kind: str) -> dict[str, Any]:
    """``kind="win_rate"``: row model's score against the column model (None without battles);
    ``kind="battles"``: battles between the two. Rows and columns are the rated models, best first.
    """
    if kind not in ("win_rate", "battles"):
        raise ValueError(f"kind must be 'win_rate' or 'battles', not {kind!r}.")
    n = len(result.rows)  # ``result.models`` lists the rated models first, in the rows' order
    matrix = result.win_rate if kind == "win_rate" else result.battle_count
    z = [[_num(float(matrix[i, j])) if kind == "win_rate" else int(matrix[i, j]) for j in range(n)] for i in range(n)]
    return {"models": list(result.models[:n]), "z": z}


def ratings_figure(result: RatingsResult, *, title: str | None = None, rating_axis: str = "rating") -> Any:
    """A plotly figure: each model's rating with its 95% interval as error bars.

    ``title`` and ``rating_axis`` replace the English texts (the page passes them translated).
    """
    import plotly.graph_objects as go

    d = ratings_plot_data(result)
    fig = go.Figure(
        go.Scatter(
            x=d["models"],
            y=d["ratings"],
            mode="markers",
            error_y={"type": "data", "symmetric": False, "array": d["error_plus"], "arrayminus": d["error_minus"]},
            marker={"size": 10, "symbol": ["circle-open" if p else "circle" for p in d["preliminary"]]},
            hovertemplate="%{x}: %{y:.0f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title or f"Ratings with 95% {result.interval_method} intervals (open marker: preliminary)",
        yaxis_title=rating_axis,
        margin={"l": 40, "r": 20, "t": 50, "b": 40},
        height=420,
    )
    return fig


def heatmap_figure(result: RatingsResult, kind: str, *, title: str | None = None, versus: str = "vs") -> Any:
    """A plotly heatmap of :func:`heatmap_data` (row model against column model).

    ``title`` and ``versus`` (the word between two models when hovering) replace the English texts.
    """
    import plotly.graph_objects as go

    d = heatmap_data(result, kind)
    win = kind == "win_rate"
    fig = go.Figure(
        go.Heatmap(
            z=d["z"],
            x=d["models"],
            y=d["models"],
            colorscale="RdBu" if win else "Blues",
            zmin=0 if win else None,
            zmax=1 if win else None,
            texttemplate="%{z:.2f}" if win else "%{z}",
            hovertemplate=f"%{{y}} {versus} %{{x}}: %{{z}}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title
        or ("Win rate of row model against column model (ties count half)" if win else "Battles between models"),
        yaxis={"autorange": "reversed"},
        margin={"l": 40, "r": 20, "t": 50, "b": 40},
        height=460,
    )
    return fig
