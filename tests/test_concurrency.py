"""More battles at once than Gradio's default 40 worker slots: all of them stream together."""

from __future__ import annotations

import asyncio
from pathlib import Path

from benchmarks.loadgen import GradioApp, Visitor, http_client
from tests.support.app_process import AppProcess

BATTLES = 48  # above Gradio's default max_threads (40), below ARENA_CONCURRENCY


def test_every_battle_streams_at_once_up_to_the_concurrency_setting(tmp_path: Path) -> None:
    """Every send has begun streaming before the first one ends.

    Gradio's queue runs at most ``max_threads`` events at once (40 unless launch() says otherwise),
    whatever each event's concurrency limit; before the app passed ARENA_CONCURRENCY there, the
    41st battle waited for a whole answer to finish before its first update.
    """
    app = AppProcess(
        ["--demo", "--db", f"sqlite:///{tmp_path / 'arena.sqlite3'}"],
        env={
            "ARENA_CONCURRENCY": "64",
            "ARENA_DEMO_TOKEN_RATE": "5",  # answers of several seconds, so they overlap even on a slow machine
            "ARENA_DEMO_FIRST_TOKEN_DELAY": "0.2",
            "ARENA_BATTLES_PER_MINUTE": "0",  # every visitor here comes from 127.0.0.1
            "ARENA_JOURNAL_DIR": str(tmp_path / "journal"),
        },
        log_path=tmp_path / "app.log",
    )
    try:
        app.wait_ready()
        page = GradioApp(app.url)

        async def battles() -> list[tuple[float, float]]:
            async with http_client(BATTLES) as http:
                visitors = await asyncio.gather(*(Visitor.arrive(http, page) for _ in range(BATTLES)))

                async def one(i: int) -> tuple[float, float]:
                    result = await visitors[i].call(
                        "send", page.payload("send", f"Battle {i}: tell me about rivers."), keep_updates=True
                    )
                    assert result.updates, "no streamed update"
                    return result.updates[0][0], result.finished

                return await asyncio.gather(*(one(i) for i in range(BATTLES)))

        times = asyncio.run(battles())
    finally:
        app.stop()
    last_start = max(first for first, _ in times)
    first_end = min(end for _, end in times)
    assert last_start < first_end, (
        f"a battle began streaming {last_start - first_end:.2f} s after the first one had ended: "
        "the queue ran fewer battles at once than ARENA_CONCURRENCY allows"
    )
