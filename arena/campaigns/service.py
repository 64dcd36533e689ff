"""CampaignService: judging pre-generated answers with the same guarantees as live battles.

One vote per comparison per visitor (the session refuses a second click, the database's unique
index refuses a second vote from another session or replica), the arena's vote rate limit (live
and campaign votes together), the too-fast flag (from the moment the answers were shown), the
identity-leak flag, votes committed before the page thanks the judge, and a journal line per vote
(restored by :class:`arena.sync.Sync`). Nothing that names a candidate leaves the service before
the vote: the comparison a judge sees lives in their session, and the page receives only texts.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import unicodedata
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np

from arena.campaigns.chooser import Choice, Item, Strategy, choose, pair_probabilities
from arena.campaigns.model import Campaign, CampaignAnswer, CampaignPrompt, CampaignVote
from arena.campaigns.results import SliceResult, fit_slice, head_to_head
from arena.config import Settings
from arena.domain import Winner
from arena.errors import CampaignDone, NoCampaign, RateLimited, VoteRejected
from arena.identity import IdentityMatcher
from arena.limits import Limit, check_limit
from arena.messages import Message
from arena.ratings import fit_ratings
from arena.service import ArenaService
from arena.storage import Store
from arena.storage.campaigns import CampaignStore

__all__ = [
    "CampaignDone",
    "CampaignReveal",
    "CampaignService",
    "Comparison",
    "NoCampaign",
    "SortedAnswers",
    "names_itself",
    "sort_answers",
]

log = logging.getLogger(__name__)

Status = Literal["ready", "voting", "voted"]


@dataclass
class Comparison:
    """What one judge is looking at. Lives in the judge's session; never sent to the browser."""

    campaign_id: str
    prompt: CampaignPrompt
    choice: Choice
    answer_a: CampaignAnswer
    answer_b: CampaignAnswer
    client_hash: str
    shown_at: datetime
    shown_clock: float
    status: Status = "ready"
    winner: Winner | None = None


@dataclass(frozen=True)
class CampaignReveal:
    model_a: str
    model_b: str
    winner: Winner
    flags: tuple[str, ...] = ()


@dataclass
class _Loaded:
    campaign: Campaign
    prompts: dict[str, CampaignPrompt]
    answers: dict[str, CampaignAnswer]
    items: list[Item]
    candidates: tuple[str, ...]
    probabilities: dict[tuple[str, str], float]
    votes_since_refresh: int = 0
    leaked: tuple[str, ...] = ()  # answers that name their own candidate: never shown


def _names_in(name: str, text: str, prompt: str = "") -> bool:
    """Whether a candidate known only by name appears in ``text`` as a word ("sft" is not in "Microsoft")."""

    def norm(x: str) -> str:
        return unicodedata.normalize("NFKC", x).casefold()

    key = norm(name)
    if len(key) < 3:
        return False
    word = re.compile(rf"(?<![0-9a-z\u00c0-\u024f]){re.escape(key)}(?![0-9a-z\u00c0-\u024f])")
    return word.search(norm(text)) is not None and word.search(norm(prompt)) is None


def names_itself(
    identity: IdentityMatcher, roster: Collection[str], prompt: CampaignPrompt, answer: CampaignAnswer
) -> bool:
    """Whether ``answer`` gives its candidate away (what the prompt brought in does not count).

    Candidates in ``roster`` go through ``identity`` (names, aliases, served ids, in self-naming
    context); a candidate known only by name (imported answers) counts anywhere, as a word.
    """
    text = "\n".join(answer.turns)
    asked = "\n".join(t for t in (prompt.system, *prompt.turns) if t)
    if answer.candidate in roster:
        return identity.names_itself(answer.candidate, text, asked)
    return _names_in(answer.candidate, text, asked)


@dataclass(frozen=True)
class SortedAnswers:
    """A campaign's good answers, sorted by whether judges see them."""

    judged: tuple[CampaignAnswer, ...]
    leaked: tuple[str, ...]  # ids of answers that name their own candidate: never shown
    unplanned: tuple[str, ...]  # ids of generated answers of a setting or run the campaign no longer has


def sort_answers(
    campaign: Campaign,
    prompts: Mapping[str, CampaignPrompt],
    answers: Iterable[CampaignAnswer],
    gives_away: Callable[[CampaignPrompt, CampaignAnswer], bool],
) -> SortedAnswers:
    """Which good answers judges see: the arena's start-up and ``campaign list`` count them alike.

    Left out: an answer that does not cover every turn of its prompt (or answers no prompt); one
    generated here under a setting (a temperature) or a run the campaign no longer lists, kept in
    the database so that listing the temperature again brings it back; and one that names its own
    candidate (``gives_away``). Imported answers keep whatever setting their file gave them.
    """
    judged: list[CampaignAnswer] = []
    leaked: list[str] = []
    unplanned: list[str] = []
    for a in answers:
        prompt = prompts.get(a.prompt_id)
        if prompt is None or not a.ok or len(a.turns) != len(prompt.turns):
            continue
        if a.source == "generated" and (a.setting not in campaign.settings or a.run > campaign.runs):
            unplanned.append(a.id)
        elif gives_away(prompt, a):
            # Known before anyone sees it, unlike a live answer: such an answer is never shown,
            # so no judge learns a candidate's name before voting.
            leaked.append(a.id)
        else:
            judged.append(a)
    return SortedAnswers(tuple(judged), tuple(sorted(leaked)), tuple(sorted(unplanned)))


class CampaignService:
    """Campaign judging and results, over the arena's service (settings, identity, journal, limits).

    Parameters
    ----------
    arena
        The live arena's service: its settings, client hashing, vote limits, identity matcher and journal.
    store
        The campaign tables.
    strategy, floor
        How the next comparison is chosen (see :mod:`arena.campaigns.chooser`).
    """

    def __init__(
        self,
        arena: ArenaService,
        store: CampaignStore,
        *,
        strategy: Strategy = "top",
        floor: float = 0.1,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.arena = arena
        self.store = store
        self.strategy = strategy
        self.floor = floor
        self.rng = rng or np.random.default_rng()
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()
        settings = arena.settings
        self._vote_limit = Limit(settings.votes_per_hour, 3600.0, "msg.limit_votes")
        self._results: dict[tuple[str, str], tuple[tuple[int, datetime | None], SliceResult]] = {}

    # -- what can be judged ---------------------------------------------------------------------

    def campaigns(self) -> list[Campaign]:
        """Campaigns with at least two candidates that have answers to judge."""
        return [c for c in self.store.campaigns() if len(self._load(c.id).candidates) >= 2]

    def _load(self, campaign_id: str) -> _Loaded:
        with self._lock:
            loaded = self._loaded.get(campaign_id)
            if loaded is not None:
                return loaded
        campaign = self.store.campaign(campaign_id)
        if campaign is None:
            raise NoCampaign(f"no campaign {campaign_id!r}")
        prompts = {p.id: p for p in self.store.prompts(campaign_id)}
        answers = {a.id: a for a in self.store.answers(campaign_id, ok_only=True) if a.ok and a.prompt_id in prompts}
        shown = sort_answers(campaign, prompts, answers.values(), self.names_itself)
        grouped: dict[tuple[str, str], dict[str, list[str]]] = {}
        for a in shown.judged:
            grouped.setdefault((a.prompt_id, a.setting), {}).setdefault(a.candidate, []).append(a.id)
        leaked = shown.leaked
        if leaked:
            log.warning(
                "campaign %s: %d answer(s) name their own candidate and are never shown to judges "
                "(`python -m arena campaign export --answers` lists them with their ids): %s",
                campaign_id,
                len(leaked),
                ", ".join(sorted(leaked)[:5]) + (" ..." if len(leaked) > 5 else ""),
            )
        items = [
            Item(pid, setting, {c: tuple(sorted(ids)) for c, ids in by.items()})
            for (pid, setting), by in sorted(grouped.items())
            if len(by) >= 2
        ]
        candidates = tuple(sorted({c for it in items for c in it.answers}))
        loaded = _Loaded(campaign, prompts, answers, items, candidates, {}, leaked=leaked)
        loaded.probabilities = self._probabilities(loaded)
        with self._lock:
            self._loaded[campaign_id] = loaded
        return loaded

    def reload(self) -> None:
        """Forget what was loaded (after importing or generating answers into a running arena)."""
        with self._lock:
            self._loaded.clear()

    def _probabilities(self, loaded: _Loaded) -> dict[tuple[str, str], float]:
        fit = None
        counts = []
        if self.strategy != "uniform":
            counts = self.store.pair_counts(loaded.campaign.id)
            if counts:
                fit = fit_ratings(counts, interval="sandwich", bootstrap_rounds=0)
        return pair_probabilities(loaded.candidates, fit, counts, strategy=self.strategy, floor=self.floor)

    # -- judging --------------------------------------------------------------------------------

    def languages(self, campaign_id: str) -> list[str]:
        """The languages of the prompts that have comparisons to judge."""
        loaded = self._load(campaign_id)
        return sorted({loaded.prompts[it.prompt_id].language for it in loaded.items})

    def next_comparison(self, campaign_id: str, client_key: str, language: str | None = None) -> Comparison:
        """The next comparison for this visitor (blocking: call it from a worker thread).

        With ``language``, only prompts in that language (for judges who read only some of them).

        Raises
        ------
        NoCampaign
            The campaign does not exist or has fewer than two candidates with answers.
        CampaignDone
            The visitor has judged every comparison there is.
        """
        loaded = self._load(campaign_id)
        if len(loaded.candidates) < 2:
            raise NoCampaign(f"campaign {campaign_id!r} has fewer than two candidates with answers")
        client = self.arena.client_hash(client_key)
        judged = self.store.judged_pairs(campaign_id, client)
        items = loaded.items
        if language:
            items = [it for it in items if loaded.prompts[it.prompt_id].language == language]
        choice = choose(items, loaded.probabilities, judged, self.rng)
        if choice is None:
            raise CampaignDone(f"client {client[:8]} judged all of {campaign_id!r}")
        return Comparison(
            campaign_id=campaign_id,
            prompt=loaded.prompts[choice.prompt_id],
            choice=choice,
            answer_a=loaded.answers[choice.answer_a],
            answer_b=loaded.answers[choice.answer_b],
            client_hash=client,
            shown_at=self.arena._now(),
            shown_clock=self.arena._clock(),
        )

    def names_itself(self, prompt: CampaignPrompt, answer: CampaignAnswer) -> bool:
        """Whether ``answer`` gives its candidate away (what the prompt brought in does not count).

        Roster candidates go through the arena's identity matcher (names, aliases, served ids, in
        self-naming context); a candidate known only by name (imported answers) counts anywhere.
        """
        return names_itself(self.arena.identity, {m.name for m in self.arena.registry.enabled}, prompt, answer)

    def leaked(self, campaign_id: str) -> tuple[str, ...]:
        """The ids of the answers never shown because they name their own candidate."""
        return self._load(campaign_id).leaked

    def _flags(self, comparison: Comparison) -> tuple[str, ...]:
        flags: list[str] = []
        if any(self.names_itself(comparison.prompt, a) for a in (comparison.answer_a, comparison.answer_b)):
            flags.append("identity_leak")
        if self.arena._clock() - comparison.shown_clock < self.arena.settings.min_read_seconds:
            flags.append("too_fast")
        return tuple(flags)

    async def vote(self, comparison: Comparison | None, winner: Winner, *, reason: str | None = None) -> CampaignReveal:
        """Record the judge's vote; committed to the database before this returns.

        Raises
        ------
        VoteRejected
            Nothing shown, or this comparison already voted (here or, for this visitor, anywhere).
        RateLimited
            The visitor cast too many votes (live and campaign together) in the last hour.
        StorageError
            The database is unavailable; nothing was written.
        """
        if comparison is None:
            raise VoteRejected("no comparison", message=Message("msg.campaign_nothing"))
        if comparison.status == "voted":
            raise VoteRejected("already voted", message=Message("msg.already_voted"))
        if comparison.status == "voting":
            raise VoteRejected("vote in flight", message=Message("msg.vote_in_flight"))
        comparison.status = "voting"
        try:
            vote = await self._vote_record(comparison, winner, reason)
            await asyncio.to_thread(self.store.record_vote, vote)
        except VoteRejected:
            comparison.status = "voted"
            raise
        except BaseException:
            comparison.status = "ready"
            raise
        comparison.status, comparison.winner = "voted", winner
        if self.arena.journal is not None:
            self.arena.journal(campaign_vote_event(vote))
        loaded = self._loaded.get(comparison.campaign_id)
        if loaded is not None and self.strategy != "uniform":
            loaded.votes_since_refresh += 1
            if loaded.votes_since_refresh >= self.arena.settings.pairing_refresh_votes:
                loaded.votes_since_refresh = 0
                loaded.probabilities = await asyncio.to_thread(self._probabilities, loaded)
        return CampaignReveal(vote.model_a, vote.model_b, winner, vote.flags)

    async def _vote_record(self, comparison: Comparison, winner: Winner, reason: str | None) -> CampaignVote:
        now = self.arena._now()
        if self._vote_limit.count:
            since = now - timedelta(seconds=self._vote_limit.window)
            used = await asyncio.to_thread(self.store.votes_since, comparison.client_hash, since)
            used += await asyncio.to_thread(self.arena.store.votes_since, comparison.client_hash, since)
            refusal = check_limit(self._vote_limit, used)
            if refusal:
                raise RateLimited(f"client {comparison.client_hash[:8]} cast {used} votes", message=refusal)
        c = comparison.choice
        reason = (reason or "").strip()[: self.arena.settings.max_reason_chars] or None
        return CampaignVote(
            id=uuid.uuid4().hex,
            campaign_id=comparison.campaign_id,
            prompt_id=c.prompt_id,
            answer_a=c.answer_a,
            answer_b=c.answer_b,
            model_a=c.model_a,
            model_b=c.model_b,
            setting=c.setting,
            language=comparison.prompt.language,
            category=comparison.prompt.category,
            winner=winner,
            client_hash=comparison.client_hash,
            shown_at=comparison.shown_at,
            created_at=now,
            flags=self._flags(comparison),
            reason=reason,
            propensity=c.propensity,
            uniform_propensity=c.uniform_propensity,
            turns=len(comparison.prompt.turns),
        )

    # -- results --------------------------------------------------------------------------------

    def slices(self, campaign_id: str) -> list[str]:
        """``overall``, then ``category:X``, ``language:X`` and ``setting:X`` for each value with votes."""
        return self.slices_of(self.store, campaign_id)

    @staticmethod
    def slices_of(store: CampaignStore, campaign_id: str) -> list[str]:
        names = ["overall"]
        for key, values in store.slice_values(campaign_id).items():
            if len(values) > 1:
                names += [f"{key}:{x}" for x in values]
        return names

    def results(self, campaign_id: str, slice_name: str = "overall", *, bootstrap_rounds: int = 200) -> SliceResult:
        """One slice's results (blocking), cached until the campaign's votes change."""
        state = self.store.vote_state(campaign_id)
        cached = self._results.get((campaign_id, slice_name))
        if cached is not None and cached[0] == state:
            return cached[1]
        result = slice_results(self.store, campaign_id, slice_name, bootstrap_rounds=bootstrap_rounds)
        self._results[(campaign_id, slice_name)] = (state, result)
        return result

    def head_to_head(self, campaign_id: str) -> tuple[list[str], list[list[str]]]:
        campaign = self._load(campaign_id)
        return head_to_head(self.store.pair_counts(campaign_id), campaign.candidates)


def slice_results(
    store: CampaignStore, campaign_id: str, slice_name: str = "overall", *, bootstrap_rounds: int = 200, seed: int = 0
) -> SliceResult:
    """Fit one slice (``overall``, ``category:X``, ``language:X``, ``setting:X``) of a campaign."""
    filters: dict[str, str] = {}
    if slice_name != "overall":
        key, _, value = slice_name.partition(":")
        if key not in ("category", "language", "setting") or not value:
            raise ValueError(f"unknown slice {slice_name!r}: use overall, category:X, language:X or setting:X")
        filters[key] = value
    campaign = store.campaign(campaign_id)
    if campaign is None:
        raise NoCampaign(f"no campaign {campaign_id!r}")
    counts = store.pair_counts(campaign_id, **filters)
    return fit_slice(slice_name, counts, campaign.candidates, bootstrap_rounds=bootstrap_rounds, seed=seed)


def campaign_vote_event(v: CampaignVote) -> dict[str, object]:
    """The journal line of one campaign vote (read back by :func:`arena.journal.read_journal`)."""
    return {
        "event": "campaign_vote",
        "id": v.id,
        "campaign_id": v.campaign_id,
        "prompt_id": v.prompt_id,
        "answer_a": v.answer_a,
        "answer_b": v.answer_b,
        "model_a": v.model_a,
        "model_b": v.model_b,
        "setting": v.setting,
        "language": v.language,
        "category": v.category,
        "winner": v.winner,
        "judge": v.client_hash,
        "shown_at": v.shown_at.isoformat(),
        "tstamp": v.created_at.isoformat(),
        "flags": list(v.flags),
        "reason": v.reason,
        "propensity": v.propensity,
        "uniform_propensity": v.uniform_propensity,
        "turns": v.turns,
    }


def install_bundle(store: CampaignStore, path: str | Path) -> tuple[Campaign, int, int]:
    """Load a campaign bundle (folder with campaign.yaml) into the database; idempotent.

    Returns (campaign, prompts added or changed, answers added).
    """
    from arena.campaigns.formats import load_bundle

    bundle = load_bundle(path)
    # A bundle's answers answer its prompts as they are now: stored ones to reworded prompts go.
    changed = store.save_campaign(bundle.campaign, bundle.prompts, reworded="drop")
    added = store.add_answers(bundle.answers)
    return bundle.campaign, changed, added


def export_bundle(store: CampaignStore, campaign_id: str, folder: str | Path) -> Path:
    """Write a campaign as a bundle: campaign.yaml, prompts.jsonl and answers.jsonl (answers without errors)."""
    import yaml

    from arena.campaigns.formats import write_answers, write_prompts

    campaign = store.campaign(campaign_id)
    if campaign is None:
        raise NoCampaign(f"no campaign {campaign_id!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_prompts(store.prompts(campaign_id), folder / "prompts.jsonl")
    write_answers((a for a in store.answers(campaign_id) if a.error is None), folder / "answers.jsonl")
    spec = {
        "id": campaign.id,
        "title": campaign.title,
        "description": campaign.description,
        "prompts": "prompts.jsonl",
        "answers": ["answers.jsonl"],
        "candidates": list(campaign.candidates),
        "temperatures": list(campaign.temperatures),
        "runs": campaign.runs,
        "max_new_tokens": campaign.max_new_tokens,
    }
    (folder / "campaign.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


DEMO_BUNDLE = Path(__file__).resolve().parent / "demo"
"""The demo campaign shipped with the arena (loaded in demo mode)."""


def load_campaign_bundles(settings: Settings, store: Store) -> int:
    """Load the bundles ``ARENA_CAMPAIGNS`` names (and the demo one in demo mode); returns how many.

    Runs before the sync restore, so that restored judgments find their campaign.

    Raises
    ------
    ConfigError
        A bundle cannot be read (start-up stops with the file and what to change).
    """
    paths = [p.strip() for p in settings.campaigns.split(",") if p.strip()]
    if settings.demo:
        paths.insert(0, str(DEMO_BUNDLE))
    campaigns = CampaignStore(store)
    for path in paths:
        install_bundle(campaigns, path)
    return len(paths)


def open_campaigns(arena: ArenaService) -> CampaignService | None:
    """The campaign service when the database holds a campaign with answers to judge, else None."""
    store = CampaignStore(arena.store)
    strategy: Strategy = "uniform" if arena.settings.campaign_choice == "uniform" else "top"
    service = CampaignService(arena, store, strategy=strategy)
    return service if service.campaigns() else None
