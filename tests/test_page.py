"""How the page looks and behaves in a real headless Chromium, at desktop and phone sizes (issue 20).

First paint already in the visitor's language, system fonts only (nothing fetched off the host),
toast titles translated, a phone layout where the prompt and both answers are in reach, every tab
visible, the chosen vote marked, focus back in the prompt, no trash button on the battle chats, a
normal-size refresh button, and a models-offline banner that follows the health checks.

Screenshots go to test-artifacts/page-*.png (git-ignored) for a person to look at.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arena import i18n
from arena.backends.demo import DemoServer
from tests.support.app_process import AppProcess, free_port
from tests.support.browser import ARTIFACTS, DESKTOP, PHONE

pytestmark = pytest.mark.browser

SIZES = {"desktop": DESKTOP, "phone": PHONE}
LOCALES = {"en": "en-US", "pl": "pl-PL", "ja": "ja-JP"}

# Injected before the page's own scripts: on every animation frame until the page is settled, note
# whether the send button was painted visible with a text other than the expected one.
WATCH_FIRST_PAINT = """
(() => {
  const want = %r;
  window.__paint = {wrong: [], shown: null};
  const visible = (el) => {
    if (!el) return false;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return false;
    for (let n = el; n; n = n.parentElement) {
      const s = getComputedStyle(n);
      if (s.visibility === 'hidden' || s.display === 'none') return false;
    }
    return true;
  };
  const tick = () => {
    const send = document.querySelector('#send');
    if (visible(send)) {
      const text = send.innerText.trim();
      if (text && text !== want) window.__paint.wrong.push(text);
      if (text === want && window.__paint.shown === null) window.__paint.shown = performance.now();
    }
    if (performance.now() < 30000 && window.__paint.shown === null) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})();
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    tmp = tmp_path_factory.mktemp("page")
    env = {
        # Slow enough that a screenshot catches the answers while they stream.
        "ARENA_DEMO_TOKEN_RATE": "40",
        "ARENA_DEMO_FIRST_TOKEN_DELAY": "0.05",
        "ARENA_MIN_READ_SECONDS": "0",
        "ARENA_BATTLES_PER_MINUTE": "0",
        "ARENA_VOTES_PER_HOUR": "0",
    }
    proc = AppProcess(["--demo", "--db", f"sqlite:///{tmp / 'arena.sqlite3'}"], env=env, log_path=tmp / "app.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _open(
    browser: Any, url: str, language: str, size: str, *, watch: bool = False, locale: str | None = None
) -> tuple[Any, Any, list[str]]:
    """A fresh context (locale, window size), the page loaded and settled; and every URL it requested."""
    context = browser.new_context(locale=locale or LOCALES[language], viewport=SIZES[size])
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    if watch:
        page.add_init_script(WATCH_FIRST_PAINT % i18n.text(language, "prompt.send"))
    page.goto(url)
    page.wait_for_function("() => document.documentElement.classList.contains('arena-ready')", timeout=30_000)
    page.locator("#send").get_by_text(i18n.text(language, "prompt.send"), exact=True).wait_for(timeout=15_000)
    return context, page, requests


def _accept(page: Any, prompt: str = "#prompt") -> None:
    page.locator("#accept_terms").click()
    page.wait_for_function(f"() => !document.querySelector('{prompt} textarea').disabled", timeout=15_000)


def _rect(page: Any, selector: str) -> dict[str, float]:
    box = page.evaluate(
        f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
        " return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width, height: r.height}; })()"
    )
    assert isinstance(box, dict)
    return box


def _in_view(page: Any, selector: str, size: str) -> bool:
    r = _rect(page, selector)
    return r["height"] > 0 and r["top"] >= -1 and r["bottom"] <= SIZES[size]["height"] + 1


def _shot(page: Any, name: str, *, full: bool = False) -> None:
    page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"), full_page=full)


@pytest.mark.parametrize("size", ["desktop", "phone"])
@pytest.mark.parametrize("language", ["en", "pl", "ja"])
def test_first_paint_fonts_title_and_toasts_are_the_visitors(
    app: AppProcess, browser: Any, language: str, size: str
) -> None:
    context, page, requests = _open(browser, app.url, language, size, watch=True)
    t = lambda key: i18n.text(language, key)  # noqa: E731
    paint = page.evaluate("window.__paint")
    assert paint["wrong"] == [], f"painted in another language first: {sorted(set(paint['wrong']))}"
    assert page.evaluate("document.documentElement.lang") == language
    assert page.title() == t("app.title")
    # Every text of the page is in the language, not only the send button.
    for tab in ("tab.battle", "tab.sbs", "tab.leaderboard", "tab.status"):
        page.get_by_role("tab", name=t(tab)).wait_for(state="visible", timeout=5_000)

    # One typeface with real weights: system fonts only, none downloaded (the arena runs offline);
    # Latin faces first (CJK faces draw Polish letters badly), then the CJK faces of the page's
    # language, so Japanese gets Japanese glyph variants.
    family = page.evaluate("getComputedStyle(document.querySelector('#accept_terms')).fontFamily")
    stack = [f.strip().strip("'\"") for f in family.split(",")]
    assert stack[0] == "system-ui", family
    cjk = [f for f in stack if f.startswith("Noto Sans CJK")]
    assert cjk and cjk[0] == "Noto Sans CJK JP", family  # ja here; the default order otherwise
    loaded = page.evaluate("[...document.fonts].filter((f) => f.status !== 'unloaded').map((f) => f.family)")
    assert loaded == [], f"web fonts loaded: {loaded}"
    host = app.url.split("//", 1)[1]
    assert [u for u in requests if not u.startswith(("data:", "blob:")) and host not in u] == []
    assert not [u for u in requests if u.split("?")[0].endswith((".woff", ".woff2", ".ttf", ".otf"))]
    _shot(page, f"{language}-{size}-first-paint")

    # A refusal's toast is titled in the visitor's language (Gradio's own title is English).
    _accept(page)
    page.locator("#prompt textarea").fill("   ")
    page.locator("#send").click()
    toast = page.locator(".toast-body.error .toast-title").first
    toast.wait_for(timeout=15_000)
    assert toast.inner_text().strip() == t("app.error_title")
    assert page.get_by_text(t("msg.empty_prompt")).first.is_visible()
    _shot(page, f"{language}-{size}-toast")
    context.close()


def test_the_language_switch_retitles_the_tab_and_the_toasts(app: AppProcess, browser: Any) -> None:
    context, page, _ = _open(browser, app.url, "en", "desktop")
    page.locator("#language input").click()
    page.get_by_role("option", name=i18n.text("ja", "language.name")).click()
    page.locator("#send").get_by_text(i18n.text("ja", "prompt.send"), exact=True).wait_for(timeout=10_000)
    assert page.title() == i18n.text("ja", "app.title") and page.evaluate("document.documentElement.lang") == "ja"
    _accept(page)
    page.locator("#prompt textarea").fill("")
    page.locator("#send").click()
    page.locator(".toast-title").get_by_text(i18n.text("ja", "app.error_title")).first.wait_for(timeout=15_000)
    context.close()


@pytest.mark.parametrize(
    ("locale", "language"), [("zh-HK", "zh-TW"), ("zh-Hant-TW", "zh-TW"), ("zh-SG", "zh-CN"), ("fr-FR", "en")]
)
def test_the_browser_picks_the_language_by_the_servers_rules(
    app: AppProcess, browser: Any, locale: str, language: str
) -> None:
    assert i18n.negotiate(locale, "en") == language  # the rules the page's script mirrors
    context, page, _ = _open(browser, app.url, language, "desktop", locale=locale)
    assert page.evaluate("document.documentElement.lang") == language
    if language.startswith("zh"):  # the CJK face of the page's script comes first
        family = page.evaluate("getComputedStyle(document.querySelector('#send')).fontFamily")
        cjk = [f.strip().strip("'\"") for f in family.split(",") if "CJK" in f]
        assert cjk[0] == {"zh-TW": "Noto Sans CJK TC", "zh-CN": "Noto Sans CJK SC"}[language], family
    context.close()


def test_lang_in_the_address_wins(app: AppProcess, browser: Any) -> None:
    context = browser.new_context(locale="ja-JP", viewport=DESKTOP)
    page = context.new_page()
    page.goto(app.url + "/?lang=pl")
    page.locator("#send").get_by_text(i18n.text("pl", "prompt.send"), exact=True).wait_for(timeout=30_000)
    assert page.evaluate("document.documentElement.lang") == "pl"
    context.close()


@pytest.mark.parametrize("language", ["pl", "ja", "en"])
def test_a_phone_reaches_the_prompt_both_answers_and_every_tab(app: AppProcess, browser: Any, language: str) -> None:
    context, page, _ = _open(browser, app.url, language, "phone")
    t = lambda key: i18n.text(language, key)  # noqa: E731
    width = PHONE["width"]
    # Every tab in the bar (it wraps), none behind Gradio's "•••" menu.
    for tab in ("battle_tab", "sbs_tab", "leaderboard_tab", "status_tab"):
        r = _rect(page, f"#{tab}-button")
        assert r["width"] > 0 and r["right"] <= width + 1, (tab, r)
    assert not page.locator(".overflow-menu button").first.is_visible()
    _accept(page)
    page.wait_for_function(
        "() => document.activeElement === document.querySelector('#prompt textarea')", timeout=10_000
    )
    assert _in_view(page, "#prompt textarea", "phone"), _rect(page, "#prompt textarea")
    # Nothing scrolled beneath the pinned prompt row shows through it (Gradio's labels sit at z 40).
    r = _rect(page, "#prompt textarea")
    on_top = page.evaluate(f"document.elementFromPoint({r['left'] + 20}, {r['top'] + 4}).closest('#prompt') !== null")
    assert on_top, "something is drawn over the prompt box"
    # No two empty 460 px chats: the empty ones are short.
    assert _rect(page, "#chat_a")["height"] < 150
    _shot(page, f"{language}-phone-1-accepted")

    page.locator("#prompt textarea").fill(f"[{language}-phone] Opowiedz mi o Krakowie, proszę, dość długo.")
    page.locator("#prompt textarea").press("Enter")
    page.locator("#chat_b [data-testid='bot']").first.wait_for(timeout=20_000)
    page.wait_for_timeout(800)  # the page has scrolled to the answers
    streaming = page.locator("#vote_a").is_disabled()
    _shot(page, f"{language}-phone-2-streaming")
    # Both answers on screen at once (each at least 150 px of it), and the prompt pinned below them.
    for chat in ("#chat_a", "#chat_b"):
        r = _rect(page, chat)
        shown = min(r["bottom"], PHONE["height"]) - max(r["top"], 0)
        assert shown >= 150, (chat, r, streaming)
    assert _in_view(page, "#prompt textarea", "phone")
    page.wait_for_function("() => !document.querySelector('#vote_a').disabled", timeout=60_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= width + 1  # no sideways scroll
    page.locator("#vote_a").click()
    page.locator("#reveal table").wait_for(timeout=15_000)
    _shot(page, f"{language}-phone-3-voted", full=True)

    # The leaderboard: header cells break between words only, the page does not scroll sideways.
    page.locator("#leaderboard_tab-button").click()
    page.locator("#leaderboard_table th").first.wait_for(timeout=15_000)
    page.wait_for_timeout(2_000)
    cells = page.evaluate(
        "[...document.querySelectorAll('#leaderboard_table thead th')].filter((c) => c.offsetWidth > 0)"
        ".map((c) => ({text: c.innerText.trim(), h: c.getBoundingClientRect().height,"
        " fits: c.scrollWidth <= c.clientWidth + 1}))"
    )
    assert cells, "the leaderboard table has no header"
    for cell in cells:
        assert cell["fits"] and cell["h"] < 80, cell
    assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
    # The plots are drawn in the page's typeface (Plotly names its own, "Open Sans", otherwise).
    page.wait_for_function(
        "document.querySelectorAll('#leaderboard_tab .js-plotly-plot text').length > 0", timeout=30_000
    )
    plot_font = page.evaluate(
        "getComputedStyle(document.querySelector('#leaderboard_tab .js-plotly-plot text')).fontFamily"
    )
    assert plot_font.split(",")[0].strip().strip("'\"") == "system-ui", plot_font
    # Their titles stay inside the plots (broken into lines where too long), once drawn at this width.
    fits = (
        "() => [...document.querySelectorAll('#leaderboard_tab .js-plotly-plot')].every((p) => {"
        " const t = p.querySelector('.gtitle'); if (!t) return true;"
        " const a = t.getBoundingClientRect(), b = p.getBoundingClientRect();"
        " return a.left >= b.left - 1 && a.right <= b.right + 1 && a.top >= b.top - 1; })"
    )
    try:
        page.wait_for_function(fits, timeout=10_000)
    finally:
        _shot(page, f"{language}-phone-4-leaderboard", full=True)
    page.locator("#status_tab-button").click()
    page.locator("#status_table").get_by_text(t("status.online")).first.wait_for(timeout=15_000)
    _shot(page, f"{language}-phone-5-status", full=True)
    context.close()


@pytest.mark.parametrize("language", ["en", "pl", "ja"])
def test_the_vote_stays_marked_and_focus_returns_to_the_prompt(app: AppProcess, browser: Any, language: str) -> None:
    context, page, _ = _open(browser, app.url, language, "desktop")
    _accept(page)
    page.wait_for_function(
        "() => document.activeElement === document.querySelector('#prompt textarea')", timeout=10_000
    )
    page.locator("#prompt textarea").fill(f"[{language}-desktop] Hello, who are you?")
    page.locator("#send").click()
    page.wait_for_function("() => !document.querySelector('#vote_a').disabled", timeout=60_000)
    # No trash button on a chat: emptying one side would leave the vote allowed.
    for chat in ("#chat_a", "#chat_b"):
        buttons = page.locator(f"{chat} button:visible")
        labels = [buttons.nth(i).get_attribute("aria-label") or "" for i in range(buttons.count())]
        assert not any("clear" in label.lower() or "wyczyść" in label.lower() for label in labels), labels
        assert (
            page.locator(f"{chat} .icon-button-wrapper.top-panel").count() == 0
            or not page.locator(f"{chat} .icon-button-wrapper.top-panel").first.is_visible()
        )
    page.locator("#vote_tie").click()
    page.locator("#reveal table").wait_for(timeout=15_000)
    classes = {v: page.get_attribute(f"#{v}", "class") or "" for v in ("vote_a", "vote_b", "vote_tie", "vote_bothbad")}
    assert "primary" in classes["vote_tie"].split(), classes
    assert all("primary" not in c.split() for v, c in classes.items() if v != "vote_tie"), classes
    assert all(page.locator(f"#{v}").is_disabled() for v in classes)
    _shot(page, f"{language}-desktop-voted", full=True)
    page.locator("#new_round").click()
    page.wait_for_function(
        "() => document.activeElement === document.querySelector('#prompt textarea')", timeout=10_000
    )
    assert "primary" not in (page.get_attribute("#vote_tie", "class") or "").split()

    # The Status tab's refresh button is a button, not a bar across the page.
    page.locator("#status_tab-button").click()
    page.locator("#status_refresh").wait_for(state="visible", timeout=10_000)
    r = _rect(page, "#status_refresh")
    assert r["width"] < 400 and r["height"] >= 32, r
    _shot(page, f"{language}-desktop-status")
    context.close()


ROSTER = """
models:
  - name: north-7b
    backend: tgi
    url: ${NORTH_URL}
  - name: south-7b
    backend: openai
    url: ${SOUTH_URL}/v1
    model: demo/south-7b
"""


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_banner_follows_the_models_health(browser: Any, tmp_path: Path, size: str) -> None:
    ports = free_port(), free_port()
    (tmp_path / "models.yaml").write_text(ROSTER, encoding="utf-8")
    env = {
        "NORTH_URL": f"http://127.0.0.1:{ports[0]}",
        "SOUTH_URL": f"http://127.0.0.1:{ports[1]}",
        "ARENA_HEALTH_INTERVAL": "1",
        "ARENA_MIN_READ_SECONDS": "0",
        "ARENA_BATTLES_PER_MINUTE": "0",
    }
    args = ["--config", str(tmp_path / "models.yaml"), "--db", f"sqlite:///{tmp_path / 'arena.sqlite3'}"]
    proc = AppProcess(args, env=env, log_path=tmp_path / "app.log")
    try:
        proc.wait_ready()
        # Both servers are down: once the health checks saw it, the battle tab says so.
        deadline = time.monotonic() + 30
        context, page, _ = _open(browser, proc.url, "pl", size)
        while not page.locator("#models_banner").is_visible():
            assert time.monotonic() < deadline, "no offline banner with every model server down"
            context.close()
            time.sleep(1)
            context, page, _ = _open(browser, proc.url, "pl", size)
        said = i18n.text("pl", "app.no_models").split(" ", 1)[1][:40]  # past the emoji
        assert said in page.inner_text("#models_banner")
        _shot(page, f"offline-{size}-banner")
        page.locator("#sbs_tab-button").click()
        page.wait_for_timeout(500)
        assert page.locator("#sbs_model_a input").input_value() == ""  # no offline model preselected
        assert page.locator("#sbs_model_b input").input_value() == ""
        # The servers come up: the banner goes away by itself (the page polls while it shows).
        with DemoServer("demo/north-7b", port=ports[0]), DemoServer("demo/south-7b", port=ports[1]):
            page.locator("#models_banner").wait_for(state="hidden", timeout=30_000)
            _shot(page, f"offline-{size}-back")
            page.reload()
            page.wait_for_function("() => document.documentElement.classList.contains('arena-ready')", timeout=30_000)
            page.locator("#sbs_tab-button").click()
            page.wait_for_function(
                "() => document.querySelector('#sbs_model_a input').value !== ''"
                " && document.querySelector('#sbs_model_b input').value !== ''",
                timeout=15_000,
            )
            picked = {
                page.locator("#sbs_model_a input").input_value(),
                page.locator("#sbs_model_b input").input_value(),
            }
            assert picked == {"north-7b", "south-7b"}
            assert not page.locator("#models_banner").is_visible()
        context.close()
    finally:
        proc.stop()
