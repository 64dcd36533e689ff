"""Simulation: the report's exact last two lines, and inverse-propensity weighting removing design bias."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.special import expit

from arena.__main__ import main
from arena.pairing import ipw_weights
from arena.ratings import SCALE
from arena.simulate import SimulationConfig, _ipw_fit, run_simulation


def test_small_run_prints_the_two_lines_in_the_exact_format(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    plot = tmp_path / "curves.png"
    status = main(
        ["simulate", "--models", "6", "--seeds", "4", "--max-votes", "400", "--refit-every", "50", "--plot", str(plot)]
    )
    assert status == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"saving: -?\d+\.\d% \(95% CI \[-?\d+\.\d, -?\d+\.\d\]\)", lines[-2]), lines[-2]
    assert re.fullmatch(r"bias: active \d+\.\d uniform \d+\.\d", lines[-1]), lines[-1]
    svg = (tmp_path / "curves.svg").read_text(encoding="utf-8")
    assert svg.startswith("<svg") and svg.count("<polyline") == 2


def test_simulation_learns_the_truth() -> None:
    result = run_simulation(SimulationConfig(n_models=6, seeds=4, max_votes=1000, refit_every=100))
    for run in result.runs.values():
        assert run.spearman[:, -1].mean() > 0.8  # would fail if outcomes ignored the true strengths
        assert run.final_error.mean() < 80


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="--models"):
        run_simulation(SimulationConfig(n_models=2))


def test_ipw_removes_the_design_bias_of_a_misspecified_fit() -> None:
    """Ties at a fixed 40% rate fitted as half wins: the ratings depend on which pairs were compared.

    With expected (noise-free) counts, a design that favours the close pair gives different
    ratings from a uniform design; weighting each battle by 1/propensity gives back the uniform ones.
    """
    truth = np.array([0.0, 60.0, 400.0]) / SCALE
    score = 0.2 + 0.6 * expit(truth[:, None] - truth[None, :])  # expected score of i against j per battle
    pairs = [(0, 1), (0, 2), (1, 2)]
    design = np.array([0.8, 0.1, 0.1])  # active-like: the close pair 0-1 most
    uniform = np.full(3, 1 / 3)

    def counts(share: np.ndarray, weight: np.ndarray) -> np.ndarray:
        y = np.zeros((3, 3))
        for (i, j), s, w in zip(pairs, share, weight, strict=True):
            y[i, j] = 9000 * s * w * score[i, j]
            y[j, i] = 9000 * s * w * score[j, i]
        return y

    target = _ipw_fit(counts(uniform, np.ones(3)))
    naive = _ipw_fit(counts(design, np.ones(3)))
    weighted = _ipw_fit(counts(design, ipw_weights(design, uniform)))
    assert np.abs(naive - target).max() > 1  # the design shifts a misspecified fit...
    assert weighted == pytest.approx(target, abs=1e-3)  # ...and 1/propensity shifts it back


def test_ipw_weights_refuse_missing_propensities() -> None:
    with pytest.raises(ValueError, match="propensity"):
        ipw_weights(np.array([0.5, 0.0]), np.array([0.5, 0.5]))
