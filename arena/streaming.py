"""Both sides of a battle stream at once; one side's failure or slowness never stops the other."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from arena.backends.base import Backend, GenerationRequest
from arena.domain import Answer
from arena.errors import BackendError, BackendFailed
from arena.templates import StopFilter

__all__ = ["SideJob", "stream_pair"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SideJob:
    """One side's work for one turn: which server, and exactly what to send it."""

    backend: Backend
    request: GenerationRequest


async def _run_side(job: SideJob, answer: Answer, changed: asyncio.Event, clock: Callable[[], float]) -> None:
    start = clock()
    stops = StopFilter(job.request.stop)
    try:
        async for chunk in job.backend.stream(job.request):
            if chunk.text:
                if answer.ttft is None:
                    answer.ttft = clock() - start
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
        answer.error, answer.error_kind = e.user_message, type(e).__name__
    except asyncio.CancelledError:
        raise
    except Exception as e:  # a bug in a backend must not take down the other side
        log.exception("unexpected failure streaming from %s", job.backend.spec.name)
        answer.error, answer.error_kind = BackendFailed.user_message, type(e).__name__
    finally:
        answer.total_time = clock() - start
        answer.done = True
        changed.set()


async def stream_pair(
    jobs: tuple[SideJob, SideJob],
    *,
    interval: float = 0.04,
    clock: Callable[[], float] = time.monotonic,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[tuple[Answer, Answer]]:
    """Stream both sides concurrently, yielding snapshots at most every ``interval`` seconds.

    Tokens arriving between two snapshots are coalesced into one update. The final snapshot has
    both answers ``done``. Closing the generator (or cancelling the task consuming it) cancels
    both upstream requests; so does setting ``stop`` (the visitor started a new round), after
    which the generator ends without a final snapshot.
    """
    answers = (Answer(), Answer())
    changed = asyncio.Event()
    tasks = [asyncio.create_task(_run_side(job, ans, changed, clock)) for job, ans in zip(jobs, answers, strict=True)]
    helpers = [*tasks, asyncio.create_task(_relay(stop, changed))] if stop is not None else tasks
    try:
        last = -float("inf")
        while True:
            await changed.wait()
            if stop is not None and stop.is_set():
                return
            wait = last + interval - clock()
            if wait > 0 and not all(a.done for a in answers):
                await asyncio.sleep(wait)
            changed.clear()
            last = clock()
            snapshot = (dataclasses.replace(answers[0]), dataclasses.replace(answers[1]))
            yield snapshot
            if all(a.done for a in snapshot):
                return
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)


async def _relay(stop: asyncio.Event, changed: asyncio.Event) -> None:
    """Wake the snapshot loop when ``stop`` is set."""
    await stop.wait()
    changed.set()
