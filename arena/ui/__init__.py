"""The only code that imports Gradio."""

from arena.ui.app import build_ui

__all__ = ["build_ui"]
