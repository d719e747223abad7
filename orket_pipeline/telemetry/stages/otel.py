"""OtelExporter: one OpenTelemetry GenAI span per generation, and the GenAI client metrics.

An optional stage (`TelemetryPipeline(otel=...)`, `run --otel`), wired like the others: it reads
the bus in batches, never the engine's path. The span of a generation starts and ends at the
wrapper's own dispatch and completion stamps (`perf_counter`, turned into epoch nanoseconds with
one offset measured when the pipeline opens), not when this stage runs. Its outcome arrives
later (`OutcomeRecorded`), so the finished generation is held until then (or until close), at
most `max_held` runs at a time.

The OpenTelemetry SDK is an optional extra (``pip install 'orket-pipeline[otel]'``), imported
only when the stage is built. Export happens in the SDK's own threads (BatchSpanProcessor,
PeriodicExportingMetricReader, OTLP/HTTP configured by the standard ``OTEL_*`` variables);
an export that fails is logged once and counted (the report's `pipeline.stage_errors` under
``"otel export"``), never raised, and never changes an outcome.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ..._exceptions import InputError
from .._events import AdherenceScored, Event, GenerationFinished, OutcomeRecorded
from ._base import Stage, StageErrors

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram, MeterProvider
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["DURATION_BUCKETS", "TOKEN_BUCKETS", "OtelExport", "OtelExporter", "require_otel"]

logger = logging.getLogger("orket_pipeline")

INSTALL_HINT = "pip install 'orket-pipeline[otel]'"
#: The conventions' advised boundaries for `gen_ai.client.operation.duration` and
#: `gen_ai.client.operation.time_to_first_chunk` (seconds).
DURATION_BUCKETS: tuple[float, ...] = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)
DURATION_BUCKETS += (2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
#: The conventions' advised boundaries for `gen_ai.client.token.usage`.
TOKEN_BUCKETS = tuple(4**k for k in range(14))  # 1, 4, 16, ... 67108864
_ERRORS_KEY = "otel export"
_URL_SPLIT = re.compile(r"@(?=https?://)")
# What each provider scheme calls: (gen_ai.operation.name, gen_ai.provider.name or None).
_SCHEMES = {"openai": ("chat", "openai"), "ollama": ("text_completion", "ollama")}


def require_otel() -> None:
    """Raise `InputError` (one line naming the extra) when the OpenTelemetry SDK or its
    OTLP/HTTP exporter is not installed. Never blocks."""
    try:
        import opentelemetry.exporter.otlp.proto.http
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        raise InputError(f"--otel needs the OpenTelemetry extra: {INSTALL_HINT}") from None


class OtelExport:
    """Where the spans and metrics go: the given providers, or, for each one not given, an SDK
    provider exporting over OTLP/HTTP as the ``OTEL_*`` environment variables say.

    Providers given are flushed at close but not shut down (they are the caller's); those built
    here are shut down.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider


class _Held:
    __slots__ = ("generations", "outcome")

    def __init__(self) -> None:
        # Each generation of the run (a retry makes several), with its score once it came.
        self.generations: list[list[Any]] = []  # [GenerationFinished, scored, score]
        self.outcome: str | None = None


class OtelExporter(Stage):
    """Emits one GenAI span per finished generation and records the client metrics.

    Args:
        errors: the pipeline's error counter (export failures are counted under
            ``"otel export"``).
        export: the providers to use (`OtelExport`); None: both from the environment.
        provider: the provider spec (``ollama:MODEL``...), for the model and operation names.
        flush_timeout: seconds the close waits for the last export at most.
        max_held: runs held waiting for their outcome; the oldest is emitted without one
            beyond this.

    Raises `InputError` when the OpenTelemetry SDK is not installed.
    """

    name = "otel"
    event_types = (GenerationFinished, AdherenceScored, OutcomeRecorded)

    def __init__(
        self,
        errors: StageErrors,
        export: OtelExport | None = None,
        *,
        provider: str | None = None,
        flush_timeout: float = 3.0,
        max_held: int = 10_000,
    ) -> None:
        super().__init__(errors)
        require_otel()
        export = export or OtelExport()
        self._owned: list[Any] = []  # what we built, to shut down at close
        self._exporters: list[Any] = []
        tracer_provider, meter_provider = export.tracer_provider, export.meter_provider
        if tracer_provider is None or meter_provider is None:
            from . import _otel_sdk as sdk  # the extra, checked above

            if tracer_provider is None:
                tracer_provider, span_exporter = sdk.otlp_tracer_provider(self._export_failed)
                self._owned.append(tracer_provider)
                self._exporters.append(span_exporter)
            if meter_provider is None:
                meter_provider, metric_exporter = sdk.otlp_meter_provider(self._export_failed)
                self._owned.append(meter_provider)
                self._exporters.append(metric_exporter)
        self._tracer_provider, self._meter_provider = tracer_provider, meter_provider
        self._operation, self._model, self._provider = _names(provider)
        self._flush_timeout = flush_timeout
        self._max_held = max_held
        self._held: dict[str, _Held] = {}
        self._late = False
        self._closing = False
        #: `time.time_ns() - perf_counter_ns()`, measured once when the pipeline opens.
        self.epoch_offset_ns = _epoch_offset_ns()
        self._tracer: Tracer = self._tracer_provider.get_tracer("orket_pipeline")
        meter = self._meter_provider.get_meter("orket_pipeline")
        self._duration: Histogram = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._first_chunk: Histogram = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._tokens: Histogram = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )

    def prepare(self) -> None:
        """Measure the clock offset at pipeline start; see `Stage.prepare`."""
        super().prepare()
        self.epoch_offset_ns = _epoch_offset_ns()

    # -- the bus -------------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Hold a generation until its outcome; emit its span then. Never blocks."""
        kind = type(event)
        if kind is GenerationFinished:
            self._record_metrics(event)  # type: ignore[arg-type]
            held = self._held.get(event.test_id)
            if held is None:
                if len(self._held) >= self._max_held:
                    oldest = next(iter(self._held))
                    self._emit(oldest, self._held.pop(oldest))
                held = self._held[event.test_id] = _Held()
            held.generations.append([event, False, None])
            return
        held = self._held.get(event.test_id)
        if held is None:
            return  # a run with no generation has no span
        if kind is AdherenceScored:
            for generation in held.generations:
                if not generation[1]:
                    generation[1], generation[2] = True, event.score  # type: ignore[union-attr]
                    break
        elif kind is OutcomeRecorded:
            held.outcome = event.outcome  # type: ignore[union-attr]
        if held.outcome is not None and all(g[1] for g in held.generations):
            del self._held[event.test_id]
            self._emit(event.test_id, held)

    async def stop(self, scope: anyio.CancelScope) -> None:
        """See `Stage.stop`; past the deadline the last export is not waited for."""
        self._late = True
        await super().stop(scope)

    async def finish(self) -> None:
        """Emit what is still held, then flush and shut down the export, waiting
        `flush_timeout` at most (never past the drain deadline: the wait is abandoned)."""
        held, self._held = self._held, {}
        for test_id, run in held.items():
            self._emit(test_id, run)
        flushed: bool | None = None
        if not self._late:
            with anyio.move_on_after(self._flush_timeout):
                flushed = await anyio.to_thread.run_sync(self._flush, abandon_on_cancel=True)
        if not flushed:
            # Not sent in time (an unreachable collector retries for many seconds): counted,
            # and the exporters are shut down first, which ends their retries.
            self._export_failed("the last batch")
        self._closing = True  # what the shutdown itself fails to send is not counted again
        closing = (*(() if flushed else self._exporters), *self._owned)
        if flushed:
            with anyio.move_on_after(self._flush_timeout):
                await anyio.to_thread.run_sync(_shut_down, closing, abandon_on_cancel=True)
        else:
            threading.Thread(target=_shut_down, args=(closing,), daemon=True).start()

    # -- spans and metrics ---------------------------------------------------------------------

    def _attributes(self, error_type: str | None) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": self._operation,
            "gen_ai.request.model": self._model,
        }
        if self._provider is not None:
            attributes["gen_ai.provider.name"] = self._provider
        if error_type is not None:
            attributes["error.type"] = error_type
        return attributes

    def _record_metrics(self, finished: GenerationFinished) -> None:
        attributes = self._attributes(finished.error_type)
        self._duration.record(finished.t_perf - finished.t_started, attributes)
        if finished.streaming and finished.t_first_chunk is not None:
            self._first_chunk.record(finished.t_first_chunk - finished.t_started, attributes)
        for token_type, count in _token_counts(finished):
            self._tokens.record(count, {**attributes, "gen_ai.token.type": token_type})

    def _emit(self, test_id: str, held: _Held) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        for finished, _, score in held.generations:
            attributes = self._attributes(finished.error_type)
            for token_type, count in _token_counts(finished):
                attributes[f"gen_ai.usage.{token_type}_tokens"] = count
            attributes["orket.test_id"] = test_id
            if held.outcome is not None:
                attributes["orket.outcome"] = held.outcome
            if score is not None:
                attributes["orket.adherence_score"] = score
            span = self._tracer.start_span(
                f"{self._operation} {self._model}",
                kind=SpanKind.CLIENT,
                attributes=attributes,
                start_time=self.to_epoch_ns(finished.t_started),
            )
            if finished.error_type is not None:
                span.set_status(Status(StatusCode.ERROR, finished.error_message))
            span.end(end_time=self.to_epoch_ns(finished.t_perf))

    def to_epoch_ns(self, t_perf: float) -> int:
        """A wrapper's `perf_counter()` stamp as epoch nanoseconds. Never raises."""
        return self.epoch_offset_ns + round(t_perf * 1e9)

    # -- the export ----------------------------------------------------------------------------

    def _export_failed(self, what: str) -> None:
        # Called from the SDK's export threads: a dict update under the GIL, and one log line.
        if self._closing:
            return
        counts = self.errors.counts
        first = _ERRORS_KEY not in counts
        counts[_ERRORS_KEY] = counts.get(_ERRORS_KEY, 0) + 1
        if first:
            logger.warning(
                "orket-pipeline could not export %s over OTLP (%s); further failures "
                "are only counted (pipeline.stage_errors)",
                what,
                os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
            )

    def _flush(self) -> bool:
        """Flush both providers within `flush_timeout`: the spans first, the metrics with what
        is left. Runs in a thread; never raises. (The SDK's span flush may block longer than
        asked: `finish` abandons the wait.)"""
        deadline = time.monotonic() + self._flush_timeout
        flushed = True
        for provider in (self._tracer_provider, self._meter_provider):
            timeout_ms = max(1, int((deadline - time.monotonic()) * 1000))
            try:
                done = getattr(provider, "force_flush", lambda **_: True)(timeout_millis=timeout_ms)
            except Exception:
                done = False
            flushed = flushed and done is not False
        return flushed


def _shut_down(closables: tuple[Any, ...]) -> None:
    """Shut each down in order. Blocks (run it in a thread); never raises."""
    for closable in closables:
        with contextlib.suppress(Exception):
            closable.shutdown()


def _names(provider: str | None) -> tuple[str, str, str | None]:
    """(operation, model, provider name) from a provider spec: the spec's model when it has
    one (``ollama:MODEL@URL``), else the spec itself."""
    spec = provider or "unknown"
    scheme, _, value = spec.partition(":")
    operation, provider_name = _SCHEMES.get(scheme, ("text_completion", None))
    if scheme in _SCHEMES and value:
        return operation, _URL_SPLIT.split(value, maxsplit=1)[0], provider_name
    return operation, spec, provider_name


def _token_counts(finished: GenerationFinished) -> list[tuple[str, int]]:
    """The generation's token counts as the server sent them (input: prompt, output:
    completion), the last value of each winning."""
    found: dict[str, int] = {}
    for chunk in finished.facts or ():
        for token_type, count in (
            ("input", chunk.prompt_tokens),
            ("output", chunk.completion_tokens),
        ):
            if type(count) is int and count >= 0:
                found[token_type] = count
    return list(found.items())


def _epoch_offset_ns() -> int:
    return time.time_ns() - time.perf_counter_ns()
