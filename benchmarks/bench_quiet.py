"""What an idle demo arena writes to its log, and how soon a port in use is reported (issue 20).

Run: ``python -m benchmarks.bench_quiet [--seconds 60] [--interval 2]`` from the repository root.
Prints one table: log lines per source while ``python app.py --demo`` idles with health checks every
``--interval`` seconds (start-up lines included), and the seconds from starting ``python app.py
--demo --port P`` on a port already taken until it exits, with its last line.
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def idle_log(seconds: float, interval: float) -> collections.Counter[str]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ARENA_HEALTH_INTERVAL": str(interval), "ARENA_JOURNAL_DIR": f"{tmp}/j"}
        args = [sys.executable, "app.py", "--demo", "--port", str(_free_port()), "--db", f"sqlite:///{tmp}/a.sqlite3"]
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(seconds)
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    sources: collections.Counter[str] = collections.Counter()
    for line in out.splitlines():
        parts = line.split()
        # "2026-12-06 18:00:00,000 INFO httpx2: HTTP Request: ..." -> "httpx2"
        sources[parts[3].rstrip(":") if len(parts) > 3 and parts[2].isupper() else "(other)"] += 1
    return sources


def port_in_use() -> tuple[float, str]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "app.py", "--demo", "--port", str(port)], cwd=ROOT, capture_output=True, text=True
        )
        took = time.monotonic() - started
    return took, done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    sources = idle_log(args.seconds, args.interval)
    took, last = port_in_use()
    print(f"| idle demo arena, {args.seconds:g} s, health checks every {args.interval:g} s | log lines |")
    print("|---|--:|")
    for source, n in sources.most_common():
        print(f"| {source} | {n} |")
    print(f"| **total** | **{sum(sources.values())}** |")
    print()
    print("| port already in use | seconds to exit | last line |")
    print("|---|--:|---|")
    print(f"| `python app.py --demo --port P` | {took:.1f} | `{last}` |")


if __name__ == "__main__":
    main()
