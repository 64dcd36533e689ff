"""Real public battles (GenAI-Arena, 2024-02-20; tests/data/genai_arena/README.md) through the CLI,
and the same votes in LMArena's current export columns."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from arena.audit import PROBE_NAMES
from arena.leaderboard import FitParams, LeaderboardCache
from arena.storage import Store

ROOT = Path(__file__).resolve().parents[1]
GENAI = ROOT / "tests" / "data" / "genai_arena" / "clean_battle_20240220.json"


def arena(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "ARENA_"))}
    return subprocess.run(
        [sys.executable, "-m", "arena", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _ratings(url: str, out: Path, *extra: str) -> tuple[str, list[dict[str, str]]]:
    done = arena("ratings", "--db", url, "--out", str(out), "--bootstrap", "0", "--interval", "sandwich", *extra)
    assert done.returncode == 0, done.stderr
    with open(out, encoding="utf-8", newline="") as f:
        return done.stdout, list(csv.DictReader(f))


@pytest.fixture(scope="module")
def genai(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('genai') / 'g.sqlite3'}"
    done = arena("import", str(GENAI), "--db", url)
    assert done.returncode == 0, done.stderr
    return url


def test_real_board_groups_slices_and_ranks(genai: str, tmp_path: Path) -> None:
    text, rows = _ratings(genai, tmp_path / "r.csv")
    # Imported data is all pool:chat: fitted once as overall (it was also fitted as pool:chat).
    assert "== overall (" in text and "== pool:chat" not in text
    overall = [r for r in rows if r["slice"] == "overall"]
    groups = {r["model"]: r["group"] for r in overall}
    # Generation and editing models never met: two groups, said in every row.
    assert {g for m, g in groups.items() if m.endswith("_generation")} == {"1"} or {
        g for m, g in groups.items() if m.endswith("_generation")
    } == {"2"}
    assert len(set(groups.values())) == 2
    assert all(
        groups[m] != groups[e] for m in groups if m.endswith("_generation") for e in groups if e.endswith("_edition")
    )
    for r in overall:
        assert (r["rank"] == "") == (r["preliminary"] == "true")
    # Both-bad votes (428 of 2061) weighed apart from ties change the fit, not the records.
    _, apart = _ratings(genai, tmp_path / "x.csv", "--slice", "overall", "--bothbad-policy", "exclude")
    assert {r["model"]: r["bothbad"] for r in apart} == {r["model"]: r["bothbad"] for r in overall}
    assert any(abs(float(a["rating"]) - float(b["rating"])) > 1 for a, b in zip(apart, overall, strict=True))


def test_real_board_audit(genai: str) -> None:
    done = arena("audit", "--db", genai, "--json", "--resamples", "200")
    assert done.returncode == 0, done.stderr
    probes = {p["name"]: p for p in json.loads(done.stdout)["probes"]}
    assert list(probes) == list(PROBE_NAMES)
    assert probes["connectivity"]["fired"] and probes["connectivity"]["value"] == 2
    # One judge string for every vote: voters cannot be resampled or left out, and the audit says so.
    assert probes["voter_concentration"]["value"] is None and not probes["voter_concentration"]["fired"]
    assert "1 distinct voter" in probes["voter_concentration"]["reason"]


def _lmarena_rows() -> list[dict[str, object]]:
    """The same votes written the way LMArena's current exports are: id, ISO timestamp, both_bad,
    judge_hash and category columns (category_tag, is_code)."""
    out = []
    for i, b in enumerate(json.loads(GENAI.read_text(encoding="utf-8"))):
        winner = "both_bad" if b["winner"] == "tie (bothbad)" else b["winner"]
        when = datetime.fromtimestamp(b["tstamp"], UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        edition = b["model_a"].endswith("_edition")
        out.append(
            {
                "id": f"lm-{i:05d}",
                "model_a": b["model_a"],
                "model_b": b["model_b"],
                "winner": winner,
                "judge_hash": b["judge"],
                "anony": b["anony"],
                "timestamp": when,
                "is_code": i % 5 == 0,
                "category_tag": {
                    "creative_writing_v0.1": {"creative_writing": not edition, "score": "no"},
                    "math_v0.1": {"math": False},
                    "criteria_v0.1": {k: True for k in ("a", "b", "c", "d", "e", "f")} if i % 3 == 0 else {},
                },
            }
        )
    return out


def test_lmarena_export_columns_import_with_categories_as_slices(genai: str, tmp_path: Path) -> None:
    path = tmp_path / "lmarena.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _lmarena_rows()), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'lm.sqlite3'}"
    done = arena("import", str(path), "--db", url)
    assert done.returncode == 0, done.stderr
    text, rows = _ratings(url, tmp_path / "lm.csv")
    for name in ("overall", "cat:code", "cat:creative_writing", "cat:hard_prompt"):
        assert f"== {name} (" in text, text[:2000]
    assert "cat:math" not in text  # no prompt had the flag set
    # The page's cache serves a category that has votes, and refuses one without (before any fit).
    store = Store(url)
    try:
        cache = LeaderboardCache(FitParams(interval="sandwich", bootstrap_rounds=0, audit_resamples=0))
        assert cache.view(store, "cat:code").votes > 0
        with pytest.raises(ValueError):
            cache.view(store, "cat:math")
        assert cache.fits == 1
    finally:
        store.dispose()
    _, plain = _ratings(genai, tmp_path / "g.csv", "--slice", "overall")
    # Same votes, read from the other columns: the same overall ratings and both-bad counts.
    lm = {r["model"]: r for r in rows if r["slice"] == "overall"}
    for r in plain:
        assert float(lm[r["model"]]["rating"]) == pytest.approx(float(r["rating"]), abs=1e-6)
        assert lm[r["model"]]["bothbad"] == r["bothbad"]
    # Creative writing is tagged on generation prompts only: its slice holds only generation models.
    creative = {r["model"] for r in rows if r["slice"] == "cat:creative_writing"}
    assert creative and all(m.endswith("_generation") for m in creative)
    exported = tmp_path / "back.csv"
    assert arena("export", "--db", url, "--battles", str(exported)).returncode == 0
    with open(exported, encoding="utf-8", newline="") as f:
        first = next(csv.DictReader(f))
    assert "categories" in first


def test_the_interval_floor_leaves_the_real_board_to_its_votes() -> None:
    """On the real board (26% ties or both bad) the old floor, 2/sqrt(votes), was wider than the fitted
    sandwich interval for 9 of 13 models and replaced it; the floor that counts ties binds for none."""
    import math
    from collections import Counter

    from arena.domain import PairCount
    from arena.ratings import SCALE, Z95, fit_ratings

    votes = Counter((b["model_a"], b["model_b"], b["winner"]) for b in json.loads(GENAI.read_text()) if b["anony"])
    result = fit_ratings(
        [PairCount(a, b, w, n) for (a, b, w), n in votes.items()],  # type: ignore[arg-type]
        interval="sandwich",
        bootstrap_rounds=0,
        min_votes=0,
    )
    old_floor_wider = 0
    for r in result.rows:
        k = len(result.components[r.component])
        half = (r.sandwich_upper - r.sandwich_lower) / 2
        tied = r.ties + r.bothbad
        floor = Z95 * SCALE * (k - 1) / k * 2 * math.sqrt(1 - tied / (r.votes + 2)) / math.sqrt(r.votes)
        assert half > floor * (1 + 1e-9), r.model  # the fitted width stands
        old_floor_wider += Z95 * SCALE * (k - 1) / k * 2 / math.sqrt(r.votes) > half
    assert len(result.rows) == 13 and old_floor_wider == 9
    assert not [n for n in result.notes if n.key == "note.widened"]
