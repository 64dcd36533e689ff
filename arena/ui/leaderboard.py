"""The leaderboard tab: slice selector, ratings table, plots and downloads (fits are cached by the service)."""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr

from arena import exchange, i18n
from arena.audit import AuditResult
from arena.errors import ArenaError, UnknownSlice
from arena.leaderboard import (
    DEFAULT_SLICE,
    NO_RANK,
    LeaderboardView,
    Slice,
    has_groups,
    heatmap_figure,
    leaderboard_rows,
    parse_slice,
    ratings_figure,
)
from arena.ratings import RatingsResult
from arena.service import ArenaService
from arena.storage.store import DEFAULT_EXCLUDED_FLAGS
from arena.style import StyleResult
from arena.ui.texts import Texts, Visitor, message, warning

log = logging.getLogger(__name__)


class _Downloads:
    """A private temporary folder for the files offered for download, made on first use.

    One file per (kind, slice) at a time: a file is named by the state of the votes it holds, made
    once per state (concurrent requests wait for the one export), and the older files of the same
    kind and slice are deleted when a newer one is made. Slices are only those with votes
    (:class:`arena.leaderboard.LeaderboardCache`), so the folder holds at most two files per slice
    whatever is asked; it is removed when the process exits.
    """

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._lock = asyncio.Lock()
        self.written: dict[Path, object] = {}  # what ``write`` returned for each file kept

    def folder(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="arena-downloads-"))
            atexit.register(shutil.rmtree, self._dir, True)
        return self._dir

    def path(self, kind: str, slice_name: str, state: str) -> Path:
        return self.folder() / _safe(f"{kind}-{slice_name}-{state}.csv")

    async def made(self, kind: str, slice_name: str, state: str, write: Callable[[Path], object]) -> Path:
        """The file for this state, written by ``write(path)`` in a worker thread unless it exists."""
        path = self.path(kind, slice_name, state)
        async with self._lock:
            if not path.exists():
                partial = path.with_name(path.name + ".part")
                result = await asyncio.to_thread(write, partial)
                partial.replace(path)
                self.written[path] = result
                prefix = _safe(f"{kind}-{slice_name}-")
                for old in self.folder().glob(f"{prefix}*.csv"):
                    if old != path:
                        old.unlink(missing_ok=True)
                        self.written.pop(old, None)
        return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


COLUMN_KEYS = (
    "column.rank",
    "column.model",
    "column.rating",
    "column.interval",
    "column.votes",
    "column.win_rate",
    "column.note",
)
NOTE_COLUMN = COLUMN_KEYS.index("column.note")
# Notes of the fit that the summary already says in its own words (the table marks preliminary rows).
_SAID_NOTES = frozenset({"note.preliminary", "note.no_votes", "note.nothing_to_rate"})


def slice_label(language: str, sl: Slice) -> str:
    if sl.name in ("overall", "named"):
        return i18n.text(language, f"slice.{sl.name}")
    if sl.pool is not None:
        return i18n.text(language, "slice.pool", pool=sl.pool)
    if sl.category is not None:
        return i18n.text(language, "slice.category", category=sl.category)
    return i18n.text(language, "slice.lang", language=sl.language)


def _slice_choices(view: LeaderboardView, language: str) -> list[tuple[str, str]]:
    choices = [
        (
            i18n.text(
                language, "leaderboard.slice_votes", label=slice_label(language, parse_slice(s.name)), votes=s.votes
            ),
            s.name,
        )
        for s in view.slices
    ]
    if not any(name == view.slice.name for _, name in choices):
        choices.insert(0, (slice_label(language, view.slice), view.slice.name))
    return choices


def summary(language: str, result: RatingsResult, *, updated_at: datetime, sl: Slice) -> str:
    """What the table rests on (votes, method, update time), in the visitor's language."""
    t = i18n.text
    if not result.rows:
        return t(language, "leaderboard.empty")
    parts = [
        slice_label(language, sl),
        t(language, "leaderboard.votes", n=result.n_battles),
        t(language, "leaderboard.method", interval=result.interval_method),
        t(language, "leaderboard.ties_half" if result.tie_policy == "half" else "leaderboard.ties_excluded"),
        t(language, "leaderboard.updated", when=f"{updated_at.astimezone(UTC):%Y-%m-%d %H:%M}"),
    ]
    text = " · ".join(parts)
    if any(r.preliminary for r in result.rows):
        text += "\n\n" + t(language, "leaderboard.preliminary_note", n=result.min_votes)
    notes = fit_notes(language, result)
    return text + "".join(f"\n\n{note}" for note in notes)


def fit_notes(language: str, result: RatingsResult) -> list[str]:
    """The fit's notes in ``language``, less those the summary already says."""
    return [i18n.render(note, language) for note in result.notes if note.key not in _SAID_NOTES]


def ratings_chart(language: str, result: RatingsResult) -> Any:
    """The ratings figure with its title and axis in ``language``."""
    title = i18n.text(language, "leaderboard.plot_ratings_title", interval=result.interval_method)
    return ratings_figure(result, title=title, rating_axis=i18n.text(language, "leaderboard.plot_rating_axis"))


def heatmap_chart(language: str, result: RatingsResult, kind: str) -> Any:
    """The win-rate (``kind="win_rate"``) or battle-count heatmap with its texts in ``language``."""
    key = "leaderboard.plot_win_rates_title" if kind == "win_rate" else "leaderboard.plot_battles_title"
    return heatmap_figure(
        result, kind, title=i18n.text(language, key), versus=i18n.text(language, "leaderboard.plot_versus")
    )


def _rank_range(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}–{high}"


def table_value(language: str, result: RatingsResult | None, audit: AuditResult | None = None) -> dict[str, Any]:
    """The table with its headers in ``language`` (``None``: no rows).

    With an audit, the rank is the model's 95% range of ranks and a tier column follows: a new tier
    starts only where the simultaneous separation test tells neighbours apart. A preliminary model
    has no rank ("—"); when groups never met, a group column comes last.
    """
    rows = leaderboard_rows(result) if result is not None else []
    keys = list(COLUMN_KEYS)
    audited = {}
    if audit is not None:
        audited = {
            m: (_rank_range(lo, hi), t)
            for m, lo, hi, t in zip(audit.models, audit.rank_low, audit.rank_high, audit.tier, strict=True)
        }
        keys.insert(1, "column.tier")
    for row in rows:
        if row[NOTE_COLUMN]:
            row[NOTE_COLUMN] = i18n.text(language, "leaderboard.preliminary")
        if audit is not None:
            model = str(row[1])
            rank, tier = audited.get(model, (row[0], ""))
            if row[0] == NO_RANK:
                rank, tier = NO_RANK, ""
            row[0] = rank
            row.insert(1, tier)
    if result is not None and has_groups(result):
        keys.append("column.group")
    return {"headers": [i18n.text(language, k) for k in keys], "data": rows}


STYLE_KEYS = (
    "column.rank",
    "column.model",
    "column.style_rating",
    "column.interval",
    "column.plain_rating",
    "column.votes",
)


def style_table_value(language: str, style: StyleResult, min_votes: int = 0) -> dict[str, Any]:
    """The style-controlled table: rank by separated intervals, rating, interval, plain rating.

    As in the plain table, a model with fewer than ``min_votes`` votes has no rank ("—") and does
    not push the others down.
    """
    settled = [r for r in style.rows if r.votes >= min_votes]
    rows: list[list[object]] = []
    for r in style.rows:
        rank: object = NO_RANK
        if r.votes >= min_votes:
            rank = 1 + sum(bool(o.ci_lower > r.ci_upper) for o in settled)
        interval = f"{round(r.ci_lower)} – {round(r.ci_upper)}"
        rows.append([rank, r.model, round(r.rating), interval, round(r.plain), r.votes])
    return {"headers": [i18n.text(language, k) for k in STYLE_KEYS], "data": rows}


def style_summary(language: str, style: StyleResult) -> str:
    """One line on what the style-controlled view is, with the style coefficients."""
    if not style.rows:
        return i18n.text(language, "leaderboard.empty")
    coefs = ", ".join(
        f"{i18n.text(language, f'style.{c.feature}')} {c.value:+.2f} ({c.ci_lower:+.2f} … {c.ci_upper:+.2f})"
        for c in style.coefficients
        if c.ci_upper > c.ci_lower  # a feature no answer had (or every answer alike) says nothing
    )
    return i18n.text(language, "leaderboard.style_note", coefficients=coefs)


def audit_sentences(language: str, audit: AuditResult | None) -> list[str]:
    """The audit as short plain sentences in ``language``: the probes that fired first."""
    if audit is None or not audit.models:
        return []
    t = i18n.text
    fired: list[str] = []
    fine: list[str] = []
    for p in audit.probes:
        if p.value is None:
            continue  # not enough votes to run this probe yet
        key = f"audit.{p.name}.{'fired' if p.fired else 'ok'}"
        values: dict[str, object] = {}
        if p.name == "separation":
            pairs = p.detail.get("pairs", [])
            values = {"pairs": len(pairs), "unseparated": sum(not x["simultaneous"] for x in pairs)}
        elif p.name == "rank_intervals":
            values = {"width": f"{float(p.value):g}"}
        elif p.name == "voter_concentration":
            values = {"ratio": f"{float(p.value):.1f}"}
        elif p.name == "annotator_influence":
            values = {"model": p.detail.get("model", "")}
        elif p.name == "position_bias":
            values = {"share": f"{100 / (1 + math.exp(-float(p.value))):.0f}%"}
        elif p.name == "tie_convention":
            values = {"pairs": ", ".join(p.detail.get("pairs", []))}
        elif p.name == "connectivity":
            values = {"n": p.value}
        text = t(language, key, **values)
        (fired if p.fired else fine).append(text)
    return fired + fine


def audit_markdown(language: str, audit: AuditResult | None) -> str:
    lines = audit_sentences(language, audit)
    if not lines:
        return ""
    return f"**{i18n.text(language, 'audit.title')}**\n\n" + "\n".join(f"- {line}" for line in lines)


def build_leaderboard_tab(service: ArenaService, texts: Texts, visitor: gr.State) -> gr.Tab:
    downloads = _Downloads()
    default = texts.default
    tab: gr.Tab  # Gradio's __enter__ is untyped
    with gr.Tab(id="leaderboard", elem_id="leaderboard_tab") as tab:
        with gr.Row():
            choice = texts.bind(
                gr.Dropdown(
                    choices=[(slice_label(default, parse_slice(DEFAULT_SLICE)), DEFAULT_SLICE)],
                    value=DEFAULT_SLICE,
                    elem_id="leaderboard_slice",
                    interactive=True,
                    # The choices are filled in from the database after the first load; API callers may name any slice.
                    allow_custom_value=True,
                    scale=4,
                ),
                label="leaderboard.slice",
            )
            refresh = texts.bind(gr.Button(elem_id="leaderboard_refresh", scale=1), value="leaderboard.refresh")
        style_switch = texts.bind(
            gr.Checkbox(value=False, elem_id="leaderboard_style", interactive=True), label="leaderboard.style_switch"
        )
        info = gr.Markdown("", elem_id="leaderboard_info")
        table = gr.Dataframe(
            headers=[i18n.text(default, k) for k in COLUMN_KEYS],
            interactive=False,
            elem_id="leaderboard_table",
            wrap=True,
        )
        audit_box = gr.Markdown("", elem_id="leaderboard_audit")
        ratings_plot = texts.bind(gr.Plot(elem_id="leaderboard_ratings_plot"), label="leaderboard.ratings_plot")
        with gr.Row():
            win_plot = texts.bind(gr.Plot(elem_id="leaderboard_win_rates"), label="leaderboard.win_rates")
            count_plot = texts.bind(gr.Plot(elem_id="leaderboard_battle_counts"), label="leaderboard.battle_counts")
        with gr.Row():
            ratings_file = texts.bind(
                gr.DownloadButton(visible=False, elem_id="leaderboard_ratings_csv"),
                label="leaderboard.download_ratings",
            )
            prepare = texts.bind(gr.Button(elem_id="leaderboard_prepare_battles"), value="leaderboard.prepare_battles")
            battles_file = texts.bind(
                gr.DownloadButton(visible=False, elem_id="leaderboard_battles_csv"),
                label="leaderboard.download_battles",
            )

    async def view_of(slice_name: str | None) -> LeaderboardView:
        return await service.leaderboard(slice_name or DEFAULT_SLICE)

    async def load(slice_name: str | None, styled: bool | None, who: Visitor) -> dict[Any, Any]:
        try:
            view = await view_of(slice_name)
        except UnknownSlice:
            view = await view_of(DEFAULT_SLICE)
        except ArenaError as e:
            return {
                info: f"⚠️ {message(who.language, e)}",
                table: table_value(who.language, None),
                audit_box: "",
            }
        text = summary(who.language, view.result, updated_at=view.updated_at, sl=view.slice)
        value = table_value(who.language, view.result, view.audit)
        if styled and view.result.rows:
            try:
                style = await service.leaderboard_style(view.slice.name)
            except ArenaError as e:
                text = f"⚠️ {message(who.language, e)}\n\n{text}"
            else:
                text = f"{style_summary(who.language, style)}\n\n{text}"
                value = style_table_value(who.language, style, view.result.min_votes)
        return {info: text, table: value, audit_box: audit_markdown(who.language, view.audit)}

    async def details(slice_name: str | None, who: Visitor) -> dict[Any, Any]:
        try:
            view = await view_of(slice_name)
        except (ValueError, ArenaError):
            return {ratings_file: gr.update(visible=False)}
        path = await downloads.made(
            "ratings",
            view.slice.name,
            str(view.votes),
            lambda p: exchange.write_ratings_csv([(view.slice.name, view.result)], p, cutoff=view.updated_at),
        )
        rated = bool(view.result.rows)

        def charts() -> tuple[Any, Any, Any]:
            if not rated:
                return None, None, None
            return (
                ratings_chart(who.language, view.result),
                heatmap_chart(who.language, view.result, "win_rate"),
                heatmap_chart(who.language, view.result, "battles"),
            )

        # Off the event loop: ~40 ms for 20 models (0.8 s for the first, which imports plotly).
        ratings, win_rates, battles = await asyncio.to_thread(charts)
        return {
            choice: gr.update(choices=_slice_choices(view, who.language), value=view.slice.name),
            ratings_plot: ratings,
            win_plot: win_rates,
            count_plot: battles,
            ratings_file: gr.update(value=str(path), visible=rated),
            battles_file: gr.update(visible=False),
        }

    async def prepare_battles(slice_name: str | None, who: Visitor) -> dict[Any, Any]:
        # Made once per state of the slice's votes and kept until the next vote: a thousand calls
        # cost one export, one file (a fresh export per call once took a battle from 2.5 to 102 s).
        try:
            view = await view_of(slice_name)
        except UnknownSlice:
            view = await view_of(DEFAULT_SLICE)
        except ArenaError as e:
            warning(who.language, message(who.language, e))
            return {battles_file: gr.update(visible=False)}
        sl = view.slice
        # Without conversations: the file is public and prompts are the visitors' own text.
        filters = {**sl.filters(), "exclude_flags": DEFAULT_EXCLUDED_FLAGS}
        try:
            path = await downloads.made(
                "battles",
                sl.name,
                str(view.votes),
                lambda p: exchange.export_battles(service.store, p, filters=filters),
            )
        except ArenaError as e:
            warning(who.language, message(who.language, e))
            return {battles_file: gr.update(visible=False)}
        n = downloads.written.get(path, 0)
        label = i18n.text(who.language, "leaderboard.download_battles_n", n=n)
        return {battles_file: gr.update(value=str(path), visible=True, label=label)}

    triggers = [refresh.click, tab.select, choice.input, style_switch.input]
    gr.on(
        triggers,
        load,
        inputs=[choice, style_switch, visitor],
        outputs=[info, table, audit_box],
        api_name="leaderboard",
        show_progress="hidden",
    ).then(
        details,
        inputs=[choice, visitor],
        outputs=[choice, ratings_plot, win_plot, count_plot, ratings_file, battles_file],
        api_visibility="private",
        show_progress="hidden",
    )
    prepare.click(prepare_battles, inputs=[choice, visitor], outputs=[battles_file], api_visibility="private")
    return tab
