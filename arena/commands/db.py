"""``python -m arena db``: apply the database migrations in db/, or show which one a database is at."""

from __future__ import annotations

import argparse
import os

from arena.config import Settings
from arena.storage import Store, default_url

NAME = "db"
HELP = "Create or migrate the database (upgrade), or show its schema revision (current)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="db_action", required=True, metavar="ACTION")
    for action, help_text in (
        ("upgrade", "Apply every migration in db/ that the database lacks (creates the tables on a new database)."),
        ("current", "Print the migration the database is at."),
    ):
        p = actions.add_parser(action, help=help_text, description=help_text)
        p.add_argument(
            "--db",
            metavar="URL",
            default=None,
            help="Database URL (default: DATABASE_URL, else db/arena.sqlite3), "
            "e.g. sqlite:///db/arena.sqlite3 or postgresql+psycopg://user@host/db.",
        )
        if action == "upgrade":
            p.add_argument("--revision", default="head", help="Migrate up to this revision (default: head).")


def run(args: argparse.Namespace) -> int:
    url = Settings.load(os.environ, db=args.db).db or default_url()
    with Store(url) as store:
        if args.db_action == "upgrade":
            before = store.current_revision()
            store.upgrade(args.revision)
            after = store.current_revision()
            change = "already at" if before == after else f"upgraded from {before or 'an empty database'} to"
            print(f"{store.url}: {change} revision {after}")
        else:
            revision = store.current_revision()
            print(f"{store.url}: {revision or 'no schema yet (run: python -m arena db upgrade)'}")
    return 0
