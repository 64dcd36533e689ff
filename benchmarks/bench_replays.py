"""Side-by-side replays of anonymous prompts: pairs identified and votes counted, without and with the defence.

Run: ``python -m benchmarks.bench_replays`` from the repository root (``--prompts N``, ``--db URL``).
Without ``--db`` a fresh PostgreSQL database on 127.0.0.1:5432 is used (dropped afterwards).

Real parts: four demo model servers over HTTP (deterministic answers: what near-greedy settings
such as Breeze's card, temperature 0.01 and top_p 0.01, come close to) and two ArenaService
replicas sharing one database; the anonymous battle runs on replica 1, the replay on replica 2.

An attacker who wants one model (the first of the roster) to win plays, for each of N prompts:

* **after opening**: an anonymous battle, then the same prompt side by side with every model
  (two named pairs), matches the answers, and votes for the wanted model's side (if present; a
  tie otherwise);
* **before opening**: the side-by-side replays first, then the anonymous battle, the same vote;
* **near-equal**: as "before", with the prompt changed (case, punctuation, "please" added);
* **other address**: as "before", the replays sent from another address (another visitor key).

An honest visitor plays N anonymous battles and N side-by-side battles on other prompts, and
replays each anonymous prompt side by side only after voting: none of those votes may be lost.

"identified" = both sides of the anonymous battle matched to exactly one model, correctly, before
the vote (the replay answered). "counted" = the vote is in the ratings (Store.pair_counts).
Each scenario runs with ARENA_REPLAY_WINDOW=0 (before issue 16) and with the default window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from arena.backends import Timeouts, make_backend
from arena.backends.demo import DemoServer
from arena.config import Settings
from arena.errors import PromptRejected
from arena.registry import GenerationParams, ModelSpec, Registry
from arena.service import ArenaService, BattleSession
from arena.storage import Store
from benchmarks.loadgen import loadavg

MODELS = ("aurora-7b", "borealis-7b", "cirrus-7b", "dune-7b")
WANTED = MODELS[0]
NEAR_GREEDY = GenerationParams(temperature=0.01, top_p=0.01, top_k=85, repetition_penalty=1.1)
TOPICS = (
    "Explain how a heat pump works in winter.",
    "Opowiedz krótko o historii Krakowa.",
    "東京でおすすめの散歩道を教えてください。",
    "請介紹台灣的夜市文化。",
    "请解释一下光合作用的过程。",
    "Write a short poem about the sea.",
    "What should I pack for a week of hiking?",
    "Jak działa pompa ciepła?",
)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def fresh_postgres() -> Iterator[str]:
    import psycopg

    name = f"arena_bench_replays_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def service(servers: list[DemoServer], store: Store, window: float) -> ArenaService:
    specs = [
        ModelSpec(name=n, backend="tgi", url=s.url, template="chatml", params=NEAR_GREEDY)
        for n, s in zip(MODELS, servers, strict=True)
    ]
    settings = Settings.load(
        {},
        battles_per_minute=0,
        votes_per_hour=0,
        min_read_seconds=0.0,
        health_interval=0.0,
        stream_interval=0.01,
        client_salt="bench-replays",
        replay_window=window,
    )
    timeouts = Timeouts(connect=5.0, first_token=10.0, read=10.0, total=60.0)
    backends = {s.name: make_backend(s, timeouts, {}) for s in specs}
    return ArenaService(settings, Registry(specs), store, backends, rng=np.random.default_rng(0))


async def answer(svc: ArenaService, session: BattleSession, prompt: str) -> tuple[str, str] | None:
    final = None
    async for view in svc.send(session, prompt):
        final = view
    if final is None or not final.can_vote:
        return None
    return final.answers[0].text, final.answers[1].text


async def replay(svc: ArenaService, client: str, prompt: str) -> dict[str, str]:
    """Each model's answer to ``prompt``, asked side by side (models named); {} if refused."""
    seen: dict[str, str] = {}
    for pair in ((MODELS[0], MODELS[1]), (MODELS[2], MODELS[3])):
        session = svc.new_session(client, models=pair)
        try:
            texts = await answer(svc, session, prompt)
        except PromptRejected:
            return {}
        if texts:
            seen.update(zip(pair, texts, strict=True))
    return seen


def identify(texts: tuple[str, str], named: dict[str, str]) -> tuple[str | None, str | None]:
    guesses = []
    for text in texts:
        hits = [m for m, t in named.items() if t == text]
        guesses.append(hits[0] if len(hits) == 1 else None)
    return guesses[0], guesses[1]


@dataclass
class Row:
    scenario: str
    defence: str
    battles: int = 0
    identified: int = 0
    counted: int = 0
    informed: int = 0  # identified and still counted: the votes the attack really gets into the ratings
    refused: int = 0


async def attack(one: ArenaService, two: ArenaService, scenario: str, n: int, run: str) -> Row:
    row = Row(scenario, "")
    for i in range(n):
        prompt = f"{TOPICS[i % len(TOPICS)]} ({run} {scenario} {i})"
        client = f"10.{len(scenario)}.{i // 250}.{i % 250 + 1}"
        replay_client = client if scenario != "other address" else f"10.200.{i // 250}.{i % 250 + 1}"
        replayed = prompt.upper().replace("(", "").replace(")", "") + " please" if scenario == "near-equal" else prompt
        named: dict[str, str] = {}
        if scenario != "after opening":
            named = await replay(two, replay_client, replayed)
        session = one.new_session(client)
        texts = await answer(one, session, prompt)
        if texts is None:
            continue
        if scenario == "after opening":
            named = await replay(two, replay_client, replayed)
            row.refused += not named
        row.battles += 1
        guess = identify(texts, named)
        truth = session.models
        row.identified += guess == truth
        side = "model_a" if guess[0] == WANTED else "model_b" if guess[1] == WANTED else "tie"
        reveal = await one.vote(session, side)  # type: ignore[arg-type]
        counted = not ({"replayed", "identity_leak", "too_fast"} & set(reveal.flags))
        row.counted += counted
        row.informed += counted and guess == truth
    return row


async def honest(one: ArenaService, two: ArenaService, n: int, run: str) -> Row:
    row = Row("honest visitor", "")
    for i in range(n):
        client = f"10.250.{i // 250}.{i % 250 + 1}"
        other = await answer(
            two,
            two.new_session(client, models=(MODELS[1], MODELS[2])),
            f"Unrelated {run} {i}: {TOPICS[(i + 3) % len(TOPICS)]}",
        )
        assert other is not None
        prompt = f"{TOPICS[i % len(TOPICS)]} ({run} honest {i})"
        session = one.new_session(client)
        if await answer(one, session, prompt) is None:
            continue
        row.battles += 1
        reveal = await one.vote(session, "model_a")
        row.counted += not ({"replayed"} & set(reveal.flags))
        named = await replay(two, client, prompt)  # after the vote: allowed, harmless
        row.refused += not named
    return row


async def main_async(db: str, n: int) -> list[Row]:
    servers = [DemoServer(f"demo/{m}", token_rate=3000, first_token_delay=0.005).start() for m in MODELS]
    rows: list[Row] = []
    try:
        with Store(db) as s1, Store(db) as s2:
            s1.create_schema()
            for label, window in (("off (before)", 0.0), ("on (after)", Settings().replay_window)):
                one, two = service(servers, s1, window), service(servers, s2, window)
                run = f"w{int(window)}"
                for scenario in ("after opening", "before opening", "near-equal", "other address"):
                    row = await attack(one, two, scenario, n, run)
                    row.defence = label
                    rows.append(row)
                row = await honest(one, two, n, run)
                row.defence = label
                rows.append(row)
                for svc in (one, two):
                    for backend in svc.backends.values():
                        await backend.aclose()
    finally:
        for server in servers:
            server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=20, help="anonymous prompts per scenario (default 20)")
    parser.add_argument("--db", default="", help="database URL (default: a fresh PostgreSQL database)")
    args = parser.parse_args()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        db = args.db or stack.enter_context(fresh_postgres())
        rows = asyncio.run(main_async(db, args.prompts))
    print(
        f"\n{args.prompts} prompts per scenario, database {db.split('@')[-1]}, load average {loadavg()}, "
        f"{time.perf_counter() - started:.0f} s"
    )
    print(
        "| scenario | defence | battles | identified before the vote | votes counted "
        "| identified votes counted | side-by-side refused |"
    )
    print("|---|---|--:|--:|--:|--:|--:|")
    for r in rows:
        print(
            f"| {r.scenario} | {r.defence} | {r.battles} | {r.identified} | {r.counted} | {r.informed} | {r.refused} |"
        )


if __name__ == "__main__":
    main()
