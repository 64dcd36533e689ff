"""arena/audit.py and arena/ratings.py against arenakit (PyPI, MIT) and LMArena's arena-rank where
they compute the same quantity (fits, first-slot advantage, Rao-Kupper, verdicts, the votes' Gini,
style control, sandwich intervals).

arenakit needs matplotlib and pydantic, so it lives in its own virtual environment, never in the
runtime: ``$ARENA_PEER_VENVS/arenakit`` (default ``~/.cache/arena-peers``), built here on first use
with ``pip install arenakit==0.1.1`` (about 220 MB, a minute or two). The test fails, loudly, when
that environment cannot be built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from arena.audit import Board, _fit_position, _fit_rao_kupper, _matrices, audit, fit_one
from tests.support import planted

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(os.environ.get("ARENA_PEER_VENVS", Path.home() / ".cache" / "arena-peers"))


def _venv(name: str, requirement: str) -> Path:
    python = PEERS / name / "bin" / "python"
    if not python.exists():
        PEERS.mkdir(parents=True, exist_ok=True)
        made = subprocess.run([sys.executable, "-m", "venv", str(PEERS / name)], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.fail(f"could not make the {name} venv: {made.stderr}")
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", requirement], capture_output=True, text=True, timeout=900
        )
        if pip.returncode != 0:
            pytest.fail(f"could not install {requirement} into {PEERS / name} (PyPI needed): {pip.stderr[-2000:]}")
    return python


@pytest.fixture(scope="module")
def arenakit() -> Path:
    return _venv("arenakit", "arenakit==0.1.1")


def _peer(python: Path, battles: list[planted.Battle], **extra: object) -> dict[str, object]:
    payload = json.dumps({"battles": [list(b[:4]) for b in battles], **extra})
    done = subprocess.run(
        [str(python), str(ROOT / "tests" / "support" / "peer_arenakit.py")],
        input=payload,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, object] = json.loads(done.stdout)
    return out


def _ours(battles: list[planted.Battle]) -> tuple[Board, int]:
    board = Board.from_rows(planted.rows(battles)).collapsed()
    return board, len(board.models)


def _aligned(theirs: dict[str, object], key: str, board: Board) -> np.ndarray:
    order = [list(theirs["models"]).index(m) for m in board.models]  # type: ignore[arg-type]
    return np.asarray(theirs[key])[order]


def test_fits_agree_with_arenakit(arenakit: Path) -> None:
    """Ties split, ties dropped, first-slot advantage and Rao-Kupper: the same maximum likelihood
    (ours carries a ridge worth ~0.04 battles, so agreement is to ~1e-3 log-odds)."""
    battles = planted.first_slot_bias()
    theirs = _peer(arenakit, battles)
    board, n = _ours(battles)
    y, nn = _matrices(board, n)
    assert fit_one(y, nn) == pytest.approx(_aligned(theirs, "half", board), abs=2e-3)
    y_d, nn_d = _matrices(board, n, ties="drop")
    assert fit_one(y_d, nn_d) == pytest.approx(_aligned(theirs, "drop", board), abs=2e-3)
    _, h, _ = _fit_position(board, n)
    assert h == pytest.approx(float(theirs["first_slot"]), abs=2e-3)  # type: ignore[arg-type]
    rk = _fit_rao_kupper(board, n, fit_one(y, nn))
    assert rk == pytest.approx(_aligned(theirs, "rao_kupper", board), abs=5e-3)


@pytest.mark.parametrize(
    ("board", "probe_ours", "probe_theirs"),
    [
        ("clean", None, None),
        ("first_slot_bias", "position_bias", "position_bias"),
        ("two_pools", "connectivity", "connectivity"),
        ("too_few_votes", "separation", "separation"),
    ],
)
def test_planted_verdicts_agree_with_arenakit(
    arenakit: Path, board: str, probe_ours: str | None, probe_theirs: str | None
) -> None:
    """Where the two audits ask the same question, a planted defect sets off both (and the clean
    board neither)."""
    battles = getattr(planted, board)()
    theirs = _peer(arenakit, battles, audit=True, resamples=300)
    ours = {p.name for p in audit(planted.rows(battles), resamples=300, seed=1).probes if p.fired}
    shared = {
        "position_bias": "position_bias",
        "connectivity": "connectivity",
        "separation": "separation",
    }
    fired_theirs = set(theirs["fired"])  # type: ignore[arg-type]
    if probe_ours is None:
        assert not ours and not fired_theirs & set(shared.values()), (ours, fired_theirs)
    else:
        assert probe_ours in ours and probe_theirs in fired_theirs, (ours, fired_theirs)


def test_votes_gini_equals_arenakits(arenakit: Path) -> None:
    """Both measure an uneven budget by the Gini of battles per model (arenakit's bar is 0.5, ours
    0.25: a model in 80% of the battles sits between them, 0.28)."""
    battles = planted.lopsided_budget()
    theirs = _peer(arenakit, battles, audit=True, resamples=100)
    ours = audit(planted.rows(battles), resamples=100, seed=1).probe("coverage")
    assert ours.value == pytest.approx(theirs["probes"]["coverage_imbalance"], abs=1e-3)  # type: ignore[index]


@pytest.fixture(scope="module")
def arena_rank() -> Path:
    # arena-rank pins jax 0.8.1 and numpy 2.3.3: its own venv, never the runtime.
    return _venv("arena-rank", "arena-rank==0.1.1")


def test_style_control_agrees_with_arena_rank(arena_rank: Path) -> None:
    """Style-controlled ratings, their sandwich intervals and the length coefficient against
    arena-rank's ContextualBradleyTerry on the same battles and the same standardised features."""
    from arena.style import StyleBattle, _differences, fit_style

    battles = [StyleBattle(a, b, w, x, y) for a, b, w, _, x, y in planted.verbose_answers(2000, 12)]
    ours = fit_style(battles)
    x = _differences(battles)
    varying = [j for j in range(x.shape[1]) if x[:, j].std() > 0]
    models = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
    index = {m: i for i, m in enumerate(models)}
    payload = {
        "models": models,
        "pairs": [[index[b.model_a], index[b.model_b]] for b in battles],
        "outcomes": [{"model_a": 1.0, "model_b": 0.0}.get(b.winner, 0.5) for b in battles],
        "features": x[:, varying].tolist(),
    }
    done = subprocess.run(
        [str(arena_rank), str(ROOT / "tests" / "support" / "peer_arena_rank.py")],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads(done.stdout)
    assert varying == [0]  # length only: these answers carry no markdown
    assert ours.coefficients[0].value == pytest.approx(theirs["coeffs"][0], abs=2e-3)
    by = {r.model: r for r in ours.rows}
    for i, m in enumerate(models):
        assert by[m].rating == pytest.approx(theirs["ratings"][i], abs=0.5)
        ours_width = by[m].ci_upper - by[m].ci_lower
        assert ours_width == pytest.approx(theirs["upper"][i] - theirs["lower"][i], rel=0.02)


@pytest.mark.parametrize("tie_rate", [0.0, 0.3])
def test_sandwich_intervals_are_as_narrow_as_arena_ranks(arena_rank: Path, tie_rate: float) -> None:
    """The interval floor may not widen what the votes carry (issue 22): on a board of ten close
    models with 0% or 30% ties (half of them both-bad), the shown sandwich intervals equal
    arena-rank's BradleyTerry sandwich intervals to 1%. The floor that ignored ties made them
    1.11-1.21 times as wide at 30% ties (measured here, 2026-12-06)."""
    import math
    from collections import Counter

    from scipy.special import expit

    from arena.domain import PairCount
    from arena.ratings import fit_ratings

    rng = np.random.default_rng(5)
    theta = np.linspace(-0.6, 0.6, 10)
    eta = -math.log((1 - tie_rate) / (1 + tie_rate))  # Rao-Kupper: tie_rate between equal models
    battles: list[tuple[str, str, str]] = []
    for i in range(10):
        for j in range(i + 1, 10):
            d = theta[i] - theta[j]
            pa, pb = expit(d - eta), expit(-d - eta)
            a, b, tied = rng.multinomial(60, [pa, pb, max(1 - pa - pb, 0.0)])
            battles += [(f"m{i}", f"m{j}", "model_a")] * a + [(f"m{i}", f"m{j}", "model_b")] * b
            battles += [(f"m{i}", f"m{j}", "tie")] * (tied // 2) + [(f"m{i}", f"m{j}", "both_bad")] * (tied - tied // 2)
    done = subprocess.run(
        [str(arena_rank), str(ROOT / "tests" / "support" / "peer_arena_rank_bt.py")],
        input=json.dumps({"battles": battles}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads(done.stdout)
    ours_winner = {"both_bad": "tie (bothbad)"}
    rows = [PairCount(a, b, ours_winner.get(w, w), c) for (a, b, w), c in Counter(battles).items()]
    result = fit_ratings(rows, interval="sandwich", bootstrap_rounds=0)
    assert all(r.rank is not None for r in result.rows)
    for i, model in enumerate(theirs["models"]):
        r = result.row(model)
        assert r.rating == pytest.approx(theirs["ratings"][i], abs=0.01)
        width = r.ci_upper - r.ci_lower
        assert width == pytest.approx(theirs["upper"][i] - theirs["lower"][i], rel=0.01), model
