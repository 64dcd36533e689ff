"""The leaderboard tab: slice selector, ratings table, plots and downloads (fits are cached by the service)."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime
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
from arena.ui.downloads import Downloads
from arena.ui.texts import Texts, Visitor, message, warning

log = logging.getLogger(__name__)


COLUMN_KEYS = ("column.rank", "column.model", "column.rating", "column.interval", "column.votes")
"""What a visitor reads at a glance; win rates are in the heatmap and every number in ratings.csv."""
# Notes of the fit that the page already says in its own words (the legend marks preliminary rows).
_SAID_NOTES = frozenset({"note.preliminary", "note.no_votes", "note.nothing_to_rate"})
# Languages a slice may be named after (others show their code); "lang_name.<code>" in the catalogs.
_LANGUAGE_NAMES = ("en", "pl", "ja", "zh-Hant", "zh-Hans", "zh", "yue", "ko", "de", "fr", "es", "ru")
# Categories with a name of their own ("category.<name>"); others show their name with spaces.
_CATEGORY_NAMES = ("code", "math", "hard_prompt", "creative_writing", "instruction_following")


def language_name(language: str, code: str | None) -> str:
    """``code`` (``pl``, ``zh-Hant``) as a visitor reading ``language`` calls it."""
    if code in _LANGUAGE_NAMES:
        return i18n.text(language, f"lang_name.{code}")
    return code or "?"


def slice_label(language: str, sl: Slice) -> str:
    """The slice's human name: "Language: Polish", "Chat models", "Category: Math" (in ``language``)."""
    if sl.name in ("overall", "named"):
        return i18n.text(language, f"slice.{sl.name}")
    if sl.name.startswith("pool:"):
        return i18n.text(language, f"slice.pool_{sl.pool}")
    if sl.category is not None:
        c = sl.category
        name = i18n.text(language, f"category.{c}") if c in _CATEGORY_NAMES else c.replace("_", " ")
        return i18n.text(language, "slice.category", category=name)
    return i18n.text(language, "slice.lang", language=language_name(language, sl.language))


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
    """One line above the table: which battles, how many votes, when (how to read it is in the fold)."""
    t = i18n.text
    if not result.rows:
        return t(language, "leaderboard.empty")
    parts = [
        f"**{slice_label(language, sl)}**",
        t(language, "leaderboard.votes", n=result.n_battles),
        t(language, "leaderboard.updated", when=f"{updated_at.astimezone(UTC):%Y-%m-%d %H:%M}"),
    ]
    return " · ".join(parts)


def method_line(language: str, result: RatingsResult) -> str:
    """How the table is computed, in one line (fit, interval method, ties)."""
    t = i18n.text
    ties = "leaderboard.ties_half" if result.tie_policy == "half" else "leaderboard.ties_excluded"
    line = f"{t(language, 'leaderboard.method', interval=result.interval_method)}; {t(language, ties)}."
    return line[:1].upper() + line[1:]


def fit_notes(language: str, result: RatingsResult) -> list[str]:
    """The fit's notes in ``language``, less those the page already says or that do not apply to it."""
    said = _SAID_NOTES | ({"note.sandwich_narrow"} if result.interval_method == "bootstrap" else set())
    return [i18n.render(note, language) for note in result.notes if note.key not in said]


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


def _ranks(result: RatingsResult, audit: AuditResult | None) -> dict[str, tuple[int, int] | None]:
    """Each model's range of ranks: the audit's 95% range where it has one, else the fit's rank; None: preliminary."""
    ranges: dict[str, tuple[int, int] | None] = {
        r.model: None if r.rank is None else (r.rank, r.rank) for r in result.rows
    }
    if audit is not None:
        for m, lo, hi in zip(audit.models, audit.rank_low, audit.rank_high, strict=True):
            if ranges.get(m) is not None:
                ranges[m] = (lo, hi)
    return ranges


def _tiers(audit: AuditResult | None) -> dict[str, int]:
    """Each audited model's tier (1 = the top run of neighbours the votes do not tell apart)."""
    if audit is None:
        return {}
    return dict(zip(audit.models, audit.tier, strict=True))


def table_value(language: str, result: RatingsResult | None, audit: AuditResult | None = None) -> dict[str, Any]:
    """The table a visitor reads: rank, model, rating, its 95% interval, votes (``None``: no rows).

    With an audit, the rank is the model's 95% range of ranks ("2–3": the votes do not order it
    against its neighbours yet), and a tier column follows it: a new tier starts only where the
    simultaneous separation test tells two neighbours apart, so models in one tier may be in either
    order even where their rank ranges do not overlap. A preliminary model has no rank ("—") and no
    tier; when groups never met, a group column comes last.
    """
    keys = list(COLUMN_KEYS)
    rows: list[list[object]] = []
    if result is not None:
        ranks = _ranks(result, audit)
        # Tiers of ranked models only: a board of newcomers gets no (empty) tier column.
        tiers = {m: t for m, t in _tiers(audit).items() if ranks.get(m) is not None}
        for row in leaderboard_rows(result):
            model = str(row[1])
            span = ranks.get(model)
            rank = NO_RANK if span is None else _rank_range(*span)
            tier: list[object] = [tiers.get(model, "")] if tiers else []
            rows.append([rank, *tier, model, row[2], str(row[3]).replace(" – ", "–"), row[4], *row[7:]])
        if tiers:
            keys.insert(1, "column.tier")
        if has_groups(result):
            keys.append("column.group")
    return {"headers": [i18n.text(language, k) for k in keys], "data": rows}


def legend(language: str, result: RatingsResult | None, audit: AuditResult | None = None) -> str:
    """Plain sentences under the table, only those that apply: ranges, shared ranks, "—", groups."""
    if result is None or not result.rows:
        return ""
    t = i18n.text
    ranks = _ranks(result, audit)
    lines = []
    if any(span is not None and span[0] != span[1] for span in ranks.values()):
        lines.append(t(language, "lb.legend_ranges"))
    # Only tiers the table shows: a preliminary model has none (a board of newcomers has no tier line).
    tiers = [tier for model, tier in _tiers(audit).items() if ranks.get(model) is not None]
    if len(set(tiers)) < len(tiers):
        lines.append(t(language, "lb.legend_tiers"))
    ranked = [r for r in result.rows if ranks.get(r.model) is not None and math.isfinite(r.ci_lower)]
    for i, a in enumerate(ranked):
        for b in ranked[i + 1 :]:
            ra, rb = ranks[a.model], ranks[b.model]
            assert ra is not None and rb is not None
            overlapping_ranks = ra[0] <= rb[1] and rb[0] <= ra[1]
            apart = a.ci_lower > b.ci_upper or b.ci_lower > a.ci_upper
            if overlapping_ranks and apart and a.component == b.component:
                lines.append(t(language, "lb.legend_shared", a=a.model, b=b.model))
                break
        else:
            continue
        break
    if any(r.preliminary for r in result.rows):
        lines.append(t(language, "lb.legend_preliminary", n=result.min_votes))
    if has_groups(result):
        lines.append(t(language, "lb.legend_groups"))
    return "\n\n".join(lines)


def details_markdown(language: str, result: RatingsResult | None, audit: AuditResult | None = None) -> str:
    """The "How to read this" fold: a plain guide, the method, what the votes support, the fit's notes."""
    t = i18n.text
    parts = [t(language, "lb.guide")]
    if result is not None and result.rows:
        parts.append(f"**{t(language, 'lb.method_title')}**\n\n{method_line(language, result)}")
        audited = audit_markdown(language, audit)
        if audited:
            parts.append(audited)
        notes = fit_notes(language, result)
        if notes:
            parts.append(f"**{t(language, 'lb.notes_title')}**\n\n" + "\n".join(f"- {n}" for n in notes))
    parts.append(f"*{t(language, 'lb.researchers')}*")
    return "\n\n".join(parts)


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

    As in the plain table, a model with fewer than ``min_votes`` votes has no rank ("—"), does
    not push the others down and comes after the ranked models.
    """
    settled = [r for r in style.rows if r.votes >= min_votes]
    rows: list[list[object]] = []
    # Preliminary models after the ranked ones, as in the plain table.
    for r in sorted(style.rows, key=lambda r: r.votes < min_votes):
        rank: object = NO_RANK
        if r.votes >= min_votes:
            rank = 1 + sum(bool(o.ci_lower > r.ci_upper) for o in settled)
        interval = f"{round(r.ci_lower)}–{round(r.ci_upper)}"
        rows.append([rank, r.model, round(r.rating), interval, round(r.plain), r.votes])
    return {"headers": [i18n.text(language, k) for k in STYLE_KEYS], "data": rows}


def style_legend(language: str, style: StyleResult, min_votes: int) -> str:
    """The plain sentences under the style-controlled table: it has no rank ranges and no tiers, so
    only the "—" line can apply."""
    if any(r.votes < min_votes for r in style.rows):
        return i18n.text(language, "lb.legend_preliminary", n=min_votes)
    return ""


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
            values = {"places": int(p.value) + 1}  # a range of width 2 (e.g. 3-5) spans 3 places
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
    downloads = Downloads()
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
        legend_box = gr.Markdown("", elem_id="leaderboard_legend")
        with texts.bind(gr.Accordion(open=False, elem_id="leaderboard_how"), label="lb.how_to_read"):
            audit_box = gr.Markdown("", elem_id="leaderboard_audit")  # filled in the visitor's language on load
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
                legend_box: "",
                audit_box: details_markdown(who.language, None),
            }
        text = summary(who.language, view.result, updated_at=view.updated_at, sl=view.slice)
        value = table_value(who.language, view.result, view.audit)
        notes = legend(who.language, view.result, view.audit)
        if styled and view.result.rows:
            try:
                style = await service.leaderboard_style(view.slice.name)
            except ArenaError as e:
                text = f"⚠️ {message(who.language, e)}\n\n{text}"
            else:
                text = f"{style_summary(who.language, style)}\n\n{text}"
                value = style_table_value(who.language, style, view.result.min_votes)
                notes = style_legend(who.language, style, view.result.min_votes)
        return {
            info: text,
            table: value,
            legend_box: notes,
            audit_box: details_markdown(who.language, view.result, view.audit),
        }

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
        outputs=[info, table, legend_box, audit_box],
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
