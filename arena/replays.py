"""Is a prompt a replay of another? (side-by-side replays of an anonymous prompt give the pair away)

Near-greedy models answer the same prompt the same way twice, so a visitor who sends an anonymous
battle's prompt again in side-by-side mode (models named) can match the answers and know who is
who before voting. The service stores the prompts of side-by-side turns and, at an anonymous vote,
compares them with the battle's own prompts (see SECURITY.md, "Side-by-side replays").

Pure functions, no I/O: :func:`fingerprint` is what is stored, :func:`is_replay` compares two.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from difflib import SequenceMatcher

__all__ = ["FINGERPRINT_CHARS", "NEAR_MIN_CHARS", "NEAR_RATIO", "fingerprint", "is_replay", "matches_any"]

FINGERPRINT_CHARS = 2000
"""Longest fingerprint kept (characters); longer prompts are compared on their beginning."""
NEAR_RATIO = 0.9
"""Two fingerprints at least this similar (difflib ratio) count as the same prompt."""
NEAR_MIN_CHARS = 20
"""Shorter fingerprints must be equal: one changed letter of "hi there" is another prompt."""


def fingerprint(text: str) -> str:
    """The prompt reduced to what makes it the same prompt: NFKC, case-folded, letters and digits only.

    "Tell me about rivers!" and "tell me about  Rivers" give the same fingerprint.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if ch.isalnum())[:FINGERPRINT_CHARS]


def is_replay(first: str, second: str) -> bool:
    """Are two fingerprints the same prompt, or nearly (a word added, a typo fixed)?"""
    if not first or not second:
        return False
    if first == second:
        return True
    if min(len(first), len(second)) < NEAR_MIN_CHARS:
        return False
    matcher = SequenceMatcher(None, first, second, autojunk=False)
    # The cheap upper bounds first: most stored prompts are nothing alike.
    return (
        matcher.real_quick_ratio() >= NEAR_RATIO
        and matcher.quick_ratio() >= NEAR_RATIO
        and matcher.ratio() >= NEAR_RATIO
    )


def matches_any(prompts: Iterable[str], stored: Iterable[str]) -> bool:
    """Is any of ``prompts`` (raw text) a replay of any ``stored`` fingerprint?"""
    prints = [p for p in (fingerprint(t) for t in prompts) if p]
    return any(is_replay(p, s) for s in stored for p in prints)
