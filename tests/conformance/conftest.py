"""Fixtures shared by the conformance modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from arena.storage import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'arena.sqlite3'}") as s:
        yield s
