"""Gradio 6.31 internals the arena changes so that it costs less: the one place that touches them.

**An output an event leaves unchanged costs nothing.** A handler returning a dict names the outputs
it changes; Gradio fills every output left out with ``gr.skip()`` and then, for each one, rebuilds
the component for the session (``__init__`` plus its config; a Chatbot's regenerates its JSON
schema, ~15 ms) only to send "no change". On a streamed event it then diffs the no-change marker
against the previous value, so the next real value travels whole instead of as a diff. Both are
why the battle stream used to send both chats, its state and its notice with every update
(measured: ~5.9 ms of Gradio work an update). :class:`LeanUpdates` changes two methods of
``gr.Blocks``:

* ``postprocess_data``: outputs whose value is a bare ``gr.skip()`` (left out of the dict, or
  given as such) are not post-processed at all: a stateful one keeps its value, any other is sent
  as the same no-change update Gradio would have sent, without rebuilding the component.
* ``handle_streaming_diffs``: while an event streams, a bare skip becomes an empty diff and the
  last value sent stays the base of the next diff.

**An idle queue sleeps.** Gradio's queue polls: its dispatcher wakes every millisecond to look
for a new event, its progress reporter every 10 ms, whether or not anything happens (~4% of a
core with no visitor; benchmarks/bench_idle.py). :func:`quiet_queue` makes both wait instead for
what they poll for: a new event or a finished one (the dispatcher), an event reporting progress
(the reporter), and look again at least every :data:`IDLE_POLL` seconds all the same. It replaces
the ``asyncio`` that ``gradio.queueing`` sees by one whose ``sleep`` parks those two loops (and
only them: they are found by the delays they sleep and the queue they belong to), and adds the
wake-ups to the queue's ``push``, ``process_events`` and ``set_progress``.

Neither changes what the page or an API client receives, only what it costs. The methods and
attributes used are checked by ``tests/test_lean.py``, which fails loudly when a Gradio upgrade
moves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
from typing import Any

import gradio as gr
import gradio.queueing
from gradio.blocks import convert_component_dict_to_list
from gradio.components.base import _Keywords
from gradio.data_classes import GradioModel, GradioRootModel

__all__ = ["IDLE_POLL", "LeanUpdates", "QuietQueue", "is_bare_skip", "quiet_queue"]


# Components whose post-processing is a little pure Python (no file, no I/O): done on the event loop
# instead of in Gradio's worker thread, whose hand-over cost more than the work (py-spy: most of a
# streamed update's post-processing was the thread hop).
_INLINE = (gr.Chatbot, gr.Markdown, gr.Textbox)


def _postprocess(block: Any, value: Any, state: Any) -> Any:
    """What Gradio's ``postprocess_data`` makes of one value, as it does it, minus the thread."""
    if block.stateful or isinstance(value, _Keywords):  # _Keywords: the generator's end, no value
        return value
    if state is not None and block._id in state:
        block = state[block._id]  # the session's copy, as Gradio uses
    processed = block.postprocess(value)
    return processed.model_dump() if isinstance(processed, (GradioModel, GradioRootModel)) else processed


def _is_update(value: Any) -> bool:
    """A property update (``gr.update(...)``, ``gr.skip()``), as Gradio's ``utils.is_prop_update`` tells it."""
    return isinstance(value, dict) and "update" in str(value.get("__type__", ""))


def is_bare_skip(value: Any) -> bool:
    """``gr.skip()``: an update with no property, i.e. "leave this output as it is"."""
    return isinstance(value, dict) and len(value) == 1 and value.get("__type__") == "update"


class LeanUpdates(gr.Blocks):
    """``gr.Blocks`` that skips the work Gradio does for outputs an event leaves unchanged, and
    whose queue sleeps while idle (:func:`quiet_queue`)."""

    def queue(self, *args: Any, **kwargs: Any) -> Any:
        blocks = super().queue(*args, **kwargs)
        quiet_queue(self)
        return blocks

    async def postprocess_data(self, block_fn: Any, predictions: Any, state: Any) -> list[Any]:
        outputs = list(block_fn.outputs)
        if len(outputs) < 2 or block_fn.batch or block_fn.is_validator_function:
            return await super().postprocess_data(block_fn, predictions, state)
        if isinstance(predictions, dict) and predictions:
            values = convert_component_dict_to_list(outputs, predictions)
        else:
            values = predictions
        if not isinstance(values, (list, tuple)) or len(values) != len(outputs):
            return await super().postprocess_data(block_fn, predictions, state)  # Gradio reports the mismatch
        keep = [i for i, value in enumerate(values) if not is_bare_skip(value)]
        inline = block_fn.postprocess and all(
            outputs[i].stateful or (isinstance(outputs[i], _INLINE) and not _is_update(values[i])) for i in keep
        )
        if len(keep) == len(outputs) and not inline:
            return await super().postprocess_data(block_fn, list(values), state)
        data: list[Any] = [None if block.stateful else {"__type__": "update"} for block in outputs]
        if keep:
            reduced = copy.copy(block_fn)
            reduced.outputs = [outputs[i] for i in keep]
            given = [values[i] for i in keep]
            if inline:
                given = [_postprocess(outputs[i], value, state) for i, value in zip(keep, given, strict=True)]
                reduced.postprocess = False  # done above
            # One output: Gradio takes the return value itself, not a one-item list.
            results = await super().postprocess_data(reduced, given if len(keep) > 1 else given[0], state)
            for i, value in zip(keep, results, strict=True):
                data[i] = value
        return data

    def handle_streaming_diffs(
        self,
        block_fn: Any,
        data: list[Any],
        session_hash: str | None,
        run: str | None,
        final: bool,
        simple_format: bool = False,
    ) -> list[Any]:
        unchanged = (
            []
            if final or session_hash is None or run is None
            else [i for i, value in enumerate(data) if is_bare_skip(value)]
        )
        last = self.pending_diff_streams.get(session_hash, {}).get(run) if unchanged else None
        if last is None:  # the run's first chunk: no earlier value to keep
            return super().handle_streaming_diffs(block_fn, data, session_hash, run, final, simple_format)
        for i in unchanged:
            data[i] = last[i]  # diffs to nothing, and stays the base of the next diff
        data = super().handle_streaming_diffs(block_fn, data, session_hash, run, final, simple_format)
        if not simple_format:
            for i in unchanged:
                data[i] = []
        return data


# How often a parked queue loop looks again even if nothing woke it (a safety net: every path that
# gives it work wakes it at once).
IDLE_POLL = 1.0

_QUEUE: contextvars.ContextVar[QuietQueue | None] = contextvars.ContextVar("arena_quiet_queue", default=None)


class _QueueingAsyncio:
    """``asyncio`` as ``gradio.queueing`` sees it: the same, except that its polling loops park."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        queue = _QUEUE.get()
        if queue is not None:
            if delay == queue.sleep_when_free:
                await queue.park(queue.arena_work)
                return result
            if delay == queue.progress_update_sleep_when_free and not queue.reporting():
                await queue.park(queue.arena_progress)
                return result
        return await asyncio.sleep(delay, result)


class QuietQueue(gradio.queueing.Queue):
    """Gradio's queue whose dispatcher and progress reporter wait for work instead of polling."""

    arena_work: asyncio.Event
    arena_progress: asyncio.Event

    def start(self) -> None:
        # Both loops are tasks created here: they carry this queue in their context.
        self.arena_work, self.arena_progress = asyncio.Event(), asyncio.Event()
        token = _QUEUE.set(self)
        try:
            super().start()  # type: ignore[no-untyped-call,unused-ignore]
        finally:
            _QUEUE.reset(token)

    async def park(self, event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(IDLE_POLL):
                await event.wait()
        event.clear()

    def reporting(self) -> bool:
        """Whether a running event tracks progress (only then has the reporter anything to send)."""
        return any(event.progress is not None for job in self.active_jobs if job is not None for event in job)

    def _wake(self, event_name: str) -> None:
        event = getattr(self, event_name, None)
        if event is not None:
            event.set()

    async def push(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().push(*args, **kwargs)
        finally:
            self._wake("arena_work")

    async def process_events(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().process_events(*args, **kwargs)
        finally:
            self._wake("arena_work")  # a slot, and the event's concurrency, are free again

    def set_progress(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().set_progress(*args, **kwargs)
        finally:
            self._wake("arena_progress")


def quiet_queue(blocks: gr.Blocks) -> None:
    """Make the queue of ``blocks`` (after ``blocks.queue()``) one that sleeps while idle."""
    queue = blocks._queue
    if not isinstance(queue, QuietQueue):
        queue.__class__ = QuietQueue  # same state; Gradio made it in Blocks.queue()
    if not isinstance(getattr(gradio.queueing, "asyncio"), _QueueingAsyncio):  # noqa: B009
        setattr(gradio.queueing, "asyncio", _QueueingAsyncio())  # noqa: B010
