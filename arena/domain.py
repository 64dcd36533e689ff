"""Plain typed records shared by every layer: messages, answers, battles, votes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypedDict

from arena import messages

Role = Literal["system", "user", "assistant"]
Side = Literal["a", "b"]
FinishReason = Literal["length", "eos", "stop"]
Winner = Literal["model_a", "model_b", "tie", "tie (bothbad)"]
Mode = Literal["anonymous", "named"]
Pool = Literal["chat", "base"]
# Settings' choices, each spelled once here (config validates against them, the modules using them import them).
TiePolicy = Literal["half", "exclude"]  # how ties (and both-bad votes) enter the ratings fit
IntervalMethod = Literal["bootstrap", "sandwich"]  # which 95% interval ranks the leaderboard
PairingStrategy = Literal["uniform", "weighted", "active"]  # how the next pair is drawn

WINNERS: tuple[Winner, ...] = ("model_a", "model_b", "tie", "tie (bothbad)")


class Message(TypedDict):
    role: Role
    content: str


@dataclass
class Answer:
    """One side's answer to one turn, as it streams and when it is done."""

    text: str = ""
    finish_reason: FinishReason | None = None
    generated_tokens: int | None = None
    ttft: float | None = None  # seconds from request to first token
    total_time: float | None = None  # seconds from request to the end
    error: messages.Message | None = None  # what the visitor is told (rendered in their language)
    error_kind: str | None = None  # exception class name, for operators
    done: bool = False

    @property
    def ok(self) -> bool:
        return self.done and self.error is None


@dataclass(frozen=True)
class BattleRecord:
    """A battle as stored: who met whom, which one was on side A."""

    id: str
    model_a: str
    model_b: str
    mode: Mode
    pool: Pool
    created_at: datetime
    client_hash: str
    language: str | None = None  # detected from the first prompt (e.g. "pl", "ja", "zh-Hant")
    propensity: float | None = None  # probability with which this pair was drawn
    # What uniform pairing would have given the pair then (1 / eligible pairs): the battle's
    # inverse-propensity weight is uniform_propensity / propensity (ARENA_IPW).
    uniform_propensity: float | None = None
    # Categories of the prompt (imported data: LMArena's category columns); each is a slice cat:<name>.
    categories: tuple[str, ...] = ()
    # The file's ``turn`` for a battle imported without its conversations (None: count the messages).
    turns: int | None = None


@dataclass(frozen=True)
class MessageRecord:
    """One stored message of one side of a battle."""

    battle_id: str
    side: Side
    turn: int
    role: Role
    content: str
    finish_reason: FinishReason | None = None
    generated_tokens: int | None = None
    ttft_ms: int | None = None
    total_ms: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class VoteRecord:
    battle_id: str
    winner: Winner
    created_at: datetime
    flags: tuple[str, ...] = field(default=())
    reason: str | None = None  # the visitor's optional "why?"


@dataclass(frozen=True)
class PairCount:
    """How many battles between (model_a, model_b) ended with ``winner`` (one GROUP BY row)."""

    model_a: str
    model_b: str
    winner: Winner
    count: int
    weight: float | None = None  # sum of the battles' inverse-propensity weights (pair_counts(weighted=True))
