"""ArenaService: the one object holding every dependency, and the only API the UI calls."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import threading
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import numpy as np

from arena import templates
from arena.backends.base import Backend, ServerInfo
from arena.config import Settings
from arena.domain import Answer, BattleRecord, Message, MessageRecord, Mode, Side, VoteRecord, Winner
from arena.errors import ArenaError, PromptRejected, RateLimited, StorageError, VoteRejected
from arena.health import HealthChecker, HealthTracker, ModelHealth
from arena.identity import IdentityMatcher
from arena.language import detect_language
from arena.leaderboard import FitParams, LeaderboardCache, LeaderboardView
from arena.limits import Limit, check_limit, client_ip
from arena.pairing import Pairing, PairSampler
from arena.ratings import fit_ratings
from arena.registry import ModelSpec, Registry
from arena.storage import Store
from arena.streaming import SideJob, UpdateBudget, stream_pair

if TYPE_CHECKING:
    from arena.style import StyleResult

__all__ = ["FLAG_NOTES", "ArenaService", "BattleSession", "Reveal", "TurnView"]

log = logging.getLogger(__name__)

Status = Literal["new", "streaming", "ready", "failed", "voting", "voted"]

FLAG_NOTES: dict[str, str] = {
    "identity_leak": "One of the answers named its own model, so this vote is saved but will not count in the ratings.",
    "too_fast": "This vote came very quickly after the answers finished, so it is saved but will not count "
    "in the ratings. Take your time to read both answers next round.",
}
"""What a visitor is told after voting, for each flag that keeps a vote out of the ratings."""


@dataclass
class BattleSession:
    """One visitor's current battle. Lives in the visitor's session, never sent to the browser."""

    pairing: Pairing
    client_hash: str
    mode: Mode = "anonymous"
    battle_id: str | None = None
    turn: int = 0  # number of finished or running turns
    regenerations: int = 0  # of this battle's turns, however many
    history: tuple[list[Message], list[Message]] = field(default_factory=lambda: ([], []))
    answers: tuple[Answer, Answer] | None = None
    status: Status = "new"
    winner: Winner | None = None
    finished_at: float | None = None  # monotonic time the last turn finished (for the read-time check)
    stop: asyncio.Event | None = None  # set to abandon the turn that is streaming

    @property
    def models(self) -> tuple[str, str]:
        return self.pairing.model_a, self.pairing.model_b


@dataclass(frozen=True)
class TurnView:
    """What the page shows while a turn streams: both conversations, and what may be clicked."""

    history: tuple[list[Message], list[Message]]
    answers: tuple[Answer, Answer]
    streaming: bool
    can_vote: bool
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class SideStats:
    """What the page shows about one side after the vote."""

    model: str
    ttft: float | None  # seconds to the first token of the last turn
    tokens_per_second: float | None
    cut_off: bool  # the last answer stopped at its length limit


@dataclass(frozen=True)
class Reveal:
    model_a: str
    model_b: str
    winner: Winner
    sides: tuple[SideStats, SideStats] | None = None
    flags: tuple[str, ...] = ()

    @property
    def notes(self) -> tuple[str, ...]:
        """Plain-language sentences for the flags (why this vote will not count), for the page."""
        return tuple(FLAG_NOTES[f] for f in self.flags if f in FLAG_NOTES)


def side_stats(model: str, answer: Answer | None) -> SideStats:
    if answer is None:
        return SideStats(model, None, None, False)
    rate = None
    if answer.generated_tokens and answer.total_time and answer.ttft is not None:
        streaming = answer.total_time - answer.ttft
        rate = answer.generated_tokens / streaming if streaming > 0 else None
    return SideStats(model, answer.ttft, rate, answer.finish_reason == "length")


_SIDES: tuple[Side, Side] = ("a", "b")


def clean_prompt(text: str, max_chars: int) -> str:
    """Strip control characters (keeping newlines and tabs) and surrounding whitespace.

    Raises
    ------
    PromptRejected
        When nothing is left, or the prompt is longer than ``max_chars``.
    """
    kept = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    kept = kept.strip()
    if not kept:
        raise PromptRejected("empty prompt")
    if len(kept) > max_chars:
        raise PromptRejected(
            f"prompt of {len(kept)} characters",
            user_message=f"Your message is {len(kept)} characters long; the limit is {max_chars}. Please shorten it.",
        )
    return kept


class ArenaService:
    """Battles, votes and ratings, independent of any user interface.

    Parameters
    ----------
    settings, registry, store:
        Configuration, the roster and the database.
    backends:
        One :class:`Backend` per model name.
    rng:
        Randomness for pairing (injected for reproducible tests).
    server_info:
        What each model server reported at start-up (``/info``), if anything.
    """

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        store: Store,
        backends: Mapping[str, Backend],
        *,
        rng: np.random.Generator | None = None,
        server_info: Mapping[str, ServerInfo | None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
        journal: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.backends = dict(backends)
        self.rng = rng or np.random.default_rng()
        self.server_info = dict(server_info or {})
        self._now = now
        self._clock = clock
        self.journal = journal  # called with each stored battle and vote (the append-only log)
        self._leaderboard = LeaderboardCache(
            FitParams(
                tie_policy=settings.tie_policy,  # type: ignore[arg-type]
                bothbad_policy=settings.bothbad_policy or None,  # type: ignore[arg-type]
                alpha=settings.alpha,
                interval=settings.interval,  # type: ignore[arg-type]
                bootstrap_rounds=settings.bootstrap_rounds,
                min_votes=settings.min_votes,
                ipw=settings.ipw,
            ),
            now=now,
        )
        self.sampler = PairSampler(
            settings.pairing,  # type: ignore[arg-type]
            floor=settings.pairing_floor,
            min_votes=settings.pairing_warmup_votes,
        )
        self._votes_since_refresh = 0
        # One rate of screen updates shared by every battle streaming in this process.
        self._budget = UpdateBudget(settings.update_rate) if settings.update_rate > 0 else None
        self._refreshing = threading.Lock()
        # Battle writes left running by turns that ended before showing anything (kept until done).
        self._pending: set[asyncio.Task[None]] = set()
        self._salt = settings.client_salt or secrets.token_hex(16)
        self.health = HealthTracker(
            [m.name for m in self.playable_models()],
            failures=settings.breaker_failures,
            cooldown=settings.breaker_cooldown,
            clock=clock,
        )
        for spec in self.playable_models():
            info = self.server_info.get(spec.name)
            if spec.model and info and info.model_id and info.model_id != spec.model:
                self.health.checked(spec.name, False, wrong_model=True)
        self.identity = IdentityMatcher(registry.enabled)
        self.health_checker: HealthChecker | None = None
        self._battle_limit = Limit(settings.battles_per_minute, 60.0, "new battles", "minute")
        self._vote_limit = Limit(settings.votes_per_hour, 3600.0, "votes", "hour")

    def start_health_checks(self, make_backend: Callable[[ModelSpec], Backend]) -> HealthChecker:
        """Start the background health checks (a daemon thread; returns at once).

        ``make_backend`` builds a fresh backend for a spec inside the checker's own event loop.
        """
        if self.health_checker is None:
            self.health_checker = HealthChecker(
                self.health,
                self.playable_models(),
                make_backend,
                interval=self.settings.health_interval,
                timeout=self.settings.connect_timeout + self.settings.read_timeout,
            ).start()
        return self.health_checker

    def model_status(self) -> list[ModelHealth]:
        """Every playable model, online or offline (the same for every visitor; names no battle)."""
        return self.health.snapshot()

    # -- sessions -----------------------------------------------------------------------------

    def visitor_key(self, peer: str | None, headers: Mapping[str, str]) -> str:
        """The visitor's identity for rate limits: their IP address (X-Forwarded-For only behind trusted proxies)."""
        return client_ip(peer, headers, self.settings.trusted_proxy_hops)

    def client_hash(self, client_key: str) -> str:
        """A salted hash of the visitor's identity; raw addresses are never stored."""
        return hashlib.sha256(f"{self._salt}:{client_key}".encode()).hexdigest()[:32]

    def playable_models(self) -> list[ModelSpec]:
        """Enabled models with a backend (the ones a battle may use)."""
        return [m for m in self.registry.enabled if m.name in self.backends]

    def new_session(self, client_key: str, *, models: tuple[str, str] | None = None) -> BattleSession:
        """Start a visitor's next battle; nothing is stored until the first prompt.

        Without ``models`` the pair is drawn anonymously; with two names the battle is a named
        (side-by-side) one, stored with mode ``named``.

        Raises
        ------
        NotEnoughModels
            Fewer than two models can play.
        PromptRejected
            The two named models are the same, unknown, disabled, or of different kinds.
        """
        client = self.client_hash(client_key)
        if models is None:
            pairing = self.sampler.draw(self.playable_models(), self.rng, available=self.health.available())
            return BattleSession(pairing=pairing, client_hash=client)
        playable = {m.name: m for m in self.playable_models()}
        first, second = models
        if first == second or first not in playable or second not in playable:
            raise PromptRejected(
                f"cannot pair {models}", user_message="Please pick two different models from the list."
            )
        if playable[first].kind != playable[second].kind:
            raise PromptRejected(
                "mixed kinds", user_message="A base model can only be compared with another base model."
            )
        pairing = Pairing(first, second, playable[first].kind, propensity=1.0)
        return BattleSession(pairing=pairing, client_hash=client, mode="named")

    # -- battles --------------------------------------------------------------------------------

    def _max_input_tokens(self, name: str) -> int | None:
        info = self.server_info.get(name)
        return info.max_input_tokens if info else None

    def _jobs(self, session: BattleSession) -> tuple[tuple[SideJob, SideJob], tuple[str, ...]]:
        jobs: list[SideJob] = []
        notices: list[str] = []
        cap = self.settings.max_new_tokens or None
        for side, name, history in zip(("A", "B"), session.models, session.history, strict=True):
            spec = self.registry[name]
            prepared = templates.prepare(
                spec, history, max_input_tokens=self._max_input_tokens(name), max_new_tokens_cap=cap
            )
            if prepared.dropped_turns:
                notices.append(
                    f"The conversation is too long for Model {side}: its oldest "
                    f"{prepared.dropped_turns} turn(s) were left out of what it sees."
                )
            jobs.append(SideJob(self.backends[name], prepared.request))
        return (jobs[0], jobs[1]), tuple(notices)

    async def send(self, session: BattleSession, prompt: str) -> AsyncIterator[TurnView]:
        """Send a prompt (first or follow-up) to both models and stream their answers.

        Raises
        ------
        PromptRejected, TemplateError
            Before anything is sent, when the prompt is empty, too long or cannot be rendered.
        VoteRejected
            When the battle is already voted, failed, or still streaming.
        StorageError
            When the battle cannot be recorded.
        """
        if session.status in ("streaming", "voting"):
            raise PromptRejected("busy", user_message="Please wait until both answers have finished.")
        if session.status == "voted":
            raise PromptRejected("voted", user_message="This round is over. Press “New round” to start another.")
        if session.status == "failed":
            raise PromptRejected("failed", user_message="A model failed in this round. Press “New round” to continue.")
        text = clean_prompt(prompt, self.settings.max_prompt_chars)
        if session.turn >= self.settings.max_turns:
            n = self.settings.max_turns
            raise PromptRejected(
                "turn limit",
                user_message=f"This battle has reached its limit of {n} turns. Vote, or start a new round.",
            )
        # Claimed before the first await, so a second request on this session (double click, a raw
        # API call) is refused above instead of running alongside.
        previous, session.status = session.status, "streaming"
        for history in session.history:
            history.append({"role": "user", "content": text})

        def undo() -> None:
            for history in session.history:
                history.pop()
            session.status = previous

        try:
            jobs, notices = self._jobs(session)
            storing = await self._start_battle(session, text) if session.battle_id is None else None
        except BaseException:
            undo()
            raise
        session.turn += 1
        try:
            async for view in self._stream_turn(session, jobs, notices, replace=False, storing=storing):
                yield view
        except StorageError:
            if session.battle_id is None:  # the battle itself could not be stored: as if never sent
                session.turn -= 1
                undo()
            raise

    def abandon(self, session: BattleSession | None) -> None:
        """The visitor moved on (new round): stop both upstream streams of ``session`` now.

        Needed for API clients: the page cancels a running event itself, a client calling
        ``/new_round`` does not.
        """
        if session is not None and session.stop is not None:
            session.stop.set()

    async def _start_battle(self, session: BattleSession, text: str) -> asyncio.Task[None]:
        """Check the visitor's battle rate, then start storing the battle; returns the storing task.

        The rate is checked before anything is sent to a model. The battle's row is written while
        both models are asked (:meth:`_stream_turn` awaits the task before showing anything), so the
        write is not in the visitor's wait for the first token: under load it was tens of ms there.
        The task sets ``session.battle_id`` once the row is stored.
        """
        now = self._now()
        if self._battle_limit.count:
            used = await asyncio.to_thread(
                self.store.battles_since, session.client_hash, now - timedelta(seconds=self._battle_limit.window)
            )
            refusal = check_limit(self._battle_limit, used)
            if refusal:
                raise RateLimited(f"client {session.client_hash[:8]} started {used} battles", user_message=refusal)
        battle = BattleRecord(
            id=uuid.uuid4().hex,
            model_a=session.pairing.model_a,
            model_b=session.pairing.model_b,
            mode=session.mode,
            pool=session.pairing.pool,  # type: ignore[arg-type]
            created_at=now,
            client_hash=session.client_hash,
            language=detect_language(text),
            propensity=session.pairing.propensity,
            uniform_propensity=session.pairing.uniform_propensity,
        )

        async def store() -> None:
            await asyncio.to_thread(self.store.create_battle, battle)
            session.battle_id = battle.id
            if self.journal is not None:
                self.journal(
                    {
                        "event": "battle",
                        "battle_id": battle.id,
                        "model_a": battle.model_a,
                        "model_b": battle.model_b,
                        "mode": battle.mode,
                        "pool": battle.pool,
                        "judge": battle.client_hash,
                        "language": battle.language,
                        "propensity": battle.propensity,
                        "uniform_propensity": battle.uniform_propensity,
                        "tstamp": battle.created_at.isoformat(),
                    }
                )

        return asyncio.create_task(store())

    def _keep(self, storing: asyncio.Task[None]) -> None:
        """Hold a battle's write that no turn awaits any more until it ends, and log if it failed."""
        self._pending.add(storing)
        storing.add_done_callback(self._stored)

    def _stored(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a battle abandoned before its first token was not stored: %s", task.exception())

    async def regenerate(self, session: BattleSession) -> AsyncIterator[TurnView]:
        """Re-run the last turn on both sides (only before the vote)."""
        if session.status not in ("ready", "failed") or session.turn == 0 or session.battle_id is None:
            raise PromptRejected("nothing to regenerate", user_message="There is no answer to regenerate yet.")
        if session.regenerations >= self.settings.max_regenerations:
            n = self.settings.max_regenerations
            raise PromptRejected(
                "regeneration limit",
                user_message=(
                    f"This battle's answers were regenerated as often as allowed ({n}). Vote, or start a new round."
                ),
            )
        session.regenerations += 1
        for history in session.history:
            if history and history[-1]["role"] == "assistant":
                history.pop()
        jobs, notices = self._jobs(session)
        async for view in self._stream_turn(session, jobs, notices, replace=True):
            yield view

    async def _stream_turn(
        self,
        session: BattleSession,
        jobs: tuple[SideJob, SideJob],
        notices: tuple[str, ...],
        *,
        replace: bool,
        storing: asyncio.Task[None] | None = None,
    ) -> AsyncIterator[TurnView]:
        """Stream one turn; ``storing`` (the battle's row being written) is awaited before anything is shown."""
        session.status = "streaming"
        session.stop = asyncio.Event()
        answers = (Answer(), Answer())
        try:
            views = stream_pair(
                jobs,
                interval=self.settings.stream_interval,
                stop=session.stop,
                budget=self._budget,
                read_pace=self.settings.read_pace,
            )
            async with contextlib.aclosing(views):
                async for answers in views:
                    if storing is not None:
                        # Long done by the first token. If it failed (StorageError), closing the
                        # stream cancels both requests and the visitor is told nothing was kept.
                        # Shielded: a visitor leaving now must not cut the write off from its journal line.
                        await asyncio.shield(storing)
                        storing = None
                    session.answers = answers
                    if not all(a.done for a in answers):
                        yield TurnView(session.history, answers, streaming=True, can_vote=False, notices=notices)
        except BaseException:
            # Cancelled (visitor left): the turn never finished, so it cannot be voted.
            session.status = "failed"
            if storing is not None and not storing.done():  # cancelled before anything was shown
                self._keep(storing)
            raise
        if storing is not None:  # abandoned before anything was shown: the write finishes on its own
            self._keep(storing)
        if session.stop.is_set():  # abandoned for a new round: nothing to store or show
            session.status = "failed"
            return
        for name, answer in zip(session.models, answers, strict=True):
            self.health.record(name, answer.ok)
        for history, answer in zip(session.history, answers, strict=True):
            history.append({"role": "assistant", "content": answer.text})
        ok = all(a.ok for a in answers)
        session.status = "ready" if ok else "failed"
        session.finished_at = self._clock()
        final_notices = list(notices)
        for side, answer in zip(("A", "B"), answers, strict=True):
            if answer.finish_reason == "length":
                final_notices.append(f"Model {side}'s answer was cut off at its length limit.")
        rows = self._turn_rows(session, answers)
        battle_id = session.battle_id
        assert battle_id is not None  # send() creates the battle before its first turn streams
        try:
            if replace:
                await asyncio.to_thread(self.store.replace_turn, battle_id, session.turn, rows)
            else:
                await asyncio.to_thread(self.store.add_messages, rows)
        except StorageError:
            session.status = "failed"
            raise
        yield TurnView(session.history, answers, streaming=False, can_vote=ok, notices=tuple(final_notices))

    def _turn_rows(self, session: BattleSession, answers: tuple[Answer, Answer]) -> list[MessageRecord]:
        assert session.battle_id is not None
        rows: list[MessageRecord] = []
        for side, history, answer in zip(_SIDES, session.history, answers, strict=True):
            rows.append(MessageRecord(session.battle_id, side, session.turn, "user", history[-2]["content"]))
            rows.append(
                MessageRecord(
                    session.battle_id,
                    side,
                    session.turn,
                    "assistant",
                    answer.text,
                    finish_reason=answer.finish_reason,
                    generated_tokens=answer.generated_tokens,
                    ttft_ms=None if answer.ttft is None else round(answer.ttft * 1000),
                    total_ms=None if answer.total_time is None else round(answer.total_time * 1000),
                    error=answer.error_kind,
                )
            )
        return rows

    # -- votes ----------------------------------------------------------------------------------

    async def vote(self, session: BattleSession | None, winner: Winner, *, reason: str | None = None) -> Reveal:
        """Record the visitor's vote; committed to the database before this returns.

        Raises
        ------
        VoteRejected
            No battle, answers unfinished or failed, or already voted.
        StorageError
            The database is unavailable; nothing was written.
        """
        if session is None or session.battle_id is None:
            raise VoteRejected("no battle", user_message="There is nothing to vote on yet. Send a prompt first.")
        if session.status == "voted":
            raise VoteRejected("already voted", user_message="You have already voted in this round.")
        if session.status == "voting":
            raise VoteRejected("vote in flight", user_message="Your vote is being saved.")
        if session.status == "streaming":
            raise VoteRejected("streaming", user_message="Please wait until both answers have finished.")
        if session.status != "ready":
            raise VoteRejected(
                "battle failed", user_message="This round cannot be voted because a model failed. Press “New round”."
            )
        # Claimed before the first await: a second click, a second request or a raw API call on this
        # session is refused above; across processes the database's UNIQUE(battle_id) decides.
        session.status = "voting"
        try:
            record = await self._vote_record(session, winner, reason)
            await asyncio.to_thread(self.store.record_vote, record)
        except VoteRejected:
            session.status = "voted"  # the database already holds this battle's vote
            raise
        except BaseException:
            session.status = "ready"  # nothing was written: the visitor may try again
            raise
        session.status, session.winner = "voted", winner
        if self.journal is not None:
            self.journal(
                {
                    "event": "vote",
                    "battle_id": record.battle_id,
                    "winner": winner,
                    "reason": reason,
                    "flags": list(record.flags),
                    "tstamp": record.created_at.isoformat(),
                }
            )
        if self.sampler.strategy == "active":
            self._votes_since_refresh += 1
            if self._votes_since_refresh >= self.settings.pairing_refresh_votes:
                await asyncio.to_thread(self.refresh_pairing)
        answers = session.answers or (None, None)
        sides = (side_stats(session.pairing.model_a, answers[0]), side_stats(session.pairing.model_b, answers[1]))
        return Reveal(session.pairing.model_a, session.pairing.model_b, winner, sides, record.flags)

    async def _vote_record(self, session: BattleSession, winner: Winner, reason: str | None) -> VoteRecord:
        """The vote to store, with its flags; refuses it when the visitor is over the vote limit."""
        assert session.battle_id is not None
        now = self._now()
        if self._vote_limit.count:
            used = await asyncio.to_thread(
                self.store.votes_since, session.client_hash, now - timedelta(seconds=self._vote_limit.window)
            )
            refusal = check_limit(self._vote_limit, used)
            if refusal:
                raise RateLimited(f"client {session.client_hash[:8]} cast {used} votes", user_message=refusal)
        flags: list[str] = []
        for name, history in zip(session.models, session.history, strict=True):
            said = "\n".join(m["content"] for m in history if m["role"] == "assistant")
            if self.identity.names_itself(name, said):
                flags.append("identity_leak")
                break
        if session.finished_at is not None and self._clock() - session.finished_at < self.settings.min_read_seconds:
            flags.append("too_fast")
        reason = (reason or "").strip()[: self.settings.max_reason_chars] or None
        return VoteRecord(battle_id=session.battle_id, winner=winner, created_at=now, flags=tuple(flags), reason=reason)

    # -- ratings ----------------------------------------------------------------------------------

    def refresh_pairing(self) -> None:
        """Refit (sandwich intervals only: milliseconds) and hand the result to the active sampler.

        Runs at start-up and every ``pairing_refresh_votes`` votes, never per request; a refresh
        already running elsewhere makes this one a no-op. Blocking: call it from a worker thread.
        """
        if self.sampler.strategy != "active" or not self._refreshing.acquire(blocking=False):
            return
        try:
            self._votes_since_refresh = 0
            counts = self.store.pair_counts()
            result = fit_ratings(counts, tie_policy=self.settings.tie_policy, interval="sandwich", bootstrap_rounds=0)  # type: ignore[arg-type]
            self.sampler.update(result if result.rows else None, counts)
        finally:
            self._refreshing.release()

    async def leaderboard(self, slice_name: str = "overall") -> LeaderboardView:
        """The ratings of one leaderboard slice (``overall``, ``lang:pl``, ``pool:chat``, ``named``).

        Fitted in a worker thread and cached until the slice's votes change, so page views cost one
        COUNT query (see :class:`arena.leaderboard.LeaderboardCache`).

        Raises
        ------
        ValueError
            For an unknown slice name.
        StorageError
            When the database cannot be read.
        """
        return await asyncio.to_thread(self._leaderboard.view, self.store, slice_name)

    async def leaderboard_style(self, slice_name: str = "overall") -> StyleResult:
        """Style-controlled ratings of one slice (answer length and markdown as covariates), cached
        until the slice's votes change (see :meth:`arena.leaderboard.LeaderboardCache.style`).

        Raises
        ------
        ValueError
            For an unknown slice name.
        StorageError
            When the database cannot be read.
        """
        return await asyncio.to_thread(self._leaderboard.style, self.store, slice_name)


def user_text(error: BaseException) -> str:
    """The plain-language text a visitor sees for ``error`` (never a trace, URL or model name)."""
    if isinstance(error, ArenaError):
        return error.user_message
    return ArenaError.user_message
