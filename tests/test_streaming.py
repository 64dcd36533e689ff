"""Both sides stream concurrently against real demo servers; failures and stops stay on their side."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from arena.backends import make_backend
from arena.backends.base import GenerationRequest, Timeouts
from arena.backends.demo import DemoServer
from arena.domain import Answer
from arena.registry import GenerationParams, ModelSpec
from arena.streaming import SideJob, stream_pair

TIMEOUTS = Timeouts(connect=2, first_token=2, read=0.5, total=10)


@pytest.fixture
def servers() -> Iterator[tuple[DemoServer, DemoServer]]:
    a = DemoServer("demo/a", token_rate=100, first_token_delay=0.05).start()
    b = DemoServer("demo/b", token_rate=100, first_token_delay=0.05).start()
    yield a, b
    a.stop()
    b.stop()


def _jobs(servers: tuple[DemoServer, DemoServer], max_new_tokens: int = 60) -> tuple[SideJob, SideJob]:
    tgi = ModelSpec(name="a", backend="tgi", url=servers[0].url, template="chatml")
    oai = ModelSpec(name="b", backend="openai", url=servers[1].url + "/v1", model="demo/b")
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.7)
    return (
        SideJob(make_backend(tgi, TIMEOUTS, {}), GenerationRequest(params=params, prompt="<|im_start|>user\nHi")),
        SideJob(
            make_backend(oai, TIMEOUTS, {}),
            GenerationRequest(params=params, messages=({"role": "user", "content": "Hi"},)),
        ),
    )


async def _collect(jobs: tuple[SideJob, SideJob], **kwargs: object) -> list[tuple[Answer, Answer]]:
    snapshots = [s async for s in stream_pair(jobs, **kwargs)]  # type: ignore[arg-type]
    for job in jobs:
        await job.backend.aclose()
    return snapshots


def test_both_sides_grow_together_and_updates_are_coalesced(servers: tuple[DemoServer, DemoServer]) -> None:
    started = time.monotonic()
    snapshots = asyncio.run(_collect(_jobs(servers), interval=0.05))
    elapsed = time.monotonic() - started
    final_a, final_b = snapshots[-1]
    assert final_a.ok and final_b.ok and final_a.text and final_b.text
    assert final_a.finish_reason in ("length", "eos") and final_a.ttft is not None
    # Interleaved: a snapshot shows both partly written.
    assert any(0 < len(a.text) < len(final_a.text) and 0 < len(b.text) < len(final_b.text) for a, b in snapshots)
    # Coalesced: at most one snapshot per interval (plus the final one), not one per token.
    assert len(snapshots) <= elapsed / 0.05 + 2
    assert len(snapshots) < 60


def test_a_failing_side_never_stops_the_other(servers: tuple[DemoServer, DemoServer]) -> None:
    servers[0].fault = "status:500"
    final_a, final_b = asyncio.run(_collect(_jobs(servers)))[-1]
    assert final_a.done and final_a.error and not final_a.ok
    assert "http" not in str(final_a.error).lower() and "demo" not in str(final_a.error).lower()
    assert final_b.ok and final_b.text


def test_a_stalled_side_times_out_while_the_other_finishes(servers: tuple[DemoServer, DemoServer]) -> None:
    servers[1].fault = "stall"
    final_a, final_b = asyncio.run(_collect(_jobs(servers)))[-1]
    assert final_a.ok
    assert final_b.error_kind == "BackendTimeout"


def test_stop_ends_both_upstream_streams(servers: tuple[DemoServer, DemoServer]) -> None:
    for s in servers:
        s.token_rate = 10  # long enough to still be running when stopped

    async def run() -> int:
        stop = asyncio.Event()
        jobs = _jobs(servers, max_new_tokens=300)
        count = 0
        async for _ in stream_pair(jobs, interval=0.02, stop=stop):
            count += 1
            if count == 3:
                stop.set()
        for job in jobs:
            await job.backend.aclose()
        return count

    assert asyncio.run(run()) == 3  # no snapshot after the stop
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and servers[0].disconnects + servers[1].disconnects < 2:
        time.sleep(0.05)
    assert servers[0].disconnects == 1 and servers[1].disconnects == 1
