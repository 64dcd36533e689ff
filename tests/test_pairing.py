"""Pairing: distinct models, weights honoured, pools kept apart, never NaN on zero weights."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from arena.pairing import NotEnoughModels, draw_pair
from arena.registry import ModelSpec


def spec(
    name: str, weight: float = 1.0, kind: str = "chat", enabled: bool = True, continuation: bool | None = None
) -> ModelSpec:
    return ModelSpec(
        name=name,
        backend="tgi",
        url="http://127.0.0.1:1",
        weight=weight,
        kind=kind,
        enabled=enabled,
        continuation=continuation,
    )


def test_two_distinct_models_and_both_sides() -> None:
    rng = np.random.default_rng(1)
    models = [spec("a"), spec("b"), spec("c")]
    seen_first = Counter()
    for _ in range(600):
        p = draw_pair(models, rng)
        assert p.model_a != p.model_b
        seen_first[p.model_a] += 1
    assert set(seen_first) == {"a", "b", "c"}
    assert min(seen_first.values()) > 150  # uniform by default


def test_zero_or_missing_weights_fall_back_to_uniform() -> None:
    rng = np.random.default_rng(2)
    models = [spec("a", 0.0), spec("b", 0.0), spec("c", 0.0)]
    pairs = Counter(frozenset((p.model_a, p.model_b)) for p in (draw_pair(models, rng) for _ in range(300)))
    assert len(pairs) == 3
    # one positive weight is not enough to make a pair either: uniform again
    models = [spec("a", 1.0), spec("b", 0.0), spec("c", 0.0)]
    assert len({frozenset((p.model_a, p.model_b)) for p in (draw_pair(models, rng) for _ in range(300))}) == 3


def test_weights_shift_the_draw_and_propensity_is_a_probability() -> None:
    rng = np.random.default_rng(3)
    models = [spec("heavy", 8.0), spec("b"), spec("c")]
    draws = [draw_pair(models, rng) for _ in range(3000)]
    freq = Counter(frozenset((p.model_a, p.model_b)) for p in draws)
    assert freq[frozenset(("b", "c"))] < freq[frozenset(("heavy", "b"))] / 3
    # The stored propensity matches the observed frequency of each pair.
    for p in draws[:20]:
        observed = freq[frozenset((p.model_a, p.model_b))] / len(draws)
        assert p.propensity == pytest.approx(observed, abs=0.03)


def test_base_models_only_meet_base_models_and_disabled_never_play() -> None:
    """With chat models kept out of continuation battles, base only meets base."""
    rng = np.random.default_rng(4)
    models = [
        spec("c1", continuation=False),
        spec("c2", continuation=False),
        spec("b1", kind="base"),
        spec("b2", kind="base"),
        spec("off", enabled=False),
    ]
    for _ in range(300):
        p = draw_pair(models, rng)
        assert "off" not in (p.model_a, p.model_b)
        kinds = {m.kind for m in models if m.name in (p.model_a, p.model_b)}
        assert kinds == {p.pool}


@pytest.mark.parametrize("strategy", ["uniform", "weighted", "active"])
def test_continuation_battles_pair_a_base_model_with_chat_models(strategy: str) -> None:
    """A lone base model meets the chat models that complete raw text; two chat models never meet there."""
    from arena.pairing import PairSampler

    rng = np.random.default_rng(6)
    models = [spec("c1"), spec("c2"), spec("c3", continuation=False), spec("b", kind="base")]
    seen = Counter()
    for _ in range(600):
        p = PairSampler(strategy).draw(models, rng)  # type: ignore[arg-type]
        pair = {p.model_a, p.model_b}
        if p.pool == "base":
            assert "b" in pair and "c3" not in pair
        else:
            assert "b" not in pair
        seen.update(pair)
    # Pools by their number of pairs: chat has 3, base 2 (b-c1, b-c2): b plays in ~2/5 of draws.
    assert seen["b"] == pytest.approx(600 * 2 / 5, rel=0.2)


def test_unpairable_models_are_named() -> None:
    from arena.pairing import can_pair, unpairable

    # One chat model that completes raw text and one base model can play (a continuation battle).
    assert can_pair([spec("c1"), spec("b", kind="base")])
    assert not can_pair([spec("c1", continuation=False), spec("b", kind="base")])

    assert unpairable([spec("c1", continuation=False), spec("c2", continuation=False), spec("b", kind="base")]) == ["b"]
    assert unpairable([spec("c1"), spec("c2"), spec("b", kind="base")]) == []
    assert unpairable([spec("c1", continuation=False), spec("b", kind="base")]) == ["c1", "b"]


def test_every_model_of_the_shipped_roster_plays() -> None:
    """Issue 18: Baichuan-7B (the only base model) was drawn 0 times in 2,000 draws; now every model plays.

    The real pairing code on the shipped models.yaml, 2,000 draws per strategy (benchmarks/RESULTS.md).
    """
    from pathlib import Path

    from arena.pairing import PairSampler, unpairable
    from arena.registry import load_registry

    roster = list(load_registry(Path(__file__).parents[1] / "models.yaml", environ={}))
    assert unpairable(roster) == []
    for strategy in ("uniform", "weighted", "active"):
        rng = np.random.default_rng(18)
        sampler = PairSampler(strategy)  # type: ignore[arg-type]
        drawn = Counter()
        for _ in range(2000):
            p = sampler.draw(roster, rng)
            drawn.update((p.model_a, p.model_b))
        assert set(drawn) == {m.name for m in roster}
        # 10 possible pairs (6 chat, 4 continuation), each model in 4 of them: ~800 of 2,000 draws each.
        for name in drawn:
            assert 650 < drawn[name] < 950, (strategy, dict(drawn))


def test_not_enough_models() -> None:
    rng = np.random.default_rng(5)
    with pytest.raises(NotEnoughModels):
        draw_pair([spec("a", continuation=False), spec("b", kind="base")], rng)
    with pytest.raises(NotEnoughModels):
        draw_pair([spec("a"), spec("b")], rng, available=frozenset({"a"}))


# --- PairSampler: uniform / weighted / active ---------------------------------------------------

from arena.domain import PairCount  # noqa: E402
from arena.pairing import PairSampler  # noqa: E402
from arena.ratings import fit_ratings  # noqa: E402

STRATEGIES = ("uniform", "weighted", "active")


def _fitted_sampler(counts: list[PairCount], **kwargs: object) -> PairSampler:
    sampler = PairSampler("active", **kwargs)  # type: ignore[arg-type]
    sampler.update(fit_ratings(counts, interval="sandwich", bootstrap_rounds=0), counts)
    return sampler


def _ladder_counts() -> list[PairCount]:
    """a ~ b are close (50/50); both far above c and d (9 to 1); every pair has 40 battles."""
    rows = []
    for x, y, wx in (("a", "b", 20), ("a", "c", 36), ("a", "d", 36), ("b", "c", 36), ("b", "d", 36), ("c", "d", 20)):
        rows += [PairCount(x, y, "model_a", wx), PairCount(x, y, "model_b", 40 - wx)]
    return rows


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_respects_pools_health_and_disabled(strategy: str) -> None:
    rng = np.random.default_rng(6)
    models = [spec("c1"), spec("c2"), spec("c3"), spec("b1", kind="base"), spec("b2", kind="base")]
    models += [spec("off", enabled=False), spec("down")]
    sampler = PairSampler(strategy)  # type: ignore[arg-type]
    sampler.update(None, [])
    online = frozenset({"c1", "c2", "c3", "b1", "b2", "off"})
    seen = set()
    for _ in range(400):
        p = sampler.draw(models, rng, available=online)
        assert {p.model_a, p.model_b}.isdisjoint({"off", "down"})
        kinds = {m.kind for m in models if m.name in (p.model_a, p.model_b)}
        assert kinds == {"chat"} if p.pool == "chat" else "base" in kinds
        seen.add(frozenset((p.model_a, p.model_b)))
    # three chat pairs, the base pair, and each base model against each chat model (continuation)
    assert len(seen) == 3 + 1 + 6
    with pytest.raises(NotEnoughModels):
        sampler.draw(models, rng, available=frozenset({"c1", "off"}))


def test_active_prefers_overlapping_pairs_and_the_floor_holds() -> None:
    models = [spec(m) for m in "abcd"]
    sampler = _fitted_sampler(_ladder_counts(), floor=0.1, min_votes=0)
    dist = sampler.distribution(models)
    prob = {
        frozenset((dist.names[i], dist.names[j])): dist.probability[i, j]
        for i, j in zip(*np.nonzero(dist.probability), strict=True)
    }
    assert sum(prob.values()) == pytest.approx(1.0)
    assert len(prob) == 6
    # The unsure pairs (a-b, c-d) are drawn more than any settled one.
    assert min(prob[frozenset("ab")], prob[frozenset("cd")]) > 3 * prob[frozenset("ad")]
    assert min(prob.values()) >= 0.1 / 6 - 1e-12
    # Without a floor the settled pairs get almost nothing: the floor is what keeps them alive.
    bare = _fitted_sampler(_ladder_counts(), floor=0.0, min_votes=0).distribution(models)
    assert bare.probability[bare.names.index("a"), bare.names.index("d")] < 0.1 / 6


def test_propensities_are_exact_and_match_observed_frequencies() -> None:
    rng = np.random.default_rng(7)
    # Chat models out of continuation battles, so each name appears once in the distribution.
    models = [spec(m, continuation=False) for m in "abcd"] + [spec("x", kind="base"), spec("y", kind="base")]
    sampler = _fitted_sampler(_ladder_counts(), floor=0.1, min_votes=0)
    dist = sampler.distribution(models)
    assert dist.probability.sum() == pytest.approx(1.0)
    draws = [sampler.draw(models, rng) for _ in range(6000)]
    freq = Counter(frozenset((p.model_a, p.model_b)) for p in draws)
    for p in draws[:50]:
        i, j = sorted((dist.names.index(p.model_a), dist.names.index(p.model_b)))
        assert p.propensity == pytest.approx(dist.probability[i, j], rel=1e-9)
        assert p.propensity == pytest.approx(freq[frozenset((p.model_a, p.model_b))] / len(draws), abs=0.02)
    # Uniform pairing would give each of the 7 eligible pairs (6 chat, 1 base) 1/7.
    assert all(p.uniform_propensity == pytest.approx(1 / 7) for p in draws)
    # Propensities of the distinct pairs sum to 1 (every eligible pair accounted for).
    by_pair = {frozenset((p.model_a, p.model_b)): p.propensity for p in draws}
    assert len(by_pair) == 7
    assert sum(by_pair.values()) == pytest.approx(1.0)


def test_weighted_strategy_is_draw_pair() -> None:
    models = [spec("heavy", 8.0), spec("b"), spec("c")]
    a = [PairSampler("weighted").draw(models, np.random.default_rng(8)) for _ in range(1)]
    b = [draw_pair(models, np.random.default_rng(8)) for _ in range(1)]
    assert a == b


def test_new_model_gets_a_warm_up_boost() -> None:
    models = [spec(m) for m in "abcd"] + [spec("new")]
    # "new" has 10 of its 30 warm-up votes, level with a.
    counts = [*_ladder_counts(), PairCount("new", "a", "model_a", 5), PairCount("new", "a", "model_b", 5)]

    def odds(warmup_boost: float) -> float:
        """How much likelier the newcomer's pair with b is than the settled-but-unsure pair c-d."""
        d = _fitted_sampler(counts, floor=0.0, min_votes=30, warmup_boost=warmup_boost).distribution(models)
        k, b, c, e = (d.names.index(m) for m in ("new", "b", "c", "d"))
        return float(d.probability[min(k, b), max(k, b)] / d.probability[c, e])

    # 10 of 30 votes: a deficit of 2/3, so the pair's score is multiplied by 1 + 4 * 2/3.
    assert odds(4.0) == pytest.approx(odds(0.0) * (1 + 4 * 2 / 3), rel=1e-6)
    # A model the last fit has never seen (added since) is treated as unsettled and drawn most.
    fresh = _fitted_sampler(_ladder_counts(), floor=0.1, min_votes=30).distribution(models)
    k = fresh.names.index("new")
    assert fresh.probability[k, :].sum() + fresh.probability[:, k].sum() > 0.5


def test_sampler_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="strategy"):
        PairSampler("greedy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="floor"):
        PairSampler("active", floor=1.5)


def test_active_probabilities_follow_the_documented_score() -> None:
    """The active table equals floor/K + (1 - floor) * score/sum(score), score written from the docs.

    score_ij = E_i w_ij / W_i + E_j w_ij / W_j, with the pair weight
    w_ij = 2 Phi(-|d|/s) (1 - 1/sqrt(1 + s^2 p(1-p))), W_i = sum_k w_ik, and the need
    E_i = sum_j (2 m_ij - 1) Phi(-|d_ij|/s_ij), m_ij the places between i and j in the fitted order.
    """
    from scipy.stats import norm

    from arena.ratings import SCALE

    models = [spec(m) for m in "abcde"]
    # Uneven evidence, so the models' needs differ and the table is not proportional to w.
    counts = [
        *_ladder_counts(),
        PairCount("e", "a", "model_a", 6),
        PairCount("e", "a", "model_b", 4),
        PairCount("e", "c", "model_a", 9),
        PairCount("e", "c", "model_b", 3),
    ]
    fit = fit_ratings(counts, interval="sandwich", bootstrap_rounds=0)
    sampler = PairSampler("active", floor=0.2, min_votes=0)
    sampler.update(fit, counts)
    dist = sampler.distribution(models)
    names = dist.names
    theta = {r.model: r.rating / SCALE for r in fit.rows}
    var = {r.model: ((r.sandwich_upper - r.sandwich_lower) / (2 * 1.959963984540054 * SCALE)) ** 2 for r in fit.rows}
    place = {m: k for k, m in enumerate(sorted(names, key=lambda m: theta[m]))}
    weight, misorder = {}, {}
    for a in names:
        for b in names:
            if a != b:
                d, s2 = theta[a] - theta[b], var[a] + var[b]
                p = 1 / (1 + math.exp(-d))
                misorder[a, b] = norm.cdf(-abs(d) / math.sqrt(s2))
                weight[a, b] = 2 * misorder[a, b] * (1 - 1 / math.sqrt(1 + s2 * p * (1 - p)))
    need = {a: sum((2 * abs(place[a] - place[b]) - 1) * misorder[a, b] for b in names if b != a) for a in names}
    row = {a: sum(weight[a, b] for b in names if b != a) for a in names}
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    score = {}
    for i, j in pairs:
        a, b = names[i], names[j]
        score[i, j] = need[a] * weight[a, b] / row[a] + need[b] * weight[a, b] / row[b]
    total = sum(score.values())
    weight_total = sum(weight[names[i], names[j]] for i, j in pairs)
    plain = {(i, j): weight[names[i], names[j]] / weight_total for i, j in pairs}
    assert max(abs(score[k] / total - plain[k]) for k in pairs) > 0.01  # the need term matters here
    for i, j in pairs:
        assert dist.probability[i, j] == pytest.approx(0.2 / 10 + 0.8 * score[i, j] / total, rel=1e-9)


def test_the_table_is_computed_for_the_pools_eligible_models() -> None:
    """Needs and opponents' shares count only the eligible models of the pool (not other pools, not offline ones)."""
    chat = [spec(m, continuation=False) for m in "abcd"]
    counts = _ladder_counts()
    sampler = _fitted_sampler(counts, floor=0.1, min_votes=0)
    alone = sampler.distribution(chat)
    # A base pool next to it, and an offline chat model, leave the chat pool's table unchanged.
    roster = [*chat, spec("x", kind="base"), spec("y", kind="base"), spec("z")]
    with_base = sampler.distribution(roster, available=frozenset({*"abcd", "x", "y"}))
    ix = [with_base.names.index(m) for m in alone.names]
    chat_part = with_base.probability[np.ix_(ix, ix)]
    assert chat_part.sum() == pytest.approx(6 / 7)
    np.testing.assert_allclose(chat_part / chat_part.sum(), alone.probability, rtol=1e-12, atol=1e-15)
