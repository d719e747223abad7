"""The pipeline's stages, one per module: each consumes its own inbox on the bus."""

from ._base import Stage as Stage
from ._base import StageErrors as StageErrors
from .aggregator import ReportAggregator as ReportAggregator
from .constraints import ConstraintStage as ConstraintStage
from .latency import LatencyTracker as LatencyTracker
from .memory import MemorySampler as MemorySampler

__all__ = [
    "ConstraintStage",
    "LatencyTracker",
    "MemorySampler",
    "ReportAggregator",
    "Stage",
    "StageErrors",
]
