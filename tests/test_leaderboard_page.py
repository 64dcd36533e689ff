"""The leaderboard a visitor reads (issue 20): human slice names, plain legend lines, the fold."""

from __future__ import annotations

import pytest

from arena import i18n
from arena.domain import PairCount
from arena.leaderboard import parse_slice
from arena.ratings import fit_ratings
from arena.ui.leaderboard import details_markdown, fit_notes, legend, slice_label, table_value


def pc(a: str, b: str, winner: str, n: int) -> PairCount:
    return PairCount(a, b, winner, n)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("language", "name", "label"),
    [
        ("en", "lang:pl", "Language: Polish"),
        ("pl", "lang:pl", "Język: polski"),
        ("zh-TW", "lang:zh-Hant", "語言：中文（繁體）"),
        ("ja", "lang:ja", "言語: 日本語"),
        ("en", "lang:xx", "Language: xx"),  # a code without a name stays readable
        ("en", "pool:chat", "Chat models"),
        ("pl", "pool:base", "Modele bazowe (kontynuacja tekstu)"),
        ("en", "cat:hard_prompt", "Category: Hard prompts"),
        ("en", "cat:long_context", "Category: long context"),
    ],
)
def test_slices_have_human_names(language: str, name: str, label: str) -> None:
    assert slice_label(language, parse_slice(name)) == label


def test_a_shared_rank_between_distant_ratings_is_explained() -> None:
    """5-0 is no evidence (sign test): both read rank 1 though their intervals do not overlap."""
    result = fit_ratings([pc("a", "b", "model_a", 5)], min_votes=0, bootstrap_rounds=100)
    a, b = result.rows
    assert a.ci_lower > b.ci_upper and a.rank == b.rank == 1
    value = table_value("en", result)
    assert [row[0] for row in value["data"]] == ["1", "1"]
    for language in i18n.LANGUAGES:
        text = legend(language, result)
        assert i18n.text(language, "lb.legend_shared", a="a", b="b") in text
    significant = fit_ratings([pc("a", "b", "model_a", 6)], min_votes=0, bootstrap_rounds=100)
    assert "lb.legend_shared" not in legend("en", significant)
    assert i18n.text("en", "lb.legend_shared", a="a", b="b") not in legend("en", significant)


def test_the_legend_says_only_what_applies() -> None:
    clear = fit_ratings([pc("a", "b", "model_a", 60), pc("a", "b", "model_b", 20)], bootstrap_rounds=100)
    assert legend("en", clear) == ""
    young = fit_ratings([pc("a", "b", "model_a", 3), pc("a", "b", "model_b", 2)], bootstrap_rounds=100)
    assert legend("pl", young) == i18n.text("pl", "lb.legend_preliminary", n=young.min_votes)
    assert [row[0] for row in table_value("pl", young)["data"]] == ["—", "—"]
    # A board of newcomers: the audit puts them in one tier, but the table shows no tier, so no tier line.
    from arena.audit import audit

    checked = audit([("a", "b", "model_a", "v1", 3), ("a", "b", "model_b", "v2", 2)], resamples=50, seed=0)
    assert len(checked.models) == 2 and len(set(checked.tier)) == 1
    assert legend("pl", young, checked) == i18n.text("pl", "lb.legend_preliminary", n=young.min_votes)
    assert i18n.text("pl", "column.tier") not in table_value("pl", young, checked)["headers"]


def test_the_sandwich_caveat_is_not_shown_beside_bootstrap_intervals() -> None:
    counts = [pc("a", "b", "model_a", 40), pc("b", "c", "model_a", 25), pc("b", "c", "model_b", 15)]
    sandwich = fit_ratings(counts, interval="sandwich", min_votes=0, bootstrap_rounds=50)
    bootstrap = fit_ratings(counts, interval="bootstrap", min_votes=0, bootstrap_rounds=50)
    assert any(n.key == "note.sandwich_narrow" for n in bootstrap.notes), bootstrap.notes
    assert not any("bootstrap ones" in n for n in fit_notes("en", bootstrap))
    assert any("bootstrap ones" in n for n in fit_notes("en", sandwich))
    fold = details_markdown("en", bootstrap)
    assert "prefer the bootstrap ones" not in fold and i18n.text("en", "lb.researchers") in fold


def test_groups_that_never_met_get_a_group_column_and_a_legend_line() -> None:
    """Two groups that never met: a Group column (last, after the tier the audit gives the largest
    group), each model's group number, and the legend says to compare only within a group."""
    from arena.audit import audit

    counts = [
        pc("a", "b", "model_a", 40),
        pc("a", "b", "model_b", 20),
        pc("b", "c", "model_a", 35),
        pc("b", "c", "model_b", 25),
        pc("x", "y", "model_a", 45),
        pc("x", "y", "model_b", 15),
    ]
    result = fit_ratings(counts, bootstrap_rounds=100)
    checked = audit([(c.model_a, c.model_b, c.winner, "v", c.count) for c in counts], resamples=100)
    for language in i18n.LANGUAGES:
        value = table_value(language, result, checked)
        assert value["headers"][1] == i18n.text(language, "column.tier")
        assert value["headers"][-1] == i18n.text(language, "column.group")
        group = {row[2]: row[-1] for row in value["data"]}
        assert group == {"a": 1, "b": 1, "c": 1, "x": 2, "y": 2}
        tier = {row[2]: row[1] for row in value["data"]}
        assert tier["x"] == tier["y"] == "" and all(type(tier[m]) is int for m in "abc")  # the audit's group only
        assert i18n.text(language, "lb.legend_groups") in legend(language, result, checked)
    single = fit_ratings(counts[:4], bootstrap_rounds=100)
    assert table_value("en", single)["headers"][-1] == i18n.text("en", "column.votes")
