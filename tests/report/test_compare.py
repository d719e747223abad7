"""`compare_reports`: percentile changes with bootstrap intervals, paired flips, Holm's verdicts.

The synthetic reports stand for repeated runs of a noisy provider: every latency is drawn from
the same skewed (log-normal) distribution, outcomes from the same pass probability, with a
different seed per report. Everything is seeded, so each test gives the same result every time.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from decimal import Decimal

import msgspec
import pytest

from orket_pipeline import InputError
from orket_pipeline.report import Report, RunError, Telemetry, TestRun, compare_reports
from orket_pipeline.report._compare import finished_values
from orket_pipeline.report._stats import binomial_tail, bootstrap_percentile, holm


def noisy_report(
    seed: int, runs: int, *, slowdown: float = 1.0, sigma: float = 0.8, pass_p: float = 0.8
) -> Report:
    """Runs of one model on one machine: log-normal latencies, some errors, random outcomes."""
    rng = random.Random(seed)
    test_runs = []
    for i in range(runs):
        init = rng.lognormvariate(-2.5, sigma) * slowdown
        total = init + rng.lognormvariate(-1.0, sigma) * slowdown
        errored = rng.random() < 0.05
        outcome = "error" if errored else ("pass" if rng.random() < pass_p else "fail")
        telemetry = Telemetry(
            init_latency=round(init, 3),
            total_latency=round(total, 3),
            peak_memory_rss=round(50 + rng.lognormvariate(1.0, 1.0), 3),
        )
        error = RunError(type="ProviderTimeoutError") if errored else None
        test_runs.append(
            TestRun(test_id=f"t{i:04d}", outcome=outcome, telemetry=telemetry, error=error)
        )
    return Report(test_runs=test_runs)


def binomial_upper_bound(trials: int, p: float, tail: float = 0.001) -> int:
    """The smallest k with P(Binomial(trials, p) > k) < tail: the slack allowed to chance."""
    cumulative = 0.0
    for k in range(trials + 1):
        cumulative += math.comb(trials, k) * p**k * (1 - p) ** (trials - k)
        if 1 - cumulative < tail:
            return k
    return trials


class TestNoFalseAlarms:
    @pytest.mark.parametrize(
        ("alpha", "runs", "resamples"), [(0.05, 30, 400), (0.05, 200, 400), (0.01, 100, 1500)]
    )
    def test_two_runs_of_the_same_model_are_rarely_called_a_regression(
        self, alpha: float, runs: int, resamples: int
    ) -> None:
        # Enough replicates that a p-value can fall below Holm's smallest threshold (alpha / 7).
        assert 1 / (resamples + 1) < alpha / 7 / 2
        trials = 150
        alarms = sum(
            compare_reports(
                noisy_report(2 * t, runs),
                noisy_report(2 * t + 1, runs),
                alpha=alpha,
                resamples=resamples,
                seed=t,
            ).regressed
            for t in range(trials)
        )
        # Holm keeps the chance of any false alarm over all the tests at most alpha.
        assert alarms <= binomial_upper_bound(trials, alpha)

    def test_at_the_default_alpha_the_same_model_is_not_a_regression(self) -> None:
        comparison = compare_reports(noisy_report(1, 300), noisy_report(2, 300), resamples=2000)
        assert not comparison.regressed
        assert comparison.regressions == []


class TestRealChangesAreFound:
    @pytest.mark.parametrize("seed", range(3))
    def test_a_30_percent_slowdown_is_a_regression(self, seed: int) -> None:
        base = noisy_report(2 * seed, 400, sigma=0.5)
        cand = noisy_report(2 * seed + 1, 400, sigma=0.5, slowdown=1.3)
        comparison = compare_reports(base, cand, resamples=2000, seed=seed)
        assert comparison.regressed
        found = {(c.metric, c.statistic) for c in comparison.regressions}
        assert ("total_latency", "p50") in found
        median = next(
            c for c in comparison.changes if (c.metric, c.statistic) == ("total_latency", "p50")
        )
        assert median.ci_low is not None and median.ci_high is not None
        assert 0 < median.ci_low < median.change < median.ci_high  # type: ignore[operator]
        assert median.relative_change == pytest.approx(0.3, abs=0.12)

    def test_a_30_percent_speedup_is_an_improvement_not_a_regression(self) -> None:
        base = noisy_report(1, 400, sigma=0.5, slowdown=1.3)
        cand = noisy_report(2, 400, sigma=0.5)
        comparison = compare_reports(base, cand, resamples=2000)
        assert not comparison.regressed
        assert ("total_latency", "p50") in {
            (c.metric, c.statistic) for c in comparison.improvements
        }

    def test_a_slowdown_within_the_limit_is_not_a_regression(self) -> None:
        base = noisy_report(1, 400, sigma=0.5)
        cand = noisy_report(2, 400, sigma=0.5, slowdown=1.3)
        latencies = ("init_latency", "total_latency")
        lenient = compare_reports(base, cand, resamples=2000, limits=dict.fromkeys(latencies, 0.6))
        strict = compare_reports(base, cand, resamples=2000, limits=dict.fromkeys(latencies, 0.1))
        assert not lenient.regressed
        assert strict.regressed

    def test_tasks_that_stopped_passing_are_flips_and_a_pass_rate_regression(self) -> None:
        base = Report(test_runs=[TestRun(test_id=f"t{i}", outcome="pass") for i in range(30)])
        cand_runs = [
            TestRun(test_id=f"t{i}", outcome="fail" if i < 12 else "pass") for i in range(1, 30)
        ]
        cand_runs.append(TestRun(test_id="new", outcome="pass"))
        comparison = compare_reports(base, Report(test_runs=cand_runs))
        assert [f.test_id for f in comparison.flips] == [f"t{i}" for i in range(1, 12)]
        assert comparison.pass_rate.pass_to_fail == 11
        assert comparison.only_in_baseline == ["t0"]
        assert comparison.only_in_candidate == ["new"]
        (regression,) = comparison.regressions
        assert regression.metric == "pass_rate"
        assert regression.p_worse == pytest.approx(0.5**11, rel=1e-5)  # exact McNemar


class TestInputs:
    def test_errored_runs_are_counted_beside_the_percentiles_not_in_them(self) -> None:
        runs = [
            TestRun(test_id=f"t{i}", outcome="pass", telemetry=Telemetry(total_latency=1.0))
            for i in range(20)
        ]
        runs.append(
            TestRun(
                test_id="slow",
                outcome="error",
                telemetry=Telemetry(total_latency=99.0),
                error=RunError(type="ProviderTimeoutError"),
            )
        )
        report = Report(test_runs=runs)
        assert finished_values(report)["total_latency"] == [1.0] * 20
        comparison = compare_reports(report, report)
        assert comparison.baseline.errored == 1
        total = [c for c in comparison.changes if c.metric == "total_latency"]
        assert [c.baseline for c in total] == [1.0, 1.0]

    def test_decimal_and_float_numbers_give_the_same_comparison(self) -> None:
        floats = noisy_report(1, 50)
        decimals = Report(
            test_runs=[
                msgspec.structs.replace(
                    run,
                    telemetry=Telemetry(
                        **{  # type: ignore[arg-type]  # Decimals, as reports held before floats
                            name: None if value is None else Decimal(repr(value))
                            for name, value in msgspec.structs.asdict(run.telemetry).items()
                            if isinstance(value, float) or value is None
                        }
                    ),
                )
                for run in floats.test_runs
                if run.telemetry is not None
            ]
        )
        assert isinstance(decimals.test_runs[0].telemetry.total_latency, Decimal)  # type: ignore[union-attr]
        other = noisy_report(2, 50)
        assert compare_reports(floats, other) == compare_reports(decimals, other)

    def test_fields_absent_from_both_reports_are_left_out(self) -> None:
        outcomes_only = Report(test_runs=[TestRun(test_id="a", outcome="pass")])
        comparison = compare_reports(outcomes_only, outcomes_only)
        assert [c.metric for c in comparison.changes] == ["pass_rate"]
        assert not comparison.regressed
        metrics = {
            c.metric for c in compare_reports(noisy_report(1, 5), noisy_report(2, 5)).changes
        }
        assert "time_per_output_token" not in metrics
        assert "total_latency" in metrics

    def test_too_few_runs_are_shown_but_not_tested(self) -> None:
        comparison = compare_reports(noisy_report(1, 8), noisy_report(2, 8, slowdown=10))
        total = next(c for c in comparison.changes if c.metric == "total_latency")
        assert total.candidate is not None and total.p_worse is None
        assert total.verdict == "not_tested"

    def test_the_same_seed_gives_the_same_result(self) -> None:
        base, cand = noisy_report(1, 100), noisy_report(2, 100)
        assert compare_reports(base, cand, seed=7) == compare_reports(base, cand, seed=7)

    def test_a_test_id_twice_in_one_report_names_the_report(self) -> None:
        twice = Report(test_runs=[TestRun(test_id="a", outcome="pass")] * 2)
        with pytest.raises(InputError, match=r"cand\.json: test id 'a' appears more than once"):
            compare_reports(Report(test_runs=[]), twice, sources=("base.json", "cand.json"))

    @pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1])
    def test_alpha_outside_0_1_is_refused(self, alpha: float) -> None:
        with pytest.raises(InputError, match="alpha"):
            compare_reports(Report(test_runs=[]), Report(test_runs=[]), alpha=alpha)


class TestStatistics:
    def test_the_order_statistic_shortcut_is_the_bootstrap_distribution(self) -> None:
        # The k-th smallest of n draws with replacement is <= x[j-1] exactly when at least k
        # draws land among the j smallest: P = P(Binomial(n, j/n) >= k).
        values = [1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0]
        n, p = len(values), 50
        k = math.ceil(p * n / 100)
        rng = random.Random(0)
        draws = 40_000
        counts = Counter(bootstrap_percentile(values, p, rng) for _ in range(draws))
        cumulative = 0
        for j, value in enumerate(values, start=1):
            cumulative += counts[value]
            exact = sum(
                math.comb(n, m) * (j / n) ** m * (1 - j / n) ** (n - m) for m in range(k, n + 1)
            )
            assert cumulative / draws == pytest.approx(exact, abs=0.01)

    def test_the_binomial_tail_is_exact_and_survives_large_counts(self) -> None:
        for n in (1, 5, 20):
            for k in range(n + 1):
                exact = sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n
                assert binomial_tail(k, n) == pytest.approx(exact, rel=1e-9)
        assert binomial_tail(60_000, 100_000) < 1e-200
        assert binomial_tail(50_000, 100_000) == pytest.approx(0.5, abs=0.01)

    def test_holm_rejects_step_down_and_stops_at_the_first_p_above_its_threshold(self) -> None:
        # thresholds for m = 4 at alpha 0.04: 0.01, 0.0133, 0.02, 0.04
        assert sorted(holm([0.03, 0.001, 0.012, 0.5], 0.04)) == [1, 2]  # 0.03 > 0.02 stops
        assert sorted(holm([0.015, 0.001, 0.012, 0.5], 0.04)) == [0, 1, 2]
        assert holm([0.011, 0.012, 0.5, 0.5], 0.04) == []
