"""The status tab: which models are online and which are offline right now.

The list is the same for every visitor and is loaded by an event, never written into the page
config, so the page a visitor downloads still names no model. It never marks the visitor's own
battle.
"""

from __future__ import annotations

from collections.abc import Sequence

import gradio as gr

from arena.health import ModelHealth
from arena.service import ArenaService

__all__ = ["build_status_tab", "status_markdown"]


def status_markdown(models: Sequence[ModelHealth]) -> str:
    """The status table as Markdown (online first, then offline; names sorted)."""
    online = sorted(m.name for m in models if m.online)
    offline = sorted(m.name for m in models if not m.online)
    lines = [f"**{len(online)} of {len(models)} models are online.**", "", "| model | status |", "|---|---|"]
    lines += [f"| {name} | 🟢 online |" for name in online]
    lines += [f"| {name} | 🔴 offline |" for name in offline]
    if offline:
        lines += ["", "Offline models are left out of new battles and come back by themselves once they answer again."]
    return "\n".join(lines)


def build_status_tab(service: ArenaService) -> None:
    """A "Status" tab listing online and offline models (call inside ``gr.Tabs``)."""
    with gr.Tab("Status", id="status") as tab:
        table = gr.Markdown("", elem_id="status_table")
        refresh = gr.Button("Refresh", elem_id="status_refresh", size="sm")

    def load() -> str:
        return status_markdown(service.model_status())

    gr.on([tab.select, refresh.click], load, inputs=None, outputs=[table], api_name="status", show_progress="hidden")
