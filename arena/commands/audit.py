"""``python -m arena audit``: what the votes of one leaderboard slice support (docs/ratings.md)."""

from __future__ import annotations

import argparse
import json
import os

from arena.commands import counted
from arena.config import Settings
from arena.errors import ConfigError
from arena.storage import Store, default_url

NAME = "audit"
HELP = (
    "Audit one leaderboard slice: which neighbours the votes separate, rank ranges, voter concentration "
    "and influence, first-slot bias, the tie convention, cycles, connectivity and coverage; each probe "
    "says whether it fired, the figure behind it and one sentence."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", metavar="URL", default=None, help="Database URL (default: DATABASE_URL, else db/arena.sqlite3)."
    )
    parser.add_argument(
        "--slice",
        default="overall",
        help="overall (default), named, pool:chat, pool:base, lang:<code> or cat:<category>.",
    )
    parser.add_argument("--json", action="store_true", help='Print {"probes": [{"name", "fired", "value", "reason"}]}.')
    parser.add_argument(
        "--resamples", type=int, default=1000, metavar="N", help="Bootstrap resamples (default 1000, at least 20)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the resampling (default 0).")
    parser.add_argument(
        "--tie-policy",
        choices=("half", "exclude"),
        default=None,
        help="How ties enter the fit, as for `ratings` (default: settings, ARENA_TIE_POLICY).",
    )
    parser.add_argument(
        "--bothbad-policy",
        choices=("half", "exclude"),
        default=None,
        help="How 'both bad' votes enter the fit, apart from ties (default: settings, else as --tie-policy).",
    )
    parser.add_argument(
        "--min-votes",
        type=int,
        default=None,
        metavar="N",
        help="Models with fewer votes are preliminary and left out of the rank ranges and tiers, as on the "
        "leaderboard (default: settings, ARENA_MIN_VOTES).",
    )
    parser.add_argument(
        "--ipw",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Weight each battle by inverse propensity, as `ratings --ipw` and the leaderboard fit them "
        "(default: settings, ARENA_IPW); --no-ipw audits the unweighted votes.",
    )


def run(args: argparse.Namespace) -> int:
    from arena.audit import THRESHOLDS
    from arena.leaderboard import FitParams, audit_slice, parse_slice

    settings = Settings.load(os.environ, db=args.db)
    try:
        sl = parse_slice(args.slice)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if args.resamples < 20:
        raise ConfigError("--resamples must be at least 20 (a 95% quantile needs them).")
    min_votes = settings.min_votes if args.min_votes is None else args.min_votes
    if min_votes < 0:
        raise ConfigError("--min-votes must be 0 or more.")
    with Store(settings.db or default_url()) as store:
        if store.current_revision() is None:
            raise ConfigError(f"{store.url} has no arena tables; run `python -m arena db upgrade` or import battles.")
        params = FitParams(
            tie_policy=args.tie_policy or settings.tie_policy,
            bothbad_policy=args.bothbad_policy or settings.bothbad_policy or None,
            seed=args.seed,
            ipw=settings.ipw if args.ipw is None else args.ipw,
            min_votes=min_votes,
            audit_resamples=args.resamples,
        )
        result = audit_slice(store, sl, params)  # as the leaderboard page audits it
    if args.json:
        print(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
        return 0
    votes, resamples = counted(result.n_battles, "vote"), counted(args.resamples, "resample")
    weighted = ", battles weighted by inverse propensity" if result.weighted else ""
    print(f"== audit of {sl.name} ({sl.label}): {votes}, {resamples}{weighted} ==")
    width = max(len(p.name) for p in result.probes)
    for p in result.probes:
        value = "—" if p.value is None else f"{p.value:g}"
        # A probe with no figure could not run (too few models, voters or triads): not a pass.
        status = "FIRED" if p.fired else "n/a" if p.value is None else "ok"
        print(f"{status:>5}  {p.name:<{width}}  {value:>8}  {p.reason}")
    if result.models:
        print(
            f"\n{THRESHOLDS.level:.0%} rank ranges and tiers of the {len(result.models)} audited models (a new tier "
            "starts where the simultaneous test separates neighbours; ratings centred on these models):"
        )
        mw = max(len(m) for m in result.models)
        for m, r, lo, hi, t in zip(
            result.models, result.ratings, result.rank_low, result.rank_high, result.tier, strict=True
        ):
            ranks = f"rank  {lo}" if lo == hi else f"ranks {lo}-{hi}"
            print(f"  tier {t:>2}  {m:<{mw}}  {r:7.1f}  {ranks}")
    return 0
