"""The arena beside FastChat's Chatbot Arena: CPU per battle, battle time and first token, same endpoints.

Run: ``python -m benchmarks.bench_fastchat`` from the repository root (``--quick`` for a short run,
``--help`` for options). Prints one table and writes nothing else.

FastChat (``fschat==0.2.36``, the peer people would run instead) lives in a virtual environment of
its own outside the checkout: ``$ARENA_PEER_VENVS/fschat`` (default ``~/.cache/arena-peers/fschat``),
made on first use with the pins it needs on today's PyPI (``--setup-only`` just makes it). Its
torch is the CPU wheel: a CUDA one would download gigabytes for a web server that never touches it.

Set-up per answer speed: the demo model servers in a process of their own
(``benchmarks/endpoints.py``), pacing exactly ``--answer-tokens`` tokens at the speed after
``--first-token-delay``; both apps talk to the same four servers over the OpenAI protocol (the
arena through a roster of four ``backend: openai`` models, FastChat through
``--register-api-endpoint-file`` with ``api_type: openai``). For each visitor count the two apps
are measured one after the other, alternating which goes first on each ``--repeat``, so both see
the same machine load. A visitor does what a person does on each page: send a prompt (the events
the page chains: FastChat's ``add_text`` -> ``bot_response_multi`` -> ``flash_buttons``, the
arena's send -> settle), read both answers to the end, vote, start a new round.

Figures: **CPU per battle** is the app process's user+system CPU time (``/proc``, all threads)
over the phase divided by the battles completed in it; **battle ÷ ideal** is the time from the
click to the last update of both answers over the servers' own time (first-token delay + tokens
÷ speed); **first token** is from the click to the first update that shows text in either chat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_battles import NO_RATE_LIMITS, Phase, battle
from benchmarks.loadgen import (
    PROMPTS,
    App,
    AppFailed,
    Busy,
    Endpoints,
    GradioApp,
    ServerProcess,
    Visitor,
    http_client,
    loadavg,
    median,
    percentile,
    proc_sample,
)

FSCHAT_PINS = (
    "fschat==0.2.36",
    "gradio==4.44.1",
    "huggingface_hub<1",
    "pydantic==2.9.2",
    "fastapi==0.115.2",
    "starlette<0.42",
    "httpx==0.27.2",
    "openai",
    "plotly<6",
    "accelerate",
    "transformers<5",
    "sentencepiece",
    "protobuf",
)
TORCH = "torch==2.13.0"  # the CPU wheel (the CUDA one is gigabytes, and the web server never computes)

# FastChat samples battle pairs from a fixed table of weights; a model missing from it has weight 0
# and a roster of only such models crashes ("probabilities contain NaN"). These four are in it with
# equal weights, and none is a name its add_text sends to OpenAI's moderation API ("gpt-4", "claude").
FASTCHAT_NAMES = ("mistral-7b-instruct-v0.2", "openchat-3.5-0106", "zephyr-7b-beta", "starling-lm-7b-alpha")
DEMO_IDS = ("demo/aurora-7b", "demo/borealis-7b", "demo/cirrus-7b", "demo/dune-7b")


def peer_venv() -> Path:
    return Path(os.environ.get("ARENA_PEER_VENVS", Path.home() / ".cache" / "arena-peers")) / "fschat"


def ensure_venv(venv: Path) -> Path:
    """FastChat's interpreter, making its virtual environment first if it is missing."""
    python = venv / "bin" / "python"
    if python.exists():
        return python
    print(f"making FastChat's virtual environment in {venv} (minutes) ...", file=sys.stderr, flush=True)
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
    # torch first and on its own: pip must find a CPU wheel of it (a find-links folder or a CPU index in
    # pip's configuration; ``2.13.0+cpu`` outranks the CUDA ``2.13.0`` once it is visible).
    subprocess.run([str(python), "-m", "pip", "install", "-q", TORCH], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *FSCHAT_PINS], check=True)
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FastChat(ServerProcess):
    """FastChat's Gradio web server (all its tabs, as its docs run it) on a free port."""

    name = "FastChat"

    def __init__(self, python: Path, environ: dict[str, str], workdir: Path) -> None:
        endpoints = {
            name: {
                "model_name": model,
                "api_type": "openai",
                "api_base": environ[f"DEMO_URL_{n + 1}"] + "/v1",
                "api_key": "unused",
                "anony_only": False,
            }
            for n, (name, model) in enumerate(zip(FASTCHAT_NAMES, DEMO_IDS, strict=True))
        }
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "endpoints.json").write_text(json.dumps(endpoints))
        self.port = free_port()
        command = [
            str(python),
            "-m",
            "fastchat.serve.gradio_web_server_multi",
            "--register-api-endpoint-file",
            "endpoints.json",
            "--controller-url",
            "",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        super().__init__(
            command,
            cwd=workdir,  # it writes its conversation logs into the working directory
            env={"LOGDIR": str(workdir)},
            log_path=workdir / "fastchat.log",
            url=f"http://127.0.0.1:{self.port}",
        )

    def wait_ready(self, timeout: float = 180.0) -> float:
        return super().wait_ready(timeout)


@dataclass
class FastChatPage:
    """The anonymous battle tab's events, found in FastChat's ``/config`` by what they read and write."""

    app: GradioApp
    load: dict[str, Any] = field(default_factory=dict)
    add_text: dict[str, Any] = field(default_factory=dict)
    bot: dict[str, Any] = field(default_factory=dict)
    flash: dict[str, Any] = field(default_factory=dict)
    votes: list[dict[str, Any]] = field(default_factory=list)
    clear: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, url: str) -> FastChatPage:
        app = GradioApp(url)
        config = httpx.get(url + "/config", timeout=10).json()
        deps = config["dependencies"]
        kinds = {c["id"]: c["type"] for c in config["components"]}

        def named(prefix: str) -> list[dict[str, Any]]:
            return [d for d in deps if (d.get("api_name") or "").startswith(prefix)]

        # The anonymous tab's send button: its model names are Markdown (the named tab's are dropdowns).
        add_text = next(
            d
            for d in named("add_text")
            if any(kinds[i] == "markdown" for i in d["inputs"]) and d["targets"][0][1] == "click"
        )
        states = [i for i in add_text["inputs"] if kinds[i] == "state"]
        bot = next(d for d in deps if d.get("trigger_after") == add_text["id"])
        flash = next(d for d in deps if d.get("trigger_after") == bot["id"])
        votes = [d for d in named("") if "vote_last_response" in d["api_name"] and d["inputs"][:2] == states][:4]
        clear = next(d for d in named("clear_history") if set(states) <= set(d["outputs"]))
        # The page's load event fills the model list the battle tab samples from (a module global).
        load = next(d for d in deps if any(t[1] == "load" for t in d["targets"]))
        return cls(app, load, add_text, bot, flash, votes, clear)

    def data(self, dependency: dict[str, Any], prompt: str = "") -> list[Any]:
        out = []
        for cid in dependency["inputs"]:
            component = self.app.components[cid]
            props = component.get("props", {})
            if component["type"] == "state":
                out.append(None)
            elif component["type"] == "textbox":
                out.append(prompt)
            elif component["type"] == "json":  # the page's URL parameters
                out.append({})
            else:
                out.append(props.get("value"))
        return out

    def chat_indexes(self) -> list[int]:
        return [i for i, cid in enumerate(self.bot["outputs"]) if self.app.components[cid]["type"] == "chatbot"]


def _fastchat_text(chat: Any) -> str:
    """The last answer in a Gradio 4 (tuples) Chatbot value, without FastChat's typing cursor."""
    if not isinstance(chat, list) or not chat:
        return ""
    last = chat[-1]
    answer = last[1] if isinstance(last, list) and len(last) > 1 else None
    return answer.replace("▌", "").strip() if isinstance(answer, str) else ""


async def fastchat_battle(visitor: Visitor, page: FastChatPage, rng: random.Random, phase: Phase) -> None:
    """One battle as FastChat's page runs it: add_text -> bot_response_multi -> flash_buttons, vote, new round."""
    chats = page.chat_indexes()
    try:
        started = time.monotonic()
        await visitor.run(page.add_text["id"], page.data(page.add_text, rng.choice(PROMPTS)), started=started)
        streamed = await visitor.run(
            page.bot["id"],
            page.data(page.bot),
            keep_updates=True,
            started=started,
            shows=lambda out: any(_fastchat_text(out[i]) for i in chats),
        )
        texts = [_fastchat_text(streamed.output[i]) for i in chats]
        first = streamed.shown or streamed.finished
        await visitor.run(page.flash["id"], [], started=started)
        if not all(texts):
            phase.error("empty answer")
        else:
            phase.battle.append(streamed.finished - started)
            phase.ttft.append(first - started)
            phase.updates.append(len(streamed.updates))
        vote = rng.choice(page.votes)
        await visitor.run(vote["id"], page.data(vote))
        await visitor.run(page.clear["id"], [])
        phase.completed += 1
    except Busy:
        phase.busy += 1
        await asyncio.sleep(1.0)
    except AppFailed as e:
        phase.error(f"app: {str(e)[:60]}")
    except Exception as e:
        phase.error(type(e).__name__)


async def run_phase(kind: str, url: str, pid: int, n: int, duration: float, answer_tokens: int) -> Phase:
    """N visitors looping over battles on one app for ``duration`` s (after a ramp); CPU read from /proc."""
    phase = Phase(n)
    fastchat_page = FastChatPage.read(url) if kind == "fastchat" else None
    arena_page = GradioApp(url) if kind == "arena" else None
    stagger = min(4.0, duration / 4)
    async with http_client(n) as http:
        started = time.monotonic()
        deadline = started + stagger + duration

        async def one(i: int) -> None:
            await asyncio.sleep(stagger * i / n)
            rng = random.Random(1000 + i)
            if fastchat_page is not None:
                visitor = Visitor(http, fastchat_page.app)
                await visitor.run(fastchat_page.load["id"], fastchat_page.data(fastchat_page.load))
                while True:  # at least one battle each (the warm-up asks for no more)
                    await fastchat_battle(visitor, fastchat_page, rng, phase)
                    if time.monotonic() >= deadline:
                        break
            else:
                assert arena_page is not None
                visitor = await Visitor.arrive(http, arena_page)
                while True:
                    await battle(visitor, rng, phase, answer_tokens)
                    if time.monotonic() >= deadline:
                        break

        before = proc_sample(pid)
        await asyncio.gather(*(one(i) for i in range(n)))
        after = proc_sample(pid)
        phase.wall = time.monotonic() - started
    phase.cpu = {"app": 100 * (after.cpu - before.cpu) / max(after.wall - before.wall, 1e-9)}
    phase.rss_mb, phase.hwm_mb = after.rss_mb, after.hwm_mb
    phase.loadavg = loadavg()
    return phase


def roster(environ: dict[str, str], path: Path) -> Path:
    """The arena's models: the same four servers, each over the OpenAI protocol."""
    lines = ["models:"]
    for n, model in enumerate(DEMO_IDS):
        lines += [
            f"  - name: {model.split('/')[1]}",
            "    backend: openai",
            f"    url: {environ[f'DEMO_URL_{n + 1}']}/v1",
            f"    model: {model}",
            "    params: {temperature: 0.7, max_new_tokens: 1024}",
            "    context_length: 4096",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Row:
    rate: float
    visitors: int
    ideal: float
    arena: list[Phase] = field(default_factory=list)
    fastchat: list[Phase] = field(default_factory=list)


def _cpu_s(phases: list[Phase]) -> float:
    """CPU seconds per battle over every repeat (total CPU over total battles)."""
    cpu = sum(p.cpu["app"] / 100 * p.wall for p in phases)
    done = sum(p.completed for p in phases)
    return cpu / done if done else float("nan")


def _pooled(phases: list[Phase], attr: str) -> list[float]:
    return [x for p in phases for x in getattr(p, attr)]


def table(rows: list[Row]) -> str:
    head = (
        "| tok/s | visitors | CPU s/battle arena / FastChat | ratio | battle ÷ ideal p50 arena / FastChat "
        "| p95 arena / FastChat | first token p50 ms arena / FastChat | updates/battle arena / FastChat "
        "| battles arena / FastChat | errors arena / FastChat | loadavg |"
    )
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        a, f = _cpu_s(r.arena), _cpu_s(r.fastchat)

        def pair(attr: str, q: float, scale: float = 1.0, fmt: str = "{:.2f}", r: Row = r) -> str:
            xa, xf = (percentile(_pooled(ps, attr), q) * scale for ps in (r.arena, r.fastchat))
            return f"{fmt.format(xa)} / {fmt.format(xf)}"

        ratio = a / f if f else float("nan")
        errs = []
        for ps in (r.arena, r.fastchat):
            kinds: dict[str, int] = {}
            for p in ps:
                for kind, count in [*p.errors.items(), ("busy", p.busy)]:
                    kinds[kind] = kinds.get(kind, 0) + count
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items()) if v)
            errs.append(f"{sum(kinds.values())}{f' ({detail})' if detail else ''}")
        out.append(
            f"| {r.rate:g} | {r.visitors} | {a:.3f} / {f:.3f} | {ratio:.2f} "
            f"| {pair('battle', 50, 1 / r.ideal)} | {pair('battle', 95, 1 / r.ideal)} "
            f"| {pair('ttft', 50, 1000, '{:.0f}')} "
            f"| {median(_pooled(r.arena, 'updates')):.0f} / {median(_pooled(r.fastchat, 'updates')):.0f} "
            f"| {sum(p.completed for p in r.arena)} / {sum(p.completed for p in r.fastchat)} "
            f"| {errs[0]} / {errs[1]} | {' ; '.join(p.loadavg for p in r.arena + r.fastchat)} |"
        )
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_fastchat", description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", default="1,8,32", help="comma-separated visitor counts")
    parser.add_argument("--token-rates", default="10,50,100", help="comma-separated answer speeds, tokens/s")
    parser.add_argument("--answer-tokens", type=int, default=200)
    parser.add_argument("--first-token-delay", type=float, default=0.2)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per phase (after the ramp)")
    parser.add_argument("--repeat", type=int, default=1, help="phases per app and visitor count (order alternates)")
    parser.add_argument("--quick", action="store_true", help="1 and 8 visitors, 10 and 50 tok/s, 10 s phases")
    parser.add_argument("--only", choices=("arena", "fastchat"), help="measure one app only")
    parser.add_argument("--env", action="append", default=[], help="extra NAME=VALUE for the arena (repeatable)")
    parser.add_argument("--setup-only", action="store_true", help="make FastChat's virtual environment and exit")
    args = parser.parse_args(argv)
    if args.quick:
        args.visitors, args.token_rates, args.duration = "1,8", "10,50", 10.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = ensure_venv(peer_venv()) if args.only != "arena" else None
    if args.setup_only:
        return 0
    counts = [int(n) for n in args.visitors.split(",")]
    rates = [float(r) for r in args.token_rates.split(",")]
    kinds = [k for k in ("arena", "fastchat") if args.only in (None, k)]
    extra = dict(item.split("=", 1) for item in args.env)
    tmp = Path(tempfile.mkdtemp(prefix="bench-fastchat-"))
    rows: list[Row] = []
    for rate in rates:
        endpoints = Endpoints(
            token_rate=rate, first_token_delay=args.first_token_delay, answer_tokens=args.answer_tokens
        )
        apps: dict[str, ServerProcess] = {}
        try:
            if "arena" in kinds:
                apps["arena"] = App(
                    ["--config", str(roster(endpoints.environ, tmp / "models.yaml")), "--db", f"sqlite:///{tmp}/a.db"],
                    env={**endpoints.environ, **NO_RATE_LIMITS, **extra},
                    log_path=tmp / f"arena-{rate:g}.log",
                )
            if python is not None:
                apps["fastchat"] = FastChat(python, endpoints.environ, tmp / f"fastchat-{rate:g}")
            for name, app in apps.items():
                ready = app.wait_ready()
                print(f"{rate:g} tok/s: {name} ready in {ready:.1f} s", file=sys.stderr, flush=True)
                asyncio.run(run_phase(name, app.url, app.pid, 1, 0.0, args.answer_tokens))  # warm-up battle
            ideal = args.first_token_delay + args.answer_tokens / rate
            for n in counts:
                row = Row(rate, n, ideal)
                for rep in range(args.repeat):
                    order = kinds if rep % 2 == 0 else kinds[::-1]
                    for name in order:
                        print(f"{rate:g} tok/s, N={n}: {name} (loadavg {loadavg()})", file=sys.stderr, flush=True)
                        phase = asyncio.run(
                            run_phase(name, apps[name].url, apps[name].pid, n, args.duration, args.answer_tokens)
                        )
                        getattr(row, name).append(phase)
                rows.append(row)
                print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
        finally:
            for app in apps.values():
                app.stop()
            endpoints.stop()
    print(
        f"Endpoints: {args.answer_tokens} tokens after {args.first_token_delay:g} s, OpenAI protocol; "
        f"{args.duration:g} s per phase, {args.repeat} repeat(s); arena env: {extra or 'default'}; "
        f"machine: {os.cpu_count()} CPUs\n"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
