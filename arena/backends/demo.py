"""Local model servers that speak TGI's native protocol and the OpenAI chat API, for demos and tests.

A :class:`DemoServer` runs a Starlette app under uvicorn in a background thread (its own event
loop) on ``127.0.0.1`` and a free port. It streams canned multilingual answers at a realistic
token rate, validates parameters the way TGI does (HTTP 422 with TGI's error JSON), honours stop
sequences and token limits, records every request it receives, and can be told to misbehave
(``server.fault``) or go down and come back on the same port.

Faults (``server.fault``; ``None`` behaves normally). They apply to the generation routes
(``/``, ``/generate``, ``/generate_stream``, ``/v1/chat/completions``):

``"status:NNN"``     answer HTTP NNN with an error body (429 overloaded, 503 also fails /health)
``"error_event"``    stream two tokens, then an error event inside the HTTP 200 stream
``"stall"``          stream two tokens, then hang without closing
``"no_first_token"`` send the response headers, then hang before the first token
``"malformed"``      stream two tokens, then an event whose data is not valid JSON
``"never_ends"``     stream tokens forever

Flavours (``flavour=``): the OpenAI routes (``/v1/chat/completions``, ``/v1/completions``,
``/v1/models``) reproduce the quirks of real servers that cannot run here (docs/models.md, "Model
servers"); the TGI native routes are the same for all:

``"vllm"`` (default)     ``stop_reason`` names the matched stop string; ``usage``; ``max_model_len`` in
                         ``/v1/models``; a too-long prompt is HTTP 400 "maximum context length"; any
                         role name (a chat template's own, e.g. Huozi's 系统/用户/助手)
``"tgi-messages"``       TGI's Messages API: ``finish_reason`` "stop" for both a stop string and EOS,
                         no ``stop_reason``; HTTP 422 "must be <= N"; no ``/v1/completions``; the
                         model id and limits in TGI's ``/info`` (``max_input_tokens`` sets them)
``"llama-server"``       no ``stop_reason``; ``usage``; ``meta.n_ctx`` in ``/v1/models``; HTTP 400
                         ``exceed_context_size_error``; reads ``repeat_penalty``
``"llama-cpp-python"``   no ``stop_reason``, no ``usage``; a too-long prompt gets an empty HTTP 200,
                         or (``server.cut_refusals``) an HTTP 200 whose body breaks off before its
                         first event, as the real one does when its worker raises at the wrong moment;
                         with ``interrupt_requests`` (its default) any request that arrives while an
                         answer streams ends that answer with ``[DONE]`` and no ``finish_reason``
``"ollama"``             no ``stop_reason``; ids ``NAME:TAG``; a too-long prompt is cut silently

``context`` (tokens, default 4096) is the context the flavours enforce.

Answers are in the prompt's language and script (:func:`arena.language.detect_language`, folded
to English, Polish, Japanese, Traditional and Simplified Chinese). With ``sampling`` (the demo
arena's servers) a prompt asked again gets another answer, unless the request fixes a ``seed`` or
decodes greedily; without it (a test's server) each prompt has one answer per model.

``server.fault_rate`` (0 to 1) additionally gives each generation request, independently, that
probability of one fault drawn from ``server.random_faults`` (for soak tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import random
import re
import socket
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from arena.language import detect_language as _detect

__all__ = [
    "DEMO_MODEL_IDS",
    "DEMO_ROSTER_PATH",
    "FAULTS",
    "FLAVOURS",
    "DemoServer",
    "demo_environ",
    "detect_language",
    "start_demo_servers",
]

DEMO_ROSTER_PATH = Path(__file__).with_name("demo_models.yaml")
"""The demo roster (models.yaml schema); its urls are ``${DEMO_URL_1}`` .. ``${DEMO_URL_4}``."""

DEMO_MODEL_IDS = ("demo/aurora-7b", "demo/borealis-7b", "demo/cirrus-7b", "demo/dune-7b")
"""The model id served by the n-th server of :func:`start_demo_servers` (in roster order)."""

FLAVOURS = ("vllm", "tgi-messages", "llama-server", "llama-cpp-python", "ollama")

FAULTS = ("status:NNN", "error_event", "stall", "no_first_token", "malformed", "never_ends", "lingers")

_MAX_INPUT_TOKENS = 4095
_MAX_TOTAL_TOKENS = 4096
_MAX_STOP_SEQUENCES = 4
_EOS_TEXT = "</s>"
_TOKENS_BEFORE_FAULT = 2
# The fault drawn for the request being handled (``fault_rate``); set in each request's own context.
_REQUEST_FAULT: contextvars.ContextVar[str | None] = contextvars.ContextVar("demo_request_fault", default=None)

_TGI_TOP_KEYS = {"inputs", "parameters", "stream"}
_TGI_PARAMETERS = {
    "adapter_id",
    "best_of",
    "decoder_input_details",
    "details",
    "do_sample",
    "frequency_penalty",
    "grammar",
    "max_new_tokens",
    "repetition_penalty",
    "return_full_text",
    "seed",
    "stop",
    "temperature",
    "top_k",
    "top_n_tokens",
    "top_p",
    "truncate",
    "typical_p",
    "watermark",
}

# --------------------------------------------------------------------------------------------
# Canned answers
# --------------------------------------------------------------------------------------------

_OPENERS: dict[str, tuple[str, ...]] = {
    "en": (
        "You asked about “{quote}”. Here is a short answer.",
        "Good question! On “{quote}”:",
        "Let me think about “{quote}” for a moment.",
        "Sure. Regarding “{quote}”, briefly:",
    ),
    "pl": (
        "Pytasz o „{quote}”. Oto krótka odpowiedź.",
        "Dobre pytanie! Co do „{quote}”:",
        "Zastanówmy się chwilę nad „{quote}”.",
        "Jasne. W sprawie „{quote}”, w skrócie:",
    ),
    "ja": (
        "「{quote}」についてですね。簡単にお答えします。",
        "良い質問です！「{quote}」について：",
        "「{quote}」について少し考えてみます。",
        "はい。「{quote}」について、手短に：",
    ),
    "zh-Hant": (
        "您問的是「{quote}」。以下是簡短的回答。",
        "好問題！關於「{quote}」：",
        "讓我想一想「{quote}」這個問題。",
        "好的。關於「{quote}」，簡單來說：",
    ),
    "zh-Hans": (
        "您问的是“{quote}”。以下是简短的回答。",
        "好问题！关于“{quote}”：",
        "让我想一想“{quote}”这个问题。",
        "好的。关于“{quote}”，简单来说：",
    ),
}

_BODIES: dict[str, tuple[str, ...]] = {
    "en": (
        "The short version is that it depends on what you value most. If speed matters, start small and "
        "measure; if accuracy matters, spend the time on a careful first draft.",
        "A few things to keep in mind:\n\n- Start with the simplest thing that works.\n- Write down what you "
        "expect before you try it.\n- Change one thing at a time.\n\nThat usually gets you most of the way.",
        'Here is a tiny example in Python:\n\n```python\ndef greet(name):\n    return f"Hello, {name}!"\n```\n\n'
        "Call it with any name and it returns a friendly greeting.",
        "I would approach it in three steps: understand the question, sketch an answer, then check the sketch "
        "against a simple example. Most mistakes show up in the last step.",
    ),
    "pl": (
        "W skrócie: wszystko zależy od tego, co jest dla ciebie najważniejsze. Jeśli liczy się szybkość, zacznij "
        "od małego kroku i zmierz efekt; jeśli dokładność, poświęć czas na staranny pierwszy szkic.",
        "Kilka rzeczy, o których warto pamiętać:\n\n- Zacznij od najprostszego rozwiązania.\n- Zapisz, czego się "
        "spodziewasz.\n- Zmieniaj jedną rzecz naraz.\n\nTo zwykle wystarcza.",
        'Oto mały przykład w Pythonie:\n\n```python\ndef powitanie(imię):\n    return f"Cześć, {imię}!"\n```\n\n'
        "Wywołaj ją z dowolnym imieniem, a zwróci przyjazne powitanie.",
        "Podszedłbym do tego w trzech krokach: zrozumieć pytanie, naszkicować odpowiedź i sprawdzić ją na prostym "
        "przykładzie. Najwięcej błędów wychodzi w ostatnim kroku.",
    ),
    "ja": (
        "結論から言うと、何を一番大切にするかによります。速さが大事なら小さく始めて測ってみましょう。"
        "正確さが大事なら、最初の下書きに時間をかけるのが良いです。",
        "気をつけたい点がいくつかあります：\n\n- まずは一番簡単な方法から始める。\n- 試す前に予想を書いておく。\n"
        "- 一度に一つだけ変える。\n\nたいていはこれで十分です。",
        'Pythonの小さな例です：\n\n```python\ndef aisatsu(namae):\n    return f"こんにちは、{namae}さん！"\n```\n\n'
        "名前を渡すと、あいさつを返します。",
        "私なら三つの段階で考えます。質問を理解し、答えの骨組みを作り、簡単な例で確かめます。"
        "間違いはたいてい最後の段階で見つかります。",
    ),
    "zh-Hant": (
        "簡單來說，這要看您最重視什麼。如果速度重要，就從小處開始並實際測量；"
        "如果準確度重要，就花時間把第一份草稿寫好。",
        "有幾點值得注意：\n\n- 先從最簡單的方法開始。\n- 動手前先寫下您的預期。\n- 一次只改變一件事。\n\n"
        "這樣通常就夠了。",
        '這是一個小小的 Python 範例：\n\n```python\ndef greet(name):\n    return f"你好，{name}！"\n```\n\n'
        "傳入任何名字，它都會回傳一句問候。",
        "我會分三個步驟來處理：理解問題、勾勒答案，然後用簡單的例子檢查。大多數錯誤都會在最後一步出現。",
    ),
    "zh-Hans": (
        "简单来说，这要看您最重视什么。如果速度重要，就从小处开始并实际测量；"
        "如果准确度重要，就花时间把第一份草稿写好。",
        "有几点值得注意：\n\n- 先从最简单的方法开始。\n- 动手前先写下您的预期。\n- 一次只改变一件事。\n\n"
        "这样通常就够了。",
        '这是一个小小的 Python 示例：\n\n```python\ndef greet(name):\n    return f"你好，{name}！"\n```\n\n'
        "传入任何名字，它都会返回一句问候。",
        "我会分三个步骤来处理：理解问题、勾勒答案，然后用简单的例子检查。大多数错误都会在最后一步出现。",
    ),
}

_CJK_PIECE = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_ANSWER_LANGUAGES = {
    "pl": "pl",
    "ja": "ja",
    "zh-Hant": "zh-Hant",
    "yue": "zh-Hant",
    "zh-Hans": "zh-Hans",
    "zh": "zh-Hans",
}


def detect_language(text: str) -> str:
    """The language the demo answers ``text`` in: ``en``, ``pl``, ``ja``, ``zh-Hant`` or ``zh-Hans``.

    The arena's own detector (:func:`arena.language.detect_language`: Polish without a single
    accented letter, Traditional Chinese by its characters), folded to the five languages the demo
    writes; any other language, or none, gets English. Chinese whose script no character tells
    (a short "你好") gets Simplified, which writes it the same way.
    """
    return _ANSWER_LANGUAGES.get(_detect(text) or "", "en")


def _last_user_text(prompt: str) -> str:
    """The visitor's newest message inside a rendered prompt (chatml, llama-2 or plain)."""
    if "<|im_start|>user" in prompt:
        text = prompt.rsplit("<|im_start|>user", 1)[1].split("<|im_end|>", 1)[0]
    elif "[INST]" in prompt:
        text = prompt.rsplit("[INST]", 1)[1].split("[/INST]", 1)[0]
        text = re.sub(r"<<SYS>>.*?<</SYS>>", "", text, flags=re.S)
    else:
        text = prompt
    text = re.sub(r"<\|[^|>]*\|>|</?s>", " ", text)
    return " ".join(text.split())


def _quote(text: str) -> str:
    if _CJK_PIECE.search(text):
        return text if len(text) <= 12 else text[:12] + "…"
    words = text.split()
    return " ".join(words) if len(words) <= 6 else " ".join(words[:6]) + "…"


# Asked who it is, a demo model says its name, as real models do (what the identity-leak flag is for).
_WHO_ARE_YOU = re.compile(
    r"who are you|what(?:'s| is) your name|kim jesteś|jak się nazywasz"
    r"|あなたは誰|あなたはだれ|お名前は|你是谁|你是誰|你叫什么|你叫什麼",
    re.IGNORECASE,
)
_INTRODUCTIONS = {
    "en": "I am {name}, a demo model.",
    "pl": "Jestem {name}, model demonstracyjny.",
    "ja": "私は{name}です。デモ用のモデルです。",
    "zh-Hant": "我是{name}，一個示範模型。",
    "zh-Hans": "我是{name}，一个演示模型。",
}


def _answer(model_id: str, user_text: str, language: str, variant: int = 0) -> str:
    """The model's opener (its style: one per model) and one of the bodies: ``variant`` picks which,
    so asking the same prompt again with another variant gives another answer."""
    openers, bodies = _OPENERS[language], _BODIES[language]
    opener = openers[zlib.crc32(model_id.encode()) % len(openers)]
    if _WHO_ARE_YOU.search(user_text):
        opener = _INTRODUCTIONS[language].format(name=model_id.rsplit("/", 1)[-1])
    body = bodies[(zlib.crc32(f"{model_id}\0{user_text}".encode()) + variant) % len(bodies)]
    quote = _quote(user_text) or "…"
    return opener.format(quote=quote) + "\n\n" + body


def _exact_length(text: str, tokens: int) -> str:
    """``text`` repeated (paragraph by paragraph) and cut to exactly ``tokens`` pieces of :func:`_tokenize`."""
    pieces = _tokenize(text)
    if not pieces:
        return text
    repeats = -(-tokens // len(pieces))
    # Cut at a piece boundary: the kept prefix tokenizes back into the same pieces.
    return "".join(_tokenize("\n\n".join([text] * repeats))[:tokens])


async def _broken_body() -> AsyncIterator[bytes]:
    """A response body that fails before its first byte: uvicorn drops the connection mid-response."""
    raise _BodyBroken("Requested tokens exceed context window")
    yield b""  # a generator


class _BodyBroken(Exception):
    """Raised inside a response body on purpose (llama-cpp-python's context refusal)."""


class _AnsweredThenFailed(Response):
    """A complete response, then the application fails, as llama-cpp-python's worker does for a prompt
    over n_ctx: uvicorn then closes the connection without a ``Connection: close`` header, so a client
    may still send its next request on it (the real worker fails a moment after the answer ends)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await super().__call__(scope, receive, send)
        await asyncio.sleep(0.3)
        raise _BodyBroken("Requested tokens exceed context window")


def _tokenize(text: str) -> list[str]:
    """Split into small pieces: a word with its leading whitespace, or one or two CJK characters."""
    pieces: list[str] = []
    for match in re.finditer(r"(\s*)(\S+)|\s+$", text):
        space, word = match.group(1), match.group(2)
        if word is None:
            pieces.append(match.group(0))
            continue
        if _CJK_PIECE.search(word):
            parts = [word[i : i + 2] for i in range(0, len(word), 2)]
            parts[0] = space + parts[0]
            pieces.extend(parts)
        else:
            pieces.append(space + word)
    return pieces


# --------------------------------------------------------------------------------------------
# Generation plan: which pieces to send and why it ends
# --------------------------------------------------------------------------------------------


class _Plan:
    """The pieces of one answer after applying max_new_tokens and stop sequences."""

    def __init__(self, text: str, max_tokens: int | None, stop: Iterable[str], *, include_stop: bool) -> None:
        self.pieces: list[str] = []
        self.finish = "eos_token"
        produced = ""
        for piece in _tokenize(text):
            if max_tokens is not None and len(self.pieces) >= max_tokens:
                self.finish = "length"
                break
            candidate = produced + piece
            hits = [(candidate.find(s, max(0, len(produced) - len(s) + 1)), s) for s in stop if s]
            hits = [(i, s) for i, s in hits if i >= 0]
            if hits:
                index, seq = min(hits)
                end = index + len(seq) if include_stop else index
                last = candidate[:end][len(produced) :]
                self.pieces.append(last)
                self.finish = "stop_sequence"
                break
            self.pieces.append(piece)
            produced = candidate
        self.text = "".join(self.pieces)


def _sse(data: Any) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n".encode()


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class _Schedule:
    """When the n-th token of one stream is due: first_token_delay after the request, then 1/rate apart."""

    def __init__(self, start: float, first_token_delay: float, token_rate: float) -> None:
        self.start, self.first, self.step = start, first_token_delay, 1 / token_rate

    def due(self, index: int) -> float:
        return self.start + self.first + index * self.step


class _Rejected(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DemoServer:
    """A local model server speaking TGI's native protocol and the OpenAI chat API.

    Parameters
    ----------
    model_id:
        The id reported by ``/info`` and ``/v1/models``; also changes which canned answers it gives.
    token_rate:
        Tokens per second while streaming.
    first_token_delay:
        Seconds between receiving a request and sending the first token.
    answer_tokens:
        When set, every answer is exactly this many tokens long (the canned answer repeated), before
        ``max_new_tokens`` and stop sequences apply; for benchmarks that need a fixed answer length.
    port:
        0 picks a free port; restarts reuse the port first bound.
    context:
        The context (prompt + answer, in the demo's tokens) the OpenAI flavours enforce.
    max_input_tokens:
        When set, TGI's native routes enforce TGI's limits as TGI does (``max_total_tokens`` =
        ``context``): HTTP 422 "`inputs` tokens + `max_new_tokens` must be <= N" first, then
        "`inputs` must have less than N tokens"; ``/info`` reports both. When None they enforce none
        and ``/info`` reports 4095 and 4096.

    Attributes
    ----------
    url:
        ``http://127.0.0.1:PORT`` (set once started).
    requests:
        ``(path, parsed JSON body)`` of every request received, oldest first.
    headers:
        The HTTP headers of each recorded request (lower-case names), parallel to ``requests``.
    clients:
        The ``(host, port)`` each recorded request came from, parallel to ``requests``: requests
        with the same port came over one connection.
    disconnects:
        How many streams the client closed before they ended.
    fault:
        ``None`` or one of :data:`FAULTS` (e.g. ``"status:429"``); takes effect on the next request.
        ``"lingers"`` sends the whole answer, then keeps the response open instead of ending it.
    """

    def __init__(
        self,
        model_id: str = DEMO_MODEL_IDS[0],
        *,
        token_rate: float = 40.0,
        first_token_delay: float = 0.2,
        port: int = 0,
        answer_tokens: int | None = None,
        flavour: str = "vllm",
        context: int = 4096,
        sampling: bool = False,
        max_input_tokens: int | None = None,
    ) -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}")
        self.flavour = flavour
        self.context = context
        self.max_input_tokens = max_input_tokens
        self.interrupt_requests = True  # llama-cpp-python's default (--interrupt_requests)
        self.cut_refusals = False  # llama-cpp-python: a too-long prompt's body breaks off instead of ending
        self.arrivals = 0  # requests received on any route (llama-cpp-python's interruption)
        self.interrupted = 0  # answers ended by another request's arrival
        if token_rate <= 0:
            raise ValueError("token_rate must be positive")
        if answer_tokens is not None and answer_tokens < 1:
            raise ValueError("answer_tokens must be at least 1")
        self.answer_tokens = answer_tokens
        self.model_id = model_id
        self.token_rate = token_rate
        self.first_token_delay = first_token_delay
        self.port = port
        self.fault: str | None = None
        self.fault_rate = 0.0
        self.random_faults: tuple[str, ...] = ("status:500", "status:429", "status:503", "error_event", "malformed")
        self.random = random.Random(0)  # seeded: a soak run injects the same faults each time
        # True: a prompt asked again gets another answer, as from a sampling server (the demo arena);
        # False: one answer per prompt and model, whatever the request says (tests compare texts).
        self.sampling = sampling
        self._asked: OrderedDict[str, int] = OrderedDict()  # prompt -> times asked (the newest 4096 prompts)
        self.requests: list[tuple[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.clients: list[tuple[str, int] | None] = []
        self.disconnects = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._app = Starlette(
            routes=[
                Route("/", self._root, methods=["POST"]),
                Route("/generate", self._generate, methods=["POST"]),
                Route("/generate_stream", self._generate_stream, methods=["POST"]),
                Route("/info", self._info, methods=["GET"]),
                Route("/health", self._health, methods=["GET"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._chat, methods=["POST"]),
            ]
        )

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> DemoServer:
        """Start serving (on the same port as before after a :meth:`stop`); returns once it accepts connections."""
        if self.running:
            return self
        # The language detector's model loads on first use (0.6 s quiet, ~3 s on a loaded machine):
        # load it before serving, or the first answer's first token would wait for it.
        from arena.language import preload

        preload()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self.port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=5,
        )
        self._server = uvicorn.Server(config)
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name=f"demo-server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not (self._server.started or not self._thread.is_alive()):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the demo server did not start within 10 s")
            time.sleep(0.005)
        if not self._server.started:
            self.stop()
            raise RuntimeError("the demo server failed to start")
        return self

    def _run(self, started: threading.Event) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._release = asyncio.Event()
            assert self._server is not None and self._socket is not None
            await self._server.serve(sockets=[self._socket])

        asyncio.run(main())

    def stop(self) -> None:
        """Stop serving and close every open stream (an outage); :meth:`start` brings it back."""
        server, thread, loop, release = self._server, self._thread, self._loop, self._release
        if server is not None:
            server.should_exit = True
        if loop is not None and release is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(release.set)
        if thread is not None:
            thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = self._loop = self._release = None

    def restart(self) -> DemoServer:
        self.stop()
        return self.start()

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------------------------

    async def _hang(self) -> None:
        """Wait until the server stops (never returns while it runs)."""
        assert self._release is not None
        await self._release.wait()

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.requests.append((request.url.path, body))
        self.arrivals += 1
        drawn = None
        if self.fault is None and self.fault_rate > 0 and self.random.random() < self.fault_rate:
            drawn = self.random.choice(self.random_faults)
        _REQUEST_FAULT.set(drawn)
        self.headers.append(dict(request.headers))
        self.clients.append((request.client.host, request.client.port) if request.client else None)
        return body

    def _current_fault(self) -> str | None:
        """The fault for the request being handled: ``fault``, else the one drawn for it by ``fault_rate``."""
        return self.fault or _REQUEST_FAULT.get()

    def _status_fault(self) -> int | None:
        fault = self._current_fault()
        if fault and fault.startswith("status:"):
            return int(fault.split(":", 1)[1])
        return None

    @staticmethod
    def _tgi_error(status: int, message: str, error_type: str) -> JSONResponse:
        return JSONResponse({"error": message, "error_type": error_type}, status_code=status)

    def _tgi_status_fault(self, status: int) -> JSONResponse:
        kinds = {422: "validation", 424: "generation", 429: "overloaded", 500: "incomplete_generation"}
        messages = {429: "Model is overloaded", 503: "Service unavailable"}
        return self._tgi_error(status, messages.get(status, f"Demo fault: HTTP {status}"), kinds.get(status, "demo"))

    def _answer_text(self, user_text: str, params: Mapping[str, Any], *, language_of: str | None = None) -> str:
        language = detect_language(user_text if language_of is None else language_of)
        text = _answer(self.model_id, user_text, language, self._variant(user_text, params))
        return text if self.answer_tokens is None else _exact_length(text, self.answer_tokens)

    def _variant(self, user_text: str, params: Mapping[str, Any]) -> int:
        """Which answer a request gets, as a sampling server would choose it.

        A request's ``seed`` fixes the answer (the same seed, the same text); greedy decoding
        (``do_sample: false`` or ``temperature: 0``) always gives the same answer; otherwise each
        new request for the same prompt gets the next answer, so Regenerate never repeats the one before.
        """
        if not self.sampling:
            return 0
        seed = params.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool):
            return seed
        if params.get("do_sample") is False or params.get("temperature") == 0:
            return 0
        asked = self._asked.pop(user_text, -1) + 1
        self._asked[user_text] = asked
        if len(self._asked) > 4096:
            self._asked.popitem(last=False)
        return asked

    @staticmethod
    async def _pace_until(due: float) -> None:
        # An absolute schedule: a late wake-up is made up on the next token instead of slowing
        # the whole stream down (relative sleeps drift by the loop's latency on every token).
        delay = due - asyncio.get_running_loop().time()
        await asyncio.sleep(delay if delay > 0 else 0)

    def _schedule(self) -> _Schedule:
        return _Schedule(asyncio.get_running_loop().time(), self.first_token_delay, self.token_rate)

    # -- TGI native --------------------------------------------------------------------------

    def _tgi_validate(self, body: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(body, dict):
            raise _Rejected("Failed to deserialize the JSON body into the target type: expected an object")
        unknown = set(body) - _TGI_TOP_KEYS
        if unknown:
            raise _Rejected(f"Failed to deserialize the JSON body: unknown field(s) {sorted(unknown)}")
        prompt = body.get("inputs")
        if not isinstance(prompt, str):
            raise _Rejected("Failed to deserialize the JSON body: missing field `inputs`")
        if not prompt:
            raise _Rejected("Input validation error: `inputs` cannot be empty")
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise _Rejected("Failed to deserialize the JSON body: `parameters` must be an object")
        unknown = set(params) - _TGI_PARAMETERS
        if unknown:
            raise _Rejected(f"Failed to deserialize the JSON body: unknown parameter(s) {sorted(unknown)}")
        checks: list[tuple[str, Callable[[Any], bool], str]] = [
            ("temperature", lambda v: v > 0, "`temperature` must be strictly positive"),
            ("repetition_penalty", lambda v: v > 0, "`repetition_penalty` must be strictly positive"),
            ("frequency_penalty", lambda v: -2 <= v <= 2, "`frequency_penalty` must be >= -2.0 and <= 2.0"),
            ("top_p", lambda v: 0 < v < 1, "`top_p` must be > 0.0 and < 1.0"),
            ("typical_p", lambda v: 0 < v < 1, "`typical_p` must be > 0.0 and < 1.0"),
            ("top_k", lambda v: isinstance(v, int) and v > 0, "`top_k` must be strictly positive"),
            ("max_new_tokens", lambda v: isinstance(v, int) and v > 0, "`max_new_tokens` must be strictly positive"),
        ]
        for name, ok, message in checks:
            value = params.get(name)
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or not ok(value)):
                raise _Rejected(f"Input validation error: {message}")
        stop = params.get("stop") or []
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _Rejected("Failed to deserialize the JSON body: `stop` must be a list of strings")
        if len(stop) > _MAX_STOP_SEQUENCES:
            raise _Rejected(
                f"Input validation error: `stop` supports up to {_MAX_STOP_SEQUENCES} stop sequences. "
                f"Given: {len(stop)}"
            )
        if params.get("max_new_tokens", 0) >= _MAX_TOTAL_TOKENS:
            raise _Rejected(
                f"Input validation error: `max_new_tokens` must be < {_MAX_TOTAL_TOKENS}. "
                f"Given: {params['max_new_tokens']}"
            )
        if self.max_input_tokens is not None:
            # TGI's order (router/src/validation.rs): the total first, then the input alone.
            tokens, new = len(_tokenize(prompt)), params.get("max_new_tokens") or 0
            if tokens + new > self.context:
                raise _Rejected(
                    f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= {self.context}. "
                    f"Given: {tokens} `inputs` tokens and {new} `max_new_tokens`"
                )
            if tokens > self.max_input_tokens:
                raise _Rejected(
                    f"Input validation error: `inputs` must have less than {self.max_input_tokens} tokens. "
                    f"Given: {tokens}"
                )
        return prompt, params

    def _tgi_plan(self, prompt: str, params: Mapping[str, Any]) -> _Plan:
        user_text = _last_user_text(prompt)
        text = self._answer_text(user_text, params)
        return _Plan(text, params.get("max_new_tokens"), params.get("stop") or [], include_stop=True)

    async def _root(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, dict) and body.get("stream"):
            return await self._tgi_stream(body)
        return await self._tgi_generate(body)

    async def _generate(self, request: Request) -> Response:
        return await self._tgi_generate(await self._body(request))

    async def _generate_stream(self, request: Request) -> Response:
        return await self._tgi_stream(await self._body(request))

    def _tgi_accept(self, body: Any) -> Response | tuple[str, dict[str, Any], _Plan]:
        """A status fault or a 422 as TGI sends them, else the plan for a valid request."""
        status = self._status_fault()
        if status is not None:
            return self._tgi_status_fault(status)
        try:
            prompt, params = self._tgi_validate(body)
        except _Rejected as e:
            return self._tgi_error(422, e.message, "validation")
        return prompt, params, self._tgi_plan(prompt, params)

    async def _tgi_generate(self, body: Any) -> Response:
        accepted = self._tgi_accept(body)
        if isinstance(accepted, Response):
            return accepted
        _prompt, params, plan = accepted
        if self._current_fault() in ("stall", "no_first_token", "never_ends"):
            await self._hang()
        await asyncio.sleep(self.first_token_delay + len(plan.pieces) / self.token_rate)
        result: dict[str, Any] = {"generated_text": plan.text}
        if params.get("details"):
            result["details"] = {
                "finish_reason": plan.finish,
                "generated_tokens": len(plan.pieces) + (plan.finish == "eos_token"),
                "seed": params.get("seed"),
                "prefill": [],
                "tokens": [],
            }
        return JSONResponse(result)

    async def _tgi_stream(self, body: Any) -> Response:
        accepted = self._tgi_accept(body)
        if isinstance(accepted, Response):
            return accepted
        prompt, params, plan = accepted
        fault = self._current_fault()

        def token(index: int, text: str, *, special: bool = False) -> dict[str, Any]:
            return {
                "index": index,
                "token": {"id": 1000 + index, "text": text, "logprob": -0.25, "special": special},
                "top_tokens": None,
                "generated_text": None,
                "details": None,
            }

        async def events() -> AsyncIterator[bytes]:
            schedule = self._schedule()
            pieces = list(plan.pieces)
            if plan.finish == "eos_token":
                pieces.append(_EOS_TEXT)
            index = 0
            while index < len(pieces) or fault == "never_ends":
                if fault == "no_first_token" or (fault == "stall" and index == _TOKENS_BEFORE_FAULT):
                    await self._hang()
                    return
                if fault == "error_event" and index == _TOKENS_BEFORE_FAULT:
                    yield _sse({"error": "Request failed during generation: demo fault", "error_type": "generation"})
                    return
                if fault == "malformed" and index == _TOKENS_BEFORE_FAULT:
                    yield b'data: {"index": 2, "token": {"id": 7, "te\n\n'
                    return
                await self._pace_until(schedule.due(index))
                if self._release is not None and self._release.is_set():
                    return
                if fault == "never_ends":
                    yield _sse(token(index, plan.pieces[index % len(plan.pieces)] if plan.pieces else " ."))
                    index += 1
                    continue
                is_last = index == len(pieces) - 1
                event = token(index, pieces[index], special=plan.finish == "eos_token" and is_last)
                if is_last:
                    event["generated_text"] = plan.text
                    event["details"] = {
                        "finish_reason": plan.finish,
                        "generated_tokens": len(pieces),
                        "input_length": max(1, len(prompt) // 4),
                        "seed": params.get("seed"),
                    }
                yield _sse(event)
                index += 1
            if fault == "lingers":
                await self._hang()

        return StreamingResponse(self._watch(events()), media_type="text/event-stream")

    async def _watch(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass events through, counting streams the client closed before they ended."""
        finished = False
        try:
            async for event in events:
                yield event
            finished = True
        finally:
            if not finished and not (self._release is not None and self._release.is_set()):
                self.disconnects += 1

    async def _info(self, request: Request) -> Response:
        return JSONResponse(
            {
                "model_id": self.model_id,
                "model_sha": None,
                "model_dtype": "torch.float16",
                "model_device_type": "cpu",
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": 128,
                "max_best_of": 2,
                "max_stop_sequences": _MAX_STOP_SEQUENCES,
                "max_input_tokens": _MAX_INPUT_TOKENS if self.max_input_tokens is None else self.max_input_tokens,
                "max_total_tokens": _MAX_TOTAL_TOKENS if self.max_input_tokens is None else self.context,
                "validation_workers": 2,
                "max_client_batch_size": 4,
                "router": "text-generation-router",
                "version": "demo",
                "sha": None,
                "docker_label": None,
            }
        )

    async def _health(self, request: Request) -> Response:
        if self._status_fault() == 503:
            return Response(status_code=503)
        return Response(status_code=200)

    # -- OpenAI chat API ---------------------------------------------------------------------

    @staticmethod
    def _openai_error(status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": status}}, status)

    def _openai_validate(self, body: Any, completion: bool = False) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Rejected("the body must be a JSON object")
        if completion:
            if not isinstance(body.get("prompt"), str):
                raise _Rejected("`prompt` must be a string")
            body = {**body, "messages": [{"role": "user", "content": body["prompt"]}]}
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _Rejected("`messages` must be a non-empty list")
        # vLLM takes any role its chat template knows (Huozi's card: 系统/用户/助手); the others take these three.
        custom_roles = self.flavour == "vllm"
        for m in messages:
            role = m.get("role") if isinstance(m, dict) else None
            if not (
                role in ("system", "user", "assistant") or (custom_roles and isinstance(role, str) and role)
            ) or not isinstance(m.get("content"), str):
                raise _Rejected("each message needs a role (system, user or assistant) and a string content")
        if not isinstance(body.get("model"), str):
            raise _Rejected("`model` is required")
        checks: list[tuple[str, Callable[[Any], bool], str]] = [
            ("temperature", lambda v: 0 <= v <= 2, "`temperature` must be >= 0.0 and <= 2.0"),
            ("top_p", lambda v: 0 < v <= 1, "`top_p` must be > 0.0 and <= 1.0"),
            ("top_k", lambda v: isinstance(v, int) and v > 0, "`top_k` must be strictly positive"),
            ("repetition_penalty", lambda v: v > 0, "`repetition_penalty` must be strictly positive"),
            ("max_tokens", lambda v: isinstance(v, int) and v > 0, "`max_tokens` must be strictly positive"),
        ]
        for name, ok, message in checks:
            value = body.get(name)
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or not ok(value)):
                raise _Rejected(f"Input validation error: {message}")
        stop = body.get("stop")
        stop = [stop] if isinstance(stop, str) else (stop or [])
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _Rejected("`stop` must be a string or a list of strings")
        if len(stop) > _MAX_STOP_SEQUENCES:
            raise _Rejected(f"Input validation error: `stop` supports up to {_MAX_STOP_SEQUENCES} stop sequences.")
        return {**body, "stop": stop}

    async def _models(self, request: Request) -> Response:
        self.arrivals += 1
        entry: dict[str, Any] = {"id": self.model_id, "object": "model", "created": 0, "owned_by": "demo"}
        if self.flavour == "vllm":
            entry["max_model_len"] = self.context
        elif self.flavour == "llama-server":
            entry["meta"] = {"vocab_type": 1, "n_vocab": 32000, "n_ctx": self.context, "n_ctx_train": 4096}
        return JSONResponse({"object": "list", "data": [entry]})

    def _context_refusal(self, prompt_tokens: int, max_tokens: int) -> Response | None:
        """The flavour's answer to a prompt longer than its context, or None when it fits (or is cut)."""
        if prompt_tokens + (max_tokens if self.flavour in ("vllm", "tgi-messages") else 0) <= self.context:
            return None
        if self.flavour == "vllm":
            return self._openai_error(
                400,
                f"This model's maximum context length is {self.context} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion.",
                "BadRequestError",
            )
        if self.flavour == "tgi-messages":
            return self._tgi_error(
                422,
                f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= {self.context}. "
                f"Given: {prompt_tokens} `inputs` tokens and {max_tokens} `max_new_tokens`",
                "validation",
            )
        if self.flavour == "llama-server":
            return JSONResponse(
                {
                    "error": {
                        "code": 400,
                        "message": "the request exceeds the available context size, try increasing it",
                        "type": "exceed_context_size_error",
                        "n_prompt_tokens": prompt_tokens,
                        "n_ctx": self.context,
                    }
                },
                400,
            )
        if self.flavour == "llama-cpp-python":
            # Its generator raised before the first event: the body ends empty, or breaks off.
            if self.cut_refusals:
                return StreamingResponse(_broken_body(), 200, media_type="text/event-stream")
            return _AnsweredThenFailed(b"", 200, media_type="text/event-stream")
        return None  # ollama: the prompt is cut to the context without a word

    async def _chat(self, request: Request) -> Response:
        body = await self._body(request)
        arrival = self.arrivals
        completion = request.url.path.endswith("/v1/completions")
        if completion and self.flavour == "tgi-messages":
            return self._tgi_error(404, "Not Found", "not_found")
        status = self._status_fault()
        if status is not None:
            return self._openai_error(status, f"Demo fault: HTTP {status}", "demo_fault")
        try:
            body = self._openai_validate(body, completion)
        except _Rejected as e:
            return self._openai_error(422, e.message, "invalid_request_error")
        # The newest user message (under a custom role name, the newest message: the arena ends with it).
        user_text = next(
            (m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), body["messages"][-1]["content"]
        )
        text = self._answer_text(" ".join(user_text.split()), body, language_of=user_text)
        plan = _Plan(text, body.get("max_tokens"), body["stop"], include_stop=False)
        finish = {"eos_token": "stop", "stop_sequence": "stop", "length": "length"}[plan.finish]
        # vLLM reports which stop string matched in ``stop_reason``; None means end of sequence. The
        # other flavours say "stop" for both.
        stop_reason = next((s for s in body["stop"] if plan.finish == "stop_sequence" and s), None)
        if self.flavour != "vllm":
            stop_reason = None
        prompt_tokens = sum(len(_tokenize(m["content"])) for m in body["messages"])
        refusal = self._context_refusal(prompt_tokens, body.get("max_tokens") or 0)
        if refusal is not None:
            return refusal
        completion_tokens = len(plan.pieces) + (plan.finish == "eos_token")
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        ident, created, model = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time()), body["model"]

        if not body.get("stream"):
            if self._current_fault() in ("stall", "no_first_token", "never_ends"):
                await self._hang()
            await asyncio.sleep(self.first_token_delay + len(plan.pieces) / self.token_rate)
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": plan.text},
                "finish_reason": finish,
                "stop_reason": stop_reason,
                "logprobs": None,
            }
            return JSONResponse(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                }
            )

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        include_usage = include_usage and self.flavour != "llama-cpp-python"  # it never sends usage
        fault = self._current_fault()

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            if completion:
                choice = {"index": 0, "text": delta.get("content", ""), "finish_reason": finish_reason, **extra}
            else:
                choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None, **extra}
            if self.flavour != "vllm":
                choice.pop("stop_reason", None)
            kind = "text_completion" if completion else "chat.completion.chunk"
            return _sse({"id": ident, "object": kind, "created": created, "model": model, "choices": [choice]})

        def interrupted() -> bool:
            # llama-cpp-python: another request arrived since this one, so this answer ends now.
            return self.flavour == "llama-cpp-python" and self.interrupt_requests and self.arrivals > arrival

        async def events() -> AsyncIterator[bytes]:
            schedule = self._schedule()
            index = 0
            while index < len(plan.pieces) or fault == "never_ends":
                if fault == "no_first_token" or (fault == "stall" and index == _TOKENS_BEFORE_FAULT):
                    await self._hang()
                    return
                if fault == "error_event" and index == _TOKENS_BEFORE_FAULT:
                    yield _sse({"error": {"message": "demo fault during generation", "type": "server_error"}})
                    return
                if fault == "malformed" and index == _TOKENS_BEFORE_FAULT:
                    yield b'data: {"id": "x", "choices": [{"delta": {"cont\n\n'
                    return
                await self._pace_until(schedule.due(index))
                if self._release is not None and self._release.is_set():
                    return
                if interrupted():
                    self.interrupted += 1
                    yield _sse("[DONE]")
                    return
                delta: dict[str, Any] = {"content": plan.pieces[index % len(plan.pieces)] if plan.pieces else ""}
                if index == 0:
                    delta["role"] = "assistant"
                yield chunk(delta)
                index += 1
            if not plan.pieces:
                await self._pace_until(schedule.due(0))
            yield chunk({}, finish, stop_reason=stop_reason)
            if include_usage:
                yield _sse(
                    {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            yield _sse("[DONE]")
            if fault == "lingers":
                await self._hang()

        return StreamingResponse(self._watch(events()), media_type="text/event-stream")


def start_demo_servers(
    count: int = 4, token_rate: float = 40.0, first_token_delay: float = 0.2, *, sampling: bool = True
) -> list[DemoServer]:
    """Start ``count`` demo servers; the n-th serves ``DEMO_MODEL_IDS[n]`` (stop each with ``.stop()``).

    They sample (``sampling``): Regenerate in the demo arena shows another answer.
    """
    servers: list[DemoServer] = []
    try:
        for n in range(count):
            model_id = DEMO_MODEL_IDS[n] if n < len(DEMO_MODEL_IDS) else f"demo/model-{n + 1}"
            server = DemoServer(model_id, token_rate=token_rate, first_token_delay=first_token_delay, sampling=sampling)
            servers.append(server.start())
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def demo_environ(servers: Iterable[DemoServer]) -> dict[str, str]:
    """``DEMO_URL_1`` .. ``DEMO_URL_n`` for expanding the demo roster."""
    return {f"DEMO_URL_{n}": server.url for n, server in enumerate(servers, start=1)}
