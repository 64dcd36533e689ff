"""Interface translations: the catalogs in arena/i18n/*.yaml, language negotiation, rendering messages.

Each catalog is a flat mapping ``key -> text`` with ``{name}`` placeholders; ``en.yaml`` is the
reference and every other file has exactly its keys and placeholders (``tests/test_i18n.py``).
What the service says to a visitor (errors, notices, limits' refusals, the notes of a ratings fit)
arrives here as a :class:`~arena.messages.Message` (``msg.*``, ``note.*`` keys and parameters),
never as an English sentence, and :func:`render` puts it in the visitor's language.

No Gradio here: the UI calls :func:`text` and :func:`render` at its edge.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import yaml

from arena.messages import Message

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "catalog",
    "negotiate",
    "placeholders",
    "render",
    "text",
]

CATALOG_DIR = Path(__file__).resolve().parent

LANGUAGES: tuple[str, ...] = ("en", "zh-TW", "zh-CN", "ja", "pl")
"""The interface languages, in the order the language selector lists them."""

DEFAULT_LANGUAGE = "en"
REFERENCE = "en"

# Browser tags that name a script or region rather than one of our codes (BCP 47, lower-cased).
_ALIASES = {
    "zh": "zh-CN",
    "zh-hans": "zh-CN",
    "zh-cn": "zh-CN",
    "zh-sg": "zh-CN",
    "zh-my": "zh-CN",
    "zh-hant": "zh-TW",
    "zh-tw": "zh-TW",
    "zh-hk": "zh-TW",
    "zh-mo": "zh-TW",
}


@cache
def catalog(language: str) -> Mapping[str, str]:
    """The translations of one language (read once).

    Raises
    ------
    KeyError
        For a language that has no catalog file.
    """
    if language not in LANGUAGES:
        raise KeyError(f"no translations for {language!r}; the languages are {', '.join(LANGUAGES)}")
    data = yaml.safe_load((CATALOG_DIR / f"{language}.yaml").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{language}.yaml must be a mapping of keys to texts")
    return {str(k): str(v) for k, v in data.items()}


def text(language: str, key: str, /, **values: object) -> str:
    """The text of ``key`` in ``language`` (English if the language lacks it), placeholders filled.

    Raises
    ------
    KeyError
        When ``key`` is not in the English catalog (a programming error: tests catch it).
    """
    reference = catalog(REFERENCE)
    if key not in reference:
        raise KeyError(f"unknown interface text {key!r}: add it to arena/i18n/en.yaml and every other language")
    chosen = catalog(language) if language in LANGUAGES else reference
    template = chosen.get(key, reference[key])
    return template.format(**values) if values else template


def render(message: Message, language: str) -> str:
    """A :class:`~arena.messages.Message` in ``language`` (English where the language lacks the key).

    Parameters that are messages are rendered in the same language; a tuple of messages is joined
    with the language's ``format.list_separator``.
    """
    values: dict[str, object] = {}
    for name, value in message.params.items():
        if isinstance(value, tuple):
            values[name] = text(language, "format.list_separator").join(render(m, language) for m in value)
        elif isinstance(value, Message):
            values[name] = render(value, language)
        else:
            values[name] = value
    return text(language, message.key, **values)


def placeholders(template: str) -> set[str]:
    """The ``{names}`` a template fills in."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def normalise(tag: str | None) -> str | None:
    """Our language code for a browser or operator tag (``pl-PL`` -> ``pl``, ``zh-HK`` -> ``zh-TW``)."""
    if not tag:
        return None
    tag = tag.strip().replace("_", "-").lower()
    for code in LANGUAGES:
        if tag == code.lower():
            return code
    if tag in _ALIASES:
        return _ALIASES[tag]
    parts = tag.split("-")
    if parts[0] == "zh":
        # zh-Hant-HK, zh-Hans-CN: the script decides.
        if "hant" in parts[1:]:
            return "zh-TW"
        return "zh-CN"
    for code in LANGUAGES:
        if parts[0] == code.lower():
            return code
    return None


def negotiate(accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """The interface language for an ``Accept-Language`` header (``"pl-PL,pl;q=0.9,en;q=0.8"``).

    The highest-weighted tag we have wins; ``default`` when none matches.
    """
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        match = re.search(r"q=([0-9.]+)", params)
        if match:
            try:
                weight = float(match.group(1))
            except ValueError:
                weight = 0.0
        code = normalise(tag)
        if code is not None and weight > 0:
            ranked.append((-weight, i, code))
    return sorted(ranked)[0][2] if ranked else default
