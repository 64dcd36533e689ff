"""Build a real ArenaService over demo servers (real HTTP) and a real database, and play battles on it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from arena.app import Arena
from arena.backends import Timeouts
from arena.config import Settings
from arena.domain import Winner
from arena.registry import ModelSpec, Registry
from arena.service import ArenaService, BattleSession, Reveal, TurnView
from arena.storage import Store

# Short limits, for the tests about what a timeout does (pass ``timeouts=FAST``).
FAST = Timeouts(connect=1.0, first_token=0.6, read=0.6, total=2.5)
# Every other test: limits no pause of a loaded CI machine reaches (the first-token wait also covers
# building both sides' HTTP clients, 0.1-0.2 s there), so a battle fails only when a test makes it.
PATIENT = Timeouts(connect=5.0, first_token=5.0, read=5.0, total=30.0)


def tgi_spec(name: str, url: str, **extra: Any) -> ModelSpec:
    return ModelSpec(name=name, backend="tgi", url=url, template="chatml", **extra)


def openai_spec(name: str, url: str, model: str, **extra: Any) -> ModelSpec:
    return ModelSpec(name=name, backend="openai", url=f"{url}/v1", model=model, **extra)


def make_service(
    specs: Sequence[ModelSpec],
    store: Store,
    *,
    timeouts: Timeouts = PATIENT,
    settings: Mapping[str, Any] | None = None,
    clock: Any = None,
    now: Any = None,
) -> ArenaService:
    """A service with the given roster; rate limits and read-time checks off unless ``settings`` says."""
    base: dict[str, Any] = {
        "battles_per_minute": 0,
        "votes_per_hour": 0,
        "min_read_seconds": 0.0,
        "health_interval": 0.0,
        "stream_interval": 0.01,
        "client_salt": "test-salt",
    }
    base.update(settings or {})
    store.create_schema()
    arena = Arena(
        Settings.load({}, **base),
        {},
        registry=Registry(list(specs), source="test roster"),
        store=store,
        limits=timeouts,
        rng=np.random.default_rng(0),
        clock=clock,
        now=now,
    )
    return arena.make_service()  # the app's construction (arena.app.Arena), without sync or health checks


async def play(service: ArenaService, session: BattleSession, prompt: str) -> list[TurnView]:
    """Send ``prompt`` and collect every view until both sides are done."""
    return [view async for view in service.send(session, prompt)]


async def battle(
    service: ArenaService, client: str, prompt: str, winner: Winner | None = "model_a", **kw: Any
) -> tuple[BattleSession, list[TurnView], Reveal | None]:
    session = service.new_session(client, **kw)
    views = await play(service, session, prompt)
    reveal = await service.vote(session, winner) if winner is not None and views[-1].can_vote else None
    return session, views, reveal


async def close(service: ArenaService) -> None:
    for backend in service.backends.values():
        await backend.aclose()
    if service.health_checker is not None:
        service.health_checker.stop()
