"""Every interface text the page shows, bound to the component property it fills, in any language.

Components never get a literal label: :meth:`Texts.bind` sets the property from a catalog key
(``arena/i18n/*.yaml``) and remembers the binding, so :meth:`Texts.updates` can re-render the
whole page in another language when the visitor switches, and tests can check that every visible
text came through a key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import gradio as gr
from gradio.blocks import Block

from arena import i18n
from arena.errors import message_of

__all__ = ["Texts", "Visitor", "error", "message", "refusal", "warning"]

B = TypeVar("B", bound=Block)
Render = Callable[[str], str]


@dataclass
class Visitor:
    """One page session's choices (kept in ``gr.State``, never sent to the browser)."""

    language: str
    accepted_terms: bool = False


class Texts:
    """The bindings of one page: (component, property) -> text in a given language."""

    def __init__(self, default_language: str) -> None:
        self.default = default_language
        self.bindings: list[tuple[Block, str, Render]] = []

    def t(self, language: str, key: str, /, **values: object) -> str:
        return i18n.text(language, key, **values)

    def bind(self, block: B, /, **props: str | Render) -> B:
        """Fill ``block``'s properties from catalog keys (or renderers ``language -> text``)."""
        for prop, source in props.items():
            render: Render = source if callable(source) else _key_renderer(source)
            setattr(block, prop, render(self.default))
            self.bindings.append((block, prop, render))
        return block

    def bound(self) -> set[tuple[int, str]]:
        """(block id, property) of every bound text (for tests)."""
        return {(block._id, prop) for block, prop, _ in self.bindings}

    def updates(self, language: str) -> dict[Block, Any]:
        """Updates that re-render every bound text in ``language``."""
        props: dict[Block, dict[str, Any]] = {}
        for block, prop, render in self.bindings:
            props.setdefault(block, {})[prop] = render(language)
        # A text that is the block's value (a Markdown, a button's label) travels as a plain value:
        # Gradio rebuilds the component for any property update, a plain value it only renders.
        return {
            block: values["value"] if set(values) == {"value"} else gr.update(**values)
            for block, values in props.items()
        }

    @property
    def blocks(self) -> list[Block]:
        return list(dict.fromkeys(block for block, _, _ in self.bindings))


def _key_renderer(key: str) -> Render:
    i18n.text(i18n.REFERENCE, key)  # fails at build time for an unknown key

    def render(language: str) -> str:
        return i18n.text(language, key)

    return render


def message(language: str, error: BaseException) -> str:
    """The visitor-facing text of ``error`` in ``language`` (its :class:`~arena.messages.Message` rendered)."""
    return i18n.render(message_of(error), language)


def error(language: str, err: BaseException) -> gr.Error:
    """A ``gr.Error`` for ``err`` in the visitor's language (raise it ``from None``)."""
    return refusal(language, message(language, err))


def refusal(language: str, text: str) -> gr.Error:
    """A ``gr.Error`` showing ``text`` (already in ``language``) under a title in ``language``.

    Every error the page raises goes through here: Gradio's own title would say "Error" in English.
    """
    return gr.Error(text, title=i18n.text(language, "app.error_title"), print_exception=False)


def warning(language: str, text: str) -> None:
    """Show ``text`` (already in ``language``) as a warning toast titled in ``language``."""
    gr.Warning(text, title=i18n.text(language, "app.warning_title"))
