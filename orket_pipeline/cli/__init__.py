"""The `orket-pipeline` command line: one module per group of subcommands.

Exit codes: 0 every run passed, 1 some run failed or errored, 2 usage or input error (one line
on stderr naming the file, task or field; never a traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from .._exceptions import InputError
from .._text import printable
from .._version import __version__
from . import _compare_cmd, _report_cmds, _run, _validate

__all__ = ["main"]

PROG = "orket-pipeline"
_THREAD_EXIT_S = 2.0  # how long threads this command started get to end by themselves


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2, like every other input error, and
    `--help` shows every option's default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        # `main` names the program once; the subcommand ("run: ...") is enough here.
        command = self.prog.removeprefix(PROG).strip()
        raise InputError(f"{command}: {message}" if command else message)


class _DefaultsFormatter(argparse.HelpFormatter):
    """Appends `(default: X)` to every option that takes a value and has a default; options
    whose default is computed say so in their own help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        takes_value = action.nargs != 0 and action.option_strings
        if takes_value and action.default not in (None, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand registered."""
    parser = _Parser(prog=PROG, description="Telemetry beside every LLM test run.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _run.register(sub)
    _report_cmds.register(sub)
    _validate.register(sub)
    _compare_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code. Never lets a traceback reach the user
    for bad input: `InputError` becomes one line on stderr and exit code 2."""
    _escape_unencodable_output()
    before = set(threading.enumerate())
    code = _handle(argv)
    _exit_now_if_threads_were_abandoned(before, code)
    return code


def _handle(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code: int = args.handler(args)
    except InputError as exc:
        print(f"{PROG}: error: {printable(_one_line(str(exc)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error worth a traceback.
        return 1
    return code


def _exit_now_if_threads_were_abandoned(before: set[threading.Thread], code: int) -> None:
    """End the process with `code` once everything is written, if this command left threads
    running: a plain-`def` provider stuck in its worker thread (abandoned at its timeout) would
    otherwise keep the interpreter from exiting for as long as it runs, forever if it never
    returns. Only threads started by this command count, so an embedding program's own threads
    never trigger it."""
    started = [t for t in threading.enumerate() if t not in before and not t.daemon]
    deadline = time.monotonic() + _THREAD_EXIT_S
    for thread in started:  # idle pool workers are still on their way out
        thread.join(max(0.0, deadline - time.monotonic()))
    if not any(thread.is_alive() for thread in started):
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _escape_unencodable_output() -> None:
    # A path given as bytes that are not UTF-8 arrives as lone surrogates; printing it back
    # ("report written to ...") must not end the run with a UnicodeEncodeError.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            with contextlib.suppress(ValueError, OSError):
                stream.reconfigure(errors="backslashreplace")
