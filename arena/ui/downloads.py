"""Files offered for download (ratings, battles, campaign results): one per kind and slice at a time.

A file is named by the state of the votes it holds and made once per state (concurrent requests wait
for the one export); when a newer one is made, the older file of the same kind and slice is deleted.
So a thousand calls cost one export and leave one file, and the folder holds at most one file per
(kind, slice) whatever is asked; callers pass only slices that exist. The folder is private
(``mkdtemp``), made on first use and removed when the process exits.
"""

from __future__ import annotations

import asyncio
import atexit
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["Downloads"]


class Downloads:
    """A private temporary folder holding the latest file of each (kind, slice)."""

    def __init__(self, prefix: str = "arena-downloads-") -> None:
        self.prefix = prefix
        self._dir: Path | None = None
        self._lock = asyncio.Lock()
        self._latest: dict[tuple[str, str], Path] = {}
        self.written: dict[Path, object] = {}  # what ``write`` returned for each file kept

    def folder(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=self.prefix))
            atexit.register(shutil.rmtree, self._dir, True)
        return self._dir

    def path(self, kind: str, slice_name: str, state: str) -> Path:
        return self.folder() / _safe(f"{kind}-{slice_name}-{state}.csv")

    async def made(self, kind: str, slice_name: str, state: str, write: Callable[[Path], object]) -> Path:
        """The file for this state, written by ``write(path)`` in a worker thread unless it exists."""
        path = self.path(kind, slice_name, state)
        async with self._lock:
            if not path.exists():
                partial = path.with_name(path.name + ".part")
                result = await asyncio.to_thread(write, partial)
                partial.replace(path)
                self.written[path] = result
            # Only this (kind, slice)'s older file: a prefix match would also take "lang:zh-Hant"
            # for "lang:zh" and make the two slices re-export each other's file on every view.
            old = self._latest.get((kind, slice_name))
            if old is not None and old != path:
                old.unlink(missing_ok=True)
                self.written.pop(old, None)
            self._latest[(kind, slice_name)] = path
        return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)
