"""orket-pipeline: telemetry beside every LLM test run.

The generation wrapper (`TelemetryPipeline.generate`) publishes typed events onto a
non-blocking bus; independent stages turn them into each run's latency, peak memory and
adherence score, and the report aggregator writes `orket_report.json`.

```
telemetry/    events, bus, wrapper, pipeline, probes, stages/   (the engine's path and its stages)
report/       the report model, reader/writer, journal, summary, merge, compare
engine/       suites, the run loop, gates, sandbox/              (the reference engine)
providers/    python, replay, openai, ollama
constraints/  the pure validator
cli/          argument parsing and rendering
```
"""

from ._exceptions import ConstraintError as ConstraintError
from ._exceptions import InputError as InputError
from ._exceptions import OrketError as OrketError
from ._exceptions import PipelineClosedError as PipelineClosedError
from ._exceptions import ProviderCallError as ProviderCallError
from ._exceptions import ProviderConnectionError as ProviderConnectionError
from ._exceptions import ProviderError as ProviderError
from ._exceptions import ProviderResponseError as ProviderResponseError
from ._exceptions import ProviderTimeoutError as ProviderTimeoutError
from ._exceptions import ReplayError as ReplayError
from ._exceptions import ReportFormatError as ReportFormatError
from ._exceptions import SuiteError as SuiteError
from ._version import __version__ as __version__
from .constraints import AstRule as AstRule
from .constraints import Constraints as Constraints
from .constraints import ConstraintValidator as ConstraintValidator
from .constraints import ValidationResult as ValidationResult
from .engine import RunResult as RunResult
from .engine import Suite as Suite
from .engine import Task as Task
from .engine import load_suite as load_suite
from .engine import run_suite as run_suite
from .providers import Chunk as Chunk
from .providers import Provider as Provider
from .providers import load_provider as load_provider
from .report import Metadata as Metadata
from .report import PipelineStatistics as PipelineStatistics
from .report import Report as Report
from .report import RunError as RunError
from .report import Telemetry as Telemetry
from .report import TestRun as TestRun
from .report import compare_reports as compare_reports
from .report import merge_reports as merge_reports
from .report import read_report as read_report
from .report import write_report as write_report
from .telemetry import TelemetryPipeline as TelemetryPipeline

__all__ = [
    "AstRule",
    "Chunk",
    "ConstraintError",
    "ConstraintValidator",
    "Constraints",
    "InputError",
    "Metadata",
    "OrketError",
    "PipelineClosedError",
    "PipelineStatistics",
    "Provider",
    "ProviderCallError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "ReplayError",
    "Report",
    "ReportFormatError",
    "RunError",
    "RunResult",
    "Suite",
    "SuiteError",
    "Task",
    "Telemetry",
    "TelemetryPipeline",
    "TestRun",
    "ValidationResult",
    "__version__",
    "compare_reports",
    "load_provider",
    "load_suite",
    "merge_reports",
    "read_report",
    "run_suite",
    "write_report",
]
