"""orket-pipeline: telemetry beside every LLM test run.

The generation wrapper (`TelemetryPipeline.generate`) publishes typed events onto a
non-blocking bus; independent stages turn them into each run's latency, peak memory and
adherence score, and the report aggregator writes `orket_report.json`.
"""

from ._exceptions import ConstraintError as ConstraintError
from ._exceptions import InputError as InputError
from ._exceptions import OrketError as OrketError
from ._exceptions import PipelineClosedError as PipelineClosedError
from ._exceptions import ProviderError as ProviderError
from ._exceptions import ReportFormatError as ReportFormatError
from ._exceptions import SuiteError as SuiteError
from ._pipeline import TelemetryPipeline as TelemetryPipeline
from ._report import Metadata as Metadata
from ._report import PipelineStatistics as PipelineStatistics
from ._report import Report as Report
from ._report import RunError as RunError
from ._report import Telemetry as Telemetry
from ._report import TestRun as TestRun
from ._rounding import round3 as round3
from ._version import __version__ as __version__
from .constraints import AstRule as AstRule
from .constraints import Constraints as Constraints
from .constraints import ConstraintValidator as ConstraintValidator
from .constraints import ValidationResult as ValidationResult
from .providers import Provider as Provider

__all__ = [
    "AstRule",
    "ConstraintError",
    "ConstraintValidator",
    "Constraints",
    "InputError",
    "Metadata",
    "OrketError",
    "PipelineClosedError",
    "PipelineStatistics",
    "Provider",
    "ProviderError",
    "Report",
    "ReportFormatError",
    "RunError",
    "SuiteError",
    "Telemetry",
    "TelemetryPipeline",
    "TestRun",
    "ValidationResult",
    "__version__",
    "round3",
]
