"""Screenshots of every tab in every language at desktop and phone sizes, and the few kept in docs/.

``tab_screenshots`` drives a running arena (one browser context per size, one page reused for all
languages) and returns what it saw per shot, for ``tests/test_screenshots.py`` to check. Run as a
script it starts the demo arena on a believable set of votes (``tests.support.showcase``) and
writes the README's pictures::

    python -m tests.support.screenshots --out docs/screenshots

(battle in Polish on a desktop, a reveal in Japanese on a phone, the leaderboard in Traditional
Chinese), each a palette PNG under 300 KB; rerun it whenever the page changes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arena import i18n
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, DESKTOP, PHONE

SIZES = {"desktop": DESKTOP, "phone": PHONE}
# Tab id (gr.Tab id) -> (its label key, an element of the tab, the catalog key of that element's text).
TABS: dict[str, tuple[str, str, str]] = {
    "battle": ("tab.battle", "#send", "prompt.send"),
    "sbs": ("tab.sbs", "#sbs_send", "prompt.send"),
    "leaderboard": ("tab.leaderboard", "#leaderboard_refresh", "leaderboard.refresh"),
    "status": ("tab.status", "#status_refresh", "status.refresh"),
    "campaign": ("tab.campaign", "#campaign_next", "campaign.next"),
}

# What the page reports about itself after a tab is shown (read in the browser, once per shot).
_PROBE = """(sel) => {
  const el = document.querySelector(sel);
  const width = window.innerWidth;
  const wide = [];
  for (const e of document.querySelectorAll('body *')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const style = getComputedStyle(e);
    if (style.visibility === 'hidden' || style.display === 'none') continue;
    // Inside a box that scrolls sideways (a table, a code block) is fine: the page itself does not.
    let clipped = false;
    for (let p = e.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden') { clipped = true; break; }
    }
    const name = e.id ? '#' + e.id : e.tagName.toLowerCase();
    const span = `${Math.round(r.left)}..${Math.round(r.right)}`;
    // Wholly off-screen is deliberate (plotly's text-measuring probe sits at -10000 px); sticking out is not.
    const sticksOut = (r.right > width + 1 && r.left < width) || (r.left < -1 && r.right > 0);
    if (!clipped && sticksOut) wide.push(`${name} ${span}`);
  }
  return {
    text: el ? el.innerText.trim() : null,
    visible: !!el && el.getBoundingClientRect().width > 0,
    scrollWidth: document.documentElement.scrollWidth,
    wide: wide.slice(0, 5),
    toasts: [...document.querySelectorAll('.toast-body, .toast-wrap')].map(t => t.innerText.trim()).filter(Boolean),
    body: document.body.innerText,
  };
}"""


@dataclass
class Shot:
    """One screenshot and what the page said about itself when it was taken."""

    path: Path
    tab: str
    language: str
    size: str
    expected: str  # the translated text the tab's element must show
    text: str | None
    visible: bool
    scroll_width: int
    viewport_width: int
    wide: list[str]
    toasts: list[str]
    body: str


def _open_tab(page: Any, label: str) -> None:
    tab = page.get_by_role("tab", name=label, exact=True)
    if tab.count() and tab.first.is_visible():
        tab.first.click()
        return
    # A phone folds the tabs that do not fit into Gradio's overflow menu ("•••").
    page.locator(".overflow-menu button, button.overflow-menu").first.click()
    page.locator(".overflow-dropdown").get_by_text(label, exact=True).first.click()


def tab_screenshots(
    browser: Any,
    url: str,
    out: Path,
    *,
    languages: tuple[str, ...] = i18n.LANGUAGES,
    tabs: tuple[str, ...] | None = None,
) -> list[Shot]:
    """Every tab in every language at both sizes; ``tabs`` defaults to those the page has."""
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Shot] = []
    for size, viewport in SIZES.items():
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        try:
            for language in languages:
                page.goto(f"{url}/?lang={language}")
                page.locator("#send").get_by_text(i18n.text(language, "prompt.send"), exact=True).wait_for(
                    timeout=30_000
                )
                ids = page.evaluate("() => (window.gradio_config?.components || []).map(c => c.props?.elem_id)")
                present = tabs or tuple(t for t in TABS if f"{t}_tab" in ids)
                for tab in present:
                    label_key, selector, text_key = TABS[tab]
                    expected = i18n.text(language, text_key)
                    if tab != "battle":
                        _open_tab(page, i18n.text(language, label_key))
                    page.locator(selector).get_by_text(expected, exact=True).wait_for(timeout=30_000)
                    if tab == "leaderboard":  # the table fills in after the tab is shown
                        page.locator("#leaderboard_table").get_by_text("aurora-7b").first.wait_for(timeout=60_000)
                    page.locator(selector).scroll_into_view_if_needed()  # the tab itself, not the page's header
                    page.wait_for_timeout(250)  # let the layout settle after the tab switch
                    path = out / f"{tab}-{language}-{size}.png"
                    page.screenshot(path=str(path))
                    seen = page.evaluate(_PROBE, selector)
                    shots.append(
                        Shot(
                            path=path,
                            tab=tab,
                            language=language,
                            size=size,
                            expected=expected,
                            text=seen["text"],
                            visible=seen["visible"],
                            scroll_width=seen["scrollWidth"],
                            viewport_width=viewport["width"],
                            wide=seen["wide"],
                            toasts=seen["toasts"],
                            body=seen["body"],
                        )
                    )
                if "battle" in present and tab != "battle":
                    _open_tab(page, i18n.text(language, "tab.battle"))
        finally:
            context.close()
    return shots


# --- the README's pictures ------------------------------------------------------------------------


def _small_png(path: Path, *, crop_height: int | None = None) -> None:
    """Palette PNG (256 colours), optionally cropped: screenshots of text stay sharp at a fraction of the size."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        if crop_height is not None and rgb.height > crop_height:
            rgb = rgb.crop((0, 0, rgb.width, crop_height))
        rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def _accept(page: Any, url: str, language: str) -> None:
    page.goto(f"{url}/?lang={language}")
    page.locator("#send").get_by_text(i18n.text(language, "prompt.send"), exact=True).wait_for(timeout=30_000)
    page.locator("#accept_terms").click()
    page.wait_for_function("() => !document.querySelector('#prompt textarea').disabled", timeout=15_000)


def _battle(page: Any, prompt: str) -> None:
    box = page.locator("#prompt textarea")
    box.fill(prompt)
    box.press("Enter")
    page.wait_for_function("() => !document.querySelector('#vote_a').disabled", timeout=60_000)


def docs_screenshots(browser: Any, url: str, out: Path) -> list[Path]:
    """Battle in Polish (desktop), a reveal in Japanese (phone), the leaderboard in zh-TW (desktop)."""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    _accept(page, url, "pl")
    _battle(page, "Opowiedz mi o Krakowie.")
    path = out / "battle-pl-desktop.png"
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)
    made.append(path)
    page.goto(f"{url}/?lang=zh-TW")
    page.locator("#send").get_by_text(i18n.text("zh-TW", "prompt.send"), exact=True).wait_for(timeout=30_000)
    _open_tab(page, i18n.text("zh-TW", "tab.leaderboard"))
    page.locator("#leaderboard_table").get_by_text("aurora-7b").first.wait_for(timeout=60_000)
    # The Traditional Chinese slice: rank ranges and their plain explanation; the fold opened.
    page.locator("#leaderboard_slice input").click()
    page.get_by_role("option").filter(has_text="中文（繁體）").first.click()
    page.locator("#leaderboard_legend").get_by_text(i18n.text("zh-TW", "lb.legend_ranges")).wait_for(timeout=60_000)
    page.get_by_text(i18n.text("zh-TW", "lb.how_to_read")).click()
    page.locator("#leaderboard_audit li").first.wait_for(timeout=30_000)
    page.locator("#leaderboard_ratings_plot .js-plotly-plot").first.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    path = out / "leaderboard-zh-TW-desktop.png"
    page.screenshot(path=str(path), full_page=True)
    _small_png(path, crop_height=1700)
    made.append(path)
    context.close()

    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    _accept(page, url, "ja")
    _battle(page, "日本で一番高い山について教えてください。")
    time.sleep(2.5)  # a vote within ARENA_MIN_READ_SECONDS of the answers would be flagged
    page.locator("#vote_a").click()
    page.locator("#reveal").get_by_text("aurora", exact=False).or_(page.locator("#reveal table")).first.wait_for(
        timeout=30_000
    )
    page.locator("#reveal").scroll_into_view_if_needed()
    path = out / "reveal-ja-phone.png"
    page.screenshot(path=str(path))
    made.append(path)
    context.close()
    for path in made:
        if path.name != "leaderboard-zh-TW-desktop.png":
            _small_png(path)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/screenshots", help="folder for the README's PNGs")
    parser.add_argument("--all", metavar="FOLDER", help="also every tab in every language at both sizes, here")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from tests.support.app_process import AppProcess
    from tests.support.showcase import seed_showcase

    with tempfile.TemporaryDirectory(prefix="arena-shots-") as tmp:
        db = seed_showcase(f"sqlite:///{Path(tmp) / 'arena.sqlite3'}")
        env = {"ARENA_JOURNAL_DIR": str(Path(tmp) / "journal"), "ARENA_DEMO_TOKEN_RATE": "120"}
        app = AppProcess(["--demo", "--db", db], env=env, log_path=Path(tmp) / "app.log").wait_ready()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                for path in docs_screenshots(browser, app.url, Path(args.out)):
                    print(f"{path} ({path.stat().st_size // 1024} KB)")
                if args.all:
                    for shot in tab_screenshots(browser, app.url, Path(args.all)):
                        print(shot.path)
                browser.close()
        finally:
            app.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
