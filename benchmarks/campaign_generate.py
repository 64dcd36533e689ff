"""Generation throughput of ``python -m arena campaign generate`` against the demo model servers.

``python -m benchmarks.campaign_generate [--concurrency 1 4 16 64] [--token-rate 40]``

Generates the demo campaign's prompts (16 prompts: 8 tasks in English and Japanese) for the four demo
models at one setting, through the arena's own backends and templates, into a fresh SQLite file per
row, at each concurrency. The demo servers run in this process (like ``python app.py --demo``) and
stream at ``--token-rate`` tokens/s after ``--first-token-delay``; answers are capped at
``--max-new-tokens``. Prints one Markdown table: answers per second and the speed-up over
concurrency 1. With a real GPU server the ceiling is the server's batch size, not the arena.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from arena.backends import make_backend
from arena.backends.base import Timeouts
from arena.backends.demo import DEMO_ROSTER_PATH, demo_environ, start_demo_servers
from arena.campaigns.formats import campaign_from, load_bundle
from arena.campaigns.generate import GenerationReport, generate_answers
from arena.campaigns.service import DEMO_BUNDLE
from arena.registry import load_registry
from arena.storage import Store
from arena.storage.campaigns import CampaignStore


def one_row(concurrency: int, servers: list, args: argparse.Namespace, folder: Path) -> GenerationReport:  # type: ignore[type-arg]
    registry = load_registry(str(DEMO_ROSTER_PATH), demo_environ(servers))
    specs = {m.name: m for m in registry.enabled}
    bundle = load_bundle(DEMO_BUNDLE)
    campaign = campaign_from(
        f"bench-{concurrency}",
        "bench",
        candidates=list(specs),
        temperatures=[0.7],
        max_new_tokens=args.max_new_tokens,
    )
    store = Store(f"sqlite:///{folder / f'c{concurrency}.sqlite3'}")
    store.create_schema()
    cstore = CampaignStore(store)
    cstore.save_campaign(campaign, bundle.prompts)
    timeouts = Timeouts(connect=5, first_token=60, read=30, total=300)

    async def run() -> GenerationReport:
        backends = {n: make_backend(s, timeouts, {}) for n, s in specs.items()}
        try:
            return await generate_answers(
                campaign, bundle.prompts, specs, backends, lambda a: cstore.add_answers([a]), concurrency=concurrency
            )
        finally:
            for b in backends.values():
                await b.aclose()

    try:
        return asyncio.run(run())
    finally:
        store.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--token-rate", type=float, default=40.0)
    parser.add_argument("--first-token-delay", type=float, default=0.2)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    args = parser.parse_args(argv)
    servers = start_demo_servers(4, token_rate=args.token_rate, first_token_delay=args.first_token_delay)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="campaign-bench-") as tmp:
            for c in args.concurrency:
                start = time.perf_counter()
                report = one_row(c, servers, args, Path(tmp))
                print(f"concurrency {c}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
                rows.append((c, report))
    finally:
        for s in servers:
            s.stop()
    base = rows[0][1].answers_per_second or 1.0
    print("| concurrency | answers | failed | seconds | answers/s | speed-up |")
    print("|---|---|---|---|---|---|")
    for c, r in rows:
        print(
            f"| {c} | {r.generated} | {r.failed} | {r.seconds:.1f} | {r.answers_per_second:.2f} | "
            f"{r.answers_per_second / base:.1f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
