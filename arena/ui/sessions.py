"""Keep each visitor session's memory in Gradio bounded.

Gradio keeps one ``SessionState`` per page session (``session_hash``): a copy of the page's
configuration plus every component a ``gr.update(...)`` rebuilt for that session. Two things make
that memory grow without bound in Gradio 6.31 (measured: ``benchmarks/soak.py``, see
benchmarks/RESULTS.md, "App memory under a soak"):

* **A stale copy per update cycle.** A property update (``gr.update(interactive=False)``) builds a
  new component for the session and files it under the original block's id. That copy gets a fresh
  id of its own, and the next time the component receives a plain value (a chat's messages, a
  prompt sent as input) Gradio files the copy a second time under *its own* id, where nothing ever
  looks it up or removes it. The arena's lock/settle events around every battle do exactly this, so
  every battle left a few components (with their JSON-schema config) behind in the session:
  about 0.1 MiB per battle.
* **Sessions are never forgotten.** Gradio drops a session only when more than
  ``state_session_capacity`` (10,000) exist; a closed tab's session stays.

:class:`ArenaBlocks` is ``gr.Blocks`` with one addition: after each event step it removes the
session's stale copies (entries the page itself does not have, and that no block of the page points
at any more), and about once a minute (or once per TTL, if shorter) it forgets
sessions idle for longer than ``ARENA_SESSION_TTL``. Both run on the server's event loop, inside
``process_api``, so no other code of Gradio's touches the same dictionaries at the same time. A
visitor whose session was forgotten simply starts afresh (terms notice, new battle).

The arena uses no ``gr.render``; blocks that rendering adds to a session would be pruned as well.

Three more hooks live here because they sit at the same places of Gradio's life cycle:
``checks`` run before each event's first step, on the raw arguments, before Gradio copies them
into the session (the input limits of :mod:`arena.ui.inputs`); ``unexpected`` turns an exception
no handler expected into a plain sentence for the visitor (Gradio sent ``"error": null``) after
logging it once for the operator; ``launch`` puts the
:class:`arena.ui.guard.RequestGuard` in front of Gradio's routes and turns off uvicorn's own
``X-Forwarded-For`` handling, so ``ARENA_TRUSTED_PROXY_HOPS`` is the only rule for who a visitor is.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from arena.ui.lean import LeanUpdates

__all__ = ["ArenaBlocks", "EventCheck", "prune_session"]

log = logging.getLogger(__name__)

_SWEEP_EVERY = 60.0  # seconds between sweeps for idle sessions (or the TTL, if shorter)

# (event function, raw arguments, session state, request): raises gr.Error to refuse the event.
EventCheck = Callable[[Any, list[Any], Any, Any], None]


@contextlib.contextmanager
def _no_uvicorn_proxy_headers() -> Iterator[None]:
    """uvicorn reads FORWARDED_ALLOW_IPS once, when Gradio builds its config inside ``launch``.

    By default it trusts the loopback and replaces the connecting address with the client-written
    X-Forwarded-For before any arena code runs: a forged header from 127.0.0.1 was a new visitor.
    An empty list trusts no peer, so ``request.client`` stays the real peer and
    ``arena.limits.client_ip`` alone applies ``ARENA_TRUSTED_PROXY_HOPS``.
    """
    before = os.environ.get("FORWARDED_ALLOW_IPS")
    os.environ["FORWARDED_ALLOW_IPS"] = ""
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FORWARDED_ALLOW_IPS", None)
        else:
            os.environ["FORWARDED_ALLOW_IPS"] = before


def prune_session(page_blocks: dict[int, Any], state: Any) -> int:
    """Remove from one ``SessionState`` the stale component copies; return how many.

    A copy filed under its own id is stale once the page's block points at a newer copy. The
    current copy stays (removing it too would make Gradio file it again, and rebuild its config,
    on every streamed update).
    """
    session_blocks: dict[int, Any] = state.blocks_config.blocks
    # Stale copies only appear as new keys, so a session that has not grown since the last look
    # costs one comparison (this runs on every streamed update).
    if len(session_blocks) <= max(len(page_blocks), getattr(state, "_arena_pruned_size", 0)):
        return 0
    current = {id(session_blocks[key]) for key in page_blocks if key in session_blocks}
    stale = [key for key, block in session_blocks.items() if key not in page_blocks and id(block) not in current]
    for key in stale:
        del session_blocks[key]
        state.config_values.pop(key, None)
    state._arena_pruned_size = len(session_blocks)
    return len(stale)


class ArenaBlocks(LeanUpdates):
    """``gr.Blocks`` whose per-session memory stays bounded (see the module docstring).

    Outputs an event leaves unchanged cost nothing (:mod:`arena.ui.lean`).
    """

    def __init__(self, *args: Any, session_ttl: float = 3600.0, **kwargs: Any) -> None:
        # Files Gradio copied into its cache to serve (the leaderboard's downloads) are deleted an
        # hour after they were made, checked every 15 minutes; Gradio keeps them forever otherwise.
        kwargs.setdefault("delete_cache", (900, 3600))
        super().__init__(*args, **kwargs)
        self.session_ttl = session_ttl
        self._sweep_every = min(_SWEEP_EVERY, session_ttl) if session_ttl > 0 else _SWEEP_EVERY
        self._next_sweep = time.monotonic() + self._sweep_every
        self.checks: list[EventCheck] = []
        # ASGI middleware (class, keyword arguments) put in front of Gradio's routes at launch.
        self.middleware: list[tuple[Any, dict[str, Any]]] = []
        # The plain error a visitor gets for an exception no handler expected (state, request -> gr.Error).
        self.unexpected: Callable[[Any, Any], Exception] | None = None

    def launch(self, *args: Any, **kwargs: Any) -> Any:
        from fastapi.middleware import Middleware  # Gradio's app is a FastAPI app

        # Gradio 6's run history keeps every event's inputs and outputs (prompts, answers) in the
        # visitor's browser storage for its /runs page, and adds routes (a Hub bucket for signed-in
        # users) the arena does not use: a shared computer would keep the prompts. Off.
        kwargs.setdefault("run_history", False)
        app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
        app_kwargs["middleware"] = [
            *app_kwargs.get("middleware", []),
            *(Middleware(cls, **options) for cls, options in self.middleware),
        ]
        with _no_uvicorn_proxy_headers():
            return super().launch(*args, app_kwargs=app_kwargs, **kwargs)

    async def process_api(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        names = ("block_fn", "inputs", "state", "request", "iterator")
        given = {**dict(zip(names, args, strict=False)), **kwargs}
        if given.get("iterator") is None:  # an event's first step (later steps resume a generator)
            fn = given.get("block_fn")
            if isinstance(fn, int):
                fn = self.fns[fn]
            for check in self.checks:
                check(fn, given.get("inputs") or [], given.get("state"), given.get("request"))
        try:
            return await super().process_api(*args, **kwargs)
        except Exception as e:
            if self.unexpected is None or isinstance(e, gr.Error):
                raise
            # Logged once with its trace for the operator; the visitor gets a plain sentence, not
            # Gradio's "error": null.
            log.exception("unexpected error in an event")
            raise self.unexpected(given.get("state"), given.get("request")) from None
        finally:
            state = kwargs.get("state", args[2] if len(args) > 2 else None)
            if state is not None:
                prune_session(self.default_config.blocks, state)
            if self.session_ttl > 0 and time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + self._sweep_every
                self.forget_idle_sessions()

    def forget_idle_sessions(self, now: datetime.datetime | None = None) -> int:
        """Drop sessions unused for more than ``session_ttl`` seconds; return how many."""
        holder = getattr(self, "state_holder", None)
        if holder is None:  # not launched
            return 0
        cutoff = (now or datetime.datetime.now()) - datetime.timedelta(seconds=self.session_ttl)
        with holder.lock:
            idle = [sid for sid, used in holder.time_last_used.items() if used < cutoff]
            for sid in idle:
                holder.session_data.pop(sid, None)
                holder.time_last_used.pop(sid, None)
        if idle:
            log.info("forgot %d idle visitor sessions (%d remain)", len(idle), len(holder.session_data))
        return len(idle)
