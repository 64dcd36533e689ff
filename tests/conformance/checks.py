"""What every real OpenAI-compatible server must do for the arena, as checks both server modules run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from arena.backends import GenerationRequest, make_backend
from arena.backends.base import Timeouts
from arena.domain import Answer
from arena.errors import ContextExceeded, PromptTooLong
from arena.health import check_once
from arena.registry import GenerationParams, ModelSpec
from arena.storage import Store
from arena.streaming import SideJob, _run_side
from tests.support.services import close, make_service, play

SLOW = Timeouts(connect=5.0, first_token=60.0, read=30.0, total=120.0)  # one thread, a CPU, a shared machine


def too_long_prompt_is_context_exceeded(model: ModelSpec) -> None:
    """A prompt far beyond the server's context ends as the arena's own ContextExceeded, whatever the server sent."""
    backend = make_backend(model, SLOW, {})
    request = GenerationRequest(
        params=GenerationParams(max_new_tokens=8), messages=({"role": "user", "content": "river mountain " * 400},)
    )

    async def go() -> None:
        try:
            async for _ in backend.stream(request):
                pass
        finally:
            await backend.aclose()

    with pytest.raises(ContextExceeded):
        asyncio.run(go())


def continuation_battle(base: ModelSpec, chat: ModelSpec, store: Store) -> Any:
    """A base model and a chat model meet in a continuation battle; the last view of its first turn."""
    service = make_service([base.model_copy(update={"kind": "base"}), chat], store, timeouts=SLOW)

    async def go() -> object:
        try:
            session = service.new_session("visitor")
            assert session.pairing.pool == "base"
            return (await play(service, session, "Once upon a time"))[-1]
        finally:
            await close(service)

    final = asyncio.run(go())
    assert all(a.ok for a in final.answers), final.answers
    return final


def stop_string_round_trip(model: ModelSpec) -> None:
    """Greedy answer once; then again with a word from its middle as stop string: cut there, ``stop``.

    One side, streamed by the arena's own side runner (StopFilter included); greedy decoding on one
    thread gives the same text both times.
    """
    greedy = GenerationParams(max_new_tokens=40, temperature=0.0)
    messages = ({"role": "user", "content": "Tell me about rivers"},)

    async def answer(stop: tuple[str, ...]) -> Answer:
        backend = make_backend(model.model_copy(update={"stop": stop}), SLOW, {})
        job = SideJob(backend, GenerationRequest(params=greedy, messages=messages, stop=stop))
        result = Answer()
        try:
            await _run_side(job, result, asyncio.Event(), asyncio.Event(), time.monotonic, 0.0)
        finally:
            await backend.aclose()
        assert result.error is None, result.error
        return result

    full = asyncio.run(answer(()))
    words = full.text.split()
    assert full.finish_reason in ("eos", "length") and len(words) >= 4, full
    word = words[len(words) // 2]
    cut = asyncio.run(answer((word,)))
    assert cut.finish_reason == "stop"
    assert word not in cut.text and full.text.startswith(cut.text)


def context_refusals_are_not_the_models_failure(left: ModelSpec, right: ModelSpec, store: Store) -> list[str]:
    """Too-long prompts in battles: refused before sending where the arena knows the context, else
    the server's refusal shown as the arena's own message; never a failure of the model (issue 18:
    three such prompts took a model out of the pool for everyone). Returns the visitor's message keys.

    The context is whatever the spec says plus what one round of health checks learns. Digits are
    one token each for the tiny model's vocabulary but a third of one in the arena's estimate
    without ``tokenizer:`` (605 against 222), so that prompt fits the estimate and reaches the server.
    """
    service = make_service([left, right], store, timeouts=SLOW, settings={"max_new_tokens": 16})
    assert service.settings.breaker_failures <= 3

    async def go() -> list[str]:
        probes = [make_backend(s, SLOW, {}) for s in (left, right)]
        keys: list[str] = []
        try:
            await check_once(service.health, probes, timeout=30, on_info=service.learn_server_info)
            with pytest.raises(PromptTooLong) as refused:
                await play(service, service.new_session("visitor"), "river mountain " * 150)
            keys.append(refused.value.message.key)
            for _ in range(3):
                final = (await play(service, service.new_session("visitor"), "0123456789 " * 55))[-1]
                assert [a.error_kind for a in final.answers] == ["ContextExceeded"] * 2, final.answers
                assert not final.can_vote
                keys += [a.error.key for a in final.answers if a.error is not None]
        finally:
            await close(service)
            for p in probes:
                await p.aclose()
        return keys

    keys = asyncio.run(go())
    assert service.health.available() == {left.name, right.name}
    return keys
