"""A TGI stand-in: the arena's demo model server on 0.0.0.0 (TGI's native protocol), run by tests/docker_smoke.py.

Takes TGI's own ``--model-id`` and ``--port`` flags (others, like ``--max-total-tokens``, are
accepted and ignored), so a compose file's TGI command line runs unchanged.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from arena.backends.demo import DemoServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-id", default="stand-in")
    parser.add_argument("--port", type=int, default=80)
    args, _ignored = parser.parse_known_args()
    server = DemoServer(args.model_id, token_rate=200.0, first_token_delay=0.05)
    print(f"TGI stand-in for {args.model_id}; HF_TOKEN {'set' if 'HF_TOKEN' in os.environ else 'not set'}", flush=True)
    uvicorn.run(server._app, host="0.0.0.0", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
