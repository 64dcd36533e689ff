"""The shipped models.yaml, each model behind a server of its card's kind (TGI's limits as the card's
command sets them), plays: every seed model gets battles, Baichuan-7B (``kind: base``) in
continuation battles, and each server receives exactly the card's prompt format, sampling settings,
stop strings and context (issue 18, with the five cards of issue 3).

Real HTTP on loopback to demo servers speaking TGI's native protocol and vLLM's OpenAI API; the
service is the app's own (``arena.app.Arena``), the roster file the one in the repository.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from arena.backends import make_backend
from arena.backends.demo import DemoServer
from arena.health import check_once
from arena.registry import load_registry
from arena.storage import Store
from tests.support.services import PATIENT, close, make_service, play

ROSTER = Path(__file__).parents[1] / "models.yaml"

# name -> (env var, served model id, flavour, TGI's --max-input-length, context), as docs/models.md serves them.
SERVERS: dict[str, tuple[str, str, str, int | None, int]] = {
    "breeze-7b-instruct": ("BREEZE_URL", "MediaTek-Research/Breeze-7B-Instruct-v1_0", "tgi", 7168, 8192),
    "bielik-7b-instruct": ("BIELIK_URL", "speakleash/Bielik-7B-Instruct-v0.1", "tgi", 3072, 4096),
    "shisa-7b": ("SHISA_URL", "TheBloke/shisa-7B-v1-AWQ", "tgi", 3696, 4096),
    "baichuan-7b": ("BAICHUAN_URL", "baichuan-inc/Baichuan-7B", "tgi", 3072, 4096),
    "huozi-3.5": ("HUOZI_URL", "huozi", "vllm", None, 32768),
}
ANSWER = 1024  # the arena-wide max_new_tokens (the cards leave it to the arena)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'arena.sqlite3'}") as s:
        yield s


@pytest.fixture
def servers() -> Iterator[dict[str, DemoServer]]:
    with ExitStack() as stack:
        out = {}
        for name, (_, model_id, flavour, max_input, context) in SERVERS.items():
            kwargs: dict[str, Any] = {"token_rate": 400, "first_token_delay": 0.01, "context": context}
            if flavour == "tgi":
                kwargs["max_input_tokens"] = max_input
            else:
                kwargs["flavour"] = flavour
            out[name] = stack.enter_context(DemoServer(model_id, **kwargs))
        yield out


def _generation(server: DemoServer) -> list[tuple[str, Any]]:
    return [(path, body) for path, body in server.requests if path in ("/", "/v1/chat/completions", "/v1/completions")]


def test_every_seed_model_plays_as_its_card_says(servers: dict[str, DemoServer], store: Store) -> None:
    environ = {
        env: servers[name].url + ("/v1" if SERVERS[name][2] != "tgi" else "") for name, (env, *_) in SERVERS.items()
    }
    registry = load_registry(ROSTER, environ=environ)
    assert [m.name for m in registry] == list(SERVERS)
    service = make_service(list(registry), store, settings={"max_new_tokens": ANSWER})
    chat = [m.name for m in registry if m.kind == "chat"]

    async def go() -> list[tuple[str, str, str | None]]:
        probes = [make_backend(m, PATIENT, {}) for m in registry]
        try:
            # One round of health checks: the right model everywhere, and the limits learnt.
            await check_once(service.health, probes, timeout=5, on_info=service.learn_server_info)
            played = []
            pairs = [(c, "baichuan-7b") for c in chat] + [(chat[0], chat[3]), (chat[1], chat[2])]
            for a, b in pairs:
                session = service.new_session("visitor", models=(a, b))
                prompt = "Once upon a time" if session.pairing.pool == "base" else "Tell me about rivers"
                final = (await play(service, session, prompt))[-1]
                assert final.can_vote and all(x.ok and x.text for x in final.answers), (a, b, final.answers)
                await service.vote(session, "tie")
                played.append((session.pairing.pool, prompt, session.battle_id))
            return played
        finally:
            for p in probes:
                await p.aclose()
            await close(service)

    played = asyncio.run(go())
    assert service.health.available() == set(SERVERS)
    # Every model played; Baichuan in the four continuation battles, each chat model in one of them.
    assert [pool for pool, _, _ in played] == ["base"] * 4 + ["chat"] * 2
    # Context: TGI's limits from /info (the smaller of the input limit and the total less the answer),
    # vLLM's max_model_len less the answer.
    assert {name: service._max_input_tokens(name) for name in SERVERS} == {
        "breeze-7b-instruct": 7168,
        "bielik-7b-instruct": 3072,
        "shisa-7b": 4096 - ANSWER,
        "baichuan-7b": 3072,
        "huozi-3.5": 32768 - ANSWER,
    }

    def sent(name: str, prompt: str) -> tuple[str, Any]:
        found = [
            (path, body)
            for path, body in _generation(servers[name])
            if prompt in str(body.get("inputs") or body.get("prompt") or body.get("messages"))
        ]
        assert len(found) == 1, (name, prompt, found)
        return found[0]

    # Chat battles: each card's format, system prompt, sampling and stop strings (TGI adds the BOS itself).
    path, breeze = sent("breeze-7b-instruct", "Tell me about rivers")
    assert path == "/" and breeze["inputs"] == (
        "You are a helpful AI assistant built by MediaTek Research. The user you are helping speaks "
        "Traditional Chinese and comes from Taiwan. [INST] Tell me about rivers [/INST] "
    )
    assert breeze["parameters"] == {
        "temperature": 0.01, "top_p": 0.01, "top_k": 85, "repetition_penalty": 1.1,
        "max_new_tokens": ANSWER, "stop": ["[INST]"], "details": True,
    }  # fmt: skip
    path, bielik = sent("bielik-7b-instruct", "Tell me about rivers")
    assert bielik["inputs"] == (
        "[INST] <<SYS>>\nOdpowiadaj krótko, precyzyjnie i wyłącznie w języku polskim.\n<</SYS>>\n\n"
        "Tell me about rivers [/INST]"
    )
    assert bielik["parameters"] == {"do_sample": True, "max_new_tokens": ANSWER, "stop": ["[INST]"], "details": True}
    path, shisa = sent("shisa-7b", "Tell me about rivers")
    assert (
        shisa["inputs"]
        == "[INST] <<SYS>>\nあなたは役に立つアシスタントです。\n<</SYS>>\n\nTell me about rivers [/INST]"
    )
    assert shisa["parameters"] == {
        "do_sample": True, "temperature": 0.7, "top_p": 0.95, "top_k": 40, "repetition_penalty": 1.1,
        "max_new_tokens": ANSWER, "stop": ["[INST]"], "details": True,
    }  # fmt: skip
    path, huozi = sent("huozi-3.5", "Tell me about rivers")
    assert path == "/v1/chat/completions" and huozi["model"] == "huozi"
    assert huozi["messages"] == [
        {"role": "系统", "content": "你是一个智能助手"},
        {"role": "用户", "content": "Tell me about rivers"},
    ]
    assert (huozi["temperature"], huozi["top_p"], huozi["max_tokens"]) == (0.8, 0.9, ANSWER)
    assert huozi["stop"] == ["<|endofutterance|>"] and huozi["stop_token_ids"] == [57001]

    # Continuation battles: raw text, no chat format and no system prompt, each model's own sampling.
    baichuan = [body for path, body in _generation(servers["baichuan-7b"])]
    assert len(baichuan) == 4
    assert all(
        b["inputs"] == "Once upon a time"
        and b["parameters"] == {"repetition_penalty": 1.1, "max_new_tokens": ANSWER, "details": True}
        for b in baichuan
    )
    path, breeze_raw = sent("breeze-7b-instruct", "Once upon a time")
    assert breeze_raw["inputs"] == "Once upon a time" and breeze_raw["parameters"]["top_k"] == 85
    path, huozi_raw = sent("huozi-3.5", "Once upon a time")
    assert path == "/v1/completions" and huozi_raw["prompt"] == "Once upon a time"
    assert huozi_raw["stop_token_ids"] == [57001]
    # Stored with their pool (the continuation board is its own slice), each with its vote.
    battles = [store.get_battle(battle_id) for _, _, battle_id in played if battle_id]
    assert [b.pool for b in battles if b] == ["base"] * 4 + ["chat"] * 2
    assert all(store.get_vote(b.id) is not None for b in battles if b)
