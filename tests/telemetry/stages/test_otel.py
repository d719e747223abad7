"""OtelExporter: one GenAI span per generation at the wrapper's stamps, and the client metrics.

In-memory exporters here; tests/reliability/test_otel_export.py sends them over OTLP/HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from orket_pipeline.constraints import Constraints
from orket_pipeline.providers import Chunk
from orket_pipeline.telemetry import TelemetryPipeline
from orket_pipeline.telemetry._events import GenerationFinished
from orket_pipeline.telemetry.stages.otel import (
    DURATION_BUCKETS,
    OtelExport,
    OtelExporter,
)
from tests.providers_fakes import Failing, Instant, Streaming


class Export:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.export = OtelExport(tracer_provider, MeterProvider(metric_readers=[self.reader]))

    def by_test(self) -> dict[str, ReadableSpan]:
        return {str(s.attributes["orket.test_id"]): s for s in self.spans.get_finished_spans()}

    def histograms(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }


async def run_two(export: Export, provider: str) -> tuple[TelemetryPipeline, list[Any]]:
    """A streamed run that passes (with constraints) and a failing run that errors."""
    pipeline = TelemetryPipeline(provider=provider, otel=export.export)
    published: list[Any] = []
    publish = pipeline._publish

    def spy(event: Any) -> None:
        published.append(event)
        publish(event)

    pipeline._publish = spy
    async with pipeline:
        streaming = Streaming([(0.0, "x = "), (0.0, "1\n")])
        await pipeline.generate("ok", streaming, "p", Constraints(regex_required=("x",)))
        pipeline.record_outcome("ok", "pass")
        with pytest.raises(ConnectionError):
            await pipeline.generate("bad", Failing(ConnectionError("refused")), "p")
        pipeline.record_outcome("bad", "error", "provider failed")
    return pipeline, published


def stage_of(pipeline: TelemetryPipeline) -> OtelExporter:
    return next(s for s in pipeline._stages if isinstance(s, OtelExporter))


@pytest.mark.anyio
async def test_one_span_per_generation_at_the_wrappers_own_stamps() -> None:
    export = Export()
    pipeline, published = await run_two(export, "ollama:llama3.2@http://127.0.0.1:11434")
    spans = export.by_test()
    assert set(spans) == {"ok", "bad"}
    stage = stage_of(pipeline)
    for event in published:
        if type(event) is GenerationFinished:
            span = spans[event.test_id]
            assert span.start_time == stage.to_epoch_ns(event.t_started)
            assert span.end_time == stage.to_epoch_ns(event.t_perf)
    ok, bad = spans["ok"], spans["bad"]
    assert ok.name == "text_completion llama3.2" and ok.kind is SpanKind.CLIENT
    assert dict(ok.attributes or {}) == {
        "gen_ai.operation.name": "text_completion",
        "gen_ai.request.model": "llama3.2",
        "gen_ai.provider.name": "ollama",
        "orket.test_id": "ok",
        "orket.outcome": "pass",
        "orket.adherence_score": 1.0,
    }
    assert ok.status.status_code is StatusCode.UNSET
    assert bad.attributes is not None
    assert bad.attributes["error.type"] == "ConnectionError"
    assert bad.attributes["orket.outcome"] == "error"
    assert "orket.adherence_score" not in bad.attributes
    assert bad.status.status_code is StatusCode.ERROR


@pytest.mark.anyio
async def test_the_spans_end_where_the_report_says_the_run_ended() -> None:
    # The offset is epoch minus perf_counter, so a span's length is the run's total latency.
    export = Export()
    pipeline, _ = await run_two(export, "openai:m@http://127.0.0.1:8000/v1")
    spans = export.by_test()
    for run in pipeline.report.test_runs:
        span = spans[run.test_id]
        assert span.name == "chat m"
        assert run.telemetry is not None and span.end_time is not None
        assert span.start_time is not None
        length = (span.end_time - span.start_time) / 1e9
        assert length == pytest.approx(run.telemetry.total_latency, abs=1e-3)


@pytest.mark.anyio
async def test_client_metrics_are_histograms_with_the_advised_buckets() -> None:
    export = Export()
    await run_two(export, "replay:cassette.jsonl")
    metrics = export.histograms()
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    points = {p.attributes.get("error.type"): p for p in duration.data.data_points}
    assert set(points) == {None, "ConnectionError"}
    assert tuple(points[None].explicit_bounds) == DURATION_BUCKETS
    assert points[None].attributes["gen_ai.request.model"] == "replay:cassette.jsonl"
    assert "gen_ai.provider.name" not in points[None].attributes
    # Streaming only: the failing provider does not stream, so one point with one count.
    (first,) = metrics["gen_ai.client.operation.time_to_first_chunk"].data.data_points
    assert first.count == 1 and tuple(first.explicit_bounds) == DURATION_BUCKETS
    # No provider reports tokens yet: no token metric rather than a made-up one.
    assert "gen_ai.client.token.usage" not in metrics


class WithUsage:
    supports_streaming = True

    async def stream(self, prompt: str) -> AsyncIterator[object]:
        yield "x = 1\n"
        yield Chunk(prompt_tokens=7, completion_tokens=1)
        yield Chunk(completion_tokens=4)  # a later count replaces an earlier one


@pytest.mark.anyio
async def test_the_servers_token_counts_become_span_attributes_and_the_token_metric() -> None:
    export = Export()
    async with TelemetryPipeline(provider="openai:m@http://h/v1", otel=export.export) as pipeline:
        await pipeline.generate("t", WithUsage(), "p")  # type: ignore[arg-type]
        pipeline.record_outcome("t", "pass")
    attributes = export.by_test()["t"].attributes
    assert attributes is not None
    assert attributes["gen_ai.usage.input_tokens"] == 7
    assert attributes["gen_ai.usage.output_tokens"] == 4
    points = export.histograms()["gen_ai.client.token.usage"].data.data_points
    assert {p.attributes["gen_ai.token.type"]: p.sum for p in points} == {"input": 7, "output": 4}


@pytest.mark.anyio
async def test_a_run_whose_outcome_never_comes_is_still_exported_at_close() -> None:
    export = Export()
    async with TelemetryPipeline(provider="python:m:f", otel=export.export) as pipeline:
        await pipeline.generate("lost", Instant(), "p")
    (span,) = export.spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["orket.test_id"] == "lost"
    assert "orket.outcome" not in span.attributes


@pytest.mark.anyio
async def test_retries_give_one_span_each_all_with_the_runs_outcome() -> None:
    export = Export()
    async with TelemetryPipeline(provider="python:m:f", otel=export.export) as pipeline:
        with pytest.raises(TimeoutError):
            await pipeline.generate("t", Failing(TimeoutError()), "p")
        await pipeline.generate("t", Instant(), "p")
        pipeline.record_outcome("t", "pass")
    spans = export.spans.get_finished_spans()
    assert [s.attributes.get("error.type") for s in spans if s.attributes] == ["TimeoutError", None]
    assert {s.attributes["orket.outcome"] for s in spans if s.attributes} == {"pass"}
