"""The only code that talks to model servers (TGI native, OpenAI-compatible, demo server)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import TypeVar

from arena.backends.base import Backend, Chunk, GenerationRequest, ServerInfo, Timeouts
from arena.errors import BackendTimeout, ConfigError
from arena.registry import ModelSpec

__all__ = [
    "BACKEND_KINDS",
    "Backend",
    "Chunk",
    "GenerationRequest",
    "ServerInfo",
    "Timeouts",
    "backend_class",
    "make_backend",
]

T = TypeVar("T")

BACKEND_KINDS: dict[str, str] = {
    "tgi": "arena.backends.tgi:TgiBackend",
    "openai": "arena.backends.openai_compat:OpenAIBackend",
}
"""Every backend kind models.yaml may name (``backend:``) -> ``module:class`` of its :class:`Backend`.

A new kind is one module with its class plus one entry here (docs/extending.md). Classes are
imported on first use, so importing arena.backends stays cheap (the openai client takes ~0.6 s).
"""


def backend_class(kind: str) -> type[Backend]:
    """The :class:`Backend` subclass of ``kind``.

    Raises
    ------
    ConfigError
        When ``kind`` is not in :data:`BACKEND_KINDS` (the message lists the known kinds).
    """
    try:
        path = BACKEND_KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown backend {kind!r}; the known kinds are {', '.join(BACKEND_KINDS)}") from None
    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Backend) and cls.kind == kind):
        raise TypeError(f"BACKEND_KINDS[{kind!r}] = {path!r} is not a Backend subclass with kind = {kind!r}")
    return cls


def make_backend(spec: ModelSpec, timeouts: Timeouts, environ: Mapping[str, str]) -> Backend:
    """Build the backend that ``spec.backend`` names, with its API key read from ``environ``.

    Raises
    ------
    ConfigError
        When ``spec.api_key_env`` names a variable that is not set, or the kind is unknown.
    """
    api_key: str | None = None
    if spec.api_key_env:
        if spec.api_key_env not in environ:
            raise ConfigError(
                f"model {spec.name!r}: api_key_env names {spec.api_key_env}, which is not set; "
                f"export {spec.api_key_env}=... or remove api_key_env from the model."
            )
        api_key = environ[spec.api_key_env]
    return backend_class(spec.backend)(spec, timeouts, api_key)


# How long a finished answer's response may take to end its body before its connection is dropped.
DRAIN_SECONDS = 0.5
# How long an idle pooled connection to a model server is kept. Below the 5 s after which uvicorn
# (vLLM, the demo servers) closes an idle connection, so a request is not sent on a connection the
# server is closing at that moment (the clients do not retry: that would resend a prompt).
KEEPALIVE_SECONDS = 2.0


async def _drain(lines: AsyncIterator[str], seconds: float = DRAIN_SECONDS) -> None:
    """Read what is left of a finished answer's response, so its connection goes back to the pool.

    A response closed before its body ends closes its connection too, and the next answer then opens
    a new one (a TCP handshake, and a TLS one for https): measured, every answer of both backends
    did so. Servers end the body right after the final event, so this returns at once; a server that
    does not is given ``seconds`` (the connection is then dropped, as before). Nothing raised while
    draining reaches the answer, which is already complete; a cancellation still propagates.
    """
    try:
        async with asyncio.timeout(seconds):
            while await anext(lines, None) is not None:
                pass
    except Exception:  # the answer is complete; the connection is merely not reused
        return


class _StreamClock:
    """Enforces the first-token, read and total timeouts around each await of one stream.

    Client libraries have a single read timeout; here the first wait (request sent -> first chunk)
    gets ``first_token``, later waits ``read``, and no wait runs past the ``total`` deadline.

    One timer per stream, not one per chunk: a step only notes when it finished (one clock read),
    and the timer, when it fires, either finds the deadline moved on by that progress and re-arms,
    or cancels the waiting step, which then raises :class:`BackendTimeout`. A ``asyncio.timeout``
    around every chunk cost a timer and a cancel scope per token, several per cent of the arena's
    CPU under load (py-spy, benchmarks/RESULTS.md). The timer only ever cancels a step that is
    waiting, so a stream left suspended between steps is never cancelled from here; its next step
    checks the deadline first. Call :meth:`close` when the stream ends.

    With ``pace`` > 0 the clock also spaces the stream's reads from the network once the answer
    flows (after ``first_seen``): a step that had to wait for data (it suspended) is a read, and the
    step after it first sleeps until ``pace`` seconds after that read. Tokens that arrive meanwhile
    wait in the socket and the next read takes them all, so the event loop's wake-up and the socket
    layers of the HTTP client are paid per read, not per token. Only the step right after a read
    sleeps, so the read's first line is passed on at once and the rest of what it brought waits
    that one rest: the first token is never held back, a later one waits up to two paces (one
    before the read, one after it), an answer's end about one and a half on average. Sleeping
    only when the buffer runs dry would wait with the socket already being read, one wake-up per
    token again: measured, that saved nothing. (Measured: 60 answers streamed at once by one
    otherwise idle process cost 40.6 ms of CPU each read token by token, ~21 ms read every 0.1 s;
    see benchmarks/RESULTS.md for the arena.)
    """

    def __init__(self, timeouts: Timeouts, pace: float = 0.0) -> None:
        self.timeouts = timeouts
        self.pace = pace
        self._rest = False  # the latest step waited for the network: the next one sleeps first
        self._loop = asyncio.get_running_loop()
        self.started = self._loop.time()
        self.last = self.started  # when the latest step finished
        self.first_seen = False
        self._timer: asyncio.TimerHandle | None = None
        self._waiting: asyncio.Task[object] | None = None
        self._fired: str | None = None

    def _deadline(self) -> float:
        """When the current wait runs out (called per chunk: no formatting here)."""
        t = self.timeouts
        when = self.last + t.read if self.first_seen else self.started + t.first_token
        return min(when, self.started + t.total)

    def _expired(self) -> str:
        """What ran out, in words, once the deadline has passed."""
        t = self.timeouts
        if self._deadline() >= self.started + t.total:
            return f"answer not finished within {t.total:g} s"
        if self.first_seen:
            return f"no data for {t.read:g} s (stalled stream)"
        return f"no first token within {t.first_token:g} s"

    def _check(self) -> None:
        self._timer = None
        if self._waiting is None:
            return  # not waiting: the next step checks the deadline itself (and re-arms)
        when = self._deadline()
        if self._loop.time() < when:
            self._timer = self._loop.call_at(when, self._check)
            return
        self._fired = self._expired()
        self._waiting.cancel()

    def _note_suspended(self) -> None:
        self._rest = True  # runs during the step's await; the check at the next step's start reads it

    async def step(self, awaitable: Awaitable[T]) -> T:
        if self._rest and self.first_seen:
            self._rest = False
            rest = self.last + self.pace - self._loop.time()
            if rest > 0:
                await asyncio.sleep(rest)
        when = self._deadline()
        if self._loop.time() >= when:
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()  # a coroutine that will never run: no "never awaited" warning
            raise BackendTimeout(self._expired())
        if self._timer is None:
            self._timer = self._loop.call_at(when, self._check)
        task = asyncio.current_task()
        self._waiting = task
        # Runs only if the awaitable suspends (waits for the network); cancelled below otherwise.
        noted = self._loop.call_soon(self._note_suspended) if self.pace > 0 else None
        try:
            result = await awaitable
        except asyncio.CancelledError:
            fired, self._fired = self._fired, None
            if fired is not None and task is not None and task.uncancel() == 0:
                raise BackendTimeout(fired) from None
            raise
        finally:
            self._waiting = None
            if noted is not None:
                noted.cancel()
        if self._fired is not None:  # the awaitable swallowed the timer's cancel: take it back
            self._fired = None
            if task is not None:
                task.uncancel()
        self.last = self._loop.time()
        return result

    def close(self) -> None:
        """Stop the timer (the stream ended one way or another)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
