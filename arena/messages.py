"""What the arena says to a person, as data: a catalog key and its parameters, not a sentence.

A :class:`Message` crosses the layers (service, limits, ratings, errors) unrendered; the UI renders
it in the visitor's language at its edge (:func:`arena.i18n.render`), the CLI and the logs in
English (``str(message)``). A key must exist in the English catalog when the message is made, and
the catalogs' parity test makes every key exist in all five languages, so a message cannot reach a
visitor untranslated.

    >>> str(Message("msg.turn_limit", {"n": 5}))
    'This battle has reached its limit of turns (5). Vote, or start a new round.'
    >>> from arena import i18n
    >>> i18n.render(Message("msg.turn_limit", {"n": 5}), "pl")
    'Ta runda osiągnęła limit tur (5). Oddaj głos albo zacznij nową rundę.'

Parameters are plain values (numbers, model or slice names) or messages themselves (rendered in
the same language), or tuples of messages (joined with the language's list separator).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

__all__ = ["Message", "Param"]

Param = Union[str, int, float, "Message", tuple["Message", ...]]
"""A message parameter: a plain value, a message, or messages to list."""


@dataclass(frozen=True)
class Message:
    """A catalog key (``msg.*``, ``note.*`` ...) and the values of its ``{placeholders}``.

    Raises
    ------
    KeyError
        When ``key`` is not in the English catalog, or ``params`` does not fill exactly its
        placeholders (a programming error; the tests that build every message catch it).
    """

    key: str
    params: Mapping[str, Param] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from arena import i18n  # the catalogs; imported here so this module stays a leaf

        template = i18n.catalog(i18n.REFERENCE).get(self.key)
        if template is None:
            raise KeyError(f"unknown message {self.key!r}: add it to arena/i18n/en.yaml and every other language")
        wanted = i18n.placeholders(template)
        if set(self.params) != wanted:
            raise KeyError(f"message {self.key!r} fills {sorted(wanted)}, was given {sorted(self.params)}")

    def __str__(self) -> str:
        """The message in English, for the CLI and the logs."""
        from arena import i18n

        return i18n.render(self, i18n.REFERENCE)
