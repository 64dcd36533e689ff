"""The leaderboard tab: slice selector, ratings table, plots and downloads (fits are cached by the service)."""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr

from arena import exchange
from arena.errors import ArenaError
from arena.leaderboard import (
    COLUMNS,
    DEFAULT_SLICE,
    LeaderboardView,
    heatmap_figure,
    leaderboard_rows,
    parse_slice,
    ratings_figure,
    summary,
)
from arena.service import ArenaService, user_text
from arena.storage.store import DEFAULT_EXCLUDED_FLAGS

log = logging.getLogger(__name__)


class _Downloads:
    """A private temporary folder for the files offered for download, made on first use."""

    def __init__(self) -> None:
        self._dir: Path | None = None

    def path(self, name: str) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="arena-downloads-"))
        return self._dir / re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _slice_choices(view: LeaderboardView) -> list[tuple[str, str]]:
    choices = [(f"{s.label} ({s.votes} votes)", s.name) for s in view.slices]
    if not any(name == view.slice.name for _, name in choices):
        choices.insert(0, (view.slice.label, view.slice.name))
    return choices


def build_leaderboard_tab(service: ArenaService) -> None:
    downloads = _Downloads()
    with gr.Tab("Leaderboard", id="leaderboard") as tab:
        with gr.Row():
            choice = gr.Dropdown(
                choices=[(parse_slice(DEFAULT_SLICE).label, DEFAULT_SLICE)],
                value=DEFAULT_SLICE,
                label="Leaderboard",
                elem_id="leaderboard_slice",
                interactive=True,
                # The choices are filled in from the database after the first load; API callers may name any slice.
                allow_custom_value=True,
                scale=4,
            )
            refresh = gr.Button("Refresh", elem_id="leaderboard_refresh", scale=1)
        info = gr.Markdown("", elem_id="leaderboard_info")
        table = gr.Dataframe(headers=list(COLUMNS), interactive=False, elem_id="leaderboard_table", wrap=True)
        ratings_plot = gr.Plot(label="Ratings", elem_id="leaderboard_ratings_plot")
        with gr.Row():
            win_plot = gr.Plot(label="Win rates", elem_id="leaderboard_win_rates")
            count_plot = gr.Plot(label="Battle counts", elem_id="leaderboard_battle_counts")
        with gr.Row():
            ratings_file = gr.DownloadButton("Download ratings.csv", visible=False, elem_id="leaderboard_ratings_csv")
            prepare = gr.Button("Prepare the battles file (CSV)", elem_id="leaderboard_prepare_battles")
            battles_file = gr.DownloadButton("Download battles.csv", visible=False, elem_id="leaderboard_battles_csv")

    async def view_of(slice_name: str | None) -> LeaderboardView:
        return await service.leaderboard(slice_name or DEFAULT_SLICE)

    async def load(slice_name: str | None) -> dict[Any, Any]:
        try:
            view = await view_of(slice_name)
        except ValueError:
            view = await view_of(DEFAULT_SLICE)
        except ArenaError as e:
            return {info: f"⚠️ {user_text(e)}", table: []}
        text = summary(view.result, updated_at=view.updated_at, slice_label=view.slice.label)
        return {info: text, table: leaderboard_rows(view.result)}

    async def details(slice_name: str | None) -> dict[Any, Any]:
        try:
            view = await view_of(slice_name)
        except (ValueError, ArenaError):
            return {ratings_file: gr.update(visible=False)}
        path = downloads.path(f"ratings-{view.slice.name}-{view.votes}.csv")
        if not path.exists():
            await asyncio.to_thread(
                exchange.write_ratings_csv, [(view.slice.name, view.result)], path, cutoff=view.updated_at
            )
        rated = bool(view.result.rows)
        return {
            choice: gr.update(choices=_slice_choices(view), value=view.slice.name),
            ratings_plot: ratings_figure(view.result) if rated else None,
            win_plot: heatmap_figure(view.result, "win_rate") if rated else None,
            count_plot: heatmap_figure(view.result, "battles") if rated else None,
            ratings_file: gr.update(value=str(path), visible=rated),
            battles_file: gr.update(visible=False),
        }

    async def prepare_battles(slice_name: str | None) -> dict[Any, Any]:
        try:
            sl = parse_slice(slice_name or DEFAULT_SLICE)
        except ValueError:
            sl = parse_slice(DEFAULT_SLICE)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = downloads.path(f"battles-{sl.name}-{stamp}.csv")
        # Without conversations: the file is public and prompts are the visitors' own text.
        filters = {**sl.filters(), "exclude_flags": DEFAULT_EXCLUDED_FLAGS}
        try:
            n = await asyncio.to_thread(exchange.export_battles, service.store, path, filters=filters)
        except ArenaError as e:
            gr.Warning(user_text(e))
            return {battles_file: gr.update(visible=False)}
        return {battles_file: gr.update(value=str(path), visible=True, label=f"Download battles.csv ({n} battles)")}

    triggers = [refresh.click, tab.select, choice.input]
    gr.on(triggers, load, inputs=[choice], outputs=[info, table], api_name="leaderboard", show_progress="hidden").then(
        details,
        inputs=[choice],
        outputs=[choice, ratings_plot, win_plot, count_plot, ratings_file, battles_file],
        api_visibility="private",
        show_progress="hidden",
    )
    prepare.click(prepare_battles, inputs=[choice], outputs=[battles_file], api_visibility="private")
