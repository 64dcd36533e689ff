"""Abuse and bad input: double votes, rate limits, forged proxy headers, hostile prompts, bad start-up config."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from arena import i18n
from arena.backends.demo import DemoServer
from arena.domain import WINNERS
from arena.errors import PromptRejected, RateLimited, VoteRejected
from arena.limits import Limit, check_limit, client_ip, visitor_address
from arena.messages import Message
from arena.registry import ModelSpec
from arena.service import Allowed, clean_prompt
from arena.storage import Store
from arena.ui.panel import reveal_markdown
from tests.support.services import battle, close, make_service, play, tgi_spec

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "What is the tallest mountain in Poland?"


@pytest.fixture(scope="module")
def server() -> Iterator[DemoServer]:
    with DemoServer("demo/abuse-7b", token_rate=500, first_token_delay=0.01) as s:
        yield s


def specs(url: str) -> list[ModelSpec]:
    return [tgi_spec("model-one", url), tgi_spec("model-two", url)]


# -- client IP ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "xff", "hops", "expected"),
    [
        ("10.0.0.5", "6.6.6.6", 0, "10.0.0.5"),  # no trusted proxy: the header is forgeable, ignored
        ("10.0.0.5", None, 1, "10.0.0.5"),  # trusted proxy but no header: the peer
        ("10.0.0.5", "203.0.113.9", 1, "203.0.113.9"),  # one proxy appended the visitor's address
        ("10.0.0.5", "6.6.6.6, 203.0.113.9", 1, "203.0.113.9"),  # a forged entry on the left is skipped
        ("10.0.0.5", "6.6.6.6, 203.0.113.9, 10.0.0.7", 2, "203.0.113.9"),  # two proxies
        ("10.0.0.5", "203.0.113.9", 2, "10.0.0.5"),  # fewer entries than proxies: do not guess
        ("10.0.0.5", "not-an-ip", 1, "10.0.0.5"),
        ("10.0.0.5", "[2001:db8::1]:443", 1, "2001:db8::1"),
        ("10.0.0.5", "198.51.100.1:5555", 1, "198.51.100.1"),
    ],
)
def test_client_ip(peer: str, xff: str | None, hops: int, expected: str) -> None:
    headers = {"X-Forwarded-For": xff} if xff is not None else {}
    assert client_ip(peer, headers, hops) == expected


def test_client_ip_joins_repeated_headers() -> None:
    from starlette.datastructures import Headers

    headers = Headers(raw=[(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.9")])
    assert client_ip("10.0.0.5", headers, 1) == "203.0.113.9"
    assert client_ip("10.0.0.5", headers, 2) == "6.6.6.6"


@pytest.mark.parametrize(
    ("ip", "visitor"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:eeee:dddd:cccc", "2001:db8:1:2::/64"),  # any address of the /64: one visitor
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),  # the next /64 is another subscriber
        ("::ffff:203.0.113.9", "203.0.113.9"),  # IPv4 written as IPv6 is the IPv4 address
        ("::1", "::/64"),
        ("unknown", "unknown"),
    ],
)
def test_an_ipv6_subscribers_addresses_are_one_visitor(ip: str, visitor: str) -> None:
    assert visitor_address(ip) == visitor


def test_limit_message_names_the_limit() -> None:
    limit = Limit(3, 60, "msg.limit_battles")
    assert check_limit(limit, 2) is None
    refusal = check_limit(limit, 3)
    assert refusal is not None and refusal.key == "msg.limit_battles" and refusal.params == {"count": 3}
    assert "3 new battles per minute" in str(refusal)
    assert check_limit(Limit(0, 60, "msg.limit_votes"), 10_000) is None
    with pytest.raises(KeyError, match=r"en\.yaml"):  # a refusal nobody can translate cannot even be made
        Limit(3, 60, "msg.no_such_refusal")


# -- votes -----------------------------------------------------------------------------------


def test_double_clicks_and_concurrent_votes_give_one_vote(server: DemoServer, db_url: str) -> None:
    async def main() -> None:
        with Store(db_url) as store:
            service = make_service(specs(server.url), store)
            try:
                session = service.new_session("10.1.1.1")
                await play(service, session, PROMPT)
                results = await asyncio.gather(
                    *(service.vote(session, w) for w in WINNERS[:3] * 4), return_exceptions=True
                )
                reveals = [r for r in results if not isinstance(r, BaseException)]
                errors = [r for r in results if isinstance(r, BaseException)]
                assert len(reveals) == 1 and len(errors) == 11
                assert all(isinstance(e, VoteRejected) for e in errors), errors
                assert store.vote_total() == 1
                assert store.get_vote(session.battle_id or "").winner == reveals[0].winner  # type: ignore[union-attr]
            finally:
                await close(service)

    asyncio.run(main())


def test_two_tabs_on_one_battle_store_one_vote(server: DemoServer, tmp_path: Path) -> None:
    """Two sessions (two tabs, two replicas) holding the same battle: the database keeps one vote."""

    async def main() -> None:
        with Store(f"sqlite:///{tmp_path / 'a.sqlite3'}") as store:
            first = make_service(specs(server.url), store)
            second = make_service(specs(server.url), store)
            try:
                session = first.new_session("10.1.1.2")
                await play(first, session, PROMPT)
                import copy

                twin = copy.copy(session)  # same battle id, separate in-memory state
                results = await asyncio.gather(
                    first.vote(session, "model_a"), second.vote(twin, "model_b"), return_exceptions=True
                )
                assert sum(not isinstance(r, BaseException) for r in results) == 1, results
                assert store.vote_total() == 1
            finally:
                await close(first)
                await close(second)

    asyncio.run(main())


def test_double_send_is_refused_while_streaming(server: DemoServer, tmp_path: Path) -> None:
    async def main() -> None:
        with Store(f"sqlite:///{tmp_path / 'a.sqlite3'}") as store:
            service = make_service(specs(server.url), store)
            try:
                session = service.new_session("10.1.1.3")
                first = service.send(session, PROMPT)
                await anext(first)
                with pytest.raises(PromptRejected) as info:
                    await anext(service.send(session, "again"))
                assert "wait until both answers have finished" in str(info.value.message)
                async for _ in first:
                    pass
                assert store.battle_count() == 1 and session.turn == 1
            finally:
                await close(service)

    asyncio.run(main())


def test_turns_and_regenerations_per_battle_are_capped(server: DemoServer, tmp_path: Path) -> None:
    # Each turn and each regeneration costs both model servers an answer; the battle rate limit
    # alone would let one battle ask for answers without end.
    async def main() -> None:
        with Store(f"sqlite:///{tmp_path / 'a.sqlite3'}") as store:
            service = make_service(specs(server.url), store, settings={"max_turns": 2, "max_regenerations": 1})
            try:
                session = service.new_session("10.1.1.5")
                assert service.allowed(session) == Allowed(send=True)
                first = await play(service, session, PROMPT)
                assert first[0].allowed == Allowed()  # nothing may be clicked while the turn streams
                assert first[-1].allowed == Allowed(vote=True, send=True, regenerate=True)
                regenerated = [view async for view in service.regenerate(session)]
                # The service says the regeneration limit is reached, and why, before the visitor clicks.
                assert regenerated[-1].allowed == service.allowed(session) == Allowed(vote=True, send=True)
                assert Message("msg.regeneration_limit", {"n": 1}) in regenerated[-1].notices
                with pytest.raises(PromptRejected) as info:
                    [_ async for _ in service.regenerate(session)]
                assert info.value.message == Message("msg.regeneration_limit", {"n": 1})
                assert "regenerated as often as allowed (1)" in str(info.value.message)
                assert "(1)" in i18n.render(info.value.message, "pl")
                second = await play(service, session, "And the second tallest?")
                assert second[-1].allowed == service.allowed(session) == Allowed(vote=True)
                assert Message("msg.turn_limit", {"n": 2}) in second[-1].notices
                with pytest.raises(PromptRejected) as info:
                    await play(service, session, "And the third?")
                assert "limit of turns (2)" in str(info.value.message)
                assert service.allowed(session) == Allowed(vote=True)
                # Refused before anything was sent: the battle is intact and can still be voted.
                assert session.turn == 2 and session.status == "ready"
                assert [m["role"] for m in session.history[0]] == ["user", "assistant"] * 2
                await service.vote(session, "model_a")
                assert store.vote_total() == 1
                assert service.allowed(session) == Allowed()  # voted: only a new round
            finally:
                await close(service)

    asyncio.run(main())


def test_votes_too_fast_are_kept_but_flagged(server: DemoServer, tmp_path: Path) -> None:
    now = [100.0]

    async def main() -> None:
        with Store(f"sqlite:///{tmp_path / 'a.sqlite3'}") as store:
            service = make_service(specs(server.url), store, settings={"min_read_seconds": 5}, clock=lambda: now[0])
            try:
                quick, _, reveal = await battle(service, "10.1.1.4", PROMPT)
                assert reveal is not None and reveal.flags == ("too_fast",)
                assert "will not count" in reveal_markdown("en", reveal)  # what the page says
                session = service.new_session("10.1.1.4")
                await play(service, session, PROMPT)
                now[0] += 5
                slow = await service.vote(session, "model_b")
                assert slow.flags == () and "will not count" not in reveal_markdown("en", slow)
                assert store.vote_total(exclude_flags=()) == 2  # both kept
                assert sum(c.count for c in store.pair_counts()) == 1  # the quick one is left out of ratings
                assert store.get_vote(quick.battle_id or "").flags == ("too_fast",)  # type: ignore[union-attr]
            finally:
                await close(service)

    asyncio.run(main())


# -- rate limits -------------------------------------------------------------------------------


def test_battle_and_vote_rate_limits_hold_across_replicas(server: DemoServer, db_url: str) -> None:
    clock = [datetime(2026, 5, 1, 12, 0, tzinfo=UTC)]

    async def main() -> None:
        with Store(db_url) as store:
            settings = {"battles_per_minute": 3, "votes_per_hour": 4}
            one = make_service(specs(server.url), store, settings=settings, now=lambda: clock[0])
            two = make_service(specs(server.url), store, settings=settings, now=lambda: clock[0])
            try:
                for service in (one, two, one):
                    await battle(service, "10.2.0.1", PROMPT)
                # Replica two sees replica one's battles: the fourth within the minute is refused.
                refused = two.new_session("10.2.0.1")
                with pytest.raises(RateLimited) as info:
                    await play(two, refused, PROMPT)
                assert info.value.message == Message("msg.limit_battles", {"count": 3})
                assert "3 new battles per minute" in str(info.value.message)
                assert refused.status == "new" and refused.history == ([], [])  # nothing half-done
                assert store.battle_count() == 3
                # Another visitor is not affected.
                await battle(two, "10.2.0.2", PROMPT)
                # A minute later the same visitor may play again, but the vote limit (4 per hour) bites.
                clock[0] += timedelta(seconds=61)
                await battle(one, "10.2.0.1", PROMPT)  # the 4th vote
                session, _, _ = await battle(two, "10.2.0.1", PROMPT, winner=None)
                with pytest.raises(RateLimited) as vote_info:
                    await two.vote(session, "tie")
                assert "4 votes per hour" in str(vote_info.value.message)
                assert session.status == "ready"  # may vote later
                clock[0] += timedelta(hours=1)
                await two.vote(session, "tie")
                assert store.vote_total(exclude_flags=()) == 6
            finally:
                await close(one)
                await close(two)

    asyncio.run(main())


def test_raw_ips_are_never_stored(server: DemoServer, tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"

    async def main() -> None:
        with Store(f"sqlite:///{path}") as store:
            service = make_service(specs(server.url), store)
            try:
                await battle(service, "198.51.100.77", PROMPT)
            finally:
                await close(service)

    asyncio.run(main())
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("a.sqlite3*"))
    assert b"198.51.100.77" not in raw


# -- prompts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t \n", "\x00\x07\x1b"])
def test_empty_prompts_are_refused(prompt: str) -> None:
    with pytest.raises(PromptRejected) as info:
        clean_prompt(prompt, 100)
    assert str(info.value.message) == "Please type a message first."


def test_long_prompt_shows_the_limit() -> None:
    with pytest.raises(PromptRejected) as info:
        clean_prompt("x" * 101, 100)
    assert "the limit is 100" in str(info.value.message) and "101" in str(info.value.message)


def test_control_characters_are_stripped_but_text_is_kept() -> None:
    text = "Za\x00żółć\x1b[31m gęślą\u200f jaźń\r\n😀\tשלום 東京\x7f"
    cleaned = clean_prompt(text, 1000)
    assert cleaned == "Zażółć[31m gęślą\u200f jaźń\n😀\tשלום 東京"


# -- start-up --------------------------------------------------------------------------------


def run_app(tmp_path: Path, roster: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "models.yaml"
    config.write_text(roster, encoding="utf-8")
    import os

    return subprocess.run(
        [sys.executable, "app.py", "--config", str(config), "--db", f"sqlite:///{tmp_path / 'x.sqlite3'}"],
        cwd=ROOT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_invalid_models_yaml_stops_start_up_naming_the_field(tmp_path: Path) -> None:
    roster = "models:\n  - name: m1\n    backend: tgi\n    url: http://127.0.0.1:1\n    temprature: 0.5\n"
    result = run_app(tmp_path, roster)
    assert result.returncode == 2, result.stderr
    assert "temprature" in result.stderr and "m1" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_environment_variable_stops_start_up_naming_it(tmp_path: Path) -> None:
    roster = (
        "models:\n  - name: m1\n    backend: tgi\n    url: ${ARENA_TEST_NO_SUCH_URL}\n"
        "  - name: m2\n    backend: tgi\n    url: http://127.0.0.1:1\n"
    )
    result = run_app(tmp_path, roster)
    assert result.returncode == 2, result.stderr
    assert "ARENA_TEST_NO_SUCH_URL" in result.stderr and "Traceback" not in result.stderr
