"""Which model servers are fit to play: a circuit breaker per model, fed by battles and health checks.

:class:`HealthTracker` is plain, thread-safe bookkeeping with an injected clock: ``failures`` failed
answers in a row take a model out of the pairing pool; a passing health check (or, when checks are
off, one trial battle after ``cooldown`` seconds) brings it back; a server that reports a different
model than the roster names stays out until it serves the right one.

:class:`HealthChecker` runs the checks in a daemon thread with its own event loop and its own
backend instances (async HTTP clients are bound to the loop that made them), so it never blocks
start-up or a visitor's request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from arena.backends.base import Backend, ServerInfo
from arena.errors import ArenaError
from arena.registry import ModelSpec

__all__ = ["HealthChecker", "HealthTracker", "ModelHealth"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelHealth:
    """One model's state as the status page shows it (reason is for operators' logs only)."""

    name: str
    online: bool
    reason: str = ""  # "", "failures", "health check", "wrong model"
    since: float | None = None  # clock time it went offline


@dataclass
class _State:
    failures: int = 0
    offline_since: float | None = None
    reason: str = ""


class HealthTracker:
    """Circuit breaker per model.

    Parameters
    ----------
    names:
        The models to track (all start online).
    failures:
        Consecutive failed answers that take a model offline.
    cooldown:
        Seconds after which an offline model gets one trial battle even without a passing health
        check (only for ``failures``; a wrong model stays out until a check sees the right one).
    clock:
        Monotonic seconds (injected for tests).
    """

    def __init__(
        self,
        names: Iterable[str],
        *,
        failures: int = 3,
        cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._states = {name: _State() for name in names}

    def _trip(self, name: str, state: _State, reason: str, detail: str = "") -> bool:
        """Take ``name`` offline; logs and returns True only when that changes its state or reason."""
        changed = state.offline_since is None or state.reason != reason
        if changed:
            log.warning("model %s leaves the pairing pool (%s%s)", name, reason, f": {detail}" if detail else "")
        state.offline_since = self._clock()
        state.reason = reason
        return changed

    def record(self, name: str, ok: bool) -> None:
        """Count one answer of ``name``: success resets the count, enough failures in a row trip it."""
        with self._lock:
            state = self._states.get(name)
            if state is None:
                return
            if ok:
                state.failures = 0
                if state.reason == "failures":
                    self._restore(name, state)
                return
            state.failures += 1
            if state.failures >= self.threshold:
                self._trip(name, state, "failures")

    def checked(self, name: str, healthy: bool, *, wrong_model: bool = False, detail: str = "") -> bool:
        """Apply one health-check result; True when it changed the model's state (what gets logged).

        A check that finds the model as it was logs nothing: an arena checking five models every
        30 s would otherwise write a line per model per round (640 of 650 log lines in 23 minutes).
        """
        with self._lock:
            state = self._states.get(name)
            if state is None:
                return False
            if wrong_model:
                return self._trip(name, state, "wrong model", detail)
            if not healthy:
                return self._trip(name, state, "health check", detail)
            if state.offline_since is not None:
                self._restore(name, state)
                return True
            return False

    def _restore(self, name: str, state: _State) -> None:
        if state.offline_since is not None:
            log.warning("model %s is back in the pairing pool", name)
        state.failures, state.offline_since, state.reason = 0, None, ""

    def available(self) -> frozenset[str]:
        """Models that may be paired now (offline ones whose cooldown passed get a trial)."""
        now = self._clock()
        with self._lock:
            return frozenset(
                name
                for name, s in self._states.items()
                if s.offline_since is None or (s.reason == "failures" and now - s.offline_since >= self.cooldown)
            )

    def snapshot(self) -> list[ModelHealth]:
        """Every tracked model, in roster order."""
        with self._lock:
            return [ModelHealth(n, s.offline_since is None, s.reason, s.offline_since) for n, s in self._states.items()]


def _never_busy(name: str) -> bool:
    return False


async def check_once(
    tracker: HealthTracker,
    backends: Sequence[Backend],
    *,
    timeout: float,
    busy: Callable[[str], bool] = _never_busy,
    on_info: Callable[[str, ServerInfo], None] | None = None,
) -> None:
    """Check every backend concurrently with one request each (:meth:`Backend.probe`).

    A model that is streaming an answer (``busy(name)``) is not probed at all: the answer shows it
    is up, and llama-cpp-python ends a running answer when any other request arrives. A probe that
    times out while the model started streaming meanwhile is not held against it either (a server
    that queues requests answers the probe only after the answer). ``on_info`` receives what each
    server reported (its limits), so limits learnt after start-up are used.
    """

    async def one(backend: Backend) -> None:
        spec = backend.spec
        if busy(spec.name):
            return
        healthy, wrong, detail = False, False, ""
        info: ServerInfo | None = None
        try:
            async with asyncio.timeout(timeout):
                info = await backend.probe()
            healthy = True
            wrong = bool(spec.model and info.model_id and info.model_id != spec.model)
        except TimeoutError:
            if busy(spec.name):
                log.debug("health check of %s waited behind a running answer; not counted", spec.name)
                return
            detail = f"no answer within {timeout:g} s"
        except (ArenaError, OSError) as e:
            detail = f"{type(e).__name__}: {e}"
        if detail:  # every failed check, for operators who ask for DEBUG; a state change logs a warning
            log.debug("health check of %s failed: %s", spec.name, detail)
        if healthy and info is not None and on_info is not None:
            on_info(spec.name, info)
        changed = tracker.checked(spec.name, healthy, wrong_model=wrong, detail=detail)
        if wrong and changed and info is not None:
            log.warning(
                "model %s: the server serves %s, not %r as models.yaml says; it stays out of battles until "
                "they agree (fix `model:` in models.yaml, or the server's served model name / alias)",
                spec.name,
                ", ".join(repr(i) for i in info.model_ids) or repr(info.model_id),
                spec.model,
            )

    await asyncio.gather(*(one(b) for b in backends))


class HealthChecker:
    """Runs :func:`check_once` every ``interval`` seconds in a daemon thread with its own event loop.

    ``make_backend`` builds a fresh backend for a spec; it is called inside that thread, so the
    backends' HTTP clients belong to its loop and never touch the app's.
    """

    def __init__(
        self,
        tracker: HealthTracker,
        specs: Sequence[ModelSpec],
        make_backend: Callable[[ModelSpec], Backend],
        *,
        interval: float,
        timeout: float = 10.0,
        busy: Callable[[str], bool] = _never_busy,
        on_info: Callable[[str, ServerInfo], None] | None = None,
    ) -> None:
        self.busy = busy
        self.on_info = on_info
        self.tracker = tracker
        self.specs = list(specs)
        self.make_backend = make_backend
        self.interval = interval
        self.timeout = timeout
        self.rounds = 0  # completed check rounds (tests wait on it)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> HealthChecker:
        """Start checking in the background (returns at once; the first round runs immediately)."""
        if self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="health-checker", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        backends = [self.make_backend(spec) for spec in self.specs]
        try:
            while not self._stop.is_set():
                try:
                    await check_once(self.tracker, backends, timeout=self.timeout, busy=self.busy, on_info=self.on_info)
                except Exception:  # one bad round must not end the checks for the life of the process
                    log.exception("health check round failed")
                self.rounds += 1
                await asyncio.to_thread(self._stop.wait, self.interval)
        finally:
            for backend in backends:
                await backend.aclose()
