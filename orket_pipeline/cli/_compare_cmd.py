"""`compare BASELINE CANDIDATE`: did the candidate regress? Exit 0 no, 1 yes, 2 bad input.

The statistics are `report._compare`'s; this module parses the options and renders the
comparison as a terminal table, JSON (for CI) or a self-contained HTML page. Every string taken
from a report (test ids, outcomes, providers) is shown as plain text with control characters
escaped, as `report` does.
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import Any, Final

from rich.console import Console

from .._exceptions import InputError
from ..report._compare import Comparison, compare_reports
from ..report._io import read_report, write_bytes_atomic
from ..report._model import encode_json
from ._args import non_negative_int
from ._compare_render import render_compare_html, render_compare_table

__all__ = ["register"]

_FILE_WIDTH = 120  # table width when writing to a file, where there is no terminal to measure
_TABLE_ROWS = 50  # as `run`: a table of thousands of rows is read by nobody
_TIME_METRICS: Final = ("init_latency", "total_latency", "time_per_output_token")


def register(sub: Any) -> None:
    """Add `compare` to the parser `sub` (an argparse subparsers action)."""
    cmd = sub.add_parser(
        "compare",
        help="compare two reports; exit 1 when the candidate regressed",
        description="Compare CANDIDATE with BASELINE: per metric the change of the median and "
        "the worse tail with a bootstrap confidence interval, per task the outcome flips with "
        "an exact McNemar test. Exit 0 when nothing regressed significantly, 1 when something "
        "did, 2 on bad input.",
    )
    cmd.add_argument("baseline", metavar="BASELINE", help="the reference orket_report.json")
    cmd.add_argument("candidate", metavar="CANDIDATE", help="the orket_report.json under test")
    cmd.add_argument(
        "--format", choices=("table", "json", "html"), default="table", help="output format"
    )
    cmd.add_argument(
        "-o", "--output", metavar="OUT", help="write here instead of stdout (default: stdout)"
    )
    cmd.add_argument(
        "--alpha",
        type=_alpha,
        default=0.01,
        help="chance, at most, of a false alarm over all tests together (Holm)",
    )
    cmd.add_argument(
        "--max-slowdown",
        type=_percent,
        metavar="PCT",
        help="a latency regression must also be slower than this, e.g. 10%% (default: any)",
    )
    cmd.add_argument(
        "--max-memory-growth",
        type=_percent,
        metavar="PCT",
        help="a peak memory regression must also grow more than this (default: any)",
    )
    cmd.add_argument(
        "--resamples",
        type=non_negative_int,
        default=10_000,
        metavar="N",
        help="bootstrap replicates per percentile; at least 2 x tests / alpha",
    )
    cmd.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    cmd.add_argument(
        "--max-rows",
        type=non_negative_int,
        default=_TABLE_ROWS,
        metavar="N",
        help="flips shown in a table",
    )
    cmd.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    baseline, candidate = read_report(args.baseline), read_report(args.candidate)
    limits = dict.fromkeys(_TIME_METRICS, args.max_slowdown) if args.max_slowdown else {}
    if args.max_memory_growth is not None:
        limits["peak_memory_rss"] = args.max_memory_growth
    if args.resamples < 100:
        raise InputError(f"compare: --resamples must be at least 100, not {args.resamples}")
    comparison = compare_reports(
        baseline,
        candidate,
        alpha=args.alpha,
        limits=limits,
        resamples=args.resamples,
        seed=args.seed,
        sources=(args.baseline, args.candidate),
    )
    names = (args.baseline, args.candidate)
    if args.format == "table" and args.output is None:
        render_compare_table(comparison, names, Console(), max_rows=args.max_rows)
    else:
        _emit(args, _document(args, comparison, names, baseline, candidate))
    return 1 if comparison.regressed else 0


def _document(
    args: argparse.Namespace, comparison: Comparison, names: tuple[str, str], *reports: Any
) -> bytes:
    if args.format == "json":
        return encode_json(comparison) + b"\n"
    if args.format == "html":
        return render_compare_html(comparison, names, reports[0], reports[1]).encode()
    buffer = io.StringIO()
    console = Console(file=buffer, width=_FILE_WIDTH, color_system=None)
    render_compare_table(comparison, names, console, max_rows=args.max_rows)
    return buffer.getvalue().encode()


def _emit(args: argparse.Namespace, data: bytes) -> None:
    if args.output is None:
        sys.stdout.write(data.decode())
        sys.stdout.flush()
        return
    try:
        write_bytes_atomic(args.output, data)
    except OSError as exc:
        raise InputError(f"{args.output}: cannot write ({exc.strerror or exc})") from None


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, not {text!r}")
    return value


def _percent(text: str) -> float:
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1e9:
        raise argparse.ArgumentTypeError(f"expected a percentage such as 10%, not {text!r}")
    return value / 100
