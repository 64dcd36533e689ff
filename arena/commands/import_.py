"""``python -m arena import``: load battles in Chatbot Arena's public schema; ids already stored are skipped."""

from __future__ import annotations

import argparse
import os
import sys

from arena.commands import counted
from arena.config import Settings
from arena.storage import Store, default_url

NAME = "import"
HELP = (
    "Load battles from a CSV, JSON (a list) or JSONL file in Chatbot Arena's public battle schema, so public "
    "arena data can be re-ranked; running it again adds nothing (battles are keyed by question_id)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", metavar="URL", default=None, help="Database URL (default: DATABASE_URL, else db/arena.sqlite3)."
    )
    parser.add_argument("file", metavar="FILE", help="A .csv, .json or .jsonl battle file.")
    parser.add_argument(
        "--format", choices=("csv", "json", "jsonl"), default=None, help="Override the format the file name implies."
    )


def run(args: argparse.Namespace) -> int:
    from arena.exchange import import_file

    def progress(inserted: int, skipped: int) -> None:
        print(f"imported {inserted}, skipped {skipped} ...", file=sys.stderr, flush=True)

    settings = Settings.load(os.environ, db=args.db)
    with Store(settings.db or default_url()) as store:
        store.create_schema()
        result = import_file(store, args.file, fmt=args.format, progress=progress)  # ImportFormatError: exit 2
    print(
        f"imported {counted(result.inserted, 'battle')}, skipped {result.skipped} already stored, into {store.url}",
        file=sys.stderr,
    )
    return 0
