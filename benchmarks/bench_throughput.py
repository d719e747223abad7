"""Throughput: 100,000 runs end to end into a written report; and the report write alone.

End to end is `async with TelemetryPipeline(report_path=...)` (default settings) around
100,000 generations (a non-streaming provider, `constraints=None`) and outcomes, closed: every
stage drained, the journal written and removed, the report written atomically. The loop
yields to the event loop once per run, as an engine does (the CLI's figure, with its own
engine, is `bench_cli`); the run is checked lossless before its figure counts. The report
write alone is `write_report` of the report that run built.

Peak memory, and why it is measured this way: the pipeline's memory probe resets the kernel's
high-water mark (`clear_refs`) at every sample, which also lowers `ru_maxrss`, so neither can be
read after the run. The peak is the largest of (a) a psutil RSS polling thread, every
POLL_INTERVAL seconds from before the pipeline opens until after it closes, and (b) `VmHWM`
read after close, which covers everything since the probe's last reset (building, encoding and
writing the report, the largest allocations). The baseline is the RSS before the pipeline opens.

Usage: python -m benchmarks.bench_throughput [--quick | --smoke]
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path
from time import perf_counter

import anyio
import anyio.lowlevel
import psutil

from benchmarks._common import header
from benchmarks._fixtures import TelemetryPipeline, TextProvider, check_lossless
from benchmarks._results import parse_mode, pick, verdict
from orket_pipeline import Report, write_report

BENCH = "throughput"
POLL_INTERVAL = 0.002
RUNS_TARGET = 50_000
WRITE_TARGET_S = 0.5
_MIB = 1024 * 1024


class PeakRss:
    """A thread polling this process's RSS; `peak` is the largest seen (bytes)."""

    def __init__(self, interval: float = POLL_INTERVAL) -> None:
        self.interval = interval
        self.peak = 0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self._process.memory_info().rss)
            if self._stop.wait(self.interval):
                break


def vm_hwm_bytes() -> int | None:
    """`VmHWM` of this process (Linux), else None."""
    try:
        with open(f"/proc/{os.getpid()}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


async def _end_to_end(directory: Path, n: int) -> tuple[float, int, int, Report]:
    """Seconds for n runs into a written report; baseline and peak RSS (bytes); the report."""
    ids = [f"t{i:07d}" for i in range(n)]
    provider, checkpoint = (
        TextProvider("def f() -> int:\n    return 1\n"),
        anyio.lowlevel.checkpoint,
    )
    report_path = directory / "orket_report.json"
    baseline = psutil.Process().memory_info().rss
    with PeakRss() as poller:
        t0 = perf_counter()
        async with TelemetryPipeline(report_path) as pipeline:
            generate, record = pipeline.generate, pipeline.record_outcome
            for i in range(n):
                await generate(ids[i], provider, "prompt", None)
                record(ids[i], "pass")
                await checkpoint()
        elapsed = perf_counter() - t0
        hwm = vm_hwm_bytes() or 0
    check_lossless(pipeline, n)
    assert report_path.stat().st_size > 0
    return elapsed, baseline, max(poller.peak, hwm), pipeline.report


def _write_alone(directory: Path, report: Report, reps: int) -> tuple[float, int]:
    """Best seconds of `write_report` for `report`; the file's size in bytes."""
    path = directory / "written.json"
    best = float("inf")
    for _ in range(reps):
        t0 = perf_counter()
        write_report(path, report)
        best = min(best, perf_counter() - t0)
    return best, path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    args = parse_mode(argv, __doc__.splitlines()[0])
    n = pick(args.mode, 100_000, 30_000, 5_000)
    reps = pick(args.mode, 3, 1, 1)
    print(header(f"throughput ({args.mode} mode)"))
    print(
        f"{n:,} runs, non-streaming provider, constraints=None, a yield per run;"
        f" best of {reps}; peak RSS = max(psutil poll every {POLL_INTERVAL * 1e3:g} ms,"
        " VmHWM after close)"
    )
    with tempfile.TemporaryDirectory(prefix="orket-bench-") as tmp:
        directory = Path(tmp)
        best: tuple[float, int, int, Report] | None = None
        for _ in range(reps):
            result = anyio.run(_end_to_end, directory, n)
            best = result if best is None or result[0] < best[0] else best
        assert best is not None
        elapsed, baseline, peak, report = best
        write_s, size = _write_alone(directory, report, pick(args.mode, 5, 3, 1))
    rate = n / elapsed
    print(f"end to end: {elapsed:.3f} s for {n:,} runs = {rate:,.0f} runs/s")
    print(
        f"peak RSS {peak / _MIB:.1f} MiB (baseline before the pipeline {baseline / _MIB:.1f} MiB,"
        f" +{(peak - baseline) / _MIB:.1f} MiB)"
    )
    verdict(
        BENCH,
        "library loop through the pipeline, a yield per run",
        rate,
        RUNS_TARGET,
        "runs/s",
        at_least=True,
        digits=0,
    )
    print(f"write_report alone: {n:,} runs, {size / _MIB:.1f} MiB, {write_s * 1e3:.1f} ms")
    scaled = write_s * 100_000 / n
    label = "report of 100,000 runs written" if n == 100_000 else "write time scaled to 100,000"
    verdict(BENCH, label, scaled, WRITE_TARGET_S, "s", digits=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
