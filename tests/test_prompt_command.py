"""`python -m arena prompt`: the exact prompt, byte for byte, and the request body."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arena.commands import prompt
from arena.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CARDS = json.loads((ROOT / "tests/data/templates/cards.json").read_text(encoding="utf-8"))


def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "arena", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENA_")}  # the defaults, not the caller's
    return subprocess.run(command, cwd=ROOT, capture_output=True, timeout=120, check=False, env=env)


def write_messages(tmp_path: Path, messages: list[dict[str, str]]) -> Path:
    path = tmp_path / "messages.json"
    path.write_text(json.dumps(messages, ensure_ascii=False), encoding="utf-8")
    return path


def test_prints_the_breeze_card_example_byte_for_byte(tmp_path: Path) -> None:
    card = CARDS["breeze"]
    messages = write_messages(tmp_path, card["messages"])
    result = run_cli("prompt", "--config", "models.yaml", "--model", "breeze-7b-instruct", "--messages", str(messages))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == card["expected"].encode("utf-8")  # no newline added, trailing space kept


def test_prints_the_huozi_template_for_an_openai_model(tmp_path: Path) -> None:
    card = CARDS["huozi_quickstart"]
    messages = write_messages(tmp_path, card["messages"])
    result = run_cli("prompt", "--config", "models.yaml", "--model", "huozi-3.5", "--messages", str(messages))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == card["expected"].encode("utf-8")


def test_json_prints_the_tgi_body(tmp_path: Path) -> None:
    messages = write_messages(tmp_path, CARDS["breeze"]["messages"])
    result = run_cli(
        "prompt",
        "--config",
        "models.yaml",
        "--model",
        "breeze-7b-instruct",
        "--messages",
        str(messages),
        "--json",
        "--max-new-tokens-cap",
        "512",
    )
    assert result.returncode == 0, result.stderr.decode()
    body = json.loads(result.stdout)
    assert body["inputs"] == CARDS["breeze"]["expected"].removeprefix("<s>")
    assert body["parameters"] == {
        "temperature": 0.01,
        "top_p": 0.01,
        "top_k": 85,
        "repetition_penalty": 1.1,
        "max_new_tokens": 512,
        "stop": ["[INST]"],
    }


def test_json_prints_the_openai_body(tmp_path: Path) -> None:
    messages = write_messages(tmp_path, [{"role": "user", "content": "你好"}])
    args = argparse.Namespace(
        config=str(ROOT / "models.yaml"),
        model="huozi-3.5",
        messages=str(messages),
        json=True,
        max_new_tokens_cap=None,
        max_input_tokens=None,
    )
    result = run_cli("prompt", "--config", args.config, "--model", args.model, "--messages", args.messages, "--json")
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == {
        "model": "huozi",
        "messages": [{"role": "系统", "content": "你是一个智能助手"}, {"role": "用户", "content": "你好"}],
        "stop": ["<|endofutterance|>"],
        "temperature": 0.8,
        "top_p": 0.9,
        "max_tokens": 1024,  # the arena-wide ARENA_MAX_NEW_TOKENS default, as the app sends it
        "stop_token_ids": [57001],
    }
    uncapped = run_cli(
        "prompt",
        "--config",
        args.config,
        "--model",
        args.model,
        "--messages",
        args.messages,
        "--json",
        "--max-new-tokens-cap",
        "0",
    )
    assert "max_tokens" not in json.loads(uncapped.stdout)


def test_errors_exit_2_with_a_message(tmp_path: Path) -> None:
    messages = write_messages(tmp_path, [{"role": "user", "content": "x"}])
    result = run_cli("prompt", "--config", "models.yaml", "--model", "nope", "--messages", str(messages))
    assert result.returncode == 2
    assert b"no model named 'nope'" in result.stderr
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    result = run_cli(
        "prompt", "--config", "models.yaml", "--model", "shisa-7b", "--messages", str(tmp_path / "bad.json")
    )
    assert result.returncode == 2
    assert b"not valid JSON" in result.stderr


def test_run_reports_dropped_turns_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    turns = []
    for i in range(6):
        turns += [{"role": "user", "content": f"q{i} " * 200}, {"role": "assistant", "content": f"a{i} " * 200}]
    turns.append({"role": "user", "content": "last"})
    args = argparse.Namespace(
        config=str(ROOT / "models.yaml"),
        model="bielik-7b-instruct",
        messages=str(write_messages(tmp_path, turns)),
        json=False,
        max_new_tokens_cap=None,
        max_input_tokens=1000,
    )
    assert prompt.run(args) == 0
    captured = capsys.readouterr()
    assert "dropped the" in captured.err
    assert captured.out.endswith("last [/INST]")


def test_missing_messages_file_is_a_config_error(tmp_path: Path) -> None:
    args = argparse.Namespace(
        config=str(ROOT / "models.yaml"),
        model="bielik-7b-instruct",
        messages=str(tmp_path / "absent.json"),
        json=False,
        max_new_tokens_cap=None,
        max_input_tokens=None,
    )
    with pytest.raises(ConfigError, match="cannot read"):
        prompt.run(args)


def test_the_readme_prompt_example_runs_verbatim() -> None:
    """The README's command, as written, on the conversation the repository ships."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = next(x for x in readme.splitlines() if x.startswith("`python -m arena prompt ") and "--model " in x)
    args = line.strip("`.").split()[3:]
    messages = Path(args[args.index("--messages") + 1])
    assert (ROOT / messages).is_file(), f"the README names {messages}, which the repository does not ship"
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr.decode()
    conversation = json.loads((ROOT / messages).read_text(encoding="utf-8"))
    printed = result.stdout.decode("utf-8")
    assert all(m["content"] in printed for m in conversation)


def test_python_m_arena_runs_from_any_directory(tmp_path: Path) -> None:
    """The default roster is the checkout's models.yaml, not one in the working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENA_")}
    env["PYTHONPATH"] = str(ROOT)  # what `pip install -e .` does
    messages = ROOT / "docs" / "examples" / "conversation.json"
    command = [sys.executable, "-m", "arena", "prompt", "--model", "breeze-7b-instruct", "--messages", str(messages)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, timeout=120, check=False, env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode("utf-8").startswith("<s>You are a helpful assistant.")
    assert not list(tmp_path.iterdir())  # nothing written where it was run
