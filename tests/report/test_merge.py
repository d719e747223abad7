"""Merging shard reports: runs joined in order, duplicates refused unless told, counters summed."""

from __future__ import annotations

import msgspec
import pytest

from orket_pipeline._exceptions import InputError
from orket_pipeline.report._merge import (
    _JOINED,
    _MAXIMUM,
    _META_JOINED,
    _META_MAXIMUM,
    _META_SAME,
    _PER_STAGE,
    _SUMMED,
    merge_reports,
)
from orket_pipeline.report._model import (
    GenerationOptions,
    Metadata,
    PipelineStatistics,
    Report,
    TestRun,
    Units,
)


def shard(*runs: tuple[str, str], **metadata: object) -> Report:
    return Report(
        report_generated_at="2026-01-01T00:00:00.000Z",
        metadata=Metadata(**metadata),  # type: ignore[arg-type]
        test_runs=[TestRun(test_id=test_id, outcome=outcome) for test_id, outcome in runs],
    )


def ids(report: Report) -> list[tuple[str, str]]:
    return [(run.test_id, run.outcome) for run in report.test_runs]


class TestRuns:
    def test_runs_are_joined_in_the_given_order(self) -> None:
        merged = merge_reports([shard(("a", "pass"), ("b", "fail")), shard(("c", "error"))])
        assert ids(merged) == [("a", "pass"), ("b", "fail"), ("c", "error")]
        assert merged.report_generated_at is None  # stamped when written

    def test_a_duplicate_is_refused_naming_the_id_and_both_files(self) -> None:
        with pytest.raises(InputError, match=r"duplicate test id 'b' in w1\.json and w2\.json"):
            merge_reports(
                [shard(("a", "pass"), ("b", "pass")), shard(("b", "fail"))],
                sources=["w1.json", "w2.json"],
            )

    def test_a_duplicate_within_one_report_is_refused(self) -> None:
        with pytest.raises(InputError, match=r"'a' in report #1 and report #1"):
            merge_reports([shard(("a", "pass"), ("a", "fail"))])

    def test_first_keeps_the_first_run(self) -> None:
        shards = [shard(("a", "pass"), ("b", "pass")), shard(("b", "fail"), ("c", "pass"))]
        merged = merge_reports(shards, on_duplicate="first")
        assert ids(merged) == [("a", "pass"), ("b", "pass"), ("c", "pass")]

    def test_last_keeps_the_last_run_at_the_first_position(self) -> None:
        shards = [shard(("a", "pass"), ("b", "pass")), shard(("c", "pass"), ("b", "fail"))]
        merged = merge_reports(shards, on_duplicate="last")
        assert ids(merged) == [("a", "pass"), ("b", "fail"), ("c", "pass")]

    def test_no_reports_merge_to_an_empty_report(self) -> None:
        assert merge_reports([]).test_runs == []

    def test_sources_must_match_reports(self) -> None:
        with pytest.raises(InputError, match="source names"):
            merge_reports([shard()], sources=["a", "b"])


class TestMetadata:
    def test_pipeline_counters_are_summed_and_lag_is_the_maximum(self) -> None:
        one = PipelineStatistics(
            events_published=10,
            events_dropped=1,
            late_events=2,
            stage_errors={"LatencyTracker": 1},
            journal_errors=1,
            max_loop_lag=0.004,
            memory_method="vmhwm",
        )
        two = PipelineStatistics(
            events_published=5,
            stage_errors={"LatencyTracker": 2, "MemorySampler": 1},
            max_loop_lag=0.010,
            memory_method="vmhwm",
        )
        merged = merge_reports([shard(pipeline=one), shard(pipeline=two), shard()])
        assert merged.metadata.pipeline == PipelineStatistics(
            events_published=15,
            events_dropped=1,
            late_events=2,
            stage_errors={"LatencyTracker": 3, "MemorySampler": 1},
            journal_errors=1,
            max_loop_lag=0.010,
            memory_method="vmhwm",
        )

    def test_abandoned_events_and_every_other_counter_are_summed(self) -> None:
        counters = [f.name for f in msgspec.structs.fields(PipelineStatistics) if f.type is int]
        assert "abandoned_events" in counters
        two_each = PipelineStatistics(**dict.fromkeys(counters, 2))
        merged = merge_reports([shard(pipeline=two_each), shard(pipeline=two_each)])
        assert merged.metadata.pipeline == PipelineStatistics(**dict.fromkeys(counters, 4))

    def test_every_field_of_the_statistics_has_a_merge_rule(self) -> None:
        ruled = {*_SUMMED, *_PER_STAGE, *_MAXIMUM, *_JOINED}
        assert ruled == {f.name for f in msgspec.structs.fields(PipelineStatistics)}

    def test_no_pipeline_statistics_stay_null(self) -> None:
        assert merge_reports([shard(), shard()]).metadata.pipeline is None

    def test_equal_fields_are_kept_and_different_ones_joined(self) -> None:
        merged = merge_reports(
            [
                shard(suite="demo", python="CPython 3.10.14", provider=None),
                shard(suite="demo", python="CPython 3.12.3", provider="replay:x.jsonl"),
            ]
        )
        assert merged.metadata.suite == "demo"
        assert merged.metadata.python == "CPython 3.10.14, CPython 3.12.3"
        assert merged.metadata.provider == "replay:x.jsonl"

    def test_every_metadata_field_has_a_merge_rule(self) -> None:
        own = {"generator", "units", "pipeline"}
        rules = [*_META_JOINED, *_META_SAME, *_META_MAXIMUM]
        assert sorted(rules) == sorted(set(rules))
        assert {f.name for f in msgspec.structs.fields(Metadata)} == own | set(rules)

    def test_settings_survive_when_the_shards_agree_and_sizes_take_the_largest(self) -> None:
        same = GenerationOptions(seed=3)
        merged = merge_reports(
            [
                shard(suite_digest="d", options=same, memory_pid=7, concurrency=4, model="m"),
                shard(suite_digest="d", options=same, memory_pid=8, concurrency=2, model="n"),
            ]
        ).metadata
        assert (merged.suite_digest, merged.options, merged.memory_pid) == ("d", same, None)
        assert (merged.concurrency, merged.model) == (4, "m, n")

    def test_different_units_cannot_be_merged(self) -> None:
        with pytest.raises(InputError, match=r"b\.json: units ms/MiB differ"):
            merge_reports([shard(), shard(units=Units(latency="ms"))], sources=["a.json", "b.json"])
