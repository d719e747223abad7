"""`orket-pipeline run`: run a suite through a provider, show progress, write the report.

`orket-pipeline run --demo` runs the bundled demo suite on its replay cassette, offline.
Progress goes to stderr (a rich bar on a terminal, a line per tenth of the suite otherwise,
nothing with --quiet); the summary table and the report path go to stdout.
Exit codes: 0 every run passed, 1 some run failed or errored, 2 bad input, 130 interrupted
(the runs that finished are in the report).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Any

import anyio
import psutil
from rich.console import Console

from .._exceptions import InputError
from ..engine import load_suite
from ..engine._runner import execute
from ..providers import load_provider
from ..report._model import Report
from ._progress import ProgressReporter
from ._render import render_table

__all__ = ["demo_paths", "register"]

_TABLE_ROWS = 50


def demo_paths() -> tuple[Path, Path]:
    """The bundled demo suite and its replay cassette. Never blocks or raises."""
    demo = files("orket_pipeline").joinpath("demo")
    return Path(str(demo.joinpath("suite.json"))), Path(str(demo.joinpath("cassette.jsonl")))


def register(sub: Any) -> None:
    """Add `run` to the parser `sub` (an argparse subparsers action)."""
    parser = sub.add_parser(
        "run",
        help="run a suite through a provider and write orket_report.json",
        description="Run every task of SUITE through the provider; each gate decides pass/fail, "
        "telemetry is recorded beside it. `run --demo` runs the bundled demo offline.",
    )
    parser.add_argument("suite", nargs="?", metavar="SUITE", help="suite file (JSON or TOML)")
    parser.add_argument("--provider", metavar="SPEC", help="e.g. ollama:MODEL, replay:FILE")
    parser.add_argument(
        "--demo", action="store_true", help="default SUITE and --provider to the bundled demo"
    )
    parser.add_argument("--out", default="orket_report.json", metavar="PATH", help="report file")
    parser.add_argument("--concurrency", type=_positive_int, default=4, metavar="N")
    parser.add_argument(
        "--timeout", type=_positive_float, default=120.0, metavar="S", help="per generation"
    )
    parser.add_argument("--journal", metavar="PATH", help="keep the run journal at PATH")
    parser.add_argument(
        "--memory-pid",
        type=_existing_pid,
        metavar="PID",
        help="measure this process's peak memory (a local model server) instead of our own",
    )
    parser.add_argument(
        "--no-telemetry", action="store_true", help="same engine loop, outcomes only"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Handle `orket-pipeline run`; returns the exit code.

    Blocks until the suite has run. Raises `InputError` (exit 2) for bad input or when the
    journal or the report cannot be written (disk full, say), and `KeyboardInterrupt`
    (exit 130) on Ctrl-C, after writing the finished runs.
    """
    suite_path, spec = _suite_and_spec(args)
    out = _writable(args.out, "--out")
    journal = None if args.journal is None else _writable(args.journal, "--journal")
    if journal is not None and args.no_telemetry:
        raise InputError("run: --journal needs telemetry; drop --no-telemetry")
    if journal is None and not args.no_telemetry:
        _refuse_to_overwrite_a_crashed_runs_journal(out)
    suite = load_suite(suite_path)
    provider = load_provider(spec)
    reporter = ProgressReporter(len(suite.tasks), quiet=args.quiet)
    try:
        with reporter:
            report = anyio.run(
                _until_interrupted,
                partial(
                    execute,
                    suite,
                    provider,
                    report_path=out,
                    journal_path=journal,
                    telemetry=not args.no_telemetry,
                    provider_name=spec,
                    memory_pid=args.memory_pid,
                    concurrency=args.concurrency,
                    timeout_s=args.timeout,
                    on_result=reporter.advance,
                ),
            )
    except Terminated:
        print("orket-pipeline: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except OSError as exc:
        if args.no_telemetry:
            raise _cannot_write("report", out, exc, None) from None
        kept = journal or out.with_name(out.name + ".journal.jsonl")
        if reporter.finished == 0:  # the journal is opened before the first run starts
            raise _cannot_write("journal", kept, exc, None) from None
        raise _cannot_write("report", out, exc, kept) from None
    # A suite of hundreds of tasks: show what needs a look, not every run (the report has all).
    render_table(report, Console(highlight=False), max_rows=_TABLE_ROWS)
    print(f"report written to {out}")
    failed = sum(run.outcome != "pass" for run in report.test_runs)
    return 1 if failed or len(report.test_runs) < len(suite.tasks) else 0


class Terminated(Exception):
    """SIGTERM arrived; the finished runs were written. Exit code 128 + 15."""


async def _until_interrupted(run: Callable[[], Awaitable[Report]]) -> Report:
    # Ctrl-C (and SIGTERM, from a CI runner or a process manager) becomes an anyio
    # cancellation, which the pipeline's shielded close honours, so the finished runs are
    # written; asyncio's own handling would cancel the task natively.
    received: int | None = None
    report: Report | None = None
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            nonlocal received
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    received = signum
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch)
        try:
            report = await run()
        except Exception as exc:
            failure = exc  # raised below as itself, not wrapped in the task group's group
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if received == signal.SIGTERM:
        raise Terminated
    if received is not None or report is None:
        raise KeyboardInterrupt
    return report


def _refuse_to_overwrite_a_crashed_runs_journal(out: Path) -> None:
    # The default journal is removed once the report is written, so one that exists belongs to
    # a run that did not finish: starting over would truncate the only record of its runs.
    left = out.with_name(out.name + ".journal.jsonl")
    if left.exists():
        raise InputError(
            f"run: {left} is left from a run that did not finish; recover its runs with "
            f"`orket-pipeline rebuild {left} -o REPORT`, then delete it (or pass --journal PATH)"
        )


def _cannot_write(what: str, path: Path, exc: OSError, journal: Path | None) -> InputError:
    message = f"run: cannot write the {what} {path}: {exc.strerror or exc}"
    if journal is not None and journal.is_file():
        message += (
            f"; the finished runs are in {journal} (orket-pipeline rebuild {journal} -o {path})"
        )
    return InputError(message)


def _suite_and_spec(args: argparse.Namespace) -> tuple[str, str]:
    demo_suite, demo_cassette = demo_paths()
    suite = args.suite or (str(demo_suite) if args.demo else None)
    spec = args.provider or (f"replay:{demo_cassette}" if args.demo else None)
    if suite is None:
        raise InputError("run: SUITE is required (or `--demo` for the bundled demo)")
    if spec is None:
        raise InputError("run: --provider is required (e.g. ollama:MODEL, replay:FILE.jsonl)")
    return suite, spec


def _writable(name: str, option: str) -> Path:
    path = Path(name)
    if path.is_dir():
        raise InputError(f"run: {option} {name}: is a directory")
    if not path.parent.is_dir():
        raise InputError(f"run: {option} {name}: directory {path.parent} does not exist")
    return path


def _existing_pid(text: str) -> int:
    pid = _positive_int(text)
    if not psutil.pid_exists(pid):
        raise argparse.ArgumentTypeError(f"no process with id {text}")
    return pid


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value
