"""Chat text made inert before the Chatbot renders it: no raw HTML elements, no images.

The Chatbot renders Markdown and sanitises HTML against scripts, but it still builds the elements
a text spells out: ``<img src="https://tracker/...">`` or ``![](https://tracker/...)`` made the
visitor's browser fetch a third party's image (a beacon that reports the visitor), ``<form>``
drew a form. Prompts and answers are text, so :func:`inert` writes every ``<`` outside code as
the entity ``&lt;`` (the reader sees the same character, the renderer no tag) and turns image
syntax ``![alt](url)`` into text (``!&#91;``: the reader sees ``![alt](url)``, nothing is loaded).
Code (fenced blocks and inline spans) is left exactly as written, where Markdown already shows
``<`` and ``![`` literally. The page's content security policy (:mod:`arena.ui.guard`) is the
second wall: images from the arena's own origin only, no form submissions.
"""

from __future__ import annotations

import re

__all__ = ["inert"]

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_TICKS = re.compile(r"`+")


def inert(text: str) -> str:
    """``text`` with HTML tags and images outside code neutralised (see the module docstring)."""
    if "<" not in text and "![" not in text:
        return text
    out: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        opening = _FENCE.match(line)
        if fence is not None:
            out.append(line)
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            continue
        if opening:
            fence = opening.group(1)
            out.append(line)
            continue
        out.append(_inline(line))
    return "".join(out)


def _inline(line: str) -> str:
    """One line outside fenced code: inline code spans kept, the rest made inert."""
    out: list[str] = []
    pos = 0
    while True:
        start = _TICKS.search(line, pos)
        if start is None:
            break
        run = start.group(0)
        # A span closes at the next run of exactly as many backticks.
        end = next((m for m in _TICKS.finditer(line, start.end()) if m.group(0) == run), None)
        if end is None:
            break
        out.append(_plain(line[pos : start.start()]))
        out.append(line[start.start() : end.end()])
        pos = end.end()
    out.append(_plain(line[pos:]))
    return "".join(out)


def _plain(text: str) -> str:
    return text.replace("<", "&lt;").replace("![", "!&#91;")
