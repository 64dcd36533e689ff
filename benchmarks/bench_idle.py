"""The app with no visitor: CPU (% of one core) over a minute, with health checks on and off.

Run: ``python -m benchmarks.bench_idle`` from the repository root (``--help`` for options). Prints
one table and writes nothing else.

Idle means no page open: an open page is a visitor (its browser keeps an event stream and any
timer of the page running). The model servers are the demo roster's, in a process of their own
(``benchmarks/endpoints.py``), so their CPU is not counted; the app is ``app.py`` with a fresh
SQLite file. Each configuration starts a fresh app, waits until it answers and ``--settle``
seconds more (start-up work, the first health round), then reads the app process's CPU time from
``/proc`` before and after ``--duration`` seconds of nobody visiting.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.loadgen import App, Endpoints, cpu_percent, loadavg, proc_sample

CONFIGS = {
    "health checks on (every 15 s)": {},
    "health checks off": {"ARENA_HEALTH_INTERVAL": "0"},
}


def measure(environ: dict[str, str], extra: dict[str, str], tmp: Path, name: str, args: argparse.Namespace) -> str:
    app = App(
        ["--config", "arena/backends/demo_models.yaml", "--db", f"sqlite:///{tmp / (name + '.sqlite3')}"],
        env={**environ, **extra},
        log_path=tmp / f"{name}.log",
    )
    try:
        app.wait_ready()
        time.sleep(args.settle)
        before = proc_sample(app.pid)
        time.sleep(args.duration)
        after = proc_sample(app.pid)
    finally:
        app.stop()
    cpu = cpu_percent(before, after)
    return f"{cpu:.2f} | {after.cpu - before.cpu:.2f} | {after.rss_mb:.0f} | {loadavg()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_idle", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured idle")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after start-up before measuring")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], help="extra NAME=VALUE for the app (repeatable)")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env)
    tmp = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    endpoints = Endpoints(token_rate=50, first_token_delay=0.2, answer_tokens=200)
    rows = []
    try:
        for rep in range(args.repeat):
            for n, (label, env) in enumerate(CONFIGS.items()):
                print(f"{label} ({rep + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
                rows.append(f"| {label} | {measure(endpoints.environ, {**env, **extra}, tmp, f'{rep}-{n}', args)} |")
    finally:
        endpoints.stop()
    print(f"{args.duration:g} s idle per row, after {args.settle:g} s to settle; extra env: {extra or 'none'}\n")
    print("| configuration | app CPU % of one core | CPU s | RSS MB | loadavg after |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
