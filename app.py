"""Composition root: settings -> roster -> database -> service -> UI -> launch.

Run ``python app.py --help`` for the flags; every other setting is an environment variable
listed there and in docs/configuration.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from arena.config import SETTINGS, Settings
from arena.errors import ArenaError

if TYPE_CHECKING:
    import gradio as gr

    from arena.backends.base import ServerInfo, Timeouts
    from arena.backends.demo import DemoServer
    from arena.registry import ModelSpec
    from arena.service import ArenaService
    from arena.storage import Store
    from arena.sync import Sync

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("arena")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    epilog = "Settings read from the environment (flags win over them):\n" + "\n".join(
        f"  {f.metadata['env']:<30} {f.metadata['help']} (default: {f.default!r})"
        for f in SETTINGS
        if f.metadata["env"]
    )
    epilog += (
        f"\n  {'HF_TOKEN':<30} Hugging Face token with write access to ARENA_DATASET_REPO (a Space secret)."
        f"\n  {'HF_ENDPOINT':<30} The Hub's URL (default https://huggingface.co)."
        "\n  Model server URLs and keys come from the variables models.yaml names (e.g. BREEZE_URL)."
    )
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Run the LLM arena: two anonymous models answer, visitors vote, models are ranked.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for f in SETTINGS:
        flag = f.metadata.get("flag")
        if not flag:
            continue
        env = f.metadata["env"]
        help_text = f"{f.metadata['help']} Environment: {env}. Default: {f.default!r}."
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=type(f.default), default=None, help=help_text)
    return parser.parse_args(argv)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
    from sqlalchemy.engine import make_url

    url = make_url(settings.db) if settings.db else None
    if url is not None and url.get_backend_name() == "sqlite" and url.database:
        path = Path(url.database).with_name("demo.sqlite3")
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
    from sqlalchemy.engine import make_url

    url = make_url(store_url)
    if url.get_backend_name() == "sqlite" and url.database:
        path = Path(url.database)
        return path.with_name(f"{path.stem}-sync")
    # One folder per database: restore replays this folder, so two databases must never share one.
    digest = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:12]
    return ROOT / "db" / f"{'demo-sync' if settings.demo else 'sync'}-{digest}"


def open_sync(settings: Settings, environ: Mapping[str, str], store: Store) -> Sync:
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


def build(settings: Settings, environ: Mapping[str, str]) -> tuple[gr.Blocks, ArenaService, list[DemoServer], Sync]:
    """Wire every part together; returns (gradio app, service, demo servers and sync to stop on exit)."""
    import numpy as np

    from arena.backends import make_backend
    from arena.backends.base import Timeouts
    from arena.registry import load_registry
    from arena.service import ArenaService
    from arena.storage import Store
    from arena.ui import build_ui

    servers: list[DemoServer] = []
    config_path = settings.config
    if settings.demo:
        from arena.backends.demo import DEMO_ROSTER_PATH, demo_environ, start_demo_servers

        servers = start_demo_servers(
            4, token_rate=settings.demo_token_rate, first_token_delay=settings.demo_first_token_delay
        )
        environ = {**environ, **demo_environ(servers)}
        config_path = str(DEMO_ROSTER_PATH)
    try:
        registry = load_registry(config_path, environ)
        store = Store(database_url(settings))
        # Migrations, not create_all: PostgreSQL databases outlive releases. Replicas may start
        # together; the migration lock lets one migrate while the others wait.
        store.upgrade_locked()
        from arena.campaigns.service import load_campaign_bundles

        load_campaign_bundles(settings, store)  # before the restore: restored judgments need their campaign
        sync = open_sync(settings, environ, store)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    timeouts = Timeouts(
        connect=settings.connect_timeout,
        first_token=settings.first_token_timeout,
        read=settings.read_timeout,
        total=settings.total_timeout,
    )
    models = registry.enabled
    server_info = asyncio.run(_probe(models, timeouts, environ))
    backends = {m.name: make_backend(m, timeouts, environ) for m in models}
    service = ArenaService(
        settings, registry, store, backends, rng=np.random.default_rng(), server_info=server_info, journal=sync.journal
    )
    service.refresh_pairing()
    # Background health checks (daemon thread, own event loop): never delays start-up.
    service.start_health_checks(lambda spec: make_backend(spec, timeouts, environ))
    from arena.campaigns.service import open_campaigns

    campaigns = open_campaigns(service)
    demo = build_ui(service, campaigns)
    demo.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.queue_size)
    return demo, service, servers, sync


async def _probe(
    models: Sequence[ModelSpec], timeouts: Timeouts, environ: Mapping[str, str]
) -> dict[str, ServerInfo | None]:
    """Read each server's /info once at start-up (limits, served model id); offline is not fatal."""
    from arena.backends import make_backend
    from arena.errors import BackendError

    async def one(spec: ModelSpec) -> ServerInfo | None:
        backend = make_backend(spec, timeouts, environ)
        try:
            info = await asyncio.wait_for(backend.info(), timeouts.connect + timeouts.read)
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
    from arena.language import preload
    from arena.templates import render_prompt

    preload()
    for spec in service.registry.enabled:
        if spec.backend != "tgi":  # OpenAI-compatible servers apply their own template
            continue
        try:
            render_prompt(spec, [{"role": "user", "content": "Hello"}])
        except ArenaError as e:  # the first real prompt reports it to the visitor
            log.warning("model %s: template not pre-rendered (%s)", spec.name, e)


def _fail(e: BaseException) -> int:
    # One plain line: driver and YAML messages span several lines.
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    print(f"error: {text}", file=sys.stderr)
    return 2


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    # Stop like Ctrl-C: Gradio's launch() returns and the finally below flushes the journal and
    # pushes once more (a Space or `docker stop` sends SIGTERM).
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = demo_apart(Settings.load(os.environ, **vars(args)), db_flag=args.db)
    except ArenaError as e:
        return _fail(e)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # seven lines of noise per start
    try:
        demo, service, servers, sync = build(settings, os.environ)
    except ArenaError as e:
        return _fail(e)
    port = settings.port or _free_port(settings.host)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        from arena.ui.app import launch_options

        demo.launch(
            server_name=settings.host,
            server_port=port,
            show_error=False,
            **launch_options(),  # theme and style sheet
            prevent_thread_lock=True,
            state_session_capacity=settings.session_capacity,
            # Gradio's queue runs at most max_threads events at once, whatever the events'
            # concurrency limits (default 40: the 41st streaming battle would wait for a slot).
            max_threads=settings.concurrency_limit,
        )
        # Once the page is served (not competing with start-up for the GIL), and off the request
        # path, or the first prompt would wait for them.
        threading.Thread(target=_preload, args=(service,), name="preload", daemon=True).start()
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        # Stopping the health checker first matters: its wait runs in an executor thread that the
        # interpreter joins at exit, which would hold the exit for up to a whole check interval.
        if service.health_checker is not None:
            service.health_checker.stop()
        try:
            sync.close()
        finally:
            # Together: each waits for its own server loop's next tick (demo mode only).
            stopping = [threading.Thread(target=server.stop, name="demo-stop") for server in servers]
            for thread in stopping:
                thread.start()
            for thread in stopping:
                thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
