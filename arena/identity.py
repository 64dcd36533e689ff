"""Does an answer name the model that wrote it? (identity leaks spoil an anonymous vote)

Matching rules (documented in SECURITY.md):

* Text and names are NFKC-normalised and case-folded, so "BREEZE", "breeze" and full-width
  "Ｂｒｅｅｚｅ" all match ``Breeze``.
* A name containing Chinese or Japanese characters matches anywhere (those scripts have no spaces):
  ``活字`` matches inside ``我是活字模型``.
* Any other name matches as a whole word: it must not touch a Latin letter or digit on either
  side, so ``Dune`` does not match "dunes" or "Dunedin", but matches "Dune's" and "(dune)". Polish
  case endings are allowed after a name ("Bielika", "Bielikiem"), because a Polish model naming
  itself inflects its name. Spaces inside a name match any run of whitespace.
* The names of a model are its roster ``name``, its ``aliases``, and the served model id
  (``model``) with and without its organisation prefix. Names shorter than three characters are
  ignored (too many false alarms).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping

from arena.registry import ModelSpec

__all__ = ["IdentityMatcher", "identity_terms"]

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_WORD_CHAR = r"0-9a-z\u00c0-\u024f"
# Polish noun endings (genitive, dative, instrumental, locative, plural), longest first.
_POLISH_ENDINGS = ("ami", "ach", "owi", "iem", "ów", "em", "om", "ie", "a", "u", "y", "i", "e")
_MIN_LENGTH = 3
_MIN_CJK_LENGTH = 2  # one Han character is a common word; two already name something


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def identity_terms(spec: ModelSpec) -> tuple[str, ...]:
    """Every name that gives ``spec`` away, normalised, longest first."""
    names = [spec.name, *spec.aliases]
    if spec.model:
        names += [spec.model, spec.model.rsplit("/", 1)[-1]]
    terms = {_norm(n).strip() for n in names}
    kept = (t for t in terms if len(t) >= (_MIN_CJK_LENGTH if _CJK.search(t) else _MIN_LENGTH))
    return tuple(sorted(kept, key=lambda t: (-len(t), t)))


def _pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    parts = []
    endings = "|".join(_POLISH_ENDINGS)
    for term in terms:
        body = r"\s+".join(re.escape(word) for word in term.split())
        if _CJK.search(term):
            parts.append(body)
        else:
            parts.append(rf"(?<![{_WORD_CHAR}]){body}(?:{endings})?(?![{_WORD_CHAR}])")
    return re.compile("|".join(parts)) if parts else None


class IdentityMatcher:
    """Finds a model's own names in text; built once from the roster."""

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        self._patterns: Mapping[str, re.Pattern[str] | None] = {s.name: _pattern(identity_terms(s)) for s in specs}

    def names_itself(self, model: str, text: str) -> bool:
        """True when ``text`` contains one of ``model``'s names (unknown models never match)."""
        pattern = self._patterns.get(model)
        return bool(pattern and pattern.search(_norm(text)))
