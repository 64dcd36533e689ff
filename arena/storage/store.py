"""Store: every read and write of battles, messages and votes, over one SQLAlchemy engine."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypedDict, cast, overload

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite

from arena.domain import WINNERS, BattleRecord, MessageRecord, PairCount, VoteRecord, Winner
from arena.errors import ConfigError, StorageError, VoteRejected
from arena.messages import Message
from arena.storage.tables import BattleRow, MessageRow, ModelRow, NamedPromptRow, SyncMarkRow, VoteRow

log = logging.getLogger(__name__)

DB_DIR = Path(__file__).resolve().parents[2] / "db"
"""The fixed folder holding the migrations and the default SQLite files."""

DEFAULT_BUSY_TIMEOUT = 5.0
"""Seconds a write waits for another writer's lock (SQLite busy_timeout, PostgreSQL lock_timeout)."""

DEFAULT_CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a PostgreSQL connection before giving up."""

DEFAULT_EXCLUDED_FLAGS: tuple[str, ...] = ("identity_leak", "too_fast", "replayed")
"""Votes with these flags do not count in ratings by default."""

_BATTLES = cast(sa.Table, BattleRow.__table__)
_MESSAGES = cast(sa.Table, MessageRow.__table__)
_VOTES = cast(sa.Table, VoteRow.__table__)
_NAMED_PROMPTS = cast(sa.Table, NamedPromptRow.__table__)


class BattleExport(TypedDict):
    """One battle as :meth:`Store.iter_battles` yields it."""

    battle: BattleRecord
    propensity: float | None
    vote: VoteRecord | None
    messages: list[MessageRecord]  # empty unless with_messages=True


@dataclass(frozen=True)
class VoteGroup:
    """Counted votes of one (mode, pool, language) combination, as :meth:`Store.vote_groups` returns them."""

    mode: str
    pool: str
    language: str | None
    votes: int
    last_vote_id: int  # the newest vote's id: changes whenever a vote is added, even if one was deleted
    categories: tuple[str, ...] = ()  # the battles' categories (imported data)


@dataclass(frozen=True)
class ImportResult:
    """What :meth:`Store.import_battles` did."""

    inserted: int  # battles written (with their vote and messages)
    skipped: int  # battles whose id was already stored, or repeated in the input


def default_url(*, demo: bool = False) -> str:
    """The SQLite URL used when no database is configured: db/arena.sqlite3 (db/demo.sqlite3 in demo mode)."""
    return f"sqlite:///{DB_DIR / ('demo.sqlite3' if demo else 'arena.sqlite3')}"


def sqlite_file(url: str) -> Path | None:
    """The database file a SQLite URL names; None for any other database."""
    parsed = sa.make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def masked_url(url: str) -> str:
    """``url`` with any password masked: safe for logs, and the same string for the same database."""
    return sa.make_url(url).render_as_string(hide_password=True)


def make_engine(
    url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
) -> sa.Engine:
    """An engine configured for the arena; connects lazily (nothing touches the database here).

    Raises
    ------
    ConfigError
        When ``url`` is not a SQLite file URL or a ``postgresql+psycopg://`` URL.
    """
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError:
        raise ConfigError(
            f"{url!r} is not a database URL. Use e.g. sqlite:///db/arena.sqlite3 or postgresql+psycopg://user@host/db."
        ) from None
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError(
                "In-memory SQLite is not supported (each connection would see its own empty database); "
                "give a file, e.g. sqlite:///db/arena.sqlite3."
            )
        engine = sa.create_engine(parsed, connect_args={"timeout": busy_timeout})
        _configure_sqlite(engine, busy_timeout)
        return engine
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        return sa.create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            # Checks each pooled connection before use, so the app recovers by itself after a restart.
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": max(1, math.ceil(connect_timeout)),
                "options": f"-c lock_timeout={max(1, round(busy_timeout * 1000))}",
            },
        )
    raise ConfigError(
        f"Unsupported database URL scheme {parsed.drivername!r}: use sqlite:///path/to/file.sqlite3 "
        "or postgresql+psycopg://user@host/db (postgres:// is not accepted)."
    )


def _configure_sqlite(engine: sa.Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Leave BEGIN to SQLAlchemy (see _on_begin) instead of the sqlite3 module's own guesses.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={max(0, round(busy_timeout * 1000))}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that read first cannot wait
        # for the lock in WAL mode and fails at once with "database is locked".
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("arena_write") else "BEGIN")


def _ensure_sqlite_dir(engine: sa.Engine) -> None:
    if engine.dialect.name == "sqlite" and engine.url.database:
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime (e.g. datetime.now(UTC)), got {value!r}")


def _clean_text(text: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; replace it on every backend so both store the same thing.
    return None if text is None else text.replace("\x00", "\ufffd")


def as_stored(m: MessageRecord) -> MessageRecord:
    """``m`` exactly as :meth:`Store.messages` will return it once stored (text made NUL-free)."""
    return dataclasses.replace(m, content=m.content.replace("\x00", "\ufffd"), error=_clean_text(m.error))


def _join_flags(flags: Iterable[str]) -> str:
    flags = tuple(dict.fromkeys(flags))
    for flag in flags:
        if not flag or "," in flag or flag != flag.strip():
            raise ValueError(f"vote flag {flag!r} must be a non-empty name without commas or surrounding spaces")
    return ",".join(flags)


def _split_flags(text: str | None) -> tuple[str, ...]:
    return tuple(f for f in (text or "").split(",") if f)


def _message_values(m: MessageRecord) -> dict[str, Any]:
    return {
        "battle_id": m.battle_id,
        "side": m.side,
        "turn": m.turn,
        "role": m.role,
        "content": _clean_text(m.content),
        "finish_reason": m.finish_reason,
        "generated_tokens": m.generated_tokens,
        "ttft_ms": m.ttft_ms,
        "total_ms": m.total_ms,
        "error": _clean_text(m.error),
    }


def _battle_values(b: BattleRecord) -> dict[str, Any]:
    return {
        "id": b.id,
        "model_a": b.model_a,
        "model_b": b.model_b,
        "mode": b.mode,
        "pool": b.pool,
        "created_at": b.created_at,
        "client_hash": b.client_hash,
        "language": b.language,
        "propensity": b.propensity,
        "uniform_propensity": b.uniform_propensity,
        "categories": _join_flags(b.categories),
        "turns": b.turns,
    }


def _vote_values(v: VoteRecord) -> dict[str, Any]:
    return {
        "battle_id": v.battle_id,
        "winner": v.winner,
        "created_at": v.created_at,
        "flags": _join_flags(v.flags),
        "reason": _clean_text(v.reason),
    }


def _ipw_weight_sum() -> sa.Label[Any]:
    """``SUM`` of the battles' inverse-propensity weights, ``uniform_propensity / propensity`` (1 for
    a battle stored without them: drawn uniformly, named, or from before propensities were kept)."""
    ratio = _BATTLES.c.uniform_propensity / sa.func.nullif(_BATTLES.c.propensity, 0.0)
    return sa.func.sum(sa.func.coalesce(ratio, 1.0)).label("w")


def _battle_record(r: sa.RowMapping) -> BattleRecord:
    return BattleRecord(
        id=r["id"],
        model_a=r["model_a"],
        model_b=r["model_b"],
        mode=r["mode"],
        pool=r["pool"],
        created_at=r["created_at"],
        client_hash=r["client_hash"],
        language=r["language"],
        propensity=r["propensity"],
        uniform_propensity=r["uniform_propensity"],
        categories=_split_flags(r["categories"]),
        turns=r["turns"],
    )


def _message_record(r: sa.RowMapping) -> MessageRecord:
    return MessageRecord(
        battle_id=r["battle_id"],
        side=r["side"],
        turn=r["turn"],
        role=r["role"],
        content=r["content"],
        finish_reason=r["finish_reason"],
        generated_tokens=r["generated_tokens"],
        ttft_ms=r["ttft_ms"],
        total_ms=r["total_ms"],
        error=r["error"],
    )


def _describe(e: exc.SQLAlchemyError) -> str:
    # The driver's message, without the SQL statement and its parameters (which hold visitors' text).
    orig = getattr(e, "orig", None)
    return f"{type(orig).__name__}: {orig}".strip() if orig is not None else f"{type(e).__name__}: {e}"


class Store:
    """The arena's database: a SQLite file or a PostgreSQL database, behind plain domain records.

    Methods are synchronous (callers run them in a worker thread) and safe to call from many
    threads at once. Every write is one transaction: it is committed before the method returns,
    or nothing of it is written and :class:`~arena.errors.StorageError` is raised.

    Parameters
    ----------
    url
        ``sqlite:///path/to/file.sqlite3`` or ``postgresql+psycopg://user@host/db``.
    busy_timeout
        Seconds a write waits for another writer's lock before giving up with ``StorageError``.
    connect_timeout
        Seconds to wait for a PostgreSQL connection.

    Raises
    ------
    ConfigError
        When ``url`` is not a supported database URL.
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self._engine = make_engine(url, busy_timeout=busy_timeout, connect_timeout=connect_timeout)

    @property
    def engine(self) -> sa.Engine:
        """The underlying engine (for migrations and tests; application code uses the methods)."""
        return self._engine

    @property
    def url(self) -> str:
        """The database URL with any password masked, safe for logs."""
        return self._engine.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.dispose()

    def dispose(self) -> None:
        """Close every pooled connection. The store reconnects if it is used again."""
        self._engine.dispose()

    # -- plumbing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except exc.SQLAlchemyError as e:
            raise StorageError(f"Database error while {what} ({self.url}): {_describe(e)}") from e

    @contextlib.contextmanager
    def _write(self, what: str = "write") -> Iterator[sa.Connection]:
        # At DEBUG, one line per committed write with its duration (connection, lock wait, commit):
        # what benchmarks/bench_votes.py reads. Costs one clock read when DEBUG is off.
        started = time.perf_counter() if log.isEnabledFor(logging.DEBUG) else None
        with self._engine.connect() as conn:
            conn.execution_options(arena_write=True)
            with conn.begin():
                yield conn
        if started is not None:
            log.debug("committed %s in %.3f ms", what, (time.perf_counter() - started) * 1000)

    def _insert_models(self, conn: sa.Connection, names: Iterable[str]) -> None:
        rows = [{"name": n} for n in dict.fromkeys(names)]
        dialect = conn.dialect.name
        if dialect == "postgresql":
            stmt: sa.Executable = postgresql.insert(ModelRow).on_conflict_do_nothing(index_elements=["name"])
        elif dialect == "sqlite":
            stmt = sqlite.insert(ModelRow).on_conflict_do_nothing(index_elements=["name"])
        else:  # pragma: no cover - make_engine only builds the two engines above
            raise AssertionError(dialect)
        conn.execute(stmt, rows)

    # -- schema -----------------------------------------------------------------------------------

    def create_schema(self) -> None:
        """Create the tables directly (quick start); the result equals running every migration.

        The database is stamped with the newest migration, so ``db upgrade`` works on it later.
        A database that migrations already manage is upgraded instead.
        """
        from arena.storage import migrations

        _ensure_sqlite_dir(self._engine)
        with self._guard("creating the tables"):
            migrations.create_schema(self._engine)

    def upgrade(self, revision: str = "head") -> None:
        """Apply the migrations in db/ up to ``revision``."""
        from arena.storage import migrations

        _ensure_sqlite_dir(self._engine)
        with self._guard("migrating the database"):
            migrations.upgrade(self._engine, revision)

    def current_revision(self) -> str | None:
        """The migration the database is at, or None for a database migrations never touched."""
        from arena.storage import migrations

        database = self._engine.url.database
        if self._engine.dialect.name == "sqlite" and database and not Path(database).exists():
            return None  # reading would create the file
        with self._guard("reading the schema revision"):
            return migrations.current(self._engine)

    # -- writes -----------------------------------------------------------------------------------

    def create_battle(self, b: BattleRecord) -> None:
        """Store a new battle (and its two model names, if new)."""
        _require_aware(b.created_at, "BattleRecord.created_at")
        with self._guard("saving a battle"), self._write("battle") as conn:
            self._insert_models(conn, (b.model_a, b.model_b))
            conn.execute(
                sa.insert(BattleRow),
                {
                    "id": b.id,
                    "model_a": b.model_a,
                    "model_b": b.model_b,
                    "mode": b.mode,
                    "pool": b.pool,
                    "created_at": b.created_at,
                    "client_hash": b.client_hash,
                    "language": b.language,
                    "propensity": b.propensity,
                    "uniform_propensity": b.uniform_propensity,
                },
            )

    def add_messages(self, rows: Sequence[MessageRecord]) -> None:
        """Store messages, all or none."""
        if not rows:
            return
        with self._guard("saving messages"), self._write("messages") as conn:
            conn.execute(sa.insert(MessageRow), [_message_values(m) for m in rows])

    def replace_turn(self, battle_id: str, turn: int, rows: Sequence[MessageRecord]) -> None:
        """Replace every message of one turn of a battle (regenerate), atomically."""
        for m in rows:
            if m.battle_id != battle_id or m.turn != turn:
                raise ValueError(f"replace_turn({battle_id!r}, {turn}) got a message of {m.battle_id!r} turn {m.turn}")
        with self._guard("replacing a turn"), self._write() as conn:
            conn.execute(sa.delete(MessageRow).where(MessageRow.battle_id == battle_id, MessageRow.turn == turn))
            if rows:
                conn.execute(sa.insert(MessageRow), [_message_values(m) for m in rows])

    def record_vote(self, v: VoteRecord) -> None:
        """Store the one vote of a battle; committed when this returns.

        Raises
        ------
        VoteRejected
            The battle does not exist, already has a vote, or ``winner`` is not a known outcome.
        StorageError
            The database is unavailable or locked; nothing was written.
        """
        _require_aware(v.created_at, "VoteRecord.created_at")
        if v.winner not in WINNERS:
            raise VoteRejected(f"unknown winner {v.winner!r}; expected one of {WINNERS}")
        flags = _join_flags(v.flags)
        with self._guard("saving a vote"):
            try:
                with self._write("vote") as conn:
                    conn.execute(sa.insert(VoteRow), {**_vote_values(v), "flags": flags})
            except exc.IntegrityError as e:
                raise self._vote_rejected(v.battle_id) from e

    def import_battles(
        self,
        items: Iterable[BattleExport],
        *,
        batch_size: int = 500,
        progress: Callable[[int, int], None] | None = None,
    ) -> ImportResult:
        """Store battles with their vote and messages, skipping ids that are already stored.

        Idempotent: importing the same battles again adds nothing. Each batch of ``batch_size``
        battles is one transaction, so ``items`` is consumed as a stream; ``progress(inserted,
        skipped)`` is called after each batch. An interrupted import leaves whole batches behind
        and can simply be run again.

        Raises
        ------
        ValueError
            A timestamp is naive, or a vote or message belongs to another battle.
        StorageError
            The database is unavailable; the current batch was not written.
        """
        inserted = skipped = 0
        iterator = iter(items)
        while batch := list(islice(iterator, batch_size)):
            for item in batch:
                b, v = item["battle"], item["vote"]
                _require_aware(b.created_at, "BattleRecord.created_at")
                if v is not None:
                    _require_aware(v.created_at, "VoteRecord.created_at")
                    if v.battle_id != b.id or v.winner not in WINNERS:
                        raise ValueError(
                            f"battle {b.id!r}: its vote names battle {v.battle_id!r} or winner {v.winner!r}"
                        )
                if any(m.battle_id != b.id for m in item["messages"]):
                    raise ValueError(f"battle {b.id!r}: a message belongs to another battle")
            with self._guard("importing battles"), self._write() as conn:
                ids = list(dict.fromkeys(item["battle"].id for item in batch))
                seen = set(conn.execute(sa.select(_BATTLES.c.id).where(_BATTLES.c.id.in_(ids))).scalars())
                new: list[BattleExport] = []
                for item in batch:
                    if item["battle"].id not in seen:
                        seen.add(item["battle"].id)
                        new.append(item)
                if new:
                    self._insert_models(
                        conn, (n for item in new for n in (item["battle"].model_a, item["battle"].model_b))
                    )
                    conn.execute(sa.insert(BattleRow), [_battle_values(item["battle"]) for item in new])
                    votes = [_vote_values(item["vote"]) for item in new if item["vote"] is not None]
                    if votes:
                        conn.execute(sa.insert(VoteRow), votes)
                    messages = [_message_values(m) for item in new for m in item["messages"]]
                    if messages:
                        conn.execute(sa.insert(MessageRow), messages)
            inserted += len(new)
            skipped += len(batch) - len(new)
            if progress is not None:
                progress(inserted, skipped)
        return ImportResult(inserted=inserted, skipped=skipped)

    def _vote_rejected(self, battle_id: str) -> VoteRejected:
        if self.get_battle(battle_id) is None:
            return VoteRejected(f"no battle {battle_id!r}", message=Message("msg.round_not_found"))
        return VoteRejected(
            f"battle {battle_id!r} already has a vote",
            message=Message("msg.round_has_vote"),
        )

    # -- side-by-side replays (arena/replays.py) ---------------------------------------------------

    def add_named_prompt(self, client_hash: str, fingerprint: str, created_at: datetime) -> None:
        """Keep the fingerprint of a side-by-side turn's prompt; committed when this returns."""
        _require_aware(created_at, "created_at")
        with self._guard("saving a side-by-side prompt"), self._write("named prompt") as conn:
            conn.execute(
                sa.insert(_NAMED_PROMPTS),
                {"client_hash": client_hash, "fingerprint": fingerprint, "created_at": created_at},
            )

    def named_prompts_since(self, client_hash: str, since: datetime, *, limit: int = 500) -> list[str]:
        """Fingerprints of ``client_hash``'s side-by-side prompts at or after ``since``, newest first."""
        _require_aware(since, "since")
        stmt = (
            sa.select(_NAMED_PROMPTS.c.fingerprint)
            .where(_NAMED_PROMPTS.c.client_hash == client_hash, _NAMED_PROMPTS.c.created_at >= since)
            .order_by(_NAMED_PROMPTS.c.created_at.desc())
            .limit(limit)
        )
        with self._guard("reading side-by-side prompts"), self._engine.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def unvoted_anonymous_prompts(
        self, client_hash: str, since: datetime, *, limit: int = 500
    ) -> list[tuple[str, str]]:
        """(battle id, prompt) of ``client_hash``'s anonymous battles started at or after ``since`` with no vote yet."""
        _require_aware(since, "since")
        stmt = (
            sa.select(_MESSAGES.c.battle_id, _MESSAGES.c.content)
            .select_from(
                _MESSAGES.join(_BATTLES, _MESSAGES.c.battle_id == _BATTLES.c.id).outerjoin(
                    _VOTES, _VOTES.c.battle_id == _BATTLES.c.id
                )
            )
            .where(
                _BATTLES.c.client_hash == client_hash,
                _BATTLES.c.created_at >= since,
                _BATTLES.c.mode == "anonymous",
                _VOTES.c.id.is_(None),
                _MESSAGES.c.role == "user",
                _MESSAGES.c.side == "a",
            )
            .order_by(_BATTLES.c.created_at.desc())
            .limit(limit)
        )
        with self._guard("reading open anonymous battles"), self._engine.connect() as conn:
            return [(r.battle_id, r.content) for r in conn.execute(stmt)]

    def purge_named_prompts(self, before: datetime) -> int:
        """Delete side-by-side fingerprints older than ``before``; returns how many."""
        _require_aware(before, "before")
        with self._guard("purging side-by-side prompts"), self._write("purge named prompts") as conn:
            return int(conn.execute(sa.delete(_NAMED_PROMPTS).where(_NAMED_PROMPTS.c.created_at < before)).rowcount)

    # -- reads ------------------------------------------------------------------------------------

    def get_battle(self, battle_id: str) -> BattleRecord | None:
        with self._guard("reading a battle"), self._engine.connect() as conn:
            row = conn.execute(sa.select(_BATTLES).where(_BATTLES.c.id == battle_id)).mappings().first()
        return None if row is None else _battle_record(row)

    def get_vote(self, battle_id: str) -> VoteRecord | None:
        with self._guard("reading a vote"), self._engine.connect() as conn:
            row = conn.execute(sa.select(_VOTES).where(_VOTES.c.battle_id == battle_id)).mappings().first()
        if row is None:
            return None
        return VoteRecord(
            battle_id=row["battle_id"],
            winner=row["winner"],
            created_at=row["created_at"],
            flags=_split_flags(row["flags"]),
            reason=row["reason"],
        )

    def messages(self, battle_id: str) -> list[MessageRecord]:
        """A battle's messages ordered by turn, then side, then insertion."""
        stmt = (
            sa.select(_MESSAGES)
            .where(_MESSAGES.c.battle_id == battle_id)
            .order_by(_MESSAGES.c.turn, _MESSAGES.c.side, _MESSAGES.c.id)
        )
        with self._guard("reading messages"), self._engine.connect() as conn:
            return [_message_record(r) for r in conn.execute(stmt).mappings()]

    def model_names(self) -> list[str]:
        """Every model name that ever battled, sorted."""
        with self._guard("reading model names"), self._engine.connect() as conn:
            return sorted(conn.execute(sa.select(ModelRow.name)).scalars())

    def battle_count(self) -> int:
        """How many battles were started, voted or not."""
        with self._guard("counting battles"), self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(_BATTLES)).scalar_one())

    def battles_since(self, client_hash: str, since: datetime) -> int:
        """How many battles ``client_hash`` started at or after ``since`` (rate limits; uses the client index)."""
        _require_aware(since, "since")
        stmt = (
            sa.select(sa.func.count())
            .select_from(_BATTLES)
            .where(_BATTLES.c.client_hash == client_hash, _BATTLES.c.created_at >= since)
        )
        with self._guard("counting recent battles"), self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def votes_since(self, client_hash: str, since: datetime) -> int:
        """How many votes were cast at or after ``since`` on battles of ``client_hash`` (rate limits)."""
        _require_aware(since, "since")
        stmt = (
            sa.select(sa.func.count())
            .select_from(_VOTES.join(_BATTLES, _VOTES.c.battle_id == _BATTLES.c.id))
            .where(_BATTLES.c.client_hash == client_hash, _VOTES.c.created_at >= since)
        )
        with self._guard("counting recent votes"), self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    @staticmethod
    def _filters(
        mode: str | None,
        pool: str | None,
        language: str | None,
        exclude_flags: Iterable[str],
        category: str | None = None,
    ) -> list[sa.ColumnElement[bool]]:
        conds: list[sa.ColumnElement[bool]] = []
        if category is not None:
            padded_cat = sa.literal(",") + sa.func.coalesce(_BATTLES.c.categories, "") + sa.literal(",")
            conds.append(padded_cat.contains(f",{category},", autoescape=True))
        if mode is not None:
            conds.append(_BATTLES.c.mode == mode)
        if pool is not None:
            conds.append(_BATTLES.c.pool == pool)
        if language is not None:
            conds.append(_BATTLES.c.language == language)
        padded = sa.literal(",") + sa.func.coalesce(_VOTES.c.flags, "") + sa.literal(",")
        for flag in exclude_flags:
            conds.append(sa.not_(padded.contains(f",{flag},", autoescape=True)))
        return conds

    def pair_counts(
        self,
        *,
        mode: str | None = "anonymous",
        pool: str | None = None,
        language: str | None = None,
        category: str | None = None,
        exclude_flags: Iterable[str] = DEFAULT_EXCLUDED_FLAGS,
        weighted: bool = False,
    ) -> list[PairCount]:
        """Voted battles counted per (model_a, model_b, winner), in one GROUP BY query.

        ``None`` for ``mode``, ``pool`` or ``language`` means "any". Votes carrying any of
        ``exclude_flags`` are left out. Rows are sorted by model_a, model_b, winner. With
        ``weighted``, each row also carries the sum of its battles' inverse-propensity weights
        (``uniform_propensity / propensity``; 1 for a battle stored without them: drawn uniformly,
        named, or from before propensities were kept).
        """
        columns: list[Any] = [_BATTLES.c.model_a, _BATTLES.c.model_b, _VOTES.c.winner, sa.func.count().label("n")]
        if weighted:
            columns.append(_ipw_weight_sum())
        stmt = (
            sa.select(*columns)
            .select_from(_BATTLES.join(_VOTES, _VOTES.c.battle_id == _BATTLES.c.id))
            .where(*self._filters(mode, pool, language, exclude_flags, category))
            .group_by(_BATTLES.c.model_a, _BATTLES.c.model_b, _VOTES.c.winner)
        )
        with self._guard("counting votes"), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        # Sorted here, not in SQL: PostgreSQL's collation and SQLite's byte order disagree.
        return sorted(
            (
                PairCount(
                    model_a=r[0],
                    model_b=r[1],
                    winner=cast(Winner, r[2]),
                    count=int(r[3]),
                    weight=float(r[4]) if weighted else None,
                )
                for r in rows
            ),
            key=lambda p: (p.model_a, p.model_b, WINNERS.index(p.winner)),
        )

    @overload
    def voter_counts(
        self,
        *,
        mode: str | None = ...,
        pool: str | None = ...,
        language: str | None = ...,
        category: str | None = ...,
        exclude_flags: Iterable[str] = ...,
        weighted: Literal[False] = ...,
    ) -> list[tuple[str, str, str, str, int]]: ...

    @overload
    def voter_counts(
        self,
        *,
        mode: str | None = ...,
        pool: str | None = ...,
        language: str | None = ...,
        category: str | None = ...,
        exclude_flags: Iterable[str] = ...,
        weighted: Literal[True],
    ) -> list[tuple[str, str, str, str, int, float]]: ...

    def voter_counts(
        self,
        *,
        mode: str | None = "anonymous",
        pool: str | None = None,
        language: str | None = None,
        category: str | None = None,
        exclude_flags: Iterable[str] = DEFAULT_EXCLUDED_FLAGS,
        weighted: bool = False,
    ) -> list[tuple[str, str, str, str, int]] | list[tuple[str, str, str, str, int, float]]:
        """Voted battles counted per (model_a, model_b, winner, voter), in one GROUP BY query.

        What the audit (:mod:`arena.audit`) needs beyond :meth:`pair_counts`: who was shown first
        (``model_a``) and who voted (the battle's ``client_hash``). Same filters as
        :meth:`pair_counts`; rows sorted by all four keys. With ``weighted``, each row ends with the
        sum of its battles' inverse-propensity weights, as :meth:`pair_counts` sums them.
        """
        columns: list[Any] = [
            _BATTLES.c.model_a,
            _BATTLES.c.model_b,
            _VOTES.c.winner,
            _BATTLES.c.client_hash,
            sa.func.count(),
        ]
        if weighted:
            columns.append(_ipw_weight_sum())
        stmt = (
            sa.select(*columns)
            .select_from(_BATTLES.join(_VOTES, _VOTES.c.battle_id == _BATTLES.c.id))
            .where(*self._filters(mode, pool, language, exclude_flags, category))
            .group_by(_BATTLES.c.model_a, _BATTLES.c.model_b, _VOTES.c.winner, _BATTLES.c.client_hash)
        )
        with self._guard("counting votes"), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if weighted:
            return sorted((str(a), str(b), str(w), str(v), int(n), float(x)) for a, b, w, v, n, x in rows)
        return sorted((str(a), str(b), str(w), str(v), int(n)) for a, b, w, v, n in rows)

    def vote_total(
        self,
        *,
        mode: str | None = "anonymous",
        pool: str | None = None,
        language: str | None = None,
        category: str | None = None,
        exclude_flags: Iterable[str] = DEFAULT_EXCLUDED_FLAGS,
    ) -> int:
        """How many votes :meth:`pair_counts` counts with the same arguments."""
        stmt = (
            sa.select(sa.func.count())
            .select_from(_BATTLES.join(_VOTES, _VOTES.c.battle_id == _BATTLES.c.id))
            .where(*self._filters(mode, pool, language, exclude_flags, category))
        )
        with self._guard("counting votes"), self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def vote_groups(self, *, exclude_flags: Iterable[str] = DEFAULT_EXCLUDED_FLAGS) -> list[VoteGroup]:
        """Counted votes per (mode, pool, language, categories), in one GROUP BY query (no messages read).

        Tells which leaderboard slices have votes, and whether anything changed since a fit.
        """
        stmt = (
            sa.select(
                _BATTLES.c.mode,
                _BATTLES.c.pool,
                _BATTLES.c.language,
                _BATTLES.c.categories,
                sa.func.count(),
                sa.func.max(_VOTES.c.id),
            )
            .select_from(_BATTLES.join(_VOTES, _VOTES.c.battle_id == _BATTLES.c.id))
            .where(*self._filters(None, None, None, exclude_flags))
            .group_by(_BATTLES.c.mode, _BATTLES.c.pool, _BATTLES.c.language, _BATTLES.c.categories)
        )
        with self._guard("counting votes"), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        groups = [VoteGroup(m, p, lang, int(n), int(last), _split_flags(cats)) for m, p, lang, cats, n, last in rows]
        return sorted(groups, key=lambda g: (g.mode, g.pool, g.language or ""))

    def iter_battles(
        self,
        *,
        mode: str | None = None,
        pool: str | None = None,
        language: str | None = None,
        category: str | None = None,
        exclude_flags: Iterable[str] = (),
        voted_only: bool = True,
        with_messages: bool = False,
        batch_size: int = 500,
    ) -> Generator[BattleExport, None, None]:
        """Battles with their vote (and messages), oldest first, streamed ``batch_size`` at a time.

        Keeps one connection open until the iterator is exhausted or closed.
        """
        join = (_BATTLES.join if voted_only else _BATTLES.outerjoin)(_VOTES, _VOTES.c.battle_id == _BATTLES.c.id)
        stmt = (
            sa.select(
                _BATTLES,
                _VOTES.c.id.label("vote_id"),
                _VOTES.c.winner,
                _VOTES.c.created_at.label("voted_at"),
                _VOTES.c.flags,
                _VOTES.c.reason,
            )
            .select_from(join)
            .where(*self._filters(mode, pool, language, exclude_flags, category))
            .order_by(_BATTLES.c.created_at, _BATTLES.c.id)
            .execution_options(yield_per=batch_size)
        )
        with self._guard("exporting battles"), self._engine.connect() as conn:
            result = conn.execute(stmt)
            try:
                yield from self._export_rows(conn, result, with_messages)
            finally:
                # Closes PostgreSQL's server-side cursor now, even when the caller stops early.
                result.close()

    @staticmethod
    def _export_rows(conn: sa.Connection, result: sa.CursorResult[Any], with_messages: bool) -> Iterator[BattleExport]:
        for partition in result.mappings().partitions():
            messages: dict[str, list[MessageRecord]] = {}
            if with_messages:
                msg_stmt = (
                    sa.select(_MESSAGES)
                    .where(_MESSAGES.c.battle_id.in_([r["id"] for r in partition]))
                    .order_by(_MESSAGES.c.battle_id, _MESSAGES.c.turn, _MESSAGES.c.side, _MESSAGES.c.id)
                )
                for m in conn.execute(msg_stmt).mappings():
                    messages.setdefault(m["battle_id"], []).append(_message_record(m))
            for r in partition:
                vote = None
                if r["vote_id"] is not None:
                    vote = VoteRecord(
                        battle_id=r["id"],
                        winner=r["winner"],
                        created_at=r["voted_at"],
                        flags=_split_flags(r["flags"]),
                        reason=r["reason"],
                    )
                yield {
                    "battle": _battle_record(r),
                    "propensity": r["propensity"],
                    "vote": vote,
                    "messages": messages.get(r["id"], []),
                }

    # -- deployment: consistent snapshots, idempotent restore, migrations under a lock ----------------

    def snapshot(self, dest: str | Path) -> None:
        """Write a consistent copy of a SQLite database to ``dest`` (replaced if it exists).

        Uses SQLite's online backup API in one step, which reads the whole database inside one read
        transaction: concurrent writers keep writing, and the copy holds every transaction committed
        before the backup began and nothing of any later one. (Copying the file instead loses the
        rows still in the ``-wal`` file.) The copy is written next to ``dest`` and renamed into place,
        so a reader never sees half a file.

        Raises
        ------
        ConfigError
            The database is PostgreSQL (back it up with ``pg_dump``).
        StorageError
            The database cannot be read or ``dest`` cannot be written.
        """
        import sqlite3

        if self._engine.dialect.name != "sqlite":
            raise ConfigError(
                "Snapshots are for SQLite databases; back PostgreSQL up with pg_dump (the journal still syncs)."
            )
        dest = Path(dest)
        partial = dest.with_name(dest.name + ".partial")
        partial.unlink(missing_ok=True)
        with self._guard("taking a snapshot"):
            raw = self._engine.raw_connection()
            try:
                target = sqlite3.connect(partial)
                try:
                    driver = raw.driver_connection
                    assert isinstance(driver, sqlite3.Connection)  # the dialect is SQLite (checked above)
                    driver.backup(target)
                finally:
                    target.close()
            except sqlite3.Error as e:
                partial.unlink(missing_ok=True)
                raise StorageError(f"Could not write a snapshot of {self.url} to {dest}: {e}") from e
            finally:
                raw.close()
        partial.replace(dest)

    def sync_marks(self) -> dict[str, int]:
        """What the database holds of the sync folder: ``{name: lines}`` (see :class:`SyncMarkRow`)."""
        with self._guard("reading the sync marks"), self._engine.connect() as conn:
            return {r.name: int(r.lines) for r in conn.execute(sa.select(SyncMarkRow.name, SyncMarkRow.lines))}

    def set_sync_marks(self, marks: Mapping[str, int]) -> None:
        """Record sync marks; a mark never goes down (replicas may record the same file at once)."""
        if not marks:
            return
        rows = [{"name": name, "lines": int(lines)} for name, lines in marks.items()]
        with self._guard("writing the sync marks"), self._write("sync marks") as conn:
            dialect = conn.dialect.name
            if dialect == "postgresql":
                pg = postgresql.insert(SyncMarkRow)
                stmt: sa.Executable = pg.on_conflict_do_update(
                    index_elements=["name"], set_={"lines": sa.func.greatest(SyncMarkRow.lines, pg.excluded.lines)}
                )
            elif dialect == "sqlite":
                lite = sqlite.insert(SyncMarkRow)
                stmt = lite.on_conflict_do_update(
                    index_elements=["name"], set_={"lines": sa.func.max(SyncMarkRow.lines, lite.excluded.lines)}
                )
            else:  # pragma: no cover - make_engine only builds the two engines above
                raise AssertionError(dialect)
            conn.execute(stmt, rows)

    def merge_battles(
        self,
        battles: Iterable[BattleRecord],
        votes: Iterable[VoteRecord] = (),
        messages: Mapping[str, Sequence[MessageRecord]] | None = None,
    ) -> MergeResult:
        """Add what is missing, in one transaction; running it again adds nothing (restores use it).

        A battle is added when its id is not stored; a vote when its battle is stored (or added
        here) and has no vote yet; a battle's messages when that battle has no messages yet.
        Unlike :meth:`import_battles`, a vote for a battle stored earlier without one is added.

        Raises
        ------
        ValueError
            A timestamp is naive, or a message is filed under another battle's id.
        StorageError
            The database is unavailable; nothing was written.
        """
        battles = list({b.id: b for b in battles}.values())
        votes = list({v.battle_id: v for v in votes}.values())
        messages = dict(messages or {})
        for b in battles:
            _require_aware(b.created_at, "BattleRecord.created_at")
        for v in votes:
            _require_aware(v.created_at, "VoteRecord.created_at")
        for battle_id, rows in messages.items():
            if any(m.battle_id != battle_id for m in rows):
                raise ValueError(f"battle {battle_id!r}: a message belongs to another battle")
        ids = list(dict.fromkeys([b.id for b in battles] + [v.battle_id for v in votes] + list(messages)))
        result = MergeResult()
        with self._guard("merging battles"), self._write() as conn:
            stored: set[str] = set()
            voted: set[str] = set()
            with_messages: set[str] = set()
            for chunk in _chunks(ids, 500):
                stored.update(conn.execute(sa.select(_BATTLES.c.id).where(_BATTLES.c.id.in_(chunk))).scalars())
                voted.update(conn.execute(sa.select(_VOTES.c.battle_id).where(_VOTES.c.battle_id.in_(chunk))).scalars())
                with_messages.update(
                    conn.execute(
                        sa.select(_MESSAGES.c.battle_id).where(_MESSAGES.c.battle_id.in_(chunk)).distinct()
                    ).scalars()
                )
            new_battles = [b for b in battles if b.id not in stored]
            if new_battles:
                self._insert_models(conn, (n for b in new_battles for n in (b.model_a, b.model_b)))
                conn.execute(sa.insert(BattleRow), [_battle_values(b) for b in new_battles])
                stored.update(b.id for b in new_battles)
            new_votes = [v for v in votes if v.battle_id in stored and v.battle_id not in voted]
            if new_votes:
                conn.execute(sa.insert(VoteRow), [_vote_values(v) for v in new_votes])
            new_messages = [
                _message_values(m)
                for battle_id, rows in messages.items()
                if battle_id in stored and battle_id not in with_messages
                for m in rows
            ]
            if new_messages:
                conn.execute(sa.insert(MessageRow), new_messages)
        result.battles, result.votes = len(new_battles), len(new_votes)
        result.orphan_votes = sum(1 for v in votes if v.battle_id not in stored)
        return result

    def upgrade_locked(self) -> None:
        """Apply the migrations up to head, one process at a time (replicas may start together).

        On PostgreSQL a transaction-scoped advisory lock serialises concurrent start-ups: the first
        process migrates, the others wait, then find the schema at head and do nothing. SQLite's
        write lock does the same for a file.
        """
        from alembic import command

        from arena.storage import migrations

        _ensure_sqlite_dir(self._engine)
        with self._guard("migrating the database"), self._write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
            command.upgrade(migrations.alembic_config(conn), "head")


_MIGRATION_LOCK_KEY = 0x4152454E41  # "ARENA": any fixed 64-bit number shared by every replica


@dataclass
class MergeResult:
    """What :meth:`Store.merge_battles` added."""

    battles: int = 0
    votes: int = 0
    orphan_votes: int = 0  # votes whose battle is neither stored nor given: not written


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
