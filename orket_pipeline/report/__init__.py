"""The report format: its model, rounding, reader and writer, journal, summary, merge, compare.

Imports nothing of the telemetry core, the engine or the providers: any tool can read and
write reports with this package alone.
"""

from ._compare import compare_reports as compare_reports
from ._io import read_report as read_report
from ._io import write_report as write_report
from ._journal import rebuild_report as rebuild_report
from ._merge import merge_reports as merge_reports
from ._model import Metadata as Metadata
from ._model import PipelineStatistics as PipelineStatistics
from ._model import Report as Report
from ._model import RunError as RunError
from ._model import Telemetry as Telemetry
from ._model import TestRun as TestRun

__all__ = [
    "Metadata",
    "PipelineStatistics",
    "Report",
    "RunError",
    "Telemetry",
    "TestRun",
    "compare_reports",
    "merge_reports",
    "read_report",
    "rebuild_report",
    "write_report",
]
