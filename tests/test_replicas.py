"""Two app processes sharing one PostgreSQL database behave like one arena."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from arena.storage import Store
from tests.support.app_process import AppProcess
from tests.test_sync import visitor

ENV = {
    "ARENA_CLIENT_SALT": "replica-test-salt",
    "ARENA_DEMO_TOKEN_RATE": "200",
    "ARENA_DEMO_FIRST_TOKEN_DELAY": "0.01",
    "ARENA_MIN_READ_SECONDS": "0",
    "ARENA_HEALTH_INTERVAL": "0",
    "ARENA_INTERVAL": "sandwich",  # deterministic intervals: both replicas must show the same table
    "ARENA_BOOTSTRAP_ROUNDS": "0",
    "ARENA_BATTLES_PER_MINUTE": "7",  # every visitor here is 127.0.0.1: one visitor, counted in the database
}


def test_two_replicas_share_votes_leaderboard_and_rate_limits(pg_database: Callable[[], str], tmp_path: Path) -> None:
    db = pg_database()
    # Started together on an empty database: one migrates, the other waits for the migration lock.
    apps = [
        AppProcess(
            ["--demo", "--db", db],
            env={**ENV, "ARENA_JOURNAL_DIR": str(tmp_path / f"j{i}")},
            log_path=tmp_path / f"app{i}.log",
        )
        for i in range(2)
    ]
    try:
        for app in apps:
            app.wait_ready()
        errors: list[BaseException] = []

        def play(app: AppProcess, n: int) -> None:
            try:
                client = visitor(app.url)
                for i in range(n):
                    client.predict(f"Replica question {i}: what is 2+{i}?", api_name="/send")
                    client.predict(api_name="/vote_a" if i % 2 else "/vote_tie")
                    client.predict(api_name="/new_round")
                client.close()
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=play, args=(app, 3)) for app in apps]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        with Store(db) as store:
            assert store.battle_count() == 6
            assert store.vote_total(mode=None, exclude_flags=()) == 6
            assert sum(c.count for c in store.pair_counts()) == 6

        boards = []
        for app in apps:
            client = visitor(app.url)
            info, table, _legend, _fold = client.predict("overall", False, api_name="/leaderboard")
            # Each replica stamps the minute it read the counts; the two reads may fall either side of one.
            boards.append((re.sub(r"updated \S+ \S+ UTC", "updated <minute> UTC", info), table))
            client.close()
        assert "updated <minute> UTC" in boards[0][0]
        assert boards[0] == boards[1]
        assert "6" in str(boards[0][0])  # the summary counts all six votes, whichever replica took them

        # The limit (7 battles a minute) counts battles on both replicas: 6 are stored, so one more is
        # allowed and the next is refused, although app 0 alone has seen only 3.
        client = visitor(apps[0].url)
        client.predict("One more?", api_name="/send")
        client.predict(api_name="/new_round")
        with pytest.raises(Exception, match="limit of 7 new battles") as refused:
            client.predict("And another?", api_name="/send")
        client.close()
        assert "Traceback" not in str(refused.value)
        with Store(db) as store:
            assert store.battle_count() == 7
    finally:
        for app in apps:
            app.stop()
