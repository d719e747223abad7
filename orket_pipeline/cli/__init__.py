"""The `orket-pipeline` command line: one module per group of subcommands.

Exit codes: 0 every run passed, 1 some run failed or errored, 2 usage or input error (one line
on stderr naming the file, task or field; never a traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._exceptions import InputError
from .._version import __version__
from . import _report_cmds, _run, _validate

__all__ = ["main"]

PROG = "orket-pipeline"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2, like every other input error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand registered."""
    parser = _Parser(prog=PROG, description="Telemetry beside every LLM test run.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _run.register(sub)
    _report_cmds.register(sub)
    _validate.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code. Never lets a traceback reach the user
    for bad input: `InputError` becomes one line on stderr and exit code 2."""
    try:
        args = build_parser().parse_args(argv)
        code: int = args.handler(args)
    except InputError as exc:
        print(f"{PROG}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error worth a traceback.
        return 1
    return code


def _one_line(message: str) -> str:
    return " ".join(message.split())
