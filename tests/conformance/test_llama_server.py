"""The arena against llama.cpp's own C++ ``llama-server`` (issue 18).

Built by tests/conformance/build_llama_server.sh from the llama.cpp the llama-cpp-python sdist
vendors (~25 min once, cached outside the checkout); the model is written at test time. Fails (never
skips) when the binary is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from arena.backends import ServerInfo, make_backend
from arena.registry import GenerationParams, ModelSpec
from arena.storage import Store
from tests.conformance.checks import (
    SLOW,
    context_refusals_are_not_the_models_failure,
    continuation_battle,
    stop_string_round_trip,
    too_long_prompt_is_context_exceeded,
)
from tests.conformance.tiny_model import write_tiny_model
from tests.support.app_process import free_port
from tests.support.services import close, make_service, play

N_CTX = 256
BINARY = Path(os.environ.get("ARENA_CI_LLAMA_SERVER", "/var/cache/arena-ci/llama-server")) / "bin" / "llama-server"


@contextlib.contextmanager
def _serving(model: Path, n_ctx: int = N_CTX) -> Iterator[str]:
    if not BINARY.exists():
        pytest.fail(
            f"llama-server is not built ({BINARY} is missing); run tests/conformance/build_llama_server.sh "
            "(compiles it once, ~25 min on 2 cores, then reuses the binary)."
        )
    port = free_port()
    args = [
        str(BINARY), "-m", str(model), "--alias", "tiny", "-c", str(n_ctx), "-np", "1", "-t", "1",
        "--jinja", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    # Its log goes to this process's stderr, which pytest captures and shows when a test fails.
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama-server exited with {proc.returncode} (its log is in the captured stderr)")
            if time.monotonic() > deadline:
                pytest.fail("llama-server did not answer /health within 120 s")
            try:
                if httpx2.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _serving(write_tiny_model(tmp_path_factory.mktemp("model") / "tiny-llama.gguf")) as url:
        yield url


def spec(url: str, name: str = "tiny", **extra: object) -> ModelSpec:
    return ModelSpec(
        name=name, backend="openai", server="llama-server", url=f"{url}/v1", model="tiny",
        params=GenerationParams(max_new_tokens=24, temperature=0.8, repetition_penalty=1.1, top_k=40),
        **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def test_probe_reports_the_alias_and_its_context(server: str) -> None:
    backend = make_backend(spec(server), SLOW, {})

    async def go() -> ServerInfo:
        try:
            return await backend.probe()
        finally:
            await backend.aclose()

    info = asyncio.run(go())
    assert info.model_id == "tiny"
    assert info.max_total_tokens == N_CTX  # meta.n_ctx in /v1/models


def test_a_battle_streams_with_the_servers_token_count(server: str, store: Store) -> None:
    service = make_service([spec(server, "left"), spec(server, "right")], store, timeouts=SLOW)

    async def go() -> object:
        try:
            session = service.new_session("visitor")
            views = await play(service, session, "Tell me about rivers")
            return views[-1]
        finally:
            await close(service)

    final = asyncio.run(go())
    answers = final.answers  # type: ignore[attr-defined]
    assert all(a.ok for a in answers), answers
    assert all(a.finish_reason in ("eos", "length") for a in answers)
    assert all(a.generated_tokens and a.generated_tokens > 0 for a in answers)


def test_a_prompt_longer_than_its_context_is_context_exceeded(server: str) -> None:
    """HTTP 400 exceed_context_size_error, mapped to the arena's own message."""
    too_long_prompt_is_context_exceeded(spec(server))


def test_a_continuation_goes_through_v1_completions(server: str, store: Store) -> None:
    continuation_battle(spec(server, "base"), spec(server, "chat"), store)


def test_a_stop_string_ending_is_stop(server: str) -> None:
    """llama-server says finish_reason "stop" for a stop string and for EOS alike (no stop_reason): the
    arena does not send it stop strings, cuts the stream itself and stores ``stop``."""
    stop_string_round_trip(spec(server))


def test_too_long_prompts_in_battles_are_never_the_models_failure(server: str, store: Store) -> None:
    """The context is learnt from /v1/models (``meta.n_ctx``; the spec gives none): far too long is
    refused before sending; an undercounted one gets llama-server's HTTP 400, shown as the arena's
    own message, three times, and the model stays in the pool."""
    keys = context_refusals_are_not_the_models_failure(spec(server, "left"), spec(server, "right"), store)
    assert keys == ["msg.prompt_too_long"] + ["msg.context_exceeded"] * 6


def test_a_probe_while_it_streams_is_answered_at_once_and_cuts_nothing(tmp_path: Path) -> None:
    """Unlike llama-cpp-python, llama-server answers /v1/models from its HTTP threads while a slot
    generates (docs/models.md): the probe does not wait behind the answer, and the answer runs on.

    Raw HTTP, a bigger model (so an answer lasts long enough for the probe to arrive) and EOS
    forbidden (logit_bias), so the answer runs to max_tokens unless something cuts it.
    """
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Go on"}],
        "max_tokens": 400,
        "logit_bias": [[2, False]],
        "stream": True,
    }
    events: list[str] = []
    model = write_tiny_model(tmp_path / "slower.gguf", n_embd=256, n_layer=4)
    with (
        _serving(model, n_ctx=512) as server,
        httpx2.Client(timeout=60) as client,
        client.stream("POST", f"{server}/v1/chat/completions", json=body) as r,
    ):
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data:"):
                events.append(line)
                break
        started = time.monotonic()
        probe = httpx2.get(f"{server}/v1/models", timeout=60)
        waited = time.monotonic() - started
        events += [line for line in lines if line.startswith("data:")]
        finished = time.monotonic() - started
    assert probe.status_code == 200
    assert waited < finished / 2, (waited, finished)  # answered while the answer still streamed
    assert any('"finish_reason":"length"' in e.replace(" ", "") for e in events), events[-3:]
