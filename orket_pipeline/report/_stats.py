"""Pure-Python statistics for `compare`: percentiles, their bootstrap, a binomial tail, Holm.

Deterministic given a seeded `random.Random`; no numpy or scipy. Nothing here blocks on I/O or
raises for valid arguments.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

__all__ = ["binomial_tail", "bootstrap_percentile", "holm", "nearest_rank"]


def nearest_rank(sorted_values: Sequence[float], p: int) -> float | None:
    """The nearest-rank p-th percentile (0 < p <= 100) of ascending values, as the summary's
    `percentile`: the value at 1-based rank ceil(p * n / 100); None when empty."""
    if not sorted_values:
        return None
    return sorted_values[max(1, -(-p * len(sorted_values) // 100)) - 1]


def bootstrap_percentile(sorted_values: Sequence[float], p: int, rng: random.Random) -> float:
    """One bootstrap replicate of `nearest_rank(sorted_values, p)`, without resampling.

    A value drawn with replacement from sorted `x` is `x[ceil(n * u) - 1]` for a uniform u; that
    map is non-decreasing, so the k-th smallest of n draws is `x[ceil(n * U) - 1]` where U, the
    k-th smallest of n uniforms, is Beta(k, n - k + 1). This has exactly the distribution of the
    resampled percentile and costs one beta draw, whatever n is.
    """
    n = len(sorted_values)
    k = max(1, -(-p * n // 100))
    u = rng.betavariate(k, n - k + 1)
    return sorted_values[min(n, max(1, math.ceil(n * u))) - 1]


def binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2): the one-sided exact McNemar p-value of k of n flips.

    Summed in log space, so n in the hundreds of thousands neither overflows nor takes long.
    """
    log_half_n = n * math.log(0.5)
    log_n_fact = math.lgamma(n + 1)
    total = 0.0
    for i in range(max(0, k), n + 1):
        term = math.exp(log_n_fact - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n)
        total += term
        if i > n / 2 and term < total * 1e-17:
            break  # past the mode the terms only shrink
    return min(1.0, total)


def holm(pvalues: Sequence[float], alpha: float) -> list[int]:
    """Indices of the hypotheses Holm's step-down procedure rejects at family-wise level alpha.

    Sorted ascending, the i-th smallest p-value (from 0) is rejected while it is at most
    alpha / (m - i); the first one above its threshold stops the procedure.
    """
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected = []
    for rank, index in enumerate(order):
        if pvalues[index] > alpha / (len(pvalues) - rank):
            break
        rejected.append(index)
    return rejected
