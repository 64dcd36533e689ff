"""Run inside arena-rank's own virtual environment (tests/test_audit_peers.py): read battles
``{"battles": [[model_a, model_b, winner], ...]}`` as JSON on standard input, print arena-rank's plain
Bradley-Terry ratings with their 95% sandwich intervals (ties and both-bad count half, its default)."""

from __future__ import annotations

import json
import sys

import pandas as pd
from arena_rank.models.bradley_terry import BradleyTerry
from arena_rank.utils.data_utils import PairDataset


def main() -> None:
    data = json.load(sys.stdin)
    df = pd.DataFrame(data["battles"], columns=["model_a", "model_b", "winner"])
    dataset = PairDataset.from_pandas(df)
    model = BradleyTerry(len(dataset.competitors))
    out = model.compute_ratings_and_cis(dataset, ci_method="sandwich")
    print(
        json.dumps(
            {
                "models": list(dataset.competitors),
                "ratings": [float(x) for x in out["ratings"]],
                "lower": [float(x) for x in out["rating_lower"]],
                "upper": [float(x) for x in out["rating_upper"]],
            }
        )
    )


if __name__ == "__main__":
    main()
