"""What people forget: every command is documented, and each library stays behind its boundary."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from arena.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
ARENA = ROOT / "arena"

# library -> the only package folder that may import it
BOUNDARIES = {
    "gradio": "arena/ui",
    "sqlalchemy": "arena/storage",
    "alembic": "arena/storage",
    "psycopg": "arena/storage",
    "openai": "arena/backends",
    "httpx": "arena/backends",
    "httpx2": "arena/backends",
    "starlette": "arena/backends",
    "uvicorn": "arena/backends",
}
# Whole-module exceptions, each with its reason.
ALLOWED = {
    # huggingface_hub is dataset sync (the TGI backend speaks HTTP itself: arena/backends/tgi.py).
    ("huggingface_hub", "arena/sync.py"),
    # httpx2 is huggingface_hub's own HTTP client: sync names its errors and gives it timeouts.
    ("httpx2", "arena/sync.py"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", sorted(ARENA.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_libraries_stay_behind_their_boundary(path: Path) -> None:
    rel = path.relative_to(ROOT).as_posix()
    for lib in _imports(path):
        if lib in BOUNDARIES and (lib, rel) not in ALLOWED:
            assert rel.startswith(BOUNDARIES[lib]), f"{rel} imports {lib}; only {BOUNDARIES[lib]}/ may"
        if lib == "huggingface_hub":
            assert ("huggingface_hub", rel) in ALLOWED, f"{rel} imports huggingface_hub"


def test_importing_the_arena_starts_nothing() -> None:
    # Importing every module must not open files, sockets or threads (STYLE: import does nothing).
    code = (
        "import threading, importlib, pkgutil, arena\n"
        "before = threading.active_count()\n"
        "for m in pkgutil.walk_packages(arena.__path__, 'arena.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert threading.active_count() == before, threading.enumerate()\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_every_command_is_in_the_readme_and_has_help() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in COMMANDS:
        module_name = "import" if name == "import_" else name
        assert f"python -m arena {module_name}" in readme, f"README.md does not document `python -m arena {name}`"
    out = subprocess.run(
        [sys.executable, "-m", "arena", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for name in COMMANDS:
        assert ("import" if name == "import_" else name) in out


def test_app_help_documents_every_flag() -> None:
    out = subprocess.run(
        [sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for flag in ("--config", "--db", "--host", "--port", "--demo"):
        assert flag in out
    for env in ("DATABASE_URL", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        assert env in out
