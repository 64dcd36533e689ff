"""The arena against a real llama-cpp-python server (``python -m llama_cpp.server``), issue 18.

The server is built by tests/conformance/build_server.sh (a cached wheel, ~25 min to compile once);
the model is written at test time (tiny_model.py: SentencePiece vocabulary, random llama weights,
llama-2 chat template). Run by .ci/run after the main suite:

    python -m pytest tests/conformance -q

Fails (never skips) when llama-cpp-python is not installed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from arena.backends import make_backend
from arena.health import check_once
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
# A loaded CI machine: the model is tiny but the server answers one request at a time.


# The server lives in a virtual environment of its own (build_server.sh), so its dependencies never
# change the arena's.
SERVER_PYTHON = Path(os.environ.get("ARENA_SERVER_VENV", "/var/cache/arena-ci/llama-venv")) / "bin" / "python"


def _server_installed() -> None:
    found = SERVER_PYTHON.exists() and (
        subprocess.run([str(SERVER_PYTHON), "-c", "import llama_cpp.server"], capture_output=True).returncode == 0
    )
    if not found:
        pytest.fail(
            f"llama-cpp-python's server is not installed in {SERVER_PYTHON.parent.parent}; run "
            "tests/conformance/build_server.sh (compiles it once, ~25 min on 2 cores, then reuses the cached wheel)."
        )


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny-llama.gguf")


def _start(model: Path, alias: str, *, interrupt: bool) -> tuple[subprocess.Popen[bytes], str]:
    _server_installed()
    port = free_port()
    args = [
        str(SERVER_PYTHON), "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias,
        "--n_ctx", str(N_CTX), "--n_threads", "1", "--host", "127.0.0.1", "--port", str(port),
        "--interrupt_requests", str(interrupt),
    ]  # fmt: skip
    # Its log goes to this process's stderr, which pytest captures and shows when a test fails.
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode} (its log is in the captured stderr)")
        try:
            if httpx2.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return proc, url
        except httpx2.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    pytest.fail("llama_cpp.server did not answer /v1/models within 120 s")


@pytest.fixture(scope="module")
def server(model_file: Path) -> Iterator[str]:
    """The setting docs/models.md requires: --interrupt_requests False."""
    proc, url = _start(model_file, "tiny", interrupt=False)
    yield url
    proc.terminate()
    proc.wait(10)


def spec(url: str, name: str = "tiny", **extra: object) -> ModelSpec:
    return ModelSpec(
        name=name, backend="openai", server="llama-cpp-python", url=f"{url}/v1", model="tiny",
        context_length=N_CTX, params=GenerationParams(max_new_tokens=24, temperature=0.8, repetition_penalty=1.1),
        **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def test_probe_reports_the_alias_and_no_context(server: str) -> None:
    backend = make_backend(spec(server), SLOW, {})

    async def go() -> object:
        try:
            return await backend.probe()
        finally:
            await backend.aclose()

    info = asyncio.run(go())
    assert info.model_id == "tiny" and info.model_ids == ("tiny",)  # type: ignore[attr-defined]
    assert info.max_total_tokens is None  # type: ignore[attr-defined]  # llama-cpp-python does not say


def test_a_battle_streams_is_counted_and_voted(server: str, store: Store) -> None:
    """Two sides on the real server: text streams, the arena counts tokens (no usage), the vote is stored."""
    service = make_service([spec(server, "left"), spec(server, "right")], store, timeouts=SLOW)

    async def go() -> tuple[object, object]:
        try:
            session = service.new_session("visitor")
            views = await play(service, session, "Tell me about rivers")
            reveal = await service.vote(session, "tie") if views[-1].can_vote else None
            return views[-1], reveal
        finally:
            await close(service)

    final, reveal = asyncio.run(go())
    answers = final.answers  # type: ignore[attr-defined]
    assert all(a.ok for a in answers), answers
    assert all(a.finish_reason in ("eos", "length") for a in answers)
    assert all(a.generated_tokens and a.generated_tokens > 0 for a in answers)
    if all(a.text.strip() for a in answers):
        assert reveal is not None and all(s.tokens_per_second for s in reveal.sides)  # type: ignore[attr-defined]


def test_a_health_check_while_streaming_does_not_cut_the_answer(server: str, store: Store) -> None:
    service = make_service([spec(server, "a"), spec(server, "b")], store, timeouts=SLOW)
    probes = [make_backend(s, SLOW, {}) for s in service.playable_models()]

    async def go() -> object:
        try:
            session = service.new_session("visitor")
            last = None
            async for view in service.send(session, "Write about mountains"):
                last = view
                if view.streaming:
                    await check_once(service.health, probes, timeout=20, busy=service.streaming)
            return last
        finally:
            await close(service)
            for p in probes:
                await p.aclose()

    final = asyncio.run(go())
    assert all(a.ok for a in final.answers), final.answers  # type: ignore[attr-defined]
    assert service.health.available() == {"a", "b"}


def test_an_unguarded_probe_would_cut_an_answer_on_the_default_server(tmp_path: Path) -> None:
    """The quirk itself, on the server's default (--interrupt_requests True): why the checks skip busy models.

    Raw HTTP, a bigger model (so an answer lasts long enough for the probe to arrive) and EOS
    forbidden (logit_bias), so the answer would run to max_tokens if nothing cut it.
    """
    model = write_tiny_model(tmp_path / "slower.gguf", n_embd=256, n_layer=4)
    proc, url = _start(model, "tiny", interrupt=True)
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Go on"}],
        "max_tokens": 200,
        "logit_bias": {"2": -100},
        "stream": True,
    }
    events: list[str] = []
    try:
        with httpx2.Client(timeout=60) as client, client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            lines = r.iter_lines()
            for line in lines:
                if line.startswith("data:"):
                    events.append(line)
                    break
            probe = httpx2.get(f"{url}/v1/models", timeout=60)  # what a naive health check sends
            events += [line for line in lines if line.startswith("data:")]
    finally:
        proc.terminate()
        proc.wait(10)
    assert probe.status_code == 200
    assert events[-1].strip() == "data: [DONE]"
    finishes = [e for e in events[:-1] if '"finish_reason": "' in e or '"finish_reason":"' in e]
    assert finishes == [], finishes[-1:]  # cut off: no finish_reason, long before 200 tokens
    assert len(events) < 150


def test_a_prompt_longer_than_n_ctx_is_context_exceeded(server: str) -> None:
    """llama-cpp-python answers it with an empty HTTP 200; the arena calls it ContextExceeded."""
    too_long_prompt_is_context_exceeded(spec(server))


def test_a_continuation_goes_through_v1_completions(server: str, store: Store) -> None:
    """A base model (raw text continued) and a chat model on the real server meet in a continuation battle."""
    final = continuation_battle(spec(server, "base"), spec(server, "chat"), store)
    notice = final.notices[0]
    assert notice.key == "msg.continuation" and str(notice).startswith("This round is a text continuation")


def test_a_stop_string_ending_is_stop(server: str) -> None:
    """llama-cpp-python sends no stop_reason: the arena cuts at stop strings itself and stores ``stop``."""
    stop_string_round_trip(spec(server))


def test_too_long_prompts_in_battles_are_never_the_models_failure(server: str, store: Store) -> None:
    """It tells no context: the spec's ``context_length`` (its --n_ctx) refuses far too long before
    sending; an undercounted one gets its empty HTTP 200, shown as the arena's own message, three
    times, and the model stays in the pool."""
    keys = context_refusals_are_not_the_models_failure(spec(server, "left"), spec(server, "right"), store)
    assert keys == ["msg.prompt_too_long"] + ["msg.context_exceeded"] * 6
