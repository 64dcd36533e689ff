"""Preparing the process skips Gradio's stub rewriting, and Gradio works as before (fresh interpreters).

Importing arena.ui itself changes nothing (test_importing_the_ui_changes_nothing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.strip()


def test_importing_the_ui_changes_nothing() -> None:
    out = _run(
        "import os, sys, pkgutil, importlib\n"
        "environ, meta = dict(os.environ), list(sys.meta_path)\n"
        "import arena.ui\n"
        "for m in pkgutil.walk_packages(arena.ui.__path__, 'arena.ui.'):\n"
        "    importlib.import_module(m.name)\n"
        "import gradio.component_meta as cm, arena.ui.fast_import as f\n"
        "print(dict(os.environ) == environ, sys.meta_path == meta, 'matplotlib' in sys.modules)\n"
        "print(cm.create_or_modify_pyi is f._skip_stub)\n"
        "import gradio as gr\n"
        "print(any('__signature__' in c.__init__.__wrapped__.__dict__ for c in (gr.Button, gr.Chatbot)))"
    )
    assert out.splitlines() == ["True True False", "False", "False"]


def test_preparing_the_process_skips_gradios_stub_writer() -> None:
    out = _run(
        "from arena.ui.runtime import prepare_process\n"
        "prepare_process()\n"
        "import gradio.component_meta as cm, arena.ui.fast_import as f\n"
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
        "from arena.ui.runtime import prepare_process\n"
        "prepare_process()\n"
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
        "from arena.ui.runtime import prepare_process\n"
        "prepare_process()\n"
        "from arena.ui.fast_import import cache_signatures\n"
        "from gradio.blocks import Block\n"
        "print(cache_signatures(Block))  # all done by prepare_process: nothing left\n"
        "print(all('__signature__' in c.__init__.__wrapped__.__dict__ for c in before))\n"
        "print(all(inspect.signature(c.__init__) == s for c, s in before.items()))\n"
        "print(inspect.getfullargspec(gr.Button.__init__.__wrapped__).args[:2])\n"
        "b = gr.Button('x', interactive=False, render=False)\n"
        "print(b.get_config()['interactive'])"
    )
    assert out.splitlines() == ["0", "True", "True", "['self', 'value']", "False"]


def test_preparing_sets_the_analytics_defaults_and_the_environment_wins() -> None:
    out = _run(
        "import os\n"
        "os.environ['GRADIO_ANALYTICS_MAX_EVENTS'] = '77'\n"
        "os.environ.pop('GRADIO_ANALYTICS_CACHE_FREQUENCY', None)\n"
        "from arena.ui.runtime import prepare_process\n"
        "prepare_process()\n"
        "import gradio as gr\n"
        "with gr.Blocks() as demo:\n"
        "    gr.Button()\n"
        "demo.queue()\n"
        "print(demo._queue.ANALYTICS_MAX_EVENTS, demo._queue.ANAYLTICS_CACHE_FREQUENCY)"
    )
    assert out == "77 1000"
