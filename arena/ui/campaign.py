"""The campaign tab (judge two anonymous pre-generated answers) and the campaign results in the leaderboard tab.

The judge's comparison lives in ``gr.State`` (never sent to the page): the page receives the prompt's
turns and the two answers' texts, and the two candidates' names only with the reveal after the vote.
"""

from __future__ import annotations

import asyncio
from typing import Any

import gradio as gr

from arena import i18n
from arena.campaigns.model import Campaign
from arena.campaigns.results import SliceResult, results_csv
from arena.campaigns.service import CampaignReveal, CampaignService, Comparison
from arena.domain import Winner
from arena.errors import ArenaError
from arena.ui.downloads import Downloads
from arena.ui.leaderboard import ratings_chart
from arena.ui.panel import LATEX, VOTES, client_key
from arena.ui.texts import Texts, Visitor, error, message, refusal

__all__ = ["build_campaign_results", "build_campaign_tab"]

RESULT_KEYS = (
    "column.rank",
    "column.model",
    "column.rating",
    "column.interval",
    "campaign.col_judgments",
    "campaign.col_wins",
    "campaign.col_losses",
    "campaign.col_draws",
    "campaign.col_win_pct",
    "campaign.col_win_draw_pct",
)


def _language_name(code: str) -> str:
    normal = i18n.normalise(code)
    return i18n.text(normal, "language.name") if normal else code


def _choices(campaigns: list[Campaign]) -> list[tuple[str, str]]:
    return [(c.title, c.id) for c in campaigns]


def _chat(comparison: Comparison, side: str) -> list[dict[str, str]]:
    answer = comparison.answer_a if side == "a" else comparison.answer_b
    messages: list[dict[str, str]] = []
    for user, said in zip(comparison.prompt.turns, answer.turns, strict=False):
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": said})
    return messages


def _task(language: str, comparison: Comparison) -> str:
    p = comparison.prompt
    text = i18n.text(language, "campaign.task", category=p.category, language=_language_name(p.language))
    if p.system:
        text += "\n\n" + i18n.text(language, "campaign.system", system=p.system.replace("\n", " "))
    return text


def _reveal(language: str, result: CampaignReveal) -> str:
    t = i18n.text

    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["### " + t(language, "reveal.names", a=cell(result.model_a), b=cell(result.model_b)), ""]
    for flag in result.flags:
        key = f"flag.{flag}" if f"flag.{flag}" in i18n.catalog(i18n.REFERENCE) else "flag.other"
        lines += [f"⚠️ {t(language, key)}", ""]
    lines.append(t(language, "campaign.thanks"))
    return "\n".join(lines)


def build_campaign_tab(service: CampaignService, texts: Texts, visitor: gr.State) -> gr.Tab:
    """The judging tab; element ids and API names start with ``campaign_``."""
    campaigns = service.campaigns()
    tab: gr.Tab  # Gradio's __enter__ is untyped
    with gr.Tab(id="campaign", elem_id="campaign_tab") as tab:
        texts.bind(gr.Markdown(elem_id="campaign_intro"), value="campaign.intro")
        pick = texts.bind(
            gr.Dropdown(
                choices=_choices(campaigns),
                value=campaigns[0].id if campaigns else None,
                elem_id="campaign_pick",
                interactive=True,
                visible=len(campaigns) > 1,
            ),
            label="campaign.pick",
        )
        languages = service.languages(campaigns[0].id) if campaigns else []
        only = texts.bind(
            gr.Dropdown(
                # Each language under its own name (no translation needed); "all" lists them all.
                choices=[(" + ".join(_language_name(c) for c in languages), "")]
                + [(_language_name(code), code) for code in languages],
                value="",
                elem_id="campaign_language",
                interactive=True,
                visible=len(languages) > 1,
                allow_custom_value=True,  # API callers name a language; unknown ones find nothing
            ),
            label="campaign.language",
        )
        task = gr.Markdown("", elem_id="campaign_task")
        state = gr.State(None)
        with gr.Row(equal_height=True, elem_classes=["arena-chats"]):
            chats = tuple(
                texts.bind(
                    gr.Chatbot(
                        elem_id=f"campaign_chat_{side}",
                        elem_classes=["arena-chat"],
                        feedback_options=None,
                        height=420,
                        autoscroll=False,  # a judge reads each answer from its start
                        buttons=["copy"],
                        latex_delimiters=LATEX,
                        min_width=280,
                    ),
                    label=f"chat.{side}",
                )
                for side in ("a", "b")
            )
        chat_a, chat_b = chats
        reveal = gr.Markdown("", elem_id="campaign_reveal", elem_classes=["arena-reveal"])
        notice = gr.Markdown("", elem_id="campaign_notice")
        with gr.Row(elem_classes=["arena-votes"]):
            buttons: dict[Winner, gr.Button] = {
                winner: texts.bind(
                    gr.Button(elem_id=f"campaign_{elem}", interactive=False, variant="secondary", min_width=120),
                    value=key,
                )
                for elem, key, winner in VOTES
            }
        reason = texts.bind(
            gr.Textbox(elem_id="campaign_reason", lines=1, max_lines=3, value="", interactive=False),
            label="vote.reason",
            placeholder="vote.reason_placeholder",
        )
        next_button = texts.bind(gr.Button(elem_id="campaign_next", variant="primary"), value="campaign.next")
    votes = list(buttons.values())

    def controls(can_vote: bool) -> dict[Any, Any]:
        update: dict[Any, Any] = {b: gr.update(interactive=can_vote) for b in votes}
        update[reason] = gr.update(interactive=can_vote)
        return update

    async def on_next(
        campaign_id: str | None, language: str | None, who: Visitor, request: gr.Request
    ) -> dict[Any, Any]:
        chosen = campaign_id or (campaigns[0].id if campaigns else "")
        try:
            comparison = await asyncio.to_thread(
                service.next_comparison, chosen, client_key(service.arena, request), language or None
            )
        except ArenaError as e:
            update = controls(False)
            update.update(
                {state: None, chat_a: [], chat_b: [], task: "", reveal: "", notice: f"ℹ️ {message(who.language, e)}"}
            )
            return update
        update = controls(True)
        update.update(
            {
                state: comparison,
                chat_a: _chat(comparison, "a"),
                chat_b: _chat(comparison, "b"),
                task: _task(who.language, comparison),
                reveal: "",
                notice: "",
                reason: gr.update(value="", interactive=True),
            }
        )
        return update

    def make_vote(winner: Winner) -> Any:
        # The parameter's name is the API's argument name, as for the battle's votes.
        async def on_vote(reason: str | None, who: Visitor, comparison: Comparison | None) -> dict[Any, Any]:
            if not who.accepted_terms:
                raise refusal(who.language, i18n.text(who.language, "terms.required"))
            try:
                result = await service.vote(comparison, winner, reason=reason)
            except ArenaError as e:
                raise error(who.language, e) from None
            update = controls(False)
            update.update({state: comparison, reveal: _reveal(who.language, result), notice: ""})
            return update

        return on_vote

    shown = [state, chat_a, chat_b, task, reveal, notice, reason, *votes]
    gr.on(
        [next_button.click, pick.input, only.input],
        on_next,
        inputs=[pick, only, visitor],
        outputs=shown,
        api_name="campaign_next",
        show_progress="hidden",
    )

    async def on_open(
        campaign_id: str | None, language: str | None, who: Visitor, comparison: Comparison | None, request: gr.Request
    ) -> dict[Any, Any]:
        if comparison is not None:  # keep what the judge is reading (or has just judged)
            return {}
        return await on_next(campaign_id, language, who, request)

    # The first comparison appears when the tab is opened.
    tab.select(
        on_open, inputs=[pick, only, visitor, state], outputs=shown, api_visibility="private", show_progress="hidden"
    )
    for elem, _key, winner in VOTES:
        buttons[winner].click(
            make_vote(winner),
            inputs=[reason, visitor, state],
            outputs=[state, reveal, notice, reason, *votes],
            api_name=f"campaign_{elem}",
            show_progress="hidden",
        )
    return tab


def _slice_label(language: str, name: str) -> str:
    if name == "overall":
        return i18n.text(language, "campaign.slice_overall")
    key, _, value = name.partition(":")
    if key == "language":
        value = _language_name(value)
    return i18n.text(language, f"campaign.slice_{key}", value=value)


def _fmt(language: str, x: float | None, digits: int = 0) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}".replace(".", i18n.text(language, "format.decimal_separator"))


def results_table(language: str, result: SliceResult) -> dict[str, Any]:
    rows = []
    for r in result.rows:
        interval = f"{_fmt(language, r.ci_lower)} – {_fmt(language, r.ci_upper)}" if r.rating is not None else "–"
        rows.append(
            [
                r.rank if r.rank is not None else "–",
                r.candidate + (" *" if r.preliminary else ""),
                _fmt(language, r.rating),
                interval,
                r.judgments,
                r.wins,
                r.losses,
                r.draws,
                _fmt(language, r.win_pct, 1),
                _fmt(language, r.win_draw_pct, 1),
            ]
        )
    return {"headers": [i18n.text(language, k) for k in RESULT_KEYS], "data": rows}


def build_campaign_results(service: CampaignService, texts: Texts, visitor: gr.State, tab: gr.Tab) -> None:
    """The campaign results inside ``tab`` (the leaderboard tab): table, plot, head to head, CSV."""
    campaigns = service.campaigns()
    default = texts.default
    downloads = Downloads(prefix="arena-campaign-")
    with gr.Accordion(open=True, elem_id="campaign_results") as box:
        with gr.Row():
            pick = texts.bind(
                gr.Dropdown(
                    choices=_choices(campaigns),
                    value=campaigns[0].id if campaigns else None,
                    elem_id="campaign_results_pick",
                    interactive=True,
                    scale=3,
                ),
                label="campaign.pick",
            )
            slice_pick = texts.bind(
                gr.Dropdown(
                    choices=[(_slice_label(default, "overall"), "overall")],
                    value="overall",
                    elem_id="campaign_results_slice",
                    interactive=True,
                    allow_custom_value=True,
                    scale=3,
                ),
                label="campaign.slice",
            )
            refresh = texts.bind(gr.Button(elem_id="campaign_results_refresh", scale=1), value="leaderboard.refresh")
        info = gr.Markdown("", elem_id="campaign_results_info")
        table = gr.Dataframe(
            headers=[i18n.text(default, k) for k in RESULT_KEYS],
            interactive=False,
            elem_id="campaign_results_table",
            wrap=True,
        )
        plot = texts.bind(gr.Plot(elem_id="campaign_results_plot"), label="leaderboard.ratings_plot")
        texts.bind(gr.Markdown(elem_id="campaign_h2h_heading"), value="campaign.h2h")
        h2h = gr.Dataframe(interactive=False, elem_id="campaign_results_h2h", wrap=True)
        download = texts.bind(
            gr.DownloadButton(visible=False, elem_id="campaign_results_csv"), label="campaign.download"
        )
    texts.bind(box, label="campaign.results")

    async def load(campaign_id: str | None, slice_name: str | None, who: Visitor) -> dict[Any, Any]:
        language = who.language
        chosen = campaign_id or (campaigns[0].id if campaigns else "")
        try:
            names = await asyncio.to_thread(service.slices, chosen)
            name = slice_name if slice_name in names else "overall"
            result = await asyncio.to_thread(service.results, chosen, name)
            header, matrix = await asyncio.to_thread(service.head_to_head, chosen)
        except ArenaError as e:
            return {info: f"⚠️ {message(language, e)}"}
        # One file per campaign and slice, the older deleted (one per vote count was kept forever).
        path = await downloads.made(
            f"campaign-{chosen}",
            name,
            str(result.judgments),
            lambda p: p.write_text(results_csv([result]), encoding="utf-8"),
        )
        text = (
            i18n.text(language, "campaign.summary", n=result.judgments)
            if result.judgments
            else i18n.text(language, "campaign.no_votes")
        )
        rated = result.fit is not None and bool(result.fit.rows)
        return {
            slice_pick: gr.update(choices=[(_slice_label(language, n), n) for n in names], value=name),
            info: text,
            table: results_table(language, result),
            plot: ratings_chart(language, result.fit) if rated and result.fit is not None else None,
            h2h: {"headers": header, "data": matrix},
            download: gr.update(value=str(path), visible=result.judgments > 0),
        }

    gr.on(
        [refresh.click, pick.input, slice_pick.input, tab.select],
        load,
        inputs=[pick, slice_pick, visitor],
        outputs=[slice_pick, info, table, plot, h2h, download],
        api_name="campaign_results",
        show_progress="hidden",
    )
