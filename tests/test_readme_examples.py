"""The README's examples, run verbatim against the real app (issue 20: its vote never counted)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from arena import i18n
from arena.language import detect_language
from arena.storage import Store
from tests.support.app_process import AppProcess

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppProcess, str]]:
    tmp = tmp_path_factory.mktemp("readme")
    db = f"sqlite:///{tmp / 'arena.sqlite3'}"
    env = {"ARENA_JOURNAL_DIR": str(tmp / "journal"), "ARENA_DEMO_TOKEN_RATE": "200"}
    app = AppProcess(["--demo", "--db", db], env=env, log_path=tmp / "app.log")
    try:
        app.wait_ready()
        yield app, db
    finally:
        app.stop()


def test_the_gradio_client_example_casts_a_vote_that_counts(arena: tuple[AppProcess, str], tmp_path: Path) -> None:
    app, db = arena
    (example,) = [b for b in python_blocks() if "gradio_client" in b]
    assert "http://127.0.0.1:7860" in example
    script = tmp_path / "example.py"
    script.write_text(example.replace("http://127.0.0.1:7860", app.url), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("counted: True"), done.stdout
    assert "--- A ---" in done.stdout and "--- B ---" in done.stdout
    answers = re.split(r"^--- [AB] ---$", done.stdout, flags=re.M)[1:]
    assert len(answers) == 2
    for answer in answers:  # the demo answers the README's Polish prompt in Polish
        assert "Opowiedz mi o Krakowie." in answer and detect_language(answer.split("\n\n", 1)[1]) == "pl", answer
    with Store(db) as store:
        assert store.vote_total() == 1  # counted: flagged votes are left out of this total
    info, table, _legend, _fold = Client(app.url, verbose=False).predict(api_name="/leaderboard")
    assert i18n.text("en", "leaderboard.empty") not in info
    assert i18n.text("en", "leaderboard.votes", n=1) in info
    assert len(table["data"]) == 2
