"""``python -m arena ratings / export / import`` as real subprocesses against SQLite files."""

from __future__ import annotations

import csv
import json
import math
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
    for name in ("overall", "pool:base", "lang:pl", "lang:zh-Hant", "named"):
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


# --- issue 22: real-data defects -------------------------------------------------------------------


def _two_groups_and_a_newcomer() -> list[tuple[str, str, str]]:
    """a > b > c (60 votes each pair), x ~ y (80 votes) never meeting them, and 'new' with 2 votes."""
    battles: list[tuple[str, str, str]] = []
    for first, second, wins in (("a", "b", 40), ("b", "c", 40), ("a", "c", 50)):
        battles += [(first, second, "model_a")] * wins + [(first, second, "model_b")] * (60 - wins)
    battles += [("x", "y", "model_a")] * 40 + [("x", "y", "model_b")] * 30 + [("x", "y", "tie (bothbad)")] * 10
    battles += [("new", "c", "model_a")] * 2
    return battles


@pytest.fixture(scope="module")
def grouped(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tests.support.boards import store_board

    return store_board(f"sqlite:///{tmp_path_factory.mktemp('groups') / 'g.sqlite3'}", _two_groups_and_a_newcomer())


def test_groups_that_never_met_get_a_group_column_and_no_duplicate_slice(grouped: str, tmp_path: Path) -> None:
    out = tmp_path / "ratings.csv"
    done = arena("ratings", "--db", grouped, "--out", str(out), "--bootstrap", "0", "--interval", "sandwich")
    assert done.returncode == 0, done.stderr
    # Every battle is anonymous pool:chat: the pool slice would be the overall fit a second time.
    assert "== overall (" in done.stdout and "== pool:chat" not in done.stdout
    lines = done.stdout.splitlines()
    assert "group" in next(line for line in lines if line.lstrip().startswith("rank"))
    by_model = {line.split()[2]: line.split() for line in lines if len(line.split()) > 3 and line.split()[0] in "123—"}
    assert by_model["a"][:2] == ["1", "1"] and by_model["x"][:2] == ["1", "2"]
    # Two votes carry no rank: "—" and preliminary (it was shown at rank 1).
    assert by_model["new"][0] == "—" and by_model["new"][-1] == "preliminary"
    assert "group 2: x, y" in done.stdout  # the notes number groups as the group column does
    rows = _rows(out)
    assert len(rows) == 6 and {r["slice"] for r in rows} == {"overall"}
    assert {r["model"]: r["group"] for r in rows} == {"a": "1", "b": "1", "c": "1", "new": "1", "x": "2", "y": "2"}
    assert {r["model"]: r["rank"] for r in rows}["new"] == ""


def test_level_anchor_and_bothbad_policy_on_the_command_line(grouped: str, tmp_path: Path) -> None:
    def fit(*extra: str) -> dict[str, dict[str, str]]:
        out = tmp_path / "r.csv"
        done = arena(
            "ratings", "--db", grouped, "--out", str(out), "--bootstrap", "0", "--interval", "sandwich", *extra
        )
        assert done.returncode == 0, done.stderr
        return {r["model"]: r for r in _rows(out)}

    base = fit()
    narrow = fit("--level", "0.8")
    width = {m: float(r["ci_upper"]) - float(r["ci_lower"]) for m, r in base.items()}
    assert all(float(narrow[m]["ci_upper"]) - float(narrow[m]["ci_lower"]) < width[m] for m in base)
    assert narrow["a"]["level"] == "0.8"
    pinned = fit("--anchor", "b=1200")
    assert float(pinned["b"]["rating"]) == pytest.approx(1200)
    assert float(pinned["a"]["rating"]) - 1200 == pytest.approx(float(base["a"]["rating"]) - float(base["b"]["rating"]))
    assert float(pinned["x"]["rating"]) == pytest.approx(float(base["x"]["rating"]))  # the other group keeps 1000
    assert pinned["a"]["anchor"] == pinned["b"]["anchor"] == "b=1200" and pinned["x"]["anchor"] == ""
    assert base["a"]["anchor"] == "" and float(base["a"]["scale"]) == pytest.approx(400 / math.log(10))
    halved = fit("--scale", "200")
    assert halved["a"]["scale"] == "200.0"
    for m in ("a", "x"):  # 200 points per log-odds instead of 173.7: distances from 1000 and widths in proportion
        assert float(halved[m]["rating"]) - 1000 == pytest.approx(
            (float(base[m]["rating"]) - 1000) * 200 / 400 * math.log(10)
        )
        half_width = float(halved[m]["ci_upper"]) - float(halved[m]["ci_lower"])
        assert half_width == pytest.approx(width[m] * 200 / 400 * math.log(10))
    apart = fit("--bothbad-policy", "exclude")
    assert apart["x"]["bothbad_policy"] == "exclude" and apart["x"]["tie_policy"] == "half"
    # x beat y 40-30 with 10 both-bad: without those the gap widens, and the records stay the same.
    assert float(apart["x"]["rating"]) > float(base["x"]["rating"])
    assert apart["x"]["bothbad"] == base["x"]["bothbad"] == "10"
    bad = arena("ratings", "--db", grouped, "--anchor", "b", "--bootstrap", "0", "--interval", "sandwich")
    assert bad.returncode == 2 and "MODEL=RATING" in bad.stderr


def test_the_bothbad_setting_reaches_the_fit(grouped: str, tmp_path: Path) -> None:
    out = tmp_path / "env.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "ARENA_"))}
    env["ARENA_BOTHBAD_POLICY"] = "exclude"
    done = subprocess.run(
        [sys.executable, "-m", "arena", "ratings", "--db", grouped, "--out", str(out), "--bootstrap", "0",
         "--interval", "sandwich"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {r["bothbad_policy"] for r in _rows(out)} == {"exclude"}


def test_counts_agree_in_number(tmp_path: Path) -> None:
    """One vote is "1 vote", not "1 votes" (ratings, audit, export, import)."""
    from tests.support.boards import store_board

    db = store_board(f"sqlite:///{tmp_path / 'one.sqlite3'}", [("m1", "m2", "model_a")])
    ratings = arena("ratings", "--db", db, "--slice", "overall", "--bootstrap", "0")
    assert ratings.returncode == 0, ratings.stderr
    assert "== overall (All anonymous chat battles): 1 vote, " in ratings.stdout
    audit = arena("audit", "--db", db, "--resamples", "20")
    assert audit.returncode == 0, audit.stderr
    assert ": 1 vote, 20 resamples ==" in audit.stdout
    out = tmp_path / "one.csv"
    exported = arena("export", "--db", db, "--battles", str(out))
    assert "exported 1 battle to" in exported.stderr
    imported = arena("import", "--db", f"sqlite:///{tmp_path / 'copy.sqlite3'}", str(out))
    assert "imported 1 battle, skipped 0" in imported.stderr
    assert "1 votes" not in ratings.stdout + audit.stdout and "1 battles" not in exported.stderr + imported.stderr
