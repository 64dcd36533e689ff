"""``python -m arena export``: write voted battles in Chatbot Arena's public battle schema (CSV or JSONL)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from arena.commands import counted
from arena.config import Settings
from arena.errors import ConfigError
from arena.storage import Store, default_url

NAME = "export"
HELP = (
    "Write every voted battle as CSV or JSONL in Chatbot Arena's public battle schema (question_id, model_a, "
    "model_b, winner, judge, turn, anony, language, tstamp; conversations with --with-conversations)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", metavar="URL", default=None, help="Database URL (default: DATABASE_URL, else db/arena.sqlite3)."
    )
    parser.add_argument("--battles", metavar="FILE", required=True, help="The file to write ('-': standard output).")
    parser.add_argument(
        "--format", choices=("csv", "jsonl"), default=None, help="csv or jsonl (default: from the file name, else csv)."
    )
    parser.add_argument(
        "--with-conversations",
        action="store_true",
        help="Include both conversations (the visitors' prompts: mind their privacy before publishing).",
    )
    parser.add_argument("--bom", action="store_true", help="Start a CSV with a UTF-8 byte-order mark (for Excel).")


def _progress(n: int) -> None:
    print(f"exported {counted(n, 'battle')} ...", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from arena.exchange import export_battles

    fmt = args.format or ("jsonl" if Path(args.battles).suffix.lower() in (".jsonl", ".ndjson") else "csv")
    settings = Settings.load(os.environ, db=args.db)
    with Store(settings.db or default_url()) as store:
        if store.current_revision() is None:
            raise ConfigError(f"{store.url} has no arena tables; there is nothing to export.")
        kwargs = {"fmt": fmt, "with_conversations": args.with_conversations, "progress": _progress}
        if args.battles == "-":
            n = export_battles(store, sys.stdout, **kwargs)
        else:
            n = export_battles(store, args.battles, bom=args.bom, **kwargs)
    print(f"exported {counted(n, 'battle')} to {args.battles}", file=sys.stderr)
    return 0
