"""Both sides of a battle stream at once; one side's failure or slowness never stops the other."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from arena.backends.base import Backend, GenerationRequest
from arena.domain import Answer
from arena.errors import BackendError, BackendFailed
from arena.messages import Message
from arena.templates import StopFilter

__all__ = ["SideJob", "UpdateBudget", "stream_pair"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SideJob:
    """One side's work for one turn: which server, and exactly what to send it."""

    backend: Backend
    request: GenerationRequest


async def _run_side(
    job: SideJob,
    answer: Answer,
    changed: asyncio.Event,
    milestone: asyncio.Event,
    clock: Callable[[], float],
    pace: float,
) -> None:
    """Stream one side into ``answer``; ``changed`` on every chunk, ``milestone`` on first text and end."""
    start = clock()
    stops = StopFilter(job.request.stop)
    try:
        async for chunk in job.backend.stream(job.request, pace=pace):
            if chunk.text:
                if answer.ttft is None:
                    answer.ttft = clock() - start
                    milestone.set()
                answer.text += stops.feed(chunk.text)
            if chunk.generated_tokens is not None:
                answer.generated_tokens = chunk.generated_tokens
            if chunk.finish_reason is not None:
                answer.finish_reason = chunk.finish_reason
            changed.set()
            if stops.stopped:
                answer.finish_reason = "stop"
                break
        answer.text += stops.flush()
        if stops.stopped:
            answer.finish_reason = "stop"
    except BackendError as e:
        log.warning("backend %s failed: %s: %s", job.backend.spec.name, type(e).__name__, e)
        answer.error, answer.error_kind = e.message, type(e).__name__
    except asyncio.CancelledError:
        raise
    except Exception as e:  # a bug in a backend must not take down the other side
        log.exception("unexpected failure streaming from %s", job.backend.spec.name)
        answer.error, answer.error_kind = Message(BackendFailed.key), type(e).__name__
    finally:
        answer.total_time = clock() - start
        answer.done = True
        changed.set()
        milestone.set()


class UpdateBudget:
    """A rate of screen updates per second shared by every battle streaming at once.

    Each streamed update costs the UI server milliseconds of CPU whatever it carries (Gradio
    rebuilds every output of the event and diffs it), so under load the total number per second
    is what must be bounded: with ``rate`` updates/s shared by n battles, each one gets an update
    at most every ``max(interval, n / rate)`` seconds. Tokens in between are coalesced, so the text
    arrives in larger pieces, never later; the final update is never held back.
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.active = 0

    def interval(self, minimum: float) -> float:
        return max(minimum, self.active / self.rate)


# How often the screen changes while answers stream. Every update costs the UI server the same few
# milliseconds whatever it carries, so the cost of a battle follows its number of updates; these
# make that number follow the answer's text, not its duration:
# - at most one update per READING_STEP characters of new text on a side (~4-5 English words, about a
#   second of reading at 250 words a minute): a reader never waits on text that has already arrived for
#   longer than it takes to read the previous piece, and a 200-token answer costs ~40 updates whether it
#   streams in 2 s or in 20 s;
# - never more than one update per ``interval`` (0.1 s: ten a second, the rate at which text appearing
#   reads as continuous and past which nobody reads faster);
# - never holding text back for more than MAX_WAIT (0.5 s), so a slow model's answer (a few tokens a
#   second, or CJK text where a character is a token) still visibly moves twice a second.
READING_STEP = 24
MAX_WAIT = 0.5


async def stream_pair(
    jobs: tuple[SideJob, SideJob],
    *,
    interval: float = 0.1,
    step: int = READING_STEP,
    max_wait: float = MAX_WAIT,
    clock: Callable[[], float] = time.monotonic,
    stop: asyncio.Event | None = None,
    budget: UpdateBudget | None = None,
    read_pace: float = 0.0,
) -> AsyncGenerator[tuple[Answer, Answer], None]:
    """Stream both sides concurrently, yielding a snapshot when there is text worth showing.

    A snapshot is yielded only when a side has new text (or an error, or ended), and then once
    ``step`` characters of new text wait on either side, or the oldest unshown text has waited
    ``max_wait`` seconds, but never sooner than ``interval`` seconds after the last one. Each
    snapshot carries all the text of both sides, so neither side waits for the other: a slow side
    is shown as its own text accrues, a fast side at its own pace. A side's first text and its end
    are never held back (the first token is what the visitor waits for), and the final snapshot
    has both answers ``done`` and is yielded as soon as both are. Closing the generator (or
    cancelling the task consuming it) cancels both upstream requests; so does setting ``stop`` (the
    visitor started a new round), after which the generator ends without a final snapshot. With a
    ``budget``, the interval also stretches to share the budget's rate among all streaming pairs.

    Once an answer flows, each side reads its server at most every ``read_pace`` seconds (or every
    snapshot interval, if shorter, as it is when few battles stream): what arrives in between is
    taken in one read (:class:`arena.backends._StreamClock`), which saves the server CPU while it has
    time to spare (a busy one already finds several tokens per read; benchmarks/RESULTS.md). A
    snapshot can only show what was read, so text may appear up to two paces later, and the end of
    an answer on average about one and a half.
    """
    answers = (Answer(), Answer())
    changed, milestone = asyncio.Event(), asyncio.Event()
    pace = min(read_pace, budget.interval(interval) if budget is not None else interval)
    tasks = [
        asyncio.create_task(_run_side(job, ans, changed, milestone, clock, pace))
        for job, ans in zip(jobs, answers, strict=True)
    ]
    helpers = [*tasks, asyncio.create_task(_relay(stop, changed, milestone))] if stop is not None else tasks
    if budget is not None:
        budget.active += 1
    try:
        last = -float("inf")
        shown = 0  # milestones (a side's first text, a side's end) the last snapshot showed
        shown_chars = [0, 0]  # each side's text length in the last snapshot
        while True:
            await changed.wait()
            if stop is not None and stop.is_set():
                return
            changed.clear()
            if _milestones(answers) == shown and all(
                len(a.text) == n for a, n in zip(answers, shown_chars, strict=True)
            ):
                continue  # a read with nothing to show (usage, a held-back stop string)
            pending_since = clock()
            while _milestones(answers) == shown:  # a milestone goes out at once
                gap = budget.interval(interval) if budget is not None else interval
                new = max(len(a.text) - n for a, n in zip(answers, shown_chars, strict=True))
                due = last + gap if new >= step else max(last + gap, pending_since + max_wait)
                wait = due - clock()
                if wait <= 0:
                    break
                # Woken by every read, so a side reaching ``step`` or a milestone is seen at once.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await changed.wait()
                if stop is not None and stop.is_set():
                    return
                changed.clear()
            last = clock()
            snapshot = (dataclasses.replace(answers[0]), dataclasses.replace(answers[1]))
            shown = _milestones(snapshot)
            shown_chars = [len(a.text) for a in snapshot]
            yield snapshot
            if all(a.done for a in snapshot):
                return
    finally:
        if budget is not None:
            budget.active -= 1
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)


def _milestones(answers: tuple[Answer, Answer]) -> int:
    return sum(a.ttft is not None for a in answers) + sum(a.done for a in answers)


async def _relay(stop: asyncio.Event, changed: asyncio.Event, milestone: asyncio.Event) -> None:
    """Wake the snapshot loop when ``stop`` is set."""
    await stop.wait()
    changed.set()
    milestone.set()
