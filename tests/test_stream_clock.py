"""The stream clock: first-token, read and total limits with one timer per stream.

End-to-end timeouts against misbehaving servers are in tests/test_faults.py and tests/test_backends.py;
these pin the clock's own rules, which those cannot reach: who gets cancelled, and when not.
"""

from __future__ import annotations

import asyncio

import pytest

from arena.backends import _StreamClock
from arena.backends.base import Timeouts
from arena.errors import BackendTimeout

# Steps of 0.05 s sit six times inside the read limit: a pause of the process (a full garbage
# collection, another job on a busy CI machine) does not turn progress into a stall.
FAST = Timeouts(connect=1.0, first_token=0.2, read=0.3, total=1.0)


def test_each_limit_names_itself() -> None:
    async def first_token() -> None:
        clock = _StreamClock(FAST)
        await clock.step(asyncio.sleep(1))

    async def stalled() -> None:
        clock = _StreamClock(FAST)
        clock.first_seen = True
        await clock.step(asyncio.sleep(0.05))  # progress: the read limit counts from here
        await clock.step(asyncio.sleep(1))

    async def total() -> None:
        clock = _StreamClock(FAST)
        clock.first_seen = True
        while True:  # steady progress, each step well inside the read limit
            await clock.step(asyncio.sleep(0.05))

    for run, message in (
        (first_token, "no first token within 0.2 s"),
        (stalled, "no data for 0.3 s"),
        (total, "not finished within 1 s"),
    ):
        with pytest.raises(BackendTimeout, match=message):
            asyncio.run(run())


def test_progress_keeps_a_slow_stream_alive() -> None:
    async def run() -> int:
        clock = _StreamClock(Timeouts(first_token=0.2, read=0.3, total=5.0))
        clock.first_seen = True
        for _ in range(10):  # 0.5 s in all, longer than the read limit, never silent for 0.3 s
            await clock.step(asyncio.sleep(0.05))
        clock.close()
        return 10

    assert asyncio.run(run()) == 10


def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def run() -> None:
        clock = _StreamClock(FAST)
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().call_later(0.05, task.cancel)
        await clock.step(asyncio.sleep(1))

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run())


def test_a_stream_suspended_between_steps_is_not_cancelled_by_the_timer() -> None:
    """The consumer may hold the stream (e.g. busy elsewhere); only a waiting step is cancelled."""

    async def run() -> str:
        clock = _StreamClock(FAST)
        await clock.step(asyncio.sleep(0.01))
        await asyncio.sleep(0.4)  # past the first-token limit, but not inside a step
        try:
            await clock.step(asyncio.sleep(0))
        except BackendTimeout as e:
            return str(e)  # the next step notices the deadline itself
        return "no timeout"

    assert asyncio.run(run()) == "no first token within 0.2 s"


def test_close_stops_the_timer() -> None:
    async def run() -> None:
        clock = _StreamClock(FAST)
        await clock.step(asyncio.sleep(0.01))
        clock.close()
        assert clock._timer is None
        await asyncio.sleep(0.3)  # nothing fires, nothing is cancelled

    asyncio.run(run())
