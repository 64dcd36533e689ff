"""Before the vote no model identity reaches the client; a model that names itself gets its vote flagged.

The wire test runs the real app (python app.py) against demo servers this test controls (two of them
failing mid-answer, so error texts are scanned too), speaks raw HTTP to Gradio's queue (join + the SSE
data stream) and scans /config and every byte of every event for every model's name, aliases, served
id and address.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arena.backends.demo import DemoServer
from arena.identity import IdentityMatcher, identity_terms
from arena.registry import ModelSpec
from arena.storage import Store
from arena.ui.panel import reveal_markdown
from tests.support.app_process import AppProcess
from tests.support.services import battle, close, make_service, tgi_spec

MODELS = [
    # name, backend, served id, aliases
    ("quasar-9b", "tgi", "leaktest/Quasar-9B-Instruct", ["Quasar", "QuasarLab", "类星体"]),
    ("nebula-9b", "tgi", "leaktest/Nebula-9B", ["Nebula", "星雲"]),
    ("pulsar-9b", "openai", "leaktest/pulsar-9b-chat", ["Pulsar", "Pulsarczyk"]),
    ("magnetar-9b", "openai", "leaktest/magnetar-9b", ["Magnetar", "マグネター"]),
]
PROMPTS = [
    "Tell me about rivers and mountains.",
    "Opowiedz o Krakowie, proszę — zażółć gęślą jaźń.",
    "東京の天気はどうですか？",
    "請告訴我們台灣的歷史 🙂",
    "שלום, how are you? مرحبا",
    "Write a tiny Python function.",
]


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppProcess, list[str]]]:
    tmp = tmp_path_factory.mktemp("anonymity")
    servers = [DemoServer(served, token_rate=300, first_token_delay=0.01).start() for _, _, served, _ in MODELS]
    # Errors are part of what is scanned. One failing model of each protocol: every pair but one holds a
    # failing model, so twelve battles without a failure would take odds of 6**-12.
    servers[1].fault, servers[3].fault = "error_event", "malformed"
    lines = ["models:"]
    for (name, backend, served, aliases), server in zip(MODELS, servers, strict=True):
        lines += [f"  - name: {name}", f"    backend: {backend}", f"    model: {served}"]
        lines += [f"    url: {server.url}" + ("/v1" if backend == "openai" else "")]
        lines += ["    template: chatml"] if backend == "tgi" else []
        lines += [f"    aliases: {json.dumps(aliases, ensure_ascii=False)}"]
    (tmp / "models.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    secrets = [s.lower() for name, _, served, aliases in MODELS for s in (name, served, *aliases)]
    secrets += [served.rsplit("/", 1)[1].lower() for _, _, served, _ in MODELS]
    secrets += [f"127.0.0.1:{server.port}" for server in servers] + [f"localhost:{server.port}" for server in servers]
    app = AppProcess(
        ["--config", str(tmp / "models.yaml"), "--db", f"sqlite:///{tmp / 'arena.sqlite3'}"],
        env={"ARENA_BATTLES_PER_MINUTE": "0", "ARENA_FIRST_TOKEN_TIMEOUT": "2", "ARENA_READ_TIMEOUT": "2"},
        log_path=tmp / "app.log",
    )
    try:
        app.wait_ready()
        yield app, secrets
    finally:
        app.stop()
        for server in servers:
            server.stop()


class RawSession:
    """One visitor speaking Gradio's queue protocol by hand, keeping every byte the server sends."""

    def __init__(self, url: str, page: dict[str, Any], session_hash: str) -> None:
        self.url, self.session_hash = url, session_hash
        self.dependencies = page["dependencies"]
        self.fn_index = {d["api_name"]: i for i, d in enumerate(self.dependencies) if d.get("api_name")}
        self.types = {c["id"]: c["type"] for c in page["components"]}
        self.http = httpx.Client(timeout=30)
        self.received: list[str] = []

    def call(self, api_name: str, *values: Any) -> list[dict[str, Any]]:
        """Run one event; ``values`` fill its non-State inputs in order (State lives on the server)."""
        fn = self.fn_index[api_name]
        pending = list(values)
        data = [
            None if self.types[i] == "state" else (pending.pop(0) if pending else None)
            for i in self.dependencies[fn]["inputs"]
        ]
        join = self.http.post(
            f"{self.url}/gradio_api/queue/join",
            json={"data": data, "fn_index": fn, "session_hash": self.session_hash},
        )
        self.received.append(join.text)
        join.raise_for_status()
        event_id = join.json()["event_id"]
        messages: list[dict[str, Any]] = []
        with self.http.stream(
            "GET", f"{self.url}/gradio_api/queue/data", params={"session_hash": self.session_hash}
        ) as stream:
            for line in stream.iter_lines():
                self.received.append(line)
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                messages.append(message)
                if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                    break
        return messages


def config(url: str) -> dict[str, Any]:
    page: dict[str, Any] = httpx.get(f"{url}/config", timeout=10).json()
    return page


def test_page_config_names_no_model(arena: tuple[AppProcess, list[str]]) -> None:
    app, secrets = arena
    page = json.dumps(config(app.url), ensure_ascii=False).lower()
    for secret in secrets:
        at = page.find(secret)
        assert at < 0, f"{secret!r} is in /config: ...{page[max(0, at - 300) : at + 100]}..."


def test_no_identity_reaches_the_client_before_the_vote(arena: tuple[AppProcess, list[str]]) -> None:
    app, secrets = arena
    page = config(app.url)
    completed = failed = 0
    for n in range(12):
        visitor = RawSession(app.url, page, f"anon{n:04d}{os.getpid()}")
        prompt = PROMPTS[n % len(PROMPTS)]
        if "on_load" in visitor.fn_index:
            visitor.call("on_load")
        if "accept_terms" in visitor.fn_index:
            visitor.call("accept_terms")
        # Page load fills the side-by-side pickers with the public roster: not part of a battle.
        visitor.received.clear()
        if n % 4 == 0:
            visitor.call("vote_a")  # refused: nothing to vote on yet
        sent = visitor.call("send", prompt)
        outcome = sent[-1]
        assert outcome["msg"] == "process_completed"
        completed += outcome.get("success", False)
        failed += "⚠️" in json.dumps(outcome, ensure_ascii=False)
        if n % 3 == 1:
            visitor.call("regenerate")
        if n % 4 == 2:
            visitor.call("send", "And one more thing, please.")  # refused after a failure, or a 2nd turn
        visitor.call("new_round")
        visitor.http.close()
        wire = "\n".join(visitor.received).lower()
        # Decode JSON escapes too (\\u7c7b...), so CJK aliases are found however they are written.
        decoded = (
            wire
            + "\n"
            + "\n".join(
                json.dumps(json.loads(line[5:]), ensure_ascii=False).lower()
                for line in visitor.received
                if line.startswith("data:")
            )
        )
        for secret in secrets:
            assert secret not in decoded, f"{secret!r} reached the client: {decoded[:2000]}"
        assert "traceback" not in decoded and "http://" not in decoded
    assert completed >= 10 and failed >= 1, (completed, failed)  # both answers and errors were scanned


# -- identity leaks in answers -----------------------------------------------------------------


def spec(name: str, *aliases: str, model: str | None = None) -> ModelSpec:
    return tgi_spec(name, "http://127.0.0.1:1", aliases=aliases, model=model)


@pytest.mark.parametrize(
    ("text", "leaks"),
    [
        ("I am Bielik, a Polish model.", True),
        ("JESTEM BIELIK", True),
        ("Nazywam się Bielikiem i pomagam.", True),  # Polish inflection
        ("Rozmawiasz z modelem Bielika.", True),
        ("Trained by SpeakLeash.", True),
        ("I'm speakleash/Bielik-7B-Instruct-v0.1", True),
        ("Ｂｉｅｌｉｋ here", True),  # full-width letters
        ("Bielik-7B wrote this.", True),  # a name with its size is a model id: counts anywhere
        # Issue 16: an alias used as an everyday word is not the model naming itself (these were
        # flagged before: "Bieliki to ptaki" = white-tailed eagles are birds).
        ("Bieliki to ptaki.", False),
        ("Bielik to największy ptak drapieżny.", False),
        ("Bielikowo is a village.", False),  # a longer word, not the name
        ("ABielik", False),
        ("我是活字模型", True),  # CJK: substring, in a self-introduction
        ("活字印刷术是毕昇发明的。", False),  # movable type
        ("活 字", False),
        ("The dunes are high.", False),  # "Dune" must not match "dunes"
        ("My name is Dune.", True),
        ("Dune's answer", False),  # the novel, a dune: not a self-introduction
        ("(dune)", False),
        ("Dunedin is a city.", False),
    ],
)
def test_identity_matching(text: str, leaks: bool) -> None:
    matcher = IdentityMatcher(
        [
            spec("bielik-7b-instruct", "Bielik", "SpeakLeash", model="speakleash/Bielik-7B-Instruct-v0.1"),
            spec("huozi-7b", "活字", "HIT"),
            spec("dune-7b", "dune"),
        ]
    )
    owner = "huozi-7b" if "活" in text else "dune-7b" if "une" in text.lower() else "bielik-7b-instruct"
    assert matcher.names_itself(owner, text) is leaks
    assert not matcher.names_itself("unknown-model", text)


def test_identity_terms_skip_short_names() -> None:
    assert identity_terms(spec("x-model", "AI", "Qw", "字", "活字", model="org/X1")) == ("x-model", "org/x1", "活字")


def test_identity_terms_come_from_the_spec_names() -> None:
    """One source: every name ModelSpec.identity_names lists (and so the wire scans) is looked for in answers."""
    s = spec("breeze-7b-instruct", "Breeze", "聯發科", model="MediaTek-Research/Breeze-7B-Instruct-v1_0")
    terms = set(identity_terms(s))
    assert {n.casefold() for n in s.identity_names} <= terms
    assert "breeze-7b" in terms  # the id cut after its size


def test_a_model_naming_itself_can_be_voted_but_is_flagged(tmp_path: Path) -> None:
    """Demo servers echo the prompt and, asked who they are, say their name (as real models do).

    Before issue 16 the echoed alias "aurora" flagged a prompt about the aurora borealis: an
    everyday word the visitor typed is no longer taken for the model naming itself.
    """

    async def main() -> None:
        with (
            DemoServer("demo/aurora-7b", token_rate=500, first_token_delay=0.01) as aurora,
            DemoServer("demo/huozi-7b", token_rate=500, first_token_delay=0.01) as huozi,
        ):
            specs = [
                tgi_spec("aurora-7b", aurora.url, aliases=("Aurora",)),
                tgi_spec("huozi-7b", huozi.url, aliases=("活字",)),
            ]
            with Store(f"sqlite:///{tmp_path / 'a.sqlite3'}") as store:
                service = make_service(specs, store)
                try:
                    _, _, topic = await battle(service, "10.9.0.1", "Tell me about the aurora borealis")
                    assert topic is not None and topic.flags == ()  # the visitor's topic, echoed
                    _, _, plain = await battle(service, "10.9.0.1", "Tell me about rivers")
                    assert plain is not None and plain.flags == ()
                    _, _, leaked = await battle(service, "10.9.0.1", "你是谁？")  # "我是huozi-7b…" / "我是aurora-7b…"
                    assert leaked is not None and leaked.flags == ("identity_leak",)
                    assert "will not count" in reveal_markdown("en", leaked)  # what the page says
                    _, _, english = await battle(service, "10.9.0.1", "Who are you?")
                    assert english is not None and english.flags == ("identity_leak",)
                    assert store.vote_total(exclude_flags=()) == 4
                    assert sum(c.count for c in store.pair_counts()) == 2  # leaks are left out of ratings
                finally:
                    await close(service)

    asyncio.run(main())


# -- hostile markup in prompts and answers (real browser) ------------------------------------------

XSS_PROMPT = (
    '<img src=x onerror="window.__xss=1"> <script>window.__xss2=1</script> '
    "[link](javascript:window.__xss3=1) <svg/onload=window.__xss4=1>"
)


@pytest.mark.browser
def test_html_and_scripts_in_prompts_and_answers_stay_inert(arena: tuple[AppProcess, list[str]]) -> None:
    """The prompt is shown back in the visitor's message and echoed inside both demo answers."""
    from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: install Debian's package with `apt-get install chromium`.")
    from playwright.sync_api import sync_playwright

    app, _ = arena
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(app.url)
            page.locator("#chat_a").first.wait_for(timeout=30_000)
            accept = page.locator("#accept_terms")
            if accept.count():
                accept.first.wait_for(state="visible", timeout=30_000)
                accept.first.click()
            box = page.locator("#prompt textarea").first
            box.wait_for(timeout=30_000)
            page.wait_for_function("() => !document.querySelector('#prompt textarea').disabled", timeout=30_000)
            box.fill(XSS_PROMPT)
            box.press("Enter")
            page.locator("#chat_a .message.bot, #chat_a [data-testid='bot']").first.wait_for(timeout=20_000)
            page.wait_for_timeout(1500)  # let both answers (which echo the markup) finish rendering
            for link in page.locator("#chat_a a, #chat_b a").all():
                link.click(timeout=2000, no_wait_after=True)
            flags = page.evaluate("() => [window.__xss, window.__xss2, window.__xss3, window.__xss4]")
            assert flags == [None, None, None, None], flags
            hostile = page.evaluate(
                "() => document.querySelectorAll("
                "'#chat_a [onerror], #chat_b [onerror], #chat_a [onload], #chat_b [onload], "
                '#chat_a script, #chat_b script, #chat_a a[href^="javascript"], #chat_b a[href^="javascript"]\''
                ").length"
            )
            assert hostile == 0
            assert "window.__xss" in page.inner_text("#chat_a")  # shown as text, not run
        finally:
            browser.close()


# -- pre-vote notices name no side by a property of its model (issue 16) ------------------------


def test_notices_before_the_vote_do_not_single_out_a_side(tmp_path: Path) -> None:
    """One model has a short context and a short answer limit: the notices must not say which side."""

    async def main() -> None:
        with (
            DemoServer("demo/a", token_rate=2000, first_token_delay=0.01) as one,
            DemoServer("demo/b", token_rate=2000, first_token_delay=0.01) as two,
        ):
            specs = [
                tgi_spec("short-7b", one.url, context_length=700, params={"max_new_tokens": 8}),
                tgi_spec("long-7b", two.url, context_length=32000),
            ]
            with Store(f"sqlite:///{tmp_path / 'n.sqlite3'}") as store:
                service = make_service(specs, store, settings={"max_new_tokens": 400})
                try:
                    seen: list[str] = []
                    for order in (("short-7b", "long-7b"), ("long-7b", "short-7b")):
                        session = service.new_session("10.9.0.2", models=order)
                        for turn in range(4):
                            async for view in service.send(session, f"Turn {turn}: " + "tell me more " * 60):
                                seen.extend(str(notice) for notice in view.notices)
                    assert any("oldest turns were left out" in n for n in seen), seen
                    assert any("One answer was cut off" in n for n in seen), seen
                    for notice in seen:
                        assert "Model A" not in notice and "Model B" not in notice, notice
                finally:
                    await close(service)

    asyncio.run(main())
