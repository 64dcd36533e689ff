"""Composition root: settings -> the arena (roster, database, sync, service, page) -> launch.

Run ``python app.py --help`` for the flags; every other setting is an environment variable
listed there and in docs/configuration.md. The parts and their start-up and shutdown order are
:class:`arena.app.Arena`'s.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

from arena.app import Arena, demo_apart
from arena.config import SETTINGS, Settings
from arena.errors import ArenaError


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


def _port_taken(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port`` (SO_REUSEADDR: a closed socket's TIME_WAIT is not "taken")."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _fail(e: BaseException) -> int:
    # One plain line: driver and YAML messages span several lines.
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    print(f"error: {text}", file=sys.stderr)
    return 2


# Seconds from SIGTERM to the end of the sync's last push. Docker, compose and Spaces kill the
# process ~10 s after SIGTERM; what remains is for the interpreter's own exit.
SHUTDOWN_SECONDS = 7.0


def _on_sigterm(received: list[float]) -> Callable[[int, FrameType | None], None]:
    """A SIGTERM handler that notes when it came, then stops the app like Ctrl-C."""

    def terminate(_signum: int, _frame: FrameType | None) -> None:
        # Gradio's block_thread() swallows the KeyboardInterrupt (closing its server, which takes
        # time), so the moment is noted here: the grace period runs from the signal, not from there.
        received.append(time.monotonic())
        raise KeyboardInterrupt

    return terminate


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = demo_apart(Settings.load(os.environ, **vars(args)), db_flag=args.db)
    except ArenaError as e:
        return _fail(e)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # seven lines of noise per start
    if settings.log_level.upper() != "DEBUG":  # a line per HTTP request: every health check of every model
        for name in ("httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if settings.port and _port_taken(settings.host, settings.port):  # before start-up, not after it
        print(
            f"error: Port {settings.port} is in use on {settings.host}; pass --port N (or set GRADIO_SERVER_PORT=N), "
            "or --port 0 for any free port.",
            file=sys.stderr,
        )
        return 2
    arena = Arena(settings, os.environ)
    try:
        arena.start()
    except ArenaError as e:
        return _fail(e)
    demo = arena.page
    assert demo is not None
    demo.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.queue_size)
    port = settings.port or _free_port(settings.host)
    sigterm_at: list[float] = []
    signal.signal(signal.SIGTERM, _on_sigterm(sigterm_at))
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
        arena.preload()
        # What start-up made (Gradio, plotly, the roster's templates: ~300,000 objects) lives as long
        # as the process: move it out of the garbage collector's reach, so the interpreter's last
        # collection at exit does not walk it again (SIGTERM to exit 1.2 s -> 0.5 s on a quiet
        # 2-core machine, several seconds under load: docker stop allows 10 s).
        gc.collect()
        gc.freeze()
        demo.block_thread()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM while block_thread() was not running yet
        pass
    finally:
        # The page, health checks, sync (its last push ends within the host's grace period after
        # SIGTERM) and demo servers, in that order.
        arena.close(deadline=(sigterm_at[0] if sigterm_at else time.monotonic()) + SHUTDOWN_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
