"""The status tab: which models are online and which are offline right now.

The list is the same for every visitor and is loaded by an event, never written into the page
config, so the page a visitor downloads still names no model. It never marks the visitor's own
battle. It does not say why a model is offline (the reason is for the operator's logs), except that
one whose server serves a different model will not come back until its operator acts.
"""

from __future__ import annotations

from collections.abc import Sequence

import gradio as gr

from arena import i18n
from arena.health import ModelHealth
from arena.service import ArenaService
from arena.ui.texts import Texts, Visitor

__all__ = ["build_status_tab", "status_markdown"]


def _cell(name: str) -> str:
    return name.replace("|", "\\|")  # a pipe in a model name cannot break the table


def status_markdown(models: Sequence[ModelHealth], language: str = i18n.REFERENCE) -> str:
    """The status table as Markdown in ``language`` (online first, then offline; names sorted)."""
    t = i18n.text
    online = sorted(m.name for m in models if m.online)
    offline = sorted(m.name for m in models if not m.online)
    lines = [
        t(language, "status.summary", online=len(online), total=len(models)),
        "",
        f"| {t(language, 'column.model')} | {t(language, 'status.column_status')} |",
        "|---|---|",
    ]
    lines += [f"| {_cell(name)} | {t(language, 'status.online')} |" for name in online]
    # A model whose server serves another model does not come back by itself: say who must act.
    operator = {m.name for m in models if not m.online and m.reason == "wrong model"}
    lines += [
        f"| {_cell(name)} | {t(language, 'status.offline_operator' if name in operator else 'status.offline')} |"
        for name in offline
    ]
    if set(offline) - operator:
        lines += ["", t(language, "status.offline_note")]
    if operator:
        lines += ["", t(language, "status.operator_note")]
    return "\n".join(lines)


def build_status_tab(service: ArenaService, texts: Texts, visitor: gr.State) -> gr.Tab:
    """A "Status" tab listing online and offline models (call inside ``gr.Tabs``)."""
    tab: gr.Tab  # Gradio's __enter__ is untyped
    with gr.Tab(id="status", elem_id="status_tab") as tab:
        table = gr.Markdown("", elem_id="status_table")
        with gr.Row():
            # A button of its own size, not a bar across the page.
            refresh = texts.bind(gr.Button(elem_id="status_refresh", scale=0, min_width=160), value="status.refresh")
    texts.bind(tab, label="tab.status")

    def load(who: Visitor) -> str:
        return status_markdown(service.model_status(), who.language)

    gr.on(
        [tab.select, refresh.click], load, inputs=[visitor], outputs=[table], api_name="status", show_progress="hidden"
    )
    return tab
