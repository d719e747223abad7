"""The summary of `report`: computed from raw values, nearest-rank percentiles (the renderers
are tested in tests/cli/test_render.py)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orket_pipeline.report._causes import error_cause
from orket_pipeline.report._model import Report, RunError, Telemetry, TestRun
from orket_pipeline.report._summary import (
    MetricSummary,
    percentile,
    summarize,
)


def run(test_id: str, outcome: str = "pass", **numbers: str | None) -> TestRun:
    values = {name: None if v is None else _number(v) for name, v in numbers.items()}
    return TestRun(test_id=test_id, outcome=outcome, telemetry=msgspec.convert(values, Telemetry))


def _number(text: str) -> float | int:
    return float(text) if "." in text else int(text)


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
        # The errored run "c" is counted beside the figures, not in them.
        assert summary.total_latency.count == 2
        assert summary.total_latency.p50 == 1.000
        assert summary.total_latency.max == 2.000
        assert summary.peak_memory_rss.p90 == 30.000
        assert summary.errors == 1

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


def errored(test_id: str, error_type: str, message: str, total: str = "0.001") -> TestRun:
    failed = run(test_id, "error", total_latency=total, peak_memory_rss="40.000")
    failed.error = RunError(type=error_type, message=message)
    return failed


REFUSED = "openai:m@http://127.0.0.1:9/v1: cannot connect: [Errno 111] Connection refused"


class TestFinishedGenerationsOnly:
    def test_a_dead_server_does_not_pull_the_latency_percentiles_down(self) -> None:
        finished = [
            run(f"ok{i}", total_latency="2.000", peak_memory_rss="10.000") for i in range(3)
        ]
        dead = [errored(f"e{i}", "ProviderConnectionError", REFUSED) for i in range(7)]
        summary = summarize([*finished, *dead])
        assert summary.total_latency.count == 3
        assert summary.total_latency.p50 == 2.000  # would be 0.001 with the errors mixed in
        assert summary.peak_memory_rss.max == 10.000
        assert summary.errors == 7
        assert summary.outcomes["error"] == 7

    def test_a_gate_that_could_not_run_still_finished_its_generation(self) -> None:
        gate = errored("g", "GateError", "no sandbox", total="1.500")
        summary = summarize([gate])
        assert summary.errors == 0
        assert summary.total_latency.p50 == 1.500
        assert summary.error_causes == {"gate could not run": 1}

    def test_token_figures_sum_and_time_per_token_percentiles(self) -> None:
        runs = [
            run("a", prompt_tokens="10", completion_tokens="5", time_per_output_token="0.020"),
            run("b", prompt_tokens="12", completion_tokens="7", time_per_output_token="0.040"),
            run("c"),  # a provider that sent no usage
        ]
        summary = summarize(runs)
        assert (summary.prompt_tokens, summary.completion_tokens) == (22, 12)
        assert summary.time_per_output_token is not None
        assert summary.time_per_output_token.p50 == 0.020
        assert summarize([run("c")]).prompt_tokens is None


class TestErrorCauses:
    def test_errors_are_grouped_by_cause_most_frequent_first(self) -> None:
        not_found = "openai:m@http://h/v1: HTTP 404 from http://h/v1/chat/completions: no route"
        runs = [
            *(
                errored(f"r{i}", "ProviderConnectionError", REFUSED.replace("9", str(i)))
                for i in range(10)
            ),
            errored("n1", "ProviderResponseError", not_found),
            errored("n2", "ProviderResponseError", not_found),
            run("ok"),
        ]
        assert summarize(runs).error_causes == {
            "connection refused": 10,
            "HTTP 404 (wrong base URL or model?)": 2,
        }

    @pytest.mark.parametrize(
        ("error_type", "message", "cause"),
        [
            ("ProviderConnectionError", REFUSED, "connection refused"),
            (
                "ProviderResponseError",
                "x: HTTP 501 from http://h/v1: Unsupported method",
                "HTTP 501 (not an OpenAI-compatible server?)",
            ),
            (
                "ProviderConnectionError",
                "x: connection broken: peer closed connection without sending complete message "
                "body (incomplete chunked read) (http://h/v1)",
                "connection closed mid-reply",
            ),
            ("TimeoutError", "generation timed out after 5 s", "timed out"),
            ("ProviderTimeoutError", "x: timed out connecting: (http://h)", "connect timeout"),
            ("ValueError", "bad things", "ValueError"),
            ("", "", "unknown"),
        ],
    )
    def test_causes(self, error_type: str, message: str, cause: str) -> None:
        assert error_cause(error_type, message) == cause

    def test_a_caller_classifier_that_raises_costs_nothing(self) -> None:
        def broken(error_type: str, message: str) -> str:
            raise RuntimeError("no")

        summary = summarize([errored("x", "ValueError", "m")], cause=broken)
        assert summary.error_causes == {"ValueError": 1}


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
