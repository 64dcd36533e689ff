"""Ratings CSV and battle files: schema, formula cells, Unicode, idempotent import, same ratings after a round trip."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from arena.domain import PairCount
from arena.exchange import (
    BATTLE_COLUMNS,
    CONVERSATION_COLUMNS,
    EXTRA_BATTLE_COLUMNS,
    RATINGS_COLUMNS,
    ImportFormatError,
    export_battles,
    import_file,
    neutralise,
    read_battles,
    unneutralise,
    write_ratings_csv,
)
from arena.leaderboard import FitParams, available_slices, fit_slice, parse_slice
from arena.ratings import fit_ratings
from arena.storage import Store
from tests.support.battles import PROMPTS, fill

CUTOFF = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PARAMS = FitParams(bootstrap_rounds=40, seed=3)


@pytest.fixture
def source(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'source.sqlite3'}")
    fill(store)
    yield store  # type: ignore[misc]
    store.dispose()


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _all_fits(store: Store) -> dict[str, dict[str, object]]:
    out = {}
    for info in available_slices(store.vote_groups()):
        result = fit_slice(store, parse_slice(info.name), PARAMS)
        out[info.name] = {r.model: r for r in result.rows}
    return out


# --- cells ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "cell"),
    [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'=x", "''=x"),  # already quoted text gets one more quote, so reading it back is exact
        ("'plain", "'plain"),
        ("plain", "plain"),
        ("", ""),
        ("zh-Hant", "zh-Hant"),
    ],
)
def test_neutralise_and_back(raw: str, cell: str) -> None:
    assert neutralise(raw) == cell
    assert unneutralise(cell) == raw


def test_ratings_csv_columns_and_numbers_are_not_neutralised(tmp_path: Path) -> None:
    counts = [
        PairCount("=evil", "b", "model_a", 30),
        PairCount("=evil", "b", "model_b", 20),
        PairCount("b", "c", "model_a", 25),
        PairCount("b", "c", "tie", 10),
        PairCount("c", "=evil", "model_a", 12),
    ]
    # An anchor at -500 makes every rating negative: numeric cells must stay numbers.
    result = fit_ratings(counts, bootstrap_rounds=30, anchor=("b", -500.0))
    path = tmp_path / "ratings.csv"
    n = write_ratings_csv([("overall", result), ("lang:pl", result)], path, cutoff=CUTOFF)
    rows = _read_csv(path)
    assert n == len(rows) == 6
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split(",")
    assert tuple(header) == RATINGS_COLUMNS
    assert header[:18] == [
        "model", "rating", "ci_lower", "ci_upper", "rank", "votes", "wins", "losses", "ties", "bothbad",
        "preliminary", "slice", "interval_method", "tie_policy", "alpha", "bootstrap_rounds", "n_battles",
        "cutoff_utc",
    ]  # fmt: skip
    by_model = {(r["slice"], r["model"]): r for r in rows}
    evil = by_model[("overall", "'=evil")]  # the text cell is neutralised ...
    assert evil["rating"].startswith("-") and float(evil["rating"]) == pytest.approx(result.row("=evil").rating)
    assert float(by_model[("overall", "b")]["rating"]) == -500.0  # ... numbers are written as numbers
    assert evil["cutoff_utc"] == "2026-11-01T12:00:00Z" and evil["preliminary"] in ("true", "false")
    for r in rows:
        assert float(r["bootstrap_lower"]) <= float(r["rating"]) <= float(r["bootstrap_upper"])
        assert float(r["sandwich_lower"]) <= float(r["rating"]) <= float(r["sandwich_upper"])  # the anchor: width 0


def test_ratings_csv_bom_only_when_asked(tmp_path: Path) -> None:
    result = fit_ratings([PairCount("a", "b", "model_a", 3), PairCount("a", "b", "model_b", 2)], bootstrap_rounds=10)
    write_ratings_csv([("overall", result)], tmp_path / "plain.csv", cutoff=CUTOFF)
    write_ratings_csv([("overall", result)], tmp_path / "excel.csv", cutoff=CUTOFF, bom=True)
    assert (tmp_path / "plain.csv").read_bytes().startswith(b"model,")
    assert (tmp_path / "excel.csv").read_bytes().startswith(b"\xef\xbb\xbfmodel,")


# --- battles out ------------------------------------------------------------------------------


def test_battle_csv_schema_and_neutralised_cells(source: Store, tmp_path: Path) -> None:
    path = tmp_path / "battles.csv"
    n = export_battles(source, path, with_conversations=True)
    rows = _read_csv(path)
    assert n == len(rows) == source.vote_total(mode=None, exclude_flags=())
    assert tuple(rows[0]) == BATTLE_COLUMNS + EXTRA_BATTLE_COLUMNS + CONVERSATION_COLUMNS
    names = {r["model_a"] for r in rows} | {r["model_b"] for r in rows}
    assert "'=delta" in names and "=delta" not in names
    assert {r["winner"] for r in rows} == {"model_a", "model_b", "tie", "tie (bothbad)"}
    assert {r["anony"] for r in rows} == {"true", "false"}
    assert any(r["flags"] == "too_fast" for r in rows)
    first = json.loads(rows[0]["conversation_a"])
    assert first[0]["role"] == "user" and first[0]["content"] in PROMPTS.values()


def test_battle_jsonl_keeps_values_as_they_are(source: Store, tmp_path: Path) -> None:
    path = tmp_path / "battles.jsonl"
    export_battles(source, path, fmt="jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert set(rows[0]) == set(BATTLE_COLUMNS + EXTRA_BATTLE_COLUMNS)
    assert "=delta" in {r["model_a"] for r in rows} | {r["model_b"] for r in rows}
    assert all(isinstance(r["tstamp"], float) and isinstance(r["anony"], bool) for r in rows)
    assert "conversation_a" not in rows[0]


# --- battles in -------------------------------------------------------------------------------


def test_unicode_round_trips_exactly(source: Store, tmp_path: Path) -> None:
    path = tmp_path / "battles.csv"
    export_battles(source, path, with_conversations=True)
    target = Store(f"sqlite:///{tmp_path / 'target.sqlite3'}")
    try:
        target.create_schema()
        import_file(target, path)
        for bid in ("battle-00000", "battle-00002", "battle-00004"):  # pl, zh-Hant, no language (RTL, emoji, \r\n)
            assert [(m.side, m.turn, m.role, m.content) for m in target.messages(bid)] == [
                (m.side, m.turn, m.role, m.content) for m in source.messages(bid)
            ]
            assert target.get_battle(bid) == source.get_battle(bid).__class__(
                **{**source.get_battle(bid).__dict__, "created_at": target.get_battle(bid).created_at}
            )
        texts = {m.content for m in target.messages("battle-00004")}
        assert PROMPTS[None] in texts and "-Answer of" in " ".join(texts)
    finally:
        target.dispose()


def test_csv_json_and_jsonl_import_the_same_battles(source: Store, tmp_path: Path) -> None:
    jsonl = tmp_path / "b.jsonl"
    export_battles(source, jsonl, fmt="jsonl", with_conversations=True)
    export_battles(source, tmp_path / "b.csv", with_conversations=True)
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    (tmp_path / "b.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    parsed = {name: list(read_battles(tmp_path / name)) for name in ("b.csv", "b.json", "b.jsonl")}
    assert parsed["b.csv"] == parsed["b.json"] == parsed["b.jsonl"]
    assert len(parsed["b.csv"]) == len(rows)


def test_reimport_adds_nothing_and_rows_without_id_get_a_stable_one(db_url: str, tmp_path: Path) -> None:
    rows = [
        {"model_a": "x", "model_b": "y", "winner": "model_a", "judge": "u1", "turn": 1, "anony": True,
         "language": "Polish", "tstamp": 1700000000.5},
        {"model_a": "y", "model_b": "x", "winner": "tie (bothbad)", "judge": "u2", "turn": 1, "anony": False,
         "language": "unknown", "tstamp": 1700000001.0},
        {"question_id": "q" * 50, "model_a": "x", "model_b": "z", "winner": "model_b", "judge": "u3", "turn": 1,
         "anony": True, "language": "en", "tstamp": 1700000002.0},
    ]  # fmt: skip
    path = tmp_path / "public.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    with Store(db_url) as store:
        store.create_schema()
        first = import_file(store, path)
        again = import_file(store, path)
        assert (first.inserted, first.skipped) == (3, 0)
        assert (again.inserted, again.skipped) == (0, 3)
        assert store.vote_total(mode=None) == 3
        assert store.vote_total(language="pl") == 1  # "Polish" is mapped to its code
        assert store.vote_total(mode="named") == 1
        ids = [item["battle"].id for item in read_battles(path)]
        assert all(len(i) <= 36 for i in ids) and len(set(ids)) == 3


def test_bad_row_names_its_line_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"question_id": "a", "model_a": "x", "model_b": "y", "winner": "model_a", "tstamp": 1.0}
    lines = [json.dumps(good), json.dumps({**good, "question_id": "b", "winner": "model_c"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with Store(f"sqlite:///{tmp_path / 'x.sqlite3'}") as store:
        store.create_schema()
        with pytest.raises(ImportFormatError, match=r"line 2: winner must be one of"):
            import_file(store, path)
        assert store.battle_count() == 0


def test_export_import_gives_the_same_ratings(source: Store, db_url: str, tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    export_battles(source, first, with_conversations=True)
    with Store(db_url) as target:
        target.create_schema()
        result = import_file(target, first)
        assert result.inserted == source.vote_total(mode=None, exclude_flags=())
        assert _all_fits(target) == _all_fits(source)
        assert [s.name for s in available_slices(target.vote_groups())] == [
            "overall", "pool:base", "lang:en", "lang:pl", "lang:zh-Hant", "lang:ja", "named",
        ]  # fmt: skip
        # And out again: the file is byte for byte the same.
        second = tmp_path / "second.csv"
        export_battles(target, second, with_conversations=True)
    assert second.read_bytes() == first.read_bytes()


def test_export_import_export_without_conversations_keeps_turn(source: Store, db_url: str, tmp_path: Path) -> None:
    """The public files carry no conversations: the stored battle keeps the file's ``turn`` (was 0 on every row)."""
    from arena.domain import MessageRecord

    source.add_messages(
        [
            MessageRecord("battle-00001", side, 2, role, f"second {role} turn")
            for side in "ab"
            for role in ("user", "assistant")
        ]  # type: ignore[arg-type]
    )
    first = tmp_path / "first.csv"
    export_battles(source, first)
    turns = [r["turn"] for r in _read_csv(first)]
    assert set(turns) == {"1", "2"}, turns  # a two-turn battle among one-turn ones, so a loss would show
    with Store(db_url) as target:
        target.create_schema()
        import_file(target, first)
        second = tmp_path / "second.csv"
        export_battles(target, second)
        assert [r["turn"] for r in _read_csv(second)] == turns
        assert second.read_bytes() == first.read_bytes()
        third = tmp_path / "third.jsonl"
        export_battles(target, third, fmt="jsonl")
    assert [json.loads(line)["turn"] for line in third.read_text(encoding="utf-8").splitlines()] == [
        int(t) for t in turns
    ]


@pytest.mark.parametrize("turn", ["-1", "1.5", "two"])
def test_a_bad_turn_names_its_line(turn: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"question_id,model_a,model_b,winner,turn,tstamp\nq1,x,y,model_a,{turn},1.0\n", encoding="utf-8")
    with pytest.raises(ImportFormatError, match=r"line 2: turn must be"):
        list(read_battles(path))
