"""Side-by-side replays of an anonymous prompt (issue 16, item 4): refused while the battle is open,
and the anonymous vote flagged ``replayed`` (left out of ratings) whichever replica saw the replay.

Real parts: demo model servers over HTTP, two ArenaService replicas sharing one real PostgreSQL
database (a third one stands for a replica restarted in between), and the SQLite store.
"""

from __future__ import annotations

import asyncio
import difflib
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from arena import replays
from arena.backends.demo import DemoServer
from arena.errors import PromptRejected
from arena.registry import ModelSpec
from arena.replays import fingerprint, is_replay, matches_any
from arena.service import ArenaService, BattleSession
from arena.storage import Store
from arena.ui.panel import reveal_markdown
from tests.support.services import close, make_service, play, tgi_spec

MODELS = ("alpha-7b", "beta-7b", "gamma-7b")
LONG_AGO, FAR_FUTURE = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("Tell me about rivers!", "tell me about  Rivers", True),
        ("Explain how a heat pump works in winter.", "Explain how a heat pump works in winter, please.", True),
        ("Wyjaśnij, jak działa pompa ciepła zimą.", "Wyjaśnij jak działa pompa ciepła zimą", True),
        ("東京の天気はどうですか？", "東京の天気はどうですか", True),
        ("hi there", "hi where", False),  # short prompts must be equal
        ("Explain how a heat pump works in winter.", "Write a haiku about a heat pump in winter.", False),
        ("", "", False),
    ],
)
def test_replay_matching(first: str, second: str, same: bool) -> None:
    assert is_replay(fingerprint(first), fingerprint(second)) is same
    assert matches_any([first], [fingerprint(second)]) is same


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _prose(rng: random.Random, n: int) -> str:
    """``n`` made-up words of 2-9 letters: text as varied as a real prompt's."""
    return " ".join("".join(rng.choice(_LETTERS) for _ in range(rng.randint(2, 9))) for _ in range(n))


def test_long_near_replays_are_found_and_long_prompts_that_differ_are_not() -> None:
    rng = random.Random(3)
    prompt = _prose(rng, 400)  # ~2,000 letters: compared by their shingles
    middle = len(prompt) // 2
    for near in ("please " + prompt, prompt[:middle] + " indeed, " + prompt[middle:], prompt[:-30] + " thank you"):
        assert matches_any([near], [fingerprint(prompt)]), near[:40]
    preamble = "Answer as a careful historian would, citing the sources you rely on. " * 4
    assert not matches_any([preamble + _prose(rng, 300)], [fingerprint(preamble + _prose(rng, 300))])
    assert not matches_any([_prose(rng, 400)], [fingerprint(prompt)])


def test_the_work_of_one_match_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A vote compares its battle's prompts with up to 500 stored ones: difflib on 2,000-character
    fingerprints took 0.13-0.33 s per pair, ~24 minutes of CPU for one vote of a crafted visitor."""
    budget = replays.MAX_NEAR_CHECKS * replays.CLOSE_CHARS**2
    work = [0]

    class Counting(difflib.SequenceMatcher):  # type: ignore[type-arg]
        def ratio(self) -> float:
            work[0] += len(self.a) * len(self.b)
            assert work[0] <= budget, "difflib work past the bound"
            return super().ratio()

    monkeypatch.setattr(replays, "SequenceMatcher", Counting)
    rng = random.Random(5)

    def mutated(base: str, share: float) -> str:
        letters = list(base)
        for _ in range(int(len(letters) * share)):
            letters[rng.randrange(len(letters))] = rng.choice("abcdefghij")
        return "".join(letters)

    # Long prompts alike in letters and lengths, never the same prompt: decided without difflib.
    long_base = "".join(rng.choice("abcdefghij") for _ in range(2000))
    stored = [fingerprint(mutated(long_base, 0.3)) for _ in range(500)]
    assert not matches_any([mutated(long_base, 0.3) for _ in range(8)], stored)
    assert work[0] == 0
    # Short ones sharing their shingles in another order each need difflib: past the bound the
    # visitor's own vote is taken for a replay rather than paid for.
    base = "".join(rng.choice("abcdefghij") for _ in range(400))
    blocks = [base[i : i + 20] for i in range(0, 400, 20)]
    shuffled = [fingerprint("".join(rng.sample(blocks, len(blocks)))) for _ in range(100)]
    assert not matches_any([base], shuffled[: replays.MAX_NEAR_CHECKS])
    assert 0 < work[0] <= budget
    spent = work[0]
    assert matches_any([base], shuffled)
    assert work[0] == spent


def _specs(servers: list[DemoServer]) -> list[ModelSpec]:
    return [tgi_spec(name, server.url) for name, server in zip(MODELS, servers, strict=True)]


async def _anonymous(service: ArenaService, client: str, prompt: str) -> BattleSession:
    session = service.new_session(client)
    views = await play(service, session, prompt)
    assert views[-1].can_vote
    return session


async def _named(service: ArenaService, client: str, prompt: str, pair: tuple[str, str]) -> BattleSession:
    session = service.new_session(client, models=pair)
    await play(service, session, prompt)
    return session


def test_replays_across_replicas_are_refused_or_flagged(pg_database: Callable[[], str]) -> None:
    db = pg_database()
    servers = [DemoServer(f"demo/{name}", token_rate=400, first_token_delay=0.01).start() for name in MODELS]

    async def main() -> None:
        with Store(db) as s1, Store(db) as s2, Store(db) as s3:
            one, two = make_service(_specs(servers), s1), make_service(_specs(servers), s2)
            try:
                # 1. After opening: the anonymous battle (replica one) is not voted; the same visitor
                # replays its prompt side by side on replica two and is refused before any model is asked.
                prompt = "Explain how a heat pump works in winter."
                anon = await _anonymous(one, "10.1.0.1", prompt)
                asked_before = sum(len(s.requests) for s in servers)
                with pytest.raises(PromptRejected) as refused:
                    await _named(two, "10.1.0.1", prompt + " Please.", ("alpha-7b", "beta-7b"))
                assert "Vote there first" in str(refused.value.message)
                assert sum(len(s.requests) for s in servers) == asked_before
                # Another visitor (another address) sending the same prompt is not refused.
                other = await _named(two, "10.1.0.2", prompt, ("alpha-7b", "beta-7b"))
                assert other.status == "ready"
                reveal = await one.vote(anon, "model_a")
                assert "replayed" not in reveal.flags  # nothing was replayed: the vote counts
                # Once voted, the visitor may compare the models side by side.
                assert (await _named(two, "10.1.0.1", prompt, ("alpha-7b", "beta-7b"))).status == "ready"
                # A battle left unvoted by a new round can no longer be voted: it holds nothing back.
                left = await _anonymous(one, "10.1.0.1", "Name three birds of prey.")
                one.abandon(left)
                assert (
                    await _named(one, "10.1.0.1", "Name three birds of prey.", ("alpha-7b", "beta-7b"))
                ).status == "ready"

                # 2. Before opening: side by side first (on replica two, and abandoned after the first
                # update), then the same prompt anonymously on replica one: the vote is flagged.
                prompt = "Write three sentences about the history of Kraków."
                named = two.new_session("10.1.0.1", models=("beta-7b", "gamma-7b"))
                stream = two.send(named, prompt)
                await anext(stream)  # the answers began to show: the visitor has seen enough
                await stream.aclose()
                anon = await _anonymous(one, "10.1.0.1", prompt.upper())
                flagged = await one.vote(anon, "model_b")
                assert "replayed" in flagged.flags
                assert "side-by-side" in reveal_markdown("en", flagged)  # what the page says

                # 3. A replica started after the replay (a restart) sees it too: it is in the database.
                three = make_service(_specs(servers), s3)
                try:
                    prompt = "Opowiedz krótko o Wiśle."
                    await _named(two, "10.1.0.3", prompt, ("alpha-7b", "gamma-7b"))
                    anon = await _anonymous(three, "10.1.0.3", prompt)
                    assert "replayed" in (await three.vote(anon, "tie")).flags
                finally:
                    await close(three)

                # Flagged votes are kept but left out of the ratings.
                assert s1.vote_total(exclude_flags=()) == 3
                assert sum(c.count for c in s1.pair_counts()) == 1
            finally:
                await close(one)
                await close(two)

    try:
        asyncio.run(main())
    finally:
        for server in servers:
            server.stop()


def test_the_window_can_be_turned_off_and_old_prompts_expire(tmp_path: Path) -> None:
    """ARENA_REPLAY_WINDOW=0 is the arena before issue 16: the replay is neither refused nor flagged."""
    servers = [DemoServer(f"demo/{name}", token_rate=400, first_token_delay=0.01).start() for name in MODELS]

    async def main() -> None:
        with Store(f"sqlite:///{tmp_path / 'r.sqlite3'}") as store:
            off = make_service(_specs(servers), store, settings={"replay_window": 0})
            try:
                prompt = "What is the tallest mountain in Japan?"
                anon = await _anonymous(off, "10.2.0.1", prompt)
                assert (await _named(off, "10.2.0.1", prompt, ("alpha-7b", "beta-7b"))).status == "ready"
                assert "replayed" not in (await off.vote(anon, "model_a")).flags
            finally:
                await close(off)
            on = make_service(_specs(servers), store, settings={"replay_window": 60})
            try:
                prompt = "Name three rivers in Poland."
                await _named(on, "10.2.0.2", prompt, ("alpha-7b", "beta-7b"))
                assert store.named_prompts_since("x" * 32, LONG_AGO) == []  # fingerprints are per visitor
                assert store.purge_named_prompts(FAR_FUTURE) >= 1  # past the window: purged
                anon = await _anonymous(on, "10.2.0.2", prompt)
                assert "replayed" not in (await on.vote(anon, "model_a")).flags
            finally:
                await close(on)

    try:
        asyncio.run(main())
    finally:
        for server in servers:
            server.stop()
