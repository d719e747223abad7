"""Comparing two reports: is the candidate slower, heavier or less often right than the baseline?

Per metric, the change of two percentiles (nearest rank, as in the summary: the median and the
worse tail — p90 where lower is better, p10 where higher is better) with a percentile-bootstrap
confidence interval. Latencies are skewed and noisy, so nothing here assumes a shape or compares
means. Each bootstrap replicate of a percentile costs one beta draw, whatever the number of runs
(see `_stats.bootstrap_percentile`). The same replicates give one-sided p-values (the share of
replicates on the other side of zero).

Per task, outcomes are paired by test id: flips (pass → fail or error, and back) and an exact
McNemar test of the pass rate (the regressed flips are Binomial(flips, 1/2) when nothing changed).

Every test that could call something a regression belongs to one family, and Holm's step-down
procedure keeps the chance of any false alarm at most `alpha` (improvements are a second family).
Only runs whose generation finished feed the percentiles; errored runs are counted beside them.
Numbers may be `Decimal` or `float` in the report; both are read through `float()`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Final, Literal

import msgspec

from .._exceptions import InputError
from ._model import Report, TestRun
from ._stats import binomial_tail, bootstrap_percentile, holm, nearest_rank

__all__ = [
    "METRICS",
    "Comparison",
    "Flip",
    "MetricChange",
    "PassRate",
    "ReportSide",
    "compare_reports",
    "finished_values",
]

Better = Literal["lower", "higher"]
Verdict = Literal["regression", "improvement", "unchanged", "not_tested"]

METRICS: Final[Mapping[str, Better | None]] = {
    "init_latency": "lower",
    "total_latency": "lower",
    "time_per_output_token": "lower",
    "prompt_tokens": None,  # token counts are described, never judged
    "completion_tokens": None,
    "reasoning_tokens": None,
    "peak_memory_rss": "lower",
    "adherence_score": "higher",
}
"""Compared telemetry fields and which way is better; fields a report lacks are skipped."""

MIN_VALUES: Final = 20
"""Fewer finished values than this on either side: the percentiles are shown, not tested."""


class MetricChange(msgspec.Struct, kw_only=True):
    """The change of one statistic of one metric, candidate minus baseline.

    `ci_low`/`ci_high` bound the change at confidence 1 - alpha (two-sided, not adjusted for
    the number of tests); `p_worse`/`p_better` are one-sided p-values before Holm's adjustment;
    `verdict` is after it (and after the limit, if any). `pass_rate` is a `MetricChange` too.
    """

    metric: str
    statistic: str
    better: Better | None
    baseline_count: int
    candidate_count: int
    baseline: float | None
    candidate: float | None
    change: float | None
    relative_change: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    p_worse: float | None = None
    p_better: float | None = None
    limit: float | None = None
    verdict: Verdict = "not_tested"


class Flip(msgspec.Struct, kw_only=True):
    """A task whose outcome changed between pass and not pass."""

    test_id: str
    baseline: str
    candidate: str


class PassRate(msgspec.Struct, kw_only=True):
    """Outcomes of the tasks found in both reports (each run once)."""

    paired: int
    baseline_passed: int
    candidate_passed: int
    pass_to_fail: int
    fail_to_pass: int


class ReportSide(msgspec.Struct, kw_only=True):
    """What one of the two reports holds."""

    report_generated_at: str | None
    provider: str | None
    runs: int
    outcomes: dict[str, int]
    errored: int


class Comparison(msgspec.Struct, kw_only=True):
    """`compare --format json`. `regressions` and `improvements` repeat the `changes` whose
    verdict says so; `regressed` is whether there is any regression (exit code 1)."""

    regressed: bool
    regressions: list[MetricChange]
    improvements: list[MetricChange]
    flips: list[Flip]
    only_in_baseline: list[str]
    only_in_candidate: list[str]
    changes: list[MetricChange]
    pass_rate: PassRate
    baseline: ReportSide
    candidate: ReportSide
    alpha: float
    resamples: int
    seed: int


def compare_reports(
    baseline: Report,
    candidate: Report,
    *,
    alpha: float = 0.01,
    limits: Mapping[str, float] | None = None,
    resamples: int = 10_000,
    seed: int = 0,
    sources: tuple[str, str] = ("baseline", "candidate"),
) -> Comparison:
    """Compare `candidate` with `baseline`.

    Args:
        baseline: the reference report.
        candidate: the report under test.
        alpha: the chance, at most, of calling anything a regression when nothing changed.
        limits: per metric, the relative worsening (0.10 for 10 %) a significant change must
            also exceed to count as a regression.
        resamples: bootstrap replicates per statistic. A bootstrap p-value is at least
            1 / (resamples + 1), so it must be at least 2 * (number of tests) / alpha for a
            percentile change to be found significant at all (the default suits alpha 0.01).
        seed: seeds the bootstrap; the same inputs and seed give the same result.
        sources: names of the two reports (their files) for error messages.

    Returns:
        The `Comparison`.

    Raises:
        InputError: `alpha` not in (0, 1), `resamples` below 100 or too few for `alpha`, or a
            test id found twice in one report (tasks are paired by id).

    Never blocks on I/O; CPU-bound (1.6 s for two 100,000-run reports on a 2-core VM, see
    benchmarks/README.md).
    """
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be between 0 and 1, not {alpha}")
    if resamples < 100:
        raise InputError(f"resamples must be at least 100, not {resamples}")
    limits = dict(limits or {})
    changes: list[MetricChange] = []
    base_values, cand_values = finished_values(baseline), finished_values(candidate)
    for metric, better in METRICS.items():
        base, cand = base_values[metric], cand_values[metric]
        if base or cand:  # else neither report has this field
            for statistic in _statistics(better):
                changes.append(_percentile_change(metric, better, statistic, base, cand))
                if min(len(base), len(cand)) >= MIN_VALUES:
                    rng = random.Random(f"{seed}:{metric}:{statistic}")  # str seeds are stable
                    _bootstrap(changes[-1], base, cand, alpha, resamples, rng)
    pass_rate, flips, only_base, only_cand = _pair_outcomes(baseline, candidate, sources)
    changes.append(_pass_rate_change(pass_rate))
    _check_resamples(changes, alpha, resamples)
    _judge(changes, alpha, limits)
    return Comparison(
        regressed=any(c.verdict == "regression" for c in changes),
        regressions=[c for c in changes if c.verdict == "regression"],
        improvements=[c for c in changes if c.verdict == "improvement"],
        flips=flips,
        only_in_baseline=only_base,
        only_in_candidate=only_cand,
        changes=changes,
        pass_rate=pass_rate,
        baseline=_side(baseline),
        candidate=_side(candidate),
        alpha=alpha,
        resamples=resamples,
        seed=seed,
    )


def finished_values(report: Report) -> dict[str, list[float]]:
    """Per compared metric, its ascending values over the runs whose generation finished.

    A field the report's model does not have (an older version) reads as absent: its list is
    empty. One pass over the runs. Never raises.
    """
    values: dict[str, list[float]] = {metric: [] for metric in METRICS}
    for run in report.test_runs:
        if run.telemetry is None or _errored(run):
            continue
        for metric, found in values.items():
            value = getattr(run.telemetry, metric, None)
            if value is not None:
                found.append(float(value))
    for found in values.values():
        found.sort()
    return values


def _errored(run: TestRun) -> bool:
    return run.outcome == "error" or run.error is not None


def _statistics(better: Better | None) -> tuple[str, str]:
    return ("p50", "p10") if better == "higher" else ("p50", "p90")


def _percentile_change(
    metric: str, better: Better | None, statistic: str, base: list[float], cand: list[float]
) -> MetricChange:
    b, c = nearest_rank(base, int(statistic[1:])), nearest_rank(cand, int(statistic[1:]))
    return MetricChange(
        metric=metric,
        statistic=statistic,
        better=better,
        baseline_count=len(base),
        candidate_count=len(cand),
        baseline=b,
        candidate=c,
        change=None if b is None or c is None else _r(c - b),
        relative_change=None if b is None or c is None or b == 0 else _r((c - b) / b),
    )


def _bootstrap(
    change: MetricChange,
    base: list[float],
    cand: list[float],
    alpha: float,
    resamples: int,
    rng: random.Random,
) -> None:
    p = int(change.statistic[1:])
    deltas = sorted(
        bootstrap_percentile(cand, p, rng) - bootstrap_percentile(base, p, rng)
        for _ in range(resamples)
    )
    _fill_bootstrap(change, deltas, alpha)


def _fill_bootstrap(result: MetricChange, deltas: list[float], alpha: float) -> None:
    count = len(deltas)
    result.ci_low = _r(deltas[max(0, math.ceil(count * alpha / 2) - 1)])
    result.ci_high = _r(deltas[min(count - 1, math.ceil(count * (1 - alpha / 2)) - 1)])
    if result.better is None:
        return
    worse_sign = 1.0 if result.better == "lower" else -1.0
    # Ties with zero count against significance: a replicate of no change is no evidence.
    not_worse = sum(1 for d in deltas if worse_sign * d <= 0)
    not_better = sum(1 for d in deltas if worse_sign * d >= 0)
    result.p_worse = _p((1 + not_worse) / (1 + count))
    result.p_better = _p((1 + not_better) / (1 + count))


def _pair_outcomes(
    baseline: Report, candidate: Report, sources: tuple[str, str]
) -> tuple[PassRate, list[Flip], list[str], list[str]]:
    base, cand = _by_id(baseline, sources[0]), _by_id(candidate, sources[1])
    flips: list[Flip] = []
    paired = base_passed = cand_passed = down = up = 0
    for test_id, before in base.items():
        after = cand.get(test_id)
        if after is None:
            continue
        paired += 1
        base_passed += before == "pass"
        cand_passed += after == "pass"
        if (before == "pass") != (after == "pass"):
            flips.append(Flip(test_id=test_id, baseline=before, candidate=after))
            down += before == "pass"
            up += after == "pass"
    rate = PassRate(
        paired=paired,
        baseline_passed=base_passed,
        candidate_passed=cand_passed,
        pass_to_fail=down,
        fail_to_pass=up,
    )
    only_base = [t for t in base if t not in cand]
    only_cand = [t for t in cand if t not in base]
    return rate, flips, only_base, only_cand


def _by_id(report: Report, which: str) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for run in report.test_runs:
        if run.test_id in outcomes:
            raise InputError(
                f"{which}: test id {run.test_id!r} appears more than once"
                " (compare pairs runs by test id)"
            )
        outcomes[run.test_id] = run.outcome
    return outcomes


def _pass_rate_change(rate: PassRate) -> MetricChange:
    b = rate.baseline_passed / rate.paired if rate.paired else None
    c = rate.candidate_passed / rate.paired if rate.paired else None
    flips = rate.pass_to_fail + rate.fail_to_pass
    return MetricChange(
        metric="pass_rate",
        statistic="paired",
        better="higher",
        baseline_count=rate.paired,
        candidate_count=rate.paired,
        baseline=None if b is None else _r(b),
        candidate=None if c is None else _r(c),
        change=None if b is None or c is None else _r(c - b),
        relative_change=None if not b or c is None else _r((c - b) / b),
        p_worse=_p(binomial_tail(rate.pass_to_fail, flips)) if flips else None,
        p_better=_p(binomial_tail(rate.fail_to_pass, flips)) if flips else None,
    )


def _check_resamples(changes: Sequence[MetricChange], alpha: float, resamples: int) -> None:
    tests = sum(1 for c in changes if c.p_worse is not None)
    needed = math.ceil(2 * tests / alpha)
    if any(c.ci_low is not None for c in changes) and resamples < needed:
        raise InputError(
            f"resamples: {resamples} are too few for alpha {alpha} over {tests} tests"
            f" (no p-value could reach alpha / {tests}); use at least {needed}"
        )


def _judge(changes: Sequence[MetricChange], alpha: float, limits: Mapping[str, float]) -> None:
    """Set each verdict: Holm's step-down over the family of one-sided tests, per direction."""
    tested = [c for c in changes if c.p_worse is not None and c.p_better is not None]
    for c in tested:
        c.verdict = "unchanged"
        c.limit = limits.get(c.metric)
    for index in holm([c.p_worse or 0.0 for c in tested], alpha):
        change = tested[index]
        if change.limit is None or _worsening(change) > change.limit:
            change.verdict = "regression"
    for index in holm([c.p_better or 0.0 for c in tested], alpha):
        tested[index].verdict = "improvement"


def _worsening(change: MetricChange) -> float:
    if change.relative_change is None:
        return math.inf  # from zero: any significant worsening exceeds every relative limit
    return change.relative_change if change.better == "lower" else -change.relative_change


def _side(report: Report) -> ReportSide:
    outcomes: dict[str, int] = {"pass": 0, "fail": 0, "error": 0}
    for run in report.test_runs:
        outcomes[run.outcome] = outcomes.get(run.outcome, 0) + 1
    return ReportSide(
        report_generated_at=report.report_generated_at,
        provider=report.metadata.provider,
        runs=len(report.test_runs),
        outcomes=outcomes,
        errored=sum(1 for run in report.test_runs if _errored(run)),
    )


def _r(value: float) -> float:
    return round(value, 6)


def _p(value: float) -> float:
    return float(f"{value:.6g}")  # six significant digits: tiny p-values stay non-zero
