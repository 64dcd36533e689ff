"""Model endpoints that misbehave on purpose (real demo servers over HTTP): one side fails, the other finishes.

Each fault must give the failing side a short plain-language message (no URL, model name or trace),
let the other side finish, make the battle unvotable and leave a new battle one call away. Repeated
failures take a model out of the pairing pool; health checks bring it back.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from arena.backends import make_backend
from arena.backends.demo import DemoServer
from arena.errors import VoteRejected
from arena.health import HealthTracker, check_once
from arena.registry import ModelSpec
from arena.storage import Store
from arena.ui.status import status_markdown
from tests.support.app_process import free_port
from tests.support.services import FAST, battle, close, make_service, openai_spec, play, tgi_spec

PROMPT = "Tell me about rivers in Poland."
KINDS = ["tgi", "openai"]


@pytest.fixture(scope="module")
def good() -> Iterator[DemoServer]:
    with DemoServer("demo/good-7b", token_rate=400, first_token_delay=0.01) as server:
        yield server


@pytest.fixture(scope="module")
def bad_server() -> Iterator[DemoServer]:
    with DemoServer("demo/bad-7b", token_rate=400, first_token_delay=0.01) as server:
        yield server


@pytest.fixture
def bad(bad_server: DemoServer) -> Iterator[DemoServer]:
    bad_server.fault, bad_server.model_id = None, "demo/bad-7b"
    if not bad_server.running:
        bad_server.start()
    yield bad_server
    bad_server.fault = None
    if not bad_server.running:
        bad_server.start()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'arena.sqlite3'}") as s:
        yield s


def bad_spec(kind: str, url: str, name: str = "bad-model") -> ModelSpec:
    if kind == "tgi":
        return tgi_spec(name, url, aliases=("Badly",))
    return openai_spec(name, url, "demo/bad-7b", aliases=("Badly",))


def assert_plain(message: str | None, *forbidden: str) -> None:
    assert message, "the failing side shows no message"
    assert len(message) < 120, message
    lowered = message.lower()
    for word in ("http", "127.0.0.1", "traceback", "error:", "bad-model", "badly", "demo/", *forbidden):
        assert word.lower() not in lowered, (word, message)
    assert not re.search(r":\d{2,5}\b", message), message


def run_fault_battle(store: Store, kind: str, url: str, good_url: str, expected: str) -> None:
    async def main() -> None:
        service = make_service([bad_spec(kind, url), tgi_spec("good-model", good_url)], store, timeouts=FAST)
        try:
            started = time.monotonic()
            session = service.new_session("10.0.0.1", models=("bad-model", "good-model"))
            views = await play(service, session, PROMPT)
            elapsed = time.monotonic() - started
            final = views[-1]
            failed, finished = final.answers
            assert failed.error is not None
            assert_plain(str(failed.error), url)
            assert expected in str(failed.error), failed.error
            assert finished.ok and "rivers" in finished.text, finished  # the other side finished its answer
            assert not final.can_vote and session.status == "failed"
            with pytest.raises(VoteRejected, match="failed"):
                await service.vote(session, "model_b")
            assert store.vote_total() == 0
            # One call starts a fresh battle (the "New round" button).
            fresh = service.new_session("10.0.0.1", models=("good-model", "bad-model"))
            assert fresh.status == "new" and fresh.battle_id is None
            assert elapsed < FAST.total + 5, elapsed  # every fault ends within the deadlines (margin for a busy CI)
        finally:
            await close(service)

    asyncio.run(main())


FAULTS = [
    ("status:429", "busy"),
    ("status:500", "error"),
    ("status:503", "offline"),
    ("error_event", "error"),
    ("malformed", "error"),
    ("no_first_token", "too long"),
    ("stall", "too long"),
    ("never_ends", "too long"),
]


# TGI's error event inside an HTTP 200 stream has no OpenAI counterpart, so that case is TGI-only.
@pytest.mark.parametrize(
    ("kind", "fault", "expected"),
    [(kind, f, e) for kind in KINDS for f, e in FAULTS if not (kind == "openai" and f == "error_event")],
)
def test_endpoint_fault(good: DemoServer, bad: DemoServer, store: Store, kind: str, fault: str, expected: str) -> None:
    bad.fault = fault
    run_fault_battle(store, kind, bad.url, good.url, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_connection_refused(good: DemoServer, store: Store, kind: str) -> None:
    run_fault_battle(store, kind, f"http://127.0.0.1:{free_port()}", good.url, "offline")


@pytest.mark.parametrize("kind", KINDS)
def test_unresolvable_host(good: DemoServer, store: Store, kind: str) -> None:
    run_fault_battle(store, kind, "http://no-such-model-host.invalid:8080", good.url, "offline")


def test_circuit_breaker_takes_a_failing_model_out_and_health_check_brings_it_back(
    good: DemoServer, bad: DemoServer, store: Store
) -> None:
    async def main() -> None:
        specs = [bad_spec("tgi", bad.url), tgi_spec("good-model", good.url), tgi_spec("other-model", good.url)]
        service = make_service(specs, store, timeouts=FAST, settings={"breaker_failures": 2, "breaker_cooldown": 3600})
        try:
            bad.fault = "status:500"
            for _ in range(2):
                await battle(service, "10.0.0.2", PROMPT, models=("bad-model", "good-model"))
            assert "bad-model" not in service.health.available()
            drawn = {name for _ in range(30) for name in service.new_session("10.0.0.2").models}
            assert drawn == {"good-model", "other-model"}
            status = status_markdown(service.model_status())
            assert "| bad-model | 🔴 offline |" in status and "2 of 3 models are online" in status

            # Still failing: the health check keeps it out (TGI /health answers 503 here).
            bad.fault = "status:503"
            backends = [make_backend(s, FAST, {}) for s in specs]
            await check_once(service.health, backends, timeout=2)
            assert "bad-model" not in service.health.available()
            bad.fault = None
            await check_once(service.health, backends, timeout=2)
            assert "bad-model" in service.health.available()
            for b in backends:
                await b.aclose()
            _, views, reveal = await battle(service, "10.0.0.2", PROMPT, models=("bad-model", "good-model"))
            assert views[-1].can_vote and reveal is not None
        finally:
            await close(service)

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_endpoint_serving_a_different_model_leaves_the_pool(good: DemoServer, bad: DemoServer, kind: str) -> None:
    spec = (
        tgi_spec("bad-model", bad.url, model="demo/bad-7b")
        if kind == "tgi"
        else openai_spec("bad-model", bad.url, "demo/bad-7b")
    )
    tracker = HealthTracker(["bad-model"])

    async def main() -> None:
        backend = make_backend(spec, FAST, {})
        try:
            await check_once(tracker, [backend], timeout=2)
            assert tracker.available() == {"bad-model"}
            bad.model_id = "someone/else-13b"  # the operator pointed the URL at another model
            await check_once(tracker, [backend], timeout=2)
            assert tracker.available() == frozenset()
            assert tracker.snapshot()[0].reason == "wrong model"
            bad.model_id = "demo/bad-7b"
            await check_once(tracker, [backend], timeout=2)
            assert tracker.available() == {"bad-model"}
        finally:
            await backend.aclose()

    asyncio.run(main())


def test_endpoint_comes_back_after_an_outage(good: DemoServer, bad: DemoServer, store: Store) -> None:
    """The background checker (own thread, own loop) returns a model to the pool when its server is back."""

    async def main() -> None:
        specs = [openai_spec("bad-model", bad.url, "demo/bad-7b"), tgi_spec("good-model", good.url)]
        service = make_service(
            specs, store, settings={"breaker_failures": 1, "breaker_cooldown": 3600, "health_interval": 0.2}
        )
        try:
            bad.stop()  # outage: connection refused
            _, views, _ = await battle(service, "10.0.0.3", PROMPT, models=("bad-model", "good-model"))
            assert views[-1].answers[0].error and "bad-model" not in service.health.available()
            checker = service.start_health_checks(lambda spec: make_backend(spec, FAST, {}))
            rounds = checker.rounds
            while checker.rounds < rounds + 2:
                await asyncio.sleep(0.05)
            assert "bad-model" not in service.health.available()  # still down: checks fail
            bad.start()  # back on the same port
            deadline = time.monotonic() + 5
            while "bad-model" not in service.health.available():
                assert time.monotonic() < deadline, "the health checker did not bring the model back"
                await asyncio.sleep(0.05)
            _, views, reveal = await battle(service, "10.0.0.3", PROMPT, models=("bad-model", "good-model"))
            assert views[-1].can_vote and reveal is not None
        finally:
            await close(service)

    asyncio.run(main())


def test_breaker_gives_a_trial_after_cooldown_without_health_checks() -> None:
    now = [0.0]
    tracker = HealthTracker(["a", "b"], failures=2, cooldown=30, clock=lambda: now[0])
    tracker.record("a", False)
    assert "a" in tracker.available()  # one failure is not enough
    tracker.record("a", True)
    tracker.record("a", False)
    assert "a" in tracker.available()  # a success reset the count
    tracker.record("a", False)
    assert tracker.available() == {"b"}
    now[0] = 29.9
    assert tracker.available() == {"b"}
    now[0] = 30.0
    assert tracker.available() == {"a", "b"}  # one trial
    tracker.record("a", True)
    assert tracker.snapshot()[0].online
    tracker.checked("b", True, wrong_model=True)
    now[0] = 10_000
    assert tracker.available() == {"a"}  # a wrong model never gets a trial by time alone


def test_health_checks_log_changes_not_every_check(
    good: DemoServer, bad: DemoServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Rounds that find every model as it was write nothing (issue 20: 640 of 650 log lines were checks)."""
    import logging

    specs = [openai_spec("bad-model", bad.url, "demo/bad-7b"), tgi_spec("good-model", good.url)]
    tracker = HealthTracker([s.name for s in specs])

    async def rounds(n: int) -> None:
        backends = [make_backend(s, FAST, {}) for s in specs]
        try:
            for _ in range(n):
                await check_once(tracker, backends, timeout=2)
        finally:
            for b in backends:
                await b.aclose()

    with caplog.at_level(logging.INFO):
        asyncio.run(rounds(3))  # all up
        assert [r for r in caplog.records if r.name.startswith("arena")] == []
        bad.stop()
        try:
            asyncio.run(rounds(3))  # down for three rounds: one line
        finally:
            bad.start()
        asyncio.run(rounds(3))  # back: one line
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("arena")]
    assert len(lines) == 2, lines
    assert lines[0].startswith("model bad-model leaves the pairing pool (health check: ")
    assert lines[1] == "model bad-model is back in the pairing pool"
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name.startswith("arena"))
