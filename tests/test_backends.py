"""Both backends against real demo servers over HTTP: streaming, parameters, errors, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time

import pytest

from arena.backends import DRAIN_SECONDS, Backend, Chunk, GenerationRequest, Timeouts, make_backend
from arena.backends.demo import DemoServer
from arena.backends.openai_compat import OpenAIBackend
from arena.backends.tgi import TgiBackend
from arena.errors import (
    BackendError,
    BackendFailed,
    BackendOverloaded,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
)
from arena.registry import GenerationParams, ModelSpec

FAST = Timeouts(connect=1.0, first_token=1.0, read=1.0, total=10.0)
PROMPT = "<|im_start|>user\nTell me about rivers<|im_end|>\n<|im_start|>assistant\n"
MESSAGES = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about rivers"})


def spec_for(kind: str, url: str, **extra: object) -> ModelSpec:
    if kind == "tgi":
        return ModelSpec(name="t", backend="tgi", url=url, template="chatml", **extra)  # type: ignore[arg-type]
    return ModelSpec(name="o", backend="openai", url=f"{url}/v1", model="demo/test-7b", **extra)  # type: ignore[arg-type]


def backend_for(kind: str, url: str, timeouts: Timeouts = FAST, api_key: str | None = None) -> Backend:
    spec = spec_for(kind, url)
    return TgiBackend(spec, timeouts, api_key) if kind == "tgi" else OpenAIBackend(spec, timeouts, api_key)


def request(params: GenerationParams | None = None, stop: tuple[str, ...] = ()) -> GenerationRequest:
    return GenerationRequest(params=params or GenerationParams(), prompt=PROMPT, messages=MESSAGES, stop=stop)


async def collect(backend: Backend, req: GenerationRequest) -> list[Chunk]:
    try:
        return [chunk async for chunk in backend.stream(req)]
    finally:
        await backend.aclose()


def run_stream(kind: str, url: str, req: GenerationRequest | None = None, **kw: object) -> list[Chunk]:
    return asyncio.run(collect(backend_for(kind, url, **kw), req or request()))  # type: ignore[arg-type]


KINDS = ["tgi", "openai"]


@pytest.mark.parametrize("kind", KINDS)
def test_streams_a_full_answer(server: DemoServer, kind: str) -> None:
    chunks = run_stream(kind, server.url)
    text = "".join(c.text for c in chunks)
    assert "Tell me about rivers" in text and "</s>" not in text and "<|im_" not in text
    assert len(chunks) > 10
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert chunks[-1].finish_reason == "eos"
    assert chunks[-1].generated_tokens is not None and chunks[-1].generated_tokens >= len(chunks) - 1


def test_tgi_sends_exactly_the_prompt_and_valid_parameters(server: DemoServer) -> None:
    params = GenerationParams(temperature=0, top_p=1.0, top_k=40, repetition_penalty=1.1, max_new_tokens=200, seed=7)
    run_stream("tgi", server.url, request(params, stop=("<|im_end|>",)))
    [(path, body)] = server.requests
    assert path == "/"
    assert body["inputs"] == PROMPT and body["stream"] is True
    assert body["parameters"] == {
        "details": True,
        "do_sample": False,  # greedy: no temperature, top_p or top_k
        "repetition_penalty": 1.1,
        "max_new_tokens": 200,
        "seed": 7,
        "stop": ["<|im_end|>"],
    }
    assert "authorization" not in server.headers[0]  # never a locally saved HF token


def test_tgi_sampling_parameters(server: DemoServer) -> None:
    run_stream("tgi", server.url, request(GenerationParams(temperature=0.7, top_p=0.9, typical_p=1.0)))
    params = server.requests[0][1]["parameters"]
    assert params == {"details": True, "temperature": 0.7, "top_p": 0.9}


def test_openai_sends_model_messages_stop_and_params(server: DemoServer) -> None:
    params = GenerationParams(temperature=0.5, top_p=0.9, top_k=20, repetition_penalty=1.2, max_new_tokens=64)
    run_stream("openai", server.url, request(params, stop=("</s>",)), api_key="sk-test")
    [(path, body)] = server.requests
    assert path == "/v1/chat/completions"
    assert body["model"] == "demo/test-7b"
    assert body["messages"] == [dict(m) for m in MESSAGES]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stop"]) == (0.5, 0.9, 64, ["</s>"])
    assert (body["top_k"], body["repetition_penalty"]) == (20, 1.2)
    assert server.headers[0]["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize("kind", KINDS)
def test_finish_reasons_length_and_stop(server: DemoServer, kind: str) -> None:
    short = run_stream(kind, server.url, request(GenerationParams(max_new_tokens=3)))
    assert short[-1].finish_reason == "length" and short[-1].generated_tokens == 3
    full = "".join(c.text for c in run_stream(kind, server.url))
    stop = full.split()[6]
    stopped = run_stream(kind, server.url, request(stop=(stop,)))
    text = "".join(c.text for c in stopped)
    assert stopped[-1].finish_reason == "stop"
    assert text.endswith(stop) if kind == "tgi" else stop not in text


@pytest.mark.parametrize("kind", KINDS)
def test_chunks_arrive_incrementally(kind: str) -> None:
    with DemoServer(token_rate=50, first_token_delay=0.05) as server:

        async def timed() -> list[float]:
            backend = backend_for(kind, server.url)
            started = time.monotonic()
            try:
                return [
                    time.monotonic() - started
                    async for _ in backend.stream(request(GenerationParams(max_new_tokens=12)))
                ]
            finally:
                await backend.aclose()

        times = asyncio.run(timed())
    assert len(times) >= 11
    assert times[-1] > 0.2  # 11 gaps at 20 ms: not delivered in one burst
    gaps = sorted(b - a for a, b in itertools.pairwise(times[:-1]))
    assert 0.008 < gaps[len(gaps) // 2] < 0.06


@pytest.mark.parametrize("kind", KINDS)
def test_a_paced_stream_reads_tokens_in_batches_without_holding_back_the_first(kind: str) -> None:
    """With ``pace``, tokens that arrived between two reads come in one burst; the text is the same."""
    with DemoServer(token_rate=100, first_token_delay=0.05, answer_tokens=60) as server:

        async def timed(backend: Backend, pace: float) -> tuple[str, list[float]]:
            started = time.monotonic()
            text, times = "", []
            async for chunk in backend.stream(request(), pace=pace):
                text += chunk.text
                times.append(time.monotonic() - started)
            return text, times

        async def both() -> tuple[tuple[str, list[float]], tuple[str, list[float]]]:
            # One backend, warmed by a first answer: building the HTTP client and connecting
            # (50-170 ms on a loaded CI machine) stays out of the timed streams.
            backend = backend_for(kind, server.url)
            try:
                async for _ in backend.stream(request()):
                    pass
                return await timed(backend, 0.0), await timed(backend, 0.3)
            finally:
                await backend.aclose()

        def reads(times: list[float]) -> int:
            """Bursts of chunks: a gap over 3 ms means the client waited for the network."""
            return 1 + sum(b - a > 0.003 for a, b in itertools.pairwise(times))

        (plain_text, plain), (paced_text, paced) = asyncio.run(both())
    assert paced_text == plain_text and len(paced) == len(plain) >= 60
    # Read token by token, 10 ms apart; a loaded machine merges some reads, so not all 60.
    assert reads(plain) >= 15, reads(plain)
    assert reads(paced) <= 12, reads(paced)  # ~3: the first token, then 0.6 s of tokens read every 0.3 s
    assert paced[0] < plain[0] + 0.15  # the first token is not held back (that would add a pace, 0.3 s)
    # The read after a pace brings the tokens that arrived meanwhile; the first is passed on at once and
    # the next step rests a pace before going on, so the others, and the end, wait up to two paces.
    assert paced[-1] < plain[-1] + 2 * 0.3 + 0.2


@pytest.mark.parametrize("kind", KINDS)
def test_answers_reuse_one_connection(server: DemoServer, kind: str) -> None:
    """A finished answer's response is read to its end, so the next answer reuses its connection."""

    async def three_answers() -> list[str]:
        backend = backend_for(kind, server.url)
        try:
            return ["".join([c.text async for c in backend.stream(request())]) for _ in range(3)]
        finally:
            await backend.aclose()

    disconnects = server.disconnects
    answers = asyncio.run(three_answers())
    assert all("Tell me about rivers" in a for a in answers)
    streamed = [c for (path, _body), c in zip(server.requests, server.clients, strict=True) if path != "/v1/models"]
    assert len(streamed) == 3 and None not in streamed
    assert len(set(streamed)) == 1, f"one connection per answer: {streamed}"
    assert server.disconnects == disconnects


@pytest.mark.parametrize("kind", KINDS)
def test_a_pooled_connection_closed_by_a_restarted_server_is_not_used(server: DemoServer, kind: str) -> None:
    """The server restarts between two answers: the second one opens a new connection and succeeds."""

    async def across_a_restart() -> list[str]:
        backend = backend_for(kind, server.url)
        try:
            first = "".join([c.text async for c in backend.stream(request())])
            await asyncio.to_thread(server.restart)
            second = "".join([c.text async for c in backend.stream(request())])
            return [first, second]
        finally:
            await backend.aclose()

    assert all("Tell me about rivers" in a for a in asyncio.run(across_a_restart()))


@pytest.mark.parametrize("kind", KINDS)
def test_a_response_left_open_after_the_answer_does_not_hold_it(server: DemoServer, kind: str) -> None:
    """A server that sends the whole answer but never ends the body: the answer still ends, complete."""
    server.fault = "lingers"

    async def timed() -> tuple[list[Chunk], float]:
        backend = backend_for(kind, server.url)
        chunks, last_text = [], 0.0
        try:
            async for chunk in backend.stream(request()):
                chunks.append(chunk)
                if chunk.text:
                    last_text = time.monotonic()
            return chunks, time.monotonic() - last_text
        finally:
            await backend.aclose()

    chunks, tail = asyncio.run(timed())
    assert "Tell me about rivers" in "".join(c.text for c in chunks)
    assert chunks[-1].finish_reason is not None
    assert tail < DRAIN_SECONDS + 0.5, f"the answer ended {tail:.2f} s after its last text"


# The first-token limit also covers building the HTTP client inside the first stream (50-170 ms on a
# loaded CI machine), so it leaves room for that; every bound sits >= 0.5 s above what it measures.
SHORT = Timeouts(connect=0.5, first_token=0.6, read=0.3, total=1.2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("fault", "error", "max_seconds"),
    [
        ("status:429", BackendOverloaded, 1.0),
        ("status:500", BackendFailed, 1.0),
        ("status:424", BackendFailed, 1.0),
        ("status:503", BackendUnavailable, 1.0),
        ("error_event", BackendFailed, 1.0),
        ("malformed", BackendFailed, 1.0),
        ("stall", BackendTimeout, 1.0),  # read limit, 0.3 s after the second token
        ("no_first_token", BackendTimeout, 1.2),  # first-token limit, 0.6 s
        ("never_ends", BackendTimeout, 1.8),  # total, 1.2 s
    ],
)
def test_faults_map_to_errors_within_the_timeouts(
    server: DemoServer, kind: str, fault: str, error: type[BackendError], max_seconds: float
) -> None:
    server.fault = fault
    started = time.monotonic()
    with pytest.raises(error) as caught:
        run_stream(kind, server.url, timeouts=SHORT)
    elapsed = time.monotonic() - started
    assert elapsed < max_seconds
    if error is BackendTimeout:
        assert elapsed >= 0.25
    assert type(caught.value) is error
    assert server.url not in str(caught.value.message) and "demo" not in str(caught.value.message)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("url", [closed_port_url(), "http://nonexistent.invalid"])
def test_unreachable_servers_are_unavailable(kind: str, url: str) -> None:
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        run_stream(kind, url, timeouts=SHORT)
    assert time.monotonic() - started < 2

    async def probe() -> tuple[bool, object]:
        backend = backend_for(kind, url, SHORT)
        try:
            return await backend.health(), await backend.info()
        finally:
            await backend.aclose()

    assert asyncio.run(probe()) == (False, None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["aclose", "cancel"])
def test_leaving_closes_the_upstream_request(kind: str, how: str) -> None:
    with DemoServer(token_rate=20, first_token_delay=0) as server:

        async def leave() -> None:
            backend = backend_for(kind, server.url)
            try:
                stream = backend.stream(request())
                if how == "aclose":
                    await anext(stream)
                    await anext(stream)
                    await stream.aclose()  # type: ignore[attr-defined]
                else:
                    streaming = asyncio.Event()

                    async def consume() -> None:
                        async for _ in stream:
                            streaming.set()

                    task = asyncio.create_task(consume())
                    await asyncio.wait_for(streaming.wait(), 10)  # cancel mid-stream, not before it starts
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
            finally:
                await backend.aclose()

        asyncio.run(leave())
        deadline = time.monotonic() + 5
        while server.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.disconnects == 1


@pytest.mark.parametrize("kind", KINDS)
def test_health_and_info(server: DemoServer, kind: str) -> None:
    async def probe() -> tuple[bool, object]:
        backend = backend_for(kind, server.url)
        try:
            return await backend.health(), await backend.info()
        finally:
            await backend.aclose()

    healthy, info = asyncio.run(probe())
    assert healthy is True and info is not None
    assert info.model_id == "demo/test-7b"  # type: ignore[attr-defined]
    if kind == "tgi":
        assert (info.max_total_tokens, info.max_stop_sequences) == (4096, 4)  # type: ignore[attr-defined]
    server.model_id = "someone/else"
    assert asyncio.run(probe())[1].model_id == "someone/else"  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", KINDS)
def test_outage_and_recovery(kind: str) -> None:
    server = DemoServer(token_rate=1000, first_token_delay=0).start()
    try:
        assert run_stream(kind, server.url)[-1].finish_reason == "eos"
        server.stop()
        with pytest.raises(BackendUnavailable):
            run_stream(kind, server.url, timeouts=SHORT)
        server.start()
        assert run_stream(kind, server.url)[-1].finish_reason == "eos"
    finally:
        server.stop()


def test_make_backend_picks_the_class_and_reads_the_key(server: DemoServer) -> None:
    tgi = make_backend(spec_for("tgi", server.url, api_key_env="DEMO_KEY"), FAST, {"DEMO_KEY": "hf_secret"})
    assert isinstance(tgi, TgiBackend) and tgi.api_key == "hf_secret"
    asyncio.run(collect(tgi, request()))
    assert server.headers[0]["authorization"] == "Bearer hf_secret"
    assert isinstance(make_backend(spec_for("openai", server.url), FAST, {}), OpenAIBackend)
    with pytest.raises(ConfigError, match="MISSING_KEY"):
        make_backend(spec_for("openai", server.url, api_key_env="MISSING_KEY"), FAST, {})
