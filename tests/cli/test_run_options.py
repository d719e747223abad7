"""`run`'s issue-13 options: generation options (flags over the suite's), what the report
keeps of each answer, `--memory-pid auto` and the memory line, an unreachable provider as one
line, and what the summary says under its table (errors by cause, concurrency, hints)."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from orket_pipeline.cli import _run, main
from orket_pipeline.cli._memory import find_listener, memory_target
from orket_pipeline.providers import ProviderOptions, load_provider
from orket_pipeline.report._io import write_report
from orket_pipeline.report._model import (
    GenerationOptions,
    Metadata,
    Report,
    RunError,
    Telemetry,
    TestRun,
    decode_report,
)

ANSWER = "def answer():\n    return 42\n"


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A two-task suite with `options`, and a replay cassette answering it."""
    tasks = [{"id": t, "prompt": f"prompt {t}"} for t in ("a", "b")]
    options = {"max_tokens": 32, "temperature": 0.7, "stop": ["END"]}
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "s", "options": options, "tasks": tasks}))
    lines = [json.dumps({"cassette": 1, "streaming": True})]
    for t in ("a", "b"):
        chunks = [{"delay_s": 0.0, "text": ANSWER}]
        lines.append(json.dumps({"prompt": f"prompt {t}", "chunks": chunks}))
    (tmp_path / "cassette.jsonl").write_text("\n".join(lines) + "\n")
    yield path, f"replay:{tmp_path}/cassette.jsonl"


def run(suite: tuple[Path, str], out: Path, *extra: str) -> int:
    path, spec = suite
    return main(["run", str(path), "--provider", spec, "--out", str(out), "--quiet", *extra])


class TestGenerationOptions:
    def test_flags_override_the_suite_and_reach_provider_and_report(
        self,
        suite: tuple[Path, str],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        given: list[ProviderOptions] = []

        def spy(spec: str, options: ProviderOptions | None = None) -> Any:
            assert options is not None
            given.append(options)
            return load_provider(spec, options)

        monkeypatch.setattr(_run, "load_provider", spy)
        out = tmp_path / "r.json"
        flags = ("--temperature", "0", "--seed", "7", "--system", "be brief", "--retries", "5")
        assert run(suite, out, *flags, "--concurrency", "3") == 0
        assert given == [
            ProviderOptions(
                max_tokens=32,  # the suite's
                temperature=0.0,  # the flag's, over the suite's 0.7
                seed=7,
                system="be brief",
                stop=("END",),
                retries=5,
                max_connections=3,
            )
        ]
        metadata = decode_report(out.read_bytes()).metadata
        assert metadata.options == GenerationOptions(
            max_tokens=32, temperature=0.0, seed=7, stream=True, system="be brief", stop=["END"]
        )
        assert (metadata.executor, metadata.concurrency) == ("local", 3)
        assert metadata.max_in_flight is not None and 1 <= metadata.max_in_flight <= 2
        captured = capsys.readouterr()
        assert f"concurrency 3, max in flight {metadata.max_in_flight}" in captured.out
        err = captured.err
        # A replay provider is the user's own: said once, not an error.
        assert err.count("recorded in the report, not sent") == 1
        assert err.startswith("orket-pipeline: note: max_tokens, temperature, seed, system, stop")

    def test_stop_repeats_and_no_stream_is_recorded(
        self, suite: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        given: list[ProviderOptions] = []
        monkeypatch.setattr(
            _run, "load_provider", lambda s, o=None: given.append(o) or load_provider(s, o)
        )
        assert run(suite, tmp_path / "r.json", "--stop", "x", "--stop", "y", "--no-stream") == 0
        assert given[0].stop == ("x", "y") and given[0].stream is False

    def test_without_options_nothing_is_said(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "plain.json"
        path.write_text(json.dumps({"tasks": [{"id": "a", "prompt": "prompt a"}]}))
        cassette = tmp_path / "c.jsonl"
        record = {"prompt": "prompt a", "chunks": [{"delay_s": 0.0, "text": "x = 1"}]}
        cassette.write_text(json.dumps({"cassette": 1}) + "\n" + json.dumps(record) + "\n")
        assert run((path, f"replay:{cassette}"), tmp_path / "r.json") == 0
        assert "note" not in capsys.readouterr().err

    def test_no_save_output_keeps_no_answer(self, suite: tuple[Path, str], tmp_path: Path) -> None:
        out = tmp_path / "r.json"
        assert run(suite, out, "--no-save-output") == 0
        report = decode_report(out.read_bytes())
        assert [r.output for r in report.test_runs] == [None, None]
        assert report.metadata.output_cap is None

    def test_output_is_kept_capped_by_default_and_by_output_cap(
        self, suite: tuple[Path, str], tmp_path: Path
    ) -> None:
        assert run(suite, tmp_path / "d.json") == 0
        report = decode_report((tmp_path / "d.json").read_bytes())
        assert [r.output for r in report.test_runs] == [ANSWER, ANSWER]
        assert report.metadata.output_cap == 65536
        assert run(suite, tmp_path / "c.json", "--output-cap", "4") == 0
        capped = decode_report((tmp_path / "c.json").read_bytes())
        assert [(r.output, r.output_truncated) for r in capped.test_runs] == [("def ", True)] * 2

    @pytest.mark.parametrize(
        ("extra", "message"),
        [
            (["--temperature", "hot"], "run: argument --temperature: expected a number"),
            (["--temperature", "nan"], "run: argument --temperature"),
            (["--max-tokens", "0"], "run: argument --max-tokens"),
            (["--seed", "1.5"], "run: argument --seed: expected an integer"),
            (["--stop", ""], "run: argument --stop"),
            (["--stop", "\udcff"], "run: argument --stop: expected UTF-8"),  # argv byte 0xff
            (["--system", "a\udcff"], "run: argument --system: expected UTF-8"),
            (["--retries", "-1"], "run: argument --retries"),
            (["--no-save-output", "--output-cap", "9"], "not allowed with"),
            (["--memory-pid", "auto", "--no-telemetry"], "--memory-pid needs telemetry"),
            (["--memory-pid", "auto"], "--memory-pid auto needs an HTTP provider"),
        ],
    )
    def test_a_bad_option_is_one_line_with_one_program_name(
        self,
        suite: tuple[Path, str],
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        extra: list[str],
        message: str,
    ) -> None:
        assert run(suite, tmp_path / "r.json", *extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
        assert err.startswith("orket-pipeline: error: ") and err.count("orket-pipeline") == 1
        assert not (tmp_path / "r.json").exists()

    def test_a_bad_suite_option_is_exit_two_naming_file_and_field(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "s.json"
        document = {"options": {"temperature": "hot"}, "tasks": [{"id": "a", "prompt": "p"}]}
        path.write_text(json.dumps(document))
        assert run((path, "replay:x.jsonl"), tmp_path / "r.json") == 2
        err = capsys.readouterr().err
        assert f"{path}: field `options.temperature`" in err and err.count("\n") == 1


@pytest.fixture
def listener() -> Iterator[int]:
    """A socket listening on 127.0.0.1 in this process; yields its port."""
    sock = socket.create_server(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


class Remote:
    """A provider object with a URL, as the HTTP providers have."""

    supports_streaming = False

    def __init__(self, url: str) -> None:
        self.url = url

    async def generate(self, prompt: str) -> str:
        return ANSWER


class TestMemoryPid:
    def test_auto_finds_the_process_listening_on_the_providers_port(self, listener: int) -> None:
        target = memory_target("auto", Remote(f"http://127.0.0.1:{listener}/v1/x"), "spec")
        assert target.pid == os.getpid()
        assert target.source == f"auto: listening on 127.0.0.1:{listener}"
        assert target.line == f"memory: pid {os.getpid()} (listening on 127.0.0.1:{listener})"

    def test_localhost_counts_as_loopback(self, listener: int) -> None:
        target = memory_target("auto", Remote(f"http://localhost:{listener}"), "spec")
        assert target.pid == os.getpid()

    def test_the_default_measures_this_process_and_says_so(self) -> None:
        target = memory_target(None, Remote("http://127.0.0.1:1"), "spec")
        assert (target.pid, target.source) == (None, "self")
        assert target.line == f"memory: this process (pid {os.getpid()})"

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("http://10.1.2.3:8080/v1", "10.1.2.3 is not this machine's loopback"),
            ("https://example.invalid/v1", "example.invalid is not this machine's loopback"),
            ("http://127.0.0.1:99999/v1", "bad port"),
        ],
    )
    def test_auto_refuses_what_it_cannot_measure(self, url: str, message: str) -> None:
        with pytest.raises(Exception, match=message):
            memory_target("auto", Remote(url), "spec")

    def test_auto_with_nothing_listening_says_so(self) -> None:
        sock = socket.create_server(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()  # the port is free now
        with pytest.raises(Exception, match=f"nothing listens on 127.0.0.1:{port}"):
            find_listener("127.0.0.1", port)

    def test_auto_without_permission_to_list_sockets_says_so(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def denied(kind: str = "inet") -> list[Any]:
            raise psutil.AccessDenied()

        monkeypatch.setattr(psutil, "net_connections", denied)
        with pytest.raises(Exception, match="not permitted to list this machine's sockets"):
            find_listener("127.0.0.1", 8080)

    def test_the_first_line_of_run_names_the_measured_process(
        self,
        suite: tuple[Path, str],
        tmp_path: Path,
        listener: int,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        provider_file = tmp_path / "remote.py"
        provider_file.write_text(
            "class P:\n    supports_streaming = False\n"
            f"    url = 'http://127.0.0.1:{listener}/v1'\n"
            f"    async def generate(self, prompt):\n        return {ANSWER!r}\n"
        )
        out = tmp_path / "r.json"
        path, _ = suite
        spec = f"python:{provider_file}:P"
        assert run((path, spec), out, "--memory-pid", "auto") == 0
        first = capsys.readouterr().out.splitlines()[0]
        assert first == f"memory: pid {os.getpid()} (listening on 127.0.0.1:{listener})"
        metadata = decode_report(out.read_bytes()).metadata
        assert metadata.memory_pid == os.getpid()
        assert metadata.memory_pid_source == f"auto: listening on 127.0.0.1:{listener}"

    def test_without_the_option_the_first_line_says_this_process(
        self, suite: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = tmp_path / "r.json"
        assert run(suite, out) == 0
        assert capsys.readouterr().out.startswith(f"memory: this process (pid {os.getpid()})\n")
        metadata = decode_report(out.read_bytes()).metadata
        assert (metadata.memory_pid, metadata.memory_pid_source) == (os.getpid(), "self")


def test_an_unreachable_server_is_one_line_naming_the_url_and_exit_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    path = tmp_path / "s.json"
    tasks = [{"id": f"t{i}", "prompt": "p"} for i in range(20)]
    path.write_text(json.dumps({"tasks": tasks}))
    url = f"http://127.0.0.1:{port}/v1"
    assert run((path, f"openai:m@{url}"), tmp_path / "r.json") == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and url in captured.err, captured.err
    assert captured.err.count("orket-pipeline") == 1
    assert "Traceback" not in captured.err
    if (tmp_path / "r.json").exists():  # stopped mid-suite: finished runs kept, no more
        assert len(decode_report((tmp_path / "r.json").read_bytes()).test_runs) < 20


def errored(test_id: str, error_type: str, message: str) -> TestRun:
    return TestRun(
        test_id=test_id, outcome="error", error=RunError(type=error_type, message=message)
    )


REFUSED = "openai:m@http://127.0.0.1:9/v1: cannot connect: [Errno 111] Connection refused"
MID_REPLY = "openai:m: connection broken: peer closed connection without sending complete message"


def report_of(runs: list[TestRun], concurrency: int | None, tmp_path: Path) -> Path:
    metadata = Metadata(concurrency=concurrency, max_in_flight=concurrency)
    path = tmp_path / "r.json"
    write_report(path, Report(metadata=metadata, test_runs=runs))
    return path


class TestUnderTheSummary:
    def test_errors_are_grouped_by_cause(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        runs = [errored(f"r{i}", "ProviderConnectionError", REFUSED) for i in range(10)]
        runs += [
            errored(f"n{i}", "ProviderResponseError", "x: HTTP 404 from h: no") for i in (1, 2)
        ]
        path = report_of(runs, 1, tmp_path)
        assert main(["report", str(path)]) == 0
        out = capsys.readouterr().out
        assert "12 errors: 10 connection refused, 2 HTTP 404 (wrong base URL or model?)" in out
        assert "concurrency 1, max in flight 1" in out
        assert "hint" not in out

    def test_connections_closed_mid_reply_under_concurrency_give_the_hint(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        runs = [errored(f"r{i}", "ProviderConnectionError", MID_REPLY) for i in range(9)]
        runs.append(TestRun(test_id="ok", outcome="pass"))
        assert main(["report", str(report_of(runs, 4, tmp_path))]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "9 errors: 9 connection closed mid-reply" in out
        assert "--interrupt_requests" in out and "--concurrency 1" in out

    def test_no_hint_at_concurrency_one(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        runs = [errored(f"r{i}", "ProviderConnectionError", MID_REPLY) for i in range(9)]
        assert main(["report", str(report_of(runs, 1, tmp_path))]) == 0
        assert "interrupt_requests" not in capsys.readouterr().out

    def test_a_hostile_error_type_in_the_causes_line_stays_text(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        runs = [errored("x", "\x1b[2JEvil[/bold]", "")]
        assert main(["report", str(report_of(runs, None, tmp_path))]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\\x1b[2JEvil[/bold]" in out


def timed(test_id: str, init: float) -> TestRun:
    return TestRun(test_id=test_id, outcome="pass", telemetry=Telemetry(init_latency=init))


@pytest.mark.parametrize(
    ("inits", "concurrency", "hinted"),
    [
        ([0.12, 2.0, 8.7, 9.0, 9.5], 4, True),  # queued behind each other at the server
        ([0.12, 0.13, 0.12, 0.14, 0.15], 4, False),  # served side by side
        ([0.12, 2.0, 8.7, 9.0, 9.5], 1, False),  # nothing to queue behind
    ],
)
def test_init_latency_that_looks_like_queue_time_gets_a_hint(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    inits: list[float],
    concurrency: int,
    hinted: bool,
) -> None:
    runs = [timed(f"t{i}", init) for i, init in enumerate(inits)]
    assert main(["report", str(report_of(runs, concurrency, tmp_path))]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("init_latency includes queue time" in out) is hinted


@pytest.fixture
def aborting_server() -> Iterator[str]:
    """A loopback server that answers every POST with the start of an SSE stream and then
    closes the connection, as llama-cpp-python does with `--interrupt_requests` when another
    request arrives; any other request gets an empty 200. Yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                request = conn.recv(65536)
            except OSError:
                return
            if not request.startswith(b"POST"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                return
            event = b'data: {"choices": [{"delta": {"content": "def "}}]}\n\n'
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            head += b"Transfer-Encoding: chunked\r\n\r\n"
            conn.sendall(head + b"%x\r\n%s\r\n" % (len(event), event))
            # End with a FIN, never a RST: closing with part of the request unread (its body
            # may come in a later segment) would reset the connection, and the client could
            # then lose the event before it reads it: another error than a stream cut short.
            conn.shutdown(socket.SHUT_WR)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_a_server_aborting_overlapping_requests_gets_the_interrupt_requests_hint(
    tmp_path: Path, aborting_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"tasks": [{"id": f"t{i}", "prompt": "p"} for i in range(4)]}))
    out = tmp_path / "r.json"
    spec = f"openai:m@{aborting_server}"
    assert run((path, spec), out, "--concurrency", "2", "--retries", "0") == 1
    text = " ".join(capsys.readouterr().out.split())
    assert "4 errors: 4 connection closed mid-reply" in text
    assert "--interrupt_requests False" in text
    assert len(decode_report(out.read_bytes()).test_runs) == 4  # alive: never stopped early


def test_token_totals_and_time_per_token_are_under_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [
        TestRun(
            test_id=f"t{i}",
            outcome="pass",
            telemetry=Telemetry(
                prompt_tokens=prompt, completion_tokens=completion, time_per_output_token=tpot
            ),
        )
        for i, (prompt, completion, tpot) in enumerate([(10, 5, 0.02), (12, 7, 0.04)])
    ]
    assert main(["report", str(report_of(runs, 2, tmp_path))]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "tokens: 22 prompt, 12 completion; time per output token p50 0.020 s" in out
    assert "concurrency 2, max in flight 2" in out
