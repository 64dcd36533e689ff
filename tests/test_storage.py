"""Store on a real SQLite file and the real PostgreSQL server: round trips, votes, counts, locks."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from arena.domain import BattleRecord, MessageRecord, PairCount, VoteRecord, Winner
from arena.errors import ConfigError, StorageError, VoteRejected
from arena.storage import Store

T0 = datetime(2026, 11, 20, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    s.create_schema()
    yield s
    s.dispose()


def battle(
    model_a: str = "alpha",
    model_b: str = "beta",
    *,
    at: datetime = T0,
    mode: str = "anonymous",
    pool: str = "chat",
    language: str | None = None,
) -> BattleRecord:
    return BattleRecord(
        id=str(uuid.uuid4()),
        model_a=model_a,
        model_b=model_b,
        mode=mode,  # type: ignore[arg-type]
        pool=pool,  # type: ignore[arg-type]
        created_at=at,
        client_hash="c" * 64,
        language=language,
    )


def turn_messages(battle_id: str, turn: int, prompt: str, a: str, b: str) -> list[MessageRecord]:
    return [
        MessageRecord(battle_id, "a", turn, "user", prompt),
        MessageRecord(battle_id, "a", turn, "assistant", a, "eos", 12, 150, 900),
        MessageRecord(battle_id, "b", turn, "user", prompt),
        MessageRecord(battle_id, "b", turn, "assistant", b, "length", 64, 80, 2100),
    ]


def vote(battle_id: str, winner: Winner = "model_a", flags: tuple[str, ...] = ()) -> VoteRecord:
    return VoteRecord(battle_id=battle_id, winner=winner, created_at=T0 + timedelta(seconds=30), flags=flags)


def count_rows(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


# -- round trips ----------------------------------------------------------------------------------


def test_battle_messages_and_vote_round_trip(store: Store) -> None:
    b = battle()
    store.create_battle(b)
    msgs = [*turn_messages(b.id, 0, "Hi", "Hello!", "Hey."), *turn_messages(b.id, 1, "More?", "Sure.", "")]
    msgs[-1] = MessageRecord(b.id, "b", 1, "assistant", "", error="This model could not answer.")
    store.add_messages(msgs)
    store.record_vote(vote(b.id, "tie (bothbad)", ("too_fast",)))

    assert store.get_battle(b.id) == b
    # Ordered by turn, then side, then insertion.
    assert store.messages(b.id) == sorted(msgs, key=lambda m: (m.turn, m.side))
    assert store.get_vote(b.id) == vote(b.id, "tie (bothbad)", ("too_fast",))
    assert store.model_names() == ["alpha", "beta"]
    assert store.battle_count() == 1
    assert store.get_battle("nope") is None
    assert store.get_vote("nope") is None
    assert store.messages("nope") == []


UNICODE = [
    "你好，世界！请用中文回答。",
    "こんにちは、世界。カタカナとひらがなと漢字。",
    "Zażółć gęślą jaźń — ĄĆĘŁŃÓŚŹŻ",
    "emoji 👩🏽‍💻🚀🇵🇱 and a ZWJ family 👨‍👩‍👧‍👦",
    "שלום עולם ‏(RTL)‏ مرحبا بالعالم",
    "combining: e\u0301 vs é; astral: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢; tabs\tand\nnewlines\r\n",
]


def test_unicode_round_trips_exactly(store: Store) -> None:
    b = battle("模型-α", "モデル-żółw 🐢")
    store.create_battle(b)
    msgs = [MessageRecord(b.id, "ab"[i % 2], i // 2, "user", text, error=text) for i, text in enumerate(UNICODE)]  # type: ignore[arg-type]
    store.add_messages(msgs)
    assert store.get_battle(b.id) == b
    got = store.messages(b.id)
    assert sorted(m.content for m in got) == sorted(UNICODE)
    assert all(m.content == m.error for m in got)
    assert store.model_names() == sorted(["模型-α", "モデル-żółw 🐢"])


def test_nul_characters_are_replaced_on_every_backend(store: Store) -> None:
    # PostgreSQL text cannot hold NUL; a visitor typing one must not make saving fail.
    b = battle()
    store.create_battle(b)
    store.add_messages([MessageRecord(b.id, "a", 0, "user", "a\x00b")])
    assert store.messages(b.id)[0].content == "a\ufffdb"


def test_timestamps_are_timezone_aware_utc(store: Store) -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    b = battle(at=datetime(2026, 3, 1, 17, 30, 0, 5, tzinfo=ist))
    store.create_battle(b)
    store.record_vote(VoteRecord(b.id, "model_b", datetime(2026, 3, 1, 9, 0, 1, tzinfo=timezone(timedelta(hours=-3)))))
    got = store.get_battle(b.id)
    assert got is not None
    assert got.created_at == datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=UTC)
    assert got.created_at.tzinfo is UTC
    v = store.get_vote(b.id)
    assert v is not None
    assert v.created_at == datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC)
    assert v.created_at.tzinfo is UTC
    (exported,) = store.iter_battles()
    assert exported["battle"].created_at.tzinfo is UTC
    assert exported["vote"] is not None and exported["vote"].created_at.tzinfo is UTC


def test_naive_timestamps_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.create_battle(battle(at=datetime(2026, 1, 1)))
    b = battle()
    store.create_battle(b)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.record_vote(VoteRecord(b.id, "tie", datetime(2026, 1, 1)))
    assert store.get_vote(b.id) is None


# -- votes ----------------------------------------------------------------------------------------


def test_second_vote_on_a_battle_is_rejected(store: Store) -> None:
    b = battle()
    store.create_battle(b)
    store.record_vote(vote(b.id, "model_a"))
    with pytest.raises(VoteRejected) as info:
        store.record_vote(vote(b.id, "model_b"))
    assert "already" in str(info.value.message)
    assert store.get_vote(b.id) == vote(b.id, "model_a")
    assert count_rows(store, "votes") == 1


def test_vote_on_a_missing_battle_is_rejected(store: Store) -> None:
    with pytest.raises(VoteRejected) as info:
        store.record_vote(vote(str(uuid.uuid4())))
    assert "not found" in str(info.value.message)
    assert count_rows(store, "votes") == 0


def test_unknown_winner_and_bad_flags_are_refused(store: Store) -> None:
    b = battle()
    store.create_battle(b)
    with pytest.raises(VoteRejected):
        store.record_vote(vote(b.id, "model_c"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flag"):
        store.record_vote(vote(b.id, flags=("a,b",)))
    assert count_rows(store, "votes") == 0


def test_concurrent_votes_give_exactly_one_row(store: Store) -> None:
    b = battle()
    store.create_battle(b)
    winners: list[Winner] = ["model_a", "model_b", "tie", "tie (bothbad)"] * 2
    barrier = threading.Barrier(len(winners))
    outcomes: list[str] = []
    lock = threading.Lock()

    def cast_vote(winner: Winner) -> None:
        barrier.wait()
        try:
            store.record_vote(vote(b.id, winner))
            result = f"ok:{winner}"
        except VoteRejected:
            result = "rejected"
        except Exception as e:  # reported through the assertion below
            result = f"{type(e).__name__}: {e}"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=cast_vote, args=(w,)) for w in winners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    ok = [o for o in outcomes if o.startswith("ok:")]
    assert len(ok) == 1, outcomes
    assert outcomes.count("rejected") == len(winners) - 1, outcomes
    assert count_rows(store, "votes") == 1
    stored = store.get_vote(b.id)
    assert stored is not None and ok[0] == f"ok:{stored.winner}"


# -- counting -------------------------------------------------------------------------------------


def _battle_with_vote(store: Store, a: str, b: str, winner: Winner, flags: tuple[str, ...] = (), **kw: object) -> None:
    rec = battle(a, b, **kw)  # type: ignore[arg-type]
    store.create_battle(rec)
    store.record_vote(vote(rec.id, winner, flags))


def test_pair_counts_aggregates_ties_bothbad_and_flags(store: Store) -> None:
    winner: Winner
    for winner in ("model_a", "model_a", "model_b", "tie", "tie (bothbad)", "tie (bothbad)", "tie (bothbad)"):
        _battle_with_vote(store, "alpha", "beta", winner)
    _battle_with_vote(store, "beta", "alpha", "model_a")  # the other orientation stays its own row
    _battle_with_vote(store, "alpha", "gamma", "tie", language="pl")
    # Excluded by default: flagged votes (alone or among other flags).
    _battle_with_vote(store, "alpha", "beta", "model_b", ("identity_leak",))
    _battle_with_vote(store, "alpha", "beta", "model_b", ("slow", "too_fast"))
    # Counted: a flag that merely contains an excluded name, and an unrelated flag.
    _battle_with_vote(store, "alpha", "beta", "model_b", ("not_too_fast_really",))
    _battle_with_vote(store, "alpha", "beta", "model_b", ("identityXleak",))
    # Other modes and pools, and a battle without a vote.
    _battle_with_vote(store, "alpha", "beta", "model_a", mode="named")
    _battle_with_vote(store, "alpha", "beta", "model_a", pool="base")
    store.create_battle(battle("alpha", "beta"))

    expected = [
        PairCount("alpha", "beta", "model_a", 2),
        PairCount("alpha", "beta", "model_b", 3),
        PairCount("alpha", "beta", "tie", 1),
        PairCount("alpha", "beta", "tie (bothbad)", 3),
        PairCount("alpha", "gamma", "tie", 1),
        PairCount("beta", "alpha", "model_a", 1),
    ]
    assert store.pair_counts(pool="chat") == expected
    assert store.vote_total(pool="chat") == sum(p.count for p in expected) == 11

    with_all_flags = store.pair_counts(pool="chat", exclude_flags=())
    assert PairCount("alpha", "beta", "model_b", 5) in with_all_flags
    assert store.vote_total(pool="chat", exclude_flags=()) == 13

    assert store.pair_counts(language="pl") == [PairCount("alpha", "gamma", "tie", 1)]
    assert store.pair_counts(mode="named") == [PairCount("alpha", "beta", "model_a", 1)]
    assert store.pair_counts(pool="base") == [PairCount("alpha", "beta", "model_a", 1)]
    assert store.vote_total(mode=None, exclude_flags=()) == 15
    assert store.battle_count() == 16


def test_weighted_pair_counts_sum_inverse_propensity_weights(store: Store) -> None:
    import dataclasses

    def drawn(winner: Winner, propensity: float | None, uniform: float | None) -> None:
        rec = dataclasses.replace(battle("alpha", "beta"), propensity=propensity, uniform_propensity=uniform)
        store.create_battle(rec)
        store.record_vote(vote(rec.id, winner))

    drawn("model_a", 0.5, 0.25)  # drawn twice as often as uniform: weight 0.5
    drawn("model_a", 0.125, 0.25)  # half as often: weight 2
    drawn("model_b", None, None)  # stored without propensities (uniform, named, older rows): weight 1
    drawn("model_b", 0.25, None)
    weighted = store.pair_counts(weighted=True)
    assert [(c.winner, c.count) for c in weighted] == [("model_a", 2), ("model_b", 2)]
    assert [c.weight for c in weighted] == [pytest.approx(2.5), pytest.approx(2.0)]
    assert [c.weight for c in store.pair_counts()] == [None, None]
    # The audit's GROUP BY (per voter too) sums the same weights; unweighted, its rows stay five long.
    by_voter = store.voter_counts(weighted=True)
    assert [(r[2], r[4]) for r in by_voter] == [("model_a", 2), ("model_b", 2)]
    assert [r[5] for r in by_voter] == [pytest.approx(2.5), pytest.approx(2.0)]
    assert [len(r) for r in store.voter_counts()] == [5, 5]
    stored = {item["battle"].propensity: item["battle"].uniform_propensity for item in store.iter_battles()}
    assert stored[0.5] == 0.25 and stored[0.125] == 0.25


def test_pair_counts_on_an_empty_database(store: Store) -> None:
    assert store.pair_counts() == []
    assert store.vote_total() == 0
    assert store.battle_count() == 0


# -- regenerate -----------------------------------------------------------------------------------


def test_replace_turn_swaps_one_turn_atomically(store: Store) -> None:
    b = battle()
    store.create_battle(b)
    turn0 = turn_messages(b.id, 0, "first", "a0", "b0")
    store.add_messages([*turn0, *turn_messages(b.id, 1, "second", "a1", "b1")])

    new1 = turn_messages(b.id, 1, "second", "a1 again", "b1 again")
    store.replace_turn(b.id, 1, new1)
    assert store.messages(b.id) == sorted([*turn0, *new1], key=lambda m: (m.turn, m.side))

    # A row the database refuses (side 'c') rolls back the delete too: the old turn survives.
    broken = [*turn_messages(b.id, 1, "second", "x", "y"), MessageRecord(b.id, "c", 1, "assistant", "z")]  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        store.replace_turn(b.id, 1, broken)
    assert store.messages(b.id) == sorted([*turn0, *new1], key=lambda m: (m.turn, m.side))

    with pytest.raises(ValueError, match="turn"):
        store.replace_turn(b.id, 1, turn_messages(b.id, 2, "p", "a", "b"))
    assert count_rows(store, "messages") == 8


def test_add_messages_is_all_or_nothing(store: Store) -> None:
    b = battle()
    store.create_battle(b)
    rows = [*turn_messages(b.id, 0, "p", "a", "b"), MessageRecord("no-such-battle", "a", 0, "user", "p")]
    with pytest.raises(StorageError):
        store.add_messages(rows)
    assert store.messages(b.id) == []


# -- exports --------------------------------------------------------------------------------------


def test_iter_battles_streams_in_time_order_with_votes_and_messages(store: Store) -> None:
    battles = [battle(at=T0 + timedelta(minutes=m)) for m in (3, 1, 4, 0, 2)]
    for b in battles:
        store.create_battle(b)
        store.add_messages(turn_messages(b.id, 0, f"prompt {b.id}", "a", "b"))
    for b in battles[:4]:
        store.record_vote(vote(b.id, "tie"))
    by_time = sorted(battles, key=lambda b: b.created_at)

    rows = list(store.iter_battles(with_messages=True, batch_size=2))
    assert [r["battle"] for r in rows] == [b for b in by_time if b is not battles[4]]
    assert all(r["vote"] == vote(r["battle"].id, "tie") for r in rows)
    assert all(r["messages"] == store.messages(r["battle"].id) and len(r["messages"]) == 4 for r in rows)

    everything = list(store.iter_battles(voted_only=False, batch_size=2))
    assert [r["battle"] for r in everything] == by_time
    assert [r["vote"] is None for r in everything] == [b is battles[4] for b in by_time]
    assert all(r["messages"] == [] for r in everything)

    # Stopping early closes the cursor and returns the connection (no ResourceWarning).
    stream = store.iter_battles(batch_size=2)
    assert next(stream)["battle"] == by_time[0]
    stream.close()
    assert list(store.iter_battles(mode="named")) == []


# -- failures -------------------------------------------------------------------------------------


class Locker:
    """Another connection holding the write lock on the database, as a second process would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.held: sqlite3.Connection | psycopg.Connection | None = None

    def lock(self) -> None:
        if self.url.startswith("sqlite"):
            self.held = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self.held.execute("BEGIN EXCLUSIVE")
        else:
            self.held = psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://"))
            self.held.execute("LOCK TABLE battles, messages, votes IN ACCESS EXCLUSIVE MODE")

    def release(self) -> None:
        if self.held is not None:
            self.held.rollback()
            self.held.close()
            self.held = None


@pytest.fixture
def locker(db_url: str) -> Iterator[Locker]:
    locker = Locker(db_url)
    yield locker
    locker.release()


def test_locked_database_raises_storage_error_then_recovers(db_url: str, locker: Locker) -> None:
    lock, release = locker.lock, locker.release
    store = Store(db_url, busy_timeout=0.2)
    try:
        store.create_schema()
        b = battle()
        store.create_battle(b)
        lock()
        with pytest.raises(StorageError) as info:
            store.add_messages(turn_messages(b.id, 0, "p", "a", "b"))
        assert "could not be saved" in str(info.value.message)
        with pytest.raises(StorageError):
            store.record_vote(vote(b.id))
        with pytest.raises(StorageError):
            store.create_battle(battle())
        release()
        assert store.messages(b.id) == []
        assert store.get_vote(b.id) is None
        assert store.battle_count() == 1

        store.add_messages(turn_messages(b.id, 0, "p", "a", "b"))
        store.record_vote(vote(b.id))
        assert len(store.messages(b.id)) == 4
        assert store.get_vote(b.id) == vote(b.id)
    finally:
        store.dispose()


def test_unreachable_postgresql_raises_storage_error() -> None:
    store = Store("postgresql+psycopg://postgres@127.0.0.1:1/arena", connect_timeout=1)
    with store, pytest.raises(StorageError) as info:
        store.record_vote(vote(str(uuid.uuid4())))
    assert "127.0.0.1" not in str(info.value.message)


def test_unopenable_sqlite_file_raises_storage_error(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'arena.sqlite3'}") as store, pytest.raises(StorageError):
        store.battle_count()


def test_postgresql_connections_recover_after_a_server_side_drop(pg_url: str) -> None:
    with Store(pg_url) as store:
        store.create_schema()
        assert store.battle_count() == 0
        name = sa.make_url(pg_url).database
        with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        store.create_battle(battle())  # the pooled connection is dead; pre-ping replaces it
        assert store.battle_count() == 1


@pytest.fixture
def pg_url(pg_server_url: str) -> str:
    engine = sa.create_engine(pg_server_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return pg_server_url


# -- construction ---------------------------------------------------------------------------------


def test_constructing_a_store_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "later" / "arena.sqlite3"
    Store(f"sqlite:///{path}").dispose()
    assert not path.parent.exists()
    with Store(f"sqlite:///{path}") as store:
        store.create_schema()
    assert path.exists()


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("not a url", "not a database URL"),
        ("sqlite://", "In-memory"),
        ("sqlite:///:memory:", "In-memory"),
        ("postgres://u@h/db", "postgresql\\+psycopg"),
        ("mysql://u@h/db", "Unsupported"),
    ],
)
def test_bad_urls_raise_config_error(url: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        Store(url)


def test_create_schema_twice_is_harmless(store: Store) -> None:
    b = battle()
    store.create_battle(b)
    store.create_schema()
    assert store.get_battle(b.id) == b
