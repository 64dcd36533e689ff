"""Typed records of an evaluation campaign: prompts, candidates, settings, answers and judgments."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from arena.domain import Winner

__all__ = [
    "DEFAULT_SETTING",
    "Campaign",
    "CampaignAnswer",
    "CampaignPrompt",
    "CampaignVote",
    "answer_id",
    "pair_key",
    "setting_label",
    "setting_temperature",
]

DEFAULT_SETTING = "default"
"""The setting of answers generated with each model's own sampling settings, or imported without one."""


def setting_label(temperature: float | None) -> str:
    """The name of a generation setting: ``t0.7`` for temperature 0.7, ``default`` for the model's own."""
    return DEFAULT_SETTING if temperature is None else f"t{temperature:g}"


def setting_temperature(label: str) -> float | None:
    """The temperature a setting name stands for (None for ``default`` or a free-form label)."""
    if label.startswith("t"):
        try:
            return float(label[1:])
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class CampaignPrompt:
    """One prompt of the fixed set: all its user turns, in one language, in one category."""

    id: str
    turns: tuple[str, ...]
    category: str = "general"
    language: str = "und"
    system: str | None = None

    def conversation(self) -> list[dict[str, str]]:
        """The conversation up to the first user turn (system prompt included)."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, {"role": "user", "content": self.turns[0]}]


@dataclass(frozen=True)
class Campaign:
    """A prompt set, its candidates and how their answers are generated.

    ``candidates`` are roster model names (generated here) or plain names (answers imported).
    ``temperatures`` empty means one setting, each model's own sampling settings (``default``).
    """

    id: str
    title: str
    candidates: tuple[str, ...] = ()
    temperatures: tuple[float, ...] = ()
    runs: int = 1
    max_new_tokens: int | None = None
    description: str = ""

    @property
    def settings(self) -> tuple[str, ...]:
        return tuple(setting_label(t) for t in self.temperatures) or (DEFAULT_SETTING,)

    def spec_json(self) -> str:
        return json.dumps(
            {
                "candidates": list(self.candidates),
                "temperatures": list(self.temperatures),
                "runs": self.runs,
                "max_new_tokens": self.max_new_tokens,
            },
            sort_keys=True,
        )

    @classmethod
    def from_row(cls, id: str, title: str, description: str, spec: str) -> Campaign:
        data = json.loads(spec or "{}")
        return cls(
            id=id,
            title=title,
            description=description or "",
            candidates=tuple(data.get("candidates") or ()),
            temperatures=tuple(float(t) for t in data.get("temperatures") or ()),
            runs=int(data.get("runs") or 1),
            max_new_tokens=data.get("max_new_tokens"),
        )


def answer_id(campaign_id: str, prompt_id: str, candidate: str, setting: str, run: int) -> str:
    """The stable id of one answer: the same in every database, journal and snapshot."""
    key = json.dumps([campaign_id, prompt_id, candidate, setting, run], ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def pair_key(answer_a: str, answer_b: str) -> str:
    """The comparison of two answers whichever side each was shown on (one vote each per visitor)."""
    return ":".join(sorted((answer_a, answer_b)))


@dataclass(frozen=True)
class CampaignAnswer:
    """One candidate's answer to every turn of one prompt, under one setting, in one run."""

    campaign_id: str
    prompt_id: str
    candidate: str
    turns: tuple[str, ...]
    setting: str = DEFAULT_SETTING
    run: int = 1
    rendered_prompt: str | None = None  # exactly what the model was given for the last turn
    params: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None  # of each turn, comma-separated when there are several ("length,eos")
    generated_tokens: int | None = None
    ttft_ms: int | None = None
    total_ms: int | None = None
    error: str | None = None  # the error kind when generation failed (such answers are never judged)
    source: str = "generated"  # or "imported"
    created_at: datetime | None = None

    @property
    def id(self) -> str:
        return answer_id(self.campaign_id, self.prompt_id, self.candidate, self.setting, self.run)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.turns) and all(t.strip() for t in self.turns)


@dataclass(frozen=True)
class CampaignVote:
    """One visitor's judgment of one comparison: a prompt and two answers, A and B as shown."""

    id: str
    campaign_id: str
    prompt_id: str
    answer_a: str
    answer_b: str
    model_a: str
    model_b: str
    setting: str
    language: str
    category: str
    winner: Winner
    client_hash: str
    shown_at: datetime
    created_at: datetime
    flags: tuple[str, ...] = ()
    reason: str | None = None
    propensity: float | None = None  # probability with which this pair of candidates was chosen
    uniform_propensity: float | None = None  # what uniform choice would have given it
    turns: int = 1  # how many turns the judged conversation has (MT-Bench's ``turn``)

    @property
    def pair_key(self) -> str:
        return pair_key(self.answer_a, self.answer_b)
