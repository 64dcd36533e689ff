"""Hostile input below the web layer: prompts, reasons, journal lines, rosters and a failing database.

The same threats through the real app (HTTP bodies, raw queue calls, forged headers, a real
browser) are in ``tests/test_hostile_web.py``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from arena.backends.demo import DemoServer
from arena.config import Settings
from arena.errors import ConfigError, PromptRejected, StorageError, VoteRejected
from arena.journal import read_journal
from arena.leaderboard import LeaderboardCache, parse_slice
from arena.service import ANSWERS_NOT_SAVED, BROKEN_TEXT, PROMPT_NOT_SAVED, clean_prompt
from arena.storage import Store
from arena.storage.store import VoteGroup
from tests.support.services import battle, close, make_service, play, tgi_spec
from tests.test_abuse import run_app

PROMPT = "Tell me about the Vistula."


@pytest.fixture(scope="module")
def server() -> Iterator[DemoServer]:
    with DemoServer("demo/hostile-7b", token_rate=500, first_token_delay=0.01) as s:
        yield s


# -- prompts ---------------------------------------------------------------------------------------


def test_the_length_is_checked_before_the_characters_are_scanned() -> None:
    # 5,000 control characters: the scan would strip them all and answer "type a message first";
    # the length check, done first, names the length.
    with pytest.raises(PromptRejected) as info:
        clean_prompt("\x00" * 5000, 4000)
    assert "5000 characters" in str(info.value.message) and "4000" in str(info.value.message)


@pytest.mark.parametrize(
    "prompt",
    ["\ufeff", "\ufeff\ufeff\n\ufeff", "\u200b\u200c\u200d", "\u2060\u00ad", "\u3164", "\u2800 \u00a0", "\u034f\u180e"],
)
def test_prompts_of_only_invisible_characters_are_refused(prompt: str) -> None:
    with pytest.raises(PromptRejected) as info:
        clean_prompt(prompt, 4000)
    assert str(info.value.message) == "Please type a message first."


@pytest.mark.parametrize("prompt", ["\ufeffHello", "e\u0301", "👍🏽", "ok\u200b"])
def test_visible_text_with_invisible_characters_is_kept(prompt: str) -> None:
    assert clean_prompt(prompt, 4000) == prompt


@pytest.mark.parametrize("prompt", ["a\ud800b", "\udfff", "emoji \ud83d alone"])
def test_lone_surrogates_get_a_plain_message(prompt: str) -> None:
    with pytest.raises(PromptRejected) as info:
        clean_prompt(prompt, 4000)
    assert info.value.message == BROKEN_TEXT


def test_a_lone_surrogate_never_reaches_the_database(server: DemoServer, tmp_path: Path) -> None:
    async def main() -> None:
        with Store(f"sqlite:///{tmp_path / 'a.sqlite3'}") as store:
            service = make_service([tgi_spec("m1", server.url), tgi_spec("m2", server.url)], store)
            try:
                session = service.new_session("10.6.0.1")
                with pytest.raises(PromptRejected) as info:
                    await play(service, session, "broken \ud800 text")
                assert info.value.message == BROKEN_TEXT
                assert session.status == "new" and store.battle_count() == 0
                await play(service, session, PROMPT)  # and the visitor can go on
            finally:
                await close(service)

    asyncio.run(main())


# -- the journal keeps what the database keeps ------------------------------------------------------


def test_the_journal_keeps_the_trimmed_reason(server: DemoServer, tmp_path: Path) -> None:
    async def main() -> None:
        with Store(f"sqlite:///{tmp_path / 'j.sqlite3'}") as store:
            service = make_service(
                [tgi_spec("m1", server.url), tgi_spec("m2", server.url)], store, settings={"max_reason_chars": 50}
            )
            events: list[dict[str, object]] = []
            service.journal = events.append
            try:
                session = service.new_session("10.6.0.2")
                await play(service, session, PROMPT)
                await service.vote(session, "model_a", reason="  " + "why " * 500_000)
            finally:
                await close(service)
        vote = next(e for e in events if e["event"] == "vote")
        assert vote["reason"] == ("why " * 13)[:50]

    asyncio.run(main())


def test_restore_trims_an_oversize_reason_from_an_old_journal(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    battle_line = {
        "event": "battle",
        "battle_id": "b1",
        "model_a": "m1",
        "model_b": "m2",
        "mode": "anonymous",
        "pool": "chat",
        "judge": "j",
        "tstamp": "2026-12-01T10:00:00+00:00",
    }
    vote_line = {
        "event": "vote",
        "battle_id": "b1",
        "winner": "model_a",
        "reason": "x" * 2_000_000,
        "flags": [],
        "tstamp": "2026-12-01T10:01:00+00:00",
    }
    path.write_text(json.dumps(battle_line) + "\n" + json.dumps(vote_line) + "\n", encoding="utf-8")
    (batch,) = read_journal(path, max_reason_chars=1000)
    assert len(batch.votes[0].reason or "") == 1000


# -- rosters ---------------------------------------------------------------------------------------


def test_an_unknown_template_stops_start_up(tmp_path: Path) -> None:
    roster = "models:\n  - name: m1\n    backend: tgi\n    url: http://127.0.0.1:1\n    template: chatmlx\n"
    result = run_app(tmp_path, roster)
    assert result.returncode == 2, result.stderr
    assert "unknown template 'chatmlx'" in result.stderr and "m1" in result.stderr and "chatml" in result.stderr
    assert "Traceback" not in result.stderr


# -- the database fails: the visitor reads what happened to *this* action ---------------------------


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_a_prompt_that_cannot_be_stored_says_so(server: DemoServer, tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite3"

    async def main() -> None:
        with Store(f"sqlite:///{path}", busy_timeout=0.3) as store:
            service = make_service([tgi_spec("m1", server.url), tgi_spec("m2", server.url)], store)
            try:
                session = service.new_session("10.6.0.3")
                with exclusive_lock(path), pytest.raises(StorageError) as info:
                    await play(service, session, PROMPT)
                assert info.value.message == PROMPT_NOT_SAVED
                assert "vote" not in str(info.value.message)
                await play(service, session, PROMPT)  # the same prompt goes through afterwards
            finally:
                await close(service)

    asyncio.run(main())


def test_answers_that_cannot_be_stored_make_a_round_that_says_so(server: DemoServer, tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"

    async def main() -> None:
        with Store(f"sqlite:///{path}", busy_timeout=0.3) as store:
            service = make_service([tgi_spec("m1", server.url), tgi_spec("m2", server.url)], store)
            try:
                session = service.new_session("10.6.0.4")
                views = service.send(session, PROMPT)
                await anext(views)  # the battle is stored by the first view
                with exclusive_lock(path), pytest.raises(StorageError) as info:
                    async for _ in views:
                        pass
                assert info.value.message == ANSWERS_NOT_SAVED
                with pytest.raises(VoteRejected) as vote:
                    await service.vote(session, "model_a")
                assert vote.value.message == ANSWERS_NOT_SAVED
                assert "model failed" not in str(vote.value.message)
                with pytest.raises(PromptRejected) as again:
                    await play(service, session, "and then?")
                assert again.value.message == ANSWERS_NOT_SAVED
                await battle(service, "10.6.0.4", PROMPT)  # a new round works
            finally:
                await close(service)

    asyncio.run(main())


# -- leaderboard slices -----------------------------------------------------------------------------


def test_the_leaderboard_cache_fits_only_slices_that_exist(server: DemoServer, tmp_path: Path) -> None:
    async def main() -> None:
        with Store(f"sqlite:///{tmp_path / 'l.sqlite3'}") as store:
            service = make_service([tgi_spec("m1", server.url), tgi_spec("m2", server.url)], store)
            try:
                await battle(service, "10.6.0.5", "Opowiedz mi proszę o historii Krakowa i Wawelu.")
            finally:
                await close(service)
            cache = LeaderboardCache()
            for i in range(300):
                with pytest.raises(ValueError):
                    cache.view(store, f"lang:x{i}")
            with pytest.raises(ValueError):
                cache.view(store, "lang:" + "x" * 600)
            for name in ("overall", "named", "pool:chat", "pool:base", "lang:pl"):
                cache.view(store, name)
            assert len(cache._entries) == 5 and len(cache._locks) == 5
            assert cache.fits == 5

    asyncio.run(main())


def test_slice_names_are_short() -> None:
    with pytest.raises(ValueError):
        parse_slice("lang:" + "x" * 600)
    assert parse_slice("lang:zh-Hant").language == "zh-Hant"


def test_a_flood_of_leaderboard_requests_reads_the_votes_one_query_at_a_time(
    server: DemoServer, tmp_path: Path
) -> None:
    async def main() -> None:
        with Store(f"sqlite:///{tmp_path / 'f.sqlite3'}") as store:
            service = make_service([tgi_spec("m1", server.url), tgi_spec("m2", server.url)], store)
            try:
                await battle(service, "10.6.0.6", PROMPT)
                real = store.vote_groups

                def slow() -> list[VoteGroup]:  # a big vote table: the GROUP BY takes a while
                    time.sleep(0.2)
                    return real()

                store.vote_groups = slow  # type: ignore[method-assign]
                cache = LeaderboardCache()
                with ThreadPoolExecutor(40) as pool:
                    views = list(pool.map(lambda _: cache.view(store, "overall"), range(40)))
                assert {v.votes for v in views} == {1}
                assert cache.group_reads <= 4, cache.group_reads  # not 40
                store.vote_groups = real  # type: ignore[method-assign]
                await battle(service, "10.6.0.6", PROMPT)
                assert cache.view(store, "overall").votes == 2  # a read never predates the request
            finally:
                await close(service)

    asyncio.run(main())


def test_the_body_cap_must_hold_the_longest_prompt() -> None:
    with pytest.raises(ConfigError, match=r"ARENA_MAX_REQUEST_BYTES \(1000\) cannot hold the longest prompt"):
        Settings.load({"ARENA_MAX_REQUEST_BYTES": "1000"})
    assert Settings.load({}).max_request_bytes == 65536 >= 12 * 4000 + 4096
    assert Settings.load({"ARENA_MAX_PROMPT_CHARS": "100", "ARENA_MAX_REQUEST_BYTES": "16384"}).max_request_bytes
