"""Battles under concurrency: N simulated visitors run full battles against the real app.

Run: ``python -m benchmarks.bench_battles`` from the repository root (``--help`` for options).
Prints one table and writes nothing else.

Set-up: the four demo model servers run in a process of their own (``benchmarks/endpoints.py``),
streaming exactly ``--answer-tokens`` tokens at ``--token-rate`` after ``--first-token-delay``;
the app (``app.py`` with the demo roster, a fresh SQLite file) talks to them as it would to TGI
and vLLM. For each N, two phases of ``--duration`` seconds:

* **bare**: N visitors each stream two answers straight from two endpoints at once, in a loop.
  This is the ideal a battle is compared with, measured in the same run at the same load, and
  it shows what the load generator itself can drive.
* **arena**: N visitors (one Gradio session each) loop over: send a prompt and read the stream
  of both chats to the end, vote, start a new round.

Battle time is from the ``/send`` request to its last update (both answers complete); the
added time to first token is the arena's first visible token minus the bare phase's median.
A third table follows the first token's way through Gradio's queue: when the join request was
answered, when the event stream opened, when ``process_starts`` arrived, when the first token did.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arena.backends.demo import _tokenize
from benchmarks.loadgen import (
    PROMPTS,
    App,
    AppFailed,
    Busy,
    Endpoints,
    GradioApp,
    LoopLag,
    Visitor,
    assistant_text,
    cpu_percent,
    demo_targets,
    direct_battle,
    http_client,
    loadavg,
    median,
    own_cpu,
    percentile,
    proc_sample,
)

VOTES = ("vote_a", "vote_b", "vote_tie", "vote_bothbad")

# Every simulated visitor comes from 127.0.0.1, which the per-address limits would count as one person.
NO_RATE_LIMITS = {"ARENA_BATTLES_PER_MINUTE": "0", "ARENA_VOTES_PER_HOUR": "0"}


@dataclass
class Phase:
    """What one phase measured (seconds unless named otherwise)."""

    visitors: int
    wall: float = 0.0
    battle: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    # Where the first token's wait goes (arena phase, from the /send request): join answered,
    # event stream open, process_starts received (the app's handler begins about then).
    joined: list[float] = field(default_factory=list)
    opened: list[float] = field(default_factory=list)
    processing: list[float] = field(default_factory=list)
    vote: list[float] = field(default_factory=list)
    updates: list[int] = field(default_factory=list)
    completed: int = 0
    busy: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    loadgen_cpu: float = 0.0
    loop_lag_p99: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # process name -> % of one core
    rss_mb: float = 0.0
    hwm_mb: float = 0.0
    loadavg: str = ""

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def cpu_per_battle_ms(self) -> float:
        """The app's CPU time per completed battle (robust to a busy machine, unlike latencies)."""
        return 10 * self.cpu.get("app", float("nan")) * self.wall / self.completed if self.completed else float("nan")

    @property
    def per_minute(self) -> float:
        return 60 * self.completed / self.wall if self.wall else float("nan")


async def _visitors(n: int, duration: float, stagger: float, body) -> float:  # type: ignore[no-untyped-def]
    """Run ``body(i, deadline)`` for n visitors started evenly over ``stagger`` s; returns the wall time."""
    started = time.monotonic()
    deadline = started + stagger + duration

    async def one(i: int) -> None:
        await asyncio.sleep(stagger * i / n)
        await body(i, deadline)

    await asyncio.gather(*(one(i) for i in range(n)))
    return time.monotonic() - started


async def bare_phase(environ: dict[str, str], n: int, duration: float, answer_tokens: int) -> Phase:
    phase = Phase(n)
    targets = demo_targets(environ)
    async with http_client(n) as http:

        async def body(i: int, deadline: float) -> None:
            rng = random.Random(i)
            while time.monotonic() < deadline:
                try:
                    ttft, total, tokens = await direct_battle(http, targets, rng)
                except Exception as e:
                    phase.error(type(e).__name__)
                    continue
                if tokens != answer_tokens:
                    phase.error("short answer")
                phase.ttft.append(ttft)
                phase.battle.append(total)
                phase.completed += 1

        with own_cpu() as cpu, LoopLag() as lag:
            phase.wall = await _visitors(n, duration, min(4.0, duration / 4), body)
        phase.loadgen_cpu = cpu["cpu"]
        phase.loop_lag_p99 = percentile(lag.lags, 99)
    return phase


def _tokens(text: str) -> int:
    return len(_tokenize(text))


async def battle(visitor: Visitor, rng: random.Random, phase: Phase, answer_tokens: int) -> None:
    """One full battle; failures are counted in ``phase`` (a busy answer is not a failure)."""
    app = visitor.app
    a, b = app.output_index("send", "chat_a"), app.output_index("send", "chat_b")
    try:
        sent = await visitor.call(
            "send",
            app.payload("send", rng.choice(PROMPTS)),
            keep_updates=True,
            shows=lambda out: bool(assistant_text(out[a]) or assistant_text(out[b])),
        )
        first = sent.shown or sent.finished
        if {_tokens(assistant_text(sent.output[a])), _tokens(assistant_text(sent.output[b]))} != {answer_tokens}:
            phase.error("short answer")
            await visitor.call("new_round", app.payload("new_round"))
            return
        phase.battle.append(sent.seconds)
        phase.ttft.append(first - sent.started)
        phase.joined.append(sent.joined - sent.started)
        phase.opened.append(sent.opened - sent.started)
        if sent.processing:
            phase.processing.append(sent.processing - sent.started)
        phase.updates.append(len(sent.updates))
        vote = rng.choice(VOTES)
        voted = await visitor.call(vote, app.payload(vote))
        phase.vote.append(voted.seconds)
        await visitor.call("new_round", app.payload("new_round"))
        phase.completed += 1
    except Busy:
        phase.busy += 1
        await asyncio.sleep(1.0)
        await visitor.call("new_round", app.payload("new_round"))
    except AppFailed as e:
        phase.error(f"app: {str(e)[:60]}")
    except Exception as e:
        phase.error(type(e).__name__)


async def arena_phase(
    url: str, n: int, duration: float, answer_tokens: int, pids: dict[str, int], stagger: float = 4.0
) -> Phase:
    phase = Phase(n)
    app = GradioApp(url)
    async with http_client(n) as http:

        async def body(i: int, deadline: float) -> None:
            rng = random.Random(1000 + i)
            visitor = await Visitor.arrive(http, app)
            while time.monotonic() < deadline:
                await battle(visitor, rng, phase, answer_tokens)

        before = {name: proc_sample(pid) for name, pid in pids.items()}
        with own_cpu() as cpu, LoopLag() as lag:
            phase.wall = await _visitors(n, duration, min(stagger, duration / 4), body)
        after = {name: proc_sample(pid) for name, pid in pids.items()}
        phase.loadgen_cpu = cpu["cpu"]
        phase.loop_lag_p99 = percentile(lag.lags, 99)
    phase.cpu = {name: cpu_percent(before[name], after[name]) for name in pids}
    phase.rss_mb, phase.hwm_mb = after["app"].rss_mb, after["app"].hwm_mb
    phase.loadavg = loadavg()
    return phase


async def warm_up(url: str, answer_tokens: int) -> None:
    """One battle first: the first prompt pays for lazy imports that no later one does."""
    phase = Phase(1)
    async with http_client(1) as http:
        await battle(await Visitor.arrive(http, GradioApp(url)), random.Random(0), phase, answer_tokens)
    if phase.errors:
        raise RuntimeError(f"the warm-up battle failed: {phase.errors}")


def ms(x: float) -> str:
    return f"{1000 * x:.0f}"


def table(rows: list[tuple[Phase, Phase]]) -> str:
    head = (
        "| visitors | ideal p50 s | battle p50 s | battle p95 s | p50/ideal | p95/ideal | added TTFT p50 ms "
        "| added TTFT p95 ms | battles/min | busy | errors | updates/battle | arena CPU % | arena CPU ms/battle "
        "| endpoints CPU % "
        "| loadgen CPU % | loadgen lag p99 ms (bare/arena) | arena RSS MB (peak) | loadavg after |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for bare, arena in rows:
        ideal = median(bare.battle)
        ideal_ttft = median(bare.ttft)
        errors = sum(arena.errors.values())
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(arena.errors.items()))
        lines.append(
            f"| {arena.visitors} | {ideal:.2f} | {percentile(arena.battle, 50):.2f} "
            f"| {percentile(arena.battle, 95):.2f} "
            f"| {percentile(arena.battle, 50) / ideal:.3f} | {percentile(arena.battle, 95) / ideal:.3f} "
            f"| {ms(percentile(arena.ttft, 50) - ideal_ttft)} | {ms(percentile(arena.ttft, 95) - ideal_ttft)} "
            f"| {arena.per_minute:.0f} | {arena.busy} | {errors}{f' ({detail})' if detail else ''} "
            f"| {median(arena.updates):.0f} | {arena.cpu.get('app', float('nan')):.0f} | {arena.cpu_per_battle_ms:.0f} "
            f"| {arena.cpu.get('endpoints', float('nan')):.0f} | {arena.loadgen_cpu:.0f} "
            f"| {ms(bare.loop_lag_p99)} / {ms(arena.loop_lag_p99)} | {arena.rss_mb:.0f} ({arena.hwm_mb:.0f}) "
            f"| {arena.loadavg} |"
        )
    return "\n".join(lines)


def bare_table(rows: list[tuple[Phase, Phase]]) -> str:
    lines = [
        "| visitors | bare battles | bare battle p50 s | p95 s | bare TTFT p50 ms | p95 ms | errors | loadgen CPU % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for bare, _ in rows:
        lines.append(
            f"| {bare.visitors} | {bare.completed} | {percentile(bare.battle, 50):.2f} | "
            f"{percentile(bare.battle, 95):.2f} | {ms(percentile(bare.ttft, 50))} | {ms(percentile(bare.ttft, 95))} "
            f"| {sum(bare.errors.values())} | {bare.loadgen_cpu:.0f} |"
        )
    return "\n".join(lines)


def timeline_table(rows: list[tuple[Phase, Phase]]) -> str:
    """Where the arena's first token goes: each step's p50 / p95 since the /send request, ms."""
    lines = [
        "| visitors | join answered | event stream open | process_starts received | first token | "
        "ideal first token (bare p50) |",
        "|---|---|---|---|---|---|",
    ]
    for bare, arena in rows:
        cells = [
            f"{ms(percentile(xs, 50))} / {ms(percentile(xs, 95))}"
            for xs in (arena.joined, arena.opened, arena.processing, arena.ttft)
        ]
        lines.append(f"| {arena.visitors} | {' | '.join(cells)} | {ms(median(bare.ttft))} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_battles", description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", default="1,8,32,64,128", help="comma-separated N values")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per phase (after ramp-up)")
    parser.add_argument("--token-rate", type=float, default=50.0)
    parser.add_argument("--first-token-delay", type=float, default=0.2)
    parser.add_argument("--answer-tokens", type=int, default=200)
    parser.add_argument("--db", default="", help="database URL (default: a fresh SQLite file in a temp dir)")
    parser.add_argument("--env", action="append", default=[], help="extra NAME=VALUE for the app (repeatable)")
    parser.add_argument("--keep-log", type=Path, help="copy the app's log here")
    parser.add_argument(
        "--app-cpus", default="", help="pin the app to these cores (taskset -c), e.g. 0,1 on a bigger machine"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(n) for n in args.visitors.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-battles-"))
    db = args.db or f"sqlite:///{tmp / 'bench.sqlite3'}"
    extra = dict(item.split("=", 1) for item in args.env)
    endpoints = Endpoints(
        token_rate=args.token_rate, first_token_delay=args.first_token_delay, answer_tokens=args.answer_tokens
    )
    app = App(
        ["--config", "arena/backends/demo_models.yaml", "--db", db],
        env={**endpoints.environ, **NO_RATE_LIMITS, **extra},
        log_path=tmp / "app.log",
        cpus=args.app_cpus,
    )
    rows: list[tuple[Phase, Phase]] = []
    try:
        app.wait_ready()
        asyncio.run(warm_up(app.url, args.answer_tokens))
        pids = {"app": app.pid, "endpoints": endpoints.pid}
        for n in counts:
            print(f"N={n}: bare ... (loadavg {loadavg()})", file=sys.stderr, flush=True)
            bare = asyncio.run(bare_phase(endpoints.environ, n, args.duration, args.answer_tokens))
            print(f"N={n}: arena ... (loadavg {loadavg()})", file=sys.stderr, flush=True)
            arena = asyncio.run(arena_phase(app.url, n, args.duration, args.answer_tokens, pids))
            rows.append((bare, arena))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    finally:
        app.stop()
        endpoints.stop()
        if args.keep_log:
            args.keep_log.write_text(app.log())
    print(
        f"Endpoints: {args.answer_tokens} tokens at {args.token_rate:g} tokens/s after {args.first_token_delay:g} s; "
        f"{args.duration:g} s per phase; extra app env: {extra or 'none'}\n"
    )
    print(table(rows))
    print("\nBare endpoints (the ideal, and what the load generator drives without the arena):\n")
    print(bare_table(rows))
    print(
        "\nThe first token's way (p50 / p95 ms since the /send request; the app's handler starts about when "
        "process_starts is sent):\n"
    )
    print(timeline_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
