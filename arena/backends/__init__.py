"""The only code that talks to model servers (TGI native, OpenAI-compatible, demo server)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from arena.backends.base import Backend, Chunk, GenerationRequest, ServerInfo, Timeouts
from arena.errors import BackendTimeout, ConfigError
from arena.registry import ModelSpec

__all__ = ["Backend", "Chunk", "GenerationRequest", "ServerInfo", "Timeouts", "make_backend"]

T = TypeVar("T")


def make_backend(spec: ModelSpec, timeouts: Timeouts, environ: Mapping[str, str]) -> Backend:
    """Build the backend that ``spec.backend`` names, with its API key read from ``environ``.

    Raises
    ------
    ConfigError
        When ``spec.api_key_env`` names a variable that is not set.
    """
    api_key: str | None = None
    if spec.api_key_env:
        if spec.api_key_env not in environ:
            raise ConfigError(
                f"model {spec.name!r}: api_key_env names {spec.api_key_env}, which is not set; "
                f"export {spec.api_key_env}=... or remove api_key_env from the model."
            )
        api_key = environ[spec.api_key_env]
    # Imported here so that importing arena.backends stays cheap and the backends can import _StreamClock.
    if spec.backend == "tgi":
        from arena.backends.tgi import TgiBackend

        return TgiBackend(spec, timeouts, api_key)
    from arena.backends.openai_compat import OpenAIBackend

    return OpenAIBackend(spec, timeouts, api_key)


class _StreamClock:
    """Enforces the first-token, read and total timeouts around each await of one stream.

    Client libraries have a single read timeout; here the first wait (request sent -> first chunk)
    gets ``first_token``, later waits ``read``, and no wait runs past the ``total`` deadline.
    """

    def __init__(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts
        self.started = asyncio.get_running_loop().time()
        self.deadline = self.started + timeouts.total
        self.first_seen = False

    async def step(self, awaitable: Awaitable[T]) -> T:
        loop = asyncio.get_running_loop()
        if self.first_seen:
            limit, what = self.timeouts.read, f"no data for {self.timeouts.read:g} s (stalled stream)"
        else:
            limit, what = self.timeouts.first_token, f"no first token within {self.timeouts.first_token:g} s"
        remaining = self.deadline - loop.time()
        if remaining <= limit:
            limit, what = max(remaining, 0.0), f"answer not finished within {self.timeouts.total:g} s"
        window = asyncio.timeout(limit)
        try:
            async with window:
                return await awaitable
        except TimeoutError:
            if window.expired():
                raise BackendTimeout(what) from None
            raise
