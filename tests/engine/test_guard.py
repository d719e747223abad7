"""A provider that is not there: connect before the first run, stop once runs keep failing to
connect, and `max_in_flight` counted on both paths (engine/_guard.py)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from orket_pipeline.engine import Suite, Task
from orket_pipeline.engine._guard import SuiteStopped, UnreachableWatch
from orket_pipeline.engine._runner import execute
from orket_pipeline.providers import ProviderConnectionError
from orket_pipeline.report._model import GenerationOptions, Metadata, RunError, decode_report

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:9/v1/chat/completions"
REFUSED = ProviderConnectionError(
    f"openai:m@http://127.0.0.1:9/v1: cannot connect: [Errno 111] Connection refused ({URL})"
)
MID_REPLY = ProviderConnectionError(
    "openai:m: connection broken: peer closed connection without sending complete message "
    f"body (incomplete chunked read) ({URL})"
)


def suite_of(count: int) -> Suite:
    return Suite(name="s", tasks=tuple(Task(id=f"t{i:02d}", prompt=f"p{i}") for i in range(count)))


class Server:
    """Answers the first `alive` prompts, then fails each with `dead` (a server killed
    mid-suite); records what happened in order, `connect` included."""

    supports_streaming = False

    def __init__(self, alive: int, dead: BaseException, *, unreachable: bool = False) -> None:
        self.alive, self.dead, self.unreachable = alive, dead, unreachable
        self.events: list[str] = []

    async def connect(self) -> None:
        self.events.append("connect")
        if self.unreachable:
            raise REFUSED

    async def generate(self, prompt: str) -> str:
        self.events.append(prompt)
        if len([e for e in self.events if e != "connect"]) > self.alive:
            raise self.dead
        return "x = 1\n"


@pytest.mark.parametrize("telemetry", [True, False])
async def test_the_provider_connects_before_the_first_generation(
    tmp_path: Path, telemetry: bool
) -> None:
    server = Server(alive=3, dead=REFUSED)
    await execute(suite_of(3), server, report_path=tmp_path / "r.json", telemetry=telemetry)
    assert server.events == ["connect", "p0", "p1", "p2"]


@pytest.mark.parametrize("telemetry", [True, False])
async def test_an_unreachable_provider_stops_before_anything_runs_or_is_written(
    tmp_path: Path, telemetry: bool
) -> None:
    server = Server(alive=0, dead=REFUSED, unreachable=True)
    out = tmp_path / "r.json"
    with pytest.raises(ProviderConnectionError, match=r"127\.0\.0\.1:9"):
        await execute(suite_of(5), server, report_path=out, telemetry=telemetry)
    assert server.events == ["connect"]
    assert list(tmp_path.iterdir()) == []  # no report of error rows, no journal


@pytest.mark.parametrize("telemetry", [True, False])
async def test_a_server_killed_mid_suite_stops_the_suite_and_keeps_the_finished_runs(
    tmp_path: Path, telemetry: bool
) -> None:
    server = Server(alive=3, dead=REFUSED)
    out = tmp_path / "r.json"
    with pytest.raises(SuiteStopped, match="8 runs in a row could not reach") as caught:
        await execute(suite_of(40), server, report_path=out, telemetry=telemetry, concurrency=1)
    assert URL in str(caught.value)
    assert caught.value.finished == 11
    report = decode_report(out.read_bytes())
    assert [run.outcome for run in report.test_runs] == ["pass"] * 3 + ["error"] * 8
    assert len(server.events) == 1 + 11  # no run started after the eighth refusal


async def test_runs_in_flight_finish_when_the_suite_stops(tmp_path: Path) -> None:
    server = Server(alive=0, dead=REFUSED)
    out = tmp_path / "r.json"
    with pytest.raises(SuiteStopped):
        await execute(suite_of(40), server, report_path=out, concurrency=4)
    report = decode_report(out.read_bytes())
    # The eighth refusal stops the starting; the runs already started finish (as errors).
    assert 8 <= len(report.test_runs) <= 8 + 4 - 1
    assert all(run.error is not None for run in report.test_runs)
    assert not any("cancel" in (run.reason or "") for run in report.test_runs)


async def test_a_small_suite_that_never_connects_stops_too(tmp_path: Path) -> None:
    with pytest.raises(SuiteStopped, match="3 runs in a row"):
        await execute(suite_of(3), Server(0, REFUSED), report_path=tmp_path / "r.json")


async def test_a_connection_broken_mid_reply_does_not_stop_the_suite(tmp_path: Path) -> None:
    # llama-cpp-python's --interrupt_requests: the server is alive, it aborts requests.
    out = tmp_path / "r.json"
    report = await execute(suite_of(12), Server(0, MID_REPLY), report_path=out, concurrency=1)
    assert [run.outcome for run in report.test_runs] == ["error"] * 12


async def test_stop_after_none_never_stops(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    report = await execute(suite_of(12), Server(0, REFUSED), report_path=out, stop_after=None)
    assert len(report.test_runs) == 12


def test_a_run_that_reached_the_server_resets_the_count() -> None:
    watch = UnreachableWatch(limit=3)
    refused = RunError(type="ProviderConnectionError", message=str(REFUSED))
    for error in (refused, refused, None, refused, refused):
        watch.record(error)
    assert watch.stopped is None
    watch.record(refused)
    assert watch.stopped is not None and watch.stopped.count == 3


def test_a_reply_whose_text_says_connection_refused_reached_the_server() -> None:
    watch = UnreachableWatch(limit=2)
    said = "openai:m@http://x/v1: error in reply: upstream: Connection refused"
    for _ in range(3):
        watch.record(RunError(type="ProviderResponseError", message=said))
    assert watch.stopped is None


class Overlapping:
    """Holds every generation until `width` are in flight, then lets them all go."""

    supports_streaming = False

    def __init__(self, width: int) -> None:
        self.width, self.waiting = width, 0
        self.full = anyio.Event()

    async def generate(self, prompt: str) -> str:
        self.waiting += 1
        if self.waiting >= self.width:
            self.full.set()
        await self.full.wait()
        return "x = 1\n"


@pytest.mark.parametrize("telemetry", [True, False])
async def test_max_in_flight_and_the_given_metadata_are_in_the_report(
    tmp_path: Path, telemetry: bool
) -> None:
    given = Metadata(
        model="m",
        options=GenerationOptions(seed=3, stream=False),
        executor="local",
        concurrency=3,
        memory_pid=1,
        memory_pid_source="option",
    )
    report = await execute(
        suite_of(6),
        Overlapping(3),
        report_path=tmp_path / "r.json",
        telemetry=telemetry,
        concurrency=3,
        metadata=given,
    )
    metadata = decode_report((tmp_path / "r.json").read_bytes()).metadata
    assert metadata == report.metadata
    assert metadata.max_in_flight == 3
    assert (metadata.model, metadata.executor, metadata.concurrency) == ("m", "local", 3)
    assert metadata.options == GenerationOptions(seed=3, stream=False)
    # Nothing measured without telemetry: no memory pid is claimed.
    assert metadata.memory_pid == (1 if telemetry else None)


async def test_output_cap_none_keeps_no_answer(tmp_path: Path) -> None:
    report = await execute(
        suite_of(2), Server(2, REFUSED), report_path=tmp_path / "r.json", output_cap=None
    )
    assert [run.output for run in report.test_runs] == [None, None]
    assert report.metadata.output_cap is None
