"""A person's battle in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

One app process for the module; each test opens its own browser context (locale, window size).
Screenshots go to test-artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from arena import i18n
from arena.storage import Store
from tests.support.app_process import AppProcess
from tests.support.browser import ARTIFACTS, DESKTOP, PHONE

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppProcess, str]]:
    tmp = tmp_path_factory.mktemp("browser")
    db = f"sqlite:///{tmp / 'arena.sqlite3'}"
    env = {
        "ARENA_DEMO_TOKEN_RATE": "120",
        "ARENA_DEMO_FIRST_TOKEN_DELAY": "0.05",
        # A browser test clicks faster than a person reads, and all of it comes from one address.
        "ARENA_MIN_READ_SECONDS": "0",
        "ARENA_BATTLES_PER_MINUTE": "0",
        "ARENA_VOTES_PER_HOUR": "0",
    }
    proc = AppProcess(["--demo", "--db", db], env=env, log_path=tmp / "app.log")
    try:
        proc.wait_ready()
        yield proc, db
    finally:
        proc.stop()


def _open(browser, url: str, locale: str, viewport: dict[str, int]):  # type: ignore[no-untyped-def]
    context = browser.new_context(locale=locale, viewport=viewport)
    page = context.new_page()
    page.goto(url)
    page.locator("#accept_terms").wait_for(timeout=30_000)
    return context, page


def _wait_for_language(page, language: str) -> None:  # type: ignore[no-untyped-def]
    """The page has re-rendered in ``language``: the send button's label and the html ``lang`` (set by a js event)."""
    page.locator("#send").get_by_text(i18n.text(language, "prompt.send"), exact=True).wait_for(timeout=15_000)
    page.wait_for_function(f"() => document.documentElement.lang === '{language}'", timeout=10_000)


def _box(page, selector: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not rendered"
    return box


@pytest.mark.parametrize(
    ("locale", "language", "size"),
    [
        ("en-US", "en", "desktop"),
        ("ja-JP", "ja", "desktop"),
        ("en-GB", "en", "phone"),
        ("pl-PL", "pl", "phone"),
    ],
)
def test_click_through_one_battle(app: tuple[AppProcess, str], browser, locale: str, language: str, size: str) -> None:  # type: ignore[no-untyped-def]
    proc, db = app
    viewport = DESKTOP if size == "desktop" else PHONE
    name = f"{language}-{size}"
    context, page = _open(browser, proc.url, locale, viewport)
    t = lambda key: i18n.text(language, key)  # noqa: E731
    _wait_for_language(page, language)
    # On a phone Gradio folds the tabs that do not fit into its overflow menu. The labels re-render
    # a moment after the send button, so each is waited for (10 s, then the test fails).
    for key in ("tab.battle", "tab.sbs", "tab.leaderboard") if size == "desktop" else ("tab.battle",):
        page.get_by_role("tab", name=t(key)).wait_for(state="visible", timeout=10_000)
    for key in ("vote.a", "button.new_round"):
        page.get_by_text(t(key), exact=True).first.wait_for(state="visible", timeout=10_000)
    page.get_by_text(t("terms.agree"), exact=True).wait_for(state="visible", timeout=10_000)
    assert not page.locator("#models_banner").is_visible()  # four demo models are online

    # The terms come first: until "I agree", nothing can be sent.
    assert page.locator("#prompt textarea").is_disabled() and page.locator("#send").is_disabled()
    page.screenshot(path=str(ARTIFACTS / f"{name}-0-terms.png"), full_page=True)
    page.locator("#accept_terms").click()
    page.locator("#terms").wait_for(state="hidden", timeout=10_000)
    page.wait_for_function("() => !document.querySelector('#prompt textarea').disabled", timeout=10_000)
    assert page.locator("#vote_a").is_disabled()

    # Enter sends; a formula and a code block render in the chats.
    prompt = page.locator("#prompt textarea")
    prompt.fill(f"[{name}] Napisz wzór $E=mc^2$ i kod:\n```python\nprint(1)\n```")
    prompt.press("Enter")
    # The controls lock while the answers stream (in the browser, before the server answers).
    page.wait_for_function(
        "() => ['#send', '#vote_a', '#regenerate', '#prompt textarea'].every(s => document.querySelector(s).disabled)",
        timeout=2_000,
    )
    page.locator("#chat_a .message.bot, #chat_a [data-testid='bot']").first.wait_for(timeout=20_000)
    page.locator("#chat_b .message.bot, #chat_b [data-testid='bot']").first.wait_for(timeout=20_000)
    page.wait_for_function("() => !document.querySelector('#vote_a').disabled", timeout=30_000)
    assert page.locator("#chat_a .katex").count() > 0, "the formula is not rendered"
    assert page.locator("#chat_a pre code").count() > 0, "the code block is not rendered"
    assert "aurora" not in page.inner_text("body")  # no names before the vote

    chat_a, chat_b = _box(page, "#chat_a"), _box(page, "#chat_b")
    if size == "phone":
        # The answers stack: A above B, each as wide as the screen allows.
        assert chat_a["y"] + chat_a["height"] <= chat_b["y"] + 1, (chat_a, chat_b)
        assert chat_a["width"] > 0.8 * viewport["width"]
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"] + 1  # no sideways scroll
    else:
        assert abs(chat_a["y"] - chat_b["y"]) < 2 and chat_a["x"] + chat_a["width"] <= chat_b["x"], (chat_a, chat_b)
    page.screenshot(path=str(ARTIFACTS / f"{name}-1-answered.png"), full_page=True)

    # The vote buttons can be reached (scrolled to on a phone) and used from the keyboard.
    page.locator("#reason textarea").fill(f"why: {name}")
    vote_b = page.locator("#vote_b")
    vote_b.scroll_into_view_if_needed()
    box = _box(page, "#vote_b")
    assert (
        box["y"] >= 0
        and box["y"] + box["height"] <= viewport["height"]
        and box["x"] + box["width"] <= viewport["width"]
    )
    vote_b.focus()
    outline = page.evaluate("getComputedStyle(document.querySelector('#vote_b')).outlineStyle")
    assert outline != "none", "no visible keyboard focus"
    page.keyboard.press("Enter")
    page.locator("#reveal table").wait_for(timeout=10_000)
    revealed = page.inner_text("#reveal")
    assert t("reveal.ttft") in revealed and t("reveal.tps") in revealed and t("reveal.thanks") in revealed
    assert page.locator("#vote_a").is_disabled() and page.locator("#prompt textarea").is_disabled()
    page.locator("#reveal").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"{name}-2-voted.png"), full_page=True)

    with Store(db) as store:
        votes = [
            item["vote"]
            for item in store.iter_battles(with_messages=True)
            if item["vote"] is not None and any(f"[{name}]" in m.content for m in item["messages"])
        ]
    assert len(votes) == 1 and votes[0].winner == "model_b" and votes[0].reason == f"why: {name}"

    page.locator("#new_round").click()
    page.wait_for_function("() => !document.querySelector('#prompt textarea').disabled", timeout=10_000)
    assert page.inner_text("#reveal").strip() == ""
    context.close()


def test_switching_the_language_on_the_page(app: tuple[AppProcess, str], browser) -> None:  # type: ignore[no-untyped-def]
    proc, _db = app
    context, page = _open(browser, proc.url, "en-US", DESKTOP)
    _wait_for_language(page, "en")
    page.locator("#language input").click()
    page.get_by_role("option", name="繁體中文").click()
    _wait_for_language(page, "zh-TW")
    # The tab labels and the terms button re-render a moment after the send button: wait for each
    # (a failure here still means the page did not switch within 10 s). The html lang: in the helper.
    page.get_by_role("tab", name=i18n.text("zh-TW", "tab.sbs")).wait_for(state="visible", timeout=10_000)
    page.get_by_text(i18n.text("zh-TW", "terms.agree"), exact=True).wait_for(state="visible", timeout=10_000)
    # The choice is remembered in this browser: a reload comes back in the same language.
    page.reload()
    _wait_for_language(page, "zh-TW")
    # An error from the service arrives in the chosen language too.
    page.locator("#accept_terms").click()
    page.wait_for_function("() => !document.querySelector('#prompt textarea').disabled", timeout=10_000)
    page.locator("#prompt textarea").fill("   ")
    page.locator("#send").click()
    page.get_by_text(i18n.text("zh-TW", "msg.empty_prompt")).first.wait_for(timeout=10_000)
    # The refusal leaves the page usable: the controls unlock again (Gradio runs a .then only after
    # success, so the panel also settles on .failure), and no English "Error" badge covers the chats.
    page.wait_for_function(
        "() => !document.querySelector('#prompt textarea').disabled && !document.querySelector('#send').disabled",
        timeout=10_000,
    )
    for chat in ("#chat_a", "#chat_b"):
        assert not page.locator(f"{chat} .error").first.is_visible()
    page.screenshot(path=str(ARTIFACTS / "zh-TW-switched.png"), full_page=True)
    context.close()


def _pick(page, dropdown: str, option: str) -> None:  # type: ignore[no-untyped-def]
    """Choose ``option`` in a Gradio dropdown; reopen it if a re-render closed the list meanwhile."""
    for attempt in range(3):
        page.locator(f"{dropdown} input").click()
        try:
            page.get_by_role("option", name=option).click(timeout=5_000)
        except Exception:
            if attempt == 2:
                raise
            continue
        if page.locator(f"{dropdown} input").input_value() == option:
            return
    raise AssertionError(f"could not pick {option} in {dropdown}")


def test_side_by_side_with_named_models(app: tuple[AppProcess, str], browser) -> None:  # type: ignore[no-untyped-def]
    proc, db = app
    context, page = _open(browser, proc.url, "pl-PL", DESKTOP)
    _wait_for_language(page, "pl")
    page.locator("#accept_terms").click()
    page.get_by_role("tab", name=i18n.text("pl", "tab.sbs")).click()
    page.wait_for_function("() => !document.querySelector('#sbs_prompt textarea').disabled", timeout=10_000)
    typed = "[sbs] Jaka jest stolica Japonii?"
    page.locator("#sbs_prompt textarea").fill(typed)  # typed first, models picked after
    _pick(page, "#sbs_model_a", "cirrus-7b")
    _pick(page, "#sbs_model_b", "dune-7b")
    page.wait_for_timeout(1_500)  # both picks' events have come back
    # A pick starts a fresh round but keeps the prompt: it used to empty it, once even under a send.
    assert page.locator("#sbs_prompt textarea").input_value() == typed
    page.locator("#sbs_prompt textarea").press("Enter")
    page.wait_for_function("() => !document.querySelector('#sbs_vote_a').disabled", timeout=30_000)
    page.locator("#sbs_vote_tie").click()
    page.locator("#sbs_reveal table").wait_for(timeout=10_000)
    revealed = page.inner_text("#sbs_reveal")
    assert "cirrus-7b" in revealed and "dune-7b" in revealed
    page.screenshot(path=str(ARTIFACTS / "pl-desktop-side-by-side.png"), full_page=True)
    with Store(db) as store:
        named = store.pair_counts(mode="named")
        anonymous = store.pair_counts(mode="anonymous")
    assert [(c.model_a, c.model_b, c.winner) for c in named] == [("cirrus-7b", "dune-7b", "tie")]
    assert all("[sbs]" not in str(c) for c in anonymous)
    context.close()


def test_a_forgotten_session_shows_the_terms_notice_again(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from gradio_client import Client

    env = {"ARENA_SESSION_TTL": "2", "ARENA_MIN_READ_SECONDS": "0", "ARENA_BATTLES_PER_MINUTE": "0"}
    db = f"sqlite:///{tmp_path / 'ttl.sqlite3'}"
    proc = AppProcess(["--demo", "--db", db], env=env, log_path=tmp_path / "app.log")
    try:
        proc.wait_ready()
        context, page = _open(browser, proc.url, "en-US", DESKTOP)
        page.locator("#accept_terms").click()
        page.wait_for_function("() => !document.querySelector('#prompt textarea').disabled", timeout=10_000)
        assert not page.locator("#terms").is_visible()
        # This page stays idle past the TTL while another visitor's events run the sweep.
        page.wait_for_timeout(3_000)
        other = Client(proc.url, verbose=False)
        other.predict(api_name="/accept_terms")
        other.close()
        page.locator("#prompt textarea").fill("Hello again after a long pause")
        page.locator("#send").click()
        page.get_by_text(i18n.text("en", "terms.required")).first.wait_for(timeout=10_000)
        page.locator("#terms").wait_for(state="visible", timeout=10_000)
        page.locator("#accept_terms").click()
        page.wait_for_function("() => !document.querySelector('#send').disabled", timeout=10_000)
        page.locator("#send").click()
        page.wait_for_function("() => !document.querySelector('#vote_a').disabled", timeout=30_000)
        context.close()
    finally:
        proc.stop()
