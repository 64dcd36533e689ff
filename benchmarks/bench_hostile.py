"""A hostile visitor's cost to everyone else, before and after the web edge's limits (issue 16), in one run.

    python -m benchmarks.bench_hostile [--before 3924764] [--sizes 10 30 100] [--sessions 15] [--calls 600]

Runs the app twice, side by side on this machine: once from a clean copy of the ``--before``
commit (``git archive``) and once from this working tree, both ``python app.py --demo``. Against
each it measures:

* **memory** (first, on the fresh process): the app's RSS before and after ``--largest`` visitors
  each send the largest inputs the page accepts (4,000-character prompt, 1,000-character reason, a
  40-character slice name): the growth per session; then after ``--sessions`` more visitors each
  send a 10 MB prompt and a 10 MB "why?" (the issue's case);
* **stall**: the worst latency of ``GET /gradio_api/info`` polled every 20 ms by another process
  while one visitor sends a prompt of 10 / 30 / 100 MB to the send event (raw queue call), and
  what that visitor got back;
* **private events**: ``--calls`` calls to the leaderboard's ``prepare_battles`` (``--workers`` at a
  time) with a new slice name each, the files left in the download folder, and the time of one
  normal battle sent while they run.

Prints one table per measure; record the results in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@contextmanager
def running(tree: Path, tmp: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "ARENA_BATTLES_PER_MINUTE": "0",
        "ARENA_VOTES_PER_HOUR": "0",
        "ARENA_DEMO_TOKEN_RATE": "200",
        "ARENA_DEMO_FIRST_TOKEN_DELAY": "0.05",
        "ARENA_JOURNAL_DIR": str(tmp / "journal"),
        "TMPDIR": str(tmp / "tmp"),
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
    }
    log = (tmp / "app.log").open("wb")
    db = f"sqlite:///{tmp / 'arena.sqlite3'}"
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--demo", "--host", "127.0.0.1", "--port", str(port), "--db", db],
        cwd=tree,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError(f"app in {tree} did not start; see {tmp / 'app.log'}")
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


class Visitor:
    """One page session speaking Gradio's raw queue protocol."""

    def __init__(self, url: str, fns: dict[str, int]) -> None:
        self.client = httpx.Client(base_url=url + "/gradio_api", timeout=300)
        self.fns = fns
        self.session = uuid.uuid4().hex[:11]

    def close(self) -> None:
        self.client.close()

    def call(self, fn: str, data: list[Any] | bytes) -> str:
        """Run one event to its end; returns "ok", the error text, or "HTTP <status>"."""
        if isinstance(data, bytes):
            head = json.dumps({"fn_index": self.fns[fn], "session_hash": self.session, "event_data": None})
            body = head[:-1].encode() + b', "data": ' + data + b"}"
        else:
            body = json.dumps({"data": data, "fn_index": self.fns[fn], "session_hash": self.session}).encode()
        r = self.client.post("/queue/join", content=body, headers={"content-type": "application/json"})
        if r.status_code != 200:
            return f"HTTP {r.status_code}"
        event = r.json()["event_id"]
        with self.client.stream("GET", f"/queue/data?session_hash={self.session}") as s:
            for line in s.iter_lines():
                if not line.startswith("data:"):
                    continue
                m = json.loads(line[5:])
                if m.get("event_id") == event and m.get("msg") == "process_completed":
                    if m.get("success"):
                        return "ok"
                    return str((m.get("output") or {}).get("error"))[:60]
        return "no answer"


def functions(url: str) -> dict[str, int]:
    config = httpx.get(url + "/config").json()
    return {d["api_name"]: i for i, d in enumerate(config["dependencies"]) if d.get("api_name")}


POLLER = """
import sys, time, httpx
url, stop = sys.argv[1], sys.argv[2]
worst = 0.0
with httpx.Client(timeout=300) as c:
    while True:
        t = time.perf_counter()
        c.get(url + "/gradio_api/info")
        worst = max(worst, time.perf_counter() - t)
        try:
            open(stop).close()
            break
        except FileNotFoundError:
            time.sleep(0.02)
print(worst)
"""


def stall(url: str, fns: dict[str, int], megabytes: int, scratch: Path) -> tuple[float, float, str]:
    """(worst /info latency in s, the hostile call's own seconds, what it got) while a huge prompt is sent.

    The poller is a process of its own, so building and sending the huge body here never delays it.
    """
    stop = scratch / f"stop-{uuid.uuid4().hex}"
    poller = subprocess.Popen([sys.executable, "-c", POLLER, url, str(stop)], stdout=subprocess.PIPE, text=True)
    v = Visitor(url, fns)
    v.call("accept_terms", [None])
    prompt = b'["' + b"x" * (megabytes * 1_000_000) + b'", null, null]'
    time.sleep(1.0)
    t = time.perf_counter()
    try:
        got = v.call("send", prompt)
    except httpx.HTTPError as e:
        got = type(e).__name__
    took = time.perf_counter() - t
    time.sleep(0.5)
    stop.touch()
    out, _ = poller.communicate(timeout=300)
    v.close()
    return float(out.strip()), took, got


def memory(
    url: str, proc: subprocess.Popen[bytes], fns: dict[str, int], sessions: int, n: int
) -> list[tuple[str, float]]:
    """RSS after the largest accepted inputs (first, on a heap with no freed room), then oversize ones."""
    start = rss_mib(proc.pid)
    rows = [("start", start)]
    for _ in range(n):
        v = Visitor(url, fns)
        v.call("accept_terms", [None])
        v.call("send", ["Z" * 4000, None, None])
        v.call("vote_a", ["R" * 1000, None, None])
        v.call("leaderboard", ["lang:" + "q" * 35, None])
        v.close()
    after = rss_mib(proc.pid)
    rows.append((f"after {n} sessions with the largest accepted inputs", after))
    rows.append(("growth per largest-input session (MiB)", (after - start) / n))
    ten = b'["' + b"y" * 10_000_000 + b'", null, null]'
    visitors = []
    for _ in range(sessions):
        v = Visitor(url, fns)
        v.call("accept_terms", [None])
        v.call("send", ten)
        v.call("vote_a", ten)
        visitors.append(v)
    rows.append((f"after {sessions} more sessions x (10 MB prompt + 10 MB reason)", rss_mib(proc.pid)))
    for v in visitors:
        v.close()
    return rows


def private_events(url: str, fns: dict[str, int], tmp: Path, calls: int, workers: int) -> tuple[float, int, float]:
    """(seconds for the calls, files left in the download folder, seconds of one battle sent while they run)."""
    v = Visitor(url, fns)
    v.call("accept_terms", [None])
    t = time.perf_counter()
    lock = threading.Lock()
    names = iter(range(calls))

    def worker() -> None:
        w = Visitor(url, fns)
        while True:
            with lock:
                i = next(names, None)
            if i is None:
                break
            w.call("prepare_battles", [f"lang:b{i}" if i % 2 else "overall", None])
        w.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for th in threads:
        th.start()
    time.sleep(1.0)
    b = time.perf_counter()
    v.call("send", ["Tell me about the Vistula, please.", None, None])
    battle = time.perf_counter() - b
    for th in threads:
        th.join()
    spent = time.perf_counter() - t
    files = sum(1 for p in (tmp / "tmp").glob("arena-downloads-*/*") if p.is_file())
    v.close()
    return spent, files, battle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="3924764", help="commit to compare with (the code before issue 16)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 100], help="prompt sizes in MB")
    ap.add_argument("--sessions", type=int, default=15)
    ap.add_argument("--calls", type=int, default=600, help="prepare_battles calls")
    ap.add_argument("--workers", type=int, default=32, help="prepare_battles calls in flight at once")
    ap.add_argument("--largest", type=int, default=200, help="sessions sending the largest accepted inputs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as scratch:
        before = Path(scratch) / "before"
        before.mkdir()
        archive = subprocess.run(["git", "archive", args.before], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        results: dict[str, dict[str, Any]] = {}
        for label, tree in (("before", before), ("after", ROOT)):
            tmp = Path(scratch) / f"run-{label}"
            with running(tree, tmp) as (url, proc):
                fns = functions(url)
                out: dict[str, Any] = {"stall": {}, "memory": [], "private": None}
                out["memory"] = memory(url, proc, fns, args.sessions, args.largest)
                print(label, out["memory"], flush=True)
                for mb in args.sizes:
                    out["stall"][mb] = stall(url, fns, mb, tmp)
                    print(label, mb, "MB", out["stall"][mb], flush=True)
                out["private"] = private_events(url, fns, tmp, args.calls, args.workers)
                print(label, out["private"], flush=True)
                results[label] = out
    print(f"\nload average {os.getloadavg()[0]:.1f}; before = {args.before}, after = working tree\n")
    print("| prompt sent | worst GET /info, before (s) | after (s) | the sender got, before | after |")
    print("|---|--:|--:|---|---|")
    for mb in args.sizes:
        b, a = results["before"]["stall"][mb], results["after"]["stall"][mb]
        print(f"| {mb} MB | {b[0]:.2f} | {a[0]:.3f} | {b[2]} ({b[1]:.1f} s) | {a[2]} ({a[1]:.2f} s) |")
    print("\n| app RSS (MiB) | before | after |\n|---|--:|--:|")
    for (name, b), (_, a) in zip(results["before"]["memory"], results["after"]["memory"], strict=True):
        print(f"| {name} | {b:.1f} | {a:.1f} |" if "per" not in name else f"| {name} | {b:.3f} | {a:.3f} |")
    print(f"\n| {args.calls} prepare_battles calls ({args.workers} at a time) | before | after |\n|---|--:|--:|")
    b, a = results["before"]["private"], results["after"]["private"]
    print(f"| seconds for the calls | {b[0]:.1f} | {a[0]:.1f} |")
    print(f"| files left in the download folder | {b[1]} | {a[1]} |")
    print(f"| one battle sent while they run (s) | {b[2]:.2f} | {a[2]:.2f} |")


if __name__ == "__main__":
    main()
