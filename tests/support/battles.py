"""Fill a Store with a reproducible set of voted battles (several languages, pools, modes and flags)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from arena.domain import WINNERS, BattleRecord, MessageRecord, VoteRecord
from arena.storage import Store

MODELS = ("alpha", "beta", "gamma", "=delta")  # one name a spreadsheet would read as a formula
STRENGTH = {"alpha": 1.0, "beta": 0.3, "gamma": 0.0, "=delta": -0.5}
LANGUAGES = ("pl", "en", "zh-Hant", "ja", None)
PROMPTS = {
    "pl": "Zażółć gęślą jaźń — opowiedz o Krakowie.",
    "en": "-1 is a number, =SUM(A1) is a formula, @handle and +x too",
    "zh-Hant": "請告訴我們台灣的歷史 🙂",
    "ja": "東京の天気はどうですか？",
    None: "שלום, مرحبا 👋\r\ncarriage return",
}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fill(store: Store, n: int = 240, *, seed: int = 1, conversations: bool = True) -> None:
    """``n`` battles: 1 in 10 named, 1 in 3 in the base pool, 1 in 40 flagged too_fast, some unvoted."""
    store.create_schema()
    rng = np.random.default_rng(seed)
    for i in range(n):
        a, b = (str(x) for x in rng.choice(MODELS, 2, replace=False))
        lang = LANGUAGES[i % len(LANGUAGES)]
        bid = f"battle-{i:05d}"
        store.create_battle(
            BattleRecord(
                id=bid,
                model_a=a,
                model_b=b,
                mode="named" if i % 10 == 3 else "anonymous",
                pool="base" if i % 3 == 0 else "chat",
                created_at=T0 + timedelta(seconds=i),
                client_hash=f"judge-{i % 7}",
                language=lang,
                propensity=round(float(rng.random()), 6),
            )
        )
        if conversations:
            rows = []
            for side, answer in (("a", f"Answer of {a} ✓"), ("b", f"-Answer of {b}")):
                rows.append(MessageRecord(bid, side, 1, "user", PROMPTS[lang]))
                rows.append(MessageRecord(bid, side, 1, "assistant", answer))
            store.add_messages(rows)
        if i % 17 == 5:
            continue  # started, never voted
        p = 1.0 / (1.0 + np.exp(STRENGTH[b] - STRENGTH[a]))
        u = rng.random()
        winner = WINNERS[0] if u < 0.8 * p else WINNERS[1] if u < 0.8 else WINNERS[2] if u < 0.9 else WINNERS[3]
        flags = ("too_fast",) if i % 40 == 7 else ()
        store.record_vote(VoteRecord(bid, winner, T0 + timedelta(seconds=i, milliseconds=250), flags=flags))
