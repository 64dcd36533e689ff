"""``python -m arena simulate``: race the pairing strategies on simulated arenas with known strengths."""

from __future__ import annotations

import argparse
import time

from arena.errors import ConfigError
from arena.simulate import SimulationConfig, format_report, run_simulation, write_plot

NAME = "simulate"
HELP = (
    "Simulate arenas with known strengths and report how many fewer votes active pairing needs than "
    "uniform pairing for the same ranking accuracy, and the bias of both."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SimulationConfig()
    parser.add_argument("--models", type=int, default=d.n_models, help=f"Models per arena (default {d.n_models}).")
    parser.add_argument("--seeds", type=int, default=d.seeds, help=f"Simulated arenas (default {d.seeds}).")
    parser.add_argument(
        "--spread", type=float, default=d.spread, help=f"SD of the true ratings in Elo points (default {d.spread:g})."
    )
    parser.add_argument(
        "--tie-rate",
        type=float,
        default=d.tie_rate,
        help=f"Share of ties (incl. both-bad) between two equal models, Davidson model (default {d.tie_rate:g}).",
    )
    parser.add_argument(
        "--target", type=float, default=d.target, help=f"Spearman correlation to reach (default {d.target:g})."
    )
    parser.add_argument(
        "--max-votes", type=int, default=d.max_votes, help=f"Votes per simulated arena (default {d.max_votes})."
    )
    parser.add_argument(
        "--refit-every",
        type=int,
        default=d.refit_every,
        help=f"Votes between refits (default {d.refit_every}, as the service's ARENA_PAIRING_REFRESH_VOTES).",
    )
    parser.add_argument(
        "--floor", type=float, default=d.floor, help=f"Exploration floor of active pairing (default {d.floor:g})."
    )
    parser.add_argument(
        "--ipw",
        action="store_true",
        help="Rank the active arm by its inverse-propensity weighted fit (the weighted error is reported either way).",
    )
    parser.add_argument("--seed", type=int, default=d.seed, help=f"Master random seed (default {d.seed}).")
    parser.add_argument(
        "--plot",
        metavar="FILE",
        default=None,
        help="Write Spearman-versus-votes curves: FILE.html (plotly) or else an SVG (suffix becomes .svg).",
    )


def run(args: argparse.Namespace) -> int:
    cfg = SimulationConfig(
        n_models=args.models,
        seeds=args.seeds,
        spread=args.spread,
        tie_rate=args.tie_rate,
        target=args.target,
        max_votes=args.max_votes,
        refit_every=args.refit_every,
        floor=args.floor,
        ipw=args.ipw,
        seed=args.seed,
    )
    try:
        cfg.check()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    start = time.perf_counter()
    result = run_simulation(cfg)
    lines = format_report(result)
    if args.plot:
        lines.insert(-2, f"plot: {write_plot(result, args.plot)}")
    lines.insert(-2, f"time: {time.perf_counter() - start:.1f} s; CI of the saving: percentile bootstrap over seeds")
    print("\n".join(lines))
    return 0
