"""``python -m arena ratings``: fit every leaderboard slice (or one), print the tables, write ratings.csv."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from arena.config import Settings
from arena.errors import ConfigError
from arena.storage import Store, default_url

if TYPE_CHECKING:
    from arena.ratings import RatingsResult

# Spelled out rather than imported from arena.ratings, which loads scipy and choix (~0.8 s) for every
# command's --help; tests/test_cli_ratings.py checks they agree.
TIE_POLICIES = ("half", "exclude")
INTERVAL_METHODS = ("bootstrap", "sandwich")

NAME = "ratings"
HELP = (
    "Fit Bradley-Terry ratings with confidence intervals for every leaderboard slice (overall, lang:<code>, "
    "pool:<name>, named) or one, print them, and write them to a ratings.csv file with --out."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="Database URL (default: DATABASE_URL, else db/arena.sqlite3).",
    )
    parser.add_argument(
        "--out", metavar="FILE", default=None, help="Write ratings.csv here (one row per model and slice)."
    )
    parser.add_argument(
        "--slice", default=None, help="Only this slice: overall, named, pool:chat, pool:base or lang:<code>."
    )
    parser.add_argument(
        "--bootstrap", type=int, default=None, metavar="N", help="Bootstrap rounds (default: settings)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the bootstrap (default 0).")
    parser.add_argument("--tie-policy", choices=TIE_POLICIES, default=None, help="How ties enter the fit.")
    parser.add_argument(
        "--interval", choices=INTERVAL_METHODS, default=None, help="Which interval is shown and ranks by."
    )
    parser.add_argument("--bom", action="store_true", help="Start the CSV with a UTF-8 byte-order mark (for Excel).")


def _table(name: str, label: str, result: RatingsResult) -> str:
    lines = [f"== {name} ({label}): {result.n_battles} votes, {result.interval_method} intervals =="]
    if not result.rows:
        lines.append("(no rated models)")
    else:
        width = max(len(r.model) for r in result.rows)
        lines.append(f"{'rank':>4}  {'model':<{width}}  {'rating':>7}  {'95% interval':>15}  {'votes':>6}  note")
        for r in result.rows:
            interval = f"{r.ci_lower:.1f}..{r.ci_upper:.1f}"
            note = "preliminary" if r.preliminary else ""
            lines.append(f"{r.rank:>4}  {r.model:<{width}}  {r.rating:7.1f}  {interval:>15}  {r.votes:>6}  {note}")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from arena.exchange import write_ratings_csv
    from arena.leaderboard import FitParams, available_slices, fit_slice, parse_slice

    settings = Settings.load(os.environ, db=args.db)
    params = FitParams(
        tie_policy=args.tie_policy or settings.tie_policy,  # type: ignore[arg-type]
        alpha=settings.alpha,
        interval=args.interval or settings.interval,  # type: ignore[arg-type]
        bootstrap_rounds=settings.bootstrap_rounds if args.bootstrap is None else args.bootstrap,
        seed=args.seed,
        min_votes=settings.min_votes,
    )
    if params.bootstrap_rounds < 0:
        raise ConfigError("--bootstrap must be 0 or more.")
    if params.bootstrap_rounds == 0 and params.interval == "bootstrap":
        params = FitParams(**{**params.__dict__, "interval": "sandwich"})
    try:
        wanted = parse_slice(args.slice) if args.slice else None
    except ValueError as e:
        raise ConfigError(str(e)) from None
    with Store(settings.db or default_url()) as store:
        if store.current_revision() is None:
            raise ConfigError(f"{store.url} has no arena tables; run `python -m arena db upgrade` or import battles.")
        cutoff = datetime.now(UTC)
        slices = [wanted] if wanted else [parse_slice(s.name) for s in available_slices(store.vote_groups())]
        if not slices:
            slices = [parse_slice("overall")]
        results: list[tuple[str, RatingsResult]] = []
        for sl in slices:
            result = fit_slice(store, sl, params)
            results.append((sl.name, result))
            print(_table(sl.name, sl.label, result) + "\n", flush=True)
    if args.out:
        n = write_ratings_csv(results, args.out, cutoff=cutoff, bom=args.bom)
        print(f"wrote {n} rows to {args.out}", file=sys.stderr)
    return 0
