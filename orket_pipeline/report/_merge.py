"""Joining shard reports (parallel workers, tox envs) into one report.

Runs are concatenated in the order the reports are given, each report's runs in their own order.
Only raw runs and raw counters are carried over; every summary is recomputed by whoever reads
the merged report, so nothing pre-aggregated is trusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, Literal, TypeVar

import msgspec

from .._exceptions import InputError
from ._model import Metadata, PipelineStatistics, Report, TestRun, Units, fields_of_type

__all__ = ["OnDuplicate", "merge_reports"]

OnDuplicate = Literal["error", "first", "last"]

_T = TypeVar("_T")

#: Every integer counter of the model is summed: a counter added later cannot be forgotten.
_SUMMED: Final = fields_of_type(PipelineStatistics, int)
_PER_STAGE: Final = fields_of_type(PipelineStatistics, dict[str, int])
_MAXIMUM: Final = fields_of_type(PipelineStatistics, float, float | None)
_JOINED: Final = fields_of_type(PipelineStatistics, str, str | None)


def merge_reports(
    reports: Sequence[Report],
    *,
    sources: Sequence[str] | None = None,
    on_duplicate: OnDuplicate = "error",
) -> Report:
    """Merge shard reports into one.

    Args:
        reports: the shards, in the order their runs should appear.
        sources: a name per report (its file) for error messages; defaults to `report #N`.
        on_duplicate: what to do with a test id found twice: `error` refuses, `first` keeps the
            first run, `last` keeps the last one (at the first one's position).

    Returns:
        A report with no `report_generated_at` (`write_report` sets it) and merged metadata:
        every integer counter of `PipelineStatistics` summed (the list comes from the model, so
        a new counter is never dropped), `stage_errors` summed per stage, `max_loop_lag` the
        maximum, text fields kept when every shard agrees and joined with ", " when they differ.

    Raises:
        InputError: a duplicate test id with `on_duplicate="error"` (naming the id and both
            sources), shards in different units, or `sources` of the wrong length.

    Never blocks.
    """
    names = (
        list(sources) if sources is not None else [f"report #{i + 1}" for i in range(len(reports))]
    )
    if len(names) != len(reports):
        raise InputError(f"merge: {len(reports)} reports but {len(names)} source names")
    runs = _merge_runs(reports, names, on_duplicate)
    return Report(metadata=_merge_metadata([r.metadata for r in reports], names), test_runs=runs)


def _merge_runs(
    reports: Sequence[Report], names: Sequence[str], on_duplicate: OnDuplicate
) -> list[TestRun]:
    kept: dict[str, tuple[TestRun, str]] = {}
    for report, name in zip(reports, names, strict=True):
        for run in report.test_runs:
            previous = kept.get(run.test_id)
            if previous is None or on_duplicate == "last":
                # Assigning to an existing key keeps its position: "last" keeps the first slot.
                kept[run.test_id] = (run, name)
            elif on_duplicate == "error":
                raise InputError(
                    f"duplicate test id {run.test_id!r} in {previous[1]} and {name} "
                    "(use --on-duplicate first|last to keep one)"
                )
    return [run for run, _ in kept.values()]


def _merge_metadata(shards: Sequence[Metadata], names: Sequence[str]) -> Metadata:
    units = _merge_units(shards, names)
    pipelines = [m.pipeline for m in shards if m.pipeline is not None]
    merged = Metadata(
        units=units,
        pipeline=_merge_pipeline(pipelines) if pipelines else None,
    )
    for name in _META_JOINED:
        setattr(merged, name, _joined(getattr(m, name) for m in shards))
    for name in _META_SAME:
        # Kept only when every shard says the same: a mixture has no one value.
        first, *rest = [getattr(m, name) for m in shards] or [None]
        setattr(merged, name, first if all(value == first for value in rest) else None)
    for name in _META_MAXIMUM:
        found = [v for v in (getattr(m, name) for m in shards) if v is not None]
        setattr(merged, name, max(found, default=None))
    return merged


# How each metadata field merges: the descriptions joined ("a, b"), the settings kept when the
# shards agree, and the sizes as their largest (shards may have run one after the other, so a
# sum could claim a concurrency that never was).
_META_JOINED: Final = (
    "python", "platform", "suite", "provider", "sandbox", "model", "executor",
    "memory_pid_source",
)  # fmt: skip
_META_SAME: Final = ("suite_digest", "options", "memory_pid")
_META_MAXIMUM: Final = ("concurrency", "max_in_flight", "output_cap")


def _merge_units(shards: Sequence[Metadata], names: Sequence[str]) -> Units:
    if not shards:
        return Units()
    first = shards[0].units
    for metadata, name in zip(shards, names, strict=True):
        if metadata.units != first:
            raise InputError(
                f"{name}: units {metadata.units.latency}/{metadata.units.memory} differ from "
                f"{names[0]}'s {first.latency}/{first.memory}; cannot merge"
            )
    return first


def _merge_pipeline(shards: Sequence[PipelineStatistics]) -> PipelineStatistics:
    merged: dict[str, object] = {}
    for name in _SUMMED:
        merged[name] = sum(getattr(shard, name) for shard in shards)
    for name in _PER_STAGE:
        counts: dict[str, int] = {}
        for shard in shards:
            for stage, count in getattr(shard, name).items():
                counts[stage] = counts.get(stage, 0) + count
        merged[name] = counts
    for name in _MAXIMUM:
        values = [v for v in (getattr(shard, name) for shard in shards) if v is not None]
        merged[name] = max(values, default=None)
    for name in _JOINED:
        merged[name] = _joined(getattr(shard, name) for shard in shards)
    return msgspec.structs.replace(PipelineStatistics(), **merged)


def _joined(values: Iterable[str | None]) -> str | None:
    distinct = _unique(value for value in values if value is not None)
    return ", ".join(distinct) if distinct else None


def _unique(values: Iterable[_T]) -> list[_T]:
    return list(dict.fromkeys(values))
