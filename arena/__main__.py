"""The command line: ``python -m arena COMMAND ...`` (see ``python -m arena --help``)."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Sequence

from arena.commands import COMMANDS
from arena.errors import ArenaError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m arena", description="LLM arena tools for operators and researchers."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"arena.commands.{name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


# What to do about a file the command could not open, by errno (the rest: the system's own words).
_FILE_ADVICE = {
    errno.ENOENT: "no such file or folder; check the path (a file is written only into a folder that exists)",
    errno.EACCES: "permission denied; choose a path you may read or write",
    errno.EPERM: "permission denied; choose a path you may read or write",
    errno.EISDIR: "is a folder; give a file name",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
}


def file_error(error: OSError) -> str:
    """One line saying which file failed and what to do (``error.filename`` is set by ``open`` and friends)."""
    what = _FILE_ADVICE.get(error.errno or 0) or error.strerror or str(error)
    return f"{error.filename}: {what}." if error.filename else f"{what}."


def _one_line(text: str) -> str:
    # A database driver's message may span lines ("connection refused\n\tIs the server running ...").
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a user error is one line on stderr and exit status 2, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except ArenaError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output went away (``... | head``): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        print(f"error: {file_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
