"""Start-up time and idle footprint of ``python app.py --demo``.

Run: ``python -m benchmarks.bench_startup [--runs 3]`` from the repository root. Prints one table.

Each run starts ``python app.py --demo`` on a free port with a fresh SQLite file, and times it
until ``GET /config`` answers 200 (the page can be served). It then leaves the app idle for
``--idle`` seconds (the language model is preloaded in a background thread meanwhile) and reads its
resident set size from ``/proc/<pid>/status``. In demo mode the four demo model servers share the
app's process, so their memory is included.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.loadgen import App, loadavg, proc_sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_startup", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds idle before reading the RSS")
    args = parser.parse_args(argv)
    rows = []
    for run in range(1, args.runs + 1):
        tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
        before = loadavg()
        app = App(["--demo", "--db", f"sqlite:///{tmp / 'demo.sqlite3'}"], log_path=tmp / "app.log")
        try:
            ready = app.wait_ready()
            at_ready = proc_sample(app.pid)
            time.sleep(args.idle)
            idle = proc_sample(app.pid)
        finally:
            app.stop()
        rows.append((run, ready, at_ready.cpu, at_ready.rss_mb, idle.rss_mb, idle.hwm_mb, before))
        print(f"run {run}: ready in {ready:.2f} s, idle RSS {idle.rss_mb:.0f} MB", file=sys.stderr, flush=True)
    print(
        "| run | start-up to /config s | CPU s to /config | RSS at ready MB | idle RSS MB | peak RSS MB "
        "| loadavg before |"
    )
    print("|---|---|---|---|---|---|---|")
    for run, ready, cpu, rss_ready, rss_idle, hwm, load in rows:
        print(f"| {run} | {ready:.2f} | {cpu:.1f} | {rss_ready:.0f} | {rss_idle:.0f} | {hwm:.0f} | {load} |")
    med = [statistics.median(r[i] for r in rows) for i in range(1, 6)]
    print(f"| median | {med[0]:.2f} | {med[1]:.1f} | {med[2]:.0f} | {med[3]:.0f} | {med[4]:.0f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
