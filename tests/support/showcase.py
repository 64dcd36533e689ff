"""A believable arena for screenshots and leaderboard tests: the demo's four fictional models, votes in five languages.

``seed_showcase(url)`` stores ~1,500 anonymous, voted battles (fixed seed): many in English and
Traditional Chinese, fewer in Japanese and Simplified Chinese, and a small Polish slice whose
intervals are wide and where one pair has hardly met, so every leaderboard explanation shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

from arena.domain import BattleRecord, VoteRecord
from arena.storage import Store
from arena.storage.store import BattleExport

MODELS = ("aurora-7b", "borealis-7b", "cirrus-7b", "dune-7b")
STRENGTH = {"aurora-7b": 0.6, "borealis-7b": 0.35, "cirrus-7b": 0.0, "dune-7b": -0.7}  # Bradley-Terry log-odds
# Votes per language; Polish is young (wide intervals), and in Polish dune-7b met only aurora-7b.
VOTES = {"en": 700, "zh-Hant": 420, "ja": 220, "zh-Hans": 120, "pl": 130}
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def _battles(seed: int) -> Iterator[BattleExport]:
    rng = np.random.default_rng(seed)
    i = 0
    for language, n in VOTES.items():
        pairs = [(a, b) for k, a in enumerate(MODELS) for b in MODELS[k + 1 :]]
        if language == "pl":
            pairs = [p for p in pairs if "dune-7b" not in p or "aurora-7b" in p]
        for _ in range(n):
            a, b = pairs[rng.integers(len(pairs))]
            if rng.random() < 0.5:
                a, b = b, a
            p_a = 1 / (1 + np.exp(STRENGTH[b] - STRENGTH[a]))
            r = rng.random()
            winner = (
                "tie" if r < 0.12 else "tie (bothbad)" if r < 0.16 else "model_a" if rng.random() < p_a else "model_b"
            )
            when = T0 + timedelta(minutes=7 * i)
            bid = f"show-{i:06d}"
            yield {
                "battle": BattleRecord(bid, a, b, "anonymous", "chat", when, f"voter-{rng.integers(300)}", language),
                "propensity": None,
                "vote": VoteRecord(bid, winner, when + timedelta(seconds=40)),  # type: ignore[arg-type]
                "messages": [],
            }
            i += 1


def seed_showcase(url: str, *, seed: int = 20) -> str:
    """Create the schema at ``url`` and store the showcase battles. Returns ``url``."""
    with Store(url) as store:
        store.upgrade()
        store.import_battles(_battles(seed), batch_size=2000)
    return url
