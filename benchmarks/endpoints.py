"""Benchmark-only launcher: the four demo model servers in a process of their own.

In ``python app.py --demo`` the demo servers share the arena's process (and its GIL), so the
arena's CPU could not be told apart from theirs. Benchmarks start this instead and point the app
at it with the demo roster and ``DEMO_URL_1`` .. ``DEMO_URL_4``::

    python -m benchmarks.endpoints --token-rate 50 --first-token-delay 0.2 --answer-tokens 200

It prints one JSON line ``{"pid": ..., "environ": {"DEMO_URL_1": ...}}`` once every server accepts
connections, then serves until stdin closes or it gets SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arena.backends.demo import DEMO_MODEL_IDS, DemoServer, demo_environ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.endpoints", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4, help="how many servers (the demo roster uses 4)")
    parser.add_argument("--token-rate", type=float, default=50.0)
    parser.add_argument("--first-token-delay", type=float, default=0.2)
    parser.add_argument("--answer-tokens", type=int, default=200)
    args = parser.parse_args(argv)

    servers = [
        DemoServer(
            DEMO_MODEL_IDS[n % len(DEMO_MODEL_IDS)],
            token_rate=args.token_rate,
            first_token_delay=args.first_token_delay,
            answer_tokens=args.answer_tokens,
        ).start()
        for n in range(args.count)
    ]
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())

    def watch_stdin() -> None:
        sys.stdin.read()  # returns when the parent closes the pipe (or dies)
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(json.dumps({"pid": os.getpid(), "environ": demo_environ(servers)}), flush=True)
    try:
        done.wait()
    finally:
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
