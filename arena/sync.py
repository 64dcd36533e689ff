"""Keeping votes across restarts of a disk-less host: push journal and snapshots, restore on start.

A Hugging Face Space loses its disk on every restart. The arena therefore keeps a local *sync
folder* and pushes it to a :class:`SyncTarget` every few minutes::

    <sync folder>/journal/<UTC start>-<random>.jsonl   this process's journal (append-only)
    <sync folder>/snapshot/arena.sqlite3               a consistent copy of the SQLite database
    <sync folder>/snapshot/manifest.json               which journal lines the snapshot already holds

On start, :meth:`Sync.restore` pulls the target, merges the snapshot into the database, then replays
every journal line the manifest says the snapshot does not hold. Every step only adds what is
missing, so restoring twice, or restoring into a database that already has the rows, changes nothing.

Targets: :class:`FolderTarget` (a local or mounted folder; what the tests use) and
:class:`HubTarget` (a dataset repo through ``huggingface_hub.CommitScheduler``).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from arena.errors import ArenaError
from arena.journal import Journal, SyncError, _count_lines, journal_name, read_journal
from arena.storage import Store
from arena.storage.campaigns import CampaignStore

__all__ = ["FolderTarget", "HubTarget", "Restored", "Sync", "SyncError", "SyncTarget"]

log = logging.getLogger(__name__)

JOURNAL_DIR = "journal"
SNAPSHOT = "snapshot/arena.sqlite3"
MANIFEST = "snapshot/manifest.json"
_PATTERNS = [f"{JOURNAL_DIR}/*.jsonl", SNAPSHOT, MANIFEST]


class SyncTarget(Protocol):
    """Where the sync folder is pushed to and pulled from."""

    @property
    def lock(self) -> threading.Lock:
        """Held while the folder is read for a push; whoever appends to files in it holds it too."""
        ...

    def start(self, folder: Path, before_push: Callable[[], None]) -> None:
        """Push ``folder`` every few minutes from now on; ``before_push()`` runs right before each push."""
        ...

    def push_now(self) -> None:
        """One push (``before_push`` included), finished when this returns."""
        ...

    def stop(self) -> None:
        """A last push, then no more."""
        ...

    def pull(self, dest: Path) -> Path | None:
        """Download the pushed files under ``dest``; the folder holding them, or None if nothing was pushed yet."""
        ...


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.exists() and dst.stat().st_size == src.stat().st_size and dst.stat().st_mtime_ns >= src.stat().st_mtime_ns:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    shutil.copy2(src, partial)
    partial.replace(dst)


class FolderTarget:
    """A folder (local, or a mounted network disk) that receives copies of the sync folder.

    Parameters
    ----------
    path
        The target folder (created if missing).
    every
        Minutes between pushes.
    """

    def __init__(self, path: str | Path, *, every: float = 5.0) -> None:
        self.path = Path(path)
        self.every = every
        self._lock = threading.Lock()
        self._push_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._folder: Path | None = None
        self._before_push: Callable[[], None] = lambda: None

    def __repr__(self) -> str:
        return f"FolderTarget({str(self.path)!r}, every={self.every})"

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def start(self, folder: Path, before_push: Callable[[], None]) -> None:
        self._folder, self._before_push = folder, before_push
        self._thread = threading.Thread(target=self._run, name="arena-sync-folder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.every * 60):
            try:
                self.push_now()
            except (OSError, ArenaError) as e:
                log.error(
                    "sync: push to %s failed (%s: %s); retrying in %.1f min", self.path, type(e).__name__, e, self.every
                )

    def push_now(self) -> None:
        if self._folder is None:
            return
        with self._push_lock:
            self._before_push()
            with self._lock:
                # The snapshot before its manifest: a manifest never describes a snapshot not yet there.
                for rel in sorted(
                    p.relative_to(self._folder).as_posix() for p in self._folder.glob(f"{JOURNAL_DIR}/*.jsonl")
                ):
                    _copy_if_changed(self._folder / rel, self.path / rel)
                for rel in (SNAPSHOT, MANIFEST):
                    if (self._folder / rel).exists():
                        _copy_if_changed(self._folder / rel, self.path / rel)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        self.push_now()

    def pull(self, dest: Path) -> Path | None:
        if not self.path.exists():
            return None
        found = False
        for pattern in _PATTERNS:
            for src in self.path.glob(pattern):
                rel = src.relative_to(self.path)
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
                found = True
        return dest if found else None


class HubTarget:
    """A Hugging Face dataset repo: pushes with ``CommitScheduler``, pulls with ``snapshot_download``.

    Not exercised against the real Hub in this project's tests (no network there); the tests check
    the scheduler's configuration and the pull/restore path through :class:`FolderTarget`.

    Parameters
    ----------
    repo_id
        ``owner/name`` of the dataset repo (created private if missing).
    token
        A Hugging Face token with write access (``HF_TOKEN``).
    path_in_repo
        Folder inside the repo ("" for its root).
    every
        Minutes between pushes.
    """

    def __init__(self, repo_id: str, token: str, *, path_in_repo: str = "", every: float = 5.0) -> None:
        self.repo_id = repo_id
        self.path_in_repo = path_in_repo.strip("/")
        self.every = every
        self._token = token
        self._scheduler: Any = None

    def __repr__(self) -> str:  # never shows the token
        return f"HubTarget({self.repo_id!r}, path_in_repo={self.path_in_repo!r}, every={self.every})"

    def scheduler_options(self, folder: Path) -> dict[str, Any]:
        """The keyword arguments given to ``CommitScheduler``."""
        return {
            "repo_id": self.repo_id,
            "repo_type": "dataset",
            "folder_path": folder,
            "path_in_repo": self.path_in_repo,
            "every": self.every,
            "token": self._token,
            "private": True,
            "allow_patterns": list(_PATTERNS),
        }

    @property
    def lock(self) -> threading.Lock:
        if self._scheduler is None:
            raise RuntimeError("HubTarget.lock exists once start() has run")
        return self._scheduler.lock

    def start(self, folder: Path, before_push: Callable[[], None]) -> None:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            self._scheduler = _scheduler_class()(before_push=before_push, **self.scheduler_options(folder))
        except (HfHubHTTPError, OSError) as e:
            raise SyncError(f"Cannot use dataset repo {self.repo_id}: {_first_line(e)}. {_HUB_ADVICE}") from None

    def push_now(self) -> None:
        if self._scheduler is not None:
            self._scheduler.trigger().result()

    def stop(self) -> None:
        if self._scheduler is not None:
            self.push_now()
            self._scheduler.stop()

    def pull(self, dest: Path) -> Path | None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

        prefix = f"{self.path_in_repo}/" if self.path_in_repo else ""
        try:
            snapshot_download(
                self.repo_id,
                repo_type="dataset",
                local_dir=dest,
                token=self._token,
                allow_patterns=[prefix + p for p in _PATTERNS],
            )
        except RepositoryNotFoundError:
            return None  # first start: start() creates the repo
        except (HfHubHTTPError, OSError) as e:
            raise SyncError(f"Cannot download dataset repo {self.repo_id}: {_first_line(e)}. {_HUB_ADVICE}") from None
        root = dest / self.path_in_repo if self.path_in_repo else dest
        return root if any(root.glob(p) for p in _PATTERNS) else None


_HUB_ADVICE = (
    "Check ARENA_DATASET_REPO and that HF_TOKEN is a token with write access (a Space secret); "
    "the arena does not start without its votes."
)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _scheduler_class() -> type:
    """CommitScheduler that runs ``before_push`` in its worker, so no upload reads a file being replaced."""
    from huggingface_hub import CommitScheduler

    class ArenaScheduler(CommitScheduler):
        def __init__(self, *, before_push: Callable[[], None], **kwargs: Any) -> None:
            self._before_push = before_push  # set first: the constructor already triggers a push
            super().__init__(**kwargs)

        def push_to_hub(self) -> Any:
            self._before_push()
            return super().push_to_hub()

    return ArenaScheduler


@dataclass
class Restored:
    """What :meth:`Sync.restore` added to the database."""

    snapshot: bool = False
    battles: int = 0
    votes: int = 0
    journal_lines: int = 0
    campaign_votes: int = 0  # evaluation campaigns' judgments added
    covered: dict[str, int] = field(default_factory=dict)  # journal file -> lines now in the database


class Sync:
    """The sync folder of one process: its journal, its snapshots, restore and pushes.

    Parameters
    ----------
    store
        The live database.
    folder
        The local sync folder (created if missing).
    target
        Where the folder is pushed; None keeps the journal locally only.
    snapshot_every
        Minutes between snapshots (SQLite only); 0 takes one before every push. A snapshot is
        only taken when something was journaled since the last one.
    """

    def __init__(
        self,
        store: Store,
        folder: str | Path,
        target: SyncTarget | None = None,
        *,
        snapshot_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_reason_chars: int | None = None,
    ) -> None:
        self.store = store
        self.max_reason_chars = max_reason_chars
        self.folder = Path(folder)
        self.target = target
        self.snapshot_every = snapshot_every
        self._clock = clock
        self.journal: Journal | None = None
        self._covered: dict[str, int] = {}
        self._last_snapshot: tuple[float, int] | None = None  # (clock, journal lines) of the last snapshot
        self._snapshots = store.engine.dialect.name == "sqlite"

    # -- restore ----------------------------------------------------------------------------------

    def restore(self) -> Restored:
        """Pull the target and add everything the database lacks (idempotent).

        Raises
        ------
        SyncError
            The target cannot be read, or a snapshot or journal line is unreadable.
        StorageError
            The database cannot be written.
        """
        result = Restored()
        with tempfile.TemporaryDirectory(prefix="arena-restore-") as tmp:
            pulled = self.target.pull(Path(tmp)) if self.target is not None else None
            manifest: dict[str, Any] = {}
            if pulled is not None and (pulled / SNAPSHOT).exists():
                manifest = _read_manifest(pulled / MANIFEST)
                self._merge_snapshot(pulled / SNAPSHOT, result)
                result.snapshot = True
            journals: dict[str, Path] = {}
            for root in (pulled, self.folder):
                if root is None:
                    continue
                for path in root.glob(f"{JOURNAL_DIR}/*.jsonl"):
                    rel = path.relative_to(root).as_posix()
                    # The longer copy of a file wins (the local one may hold lines never pushed).
                    if rel not in journals or _count_lines(path) > _count_lines(journals[rel]):
                        journals[rel] = path
            held = manifest.get("journal_lines", {}) if result.snapshot else {}
            for rel, path in sorted(journals.items()):
                lines = read_journal(path, skip=int(held.get(rel, 0)), max_reason_chars=self.max_reason_chars)
                for batch in lines:
                    merged = self.store.merge_battles(batch.battles, batch.votes, batch.messages)
                    result.battles += merged.battles
                    result.votes += merged.votes
                    if batch.campaign_votes:
                        result.campaign_votes += CampaignStore(self.store).merge_votes(batch.campaign_votes)
                    result.journal_lines += len(batch)
                result.covered[rel] = _count_lines(path)
        self._covered = dict(result.covered)
        log.info(
            "restore: snapshot %s, %d journal events replayed, %d battles and %d votes added",
            "merged" if result.snapshot else "absent",
            result.journal_lines,
            result.battles,
            result.votes,
        )
        return result

    def _merge_snapshot(self, path: Path, result: Restored) -> None:
        snapshot = Store(f"sqlite:///{path}")
        try:
            try:
                snapshot.upgrade()  # a snapshot from an older version of the arena
            except ArenaError as e:
                raise SyncError(
                    f"The pushed snapshot cannot be read or migrated ({_first_line(e)}); it may come from a newer "
                    "version of the arena. Deploy that version, or remove snapshot/ from the target to restore "
                    "from the journal only."
                ) from None
            batch: list[Any] = []
            for item in snapshot.iter_battles(voted_only=False, with_messages=True, batch_size=500):
                batch.append(item)
                if len(batch) == 500:
                    self._merge_items(batch, result)
                    batch = []
            self._merge_items(batch, result)
            result.campaign_votes += CampaignStore(self.store).merge_from(CampaignStore(snapshot))[1]
        finally:
            snapshot.dispose()

    def _merge_items(self, items: list[Any], result: Restored) -> None:
        if not items:
            return
        merged = self.store.merge_battles(
            [i["battle"] for i in items],
            [i["vote"] for i in items if i["vote"] is not None],
            {i["battle"].id: i["messages"] for i in items if i["messages"]},
        )
        result.battles += merged.battles
        result.votes += merged.votes

    # -- running ----------------------------------------------------------------------------------

    def start(self) -> Journal:
        """Start pushing (if there is a target) and open this process's journal; returns the journal."""
        (self.folder / JOURNAL_DIR).mkdir(parents=True, exist_ok=True)
        lock = None
        if self.target is not None:
            self.target.start(self.folder, self._before_push)
            lock = self.target.lock
        self.journal = Journal(self.folder / JOURNAL_DIR / journal_name(), self.store, lock=lock)
        return self.journal

    def close(self) -> None:
        """Write what is queued, push one last time (with a fresh snapshot), stop."""
        if self.journal is not None:
            self.journal.close()
        if self.target is not None:
            self._last_snapshot = None if self._changed() else self._last_snapshot
            self.target.stop()

    def _changed(self) -> bool:
        lines = self.journal.lines if self.journal else 0
        return self._last_snapshot is None or lines != self._last_snapshot[1]

    def _before_push(self) -> None:
        if not self._snapshots or not self._changed():
            return
        if self._last_snapshot is not None and self._clock() - self._last_snapshot[0] < self.snapshot_every * 60:
            return
        self.take_snapshot()

    def take_snapshot(self) -> None:
        """Write snapshot/arena.sqlite3 and its manifest into the sync folder (SQLite only)."""
        journal = self.journal
        if journal is not None and self.target is not None:
            with self.target.lock:
                lines = journal.lines  # every line written so far was committed before: the copy holds it
        else:
            lines = journal.lines if journal is not None else 0
        (self.folder / SNAPSHOT).parent.mkdir(parents=True, exist_ok=True)
        self.store.snapshot(self.folder / SNAPSHOT)
        held = dict(self._covered)
        if journal is not None:
            held[f"{JOURNAL_DIR}/{journal.path.name}"] = lines
        manifest = {"taken_at": datetime.now(UTC).isoformat(), "journal_lines": held}
        partial = self.folder / (MANIFEST + ".partial")
        partial.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        partial.replace(self.folder / MANIFEST)
        self._last_snapshot = (self._clock(), lines)


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}  # a snapshot without its manifest: replay every journal line (idempotent anyway)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise SyncError(f"{path.name} is not JSON ({e}); remove it to replay every journal line.") from None
    return data if isinstance(data, dict) else {}


def make_target(
    *, dataset_repo: str, dataset_path: str, sync_folder: str, every: float, environ: Mapping[str, str]
) -> SyncTarget | None:
    """The target the settings name: a dataset repo, a folder, or None.

    Raises
    ------
    SyncError
        A dataset repo is set but ``HF_TOKEN`` is not.
    """
    if sync_folder:
        return FolderTarget(sync_folder, every=every)
    if dataset_repo:
        token = environ.get("HF_TOKEN", "").strip()
        if not token:
            raise SyncError(
                f"ARENA_DATASET_REPO={dataset_repo} is set but HF_TOKEN is not: add a Hugging Face token with "
                "write access as a secret named HF_TOKEN."
            )
        return HubTarget(dataset_repo, token, path_in_repo=dataset_path, every=every)
    return None
