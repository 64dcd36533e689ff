"""TGI's native protocol: stream a rendered prompt through huggingface_hub's AsyncInferenceClient."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx2
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    IncompleteGenerationError,
    InferenceTimeoutError,
    OverloadedError,
    TextGenerationError,
)

from arena.backends import _StreamClock
from arena.backends.base import Backend, Chunk, GenerationRequest, ServerInfo
from arena.domain import FinishReason
from arena.errors import BackendError, BackendFailed, BackendOverloaded, BackendUnavailable
from arena.templates import tgi_parameters

__all__ = ["TgiBackend"]

_FINISH: dict[str, FinishReason] = {"length": "length", "eos_token": "eos", "stop_sequence": "stop"}


def _status_of(error: BaseException) -> int | None:
    """The HTTP status behind a huggingface_hub error (TGI errors wrap the HTTP error as their cause)."""
    for candidate in (error, error.__cause__):
        if isinstance(candidate, HfHubHTTPError) and candidate.response is not None:
            return int(candidate.response.status_code)
    return None


def _translate(error: BaseException) -> BackendError:
    """Map a huggingface_hub / httpx2 / parsing error onto the arena's BackendError tree."""
    status = _status_of(error)
    if isinstance(error, OverloadedError) or status == 429:
        return BackendOverloaded(f"TGI overloaded (HTTP {status}): {error}")
    if status == 503:
        return BackendUnavailable(f"TGI unavailable (HTTP 503): {error}")
    if status is not None:
        return BackendFailed(f"TGI answered HTTP {status}: {error}")
    if isinstance(error, GenerationError | IncompleteGenerationError | TextGenerationError):
        return BackendFailed(f"TGI error event: {type(error).__name__}: {error}")
    if isinstance(error, InferenceTimeoutError | httpx2.TimeoutException):
        # Only the connect timeout is left to the HTTP client; the others are enforced by _StreamClock.
        return BackendUnavailable(f"could not connect: {error}")
    if isinstance(error, httpx2.ConnectError):
        return BackendUnavailable(f"could not connect: {error}")
    if isinstance(error, httpx2.TransportError):
        return BackendFailed(f"connection broken: {type(error).__name__}: {error}")
    return BackendFailed(f"malformed stream data: {type(error).__name__}: {error}")


_EXPECTED = (
    HfHubHTTPError,
    TextGenerationError,
    InferenceTimeoutError,
    httpx2.HTTPError,
    ValueError,
    KeyError,
    TypeError,
)


async def _read_error_body(response: httpx2.Response) -> None:
    # What huggingface_hub's own response hook does: an error's body is read while the stream is open,
    # so the raised error carries TGI's message.
    if response.status_code >= 400:
        await response.aread()


class TgiBackend(Backend):
    """Streams from a text-generation-inference server (``POST /`` with ``stream: true``)."""

    _pool: httpx2.AsyncClient | None = None

    def _client(self) -> AsyncInferenceClient:
        # An explicit "authorization": None keeps huggingface_hub from sending a locally saved HF token
        # to a third-party server (its header normalisation drops None values).
        headers: dict[str, str] = {} if self.api_key else cast(dict[str, str], {"authorization": None})
        timeout = httpx2.Timeout(connect=self.timeouts.connect, read=None, write=self.timeouts.connect, pool=None)
        # huggingface_hub passes ``timeout`` straight to httpx2, which accepts a Timeout object.
        client = AsyncInferenceClient(
            base_url=self.spec.url,
            api_key=self.api_key,
            headers=headers,
            timeout=cast(float, timeout),
        )
        # Each answer gets its own AsyncInferenceClient (see stream) but shares this backend's connection
        # pool: left to itself the client builds a new httpx2 client per answer, and with it an SSL context
        # (reading the CA bundle) and a new connection: ~30 of the ~50 ms of CPU a 200-token answer cost
        # (benchmarks/results_perf.md). It creates that client lazily into ``_async_client`` and closes
        # only what it entered on its exit stack (the streamed response), so a pool set here outlives
        # each answer's client.
        if self._pool is None:
            self._pool = httpx2.AsyncClient(
                event_hooks={"response": [_read_error_body]},
                follow_redirects=True,
                timeout=None,
                # One connection per concurrent answer, as before; the pool only adds keep-alive reuse.
                limits=httpx2.Limits(max_connections=None, max_keepalive_connections=64),
            )
        client._async_client = self._pool
        return client

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        if request.prompt is None:
            raise BackendFailed("a tgi request needs a rendered prompt")
        kwargs = tgi_parameters(request.params)
        if request.stop:
            kwargs["stop"] = list(request.stop)
        clock = _StreamClock(self.timeouts)
        # One client per answer: AsyncInferenceClient keeps every streamed response open on the client's
        # exit stack until the client closes, so closing it is how the upstream request gets closed.
        client = self._client()
        events: Any = None
        try:
            try:
                events = await clock.step(client.text_generation(request.prompt, stream=True, details=True, **kwargs))
                while True:
                    event = await clock.step(anext(events, None))
                    if event is None:
                        raise BackendFailed("TGI stream ended without a final event")
                    clock.first_seen = True
                    text = "" if event.token.special else event.token.text
                    if event.details is not None:
                        reason = _FINISH.get(event.details.finish_reason)
                        if reason is None:
                            raise BackendFailed(f"unknown finish_reason {event.details.finish_reason!r}")
                        yield Chunk(text, reason, event.details.generated_tokens)
                        return
                    if text:
                        yield Chunk(text)
            except BackendError:
                raise
            except _EXPECTED as e:
                raise _translate(e) from e
        finally:
            if events is not None:
                await events.aclose()
            await client.close()

    async def health(self) -> bool:
        try:
            async with self._http() as http:
                response = await http.get(f"{self.spec.url}/health")
        except httpx2.HTTPError:
            return False
        return response.status_code == 200

    async def info(self) -> ServerInfo | None:
        """``GET /info``; None when the server is unreachable or the answer is not TGI's."""
        try:
            async with self._http() as http:
                response = await http.get(f"{self.spec.url}/info")
            response.raise_for_status()
            data = response.json()
        except (httpx2.HTTPError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict):
            return None

        def number(key: str) -> int | None:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        model_id = data.get("model_id")
        return ServerInfo(
            model_id=model_id if isinstance(model_id, str) else None,
            max_input_tokens=number("max_input_tokens") or number("max_input_length"),
            max_total_tokens=number("max_total_tokens"),
            max_stop_sequences=number("max_stop_sequences"),
        )

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    def _http(self) -> httpx2.AsyncClient:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        timeout = httpx2.Timeout(self.timeouts.read, connect=self.timeouts.connect)
        return httpx2.AsyncClient(headers=headers, timeout=timeout)
