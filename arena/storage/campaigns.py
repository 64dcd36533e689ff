"""CampaignStore: every read and write of evaluation campaigns, over the arena's database engine."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite

from arena.campaigns.model import Campaign, CampaignAnswer, CampaignPrompt, CampaignVote
from arena.domain import WINNERS, PairCount, Winner
from arena.errors import ConfigError, StorageError, VoteRejected
from arena.messages import Message
from arena.storage.store import DEFAULT_EXCLUDED_FLAGS, Store, _clean_text, _describe, _join_flags, _split_flags
from arena.storage.tables import CampaignAnswerRow, CampaignPromptRow, CampaignRow, CampaignVoteRow

__all__ = ["CampaignStore"]

_CAMPAIGNS = cast(sa.Table, CampaignRow.__table__)
_PROMPTS = cast(sa.Table, CampaignPromptRow.__table__)
_ANSWERS = cast(sa.Table, CampaignAnswerRow.__table__)
_VOTES = cast(sa.Table, CampaignVoteRow.__table__)


def _now() -> datetime:
    return datetime.now(UTC)


def _answer_values(a: CampaignAnswer) -> dict[str, Any]:
    return {
        "id": a.id,
        "campaign_id": a.campaign_id,
        "prompt_id": a.prompt_id,
        "candidate": a.candidate,
        "setting": a.setting,
        "run": a.run,
        "turns": json.dumps([_clean_text(t) for t in a.turns], ensure_ascii=False),
        "rendered_prompt": _clean_text(a.rendered_prompt),
        "params": json.dumps(a.params, sort_keys=True),
        "finish_reason": a.finish_reason,
        "generated_tokens": a.generated_tokens,
        "ttft_ms": a.ttft_ms,
        "total_ms": a.total_ms,
        "error": _clean_text(a.error),
        "source": a.source,
        "created_at": a.created_at or _now(),
    }


def _answer_record(r: sa.RowMapping) -> CampaignAnswer:
    return CampaignAnswer(
        campaign_id=r["campaign_id"],
        prompt_id=r["prompt_id"],
        candidate=r["candidate"],
        turns=tuple(json.loads(r["turns"])),
        setting=r["setting"],
        run=r["run"],
        rendered_prompt=r["rendered_prompt"],
        params=json.loads(r["params"] or "{}"),
        finish_reason=r["finish_reason"],
        generated_tokens=r["generated_tokens"],
        ttft_ms=r["ttft_ms"],
        total_ms=r["total_ms"],
        error=r["error"],
        source=r["source"],
        created_at=r["created_at"],
    )


def _vote_values(v: CampaignVote) -> dict[str, Any]:
    return {
        "id": v.id,
        "campaign_id": v.campaign_id,
        "prompt_id": v.prompt_id,
        "answer_a": v.answer_a,
        "answer_b": v.answer_b,
        "pair_key": v.pair_key,
        "model_a": v.model_a,
        "model_b": v.model_b,
        "setting": v.setting,
        "language": v.language,
        "category": v.category,
        "turns": v.turns,
        "winner": v.winner,
        "flags": _join_flags(v.flags),
        "reason": _clean_text(v.reason),
        "client_hash": v.client_hash,
        "shown_at": v.shown_at,
        "created_at": v.created_at,
        "propensity": v.propensity,
        "uniform_propensity": v.uniform_propensity,
    }


def _vote_record(r: sa.RowMapping) -> CampaignVote:
    return CampaignVote(
        id=r["id"],
        campaign_id=r["campaign_id"],
        prompt_id=r["prompt_id"],
        answer_a=r["answer_a"],
        answer_b=r["answer_b"],
        model_a=r["model_a"],
        model_b=r["model_b"],
        setting=r["setting"],
        language=r["language"],
        category=r["category"],
        winner=cast(Winner, r["winner"]),
        client_hash=r["client_hash"],
        shown_at=r["shown_at"],
        created_at=r["created_at"],
        flags=_split_flags(r["flags"]),
        reason=r["reason"],
        propensity=r["propensity"],
        uniform_propensity=r["uniform_propensity"],
        turns=r["turns"],
    )


class CampaignStore:
    """Campaigns, their prompts, answers and votes in the arena's database (the same engine as ``store``).

    Like :class:`~arena.storage.Store`: synchronous, thread-safe, each write one transaction, and
    :class:`~arena.errors.StorageError` when the database fails.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._engine = store.engine

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except exc.SQLAlchemyError as e:
            raise StorageError(f"Database error while {what} ({self.store.url}): {_describe(e)}") from e

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(arena_write=True)
            with conn.begin():
                yield conn

    @staticmethod
    def _insert_new(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
        """INSERT that skips rows whose key is stored: processes starting together may insert the same rows."""
        if not rows:
            return
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(insert(table).on_conflict_do_nothing(index_elements=keys), rows)

    # -- campaigns and prompts ------------------------------------------------------------------

    def save_campaign(
        self,
        campaign: Campaign,
        prompts: Sequence[CampaignPrompt],
        *,
        reworded: Literal["refuse", "drop"] = "refuse",
        drop_answers: Collection[str] = (),
    ) -> int:
        """Create or update a campaign and its prompts; returns how many prompts were added or changed.

        Prompts are matched by id: new ones are added, changed ones updated, none removed (votes refer to them).
        A prompt whose words changed (its turns or system prompt, not its category or language) no longer
        matches its stored answers: with ``reworded="drop"`` those answers are deleted (to be generated or
        imported again); with ``"refuse"`` nothing is saved. The answers ``drop_answers`` names (made under
        settings that changed: :func:`arena.campaigns.generate.stale_answers`) are deleted in the same
        transaction.

        Raises
        ------
        ConfigError
            A reworded prompt has stored answers and ``reworded`` is ``"refuse"``.
        """
        changed = 0
        rewritten: list[str] = []
        with self._guard("saving a campaign"), self._write() as conn:
            row = {
                "title": campaign.title,
                "description": campaign.description,
                "spec": campaign.spec_json(),
            }
            self._insert_new(conn, _CAMPAIGNS, [{"id": campaign.id, "created_at": _now(), **row}], ["id"])
            conn.execute(sa.update(_CAMPAIGNS).where(_CAMPAIGNS.c.id == campaign.id).values(**row))
            stored = {
                r["prompt_id"]: r
                for r in conn.execute(sa.select(_PROMPTS).where(_PROMPTS.c.campaign_id == campaign.id)).mappings()
            }
            for position, p in enumerate(prompts):
                values = {
                    "position": position,
                    "category": p.category,
                    "language": p.language,
                    "system": _clean_text(p.system),
                    "turns": json.dumps([_clean_text(t) for t in p.turns], ensure_ascii=False),
                }
                old = stored.get(p.id)
                if old is None:
                    self._insert_new(
                        conn,
                        _PROMPTS,
                        [{"campaign_id": campaign.id, "prompt_id": p.id, **values}],
                        ["campaign_id", "prompt_id"],
                    )
                    changed += 1
                elif any(old[k] != v for k, v in values.items()):
                    if old["system"] != values["system"] or old["turns"] != values["turns"]:
                        rewritten.append(p.id)
                    conn.execute(
                        sa.update(_PROMPTS)
                        .where(_PROMPTS.c.campaign_id == campaign.id, _PROMPTS.c.prompt_id == p.id)
                        .values(**values)
                    )
                    changed += 1
            if rewritten:
                stale = sa.and_(_ANSWERS.c.campaign_id == campaign.id, _ANSWERS.c.prompt_id.in_(rewritten))
                answered = sorted(conn.execute(sa.select(_ANSWERS.c.prompt_id).where(stale).distinct()).scalars())
                if answered and reworded == "refuse":
                    n = conn.execute(sa.select(sa.func.count()).select_from(_ANSWERS).where(stale)).scalar_one()
                    listed = ", ".join(answered[:5]) + (" ..." if len(answered) > 5 else "")
                    raise ConfigError(
                        f"campaign {campaign.id}: the words of prompt(s) {listed} changed, and {n} stored answers "
                        "answer the old words; nothing was saved. Give a changed prompt a new id (its votes stay "
                        "with the old one), or pass --drop-stale-answers to delete those answers and generate "
                        "or import them again."
                    )
                conn.execute(sa.delete(_ANSWERS).where(stale))
            self._delete_answers(conn, campaign.id, drop_answers)
        return changed

    @staticmethod
    def _delete_answers(conn: sa.Connection, campaign_id: str, ids: Collection[str]) -> None:
        ids = sorted(ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            conn.execute(sa.delete(_ANSWERS).where(_ANSWERS.c.campaign_id == campaign_id, _ANSWERS.c.id.in_(chunk)))

    def delete_answers(self, campaign_id: str, ids: Collection[str]) -> None:
        """Delete these answers of a campaign (``generate`` then makes them again); one transaction."""
        with self._guard("deleting answers"), self._write() as conn:
            self._delete_answers(conn, campaign_id, ids)

    def campaign(self, campaign_id: str) -> Campaign | None:
        with self._guard("reading a campaign"), self._engine.connect() as conn:
            r = conn.execute(sa.select(_CAMPAIGNS).where(_CAMPAIGNS.c.id == campaign_id)).mappings().first()
        return None if r is None else Campaign.from_row(r["id"], r["title"], r["description"], r["spec"])

    def campaigns(self) -> list[Campaign]:
        with self._guard("reading campaigns"), self._engine.connect() as conn:
            rows = conn.execute(sa.select(_CAMPAIGNS).order_by(_CAMPAIGNS.c.created_at, _CAMPAIGNS.c.id)).mappings()
            return [Campaign.from_row(r["id"], r["title"], r["description"], r["spec"]) for r in rows]

    def prompts(self, campaign_id: str) -> list[CampaignPrompt]:
        stmt = sa.select(_PROMPTS).where(_PROMPTS.c.campaign_id == campaign_id).order_by(_PROMPTS.c.position)
        with self._guard("reading prompts"), self._engine.connect() as conn:
            return [
                CampaignPrompt(
                    id=r["prompt_id"],
                    turns=tuple(json.loads(r["turns"])),
                    category=r["category"],
                    language=r["language"],
                    system=r["system"],
                )
                for r in conn.execute(stmt).mappings()
            ]

    # -- answers --------------------------------------------------------------------------------

    def add_answers(self, answers: Iterable[CampaignAnswer], *, replace: bool = False) -> int:
        """Store answers whose key is new, and those replacing a failed one; returns how many were written.

        With ``replace``, an answer also replaces a stored one that did not fail (a re-import).
        """
        answers = list({a.id: a for a in answers}.values())
        if not answers:
            return 0
        written = 0
        with self._guard("saving answers"), self._write() as conn:
            ids = [a.id for a in answers]
            stored: dict[str, str | None] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for r in conn.execute(sa.select(_ANSWERS.c.id, _ANSWERS.c.error).where(_ANSWERS.c.id.in_(chunk))):
                    stored[r[0]] = r[1]
            fresh = [a for a in answers if a.id not in stored]
            again = [a for a in answers if a.id in stored and (replace or stored[a.id] is not None)]
            if again:
                conn.execute(sa.delete(_ANSWERS).where(_ANSWERS.c.id.in_([a.id for a in again])))
            rows = [_answer_values(a) for a in fresh + again]
            self._insert_new(conn, _ANSWERS, rows, ["id"])
            written = len(rows)
        return written

    def answers(self, campaign_id: str, *, ok_only: bool = False) -> list[CampaignAnswer]:
        stmt = sa.select(_ANSWERS).where(_ANSWERS.c.campaign_id == campaign_id)
        if ok_only:
            stmt = stmt.where(_ANSWERS.c.error.is_(None))
        stmt = stmt.order_by(_ANSWERS.c.prompt_id, _ANSWERS.c.candidate, _ANSWERS.c.setting, _ANSWERS.c.run)
        with self._guard("reading answers"), self._engine.connect() as conn:
            return [_answer_record(r) for r in conn.execute(stmt).mappings()]

    def done_answer_ids(self, campaign_id: str) -> set[str]:
        """Ids of the answers stored without an error (generation skips them when it resumes)."""
        stmt = sa.select(_ANSWERS.c.id).where(_ANSWERS.c.campaign_id == campaign_id, _ANSWERS.c.error.is_(None))
        with self._guard("reading answers"), self._engine.connect() as conn:
            return set(conn.execute(stmt).scalars())

    # -- votes ----------------------------------------------------------------------------------

    def record_vote(self, v: CampaignVote) -> None:
        """Store one judgment; committed when this returns.

        Raises
        ------
        VoteRejected
            This comparison already has this visitor's vote (or this vote id is stored).
        StorageError
            The database is unavailable; nothing was written.
        """
        if v.winner not in WINNERS:
            raise VoteRejected(f"unknown winner {v.winner!r}")
        with self._guard("saving a campaign vote"):
            try:
                with self._write() as conn:
                    conn.execute(sa.insert(_VOTES), _vote_values(v))
            except exc.IntegrityError as e:
                raise VoteRejected(
                    f"campaign vote {v.id}: comparison {v.pair_key} already judged by this visitor",
                    message=Message("msg.already_voted"),
                ) from e

    def merge_votes(self, votes: Iterable[CampaignVote]) -> int:
        """Add the votes whose id is not stored and whose comparison this visitor has not judged; idempotent."""
        votes = list({v.id: v for v in votes}.values())
        if not votes:
            return 0
        with self._guard("merging campaign votes"), self._write() as conn:
            known = {r[0] for r in conn.execute(sa.select(_CAMPAIGNS.c.id))}
            ids = [v.id for v in votes]
            stored: set[str] = set()
            taken: set[tuple[str, str, str]] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                stored.update(conn.execute(sa.select(_VOTES.c.id).where(_VOTES.c.id.in_(chunk))).scalars())
            for r in conn.execute(sa.select(_VOTES.c.campaign_id, _VOTES.c.client_hash, _VOTES.c.pair_key)):
                taken.add((r[0], r[1], r[2]))
            new = []
            for v in votes:
                key = (v.campaign_id, v.client_hash, v.pair_key)
                if v.id in stored or key in taken or v.campaign_id not in known:
                    continue
                taken.add(key)
                new.append(_vote_values(v))
            if new:
                conn.execute(sa.insert(_VOTES), new)
        return len(new)

    def votes(self, campaign_id: str, *, exclude_flags: Iterable[str] = ()) -> list[CampaignVote]:
        stmt = (
            sa.select(_VOTES)
            .where(_VOTES.c.campaign_id == campaign_id, *self._flag_filters(exclude_flags))
            .order_by(_VOTES.c.created_at, _VOTES.c.id)
        )
        with self._guard("reading campaign votes"), self._engine.connect() as conn:
            return [_vote_record(r) for r in conn.execute(stmt).mappings()]

    def all_votes(self) -> list[CampaignVote]:
        with self._guard("reading campaign votes"), self._engine.connect() as conn:
            return [_vote_record(r) for r in conn.execute(sa.select(_VOTES).order_by(_VOTES.c.created_at)).mappings()]

    def votes_since(self, client_hash: str, since: datetime) -> int:
        """How many campaign votes ``client_hash`` cast at or after ``since`` (rate limits)."""
        stmt = (
            sa.select(sa.func.count())
            .select_from(_VOTES)
            .where(_VOTES.c.client_hash == client_hash, _VOTES.c.created_at >= since)
        )
        with self._guard("counting recent votes"), self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def judged_pairs(self, campaign_id: str, client_hash: str) -> set[str]:
        """The comparisons (pair keys) this visitor has already judged in this campaign."""
        stmt = sa.select(_VOTES.c.pair_key).where(
            _VOTES.c.campaign_id == campaign_id, _VOTES.c.client_hash == client_hash
        )
        with self._guard("reading campaign votes"), self._engine.connect() as conn:
            return set(conn.execute(stmt).scalars())

    def slice_values(self, campaign_id: str) -> dict[str, list[str]]:
        """The categories, languages and settings that have counted votes (three DISTINCT queries)."""
        out: dict[str, list[str]] = {}
        counted = [_VOTES.c.campaign_id == campaign_id, *self._flag_filters(DEFAULT_EXCLUDED_FLAGS)]
        with self._guard("reading campaign votes"), self._engine.connect() as conn:
            for key in ("category", "language", "setting"):
                stmt = sa.select(_VOTES.c[key]).where(*counted).distinct()
                out[key] = sorted(conn.execute(stmt).scalars())
        return out

    def vote_state(self, campaign_id: str) -> tuple[int, datetime | None]:
        """(votes, newest vote time): changes whenever a vote is added (cache key for results)."""
        stmt = sa.select(sa.func.count(), sa.func.max(_VOTES.c.created_at)).where(_VOTES.c.campaign_id == campaign_id)
        with self._guard("counting campaign votes"), self._engine.connect() as conn:
            n, last = conn.execute(stmt).one()
        return int(n), last

    @staticmethod
    def _flag_filters(exclude_flags: Iterable[str]) -> list[sa.ColumnElement[bool]]:
        padded = sa.literal(",") + sa.func.coalesce(_VOTES.c.flags, "") + sa.literal(",")
        return [sa.not_(padded.contains(f",{flag},", autoescape=True)) for flag in exclude_flags]

    def pair_counts(
        self,
        campaign_id: str,
        *,
        category: str | None = None,
        language: str | None = None,
        setting: str | None = None,
        exclude_flags: Iterable[str] = DEFAULT_EXCLUDED_FLAGS,
    ) -> list[PairCount]:
        """Judgments counted per (model_a, model_b, winner) in one GROUP BY, as ratings.fit_ratings takes them."""
        conds = [_VOTES.c.campaign_id == campaign_id, *self._flag_filters(exclude_flags)]
        for column, value in (("category", category), ("language", language), ("setting", setting)):
            if value is not None:
                conds.append(_VOTES.c[column] == value)
        stmt = (
            sa.select(_VOTES.c.model_a, _VOTES.c.model_b, _VOTES.c.winner, sa.func.count())
            .where(*conds)
            .group_by(_VOTES.c.model_a, _VOTES.c.model_b, _VOTES.c.winner)
        )
        with self._guard("counting campaign votes"), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return sorted(
            (PairCount(r[0], r[1], cast(Winner, r[2]), int(r[3])) for r in rows),
            key=lambda p: (p.model_a, p.model_b, WINNERS.index(p.winner)),
        )

    # -- restore from a snapshot ----------------------------------------------------------------

    def merge_from(self, other: CampaignStore) -> tuple[int, int]:
        """Add the campaigns, prompts, answers and votes of ``other`` that this database lacks.

        Returns (answers added, votes added). Idempotent; used when restoring a snapshot.
        """
        answers = 0
        for campaign in other.campaigns():
            if self.campaign(campaign.id) is None:
                self.save_campaign(campaign, other.prompts(campaign.id))
            answers += self.add_answers(other.answers(campaign.id))
        return answers, self.merge_votes(other.all_votes())
