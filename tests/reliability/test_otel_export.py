"""`run --otel` end to end: OTLP/HTTP to a real endpoint on loopback, decoded as it arrives;
and an unreachable collector, which changes no outcome, loses no run and holds no close."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from orket_pipeline.report._model import decode_report
from orket_pipeline.telemetry import TelemetryPipeline
from tests.providers_fakes import Instant

CLI = [sys.executable, "-m", "orket_pipeline", "run"]
DEMO_RUNS = 10


class Collector(ThreadingHTTPServer):
    """Accepts OTLP/HTTP protobuf POSTs on /v1/traces and /v1/metrics; keeps the bodies."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: dict[str, list[bytes]] = {"/v1/traces": [], "/v1/metrics": []}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[Any]:
        found = []
        for body in self.bodies["/v1/traces"]:
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    found.extend(scope.spans)
        return found

    def metric_names(self) -> set[str]:
        names = set()
        for body in self.bodies["/v1/metrics"]:
            request = ExportMetricsServiceRequest.FromString(body)
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    names.update(metric.name for metric in scope.metrics)
        return names


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        known = self.path in self.server.bodies
        if known and self.headers.get("Content-Type") == "application/x-protobuf":
            self.server.bodies[self.path].append(body)
        self.send_response(200 if known else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run_demo(tmp_path: Path, *args: str, endpoint: str | None = None) -> dict[str, str]:
    env = {**os.environ, "OTEL_SERVICE_NAME": "orket-test"}
    env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
    env.pop("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", None)
    if endpoint is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    out = tmp_path / f"report{len(list(tmp_path.iterdir()))}.json"
    result = subprocess.run(
        [*CLI, "--demo", "--quiet", "--out", str(out), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 1, result.stderr  # the demo fails some runs on purpose
    assert "Traceback" not in result.stderr
    report = decode_report(out.read_bytes())
    return {run.test_id: run.outcome for run in report.test_runs}


@pytest.mark.slow
def test_run_otel_sends_one_span_per_generation_to_the_collector(
    tmp_path: Path, collector: Collector
) -> None:
    outcomes = run_demo(tmp_path, "--otel", endpoint=collector.endpoint)
    spans = collector.spans()
    by_test = {}
    for span in spans:
        attributes = {a.key: a.value for a in span.attributes}
        by_test[attributes["orket.test_id"].string_value] = attributes
        assert span.start_time_unix_nano < span.end_time_unix_nano
        assert span.name.startswith("text_completion replay:")
    assert len(spans) == DEMO_RUNS and set(by_test) == set(outcomes)
    for test_id, outcome in outcomes.items():
        assert by_test[test_id]["orket.outcome"].string_value == outcome
        assert by_test[test_id]["gen_ai.operation.name"].string_value == "text_completion"
    assert "gen_ai.client.operation.duration" in collector.metric_names()


@pytest.mark.slow
def test_an_unreachable_collector_changes_no_outcome_and_loses_no_run(tmp_path: Path) -> None:
    without = run_demo(tmp_path)
    assert run_demo(tmp_path, "--otel", endpoint=closed_port()) == without
    assert len(without) == DEMO_RUNS


@pytest.mark.anyio
async def test_an_unreachable_collector_holds_the_close_no_longer_than_the_drain_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Elapsed time is what is under test: the close must honour its deadline.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", closed_port())
    drain_timeout = 2.0
    pipeline = TelemetryPipeline(drain_timeout=drain_timeout, otel=True)
    async with pipeline:
        for index in range(20):
            await pipeline.generate(f"t{index}", Instant(), "p")
            pipeline.record_outcome(f"t{index}", "pass")
        started = time.monotonic()
    assert time.monotonic() - started < drain_timeout + 1.0
    runs = pipeline.report.test_runs
    assert [run.outcome for run in runs] == ["pass"] * 20
    assert pipeline.report.metadata.pipeline is not None
    assert pipeline.report.metadata.pipeline.stage_errors.get("otel export", 0) >= 1
