"""Planted boards for the audit: a clean board and one defect each (seeded, so every run is the same)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

Row = tuple[str, str, str, str, int]
Battle = tuple[str, str, str, str]

STRENGTH = np.linspace(1.4, -1.4, 8)  # 0.4 log-odds (~70 points) between neighbours
MODELS = tuple(f"m{i}" for i in range(8))
TIE_THRESHOLD = 0.2  # Rao-Kupper: about 10% ties between equal models


def _outcome(rng: np.random.Generator, d: float, eta: float = TIE_THRESHOLD) -> str:
    pa = 1 / (1 + np.exp(-(d - eta)))
    pb = 1 / (1 + np.exp(-(-d - eta)))
    u = rng.random()
    if u < pa:
        return "model_a"
    if u < pa + pb:
        return "model_b"
    return "tie" if rng.random() < 0.7 else "tie (bothbad)"


def battles(
    n: int,
    seed: int,
    *,
    strength: np.ndarray = STRENGTH,
    models: tuple[str, ...] = MODELS,
    voters: int = 60,
    pick: Callable[[np.random.Generator], tuple[int, int]] | None = None,
    first_slot: float = 0.0,
    voter_of: Callable[[np.random.Generator], int] | None = None,
    judge: Callable[[np.random.Generator, int, int, int, float], str] | None = None,
) -> list[Battle]:
    """``n`` battles of uniformly drawn pairs, random sides, votes from ``voters`` equal voters."""
    rng = np.random.default_rng(seed)
    out: list[Battle] = []
    k = len(models)
    for _ in range(n):
        i, j = pick(rng) if pick else tuple(int(x) for x in rng.choice(k, 2, replace=False))
        v = voter_of(rng) if voter_of else int(rng.integers(voters))
        d = float(strength[i] - strength[j]) + first_slot
        w = judge(rng, i, j, v, d) if judge else _outcome(rng, d)
        out.append((models[i], models[j], w, f"voter-{v:03d}"))
    return out


def rows(bs: list[Battle]) -> list[Row]:
    return [(a, b, w, v, c) for (a, b, w, v), c in sorted(Counter(bs).items())]


def clean() -> list[Battle]:
    return battles(6000, 1)


def too_few_votes() -> list[Battle]:
    return battles(240, 2)


def first_slot_bias() -> list[Battle]:
    # The first slot is worth 0.6 log-odds, and m5 is shown first in 95% of its battles.
    def pick(rng: np.random.Generator) -> tuple[int, int]:
        i, j = (int(x) for x in rng.choice(8, 2, replace=False))
        if 5 in (i, j):
            other = j if i == 5 else i
            return (5, other) if rng.random() < 0.95 else (other, 5)
        return i, j

    return battles(6000, 3, pick=pick, first_slot=0.6)


def draw_prone_model() -> list[Battle]:
    # m6 is weak, but 80% of its battles end in a tie: split half and half, they lift it above m5.
    def judge(rng: np.random.Generator, i: int, j: int, v: int, d: float) -> str:
        if 6 in (i, j) and rng.random() < 0.8:
            return "tie"
        return _outcome(rng, d)

    strength = STRENGTH.copy()
    strength[6] = -3.0
    return battles(8000, 4, judge=judge, strength=strength)


def cycle() -> list[Battle]:
    # m1 beats m2, m2 beats m3, m3 beats m1, each 90% of the time; the rest is as usual.
    beats = {(1, 2), (2, 3), (3, 1)}

    def judge(rng: np.random.Generator, i: int, j: int, v: int, d: float) -> str:
        if (i, j) in beats:
            return "model_a" if rng.random() < 0.9 else "model_b"
        if (j, i) in beats:
            return "model_b" if rng.random() < 0.9 else "model_a"
        return _outcome(rng, d)

    strength = STRENGTH.copy()
    strength[1:4] = strength[2]
    return battles(6000, 5, judge=judge, strength=strength)


def two_pools() -> list[Battle]:
    # m0-m3 and m4-m7 never meet.
    def pick(rng: np.random.Generator) -> tuple[int, int]:
        side = 4 * int(rng.integers(2))
        i, j = (int(x) for x in rng.choice(4, 2, replace=False))
        return side + i, side + j

    return battles(6000, 6, pick=pick)


def lopsided_budget() -> list[Battle]:
    # m0 takes part in 80% of the battles; the rest share the remainder.
    def pick(rng: np.random.Generator) -> tuple[int, int]:
        if rng.random() < 0.8:
            other = 1 + int(rng.integers(7))
            return (0, other) if rng.random() < 0.5 else (other, 0)
        i, j = (int(x) for x in rng.choice(np.arange(1, 8), 2, replace=False))
        return i, j

    return battles(6000, 7, pick=pick)


def power_voters() -> list[Battle]:
    # Three voters cast 70% of the votes, each with strong tastes of their own.
    taste = np.random.default_rng(80).normal(0, 0.3, (3, 8))

    def voter_of(rng: np.random.Generator) -> int:
        return int(rng.integers(3)) if rng.random() < 0.7 else 3 + int(rng.integers(60))

    def judge(rng: np.random.Generator, i: int, j: int, v: int, d: float) -> str:
        if v < 3:
            d += taste[v, i] - taste[v, j]
        return _outcome(rng, d)

    return battles(6000, 8, voter_of=voter_of, judge=judge)


def loud_voter() -> list[Battle]:
    # One voter casts 15% of the votes and always picks m7, the weakest, when it is on screen.
    def voter_of(rng: np.random.Generator) -> int:
        return 0 if rng.random() < 0.15 else 1 + int(rng.integers(80))

    def judge(rng: np.random.Generator, i: int, j: int, v: int, d: float) -> str:
        if v == 0 and 7 in (i, j):
            return "model_a" if i == 7 else "model_b"
        return _outcome(rng, d)

    return battles(6000, 9, voter_of=voter_of, judge=judge)


# Four models whose win rates no Bradley-Terry model fits: m0 loses to m1 head to head but crushes
# m2 and m3, which m1 only edges. P(row model beats column model):
ADAPTIVE_WINS = {(0, 1): 0.4, (0, 2): 0.9, (0, 3): 0.95, (1, 2): 0.6, (1, 3): 0.7, (2, 3): 0.55}
ADAPTIVE_DESIGN = (0.5, 0.1, 0.1, 0.1, 0.1, 0.1)  # each pair's propensity; uniform pairing: 1/6 each


def adaptive_pairing(n: int = 4000, seed: int = 12) -> tuple[list[Battle], list[float]]:
    """The battles of an active-like pairing that draws the close pair m0-m1 half the time, and each
    battle's propensity (what uniform pairing would have given it is 1/6).

    Unweighted, the many m0-m1 battles decide the top (m1 first, ~25 points ahead); weighted back to
    a uniform design (1/6 / propensity), m0's wins over m2 and m3 count as much and m0 comes first.
    """
    rng = np.random.default_rng(seed)
    pairs = list(ADAPTIVE_WINS)
    out: list[Battle] = []
    propensities: list[float] = []
    for _ in range(n):
        k = int(rng.choice(len(pairs), p=ADAPTIVE_DESIGN))
        i, j = pairs[k]
        p_i = ADAPTIVE_WINS[i, j]
        if rng.random() < 0.5:
            i, j, p_i = j, i, 1 - p_i  # random sides
        winner = "model_a" if rng.random() < p_i else "model_b"
        out.append((MODELS[i], MODELS[j], winner, f"voter-{int(rng.integers(60)):03d}"))
        propensities.append(ADAPTIVE_DESIGN[k])
    return out, propensities


def weighted_rows(bs: list[Battle], weights: list[float]) -> tuple[list[Row], list[float]]:
    """:func:`rows` and each row's sum of the battles' weights (as ``Store.voter_counts(weighted=True)``)."""
    sums: dict[Battle, float] = {}
    for b, w in zip(bs, weights, strict=True):
        sums[b] = sums.get(b, 0.0) + w
    out = rows(bs)
    return out, [sums[r[:4]] for r in out]


VERBOSITY = (80, 60, 40, 20, 400, 300, 200, 100)  # words per answer: the weaker half talks more


def answer(words: int, rng: np.random.Generator, markdown: bool = False) -> str:
    body = " ".join("word" for _ in range(max(1, int(words * rng.uniform(0.8, 1.2)))))
    if markdown:
        return f"## Answer\n\n- **first** point\n- second point\n\n{body}"
    return body


def verbose_answers(
    n: int = 4000, seed: int = 10, style_weight: float = 1.2
) -> list[tuple[str, str, str, str, str, str]]:
    """Longer answers win: the vote adds ``style_weight`` times the normalised length difference."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        i, j = (int(x) for x in rng.choice(8, 2, replace=False))
        text_a, text_b = answer(VERBOSITY[i], rng), answer(VERBOSITY[j], rng)
        la, lb = len(text_a.split()), len(text_b.split())
        d = float(STRENGTH[i] - STRENGTH[j]) + style_weight * (la - lb) / (la + lb)
        out.append((MODELS[i], MODELS[j], _outcome(rng, d), f"voter-{int(rng.integers(60)):03d}", text_a, text_b))
    return out


def plain_answers(n: int = 4000, seed: int = 11) -> list[tuple[str, str, str, str, str, str]]:
    """The same verbosity, but votes that ignore it."""
    return verbose_answers(n, seed, style_weight=0.0)
