"""`--executor ray` on a local Ray cluster that these tests start, on loopback, and stop.

The cluster listens on 127.0.0.1 only (node address 127.0.0.1, no dashboard, usage statistics
off) and keeps its temp dir in a directory of the session's, removed at the end. Skipped when
Ray is not installed (`pip install 'orket-pipeline[ray]'`).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from orket_pipeline.engine import load_suite
from orket_pipeline.engine._ray_cluster import ray_available, ray_session
from orket_pipeline.engine._runner import execute
from orket_pipeline.providers import load_provider
from orket_pipeline.report._journal import read_journal
from orket_pipeline.report._model import Report

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not ray_available(), reason="needs Ray: pip install 'orket-pipeline[ray]'"),
]

TASKS = 8

ORACLE = '''\
import os
import socket
from pathlib import Path

import anyio

ANSWERS = {answers!r}
CONTROL = Path({control!r})
HOLD = {hold!r}
CALLS = []


class Oracle:
    """The canonical answer to each prompt; one line per call in calls.log. With HOLD
    "second", the second call in the first process to get there is held (its pid sent to
    held.sock) until the test kills it; with "first twice", the first task's first two calls."""

    supports_streaming = False

    async def generate(self, prompt):
        with open(CONTROL / "calls.log", "a") as log:
            log.write(f"{{os.getpid()}} {{prompt}}\\n")
        CALLS.append(prompt)
        if HOLD == "second" and len(CALLS) == 2 and _claim("claimed"):
            await anyio.sleep(3600)
        first = next(iter(ANSWERS))
        if HOLD == "first twice" and prompt == first and (_claim("1") or _claim("2")):
            await anyio.sleep(3600)
        return ANSWERS[prompt]


def _claim(name):
    try:
        os.close(os.open(CONTROL / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False  # another worker holds its call: this one answers
    with socket.socket(socket.AF_UNIX) as held:  # tells the test, which listens there
        held.connect(str(CONTROL / "held.sock"))
        held.sendall(str(os.getpid()).encode())
    return True
'''


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the driver waits in a thread, so it runs on trio too: one test shows it


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    saved = dict(os.environ)
    try:
        with ray_session(None, num_cpus=2) as ray:
            yield ray
    finally:
        os.environ.clear()
        os.environ.update(saved)


def humaneval_like(
    directory: Path, *, hold: str | None = None, name: str = "oracle"
) -> tuple[Path, str]:
    """A HumanEval-style suite (a function per task, a `check(candidate)` of asserts as its
    python_tests gate) and a python: provider spec answering each prompt canonically."""
    tasks, answers = [], {}
    for i in range(TASKS):
        function = f"shift_{i}"
        prompt = f"Write {function}(xs) returning each number of xs plus {i}."
        check = (
            f"def check(candidate):\n    assert candidate([1, 2]) == [{1 + i}, {2 + i}]\n"
            f"    assert candidate([]) == []\n\ncheck({function})\n"
        )
        tasks.append(
            {
                "id": f"HumanEval/{i}",
                "prompt": prompt,
                "gate": {"type": "python_tests", "code": check},
            }
        )
        answers[prompt] = f"```python\ndef {function}(xs):\n    return [x + {i} for x in xs]\n```\n"
    suite = directory / "suite.json"
    suite.write_text(json.dumps({"name": "humaneval-like", "tasks": tasks}))
    provider = directory / f"{name}.py"
    text = ORACLE.format(answers=answers, control=str(directory), hold=hold)
    provider.write_text(text)
    return suite, f"python:{provider}:Oracle"


def triples(report: Report) -> list[tuple[str, str, str | None]]:
    return [(run.test_id, run.outcome, run.reason) for run in report.test_runs]


def calls(directory: Path) -> list[tuple[int, str]]:
    lines = (directory / "calls.log").read_text().splitlines()
    return [(int(pid), prompt) for pid, _, prompt in (line.partition(" ") for line in lines)]


async def on_ray(suite_path: Path, specs: list[str], out: Path, **options: Any) -> Report:
    from orket_pipeline.engine._ray import execute_on_ray

    options.setdefault("sandbox", "bwrap")
    return await execute_on_ray(
        load_suite(suite_path), specs, report_path=out, provider_name=", ".join(specs), **options
    )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])  # the driver runs on both
async def test_oracle_answers_through_ray_equal_the_local_run(cluster: Any, tmp_path: Path) -> None:
    suite_path, spec = humaneval_like(tmp_path)
    _, replica = humaneval_like(tmp_path, name="replica")
    local = await execute(
        load_suite(suite_path), load_provider(spec), report_path=tmp_path / "local.json"
    )
    (tmp_path / "calls.log").unlink()  # the local run's calls
    ray_report = await on_ray(
        suite_path, [spec, replica], tmp_path / "ray.json", workers=2, concurrency=4
    )
    assert triples(ray_report) == triples(local)
    assert {run.outcome for run in ray_report.test_runs} == {"pass"}
    assert ray_report.metadata.executor == "ray"
    assert ray_report.metadata.concurrency == 4
    assert ray_report.metadata.max_in_flight is not None
    assert 1 <= ray_report.metadata.max_in_flight <= 4
    assert ray_report.metadata.output_cap == local.metadata.output_cap
    assert ray_report.metadata.sandbox == "bwrap"
    # Each worker's pipeline statistics, summed: as many events as the one local pipeline.
    assert ray_report.metadata.pipeline is not None and local.metadata.pipeline is not None
    assert ray_report.metadata.pipeline.events_published == local.metadata.pipeline.events_published
    # Both replicas ran tasks, each in its own worker process; memory measured there.
    workers = {run.worker for run in ray_report.test_runs}
    assert len(workers) == 2 and None not in workers
    assert {pid for pid, _ in calls(tmp_path)} == {int(str(w).rpartition("/")[2]) for w in workers}
    assert all(run.attempts == 1 for run in ray_report.test_runs)
    assert all(run.telemetry and run.telemetry.peak_memory_rss for run in ray_report.test_runs)
    assert json.loads((tmp_path / "ray.json").read_text())["metadata"]["executor"] == "ray"
    assert not (tmp_path / "ray.json.journal.jsonl").exists()  # the default journal, removed


@pytest.mark.anyio
async def test_a_killed_worker_loses_no_run_and_duplicates_none(
    cluster: Any, tmp_path: Path
) -> None:
    suite_path, spec = humaneval_like(tmp_path, hold="second")
    journal = tmp_path / "journal.jsonl"
    reports: list[Report] = []

    async def run() -> None:
        reports.append(
            await on_ray(
                suite_path,
                [spec],
                tmp_path / "r.json",
                journal_path=journal,
                workers=2,
                concurrency=2,
            )
        )

    listener = await anyio.create_unix_listener(tmp_path / "held.sock")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(60):  # the held call says so once it is held
            async with await listener.accept() as held:
                victim = int((await held.receive()).decode())
        os.kill(victim, signal.SIGKILL)
    [report] = reports
    ids = [f"HumanEval/{i}" for i in range(TASKS)]
    assert [run.test_id for run in report.test_runs] == ids  # every task once, in suite order
    assert {run.outcome for run in report.test_runs} == {"pass"}
    made = calls(tmp_path)
    held = [prompt for pid, prompt in made if pid == victim][1]
    prompts = [prompt for _, prompt in made]
    # The held task ran once more, elsewhere; every other task exactly once.
    assert prompts.count(held) == 2 and len(prompts) == TASKS + 1
    by_worker = {run.test_id: run for run in report.test_runs}
    again = next(run for run in report.test_runs if run.attempts == 2)
    assert not str(again.worker).endswith(f"/{victim}")
    # The run the lost worker finished before it died is kept, from that worker.
    kept = [run for run in by_worker.values() if str(run.worker).endswith(f"/{victim}")]
    assert len(kept) == 1 and kept[0].attempts == 1
    contents = read_journal(journal)
    assert contents.duplicate_orders == [] and len(contents.runs) == TASKS


@pytest.mark.anyio
async def test_resume_on_ray_keeps_the_journaled_runs_and_runs_the_rest(
    cluster: Any, tmp_path: Path
) -> None:
    suite_path, spec = humaneval_like(tmp_path)
    journal = tmp_path / "journal.jsonl"
    first = await on_ray(suite_path, [spec], tmp_path / "r.json", journal_path=journal, workers=1)
    # The driver lost after three runs: the journal holds its header and three runs.
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:4]))
    kept = {run.test_id for _, run in read_journal(journal).runs}
    (tmp_path / "calls.log").unlink()
    resumed = await on_ray(
        suite_path,
        [spec],
        tmp_path / "r.json",
        journal_path=journal,
        resume_from=journal,
        workers=2,
    )
    assert triples(resumed) == triples(first)
    assert [r for r in resumed.test_runs if r.test_id in kept] == [
        r for r in first.test_runs if r.test_id in kept
    ]
    assert len(calls(tmp_path)) == TASKS - 3  # only the tasks the journal did not hold ran


@pytest.mark.anyio
async def test_with_every_worker_lost_the_finished_runs_are_kept_and_resume_runs_the_rest(
    cluster: Any, tmp_path: Path
) -> None:
    suite_path, spec = humaneval_like(tmp_path, hold="second")
    journal = tmp_path / "journal.jsonl"
    out = tmp_path / "r.json"
    reports: list[Report] = []

    async def run() -> None:
        options: dict[str, Any] = {"journal_path": journal, "workers": 1, "concurrency": 1}
        reports.append(await on_ray(suite_path, [spec], out, **options))

    listener = await anyio.create_unix_listener(tmp_path / "held.sock")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(60):
            async with await listener.accept() as held:
                os.kill(int((await held.receive()).decode()), signal.SIGKILL)
    [first] = reports
    assert [run.test_id for run in first.test_runs] == ["HumanEval/0"]  # finished before
    assert [run.test_id for _, run in read_journal(journal).runs] == ["HumanEval/0"]
    resumed = await on_ray(suite_path, [spec], out, journal_path=journal, resume_from=journal)
    assert [run.test_id for run in resumed.test_runs] == [f"HumanEval/{i}" for i in range(TASKS)]
    assert resumed.test_runs[0] == first.test_runs[0]
    assert {run.outcome for run in resumed.test_runs} == {"pass"}


@pytest.mark.anyio
async def test_more_workers_than_the_cluster_has_cpus_is_refused_before_anything_runs(
    cluster: Any, tmp_path: Path
) -> None:
    from orket_pipeline._exceptions import InputError

    suite_path, spec = humaneval_like(tmp_path)
    with pytest.raises(InputError, match="--workers 3: the Ray cluster has 2 CPUs"):
        await on_ray(suite_path, [spec], tmp_path / "r.json", workers=3)
    assert not (tmp_path / "calls.log").exists()
    assert not (tmp_path / "r.json").exists()


@pytest.mark.anyio
async def test_a_task_lost_with_two_workers_is_an_error_and_is_not_run_a_third_time(
    cluster: Any, tmp_path: Path
) -> None:
    suite_path, spec = humaneval_like(tmp_path, hold="first twice")
    journal = tmp_path / "journal.jsonl"
    reports: list[Report] = []

    async def run() -> None:
        options: dict[str, Any] = {"journal_path": journal, "workers": 2, "concurrency": 2}
        reports.append(await on_ray(suite_path, [spec], tmp_path / "r.json", **options))

    listener = await anyio.create_unix_listener(tmp_path / "held.sock")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(60):
            for _ in range(2):  # the first task, held on one worker, then on the other
                async with await listener.accept() as held:
                    os.kill(int((await held.receive()).decode()), signal.SIGKILL)
    [report] = reports
    first = report.test_runs[0]
    assert first.test_id == "HumanEval/0" and first.outcome == "error"
    assert first.attempts == 2 and first.error is not None
    assert first.error.type == "WorkerLost" and "twice" in str(first.reason)
    prompts = [prompt for _, prompt in calls(tmp_path)]
    assert prompts.count(load_suite(suite_path).tasks[0].prompt) == 2  # never a third time
    ids = [run.test_id for run in report.test_runs]
    assert len(ids) == len(set(ids))
    assert all(run.outcome == "pass" for run in report.test_runs[1:])
    assert read_journal(journal).duplicate_orders == []


@pytest.mark.anyio
async def test_a_worker_that_cannot_load_its_provider_stops_the_run_before_any_task(
    cluster: Any, tmp_path: Path
) -> None:
    from orket_pipeline._exceptions import InputError

    suite_path, spec = humaneval_like(tmp_path)
    missing = f"python:{tmp_path / 'nope.py'}:Oracle"
    with pytest.raises(InputError, match=r"a worker could not start: provider .*no such file"):
        await on_ray(suite_path, [spec, missing], tmp_path / "r.json", workers=2)
    assert not (tmp_path / "calls.log").exists()
    assert not (tmp_path / "r.json").exists()
