"""Every private part of Gradio (and uvicorn) the arena relies on is still there, with the same shape.

requirements.txt pins Gradio to the release these were read in (6.31). A new Gradio that moves one
of them fails here, naming it, instead of failing quietly in production (a memory leak coming back,
the stub rewriting returning to start-up, the proxy-header rule ignored). Where each is used:

- arena/ui/fast_import.py: ``gradio.component_meta.create_or_modify_pyi`` (skipped at import),
  ``component_meta.updateable`` keeping ``__wrapped__``, ``gradio.utils.MatplotlibBackendMananger``.
- arena/ui/runtime.py: the queue reading ``GRADIO_ANALYTICS_*`` into its two attributes.
- arena/ui/sessions.py: ``Blocks.process_api``'s parameter order, ``Blocks.fns`` (``BlockFunction``
  with ``fn`` and ``inputs``), ``Blocks.default_config.blocks``, ``SessionState.blocks_config.blocks``
  and ``config_values``, ``Blocks.state_holder`` (``lock``, ``session_data``, ``time_last_used``),
  ``launch(app_kwargs=...)`` and uvicorn reading ``FORWARDED_ALLOW_IPS``.
- arena/ui/app.py and texts.py: ``SessionState.state_data`` keyed by ``Block._id``.
- arena/ui/guard.py: the queue's routes ``/gradio_api/queue/join`` and ``/gradio_api/queue/data``.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import gradio as gr


def _moved(what: str, detail: str = "") -> str:
    return (
        f"Gradio {gr.__version__}: {what} moved or changed{': ' + detail if detail else ''}. "
        "The arena relies on it (see this test's docstring); adapt the arena or keep the pinned Gradio."
    )


def _params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_gradio_is_the_pinned_release() -> None:
    assert gr.__version__.startswith("6.31."), _moved(
        "the version", f"these checks were read in 6.31, not {gr.__version__}"
    )


def test_the_import_time_internals() -> None:
    import gradio.component_meta as component_meta
    import gradio.utils as gradio_utils

    assert callable(getattr(component_meta, "create_or_modify_pyi", None)), _moved(
        "component_meta.create_or_modify_pyi"
    )
    assert callable(getattr(component_meta, "updateable", None)), _moved("component_meta.updateable")
    assert hasattr(gr.Button.__init__, "__wrapped__"), _moved("updateable's __wrapped__ on component __init__")
    source = inspect.getsource(component_meta)
    assert "create_or_modify_pyi(" in source.split("def create_or_modify_pyi", 1)[1], _moved(
        "the call to create_or_modify_pyi when a component module is loaded"
    )
    manager = getattr(gradio_utils, "MatplotlibBackendMananger", None)
    assert manager is not None, _moved("gradio.utils.MatplotlibBackendMananger")
    assert "import matplotlib" in inspect.getsource(manager), _moved("MatplotlibBackendMananger's matplotlib import")


def test_the_queue_reads_the_analytics_settings() -> None:
    # Read from the source: building a queue starts an event loop (tests/test_fast_import.py runs one
    # in a child interpreter and checks the values it gets).
    from gradio.queueing import Queue

    source = inspect.getsource(Queue.__init__)
    for attribute, env in (
        ("ANALYTICS_MAX_EVENTS", "GRADIO_ANALYTICS_MAX_EVENTS"),
        ("ANAYLTICS_CACHE_FREQUENCY", "GRADIO_ANALYTICS_CACHE_FREQUENCY"),  # sic: Gradio's own spelling
    ):
        assert f"self.{attribute}" in source and env in source, _moved(f"Queue.{attribute} read from {env}")


def test_the_session_internals() -> None:
    from gradio.blocks import BlockFunction
    from gradio.state_holder import SessionState, StateHolder

    wanted = ["self", "block_fn", "inputs", "state", "request", "iterator"]
    assert _params(gr.Blocks.process_api)[:6] == wanted, _moved("Blocks.process_api's parameters", str(wanted))
    assert "app_kwargs" in _params(gr.Blocks.launch), _moved("Blocks.launch(app_kwargs=...)")
    assert "delete_cache" in _params(gr.Blocks.__init__), _moved("Blocks(delete_cache=...)")
    assert "state_session_capacity" in _params(gr.Blocks.launch), _moved("Blocks.launch(state_session_capacity=...)")

    async def build() -> tuple[gr.Blocks, gr.Textbox, gr.State]:
        # Inside a running loop: Gradio makes (and never closes) loops of its own otherwise.
        with gr.Blocks() as demo:
            box = gr.Textbox()
            state = gr.State()
            button = gr.Button()
            button.click(lambda text: text, inputs=[box], outputs=[box])
        return demo, box, state

    demo, box, state = asyncio.run(build())
    assert isinstance(demo.fns, dict), _moved("Blocks.fns (a dict by fn_index)")
    fn = next(iter(demo.fns.values()))
    assert isinstance(fn, BlockFunction) and fn.fn is not None, _moved("BlockFunction.fn")
    assert list(fn.inputs) == [box], _moved("BlockFunction.inputs")
    assert box._id in demo.default_config.blocks, _moved("Blocks.default_config.blocks (by Block._id)")

    session = SessionState(demo)
    assert isinstance(session.blocks_config.blocks, dict), _moved("SessionState.blocks_config.blocks")
    assert isinstance(session.config_values, dict), _moved("SessionState.config_values")
    assert isinstance(session.state_data, dict), _moved("SessionState.state_data")
    session[state._id] = "kept"
    assert session.state_data.get(state._id) == "kept", _moved("SessionState.state_data keyed by Block._id")

    holder = StateHolder()
    for name in ("lock", "session_data", "time_last_used"):
        assert hasattr(holder, name), _moved(f"StateHolder.{name}")
    assert "state_holder" in inspect.getsource(gr.Blocks), _moved("Blocks.state_holder")


def test_the_routes_and_the_proxy_rule() -> None:
    import uvicorn
    from gradio import route_utils, routes

    source = inspect.getsource(routes)
    for route in ('"/queue/join"', '"/queue/data"'):
        assert route in source, _moved(f"the queue route {route}")
    assert getattr(route_utils, "API_PREFIX", None) == "/gradio_api", _moved("route_utils.API_PREFIX")
    assert "FORWARDED_ALLOW_IPS" in inspect.getsource(uvicorn.Config.__init__), (
        "uvicorn no longer reads FORWARDED_ALLOW_IPS when Gradio builds its config: arena/ui/sessions.py "
        "relies on it to turn off uvicorn's own X-Forwarded-For handling (ARENA_TRUSTED_PROXY_HOPS)."
    )
