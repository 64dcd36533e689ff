"""A visitor session's memory in Gradio stays bounded however many battles it plays.

Real Gradio servers driven over HTTP by gradio_client, with the real arena page over real demo
model servers. They run in a child process (tests/support/session_probe.py) that reads the
servers' session store and reports it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _probe(case: str) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-m", "tests.support.session_probe", case],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def test_plain_gradio_keeps_a_stale_copy_per_update_cycle() -> None:
    # The upstream behaviour ArenaBlocks works around (Gradio 6.31). If this fails, Gradio has
    # fixed it: the pruning in arena/ui/sessions.py can go (keep the idle-session sweep).
    report = _probe("toggle-plain")
    blocks, _configs = report["session"]
    assert blocks == report["page"] + 2 * report["cycles"]


def test_arena_blocks_keep_a_session_the_size_of_the_page() -> None:
    report = _probe("toggle-arena")
    # At most the current copy of each updated component (here two) besides the page's blocks. With
    # arena.ui.lean a plain chat or text value no longer files the session's copy a second time under
    # the copy's own id, so there may be none.
    for size in report["session"]:
        assert report["page"] <= size <= report["page"] + 2, report


@pytest.fixture(scope="module")
def arena() -> dict[str, Any]:
    return _probe("arena")


def test_a_visitors_session_does_not_grow_with_battles(arena: dict[str, Any]) -> None:
    sizes = arena["sizes"]
    assert sizes[0][0] <= 2 * arena["page"]  # at most one current copy per block
    # Pruned when the session grows, so it may wobble by a copy or two but never climbs
    # (without the pruning it gains several blocks every battle).
    assert max(sizes[3:]) <= max(sizes[:3]), sizes


def test_idle_sessions_are_forgotten_and_active_ones_kept(arena: dict[str, Any]) -> None:
    assert arena["forgotten"] == 1
    assert arena["first_kept"] is False
    assert arena["other_kept"] is True


def test_a_forgotten_visitor_starts_afresh_with_plain_messages(arena: dict[str, Any]) -> None:
    assert "nothing to vote" in arena["vote_after"].lower() or "no battle" in arena["vote_after"].lower(), arena
    assert "terms" in arena["send_after"].lower() or "agree" in arena["send_after"].lower(), arena
    assert "http" not in arena["vote_after"] + arena["send_after"]
    assert arena["battle_after"] is True
