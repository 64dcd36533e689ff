"""A module of ``arena/`` as it was at another git revision, for benchmarks that compare before and after."""

from __future__ import annotations

import importlib.util
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def module_at(rev: str, path: str) -> ModuleType:
    """Import ``path`` (e.g. ``arena/replays.py``) as committed at ``rev``, beside today's module."""
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    name = f"{Path(path).stem}_{rev}"
    spec = importlib.util.spec_from_file_location(name, f.name)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
