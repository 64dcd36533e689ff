"""The update budget stretches the interval under load; the final snapshot is never held back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from arena.backends.base import Backend, Chunk, GenerationRequest, ServerInfo, Timeouts
from arena.registry import ModelSpec
from arena.streaming import SideJob, UpdateBudget, stream_pair


class _Paced(Backend):
    """``tokens`` one-word chunks, ``gap`` seconds apart (no server: only the timing matters here)."""

    def __init__(self, tokens: int, gap: float, first_delay: float = 0.0) -> None:
        super().__init__(ModelSpec(name="paced", backend="tgi", url="http://unused", template="chatml"), Timeouts())
        self.tokens, self.gap, self.first_delay = tokens, gap, first_delay
        self.paces: list[float] = []

    async def stream(self, request: GenerationRequest, pace: float = 0.0) -> AsyncIterator[Chunk]:
        self.paces.append(pace)
        await asyncio.sleep(self.first_delay)
        for i in range(self.tokens):
            await asyncio.sleep(self.gap)
            yield Chunk(" w", "length" if i == self.tokens - 1 else None, self.tokens if i == self.tokens - 1 else None)

    async def health(self) -> bool:
        return True

    async def info(self) -> ServerInfo | None:
        return None


def _jobs(tokens: int = 20, gap: float = 0.01) -> tuple[SideJob, SideJob]:
    return SideJob(_Paced(tokens, gap), GenerationRequest(prompt="x")), SideJob(
        _Paced(tokens, gap), GenerationRequest(prompt="x")
    )


async def _run(**kwargs: object) -> tuple[float, int]:
    started = time.monotonic()
    snapshots = [s async for s in stream_pair(_jobs(), **kwargs)]  # type: ignore[arg-type]
    assert all(a.done for a in snapshots[-1]) and snapshots[-1][0].text == " w" * 20
    return time.monotonic() - started, len(snapshots)


def test_the_final_snapshot_is_not_held_back_by_a_long_interval() -> None:
    elapsed, count = asyncio.run(_run(interval=5.0))
    assert elapsed < 1.5  # the answers take ~0.2 s; waiting out the interval would take 5 s
    assert count == 2  # the first token, then the end


def test_a_budget_shared_by_many_streams_stretches_the_interval() -> None:
    budget = UpdateBudget(rate=10.0)
    budget.active = 9  # nine other battles streaming: with this one, one update per second each
    elapsed, count = asyncio.run(_run(interval=0.01, budget=budget))
    assert count == 2 and elapsed < 1.5
    assert budget.active == 9  # released when the stream ends
    assert UpdateBudget(rate=100.0).interval(0.04) == 0.04  # idle: the configured interval


def test_a_budget_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        UpdateBudget(0)


def test_a_sides_first_token_is_not_held_back_by_the_budget() -> None:
    """Side B starts 0.3 s after A; with one update every 2 s it must still appear at once."""

    async def run() -> list[tuple[float, bool, bool]]:
        budget = UpdateBudget(rate=1.0)
        budget.active = 1  # with this battle: one update every 2 s
        jobs = (
            SideJob(_Paced(100, 0.01), GenerationRequest(prompt="x")),
            SideJob(_Paced(100, 0.01, first_delay=0.3), GenerationRequest(prompt="x")),
        )
        started = time.monotonic()
        seen = []
        async for a, b in stream_pair(jobs, interval=0.01, budget=budget):
            seen.append((time.monotonic() - started, bool(a.text), bool(b.text)))
        return seen

    seen = asyncio.run(run())
    first_b = next(t for t, _, b in seen if b)
    assert first_b < 0.6, seen  # B's first token comes at ~0.31 s; the budget alone would show it at 2 s
    assert seen[0][1] and not seen[0][2]  # A's first token was shown on its own, at once
    assert len(seen) <= 4, seen  # first A, first B, (A's end,) the end: the budget coalesced the rest


@pytest.mark.parametrize(
    ("read_pace", "others", "expected"),
    [
        (0.1, 0, 0.04),  # few battles: reads no sparser than the screen updates (every 0.04 s)
        (0.1, 99, 0.1),  # many: updates every 1 s, reads every read_pace
        (0.0, 99, 0.0),  # 0: every token read as it arrives
    ],
)
def test_each_side_reads_at_the_pace_of_the_screen_updates_at_most(
    read_pace: float, others: int, expected: float
) -> None:
    budget = UpdateBudget(rate=100.0)
    budget.active = others
    jobs = _jobs(tokens=2)

    async def run() -> None:
        async for _ in stream_pair(jobs, interval=0.04, budget=budget, read_pace=read_pace):
            pass

    asyncio.run(run())
    assert [job.backend.paces for job in jobs] == [[expected], [expected]]  # type: ignore[attr-defined]
