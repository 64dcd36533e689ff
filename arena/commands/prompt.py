"""``python -m arena prompt``: print the exact prompt (or request body) a model gets for a conversation."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from arena.config import Settings, roster_path
from arena.domain import Message
from arena.errors import ConfigError, TemplateError
from arena.registry import load_registry

NAME = "prompt"
HELP = (
    "Print, byte for byte, the prompt a model is given for a conversation (a JSON list of "
    '{"role", "content"}); --json prints the request body instead.'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help="the roster file (default: $ARENA_CONFIG, else the models.yaml next to app.py)",
    )
    parser.add_argument("--model", required=True, help="a model name from the roster")
    parser.add_argument(
        "--messages", required=True, help='JSON file: [{"role": "user", "content": "..."}, ...]; "-" reads stdin'
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the request body (tgi: /generate; openai: /v1/chat/completions) as JSON, ending in a newline",
    )
    parser.add_argument(
        "--max-new-tokens-cap",
        type=int,
        default=None,
        help="the arena-wide max_new_tokens cap (default: ARENA_MAX_NEW_TOKENS, as the app applies it; 0 for none)",
    )
    parser.add_argument(
        "--max-input-tokens", type=int, default=None, help="the server's input limit (default: from context_length)"
    )


def _read_messages(source: str) -> list[Message]:
    try:
        raw = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{source}: cannot read the messages file: {e}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise TemplateError(f"{source}: not valid JSON: {e}") from None
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        raise TemplateError(f'{source}: expected a JSON list of {{"role": ..., "content": ...}} objects.')
    return data


def run(args: argparse.Namespace) -> int:
    from arena.backends import backend_class
    from arena.templates import prepare

    spec = load_registry(roster_path(args.config or os.environ.get("ARENA_CONFIG")))[args.model]
    cap = args.max_new_tokens_cap
    if cap is None:  # what the app sends: the same setting, read the same way
        cap = Settings.load(os.environ).max_new_tokens
    prepared = prepare(
        spec,
        _read_messages(args.messages),
        max_input_tokens=args.max_input_tokens,
        max_new_tokens_cap=cap or None,
    )
    if prepared.dropped_turns:
        print(f"note: dropped the {prepared.dropped_turns} oldest turn(s) to fit the input limit", file=sys.stderr)
    if args.json:
        body = backend_class(spec.backend).request_body(spec, prepared.request)
        out = json.dumps(body, ensure_ascii=False, indent=2) + "\n"
    elif prepared.text is None:
        raise ConfigError(
            f"model {spec.name!r} has no prompt format configured (its server builds the prompt); "
            "add template:, chat_template: or tokenizer: to see it, or use --json for the request."
        )
    else:
        out = prepared.text
    sys.stdout.buffer.write(out.encode("utf-8"))
    sys.stdout.buffer.flush()
    return 0
