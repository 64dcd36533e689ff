"""Store hand-made boards: battles given as (model_a, model_b, winner[, voter[, answer_a, answer_b]])."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from arena.domain import BattleRecord, MessageRecord, VoteRecord
from arena.storage import Store
from arena.storage.store import BattleExport

T0 = datetime(2026, 2, 1, tzinfo=UTC)
Battle = Sequence[str]


def items(
    battles: Iterable[Battle],
    *,
    pool: str = "chat",
    prefix: str = "b",
    propensities: Sequence[float] | None = None,
    uniform: float | None = None,
) -> Iterable[BattleExport]:
    """The battles as :meth:`Store.import_battles` takes them; with ``propensities`` (one per battle)
    and ``uniform`` (what uniform pairing would have given each pair), drawn as by active pairing."""
    for i, row in enumerate(battles):
        a, b, winner = row[0], row[1], row[2]
        voter = row[3] if len(row) > 3 else f"voter-{i % 50}"
        bid = f"{prefix}-{i:07d}"
        when = T0 + timedelta(seconds=i)
        messages = []
        if len(row) > 5:
            for side, answer in (("a", row[4]), ("b", row[5])):
                messages.append(MessageRecord(bid, side, 1, "user", "Tell me about Kraków."))  # type: ignore[arg-type]
                messages.append(MessageRecord(bid, side, 1, "assistant", answer))  # type: ignore[arg-type]
        yield {
            "battle": BattleRecord(
                bid,
                a,
                b,
                "anonymous",
                pool,  # type: ignore[arg-type]
                when,
                voter,
                propensity=None if propensities is None else propensities[i],
                uniform_propensity=None if propensities is None else uniform,
            ),
            "propensity": None,
            "vote": VoteRecord(bid, winner, when + timedelta(milliseconds=500)),  # type: ignore[arg-type]
            "messages": messages,
        }


def store_board(
    url: str,
    battles: Iterable[Battle],
    *,
    pool: str = "chat",
    prefix: str = "b",
    propensities: Sequence[float] | None = None,
    uniform: float | None = None,
) -> str:
    """Create the schema at ``url`` and store ``battles`` (voted, anonymous; drawn with
    ``propensities`` when given, see :func:`items`). Returns ``url``."""
    with Store(url) as store:
        store.create_schema()
        batch = items(battles, pool=pool, prefix=prefix, propensities=propensities, uniform=uniform)
        store.import_battles(batch, batch_size=5000)
    return url
