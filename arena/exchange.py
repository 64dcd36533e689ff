"""Ratings and battles in and out as files: ratings.csv, and battles in Chatbot Arena's public schema.

Battle files (CSV, JSONL out; CSV, JSON list, JSONL in) use the columns of Chatbot Arena's public
battle data, so public arena data can be imported and re-ranked, and ours can be read by the same
notebooks::

    question_id, model_a, model_b, winner, judge, turn, anony, language, tstamp
    [conversation_a, conversation_b]    lists of {"role", "content"} (optional)
    [reason]                            the voter's optional "why?" (written with the conversations)

``winner`` is ``model_a | model_b | tie | tie (bothbad)``, ``judge`` the salted hash of the
voter, ``tstamp`` the vote's Unix time. Four extra columns keep what the public schema lacks, so
that export -> import -> ratings gives the same numbers: ``pool``, ``flags`` (comma-separated vote
flags, e.g. ``too_fast``), ``propensity`` (the probability with which the pair was drawn) and
``uniform_propensity`` (what uniform pairing would have given it; ``uniform_propensity / propensity``
is the battle's inverse-propensity weight), and ``categories`` (comma-separated; each is a slice
``cat:<name>``).

LMArena's current exports are read as well: ``id`` for ``question_id``, ``timestamp`` (ISO 8601 or
Unix time) for ``tstamp``, ``judge_hash`` for ``judge``, ``both_bad`` for ``tie (bothbad)``, and the
category columns ``category``, ``is_code`` and ``category_tag`` become ``categories``.

CSV files are UTF-8 without a byte-order mark by default: pandas, DuckDB, R and the csv module
read that as is, while a BOM would become part of the first column's name for them. Excel needs a
BOM to recognise UTF-8, so writers take ``bom=True`` (``--bom`` on the command line); readers accept
files with or without one. Text cells that a spreadsheet would run as a formula (starting with
``=``, ``+``, ``-``, ``@``, tab or carriage return) get a leading ``'``; numbers are written as
numbers and never changed. The importer removes exactly that one quote again (see
:func:`neutralise`), so every string round-trips.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from arena.domain import WINNERS, BattleRecord, MessageRecord, Pool, Role, Side, VoteRecord
from arena.domain import Message as ConversationMessage
from arena.errors import ImportFormatError
from arena.storage.store import BattleExport, ImportResult, Store

if TYPE_CHECKING:
    # Only a type here; importing arena.ratings loads scipy and choix, which import and export do not need.
    from arena.ratings import RatingsResult

__all__ = [
    "BATTLE_COLUMNS",
    "CONVERSATION_COLUMNS",
    "EXTRA_BATTLE_COLUMNS",
    "RATINGS_COLUMNS",
    "BattleFormat",
    "ImportFormatError",
    "battle_row",
    "export_battles",
    "import_file",
    "neutralise",
    "read_battles",
    "unneutralise",
    "write_battles",
    "write_ratings_csv",
]

BattleFormat = Literal["csv", "jsonl", "json"]

RATINGS_COLUMNS: tuple[str, ...] = (
    "model",
    "rating",
    "ci_lower",
    "ci_upper",
    "rank",
    "votes",
    "wins",
    "losses",
    "ties",
    "bothbad",
    "preliminary",
    "slice",
    "interval_method",
    "tie_policy",
    "alpha",
    "bootstrap_rounds",
    "n_battles",
    "cutoff_utc",
    "bootstrap_lower",
    "bootstrap_upper",
    "sandwich_lower",
    "sandwich_upper",
    "group",
    "bothbad_policy",
    "level",
    "scale",
    "anchor",
)
BATTLE_COLUMNS: tuple[str, ...] = (
    "question_id",
    "model_a",
    "model_b",
    "winner",
    "judge",
    "turn",
    "anony",
    "language",
    "tstamp",
)
EXTRA_BATTLE_COLUMNS: tuple[str, ...] = ("pool", "flags", "propensity", "uniform_propensity", "categories")
CONVERSATION_COLUMNS: tuple[str, ...] = ("conversation_a", "conversation_b", "reason")
"""The visitors' own words: the conversations and the vote's optional "why?" (written only on request)."""

_FORMULA_START = frozenset("=+-@\t\r")
_POOLS: dict[str, Pool] = {"chat": "chat", "base": "base"}
# Role names used by other public conversation datasets, folded into ours.
_ROLES: dict[str, Role] = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "system": "system",
}
_ID_LIMIT = 36  # battles.id is String(36)
_JUDGE_LIMIT = 128
_NAME_LIMIT = 200
_LANGUAGE_LIMIT = 32

# Chatbot Arena's public data names languages in English ("Polish"); ours are ISO 639-1 codes.
_LANGUAGE_NAMES = {
    "english": "en",
    "chinese": "zh",
    "japanese": "ja",
    "korean": "ko",
    "polish": "pl",
    "german": "de",
    "french": "fr",
    "spanish": "es",
    "portuguese": "pt",
    "italian": "it",
    "russian": "ru",
    "ukrainian": "uk",
    "czech": "cs",
    "dutch": "nl",
    "swedish": "sv",
    "turkish": "tr",
    "arabic": "ar",
    "hebrew": "he",
    "persian": "fa",
    "hindi": "hi",
    "vietnamese": "vi",
    "indonesian": "id",
    "thai": "th",
    "greek": "el",
    "hungarian": "hu",
    "finnish": "fi",
    "danish": "da",
    "norwegian": "no",
    "romanian": "ro",
    "bulgarian": "bg",
}


# --- cells ------------------------------------------------------------------------------------


def _needs_quote(text: str) -> bool:
    bare = text.lstrip("'")
    return bool(bare) and bare[0] in _FORMULA_START


def neutralise(value: str) -> str:
    """``value`` made safe for a spreadsheet cell: one ``'`` before a text that would be a formula.

    Text already starting with quotes before such a character gets one more, so that
    :func:`unneutralise` restores every string exactly.
    """
    return "'" + value if _needs_quote(value) else value


def unneutralise(value: str) -> str:
    """The inverse of :func:`neutralise`."""
    return value[1:] if value.startswith("'") and _needs_quote(value) else value


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return neutralise(value)
    return value


def _open_text(path: str | Path, bom: bool) -> IO[str]:
    return open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="")


# --- ratings ----------------------------------------------------------------------------------


def _utc(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ratings_rows(result: RatingsResult, slice_name: str, cutoff: datetime) -> Iterator[dict[str, Any]]:
    """One ``RATINGS_COLUMNS`` mapping per rated model (best first), as plain Python values."""
    # The anchor pins the ratings of its own group only; other groups keep their mean of 1000.
    pinned_group, anchor = None, ""
    if result.anchor is not None:
        pinned_group = next((r.component for r in result.rows if r.model == result.anchor[0]), None)
        anchor = f"{result.anchor[0]}={result.anchor[1]:g}"
    for r in result.rows:
        yield {
            "model": r.model,
            "rating": r.rating,
            "ci_lower": r.ci_lower,
            "ci_upper": r.ci_upper,
            "rank": r.rank,
            "votes": r.votes,
            "wins": r.wins,
            "losses": r.losses,
            "ties": r.ties,
            "bothbad": r.bothbad,
            "preliminary": r.preliminary,
            "slice": slice_name,
            "interval_method": result.interval_method,
            "tie_policy": result.tie_policy,
            "alpha": result.alpha,
            "bootstrap_rounds": result.bootstrap_rounds,
            "n_battles": result.n_battles,
            "cutoff_utc": _utc(cutoff),
            "bootstrap_lower": r.bootstrap_lower,
            "bootstrap_upper": r.bootstrap_upper,
            "sandwich_lower": r.sandwich_lower,
            "sandwich_upper": r.sandwich_upper,
            # 1, 2, ...: ratings and ranks compare only within one group (groups that never met).
            "group": r.component + 1,
            "bothbad_policy": result.bothbad_policy,
            "level": result.level,
            "scale": result.scale,  # rating points per unit of log-odds
            "anchor": anchor if r.component == pinned_group else "",  # MODEL=RATING, where it pins this row
        }


def write_ratings_csv(
    results: Iterable[tuple[str, RatingsResult]],
    out: str | Path | IO[str],
    *,
    cutoff: datetime,
    bom: bool = False,
) -> int:
    """Write ratings.csv: one row per model and slice. Returns the number of rows.

    ``results`` pairs each slice name (``overall``, ``lang:pl`` ...) with its fit; ``cutoff`` is
    when the votes were read. Floats keep full precision; a missing interval (no bootstrap) is an
    empty cell.
    """
    if isinstance(out, str | Path):
        with _open_text(out, bom) as f:
            return write_ratings_csv(results, f, cutoff=cutoff)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RATINGS_COLUMNS)
    n = 0
    for name, result in results:
        for row in ratings_rows(result, name, cutoff):
            writer.writerow([_csv_cell(row[c]) for c in RATINGS_COLUMNS])
            n += 1
    return n


# --- battles out ------------------------------------------------------------------------------


def _conversation(messages: Sequence[MessageRecord], side: str) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages if m.side == side]


def battle_row(item: BattleExport, *, with_conversations: bool = False) -> dict[str, Any]:
    """One battle in the public schema (plus ``EXTRA_BATTLE_COLUMNS``), as plain Python values."""
    b, v = item["battle"], item["vote"]
    turns = max((m.turn for m in item["messages"]), default=b.turns or 0)
    row: dict[str, Any] = {
        "question_id": b.id,
        "model_a": b.model_a,
        "model_b": b.model_b,
        "winner": v.winner if v is not None else None,
        "judge": b.client_hash,
        "turn": turns,
        "anony": b.mode == "anonymous",
        "language": b.language,
        "tstamp": (v.created_at if v is not None else b.created_at).timestamp(),
        "pool": b.pool,
        "flags": ",".join(v.flags) if v is not None else "",
        "propensity": b.propensity,
        "uniform_propensity": b.uniform_propensity,
        "categories": ",".join(b.categories),
    }
    if with_conversations:
        row["conversation_a"] = _conversation(item["messages"], "a")
        row["conversation_b"] = _conversation(item["messages"], "b")
        row["reason"] = v.reason if v is not None else None
    return row


def write_battles(
    items: Iterable[BattleExport],
    out: str | Path | IO[str],
    *,
    fmt: Literal["csv", "jsonl"] = "csv",
    with_conversations: bool = False,
    bom: bool = False,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 1000,
) -> int:
    """Write battles as CSV or JSONL, one at a time (memory does not grow with the file).

    Conversations are JSON text in a CSV cell and JSON lists in JSONL. Returns the number of
    battles written; ``progress(n)`` is called every ``progress_every`` battles.
    """
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"fmt must be 'csv' or 'jsonl', not {fmt!r}.")
    if isinstance(out, str | Path):
        with _open_text(out, bom and fmt == "csv") as f:
            return write_battles(
                items,
                f,
                fmt=fmt,
                with_conversations=with_conversations,
                progress=progress,
                progress_every=progress_every,
            )
    columns = BATTLE_COLUMNS + EXTRA_BATTLE_COLUMNS + (CONVERSATION_COLUMNS if with_conversations else ())
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(columns)
    n = 0
    for item in items:
        row = battle_row(item, with_conversations=with_conversations)
        if writer is not None:
            for c in ("conversation_a", "conversation_b"):
                if c in row:
                    row[c] = json.dumps(row[c], ensure_ascii=False)
            writer.writerow([_csv_cell(row[c]) for c in columns])
        else:
            out.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
        n += 1
        if progress is not None and n % progress_every == 0:
            progress(n)
    return n


def export_battles(
    store: Store,
    out: str | Path | IO[str],
    *,
    fmt: Literal["csv", "jsonl"] = "csv",
    with_conversations: bool = False,
    filters: Mapping[str, Any] | None = None,
    bom: bool = False,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 1000,
) -> int:
    """Stream voted battles from ``store`` into a file (``filters``: ``Store.iter_battles`` arguments)."""
    # Messages are always read: the ``turn`` column counts them. They arrive one batch at a time.
    items = store.iter_battles(with_messages=True, **dict(filters or {}))
    try:
        return write_battles(
            items,
            out,
            fmt=fmt,
            with_conversations=with_conversations,
            bom=bom,
            progress=progress,
            progress_every=progress_every,
        )
    finally:
        items.close()


# --- battles in -------------------------------------------------------------------------------


def _guess_format(path: Path) -> BattleFormat:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    raise ImportFormatError(f"{path}: cannot tell the format from the name; use a .csv, .json or .jsonl file.")


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8-sig") as f:
        head = f.read(1)
        while head and head.isspace():
            head = f.read(1)
        f.seek(0)
        if head == "[":
            # A JSON list has to be parsed whole; JSONL streams line by line.
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ImportFormatError(f"{path}: not valid JSON ({e}).") from None
            for i, row in enumerate(data, start=1):
                yield i, row
            return
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield i, json.loads(line)
            except json.JSONDecodeError as e:
                raise ImportFormatError(
                    f"{path}, line {i}: not valid JSON ({e}); expected one object per line."
                ) from None


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    # Conversation cells exceed the csv module's default 128 KiB field limit.
    csv.field_size_limit(2**31 - 1)
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            clean: dict[str, Any] = {}
            for key, value in row.items():
                if key is None:
                    raise ImportFormatError(f"{path}, line {reader.line_num}: more cells than header columns.")
                clean[key] = unneutralise(value) if isinstance(value, str) else value
            yield reader.line_num, clean


def _text(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _bool(value: Any, where: str) -> bool:
    if value is None or value == "":
        return True  # the public data marks named battles explicitly; anonymous is the default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ImportFormatError(f"{where}: anony must be true or false, not {value!r}.")


def _float(value: Any, what: str, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ImportFormatError(f"{where}: {what} must be a number, not {value!r}.") from None
    if not math.isfinite(number):
        raise ImportFormatError(f"{where}: {what} must be a finite number, not {value!r}.")
    return number


def _turns(value: Any, where: str) -> int | None:
    number = _float(value, "turn", where)
    if number is None:
        return None
    if number < 0 or number != int(number):
        raise ImportFormatError(f"{where}: turn must be a whole number of turns (0 or more), not {value!r}.")
    return int(number)


def _language(value: str | None) -> str | None:
    if value is None or value.lower() in ("unknown", "und", "none", "null"):
        return None
    return _LANGUAGE_NAMES.get(value.lower(), value)[:_LANGUAGE_LIMIT]


def _conversation_in(value: Any, what: str, where: str) -> list[ConversationMessage] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ImportFormatError(f"{where}: {what} is not a JSON list ({e}).") from None
    if not isinstance(value, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value):
        raise ImportFormatError(f'{where}: {what} must be a list of {{"role", "content"}} objects.')
    out: list[ConversationMessage] = []
    for m in value:
        role = _ROLES.get(str(m.get("role", "")).lower())
        if role is None:
            raise ImportFormatError(f"{where}: {what} has role {m.get('role')!r}; expected user, assistant or system.")
        out.append({"role": role, "content": m["content"]})
    return out


def _messages(battle_id: str, side: Side, conversation: list[ConversationMessage]) -> list[MessageRecord]:
    rows: list[MessageRecord] = []
    turn = 0
    for m in conversation:
        if m["role"] == "user":
            turn += 1
        rows.append(MessageRecord(battle_id, side, turn, m["role"], m["content"]))
    return rows


def _hash_id(*parts: Any) -> str:
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def _short(value: str, limit: int) -> str:
    """``value``, or a stable hash of it when the column cannot hold it."""
    return value if len(value) <= limit else _hash_id(value)


# LMArena's current exports write "both_bad" where the older public data wrote "tie (bothbad)".
_WINNER_ALIASES = {"both_bad": "tie (bothbad)", "bothbad": "tie (bothbad)", "tie(bothbad)": "tie (bothbad)"}
_CATEGORY_LIMIT = 40
_HARD_PROMPT_CRITERIA = 6  # LMArena's "hard prompt": at least 6 of its 7 criteria tags


def _timestamp(row: Mapping[str, Any], where: str) -> float | None:
    """``tstamp`` (Unix seconds), else ``timestamp`` (Unix seconds or ISO 8601; naive means UTC)."""
    if row.get("tstamp") not in (None, ""):
        return _float(row.get("tstamp"), "tstamp", where)
    value = row.get("timestamp")
    if value is None or value == "":
        return None
    if isinstance(value, int | float) or _is_number(str(value)):
        return _float(value, "timestamp", where)
    try:
        when = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ImportFormatError(f"{where}: timestamp {value!r} is neither a Unix time nor an ISO 8601 date.") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _category_name(value: Any) -> str | None:
    name = "_".join(str(value).strip().lower().replace(",", " ").split())[:_CATEGORY_LIMIT]
    return name or None


def _categories(row: Mapping[str, Any], where: str) -> tuple[str, ...]:
    """Categories from ``categories`` (ours), ``category``, ``is_code`` and LMArena's ``category_tag``.

    ``category_tag`` is a mapping of tag groups to flags (``{"math_v0.1": {"math": true}, ...}``); each
    true flag becomes a category, and a prompt meeting at least six of the ``criteria`` tags is a
    ``hard_prompt`` (LMArena's definition).
    """
    found: list[str] = []
    listed = row.get("categories")
    if isinstance(listed, list):
        found += [str(c) for c in listed]
    elif listed not in (None, ""):
        found += str(listed).split(",")
    if row.get("category") not in (None, ""):
        found.append(str(row["category"]))
    code = row.get("is_code")
    if code is True or str(code).strip().lower() in ("true", "1"):
        found.append("code")
    tags = row.get("category_tag")
    if isinstance(tags, str) and tags.strip():
        try:
            tags = json.loads(tags)
        except json.JSONDecodeError:
            raise ImportFormatError(f"{where}: category_tag is not a JSON object.") from None
    if isinstance(tags, Mapping):
        for group, flags in tags.items():
            if not isinstance(flags, Mapping):
                continue
            true = [str(k) for k, v in flags.items() if v is True]
            if str(group).startswith("criteria"):
                if len(true) >= _HARD_PROMPT_CRITERIA:
                    found.append("hard_prompt")
            else:
                found += true
    names = (_category_name(c) for c in found)
    return tuple(dict.fromkeys(n for n in names if n))


def parse_battle(row: Mapping[str, Any], where: str) -> BattleExport:
    """One row of the public schema -> a battle ready for :meth:`Store.import_battles`.

    Raises
    ------
    ImportFormatError
        A required column is missing or a value is invalid; ``where`` prefixes the message.
    """
    if not isinstance(row, Mapping):
        raise ImportFormatError(f"{where}: expected an object with the battle's columns, got {type(row).__name__}.")
    model_a, model_b = _text(row, "model_a"), _text(row, "model_b")
    if model_a is None or model_b is None:
        raise ImportFormatError(f"{where}: model_a and model_b are required.")
    if len(model_a) > _NAME_LIMIT or len(model_b) > _NAME_LIMIT:
        raise ImportFormatError(f"{where}: model names longer than {_NAME_LIMIT} characters are not supported.")
    winner = _text(row, "winner")
    winner = _WINNER_ALIASES.get(winner, winner) if winner is not None else None
    if winner is not None and winner not in WINNERS:
        raise ImportFormatError(f"{where}: winner must be one of {', '.join(WINNERS)} (or empty), not {winner!r}.")
    tstamp = _timestamp(row, where)
    if tstamp is None:
        raise ImportFormatError(
            f"{where}: tstamp (the vote's Unix time in seconds) or timestamp (ISO 8601 or Unix time) is required."
        )
    try:
        when = datetime.fromtimestamp(tstamp, UTC)
    except (OverflowError, OSError, ValueError):
        raise ImportFormatError(f"{where}: tstamp {tstamp!r} is not a Unix time in seconds.") from None
    anony = _bool(row.get("anony"), where)
    judge = _text(row, "judge") or _text(row, "judge_hash") or ""
    language = _language(_text(row, "language"))
    pool_text = _text(row, "pool") or "chat"
    pool = _POOLS.get(pool_text)
    if pool is None:
        raise ImportFormatError(f"{where}: pool must be chat or base, not {pool_text!r}.")
    flags_value = row.get("flags")
    if isinstance(flags_value, list):
        flags = tuple(str(f).strip() for f in flags_value if str(f).strip())
    else:
        flags = tuple(f.strip() for f in str(flags_value or "").split(",") if f.strip())
    propensity = _float(row.get("propensity"), "propensity", where)
    uniform_propensity = _float(row.get("uniform_propensity"), "uniform_propensity", where)
    conv_a = _conversation_in(row.get("conversation_a"), "conversation_a", where)
    conv_b = _conversation_in(row.get("conversation_b"), "conversation_b", where)

    qid = _text(row, "question_id") or _text(row, "id")
    if qid is None:
        # A deterministic id from the parsed values, so the same battle read from CSV or JSON gets the same id.
        qid = _hash_id(model_a, model_b, winner, judge, tstamp, anony, row.get("turn"), language, conv_a, conv_b)
    battle_id = _short(qid, _ID_LIMIT)
    battle = BattleRecord(
        id=battle_id,
        model_a=model_a,
        model_b=model_b,
        mode="anonymous" if anony else "named",
        pool=pool,
        created_at=when,
        client_hash=_short(judge, _JUDGE_LIMIT),
        language=language,
        propensity=propensity,
        uniform_propensity=uniform_propensity,
        categories=_categories(row, where),
        turns=_turns(row.get("turn"), where) if conv_a is None and conv_b is None else None,
    )
    vote = None
    if winner is not None:
        vote = VoteRecord(battle_id=battle_id, winner=winner, created_at=when, flags=flags, reason=_text(row, "reason"))
    messages = _messages(battle_id, "a", conv_a or []) + _messages(battle_id, "b", conv_b or [])
    return {"battle": battle, "propensity": propensity, "vote": vote, "messages": messages}


def read_battles(path: str | Path, fmt: BattleFormat | None = None) -> Iterator[BattleExport]:
    """Battles from a CSV, JSON (a list) or JSONL file in the public schema, one at a time.

    Raises
    ------
    ImportFormatError
        When the file cannot be read or a row is invalid (the message gives the line).
    """
    path = Path(path)
    fmt = fmt or _guess_format(path)
    if fmt not in ("csv", "json", "jsonl"):
        raise ImportFormatError(f"format must be csv, json or jsonl, not {fmt!r}.")
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file.")
    rows = _csv_rows(path) if fmt == "csv" else _json_rows(path)
    label = "row" if fmt == "json" else "line"
    try:
        for number, row in rows:
            yield parse_battle(row, f"{path}, {label} {number}")
    except UnicodeDecodeError as e:
        raise ImportFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8.") from None
    except csv.Error as e:
        raise ImportFormatError(f"{path}: not a valid CSV file ({e}).") from None


def import_file(
    store: Store,
    path: str | Path,
    *,
    fmt: BattleFormat | None = None,
    batch_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Check a whole battle file, then import it; ids already stored are skipped.

    The file is read twice (streaming both times): a bad row on line 90,000 is reported before
    anything is written, rather than after a partial import.
    """
    for _ in read_battles(path, fmt):
        pass
    return store.import_battles(read_battles(path, fmt), batch_size=batch_size, progress=progress)
