"""What follows llama-cpp-python's refusal of a too-long prompt on a kept-alive connection (issue 18).

    python -m benchmarks.bench_lcp_refusals [--rounds 30]

Needs the real server (tests/conformance/build_server.sh) and writes the conformance suite's tiny
model. Each round sends, the way the arena sends both sides of a battle, two streamed chat requests
with a prompt over the server's n_ctx (256), one after the other on one connection pool. Counts what
each request got: an empty HTTP 200 (the refusal the arena reads as ContextExceeded), a body that
broke off, or a request that failed on a connection the server had closed. First with kept-alive
connections (the arena before), then with ``Connection: close`` (what it sends llama-cpp-python now),
then through the arena's own backend.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx2

from arena.backends import GenerationRequest, Timeouts, make_backend
from arena.registry import GenerationParams, ModelSpec
from tests.conformance.tiny_model import write_tiny_model
from tests.support.app_process import free_port

N_CTX = 256
PROMPT = "0123456789 " * 55  # 605 tokens for the tiny model's vocabulary
VENV = Path(os.environ.get("ARENA_SERVER_VENV", "/var/cache/arena-ci/llama-venv"))


async def raw(url: str, rounds: int, headers: dict[str, str]) -> Counter[str]:
    body = {"model": "tiny", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16, "stream": True}
    seen: Counter[str] = Counter()
    async with httpx2.AsyncClient(timeout=30, headers=headers) as client:
        for _ in range(rounds * 2):
            try:
                async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                    data = [line async for line in response.aiter_lines() if line.startswith("data:")]
                seen[f"HTTP {response.status_code}, {len(data)} events"] += 1
            except httpx2.TransportError as e:
                seen[f"{type(e).__name__}"] += 1
    return seen


async def arena(url: str, rounds: int) -> Counter[str]:
    spec = ModelSpec(name="t", backend="openai", server="llama-cpp-python", url=f"{url}/v1", model="tiny")
    backend = make_backend(spec, Timeouts(), {})
    request = GenerationRequest(
        params=GenerationParams(max_new_tokens=16), messages=({"role": "user", "content": PROMPT},)
    )
    seen: Counter[str] = Counter()
    try:
        for _ in range(rounds * 2):
            try:
                async for _chunk in backend.stream(request):
                    pass
                seen["answered"] += 1
            except Exception as e:  # counted by kind: that is the measurement
                seen[type(e).__name__] += 1
    finally:
        await backend.aclose()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_model(Path(tmp) / "tiny.gguf")
        port = free_port()
        args_ = [
            str(VENV / "bin" / "python"), "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "tiny",
            "--n_ctx", str(N_CTX), "--n_threads", "1", "--port", str(port), "--interrupt_requests", "False",
        ]  # fmt: skip
        proc = subprocess.Popen(args_, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx2.get(f"{url}/v1/models", timeout=2).status_code == 200:
                        break
                except httpx2.HTTPError:
                    time.sleep(0.3)
            n = args.rounds * 2
            print(f"{n} too-long requests each, llama-cpp-python n_ctx {N_CTX}\n")
            print("| client | outcomes |\n|---|---|")
            for name, outcome in (
                ("kept-alive connections (before)", asyncio.run(raw(url, args.rounds, {}))),
                ("Connection: close", asyncio.run(raw(url, args.rounds, {"Connection": "close"}))),
                ("the arena's backend (after)", asyncio.run(arena(url, args.rounds))),
            ):
                print(f"| {name} | " + ", ".join(f"{k}: {v}" for k, v in outcome.most_common()) + " |")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
