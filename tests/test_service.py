"""ArenaService wiring for health, status and flags (real demo servers, real SQLite)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from arena.backends import make_backend
from arena.backends.base import ServerInfo
from arena.backends.demo import DemoServer
from arena.config import Settings
from arena.service import ArenaService
from arena.storage import Store
from arena.ui.status import status_markdown
from tests.support.app_process import free_port
from tests.support.services import FAST, close, make_service, openai_spec, tgi_spec


@pytest.fixture(scope="module")
def server() -> Iterator[DemoServer]:
    with DemoServer("demo/service-7b", token_rate=500, first_token_delay=0.01) as s:
        yield s


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'arena.sqlite3'}") as s:
        yield s


def test_a_server_reporting_another_model_at_start_up_is_not_paired(server: DemoServer, store: Store) -> None:
    specs = [
        openai_spec("right", server.url, "demo/service-7b"),
        openai_spec("wrong", server.url, "org/expected-model"),
        tgi_spec("plain", server.url),
    ]
    service = make_service(specs, store)
    assert service.health.available() == {"right", "wrong", "plain"}
    info = {"right": ServerInfo(model_id="demo/service-7b"), "wrong": ServerInfo(model_id="demo/service-7b")}
    checked = ArenaService(Settings.load({}), service.registry, store, service.backends, server_info=info)
    assert checked.health.available() == {"right", "plain"}
    drawn = {name for _ in range(20) for name in checked.new_session("x").models}
    assert drawn == {"right", "plain"}


def test_health_checks_start_without_blocking_and_stop(store: Store) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    specs = [tgi_spec("a", dead), tgi_spec("b", dead)]
    service = make_service(specs, store, settings={"health_interval": 0.1})
    started = time.monotonic()
    checker = service.start_health_checks(lambda spec: make_backend(spec, FAST, {}))
    assert time.monotonic() - started < 0.5  # start-up never waits for model servers
    assert service.start_health_checks(lambda spec: make_backend(spec, FAST, {})) is checker  # once
    deadline = time.monotonic() + 10
    while service.health.available():
        assert time.monotonic() < deadline, "unreachable servers were never marked offline"
        time.sleep(0.05)
    status = status_markdown(service.model_status())
    assert "0 of 2 models are online" in status and "| a | 🔴 offline |" in status
    checker.stop()
    assert not any(t.name == "health-checker" and t.is_alive() for t in threading.enumerate())


def test_status_is_the_same_for_every_visitor(server: DemoServer, store: Store) -> None:
    specs = [tgi_spec(n, server.url) for n in ("m1", "m2", "m3")]
    service = make_service(specs, store)

    async def main() -> None:
        try:
            session = service.new_session("10.7.0.1")
            before = status_markdown(service.model_status())
            async for _ in service.send(session, "Hello there"):
                pass
            assert status_markdown(service.model_status()) == before  # nothing about this battle
            assert all(f"| {n} | 🟢 online |" in before for n in ("m1", "m2", "m3"))
        finally:
            await close(service)

    asyncio.run(main())


def test_every_flag_that_excludes_a_vote_has_a_note() -> None:
    from arena import i18n
    from arena.storage.store import DEFAULT_EXCLUDED_FLAGS

    english = i18n.catalog(i18n.REFERENCE)
    for flag in DEFAULT_EXCLUDED_FLAGS:  # the reveal says why, in the visitor's language
        assert "will not count" in english[f"flag.{flag}"], flag


def test_battles_store_both_propensities_for_inverse_propensity_weights(server: DemoServer, store: Store) -> None:
    specs = [tgi_spec(name, server.url) for name in ("kestrel-7b", "osprey-7b", "merlin-7b")]

    async def main() -> None:
        service = make_service(specs, store, settings={"pairing": "active", "ipw": True})
        try:
            session = service.new_session("10.9.9.9")
            [_ async for _ in service.send(session, "Hello?")]
            await service.vote(session, "model_a")
            [item] = list(store.iter_battles())
            stored = item["battle"]
            assert stored.propensity == pytest.approx(session.pairing.propensity)
            assert stored.uniform_propensity == pytest.approx(1 / 3)  # three pairs in one pool
            [count] = store.pair_counts(weighted=True)
            assert count.weight == pytest.approx(stored.uniform_propensity / stored.propensity)
            view = await service.leaderboard()
            assert view.votes == 1
        finally:
            await close(service)

    asyncio.run(main())
