"""What an event may be given: argument count, types and sizes, checked before Gradio touches them.

Gradio copies every argument of an event into the visitor's session (its per-session component
values) and hands it to the component's preprocessing before any arena code runs; a raw API call
can send any JSON for any argument of any event, private or not. :func:`make_input_check` builds
the check :class:`arena.ui.sessions.ArenaBlocks` runs first, on the raw arguments:

* as many arguments as the event has inputs (fewer made Gradio fail with ``"error": null``);
* a textbox takes a string (or nothing) of at most its ``max_length`` characters, every other
  component a string of at most :data:`MAX_CHOICE_CHARS` or a small JSON value;
* no lone surrogates (they cannot be encoded, so storing them failed with a blank error);
* the session belongs to the visitor sending the event (:class:`arena.ui.guard.SessionBinding`).

A refused event gets one plain message in the visitor's language and changes nothing. So a
session's copy of its inputs is bounded by the sum of these limits, whatever is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import gradio as gr

from arena import i18n
from arena.messages import Message
from arena.ui.guard import SessionBinding

__all__ = ["MAX_CHOICE_CHARS", "MAX_OTHER_BYTES", "make_input_check"]

MAX_CHOICE_CHARS = 200  # a model or slice name, a language code: anything picked from a list
MAX_OTHER_BYTES = 2048  # the JSON of any other argument (a browser-stored language choice)


def _text_problem(value: Any, limit: int) -> Message | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return Message("msg.bad_request")
    if len(value) > limit:
        return Message("msg.prompt_chars", {"length": len(value), "limit": limit})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return Message("msg.broken_text")
    return None


def check_argument(block: Any, value: Any) -> Message | None:
    """Why ``value`` cannot be an argument for ``block`` (what the visitor is told), or None."""
    if getattr(block, "stateful", False):
        return None  # Gradio ignores what is sent for a gr.State and uses the session's own
    if isinstance(block, gr.Textbox):
        return _text_problem(value, block.max_length or MAX_CHOICE_CHARS)
    if isinstance(block, gr.Dropdown):
        return _choice_problem(block, value)
    try:
        size = len(json.dumps(value, ensure_ascii=True))
    except (TypeError, ValueError):
        return Message("msg.bad_request")
    if size > MAX_OTHER_BYTES:
        return Message("msg.bad_request")
    if _has_surrogate(value):
        return Message("msg.broken_text")
    return None


def _choice_problem(block: gr.Dropdown, value: Any) -> Message | None:
    """A dropdown takes one of its choices (any short text where custom values are allowed)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_CHOICE_CHARS:
        return Message("msg.bad_request")
    if not block.allow_custom_value and value not in {choice[1] for choice in block.choices}:
        return Message("msg.bad_request")
    return _text_problem(value, MAX_CHOICE_CHARS)


def _has_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def make_input_check(
    *,
    language_of: Callable[[Any, Any], str],
    visitor_key: Callable[[str | None, Mapping[str, str]], str] | None = None,
    binding: SessionBinding | None = None,
) -> Callable[[Any, list[Any], Any, Any], None]:
    """The check :class:`ArenaBlocks` runs before each event (raises ``gr.Error`` to refuse it).

    ``language_of(state, request)`` is the visitor's language; ``visitor_key`` and ``binding`` bind
    each session to the visitor that first used it.
    """

    def refuse(problem: Message, state: Any, request: Any) -> gr.Error:
        language = language_of(state, request)
        text = i18n.render(problem, language)
        return gr.Error(text, title=i18n.text(language, "app.error_title"), print_exception=False)

    def check(fn: Any, inputs: list[Any], state: Any, request: Any) -> None:
        if binding is not None and visitor_key is not None and request is not None:
            session = getattr(request, "session_hash", None)
            client = getattr(request, "client", None)
            peer = getattr(client, "host", None)
            if session and not binding.claim(session, visitor_key(peer, request.headers)):
                raise refuse(Message("msg.other_connection"), state, request)
        blocks = list(getattr(fn, "inputs", []) or [])
        if len(inputs) < len(blocks):
            raise refuse(Message("msg.bad_request"), state, request)
        for block, value in zip(blocks, inputs, strict=False):
            problem = check_argument(block, value)
            if problem is not None:
                raise refuse(problem, state, request)

    return check
