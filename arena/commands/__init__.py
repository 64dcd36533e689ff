"""Subcommands of ``python -m arena``.

Each module here defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
(the exit status). ``COMMANDS`` lists them in the order ``--help`` shows them.
"""

from __future__ import annotations

COMMANDS: tuple[str, ...] = ("prompt", "db", "ratings", "audit", "export", "import_", "simulate", "campaign")


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun`` in English number agreement: "1 vote", "2 votes", "0 votes"."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
