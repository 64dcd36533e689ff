"""Run inside arena-rank's own virtual environment (tests/test_audit_peers.py): read battles with
their style features as JSON on standard input, print arena-rank's style-controlled fit."""

from __future__ import annotations

import json
import sys

import jax.numpy as jnp
from arena_rank.models.contextual_bradley_terry import ContextualBradleyTerry
from arena_rank.utils.data_utils import ContextualPairDataset


def main() -> None:
    data = json.load(sys.stdin)
    features = jnp.array(data["features"], dtype=jnp.float64)
    dataset = ContextualPairDataset(
        competitors=data["models"],
        pairs=jnp.array(data["pairs"], dtype=jnp.int32),
        outcomes=jnp.array(data["outcomes"], dtype=jnp.float64),
        features=features,
        weights=jnp.ones(len(data["outcomes"]), dtype=jnp.float64),
    )
    # reg ~ 0: the plain maximum likelihood (arena-rank's default reg=1.0 shrinks the coefficients).
    model = ContextualBradleyTerry(len(data["models"]), features.shape[1], reg=1e-9)
    out = model.compute_ratings_and_cis(dataset, ci_method="sandwich")
    print(
        json.dumps(
            {
                "ratings": [float(x) for x in out["ratings"]],
                "lower": [float(x) for x in out["rating_lower"]],
                "upper": [float(x) for x in out["rating_upper"]],
                "coeffs": [float(x) for x in out["coeffs"]],
            }
        )
    )


if __name__ == "__main__":
    main()
