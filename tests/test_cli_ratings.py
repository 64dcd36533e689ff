"""``python -m arena ratings / export / import`` as real subprocesses against SQLite files."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arena.exchange import BATTLE_COLUMNS, RATINGS_COLUMNS
from arena.storage import Store
from tests.support.battles import MODELS, fill

ROOT = Path(__file__).resolve().parents[1]


def arena(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "ARENA_"))}
    return subprocess.run(
        [sys.executable, "-m", "arena", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cli") / "arena.sqlite3"
    with Store(f"sqlite:///{path}") as store:
        fill(store)
    return f"sqlite:///{path}"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_ratings_prints_every_slice_and_writes_the_csv(filled: str, tmp_path: Path) -> None:
    out = tmp_path / "ratings.csv"
    done = arena("ratings", "--db", filled, "--out", str(out), "--bootstrap", "30", "--seed", "1")
    assert done.returncode == 0, done.stderr
    for name in ("overall", "pool:chat", "pool:base", "lang:pl", "lang:zh-Hant", "named"):
        assert f"== {name} (" in done.stdout
    assert all(m in done.stdout for m in MODELS)
    rows = _rows(out)
    assert tuple(rows[0]) == RATINGS_COLUMNS
    assert {r["slice"] for r in rows} >= {"overall", "named", "lang:ja"}
    assert all(r["bootstrap_rounds"] == "30" and r["interval_method"] == "bootstrap" for r in rows)
    assert f"wrote {len(rows)} rows" in done.stderr


def test_ratings_one_slice_with_options(filled: str, tmp_path: Path) -> None:
    out = tmp_path / "pl.csv"
    done = arena(
        "ratings", "--db", filled, "--slice", "lang:pl", "--out", str(out),
        "--bootstrap", "0", "--interval", "sandwich", "--tie-policy", "exclude",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("== ") == 1 and "== lang:pl" in done.stdout
    rows = _rows(out)
    assert {r["slice"] for r in rows} == {"lang:pl"}
    assert {(r["tie_policy"], r["interval_method"], r["bootstrap_lower"]) for r in rows} == {
        ("exclude", "sandwich", "")
    }
    assert all(r["ci_lower"] == r["sandwich_lower"] for r in rows)


def test_ratings_rejects_an_unknown_slice(filled: str) -> None:
    done = arena("ratings", "--db", filled, "--slice", "klingon")
    assert done.returncode == 2 and "lang:<code>" in done.stderr


def test_export_import_ratings_round_trip(filled: str, tmp_path: Path) -> None:
    battles = tmp_path / "battles.jsonl"
    done = arena("export", "--db", filled, "--battles", str(battles), "--with-conversations")
    assert done.returncode == 0, done.stderr
    lines = battles.read_text(encoding="utf-8").splitlines()
    assert set(BATTLE_COLUMNS) <= set(json.loads(lines[0])) and "conversation_a" in json.loads(lines[0])
    assert f"exported {len(lines)} battles" in done.stderr

    target = f"sqlite:///{tmp_path / 'copy.sqlite3'}"
    first = arena("import", "--db", target, str(battles))
    assert first.returncode == 0, first.stderr
    assert f"imported {len(lines)} battles, skipped 0" in first.stderr
    assert "imported" in first.stderr.splitlines()[0]  # progress line before the summary
    again = arena("import", "--db", target, str(battles))
    assert f"imported 0 battles, skipped {len(lines)}" in again.stderr

    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert arena("ratings", "--db", filled, "--out", str(a), "--bootstrap", "20").returncode == 0
    assert arena("ratings", "--db", target, "--out", str(b), "--bootstrap", "20").returncode == 0

    def numbers(path: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k != "cutoff_utc"} for r in _rows(path)]

    assert numbers(a) == numbers(b)


def test_export_csv_by_default(filled: str, tmp_path: Path) -> None:
    out = tmp_path / "battles.txt"
    done = arena("export", "--db", filled, "--battles", str(out), "--bom")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"\xef\xbb\xbf" + ",".join(BATTLE_COLUMNS).encode())


def test_cli_choices_match_the_ratings_module() -> None:
    from arena.commands import ratings as command
    from arena.ratings import INTERVAL_METHODS, TIE_POLICIES

    assert (command.TIE_POLICIES, command.INTERVAL_METHODS) == (TIE_POLICIES, INTERVAL_METHODS)


def test_import_reports_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("question_id,model_a,model_b,winner,tstamp\nq1,x,y,model_a,not-a-time\n", encoding="utf-8")
    done = arena("import", "--db", f"sqlite:///{tmp_path / 'x.sqlite3'}", str(bad))
    assert done.returncode == 2 and "line 2: tstamp must be a number" in done.stderr
