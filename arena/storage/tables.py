"""The database schema as SQLAlchemy 2 typed declarative models (migrations in db/ must match it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Dialect, Float, ForeignKey, Index, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from arena.domain import WINNERS

# Fixed constraint names, so migrations and create_all() produce the same schema on every backend
# and later migrations can drop or alter a constraint by name (SQLite batch mode needs names).
NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(column_0_label)s",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored as naive UTC
    and marked UTC again when read. Naive datetimes are refused: their meaning is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"timestamps must be timezone-aware, got naive {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ModelRow(Base):
    """Every model name that ever battled; battles refer to it by name."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class BattleRow(Base):
    __tablename__ = "battles"
    __table_args__ = (
        CheckConstraint(_in("mode", ("anonymous", "named")), name="ck_battles_mode"),
        CheckConstraint(_in("pool", ("chat", "base")), name="ck_battles_pool"),
        # Rate limits count a client's recent battles (and votes through them) on every replica.
        Index("ix_battles_client_hash_created_at", "client_hash", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Foreign keys to models.name rather than models.id: the name is the natural key every export,
    # rating and GROUP BY uses, so counting needs no join, while the database still guarantees
    # that each battle names a known model.
    model_a: Mapped[str] = mapped_column(String(200), ForeignKey("models.name"))
    model_b: Mapped[str] = mapped_column(String(200), ForeignKey("models.name"))
    mode: Mapped[str] = mapped_column(String(16))
    pool: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    client_hash: Mapped[str] = mapped_column(String(128))
    language: Mapped[str | None] = mapped_column(String(32))
    propensity: Mapped[float | None] = mapped_column(Float)
    uniform_propensity: Mapped[float | None] = mapped_column(Float)
    # Comma-separated category names (",code,math," matching in SQL, like vote flags); "" for none.
    categories: Mapped[str] = mapped_column(String(500), default="", server_default="")
    # Turns of a battle imported without its conversations (the file's ``turn``); NULL when the
    # messages are stored, which then say how many turns there were.
    turns: Mapped[int | None]


class MessageRow(Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint(_in("side", ("a", "b")), name="ck_messages_side"),
        CheckConstraint(_in("role", ("system", "user", "assistant")), name="ck_messages_role"),
        CheckConstraint(_in("finish_reason", ("length", "eos", "stop")), name="ck_messages_finish_reason"),
        CheckConstraint("turn >= 0", name="ck_messages_turn"),
        Index("ix_messages_battle_id_turn", "battle_id", "turn"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    battle_id: Mapped[str] = mapped_column(String(36), ForeignKey("battles.id", ondelete="CASCADE"))
    side: Mapped[str] = mapped_column(String(1))
    turn: Mapped[int]
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(16))
    generated_tokens: Mapped[int | None]
    ttft_ms: Mapped[int | None]
    total_ms: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)


class VoteRow(Base):
    __tablename__ = "votes"
    __table_args__ = (CheckConstraint(_in("winner", WINNERS), name="ck_votes_winner"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # UNIQUE: the database, not the application, guarantees one vote per battle, even under races.
    battle_id: Mapped[str] = mapped_column(String(36), ForeignKey("battles.id", ondelete="CASCADE"), unique=True)
    winner: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Comma-separated flag names (',identity_leak,' style matching in SQL works on every backend,
    # unlike JSON functions); empty string when the vote has no flags.
    flags: Mapped[str] = mapped_column(String(500), default="", server_default="")
    # The visitor's optional free-text "why?" (length-capped by the service).
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class NamedPromptRow(Base):
    """The prompt of each side-by-side (named) turn, as a fingerprint (arena/replays.py).

    Written before the named answers are shown, so a replay of an anonymous battle's prompt is seen
    by every replica at that battle's vote, even if the side-by-side turn was abandoned half-way.
    Rows older than ARENA_REPLAY_WINDOW are no longer read and are purged.
    """

    __tablename__ = "named_prompts"
    __table_args__ = (Index("ix_named_prompts_client_hash_created_at", "client_hash", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_hash: Mapped[str] = mapped_column(String(128))
    fingerprint: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


# -- evaluation campaigns (docs/campaigns.md) ----------------------------------------------------


class CampaignRow(Base):
    """A fixed prompt set with its candidates and generation settings (``spec``: JSON)."""

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    spec: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CampaignPromptRow(Base):
    """One prompt of a campaign; ``turns`` is a JSON list of the user turns."""

    __tablename__ = "campaign_prompts"

    campaign_id: Mapped[str] = mapped_column(
        String(100), ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    prompt_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    position: Mapped[int]
    category: Mapped[str] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(32))
    system: Mapped[str | None] = mapped_column(Text)
    turns: Mapped[str] = mapped_column(Text)


class CampaignAnswerRow(Base):
    """One candidate's answer to one prompt under one setting and run (``id``: a hash of that key)."""

    __tablename__ = "campaign_answers"
    __table_args__ = (
        CheckConstraint("run >= 1", name="ck_campaign_answers_run"),
        # One answer per key: generation resumes by skipping the keys already stored.
        Index("ix_campaign_answers_key", "campaign_id", "prompt_id", "candidate", "setting", "run", unique=True),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String(100), ForeignKey("campaigns.id", ondelete="CASCADE"))
    prompt_id: Mapped[str] = mapped_column(String(200))
    candidate: Mapped[str] = mapped_column(String(200))
    setting: Mapped[str] = mapped_column(String(32))
    run: Mapped[int]
    turns: Mapped[str] = mapped_column(Text)
    rendered_prompt: Mapped[str | None] = mapped_column(Text)
    params: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    finish_reason: Mapped[str | None] = mapped_column(String(16))
    generated_tokens: Mapped[int | None]
    ttft_ms: Mapped[int | None]
    total_ms: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CampaignVoteRow(Base):
    """One visitor's judgment of two answers to one prompt, as shown (A, B)."""

    __tablename__ = "campaign_votes"
    __table_args__ = (
        CheckConstraint(_in("winner", WINNERS), name="ck_campaign_votes_winner"),
        # One vote per comparison per visitor, enforced by the database on every replica.
        Index("ix_campaign_votes_client_pair", "campaign_id", "client_hash", "pair_key", unique=True),
        # Rate limits count a client's recent votes.
        Index("ix_campaign_votes_client_hash_created_at", "client_hash", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String(100), ForeignKey("campaigns.id", ondelete="CASCADE"))
    prompt_id: Mapped[str] = mapped_column(String(200))
    answer_a: Mapped[str] = mapped_column(String(32))
    answer_b: Mapped[str] = mapped_column(String(32))
    pair_key: Mapped[str] = mapped_column(String(65))
    model_a: Mapped[str] = mapped_column(String(200))
    model_b: Mapped[str] = mapped_column(String(200))
    setting: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(100))
    turns: Mapped[int]
    winner: Mapped[str] = mapped_column(String(16))
    flags: Mapped[str] = mapped_column(String(500), default="", server_default="")
    reason: Mapped[str | None] = mapped_column(Text)
    client_hash: Mapped[str] = mapped_column(String(128))
    shown_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    propensity: Mapped[float | None] = mapped_column(Float)
    uniform_propensity: Mapped[float | None] = mapped_column(Float)


class SyncMarkRow(Base):
    """What this database already holds of the sync folder (arena/sync.py), so a restart replays only the rest.

    ``journal/<file>.jsonl`` -> how many lines of that journal file the database holds;
    ``bytes:journal/<file>.jsonl`` -> the file's size when the database held all of it;
    ``snapshot/<id>`` -> 1 once that snapshot was merged into (or taken from) this database.
    The marks live in the database, not beside it: a wiped or replaced database has none, and a
    restore into it replays everything.
    """

    __tablename__ = "sync_marks"

    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    lines: Mapped[int]
