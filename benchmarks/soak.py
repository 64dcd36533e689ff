"""Soak: many simulated visitors play full battles against demo endpoints that fail some of the time.

    python benchmarks/soak.py [--visitors 64] [--seconds 120] [--fault-rate 0.05]

Starts four demo model servers (two TGI, two OpenAI-compatible) in this process, each failing a
``--fault-rate`` share of requests (HTTP 500/429/503, an error event, malformed data), runs the real
app (``python app.py``) against them on a free port with a fresh SQLite file, and drives it with
``gradio_client`` (one client per visitor: send, vote, new round, again). At the end it checks:

* no unhandled error (a visitor's call failing with anything but the arena's plain messages, or a
  traceback in the app's log);
* every confirmed vote is stored exactly once (votes in the database == votes confirmed);
* the app's memory (RSS, sampled every 10 s) does not keep growing.

Prints one table; exits 1 when a check fails. ``run_soak`` is the same as a function (the test suite
runs a short one).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from arena.backends.demo import DemoServer  # noqa: E402
from arena.storage import Store  # noqa: E402

PROMPTS = (
    "Opowiedz krótko o Krakowie.",
    "東京でおすすめの公園は？",
    "請介紹一下台北的夜市。",
    "What is a good first programming language?",
    "Explain rainbows to a child 🌈",
)
# The plain-language refusals a visitor may meet when a model fails (anything else is unhandled).
EXPECTED = (
    "could not answer",
    "offline",
    "took too long",
    "busy",
    "ran into an error",
    "cannot be voted",
    "model failed",
    "new round",
)


@dataclass
class SoakReport:
    visitors: int
    seconds: float
    battles: int = 0
    confirmed: int = 0
    faulted: int = 0  # battles that could not be voted because a side failed
    stored_votes: int = 0
    duplicates: int = 0
    unhandled: list[str] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (elapsed s, RSS MiB)

    @property
    def ok(self) -> bool:
        return not self.unhandled and self.stored_votes == self.confirmed and self.duplicates == 0

    def table(self) -> str:
        start = self.rss_mb[0][1] if self.rss_mb else float("nan")
        end = self.rss_mb[-1][1] if self.rss_mb else float("nan")
        rows = [
            ("visitors", f"{self.visitors}"),
            ("duration (s)", f"{self.seconds:.0f}"),
            ("battles started", f"{self.battles}"),
            ("votes confirmed", f"{self.confirmed}"),
            ("votes stored", f"{self.stored_votes}"),
            ("battles failed by injected faults", f"{self.faulted}"),
            ("duplicate votes", f"{self.duplicates}"),
            ("unhandled errors", f"{len(self.unhandled)}"),
            ("app RSS start -> end (MiB)", f"{start:.0f} -> {end:.0f}"),
            ("RSS samples (s: MiB)", ", ".join(f"{t:.0f}: {m:.0f}" for t, m in self.rss_mb)),
            ("result", "PASS" if self.ok else "FAIL"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"| {'measure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
        return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _accept_terms(client: Any) -> None:
    """Press "I agree" on the notice, where the page has one (the battle endpoints refuse until then)."""
    if "/accept_terms" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]:
        client.predict(api_name="/accept_terms")


def _roster(servers: list[DemoServer]) -> str:
    lines = ["models:"]
    for n, server in enumerate(servers):
        if n % 2 == 0:
            lines += [f"  - name: soak-tgi-{n}", "    backend: tgi", f"    url: {server.url}", "    template: chatml"]
        else:
            lines += [
                f"  - name: soak-openai-{n}",
                "    backend: openai",
                f"    url: {server.url}/v1",
                f"    model: {server.model_id}",
            ]
        lines += ["    params: {max_new_tokens: 64}"]
    return "\n".join(lines) + "\n"


def run_soak(
    *,
    visitors: int = 64,
    seconds: float = 120.0,
    fault_rate: float = 0.05,
    workdir: Path,
    token_rate: float = 60.0,
    quiet: bool = False,
    kill: bool = False,
) -> SoakReport:
    """Run one soak; returns its report (see the module docstring).

    With ``kill`` the app is ended with SIGKILL the moment the last visitor got its last answer, so the
    stored-votes check also shows that no confirmed vote was waiting in memory.
    """
    from gradio_client import Client

    report = SoakReport(visitors=visitors, seconds=seconds)
    servers = [DemoServer(f"soak/model-{n}", token_rate=token_rate, first_token_delay=0.05) for n in range(4)]
    for n, server in enumerate(servers):
        server.fault_rate = fault_rate
        server.random = random.Random(n)
        server.start()
    db = f"sqlite:///{workdir / 'soak.sqlite3'}"
    (workdir / "models.yaml").write_text(_roster(servers), encoding="utf-8")
    port = _free_port()
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
        "ARENA_BATTLES_PER_MINUTE": "0",
        "ARENA_VOTES_PER_HOUR": "0",
        "ARENA_MIN_READ_SECONDS": "0",
        "ARENA_FIRST_TOKEN_TIMEOUT": "5",
        "ARENA_READ_TIMEOUT": "5",
        "ARENA_TOTAL_TIMEOUT": "30",
        "ARENA_HEALTH_INTERVAL": "2",
        "ARENA_LOG_LEVEL": "WARNING",
    }
    log_path = workdir / "app.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    app = subprocess.Popen(
        [sys.executable, "app.py", "--config", str(workdir / "models.yaml"), "--db", db, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    lock = threading.Lock()
    try:
        deadline = time.monotonic() + 120
        while True:
            if app.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start:\n{log_path.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(url + "/config", timeout=2):
                    break
            except OSError:
                time.sleep(0.25)

        started = time.monotonic()
        stop_at = started + seconds
        report.rss_mb.append((0.0, _rss_mib(app.pid)))

        def visitor(n: int) -> None:
            rng = random.Random(1000 + n)
            # Visitors arrive over the first tenth of the run (all at once is a thundering herd of
            # page loads, which measures the load generator more than the arena).
            time.sleep(n * seconds / 10 / visitors)
            for attempt in range(3):
                try:
                    client = Client(url, verbose=False)
                    _accept_terms(client)
                    break
                except Exception as e:  # counted as unhandled after three tries
                    if attempt == 2:
                        with lock:
                            report.unhandled.append(f"visitor {n}: page load: {type(e).__name__}: {e}")
                        return
                    time.sleep(1 + attempt)
            try:
                while time.monotonic() < stop_at:
                    with lock:
                        report.battles += 1
                    try:
                        client.predict(rng.choice(PROMPTS), api_name="/send")
                        client.predict(api_name=rng.choice(("/vote_a", "/vote_b", "/vote_tie", "/vote_bothbad")))
                        with lock:
                            report.confirmed += 1
                    except Exception as e:
                        text = str(e).lower()
                        with lock:
                            if any(phrase in text for phrase in EXPECTED):
                                report.faulted += 1
                            else:
                                report.unhandled.append(f"visitor {n}: {type(e).__name__}: {e}")
                    client.predict(api_name="/new_round")
            except Exception as e:
                with lock:
                    report.unhandled.append(f"visitor {n}: new round: {type(e).__name__}: {e}")
            finally:
                client.close()

        threads = [threading.Thread(target=visitor, args=(n,), daemon=True) for n in range(visitors)]
        for thread in threads:
            thread.start()
        next_sample = started + 10
        while any(t.is_alive() for t in threads):
            time.sleep(0.5)
            if time.monotonic() >= next_sample:
                report.rss_mb.append((time.monotonic() - started, _rss_mib(app.pid)))
                next_sample += 10
                if not quiet:
                    print(f"  {time.monotonic() - started:5.0f} s: {report.confirmed} votes", file=sys.stderr)
        report.rss_mb.append((time.monotonic() - started, _rss_mib(app.pid)))
    finally:
        if kill:
            app.kill()
        else:
            app.terminate()
        try:
            app.wait(15)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait(5)
        log.close()
        for server in servers:
            server.stop()

    with Store(db) as store:
        report.stored_votes = store.vote_total(mode=None, exclude_flags=())
        with store.engine.connect() as conn:
            from sqlalchemy import text

            report.duplicates = int(
                conn.execute(
                    text("SELECT count(*) FROM (SELECT battle_id FROM votes GROUP BY battle_id HAVING count(*) > 1) d")
                ).scalar_one()
            )
    tracebacks = log_path.read_text(errors="replace").count("Traceback")
    if tracebacks:
        report.unhandled.append(f"{tracebacks} traceback(s) in {log_path}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--visitors", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--kill", action="store_true", help="End the app with SIGKILL instead of SIGTERM.")
    parser.add_argument("--workdir", type=Path, default=None, help="Where the database and app log go (a temp dir).")
    args = parser.parse_args(argv)
    import tempfile

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="arena-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report = run_soak(
        visitors=args.visitors, seconds=args.seconds, fault_rate=args.fault_rate, workdir=workdir, kill=args.kill
    )
    print(report.table())
    from collections import Counter

    kinds = Counter(line.split(": ", 1)[1][:120] if ": " in line else line for line in report.unhandled)
    for kind, count in kinds.most_common(10):
        print(f"unhandled x{count}: {kind}")
    print(f"(database and app log in {workdir})")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
