"""Subcommands of ``python -m arena``.

Each module here defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
(the exit status). ``COMMANDS`` lists them in the order ``--help`` shows them.
"""

from __future__ import annotations

COMMANDS: tuple[str, ...] = ("prompt", "db", "ratings", "audit", "export", "import_", "simulate", "campaign")
