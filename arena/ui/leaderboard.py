"""The leaderboard tab: slice selector, ratings table, plots and downloads (fits are cached by the service)."""

from __future__ import annotations

import asyncio
import atexit
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr

from arena import exchange, i18n
from arena.errors import ArenaError
from arena.leaderboard import (
    DEFAULT_SLICE,
    LeaderboardView,
    Slice,
    heatmap_figure,
    leaderboard_rows,
    parse_slice,
    ratings_figure,
)
from arena.ratings import RatingsResult
from arena.service import ArenaService
from arena.storage.store import DEFAULT_EXCLUDED_FLAGS
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
    """The fit's notes in ``language``, less those the summary already says.

    A note of a kind the catalogs do not know stays in English (``tests/test_i18n.py`` fails for
    every note ``arena/ratings.py`` can write without a ``note.`` key, so this is a last resort).
    """
    shown = []
    for note in result.notes:
        keys = i18n.note_keys(note)
        if keys is not None and len(keys) == 1 and keys[0][0] in _SAID_NOTES:
            continue
        shown.append(i18n.translate_note(language, note))
    return shown


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


def table_value(language: str, result: RatingsResult | None) -> dict[str, Any]:
    """The table with its headers in ``language`` (``None``: no rows)."""
    rows = leaderboard_rows(result) if result is not None else []
    for row in rows:
        if row[NOTE_COLUMN]:
            row[NOTE_COLUMN] = i18n.text(language, "leaderboard.preliminary")
    return {"headers": [i18n.text(language, k) for k in COLUMN_KEYS], "data": rows}


def build_leaderboard_tab(service: ArenaService, texts: Texts, visitor: gr.State) -> gr.Tab:
    downloads = _Downloads()
    default = texts.default
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
        info = gr.Markdown("", elem_id="leaderboard_info")
        table = gr.Dataframe(
            headers=[i18n.text(default, k) for k in COLUMN_KEYS],
            interactive=False,
            elem_id="leaderboard_table",
            wrap=True,
        )
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

    async def load(slice_name: str | None, who: Visitor) -> dict[Any, Any]:
        try:
            view = await view_of(slice_name)
        except ValueError:
            view = await view_of(DEFAULT_SLICE)
        except ArenaError as e:
            return {info: f"⚠️ {message(who.language, e)}", table: table_value(who.language, None)}
        text = summary(who.language, view.result, updated_at=view.updated_at, sl=view.slice)
        return {info: text, table: table_value(who.language, view.result)}

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
        except ValueError:
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

    triggers = [refresh.click, tab.select, choice.input]
    gr.on(
        triggers, load, inputs=[choice, visitor], outputs=[info, table], api_name="leaderboard", show_progress="hidden"
    ).then(
        details,
        inputs=[choice, visitor],
        outputs=[choice, ratings_plot, win_plot, count_plot, ratings_file, battles_file],
        api_visibility="private",
        show_progress="hidden",
    )
    prepare.click(prepare_battles, inputs=[choice, visitor], outputs=[battles_file], api_visibility="private")
    return tab
