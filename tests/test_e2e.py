"""The real app on a free port, driven by gradio_client against the demo model servers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from gradio_client import Client

from arena.storage import Store
from tests.support.app_process import AppProcess

PROMPT = "Opowiedz mi krótko o Krakowie."


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def arena(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_database: Callable[[], str]
) -> Iterator[tuple[AppProcess, str]]:
    tmp = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{tmp / 'arena.sqlite3'}" if request.param == "sqlite" else pg_database()
    app = AppProcess(
        ["--demo", "--db", url],
        env={
            "ARENA_DEMO_TOKEN_RATE": "60",
            "ARENA_DEMO_FIRST_TOKEN_DELAY": "0.1",
            # These clients vote the moment answers finish and all come from 127.0.0.1.
            "ARENA_MIN_READ_SECONDS": "0",
            "ARENA_BATTLES_PER_MINUTE": "0",
        },
        log_path=tmp / "app.log",
    )
    try:
        app.wait_ready()
        yield app, url
    finally:
        app.stop()


def _texts(output: tuple) -> tuple[str, str]:  # type: ignore[type-arg]
    """The newest assistant text on each side from a /send update."""
    chat_a, chat_b = output[0], output[1]

    def last(chat: list[dict]) -> str:  # type: ignore[type-arg]
        if not chat or chat[-1]["role"] != "assistant":
            return ""
        content = chat[-1]["content"]
        if isinstance(content, list):  # gradio may send text blocks
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)

    return last(chat_a), last(chat_b)


def test_battle_streams_both_sides_then_one_vote_counts(arena: tuple[AppProcess, str]) -> None:
    app, db = arena
    client = Client(app.url, verbose=False)
    client.predict(api_name="/accept_terms")  # the terms notice comes before any battle
    job = client.submit(PROMPT, api_name="/send")
    updates = [_texts(out) for out in job]
    assert job.status().success
    final_a, final_b = _texts(job.outputs()[-1])
    assert final_a and final_b and final_a != final_b
    # Interleaving: some update shows both sides partly written, before either is complete.
    assert any(0 < len(a) < len(final_a) and 0 < len(b) < len(final_b) for a, b in updates), updates[:20]

    reveal = client.predict(api_name="/vote_b")
    assert set(reveal) == {"model_a", "model_b", "winner", "counted", "flags", "notes", "sides"}, reveal
    assert reveal["winner"] == "model_b" and [side["model"] for side in reveal["sides"]] == [
        reveal["model_a"],
        reveal["model_b"],
    ]
    shown = f"{reveal['model_a']} {reveal['model_b']}"

    store = Store(db)
    try:
        assert store.vote_total() == 1
        counts = store.pair_counts()
        assert sum(c.count for c in counts) == 1 and counts[0].winner == "model_b"
        named = {counts[0].model_a, counts[0].model_b}
        assert all(name in shown for name in named)
    finally:
        store.dispose()

    # A second vote on the same battle is refused, and nothing more is stored.
    with pytest.raises(Exception, match="already voted"):
        client.predict(api_name="/vote_a")
    board = client.predict(api_name="/leaderboard")
    text = str(board)
    assert all(name in text for name in named)
    store = Store(db)
    try:
        assert store.vote_total() == 1
    finally:
        store.dispose()
    client.close()


def test_vote_before_answers_finish_is_refused(arena: tuple[AppProcess, str]) -> None:
    app, _db = arena
    client = Client(app.url, verbose=False)
    client.predict(api_name="/accept_terms")  # the terms notice comes before any battle
    job = client.submit("Write a long answer about the history of Kyoto, please.", api_name="/send")
    errors: list[str] = []
    # Wait for streaming to begin, then try to vote while both sides are still writing.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not job.outputs():
        time.sleep(0.05)
    assert job.outputs(), "no update streamed"
    assert not job.done()
    try:
        client.predict(api_name="/vote_a")
    except Exception as e:
        errors.append(str(e))
    assert errors and "wait until both answers have finished" in errors[0]
    job.result(timeout=60)
    client.close()


def test_vote_without_a_battle_is_refused(arena: tuple[AppProcess, str]) -> None:
    app, _db = arena
    client = Client(app.url, verbose=False)
    client.predict(api_name="/accept_terms")  # the terms notice comes before any battle
    with pytest.raises(Exception, match="nothing to vote on"):
        client.predict(api_name="/vote_tie")
    client.close()


def test_follow_up_and_regenerate_then_new_round(arena: tuple[AppProcess, str]) -> None:
    app, _db = arena
    client = Client(app.url, verbose=False)
    client.predict(api_name="/accept_terms")  # the terms notice comes before any battle
    first = client.predict("Cześć! Jak się masz?", api_name="/send")
    second = client.predict("A teraz po angielsku, proszę.", api_name="/send")
    chat_a, chat_b = second[0], second[1]
    assert [m["role"] for m in chat_a] == ["user", "assistant", "user", "assistant"]
    assert [m["role"] for m in chat_b] == ["user", "assistant", "user", "assistant"]
    assert first[0][0] == chat_a[0]
    regenerated = client.predict(api_name="/regenerate")
    assert len(regenerated[0]) == 4 and _texts(regenerated)[0]
    client.predict(api_name="/vote_tie")
    fresh = client.predict(api_name="/new_round")
    assert fresh[0] == [] and fresh[1] == []
    # The new round is a new battle: it can be played and voted again.
    client.predict("Ile to jest 2+2?", api_name="/send")
    client.predict(api_name="/vote_bothbad")
    client.close()


def test_concurrent_visitors_each_get_their_own_battle(arena: tuple[AppProcess, str]) -> None:
    app, db = arena
    store = Store(db)
    before = store.vote_total()
    results: list[BaseException | None] = []

    def visitor(i: int) -> None:
        try:
            c = Client(app.url, verbose=False)
            c.predict(api_name="/accept_terms")  # the terms notice comes before any battle
            c.predict(f"Visitor {i}: what is the capital of Poland?", api_name="/send")
            c.predict(api_name="/vote_a")
            c.close()
            results.append(None)
        except BaseException as e:
            results.append(e)

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(6)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - started
    assert results == [None] * 6
    assert store.vote_total() == before + 6
    store.dispose()
    # Six battles ran at the same time, not one after another (one battle takes ~2-4 s here).
    assert elapsed < 30, elapsed


def test_page_config_names_no_model(arena: tuple[AppProcess, str]) -> None:
    import re
    import urllib.request

    app, _db = arena
    with urllib.request.urlopen(app.url + "/config", timeout=10) as r:
        config = r.read().decode().lower()
    for name in ("aurora", "borealis", "cirrus", "dune", "demo/"):
        assert name not in config, name
    # The only address in the page is the app's own, never a model server's.
    assert set(re.findall(r"127\.0\.0\.1:(\d+)", config)) <= {str(app.port)}


def test_send_before_accepting_the_terms_is_refused(arena: tuple[AppProcess, str]) -> None:
    app, _db = arena
    client = Client(app.url, verbose=False)
    with pytest.raises(Exception, match="I agree"):
        client.predict("Hello?", api_name="/send")
    with pytest.raises(Exception, match="I agree"):
        client.predict("Hello?", "aurora-7b", "borealis-7b", api_name="/sbs_send")
    client.predict(api_name="/accept_terms")
    chat_a, chat_b, *_ = client.predict("Hello?", api_name="/send")
    assert chat_a and chat_b
    client.close()
