"""Simulation: the report's exact last two lines, and inverse-propensity weighting removing design bias."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.special import expit

from arena.__main__ import main
from arena.domain import PairCount
from arena.pairing import ipw_weights
from arena.ratings import SCALE, RatingsResult, fit_ratings
from arena.simulate import SimulationConfig, format_report, run_simulation


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
        # Reaching the target first can only come before (or with) staying there from then on.
        assert (run.votes_to_first <= run.votes_to_target).all()
        for s in range(4):
            first = run.votes_to_first[s]
            if first < 1000:
                c = int(np.flatnonzero(run.checkpoints == first)[0])
                assert run.spearman[s, c] >= 0.95 and (run.spearman[s, :c] < 0.95).all()
    assert any(line.startswith("first reach") for line in format_report(result))


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="--models"):
        run_simulation(SimulationConfig(n_models=2))


def test_ipw_removes_the_design_bias_of_a_misspecified_fit() -> None:
    """Ties at a fixed 40% rate fitted as half wins: the ratings depend on which pairs were compared.

    The same block of outcomes per pair, repeated 8:1:1 (a design that favours the close pair),
    gives different ratings from a uniform 1:1:1 design; passing each row's inverse-propensity
    weight sum to the real fit gives back the uniform ones.
    """
    truth = np.array([0.0, 60.0, 400.0]) / SCALE
    pairs = [(0, 1), (0, 2), (1, 2)]
    names = ["m0", "m1", "m2"]

    def rows(repeat: tuple[int, ...]) -> list[PairCount]:
        out = []
        for (i, j), r in zip(pairs, repeat, strict=True):
            i_wins = round(600 * expit(truth[i] - truth[j]))  # of 1000 battles: 400 ties, 600 decided
            out += [
                PairCount(names[i], names[j], "model_a", r * i_wins),
                PairCount(names[i], names[j], "model_b", r * (600 - i_wins)),
                PairCount(names[i], names[j], "tie", r * 400),
            ]
        return out

    def ratings(result: RatingsResult) -> np.ndarray:
        return np.array([result.row(m).rating for m in names])

    design = np.array([0.8, 0.1, 0.1])  # active-like: the close pair 0-1 most
    w_pair = ipw_weights(design, np.full(3, 1 / 3))
    skewed = rows((8, 1, 1))
    weights = [w_pair[k // 3] * r.count for k, r in enumerate(skewed)]
    target = ratings(fit_ratings(rows((1, 1, 1)), interval="sandwich", bootstrap_rounds=0))
    naive = ratings(fit_ratings(skewed, interval="sandwich", bootstrap_rounds=0))
    weighted = ratings(fit_ratings(skewed, interval="sandwich", bootstrap_rounds=0, weights=weights))
    assert np.abs(naive - target).max() > 1  # the design shifts a misspecified fit...
    assert weighted == pytest.approx(target, abs=1e-6)  # ...and 1/propensity shifts it back


def test_ipw_weights_refuse_missing_propensities() -> None:
    with pytest.raises(ValueError, match="propensity"):
        ipw_weights(np.array([0.5, 0.0]), np.array([0.5, 0.5]))


def test_the_simulation_refreshes_the_sampler_as_often_as_the_service() -> None:
    from arena.config import Settings

    settings = Settings.load({})
    cfg = SimulationConfig()
    assert cfg.refit_every == settings.pairing_refresh_votes
    assert cfg.floor == settings.pairing_floor
    assert cfg.min_votes == settings.pairing_warmup_votes


def test_the_report_gives_the_inverse_propensity_weighted_error() -> None:
    result = run_simulation(SimulationConfig(n_models=5, seeds=3, max_votes=300, refit_every=100))
    active = result.runs["active"]
    uniform = result.runs["uniform"]
    # Uniform pairing gives every battle weight 1: its weighted fit is its plain fit.
    assert uniform.final_error_ipw == pytest.approx(uniform.final_error, abs=1e-6)
    assert np.all(np.isfinite(active.final_error_ipw)) and np.all(active.final_error_ipw < 200)
    assert any(line.startswith("active: final |error|") for line in format_report(result))


def test_the_oracle_design_is_a_true_minimum_and_races_like_any_sampler() -> None:
    """benchmarks/oracle_pairing.py: the gradient is right, the design beats uniform on its objective, it races."""
    from arena.simulate import race, saving, true_ratings
    from benchmarks.oracle_pairing import FixedDesign, RankError, centred, oracle_design

    cfg = SimulationConfig(n_models=6, seeds=4, max_votes=600, refit_every=50, spread=200.0)
    truth = true_ratings(cfg)
    theta = centred(truth[0])
    loss_of = RankError(theta)
    rng = np.random.default_rng(3)
    w = rng.random(15)
    w /= w.sum()
    _, grad = loss_of(w, 300.0)
    step = 1e-6 * np.eye(15)
    numeric = [(loss_of(w + e, 300.0)[0] - loss_of(w - e, 300.0)[0]) / 2e-6 for e in step]
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-8)
    design = oracle_design(truth[0], 300.0)
    assert design.sum() == pytest.approx(1.0) and (design >= 0).all()
    assert loss_of(design, 300.0)[0] < 0.97 * loss_of(np.full(15, 1 / 15), 300.0)[0]
    # The best and the worst model, whose order is the clearest, meet less often than uniformly.
    iu, ju = np.triu_indices(6, k=1)
    extreme = int(
        np.flatnonzero((iu == min(theta.argmax(), theta.argmin())) & (ju == max(theta.argmax(), theta.argmin())))[0]
    )
    assert design[extreme] < 1 / 15
    designs = [oracle_design(row, 300.0) for row in truth]
    uniform = race(cfg, "uniform", truth, np.random.default_rng(1))
    oracle = race(cfg, "oracle", truth, np.random.default_rng(2), samplers=[FixedDesign(d, 0.0) for d in designs])
    assert oracle.strategy == "oracle" and oracle.spearman[:, -1].mean() > 0.7
    pct, (lo, hi) = saving(cfg, oracle, uniform)
    # The documented definition: the reduction of the mean votes, not the mean of per-arena reductions.
    assert pct == pytest.approx(100 * (1 - oracle.votes_to_target.mean() / uniform.votes_to_target.mean()))
    assert lo < hi
