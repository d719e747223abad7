"""`orket-pipeline run`: run a suite through a provider, show progress, write the report.

`orket-pipeline run --demo` runs the bundled demo suite on its replay cassette, offline.
Progress goes to stderr (a rich bar on a terminal, a line per tenth of the suite otherwise,
nothing with --quiet); the summary table and the report path go to stdout.
Exit codes: 0 every run passed, 1 some run failed or errored, 2 bad input, 130 interrupted
(the runs that finished are in the report).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus
from rich.console import Console

from .._exceptions import InputError, ProviderConnectionError
from .._text import printable
from ..engine import load_suite
from ..engine._guard import SuiteStopped
from ..engine._resume import kept_runs
from ..engine._runner import RunResult, execute
from ..engine._suite import Suite
from ..providers import Provider, load_provider
from ..report._journal import read_journal
from ..report._model import Metadata, Report
from ._args import positive_int
from ._executor import (
    add_executor_options,
    check_executor,
    executor,
    executor_session,
    label,
    memory_line,
)
from ._gate_options import add_gate_options, gate_options
from ._gen_options import (
    add_generation_options,
    generation_options,
    output_cap,
    provider_options,
    run_metadata,
    say_if_not_sent,
)
from ._heap import FrozenHeap
from ._memory import memory_pid_arg, memory_target
from ._output import OutputLock, check_outputs, default_journal, same_file
from ._progress import ProgressReporter
from ._render import render_table
from ._watchdog import LoopWatchdog

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
    parser.add_argument(
        "--provider",
        metavar="SPEC",
        action="append",  # several: replicas, with --executor ray
        help="e.g. ollama:MODEL, replay:FILE (default: none; required unless --demo); "
        "with --executor ray, once per replica",
    )
    parser.add_argument(
        "--demo", action="store_true", help="default SUITE and --provider to the bundled demo"
    )
    parser.add_argument("--out", default="orket_report.json", metavar="PATH", help="report file")
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        metavar="N",
        help="runs in flight at once",
    )
    parser.add_argument(
        "--timeout", type=_positive_float, default=120.0, metavar="S", help="per generation"
    )
    parser.add_argument(
        "--journal",
        metavar="PATH",
        help="keep the run journal at PATH (default: OUT.journal.jsonl, removed once the "
        "report is written)",
    )
    parser.add_argument(
        "--memory-pid",
        type=memory_pid_arg,
        metavar="PID|auto",
        help="measure this process's peak memory (a local model server) instead of our own; "
        "auto: the process listening on the provider's loopback host:port "
        "(default: this process)",
    )
    parser.add_argument(
        "--no-telemetry", action="store_true", help="same engine loop, outcomes only"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a run that did not finish from its journal (--journal, or the one "
        "beside OUT): its finished runs are kept, not run again; the rest run",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --resume: continue even when the journal names another provider",
    )
    parser.add_argument(
        "--otel",
        action="store_true",
        help="export a GenAI span per generation and the client metrics over OTLP/HTTP to "
        "OTEL_EXPORTER_OTLP_ENDPOINT (needs orket-pipeline[otel])",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    add_gate_options(parser)
    add_generation_options(parser)
    add_executor_options(parser)
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Handle `orket-pipeline run`; returns the exit code.

    Blocks until the suite has run. Raises `InputError` (exit 2) for bad input, for outputs
    that cannot or must not be written (checked before the first run: see `_output`), for a
    report or journal another run is writing, and when the report cannot be written at the
    end; `KeyboardInterrupt` (exit 130) on Ctrl-C, after writing the finished runs (SIGTERM:
    exit 143 likewise). The heap is frozen while it runs (`_heap.FrozenHeap`).
    """
    with FrozenHeap() as heap:
        return _command(args, heap)


def _command(args: argparse.Namespace, heap: FrozenHeap) -> int:
    suite_path, spec = _suite_and_spec(args)
    check_executor(args)
    spec_label = label(args, spec)  # the provider the report names (replicas: all of them)
    out = _writable(args.out, "--out")
    explicit = None if args.journal is None else _writable(args.journal, "--journal")
    if explicit is not None and args.no_telemetry and not args.resume:
        raise InputError("run: --journal needs telemetry; drop --no-telemetry")
    if args.memory_pid is not None and args.no_telemetry:
        raise InputError("run: --memory-pid needs telemetry; drop --no-telemetry")
    if args.force and not args.resume:
        raise InputError("run: --force goes with --resume")
    journal = None if args.no_telemetry else (explicit or default_journal(out))
    resume_from = (explicit or default_journal(out)) if args.resume else None
    if args.otel:
        if args.no_telemetry:
            raise InputError("run: --otel needs telemetry; drop --no-telemetry")
        from ..telemetry.stages.otel import require_otel

        require_otel()  # exit 2 with the extra to install, before anything starts
    with contextlib.ExitStack() as held:
        held.enter_context(OutputLock(out, "--out"))
        if explicit is not None and _lockable(explicit, out):
            held.enter_context(OutputLock(explicit, "--journal"))
        check_outputs(out, journal, _inputs(suite_path, spec), resume=args.resume)
        suite = load_suite(suite_path)
        checked = None if args.force else spec_label
        kept = 0 if resume_from is None else _kept(suite, resume_from, checked)
        options = generation_options(args, suite)
        provider = load_provider(spec, provider_options(args, options))
        metadata, measured = _metadata(args, provider, spec, options)
        measured = memory_line(args, measured)  # with Ray: each worker's own
        say_if_not_sent(spec, options)  # after the last refusal: a note, then an error, reads ill
        heap.freeze()  # the suite and the provider, loaded since the command started
        try:
            report = _run(
                args, suite, provider, spec_label, out, journal, resume_from, kept, metadata
            )
        except Terminated:
            print("orket-pipeline: terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
        except SuiteStopped as exc:
            where = f"{exc.finished} finished runs are in {printable(str(out))}"
            raise InputError(f"run: {exc}; the {where}") from None
        except ProviderConnectionError as exc:
            raise InputError(f"run: cannot reach the provider: {exc}") from None
    # A suite of hundreds of tasks: show what needs a look, not every run (the report has all).
    # Printed with the results, not at the start: a run refused later (a journal that cannot
    # be opened) must leave stdout empty, its one line on stderr being all it says.
    print(measured)
    render_table(report, Console(highlight=False), max_rows=_TABLE_ROWS)
    print(f"report written to {printable(str(out))}")
    failed = sum(run.outcome != "pass" for run in report.test_runs)
    return 1 if failed or len(report.test_runs) < len(suite.tasks) else 0


def _metadata(
    args: argparse.Namespace, provider: Provider, spec: str, options: Any
) -> tuple[Metadata, str]:
    """The run's own metadata, and the line saying whose memory is measured (the first line
    of the run's output). Raises `InputError` for a `--memory-pid auto` it cannot honour."""
    if args.no_telemetry:
        none = run_metadata(provider, options, args.concurrency, None, "none")
        return none, "memory: not measured (--no-telemetry)"
    target = memory_target(args.memory_pid, provider, spec)
    pid = os.getpid() if target.pid is None else target.pid
    return run_metadata(provider, options, args.concurrency, pid, target.source), target.line


def _run(
    args: argparse.Namespace,
    suite: Suite,
    provider: Provider,
    spec: str,
    out: Path,
    journal: Path | None,
    resume_from: Path | None,
    kept: int,
    metadata: Metadata,
) -> Report:
    gates = gate_options(args, suite)  # may refuse (exit 2) before anything starts
    reporter = ProgressReporter(len(suite.tasks) - kept, quiet=args.quiet)
    watchdog = LoopWatchdog(suite, out, journal, spec)

    def on_result(result: RunResult) -> None:
        watchdog.record(result)
        reporter.advance(result)

    try:
        with reporter, executor_session(args):
            watchdog.start()
            return anyio.run(
                _until_interrupted,
                partial(
                    executor(args, execute),
                    suite,
                    provider,
                    report_path=out,
                    journal_path=journal if args.journal is not None else None,
                    telemetry=not args.no_telemetry,
                    provider_name=spec,
                    memory_pid=metadata.memory_pid if args.memory_pid is not None else None,
                    metadata=metadata,
                    output_cap=output_cap(args),
                    otel=args.otel,
                    concurrency=args.concurrency,
                    timeout_s=args.timeout,
                    on_result=on_result,
                    resume_from=resume_from,
                    **gates,
                ),
                watchdog,
            )
    except OSError as exc:
        if journal is None:
            raise _cannot_write("report", out, exc, None, kept + reporter.finished) from None
        if reporter.finished == 0:  # the journal is opened before the first run starts
            raise _cannot_write("journal", journal, exc, None, 0) from None
        raise _cannot_write("report", out, exc, journal, kept + reporter.finished) from None
    finally:
        watchdog.stop()


class Terminated(Exception):
    """SIGTERM arrived; the finished runs were written. Exit code 128 + 15."""


async def _until_interrupted(
    run: Callable[[], Awaitable[Report]], watchdog: LoopWatchdog | None = None
) -> Report:
    # Ctrl-C (and SIGTERM, from a CI runner or a process manager) becomes an anyio
    # cancellation, which the pipeline's shielded close honours, so the finished runs are
    # written; asyncio's own handling would cancel the task natively. The watchdog ends the
    # process if the loop cannot honour it (a provider blocking the loop or ignoring it).
    received: int | None = None
    report: Report | None = None
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:

        async def watch(*, task_status: TaskStatus[None]) -> None:
            nonlocal received
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                if watchdog is not None:
                    watchdog.install()
                task_status.started()
                async for signum in signals:
                    received = signum
                    tg.cancel_scope.cancel()
                    return

        await tg.start(watch)
        if watchdog is not None:
            tg.start_soon(watchdog.beat)
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


def _kept(suite: Suite, journal: Path, provider: str | None) -> int:
    """How many runs `--resume` keeps; refuses (exit 2, one line) a missing journal or one
    that belongs to another suite (or to another provider, unless `--force`), before anything
    starts."""
    try:
        return len(kept_runs(suite, journal, provider=provider))
    except InputError as exc:
        raise InputError(f"run: {exc}") from None


def _lockable(journal: Path, out: Path) -> bool:
    # The same file as --out is refused just below; a device (`/dev/full`) is opened, never
    # replaced, and has no directory to put a lock file in.
    return not same_file(journal, out) and (journal.is_file() or not journal.exists())


def _inputs(suite_path: str, spec: str) -> dict[str, Path]:
    inputs = {"the suite": Path(suite_path)}
    scheme, _, rest = spec.partition(":")
    if scheme == "replay" and rest:
        inputs["the replay cassette"] = Path(rest)
    return inputs


def _cannot_write(
    what: str, path: Path, exc: OSError, journal: Path | None, finished: int
) -> InputError:
    message = f"run: cannot write the {what} {path}: {exc.strerror or exc}"
    if journal is not None:
        kept = _runs_in(journal)
        if kept:
            message += (
                f"; the journal {journal} holds {kept} of the {finished} finished runs "
                f"(orket-pipeline rebuild {journal} -o {path})"
            )
        else:
            message += f"; none of the {finished} finished runs reached the journal {journal}"
    return InputError(message)


def _runs_in(journal: Path) -> int:
    """How many runs the journal really holds (never claim more than is on disk)."""
    try:
        return len(read_journal(journal).runs)
    except (OSError, InputError):
        return 0


def _suite_and_spec(args: argparse.Namespace) -> tuple[str, str]:
    demo_suite, demo_cassette = demo_paths()
    suite = args.suite or (str(demo_suite) if args.demo else None)
    spec = args.provider[0] if args.provider else None
    spec = spec or (f"replay:{demo_cassette}" if args.demo else None)
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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value
