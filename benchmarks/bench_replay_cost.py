"""CPU time of the replay check at one vote: the battle's prompts against the visitor's stored ones.

Run: ``python -m benchmarks.bench_replay_cost`` from the repository root (``--rev REV``: the
``arena/replays.py`` to compare with, default 962ced0, the first replay check; ``--sample N``: how many
stored prompts the older code is timed on, extrapolated to 500, since it takes minutes per vote).

A vote compares each of its battle's prompts (up to ``ARENA_MAX_TURNS``, 8) with the visitor's
side-by-side prompts of the replay window (up to 500 read), so the check's cost is 8 x 500 pairs:

* **crafted**: 2,000-character prompts of ten letters, 30% of them changed at random: alike in length
  and letters, never the same prompt (what a visitor would send to make votes expensive);
* **prose**: 2,000-character prompts of made-up words, unrelated to each other (a heavy honest user);
* **near replays**: a long prompt with a word added, a word inserted in the middle, its end changed:
  each must still be found.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.revisions import module_at  # noqa: E402

STORED, TURNS = 500, 8


def load(rev: str | None) -> ModuleType:
    if rev is None:
        from arena import replays

        return replays
    return module_at(rev, "arena/replays.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="962ced0")
    parser.add_argument("--sample", type=int, default=10)
    args = parser.parse_args()
    rng = random.Random(7)
    base = "".join(rng.choice("abcdefghij") for _ in range(2000))

    def crafted() -> str:
        letters = list(base)
        for _ in range(600):
            letters[rng.randrange(2000)] = rng.choice("abcdefghij")
        return "".join(letters)

    def prose(n: int = 380) -> str:
        letters = "abcdefghijklmnopqrstuvwxyz"
        return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(n))

    cases = {"crafted": ([crafted() for _ in range(TURNS)], [crafted() for _ in range(STORED)])}
    cases["prose"] = ([prose() for _ in range(TURNS)], [prose() for _ in range(STORED)])
    long_prompt = prose()
    middle = len(long_prompt) // 2
    near = ["please " + long_prompt, long_prompt[:middle] + " indeed, " + long_prompt[middle:], long_prompt[:-30] + "!"]
    print("| code | case | stored x turns | CPU s per vote | replay found |")
    print("|---|---|---|--:|---|")
    for label, module, sample in ((args.rev, load(args.rev), args.sample), ("this checkout", load(None), STORED)):
        for case, (turns, stored) in cases.items():
            prints = [module.fingerprint(s) for s in stored[:sample]]
            started = time.process_time()
            found = module.matches_any(turns, prints)
            seconds = (time.process_time() - started) * STORED / sample
            note = "" if sample == STORED else f" (timed on {sample}, x{STORED // sample})"
            print(f"| {label} | {case} | {STORED} x {TURNS} | {seconds:.2f}{note} | {found} |")
        hits = [module.matches_any([n], [module.fingerprint(long_prompt)]) for n in near]
        print(f"| {label} | near replays of a long prompt | 3 | | {hits} |")


if __name__ == "__main__":
    main()
