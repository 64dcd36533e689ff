"""Scale-out: battles per minute through nginx in front of 1, 2, 4 arena processes sharing PostgreSQL.

Run: ``python -m benchmarks.bench_scale`` from the repository root (``--help`` for options). Needs
nginx (``apt-get install nginx``) and PostgreSQL (``--pg``, default the test server). Prints tables.

Set-up, for each process count P: P real ``app.py`` processes (demo roster, one fresh PostgreSQL
database they share), the shipped nginx configuration (docs/deploy/nginx.conf, only the addresses
rewritten) in front, and the four demo model servers in a process of their own
(``benchmarks/endpoints.py``). The arena processes run on ``--app-cpus``; the model servers, nginx
and the load generator on ``--other-cpus`` (``taskset`` / ``sched_setaffinity``), so the figure is
the arena's, not the model servers'. Each visitor loads the page once through nginx (which sets its
sticky cookie) and then loops over full battles, as in ``benchmarks/bench_battles.py``: send a
prompt and read both streams to the end, vote, new round. Before each arena phase a bare phase
streams the same answers straight from the model servers: the ideal battle, measured at the same
moment and load.

Reported per P and visitor count N: battles per minute, battle duration / ideal (p50, p95), added
time to first token (p95), the arena's CPU per battle (all P processes), nginx's CPU per battle, how
evenly nginx spread the visitors, and the load average. On a machine with fewer cores than P + 1 the
processes share cores and cannot show scaling: the table says how many cores the arena had.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import secrets
import sys
import tempfile
import time
from collections import Counter
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_battles import NO_RATE_LIMITS, Phase, _visitors, bare_phase, battle
from benchmarks.loadgen import (
    App,
    Endpoints,
    GradioApp,
    Visitor,
    http_client,
    loadavg,
    median,
    percentile,
    proc_sample,
)
from benchmarks.proxy import Nginx

# A visitor's queue requests in nginx's log (docs/deploy/nginx.conf's log_format).
ROUTE = re.compile(r'"POST /gradio_api/queue/join" \d+ \d+ route=([0-9a-f]{32}) upstream=(.+?) time=')


class _NoCookies(DefaultCookiePolicy):
    """The visitors share one HTTP client: its jar must keep no visitor's cookie for the others."""

    def set_ok(self, cookie, request):  # type: ignore[no-untyped-def]
        return False


def pin(pid: int, cpus: set[int]) -> None:
    """Move every thread of ``pid`` to ``cpus`` (sched_setaffinity acts per thread)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)


def cpu_list(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


async def arrive(http: httpx.AsyncClient, app: GradioApp) -> Visitor:
    """A browser tab: the page load (nginx sets the sticky cookie), then the terms, then battles."""
    page = await http.get(app.url + "/")
    page.raise_for_status()
    cookie = page.headers.get("set-cookie", "").split(";", 1)[0]
    if not cookie.startswith("arena_route="):
        raise RuntimeError(f"nginx set no arena_route cookie (got {cookie!r})")
    visitor = Visitor(http, app)
    visitor.headers = {"cookie": cookie}
    if "accept_terms" in app.fns:
        await visitor.call("accept_terms", app.payload("accept_terms"))
    return visitor


async def proxied_phase(
    url: str, n: int, duration: float, answer_tokens: int, app_pids: list[int], proxy: Nginx
) -> tuple[Phase, float]:
    """N visitors battling through the proxy; returns the phase and nginx's CPU seconds in it."""
    phase = Phase(n)
    app = page_config(url)
    async with http_client(n) as http:
        http.cookies.jar.set_policy(_NoCookies())

        async def body(i: int, deadline: float) -> None:
            rng = random.Random(1000 + i)
            try:
                visitor = await arrive(http, app)
            except Exception as e:  # counted: a visitor the page or the terms failed for never battles
                phase.error(f"arrival: {type(e).__name__}")
                return
            while time.monotonic() < deadline:
                await battle(visitor, rng, phase, answer_tokens)

        before = [proc_sample(pid) for pid in app_pids]
        proxy_before = proxy.cpu_seconds()
        phase.wall = await _visitors(n, duration, min(4.0, duration / 4), body)
        after = [proc_sample(pid) for pid in app_pids]
        proxy_cpu = proxy.cpu_seconds() - proxy_before
    # The arena's CPU as % of one core, all processes together (Phase.cpu_per_battle_ms reads "app").
    phase.cpu["app"] = sum(100 * (b.cpu - a.cpu) for a, b in zip(before, after, strict=True)) / phase.wall
    phase.rss_mb = max(s.rss_mb for s in after)
    phase.hwm_mb = max(s.hwm_mb for s in after)
    phase.loadavg = loadavg()
    return phase, proxy_cpu


def page_config(url: str, tries: int = 5) -> GradioApp:
    """The page's endpoints, read through the proxy; a loaded machine may take more than one try."""
    for attempt in range(tries):
        try:
            return GradioApp(url)
        except httpx.TimeoutException:
            if attempt == tries - 1:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


def spread(proxy: Nginx, since: int) -> str:
    """Visitors (sticky cookies) per process in the log since line ``since``, most first."""
    owner: dict[str, str] = {}
    for line in proxy.log_lines()[since:]:
        match = ROUTE.search(line)
        if match:
            owner[match.group(1)] = match.group(2).split(", ")[-1]
    return "/".join(str(c) for _, c in Counter(owner.values()).most_common())


def fresh_database(pg: str) -> tuple[str, str]:
    """A new empty database on the server ``pg`` names; returns (its URL, its name)."""
    import psycopg

    name = f"bench_scale_{os.getpid()}_{secrets.token_hex(3)}"
    base, _, admin_db = pg.rpartition("/")
    admin = pg.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    del admin_db
    return f"{base}/{name}", name


def drop_database(pg: str, name: str) -> None:
    import psycopg

    with psycopg.connect(pg.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def table(rows: list[tuple[int, str, Phase, Phase, float, str]]) -> str:
    head = (
        "| processes | arena cores | visitors | ideal p50 s | battle p50/ideal | p95/ideal | added TTFT p95 ms "
        "| battles/min | busy | errors | arena CPU % (all processes) | arena CPU ms/battle "
        "| nginx CPU ms/battle | visitors per process | loadavg after |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for processes, cores, bare, arena, proxy_cpu, share in rows:
        ideal = median(bare.battle)
        errors = sum(arena.errors.values())
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(arena.errors.items()))
        per_battle = 1000 * proxy_cpu / arena.completed if arena.completed else float("nan")
        lines.append(
            f"| {processes} | {cores} | {arena.visitors} | {ideal:.2f} "
            f"| {percentile(arena.battle, 50) / ideal:.3f} | {percentile(arena.battle, 95) / ideal:.3f} "
            f"| {1000 * (percentile(arena.ttft, 95) - median(bare.ttft)):.0f} "
            f"| {arena.per_minute:.0f} | {arena.busy} | {errors}{f' ({detail})' if detail else ''} "
            f"| {arena.cpu.get('app', float('nan')):.0f} | {arena.cpu_per_battle_ms:.0f} | {per_battle:.1f} "
            f"| {share} | {arena.loadavg} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cores = sorted(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2,4", help="comma-separated arena process counts")
    parser.add_argument("--visitors", default="8,16,32,64", help="comma-separated visitor counts")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per phase (after ramp-up)")
    parser.add_argument("--token-rate", type=float, default=50.0)
    parser.add_argument("--first-token-delay", type=float, default=0.2)
    parser.add_argument("--answer-tokens", type=int, default=200)
    parser.add_argument(
        "--pg",
        default=os.environ.get("ARENA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL database URL on the server to use; a fresh database is made there and dropped",
    )
    default_app = ",".join(str(c) for c in cores[:-1]) if len(cores) > 1 else str(cores[0])
    parser.add_argument(
        "--app-cpus",
        default=default_app,
        help=f"cores for the arena processes (default: all but the last: {default_app})",
    )
    parser.add_argument(
        "--other-cpus",
        default=str(cores[-1]),
        help=f"cores for the model servers, nginx and the load generator (default: the last: {cores[-1]})",
    )
    parser.add_argument("--env", action="append", default=[], help="extra NAME=VALUE for the app (repeatable)")
    return parser.parse_args(argv)


def start_app(
    db: str, environ: dict[str, str], extra: dict[str, str], tmp: Path, processes: int, i: int, cpus: str
) -> App:
    """One arena process, ready; started again (up to 3 tries) when it exits right after serving.

    Gradio's launch() asks HEAD / of the new server with a 3 s timeout *after* it serves, and exits
    ("When localhost is not accessible ...") when that times out: seen here at load average 16.
    """
    for attempt in range(3):
        app = App(
            ["--config", "arena/backends/demo_models.yaml", "--db", db],
            env={
                **environ,
                **NO_RATE_LIMITS,
                "ARENA_CLIENT_SALT": "bench-scale",
                "ARENA_TRUSTED_PROXY_HOPS": "1",
                "ARENA_JOURNAL_DIR": str(tmp / f"p{processes}-sync{i}"),
                **extra,
            },
            log_path=tmp / f"p{processes}-app{i}-{attempt}.log",
            cpus=cpus,
        )
        try:
            app.wait_ready()  # one at a time: the first migrates the fresh database
            # Gradio prints this line once that check passed.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and app.proc.poll() is None:
                if "To create a public link" in app.log():
                    return app
                time.sleep(0.2)
        except RuntimeError:
            pass
        print(f"arena process {i} exited at start-up; starting it again", file=sys.stderr, flush=True)
        app.stop()
    raise RuntimeError(f"arena process {i} would not start; see {tmp}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    process_counts = [int(n) for n in args.processes.split(",")]
    counts = [int(n) for n in args.visitors.split(",")]
    other_cpus = cpu_list(args.other_cpus)
    pin(os.getpid(), other_cpus)
    extra = dict(item.split("=", 1) for item in args.env)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    endpoints = Endpoints(
        token_rate=args.token_rate, first_token_delay=args.first_token_delay, answer_tokens=args.answer_tokens
    )
    pin(endpoints.pid, other_cpus)
    rows: list[tuple[int, str, Phase, Phase, float, str]] = []
    try:
        for processes in process_counts:
            db, name = fresh_database(args.pg)
            apps: list[App] = []
            proxy: Nginx | None = None
            try:
                for i in range(processes):
                    apps.append(start_app(db, endpoints.environ, extra, tmp, processes, i, args.app_cpus))
                proxy = Nginx(
                    [a.url.removeprefix("http://") for a in apps], tmp / f"nginx-{processes}", cpus=args.other_cpus
                )
                for n in counts:
                    print(f"P={processes} N={n}: bare ... (loadavg {loadavg()})", file=sys.stderr, flush=True)
                    bare = asyncio.run(bare_phase(endpoints.environ, n, args.duration, args.answer_tokens))
                    print(f"P={processes} N={n}: arena ... (loadavg {loadavg()})", file=sys.stderr, flush=True)
                    since = len(proxy.log_lines())
                    arena, proxy_cpu = asyncio.run(
                        proxied_phase(proxy.url, n, args.duration, args.answer_tokens, [a.pid for a in apps], proxy)
                    )
                    rows.append((processes, args.app_cpus, bare, arena, proxy_cpu, spread(proxy, since)))
                    print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
            finally:
                if proxy is not None:
                    proxy.stop()
                for a in apps:
                    a.stop()
                drop_database(args.pg, name)
    finally:
        endpoints.stop()
    print(
        f"Endpoints: {args.answer_tokens} tokens at {args.token_rate:g} tokens/s after {args.first_token_delay:g} s; "
        f"{args.duration:g} s per phase; arena on cores {args.app_cpus}, model servers + nginx + load generator on "
        f"{args.other_cpus} ({os.cpu_count()} cores in the machine); extra app env: {extra or 'none'}\n"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
