"""Evaluation campaigns: file formats, storage (SQLite and PostgreSQL), results, the comparison chooser,
generation against real demo servers, and judging with the live arena's guarantees."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from arena import templates
from arena.backends.demo import DEMO_ROSTER_PATH, demo_environ, start_demo_servers
from arena.campaigns.chooser import Item, choose, pair_probabilities, probability_best
from arena.campaigns.formats import (
    campaign_from,
    fastchat_question_id,
    load_bundle,
    read_answers,
    read_prompts,
    write_answers,
)
from arena.campaigns.generate import describe_stale, generate_answers, stale_answers
from arena.campaigns.model import CampaignAnswer, CampaignVote, pair_key
from arena.campaigns.results import JUDGMENT_COLUMNS, fit_slice, head_to_head, judgment_row, judgments_csv
from arena.campaigns.service import DEMO_BUNDLE, CampaignService, install_bundle, slice_results, sort_answers
from arena.domain import PairCount
from arena.errors import CampaignDone, ConfigError, RateLimited, VoteRejected
from arena.journal import Journal, read_journal
from arena.ratings import fit_ratings
from arena.registry import ModelSpec
from arena.storage import Store
from arena.storage.campaigns import CampaignStore
from arena.sync import Sync
from tests.support.services import make_service, tgi_spec

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "campaigns"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


# --- file formats -------------------------------------------------------------------------------


def test_shisa_tasks_become_one_prompt_per_language_with_its_system_prompt() -> None:
    prompts = {p.id: p for p in read_prompts(DATA / "shisa_tasks.json")}
    assert sorted(prompts) == ["1-en", "1-ja", "2-ja"]  # user_en: null is left out, as Shisa does
    assert prompts["1-ja"].language == "ja" and prompts["1-ja"].system == "あなたは役に立つアシスタントです。"
    assert prompts["1-en"].turns == ("How do I keep basil alive indoors?",)
    assert prompts["2-ja"].category == "translation-ja-en"


def test_fastchat_questions_keep_every_turn_and_detect_the_language() -> None:
    prompts = {p.id: p for p in read_prompts(DATA / "question.jsonl")}
    assert len(prompts["81"].turns) == 2 and prompts["81"].category == "writing"
    assert prompts["81"].language == "en" and prompts["82"].language == "en"


def test_csv_prompts_with_numbered_turns() -> None:
    prompts = {p.id: p for p in read_prompts(DATA / "prompts.csv")}
    assert prompts["q1"].turns == ("How do I reverse a list in Python?", "And in place?")
    assert prompts["q2"].turns == ("花見とは何ですか？",) and prompts["q2"].language == "ja"


def test_a_bad_prompt_file_names_the_line_and_what_to_do(tmp_path: Path) -> None:
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question_id": 1, "turns": ["ok"]}\n{"question_id": 2, "turns": []}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"q\.jsonl:2: prompt '2' needs 'turns'"):
        read_prompts(bad)
    bad.write_text('{"question_id": 1, "turns": ["a"]}\n{"question_id": 1, "turns": ["b"]}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="appears twice"):
        read_prompts(bad)
    wrong = tmp_path / "p.csv"
    wrong.write_text("question,answer\nHi?,Hello\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"p\.csv:2: the file has no 'id' column \(its columns: question, answer\)"):
        read_prompts(wrong)


def test_fastchat_answers_one_run_per_choice_and_round_trip(tmp_path: Path) -> None:
    answers = read_answers(DATA / "model_answer.jsonl", "c")
    assert [(a.prompt_id, a.run, len(a.turns)) for a in answers] == [("81", 1, 2), ("81", 2, 2), ("82", 1, 1)]
    assert all(a.candidate == "rc-1" and a.source == "imported" for a in answers)
    out = tmp_path / "out.jsonl"
    write_answers(answers, out)
    again = read_answers(out, "c")
    assert [(a.id, a.turns) for a in again] == [(a.id, a.turns) for a in answers]
    # FastChat's tools key by integer question ids: numeric ids go out as numbers, others as text.
    assert [json.loads(line)["question_id"] for line in out.read_text(encoding="utf-8").splitlines()] == [81, 81, 82]
    assert [fastchat_question_id(x) for x in ("81", "081", "1-en", "٣")] == [81, "081", "1-en", "٣"]
    csv_answers = read_answers(DATA / "answers.csv", "c")
    assert csv_answers[0].candidate == "rc-2" and csv_answers[0].turns == ("It is 391.",)


def test_the_demo_bundle_is_bilingual_and_complete() -> None:
    bundle = load_bundle(DEMO_BUNDLE)
    assert {p.language for p in bundle.prompts} == {"en", "ja"}
    expected = len(bundle.prompts) * len(bundle.campaign.candidates) * len(bundle.campaign.settings)
    assert len(bundle.answers) == expected and all(a.ok for a in bundle.answers)
    assert all(a.rendered_prompt and a.finish_reason and a.total_ms for a in bundle.answers)


def test_campaign_fields_are_checked() -> None:
    with pytest.raises(ConfigError, match="temperatures must be >= 0"):
        campaign_from("x", "X", temperatures=[-1])
    with pytest.raises(ConfigError, match="without spaces"):
        campaign_from("a b", "X")


# --- storage ------------------------------------------------------------------------------------


def _campaign_store(db_url: str) -> tuple[Store, CampaignStore]:
    store = Store(db_url)
    store.create_schema()
    return store, CampaignStore(store)


def _vote(v_id: str, a: str, b: str, winner: str = "model_a", *, client: str = "c1", flags=(), **kw) -> CampaignVote:  # type: ignore[no-untyped-def]
    return CampaignVote(
        id=v_id,
        campaign_id=kw.get("campaign", "demo-bilingual"),
        prompt_id=kw.get("prompt", "1-en"),
        answer_a=kw.get("answer_a", f"{v_id}-a"),
        answer_b=kw.get("answer_b", f"{v_id}-b"),
        model_a=a,
        model_b=b,
        setting=kw.get("setting", "t0.2"),
        language=kw.get("language", "en"),
        category=kw.get("category", "travel"),
        winner=winner,  # type: ignore[arg-type]
        client_hash=client,
        shown_at=NOW,
        created_at=NOW + timedelta(seconds=30),
        flags=tuple(flags),
    )


def test_bundles_load_once_and_answers_resume(db_url: str) -> None:
    store, cstore = _campaign_store(db_url)
    with store:
        campaign, changed, added = install_bundle(cstore, DEMO_BUNDLE)
        assert (changed, added) == (16, 128)
        assert install_bundle(cstore, DEMO_BUNDLE)[1:] == (0, 0)  # idempotent
        assert len(cstore.prompts(campaign.id)) == 16
        ok = cstore.answers(campaign.id)[0]
        failed = CampaignAnswer(campaign.id, "new", "aurora-7b", (), error="BackendTimeout")
        assert cstore.add_answers([failed]) == 1
        assert failed.id not in cstore.done_answer_ids(campaign.id)
        retried = CampaignAnswer(campaign.id, "new", "aurora-7b", ("fine",))
        assert cstore.add_answers([retried, ok]) == 1  # the failed one is replaced, the good one kept
        assert retried.id in cstore.done_answer_ids(campaign.id)


def test_a_reworded_prompt_does_not_keep_answers_to_its_old_words(db_url: str) -> None:
    store, cstore = _campaign_store(db_url)
    with store:
        campaign, _, _ = install_bundle(cstore, DEMO_BUNDLE)
        prompts = cstore.prompts(campaign.id)
        first = prompts[0]
        recategorised = [replace(first, category="other"), *prompts[1:]]
        assert cstore.save_campaign(campaign, recategorised) == 1  # metadata only: the answers still fit
        assert len(cstore.answers(campaign.id)) == 128
        reworded = [replace(first, turns=("Something else entirely?",)), *prompts[1:]]
        with pytest.raises(ConfigError, match=rf"prompt\(s\) {first.id} changed, and 8 stored answers"):
            cstore.save_campaign(campaign, reworded)
        assert cstore.prompts(campaign.id)[0].turns == first.turns  # nothing saved
        assert len(cstore.answers(campaign.id)) == 128
        assert cstore.save_campaign(campaign, reworded, reworded="drop") == 1
        assert cstore.prompts(campaign.id)[0].turns == ("Something else entirely?",)
        assert {a.prompt_id for a in cstore.answers(campaign.id)} == {p.id for p in prompts[1:]}
        # generate asks again for exactly the dropped answers.
        assert len(cstore.done_answer_ids(campaign.id)) == 120
        # Loading the bundle again restores its words, and its answers replace those to the other words.
        other = CampaignAnswer(campaign.id, first.id, "aurora-7b", ("About something else.",), setting="t0.2")
        assert cstore.add_answers([other]) == 1
        assert install_bundle(cstore, DEMO_BUNDLE)[1:] == (1, 8)
        assert len(cstore.answers(campaign.id)) == 128 and other.turns not in {
            a.turns for a in cstore.answers(campaign.id)
        }


def _demo_specs() -> dict[str, ModelSpec]:
    from arena.registry import load_registry

    registry = load_registry(DEMO_ROSTER_PATH, {f"DEMO_URL_{n}": "http://127.0.0.1:9" for n in range(1, 5)})
    return {m.name: m for m in registry.enabled}


def test_answers_made_under_other_settings_are_stale() -> None:
    bundle = load_bundle(DEMO_BUNDLE)
    campaign, prompts, answers = bundle.campaign, bundle.prompts, bundle.answers
    specs = _demo_specs()
    assert len(answers) == 128 and stale_answers(campaign, prompts, answers, specs) == []  # made by this roster

    def stale(c: object = campaign, **changed: object) -> list[str]:
        s = dict(specs)
        if changed:
            s["aurora-7b"] = specs["aurora-7b"].model_copy(update=changed)
        return [x.answer_id for x in stale_answers(c, prompts, answers, s)]  # type: ignore[arg-type]

    aurora = {a.id for a in answers if a.candidate == "aurora-7b"}
    # The campaign's cap applies to every candidate.
    found = stale_answers(replace(campaign, max_new_tokens=100), prompts, answers, specs)
    assert len(found) == 128
    assert describe_stale(found).startswith(
        "128 stored answers were generated under other settings (aurora-7b: max_new_tokens 160 -> 100; borealis-7b:"
    )
    # A model's own sampling parameters, as models.yaml gives them.
    params = specs["aurora-7b"].params
    assert set(stale(params=params.model_copy(update={"top_p": 0.5}))) == aurora
    narrower = specs["aurora-7b"].model_copy(update={"params": params.model_copy(update={"top_p": 0.5})})
    found = stale_answers(campaign, prompts, answers, {**specs, "aurora-7b": narrower})
    assert {s.changes for s in found} == {("top_p 0.9 -> 0.5",)}
    # Its prompt format (the template; the system prompt where the prompt has none of its own).
    assert set(stale(template="llama-2")) == aurora
    assert stale(system_prompt="Be terse.") == []  # these prompts bring their own system prompt
    bare = [replace(p, system=None) for p in prompts]  # prompts without one get the model's
    made = []
    for a in answers:
        if a.candidate == "aurora-7b" and a.setting == "t0.2":
            (prompt,) = [p for p in bare if p.id == a.prompt_id]
            sent = templates.prepare(
                specs[a.candidate].model_copy(update={"params": params.model_copy(update={"temperature": 0.2})}),
                prompt.conversation(),  # type: ignore[arg-type]
                max_new_tokens_cap=160,
            )
            made.append(replace(a, rendered_prompt=sent.text, params=sent.request.params.model_dump(exclude_none=True)))
    assert len(made) == 16 and stale_answers(campaign, bare, made, specs) == []
    terse = {**specs, "aurora-7b": specs["aurora-7b"].model_copy(update={"system_prompt": "Be terse."})}
    assert {s.changes for s in stale_answers(campaign, bare, made, terse)} == {("prompt format",)}
    # What does not change the request does not make an answer stale: the model's own temperature,
    # overridden by each setting's, or its own cap above the campaign's.
    assert stale(params=params.model_copy(update={"temperature": 1.3, "max_new_tokens": 1024})) == []
    # Imported answers were made elsewhere, and a removed temperature's answers are not judged, not stale.
    other_format = {**specs, "aurora-7b": specs["aurora-7b"].model_copy(update={"template": "llama-2"})}
    assert stale_answers(campaign, prompts, [replace(a, source="imported") for a in answers], other_format) == []
    assert stale(replace(campaign, temperatures=(0.2,)), template="llama-2") == [
        a.id for a in answers if a.candidate == "aurora-7b" and a.setting == "t0.2"
    ]


def test_replicas_loading_the_same_bundle_together_all_start(db_url: str) -> None:
    import threading

    from arena.campaigns.service import load_campaign_bundles
    from arena.config import Settings

    with Store(db_url) as store:
        store.create_schema()
    errors: list[BaseException] = []

    def start() -> None:
        store = Store(db_url)
        try:
            load_campaign_bundles(Settings.load({}, demo=True), store)
        except BaseException as e:  # collected and asserted below
            errors.append(e)
        finally:
            store.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store(db_url) as store:
        assert len(CampaignStore(store).answers("demo-bilingual")) == 128


def test_one_vote_per_comparison_per_visitor_in_the_database(db_url: str) -> None:
    store, cstore = _campaign_store(db_url)
    with store:
        install_bundle(cstore, DEMO_BUNDLE)
        first = _vote("v1", "aurora-7b", "dune-7b", answer_a="x", answer_b="y")
        cstore.record_vote(first)
        # The same two answers with sides swapped, from another session of the same visitor.
        with pytest.raises(VoteRejected):
            cstore.record_vote(_vote("v2", "dune-7b", "aurora-7b", answer_a="y", answer_b="x"))
        cstore.record_vote(_vote("v3", "dune-7b", "aurora-7b", answer_a="y", answer_b="x", client="c2"))
        assert cstore.judged_pairs("demo-bilingual", "c1") == {pair_key("x", "y")}
        assert cstore.merge_votes([first, _vote("v4", "aurora-7b", "cirrus-7b")]) == 1  # v1 already stored
        assert len(cstore.votes("demo-bilingual")) == 3


def test_pair_counts_filter_slices_and_leave_flagged_votes_out(db_url: str) -> None:
    store, cstore = _campaign_store(db_url)
    with store:
        install_bundle(cstore, DEMO_BUNDLE)
        cstore.record_vote(_vote("v1", "aurora-7b", "dune-7b", language="ja", category="code"))
        cstore.record_vote(_vote("v2", "aurora-7b", "dune-7b", "tie"))
        cstore.record_vote(_vote("v3", "aurora-7b", "dune-7b", "model_b", flags=["too_fast"]))
        counts = cstore.pair_counts("demo-bilingual")
        assert [(p.winner, p.count) for p in counts] == [("model_a", 1), ("tie", 1)]
        assert [p.winner for p in cstore.pair_counts("demo-bilingual", language="ja")] == ["model_a"]
        assert [p.winner for p in cstore.pair_counts("demo-bilingual", category="travel")] == ["tie"]
        assert len(cstore.pair_counts("demo-bilingual", exclude_flags=())) == 3
        # A slice whose only votes are flagged has nothing to show, so it is not offered.
        cstore.record_vote(_vote("v4", "aurora-7b", "dune-7b", category="science", flags=["too_fast"]))
        assert cstore.slice_values("demo-bilingual")["category"] == ["code", "travel"]


# --- results ------------------------------------------------------------------------------------


def test_win_loss_draw_and_percentages() -> None:
    counts = [
        PairCount("a", "b", "model_a", 6),
        PairCount("a", "b", "model_b", 2),
        PairCount("b", "a", "tie", 1),
        PairCount("a", "b", "tie (bothbad)", 1),
    ]
    result = fit_slice("overall", counts, ["a", "b", "c"], bootstrap_rounds=50)
    rows = {r.candidate: r for r in result.rows}
    assert (rows["a"].wins, rows["a"].losses, rows["a"].draws) == (6, 2, 2)
    assert rows["a"].win_pct == pytest.approx(60.0) and rows["a"].win_draw_pct == pytest.approx(80.0)
    assert rows["b"].win_pct == pytest.approx(20.0) and rows["b"].win_draw_pct == pytest.approx(40.0)
    assert rows["a"].rating is not None and rows["b"].rating is not None and rows["a"].rating > rows["b"].rating
    assert rows["c"].rating is None and rows["c"].judgments == 0 and result.rows[-1].candidate == "c"
    # The ratings are the arena's own fit of the same counts.
    own = fit_ratings(counts, bootstrap_rounds=50, seed=0)
    assert rows["a"].rating == pytest.approx(own.row("a").rating)


def test_head_to_head_is_mirrored() -> None:
    counts = [PairCount("a", "b", "model_a", 3), PairCount("b", "a", "model_a", 1), PairCount("a", "b", "tie", 2)]
    header, rows = head_to_head(counts, ["a", "b"])
    assert header == ["", "a", "b"]
    assert rows == [["a", "", "3-1-2"], ["b", "1-3-2", ""]]


def test_judgments_export_in_mt_bench_columns_first() -> None:
    text = judgments_csv([_vote("v1", "a", "b", "model_b", prompt="81")])
    row = next(csv.DictReader(io.StringIO(text)))
    assert list(row)[:6] == ["question_id", "model_a", "model_b", "winner", "judge", "turn"]
    assert list(row) == JUDGMENT_COLUMNS
    assert (row["question_id"], row["winner"], row["turn"]) == ("81", "model_b", "1")
    assert row["judge"].startswith("arena_") and "c1" in row["judge"]
    assert judgment_row(_vote("v2", "a", "b", prompt="81"))["question_id"] == 81
    assert judgment_row(_vote("v3", "a", "b", prompt="1-en"))["question_id"] == "1-en"


# --- the comparison chooser ---------------------------------------------------------------------


def _items(candidates: list[str], prompts: int = 3) -> list[Item]:
    return [Item(f"p{i}", "t0.7", {c: (f"{c}-{i}",) for c in candidates}) for i in range(prompts)]


def test_uniform_choice_and_nothing_judged_twice() -> None:
    names = ["a", "b", "c"]
    probs = pair_probabilities(names, None)
    assert list(probs.values()) == pytest.approx([1 / 3] * 3)
    items = _items(names, prompts=2)
    rng = np.random.default_rng(1)
    judged: set[str] = set()
    for _ in range(6):  # 3 pairs x 2 prompts
        choice = choose(items, probs, judged, rng)
        assert choice is not None and choice.model_a != choice.model_b
        key = pair_key(choice.answer_a, choice.answer_b)
        assert key not in judged
        judged.add(key)
        # The two answers are to the same prompt under the same setting.
        assert choice.answer_a.endswith(choice.prompt_id[1:]) and choice.answer_b.endswith(choice.prompt_id[1:])
    assert choose(items, probs, judged, rng) is None


def test_top_choice_favours_the_uncertain_order_of_the_best() -> None:
    names = ["strong1", "strong2", "weak1", "weak2"]
    counts = [
        PairCount("strong1", "strong2", "model_a", 11),
        PairCount("strong1", "strong2", "model_b", 9),
        *(PairCount(s, w, "model_a", 18) for s in names[:2] for w in names[2:]),
        *(PairCount(s, w, "model_b", 2) for s in names[:2] for w in names[2:]),
        PairCount("weak1", "weak2", "model_a", 10),
        PairCount("weak1", "weak2", "model_b", 10),
    ]
    fit = fit_ratings(counts, interval="sandwich", bootstrap_rounds=0)
    best = probability_best(names, fit, counts)
    assert best[:2].sum() > 0.95
    probs = pair_probabilities(names, fit, counts, floor=0.1)
    assert max(probs, key=probs.__getitem__) == ("strong1", "strong2")
    assert probs[("strong1", "strong2")] > 0.5
    assert min(probs.values()) >= 0.1 / 6 - 1e-12
    assert sum(probs.values()) == pytest.approx(1.0)


# --- generation through the arena's backends and templates --------------------------------------


def test_generation_through_demo_servers_is_stored_and_resumable(tmp_path: Path) -> None:
    from arena.backends import make_backend
    from arena.backends.base import Timeouts
    from arena.registry import load_registry

    servers = start_demo_servers(4, token_rate=400, first_token_delay=0.01)
    try:
        registry = load_registry(str(DEMO_ROSTER_PATH), demo_environ(servers))
        specs = {m.name: m for m in registry.enabled}
        timeouts = Timeouts(connect=5, first_token=5, read=5, total=30)
        backends = {n: make_backend(s, timeouts, {}) for n, s in specs.items()}
        store, cstore = _campaign_store(f"sqlite:///{tmp_path / 'g.sqlite3'}")
        campaign = campaign_from(
            "gen", "Gen", candidates=["aurora-7b", "cirrus-7b"], temperatures=[0, 0.7], max_new_tokens=40
        )
        prompts = read_prompts(DATA / "question.jsonl")  # one two-turn prompt, one single-turn
        cstore.save_campaign(campaign, prompts)
        servers[2].fault = "status:503"  # cirrus-7b fails: its answers are stored as failed

        async def run() -> object:
            try:
                return await generate_answers(
                    campaign,
                    prompts,
                    specs,
                    backends,
                    lambda a: cstore.add_answers([a]),
                    done=cstore.done_answer_ids(campaign.id),
                    concurrency=3,
                )
            finally:
                for b in backends.values():
                    await b.aclose()

        first = asyncio.run(run())
        assert (first.planned, first.generated, first.failed) == (8, 4, 4)  # type: ignore[attr-defined]
        servers[2].fault = None
        backends = {n: make_backend(s, timeouts, {}) for n, s in specs.items()}
        second = asyncio.run(run())
        assert (second.skipped, second.generated, second.failed) == (4, 4, 0)  # type: ignore[attr-defined]
        answers = {(a.prompt_id, a.candidate, a.setting): a for a in cstore.answers(campaign.id)}
        assert len(answers) == 8 and all(a.ok for a in answers.values())
        two_turn = answers[("81", "aurora-7b", "t0.7")]
        assert len(two_turn.turns) == 2
        # The exact prompt of the last turn: chatml rendered by the arena, with the first answer in it.
        assert "<|im_start|>user\nRewrite your previous answer" in (two_turn.rendered_prompt or "")
        assert two_turn.turns[0] in (two_turn.rendered_prompt or "")
        finishes = (two_turn.finish_reason or "").split(",")
        assert len(finishes) == 2 and set(finishes) <= {"eos", "length", "stop"}, two_turn.finish_reason
        assert two_turn.params["temperature"] == 0.7 and two_turn.params["max_new_tokens"] == 40
        assert answers[("82", "aurora-7b", "t0")].params.get("do_sample") is False
        openai = answers[("82", "cirrus-7b", "t0.7")]
        assert json.loads(openai.rendered_prompt or "[]")[-1]["content"] == "What is 17 times 23?"
        assert openai.finish_reason in ("eos", "length", "stop") and openai.total_ms and openai.generated_tokens
        sent = [
            body["parameters"] for _, body in servers[0].requests if isinstance(body, dict) and "parameters" in body
        ]
        assert {p.get("temperature") for p in sent} >= {0.7}  # what the TGI server was really sent
        # Built again from the prompt, the stored turns and the roster, every request matches what
        # was recorded (two turns, TGI and OpenAI-compatible): the stale check has no false alarm.
        assert stale_answers(campaign, prompts, cstore.answers(campaign.id), specs) == []
        shorter = replace(campaign, max_new_tokens=20)
        assert {s.changes for s in stale_answers(shorter, prompts, cstore.answers(campaign.id), specs)} == {
            ("max_new_tokens 40 -> 20",)
        }
        store.dispose()
    finally:
        for s in servers:
            s.stop()


# --- judging: the live arena's guarantees -------------------------------------------------------


_OPEN: list[Store] = []


@pytest.fixture(autouse=True)
def _dispose_stores() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().dispose()


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _judging(db_url: str, tmp_path: Path, **settings: object) -> tuple[CampaignService, _Clock, list[dict]]:  # type: ignore[type-arg]
    clock = _Clock()
    store = Store(db_url)
    _OPEN.append(store)
    events: list[dict] = []  # type: ignore[type-arg]
    arena = make_service(
        [tgi_spec("aurora-7b", "http://127.0.0.1:9")], store, settings=settings, clock=clock, now=lambda: NOW
    )
    arena.journal = events.append
    cstore = CampaignStore(store)
    install_bundle(cstore, DEMO_BUNDLE)
    return CampaignService(arena, cstore, rng=np.random.default_rng(0)), clock, events


def test_a_comparison_names_no_candidate_until_the_vote(db_url: str, tmp_path: Path) -> None:
    service, clock, events = _judging(db_url, tmp_path)
    comparison = service.next_comparison("demo-bilingual", "10.0.0.1")
    a, b = comparison.answer_a, comparison.answer_b
    assert a.candidate != b.candidate
    assert (a.prompt_id, a.setting) == (b.prompt_id, b.setting) == (comparison.prompt.id, comparison.choice.setting)
    shown = json.dumps([comparison.prompt.turns, a.turns, b.turns], ensure_ascii=False)
    assert not any(name in shown for name in ("aurora", "borealis", "cirrus", "dune"))
    clock.t += 30
    reveal = asyncio.run(service.vote(comparison, "model_b", reason="clearer"))
    assert {reveal.model_a, reveal.model_b} == {a.candidate, b.candidate} and reveal.flags == ()
    with pytest.raises(VoteRejected):
        asyncio.run(service.vote(comparison, "model_a"))
    stored = service.store.votes("demo-bilingual")
    assert len(stored) == 1 and stored[0].reason == "clearer" and 0 < (stored[0].propensity or 0) <= 1
    assert events[-1]["event"] == "campaign_vote" and events[-1]["id"] == stored[0].id


def test_an_answer_that_names_its_candidate_is_never_shown(db_url: str, tmp_path: Path) -> None:
    # Pre-generated answers are known before anyone reads them: one that gives its author away is
    # left out of the comparisons, instead of being shown and its vote flagged afterwards.
    service, _, _ = _judging(db_url, tmp_path)
    cstore = service.store
    prompt = next(p for p in cstore.prompts("demo-bilingual") if p.id == "1-en")
    honest = CampaignAnswer("demo-bilingual", prompt.id, "alpha-rc", ("A plain answer.",), setting="t0.2")
    named = CampaignAnswer("demo-bilingual", prompt.id, "beta-rc", ("As Beta-RC, I suggest tea.",), setting="t0.2")
    roster = CampaignAnswer(  # imported: a second run the campaign's plan (one run) does not list
        "demo-bilingual", prompt.id, "aurora-7b", ("I am Aurora-7B, a demo model.",), setting="t0.8", run=2,
        source="imported",
    )  # fmt: skip
    cstore.add_answers([honest, named, roster])
    service.reload()
    assert set(service.leaked("demo-bilingual")) == {named.id, roster.id}
    shown: set[str] = set()
    for i in range(200):
        try:
            comparison = service.next_comparison("demo-bilingual", f"10.1.{i // 250}.{i % 250}", "en")
        except CampaignDone:
            break
        shown |= {comparison.choice.answer_a, comparison.choice.answer_b}
    assert honest.id in shown and not shown & {named.id, roster.id}
    # `campaign list` counts them as the arena does (with the roster the arena would use).
    listed = _cli("list", "--db", db_url, "--demo")
    assert listed.returncode == 0, listed.stderr
    assert (
        "demo-bilingual: Demo release candidates (English and Japanese) | 16 prompts, 131 answers (0 failed, "
        "2 name their candidate), 0 votes" in listed.stdout
    )
    # A name the prompt itself brought in does not count.
    echo = CampaignAnswer("demo-bilingual", prompt.id, "gamma", ("You said gamma: fine.",))
    assert not service.names_itself(replace(prompt, turns=("Explain gamma rays.",)), echo)
    assert service.names_itself(prompt, echo)
    # A plain name counts as a word, not inside another one.
    sft = CampaignAnswer("demo-bilingual", prompt.id, "sft", ("Open Microsoft Word.",))
    assert not service.names_itself(prompt, sft)
    assert service.names_itself(prompt, replace(sft, turns=("This is SFT speaking.",)))


def test_a_judge_may_ask_for_prompts_in_one_language(db_url: str, tmp_path: Path) -> None:
    service, clock, _ = _judging(db_url, tmp_path)
    assert service.languages("demo-bilingual") == ["en", "ja"]
    for _ in range(5):
        comparison = service.next_comparison("demo-bilingual", "10.0.0.9", "ja")
        assert comparison.prompt.language == "ja" and comparison.prompt.id.endswith("-ja")
        clock.t += 30
        asyncio.run(service.vote(comparison, "tie"))
    assert {v.language for v in service.store.votes("demo-bilingual")} == {"ja"}


def test_quick_votes_are_flagged_and_the_vote_limit_is_shared(db_url: str, tmp_path: Path) -> None:
    service, clock, _ = _judging(db_url, tmp_path, min_read_seconds=5.0, votes_per_hour=2)
    first = service.next_comparison("demo-bilingual", "10.0.0.2")
    clock.t += 1
    assert asyncio.run(service.vote(first, "tie")).flags == ("too_fast",)
    second = service.next_comparison("demo-bilingual", "10.0.0.2")
    assert pair_key(second.choice.answer_a, second.choice.answer_b) != pair_key(
        first.choice.answer_a, first.choice.answer_b
    )
    clock.t += 10
    assert asyncio.run(service.vote(second, "model_a")).flags == ()
    third = service.next_comparison("demo-bilingual", "10.0.0.2")
    with pytest.raises(RateLimited) as refused:
        asyncio.run(service.vote(third, "model_a"))
    assert "limit of 2 votes per hour" in str(refused.value.message)
    assert third.status == "ready"  # nothing written: the judge may try again later


def test_journaled_votes_are_restored_into_a_fresh_database(tmp_path: Path) -> None:
    service, clock, _ = _judging(f"sqlite:///{tmp_path / 'a.sqlite3'}", tmp_path)
    journal_dir = tmp_path / "sync" / "journal"
    journal_dir.mkdir(parents=True)
    journal = Journal(journal_dir / "j.jsonl", service.store.store)
    service.arena.journal = journal
    for _ in range(3):
        comparison = service.next_comparison("demo-bilingual", "10.0.0.3")
        clock.t += 30
        asyncio.run(service.vote(comparison, "model_a"))
    journal.close()
    assert sum(len(b.campaign_votes) for b in read_journal(journal_dir / "j.jsonl")) == 3
    fresh = Store(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    fresh.create_schema()
    install_bundle(CampaignStore(fresh), DEMO_BUNDLE)
    restored = Sync(fresh, tmp_path / "sync").restore()
    assert restored.campaign_votes == 3
    assert {v.id for v in CampaignStore(fresh).votes("demo-bilingual")} == {
        v.id for v in service.store.votes("demo-bilingual")
    }
    assert Sync(fresh, tmp_path / "sync").restore().campaign_votes == 0  # idempotent
    fresh.dispose()


def test_snapshots_carry_campaigns_answers_and_votes(tmp_path: Path) -> None:
    service, clock, _ = _judging(f"sqlite:///{tmp_path / 'a.sqlite3'}", tmp_path)
    comparison = service.next_comparison("demo-bilingual", "10.0.0.4")
    clock.t += 30
    asyncio.run(service.vote(comparison, "model_b"))
    source = service.store.store
    snap = tmp_path / "snap.sqlite3"
    source.snapshot(snap)
    fresh = Store(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    snapshot = Store(f"sqlite:///{snap}")
    _OPEN.extend([fresh, snapshot])
    fresh.create_schema()
    answers, votes = CampaignStore(fresh).merge_from(CampaignStore(snapshot))
    assert (answers, votes) == (128, 1)
    assert len(CampaignStore(fresh).prompts("demo-bilingual")) == 16


def test_results_per_slice_and_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    service, clock, _ = _judging(db, tmp_path)
    rng = np.random.default_rng(3)
    strength = {"aurora-7b": 2.0, "borealis-7b": 1.0, "cirrus-7b": 0.0, "dune-7b": -1.0}
    for i in range(60):
        comparison = service.next_comparison("demo-bilingual", f"10.1.0.{i % 30}")
        clock.t += 30
        sa, sb = strength[comparison.answer_a.candidate], strength[comparison.answer_b.candidate]
        winner = "model_a" if rng.random() < 1 / (1 + np.exp(sb - sa)) else "model_b"
        asyncio.run(service.vote(comparison, winner))  # type: ignore[arg-type]
    names = service.slices("demo-bilingual")
    assert {"overall", "language:en", "language:ja"} <= set(names)
    overall = slice_results(service.store, "demo-bilingual", "overall", bootstrap_rounds=50)
    assert overall.judgments == 60 and overall.rows[0].candidate == "aurora-7b"
    ja = slice_results(service.store, "demo-bilingual", "language:ja", bootstrap_rounds=50)
    assert 0 < ja.judgments < 60
    out = tmp_path / "results.csv"
    judged = tmp_path / "judgments.jsonl"
    env_cmd = [sys.executable, "-m", "arena", "campaign"]
    printed = subprocess.run(
        [*env_cmd, "results", "--db", db, "--campaign", "demo-bilingual", "--bootstrap", "50", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "== overall (60 judgments) ==" in printed and "== language:ja" in printed and "head to head" in printed
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert {r["slice"] for r in rows} >= {"overall", "language:en", "language:ja"}
    assert sum(int(r["wins"]) for r in rows if r["slice"] == "overall") == 60
    subprocess.run(
        [*env_cmd, "export", "--db", db, "--campaign", "demo-bilingual", "--judgments", str(judged)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    lines = [json.loads(line) for line in judged.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 60 and {"question_id", "model_a", "model_b", "winner", "judge", "turn"} <= set(lines[0])


# --- the command line, as a model builder runs it -----------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "arena", "campaign", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=180,
    )


def test_generate_resumes_after_an_interruption(tmp_path: Path) -> None:
    import os
    import signal
    import time

    db = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    created = _cli(
        "create", "--db", db, "--id", "rc", "--title", "RC", "--prompts", str(DATA / "prompts.csv"),
        "--candidates", "aurora-7b,dune-7b", "--temperatures", "0.3,0.9",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "2 prompts" in created.stdout and "2 candidates x 2 settings" in created.stdout
    # Slow answers (5 tokens/s), so the run is interrupted with answers still in flight.
    env = {**os.environ, "ARENA_DEMO_TOKEN_RATE": "5", "ARENA_DEMO_FIRST_TOKEN_DELAY": "0.05"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "arena", "campaign", "generate", "--db", db, "--campaign", "rc", "--demo",
         "--concurrency", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    store = Store(db)
    _OPEN.append(store)
    deadline = time.monotonic() + 120
    while len(CampaignStore(store).done_answer_ids("rc")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stopped = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again" in stopped, stopped
    kept = len(CampaignStore(store).done_answer_ids("rc"))
    assert 2 <= kept < 8, kept  # interrupted part-way, with what was finished stored
    again = _cli("generate", "--db", db, "--campaign", "rc", "--demo", "--concurrency", "4",
                 env={"ARENA_DEMO_TOKEN_RATE": "400"})  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"{kept} already stored, {8 - kept} generated, 0 failed" in again.stdout
    assert "answers" in again.stderr and "]" in again.stderr  # the progress bar
    assert len(CampaignStore(store).done_answer_ids("rc")) == 8
    listed = _cli("list", "--db", db)
    assert "rc: RC | 2 prompts, 8 answers (0 failed, 0 name their candidate), 0 votes" in listed.stdout


def test_import_checks_answers_against_the_prompt_set(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'imp.sqlite3'}"
    assert (
        _cli("create", "--db", db, "--id", "mt", "--title", "MT", "--prompts", str(DATA / "question.jsonl")).returncode
        == 0
    )
    ok = _cli("import", "--db", db, "--campaign", "mt", str(DATA / "model_answer.jsonl"), str(DATA / "answers.csv"))
    assert ok.returncode == 0, ok.stderr
    assert "imported 4 answers into campaign mt" in ok.stdout
    again = _cli("import", "--db", db, "--campaign", "mt", str(DATA / "model_answer.jsonl"))
    assert "imported 0 answers" in again.stdout  # importing again adds nothing
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"question_id": 81, "model_id": "rc-9", "choices": [{"index": 0, "turns": ["only one"]}]}\n')
    refused = _cli("import", "--db", db, "--campaign", "mt", str(wrong))
    assert refused.returncode == 2 and "has 1 turns, the prompt 2; every turn needs an answer" in refused.stderr


def test_a_removed_temperature_is_kept_but_no_longer_judged(db_url: str, tmp_path: Path) -> None:
    service, _, _ = _judging(db_url, tmp_path)
    cstore = service.store
    campaign, prompts = cstore.campaign("demo-bilingual"), cstore.prompts("demo-bilingual")
    assert campaign is not None and campaign.temperatures == (0.2, 0.8)

    def settings_shown(round_: int) -> set[str]:
        service.reload()
        return {service.next_comparison("demo-bilingual", f"10.3.{round_}.{i}").choice.setting for i in range(40)}

    assert settings_shown(0) == {"t0.2", "t0.8"}
    cstore.save_campaign(replace(campaign, temperatures=(0.2,)), prompts)
    assert settings_shown(1) == {"t0.2"} and len(cstore.answers("demo-bilingual")) == 128  # kept
    cstore.save_campaign(campaign, prompts)
    assert settings_shown(2) == {"t0.2", "t0.8"}  # listed again, judged again
    # Only generated answers follow the campaign's settings; imported ones keep their file's setting.
    answers = cstore.answers("demo-bilingual")
    by_id = {p.id: p for p in prompts}
    fewer = replace(campaign, temperatures=(0.2,), runs=1)
    sorted_ = sort_answers(fewer, by_id, [replace(a, source="imported") for a in answers], lambda p, a: False)
    assert len(sorted_.judged) == 128 and sorted_.unplanned == ()
    extra_run = [replace(a, run=2) for a in answers if a.setting == "t0.2"]
    assert len(sort_answers(fewer, by_id, answers + extra_run, lambda p, a: False).unplanned) == 64 + 64


def test_create_refuses_to_keep_answers_made_under_other_settings(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'stale.sqlite3'}"
    assert _cli("load", "--db", db, str(DEMO_BUNDLE)).returncode == 0
    base = ["create", "--db", db, "--id", "demo-bilingual", "--title", "Demo", "--prompts",
            str(DEMO_BUNDLE / "tasks.json"), "--candidates", "aurora-7b,borealis-7b,cirrus-7b,dune-7b"]  # fmt: skip
    same = _cli(*base, "--demo", "--temperatures", "0.2,0.8", "--max-new-tokens", "160")
    assert same.returncode == 0 and "deleted" not in same.stdout, same.stderr  # the settings they were made with
    store = Store(db)
    _OPEN.append(store)
    cstore = CampaignStore(store)
    refused = _cli(*base, "--demo", "--temperatures", "0.2,0.8", "--max-new-tokens", "100")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert (
        "error: campaign demo-bilingual: 128 stored answers were generated under other settings "
        "(aurora-7b: max_new_tokens 160 -> 100; borealis-7b: max_new_tokens 160 -> 100;" in refused.stderr
    )
    assert "--drop-stale-answers" in refused.stderr
    kept = cstore.campaign("demo-bilingual")
    assert kept is not None and kept.max_new_tokens == 160 and len(cstore.done_answer_ids("demo-bilingual")) == 128
    # Against a roster without these models, the campaign's cap is still checked, and the note says what was not.
    models = str(ROOT / "models.yaml")
    bare = _cli(*base, "--config", models, "--temperatures", "0.2,0.8", "--max-new-tokens", "100")
    assert bare.returncode == 2 and "128 stored answers were generated under other settings" in bare.stderr
    assert "has no aurora-7b, borealis-7b, cirrus-7b, dune-7b" in bare.stderr
    # A temperature left out: its answers stay, and are not judged.
    fewer = _cli(*base, "--demo", "--temperatures", "0.2", "--max-new-tokens", "160")
    assert fewer.returncode == 0, fewer.stderr
    assert "64 answers of a temperature or run no longer listed kept but not judged" in fewer.stdout
    listed = _cli("list", "--db", db, "--demo")
    assert "128 answers (0 failed, 0 name their candidate, 64 of a setting or run no longer listed)" in listed.stdout
    # Dropped on request: generate then makes exactly those again.
    dropped = _cli(*base, "--demo", "--temperatures", "0.2", "--max-new-tokens", "100", "--drop-stale-answers")
    assert dropped.returncode == 0, dropped.stderr
    assert "deleted 64 answers made under the old settings; run generate to make them again" in dropped.stdout
    assert {a.setting for a in cstore.answers("demo-bilingual")} == {"t0.8"}
    # The kept answers of the left-out temperature are checked when it comes back.
    back = _cli(*base, "--demo", "--temperatures", "0.2,0.8", "--max-new-tokens", "100")
    assert back.returncode == 2 and "64 stored answers were generated under other settings" in back.stderr


def test_generate_refuses_answers_made_under_an_older_models_yaml(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'roster.sqlite3'}"
    assert _cli("load", "--db", db, str(DEMO_BUNDLE)).returncode == 0
    roster = tmp_path / "models.yaml"
    text = DEMO_ROSTER_PATH.read_text(encoding="utf-8")
    assert text.count("top_p: 0.9\n") == 1  # aurora-7b's
    roster.write_text(text.replace("top_p: 0.9\n", "top_p: 0.5\n"), encoding="utf-8")
    servers = start_demo_servers(4, token_rate=400, first_token_delay=0.01)
    try:
        env = demo_environ(servers)
        args = ["generate", "--db", db, "--campaign", "demo-bilingual", "--config", str(roster), "--quiet"]
        refused = _cli(*args, env=env)
        assert refused.returncode == 2, refused.stderr
        assert "32 stored answers were generated under other settings (aurora-7b: top_p 0.9 -> 0.5)" in refused.stderr
        assert not any(s.requests for s in servers)  # nothing was asked
        dropped = _cli(*args, "--drop-stale-answers", env=env)
        assert dropped.returncode == 0, dropped.stderr
        assert "deleted 32 answers made under the old settings" in dropped.stderr
        assert "128 answers planned, 96 already stored, 32 generated, 0 failed" in dropped.stdout
        # What was generated now matches the roster: the next run has nothing to refuse or to do.
        again = _cli(*args, env=env)
        assert again.returncode == 0 and "128 already stored, 0 generated" in again.stdout, again.stderr
    finally:
        for s in servers:
            s.stop()
