"""The telemetry core: the wrapper publishes events onto the bus, stages turn them into runs.

```
_events.py        the typed events (frozen msgspec Structs in one union): facts and parts
_call.py          calling a provider: the one function the wrapper and --no-telemetry share
_wrapper.py       the generation wrapper: the only code on the engine's path
_bus.py           one queue filled by a publish that never awaits; the scheduler that routes
                  it into each stage's inbox and wakes the stages in batches
stages/           one stage per module: latency, memory, constraints, the report aggregator,
                  and the optional OpenTelemetry exporter (otel.py, the `otel` extra)
_memory_probe.py  peak RSS segments from the kernel's high-water mark (or polling)
_hwm.py           reading and resetting that mark (Linux), one holder per pid
_lag.py           the event loop's lag, as the pipeline sees it
_pipeline.py      TelemetryPipeline: owns the bus, the stages' task group and the report
```
"""

from ._pipeline import TelemetryPipeline as TelemetryPipeline
from .stages.otel import OtelExport as OtelExport

__all__ = ["OtelExport", "TelemetryPipeline"]
