"""The append-only JSONL journal of every stored battle and vote, and reading it back as records.

One line per event, written after the database committed it (the service's ``journal`` hook):

``{"event": "battle", "battle_id", "model_a", "model_b", "mode", "pool", "judge", "language",
"propensity", "tstamp"}`` and ``{"event": "vote", "battle_id", "winner", "reason", "flags", "tstamp",
"messages": [...]}``. A vote line carries the battle's whole conversation (read from the database
when the line is written), so battles plus votes rebuild the ratings and the voted conversations.
Messages of battles nobody voted on are only in the database (and its snapshots).

Lines are written by one background thread, so the hook never blocks the event loop on disk or
database reads. Each process writes its own file (``<UTC start>-<random>.jsonl``): restarts and
replicas never append to the same file.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from arena.campaigns.model import CampaignVote
from arena.domain import BattleRecord, MessageRecord, VoteRecord
from arena.errors import StorageError, SyncError
from arena.storage import Store

__all__ = ["Journal", "JournalBatch", "SyncError", "journal_name", "message_json", "read_journal"]

log = logging.getLogger(__name__)

_STOP = object()


def journal_name(now: datetime | None = None) -> str:
    """A file name no other process picks: its UTC start time and 48 random bits."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(6)}.jsonl"


class Journal:
    """The service's ``journal`` hook: appends each event to ``path`` from a background thread.

    Parameters
    ----------
    path
        The JSONL file (created with its folder; appended to if it exists).
    store
        Where a vote's conversation is read from when its line is written; None leaves it out.
    lock
        Held while a line is written, so a pusher that takes the same lock sees whole lines only.
    """

    def __init__(self, path: str | Path, store: Store | None = None, *, lock: threading.Lock | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._store = store
        self._lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lines = _count_lines(self.path)
        self._file = self.path.open("a", encoding="utf-8")
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="arena-journal", daemon=True)
        self._thread.start()

    def __call__(self, event: dict[str, object]) -> None:
        if self._closed:
            log.error("journal closed: %s event of battle %s not written", event.get("event"), event.get("battle_id"))
            return
        self._queue.put(dict(event))

    @property
    def lines(self) -> int:
        """Whole lines in the file so far (read under ``lock`` for a count that matches the file)."""
        return self._lines

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every event handed over so far is on disk."""
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            log.error("journal: events still queued after %.0f s", timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread and close the file."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._file.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            assert isinstance(item, dict)
            try:
                self._write(item)
            except (OSError, StorageError, TypeError, ValueError) as e:
                # The vote is safe in the database; only this copy of it is missing.
                log.error("journal: could not write a %s event (%s: %s)", item.get("event"), type(e).__name__, e)

    def _write(self, event: dict[str, Any]) -> None:
        # The service hands a vote over with the conversation it stored (message_json); an event
        # without one gets it from the database.
        if event.get("event") == "vote" and "messages" not in event and self._store is not None:
            event["messages"] = [message_json(m) for m in self._store.messages(str(event["battle_id"]))]
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            self._lines += 1


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for line in f if line.endswith(b"\n"))


def message_json(m: MessageRecord) -> dict[str, Any]:
    """A stored message as a vote line carries it (see :func:`arena.storage.as_stored`)."""
    return {
        "side": m.side,
        "turn": m.turn,
        "role": m.role,
        "content": m.content,
        "finish_reason": m.finish_reason,
        "generated_tokens": m.generated_tokens,
        "ttft_ms": m.ttft_ms,
        "total_ms": m.total_ms,
        "error": m.error,
    }


@dataclass
class JournalBatch:
    """Records read back from journal lines, ready for :meth:`arena.storage.Store.merge_battles`."""

    battles: list[BattleRecord] = field(default_factory=list)
    votes: list[VoteRecord] = field(default_factory=list)
    messages: dict[str, list[MessageRecord]] = field(default_factory=dict)
    campaign_votes: list[CampaignVote] = field(default_factory=list)  # evaluation campaigns' judgments

    def __len__(self) -> int:
        return len(self.battles) + len(self.votes) + len(self.campaign_votes)


def read_journal(
    path: str | Path, *, skip: int = 0, batch_size: int = 1000, max_reason_chars: int | None = None
) -> Iterator[JournalBatch]:
    """The events of a journal file after its first ``skip`` lines, ``batch_size`` lines at a time.

    A last line without its newline (a copy taken mid-write) is ignored. A vote's reason longer
    than ``max_reason_chars`` is trimmed as the live arena trims it (journals written before the
    journal kept the trimmed text held the visitor's whole text).

    Raises
    ------
    SyncError
        A complete line is not a journal event; the message names the file and line.
    """
    path = Path(path)
    batch = JournalBatch()
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if number <= skip:
                continue
            if not raw.endswith(b"\n"):
                log.warning("%s:%d: ignoring an unfinished last line", path, number)
                break
            try:
                _add_event(batch, json.loads(raw), max_reason_chars)
            except (ValueError, KeyError, TypeError) as e:
                raise SyncError(
                    f"{path}:{number}: not a journal event ({type(e).__name__}: {e}). "
                    "Fix or remove that line, then start again."
                ) from None
            if number % batch_size == 0:
                yield batch
                batch = JournalBatch()
    if len(batch):
        yield batch


def _time(text: Any) -> datetime:
    value = datetime.fromisoformat(str(text))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _add_event(batch: JournalBatch, event: dict[str, Any], max_reason_chars: int | None = None) -> None:
    kind = event["event"]
    if kind == "battle":
        batch.battles.append(
            BattleRecord(
                id=event["battle_id"],
                model_a=event["model_a"],
                model_b=event["model_b"],
                mode=event["mode"],
                pool=event["pool"],
                created_at=_time(event["tstamp"]),
                client_hash=event["judge"],
                language=event.get("language"),
                propensity=event.get("propensity"),
                uniform_propensity=event.get("uniform_propensity"),
            )
        )
    elif kind == "vote":
        battle_id = event["battle_id"]
        batch.votes.append(
            VoteRecord(
                battle_id=battle_id,
                winner=event["winner"],
                created_at=_time(event["tstamp"]),
                flags=tuple(event.get("flags") or ()),
                reason=_trimmed(event.get("reason"), max_reason_chars),
            )
        )
        if event.get("messages"):
            batch.messages[battle_id] = [MessageRecord(battle_id=battle_id, **m) for m in event["messages"]]
    elif kind == "campaign_vote":
        batch.campaign_votes.append(_campaign_vote(event))
    else:
        raise ValueError(f"unknown event {kind!r}")


def _trimmed(reason: Any, limit: int | None) -> str | None:
    if not reason:
        return None
    text = str(reason)
    return (text.strip()[:limit] or None) if limit is not None else text


def _campaign_vote(event: dict[str, Any]) -> CampaignVote:
    return CampaignVote(
        id=event["id"],
        campaign_id=event["campaign_id"],
        prompt_id=event["prompt_id"],
        answer_a=event["answer_a"],
        answer_b=event["answer_b"],
        model_a=event["model_a"],
        model_b=event["model_b"],
        setting=event["setting"],
        language=event["language"],
        category=event["category"],
        winner=event["winner"],
        client_hash=event["judge"],
        shown_at=_time(event["shown_at"]),
        created_at=_time(event["tstamp"]),
        flags=tuple(event.get("flags") or ()),
        reason=event.get("reason"),
        propensity=event.get("propensity"),
        uniform_propensity=event.get("uniform_propensity"),
        turns=int(event.get("turns") or 1),
    )
