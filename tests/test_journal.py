"""The journal: one JSON line per stored battle and vote, read back as the records that were stored."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from arena.backends.demo import DemoServer
from arena.domain import BattleRecord, MessageRecord, VoteRecord
from arena.journal import Journal, SyncError, message_json, read_journal
from arena.storage import Store
from tests.support import services
from tests.support.services import close, make_service, tgi_spec

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def battle_event(b: BattleRecord) -> dict[str, object]:
    """The dict ArenaService hands its journal hook for a new battle."""
    return {
        "event": "battle",
        "battle_id": b.id,
        "model_a": b.model_a,
        "model_b": b.model_b,
        "mode": b.mode,
        "pool": b.pool,
        "judge": b.client_hash,
        "language": b.language,
        "propensity": b.propensity,
        "tstamp": b.created_at.isoformat(),
    }


def vote_event(v: VoteRecord) -> dict[str, object]:
    """The dict ArenaService hands its journal hook for a vote."""
    return {
        "event": "vote",
        "battle_id": v.battle_id,
        "winner": v.winner,
        "reason": v.reason,
        "flags": list(v.flags),
        "tstamp": v.created_at.isoformat(),
    }


def play(store: Store, journal: Journal | None, i: int, *, vote: bool = True) -> None:
    """One battle the way the service stores it: battle, messages, vote, each journaled after its commit."""
    b = BattleRecord(f"b{i:05d}", "alpha", "beta", "anonymous", "chat", T0 + timedelta(seconds=i), "judge", "pl", 0.5)
    store.create_battle(b)
    if journal is not None:
        journal(battle_event(b))
    store.add_messages(
        [
            MessageRecord(b.id, side, 1, role, f"{role} {side} {i} — zażółć")  # type: ignore[arg-type]
            for side in ("a", "b")
            for role in ("user", "assistant")
        ]
    )
    if vote:
        v = VoteRecord(b.id, "model_a" if i % 2 else "tie", T0 + timedelta(seconds=i, milliseconds=500), reason="ok")
        store.record_vote(v)
        if journal is not None:
            journal(vote_event(v))


def test_lines_round_trip_to_the_stored_records(db_url: str, tmp_path: Path) -> None:
    with Store(db_url) as store:
        store.upgrade()
        journal = Journal(tmp_path / "j.jsonl", store)
        for i in range(5):
            play(store, journal, i, vote=i != 3)
        journal.close()
        lines = (tmp_path / "j.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["event"] for line in lines] == ["battle", "vote"] * 3 + ["battle"] + ["battle", "vote"]
        batches = list(read_journal(tmp_path / "j.jsonl"))
        assert len(batches) == 1
        batch = batches[0]
        assert batch.battles == [store.get_battle(f"b{i:05d}") for i in range(5)]
        assert batch.votes == [store.get_vote(f"b{i:05d}") for i in (0, 1, 2, 4)]
        # A vote line carries the battle's conversation, exactly as stored.
        assert batch.messages["b00001"] == store.messages("b00001")
        assert "b00003" not in batch.messages


def test_skip_batches_and_an_unfinished_last_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    for i in range(7):
        journal(battle_event(BattleRecord(f"b{i}", "a", "b", "anonymous", "chat", T0, "j")))
    journal.close()
    reopened = Journal(path)
    assert reopened.lines == 7  # reopening appends after what is there
    reopened.close()
    with path.open("a", encoding="utf-8") as f:
        f.write('{"event": "vote", "battle_id": "b1", "win')  # a copy taken mid-write
    batches = list(read_journal(path, skip=2, batch_size=3))
    assert [[b.id for b in batch.battles] for batch in batches] == [["b2"], ["b3", "b4", "b5"], ["b6"]]


def test_a_broken_line_names_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"event": "battle"}\n', encoding="utf-8")
    with pytest.raises(SyncError, match=r"j\.jsonl:1: not a journal event"):
        list(read_journal(path))


def test_a_vote_line_carries_the_conversation_as_stored_without_reading_it_back(
    server: DemoServer, tmp_path: Path
) -> None:
    """The service hands the journal the messages it stored (regenerated turn included): no read-back."""
    store = Store(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    service = make_service([tgi_spec("left", server.url), tgi_spec("right", server.url)], store)
    journal = Journal(tmp_path / "journal.jsonl", store=None)  # no database to read from
    service.journal = journal

    async def scenario() -> str:
        session = service.new_session("client-1")
        await services.play(service, session, "First question\x00 with a NUL")
        await services.play(service, session, "Second question")
        [view async for view in service.regenerate(session)]
        await service.vote(session, "model_b")
        await close(service)
        assert session.battle_id is not None
        return session.battle_id

    battle_id = asyncio.run(scenario())
    journal.close()
    lines = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text(encoding="utf-8").splitlines()]
    vote = next(line for line in lines if line["event"] == "vote")
    stored = store.messages(battle_id)
    assert [m["turn"] for m in vote["messages"]] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert vote["messages"] == [message_json(m) for m in stored]
    assert "\x00" not in json.dumps(vote["messages"], ensure_ascii=False)
