"""A person's battle in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from arena.storage import Store
from tests.support.app_process import AppProcess

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppProcess, str]]:
    tmp = tmp_path_factory.mktemp("browser")
    db = f"sqlite:///{tmp / 'arena.sqlite3'}"
    proc = AppProcess(["--demo", "--db", db], env={"ARENA_DEMO_TOKEN_RATE": "80"}, log_path=tmp / "app.log")
    try:
        proc.wait_ready()
        yield proc, db
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: install Debian's package with `apt-get install chromium` (.ci/run does).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def test_click_through_one_battle(app: tuple[AppProcess, str], browser) -> None:  # type: ignore[no-untyped-def]
    proc, db = app
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(proc.url)
    page.locator("#prompt textarea").wait_for(timeout=30_000)
    vote_a = page.locator("#vote_a")
    assert vote_a.is_disabled()

    page.locator("#prompt textarea").fill("Jakie są trzy największe miasta w Polsce?")
    page.locator("#prompt textarea").press("Enter")

    # Both answers appear; the vote buttons stay disabled until both have finished.
    bot_a = page.locator("#chat_a .message.bot, #chat_a [data-testid='bot']").first
    bot_b = page.locator("#chat_b .message.bot, #chat_b [data-testid='bot']").first
    bot_a.wait_for(timeout=20_000)
    bot_b.wait_for(timeout=20_000)
    page.wait_for_function("() => !document.querySelector('#vote_a').disabled", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "battle-answered.png"), full_page=True)
    assert "Model A:" not in page.inner_text("body")  # no names before the vote

    vote_a.click()
    page.locator("#reveal").get_by_text("Model A:").wait_for(timeout=10_000)
    revealed = page.inner_text("#reveal")
    page.screenshot(path=str(ARTIFACTS / "battle-voted.png"), full_page=True)
    assert page.locator("#vote_b").is_disabled()
    assert page.locator("#prompt textarea").is_disabled()

    with Store(db) as store:
        counts = store.pair_counts()
    assert [c.winner for c in counts] == ["model_a"]
    assert counts[0].model_a in revealed and counts[0].model_b in revealed

    page.locator("#new_round").click()
    page.wait_for_function("() => !document.querySelector('#prompt textarea').disabled", timeout=10_000)
    assert page.inner_text("#reveal").strip() == ""
    page.close()
