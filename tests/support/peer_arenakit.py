"""Run inside arenakit's own virtual environment (tests/test_audit_peers.py): read battles as JSON on
standard input, print arenakit's figures for the quantities arena/audit.py also computes."""

from __future__ import annotations

import json
import sys

import numpy as np
from arenakit import Arena, Battle
from arenakit.bt import fit_bt, fit_rao_kupper
from arenakit.probes import run_audit


def main() -> None:
    data = json.load(sys.stdin)
    battles = [
        Battle(model_a=a, model_b=b, winner={"model_a": "a", "model_b": "b"}.get(w, "tie"), voter_id=v)
        for a, b, w, v in data["battles"]
    ]
    arena = Arena(battles)
    counts = arena.counts()
    out: dict[str, object] = {"models": list(arena.models)}
    if data.get("audit"):
        result = run_audit(arena, n_resamples=data.get("resamples", 300), seed=1, cluster="battle")
        out["fired"] = sorted(p.name for p in result.probes if p.triggered)
        out["probes"] = {p.name: p.value for p in result.probes}
        print(json.dumps(out))
        return
    plain = fit_bt(counts, ties="half", prior=0.0)
    out["half"] = (plain.scores - plain.scores.mean()).tolist()
    dropped = fit_bt(counts, ties="drop", prior=0.0)
    out["drop"] = (dropped.scores - dropped.scores.mean()).tolist()
    ordered = fit_bt(counts, ties="half", order=True, prior=0.0)
    out["first_slot"] = float(ordered.order_log or 0.0)
    rk = fit_rao_kupper(counts, prior=0.0)
    out["rao_kupper"] = (rk.scores - np.mean(rk.scores)).tolist()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
