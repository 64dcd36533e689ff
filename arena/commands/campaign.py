"""``python -m arena campaign ...``: evaluation campaigns from prompt file to published result (docs/campaigns.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from arena.commands import counted
from arena.config import Settings, roster_path
from arena.errors import ConfigError

if TYPE_CHECKING:
    from arena.campaigns.generate import StaleAnswer
    from arena.campaigns.model import Campaign, CampaignPrompt
    from arena.registry import Registry
    from arena.storage import Store
    from arena.storage.campaigns import CampaignStore

NAME = "campaign"
HELP = (
    "Evaluation campaigns: create one from a prompt set (Shisa tasks.json, FastChat question.jsonl, CSV), "
    "generate or import the candidates' answers, and print or export the people's judgments."
)


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", metavar="URL", default=None, help="Database URL (default: DATABASE_URL, else db/arena.sqlite3)."
    )


def _campaign(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--campaign", metavar="ID", required=True, help="The campaign's id.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = sub.add_parser("create", help="Create (or update) a campaign from a prompt file.")
    _db(p)
    p.add_argument("--id", required=True, help="The campaign's id (no spaces), e.g. shisa-v1-rc.")
    p.add_argument("--title", required=True, help="What judges and readers see as its name.")
    p.add_argument("--description", default="", help="One paragraph shown above the judging tab.")
    p.add_argument("--prompts", metavar="FILE", required=True, help="tasks.json, question.jsonl or CSV.")
    p.add_argument("--candidates", default="", help="Comma-separated candidate names (roster models to generate).")
    p.add_argument(
        "--temperatures",
        default="",
        help="Comma-separated temperatures, e.g. 0.1,0.4,0.7,1.0 (default: each model's own).",
    )
    p.add_argument("--runs", type=int, default=1, help="Answers per prompt, candidate and temperature (default 1).")
    p.add_argument("--max-new-tokens", type=int, default=None, help="Cap on each answer's length in tokens.")
    _roster_options(p, "The roster the stored answers are checked against (default: ARENA_CONFIG, else models.yaml).")
    _drop_stale(p, "When a prompt's words or a generation setting changed, ")

    p = sub.add_parser("load", help="Load a campaign bundle (a folder with campaign.yaml); loading again adds nothing.")
    _db(p)
    p.add_argument("bundle", metavar="FOLDER", help="The bundle folder (or its campaign.yaml).")

    p = sub.add_parser("import", help="Import answers generated elsewhere (FastChat model_answer JSONL, CSV).")
    _db(p)
    _campaign(p)
    p.add_argument("files", metavar="FILE", nargs="+", help="Answer files.")
    p.add_argument("--model", default=None, help="The candidate, for files that do not name it (FastChat's file name).")
    p.add_argument("--replace", action="store_true", help="Replace stored answers with the same key.")

    p = sub.add_parser(
        "generate", help="Generate every missing answer through the arena's backends and templates (resumable)."
    )
    _db(p)
    _campaign(p)
    p.add_argument("--config", default=None, help="The roster (default: ARENA_CONFIG, else the repo's models.yaml).")
    p.add_argument("--concurrency", type=int, default=4, help="Answers asked at the same time (default 4).")
    p.add_argument("--demo", action="store_true", help="Start the demo model servers and use the demo roster.")
    p.add_argument("--quiet", action="store_true", help="No progress bar.")
    _drop_stale(p, "When a model's entry in the roster or a campaign setting changed, ")

    p = sub.add_parser("results", help="Print win/loss/draw and Bradley-Terry ratings per slice; write CSV.")
    _db(p)
    _campaign(p)
    p.add_argument("--slice", default="all", help="overall, category:X, language:X, setting:X or all (default).")
    p.add_argument("--out", metavar="FILE", default=None, help="Write every printed slice as CSV.")
    p.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap rounds for the intervals (default 1000).")
    p.add_argument("--seed", type=int, default=0, help="Bootstrap seed (default 0).")

    p = sub.add_parser("export", help="Write judgments (MT-Bench human-judgment columns), answers or a whole bundle.")
    _db(p)
    _campaign(p)
    p.add_argument("--judgments", metavar="FILE", default=None, help="Judgments as CSV or JSONL (by suffix).")
    p.add_argument("--answers", metavar="FILE", default=None, help="Answers as FastChat model_answer JSONL.")
    p.add_argument("--bundle", metavar="FOLDER", default=None, help="campaign.yaml + prompts.jsonl + answers.jsonl.")

    p = sub.add_parser(
        "list", help="List the campaigns with their prompts, answers (failed, hidden from judges) and votes."
    )
    _db(p)
    _roster_options(p, "The arena's roster (default: ARENA_CONFIG, else models.yaml): whose names hide an answer.")


def _roster_options(parser: argparse.ArgumentParser, config_help: str) -> None:
    parser.add_argument("--config", default=None, help=config_help)
    parser.add_argument("--demo", action="store_true", help="Use the demo roster (as `generate --demo`).")


def _drop_stale(parser: argparse.ArgumentParser, when: str) -> None:
    parser.add_argument(
        "--drop-stale-answers",
        action="store_true",
        help=when + "delete the stored answers made under the old ones, so that generate makes them again.",
    )


def _load_roster(args: argparse.Namespace) -> Registry:
    """The roster ``create`` and ``list`` compare stored answers with: the one ``generate`` would use."""
    from arena.backends.demo import DEMO_ROSTER_PATH
    from arena.registry import load_registry

    if args.demo:
        # Only the models' prompt formats and parameters matter here, not where they are served.
        placeholders = {f"DEMO_URL_{n}": "http://127.0.0.1:9" for n in range(1, 5)}
        return load_registry(DEMO_ROSTER_PATH, placeholders)
    settings = Settings.load(os.environ, db=args.db, config=args.config)
    return load_registry(roster_path(settings.config), dict(os.environ))


def _refuse_stale(campaign: Campaign, stale: list[StaleAnswer], again: str) -> NoReturn:
    from arena.campaigns.generate import describe_stale

    raise ConfigError(
        f"campaign {campaign.id}: {describe_stale(stale)}; nothing was changed. Pass --drop-stale-answers to delete "
        f"them and generate them again, or {again}."
    )


def _store(db: str | None, *, create: bool = False) -> tuple[Store, CampaignStore]:
    from arena.storage import Store, default_url
    from arena.storage.campaigns import CampaignStore

    settings = Settings.load(os.environ, db=db)
    store = Store(settings.db or default_url())
    if create:
        store.upgrade_locked()
    elif store.current_revision() is None:
        raise ConfigError(
            f"{store.url} has no arena tables; create a campaign first (`python -m arena campaign create`)."
        )
    else:
        store.upgrade_locked()
    return store, CampaignStore(store)


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def run(args: argparse.Namespace) -> int:
    return int(globals()[f"_{args.action}"](args))


def _create(args: argparse.Namespace) -> int:
    from arena.campaigns.formats import campaign_from, read_prompts

    prompts = read_prompts(args.prompts)
    campaign = campaign_from(
        args.id,
        args.title,
        description=args.description,
        candidates=_split(args.candidates),
        temperatures=_split(args.temperatures),
        runs=args.runs,
        max_new_tokens=args.max_new_tokens,
        where="campaign create",
    )
    store, cstore = _store(args.db, create=True)
    with store:
        stale, unplanned = _stale_after(cstore, campaign, prompts, args)
        if stale and not args.drop_stale_answers:
            _refuse_stale(campaign, stale, "run create with the settings those answers were made with")
        changed = cstore.save_campaign(
            campaign,
            prompts,
            reworded="drop" if args.drop_stale_answers else "refuse",
            drop_answers=[s.answer_id for s in stale],
        )
    if stale:
        print(f"deleted {counted(len(stale), 'answer')} made under the old settings; run generate to make them again")
    if unplanned:
        print(
            f"{counted(len(unplanned), 'answer')} of a temperature or run no longer listed kept but not judged "
            "(list it again to judge them)"
        )
    languages = sorted({p.language for p in prompts})
    categories = sorted({p.category for p in prompts})
    n_prompts, n_categories = counted(len(prompts), "prompt"), counted(len(categories), "category", "categories")
    n_candidates = counted(len(campaign.candidates), "candidate")
    n_settings = counted(len(campaign.settings), "setting")
    print(
        f"campaign {campaign.id}: {n_prompts} ({changed} new or changed) in {n_categories}, "
        f"languages {', '.join(languages)}; {n_candidates} x {n_settings} x {counted(campaign.runs, 'run')}"
    )
    return 0


def _words(p: CampaignPrompt) -> tuple[tuple[str, ...], str | None]:
    return p.turns, p.system


def _stale_after(
    cstore: CampaignStore, campaign: Campaign, prompts: list[CampaignPrompt], args: argparse.Namespace
) -> tuple[list[StaleAnswer], list[str]]:
    """The stored answers ``campaign`` (as it is about to be saved) makes stale, and those it stops judging.

    Answers to prompts whose words change are left to :meth:`CampaignStore.save_campaign`.
    """
    from arena.campaigns.generate import stale_answers
    from arena.campaigns.service import sort_answers

    stored = cstore.answers(campaign.id, ok_only=True)
    generated = [a for a in stored if a.source == "generated"]
    if not generated:
        return [], []  # nothing was generated: no roster needed
    before = {p.id: p for p in cstore.prompts(campaign.id)}
    same = {p.id: p for p in prompts if p.id in before and _words(before[p.id]) == _words(p)}
    kept = [a for a in generated if a.prompt_id in same]
    roster = _load_roster(args)
    specs = {m.name: m for m in roster.enabled}
    stale = stale_answers(campaign, list(same.values()), kept, specs, before=cstore.campaign(campaign.id))
    unknown = sorted({a.candidate for a in kept} - specs.keys())
    if unknown:
        # Not silent: their models' settings in models.yaml cannot be compared here.
        print(
            f"note: the roster ({roster.source}) has no {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}: "
            "their generated answers were checked only against the campaign's max_new_tokens; pass the roster "
            "generate uses (--config FILE or --demo) to check their model settings too",
            file=sys.stderr,
        )
    unplanned = sort_answers(campaign, same, kept, lambda p, a: False).unplanned
    return stale, list(unplanned)


def _load(args: argparse.Namespace) -> int:
    from arena.campaigns.service import install_bundle

    store, cstore = _store(args.db, create=True)
    with store:
        campaign, changed, added = install_bundle(cstore, args.bundle)
    print(f"campaign {campaign.id}: {counted(changed, 'prompt')} added or changed, {counted(added, 'answer')} added")
    return 0


def _import(args: argparse.Namespace) -> int:
    from arena.campaigns.formats import read_answers

    store, cstore = _store(args.db)
    with store:
        campaign = cstore.campaign(args.campaign)
        if campaign is None:
            raise ConfigError(f"no campaign {args.campaign!r}; create it first with `python -m arena campaign create`.")
        prompts = {p.id: p for p in cstore.prompts(campaign.id)}
        total = 0
        for f in args.files:
            answers = read_answers(f, campaign.id, model=args.model)
            unknown = sorted({a.prompt_id for a in answers if a.prompt_id not in prompts})
            if unknown:
                raise ConfigError(
                    f"{f}: answers to prompts the campaign does not have: {', '.join(unknown[:5])}"
                    f"{' ...' if len(unknown) > 5 else ''}. Check that the file belongs to this prompt set."
                )
            wrong = [a for a in answers if len(a.turns) != len(prompts[a.prompt_id].turns)]
            if wrong:
                a = wrong[0]
                raise ConfigError(
                    f"{f}: the answer of {a.candidate} to {a.prompt_id} has {len(a.turns)} turns, the prompt "
                    f"{len(prompts[a.prompt_id].turns)}; every turn needs an answer."
                )
            added = cstore.add_answers(answers, replace=args.replace)
            total += added
            print(f"{f}: {counted(len(answers), 'answer')} read, {added} stored")
    print(f"imported {counted(total, 'answer')} into campaign {args.campaign}")
    return 0


class _Progress:
    """A one-line progress bar on standard error (no dependency)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last = 0.0
        self.finished = 0  # answers stored so far (generated or failed)

    def __call__(self, done: int, total: int, report: object) -> None:
        self.finished = done
        now = time.monotonic()
        if self.quiet or (now - self.last < 0.2 and done < total):
            return
        self.last = now
        rate = getattr(report, "answers_per_second", 0.0)
        width = 30
        filled = int(width * done / total) if total else width
        eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
        failed = getattr(report, "failed", 0)
        print(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} answers, {rate:.2f}/s, "
            f"{failed} failed, eta {eta}   ",
            end="" if done < total else "\n",
            file=sys.stderr,
            flush=True,
        )


def _generate(args: argparse.Namespace) -> int:
    from arena.backends import make_backend
    from arena.backends.base import Timeouts
    from arena.campaigns.generate import generate_answers, stale_answers
    from arena.registry import load_registry

    settings = Settings.load(os.environ, db=args.db, config=args.config)
    environ = dict(os.environ)
    servers = []
    config = roster_path(settings.config)
    if args.demo:
        from arena.backends.demo import DEMO_ROSTER_PATH, demo_environ, start_demo_servers

        servers = start_demo_servers(
            4, token_rate=settings.demo_token_rate, first_token_delay=settings.demo_first_token_delay
        )
        environ.update(demo_environ(servers))
        config = str(DEMO_ROSTER_PATH)
    try:
        registry = load_registry(config, environ)
        store, cstore = _store(args.db)
        with store:
            campaign = cstore.campaign(args.campaign)
            if campaign is None:
                raise ConfigError(
                    f"no campaign {args.campaign!r}; create it first with `python -m arena campaign create`."
                )
            timeouts = Timeouts(
                connect=settings.connect_timeout,
                first_token=settings.first_token_timeout,
                read=settings.read_timeout,
                total=settings.total_timeout,
            )
            specs = {m.name: m for m in registry.enabled}
            prompts = cstore.prompts(campaign.id)
            stale = stale_answers(campaign, prompts, cstore.answers(campaign.id, ok_only=True), specs)
            if stale and not args.drop_stale_answers:
                _refuse_stale(campaign, stale, f"put those settings back in {config}")
            if stale:
                cstore.delete_answers(campaign.id, [s.answer_id for s in stale])
                print(f"deleted {counted(len(stale), 'answer')} made under the old settings", file=sys.stderr)
            backends = {name: make_backend(spec, timeouts, environ) for name, spec in specs.items()}
            progress = _Progress(args.quiet)
            try:
                report = asyncio.run(
                    generate_answers(
                        campaign,
                        prompts,
                        specs,
                        backends,
                        lambda a: cstore.add_answers([a]),
                        done=cstore.done_answer_ids(campaign.id),
                        concurrency=args.concurrency,
                        progress=progress,
                    )
                )
            except KeyboardInterrupt:
                print(
                    f"\n{progress.finished} new answers stored; run the same command again to generate the rest.",
                    file=sys.stderr,
                )
                raise
    finally:
        for server in servers:
            server.stop()
    errors = ", ".join(f"{k} x{v}" for k, v in sorted(report.errors.items()))
    print(
        f"campaign {campaign.id}: {counted(report.planned, 'answer')} planned, {report.skipped} already stored, "
        f"{report.generated} generated, {report.failed} failed{' (' + errors + ')' if errors else ''} "
        f"in {report.seconds:.1f} s ({report.answers_per_second:.2f} answers/s at concurrency {args.concurrency})"
    )
    if report.failed:
        print("Run the same command again to retry the failed answers.", file=sys.stderr)
    return 1 if report.failed else 0


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _results(args: argparse.Namespace) -> int:
    from arena.campaigns.results import head_to_head, results_csv
    from arena.campaigns.service import CampaignService, slice_results

    store, cstore = _store(args.db)
    with store:
        campaign = cstore.campaign(args.campaign)
        if campaign is None:
            raise ConfigError(f"no campaign {args.campaign!r}.")
        names = CampaignService.slices_of(cstore, campaign.id) if args.slice == "all" else [args.slice]
        slices = [slice_results(cstore, campaign.id, n, bootstrap_rounds=args.bootstrap, seed=args.seed) for n in names]
        header, matrix = head_to_head(cstore.pair_counts(campaign.id), campaign.candidates)
    print(f"campaign {campaign.id}: {campaign.title}")
    for s in slices:
        print(f"\n== {s.name} ({counted(s.judgments, 'judgment')}) ==")
        print(
            f"{'rank':>4}  {'candidate':<28} {'rating':>7} {'95% CI':>15} {'n':>5} "
            f"{'W':>4} {'L':>4} {'D':>4} {'win%':>6} {'w+d%':>6}"
        )
        for r in s.rows:
            ci = f"{_fmt(r.ci_lower, 0)}..{_fmt(r.ci_upper, 0)}" if r.rating is not None else "-"
            mark = "*" if r.preliminary else ""
            print(
                f"{r.rank if r.rank else '-':>4}  {r.candidate + mark:<28} {_fmt(r.rating, 0):>7} {ci:>15} "
                f"{r.judgments:>5} {r.wins:>4} {r.losses:>4} {r.draws:>4} "
                f"{_fmt(r.win_pct):>6} {_fmt(r.win_draw_pct):>6}"
            )
    print("\nhead to head (row's wins-losses-draws against the column):")
    widths = [max(len(str(row[i])) for row in [header, *matrix]) for i in range(len(header))]
    for row in [header, *matrix]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print("\n* preliminary: fewer than 30 judgments. Draws are ties and both-bad; flagged votes are left out.")
    if args.out:
        Path(args.out).write_text(results_csv(slices), encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from arena.campaigns.formats import write_answers
    from arena.campaigns.results import judgment_row, judgments_csv
    from arena.campaigns.service import export_bundle

    if not (args.judgments or args.answers or args.bundle):
        raise ConfigError("say what to write: --judgments FILE, --answers FILE and/or --bundle FOLDER.")
    store, cstore = _store(args.db)
    with store:
        if cstore.campaign(args.campaign) is None:
            raise ConfigError(f"no campaign {args.campaign!r}.")
        if args.judgments:
            votes = cstore.votes(args.campaign)
            path = Path(args.judgments)
            if path.suffix.lower() in (".jsonl", ".ndjson"):
                with path.open("w", encoding="utf-8") as f:
                    for v in votes:
                        f.write(json.dumps(judgment_row(v), ensure_ascii=False) + "\n")
            else:
                path.write_text(judgments_csv(votes), encoding="utf-8")
            print(f"wrote {counted(len(votes), 'judgment')} to {path}", file=sys.stderr)
        if args.answers:
            n = write_answers((a for a in cstore.answers(args.campaign) if a.error is None), args.answers)
            print(f"wrote {counted(n, 'answer')} to {args.answers}", file=sys.stderr)
        if args.bundle:
            print(f"wrote {export_bundle(cstore, args.campaign, args.bundle)}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    from arena.campaigns.service import names_itself, sort_answers
    from arena.identity import IdentityMatcher

    store, cstore = _store(args.db)
    with store:
        campaigns = cstore.campaigns()
        roster = _load_roster(args).enabled if campaigns else []
        identity, names = IdentityMatcher(roster), {m.name for m in roster}
        for c in campaigns:
            answers = cstore.answers(c.id)
            failed = sum(1 for a in answers if a.error)
            prompts = {p.id: p for p in cstore.prompts(c.id)}
            # Counted as the arena counts them when it starts (its log names them).
            shown = sort_answers(c, prompts, answers, lambda p, a: names_itself(identity, names, p, a))
            votes, _ = cstore.vote_state(c.id)
            n_prompts = counted(len(prompts), "prompt")
            n_answers = counted(len(answers) - failed, "answer")
            hidden = f", {len(shown.leaked)} name their candidate"
            if shown.unplanned:
                hidden += f", {len(shown.unplanned)} of a setting or run no longer listed"
            print(f"{c.id}: {c.title} | {n_prompts}, {n_answers} ({failed} failed{hidden}), {counted(votes, 'vote')}")
    return 0
