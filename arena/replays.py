"""Is a prompt a replay of another? (side-by-side replays of an anonymous prompt give the pair away)

Near-greedy models answer the same prompt the same way twice, so a visitor who sends an anonymous
battle's prompt again in side-by-side mode (models named) can match the answers and know who is
who before voting. The service stores the prompts of side-by-side turns and, at an anonymous vote,
compares them with the battle's own prompts (see SECURITY.md, "Side-by-side replays").

Pure functions, no I/O: :func:`fingerprint` is what is stored, :func:`is_replay` compares two.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable
from difflib import SequenceMatcher

__all__ = [
    "CLOSE_CHARS",
    "FINGERPRINT_CHARS",
    "MAX_NEAR_CHECKS",
    "NEAR_MIN_CHARS",
    "NEAR_RATIO",
    "NEAR_SHINGLES",
    "fingerprint",
    "is_replay",
    "matches_any",
]

FINGERPRINT_CHARS = 2000
"""Longest fingerprint kept (characters); longer prompts are compared on their beginning."""
NEAR_RATIO = 0.9
"""Two short fingerprints at least this similar (difflib ratio) count as the same prompt."""
NEAR_MIN_CHARS = 20
"""Shorter fingerprints must be equal: one changed letter of "hi there" is another prompt."""
CLOSE_CHARS = 400
"""Fingerprints up to this long are compared with difflib; longer ones by their shingles alone."""
NEAR_SHINGLES = 0.8
"""Two long fingerprints sharing at least this share of their 4-character shingles are the same prompt."""
MAX_NEAR_CHECKS = 32
"""difflib comparisons one :func:`matches_any` call may make; past it, the call answers True."""
_GRAM = 4  # characters per shingle
_MIN_SHARED = 0.5  # short fingerprints sharing less of their shingles never reach difflib


def fingerprint(text: str) -> str:
    """The prompt reduced to what makes it the same prompt: NFKC, case-folded, letters and digits only.

    "Tell me about rivers!" and "tell me about  Rivers" give the same fingerprint.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if ch.isalnum())[:FINGERPRINT_CHARS]


def is_replay(first: str, second: str) -> bool:
    """Are two fingerprints the same prompt, or nearly (a word added, a typo fixed)?

    Short ones (up to :data:`CLOSE_CHARS`): difflib ratio of at least :data:`NEAR_RATIO`. Longer
    ones: at least :data:`NEAR_SHINGLES` of their 4-character shingles in common (Dice), in linear
    time. difflib's time grows with the product of the lengths (two unrelated 2,000-character
    prompts: 0.13 s; crafted ones 0.33 s) and a vote compares its battle's prompts with up to 500
    stored ones: ~24 minutes of CPU for one vote of a crafted visitor. Shingles accept a long prompt
    with a word added, a sentence changed or its parts reordered; they miss one with typos spread
    over more than ~5% of it (difflib allowed ~10%).
    """
    verdict = _cheap(first, second)
    return _close(first, second) if verdict is None else verdict


def _cheap(first: str, second: str) -> bool | None:
    """True or False when linear-time checks decide; None when only difflib can (short fingerprints)."""
    if not first or not second:
        return False
    if first == second:
        return True
    shorter, longer = sorted((len(first), len(second)))
    if shorter < NEAR_MIN_CHARS or 2 * shorter / (shorter + longer) < NEAR_RATIO:
        return False
    grams_a, grams_b = _grams(first), _grams(second)
    common = len(grams_a & grams_b)
    if longer > CLOSE_CHARS:
        return 2 * common / (len(grams_a) + len(grams_b)) >= NEAR_SHINGLES
    if common < _MIN_SHARED * min(len(grams_a), len(grams_b)):
        return False  # a near replay keeps most shingles (an edit removes at most four)
    return None


@functools.lru_cache(maxsize=4096)
def _grams(text: str) -> frozenset[str]:
    # Cached: one call compares each stored prompt with every turn of a battle.
    return frozenset(text[i : i + _GRAM] for i in range(max(1, len(text) - _GRAM + 1)))


def _close(first: str, second: str) -> bool:
    matcher = SequenceMatcher(None, first, second, autojunk=False)
    return matcher.quick_ratio() >= NEAR_RATIO and matcher.ratio() >= NEAR_RATIO


def matches_any(prompts: Iterable[str], stored: Iterable[str]) -> bool:
    """Is any of ``prompts`` (raw text) a replay of any ``stored`` fingerprint?

    Linear-time checks first; at most :data:`MAX_NEAR_CHECKS` difflib comparisons (of at most
    :data:`CLOSE_CHARS` characters each) per call. Past that the answer is True: only a visitor whose
    stored prompts are nearly alike but never quite the same gets there, and a True only flags that
    visitor's own vote or refuses their own side-by-side prompt.
    """
    prints = [p for p in (fingerprint(t) for t in prompts) if p]
    undecided: list[tuple[str, str]] = []
    for s in stored:
        for p in prints:
            verdict = _cheap(p, s)
            if verdict is True:
                return True
            if verdict is None:
                undecided.append((p, s))
    if len(undecided) > MAX_NEAR_CHECKS:
        return True
    return any(_close(p, s) for p, s in undecided)
