"""`compare` on two large reports: wall time and peak memory of the command, and where time goes.

Run: python -m benchmarks.bench_compare [--quick | --smoke]

Two reports of N runs each (100,000 in full mode) are written with log-normal latencies, some
errored runs and random outcomes; the candidate is 5 % slower. Each output format is then timed
as a user runs it, `orket-pipeline compare BASE CAND --format F -o OUT`, in a fresh child
process each (interpreter start-up included), whose peak RSS is its own
`getrusage(RUSAGE_SELF).ru_maxrss` read as the command ends. Then, in this process, the phases: reading
both reports, `compare_reports` (10,000 bootstrap replicates per statistic), rendering.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from time import perf_counter

from benchmarks._common import cli_in_child, header
from benchmarks._results import parse_mode, pick, verdict
from orket_pipeline.cli._compare_render import render_compare_html
from orket_pipeline.report import Report, RunError, Telemetry, TestRun, write_report
from orket_pipeline.report._compare import compare_reports
from orket_pipeline.report._io import read_report
from orket_pipeline.report._model import encode_json

BENCH = "compare"
TARGET_S = 10.0
TARGET_MIB = 1024.0


def synthetic(seed: int, runs: int, slowdown: float) -> Report:
    """`runs` runs of one noisy model: log-normal latencies, 5 % errored, 80 % of the rest pass."""
    rng = random.Random(seed)
    test_runs = []
    for i in range(runs):
        init = rng.lognormvariate(-2.5, 0.5) * slowdown
        total = init + rng.lognormvariate(-1.0, 0.5) * slowdown
        errored = rng.random() < 0.05
        telemetry = Telemetry(
            init_latency=round(init, 3),
            total_latency=round(total, 3),
            peak_memory_rss=round(50 + rng.lognormvariate(1.0, 1.0), 3),
            adherence_score=None if errored else rng.choice((1.0, 1.0, 0.667)),
        )
        outcome = "error" if errored else ("pass" if rng.random() < 0.8 else "fail")
        test_runs.append(
            TestRun(
                test_id=f"task-{i:06d}",
                outcome=outcome,
                telemetry=telemetry,
                error=RunError(type="ProviderTimeoutError") if errored else None,
            )
        )
    return Report(test_runs=test_runs)


def _command(base: Path, cand: Path, fmt: str, out: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit code of one `compare` command in a fresh child."""
    argv = ["compare", str(base), str(cand), "--format", fmt, "-o", str(out)]
    return cli_in_child(argv, ok=(0, 1))


def main(argv: list[str] | None = None) -> None:
    args = parse_mode(argv, __doc__.splitlines()[0])
    runs = pick(args.mode, 100_000, 20_000, 2_000)
    print(header(f"compare on two {runs:,}-run reports"))
    with tempfile.TemporaryDirectory() as tmp:
        base, cand = Path(tmp, "base.json"), Path(tmp, "cand.json")
        write_report(base, synthetic(1, runs, 1.0))
        write_report(cand, synthetic(2, runs, 1.05))
        print(f"report size: {base.stat().st_size / 2**20:.1f} MiB each")
        for fmt in ("json", "table", "html"):
            elapsed, peak, code = _command(base, cand, fmt, Path(tmp, f"out.{fmt}"))
            print(
                f"compare --format {fmt:<5}  {elapsed:6.2f} s  peak RSS {peak:7.1f} MiB exit {code}"
            )
            verdict(BENCH, f"compare --format {fmt}, {runs:,} runs: wall", elapsed, TARGET_S, "s")
            verdict(
                BENCH,
                f"compare --format {fmt}, {runs:,} runs: peak RSS",
                peak,
                TARGET_MIB,
                "MiB",
                digits=1,
            )
        _phases(base, cand)


def _phases(base: Path, cand: Path) -> None:
    t0 = perf_counter()
    baseline, candidate = read_report(base), read_report(cand)
    t1 = perf_counter()
    comparison = compare_reports(baseline, candidate)
    t2 = perf_counter()
    encode_json(comparison)
    t3 = perf_counter()
    render_compare_html(comparison, ("base", "cand"), baseline, candidate)
    t4 = perf_counter()
    tested = sum(1 for c in comparison.changes if c.ci_low is not None)
    print(
        f"phases: read both {t1 - t0:.2f} s, compare_reports {t2 - t1:.2f} s "
        f"({tested} statistics bootstrapped, 10,000 replicates each), "
        f"JSON {t3 - t2:.3f} s, HTML {t4 - t3:.2f} s"
    )
    print(
        "regressions found:",
        ", ".join(
            f"{c.metric} {c.statistic} {c.relative_change:+.1%}"
            for c in comparison.regressions
            if c.relative_change is not None
        )
        or "none",
    )


if __name__ == "__main__":
    main()
