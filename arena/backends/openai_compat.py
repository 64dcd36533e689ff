"""OpenAI-compatible chat servers (vLLM, TGI's Messages API, llama.cpp, Ollama) through the openai client."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai

from arena.backends import KEEPALIVE_SECONDS, _drain, _StreamClock
from arena.backends.base import Backend, Chunk, GenerationRequest, ServerInfo
from arena.domain import FinishReason
from arena.errors import (
    BackendError,
    BackendFailed,
    BackendOverloaded,
    BackendTimeout,
    BackendUnavailable,
    ContextExceeded,
)
from arena.registry import ModelSpec

__all__ = ["OpenAIBackend", "openai_body", "sends_stop_strings"]

# Most local servers need no key, but the openai client insists on one; sending a dummy also keeps it
# from falling back to OPENAI_API_KEY from the environment (which belongs to another service).
_NO_KEY = "EMPTY"
# Fields the openai client does not know travel in extra_body (vLLM's and llama.cpp's extensions).
_EXTRA_BODY = frozenset({"top_k", "repetition_penalty", "repeat_penalty", "typical_p", "stop_token_ids"})
# An HTTP 400/413/422 whose message says this is a prompt too long for the context: llama-server's
# exceed_context_size_error, vLLM's "This model's maximum context length is ...", TGI's "`inputs`
# tokens + `max_new_tokens` must be <= ...", llama-cpp-python's "Requested tokens (...) exceed context
# window", and TGI's "`inputs` must have less than N tokens" (the prompt alone over --max-input-tokens).
_CONTEXT_ERROR = re.compile(
    r"exceed_context_size|context (length|size|window)|maximum context|must be <= \d+|must have less than \d+ tokens"
    r"|n_ctx",
    re.IGNORECASE,
)
# TGI's Messages API serves one model and ignores the request's ``model``; its documentation writes "tgi".
TGI_PLACEHOLDER = "tgi"


def context_error(status: int, message: str) -> bool:
    """Whether an error answer says the prompt does not fit the server's context."""
    return status in (400, 413, 422) and _CONTEXT_ERROR.search(message) is not None


def _translate(error: BaseException) -> BackendError:
    """Map an openai / httpx2 / parsing error onto the arena's BackendError tree."""
    if isinstance(error, openai.APITimeoutError):
        # Only the connect timeout is left to the HTTP client; the others are enforced by _StreamClock.
        return BackendUnavailable(f"could not connect: {error}")
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__
        if isinstance(cause, httpx2.ConnectError | httpx2.ConnectTimeout) or cause is None:
            return BackendUnavailable(f"could not connect: {cause or error}")
        return BackendFailed(f"connection broken: {type(cause).__name__}: {cause}")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if status == 429:
            return BackendOverloaded(f"HTTP 429: {error}")
        if status == 503:
            return BackendUnavailable(f"HTTP 503: {error}")
        if context_error(status, f"{error} {error.body}"):
            return ContextExceeded(f"HTTP {status}, prompt too long for the server's context: {error}")
        return BackendFailed(f"HTTP {status}: {error}")
    if isinstance(error, openai.APIError):
        return BackendFailed(f"error event in stream: {error}")
    if isinstance(error, httpx2.TimeoutException):
        return BackendUnavailable(f"could not connect: {error}")
    if isinstance(error, httpx2.TransportError):
        return BackendFailed(f"connection broken: {type(error).__name__}: {error}")
    return BackendFailed(f"malformed stream data: {type(error).__name__}: {error}")


_EXPECTED = (openai.OpenAIError, httpx2.HTTPError, ValueError, KeyError, TypeError, AttributeError)

_DONE: dict[str, Any] = {}  # the end of the stream ("data: [DONE]")


def _event(line: str) -> dict[str, Any] | None:
    """One line of the server-sent event stream: its JSON data, ``_DONE``, or None for other lines.

    Raises
    ------
    BackendFailed
        An error event, or data that is not a JSON object.
    """
    if not line.startswith("data:"):
        return None  # blank separators, comments (": ping"), "event:" and "id:" lines
    data = line[5:].strip()
    if data.startswith("[DONE]"):
        return _DONE
    event = json.loads(data)  # ValueError (malformed data) is translated by the caller
    if not isinstance(event, dict):
        raise BackendFailed(f"malformed stream data: {data[:80]!r}")
    error = event.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise BackendFailed(f"error event in stream: {message}")
    return event


def _body_broke(error: BaseException) -> bool:
    """Whether a response body broke off after the headers (not a refused connection nor a timeout)."""
    return isinstance(error, httpx2.ReadError | httpx2.RemoteProtocolError)


def served(wanted: str, ids: list[str]) -> str | None:
    """The id among ``ids`` that serves ``wanted``: itself, or Ollama's ``NAME:latest`` for ``NAME``."""
    if wanted in ids:
        return wanted
    if ":" not in wanted and f"{wanted}:latest" in ids:
        return f"{wanted}:latest"
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# What each OpenAI-compatible server reads beyond the OpenAI fields, under its own names (the arena's
# name -> the server's). A setting a server does not read is not sent (start-up warns: see
# ``unsent_params``), so a card's value is never silently dropped without a word.
_SERVER_PARAMS: dict[str, dict[str, str]] = {
    "vllm": {"top_k": "top_k", "repetition_penalty": "repetition_penalty"},
    "openai": {"top_k": "top_k", "repetition_penalty": "repetition_penalty"},
    # llama.cpp (both servers) reads repeat_penalty; repetition_penalty is ignored without a word.
    "llama-server": {"top_k": "top_k", "repetition_penalty": "repeat_penalty", "typical_p": "typical_p"},
    "llama-cpp-python": {"top_k": "top_k", "repetition_penalty": "repeat_penalty", "typical_p": "typical_p"},
    # Ollama's OpenAI API reads neither: set them in the Modelfile (PARAMETER top_k / repeat_penalty).
    "ollama": {},
    # TGI's Messages API has no top_k nor repetition_penalty (only frequency/presence penalties).
    "tgi-messages": {},
}


def sends_stop_strings(spec: ModelSpec) -> bool:
    """Whether stop strings are sent to the server (else the arena cuts the stream at them itself).

    Only servers that say which stop string ended an answer (TGI's ``stop_sequence``, vLLM's
    ``stop_reason``) get them: the others end with the same ``finish_reason: "stop"`` as at the end
    of sequence, so the arena could not tell a stop-string ending from ``eos``.
    """
    return spec.server_kind in ("tgi", "vllm", "openai")


def openai_body(spec: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
    """The ``/v1/chat/completions`` body for ``request`` (``/v1/completions`` when it carries a raw
    ``prompt``), without ``stream``, with the parameter names ``spec``'s server reads.

    ``top_k``, ``repetition_penalty`` and ``stop_token_ids`` are vLLM extensions; llama.cpp reads
    ``repeat_penalty`` (and ``typical_p``); Ollama's and TGI's OpenAI APIs read neither (see
    ``_SERVER_PARAMS``). ``do_sample: false`` is sent as temperature 0. Stop strings are sent only
    to servers that report which one matched (:func:`sends_stop_strings`).
    """
    params = request.params
    body: dict[str, Any] = {"model": spec.model}
    if request.messages or request.prompt is None:
        body["messages"] = [dict(m) for m in request.messages]
    else:
        body["prompt"] = request.prompt
    if request.stop and sends_stop_strings(spec):
        body["stop"] = list(request.stop)
    if params.do_sample is False:
        body["temperature"] = 0.0
    elif params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.max_new_tokens is not None:
        body["max_tokens"] = params.max_new_tokens
    if params.seed is not None:
        body["seed"] = params.seed
    names = _SERVER_PARAMS.get(spec.server_kind, {})
    for setting in ("top_k", "repetition_penalty", "typical_p"):
        value = getattr(params, setting)
        if value is not None and setting in names:
            body[names[setting]] = value
    if spec.stop_token_ids and spec.server_kind in ("vllm", "openai"):
        body["stop_token_ids"] = list(spec.stop_token_ids)
    return body


class OpenAIBackend(Backend):
    """Streams ``/chat/completions`` (or ``/completions`` for a raw prompt) from ``spec.url`` (which
    ends in ``/v1``) for ``spec.model``; ``spec.server_kind`` names the server's quirks."""

    kind = "openai"
    renders_own_prompt = True
    default_server = "openai"  # a generic OpenAI-compatible server

    @classmethod
    def check_spec(cls, spec: ModelSpec) -> None:
        if not spec.model:
            raise ValueError("an openai model needs 'model' (the id the server serves)")
        if spec.server == "tgi":
            raise ValueError("server tgi with backend openai is TGI's Messages API: write server: tgi-messages")

    @classmethod
    def completes_raw_text(cls, spec: ModelSpec) -> bool:
        """``/v1/completions``; TGI's Messages API (``tgi-messages``) is only a chat route."""
        return spec.server_kind != "tgi-messages"

    @classmethod
    def unsent_params(cls, spec: ModelSpec) -> list[str]:
        known = _SERVER_PARAMS.get(spec.server_kind, {})
        set_here = spec.params.model_dump(exclude_none=True)
        out: list[str] = [k for k in ("top_k", "repetition_penalty", "typical_p") if k in set_here and k not in known]
        if spec.stop_token_ids and spec.server_kind not in ("vllm", "openai"):
            out.append("stop_token_ids")
        return out

    @classmethod
    def request_body(cls, spec: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
        return openai_body(spec, request)

    _client: openai.AsyncOpenAI | None = None

    def _openai(self) -> openai.AsyncOpenAI:
        if self._client is None:
            timeout = openai.Timeout(
                connect=self.timeouts.connect,
                # Reads are policed by _StreamClock (first_token vs read vs total); this is only a backstop.
                read=max(self.timeouts.first_token, self.timeouts.read, self.timeouts.total),
                write=self.timeouts.connect,
                pool=self.timeouts.connect,
            )
            # The SDK's pool limits, with idle connections kept for less time than servers keep them.
            limits = httpx2.Limits(
                max_connections=1000, max_keepalive_connections=100, keepalive_expiry=KEEPALIVE_SECONDS
            )
            # llama-cpp-python closes a connection after a request its worker failed (a prompt over
            # n_ctx) just after answering it, so the next request sent on it from the pool broke
            # ("connection broken", the model's failure): 29 of 60 requests after refusals, measured
            # against the real server (benchmarks/bench_lcp_refusals.py). It answers one request at a
            # time, so a connection per request costs nothing that matters.
            close = {"Connection": "close"} if self.spec.server_kind == "llama-cpp-python" else None
            self._client = openai.AsyncOpenAI(
                base_url=self.spec.url,
                api_key=self.api_key or _NO_KEY,
                max_retries=0,
                timeout=timeout,
                default_headers=close,
                http_client=openai.DefaultAsyncHttpxClient(timeout=timeout, limits=limits),
            )
        return self._client

    async def stream(self, request: GenerationRequest, pace: float = 0.0) -> AsyncIterator[Chunk]:
        # The body is built in one place (openai_body above, also shown by `python -m arena
        # prompt --json`); the fields the client does not know (vLLM's top_k, repetition_penalty,
        # stop_token_ids) travel in extra_body.
        body = openai_body(self.spec, request)
        extra = {k: body.pop(k) for k in list(body) if k in _EXTRA_BODY}
        if extra:
            body["extra_body"] = extra
        clock = _StreamClock(self.timeouts, pace)
        finish: FinishReason | None = None
        tokens: int | None = None
        events = 0
        try:
            # The client sends the request and raises for an error status; the event stream is read
            # here, one json.loads per event, rather than by the client's typed stream, which builds
            # a pydantic model per chunk (measured: ~7% of the arena's CPU under load, py-spy).
            # Typed as Any: the client's overloads cannot match a kwargs dict built at run time.
            client = self._openai()
            route = client.chat.completions if request.messages else client.completions
            create: Any = route.with_streaming_response.create
            opened = create(stream=True, stream_options={"include_usage": True}, **body)
            response = await clock.step(opened.__aenter__())
            try:
                lines = response.iter_lines()
                while True:
                    line = await clock.step(anext(lines, None))
                    if line is None:
                        break
                    event = _event(line)
                    if event is None:
                        continue
                    events += 1
                    if event is _DONE:
                        await _drain(lines)  # the connection goes back to the pool
                        break
                    clock.first_seen = True
                    usage = event.get("usage")
                    if usage:
                        tokens = usage.get("completion_tokens")
                    for choice in event.get("choices", ())[:1]:
                        delta = choice.get("delta") or {}
                        text = delta.get("content") if "text" not in choice else choice.get("text")
                        if choice.get("finish_reason") is not None:
                            finish = self._finish(choice)
                        if text:
                            yield Chunk(text)
            finally:
                await opened.__aexit__(None, None, None)
        except BackendError:
            raise
        except _EXPECTED as e:
            if events == 0 and self.spec.server_kind == "llama-cpp-python" and _body_broke(e):
                # Its refusal of a prompt longer than n_ctx: the worker raises before the first event, and
                # the HTTP 200 either ends empty (below) or breaks off, depending on timing (seen on the
                # real server, tests/conformance).
                raise ContextExceeded(f"llama-cpp-python broke off an HTTP 200 before any event: {e}") from e
            raise _translate(e) from e
        finally:
            clock.close()
        if finish is None:
            if events == 0 and self.spec.server_kind == "llama-cpp-python":
                # Its answer to a prompt longer than its context (n_ctx) is an empty HTTP 200.
                raise ContextExceeded("llama-cpp-python sent an empty HTTP 200 (a prompt longer than its n_ctx)")
            if events == 0:
                raise BackendFailed("the server sent an empty answer (no events)")
            raise BackendFailed(
                "the stream ended without a finish_reason (llama-cpp-python does this to a running answer when "
                "another request arrives, unless started with --interrupt_requests False)"
            )
        yield Chunk("", finish, tokens)

    @staticmethod
    def _finish(choice: dict[str, Any]) -> FinishReason:
        reason = choice.get("finish_reason")
        if reason == "length":
            return "length"
        if reason in ("stop", "eos_token", "eos"):
            # vLLM names the matched stop string in ``stop_reason``; None (or a token id) means end of
            # sequence. Servers that do not say get no stop strings (the arena cuts at them itself,
            # see sends_stop_strings), so their "stop" is the end of sequence.
            return "stop" if isinstance(choice.get("stop_reason"), str) else "eos"
        if reason == "stop_sequence":  # older TGI Messages API
            return "stop"
        raise BackendFailed(f"unexpected finish_reason {reason!r}")

    async def probe(self) -> ServerInfo:
        """``GET /models``: the served ids and, where the server tells it, the context.

        TGI's Messages API (``tgi-messages``) is asked TGI's own ``GET /info`` instead (at the
        server's root): it names the served model and TGI's input and total limits, which its
        ``/v1/models`` does not. ``model: tgi`` (TGI's placeholder) matches whatever it serves.

        vLLM gives ``max_model_len`` and llama-server ``meta.n_ctx`` per model; llama-cpp-python,
        Ollama and TGI's Messages API give none. llama-cpp-python answers it without touching the
        model, but only if started with ``--interrupt_requests False`` does it also leave a running
        answer alone; the health checks never probe a model that is streaming anyway.
        """
        if self.spec.server_kind == "tgi-messages":
            return await self._probe_tgi()
        clock = _StreamClock(self.timeouts)
        try:
            page = await clock.step(self._openai().models.list())
            entries = [m.to_dict() for m in page.data]
        except BackendTimeout:
            raise
        except _EXPECTED as e:
            raise _translate(e) from e
        finally:
            clock.close()
        ids = [str(e.get("id")) for e in entries]
        wanted = served(self.spec.model, ids) if self.spec.model else None
        model_id = wanted or (ids[0] if ids else None)
        entry = entries[ids.index(model_id)] if model_id in ids else {}
        meta = entry.get("meta")
        context = _int(entry.get("max_model_len")) or (_int(meta.get("n_ctx")) if isinstance(meta, dict) else None)
        return ServerInfo(
            model_id=self.spec.model if wanted else model_id, max_total_tokens=context, model_ids=tuple(ids)
        )

    _tgi_http: httpx2.AsyncClient | None = None

    async def _probe_tgi(self) -> ServerInfo:
        """TGI's ``GET /info`` at the root of the Messages API's ``.../v1`` URL."""
        from arena.backends.tgi import TgiBackend, _status_error
        from arena.backends.tgi import _translate as _translate_http

        root = self.spec.url.rstrip("/").removesuffix("/v1")
        if self._tgi_http is None:
            headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            limits = httpx2.Limits(max_keepalive_connections=1, keepalive_expiry=KEEPALIVE_SECONDS)
            self._tgi_http = httpx2.AsyncClient(headers=headers, follow_redirects=True, limits=limits)
        timeout = httpx2.Timeout(self.timeouts.read, connect=self.timeouts.connect)
        try:
            response = await self._tgi_http.get(f"{root}/info", timeout=timeout)
            if response.status_code >= 400:
                raise _status_error(response.status_code, response.content)
            info = TgiBackend._read_info_data(response.json())
        except BackendError:
            raise
        except (httpx2.HTTPError, ValueError) as e:
            raise _translate_http(e) from e
        if self.spec.model in (TGI_PLACEHOLDER, info.model_id):
            return dataclasses.replace(info, model_id=self.spec.model)
        return info

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._tgi_http is not None:
            await self._tgi_http.aclose()
            self._tgi_http = None
