"""Upstream requests end when the visitor leaves, starts a new round, or regenerates.

The demo model servers run in this test process (so their disconnect counters can be read) and the
real app runs as a subprocess with a roster pointing at them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from gradio_client import Client

from arena.backends.demo import DemoServer
from tests.support.app_process import AppProcess
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

LONG = "Please write a very long and detailed answer about the history of Kraków."


@pytest.fixture(scope="module")
def servers() -> Iterator[list[DemoServer]]:
    # Slow streams (10 tokens/s) so every answer is still running when the visitor acts.
    started = [DemoServer(f"demo/slow-{i}", token_rate=10, first_token_delay=0.05).start() for i in range(2)]
    yield started
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def app(servers: list[DemoServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    tmp = tmp_path_factory.mktemp("cancel")
    roster = {
        "models": [
            {"name": "slow-tgi", "backend": "tgi", "url": servers[0].url, "template": "chatml"},
            {"name": "slow-openai", "backend": "openai", "url": servers[1].url + "/v1", "model": "demo/slow-1"},
        ]
    }
    config = tmp / "models.yaml"
    config.write_text(yaml.safe_dump(roster), encoding="utf-8")
    proc = AppProcess(
        ["--config", str(config), "--db", f"sqlite:///{tmp / 'arena.sqlite3'}"],
        env={"ARENA_MAX_NEW_TOKENS": "400"},
        log_path=tmp / "app.log",
    )
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _disconnects(servers: list[DemoServer]) -> int:
    return sum(s.disconnects for s in servers)


def _wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _streaming(job) -> bool:  # type: ignore[no-untyped-def]
    return _wait_for(lambda: len(job.outputs()) >= 2, 15)


def test_new_round_cancels_both_upstream_streams(app: AppProcess, servers: list[DemoServer]) -> None:
    before = _disconnects(servers)
    client = Client(app.url, verbose=False)
    client.predict(api_name="/accept_terms")  # the terms notice comes before any battle
    job = client.submit(LONG, api_name="/send")
    assert _streaming(job)
    client.predict(api_name="/new_round")
    assert _wait_for(lambda: _disconnects(servers) >= before + 2), (before, _disconnects(servers))
    client.close()


def test_visitor_closing_the_page_cancels_upstream_streams(app: AppProcess, servers: list[DemoServer]) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: install Debian's package with `apt-get install chromium` (.ci/run does).")
    from playwright.sync_api import sync_playwright

    before = _disconnects(servers)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.goto(app.url)
        page.locator("#accept_terms").click()
        page.locator("#prompt textarea").fill(LONG)
        page.locator("#prompt textarea").press("Enter")
        page.locator("#chat_a .message.bot, #chat_a [data-testid='bot']").first.wait_for(timeout=20_000)
        page.close()
        browser.close()
    assert _wait_for(lambda: _disconnects(servers) >= before + 2, 15), (before, _disconnects(servers))
