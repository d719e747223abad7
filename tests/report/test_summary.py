"""The summary of `report`: computed from raw values, nearest-rank percentiles (the renderers
are tested in tests/cli/test_render.py)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orket_pipeline.report._model import Report, Telemetry, TestRun
from orket_pipeline.report._summary import (
    MetricSummary,
    percentile,
    summarize,
)


def run(test_id: str, outcome: str = "pass", **numbers: str | None) -> TestRun:
    values = {name: None if v is None else float(v) for name, v in numbers.items()}
    return TestRun(test_id=test_id, outcome=outcome, telemetry=msgspec.convert(values, Telemetry))


@pytest.fixture
def report() -> Report:
    return Report(
        test_runs=[
            run(
                "a",
                init_latency="0.100",
                total_latency="1.000",
                peak_memory_rss="10.000",
                adherence_score="1.000",
            ),
            run(
                "b",
                "fail",
                init_latency=None,
                total_latency="2.000",
                peak_memory_rss="30.000",
                adherence_score="0.500",
            ),
            run("c", "error", total_latency="0.500", peak_memory_rss="20.000"),
            TestRun(test_id="[bold]d", outcome="pass"),  # no telemetry (an old report)
        ]
    )


class TestSummarize:
    def test_counts_by_outcome_always_name_the_three_outcomes(self, report: Report) -> None:
        summary = summarize(report.test_runs)
        assert summary.runs == 4
        assert summary.outcomes == {"pass": 2, "fail": 1, "error": 1}
        assert summarize([]).outcomes == {"pass": 0, "fail": 0, "error": 0}

    def test_unknown_outcomes_are_counted_too(self) -> None:
        summary = summarize([TestRun(test_id="x", outcome="skipped")])
        assert summary.outcomes["skipped"] == 1

    def test_percentiles_ignore_nulls(self, report: Report) -> None:
        summary = summarize(report.test_runs)
        assert summary.init_latency == MetricSummary(
            count=1,
            p50=0.100,
            p90=0.100,
            p99=0.100,
            max=0.100,
        )
        assert summary.total_latency.count == 3
        assert summary.total_latency.p50 == 1.000
        assert summary.total_latency.max == 2.000
        assert summary.peak_memory_rss.p90 == 30.000

    def test_mean_adherence_is_over_scored_runs_only(self, report: Report) -> None:
        summary = summarize(report.test_runs)
        assert summary.adherence_mean == 0.750
        assert summary.adherence_count == 2

    def test_mean_adherence_is_rounded_half_up(self) -> None:
        runs = [run(str(i), adherence_score=s) for i, s in enumerate(["1.000", "0.000", "0.000"])]
        assert summarize(runs).adherence_mean == 0.333

    def test_a_metric_without_values_has_null_percentiles(self) -> None:
        summary = summarize([TestRun(test_id="x", outcome="pass")])
        assert summary.init_latency == MetricSummary(
            count=0, p50=None, p90=None, p99=None, max=None
        )
        assert summary.adherence_mean is None


class TestPercentile:
    def test_nearest_rank_on_one_to_one_hundred(self) -> None:
        values = [float(i) for i in range(1, 101)]
        assert [percentile(values, p) for p in (50, 90, 99, 100)] == [50, 90, 99, 100]

    def test_nearest_rank_on_ten_values(self) -> None:
        values = [float(i) for i in range(1, 11)]
        assert [percentile(values, p) for p in (50, 90, 99)] == [5, 9, 10]

    def test_empty(self) -> None:
        assert percentile([], 50) is None

    @given(st.lists(st.integers(-1000, 1000), min_size=1), st.integers(1, 100))
    def test_a_percentile_is_a_measured_value_with_enough_below_it(
        self, raw: list[int], p: int
    ) -> None:
        values = sorted(float(v) for v in raw)
        result = percentile(values, p)
        assert result in values
        at_or_below = sum(1 for v in values if v <= result)
        assert at_or_below * 100 >= p * len(values)
