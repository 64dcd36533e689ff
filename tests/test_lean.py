"""arena.ui.lean: the Gradio internals it relies on are still there, and what it changes only saves work.

The first tests fail loudly when a Gradio upgrade moves a method, an attribute or a polling loop
that arena/ui/lean.py replaces; the others run a real app over HTTP.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import gradio as gr
import gradio.blocks
import gradio.queueing
import pytest

from arena.ui import lean

ROOT = Path(__file__).resolve().parent.parent


def _params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_gradio_methods_it_overrides_keep_their_signatures() -> None:
    assert _params(gr.Blocks.postprocess_data) == ["self", "block_fn", "predictions", "state"]
    assert _params(gr.Blocks.handle_streaming_diffs) == [
        "self",
        "block_fn",
        "data",
        "session_hash",
        "run",
        "final",
        "simple_format",
    ]
    source = inspect.getsource(gr.Blocks.postprocess_data)
    # Gradio still fills a left-out output with skip() and still hops to a thread to post-process.
    assert "convert_component_dict_to_list" in source and "FINISHED_ITERATING" in source
    assert "block_fn.postprocess" in source
    assert "pending_diff_streams" in inspect.getsource(gr.Blocks.handle_streaming_diffs)
    assert hasattr(gradio.blocks, "convert_component_dict_to_list")
    assert gr.skip() == {"__type__": "update"} and lean.is_bare_skip(gr.skip())


def test_the_queue_loops_it_parks_still_poll_the_way_it_expects() -> None:
    queue_cls = gradio.queueing.Queue
    processing = inspect.getsource(queue_cls.start_processing)
    progress = inspect.getsource(queue_cls.start_progress_updates)
    assert "asyncio.sleep(self.sleep_when_free)" in processing
    assert "asyncio.sleep(self.progress_update_sleep_when_free)" in progress
    assert "run_coro_in_background(self.start_processing)" in inspect.getsource(queue_cls.start)
    assert inspect.ismodule(gradio.queueing.asyncio) or isinstance(gradio.queueing.asyncio, lean._QueueingAsyncio)
    for name in ("push", "process_events", "set_progress"):
        assert callable(getattr(queue_cls, name)), name
    assert "self.active_jobs[self.active_jobs.index(events)] = None" in inspect.getsource(queue_cls.process_events)
    assert "event_queue.queue.append(event)" in inspect.getsource(queue_cls.push)


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    """The small page of tests/support/lean_probe.py, run in a child process, as it reports it."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.lean_probe"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def _texts(chat: list[dict[str, Any]]) -> list[str]:
    return [m["content"][0]["text"] if isinstance(m["content"], list) else m["content"] for m in chat]


def test_a_left_out_output_is_never_rebuilt_and_the_result_is_whole(probe: dict[str, Any]) -> None:
    a, b, note = probe["final"]
    assert _texts(a) == ["hi", "a0 a1 a2 "]
    assert _texts(b) == ["hi", "b0 b1 b2 "]
    assert note == "done"
    assert probe["chatbots_built"] == 0, "Gradio rebuilt a chat it was told to leave alone"


def test_left_out_outputs_travel_as_no_change(probe: dict[str, Any]) -> None:
    streamed = probe["streamed"]
    assert len(streamed) == 7
    # After the first update, B's chat is an empty diff while only A grows, and A's while only B does.
    assert all(update[1] == [] for update in streamed[1:3]), streamed[1:3]
    assert all(update[0] == [] for update in streamed[4:6]), streamed[4:6]
    # The note, left out until the end, is Gradio's own "no change" update.
    assert streamed[0][2] == {"__type__": "update"}


def test_the_queue_parks_while_idle_and_wakes_for_work(probe: dict[str, Any]) -> None:
    assert probe["quiet_queue"]
    # Gradio's own dispatcher looks ~1000 times a second; parked, when woken and once a minute.
    assert probe["idle_polls"] <= 3, probe["idle_polls"]
    # The click after the idle second ran (with the re-check a minute away, only a wake-up runs it).
    assert probe["second_final"][2] == "done"
    assert probe["second_seconds"] < 60
