"""The real app over flavoured demo servers, driven by gradio_client: notices reach API clients, the
Status tab tells the truth about a wrong model id, continuation battles play (issue 18)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gradio_client import Client

from arena.backends.demo import DemoServer
from tests.support.app_process import AppProcess

ROSTER = """
models:
  - name: base-demo
    backend: tgi
    url: ${BASE_URL}
    kind: base
  - name: chat-demo
    backend: openai
    server: llama-cpp-python
    url: ${CHAT_URL}/v1
    model: demo/chat-7b
    params: {max_new_tokens: 12}
  - name: wrong-demo
    backend: openai
    server: vllm
    url: ${WRONG_URL}/v1
    model: demo/expected-7b
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    tmp = tmp_path_factory.mktemp("servers-app")
    (tmp / "models.yaml").write_text(ROSTER, encoding="utf-8")
    with (
        DemoServer("demo/base-7b", token_rate=200, first_token_delay=0.01) as base,
        DemoServer("demo/chat-7b", flavour="llama-cpp-python", token_rate=200, first_token_delay=0.01) as chat,
        DemoServer("demo/served-7b", token_rate=200, first_token_delay=0.01) as wrong,
    ):
        proc = AppProcess(
            ["--config", str(tmp / "models.yaml"), "--db", f"sqlite:///{tmp / 'arena.sqlite3'}"],
            env={
                "BASE_URL": base.url,
                "CHAT_URL": chat.url,
                "WRONG_URL": wrong.url,
                "ARENA_MIN_READ_SECONDS": "0",
                "ARENA_BATTLES_PER_MINUTE": "0",
            },
            log_path=tmp / "app.log",
        )
        try:
            proc.wait_ready()
            yield proc
        finally:
            proc.stop()


def test_notices_reach_an_api_client_and_a_continuation_battle_plays(app: AppProcess) -> None:
    client = Client(app.url, verbose=False)
    client.predict(api_name="/accept_terms")
    job = client.submit("Once upon a time", api_name="/send")
    outputs = list(job)  # waits for the end of the stream
    assert job.status().success
    final = " ".join(str(x) for x in outputs[-1])
    # Every battle here is a continuation (the wrong-id model is out); chat-demo stops at 12 tokens.
    assert "This round is a text continuation" in final
    assert "cut off at its length limit" in final
    reveal = client.predict(api_name="/vote_tie")
    assert {reveal["model_a"], reveal["model_b"]} == {"base-demo", "chat-demo"}
    # The next round says it before the visitor writes.
    assert "This round is a text continuation" in " ".join(str(x) for x in client.predict(api_name="/new_round"))
    # chat-demo (llama-cpp-python) sends no usage: tokens per second come from the arena's own count,
    # so neither side's is unknown.
    assert [side["model"] for side in reveal["sides"]] == [reveal["model_a"], reveal["model_b"]]
    assert all(side["tokens_per_second"] for side in reveal["sides"]), reveal["sides"]


def test_the_status_tab_and_the_log_tell_the_truth_about_a_wrong_model_id(app: AppProcess) -> None:
    client = Client(app.url, verbose=False)
    status = str(client.predict(api_name="/status"))
    assert "wrong-demo" in status and "needs its operator" in status
    assert "come back by themselves" not in status  # nothing else is offline
    assert "'demo/served-7b'" in app.log() and "'demo/expected-7b'" in app.log()
