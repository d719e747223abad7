"""The OpenTelemetry SDK side of `OtelExporter`: providers exporting over OTLP/HTTP, as the
standard ``OTEL_*`` environment variables configure them, whose exporters report each failed
export (the stage counts them). Imported only with the `otel` extra installed."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

__all__ = ["otlp_meter_provider", "otlp_tracer_provider"]

OnFailure = Callable[[str], None]


class _SpanExporter(OTLPSpanExporter):
    def __init__(self, on_failure: OnFailure) -> None:
        super().__init__()
        self._on_failure = on_failure

    def export(self, spans: Any) -> SpanExportResult:
        result = super().export(spans)
        if result is not SpanExportResult.SUCCESS:
            self._on_failure("spans")
        return result


class _MetricExporter(OTLPMetricExporter):
    def __init__(self, on_failure: OnFailure) -> None:
        super().__init__()
        self._on_failure = on_failure

    def export(self, *args: Any, **kwargs: Any) -> MetricExportResult:
        result = super().export(*args, **kwargs)
        if result is not MetricExportResult.SUCCESS:
            self._on_failure("metrics")
        return result


def otlp_tracer_provider(on_failure: OnFailure) -> tuple[TracerProvider, OTLPSpanExporter]:
    """A TracerProvider batching spans to OTLP/HTTP, and its exporter. `on_failure` is called
    (from the SDK's thread) for each failed export; it must not raise."""
    _quiet(OTLPSpanExporter.__module__)
    exporter = _SpanExporter(on_failure)
    # No atexit shutdown: the stage closes it, and an unreachable collector must not hold the
    # process's exit.
    provider = TracerProvider(resource=_resource(), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, exporter


def otlp_meter_provider(on_failure: OnFailure) -> tuple[MeterProvider, OTLPMetricExporter]:
    """A MeterProvider exporting periodically (and at close) to OTLP/HTTP, and its exporter."""
    _quiet(OTLPMetricExporter.__module__)
    exporter = _MetricExporter(on_failure)
    reader = PeriodicExportingMetricReader(exporter)
    provider = MeterProvider(resource=_resource(), metric_readers=[reader], shutdown_on_exit=False)
    return provider, exporter


class _Quiet(logging.Filter):
    """Drops the exporter's own warnings (one per retry): the stage logs the first failure
    once, with the endpoint, and counts the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def _quiet(module: str) -> None:
    exporter_logger = logging.getLogger(module)
    if not any(isinstance(f, _Quiet) for f in exporter_logger.filters):
        exporter_logger.addFilter(_Quiet())


def _resource() -> Resource:
    # `OTEL_SERVICE_NAME` or a service.name in `OTEL_RESOURCE_ATTRIBUTES` wins over ours.
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    return Resource.create({} if named else {"service.name": "orket-pipeline"})
