"""Each real server's quirks, reproduced by the demo servers' flavours, handled by the arena (issue 18).

Real HTTP on loopback: the arena's own backends and service against ``DemoServer(flavour=...)``.
llama-cpp-python itself runs in tests/conformance/.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from arena import templates
from arena.backends import GenerationRequest, ServerInfo, make_backend
from arena.backends.demo import FLAVOURS, DemoServer
from arena.backends.openai_compat import OpenAIBackend, openai_body
from arena.errors import ContextExceeded
from arena.health import HealthTracker, check_once
from arena.registry import GenerationParams, ModelSpec
from arena.storage import Store
from arena.ui.status import status_markdown
from tests.support.services import PATIENT, close, make_service, play, tgi_spec

MODEL = "demo/flavour-7b"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'arena.sqlite3'}") as s:
        yield s


def spec(flavour: str, url: str, name: str = "m", **extra: object) -> ModelSpec:
    return ModelSpec(
        name=name,
        backend="openai",
        server=flavour,
        url=f"{url}/v1",
        model=MODEL,
        **extra,  # type: ignore[arg-type]
    )


async def collect(model: ModelSpec, request: GenerationRequest) -> tuple[str, str | None, int | None]:
    backend = make_backend(model, PATIENT, {})
    text, finish, tokens = "", None, None
    try:
        async for chunk in backend.stream(request):
            text += chunk.text
            finish = chunk.finish_reason or finish
            tokens = chunk.generated_tokens if chunk.generated_tokens is not None else tokens
    finally:
        await backend.aclose()
    return text, finish, tokens


def ask(model: ModelSpec, text: str = "Tell me about rivers", **params: object) -> GenerationRequest:
    prepared = templates.prepare(model, [{"role": "user", "content": text}])
    return GenerationRequest(params=GenerationParams(**params), messages=prepared.request.messages, stop=model.stop)  # type: ignore[arg-type]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_stop_string_ending_is_stop_and_the_end_of_sequence_is_eos(flavour: str) -> None:
    """Servers without vLLM's stop_reason get no stop strings; the arena cuts at them and says ``stop``."""
    with (
        DemoServer(MODEL, flavour=flavour, token_rate=400, first_token_delay=0.01) as server,
        DemoServer(MODEL, flavour=flavour, token_rate=400, first_token_delay=0.01) as other,
    ):
        plain = spec(flavour, server.url)
        full, finish, _ = asyncio.run(collect(plain, ask(plain)))
        assert finish == "eos" and len(full) > 40
        word = full.split()[len(full.split()) // 2]
        stopping = spec(flavour, server.url, stop=[word])
        from arena.streaming import SideJob, stream_pair

        async def run() -> tuple[str, str | None]:
            # Two sides on two servers: llama-cpp-python would end one side's answer when the other's arrives.
            backend = make_backend(stopping, PATIENT, {})
            twin = make_backend(spec(flavour, other.url, stop=[word]), PATIENT, {})
            last = None
            jobs = (SideJob(backend, ask(stopping)), SideJob(twin, ask(stopping)))
            async for views in stream_pair(jobs, interval=0.01):
                last = views
            await backend.aclose()
            await twin.aclose()
            assert last is not None
            return last[0].text, last[0].finish_reason

        text, reason = asyncio.run(run())
        assert reason == "stop"
        assert word not in text and full.startswith(text)
        sent = [body for path, body in server.requests if path.endswith("/chat/completions")][-1]
        assert ("stop" in sent) == (flavour == "vllm")  # only vLLM says which stop string matched


@pytest.mark.parametrize(
    ("flavour", "sent", "not_sent"),
    [
        ("vllm", {"repetition_penalty", "top_k"}, {"repeat_penalty"}),
        ("llama-server", {"repeat_penalty", "top_k"}, {"repetition_penalty"}),
        ("llama-cpp-python", {"repeat_penalty", "top_k"}, {"repetition_penalty"}),
        ("ollama", set(), {"repeat_penalty", "repetition_penalty", "top_k"}),
        ("tgi-messages", set(), {"repeat_penalty", "repetition_penalty", "top_k"}),
    ],
)
def test_sampling_settings_go_under_the_names_each_server_reads(
    flavour: str, sent: set[str], not_sent: set[str]
) -> None:
    model = ModelSpec(
        name="m",
        backend="openai",
        server=flavour,  # type: ignore[arg-type]
        url="http://127.0.0.1:1/v1",
        model=MODEL,
        params=GenerationParams(repetition_penalty=1.1, top_k=40, temperature=0.7),
    )
    body = openai_body(model, templates.prepare(model, [{"role": "user", "content": "hi"}]).request)
    assert sent <= set(body) and not (not_sent & set(body))
    assert body["temperature"] == 0.7
    ignored = set(OpenAIBackend.unsent_params(model))
    assert ignored == ({"repetition_penalty", "top_k"} if flavour in ("ollama", "tgi-messages") else set())


@pytest.mark.parametrize("flavour", ["vllm", "llama-server", "llama-cpp-python", "tgi-messages"])
def test_a_prompt_too_long_for_the_server_is_context_exceeded(flavour: str) -> None:
    with DemoServer(MODEL, flavour=flavour, context=64, token_rate=400, first_token_delay=0.01) as server:
        model = spec(flavour, server.url)
        with pytest.raises(ContextExceeded):
            asyncio.run(collect(model, ask(model, "river " * 200, max_new_tokens=16)))


def test_context_refusals_never_count_against_the_model(store: Store) -> None:
    """Three too-long prompts used to take a model out of the pool for everyone (issue 18)."""
    with (
        DemoServer(MODEL, flavour="llama-server", context=64, token_rate=400, first_token_delay=0.01) as small,
        DemoServer(MODEL, flavour="vllm", token_rate=400, first_token_delay=0.01) as big,
    ):
        service = make_service([spec("llama-server", small.url, "small"), spec("vllm", big.url, "big")], store)

        async def go() -> list[str | None]:
            kinds = []
            try:
                for _ in range(4):
                    session = service.new_session("visitor")
                    views = await play(service, session, "river " * 200)
                    kinds.append(next(a.error_kind for a in views[-1].answers if a.error_kind))
            finally:
                await close(service)
            return kinds

        assert asyncio.run(go()) == ["ContextExceeded"] * 4
        assert service.health.available() == {"small", "big"}


@pytest.mark.parametrize(("flavour", "context"), [("vllm", 2048), ("llama-server", 1024)])
def test_the_context_is_learnt_from_v1_models(flavour: str, context: int, store: Store) -> None:
    with DemoServer(MODEL, flavour=flavour, context=context) as server:
        model = spec(flavour, server.url)
        backend = make_backend(model, PATIENT, {})

        async def probe() -> ServerInfo:
            try:
                return await backend.probe()
            finally:
                await backend.aclose()

        info = asyncio.run(probe())
        assert info.max_total_tokens == context and info.model_id == MODEL
        service = make_service([model, spec("vllm", server.url, "other")], store, settings={"max_new_tokens": 100})
        service.learn_server_info("m", info)
        assert service._max_input_tokens("m") == context - 100


def test_ollama_name_is_name_latest_and_a_wrong_id_names_what_it_serves(caplog: pytest.LogCaptureFixture) -> None:
    with DemoServer("aurora:latest", flavour="ollama") as server:
        right = ModelSpec(name="right", backend="openai", server="ollama", url=f"{server.url}/v1", model="aurora")
        wrong = ModelSpec(name="wrong", backend="openai", server="ollama", url=f"{server.url}/v1", model="borealis")
        tracker = HealthTracker(["right", "wrong"])
        backends = [make_backend(right, PATIENT, {}), make_backend(wrong, PATIENT, {})]

        async def go() -> None:
            await check_once(tracker, backends, timeout=5)
            for b in backends:
                await b.aclose()

        with caplog.at_level(logging.WARNING):
            asyncio.run(go())
        assert tracker.available() == {"right"}
        assert "'aurora:latest'" in caplog.text and "'borealis'" in caplog.text
        # The Status tab does not promise that this one comes back by itself.
        page = status_markdown(tracker.snapshot(), "en")
        assert "needs its operator" in page and "come back by themselves" not in page


def test_health_checks_never_cut_a_running_llama_cpp_python_answer(store: Store) -> None:
    """llama-cpp-python ends a running answer when any request arrives; the checks leave a streaming model alone."""
    with (
        DemoServer(MODEL, flavour="llama-cpp-python", token_rate=40, first_token_delay=0.01) as lcp,
        DemoServer(MODEL, flavour="vllm", token_rate=40, first_token_delay=0.01) as other,
    ):
        service = make_service([spec("llama-cpp-python", lcp.url, "lcp"), spec("vllm", other.url, "other")], store)
        probes = [make_backend(s, PATIENT, {}) for s in service.playable_models()]

        async def go(busy_aware: bool) -> tuple[bool, str | None, int | None]:
            try:
                return await one(busy_aware)
            finally:
                await close(service)
                for p in probes:
                    await p.aclose()

        async def one(busy_aware: bool) -> tuple[bool, str | None, int | None]:
            session = service.new_session("visitor")
            views = service.send(session, "Tell me about rivers")
            last = None
            async for view in views:
                last = view
                if any(a.text for a in view.answers) and view.streaming is not False:
                    busy = service.streaming if busy_aware else (lambda name: False)
                    await check_once(service.health, probes, timeout=5, busy=busy)
            assert last is not None
            side = session.models.index("lcp")
            answer = last.answers[side]
            return last.can_vote, answer.finish_reason, answer.generated_tokens

        can_vote, finish, tokens = asyncio.run(go(busy_aware=True))
        assert can_vote and finish == "eos" and lcp.interrupted == 0
        # The arena counted the tokens itself: llama-cpp-python sends no usage.
        assert tokens is not None and tokens > 5
        # The quirk is real: a probe while it streams ends the answer (and the battle is lost).
        can_vote, finish, _ = asyncio.run(go(busy_aware=False))
        assert not can_vote and lcp.interrupted >= 1


def test_a_probe_waiting_behind_a_running_answer_is_not_counted() -> None:
    """With --interrupt_requests False llama-cpp-python queues the probe; timing out then is no outage."""
    import socket

    silent = socket.socket()  # accepts connections (the backlog) and never answers: a queued probe
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    queued = ModelSpec(name="q", backend="tgi", url=f"http://127.0.0.1:{silent.getsockname()[1]}")
    tracker = HealthTracker(["q"], failures=1)
    backend = make_backend(queued, PATIENT, {})
    state = {"busy": False}

    async def go() -> None:
        async def start_streaming() -> None:
            await asyncio.sleep(0.05)
            state["busy"] = True

        await asyncio.gather(
            check_once(tracker, [backend], timeout=0.3, busy=lambda n: state["busy"]), start_streaming()
        )
        await backend.aclose()

    asyncio.run(go())
    assert tracker.available() == {"q"}
    # The same wait with the model idle is an outage.
    state["busy"] = False

    async def idle() -> None:
        await check_once(tracker, [backend], timeout=0.3)
        await backend.aclose()

    asyncio.run(idle())
    silent.close()
    assert tracker.available() == frozenset()


def test_both_empty_answers_cannot_be_voted(store: Store) -> None:
    with DemoServer(MODEL, token_rate=400, first_token_delay=0.01) as server:
        server.fault = None
        specs = [spec("vllm", server.url, "a"), spec("vllm", server.url, "b")]
        service = make_service(specs, store, settings={"max_new_tokens": 1})

        async def go() -> list[object]:
            session = service.new_session("v")
            # A stop string at the very start: both answers are empty, and finished properly.
            session_specs = {s.name: s for s in specs}
            assert set(session.models) == set(session_specs)
            try:
                views = await play(service, session, "Tell me about rivers")
            finally:
                await close(service)
            return [views[-1], session]

        # Make both answers empty: each model's stop string is its first word.
        first = asyncio.run(collect(specs[0], ask(specs[0])))[0].split()[0]
        specs[:] = [spec("vllm", server.url, n, stop=[first]) for n in "ab"]
        service = make_service(specs, store)
        view, _ = asyncio.run(go())
        assert all(a.ok and not a.text.strip() for a in view.answers)  # type: ignore[attr-defined]
        assert not view.can_vote  # type: ignore[attr-defined]
        assert any("empty answer" in str(n) for n in view.notices)  # type: ignore[attr-defined]


def test_continuation_battles_send_raw_text_to_every_kind_of_server(store: Store) -> None:
    """A base model meets a TGI chat model and an OpenAI chat model; both get the raw text, no chat format."""
    with DemoServer(MODEL, token_rate=400, first_token_delay=0.01) as server:
        base = tgi_spec("base", server.url).model_copy(update={"kind": "base", "template": None})
        chat_tgi = tgi_spec("chat-tgi", server.url, system_prompt="Be nice.")
        chat_openai = spec("vllm", server.url, "chat-openai")
        service = make_service([base, chat_tgi, chat_openai], store)

        async def go() -> set[str]:
            try:
                return await rounds()
            finally:
                await close(service)

        async def rounds() -> set[str]:
            pools = set()
            for _ in range(12):
                session = service.new_session("v")
                pools.add(session.pairing.pool)
                views = await play(service, session, "Once upon a time")
                if session.pairing.pool == "base":
                    assert "base" in session.models
                    assert str(views[-1].notices[0]).startswith("This round is a text continuation")
                    assert views[-1].can_vote
            return pools

        assert asyncio.run(go()) == {"chat", "base"}
        raw = [b for p, b in server.requests if p == "/" and b["inputs"] == "Once upon a time"]
        completions = [b for p, b in server.requests if p == "/v1/completions"]
        assert raw and completions
        assert all(b["prompt"] == "Once upon a time" for b in completions)


def test_health_checks_teach_the_service_the_context(store: Store) -> None:
    """A server that was down at start-up: its context is learnt by the background checks."""
    import time

    with DemoServer(MODEL, flavour="llama-server", context=1024) as server:
        service = make_service(
            [spec("llama-server", server.url, "a"), spec("llama-server", server.url, "b")],
            store,
            settings={"health_interval": 0.1, "max_new_tokens": 24},
        )
        assert service._max_input_tokens("a") is None
        checker = service.start_health_checks(lambda s: make_backend(s, PATIENT, {}))
        deadline = time.monotonic() + 10
        while checker.rounds < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        checker.stop()
        assert service._max_input_tokens("a") == 1024 - 24


def test_start_up_warns_about_unpairable_models_and_settings_a_server_ignores(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    lone_base = ModelSpec(name="lone-base", backend="tgi", url="http://127.0.0.1:1", kind="base")
    messages_only = ModelSpec(
        name="msgs",
        backend="openai",
        server="tgi-messages",
        url="http://127.0.0.1:1/v1",
        model="tgi",
        params=GenerationParams(repetition_penalty=1.1),
    )
    other = ModelSpec(name="other", backend="openai", server="ollama", url="http://127.0.0.1:1/v1", model="x")
    with caplog.at_level(logging.WARNING):
        make_service([lone_base, messages_only, other.model_copy(update={"continuation": False})], store)
    assert "model lone-base can never play: no chat model that can complete raw text is enabled" in caplog.text
    assert "model msgs: its server (tgi-messages) does not read repetition_penalty" in caplog.text


def test_tgi_refusing_an_input_longer_than_max_input_tokens_is_context_exceeded() -> None:
    """TGI answers HTTP 422 "`inputs` must have less than N tokens" when the prompt alone is over
    ``--max-input-tokens`` (its total may still fit): the prompt's fault, like the total's refusal."""
    with DemoServer(MODEL, max_input_tokens=40, context=4096, token_rate=400, first_token_delay=0.01) as server:
        model = tgi_spec("t", server.url)
        request = GenerationRequest(params=GenerationParams(max_new_tokens=16), prompt="river " * 100)
        with pytest.raises(ContextExceeded):
            asyncio.run(collect(model, request))
        # The total's refusal, for the same server, is one too.
        request = GenerationRequest(params=GenerationParams(max_new_tokens=4090), prompt="river " * 30)
        with pytest.raises(ContextExceeded):
            asyncio.run(collect(model, request))


def test_the_input_limit_leaves_room_for_the_answer_where_tgi_tells_both(store: Store) -> None:
    """Shisa's TGI command: --max-input-length 3696 --max-total-tokens 4096. With a 1024-token answer a
    3696-token prompt would be refused; the arena truncates to 4096 - 1024 before sending instead."""
    with DemoServer(MODEL, max_input_tokens=3696, context=4096) as server:
        model = tgi_spec("m", server.url)
        backend = make_backend(model, PATIENT, {})

        async def probe() -> ServerInfo:
            try:
                return await backend.probe()
            finally:
                await backend.aclose()

        info = asyncio.run(probe())
        assert (info.max_input_tokens, info.max_total_tokens) == (3696, 4096)
        service = make_service([model, tgi_spec("other", server.url)], store, settings={"max_new_tokens": 1024})
        service.learn_server_info("m", info)
        assert service._max_input_tokens("m") == 4096 - 1024
        service.learn_server_info("m", ServerInfo(max_input_tokens=2000, max_total_tokens=4096))
        assert service._max_input_tokens("m") == 2000


@pytest.mark.parametrize("model_id", ["tgi", "org/served-7b"])
def test_tgi_messages_serves_the_placeholder_tgi_and_its_own_id_and_tells_its_context(
    model_id: str, store: Store
) -> None:
    """TGI's Messages API ignores the request's ``model`` (its docs write "tgi") while its /v1/models
    names the real model: either is the right model. Its limits come from TGI's /info."""
    with DemoServer("org/served-7b", flavour="tgi-messages", max_input_tokens=1000, context=2048) as server:
        right = spec("tgi-messages", server.url, "right").model_copy(update={"model": model_id})
        wrong = spec("tgi-messages", server.url, "wrong").model_copy(update={"model": "org/other-7b"})
        tracker = HealthTracker(["right", "wrong"])
        backends = [make_backend(right, PATIENT, {}), make_backend(wrong, PATIENT, {})]
        infos: dict[str, ServerInfo] = {}

        async def go() -> None:
            await check_once(tracker, backends, timeout=5, on_info=infos.__setitem__)
            for b in backends:
                await b.aclose()

        asyncio.run(go())
        assert tracker.available() == {"right"}
        assert (infos["right"].max_input_tokens, infos["right"].max_total_tokens) == (1000, 2048)
        # It plays: a chat battle on the same server, the model field as written.
        service = make_service([right, right.model_copy(update={"name": "twin"})], store)

        async def battle() -> object:
            try:
                return (await play(service, service.new_session("v"), "Tell me about rivers"))[-1]
            finally:
                await close(service)

        final = asyncio.run(battle())
        assert all(a.ok and a.text for a in final.answers)  # type: ignore[attr-defined]


def test_a_model_is_not_probed_while_another_model_of_its_server_streams(store: Store) -> None:
    """Two roster entries on one llama-cpp-python server (its --config_file serves several models):
    a probe for the idle one would still end the other's answer, so the checks skip the whole server."""
    with (
        DemoServer(MODEL, flavour="llama-cpp-python", token_rate=40, first_token_delay=0.01) as shared,
        DemoServer(MODEL, flavour="vllm", token_rate=40, first_token_delay=0.01) as other,
    ):
        idle = spec("llama-cpp-python", shared.url, "idle")
        specs = [spec("llama-cpp-python", shared.url, "lcp"), spec("vllm", other.url, "other"), idle]
        service = make_service(specs, store)
        probes = [make_backend(idle, PATIENT, {})]

        async def go() -> tuple[bool, str | None]:
            try:
                session = service.new_session("visitor", models=("lcp", "other"))
                last = None
                async for view in service.send(session, "Tell me about rivers"):
                    last = view
                    if any(a.text for a in view.answers) and view.streaming:
                        assert service.server_streaming("idle") and not service.streaming("idle")
                        await check_once(service.health, probes, timeout=5, busy=service.server_streaming)
                assert last is not None
                return last.can_vote, last.answers[session.models.index("lcp")].finish_reason
            finally:
                await close(service)
                for p in probes:
                    await p.aclose()

        can_vote, finish = asyncio.run(go())
        assert can_vote and finish == "eos" and shared.interrupted == 0
        assert not service.server_streaming("idle")


def test_tgi_messages_unreachable_is_unavailable() -> None:
    """Nothing listening: the probe says the server is down (not that a connection broke)."""
    from arena.errors import BackendUnavailable
    from tests.support.app_process import free_port

    down = spec("tgi-messages", f"http://127.0.0.1:{free_port()}").model_copy(update={"model": "tgi"})
    backend = make_backend(down, PATIENT, {})

    async def go() -> None:
        try:
            await backend.probe()
        finally:
            await backend.aclose()

    with pytest.raises(BackendUnavailable):
        asyncio.run(go())


def test_llama_cpp_pythons_refusal_breaking_off_is_context_exceeded(caplog: pytest.LogCaptureFixture) -> None:
    """Seen on the real server (tests/conformance): a prompt over n_ctx sometimes gets an HTTP 200 whose
    body breaks off before any event instead of ending empty. Before any event, that is its refusal too."""
    with DemoServer(MODEL, flavour="llama-cpp-python", context=64, token_rate=400, first_token_delay=0.01) as server:
        server.cut_refusals = True
        model = spec("llama-cpp-python", server.url)
        with caplog.at_level(logging.CRITICAL, logger="uvicorn.error"), pytest.raises(ContextExceeded):
            asyncio.run(collect(model, ask(model, "river " * 200, max_new_tokens=16)))
        # A prompt that fits streams as usual.
        text, finish, _ = asyncio.run(collect(model, ask(model, "Tell me about rivers", max_new_tokens=16)))
        assert text and finish == "length"


def test_the_next_battle_after_a_llama_cpp_python_refusal_plays(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """llama-cpp-python closes the connection of a request its worker failed, after answering it; a
    pooled connection then broke the next battle (the real server: benchmarks/bench_lcp_refusals.py)."""
    with DemoServer(MODEL, flavour="llama-cpp-python", context=64, token_rate=400, first_token_delay=0.01) as server:
        server.interrupt_requests = False
        service = make_service(
            [spec("llama-cpp-python", server.url, "a"), spec("llama-cpp-python", server.url, "b")], store
        )

        async def go() -> list[list[str | None]]:
            kinds = []
            try:
                for prompt in ["river " * 100, "Tell me about rivers"] * 4:
                    final = (await play(service, service.new_session("visitor"), prompt))[-1]
                    kinds.append([a.error_kind for a in final.answers])
            finally:
                await close(service)
            return kinds

        with caplog.at_level(logging.CRITICAL, logger="uvicorn.error"):
            kinds = asyncio.run(go())
        assert kinds == [["ContextExceeded"] * 2, [None, None]] * 4
        assert service.health.available() == {"a", "b"}
