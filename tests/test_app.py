"""app.py as a person runs it: --help documents every flag, start-up errors are one plain line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from arena.config import SETTINGS

ROOT = Path(__file__).resolve().parents[1]


def run_app(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "app.py", *args],
        cwd=ROOT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_every_flag_and_environment_variable() -> None:
    done = run_app("--help")
    assert done.returncode == 0
    for f in SETTINGS:
        if f.metadata.get("flag"):
            assert f.metadata["flag"] in done.stdout
        assert f.metadata["env"] in done.stdout
    assert "HF_TOKEN" in done.stdout


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("bad_yaml", "not valid YAML"),
        ("missing_env", "NOWHERE_URL is not set"),
        ("unreachable_db", "Database error"),
        ("hub_without_token", "HF_TOKEN"),
    ],
)
def test_start_up_errors_are_one_plain_line(case: str, fragment: str, tmp_path: Path) -> None:
    roster = tmp_path / "models.yaml"
    roster.write_text(
        "models:\n"
        "  - {name: one, backend: openai, url: '${NOWHERE_URL}', model: m1}\n"
        "  - {name: two, backend: openai, url: 'http://127.0.0.1:9/v1', model: m2}\n",
        encoding="utf-8",
    )
    args = ["--config", str(roster), "--db", f"sqlite:///{tmp_path / 'a.sqlite3'}", "--port", "0"]
    env = {"ARENA_JOURNAL_DIR": str(tmp_path / "sync")}
    if case == "bad_yaml":
        roster.write_text("models: [\n", encoding="utf-8")
    elif case == "unreachable_db":
        env["NOWHERE_URL"] = "http://127.0.0.1:9/v1"
        args[3] = "postgresql+psycopg://nobody@127.0.0.1:9/none"  # nothing listens on port 9
    elif case == "hub_without_token":
        env |= {"NOWHERE_URL": "http://127.0.0.1:9/v1", "ARENA_DATASET_REPO": "someone/votes", "HF_TOKEN": ""}
    done = run_app(*args, env=env)
    assert done.returncode == 2, done.stderr
    # Log lines may come first; the error is one line, the last one.
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and done.stderr.strip().splitlines()[-1] == errors[0], done.stderr
    assert fragment in errors[0]
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_one_plain_line_before_start_up(tmp_path: Path) -> None:
    """Not Gradio's traceback after the whole start-up, telling people to pass ``server_port`` to launch()."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = f"sqlite:///{tmp_path / 'a.sqlite3'}"
        done = run_app("--demo", "--db", db, "--port", str(port), env={"ARENA_JOURNAL_DIR": str(tmp_path / "j")})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: Port {port} is in use on 127.0.0.1; pass --port N (or set GRADIO_SERVER_PORT=N), "
        "or --port 0 for any free port."
    ]
    assert not (tmp_path / "a.sqlite3").exists()  # refused before anything started


def test_demo_without_db_keeps_out_of_the_real_arena_s_database_and_backups(tmp_path: Path) -> None:
    """Inside the image DATABASE_URL, ARENA_JOURNAL_DIR (and on a Space the sync target) name the real arena."""
    from gradio_client import Client

    from arena.storage import Store
    from tests.support.app_process import AppProcess

    data = tmp_path / "data"
    data.mkdir()
    env = {
        "DATABASE_URL": f"sqlite:///{data / 'arena.sqlite3'}",
        "ARENA_JOURNAL_DIR": str(data / "sync"),
        "ARENA_SYNC_FOLDER": str(tmp_path / "backups"),
        "ARENA_MIN_READ_SECONDS": "0",
        "ARENA_DEMO_TOKEN_RATE": "200",
        "ARENA_DEMO_FIRST_TOKEN_DELAY": "0.01",
    }
    app = AppProcess(["--demo"], env=env, log_path=tmp_path / "app.log")
    try:
        app.wait_ready()
        client = Client(app.url, verbose=False)
        if "/accept_terms" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]:
            client.predict(api_name="/accept_terms")
        client.predict("Dzień dobry!", api_name="/send")
        client.predict(api_name="/vote_a")
        client.close()
    finally:
        app.stop()
    assert not (data / "arena.sqlite3").exists(), "the real database was not touched"
    assert not (data / "sync").exists() and not (tmp_path / "backups").exists(), "nor its journal and backups"
    with Store(f"sqlite:///{data / 'demo.sqlite3'}") as store:
        assert store.vote_total(mode=None, exclude_flags=()) == 1  # the demo vote went next to it
