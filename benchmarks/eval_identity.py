"""Precision and recall of the identity-leak flag on the labelled corpus (issue 16, item 5).

    python benchmarks/eval_identity.py                 # this checkout vs the detector of BASELINE_REV
    python benchmarks/eval_identity.py --rev HEAD~3    # vs any other revision's arena/identity.py
    python benchmarks/eval_identity.py --errors        # also list what each detector gets wrong

The corpus (tests/data/identity/corpus.jsonl) holds answers labelled ``leak`` (the model gives itself
away) or ``no-leak``, each with the model it came from and the visitor's prompt. The roster is the
real one (models.yaml) plus the demo roster. An older detector is loaded from git (``git show
REV:arena/identity.py``) and run on the same rows. Prints one table per detector: overall, per
language, and per split: ``dev`` rows were written with the detector, ``heldout`` rows were written
after it and never tuned on, ``audit`` rows were written by a second engineer in the audit after
issue 16, without reading the rules, and never tuned on.

``--battles N`` replays issue 16's report end to end: N side-by-side battles cirrus-7b vs dune-7b
on the demo servers (which quote the prompt in their answers) with the prompt "Tell me about cirrus
clouds", voted, each detector in the real ArenaService; prints how many votes were flagged.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arena import identity  # noqa: E402
from arena.backends.demo import DEMO_ROSTER_PATH  # noqa: E402
from arena.registry import ModelSpec, load_registry  # noqa: E402
from benchmarks.revisions import module_at  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "identity" / "corpus.jsonl"
BASELINE_REV = "3924764"  # main before issue 16's identity work (substring/whole-word matching)
LANGS = ("en", "pl", "ja", "zh-CN", "zh-TW")

Detector = Callable[[str, str, str], bool]


def roster() -> list[ModelSpec]:
    real = load_registry(ROOT / "models.yaml", environ={})
    demo = load_registry(
        DEMO_ROSTER_PATH, environ={f"DEMO_URL_{n}": f"http://127.0.0.1:{9000 + n}" for n in range(1, 5)}
    )
    return [*real, *demo]


def load_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def detector(module: Any, specs: Iterable[ModelSpec]) -> Detector:
    matcher = module.IdentityMatcher(list(specs))
    takes_prompt = "prompt" in inspect.signature(matcher.names_itself).parameters
    if takes_prompt:
        return lambda model, text, prompt: bool(matcher.names_itself(model, text, prompt=prompt))
    return lambda model, text, prompt: bool(matcher.names_itself(model, text))


def scores(rows: list[dict[str, Any]], detect: Detector) -> dict[str, Any]:
    """Confusion counts, precision and recall (``leak`` is the positive class)."""
    tp = fp = fn = tn = 0
    wrong = []
    for row in rows:
        said = detect(row["model"], row["text"], row.get("prompt", ""))
        truth = row["label"] == "leak"
        tp += said and truth
        fp += said and not truth
        fn += truth and not said
        tn += not truth and not said
        if said != truth:
            wrong.append(row)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": precision, "recall": recall, "wrong": wrong}


def table(name: str, rows: list[dict[str, Any]], detect: Detector) -> dict[str, Any]:
    print(f"\n{name}")
    print("| slice | rows | leak | TP | FP | FN | TN | precision | recall |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    overall = scores(rows, detect)
    slices = [("all", rows), *((lang, [r for r in rows if r["lang"] == lang]) for lang in LANGS)]
    slices += [
        (f"split={split}", [r for r in rows if r.get("split") == split]) for split in ("dev", "heldout", "audit")
    ]
    for label, subset in slices:
        s = overall if label == "all" else scores(subset, detect)
        leaks = sum(r["label"] == "leak" for r in subset)
        print(
            f"| {label} | {len(subset)} | {leaks} | {s['tp']} | {s['fp']} | {s['fn']} | {s['tn']} "
            f"| {s['precision']:.3f} | {s['recall']:.3f} |"
        )
    return overall


class _Adapter:
    """An older matcher (no ``prompt`` argument) behind today's ``names_itself`` signature."""

    def __init__(self, detect: Detector) -> None:
        self.detect = detect

    def names_itself(self, model: str, text: str, prompt: str = "") -> bool:
        return self.detect(model, text, prompt)


async def cirrus_battles(n: int, detect: Detector) -> int:
    """Flagged votes among ``n`` real battles about cirrus clouds (demo servers, cirrus-7b vs dune-7b)."""

    from arena.backends import Timeouts, make_backend
    from arena.backends.demo import demo_environ, start_demo_servers
    from arena.config import Settings
    from arena.service import ArenaService
    from arena.storage import Store

    servers = start_demo_servers(token_rate=2000, first_token_delay=0.01)
    try:
        registry = load_registry(DEMO_ROSTER_PATH, environ=demo_environ(servers))
        timeouts = Timeouts(connect=5.0, first_token=10.0, read=10.0, total=60.0)
        backends = {s.name: make_backend(s, timeouts, {}) for s in registry}
        settings = Settings.load({}, battles_per_minute=0, min_read_seconds=0.0, health_interval=0.0, replay_window=0)
        with tempfile.TemporaryDirectory() as tmp, Store(f"sqlite:///{tmp}/c.sqlite3") as store:
            store.create_schema()
            service = ArenaService(settings, registry, store, backends)
            service.identity = _Adapter(detect)  # type: ignore[assignment]
            flagged = 0
            for i in range(n):
                session = service.new_session(f"10.0.0.{i + 1}", models=("cirrus-7b", "dune-7b"))
                async for _ in service.send(session, "Tell me about cirrus clouds."):
                    pass
                reveal = await service.vote(session, "model_a")
                flagged += "identity_leak" in reveal.flags
            for backend in backends.values():
                await backend.aclose()
            return flagged
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", default=BASELINE_REV, help="git revision whose arena/identity.py is the baseline")
    parser.add_argument("--errors", action="store_true", help="list the rows each detector gets wrong")
    parser.add_argument("--battles", type=int, default=0, help="also play N real battles about cirrus clouds")
    args = parser.parse_args()
    rows, specs = load_corpus(), roster()
    before, after = detector(module_at(args.rev, "arena/identity.py"), specs), detector(identity, specs)
    results = {
        f"before ({args.rev})": table(f"before: arena/identity.py at {args.rev}", rows, before),
        "after (this checkout)": table("after: this checkout", rows, after),
    }
    if args.battles:
        print(f"\n{args.battles} battles cirrus-7b vs dune-7b, prompt 'Tell me about cirrus clouds.', votes flagged:")
        print("| detector | flagged identity_leak |\n|---|--:|")
        for name, detect in (("before", before), ("after", after)):
            print(f"| {name} | {asyncio.run(cirrus_battles(args.battles, detect))} of {args.battles} |")
    if args.errors:
        for name, result in results.items():
            print(f"\nwrong ({name}):")
            for row in result["wrong"]:
                print(f"  [{row['label']}] {row['model']} {row['lang']}: {row['text'][:70]!r}  ({row['note']})")


if __name__ == "__main__":
    main()
