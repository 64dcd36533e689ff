"""The demo server speaks TGI's native protocol and the OpenAI chat API, over real HTTP."""

from __future__ import annotations

import itertools
import json
import time

import httpx
import pytest

from arena.backends.demo import (
    DEMO_MODEL_IDS,
    DEMO_ROSTER_PATH,
    DemoServer,
    demo_environ,
    detect_language,
    start_demo_servers,
)
from arena.registry import load_registry


def sse_events(response: httpx.Response) -> list[str]:
    return [line[len("data:") :].strip() for line in response.iter_lines() if line.startswith("data:")]


def tgi_stream(server: DemoServer, prompt: str, path: str = "/generate_stream", **params: object) -> list[dict]:
    body: dict = {"inputs": prompt, "parameters": params}
    if path == "/":
        body["stream"] = True
    with httpx.stream("POST", server.url + path, json=body, timeout=5) as response:
        assert response.status_code == 200
        return [json.loads(e) for e in sse_events(response)]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("How do rivers form?", "en"),
        ("Jak powstają rzeki? Proszę o krótką odpowiedź.", "pl"),
        ("川はどうやってできますか？", "ja"),
        ("請說明這個問題為什麼會發生", "zh-Hant"),
        ("请说明这个问题为什么会发生", "zh-Hans"),
    ],
)
def test_answers_in_the_prompts_language(server: DemoServer, text: str, language: str) -> None:
    assert detect_language(text) == language
    answer = httpx.post(server.url + "/generate", json={"inputs": text}).json()["generated_text"]
    assert detect_language(answer) == language
    assert text[:4] in answer  # quotes the prompt


def test_tgi_stream_format_and_eos(server: DemoServer) -> None:
    events = tgi_stream(server, "<|im_start|>user\nTell me about rivers<|im_end|>\n<|im_start|>assistant\n")
    *tokens, last = events
    assert all(e["generated_text"] is None and e["details"] is None for e in tokens)
    assert [e["index"] for e in events] == list(range(len(events)))
    assert last["token"]["special"] is True
    assert last["details"]["finish_reason"] == "eos_token"
    assert last["details"]["generated_tokens"] == len(events)
    assert last["generated_text"] == "".join(e["token"]["text"] for e in tokens)
    assert "Tell me about rivers" in last["generated_text"]
    assert "<|im_start|>" not in last["generated_text"]


def test_root_route_follows_the_stream_flag(server: DemoServer) -> None:
    streamed = tgi_stream(server, "Hello", path="/", max_new_tokens=3)
    assert streamed[-1]["details"]["finish_reason"] == "length"
    plain = httpx.post(server.url + "/", json={"inputs": "Hello", "parameters": {"details": True}}).json()
    assert plain["details"]["finish_reason"] == "eos_token"
    assert [path for path, _ in server.requests] == ["/", "/"]


def test_max_new_tokens_and_stop_sequences(server: DemoServer) -> None:
    full = tgi_stream(server, "Hello")[-1]["generated_text"]
    limited = tgi_stream(server, "Hello", max_new_tokens=4)
    assert len(limited) == 4 and limited[-1]["details"]["finish_reason"] == "length"
    stop = full.split()[5]
    stopped = tgi_stream(server, "Hello", stop=[stop])[-1]
    assert stopped["details"]["finish_reason"] == "stop_sequence"
    assert stopped["generated_text"].endswith(stop)  # TGI keeps the stop sequence
    assert full.startswith(stopped["generated_text"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"temperature": 0}, "temperature"),
        ({"top_p": 1.0}, "top_p"),
        ({"top_p": 0}, "top_p"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 5}, "unknown parameter"),
    ],
)
def test_tgi_validation_errors(server: DemoServer, params: dict, message: str) -> None:
    for path in ("/generate", "/generate_stream"):
        response = httpx.post(server.url + path, json={"inputs": "Hi", "parameters": params})
        assert response.status_code == 422
        assert response.json()["error_type"] == "validation"
        assert message in response.json()["error"]


def test_openai_stream(server: DemoServer) -> None:
    body = {
        "model": "whatever",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Jak się masz?"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as response:
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    final = chunks[-2]["choices"][0]
    assert final["finish_reason"] == "stop" and final["stop_reason"] is None
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert detect_language(text) == "pl"
    assert server.requests == [("/v1/chat/completions", body)]


def test_openai_stop_is_not_included(server: DemoServer) -> None:
    body: dict = {"model": "m", "messages": [{"role": "user", "content": "Hello"}]}
    full = httpx.post(server.url + "/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    stop = full.split()[5]
    choice = httpx.post(server.url + "/v1/chat/completions", json={**body, "stop": [stop]}).json()["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] == stop
    assert stop not in choice["message"]["content"] and full.startswith(choice["message"]["content"])
    short = httpx.post(server.url + "/v1/chat/completions", json={**body, "max_tokens": 2}).json()
    assert short["choices"][0]["finish_reason"] == "length" and short["usage"]["completion_tokens"] == 2
    bad = httpx.post(server.url + "/v1/chat/completions", json={**body, "top_p": 0})
    assert bad.status_code == 422


def test_info_health_models_follow_model_id(server: DemoServer) -> None:
    server.model_id = "someone/else"
    info = httpx.get(server.url + "/info").json()
    assert info["model_id"] == "someone/else" and info["max_stop_sequences"] == 4
    assert info["max_input_tokens"] < info["max_total_tokens"]
    assert httpx.get(server.url + "/v1/models").json()["data"][0]["id"] == "someone/else"
    assert httpx.get(server.url + "/health").status_code == 200
    server.fault = "status:503"
    assert httpx.get(server.url + "/health").status_code == 503


def test_models_answer_differently() -> None:
    servers = start_demo_servers(2, token_rate=1000, first_token_delay=0)
    try:
        answers = [httpx.post(s.url + "/generate", json={"inputs": "Hello"}).json()["generated_text"] for s in servers]
    finally:
        for s in servers:
            s.stop()
    assert answers[0] != answers[1]
    assert [s.model_id for s in servers] == list(DEMO_MODEL_IDS[:2])


def test_tokens_arrive_at_the_token_rate() -> None:
    with DemoServer(token_rate=50, first_token_delay=0.1) as server, httpx.Client() as client:
        client.get(server.url + "/health")  # the client's set-up and connection stay out of the timing
        started = time.monotonic()
        times = []
        with client.stream(
            "POST", server.url + "/generate_stream", json={"inputs": "Hi", "parameters": {"max_new_tokens": 11}}
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    times.append(time.monotonic() - started)
    assert len(times) == 11
    assert 0.08 < times[0] < 0.5
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 0.012 < sorted(gaps)[len(gaps) // 2] < 0.05  # ~20 ms per token


@pytest.mark.parametrize("status", [429, 500, 503])
def test_status_faults(server: DemoServer, status: int) -> None:
    server.fault = f"status:{status}"
    tgi = httpx.post(server.url + "/generate_stream", json={"inputs": "Hi"})
    assert tgi.status_code == status and "error" in tgi.json()
    chat = httpx.post(server.url + "/v1/chat/completions", json={"model": "m", "messages": []})
    assert chat.status_code == status


@pytest.mark.parametrize("fault", ["error_event", "malformed"])
def test_stream_faults_inside_http_200(server: DemoServer, fault: str) -> None:
    server.fault = fault
    with httpx.stream("POST", server.url + "/generate_stream", json={"inputs": "Hi"}) as r:
        assert r.status_code == 200
        events = sse_events(r)
    assert len(events) == 3
    if fault == "error_event":
        assert json.loads(events[-1])["error_type"] == "generation"
    else:
        with pytest.raises(json.JSONDecodeError):
            json.loads(events[-1])


def test_stall_hangs_and_disconnect_is_recorded(server: DemoServer) -> None:
    server.fault = "stall"
    before = server.disconnects
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream("POST", server.url + "/generate_stream", json={"inputs": "Hi"}, timeout=0.3) as r,
    ):
        for _ in r.iter_lines():
            pass
    deadline = time.monotonic() + 2
    while server.disconnects == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.disconnects == before + 1


def test_outage_and_recovery_on_the_same_port() -> None:
    server = DemoServer(token_rate=1000, first_token_delay=0).start()
    port = server.port
    try:
        assert httpx.get(server.url + "/health").status_code == 200
        server.stop()
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/health")
        server.start()
        assert server.port == port
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        server.stop()


def test_stop_ends_hanging_streams_quickly() -> None:
    server = DemoServer(token_rate=1000, first_token_delay=0).start()
    server.fault = "no_first_token"
    with httpx.stream("POST", server.url + "/generate_stream", json={"inputs": "Hi"}, timeout=5) as r:
        assert r.status_code == 200
        started = time.monotonic()
        server.stop()
        assert sse_events(r) == []
    assert time.monotonic() - started < 2


def test_demo_roster_loads_with_demo_environ() -> None:
    servers = [DemoServer(), DemoServer(), DemoServer(), DemoServer()]
    for n, s in enumerate(servers):
        s.port = 40000 + n  # never started: only the URLs matter here
    registry = load_registry(DEMO_ROSTER_PATH, demo_environ(servers))
    backends = {m.backend for m in registry}
    templates = {m.template for m in registry if m.backend == "tgi"}
    assert len(registry) >= 4 and backends == {"tgi", "openai"} and {"chatml", "llama-2"} <= templates
    for spec in registry:
        if spec.backend == "openai":
            assert spec.url.endswith("/v1") and spec.model


# --- issue 20: the showcase prompts, answered in their language and script; Regenerate varies ----------


def _tgi_answer(server: DemoServer, prompt: str, **params: object) -> str:
    body = {"inputs": f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n", "parameters": params}
    return httpx.post(server.url + "/generate", json=body).json()["generated_text"]


def _openai_answer(server: DemoServer, prompt: str, **params: object) -> str:
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}], **params}
    return httpx.post(server.url + "/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("ask", [_tgi_answer, _openai_answer])
@pytest.mark.parametrize(
    ("prompt", "language", "script"),
    [
        ("Opowiedz mi o Krakowie.", "pl", None),  # the README's prompt: Polish without one accented letter
        ("Co to jest fotosynteza?", "pl", None),
        ("台灣最高的山是哪一座？", "zh-Hant", "zh-Hant"),  # Traditional stays Traditional
        ("台湾最高的山是哪一座？", "zh-Hans", "zh-Hans"),
        ("日本で一番高い山は何ですか？", "ja", None),
        ("Tell me about Kraków.", "en", None),  # one Polish name does not make English Polish
    ],
)
def test_showcase_prompts_are_answered_in_their_language_and_script(
    server: DemoServer, ask: object, prompt: str, language: str, script: str | None
) -> None:
    from arena.language import chinese_script
    from arena.language import detect_language as arena_language

    answer = ask(server, prompt)  # type: ignore[operator]
    body = answer.split("\n\n", 1)[1]  # after the opener, which quotes the prompt
    assert detect_language(body) == language, answer
    if language != "en":
        assert arena_language(body) == language, answer
    if script is not None:
        assert chinese_script(answer) == script, answer


@pytest.mark.parametrize("ask", [_tgi_answer, _openai_answer])
def test_regenerate_gives_another_answer_unless_seeded_or_greedy(server: DemoServer, ask: object) -> None:
    """The demo arena's servers sample (``start_demo_servers``); a test's server gives one answer per prompt."""
    prompt = f"Opowiedz mi o Gdańsku ({ask.__name__})."  # type: ignore[attr-defined]
    assert len({ask(server, prompt, temperature=0.7) for _ in range(3)}) == 1  # type: ignore[operator]
    server.sampling = True
    answers = [ask(server, prompt, temperature=0.7) for _ in range(4)]  # type: ignore[operator]
    assert all(a != b for a, b in itertools.pairwise(answers)), answers  # every Regenerate shows something new
    assert len(set(answers)) == 4
    assert all(detect_language(a) == "pl" for a in answers)
    openers = {a.split("\n\n", 1)[0] for a in answers}
    assert len(openers) == 1  # the model's own style stays
    seeded = [ask(server, prompt, temperature=0.7, seed=s) for s in (7, 7, 8)]  # type: ignore[operator]
    assert seeded[0] == seeded[1] != seeded[2]
    greedy_params = {"do_sample": False} if ask is _tgi_answer else {"temperature": 0}  # TGI refuses temperature 0
    greedy = {ask(server, prompt, **greedy_params) for _ in range(2)}  # type: ignore[operator]
    assert len(greedy) == 1
    server.sampling = False


def test_the_demo_arena_s_servers_sample() -> None:
    servers = start_demo_servers(1, token_rate=1000, first_token_delay=0)
    try:
        assert servers[0].sampling
        answers = [httpx.post(servers[0].url + "/generate", json={"inputs": "Hej!"}).json() for _ in range(2)]
    finally:
        servers[0].stop()
    assert answers[0]["generated_text"] != answers[1]["generated_text"]
