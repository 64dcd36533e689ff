"""The arena as one object: roster, database, sync, model backends, service, health checks and page.

``Arena(settings, environ)`` starts nothing; :meth:`Arena.start` brings every part up in order and
:meth:`Arena.close` stops them in the reverse order (it is also a context manager). app.py, the
command line's root, builds one and launches its page; the tests build their services through
:meth:`Arena.make_service`, the construction the app uses. Several arenas can live in one process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from arena.config import Settings, roster_path
from arena.errors import ArenaError

if TYPE_CHECKING:
    import numpy as np

    from arena.backends.base import ServerInfo, Timeouts
    from arena.backends.demo import DemoServer
    from arena.campaigns.service import CampaignService
    from arena.registry import ModelSpec, Registry
    from arena.service import ArenaService
    from arena.storage import Store
    from arena.sync import Sync
    from arena.ui.sessions import ArenaBlocks

__all__ = ["ROOT", "Arena", "database_url", "demo_apart", "journal_dir", "timeouts"]

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("arena")


def database_url(settings: Settings) -> str:
    """The explicit --db / DATABASE_URL, else a file under db/ (demo votes never mix with real ones)."""
    if settings.db:
        return settings.db
    name = "demo.sqlite3" if settings.demo else "arena.sqlite3"
    return f"sqlite:///{ROOT / 'db' / name}"


def demo_apart(settings: Settings, *, db_flag: str | None) -> Settings:
    """``--demo`` without ``--db``: keep demo votes out of the real arena's database, journal and backups.

    The environment (DATABASE_URL, ARENA_JOURNAL_DIR, ARENA_DATASET_REPO, ARENA_SYNC_FOLDER) describes
    the real arena, e.g. inside the Docker image. A demo started there uses ``demo.sqlite3`` next to
    the real SQLite file (or under db/, or the temp folder when db/ is read-only), its own journal
    folder, and no sync target. ``--db`` on the command line names the demo's database explicitly.
    """
    if not settings.demo or db_flag:
        return settings
    from arena.storage import sqlite_file

    real = sqlite_file(settings.db) if settings.db else None
    if real is not None:
        path = real.with_name("demo.sqlite3")
    elif os.access(ROOT / "db", os.W_OK):
        path = ROOT / "db" / "demo.sqlite3"
    else:
        import tempfile

        path = Path(tempfile.gettempdir()) / "arena-demo" / "demo.sqlite3"
    return dataclasses.replace(settings, db=f"sqlite:///{path}", journal_dir="", dataset_repo="", sync_folder="")


def journal_dir(settings: Settings, store_url: str) -> Path:
    """ARENA_JOURNAL_DIR, else ``<name>-sync/`` next to a SQLite file, else db/sync-<hash of the URL>/."""
    if settings.journal_dir:
        return Path(settings.journal_dir)
    from arena.storage import masked_url, sqlite_file

    path = sqlite_file(store_url)
    if path is not None:
        return path.with_name(f"{path.stem}-sync")
    # One folder per database: restore replays this folder, so two databases must never share one.
    digest = hashlib.sha256(masked_url(store_url).encode()).hexdigest()[:12]
    return ROOT / "db" / f"{'demo-sync' if settings.demo else 'sync'}-{digest}"


def timeouts(settings: Settings) -> Timeouts:
    """The named network limits the settings give every backend."""
    from arena.backends.base import Timeouts

    return Timeouts(
        connect=settings.connect_timeout,
        first_token=settings.first_token_timeout,
        read=settings.read_timeout,
        total=settings.total_timeout,
    )


def _open_sync(settings: Settings, environ: Mapping[str, str], store: Store) -> Sync:
    """Restore from the sync target (if one is configured), then start pushing and journaling.

    Raises
    ------
    SyncError
        The target cannot be read (start-up stops rather than run, and later push, without the votes).
    """
    from arena.sync import Sync, make_target

    target = make_target(
        dataset_repo=settings.dataset_repo,
        dataset_path=settings.dataset_path,
        sync_folder=settings.sync_folder,
        every=settings.sync_minutes,
        environ=environ,
    )
    sync = Sync(
        store,
        journal_dir(settings, store.engine.url.render_as_string(hide_password=False)),
        target,
        snapshot_every=settings.snapshot_minutes,
        max_reason_chars=settings.max_reason_chars,
    )
    sync.restore()
    sync.start()
    return sync


async def _probe(
    models: Sequence[ModelSpec], limits: Timeouts, environ: Mapping[str, str]
) -> dict[str, ServerInfo | None]:
    """Read each server's /info once at start-up (limits, served model id); offline is not fatal."""
    from arena.backends import make_backend
    from arena.errors import BackendError

    async def one(spec: ModelSpec) -> ServerInfo | None:
        backend = make_backend(spec, limits, environ)
        try:
            info = await asyncio.wait_for(backend.info(), limits.connect + limits.read)
        except (BackendError, TimeoutError) as e:
            log.warning("model %s: server info unavailable (%s)", spec.name, type(e).__name__)
            return None
        finally:
            await backend.aclose()
        if info and info.model_id and spec.model and info.model_id != spec.model:
            served = ", ".join(repr(i) for i in info.model_ids) or repr(info.model_id)
            log.warning(
                "model %s: the server serves %s, not %r as models.yaml says; it stays out of battles until they "
                "agree (fix `model:` in models.yaml, or the server's served model name / alias)",
                spec.name,
                served,
                spec.model,
            )
        return info

    results = await asyncio.gather(*(one(m) for m in models))
    return {m.name: info for m, info in zip(models, results, strict=True)}


def _preload(service: ArenaService) -> None:
    """Load the language model and render each model's template once (chat templates import transformers)."""
    from arena.backends import backend_class
    from arena.language import preload
    from arena.templates import render_prompt

    preload()
    for spec in service.registry.enabled:
        if backend_class(spec.backend).renders_own_prompt:  # e.g. OpenAI-compatible servers
            continue
        try:
            render_prompt(spec, [{"role": "user", "content": "Hello"}])
        except ArenaError as e:  # the first real prompt reports it to the visitor
            log.warning("model %s: template not pre-rendered (%s)", spec.name, e)


class Arena:
    """Every part of one arena, started and stopped as one thing.

    Parameters
    ----------
    settings:
        The settings table (:meth:`arena.config.Settings.load`).
    environ:
        Where models.yaml's ``${VAR}``, API keys and the sync's token are read (default ``os.environ``).
    registry, store:
        Given parts are used as they are (tests); otherwise :meth:`start` reads the roster file and
        opens (and migrates) the database the settings name.
    limits, rng, clock, now:
        The backends' timeouts (default: from the settings) and the service's randomness and time.

    After :meth:`start`: ``service`` (the :class:`ArenaService`), ``campaigns``, ``sync`` and
    ``page`` (the Gradio Blocks, not yet queued nor launched: app.py does that). :meth:`close`
    stops the page, the health checks, the sync (journal flushed, one last push) and the demo
    model servers, in that order, whatever part of :meth:`start` ran.
    """

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str] | None = None,
        *,
        registry: Registry | None = None,
        store: Store | None = None,
        limits: Timeouts | None = None,
        rng: np.random.Generator | None = None,
        clock: Callable[[], float] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.registry = registry
        self.store = store
        self.limits = limits or timeouts(settings)
        self.rng = rng
        self._clock = clock
        self._now = now
        self.demo_servers: list[DemoServer] = []
        self.sync: Sync | None = None
        self.service: ArenaService | None = None
        self.campaigns: CampaignService | None = None
        self.page: ArenaBlocks | None = None
        self._closed = False

    def make_service(
        self, *, server_info: Mapping[str, ServerInfo | None] | None = None, journal: Any = None
    ) -> ArenaService:
        """The service over this arena's roster and database, one backend per enabled model.

        Starts nothing (no sync, no health checks): :meth:`start` adds those; tests use it alone.
        """
        import numpy as np

        from arena.backends import make_backend
        from arena.service import ArenaService

        assert self.registry is not None and self.store is not None, "no roster or database yet (start())"
        backends = {m.name: make_backend(m, self.limits, self.environ) for m in self.registry.enabled}
        kwargs: dict[str, Any] = {}
        if self._clock is not None:
            kwargs["clock"] = self._clock
        if self._now is not None:
            kwargs["now"] = self._now
        return ArenaService(
            self.settings,
            self.registry,
            self.store,
            backends,
            rng=self.rng if self.rng is not None else np.random.default_rng(),
            server_info=server_info,
            journal=journal,
            **kwargs,
        )

    def start(self) -> Arena:
        """Bring every part up: demo servers, roster, database, campaigns, sync, backends, service, page.

        Raises
        ------
        ArenaError
            A part cannot start (ConfigError, SyncError, StorageError ...); what had started is closed.
        """
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        from arena.backends import make_backend
        from arena.campaigns.service import load_campaign_bundles, open_campaigns
        from arena.registry import load_registry
        from arena.storage import Store

        settings = self.settings
        config_path = roster_path(settings.config)
        if settings.demo:
            from arena.backends.demo import DEMO_ROSTER_PATH, demo_environ, start_demo_servers

            self.demo_servers = start_demo_servers(
                4, token_rate=settings.demo_token_rate, first_token_delay=settings.demo_first_token_delay
            )
            self.environ = {**self.environ, **demo_environ(self.demo_servers)}
            config_path = str(DEMO_ROSTER_PATH)
        if self.registry is None:
            self.registry = load_registry(config_path, self.environ)
        if self.store is None:
            self.store = Store(database_url(settings))
            # Migrations, not create_all: PostgreSQL databases outlive releases. Replicas may start
            # together; the migration lock lets one migrate while the others wait.
            self.store.upgrade_locked()
        load_campaign_bundles(settings, self.store)  # before the restore: restored judgments need their campaign
        self.sync = _open_sync(settings, self.environ, self.store)
        server_info = asyncio.run(_probe(self.registry.enabled, self.limits, self.environ))
        self.service = self.make_service(server_info=server_info, journal=self.sync.journal)
        self.service.refresh_pairing()
        # Background health checks (daemon thread, own event loop): never delays start-up.
        limits, environ = self.limits, self.environ
        self.service.start_health_checks(lambda spec: make_backend(spec, limits, environ))
        self.campaigns = open_campaigns(self.service)
        from arena.ui.runtime import prepare_process

        prepare_process()  # before the first `import gradio` (see arena/ui/runtime.py)
        from arena.ui.app import build_ui

        self.page = cast("ArenaBlocks", build_ui(self.service, self.campaigns))

    def preload(self) -> threading.Thread:
        """Warm the language model and the templates in a daemon thread (call once the page is served:
        not competing with start-up for the GIL, and off the request path, or the first prompt would wait)."""
        assert self.service is not None, "start() first"
        thread = threading.Thread(target=_preload, args=(self.service,), name="preload", daemon=True)
        thread.start()
        return thread

    def close(self, *, deadline: float | None = None) -> None:
        """Stop what started, in order; safe to call twice, and after a failed :meth:`start`.

        ``deadline`` (a ``time.monotonic()``): when the sync's last push must have ended, whatever
        the steps before it took (:meth:`arena.sync.Sync.close`).
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self.page is not None:  # no new votes while the sync pushes its last
                self.page.close(verbose=False)
            # Stopping the health checker before the sync matters: its wait runs in an executor thread
            # that the interpreter joins at exit, which would hold the exit for up to a whole interval.
            if self.service is not None and self.service.health_checker is not None:
                self.service.health_checker.stop()
            if self.sync is not None:
                self.sync.close(deadline=deadline)
        finally:
            # Together: each waits for its own server loop's next tick (demo mode only).
            stopping = [threading.Thread(target=server.stop, name="demo-stop") for server in self.demo_servers]
            for thread in stopping:
                thread.start()
            for thread in stopping:
                thread.join()

    def __enter__(self) -> Arena:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
