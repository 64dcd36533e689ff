"""TGI's native protocol: ``POST`` a rendered prompt with ``stream: true``, read the event stream.

The request is the one huggingface_hub's ``AsyncInferenceClient.text_generation(stream=True,
details=True)`` sends (``{"inputs", "parameters", "stream"}`` to the server's root, which TGI routes
to ``generate_stream``); ``tests/test_backends.py`` pins it. The events are parsed here with one
``json.loads`` each rather than by that client, which builds typed dataclasses per token: that was
10% of the arena's CPU at 64 visitors (py-spy, benchmarks/RESULTS.md), the largest single cost.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2

from arena.backends import KEEPALIVE_SECONDS, _drain, _StreamClock
from arena.backends.base import Backend, Chunk, GenerationRequest, ServerInfo
from arena.domain import FinishReason
from arena.errors import BackendError, BackendFailed, BackendOverloaded, BackendUnavailable, ContextExceeded
from arena.registry import GenerationParams, ModelSpec

__all__ = ["TgiBackend", "tgi_body", "tgi_parameters"]

_FINISH: dict[str, FinishReason] = {"length": "length", "eos_token": "eos", "stop_sequence": "stop"}


def _translate(error: BaseException) -> BackendError:
    """Map an httpx2 or parsing error onto the arena's BackendError tree."""
    if isinstance(error, httpx2.TimeoutException | httpx2.ConnectError):
        # Only the connect timeout is left to the HTTP client; the others are enforced by _StreamClock.
        return BackendUnavailable(f"could not connect: {error}")
    if isinstance(error, httpx2.TransportError):
        return BackendFailed(f"connection broken: {type(error).__name__}: {error}")
    return BackendFailed(f"malformed stream data: {type(error).__name__}: {error}")


_EXPECTED = (httpx2.HTTPError, ValueError, KeyError, TypeError, AttributeError)


def _status_error(status: int, body: bytes) -> BackendError:
    """An HTTP error answer, with TGI's own message (``{"error": ..., "error_type": ...}``) when it sent one."""
    try:
        detail = json.loads(body)
        message = detail.get("error") if isinstance(detail, dict) else None
    except ValueError:
        message = None
    said = f": {message}" if message else ""
    if status == 429:
        return BackendOverloaded(f"TGI overloaded (HTTP 429){said}")
    if status == 503:
        return BackendUnavailable(f"TGI unavailable (HTTP 503){said}")
    from arena.backends.openai_compat import context_error

    if message and context_error(status, str(message)):
        return ContextExceeded(f"TGI refused a prompt too long for its context (HTTP {status}){said}")
    return BackendFailed(f"TGI answered HTTP {status}{said}")


def _event(line: str) -> dict[str, Any] | None:
    """One line of the event stream: its JSON object, or None for blank lines, comments and fields.

    Raises
    ------
    BackendFailed
        TGI's error event (it arrives inside an HTTP 200), or data that is not a JSON object.
    """
    if not line.startswith("data:"):
        return None
    event = json.loads(line[5:])  # ValueError (malformed data) is translated by the caller
    if not isinstance(event, dict):
        raise BackendFailed(f"malformed stream data: {line[:80]!r}")
    if "error" in event:
        raise BackendFailed(f"TGI error event: {event.get('error_type') or 'error'}: {event['error']}")
    return event


def tgi_parameters(params: GenerationParams) -> dict[str, Any]:
    """Keyword arguments for ``text_generation`` that TGI accepts (it answers 422 otherwise).

    TGI's rules: ``temperature`` > 0, ``0 < top_p < 1``, ``0 < typical_p < 1``, ``top_k`` > 0,
    ``repetition_penalty`` > 0. Temperature 0 (or ``do_sample: false``) means greedy decoding:
    ``do_sample=False`` and no sampling warpers at all (TGI samples whenever one is present).
    ``top_p``/``typical_p`` of 1.0 mean "off" and are dropped.
    """
    out: dict[str, Any] = {}
    greedy = params.temperature == 0 or params.do_sample is False
    if greedy:
        out["do_sample"] = False
    else:
        if params.do_sample:
            out["do_sample"] = True
        if params.temperature is not None:
            out["temperature"] = params.temperature
        if params.top_p is not None and params.top_p < 1:
            out["top_p"] = params.top_p
        if params.typical_p is not None and params.typical_p < 1:
            out["typical_p"] = params.typical_p
        if params.top_k is not None:
            out["top_k"] = params.top_k
    if params.repetition_penalty is not None:
        out["repetition_penalty"] = params.repetition_penalty
    if params.max_new_tokens is not None:
        out["max_new_tokens"] = params.max_new_tokens
    if params.seed is not None:
        out["seed"] = params.seed
    return out


def tgi_body(request: GenerationRequest) -> dict[str, Any]:
    """The JSON body TGI's ``/generate`` takes for ``request``."""
    parameters = tgi_parameters(request.params)
    if request.stop:
        parameters["stop"] = list(request.stop)
    return {"inputs": request.prompt, "parameters": parameters}


class TgiBackend(Backend):
    """Streams from a text-generation-inference server (``POST /`` with ``stream: true``)."""

    kind = "tgi"
    renders_own_prompt = False  # TGI's native route takes text: the arena renders the template
    default_server = "tgi"

    @classmethod
    def check_spec(cls, spec: ModelSpec) -> None:
        if spec.server not in (None, "tgi"):
            raise ValueError(f"backend tgi speaks TGI's native protocol; server {spec.server!r} needs backend openai")

    @classmethod
    def request_body(cls, spec: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
        return tgi_body(request)

    _pool: httpx2.AsyncClient | None = None

    def _client(self) -> httpx2.AsyncClient:
        # One connection pool per backend, kept alive between answers: a client per answer would build
        # an SSL context (reading the CA bundle) and a new connection each time, ~30 of the ~50 ms of
        # CPU a 200-token answer cost (benchmarks/results_perf.md).
        if self._pool is None:
            headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._pool = httpx2.AsyncClient(
                headers=headers,
                follow_redirects=True,
                timeout=httpx2.Timeout(
                    connect=self.timeouts.connect, read=None, write=self.timeouts.connect, pool=None
                ),
                # One connection per concurrent answer; the pool only adds keep-alive reuse.
                limits=httpx2.Limits(
                    max_connections=None, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE_SECONDS
                ),
            )
        return self._pool

    async def stream(self, request: GenerationRequest, pace: float = 0.0) -> AsyncIterator[Chunk]:
        if request.prompt is None:
            raise BackendFailed("a tgi request needs a rendered prompt")
        parameters = {**tgi_parameters(request.params), "details": True}
        if request.stop:
            parameters["stop"] = list(request.stop)
        body = {"inputs": request.prompt, "parameters": parameters, "stream": True}
        clock = _StreamClock(self.timeouts, pace)
        try:
            opened = self._client().stream("POST", self.spec.url, json=body)
            response = await clock.step(opened.__aenter__())
            try:
                if response.status_code >= 400:
                    raise _status_error(response.status_code, await clock.step(response.aread()))
                lines = response.aiter_lines()
                while True:
                    line = await clock.step(anext(lines, None))
                    if line is None:
                        raise BackendFailed("TGI stream ended without a final event")
                    event = _event(line)
                    if event is None:
                        continue
                    clock.first_seen = True
                    token = event["token"]
                    text = "" if token.get("special") else token["text"]
                    details = event.get("details")
                    if details is not None:
                        reason = _FINISH.get(details.get("finish_reason"))
                        if reason is None:
                            raise BackendFailed(f"unknown finish_reason {details.get('finish_reason')!r}")
                        yield Chunk(text, reason, details.get("generated_tokens"))
                        await _drain(lines)  # the connection goes back to the pool
                        return
                    if text:
                        yield Chunk(text)
            finally:
                await opened.__aexit__(None, None, None)
        except BackendError:
            raise
        except _EXPECTED as e:
            raise _translate(e) from e
        finally:
            clock.close()

    async def probe(self) -> ServerInfo:
        """``GET /health`` (TGI's own check of its shards), then ``GET /info`` (the served model and
        its limits, so a server pointed at another model is noticed at once). Two light requests on
        one connection; TGI batches requests, so neither disturbs a running answer.
        """
        # On the backend's pooled client: a client per probe would read the CA bundle each time (~20 ms
        # of CPU a probe, most of an idle arena's CPU with health checks on; benchmarks/bench_idle.py).
        timeout = httpx2.Timeout(self.timeouts.read, connect=self.timeouts.connect)
        try:
            http = self._client()
            response = await http.get(f"{self.spec.url}/health", timeout=timeout)
            if response.status_code != 200:
                raise _status_error(response.status_code, response.content)
            return await self._read_info(http, timeout)
        except BackendError:
            raise
        except (httpx2.HTTPError, ValueError) as e:
            raise _translate(e) from e

    @staticmethod
    def _read_info_data(data: object) -> ServerInfo:
        if not isinstance(data, dict):
            raise BackendFailed("TGI's /info is not a JSON object")

        def number(key: str) -> int | None:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        model_id = data.get("model_id")
        return ServerInfo(
            model_id=model_id if isinstance(model_id, str) else None,
            max_input_tokens=number("max_input_tokens") or number("max_input_length"),
            max_total_tokens=number("max_total_tokens"),
            max_stop_sequences=number("max_stop_sequences"),
            model_ids=(model_id,) if isinstance(model_id, str) else (),
        )

    async def _read_info(self, http: httpx2.AsyncClient, timeout: httpx2.Timeout) -> ServerInfo:
        """``GET /info``: the served model and the limits the arena truncates to."""
        response = await http.get(f"{self.spec.url}/info", timeout=timeout)
        if response.status_code >= 400:
            raise _status_error(response.status_code, response.content)
        return self._read_info_data(response.json())

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
