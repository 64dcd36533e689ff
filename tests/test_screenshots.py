"""Every tab in every language at desktop (1280x900) and phone (390x844) size, photographed and checked.

The PNGs land in ``$ARENA_SCREENSHOTS`` if set, else under pytest's tmp dir: look at them. Per shot:
the tab shows its element with the translated text, nothing on the page is wider than a phone's
screen (a table or code block may scroll inside its own box), and no error is on screen.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from arena import i18n
from tests.support.app_process import AppProcess
from tests.support.screenshots import TABS, Shot, tab_screenshots
from tests.support.showcase import seed_showcase

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory, browser) -> Iterator[list[Shot]]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("screenshots")
    db = seed_showcase(f"sqlite:///{tmp / 'arena.sqlite3'}")
    app = AppProcess(["--demo", "--db", db], env={"ARENA_JOURNAL_DIR": str(tmp / "j")}, log_path=tmp / "app.log")
    out = Path(os.environ.get("ARENA_SCREENSHOTS") or tmp / "png")
    try:
        app.wait_ready()
        yield tab_screenshots(browser, app.url, out)
    finally:
        app.stop()


def test_every_tab_in_every_language_at_both_sizes(shots: list[Shot]) -> None:
    taken = {(s.tab, s.language, s.size) for s in shots}
    tabs = {s.tab for s in shots}
    assert {"battle", "sbs", "leaderboard", "status"} <= tabs <= set(TABS)
    assert "campaign" in tabs  # the demo ships a campaign
    assert len(taken) == len(shots) == len(tabs) * len(i18n.LANGUAGES) * 2
    assert all(s.path.stat().st_size > 10_000 for s in shots)  # a picture, not a blank page


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_each_shot_shows_its_tab_in_its_language_without_errors(shots: list[Shot], size: str) -> None:
    problems = []
    for s in (s for s in shots if s.size == size):
        where = f"{s.path.name}:"
        if not s.visible or s.text != s.expected:
            problems.append(f"{where} expected {s.expected!r}, the tab shows {s.text!r}")
        if s.toasts or "Traceback" in s.body:
            problems.append(f"{where} an error is on screen: {s.toasts}")
        error_title = i18n.text(s.language, "app.error_title")
        if any(line.strip() in ("Error", error_title) for line in s.body.splitlines()):
            problems.append(f"{where} an error title is on screen")
        if s.size == "phone" and (s.scroll_width > s.viewport_width + 1 or s.wide):
            problems.append(f"{where} wider than the phone ({s.scroll_width} px): {s.wide}")
    assert problems == [], "\n".join(problems)
