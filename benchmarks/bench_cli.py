"""`orket-pipeline run`: runs per second with telemetry and with `--no-telemetry`.

A suite of TASKS instant tasks (a prompt each, no constraints, no gate) run through a
`python:` provider whose async `generate` returns at once, by the CLI itself
(`orket_pipeline.cli.main(["run", ...])`, in this process so the interpreter's start-up is not
counted; default concurrency, `--quiet`, the report written to a temporary folder). Rounds
alternate the two commands (the order flips every round); each figure is the best round, the
spread is printed beside it. CPU per run is printed for the whole process (every thread), for
the event loop's thread alone (`time.thread_time()`), best round and median, and the kernel's
share of the process's CPU (`getrusage`'s system time, median: journal and report writes, /proc reads
of the memory probe, thread wake-ups), which instruction counts (`benchmarks/instructions.py`)
do not see. Every run is checked afterwards: exit code 0, a report with every task, telemetry
on every run (with) or on none (without).

This is the engine's own loop (a yield to the event loop on every run), unlike a library loop
that calls `generate` many times between yields.

Usage: python -m benchmarks.bench_cli [--quick | --smoke]
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from time import perf_counter, process_time, thread_time

from benchmarks._common import header
from benchmarks._measure import spread
from benchmarks._results import parse_mode, pick, verdict
from orket_pipeline import read_report
from orket_pipeline.cli import main as cli_main

BENCH = "cli"
RATIO_TARGET = 0.8
MODES = ("telemetry", "--no-telemetry")

PROVIDER = '''\
class Instant:
    """Answers at once: the run's cost is the engine's and the telemetry's."""

    supports_streaming = False

    async def generate(self, prompt):
        return "def f() -> int:\\n    return 1\\n"
'''


def _write_inputs(directory: Path, tasks: int) -> tuple[Path, str]:
    suite = directory / "suite.json"
    body = {"name": "bench", "tasks": [{"id": f"t{i:06d}", "prompt": "f"} for i in range(tasks)]}
    suite.write_text(json.dumps(body), encoding="utf-8")
    provider = directory / "instant.py"
    provider.write_text(PROVIDER, encoding="utf-8")
    return suite, f"python:{provider}:Instant"


Sample = tuple[float, float, float, float]


def _run(suite: Path, spec: str, out: Path, mode: str) -> Sample:
    """Wall, CPU, loop-thread CPU and kernel CPU seconds of one `orket-pipeline run` (the CLI
    runs its event loop in the calling thread); raises AssertionError on a bad run."""
    argv = ["run", str(suite), "--provider", spec, "--out", str(out), "--quiet"]
    if mode == "--no-telemetry":
        argv.append("--no-telemetry")
    with contextlib.redirect_stdout(io.StringIO()):  # the summary table
        cpu0, loop0, wall0 = process_time(), thread_time(), perf_counter()
        kernel0 = _kernel_seconds()
        code = cli_main(argv)
        wall, cpu = perf_counter() - wall0, process_time() - cpu0
        loop, kernel = thread_time() - loop0, _kernel_seconds() - kernel0
    assert code == 0, f"orket-pipeline run {mode}: exit code {code}"
    return wall, cpu, loop, kernel


def _check(out: Path, tasks: int, mode: str) -> None:
    runs = read_report(out).test_runs
    assert len(runs) == tasks, f"{mode}: {len(runs)} of {tasks} runs reported"
    with_telemetry = sum(run.telemetry is not None for run in runs)
    expected = tasks if mode == "telemetry" else 0
    assert with_telemetry == expected, f"{mode}: {with_telemetry} runs with telemetry"
    out.unlink()


def _kernel_seconds() -> float:
    # getrusage has microseconds where there is one; os.times() counts clock ticks (10 ms).
    try:
        import resource
    except ImportError:  # Windows
        return os.times().system
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def measure(tasks: int, rounds: int) -> dict[str, list[Sample]]:
    """Per mode, the (wall, CPU, loop-thread CPU, kernel CPU) seconds of each round."""
    results: dict[str, list[Sample]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="orket-bench-cli-") as tmp:
        directory = Path(tmp)
        suite, spec = _write_inputs(directory, tasks)
        for r in range(rounds):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                out = directory / f"report-{r}-{mode.strip('-')}.json"
                results[mode].append(_run(suite, spec, out, mode))
                _check(out, tasks, mode)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_mode(argv, __doc__.splitlines()[0])
    tasks = pick(args.mode, 10_000, 5_000, 1_000)
    rounds = pick(args.mode, 5, 2, 1)
    results = measure(tasks, rounds)
    print(header(f"orket-pipeline run ({args.mode} mode: best of {rounds} alternating rounds)"))
    print(f"{tasks:,} instant tasks, python: provider, no gate, default concurrency, --quiet")
    rates = {}
    for mode, samples in results.items():
        per_round = [tasks / sample[0] for sample in samples]
        rates[mode] = max(per_round)
        cpu, loop, kernel = ([s[i] / tasks * 1e6 for s in samples] for i in (1, 2, 3))
        print(
            f"  {mode:15s} {rates[mode]:9,.0f} runs/s  per round {spread(per_round)}"
            f"  CPU {min(cpu):.1f} us/run (median {statistics.median(cpu):.1f}),"
            f" loop thread {min(loop):.1f} (median {statistics.median(loop):.1f}),"
            f" kernel (median) {statistics.median(kernel):.1f}"
        )
    ratio = rates["telemetry"] / rates["--no-telemetry"]
    per_round_ratio = [
        no[0] / tel[0]
        for tel, no in zip(results["telemetry"], results["--no-telemetry"], strict=True)
    ]
    print(f"  with / without telemetry = {ratio:.2f}; per round {spread(per_round_ratio)}")
    verdict(BENCH, "run with telemetry / --no-telemetry", ratio, RATIO_TARGET, "x", at_least=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
