"""Time to the first paint in the visitor's language, and whether English showed first (issue 20).

Starts ``python app.py --demo``, optionally puts battles on it (``--visitors`` load-generator
visitors sending prompts in a loop), and opens the page in headless Chromium at desktop and phone
sizes with a Polish and a Japanese browser. A script injected before the page's own watches every
animation frame for the send button: when it was first painted with any text, and when it first
showed the visitor's language (so "English first" means a visible send button said "Send" before).

    python -m benchmarks.bench_first_paint --visitors 16 --repeats 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from arena import i18n
from benchmarks.loadgen import App, GradioApp, Visitor, http_client, loadavg
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, DESKTOP, PHONE

# Runs before any of the page's scripts: one sample per animation frame until the send button
# shows the expected text (or 20 s pass).
WATCH = """
(() => {
  const want = %r;
  const t0 = performance.timeOrigin;
  window.__paint = {first: null, firstText: null, correct: null, english: false};
  function visible(el) {
    if (!el) return false;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return false;
    for (let n = el; n; n = n.parentElement) {
      const s = getComputedStyle(n);
      if (s.visibility === 'hidden' || s.display === 'none' || s.opacity === '0') return false;
    }
    return true;
  }
  function tick() {
    const now = performance.now();
    const send = document.querySelector('#send');
    if (visible(send)) {
      const text = send.innerText.trim();
      if (text && window.__paint.first === null) { window.__paint.first = now; window.__paint.firstText = text; }
      if (text === 'Send' && want !== 'Send') window.__paint.english = true;
      if (text === want) { window.__paint.correct = now; return; }
    }
    if (now < 20000) requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);
})();
"""


def _load(url: str, visitors: int, stop: threading.Event) -> threading.Thread:
    """``visitors`` sessions sending prompts in a loop until ``stop`` (in a thread of its own)."""

    async def one(http: Any, app: GradioApp, i: int) -> None:
        visitor = await Visitor.arrive(http, app)
        while not stop.is_set():
            try:
                await visitor.call("send", app.payload("send", prompt=f"load {i}: tell me a story"))
                await visitor.call("new_round", app.payload("new_round"))
            except Exception as e:  # a busy queue or a refused turn: keep loading
                print(f"load visitor {i}: {type(e).__name__}", file=sys.stderr)
                await asyncio.sleep(0.5)

    async def main() -> None:
        app = GradioApp(url)
        async with http_client(visitors) as http:
            await asyncio.gather(*(one(http, app, i) for i in range(visitors)))

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    return thread


def _measure(browser: Any, url: str, locale: str, language: str, viewport: dict[str, int]) -> dict[str, Any]:
    context = browser.new_context(locale=locale, viewport=viewport)
    try:
        page = context.new_page()
        page.add_init_script(WATCH % i18n.text(language, "prompt.send"))
        page.goto(url)
        page.wait_for_function("() => window.__paint && window.__paint.correct !== null", timeout=30_000)
        paint: dict[str, Any] = page.evaluate("window.__paint")
        return paint
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=16, help="load-generator visitors battling meanwhile")
    parser.add_argument("--repeats", type=int, default=5, help="page loads per size and language")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        env = {"ARENA_MIN_READ_SECONDS": "0", "ARENA_BATTLES_PER_MINUTE": "0", "ARENA_VOTES_PER_HOUR": "0"}
        app = App(["--demo", "--db", f"sqlite:///{tmp}/arena.sqlite3"], env=env, log_path=Path(tmp) / "app.log")
        stop = threading.Event()
        try:
            app.wait_ready()
            load = _load(app.url, args.visitors, stop) if args.visitors else None
            time.sleep(3 if load else 0)
            rows = []
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
                    for locale, language in (("pl-PL", "pl"), ("ja-JP", "ja")):
                        runs = [_measure(browser, app.url, locale, language, viewport) for _ in range(args.repeats)]
                        rows.append((size, language, runs))
                        print(f"{size} {language}: {runs}", file=sys.stderr)
                browser.close()
            load_now = loadavg()
        finally:
            stop.set()
            app.stop()
    print(f"\nvisitors battling meanwhile: {args.visitors}; load average at the end: {load_now}\n")
    print(
        "| size | language | loads | first paint of the send button, median (ms) | in the visitor's language, "
        "median / max (ms) | loads that showed English first |"
    )
    print("|---|---|---|---|---|---|")
    for size, language, runs in rows:
        first = statistics.median(r["first"] for r in runs)
        correct = [r["correct"] for r in runs]
        english = sum(1 for r in runs if r["english"])
        print(
            f"| {size} | {language} | {len(runs)} | {first:.0f} | {statistics.median(correct):.0f} / "
            f"{max(correct):.0f} | {english} of {len(runs)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
