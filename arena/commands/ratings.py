"""``python -m arena ratings``: fit every leaderboard slice (or one), print the tables, write ratings.csv."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from arena.commands import counted
from arena.config import Settings
from arena.errors import ConfigError
from arena.storage import Store, default_url

if TYPE_CHECKING:
    from arena.ratings import RatingsResult
    from arena.style import StyleResult

# Spelled out rather than imported from arena.ratings, which loads scipy and choix (~0.8 s) for every
# command's --help; tests/test_cli_ratings.py checks they agree.
TIE_POLICIES = ("half", "exclude")
INTERVAL_METHODS = ("bootstrap", "sandwich")
SCALE = 400.0 / 2.302585092994046  # arena.ratings.SCALE

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
        "--slice",
        default=None,
        help="Only this slice: overall, named, pool:chat, pool:base, lang:<code> or cat:<category>.",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=None, metavar="N", help="Bootstrap rounds (default: settings)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the bootstrap (default 0).")
    parser.add_argument("--tie-policy", choices=TIE_POLICIES, default=None, help="How ties enter the fit.")
    parser.add_argument(
        "--interval", choices=INTERVAL_METHODS, default=None, help="Which interval is shown and ranks by."
    )
    parser.add_argument(
        "--bothbad-policy",
        choices=TIE_POLICIES,
        default=None,
        help="How 'both bad' votes enter the fit, apart from ties (default: as --tie-policy).",
    )
    parser.add_argument(
        "--ipw",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Weight each battle by inverse propensity, uniform_propensity / propensity (default: settings, "
        "ARENA_IPW, as the leaderboard page); --no-ipw fits the unweighted votes.",
    )
    parser.add_argument(
        "--level", type=float, default=0.95, metavar="P", help="Confidence level of the intervals (default 0.95)."
    )
    parser.add_argument(
        "--anchor",
        default=None,
        metavar="MODEL=RATING",
        help="Pin MODEL to RATING (e.g. gpt-4=1200); slices without that model keep mean 1000.",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=SCALE,
        metavar="POINTS",
        help=f"Rating points per unit of log-odds (default 400/ln 10 = {SCALE:.2f}, the Elo scale).",
    )
    parser.add_argument(
        "--min-votes",
        type=int,
        default=None,
        metavar="N",
        help="Fewer votes: preliminary, no rank (default: settings).",
    )
    parser.add_argument(
        "--style",
        action="store_true",
        help="Also print style-controlled ratings (answer length, headers, lists, bold as covariates) with the "
        "style coefficients, beside the plain ratings (reads every counted battle's answers).",
    )
    parser.add_argument("--bom", action="store_true", help="Start the CSV with a UTF-8 byte-order mark (for Excel).")


def parse_anchor(text: str | None) -> tuple[str, float] | None:
    """``MODEL=RATING`` -> ``(MODEL, RATING)``.

    Raises
    ------
    ConfigError
        When the text is not of that form.
    """
    if text is None:
        return None
    model, sep, value = text.rpartition("=")
    try:
        rating = float(value)
    except ValueError:
        rating = float("nan")
    if not sep or not model.strip() or rating != rating or rating in (float("inf"), float("-inf")):
        raise ConfigError(f"--anchor must be MODEL=RATING with a finite number, e.g. gpt-4=1200, not {text!r}.")
    return model.strip(), rating


def _table(name: str, label: str, result: RatingsResult) -> str:
    level = f"{result.level:.0%}" if round(result.level * 100) == result.level * 100 else f"{result.level:.1%}"
    lines = [f"== {name} ({label}): {counted(result.n_battles, 'vote')}, {level} {result.interval_method} intervals =="]
    if not result.rows:
        lines.append("(no rated models)")
    else:
        width = max(len(r.model) for r in result.rows)
        grouped = len(result.components) > 1
        group_head = "group  " if grouped else ""
        lines.append(
            f"{'rank':>4}  {group_head}{'model':<{width}}  {'rating':>7}  {level + ' interval':>15}  {'votes':>6}  note"
        )
        for r in sorted(result.rows, key=lambda r: r.component) if grouped else result.rows:
            interval = f"{r.ci_lower:.1f}..{r.ci_upper:.1f}"
            note = "preliminary" if r.preliminary else ""
            rank = "—" if r.rank is None else str(r.rank)
            group = f"{r.component + 1:>5}  " if grouped else ""
            lines.append(f"{rank:>4}  {group}{r.model:<{width}}  {r.rating:7.1f}  {interval:>15}  {r.votes:>6}  {note}")
        if grouped:
            lines.append("(groups never met: ratings and ranks compare only within one group)")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


def _style_table(name: str, style: StyleResult) -> str:
    level = f"{style.level:.0%}"
    lines = [f"== {name}, style controlled: {counted(style.n_battles, 'vote')}, {level} sandwich intervals =="]
    if not style.rows:
        return "\n".join([*lines, "(no rated models)"])
    width = max(len(r.model) for r in style.rows)
    lines.append(f"{'model':<{width}}  {'style-controlled':>16}  {level + ' interval':>15}  {'plain':>7}  {'votes':>6}")
    for r in style.rows:
        interval = f"{r.ci_lower:.1f}..{r.ci_upper:.1f}"
        lines.append(f"{r.model:<{width}}  {r.rating:16.1f}  {interval:>15}  {r.plain:7.1f}  {r.votes:>6}")
    lines.append("style coefficients (log-odds per standard deviation of the A-B difference):")
    for c in style.coefficients:
        verdict = "significant" if c.significant else "not significant"
        lines.append(f"  {c.feature:<8} {c.value:+.3f}  ({c.ci_lower:+.3f} .. {c.ci_upper:+.3f})  {verdict}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from arena.exchange import write_ratings_csv
    from arena.leaderboard import FitParams, available_slices, fit_slice, parse_slice

    settings = Settings.load(os.environ, db=args.db)
    params = FitParams(
        tie_policy=args.tie_policy or settings.tie_policy,
        alpha=settings.alpha,
        interval=args.interval or settings.interval,
        bootstrap_rounds=settings.bootstrap_rounds if args.bootstrap is None else args.bootstrap,
        seed=args.seed,
        min_votes=settings.min_votes if args.min_votes is None else args.min_votes,
        bothbad_policy=args.bothbad_policy or settings.bothbad_policy or None,
        level=args.level,
        scale=args.scale,
        anchor=parse_anchor(args.anchor),
        ipw=settings.ipw if args.ipw is None else args.ipw,
    )
    if not 0.5 <= params.level < 1:
        raise ConfigError(f"--level must be at least 0.5 and below 1, e.g. 0.95, not {args.level}.")
    if not params.scale > 0:
        raise ConfigError(f"--scale must be a positive number of points, not {args.scale}.")
    if params.min_votes < 0:
        raise ConfigError("--min-votes must be 0 or more.")
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
            if args.style and result.rows:
                from arena.leaderboard import style_slice

                print(_style_table(sl.name, style_slice(store, sl, params)) + "\n", flush=True)
    if args.out:
        n = write_ratings_csv(results, args.out, cutoff=cutoff, bom=args.bom)
        print(f"wrote {counted(n, 'row')} to {args.out}", file=sys.stderr)
    return 0
