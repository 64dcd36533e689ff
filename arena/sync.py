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
:class:`HubTarget` (a dataset repo, through ``huggingface_hub.HfApi``).
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from arena.errors import ArenaError, SyncError
from arena.journal import Journal, _count_lines, journal_name, read_journal
from arena.storage import Store
from arena.storage.campaigns import CampaignStore

__all__ = ["FolderTarget", "HubTarget", "Restored", "Sync", "SyncError", "SyncTarget"]

log = logging.getLogger(__name__)

JOURNAL_DIR = "journal"
SNAPSHOT = "snapshot/arena.sqlite3"
MANIFEST = "snapshot/manifest.json"
_PATTERNS = [f"{JOURNAL_DIR}/*.jsonl", SNAPSHOT, MANIFEST]
# Seconds a last push gets even when a shutdown deadline has passed: the local snapshot is already
# written by then, and a push this short either goes through or costs little.
MIN_LAST_PUSH = 1.0


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

    def stop(self, timeout: float) -> bool:
        """A last push, then no more; returns within ``timeout`` seconds, True if the push went through."""
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


def _bounded(
    call: Callable[[], None], timeout: float, errors: tuple[type[BaseException], ...] = (OSError, ArenaError)
) -> tuple[bool, BaseException | None]:
    """Run ``call`` in a daemon thread for at most ``timeout`` seconds: (finished without error, its error)."""
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except errors as e:
            failure.append(e)
        finally:
            done.set()

    threading.Thread(target=run, name="arena-sync-last-push", daemon=True).start()
    if not done.wait(timeout):
        return False, None
    return (False, failure[0]) if failure else (True, None)


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

    def stop(self, timeout: float = 6.0) -> bool:
        self._stopping.set()
        ok, error = _bounded(self.push_now, timeout)
        if not ok:
            log.error(
                "sync: the last push to %s %s; the votes since the previous push are only in %s.",
                self.path,
                f"failed ({error})" if error else f"did not finish within {timeout:.0f} s",
                self._folder,
            )
        return ok

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


@dataclass(frozen=True)
class Retry:
    """How long a Hub call is retried after a transient error (429, 5xx, timeout, network error).

    Waits grow ``first``, ``first * factor``, ... up to ``longest``; no new try starts once
    ``budget`` seconds have passed since the first. A token without write access (401/403) or a
    repo that cannot be found is not transient: it is raised at once.
    """

    first: float = 1.0
    factor: float = 2.0
    longest: float = 30.0
    budget: float = 120.0


@dataclass(frozen=True)
class HubTimeouts:
    """Seconds for one HTTP request to the Hub (huggingface_hub's own default is no timeout at all)."""

    connect: float = 10.0
    read: float = 60.0


_TRANSIENT = frozenset({408, 425, 429, 500, 502, 503, 504})


def _status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _is_transient(e: BaseException) -> bool:
    import httpx2

    status = _status(e)
    if status is not None:
        return status in _TRANSIENT
    return isinstance(e, (httpx2.TransportError, OSError))


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What a Hub call may raise besides programming errors: HTTP answers, httpx2 network errors, OS errors."""
    import httpx2

    return (httpx2.HTTPError, httpx2.InvalidURL, OSError, ValueError)


def _install_timeouts(timeouts: HubTimeouts) -> None:
    """Give every request huggingface_hub sends a timeout (process-wide: only this module uses the library).

    The library's client has none, and some of its calls pass ``timeout=None`` explicitly, which
    overrides a client default; so the limit is applied in the transport, where every request passes.
    """
    import httpx2
    from huggingface_hub.utils import _http

    limits = {"connect": timeouts.connect, "read": timeouts.read, "write": timeouts.read, "pool": timeouts.connect}

    class TimeoutTransport(httpx2.HTTPTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            given = request.extensions.get("timeout") or {}
            request.extensions["timeout"] = {k: given.get(k) or v for k, v in limits.items()}
            return super().handle_request(request)

    def factory() -> httpx2.Client:
        return httpx2.Client(
            transport=TimeoutTransport(),
            event_hooks={"request": [_http.hf_request_event_hook]},
            follow_redirects=True,
        )

    _http.set_client_factory(factory)


class HubTarget:
    """A Hugging Face dataset repo, written with ``HfApi.create_commit`` and read file by file.

    Start-up checks the token can write to the repo (creating it, private, if missing): an arena
    that starts with a read-only token would collect votes it can never push. Transient errors
    (429, 5xx, timeouts, network errors) are retried with backoff (:class:`Retry`) at start-up and
    on the next scheduled push later. :meth:`stop` returns within its timeout whatever the Hub
    does; what a last push could not send stays in the local sync folder.

    Parameters
    ----------
    repo_id
        ``owner/name`` of the dataset repo.
    token
        A Hugging Face token with write access to it (``HF_TOKEN``).
    path_in_repo
        Folder inside the repo ("" for its root).
    every
        Minutes between pushes.
    endpoint
        The Hub's URL (``HF_ENDPOINT``; None: huggingface.co or what the library reads).
    retry, timeouts
        See :class:`Retry` and :class:`HubTimeouts`.
    """

    def __init__(
        self,
        repo_id: str,
        token: str,
        *,
        path_in_repo: str = "",
        every: float = 5.0,
        endpoint: str | None = None,
        retry: Retry = Retry(),
        timeouts: HubTimeouts = HubTimeouts(),
    ) -> None:
        self.repo_id = repo_id
        self.path_in_repo = path_in_repo.strip("/")
        self.every = every
        self.endpoint = endpoint or None
        self.retry = retry
        self.timeouts = timeouts
        self._token = token
        self._lock = threading.Lock()
        self._push_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._folder: Path | None = None
        self._before_push: Callable[[], None] = lambda: None
        self._pushed: dict[str, tuple[int, int]] = {}  # file -> (size, mtime_ns) in the last good push
        self._api_object: Any = None

    def __repr__(self) -> str:  # never shows the token
        return f"HubTarget({self.repo_id!r}, path_in_repo={self.path_in_repo!r}, every={self.every})"

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    @property
    def _api(self) -> Any:
        if self._api_object is None:
            from huggingface_hub import HfApi

            _install_timeouts(self.timeouts)
            self._api_object = HfApi(endpoint=self.endpoint, token=self._token, library_name="llm-arena")
        return self._api_object

    def _in_repo(self, rel: str) -> str:
        return f"{self.path_in_repo}/{rel}" if self.path_in_repo else rel

    def _retrying(self, what: str, call: Callable[[], Any]) -> Any:
        """``call()``, retried after transient errors within the retry budget; other errors raised at once."""
        started = time.monotonic()
        wait = self.retry.first
        attempt = 1
        while True:
            try:
                return call()
            except _hub_errors() as e:
                spent = time.monotonic() - started
                if not _is_transient(e) or spent + wait > self.retry.budget or self._stopping.is_set():
                    raise
                log.warning(
                    "sync: %s on %s failed (%s); try %d again in %.1f s",
                    what,
                    self.repo_id,
                    _describe_hub_error(e),
                    attempt + 1,
                    wait,
                )
                if self._stopping.wait(wait):
                    raise
                wait = min(wait * self.retry.factor, self.retry.longest)
                attempt += 1

    # -- start-up -------------------------------------------------------------------------------

    def pull(self, dest: Path) -> Path | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

        prefix = self.path_in_repo
        try:
            listing = self._retrying(
                "listing files",
                lambda: [
                    f
                    for f in self._api.list_repo_tree(
                        self.repo_id, path_in_repo=prefix or None, recursive=True, repo_type="dataset"
                    )
                    if hasattr(f, "size") and hasattr(f, "blob_id")
                ],
            )
        except (RepositoryNotFoundError, EntryNotFoundError):
            return None  # first start: start() creates the repo
        except _hub_errors() as e:
            raise SyncError(_hub_message(self.repo_id, "read", e)) from None
        root = dest / prefix if prefix else dest
        sizes = {f.path[len(prefix) + 1 :] if prefix else f.path: int(f.size) for f in listing}
        wanted = [rel for rel in sizes if any(Path(rel).match(p) for p in _PATTERNS)]

        def download(rel: str) -> None:
            self._retrying(
                f"downloading {rel}",
                lambda: hf_hub_download(
                    self.repo_id,
                    self._in_repo(rel),
                    repo_type="dataset",
                    local_dir=dest,
                    token=self._token,
                    endpoint=self.endpoint,
                ),
            )

        try:
            if MANIFEST in sizes:
                download(MANIFEST)
            covered = _read_manifest(root / MANIFEST).get("journal_bytes", {}) if MANIFEST in sizes else {}
            for rel in wanted:
                if rel == MANIFEST:
                    continue
                # A journal file the snapshot already holds whole is not downloaded: restore reads
                # the snapshot plus the journals' tails, however many votes came before.
                if rel.startswith(f"{JOURNAL_DIR}/") and SNAPSHOT in sizes and covered.get(rel) == sizes[rel]:
                    continue
                download(rel)
        except _hub_errors() as e:
            raise SyncError(_hub_message(self.repo_id, "read", e)) from None
        return root if wanted else None

    def start(self, folder: Path, before_push: Callable[[], None]) -> None:
        """Make sure the repo exists and the token can write to it, then push every ``every`` minutes.

        Raises
        ------
        SyncError
            The token cannot write to the repo, the repo cannot be created, or the Hub kept failing.
        """
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            try:
                self._retrying("reading the repo", lambda: self._api.repo_info(self.repo_id, repo_type="dataset"))
            except RepositoryNotFoundError:
                self._retrying(
                    "creating the repo",
                    lambda: self._api.create_repo(self.repo_id, repo_type="dataset", private=True, exist_ok=True),
                )
                log.info("sync: created the private dataset repo %s", self.repo_id)
            # create_repo(exist_ok=True) falls back to a read when the token may not create: ask
            # about writing explicitly, or a read-only token would fail only at the first push.
            self._retrying(
                "checking write access",
                lambda: self._api.auth_check(self.repo_id, repo_type="dataset", write=True),
            )
        except _hub_errors() as e:
            raise SyncError(_hub_message(self.repo_id, "write", e)) from None
        self._folder, self._before_push = folder, before_push
        self._thread = threading.Thread(target=self._run, name="arena-sync-hub", daemon=True)
        self._thread.start()

    # -- pushing --------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.wait(self.every * 60):
            try:
                self.push_now()
            except _hub_errors() as e:
                log.error("sync: %s Retrying in %.1f min.", _hub_message(self.repo_id, "push", e), self.every)
            except ArenaError as e:
                log.error("sync: push to %s failed (%s); retrying in %.1f min", self.repo_id, e, self.every)

    def _changed_files(self) -> dict[str, tuple[bytes, tuple[int, int]]]:
        """What changed since the last good push, read whole under the lock (journal lines are whole)."""
        assert self._folder is not None
        out: dict[str, tuple[bytes, tuple[int, int]]] = {}
        with self._lock:
            rels = sorted(p.relative_to(self._folder).as_posix() for p in self._folder.glob(f"{JOURNAL_DIR}/*.jsonl"))
            rels += [rel for rel in (SNAPSHOT, MANIFEST) if (self._folder / rel).exists()]
            for rel in rels:
                st = (self._folder / rel).stat()
                stamp = (st.st_size, st.st_mtime_ns)
                if self._pushed.get(rel) != stamp:
                    out[rel] = ((self._folder / rel).read_bytes(), stamp)
        return out

    def push_now(self) -> None:
        """One push of what changed (``before_push`` first), retried within the retry budget.

        Raises
        ------
        httpx2.HTTPError, OSError
            The push failed (the files stay in the local folder and go with the next push).
        """
        from huggingface_hub import CommitOperationAdd

        if self._folder is None:
            return
        with self._push_lock:
            self._before_push()
            changed = self._changed_files()
            if not changed:
                return
            # Snapshot and manifest travel in one commit: the repo never shows one without the other.
            operations = [CommitOperationAdd(self._in_repo(rel), content) for rel, (content, _) in changed.items()]
            self._retrying(
                "pushing",
                lambda: self._api.create_commit(
                    self.repo_id,
                    repo_type="dataset",
                    operations=operations,
                    commit_message=f"arena sync: {len(operations)} file(s)",
                ),
            )
            for rel, (_, stamp) in changed.items():
                self._pushed[rel] = stamp

    def stop(self, timeout: float = 6.0) -> bool:
        """A last push, given at most ``timeout`` seconds; True if it went through.

        Never blocks longer: a Hub that hangs or keeps answering 429 costs the last push only
        (its files stay in the local sync folder), never the process's orderly exit. There is no
        other exit-time push.
        """
        self._stopping.set()  # also ends retry waits and the scheduled pushes
        ok, error = _bounded(self.push_now, timeout, (*_hub_errors(), ArenaError))
        if not ok:
            log.error(
                "sync: %s The votes since the previous push are only in %s (lost if this disk is wiped).",
                _hub_message(self.repo_id, "push", error)
                if error
                else f"The last push to {self.repo_id} did not finish within {timeout:.0f} s.",
                self._folder,
            )
        return ok


def _describe_hub_error(e: BaseException) -> str:
    status = _status(e)
    if status is not None:
        return f"HTTP {status}"
    return f"{type(e).__name__}: {_first_line(e)}"


def _hub_message(repo_id: str, doing: str, e: BaseException) -> str:
    """One plain sentence (or two) on what failed and what to do; no traceback."""
    status = _status(e)
    if status in (401, 403) and doing in ("write", "push"):
        return (
            f"HF_TOKEN cannot write to the dataset repo {repo_id} (HTTP {status}): the arena would collect votes "
            "it can never save. Give HF_TOKEN write access to that repo (a write token, or a fine-grained token "
            "with write permission on it), then restart."
        )
    if status in (401, 403, 404):
        return (
            f"Cannot read the dataset repo {repo_id} (HTTP {status}). Check ARENA_DATASET_REPO and that HF_TOKEN "
            "may read and write it."
        )
    what = {"read": "download", "write": "prepare", "push": "push to"}[doing]
    return (
        f"Could not {what} the dataset repo {repo_id} ({_describe_hub_error(e)}), also after retrying. "
        "The Hub may be down or rate-limiting: the arena does not start without its votes; try again later."
        if doing != "push"
        else f"Could not push to the dataset repo {repo_id} ({_describe_hub_error(e)})."
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


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

    The database records what it holds of the sync folder (:meth:`Store.sync_marks`: lines per
    journal file, snapshots merged), so a restart replays only what the database lacks: with a
    persistent disk, nothing but the previous process's last lines; on a wiped disk, the newest
    snapshot plus the journal lines written after it.

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
    mark_every
        Minutes between records of how much of this process's journal the database holds (when
        there is no target; with one, each push records it).
    shutdown_timeout
        Seconds :meth:`close` gives the last push (the local snapshot is taken first, always).
    """

    def __init__(
        self,
        store: Store,
        folder: str | Path,
        target: SyncTarget | None = None,
        *,
        snapshot_every: float = 60.0,
        mark_every: float = 5.0,
        shutdown_timeout: float = 6.0,
        clock: Callable[[], float] = time.monotonic,
        max_reason_chars: int | None = None,
    ) -> None:
        self.store = store
        self.max_reason_chars = max_reason_chars
        self.folder = Path(folder)
        self.target = target
        self.snapshot_every = snapshot_every
        self.mark_every = mark_every
        self.shutdown_timeout = shutdown_timeout
        self._clock = clock
        self.journal: Journal | None = None
        self._covered: dict[str, int] = {}
        self._covered_bytes: dict[str, int] = {}
        self._last_snapshot: tuple[float, int] | None = None  # (clock, journal lines) of the last snapshot
        self._snapshots = store.engine.dialect.name == "sqlite"
        self._stop_marking = threading.Event()
        self._marker: threading.Thread | None = None

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
        marks = self.store.sync_marks()
        with tempfile.TemporaryDirectory(prefix="arena-restore-") as tmp:
            pulled = self.target.pull(Path(tmp)) if self.target is not None else None
            manifest: dict[str, Any] = {}
            if pulled is not None and (pulled / SNAPSHOT).exists():
                manifest = _read_manifest(pulled / MANIFEST)
                snapshot_mark = f"snapshot/{manifest.get('id')}"
                if manifest.get("id") and marks.get(snapshot_mark):
                    log.info("restore: the database already holds snapshot %s", manifest["id"])
                else:
                    self._merge_snapshot(pulled / SNAPSHOT, result)
                    if manifest.get("id"):
                        marks[snapshot_mark] = 1
                result.snapshot = True
            held: dict[str, int] = {k: int(v) for k, v in manifest.get("journal_lines", {}).items()}
            held_bytes: dict[str, int] = {k: int(v) for k, v in manifest.get("journal_bytes", {}).items()}
            journals: dict[str, Path] = {}
            for root in (pulled, self.folder):
                if root is None:
                    continue
                for path in root.glob(f"{JOURNAL_DIR}/*.jsonl"):
                    rel = path.relative_to(root).as_posix()
                    # The longer copy of a file wins (the local one may hold lines never pushed).
                    if rel not in journals or path.stat().st_size > journals[rel].stat().st_size:
                        journals[rel] = path
            for rel, path in sorted(journals.items()):
                size = path.stat().st_size
                self._covered_bytes[rel] = size
                if marks.get(f"bytes:{rel}") == size:
                    # The database holds this file whole: not even read (restore time stays flat).
                    result.covered[rel] = marks.get(rel, 0)
                    continue
                skip = max(held.get(rel, 0), marks.get(rel, 0))
                for batch in read_journal(path, skip=skip, max_reason_chars=self.max_reason_chars):
                    merged = self.store.merge_battles(batch.battles, batch.votes, batch.messages)
                    result.battles += merged.battles
                    result.votes += merged.votes
                    if batch.campaign_votes:
                        result.campaign_votes += CampaignStore(self.store).merge_votes(batch.campaign_votes)
                    result.journal_lines += len(batch)
                result.covered[rel] = max(skip, _count_lines(path))
                marks[f"bytes:{rel}"] = size
            for rel, lines in held.items():  # journals the snapshot holds whole were not downloaded
                if rel not in result.covered:
                    result.covered[rel] = lines
                    self._covered_bytes[rel] = held_bytes.get(rel, 0)
        self._covered = dict(result.covered)
        self.store.set_sync_marks(
            {**{k: v for k, v in marks.items() if k.startswith(("snapshot/", "bytes:"))}, **result.covered}
        )
        log.info(
            "restore: snapshot %s, %d journal events replayed, %d battles and %d votes added",
            "merged" if result.battles and result.snapshot else ("present" if result.snapshot else "absent"),
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
        """Start pushing (if there is a target) and open this process's journal; returns the journal.

        Raises
        ------
        SyncError
            The target cannot be written (e.g. a token without write access).
        """
        (self.folder / JOURNAL_DIR).mkdir(parents=True, exist_ok=True)
        lock = None
        if self.target is not None:
            self.target.start(self.folder, self._before_push)
            lock = self.target.lock
        self.journal = Journal(self.folder / JOURNAL_DIR / journal_name(), self.store, lock=lock)
        if self.target is None and self.mark_every > 0:
            self._marker = threading.Thread(target=self._mark_periodically, name="arena-sync-marks", daemon=True)
            self._marker.start()
        return self.journal

    def _mark_periodically(self) -> None:
        while not self._stop_marking.wait(self.mark_every * 60):
            self._mark()

    def _mark(self) -> None:
        """Record that the database holds every line of this process's journal written so far."""
        journal = self.journal
        if journal is None:
            return
        try:
            # Each line is written after its database commit, so every line in the file, counted or
            # not yet, is in the database: the size read after the count may only be larger.
            rel = f"{JOURNAL_DIR}/{journal.path.name}"
            lines = journal.lines
            size = journal.path.stat().st_size if journal.path.exists() else 0
            self.store.set_sync_marks({rel: lines, f"bytes:{rel}": size})
        except (ArenaError, OSError) as e:  # only costs replaying those lines at the next start
            log.warning("sync: could not record the journal position (%s)", e)

    def close(self, *, deadline: float | None = None) -> bool:
        """Write what is queued, take a last local snapshot, push once more (bounded), stop.

        Returns whether the last push went through (True without a target). Returns within
        about ``shutdown_timeout`` seconds plus the local snapshot's time, whatever the target does.

        Parameters
        ----------
        deadline
            A ``time.monotonic()`` by which the last push must have ended (the host kills the
            process soon after: Docker, compose and Spaces ~10 s after SIGTERM). The push then gets
            what is left of it once the snapshot is written, at most ``shutdown_timeout`` and at
            least :data:`MIN_LAST_PUSH` seconds.
        """
        self._stop_marking.set()
        if self.journal is not None:
            self.journal.close()
        self._mark()
        if self.target is None:
            return True
        if self._snapshots and self._changed():
            try:
                self.take_snapshot()  # local first: a wiped-disk host loses it, a persistent disk keeps it
            except ArenaError as e:
                log.error("sync: the last snapshot could not be written (%s); the journal still holds every vote", e)
        timeout = self.shutdown_timeout
        if deadline is not None:  # what the steps before (page, snapshot) left of the host's grace period
            timeout = max(MIN_LAST_PUSH, min(timeout, deadline - time.monotonic()))
        return self.target.stop(timeout)

    def _changed(self) -> bool:
        lines = self.journal.lines if self.journal else 0
        return self._last_snapshot is None or lines != self._last_snapshot[1]

    def _before_push(self) -> None:
        self._mark()
        if not self._snapshots or not self._changed():
            return
        if self._last_snapshot is not None and self._clock() - self._last_snapshot[0] < self.snapshot_every * 60:
            return
        self.take_snapshot()

    def take_snapshot(self) -> None:
        """Write snapshot/arena.sqlite3 and its manifest into the sync folder (SQLite only)."""
        journal = self.journal
        lines, size = 0, 0
        if journal is not None and self.target is not None:
            with self.target.lock:
                # Every line written so far was committed before: the copy holds it.
                lines = journal.lines
                size = journal.path.stat().st_size if journal.path.exists() else 0
        elif journal is not None:
            lines = journal.lines
            size = journal.path.stat().st_size if journal.path.exists() else 0
        (self.folder / SNAPSHOT).parent.mkdir(parents=True, exist_ok=True)
        snapshot_id = secrets.token_hex(8)
        # Marked before the copy, so the copy carries the mark: a database restored from it knows it.
        self.store.set_sync_marks({f"snapshot/{snapshot_id}": 1})
        self.store.snapshot(self.folder / SNAPSHOT)
        held = dict(self._covered)
        held_bytes = dict(self._covered_bytes)
        if journal is not None:
            held[f"{JOURNAL_DIR}/{journal.path.name}"] = lines
            held_bytes[f"{JOURNAL_DIR}/{journal.path.name}"] = size
        manifest = {
            "id": snapshot_id,
            "taken_at": datetime.now(UTC).isoformat(),
            "journal_lines": held,
            "journal_bytes": held_bytes,
        }
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
        return HubTarget(
            dataset_repo, token, path_in_repo=dataset_path, every=every, endpoint=environ.get("HF_ENDPOINT") or None
        )
    return None
