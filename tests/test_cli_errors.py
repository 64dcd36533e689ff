"""``python -m arena``: a user's mistake is one plain line on stderr and exit status 2, never a traceback.

Each case runs the real command line in a subprocess, as an operator would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from arena.storage import Store
from tests.support.battles import fill

ROOT = Path(__file__).resolve().parents[1]


def arena(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "ARENA_"))}
    return subprocess.run(
        [sys.executable, "-m", "arena", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
    )


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cli-errors") / "arena.sqlite3"
    with Store(f"sqlite:///{path}") as store:
        fill(store)
    return f"sqlite:///{path}"


def _refused(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The one line the command printed, after checking it is a plain refusal with exit status 2."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and 'File "' not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def test_export_into_a_folder_that_does_not_exist(filled: str, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "x.csv"
    line = _refused(arena("export", "--db", filled, "--battles", str(missing)), str(missing), "check the path")
    assert "Errno" not in line


def test_export_onto_a_folder(filled: str, tmp_path: Path) -> None:
    _refused(arena("export", "--db", filled, "--battles", str(tmp_path)), str(tmp_path), "give a file name")


def test_export_without_permission(filled: str, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        # root ignores permission bits: then sysfs, where nobody may create a file (EACCES), stands in.
        target = Path("/sys/arena-export.csv") if os.access(locked, os.W_OK) else locked / "x.csv"
        done = arena("export", "--db", filled, "--battles", str(target))
    finally:
        locked.chmod(0o700)
    _refused(done, str(target), "permission denied")


def test_import_of_a_missing_file(filled: str, tmp_path: Path) -> None:
    _refused(arena("import", "--db", filled, str(tmp_path / "nope.csv")), "nope.csv")


def test_import_of_a_malformed_csv_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("question_id,model_a,model_b,winner\nq1,a,b,model_a,extra\n", encoding="utf-8")
    _refused(arena("import", "--db", f"sqlite:///{tmp_path / 'a.sqlite3'}", str(bad)), "bad.csv", "line 2")


def test_import_of_a_file_that_is_not_text(tmp_path: Path) -> None:
    bad = tmp_path / "binary.csv"
    bad.write_bytes(b"\xff\xfe\x00\x81 not text")
    _refused(arena("import", "--db", f"sqlite:///{tmp_path / 'a.sqlite3'}", str(bad)), "binary.csv", "UTF-8")


def test_a_missing_roster(tmp_path: Path) -> None:
    messages = tmp_path / "messages.json"
    messages.write_text('[{"role": "user", "content": "hi"}]', encoding="utf-8")
    missing = tmp_path / "models.yaml"
    done = arena("prompt", "--config", str(missing), "--model", "x", "--messages", str(messages))
    _refused(done, str(missing), "--config")


def test_an_unknown_slice(filled: str) -> None:
    _refused(arena("ratings", "--db", filled, "--slice", "everything"), "Unknown slice", "lang:<code>")
    _refused(arena("audit", "--db", filled, "--slice", "pool:nothing"), "Unknown slice")


def test_a_database_that_cannot_be_reached_is_one_line(tmp_path: Path) -> None:
    # psycopg's own message spans two lines; the operator still reads one.
    _refused(arena("ratings", "--db", "postgresql+psycopg://arena@127.0.0.1:1/arena"), "127.0.0.1")


def test_a_bad_option_of_simulate_goes_to_stderr() -> None:
    done = arena("simulate", "--models", "2")
    _refused(done, "--models")
    assert done.stdout == ""


def test_a_closed_pipe_ends_the_export_quietly(filled: str) -> None:
    # ``export --battles - | head -1``: the reader leaves after one line.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "ARENA_"))}
    done = subprocess.run(
        f"{sys.executable} -m arena export --db {filled} --battles - --with-conversations | head -c 10",
        shell=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert len(done.stdout) == 10
