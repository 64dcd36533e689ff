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
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import numpy as np

from arena import templates
from arena.backends import backend_class
from arena.backends.base import Backend, ServerInfo
from arena.config import Settings
from arena.domain import Answer, BattleRecord, MessageRecord, Mode, Side, VoteRecord, Winner
from arena.domain import Message as ChatMessage
from arena.errors import ContextExceeded, PromptRejected, RateLimited, StorageError, VoteRejected
from arena.health import HealthChecker, HealthTracker, ModelHealth
from arena.identity import IdentityMatcher
from arena.journal import message_json
from arena.language import detect_language
from arena.leaderboard import FitParams, LeaderboardCache, LeaderboardView
from arena.limits import Limit, check_limit, client_ip, visitor_address
from arena.messages import Message
from arena.pairing import Pairing, PairSampler, unpairable
from arena.ratings import fit_ratings
from arena.registry import ModelSpec, Registry
from arena.replays import fingerprint, matches_any
from arena.storage import Store, as_stored
from arena.streaming import SideJob, UpdateBudget, stream_pair

if TYPE_CHECKING:
    from arena.style import StyleResult

__all__ = ["CONTINUATION_NOTICE", "Allowed", "ArenaService", "BattleSession", "Reveal", "TurnView"]

log = logging.getLogger(__name__)

Status = Literal["new", "streaming", "ready", "failed", "voting", "voted"]


@dataclass
class BattleSession:
    """One visitor's current battle. Lives in the visitor's session, never sent to the browser."""

    pairing: Pairing
    client_hash: str
    mode: Mode = "anonymous"
    battle_id: str | None = None
    turn: int = 0  # number of finished or running turns
    regenerations: int = 0  # of this battle's turns, however many
    history: tuple[list[ChatMessage], list[ChatMessage]] = field(default_factory=lambda: ([], []))
    answers: tuple[Answer, Answer] | None = None
    status: Status = "new"
    winner: Winner | None = None
    finished_at: float | None = None  # monotonic time the last turn finished (for the read-time check)
    started_at: datetime | None = None  # when the battle was stored (the replay window is counted from it)
    stop: asyncio.Event | None = None  # set to abandon the turn that is streaming
    unsaved: bool = False  # failed because the database could not store a turn (not a model's fault)
    # Each turn's messages as the database holds them: the vote's journal line carries them, so the
    # journal need not read back what was just written.
    stored: dict[int, list[MessageRecord]] = field(default_factory=dict)

    @property
    def models(self) -> tuple[str, str]:
        return self.pairing.model_a, self.pairing.model_b


@dataclass(frozen=True)
class Allowed:
    """What a visitor may do now in a battle session; the page enables exactly these controls.

    Computed by :meth:`ArenaService.allowed` from the session's state and the battle limits, so a
    control is enabled only when the service would accept its action. (Starting a new round is
    always allowed, and the rate limits are checked when the action comes: they need the database.)
    """

    vote: bool = False
    send: bool = False  # type a prompt (the first or a follow-up) and send it
    regenerate: bool = False


NOTHING = Allowed()
"""While a turn streams or a vote is being saved: nothing until it ends."""


@dataclass(frozen=True)
class TurnView:
    """What the page shows while a turn streams: both conversations, notices, and what may be clicked."""

    history: tuple[list[ChatMessage], list[ChatMessage]]
    answers: tuple[Answer, Answer]
    streaming: bool
    allowed: Allowed = NOTHING
    notices: tuple[Message, ...] = ()

    @property
    def can_vote(self) -> bool:
        return self.allowed.vote


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
    flags: tuple[str, ...] = ()  # why the vote will not count: the page says it with the catalog's flag.<name>


def side_stats(model: str, answer: Answer | None) -> SideStats:
    if answer is None:
        return SideStats(model, None, None, False)
    rate = None
    if answer.generated_tokens and answer.total_time and answer.ttft is not None:
        streaming = answer.total_time - answer.ttft
        rate = answer.generated_tokens / streaming if streaming > 0 else None
    return SideStats(model, answer.ttft, rate, answer.finish_reason == "length")


_SIDES: tuple[Side, Side] = ("a", "b")
_PURGE_EVERY = 200  # side-by-side prompts stored between two purges of those past the replay window
_ABANDONED_KEPT = 10_000  # abandoned anonymous battles remembered (ids), for the replay refusal

CONTINUATION_NOTICE = Message("msg.continuation")
"""Told with the first turn of a continuation battle (pool ``base``), to the page and API clients alike."""

BROKEN_TEXT = Message("msg.broken_text")
# What the visitor reads when the database fails, by what they were doing (StorageError's own
# message is about votes).
PROMPT_NOT_SAVED = Message("msg.prompt_not_saved")
ANSWERS_NOT_SAVED = Message("msg.answers_not_saved")


# Characters that draw nothing although Unicode does not call them format or space characters.
_BLANK = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180e\u2800\u3164\uffa0")


def _visible(ch: str) -> bool:
    return ch not in _BLANK and unicodedata.category(ch) not in ("Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me")


def clean_prompt(text: str, max_chars: int) -> str:
    """Strip control characters (keeping newlines and tabs) and surrounding whitespace.

    The length is checked first, on the text as sent, so a huge text costs one ``len`` and is
    never scanned character by character.

    Raises
    ------
    PromptRejected
        When the text is longer than ``max_chars``, has broken characters (lone surrogates, which
        cannot be stored), or nothing visible is left (only spaces, control, format or other
        invisible characters such as U+FEFF or U+200B).
    """
    if len(text) > max_chars:
        raise PromptRejected(
            f"prompt of {len(text)} characters",
            message=Message("msg.prompt_chars", {"length": len(text), "limit": max_chars}),
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PromptRejected("lone surrogate in prompt", message=BROKEN_TEXT) from None
    kept = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    kept = kept.strip()
    if not any(_visible(ch) for ch in kept):
        raise PromptRejected("empty prompt")
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
                tie_policy=settings.tie_policy,
                bothbad_policy=settings.bothbad_policy or None,
                alpha=settings.alpha,
                interval=settings.interval,
                bootstrap_rounds=settings.bootstrap_rounds,
                min_votes=settings.min_votes,
                ipw=settings.ipw,
            ),
            now=now,
        )
        self.sampler = PairSampler(
            settings.pairing,
            floor=settings.pairing_floor,
            min_votes=settings.pairing_warmup_votes,
        )
        self._votes_since_refresh = 0
        self._named_since_purge = 0  # side-by-side prompts stored since the last purge of old ones
        # Anonymous battles left unvoted by a new round in this process, newest last (cannot be voted).
        self._abandoned: OrderedDict[str, None] = OrderedDict()
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
        # Answers streaming now, per model: the health checks leave a model alone while it streams.
        self._streaming: dict[str, int] = {}
        self._warn_roster()
        self._battle_limit = Limit(settings.battles_per_minute, 60.0, "msg.limit_battles")
        self._vote_limit = Limit(settings.votes_per_hour, 3600.0, "msg.limit_votes")

    def _warn_roster(self) -> None:
        """Log what the roster asks that cannot happen: models no pool can pair, settings a server ignores."""
        models = self.playable_models()
        for name in unpairable(models):
            spec = self.registry[name]
            partner = "chat model that can complete raw text" if spec.kind == "base" else "other chat model"
            log.warning(
                "model %s can never play: no %s is enabled to meet it (see docs/models.md, continuation battles)",
                name,
                partner,
            )
        for spec in models:
            ignored = backend_class(spec.backend).unsent_params(spec)
            if ignored:
                log.warning(
                    "model %s: its server (%s) does not read %s; they are not sent (set them on the server, "
                    "e.g. in an Ollama Modelfile)",
                    spec.name,
                    spec.server_kind,
                    ", ".join(ignored),
                )

    def streaming(self, name: str) -> bool:
        """Whether ``name`` is streaming an answer now (read by the health checks' thread)."""
        return self._streaming.get(name, 0) > 0

    def server_streaming(self, name: str) -> bool:
        """Whether any model served from ``name``'s URL is streaming an answer now (what the health checks read).

        A probe for one model reaches its whole server: llama-cpp-python serving several models ends
        any running answer when it arrives, and queues the probe behind it otherwise.
        """
        url = self.registry[name].url
        return any(n > 0 and self.registry[m].url == url for m, n in list(self._streaming.items()))

    def learn_server_info(self, name: str, info: ServerInfo) -> None:
        """Keep what a server reported about itself (its context) for the next turns."""
        self.server_info[name] = info

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
                busy=self.server_streaming,
                on_info=self.learn_server_info,
            ).start()
        return self.health_checker

    def model_status(self) -> list[ModelHealth]:
        """Every playable model, online or offline (the same for every visitor; names no battle)."""
        return self.health.snapshot()

    # -- sessions -----------------------------------------------------------------------------

    def visitor_key(self, peer: str | None, headers: Mapping[str, str]) -> str:
        """The visitor's identity for rate limits, session binding and replays: their IP address
        (X-Forwarded-For only behind trusted proxies), an IPv6 address's /64 network."""
        return visitor_address(client_ip(peer, headers, self.settings.trusted_proxy_hops))

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
            raise PromptRejected(f"cannot pair {models}", message=Message("msg.pick_two"))
        a, b = playable[first], playable[second]
        if a.kind == b.kind:
            pool = a.kind
        elif a.plays_continuation and b.plays_continuation:
            pool = "base"  # a base model against a chat model: a continuation battle
        else:
            raise PromptRejected("mixed kinds", message=Message("msg.cannot_meet"))
        pairing = Pairing(first, second, pool, propensity=1.0)
        return BattleSession(pairing=pairing, client_hash=client, mode="named")

    # -- battles --------------------------------------------------------------------------------

    def _max_input_tokens(self, name: str) -> int | None:
        """The prompt budget the server told: its context less the answer's, and at most TGI's max_input_tokens.

        TGI refuses a prompt over either limit (``--max-input-tokens``, and ``--max-total-tokens``
        for prompt plus ``max_new_tokens``); Shisa's card sets 3696 and 4096, so with a 1024-token
        answer the total is the tighter one.
        """
        info = self.server_info.get(name)
        if info is None:
            return None
        limits: list[int] = []
        if info.max_input_tokens:
            limits.append(info.max_input_tokens)
        if info.max_total_tokens:
            cap = self.settings.max_new_tokens or None
            wanted = self.registry[name].params.max_new_tokens
            answer = min(x for x in (wanted, cap) if x) if (wanted or cap) else 0
            limits.append(max(1, info.max_total_tokens - answer))
        return min(limits) if limits else None

    def _jobs(self, session: BattleSession) -> tuple[tuple[SideJob, SideJob], tuple[Message, ...]]:
        jobs: list[SideJob] = []
        notices: list[Message] = []
        cap = self.settings.max_new_tokens or None
        dropped = False
        for name, history in zip(session.models, session.history, strict=True):
            spec = self.registry[name]
            prepared = templates.prepare(
                spec,
                history,
                max_input_tokens=self._max_input_tokens(name),
                max_new_tokens_cap=cap,
                continuation=session.pairing.pool == "base",
            )
            dropped = dropped or prepared.dropped_turns > 0
            jobs.append(SideJob(self.backends[name], prepared.request))
        if session.pairing.pool == "base" and session.turn == 0:
            notices.insert(0, CONTINUATION_NOTICE)
        if dropped:
            # Side-neutral before the vote: which side, or how many turns, would tell whose context is shorter.
            notices.append(Message("msg.context_dropped"))
        return (jobs[0], jobs[1]), tuple(notices)

    def allowed(self, session: BattleSession | None) -> Allowed:
        """What the visitor may do now in ``session`` (``None``: no battle yet, so only send).

        The same conditions as the refusals of :meth:`send`, :meth:`regenerate` and :meth:`vote`
        (rate limits aside), so the page never offers what the service would refuse.
        """
        if session is None:
            return Allowed(send=True)
        status, turn = session.status, session.turn
        return Allowed(
            vote=status == "ready" and turn > 0 and session.battle_id is not None,
            send=status in ("new", "ready") and turn < self.settings.max_turns,
            regenerate=status in ("ready", "failed")
            and turn > 0
            and session.battle_id is not None
            and session.regenerations < self.settings.max_regenerations,
        )

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
            raise PromptRejected("busy", message=Message("msg.wait"))
        if session.status == "voted":
            raise PromptRejected("voted", message=Message("msg.round_over"))
        if session.status == "failed":
            if session.unsaved:
                raise PromptRejected("unsaved", message=ANSWERS_NOT_SAVED)
            raise PromptRejected("failed", message=Message("msg.round_failed"))
        text = clean_prompt(prompt, self.settings.max_prompt_chars)
        if session.turn >= self.settings.max_turns:
            raise PromptRejected("turn limit", message=Message("msg.turn_limit", {"n": self.settings.max_turns}))
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
            if session.mode == "named":
                await self._note_named_prompt(session, text)
            storing = await self._start_battle(session, text) if session.battle_id is None else None
        except StorageError as e:
            undo()
            raise StorageError(str(e), message=PROMPT_NOT_SAVED) from e
        except BaseException:
            undo()
            raise
        session.turn += 1
        try:
            async for view in self._stream_turn(session, jobs, notices, replace=False, storing=storing):
                yield view
        except StorageError as e:
            if session.battle_id is None:  # the battle itself could not be stored: as if never sent
                session.turn -= 1
                undo()
                raise StorageError(str(e), message=PROMPT_NOT_SAVED) from e
            raise

    def abandon(self, session: BattleSession | None) -> None:
        """The visitor moved on (new round): stop both upstream streams of ``session`` now.

        Needed for API clients: the page cancels a running event itself, a client calling
        ``/new_round`` does not. An unvoted anonymous battle left this way can no longer be voted, so
        it no longer holds back a side-by-side replay of its prompt.
        """
        if session is None:
            return
        if session.stop is not None:
            session.stop.set()
        if session.mode == "anonymous" and session.battle_id is not None and session.status != "voted":
            self._abandoned[session.battle_id] = None
            while len(self._abandoned) > _ABANDONED_KEPT:
                self._abandoned.popitem(last=False)

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
                raise RateLimited(f"client {session.client_hash[:8]} started {used} battles", message=refusal)
        battle = BattleRecord(
            id=uuid.uuid4().hex,
            model_a=session.pairing.model_a,
            model_b=session.pairing.model_b,
            mode=session.mode,
            pool=session.pairing.pool,
            created_at=now,
            client_hash=session.client_hash,
            language=detect_language(text),
            propensity=session.pairing.propensity,
            uniform_propensity=session.pairing.uniform_propensity,
        )

        async def store() -> None:
            await asyncio.to_thread(self.store.create_battle, battle)
            session.battle_id, session.started_at = battle.id, battle.created_at
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

    async def _note_named_prompt(self, session: BattleSession, text: str) -> None:
        """Before a side-by-side turn is sent: refuse a replay of an open anonymous battle, then keep its prompt.

        The fingerprint is committed before any answer is shown, so the anonymous battle's vote is
        flagged ``replayed`` on any replica, even if this turn is abandoned half-way.

        Raises
        ------
        PromptRejected
            The visitor has an anonymous battle with this prompt (or nearly) that is not voted yet.
        StorageError
            The fingerprint cannot be stored (then nothing is sent).
        """
        window = self.settings.replay_window
        if window <= 0:
            return
        now = self._now()
        # Only a battle whose page session may still be alive can still be voted.
        open_for = min(window, self.settings.session_ttl) if self.settings.session_ttl > 0 else window
        pending = await asyncio.to_thread(
            self.store.unvoted_anonymous_prompts, session.client_hash, now - timedelta(seconds=open_for)
        )
        votable = [fingerprint(prompt) for battle_id, prompt in pending if battle_id not in self._abandoned]
        replayed = bool(votable) and await asyncio.to_thread(matches_any, [text], votable)
        if replayed:
            raise PromptRejected(
                f"client {session.client_hash[:8]} replayed an open anonymous prompt",
                message=Message("msg.replay_open"),
            )
        await asyncio.to_thread(self.store.add_named_prompt, session.client_hash, fingerprint(text), now)
        self._named_since_purge += 1
        if self._named_since_purge >= _PURGE_EVERY:
            self._named_since_purge = 0
            await asyncio.to_thread(self.store.purge_named_prompts, now - timedelta(seconds=window))

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
            raise PromptRejected("nothing to regenerate", message=Message("msg.nothing_to_regenerate"))
        if session.regenerations >= self.settings.max_regenerations:
            raise PromptRejected(
                "regeneration limit", message=Message("msg.regeneration_limit", {"n": self.settings.max_regenerations})
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
        notices: tuple[Message, ...],
        *,
        replace: bool,
        storing: asyncio.Task[None] | None = None,
    ) -> AsyncIterator[TurnView]:
        """Stream one turn; ``storing`` (the battle's row being written) is awaited before anything is shown."""
        session.status = "streaming"
        session.stop = asyncio.Event()
        answers = (Answer(), Answer())
        for name in session.models:
            self._streaming[name] = self._streaming.get(name, 0) + 1
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
                        yield TurnView(session.history, answers, streaming=True, notices=notices)
        except BaseException:
            # Cancelled (visitor left): the turn never finished, so it cannot be voted.
            session.status = "failed"
            if storing is not None and not storing.done():  # cancelled before anything was shown
                self._keep(storing)
            raise
        finally:
            for name in session.models:
                self._streaming[name] -= 1
        if storing is not None:  # abandoned before anything was shown: the write finishes on its own
            self._keep(storing)
        if session.stop.is_set():  # abandoned for a new round: nothing to store or show
            session.status = "failed"
            return
        for name, answer in zip(session.models, answers, strict=True):
            if answer.error_kind != ContextExceeded.__name__:  # the prompt's fault, not the model's
                self.health.record(name, answer.ok)
            if answer.ok and answer.generated_tokens is None and answer.text:
                # The server sent no usage (llama-cpp-python never does): the arena's own count.
                answer.generated_tokens = templates.count_tokens(self.registry[name], answer.text)
        for history, answer in zip(session.history, answers, strict=True):
            history.append({"role": "assistant", "content": answer.text})
        ok = all(a.ok for a in answers)
        empty = ok and not any(a.text.strip() for a in answers)
        session.status = "ready" if ok and not empty else "failed"
        session.finished_at = self._clock()
        final_notices = list(notices)
        if empty:
            final_notices.append(Message("msg.both_empty"))
        # Side-neutral before the vote (a model's own length limit is a property of the model); the
        # reveal says which side was cut off.
        cut = sum(answer.finish_reason == "length" for answer in answers)
        if cut == 1:
            final_notices.append(Message("msg.cut_off"))
        elif cut == 2:
            final_notices.append(Message("msg.cut_off_both"))
        rows = self._turn_rows(session, answers)
        battle_id = session.battle_id
        assert battle_id is not None  # send() creates the battle before its first turn streams
        try:
            if replace:
                await asyncio.to_thread(self.store.replace_turn, battle_id, session.turn, rows)
            else:
                await asyncio.to_thread(self.store.add_messages, rows)
        except StorageError as e:
            session.status, session.unsaved = "failed", True
            raise StorageError(str(e), message=ANSWERS_NOT_SAVED) from e
        session.stored[session.turn] = [as_stored(row) for row in rows]
        allowed = self.allowed(session)
        if allowed.vote and not allowed.send:  # say why the prompt is locked
            final_notices.append(Message("msg.turn_limit", {"n": self.settings.max_turns}))
        if replace and allowed.vote and not allowed.regenerate:
            final_notices.append(Message("msg.regeneration_limit", {"n": self.settings.max_regenerations}))
        yield TurnView(session.history, answers, streaming=False, allowed=allowed, notices=tuple(final_notices))

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
            raise VoteRejected("no battle", message=Message("msg.nothing_to_vote"))
        if session.status == "voted":
            raise VoteRejected("already voted", message=Message("msg.already_voted"))
        if session.status == "voting":
            raise VoteRejected("vote in flight", message=Message("msg.vote_in_flight"))
        if session.status == "streaming":
            raise VoteRejected("streaming", message=Message("msg.wait"))
        if session.status == "failed" and session.unsaved:
            raise VoteRejected("turn not stored", message=ANSWERS_NOT_SAVED)
        if session.status != "ready":
            raise VoteRejected("battle failed", message=Message("msg.vote_failed_round"))
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
                    "reason": record.reason,  # trimmed as stored: the journal keeps what the database keeps
                    "flags": list(record.flags),
                    "tstamp": record.created_at.isoformat(),
                    "messages": [message_json(m) for turn in sorted(session.stored) for m in session.stored[turn]],
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
                raise RateLimited(f"client {session.client_hash[:8]} cast {used} votes", message=refusal)
        flags: list[str] = []
        for name, history in zip(session.models, session.history, strict=True):
            said = "\n".join(m["content"] for m in history if m["role"] == "assistant")
            asked = "\n".join(m["content"] for m in history if m["role"] == "user")
            # In a worker thread: up to max_turns answers, scanned sentence by sentence around each name.
            if await asyncio.to_thread(self.identity.names_itself, name, said, asked):
                flags.append("identity_leak")
                break
        if session.finished_at is not None and self._clock() - session.finished_at < self.settings.min_read_seconds:
            flags.append("too_fast")
        if session.mode == "anonymous" and self.settings.replay_window > 0:
            since = (session.started_at or now) - timedelta(seconds=self.settings.replay_window)
            named: list[str] = await asyncio.to_thread(self.store.named_prompts_since, session.client_hash, since)
            prompts = [m["content"] for m in session.history[0] if m["role"] == "user"]
            replayed = await asyncio.to_thread(matches_any, prompts, named) if named else False
            if replayed:
                flags.append("replayed")
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
            result = fit_ratings(counts, tie_policy=self.settings.tie_policy, interval="sandwich", bootstrap_rounds=0)
            self.sampler.update(result if result.rows else None, counts)
        finally:
            self._refreshing.release()

    async def leaderboard(self, slice_name: str = "overall") -> LeaderboardView:
        """The ratings of one leaderboard slice (``overall``, ``lang:pl``, ``pool:chat``, ``named``).

        Fitted in a worker thread and cached until the slice's votes change, so page views cost one
        COUNT query (see :class:`arena.leaderboard.LeaderboardCache`).

        Raises
        ------
        UnknownSlice
            For an unknown slice name, or a language or category without counted votes.
        StorageError
            When the database cannot be read.
        """
        return await asyncio.to_thread(self._leaderboard.view, self.store, slice_name)

    async def leaderboard_style(self, slice_name: str = "overall") -> StyleResult:
        """Style-controlled ratings of one slice (answer length and markdown as covariates), cached
        until the slice's votes change (see :meth:`arena.leaderboard.LeaderboardCache.style`).

        Raises
        ------
        UnknownSlice
            For an unknown slice name, or a language or category without counted votes.
        StorageError
            When the database cannot be read.
        """
        return await asyncio.to_thread(self._leaderboard.style, self.store, slice_name)
