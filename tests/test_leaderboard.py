"""Leaderboard slices, table rows, plot data, and the per-slice cache that refits only when votes arrive."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from arena.config import Settings
from arena.domain import BattleRecord, VoteRecord
from arena.errors import UnknownSlice
from arena.leaderboard import (
    COLUMNS,
    FitParams,
    LeaderboardCache,
    available_slices,
    fit_slice,
    heatmap_data,
    heatmap_figure,
    leaderboard_rows,
    parse_slice,
    ratings_figure,
    ratings_plot_data,
)
from arena.ratings import RatingsResult, fit_ratings
from arena.registry import Registry
from arena.service import ArenaService
from arena.storage import Store
from tests.support.battles import MODELS, fill

PARAMS = FitParams(bootstrap_rounds=30)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    s = Store(f"sqlite:///{tmp_path_factory.mktemp('lb') / 'arena.sqlite3'}")
    fill(s, conversations=False)
    yield s  # type: ignore[misc]
    s.dispose()


def _vote(store: Store, bid: str, winner: str = "model_a", mode: str = "anonymous", language: str = "pl") -> None:
    now = datetime.now(UTC)
    store.create_battle(BattleRecord(bid, "alpha", "beta", mode, "chat", now, "judge", language=language))  # type: ignore[arg-type]
    store.record_vote(VoteRecord(bid, winner, now))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "mode", "pool", "language"),
    [
        ("overall", "anonymous", "chat", None),
        ("named", "named", None, None),
        ("pool:chat", "anonymous", "chat", None),
        ("pool:base", "anonymous", "base", None),
        ("lang:zh-Hant", "anonymous", "chat", "zh-Hant"),
    ],
)
def test_parse_slice(name: str, mode: str, pool: str | None, language: str | None) -> None:
    sl = parse_slice(name)
    assert (sl.name, sl.filters()) == (name, {"mode": mode, "pool": pool, "language": language})


@pytest.mark.parametrize("name", ["", "all", "pool:other", "lang:", "named:x"])
def test_unknown_slice_says_which_exist(name: str) -> None:
    with pytest.raises(ValueError, match="use overall, named, pool:chat"):
        parse_slice(name)


def test_available_slices_count_what_pair_counts_count(store: Store) -> None:
    slices = available_slices(store.vote_groups())
    names = [s.name for s in slices]
    # pool:chat holds the same battles as overall, so it is not listed twice.
    assert names[:2] == ["overall", "pool:base"] and names[-1] == "named"
    # Battles without a detected language count in overall only.
    assert set(names[2:-1]) == {"lang:pl", "lang:en", "lang:zh-Hant", "lang:ja"}
    for s in slices:
        sl = parse_slice(s.name)
        assert s.votes == store.vote_total(**sl.filters()) == sum(c.count for c in store.pair_counts(**sl.filters()))
    # Flagged votes are left out: overall counts fewer than all anonymous votes.
    assert slices[0].votes < store.vote_total(exclude_flags=())
    # Continuation battles count on pool:base only, never on the chat boards.
    by_name = {s.name: s.votes for s in slices}
    assert by_name["pool:base"] > 0
    assert by_name["overall"] + by_name["pool:base"] == store.vote_total(mode="anonymous")
    assert store.vote_total(**parse_slice("lang:pl").filters()) < store.vote_total(mode="anonymous", language="pl")


def test_table_rows(store: Store) -> None:
    view = LeaderboardCache(PARAMS).view(store, "overall")
    rows = leaderboard_rows(view.result)
    assert len(rows) == len(MODELS) and all(len(r) == len(COLUMNS) for r in rows)
    assert {r[1] for r in rows} == set(MODELS)
    assert [r[2] for r in rows] == sorted((r[2] for r in rows), reverse=True)
    assert rows[0][1] == "alpha"  # the strongest model in the generated votes
    assert all(r[5].endswith("%") for r in rows)
    with pytest.raises(UnknownSlice):  # a language without votes is no slice: nothing is fitted or cached
        LeaderboardCache(PARAMS).view(store, "lang:xx")


def test_plot_data(store: Store) -> None:
    result = LeaderboardCache(PARAMS).view(store, "overall").result
    d = ratings_plot_data(result)
    assert d["models"] == [r.model for r in result.rows]
    assert all(m >= 0 and p >= 0 for m, p in zip(d["error_minus"], d["error_plus"], strict=True))
    wins = heatmap_data(result, "win_rate")
    counts = heatmap_data(result, "battles")
    n = len(wins["models"])
    assert wins["models"] == d["models"] == counts["models"]
    for i in range(n):
        assert wins["z"][i][i] is None and counts["z"][i][i] == 0
        for j in range(n):
            assert counts["z"][i][j] == counts["z"][j][i]
            if i != j and counts["z"][i][j]:
                assert math.isclose(wins["z"][i][j] + wins["z"][j][i], 1.0)
    assert sum(map(sum, counts["z"])) == 2 * result.n_battles
    fig = ratings_figure(result)
    assert list(fig.data[0].x) == d["models"] and list(fig.data[0].error_y.array) == d["error_plus"]
    assert heatmap_figure(result, "battles").data[0].type == "heatmap"
    with pytest.raises(ValueError, match="kind must be"):
        heatmap_data(result, "elo")


def test_cache_refits_only_when_the_slice_gets_votes(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'cache.sqlite3'}")
    try:
        fill(s, 60, conversations=False)
        cache = LeaderboardCache(PARAMS)
        first = cache.view(s, "overall")
        again = cache.view(s, "overall")
        assert cache.fits == 1 and again.result is first.result
        cache.view(s, "named")
        assert cache.fits == 2
        _vote(s, "new-named", mode="named")  # a named vote leaves the overall fit alone ...
        cache.view(s, "overall")
        assert cache.fits == 2
        cache.view(s, "named")
        assert cache.fits == 3
        _vote(s, "new-anon")  # ... an anonymous one refits overall
        latest = cache.view(s, "overall")
        assert cache.fits == 4 and latest.votes == first.votes + 1 and latest.result.n_battles == first.votes + 1
    finally:
        s.dispose()


def test_ipw_fits_the_leaderboard_with_inverse_propensity_weights(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'ipw.sqlite3'}")
    s.create_schema()
    try:
        now = datetime.now(UTC)
        # alpha beat beta in pairs drawn 4x as often as uniform, lost in pairs drawn at the uniform rate.
        for n, (winner, propensity) in enumerate([("model_a", 0.4)] * 6 + [("model_b", 0.1)] * 3):
            bid = f"b{n}"
            s.create_battle(
                BattleRecord(bid, "alpha", "beta", "anonymous", "chat", now, "judge", None, propensity, 0.1)
            )
            s.record_vote(VoteRecord(bid, winner, now))  # type: ignore[arg-type]
        plain = fit_slice(s, parse_slice("overall"), FitParams(interval="sandwich", min_votes=1))
        weighted = fit_slice(s, parse_slice("overall"), FitParams(interval="sandwich", min_votes=1, ipw=True))
        counts = s.pair_counts(weighted=True)
        expected = fit_ratings(counts, interval="sandwich", min_votes=1, weights=[c.weight or 0 for c in counts])

        def gap(r: RatingsResult) -> float:
            by = {row.model: row.rating for row in r.rows}
            return by["alpha"] - by["beta"]

        # Unweighted 6:3 for alpha; weighted 6 x 0.25 = 1.5 : 3 x 1 = 3, so beta comes out ahead.
        assert gap(plain) > 0 > gap(weighted)
        assert gap(weighted) == pytest.approx(gap(expected))
        assert weighted.n_battles == plain.n_battles == 9  # counts stay counts
    finally:
        s.dispose()


def test_service_leaderboard_is_cached_and_runs_off_the_event_loop(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'svc.sqlite3'}")
    try:
        fill(s, 60, conversations=False)
        settings = Settings.load({"ARENA_BOOTSTRAP_ROUNDS": "20"})
        service = ArenaService(settings, Registry([]), s, {})

        async def scenario() -> tuple[object, object, object]:
            a = await service.leaderboard()
            b = await service.leaderboard("overall")
            _vote(s, "svc-new")
            c = await service.leaderboard()
            return a, b, c

        a, b, c = asyncio.run(scenario())
        cache = service._leaderboard
        assert cache.fits == 2
        assert a.result is b.result and c.result is not a.result  # type: ignore[attr-defined]
        assert c.result.bootstrap_rounds == 20  # type: ignore[attr-defined]
        with pytest.raises(UnknownSlice, match="Unknown slice"):
            asyncio.run(service.leaderboard("everything"))
    finally:
        s.dispose()


def test_pure_modules_do_not_import_gradio() -> None:
    code = "import sys, arena.leaderboard, arena.exchange, arena.language; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
