"""Importing the UI skips Gradio's stub rewriting, and Gradio works as before (fresh interpreters)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.strip()


def test_the_ui_package_skips_gradios_stub_writer() -> None:
    out = _run(
        "import arena.ui, gradio.component_meta as cm, arena.ui.fast_import as f\n"
        "print(cm.create_or_modify_pyi is f._skip_stub)\n"
        "import gradio as gr\n"
        "with gr.Blocks() as demo:\n"
        "    gr.Chatbot(); gr.Textbox()\n"
        "print(sorted({b.get_block_name() for b in demo.blocks.values()}))"
    )
    assert out.splitlines() == ["True", "['chatbot', 'form', 'textbox']"]


def test_installing_after_gradio_is_imported_changes_nothing() -> None:
    out = _run(
        "import gradio, gradio.component_meta as cm\n"
        "original = cm.create_or_modify_pyi\n"
        "from arena.ui import fast_import\n"
        "print(fast_import.install(), cm.create_or_modify_pyi is original)"
    )
    assert out == "False True"


def test_a_missing_matplotlib_fails_at_once_and_gradio_events_still_run() -> None:
    out = _run(
        "import importlib.util, sys\n"
        "assert importlib.util.find_spec('matplotlib') is None, 'this test assumes matplotlib is not installed'\n"
        "import arena.ui\n"
        "print(sys.modules['matplotlib'])\n"
        "try:\n"
        "    import matplotlib\n"
        "except ImportError:\n"
        "    print('ImportError')\n"
        "from gradio.utils import MatplotlibBackendMananger\n"
        "with MatplotlibBackendMananger():\n"
        "    print('event ran')\n"
        "from arena.ui.fast_import import mark_absent\n"
        "print(mark_absent('json'), sys.modules['json'] is not None)"
    )
    assert out.splitlines() == ["None", "ImportError", "event ran", "False True"]


def test_component_signatures_are_computed_once_and_stay_the_same() -> None:
    out = _run(
        "import inspect\n"
        "import gradio as gr\n"
        "before = {c: inspect.signature(c.__init__) for c in (gr.Button, gr.Chatbot, gr.Textbox, gr.Markdown)}\n"
        "import arena.ui\n"
        "from arena.ui.fast_import import cache_signatures\n"
        "from gradio.blocks import Block\n"
        "print(cache_signatures(Block))  # all done at import: nothing left\n"
        "print(all('__signature__' in c.__init__.__wrapped__.__dict__ for c in before))\n"
        "print(all(inspect.signature(c.__init__) == s for c, s in before.items()))\n"
        "print(inspect.getfullargspec(gr.Button.__init__.__wrapped__).args[:2])\n"
        "b = gr.Button('x', interactive=False, render=False)\n"
        "print(b.get_config()['interactive'])"
    )
    assert out.splitlines() == ["0", "True", "True", "['self', 'value']", "False"]
