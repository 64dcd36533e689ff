"""The audit (issue 22): planted boards fire exactly their probes, the CLI speaks the JSON shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from arena.audit import PROBE_NAMES, THRESHOLDS, audit, fit_batch
from arena.ratings import SCALE, fit_ratings
from arena.storage import Store
from tests.support import planted
from tests.support.boards import store_board

ROOT = Path(__file__).resolve().parents[1]

# What each planted defect must set off, and nothing else. The cycle's three models are equally
# strong by construction, so their order is not separated either.
PLANTED: dict[str, tuple[Callable[[], list[planted.Battle]], set[str]]] = {
    "clean": (planted.clean, set()),
    "too few votes": (planted.too_few_votes, {"separation", "rank_intervals"}),
    "first-slot bias": (planted.first_slot_bias, {"position_bias"}),
    "draw-prone model": (planted.draw_prone_model, {"tie_convention"}),
    "rock-paper-scissors": (planted.cycle, {"intransitivity", "separation"}),
    "two pools that never met": (planted.two_pools, {"connectivity"}),
    "lopsided budget": (planted.lopsided_budget, {"coverage"}),
    "a few power voters": (planted.power_voters, {"voter_concentration"}),
    "one loud voter": (planted.loud_voter, {"annotator_influence", "voter_concentration"}),
}


@pytest.mark.parametrize("board", list(PLANTED))
def test_each_planted_board_fires_exactly_its_probes(board: str) -> None:
    make, expected = PLANTED[board]
    result = audit(planted.rows(make()), resamples=400, seed=1)
    assert [p.name for p in result.probes] == list(PROBE_NAMES)
    fired = {p.name for p in result.probes if p.fired}
    assert fired == expected, {p.name: p.reason for p in result.probes}
    for p in result.probes:
        assert p.reason.endswith(".") and "\n" not in p.reason


def test_the_clean_board_has_one_tier_per_model_and_exact_ranks() -> None:
    result = audit(planted.rows(planted.clean()), resamples=400, seed=1)
    assert result.models == planted.MODELS
    assert result.tier == tuple(range(1, 9))
    assert result.rank_low == result.rank_high == tuple(range(1, 9))


def test_too_few_votes_give_shared_tiers_and_rank_ranges() -> None:
    result = audit(planted.rows(planted.too_few_votes()), resamples=400, seed=1)
    assert max(result.tier) < len(result.models)  # some neighbours share a tier
    assert any(hi > lo for lo, hi in zip(result.rank_low, result.rank_high, strict=True))
    assert all(lo <= i + 1 <= hi for i, (lo, hi) in enumerate(zip(result.rank_low, result.rank_high, strict=True)))


def test_the_audit_fit_equals_the_leaderboard_fit() -> None:
    """Ties split, no resampling: the batched Newton fit is the leaderboard's maximum likelihood."""
    rows = planted.rows(planted.clean())
    result = audit(rows, resamples=20, seed=1)
    from arena.domain import PairCount

    board = fit_ratings([PairCount(a, b, w, c) for a, b, w, _, c in rows], interval="sandwich", bootstrap_rounds=0)
    for model, rating in zip(result.models, result.ratings, strict=True):
        assert rating == pytest.approx(board.row(model).rating, abs=0.05)  # the ridge is worth ~0.04 battles


@pytest.mark.parametrize(("tie_policy", "bothbad_policy"), [("exclude", None), ("half", "exclude")])
def test_the_audit_counts_ties_as_the_leaderboard_does(tie_policy: str, bothbad_policy: str | None) -> None:
    """With ties (or both-bad votes) left out of the fit, the audit judges that fit: its ratings are
    the leaderboard's, and the tie probe weighs the other conventions against it. On the draw-prone
    board the split convention lifts the weak m6 above m5, so it is among the pairs that reverse."""
    from arena.domain import PairCount

    battles = planted.draw_prone_model()
    if bothbad_policy:  # the draws as both-bad votes
        battles = [(a, b, "tie (bothbad)" if w == "tie" else w, v) for a, b, w, v in battles]
    rows = planted.rows(battles)
    result = audit(rows, resamples=200, seed=1, tie_policy=tie_policy, bothbad_policy=bothbad_policy)
    board = fit_ratings(
        [PairCount(a, b, w, c) for a, b, w, _, c in rows],  # type: ignore[arg-type]
        interval="sandwich",
        bootstrap_rounds=0,
        tie_policy=tie_policy,  # type: ignore[arg-type]
        bothbad_policy=bothbad_policy,  # type: ignore[arg-type]
    )
    for model, rating in zip(result.models, result.ratings, strict=True):
        # The ridge (~0.04 battles) weighs a little more on m6, rated ~460 below the rest.
        assert rating == pytest.approx(board.row(model).rating, abs=0.5)
    assert result.models.index("m5") < result.models.index("m6")  # left out, the draws lift m6 no more
    ties = result.probe("tie_convention")
    assert ties.fired and "instead of splitting them" not in ties.reason, ties.reason
    split = audit(rows, resamples=200, seed=1)
    assert split.models.index("m6") < split.models.index("m5")
    with pytest.raises(ValueError, match="tie_policy must be"):
        audit(rows, tie_policy="drop")


def test_the_leaderboard_audits_with_its_own_tie_policy(tmp_path: Path) -> None:
    from arena.leaderboard import FitParams, LeaderboardCache

    url = store_board(f"sqlite:///{tmp_path / 'd.sqlite3'}", planted.draw_prone_model())
    with Store(url) as store:
        view = LeaderboardCache(FitParams(tie_policy="exclude", bootstrap_rounds=50, audit_resamples=100)).view(store)
    assert view.audit is not None
    settled = [r.model for r in view.result.rows if r.rank is not None]
    assert list(view.audit.models) == settled  # the rank ranges follow the order of the ratings shown
    done = arena("audit", "--db", url, "--tie-policy", "exclude", "--resamples", "50", "--json")
    assert done.returncode == 0, done.stderr
    reason = next(p["reason"] for p in json.loads(done.stdout)["probes"] if p["name"] == "tie_convention")
    assert "instead of leaving them out" in reason


def test_the_audit_weighs_battles_as_the_leaderboard_does() -> None:
    """With inverse-propensity weights the audit judges the weighted fit: its ratings are the
    leaderboard's weighted ones, and its rank ranges follow their order. On the adaptive-pairing board
    the weighted order (m0 first) is the reverse of the unweighted one (m1 first) at the top."""
    from arena.domain import PairCount

    battles, propensities = planted.adaptive_pairing()
    rows, weights = planted.weighted_rows(battles, [(1 / 6) / p for p in propensities])
    result = audit(rows, resamples=200, seed=1, weights=weights)
    board = fit_ratings(
        [PairCount(a, b, w, c) for a, b, w, _, c in rows],  # type: ignore[arg-type]
        interval="sandwich",
        bootstrap_rounds=0,
        weights=weights,
    )
    assert result.weighted
    assert list(result.models) == [r.model for r in board.rows]
    for model, rating in zip(result.models, result.ratings, strict=True):
        assert rating == pytest.approx(board.row(model).rating, abs=0.5)  # the ridge, as above
    assert result.models[:2] == ("m0", "m1") and result.rank_low[0] == 1 and result.rank_high[1] >= 2
    assert result.rank_high[0] == 1  # the weighted gap (~70 points) is settled...
    plain = audit(rows, resamples=200, seed=1)
    assert not plain.weighted
    assert plain.models[:2] == ("m1", "m0") and plain.rank_high[0] == 1  # ...as is the unweighted reverse
    # The first-slot fit is weighted too, with a sandwich standard error: sides were random, so
    # the interval holds 0 and the probe stays quiet.
    assert not result.probe("position_bias").fired, result.probe("position_bias").reason
    assert "counted unweighted" in result.probe("intransitivity").reason
    assert "counted unweighted" not in plain.probe("intransitivity").reason
    with pytest.raises(ValueError, match="one sum per row"):
        audit(rows, weights=weights[:-1])
    with pytest.raises(ValueError, match="finite sums"):
        audit(rows, weights=[-1.0] * len(rows))


@pytest.mark.parametrize("board", ["draw-prone model", "one loud voter", "first-slot bias"])
def test_weights_of_one_per_battle_change_nothing(board: str) -> None:
    """Every battle weighing 1 is the unweighted audit: same ratings, ranges, tiers and verdicts
    (boards where the tie, voter and first-slot probes have something to weigh)."""
    rows = planted.rows(PLANTED[board][0]())
    plain = audit(rows, resamples=100, seed=2)
    ones = audit(rows, resamples=100, seed=2, weights=[float(r[4]) for r in rows])
    assert ones.weighted and not plain.weighted
    assert (ones.models, ones.rank_low, ones.rank_high, ones.tier) == (
        plain.models,
        plain.rank_low,
        plain.rank_high,
        plain.tier,
    )
    assert ones.ratings == pytest.approx(plain.ratings)
    for p, q in zip(ones.probes, plain.probes, strict=True):
        assert p.fired == q.fired and p.value == pytest.approx(q.value, abs=1e-4), (p.reason, q.reason)


def test_the_leaderboard_audits_with_its_own_weights(tmp_path: Path) -> None:
    """ARENA_IPW on: the page's rank ranges and tiers come from the weighted votes, as its ratings
    do, and `python -m arena audit` (with --ipw, or ARENA_IPW) audits the same."""
    from arena.leaderboard import FitParams, LeaderboardCache

    battles, propensities = planted.adaptive_pairing()
    url = store_board(f"sqlite:///{tmp_path / 'w.sqlite3'}", battles, propensities=propensities, uniform=1 / 6)
    with Store(url) as store:
        view = LeaderboardCache(FitParams(bootstrap_rounds=50, audit_resamples=100, ipw=True)).view(store)
    assert view.audit is not None
    settled = [r.model for r in view.result.rows if r.rank is not None]
    assert settled[:2] == ["m0", "m1"]  # the weighted fit
    assert list(view.audit.models) == settled  # the rank ranges follow the order of the ratings shown
    for r in view.result.rows:
        k = view.audit.models.index(r.model)
        assert view.audit.rank_low[k] <= (r.rank or 0) <= view.audit.rank_high[k], r.model
    assert view.audit.weighted
    with Store(url) as store:  # the audit's GROUP BY sums the same weights as the fit's
        by_voter = store.voter_counts(weighted=True)
        by_pair = store.pair_counts(weighted=True)
    assert sum(r[5] for r in by_voter) == pytest.approx(sum(c.weight or 0 for c in by_pair))
    assert sum(r[5] for r in by_voter) == pytest.approx(sum((1 / 6) / p for p in propensities))

    def top(weighted: bool, *args: str, env: dict[str, str] | None = None) -> list[str]:
        """The first two models of the audit's rank-range table."""
        done = arena("audit", "--db", url, "--resamples", "50", *args, env=env)
        assert done.returncode == 0, done.stderr
        head, table = done.stdout.split("\n", 1)[0], done.stdout.split("rank ranges and tiers", 1)[1]
        assert ("weighted by inverse propensity" in head) is weighted, head
        return [line.split()[2] for line in table.splitlines() if line.strip().startswith("tier")][:2]

    assert top(True, "--ipw") == ["m0", "m1"]
    assert top(False) == ["m1", "m0"]  # ARENA_IPW unset: unweighted, as `ratings` fits them then
    assert top(True, env={"ARENA_IPW": "true"}) == ["m0", "m1"]
    assert top(False, "--no-ipw", env={"ARENA_IPW": "true"}) == ["m1", "m0"]
    done = arena("ratings", "--db", url, "--ipw", "--bootstrap", "0", "--slice", "overall")
    assert done.returncode == 0, done.stderr
    assert [line.split()[1] for line in done.stdout.splitlines()[2:4]] == ["m0", "m1"]


def test_the_separation_test_holds_its_level_on_a_board_of_equals() -> None:
    """Eight equal models: the simultaneous test may separate a neighbour in at most ~5% of boards."""
    rng = np.random.default_rng(3)
    wrong = 0
    for k in range(40):
        bs = planted.battles(2000, 100 + k, strength=np.zeros(8))
        result = audit(planted.rows(bs), resamples=200, seed=int(rng.integers(1 << 30)))
        wrong += max(result.tier) > 1
    assert wrong <= 5  # binomial(40, 0.05): P(more than 5) < 1.5%


def test_batched_fit_matches_one_at_a_time() -> None:
    rng = np.random.default_rng(0)
    y = rng.poisson(20, (5, 6, 6)).astype(float)
    nn = y + np.swapaxes(y, 1, 2)
    batch = fit_batch(y, nn)
    for r in range(5):
        assert batch[r] == pytest.approx(fit_batch(y[r : r + 1], nn[r : r + 1])[0], abs=1e-9)
    assert SCALE > 0


def arena(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "ARENA_"))}, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "arena", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_audit_json_on_sqlite_and_postgresql(tmp_path: Path, pg_database: Callable[[], str]) -> None:
    battles = planted.first_slot_bias()
    outputs = []
    for url in (f"sqlite:///{tmp_path / 'a.sqlite3'}", pg_database()):
        store_board(url, battles)
        done = arena("audit", "--db", url, "--json", "--resamples", "200")
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]  # both backends count the same cells
    data = outputs[0]
    assert list(data) == ["probes"]
    assert [p["name"] for p in data["probes"]] == list(PROBE_NAMES)
    for p in data["probes"]:
        assert list(p) == ["name", "fired", "value", "reason"]
        assert isinstance(p["fired"], bool) and isinstance(p["reason"], str)
    fired = {p["name"] for p in data["probes"] if p["fired"]}
    assert fired == {"position_bias"}
    # The same votes straight into audit(): the database adds nothing and loses nothing.
    direct = audit(planted.rows(battles), resamples=200, seed=0).as_dict()
    assert direct == data


def test_cli_audit_text_and_errors(tmp_path: Path) -> None:
    url = store_board(f"sqlite:///{tmp_path / 'b.sqlite3'}", planted.two_pools())
    done = arena("audit", "--db", url, "--resamples", "100")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("== audit of overall")
    fired = [line for line in lines if line.lstrip().startswith("FIRED")]
    assert len(fired) == 1 and "connectivity" in fired[0] and "2 groups that never met" in fired[0]
    assert "tier" in done.stdout and "ranks" in done.stdout
    bad = arena("audit", "--db", url, "--slice", "pool:nowhere")
    assert bad.returncode == 2 and "Unknown slice" in bad.stderr
    few = arena("audit", "--db", url, "--resamples", "5")
    assert few.returncode == 2 and "at least 20" in few.stderr
    # One recorded voter: the voter probes cannot run, and the table says so rather than "ok".
    alone = store_board(f"sqlite:///{tmp_path / 'c.sqlite3'}", planted.battles(800, 3, voters=1))
    done = arena("audit", "--db", alone, "--resamples", "50")
    assert done.returncode == 0, done.stderr
    status = {line.split()[1]: line.split()[0] for line in done.stdout.splitlines()[1:10]}
    assert status["voter_concentration"] == status["annotator_influence"] == "n/a"
    assert status["position_bias"] == status["connectivity"] == "ok"


def test_rank_ranges_are_summarised_in_whole_places() -> None:
    """Two models that swap in some resamples (ranges 1-2) and two that never do: the plain median
    width is 0.5, a range "0.5 ranks" wide that no model has; the probe says 1 (two places)."""
    from arena.audit import _probe_rank_intervals
    from arena.ui.leaderboard import audit_sentences

    rng = np.random.default_rng(0)
    theta = np.array([1.0, 0.9, 0.0, -1.9])
    draws = theta + np.zeros((400, 4))
    draws[:, :2] += rng.normal(0, 0.2, (400, 2))  # m0 and m1 swap about a third of the time
    low, high, probe = _probe_rank_intervals(theta, draws, THRESHOLDS)
    assert (high - low).tolist() == [1, 1, 0, 0]
    assert probe.value == 1 and type(probe.value) is int and not probe.fired
    assert "spans 2 places" in probe.reason and "0.5" not in probe.reason
    wide = draws.copy()
    wide[:, 2:] = theta[2:] + rng.normal(0, 3, (400, 2))  # now m2 and m3 could sit anywhere
    _, _, probe = _probe_rank_intervals(theta, wide, THRESHOLDS)
    assert probe.fired and probe.value >= 2
    result = audit(planted.rows(planted.too_few_votes()), resamples=200, seed=1)
    sentence = next(s for s in audit_sentences("en", result) if "places or more" in s)
    places = int(result.probe("rank_intervals").value) + 1
    assert f"any of {places} places" in sentence


def test_thresholds_live_in_one_place() -> None:
    src = (ROOT / "arena" / "audit.py").read_text(encoding="utf-8")
    probes = src[src.index("# --- probes") :]
    # Every bar a probe compares against is read from the thresholds object, not written inline.
    for name in THRESHOLDS.__dataclass_fields__:
        assert f"th.{name}" in probes or name in ("level",), name


# --- the leaderboard: tiers, rank ranges, the audit in five languages, style control ---------------


def test_the_leaderboard_shows_rank_ranges_and_tiers_and_audits_once_per_vote_change(tmp_path: Path) -> None:
    from arena import i18n
    from arena.leaderboard import FitParams, LeaderboardCache
    from arena.ui.leaderboard import audit_sentences, legend, table_value
    from tests.support.boards import items

    url = store_board(f"sqlite:///{tmp_path / 'lb.sqlite3'}", planted.too_few_votes())
    cache = LeaderboardCache(FitParams(bootstrap_rounds=100, audit_resamples=200))
    with Store(url) as store:
        view = cache.view(store)
        assert view.audit is not None and cache.fits == 1
        value = table_value("en", view.result, view.audit)
        assert value["headers"] == ["Rank", "Tier", "Model", "Rating", "95% interval", "Votes"]
        ranks = [row[0] for row in value["data"]]
        assert any("–" in str(r) for r in ranks)  # ranges, where the votes leave the order open
        assert len(set(ranks)) < len(ranks)  # neighbours the votes do not separate share a range
        assert ranks != [1] * len(ranks)
        # The tiers are the separation test's, row by row, and some neighbours share one.
        tiers = {row[2]: row[1] for row in value["data"]}
        assert tiers == dict(zip(view.audit.models, view.audit.tier, strict=True))
        assert len(set(tiers.values())) < len(tiers)
        said = legend("en", view.result, view.audit)
        assert i18n.text("en", "lb.legend_ranges") in said  # and it is said why
        assert i18n.text("en", "lb.legend_tiers") in said
        assert table_value("en", view.result)["headers"][1] == "Model"  # no audit, no tier column
        assert cache.view(store).audit is view.audit and cache.fits == 1  # cached with the fit
        store.import_battles(items([("m0", "m7", "model_a")], prefix="late"))
        again = cache.view(store)
        assert cache.fits == 2 and again.audit is not view.audit
        for language in ("en", "pl", "ja", "zh-CN", "zh-TW"):
            lines = audit_sentences(language, again.audit)
            assert len(lines) >= 5 and all("{" not in line for line in lines)
            if language != "en":
                assert not set(lines) & set(audit_sentences("en", again.audit))
        first = audit_sentences("en", again.audit)[0]
        assert "not told apart" in first  # the fired separation probe leads


def test_style_control_undoes_verbose_answers_winning(tmp_path: Path) -> None:
    from arena.leaderboard import FitParams, LeaderboardCache
    from arena.ui.leaderboard import style_summary, style_table_value

    cache = LeaderboardCache(FitParams(bootstrap_rounds=0, interval="sandwich", audit_resamples=0))
    verbose = store_board(f"sqlite:///{tmp_path / 'v.sqlite3'}", planted.verbose_answers())
    plain = store_board(f"sqlite:///{tmp_path / 'p.sqlite3'}", planted.plain_answers())
    with Store(verbose) as store:
        style = cache.style(store)
        assert cache.style(store) is style  # cached until the votes change
    length = style.coefficients[0]
    assert length.feature == "length" and length.significant and length.value > 0
    assert all(not c.significant for c in style.coefficients[1:])  # no markdown in these answers
    # The talkative weaker half wins on length: plain ratings put m4 (400 words) above m3 (20 words).
    by = {r.model: r for r in style.rows}
    assert by["m4"].plain > by["m3"].plain
    assert [r.model for r in style.rows] == list(planted.MODELS)  # controlled: the true order again
    with Store(plain) as store:
        calm = LeaderboardCache(FitParams(audit_resamples=0)).style(store)  # a cache serves one database
    assert not calm.coefficients[0].significant
    table = style_table_value("pl", style, 30)
    assert table["headers"][2] == "Ocena (bez wpływu stylu)" and len(table["data"]) == 8
    ranks = [row[0] for row in table["data"]]
    assert ranks[0] == 1 and ranks == sorted(ranks) and all(type(r) is int for r in ranks)  # all settled
    assert [row[0] for row in style_table_value("pl", style, 10_000)["data"]] == ["—"] * 8
    assert "długość" in style_summary("pl", style)


def test_style_features_count_markdown() -> None:
    from arena.style import features

    text = "# Title\n\n## Part\n\n- one\n* two\n1. three\n\n**bold** and __also bold__ and **more**\nplain words"
    words, headers, lists, bold = features(text)
    assert (headers, lists, bold) == (2, 3, 3)
    assert words == len(text.split())
    assert features("no markdown here") == (3, 0, 0, 0)


def test_cli_ratings_style_prints_the_controlled_table_beside_the_plain_one(tmp_path: Path) -> None:
    url = store_board(f"sqlite:///{tmp_path / 's.sqlite3'}", planted.verbose_answers(2000, 13))
    done = arena("ratings", "--db", url, "--style", "--bootstrap", "0", "--interval", "sandwich")
    assert done.returncode == 0, done.stderr
    assert "== overall, style controlled: 2000 votes" in done.stdout
    lines = done.stdout.splitlines()
    length = next(line for line in lines if line.strip().startswith("length"))
    assert length.rstrip().endswith("significant") and "not significant" not in length
    head = next(i for i, line in enumerate(lines) if "style-controlled" in line)
    controlled = [line.split()[0] for line in lines[head + 1 : head + 9]]
    assert controlled == list(planted.MODELS)


def test_verbose_answers_winning_is_caught_by_style_control_not_by_the_vote_probes() -> None:
    """The tenth planted board: longer answers win. The votes themselves are sound (no vote probe
    fires); style control is the probe for it: a significant length effect. The same answers with
    votes that ignore length show none."""
    from arena.style import StyleBattle, fit_style

    verbose = planted.verbose_answers()
    result = audit(planted.rows([b[:4] for b in verbose]), resamples=400, seed=1)
    assert not {p.name for p in result.probes if p.fired}
    flagged = {
        c.feature
        for c in fit_style(StyleBattle(a, b, w, x, y) for a, b, w, _, x, y in verbose).coefficients
        if c.significant
    }
    assert flagged == {"length"}
    calm = planted.plain_answers()
    assert not [
        c for c in fit_style(StyleBattle(a, b, w, x, y) for a, b, w, _, x, y in calm).coefficients if c.significant
    ]


def test_the_style_table_lists_a_lucky_newcomer_after_the_ranked_models() -> None:
    from arena.style import StyleResult, StyleRow
    from arena.ui.leaderboard import style_table_value

    rows = (
        StyleRow("newcomer", 1300.0, 1100.0, 1500.0, 1290.0, 2),
        StyleRow("a", 1050.0, 1020.0, 1080.0, 1050.0, 400),
        StyleRow("b", 950.0, 920.0, 980.0, 950.0, 400),
    )
    table = style_table_value("en", StyleResult(rows, (), 401, 0.95), 30)
    assert [(row[0], row[1]) for row in table["data"]] == [(1, "a"), (2, "b"), ("—", "newcomer")]


def test_cli_audit_takes_the_min_votes_bar_of_the_leaderboard(tmp_path: Path) -> None:
    """`audit` picks the models it ranks by the same bar as the page (ARENA_MIN_VOTES, or --min-votes)."""
    url = store_board(f"sqlite:///{tmp_path / 'b.sqlite3'}", planted.clean())

    def coverage(*args: str, env: dict[str, str] | None = None) -> str:
        done = arena("audit", "--db", url, "--json", "--resamples", "20", *args, env=env)
        assert done.returncode == 0, done.stderr
        return next(p["reason"] for p in json.loads(done.stdout)["probes"] if p["name"] == "coverage")

    everyone = f"{len(planted.MODELS)} model(s) have fewer than 100000 votes"
    assert "fewer than" not in coverage()  # the clean board: every model above the default bar (30)
    assert everyone in coverage("--min-votes", "100000")
    assert everyone in coverage(env={"ARENA_MIN_VOTES": "100000"})
    assert "fewer than" not in coverage("--min-votes", "30", env={"ARENA_MIN_VOTES": "100000"})
    bad = arena("audit", "--db", url, "--min-votes", "-1")
    assert bad.returncode == 2 and "--min-votes" in bad.stderr
