"""Shared load-generation code: asyncio visitors speaking Gradio's queue protocol, process stats.

One process, one event loop, one ``httpx.AsyncClient``: hundreds of visitors cost a few
coroutines each, where ``gradio_client`` would start threads per job. The protocol is the one
``gradio_client`` 2.x speaks to Gradio 6 (``sse_v3``), read from its source:

1. ``POST /gradio_api/queue/join`` with ``{"data", "fn_index", "session_hash", ...}`` answers
   ``{"event_id"}`` (HTTP 503 when the queue is full);
2. ``GET /gradio_api/queue/data?session_hash=...`` is an SSE stream of that session's messages
   (``estimation``, ``process_starts``, ``process_generating``, ``process_completed``,
   ``heartbeat``), closed by ``close_stream`` when the session has no pending event.

Streamed outputs arrive as diffs (``[action, path, value]`` lists) after a first full value.
A ``gr.State`` lives on the server under the session hash, so a visitor keeps one hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

PROMPTS = (
    "Tell me about Krakow in a few sentences.",
    "How do I start learning to program?",
    "What should I cook tonight with rice and eggs?",
    "Explain what a unit test is.",
    "Give me three tips for a job interview.",
    "Why is the sky blue?",
)


# ------------------------------------------------------------------------------------------------
# Statistics and process figures
# ------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    data = sorted(values)
    k = (len(data) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


@dataclass(frozen=True)
class ProcSample:
    """CPU seconds (user + system, all threads) and memory of one process, read from /proc."""

    wall: float
    cpu: float
    rss_mb: float
    hwm_mb: float  # peak resident set size so far


def proc_sample(pid: int) -> ProcSample:
    with open(f"/proc/{pid}/stat") as f:
        # Fields after the command name (which may hold spaces) start at field 3; utime/stime are 14/15.
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    memory = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                memory[key] = int(value.split()[0]) / 1024
    return ProcSample(time.monotonic(), cpu, memory.get("VmRSS", float("nan")), memory.get("VmHWM", float("nan")))


def cpu_percent(before: ProcSample, after: ProcSample) -> float:
    """Average CPU use between two samples, in percent of one core."""
    return 100 * (after.cpu - before.cpu) / max(after.wall - before.wall, 1e-9)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class LoopLag:
    """Measures how late this process's event loop wakes up (a saturated load generator shows here)."""

    def __init__(self, period: float = 0.02) -> None:
        self.period = period
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.lags.append(max(0.0, loop.time() - due))

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


# ------------------------------------------------------------------------------------------------
# Processes under test
# ------------------------------------------------------------------------------------------------


class Endpoints:
    """``python -m benchmarks.endpoints``: the demo model servers in their own process."""

    def __init__(self, *, token_rate: float, first_token_delay: float, answer_tokens: int) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.endpoints",
                f"--token-rate={token_rate}",
                f"--first-token-delay={first_token_delay}",
                f"--answer-tokens={answer_tokens}",
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the endpoint process exited before serving")
        self.environ: dict[str, str] = json.loads(line)["environ"]
        self.pid = self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# The store logs one line per committed write at DEBUG; only its logger is raised to DEBUG, so the
# rest of the app logs exactly as in production.
_APP_MAIN = (
    "import logging, sys; "
    "logging.getLogger('arena.storage.store').setLevel(logging.DEBUG if {debug} else logging.NOTSET); "
    "sys.path.insert(0, '.'); import app; sys.exit(app.main(sys.argv[1:]))"
)


class ServerProcess:
    """A web server in a child process, logging to ``log_path``, ready once ``/config`` answers 200.

    ``url`` may be empty at start: then ``url_pattern`` finds it in the log (a server that picks its own
    free port and prints it).
    """

    name = "server"
    url_pattern = re.compile(r"Running on local URL:\s+(http://\S+?)/?\s")

    def __init__(
        self, command: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path, url: str = ""
    ) -> None:
        self.url = url
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Poll ``/config`` until it answers 200; returns the seconds since the process started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if not self.url:
                match = self.url_pattern.search(self.log())
                if match is None:
                    time.sleep(0.05)
                    continue
                self.url = match.group(1)
            try:
                if httpx.get(self.url + "/config", timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer within {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class App(ServerProcess):
    """The real arena (``app.py``) on a free port, logging to ``log_path``."""

    name = "app"

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path,
        store_debug: bool = False,
        port: int = 0,
        cpus: str = "",
    ) -> None:
        # Port 0: the app picks a free port itself and prints it (a port picked here could be taken by
        # the demo servers the app starts before it listens).
        self.port = port
        # cpus ("0,1"): pin the app to those cores, e.g. to measure the 2-core target on a bigger machine
        # while the endpoints and the load generator run on the other cores.
        pin = ["taskset", "-c", cpus] if cpus else []
        command = [
            *pin,
            sys.executable,
            "-c",
            _APP_MAIN.format(debug=bool(store_debug)),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
        ]
        url = f"http://127.0.0.1:{port}" if port else ""
        super().__init__(command, cwd=ROOT, env=env or {}, log_path=log_path, url=url)


def write_times(log_text: str, what: str) -> list[float]:
    """Milliseconds of each ``committed WHAT in X ms`` line the store logged at DEBUG."""
    marker = f"committed {what} in "
    out = []
    for line in log_text.splitlines():
        i = line.find(marker)
        if i >= 0:
            out.append(float(line[i + len(marker) :].split()[0]))
    return out


# ------------------------------------------------------------------------------------------------
# Gradio visitors
# ------------------------------------------------------------------------------------------------


class Busy(Exception):
    """The queue refused the request (HTTP 503) or the app answered with a 'busy' message."""


class AppFailed(Exception):
    """The event finished with success=false (a gr.Error or a crash); the message is the visitor's."""


def _apply(value: Any, diff: list[list[Any]]) -> Any:
    """Apply a Gradio streaming diff (``[action, path, value]`` edits) in place; returns the new value."""
    for action, path, new in diff:
        if not path:
            value = new if action == "replace" else value + new
            continue
        target = value
        for key in path[:-1]:
            target = target[key]
        last = path[-1]
        if action == "replace":
            target[last] = new
        elif action == "append":
            target[last] += new
        elif action == "add":
            if isinstance(target, list):
                target.insert(int(last), new)
            else:
                target[last] = new
        elif action == "delete":
            del target[int(last) if isinstance(target, list) else last]
        else:
            raise ValueError(f"unknown diff action {action!r}")
    return value


@dataclass
class CallResult:
    """One event as the visitor saw it: times are ``time.monotonic()`` seconds."""

    started: float
    finished: float = 0.0
    updates: list[tuple[float, list[Any]]] = field(default_factory=list)  # (arrival, outputs after it)
    output: list[Any] = field(default_factory=list)
    # The named event's way through Gradio's queue: join answered, stream open, process_starts received.
    joined: float = 0.0
    opened: float = 0.0
    processing: float = 0.0
    # The first update for which the caller's ``shows`` test held (e.g. "a chat shows text"). Tested as
    # each update arrives: the values in ``updates`` are the same objects, edited by later diffs.
    shown: float = 0.0

    @property
    def seconds(self) -> float:
        return self.finished - self.started


class GradioApp:
    """The endpoints of the page, read once from ``/config``: fn_index, inputs and outputs of each.

    Requests are built from the config rather than hard-coded, so the load generator follows the
    page as it changes: a ``gr.State`` input is sent as null (the server substitutes the session's
    value), the ``prompt`` textbox gets the prompt, every other input its initial value.
    """

    def __init__(self, url: str) -> None:
        config = httpx.get(url + "/config", timeout=10).json()
        self.url = url
        # Gradio 5+ serves its queue under /gradio_api (the config says so); Gradio 4 (FastChat's) at the root.
        self.api_prefix: str = config.get("api_prefix", "")
        self.components = {c["id"]: c for c in config["components"]}
        named = [d for d in config["dependencies"] if d.get("api_name")]
        self.fns = {d["api_name"]: d["id"] for d in named}
        self._deps = {d["api_name"]: d for d in named}
        # A click on the page also runs the events chained around a named one (``.then``): the one
        # it follows, and those that follow it. The load generator runs them too, as the page does,
        # except those that run only in the browser (``js`` without a Python function). Gradio gives
        # private events an ``api_name`` too, so it cannot tell them apart.
        deps = {d["id"]: d for d in config["dependencies"]}
        self.before: dict[str, dict[str, Any]] = {}
        self.after: dict[str, list[dict[str, Any]]] = {}
        for d in named:
            first = deps.get(d.get("trigger_after"))  # type: ignore[arg-type]
            if first is not None and first.get("backend_fn", True):
                self.before[d["api_name"]] = first
            self.after[d["api_name"]] = [
                f for f in config["dependencies"] if f.get("trigger_after") == d["id"] and f.get("backend_fn", True)
            ]

    def inputs(self, dependency: dict[str, Any], prompt: str | None = None) -> list[Any]:
        """Request data for an unnamed (chained) event, built like :meth:`payload`."""
        data: list[Any] = []
        for cid in dependency["inputs"]:
            component = self.components[cid]
            props = component.get("props", {})
            if component.get("type") == "state":
                data.append(None)
            elif props.get("elem_id") == "prompt" and prompt is not None:
                data.append(prompt)
            else:
                data.append(props.get("value"))
        return data

    def payload(self, api_name: str, prompt: str | None = None) -> list[Any]:
        return self.inputs(self._deps[api_name], prompt)

    def output_index(self, api_name: str, elem_id: str) -> int:
        outputs = self._deps[api_name]["outputs"]
        for i, cid in enumerate(outputs):
            if self.components[cid].get("props", {}).get("elem_id") == elem_id:
                return i
        raise KeyError(f"{api_name} has no output with elem_id {elem_id!r}")


class Visitor:
    """One browser tab: one session hash, one event at a time."""

    def __init__(self, http: httpx.AsyncClient, app: GradioApp) -> None:
        self.http = http
        self.app = app
        self.session_hash = uuid.uuid4().hex[:11]
        # Sent with every request of this tab (behind a proxy: its sticky cookie, benchmarks/bench_scale.py).
        self.headers: dict[str, str] = {}

    @classmethod
    async def arrive(cls, http: httpx.AsyncClient, app: GradioApp) -> Visitor:
        """A new session that has done what a person does first: accept the terms, if the page asks."""
        visitor = cls(http, app)
        if "accept_terms" in app.fns:
            await visitor.call("accept_terms", app.payload("accept_terms"))
        return visitor

    async def call(
        self,
        api_name: str,
        data: list[Any],
        *,
        keep_updates: bool = False,
        shows: Callable[[list[Any]], bool] | None = None,
    ) -> CallResult:
        """Run one event to completion, with the events the page chains before and after it.

        The result (and its timing) is the named event's, measured from the first request of the chain.

        Raises
        ------
        Busy
            HTTP 503 from the queue.
        AppFailed
            The event ended with ``success: false``.
        """
        started = time.monotonic()
        before = self.app.before.get(api_name)
        if before is not None:
            await self._run(before["id"], self.app.inputs(before), keep_updates=False, started=started)
        try:
            result = await self._run(
                self.app.fns[api_name], data, keep_updates=keep_updates, started=started, shows=shows
            )
        except AppFailed:
            for after in self.app.after.get(api_name, []):
                if not after.get("trigger_only_on_success"):
                    await self._run(after["id"], self.app.inputs(after), keep_updates=False, started=started)
            raise
        for after in self.app.after.get(api_name, []):
            if not after.get("trigger_only_on_failure"):
                await self._run(after["id"], self.app.inputs(after), keep_updates=False, started=started)
        return result

    async def run(
        self,
        fn_index: int,
        data: list[Any],
        *,
        keep_updates: bool = False,
        started: float = 0.0,
        shows: Callable[[list[Any]], bool] | None = None,
    ) -> CallResult:
        """Run one event by its ``fn_index`` alone (no chained events); times count from ``started``."""
        return await self._run(
            fn_index, data, keep_updates=keep_updates, started=started or time.monotonic(), shows=shows
        )

    async def _run(
        self,
        fn_index: int,
        data: list[Any],
        *,
        keep_updates: bool,
        started: float,
        shows: Callable[[list[Any]], bool] | None = None,
    ) -> CallResult:
        result = CallResult(started=started)
        join = await self.http.post(
            f"{self.app.url}{self.app.api_prefix}/queue/join",
            json={
                "data": data,
                "fn_index": fn_index,
                "session_hash": self.session_hash,
                "event_data": None,
                "trigger_id": None,
            },
            headers=self.headers,
        )
        if join.status_code == 503:
            raise Busy("queue full (HTTP 503)")
        join.raise_for_status()
        event_id = join.json()["event_id"]
        result.joined = time.monotonic()
        outputs: list[Any] | None = None
        async with self.http.stream(
            "GET",
            f"{self.app.url}{self.app.api_prefix}/queue/data",
            params={"session_hash": self.session_hash},
            headers=self.headers,
        ) as response:
            response.raise_for_status()
            result.opened = time.monotonic()
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                kind = message.get("msg")
                if kind == "close_stream":
                    break
                if message.get("event_id") != event_id:
                    continue
                if kind == "process_starts":
                    result.processing = time.monotonic()
                if kind in ("process_generating", "process_streaming", "process_completed"):
                    now = time.monotonic()
                    if kind == "process_completed" and not message.get("success", False):
                        error = (message.get("output") or {}).get("error") or message.get("title") or "failed"
                        raise (Busy if "busy" in str(error).lower() else AppFailed)(str(error))
                    data_out = (message.get("output") or {}).get("data") or []
                    if outputs is None or (kind == "process_completed" and not _is_diff(data_out)):
                        outputs = data_out
                    else:
                        outputs = [_apply(v, d) for v, d in zip(outputs, data_out, strict=False)]
                    if keep_updates and kind != "process_completed":
                        result.updates.append((now, outputs))
                    if shows is not None and not result.shown and shows(outputs):
                        result.shown = now
                    if kind == "process_completed":
                        result.finished = now
                        result.output = outputs
                        break
        if not result.finished:
            raise AppFailed("the stream closed before the event completed")
        return result


def _is_diff(data: list[Any]) -> bool:
    return bool(data) and all(
        isinstance(d, list) and all(isinstance(e, list) and len(e) == 3 and isinstance(e[1], list) for e in d)
        for d in data
    )


def assistant_text(chat: Any) -> str:
    """The last assistant message's text in a Chatbot value (messages; content may be text blocks)."""
    if not isinstance(chat, list):
        return ""
    for message in reversed(chat):
        if isinstance(message, dict) and message.get("role") == "assistant":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(b.get("text", "") for b in content if isinstance(b, dict))
            return ""
    return ""


# ------------------------------------------------------------------------------------------------
# Bare endpoints: the ideal a battle is compared with
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointTarget:
    """One demo server and the protocol to speak to it."""

    url: str
    protocol: str  # "tgi" or "openai"
    model: str


def demo_targets(environ: Mapping[str, str]) -> list[EndpointTarget]:
    """The demo roster's servers: 1 and 2 speak TGI, 3 and 4 the OpenAI API (see demo_models.yaml)."""
    from arena.backends.demo import DEMO_MODEL_IDS

    protocols = ("tgi", "tgi", "openai", "openai")
    return [
        EndpointTarget(environ[f"DEMO_URL_{n + 1}"], protocols[n], DEMO_MODEL_IDS[n]) for n in range(len(protocols))
    ]


async def stream_direct(http: httpx.AsyncClient, target: EndpointTarget, prompt: str) -> tuple[float, float, int]:
    """Stream one answer straight from the server: (seconds to first token, total seconds, tokens)."""
    started = time.monotonic()
    first: float | None = None
    tokens = 0
    if target.protocol == "tgi":
        request = http.stream(
            "POST",
            target.url + "/generate_stream",
            json={"inputs": f"<|im_start|>user\n{prompt}<|im_end|>\n", "parameters": {"max_new_tokens": 1024}},
        )
    else:
        request = http.stream(
            "POST",
            target.url + "/v1/chat/completions",
            json={"model": target.model, "messages": [{"role": "user", "content": prompt}], "stream": True},
        )
    async with request as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            event = json.loads(line[5:])
            if target.protocol == "tgi":
                text = "" if event["token"]["special"] else event["token"]["text"]
            else:
                choices = event.get("choices") or [{}]
                text = (choices[0].get("delta") or {}).get("content") or ""
            if text:
                tokens += 1
                if first is None:
                    first = time.monotonic() - started
    return (first if first is not None else float("nan")), time.monotonic() - started, tokens


async def direct_battle(
    http: httpx.AsyncClient, targets: Sequence[EndpointTarget], rng: random.Random
) -> tuple[float, float, int]:
    """Two answers from two different servers, concurrently: (first token, both done, fewest tokens)."""
    a, b = rng.sample(list(targets), 2)
    prompt = rng.choice(PROMPTS)
    started = time.monotonic()
    (ttft_a, _, tok_a), (ttft_b, _, tok_b) = await asyncio.gather(
        stream_direct(http, a, prompt), stream_direct(http, b, prompt)
    )
    return min(ttft_a, ttft_b), time.monotonic() - started, min(tok_a, tok_b)


def http_client(visitors: int) -> httpx.AsyncClient:
    """One pooled client for every visitor: each may hold a join request plus one open stream."""
    limits = httpx.Limits(max_connections=4 * visitors + 16, max_keepalive_connections=4 * visitors + 16)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0, connect=30.0))


@contextlib.contextmanager
def own_cpu() -> Iterator[dict[str, float]]:
    """CPU percent (of one core) this process used inside the block: fills ``result['cpu']``."""
    result: dict[str, float] = {}
    t0, w0 = os.times(), time.monotonic()
    try:
        yield result
    finally:
        t1 = os.times()
        result["cpu"] = 100 * (t1.user + t1.system - t0.user - t0.system) / max(time.monotonic() - w0, 1e-9)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
