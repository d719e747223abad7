"""`report`, `merge` and `rebuild`: commands that read reports and journals, never run a model."""

from __future__ import annotations

import argparse
import io
import sys
from typing import Any

from rich.console import Console

from .._exceptions import InputError
from .._text import printable
from ..report._io import read_report, write_bytes_atomic, write_report
from ..report._journal import rebuild_report
from ..report._merge import merge_reports
from ..report._model import Report
from ._args import non_negative_int
from ._render import render_html, render_json, render_table

__all__ = ["register"]

_FILE_WIDTH = 120  # table width when writing to a file, where there is no terminal to measure
_TABLE_ROWS = 50  # as `run`: a table of thousands of rows is read by nobody


def register(sub: Any) -> None:
    """Add `report`, `merge` and `rebuild` to the parser `sub` (an argparse subparsers action)."""
    report = sub.add_parser("report", help="show a report's runs and summary")
    report.add_argument("report", metavar="REPORT", help="an orket_report.json")
    report.add_argument(
        "--format", choices=("table", "json", "html"), default="table", help="output format"
    )
    report.add_argument(
        "--max-rows",
        type=non_negative_int,
        default=_TABLE_ROWS,
        metavar="N",
        help="a table of more runs shows only those that did not pass, at most N (0: every run)",
    )
    report.add_argument(
        "-o", "--output", metavar="OUT", help="write here instead of stdout (default: stdout)"
    )
    report.set_defaults(handler=_report)

    merge = sub.add_parser("merge", help="join shard reports into one")
    merge.add_argument("reports", metavar="REPORT", nargs="+", help="shard reports, in order")
    merge.add_argument("-o", "--output", metavar="OUT", required=True, help="merged report")
    merge.add_argument(
        "--on-duplicate",
        choices=("error", "first", "last"),
        default="error",
        help="a test id in several reports: refuse, or keep the first or last run",
    )
    merge.set_defaults(handler=_merge)

    rebuild = sub.add_parser("rebuild", help="rebuild a report from a run's journal")
    rebuild.add_argument("journal", metavar="JOURNAL", help="the JSONL journal")
    rebuild.add_argument("-o", "--output", metavar="REPORT", required=True, help="report to write")
    rebuild.set_defaults(handler=_rebuild)


def _report(args: argparse.Namespace) -> int:
    report = read_report(args.report)
    max_rows = args.max_rows or None
    if args.format == "table" and args.output is None:
        render_table(report, Console(), max_rows=max_rows)  # the terminal's width and colours
        return 0
    if args.format == "json":
        data = render_json(report)
    elif args.format == "html":
        data = render_html(report).encode()
    else:
        data = _table_text(report, max_rows).encode()
    if args.output is None:
        sys.stdout.write(data.decode())
        sys.stdout.flush()
    else:
        _write_bytes(args.output, data)
    return 0


def _merge(args: argparse.Namespace) -> int:
    shards = [read_report(path) for path in args.reports]
    merged = merge_reports(shards, sources=args.reports, on_duplicate=args.on_duplicate)
    written = _write_report(args.output, merged)
    print(printable(f"{args.output}: {len(written.test_runs)} runs from {len(shards)} reports"))
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    report, warnings = rebuild_report(args.journal)
    for warning in warnings:
        print(f"orket-pipeline: warning: {printable(warning)}", file=sys.stderr)
    written = _write_report(args.output, report)
    shown = printable(f"{args.output}: {len(written.test_runs)} runs rebuilt from {args.journal}")
    print(shown)
    return 0


def _table_text(report: Report, max_rows: int | None) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=_FILE_WIDTH, color_system=None)
    render_table(report, console, max_rows=max_rows)
    return buffer.getvalue()


def _write_bytes(path: str, data: bytes) -> None:
    try:
        write_bytes_atomic(path, data)
    except OSError as exc:
        raise _cannot_write(path, exc) from None


def _write_report(path: str, report: Report) -> Report:
    try:
        return write_report(path, report)
    except OSError as exc:
        raise _cannot_write(path, exc) from None


def _cannot_write(path: str, exc: OSError) -> InputError:
    return InputError(f"{path}: cannot write ({exc.strerror or exc})")
