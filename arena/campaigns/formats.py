"""Prompt sets and answers in and out: Shisa's tasks.json, FastChat's question.jsonl and
model_answer JSONL, CSV, and a campaign bundle (campaign.yaml naming its files).

Prompt sets
-----------
* **Shisa** ``tasks.json``: a JSON list of ``{"id", "type", "prompt_en", "prompt_ja", "user_en",
  "user_ja"}``; each ``user_XX`` that is not null becomes one prompt ``<id>-XX`` in language ``XX``,
  with ``prompt_XX`` as its system prompt and ``type`` as its category.
* **FastChat** ``question.jsonl``: one ``{"question_id", "category", "turns": [...]}`` per line
  (``id``, ``language`` and ``system`` are read too; JSON lists of such objects also work).
* **CSV**: columns ``id``, ``category``, ``language``, ``system`` and ``turn_1``, ``turn_2`` ... (or
  one ``prompt`` column).

A prompt without a language gets the one detected from its first turn (``arena.language``).

Answers
-------
* **FastChat** ``model_answer/*.jsonl``: ``{"question_id", "model_id", "choices": [{"index",
  "turns": [...]}]}``; choice ``index`` k is run k+1. The arena writes the same shape plus its own
  fields (``setting``, ``run``, ``rendered_prompt``, ``params``, ``finish_reason``,
  ``generated_tokens``, ``ttft_ms``, ``total_ms``, ``error``), so its files load anywhere FastChat's do.
* **CSV**: ``question_id`` (or ``prompt_id``), ``model`` (or ``model_id``/``candidate``), optional
  ``setting`` and ``run``, then ``answer`` or ``turn_1``, ``turn_2`` ...

Every error names the file and the line or record, and says what to change.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from arena.campaigns.model import DEFAULT_SETTING, Campaign, CampaignAnswer, CampaignPrompt
from arena.errors import ConfigError

__all__ = [
    "Bundle",
    "answer_json",
    "fastchat_question_id",
    "load_bundle",
    "read_answers",
    "read_prompts",
    "write_answers",
    "write_prompts",
]

_SHISA_USER = "user_"


def _fail(path: Path, where: str, what: str) -> ConfigError:
    return ConfigError(f"{path}{':' + where if where else ''}: {what}")


def _language_of(text: str) -> str:
    from arena.language import detect_language

    return detect_language(text) or "und"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def fastchat_question_id(prompt_id: str) -> int | str:
    """A prompt id as FastChat writes it: a number (``81``) when it is one, so that FastChat's own
    tools, which key questions, answers and judgments by integer ids, match the arena's files."""
    return (
        int(prompt_id)
        if prompt_id.isascii() and prompt_id.isdigit() and str(int(prompt_id)) == prompt_id
        else prompt_id
    )


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, object) for each record of a JSON list or a JSONL file."""
    raw = path.read_text(encoding="utf-8-sig")
    stripped = raw.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise _fail(path, str(e.lineno), f"not valid JSON ({e.msg}).") from None
        for n, item in enumerate(data, start=1):
            if not isinstance(item, dict):
                raise _fail(path, f"record {n}", "each record must be a JSON object.")
            yield f"record {n}", item
        return
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise _fail(path, str(n), f"not valid JSON ({e.msg}); each line must be one JSON object.") from None
        if not isinstance(item, dict):
            raise _fail(path, str(n), "each line must be one JSON object.")
        yield str(n), item


def _csv_rows(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        for n, row in enumerate(reader, start=2):
            yield str(n), {(k or "").strip().lower(): (v or "") for k, v in row.items()}


def _turn_columns(row: Mapping[str, str], single: tuple[str, ...]) -> tuple[str, ...]:
    numbered = sorted((int(k.split("_", 1)[1]), v) for k, v in row.items() if k.startswith("turn_") and k[5:].isdigit())
    turns = [v for _, v in numbered]
    while turns and not turns[-1].strip():
        turns.pop()
    if not turns:
        for key in single:
            if row.get(key, "").strip():
                return (row[key],)
    return tuple(turns)


# -- prompt sets ------------------------------------------------------------------------------------


def read_prompts(path: str | Path) -> list[CampaignPrompt]:
    """The prompts of a Shisa tasks.json, FastChat question.jsonl, arena JSON/JSONL or CSV file.

    Raises
    ------
    ConfigError
        The file is missing, of an unknown shape, or a record lacks its id or first turn; prompt ids repeat.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such prompt file. Give a tasks.json, question.jsonl or CSV file.")
    if path.suffix.lower() == ".csv":
        prompts = list(_csv_prompts(path))
    else:
        prompts = []
        for where, item in _records(path):
            if any(k.startswith(_SHISA_USER) for k in item):
                prompts.extend(_shisa_prompts(path, where, item))
            else:
                prompts.append(_fastchat_prompt(path, where, item))
    if not prompts:
        raise ConfigError(f"{path}: holds no prompts.")
    seen: set[str] = set()
    for p in prompts:
        if p.id in seen:
            raise ConfigError(f"{path}: prompt id {p.id!r} appears twice; every prompt needs its own id.")
        seen.add(p.id)
    return prompts


def _shisa_prompts(path: Path, where: str, item: Mapping[str, Any]) -> Iterator[CampaignPrompt]:
    base = _text(item.get("id"))
    if base is None:
        raise _fail(path, where, "a task needs an 'id'.")
    category = _text(item.get("type") or item.get("category")) or "general"
    found = False
    for key, value in item.items():
        if not key.startswith(_SHISA_USER):
            continue
        text = _text(value)
        if text is None:
            continue  # Shisa leaves a language out with null (e.g. translation tasks)
        language = key[len(_SHISA_USER) :]
        found = True
        yield CampaignPrompt(
            id=f"{base}-{language}",
            turns=(text,),
            category=category,
            language=language,
            system=_text(item.get(f"prompt_{language}")),
        )
    if not found:
        raise _fail(path, where, f"task {base!r} has no user_XX prompt that is not null.")


def _fastchat_prompt(path: Path, where: str, item: Mapping[str, Any]) -> CampaignPrompt:
    pid = _text(item.get("question_id", item.get("id")))
    if pid is None:
        raise _fail(path, where, "a prompt needs a 'question_id' (or 'id').")
    turns = item.get("turns")
    if isinstance(turns, str):
        turns = [turns]
    if not turns and _text(item.get("prompt")):
        turns = [item["prompt"]]
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise _fail(path, where, f"prompt {pid!r} needs 'turns': a list of non-empty texts.")
    language = _text(item.get("language")) or _language_of(turns[0])
    return CampaignPrompt(
        id=pid,
        turns=tuple(turns),
        category=_text(item.get("category")) or "general",
        language=language,
        system=_text(item.get("system")),
    )


def _csv_prompts(path: Path) -> Iterator[CampaignPrompt]:
    for where, row in _csv_rows(path):
        pid = _text(row.get("id") or row.get("question_id"))
        if pid is None and not {"id", "question_id"} & set(row):
            raise _fail(
                path,
                where,
                f"the file has no 'id' column (its columns: {', '.join(map(str, row))}); a prompt CSV has "
                "id, category, language, system and turn_1, turn_2, ... (or one 'prompt').",
            )
        if pid is None:
            raise _fail(path, where, "every row needs an 'id' column value.")
        turns = _turn_columns(row, ("prompt", "text"))
        if not turns or not all(t.strip() for t in turns):
            raise _fail(path, where, f"prompt {pid!r} needs 'turn_1' (or 'prompt'), and no empty turn between.")
        yield CampaignPrompt(
            id=pid,
            turns=turns,
            category=_text(row.get("category")) or "general",
            language=_text(row.get("language")) or _language_of(turns[0]),
            system=_text(row.get("system")),
        )


def write_prompts(prompts: Iterable[CampaignPrompt], path: str | Path) -> None:
    """Write prompts as arena JSONL (FastChat's question.jsonl plus ``language`` and ``system``)."""
    with Path(path).open("w", encoding="utf-8") as f:
        for p in prompts:
            line = {
                "question_id": fastchat_question_id(p.id),
                "category": p.category,
                "language": p.language,
                "turns": list(p.turns),
            }
            if p.system:
                line["system"] = p.system
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


# -- answers ----------------------------------------------------------------------------------------


def read_answers(path: str | Path, campaign_id: str, *, model: str | None = None) -> list[CampaignAnswer]:
    """The answers in a FastChat model_answer JSONL (or arena JSONL) or CSV file.

    ``model`` names the candidate when the file does not (FastChat names its files after the model).

    Raises
    ------
    ConfigError
        A record lacks its prompt id, model or turns.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such answer file. Give a model_answer JSONL or CSV file.")
    rows = (
        _csv_answers(path, campaign_id, model)
        if path.suffix.lower() == ".csv"
        else _json_answers(path, campaign_id, model)
    )
    answers = list(rows)
    if not answers:
        raise ConfigError(f"{path}: holds no answers.")
    return answers


def _json_answers(path: Path, campaign_id: str, model: str | None) -> Iterator[CampaignAnswer]:
    for where, item in _records(path):
        pid = _text(item.get("question_id", item.get("prompt_id")))
        name = _text(item.get("model_id", item.get("model"))) or model
        if pid is None or name is None:
            raise _fail(path, where, "an answer needs 'question_id' and 'model_id' (or give --model).")
        choices = item.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _fail(path, where, "an answer needs 'choices': [{'index': 0, 'turns': [...]}].")
        for choice in choices:
            turns = choice.get("turns") if isinstance(choice, dict) else None
            if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
                raise _fail(path, where, "each choice needs 'turns': a list of texts.")
            run = int(item.get("run") or (int(choice.get("index", 0)) + 1))
            yield CampaignAnswer(
                campaign_id=campaign_id,
                prompt_id=pid,
                candidate=name,
                turns=tuple(turns),
                setting=_text(item.get("setting")) or DEFAULT_SETTING,
                run=run,
                rendered_prompt=item.get("rendered_prompt"),
                params=dict(item.get("params") or {}),
                finish_reason=item.get("finish_reason"),
                generated_tokens=item.get("generated_tokens"),
                ttft_ms=item.get("ttft_ms"),
                total_ms=item.get("total_ms"),
                error=item.get("error"),
                source=_text(item.get("source")) or "imported",
            )


def _csv_answers(path: Path, campaign_id: str, model: str | None) -> Iterator[CampaignAnswer]:
    for where, row in _csv_rows(path):
        pid = _text(row.get("question_id") or row.get("prompt_id") or row.get("id"))
        name = _text(row.get("model") or row.get("model_id") or row.get("candidate")) or model
        if pid is None or name is None:
            raise _fail(path, where, "every row needs 'question_id' and 'model' values (or give --model).")
        turns = _turn_columns(row, ("answer", "text"))
        if not turns:
            raise _fail(path, where, "every row needs an 'answer' (or 'turn_1') value.")
        yield CampaignAnswer(
            campaign_id=campaign_id,
            prompt_id=pid,
            candidate=name,
            turns=turns,
            setting=_text(row.get("setting")) or DEFAULT_SETTING,
            run=int(row.get("run") or 1),
            source="imported",
        )


def answer_json(a: CampaignAnswer) -> dict[str, Any]:
    """One answer as a line of FastChat's model_answer JSONL plus the arena's own fields."""
    return {
        "question_id": fastchat_question_id(a.prompt_id),
        "answer_id": a.id,
        "model_id": a.candidate,
        "choices": [{"index": a.run - 1, "turns": list(a.turns)}],
        "tstamp": a.created_at.timestamp() if a.created_at else None,
        "setting": a.setting,
        "run": a.run,
        "rendered_prompt": a.rendered_prompt,
        "params": a.params,
        "finish_reason": a.finish_reason,
        "generated_tokens": a.generated_tokens,
        "ttft_ms": a.ttft_ms,
        "total_ms": a.total_ms,
        "error": a.error,
        "source": a.source,
    }


def write_answers(answers: Iterable[CampaignAnswer], path: str | Path) -> int:
    """Write answers as model_answer JSONL; returns how many."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for a in answers:
            f.write(json.dumps(answer_json(a), ensure_ascii=False) + "\n")
            n += 1
    return n


# -- bundles ----------------------------------------------------------------------------------------


@dataclass
class Bundle:
    """A campaign as files: ``campaign.yaml`` with its prompt file and answer files."""

    campaign: Campaign
    prompts: list[CampaignPrompt]
    answers: list[CampaignAnswer] = field(default_factory=list)


_BUNDLE_KEYS = {
    "id",
    "title",
    "description",
    "prompts",
    "answers",
    "candidates",
    "temperatures",
    "runs",
    "max_new_tokens",
}


def load_bundle(path: str | Path) -> Bundle:
    """Read a campaign bundle: a folder holding ``campaign.yaml`` (or the yaml file itself).

    ``campaign.yaml`` keys: ``id``, ``title``, ``description``, ``prompts`` (a file), ``answers``
    (files), ``candidates``, ``temperatures``, ``runs``, ``max_new_tokens``. Paths are relative
    to the yaml file.

    Raises
    ------
    ConfigError
        With the file and the key that is wrong.
    """
    path = Path(path)
    yml = path / "campaign.yaml" if path.is_dir() else path
    if not yml.is_file():
        raise ConfigError(f"{yml}: no campaign file. A campaign bundle is a folder with a campaign.yaml.")
    try:
        data = yaml.safe_load(yml.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{yml}: not valid YAML ({e}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{yml}: must be a mapping with at least 'id', 'title' and 'prompts'.")
    unknown = set(data) - _BUNDLE_KEYS
    if unknown:
        raise ConfigError(
            f"{yml}: unknown key(s) {', '.join(sorted(unknown))}; the keys are {', '.join(sorted(_BUNDLE_KEYS))}."
        )
    for key in ("id", "title", "prompts"):
        if not _text(data.get(key)):
            raise ConfigError(f"{yml}: '{key}' is required.")
    campaign = campaign_from(
        str(data["id"]),
        str(data["title"]),
        description=str(data.get("description") or ""),
        candidates=data.get("candidates") or (),
        temperatures=data.get("temperatures") or (),
        runs=data.get("runs") or 1,
        max_new_tokens=data.get("max_new_tokens"),
        where=str(yml),
    )
    prompts = read_prompts(yml.parent / str(data["prompts"]))
    files = data.get("answers") or []
    if isinstance(files, str):
        files = [files]
    answers = [a for f in files for a in read_answers(yml.parent / str(f), campaign.id)]
    return Bundle(campaign, prompts, answers)


def campaign_from(
    id: str,
    title: str,
    *,
    description: str = "",
    candidates: Iterable[Any] = (),
    temperatures: Iterable[Any] = (),
    runs: Any = 1,
    max_new_tokens: Any = None,
    where: str = "campaign",
) -> Campaign:
    """A checked :class:`Campaign` (ConfigError naming ``where`` and the field otherwise)."""
    if not id or len(id) > 100 or any(c.isspace() for c in id):
        raise ConfigError(f"{where}: id {id!r} must be 1-100 characters without spaces.")
    try:
        temps = tuple(float(t) for t in temperatures)
        n_runs = int(runs)
        cap = None if max_new_tokens in (None, "") else int(max_new_tokens)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: temperatures must be numbers, runs and max_new_tokens whole numbers.") from None
    if any(t < 0 for t in temps) or n_runs < 1 or (cap is not None and cap < 1):
        raise ConfigError(f"{where}: temperatures must be >= 0, runs >= 1 and max_new_tokens >= 1.")
    names = tuple(str(c) for c in candidates)
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: a candidate is listed twice.")
    return Campaign(id, title, names, temps, n_runs, cap, description)


def dump_csv(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """CSV text (for results and judgments)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()
