"""The leaderboard tab in a real headless Chromium (issue 22): rank ranges and tiers, the audit in
the visitor's language, the style-control switch; desktop and phone, English and Polish."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from arena import i18n
from tests.support import planted
from tests.support.app_process import AppProcess
from tests.support.boards import store_board
from tests.support.browser import ARTIFACTS, DESKTOP, PHONE

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    tmp = tmp_path_factory.mktemp("lb-browser")
    db = f"sqlite:///{tmp / 'arena.sqlite3'}"
    battles = planted.verbose_answers(1500, 21)
    battles += [("newcomer", "m3", "model_a", "v1", "short answer", "another answer")] * 2
    store_board(db, battles)
    proc = AppProcess(["--demo", "--db", db], env={}, log_path=tmp / "app.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.mark.parametrize(("language", "size"), [("en", "desktop"), ("pl", "phone")])
def test_the_leaderboard_shows_what_the_votes_support(app: AppProcess, browser, language: str, size: str) -> None:  # type: ignore[no-untyped-def]
    t = lambda key, **kw: i18n.text(language, key, **kw)  # noqa: E731
    context = browser.new_context(viewport=DESKTOP if size == "desktop" else PHONE)
    page = context.new_page()
    page.goto(f"{app.url}/?lang={language}")
    tab = page.get_by_role("tab", name=t("tab.leaderboard"))
    page.locator("#accept_terms").wait_for(timeout=30_000)
    page.wait_for_timeout(1500)
    if tab.is_visible():
        tab.click()
    else:  # a phone folds the tabs that do not fit into Gradio's overflow menu
        page.locator(".overflow-menu button, button.overflow-menu, [class*=overflow] button").first.click()
        page.get_by_text(t("tab.leaderboard"), exact=True).last.click()
    page.wait_for_function(
        "() => (document.querySelector('#leaderboard_table')?.textContent || '').includes('newcomer')", timeout=60_000
    )
    body = page.locator("#leaderboard_table").text_content() or ""
    assert t("column.interval") in body and t("column.votes") in body and t("column.tier") in body
    assert "—" in body  # the newcomer's two votes carry no rank
    assert "–" in body  # ranges where the votes leave the order open
    shown = page.locator("#leaderboard_legend").inner_text()
    assert t("lb.legend_ranges") in shown and t("lb.legend_preliminary", n=30) in shown  # and why, in plain words
    assert t("lb.legend_tiers") in shown  # neighbours the votes do not separate share a tier
    assert "alpha" not in page.locator("#leaderboard_tab").inner_text()  # statistics stay in the closed fold
    page.get_by_text(t("lb.how_to_read")).click()  # "How to read this" opens the fold
    page.locator("#leaderboard_audit li").first.wait_for(timeout=30_000)
    audit = page.locator("#leaderboard_audit").inner_text()
    assert t("audit.title") in audit
    assert t("audit.coverage.fired") in audit  # the newcomer has too few votes
    page.screenshot(path=str(ARTIFACTS / f"leaderboard-{language}-{size}.png"), full_page=True)
    page.locator("#leaderboard_style input").click()
    page.get_by_text(t("column.plain_rating")).first.wait_for(timeout=60_000)
    info = page.locator("#leaderboard_info").inner_text()
    assert t("style.length") in info
    styled = page.locator("#leaderboard_table").text_content() or ""
    assert "—" in styled  # no rank for the newcomer in the style-controlled table either
    # The legend follows the table shown: the style-controlled one has no rank ranges and no tiers.
    page.wait_for_function(
        "(t) => !document.querySelector('#leaderboard_legend').innerText.includes(t)", arg=t("lb.legend_tiers")
    )
    shown = page.locator("#leaderboard_legend").inner_text()
    assert t("lb.legend_ranges") not in shown and t("lb.legend_preliminary", n=30) in shown
    page.screenshot(path=str(ARTIFACTS / f"leaderboard-{language}-{size}-style.png"), full_page=True)
    context.close()
