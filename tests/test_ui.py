"""The page built in-process around a real service: texts all translated, ids and endpoints stable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from arena import i18n
from arena.service import Allowed, ArenaService, Reveal, SideStats
from arena.storage import Store
from arena.ui.app import build_page
from arena.ui.panel import LATEX, reveal_markdown
from tests.support.services import close, make_service, tgi_spec

CONTRACT_IDS = ["prompt", "send", "chat_a", "chat_b", "vote_a", "vote_b", "vote_tie", "vote_bothbad", "regenerate"]
CONTRACT_IDS += ["new_round", "reveal", "reason", "accept_terms", "language"]
CONTRACT_APIS = ["send", "vote_a", "vote_b", "vote_tie", "vote_bothbad", "regenerate", "new_round", "leaderboard"]
CONTRACT_APIS += ["accept_terms"]
SIDE_BY_SIDE = ["send", "vote_a", "vote_b", "vote_tie", "vote_bothbad", "regenerate", "new_round"]

# Texts that are words in every language (model names are not ours to translate).
SAME_EVERYWHERE: set[str] = set()


def _service(tmp_path: Path, names: tuple[str, ...] = ("alpha", "beta", "gamma"), **settings: Any) -> ArenaService:
    # Nothing streams in these tests: the backends point at a closed port.
    specs = [tgi_spec(name, "http://127.0.0.1:9") for name in names]
    return make_service(specs, Store(f"sqlite:///{tmp_path / 'arena.sqlite3'}"), settings=settings)


def _build(service: ArenaService) -> tuple[gr.Blocks, Any]:
    """build_page inside a running loop: Gradio makes (and never closes) loops of its own otherwise."""

    async def build() -> tuple[gr.Blocks, Any]:
        return build_page(service)

    return asyncio.run(build())


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[gr.Blocks, Any]]:
    service = _service(tmp_path)
    demo, texts = _build(service)
    yield demo, texts
    service.store.dispose()


def _visible_texts(demo: gr.Blocks) -> list[tuple[gr.blocks.Block, str, str]]:
    """(block, property, text) of every text a visitor can read in the page as built."""
    found = []
    for block in demo.blocks.values():
        props: tuple[str, ...] = ("label", "placeholder", "info")
        if isinstance(block, gr.Button | gr.Markdown) and not isinstance(block, gr.DownloadButton):
            props += ("value",)
        for prop in props:
            value = getattr(block, prop, None)
            if isinstance(value, str) and value.strip():
                found.append((block, prop, value))
    return found


def test_every_visible_text_comes_from_a_catalog_key(page: tuple[gr.Blocks, Any]) -> None:
    demo, texts = page
    visible = _visible_texts(demo)
    assert len(visible) > 30  # the walk sees the page (labels, buttons, tabs, notices)
    raw = [
        (type(b).__name__, b.elem_id, prop, value) for b, prop, value in visible if (b._id, prop) not in texts.bound()
    ]
    assert raw == [], "literal texts: pass them through Texts.bind(..., prop='key')"


def test_no_text_is_left_in_english_after_switching_to_japanese(page: tuple[gr.Blocks, Any]) -> None:
    demo, texts = page
    english = {(b._id, p): v for b, p, v in _visible_texts(demo)}
    updates = texts.updates("ja")
    assert {b for b, _, _ in _visible_texts(demo)} <= set(updates)
    for block, update in updates.items():
        # A plain value (a Markdown's text, a button's label) stands for {"value": ...}.
        for prop, value in (update if isinstance(update, dict) else {"value": update}).items():
            if prop == "__type__" or (block._id, prop) not in english:
                continue
            assert value != english[(block._id, prop)], (block.elem_id, prop, value)


def test_element_ids_are_unique_and_the_contract_ids_exist(page: tuple[gr.Blocks, Any]) -> None:
    demo, _ = page
    ids = [b.elem_id for b in demo.blocks.values() if getattr(b, "elem_id", None)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    missing = [i for i in CONTRACT_IDS + [f"sbs_{i}" for i in CONTRACT_IDS[:11]] if i not in ids]
    assert missing == []
    assert {"sbs_model_a", "sbs_model_b"} <= set(ids)


def test_api_endpoints_of_both_modes(page: tuple[gr.Blocks, Any]) -> None:
    demo, _ = page
    names = {fn.api_name for fn in demo.fns.values() if fn.api_name}
    expected = set(CONTRACT_APIS) | {f"sbs_{n}" for n in SIDE_BY_SIDE}
    assert expected <= names, expected - names
    # The vote reason is an optional argument: /vote_a stays callable with no argument.
    info = demo.get_api_info()["named_endpoints"]
    for name in ("/vote_a", "/sbs_vote_tie"):
        params = info[name]["parameters"]
        assert [p["parameter_name"] for p in params] == ["reason"] and params[0]["parameter_has_default"]
        assert info[name]["returns"][0]["component"] == "Json"  # the reveal as one plain dict (issue 20)
    assert [p["parameter_name"] for p in info["/sbs_send"]["parameters"]] == ["text", "model_a", "model_b"]
    assert [p["parameter_name"] for p in info["/send"]["parameters"]] == ["text"]


def test_chats_render_math_and_stack_on_phones(page: tuple[gr.Blocks, Any]) -> None:
    demo, _ = page
    chats = [b for b in demo.blocks.values() if isinstance(b, gr.Chatbot)]
    assert len(chats) == 4
    for chat in chats:
        assert chat.latex_delimiters == LATEX
        assert "arena-chat" in (chat.elem_classes or [])
    assert any(d["left"] == "$" for d in LATEX)


def test_the_page_config_names_no_model(page: tuple[gr.Blocks, Any]) -> None:
    demo, _ = page
    config = str(demo.get_config_file()).lower()
    assert "alpha" not in config and "gamma" not in config
    pickers = [b for b in demo.blocks.values() if b.elem_id in ("sbs_model_a", "sbs_model_b")]
    assert len(pickers) == 2 and all(not p.choices and p.value is None for p in pickers)


def test_operator_texts_replace_the_defaults_in_every_language(tmp_path: Path) -> None:
    service = _service(tmp_path, title="Arena Kraków", terms="Only **research** use.", default_language="pl")
    demo, texts = _build(service)
    try:
        header = next(b for b in demo.blocks.values() if b.elem_id == "header")
        terms = next(b for b in demo.blocks.values() if b.elem_id == "terms_text")
        assert header.value.startswith("# Arena Kraków") and i18n.text("pl", "app.description") in header.value
        assert "Only **research** use." in terms.value and i18n.text("pl", "terms.heading") in terms.value
        ja = texts.updates("ja")
        # Markdown texts travel as plain values (no component rebuild).
        assert ja[header].startswith("# Arena Kraków") and i18n.text("ja", "app.description") in ja[header]
        assert "Only **research** use." in ja[terms]
        assert demo.title == "Arena Kraków"
    finally:
        service.store.dispose()


def test_the_banner_shows_when_fewer_than_two_models_can_play(tmp_path: Path) -> None:
    one = _service(tmp_path, names=("alpha",))
    try:
        demo, _ = _build(one)
        banner = next(b for b in demo.blocks.values() if b.elem_id == "models_banner")
        assert banner.visible is True
    finally:
        one.store.dispose()


def test_the_banner_is_hidden_when_two_models_can_play(page: tuple[gr.Blocks, Any]) -> None:
    demo, _ = page
    banner = next(b for b in demo.blocks.values() if b.elem_id == "models_banner")
    assert banner.visible is False


def test_reveal_names_stats_flags_in_the_visitors_language() -> None:
    result = Reveal(
        "alpha",
        "be|ta",
        "model_a",
        (SideStats("alpha", 0.25, 41.55, False), SideStats("be|ta", None, None, True)),
        ("identity_leak", "something_new"),
    )
    pl = reveal_markdown("pl", result)
    assert "Model A: **alpha**" in pl and "be\\|ta" in pl  # a pipe in a name cannot break the table
    assert "0,25 s" in pl and "| 41,5 |" in pl  # decimal comma in Polish (41.55 rounds to 41.5 in binary)
    assert "| Ucięta na limicie długości | nie | tak |" in pl
    assert i18n.text("pl", "flag.identity_leak") in pl and i18n.text("pl", "flag.other") in pl
    ja = reveal_markdown("ja", result)
    assert "0.25 秒" in ja and i18n.text("ja", "reveal.thanks") in ja and "–" in ja


# --- status tab, leaderboard figures and notes, toast titles -----------------------------------------


def test_the_status_table_is_in_every_language() -> None:
    from arena.health import ModelHealth
    from arena.ui.status import status_markdown

    models = [ModelHealth("alpha", True), ModelHealth("be|ta", False, "failures", 1.0)]
    english = status_markdown(models)
    assert "| alpha | 🟢 online |" in english and "be\\|ta" in english and "failures" not in english
    for language in i18n.LANGUAGES:
        table = status_markdown(models, language)
        keys = ("status.column_status", "status.online", "status.offline", "status.offline_note")
        assert all(i18n.text(language, k) in table for k in keys), language
        assert i18n.text(language, "status.summary", online=1, total=2) in table
        if language != "en":
            assert "online" not in table and "offline" not in table and "Offline" not in table, language


def test_the_status_endpoint_answers_in_the_visitors_language(page: tuple[gr.Blocks, Any]) -> None:
    from arena.ui.texts import Visitor

    demo, _ = page
    (fn,) = [fn for fn in demo.fns.values() if fn.api_name == "status"]
    table = fn.fn(Visitor("ja"))
    assert i18n.text("ja", "status.online") in table and "alpha" in table


def _fit() -> Any:
    from arena.domain import PairCount
    from arena.ratings import fit_ratings

    counts = [PairCount("a", "b", "model_a", 3), PairCount("c", "d", "model_a", 2), PairCount("d", "c", "model_a", 1)]
    return fit_ratings(counts, models=["a", "b", "c", "d", "z"], bootstrap_rounds=50)


@pytest.mark.parametrize("language", [code for code in i18n.LANGUAGES if code != "en"])
def test_leaderboard_figures_and_notes_are_in_the_visitors_language(language: str) -> None:
    from datetime import UTC, datetime

    from arena.leaderboard import parse_slice
    from arena.ui.leaderboard import details_markdown, fit_notes, heatmap_chart, ratings_chart, summary

    result = _fit()
    ratings = ratings_chart(language, result)
    en_ratings = ratings_chart("en", result)
    assert ratings.layout.title.text == i18n.text(language, "leaderboard.plot_ratings_title", interval="bootstrap")
    assert ratings.layout.title.text != en_ratings.layout.title.text
    assert ratings.layout.yaxis.title.text == i18n.text(language, "leaderboard.plot_rating_axis")
    for kind, key in (("win_rate", "leaderboard.plot_win_rates_title"), ("battles", "leaderboard.plot_battles_title")):
        heat = heatmap_chart(language, result, kind)
        assert heat.layout.title.text == i18n.text(language, key) != heatmap_chart("en", result, kind).layout.title.text
        assert f" {i18n.text(language, 'leaderboard.plot_versus')} " in heat.data[0].hovertemplate
    assert len(result.notes) >= 4  # unrated, two groups, an unbeaten model, preliminary
    notes = fit_notes(language, result)
    english = [str(note) for note in result.notes]
    assert notes and all(note not in english for note in notes), notes
    text = summary(language, result, updated_at=datetime(2024, 5, 1, tzinfo=UTC), sl=parse_slice("overall"))
    assert not any(note in text for note in notes)  # the line above the table stays short ...
    fold = details_markdown(language, result)  # ... the notes are in "How to read this"
    assert all(note in fold for note in notes) and not any(note in fold for note in english)
    assert i18n.text(language, "lb.guide") in fold


def test_toasts_have_a_title_in_the_visitors_language() -> None:
    from arena.errors import ArenaError
    from arena.ui.texts import error, refusal

    assert error("ja", ArenaError("boom")).title == i18n.text("ja", "app.error_title") != "Error"
    assert refusal("pl", "x").title == "Błąd"


def test_every_toast_the_page_raises_has_a_translated_title() -> None:
    """Gradio titles a toast "Error"/"Warning"/"Info" in English unless it is given ``title=``."""
    import ast

    root = Path(__file__).resolve().parents[1]
    untitled = []
    for path in sorted((root / "arena" / "ui").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "gr"
                and node.func.attr in ("Error", "Warning", "Info")
                and not any(k.arg == "title" for k in node.keywords)
            ):
                untitled.append(f"{path.relative_to(root).as_posix()}:{node.lineno}")
    assert untitled == [], "use arena.ui.texts.refusal/warning (they pass a translated title)"


# --- the controls follow what the service allows (issue 19, item 6) -------------------------------------


def _handler(demo: gr.Blocks, name: str, elem_id: str) -> Any:
    """The event function ``name`` of the panel whose inputs or outputs include the component ``elem_id``."""
    found = {
        f.fn: f  # one function may run after several events (settle: after Send and after Regenerate)
        for f in demo.fns.values()
        if f.fn is not None
        and f.fn.__name__ == name
        and any(getattr(c, "elem_id", None) == elem_id for c in [*f.inputs, *f.outputs])
    }
    (fn,) = found.values()
    return fn


def test_the_controls_come_back_disabled_after_the_turn_and_regeneration_limits(tmp_path: Path) -> None:
    from arena.backends.demo import DemoServer
    from arena.ui.texts import Visitor

    with DemoServer("demo/controls-7b", token_rate=500, first_token_delay=0.01) as server:
        specs = [tgi_spec(name, server.url) for name in ("alpha", "beta")]
        store = Store(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
        service = make_service(specs, store, settings={"max_turns": 2, "max_regenerations": 1})
        demo, _ = _build(service)
        send = _handler(demo, "on_send", "chat_a")
        regenerate = _handler(demo, "on_regenerate", "chat_a")
        settle = _handler(demo, "settle", "send")
        ids = {c: getattr(c, "elem_id", None) for c in settle.outputs}
        who = Visitor("pl", accepted_terms=True)

        async def turn(handler: Any, *args: Any) -> tuple[Any, dict[str, bool]]:
            """Run one streamed event and the settling event after it: (session, interactive by element id)."""
            updates = [u async for u in handler.fn(*args)]
            state, outcome = [c for c in handler.outputs if isinstance(c, gr.State)]  # the session, the notice
            session = updates[-1][state]
            settled = settle.fn(who, session, updates[-1].get(outcome))
            shown = {ids[c]: u["interactive"] for c, u in settled.items() if isinstance(u, dict) and "interactive" in u}
            notice = settled.get(next(c for c in settle.outputs if ids[c] == "notice"), "")
            return session, {**shown, "notice": notice}

        async def scenario() -> None:
            try:
                await limits()
            finally:
                await close(service)

        async def limits() -> None:
            session, shown = await turn(send, "What is the tallest mountain in Poland?", who, None, None)
            assert shown["send"] and shown["prompt"] and shown["regenerate"] and shown["vote_a"] and shown["reason"]
            session, shown = await turn(regenerate, who, session)
            # One regeneration allowed: Regenerate comes back disabled, the rest as before, and says why.
            assert not shown["regenerate"] and shown["send"] and shown["vote_a"], shown
            assert i18n.text("pl", "msg.regeneration_limit", n=1) in shown["notice"]
            session, shown = await turn(send, "And the second tallest?", who, session, None)
            # Two turns allowed: the prompt and Send come back disabled; voting stays possible.
            assert not shown["send"] and not shown["prompt"] and not shown["regenerate"], shown
            assert shown["vote_a"] and shown["vote_tie"] and shown["reason"]
            assert i18n.text("pl", "msg.turn_limit", n=2) in shown["notice"]
            assert service.allowed(session) == Allowed(vote=True)

        try:
            asyncio.run(scenario())
        finally:
            store.dispose()


def test_the_banner_and_the_side_by_side_preselection_follow_the_health_checks(tmp_path: Path) -> None:
    from arena.ui.app import _can_battle, _healthy_pair

    service = _service(tmp_path)
    try:
        assert _can_battle(service) and _healthy_pair(service) == ["alpha", "beta"]
        service.health.checked("alpha", False)  # a failed health check takes it out
        assert _can_battle(service) and _healthy_pair(service) == ["beta", "gamma"]
        service.health.checked("gamma", False)
        assert not _can_battle(service) and _healthy_pair(service) == []  # configured three, online one
        service.health.checked("alpha", True)
        assert _can_battle(service) and _healthy_pair(service) == ["alpha", "beta"]
    finally:
        service.store.dispose()
