"""The identity-leak flag measured on the labelled corpus (tests/data/identity/corpus.jsonl, issue 16).

Floors, not exact figures: the test fails if the detector regresses below them on the corpus file
(benchmarks/eval_identity.py prints the full table, with the detector before issue 16 beside it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from arena.backends.demo import DEMO_ROSTER_PATH
from arena.identity import IdentityMatcher
from arena.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).with_name("data") / "identity" / "corpus.jsonl"
PRECISION_FLOOR = 0.95
RECALL_FLOOR = 0.90
HELDOUT_RECALL_FLOOR = 0.80  # rows written after the detector, never tuned on


def rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def matcher() -> IdentityMatcher:
    real = load_registry(ROOT / "models.yaml", environ={})
    demo = load_registry(
        DEMO_ROSTER_PATH, environ={f"DEMO_URL_{n}": f"http://127.0.0.1:{9000 + n}" for n in range(1, 5)}
    )
    return IdentityMatcher([*real, *demo])


def precision_recall(matcher: IdentityMatcher, subset: list[dict[str, Any]]) -> tuple[float, float]:
    tp = fp = fn = 0
    for row in subset:
        said = matcher.names_itself(row["model"], row["text"], prompt=row.get("prompt", ""))
        truth = row["label"] == "leak"
        tp += said and truth
        fp += said and not truth
        fn += truth and not said
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1)


def test_the_corpus_covers_what_the_issue_names() -> None:
    corpus = rows()
    assert {r["lang"] for r in corpus} == {"en", "pl", "ja", "zh-CN", "zh-TW"}
    for lang in ("en", "pl", "ja", "zh-CN", "zh-TW"):
        labels = {r["label"] for r in corpus if r["lang"] == lang}
        assert labels == {"leak", "no-leak"}, lang
    negatives = " ".join(r["text"] for r in corpus if r["label"] == "no-leak")
    for everyday in (
        "Bielik to największy ptak drapieżny",
        "light breeze",
        "活字印刷术",
        "百川归海",
        "シーサー",
        "Cirrus clouds",
    ):
        assert everyday in negatives, everyday
    assert sum(r.get("split") == "heldout" for r in corpus) >= 20


def test_precision_and_recall_on_the_corpus(matcher: IdentityMatcher) -> None:
    corpus = rows()
    precision, recall = precision_recall(matcher, corpus)
    assert precision >= PRECISION_FLOOR and recall >= RECALL_FLOOR, (precision, recall)
    _, heldout_recall = precision_recall(matcher, [r for r in corpus if r.get("split") == "heldout"])
    assert heldout_recall >= HELDOUT_RECALL_FLOOR


def test_the_issue_examples_are_no_longer_flagged(matcher: IdentityMatcher) -> None:
    """Issue 16: 5 of 5 votes for cirrus-7b on a cloud prompt were flagged; everyday words are not self-naming."""
    prompt = "Tell me about cirrus clouds."
    answers = [
        "Cirrus clouds are thin and wispy.",
        "Cirrus forms above 6 km from ice crystals.",
        "A sky full of cirrus often means a warm front is coming.",
        "Cirrus, cirrostratus and cirrocumulus are the high clouds.",
        "You asked about “cirrus clouds”. Here is a short answer.",
    ]
    assert not any(matcher.names_itself("cirrus-7b", a, prompt=prompt) for a in answers)
    assert not matcher.names_itself("bielik-7b-instruct", "Bielik to największy ptak drapieżny.")
    assert not matcher.names_itself("breeze-7b-instruct", "a light breeze")
    assert not matcher.names_itself("huozi-3.5", "活字印刷术")
    assert not matcher.names_itself("baichuan-7b", "百川归海")
    assert not matcher.names_itself("shisa-7b", "シーサー")
    # ...while the same names in a self-introduction still are, in each language.
    assert matcher.names_itself("cirrus-7b", "I am Cirrus, a demo model.", prompt=prompt)
    assert matcher.names_itself("bielik-7b-instruct", "Jestem Bielik, polski model językowy.")
    assert matcher.names_itself("shisa-7b", "私はShisaです。")
    assert matcher.names_itself("huozi-3.5", "我是活字，一个大模型。")
    assert matcher.names_itself("breeze-7b-instruct", "我是由聯發科開發的AI助理。")


def test_what_the_prompt_brought_in_does_not_count(matcher: IdentityMatcher) -> None:
    assert matcher.names_itself("cirrus-7b", "cirrus-7b is fine.")  # a model id, unprompted
    assert not matcher.names_itself("cirrus-7b", "cirrus-7b is fine.", prompt="Is cirrus-7b fine?")
    assert not matcher.names_itself("dune-7b", "I am Dune, the desert.", prompt="Pretend you are Dune, the desert.")
    # A question is not a request to play: answering "yes, I am X" still gives the model away.
    assert matcher.names_itself("dune-7b", "Yes, I am Dune.", prompt="Are you Dune?")
