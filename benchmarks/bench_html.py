"""`report --format html` on a large report: wall time, peak memory, page size, where time goes.

Run: python -m benchmarks.bench_html [--quick | --smoke]

A report of N runs (100,000 in full mode) is written with `bench_compare`'s log-normal
latencies, errored runs and random outcomes, plus a reason for every failed run and, where the
report model has them, each run's output (a ~900-character answer) and its constraint checks.
The page is then made as a user makes it, `orket-pipeline report REPORT --format html -o OUT`,
in a fresh child process (interpreter start-up included) whose peak RSS is its own
`getrusage(RUSAGE_SELF).ru_maxrss` read as the command ends. Then, in this process, the phases:
reading the report, the columns, the charts, the whole page.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from time import perf_counter

import msgspec

from benchmarks._common import cli_in_child, header
from benchmarks._fixtures import CODE_OUTPUT
from benchmarks._results import parse_mode, pick, verdict
from benchmarks.bench_compare import synthetic
from orket_pipeline.cli._html import render_report_html
from orket_pipeline.cli._html._charts import charts
from orket_pipeline.cli._html._columns import columns
from orket_pipeline.report import Report, TestRun, write_report
from orket_pipeline.report._io import read_report

BENCH = "html"
TARGET_S = 10.0
TARGET_MIB = 1024.0


def with_texts(report: Report) -> Report:
    """`report` with a reason on each failed run and, where the model has the fields, an
    output on every run and checks on every scored run."""
    fields = set(TestRun.__struct_fields__)
    runs = []
    for i, run in enumerate(report.test_runs):
        extra: dict[str, object] = {}
        if run.outcome == "fail":
            extra["reason"] = f"example {i % 7}: expected {i % 11}, got {i % 13}"
        if "output" in fields and run.outcome != "error":
            extra["output"] = CODE_OUTPUT
        if "checks" in fields and run.outcome != "error":
            extra["checks"] = [
                {"check": "regex_required 'def\\s+moving_average'", "passed": True, "detail": ""},
                {"check": "ast required_function_name", "passed": i % 3 != 0, "detail": "absent"},
            ]
        runs.append(
            msgspec.convert({**msgspec.to_builtins(run), **extra}, TestRun) if extra else run
        )
    return Report(test_runs=runs)


def _command(report: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of `report --format html` in a fresh child."""
    elapsed, peak, _ = cli_in_child(["report", str(report), "--format", "html", "-o", str(out)])
    return elapsed, peak


def main(argv: list[str] | None = None) -> None:
    args = parse_mode(argv, __doc__.splitlines()[0])
    runs = pick(args.mode, 100_000, 20_000, 2_000)
    print(header(f"report --format html on a {runs:,}-run report"))
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp, "report.json"), Path(tmp, "report.html")
        write_report(path, with_texts(synthetic(1, runs, 1.0)))
        elapsed, peak = _command(path, out)
        report_mib, page_mib = path.stat().st_size / 2**20, out.stat().st_size / 2**20
        print(f"report {report_mib:.1f} MiB -> page {page_mib:.1f} MiB")
        print(f"report --format html  {elapsed:6.2f} s  peak RSS {peak:7.1f} MiB")
        verdict(BENCH, f"report --format html, {runs:,} runs: wall", elapsed, TARGET_S, "s")
        verdict(
            BENCH,
            f"report --format html, {runs:,} runs: peak RSS",
            peak,
            TARGET_MIB,
            "MiB",
            digits=1,
        )
        _phases(path)


def _phases(path: Path) -> None:
    t0 = perf_counter()
    report = read_report(path)
    t1 = perf_counter()
    cols = columns(report)
    t2 = perf_counter()
    charts(cols)
    t3 = perf_counter()
    render_report_html(report)
    t4 = perf_counter()
    print(
        f"phases: read {t1 - t0:.2f} s, columns {t2 - t1:.2f} s, charts {t3 - t2:.2f} s; "
        f"the whole page (columns, charts, summary, JSON) {t4 - t3:.2f} s"
    )


if __name__ == "__main__":
    main()
