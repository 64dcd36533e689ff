"""A person judging the demo campaign in a real headless Chromium, at desktop and phone size.

The demo app ships its campaign (``python app.py --demo``): the tab shows a prompt and two anonymous
answers, names appear only after the vote, and the results appear in the leaderboard tab.
Screenshots go to test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from arena import i18n
from tests.support.app_process import AppProcess
from tests.support.browser import ARTIFACTS, DESKTOP, PHONE

pytestmark = pytest.mark.browser

NAMES = ("aurora", "borealis", "cirrus", "dune")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    tmp = tmp_path_factory.mktemp("campaign-browser")
    env = {"ARENA_MIN_READ_SECONDS": "0", "ARENA_VOTES_PER_HOUR": "0", "ARENA_JOURNAL_DIR": str(tmp / "journal")}
    proc = AppProcess(["--demo", "--db", f"sqlite:///{tmp / 'arena.sqlite3'}"], env=env, log_path=tmp / "app.log")
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def _open_tab(page, tab_id: str, label: str) -> None:  # type: ignore[no-untyped-def]
    """Click a tab, through Gradio's overflow menu when the phone folds it there."""
    button = page.locator(f"#{tab_id}-button")
    if button.count() and button.is_visible():
        button.click()
        return
    page.locator("button[aria-label='More tabs']").click()
    page.get_by_role("button", name=label, exact=True).last.click()


@pytest.mark.parametrize(("language", "size"), [("en", "desktop"), ("ja", "phone")])
def test_judge_one_comparison_and_see_the_results(app: AppProcess, browser, language: str, size: str) -> None:  # type: ignore[no-untyped-def]
    t = lambda key: i18n.text(language, key)  # noqa: E731
    context = browser.new_context(viewport=DESKTOP if size == "desktop" else PHONE)
    page = context.new_page()
    try:
        page.goto(f"{app.url}/?lang={language}")
        page.get_by_text(t("terms.agree"), exact=True).wait_for(state="visible", timeout=30_000)
        page.locator("#accept_terms").click()
        _open_tab(page, "campaign_tab", t("tab.campaign"))
        page.locator("#campaign_chat_a .message").first.wait_for(timeout=30_000)
        page.locator("#campaign_chat_b .message").first.wait_for(timeout=30_000)
        page.wait_for_function("() => !document.querySelector('#campaign_vote_a').disabled", timeout=10_000)
        body = page.inner_text("body").lower()
        assert not [n for n in NAMES if n in body], "a candidate is named before the vote"
        assert t("campaign.next") in page.inner_text("#campaign_next")
        task = page.inner_text("#campaign_task")
        assert re.search(r"(English|日本語)", task), task
        page.screenshot(path=str(ARTIFACTS / f"campaign-{language}-{size}-1-compare.png"), full_page=True)

        page.locator("#campaign_reason textarea").fill("clearer")
        page.locator("#campaign_vote_b").click()
        page.locator("#campaign_reveal h3").wait_for(timeout=20_000)
        reveal = page.inner_text("#campaign_reveal")
        assert sum(n in reveal for n in NAMES) == 2 and t("campaign.thanks")[:10] in reveal
        assert page.locator("#campaign_vote_a").is_disabled()  # one vote per comparison
        page.screenshot(path=str(ARTIFACTS / f"campaign-{language}-{size}-2-reveal.png"), full_page=True)

        page.locator("#campaign_next").click()
        page.wait_for_function("() => document.querySelector('#campaign_reveal').innerText.trim() === ''")
        page.wait_for_function("() => !document.querySelector('#campaign_vote_a').disabled", timeout=10_000)

        _open_tab(page, "leaderboard_tab", t("tab.leaderboard"))
        # The summary names the number of judgments (the other test's vote may be counted too).
        before, after = i18n.text(language, "campaign.summary", n=987654).split("987654")
        page.wait_for_function(
            "([b, a]) => { const t = document.querySelector('#campaign_results_info').innerText;"
            " return t.includes(b.trim()) && t.includes(a.slice(0, 6)); }",
            arg=[before, after],
            timeout=30_000,
        )
        table = page.inner_text("#campaign_results_table")
        assert all(n in table for n in NAMES) and t("campaign.col_win_draw_pct") in table
        # The ratings plot is drawn (Plotly renders after the data arrives), with the rated candidates.
        page.locator("#campaign_results_plot .js-plotly-plot").wait_for(timeout=30_000)
        page.wait_for_function(
            "() => document.querySelectorAll('#campaign_results_plot .xtick').length >= 2", timeout=30_000
        )
        h2h = page.inner_text("#campaign_results_h2h")  # the head-to-head matrix
        assert all(n in h2h for n in NAMES) and re.search(r"\b[01]-[01]-0\b", h2h), h2h
        page.screenshot(path=str(ARTIFACTS / f"campaign-{language}-{size}-3-results.png"), full_page=True)
    finally:
        context.close()
