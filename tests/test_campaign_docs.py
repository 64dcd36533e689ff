"""docs/campaigns.md's commands, run as written (a model builder copies them): the walk-through from
a Shisa tasks.json to published results, and the recipe that made the demo campaign's answers."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from arena.campaigns.formats import read_answers
from arena.campaigns.service import DEMO_BUNDLE, CampaignService
from arena.storage import Store
from arena.storage.campaigns import CampaignStore
from tests.support.services import make_service

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "campaigns.md").read_text(encoding="utf-8")


def doc_commands() -> list[list[str]]:
    """Every ``python -m arena campaign ...`` command of the doc's code blocks, as argument lists."""
    commands = []
    for block in re.findall(r"```\n(.*?)```", DOC, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("python -m arena campaign "):
                commands.append(shlex.split(line))
    return commands


def _command(action: str, db_hint: str) -> list[str]:
    (found,) = [c for c in doc_commands() if c[4] == action and db_hint in " ".join(c)]
    return [sys.executable, *found[1:]]


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def test_the_walk_through_from_tasks_json_to_published_results(tmp_path: Path) -> None:
    tasks = [
        {"id": 1, "type": "writing", "prompt_en": "Be brief.", "prompt_ja": None, "user_en": "A haiku on rain.",
         "user_ja": "雨の俳句を書いてください。"},
        {"id": 2, "type": "math", "prompt_en": None, "prompt_ja": None, "user_en": "What is 17 times 23?",
         "user_ja": "17かける23は？"},
    ]  # fmt: skip
    (tmp_path / "tasks.json").write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "model_answer").mkdir()
    for model in ("rc-1", "rc-2"):
        lines = [
            {"question_id": pid, "model_id": model, "choices": [{"index": 0, "turns": [f"Answer {n} to {pid}."]}]}
            for n, pid in enumerate(("1-en", "1-ja", "2-en", "2-ja"))
        ]
        text = "".join(json.dumps(line) + "\n" for line in lines)
        (tmp_path / "model_answer" / f"{model}.jsonl").write_text(text, encoding="utf-8")

    created = _run(_command("create", "db/rc.sqlite3"), tmp_path)
    assert "4 prompts" in created.stdout and "languages en, ja" in created.stdout
    imported = _run(_command("import", "db/rc.sqlite3"), tmp_path)
    assert "imported 8 answers into campaign my-rc" in imported.stdout

    # People judge in the campaign tab; here through the same service the tab calls.
    store = Store(f"sqlite:///{tmp_path / 'db' / 'rc.sqlite3'}")
    try:
        campaigns = CampaignService(make_service([], store), CampaignStore(store), rng=np.random.default_rng(1))
        for judge in range(4):
            comparison = campaigns.next_comparison("my-rc", f"10.0.0.{judge}")
            winner = "model_a" if comparison.answer_a.candidate == "rc-1" else "model_b"
            asyncio.run(campaigns.vote(comparison, winner))
    finally:
        store.dispose()

    printed = _run(_command("results", "db/rc.sqlite3"), tmp_path).stdout
    assert "== overall (4 judgments) ==" in printed and "== language:en" in printed
    rows = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text(encoding="utf-8"))))
    overall = {r["candidate"]: r for r in rows if r["slice"] == "overall"}
    assert (overall["rc-1"]["wins"], overall["rc-2"]["losses"], overall["rc-1"]["win_pct"]) == ("4", "4", "100.0")

    _run(_command("export", "db/rc.sqlite3"), tmp_path)
    judged = [json.loads(x) for x in (tmp_path / "judgments.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(judged) == 4 and list(judged[0])[:6] == ["question_id", "model_a", "model_b", "winner", "judge", "turn"]
    assert len(read_answers(tmp_path / "answers.jsonl", "my-rc")) == 8
    assert (tmp_path / "my-rc-bundle" / "campaign.yaml").is_file()


def test_the_demo_answers_recipe_generates_every_shipped_answer(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gen.sqlite3'}"
    out = tmp_path / "answers.jsonl"

    def here(args: list[str]) -> list[str]:
        return [
            a.replace("sqlite:////tmp/gen.sqlite3", db).replace("arena/campaigns/demo/answers.jsonl", str(out))
            for a in args
        ]

    _run(here(_command("create", "/tmp/gen.sqlite3")), ROOT)
    generated = _run(here(_command("generate", "/tmp/gen.sqlite3")), ROOT, ARENA_DEMO_TOKEN_RATE="400")
    assert "128 answers planned, 0 already stored, 128 generated, 0 failed" in generated.stdout
    _run(here(_command("export", "/tmp/gen.sqlite3")), ROOT)
    shipped = read_answers(DEMO_BUNDLE / "answers.jsonl", "demo-bilingual")
    made = read_answers(out, "demo-bilingual")
    assert sorted(a.id for a in made) == sorted(a.id for a in shipped)
    assert all(a.rendered_prompt and a.finish_reason and a.params.get("max_new_tokens") == 160 for a in made)
