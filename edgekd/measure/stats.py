"""Robust statistics of timed runs taken in rounds: percentiles with 95% confidence intervals, the spread of the
round medians, the tail, and the ratio of two interleaved timers (same-run comparison).

Why rounds: successive runs are not independent (a busy spell on the machine slows hundreds in a row), so an
interval from the order statistics of all samples alone is far too narrow. Each interval here is the hull of
(a) the distribution-free order-statistic interval over all samples and (b) a bootstrap over rounds of the
per-round figure — the second is what drift between rounds widens. One huge outlier moves neither; drift does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959964  # two-sided 95% normal quantile
MAD_TO_SIGMA = 1.4826  # MAD x this estimates a normal standard deviation
BOOTSTRAP_RESAMPLES = 2000
OUTLIER_IQR_FENCE = 3.0  # Tukey's "far out": beyond Q3 + 3 x IQR


def nearest_rank(sorted_values: Sequence[float] | np.ndarray, percent: float) -> float:
    """The smallest value with at least `percent`% of the values at or below it (rank = ceil(p/100 * n))."""
    if len(sorted_values) == 0:
        raise ValueError("no values")
    rank = max(1, math.ceil(percent / 100.0 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def order_statistic_ci(sorted_values: np.ndarray, percent: float) -> tuple[float, float]:
    """Distribution-free 95% interval of the `percent` quantile of iid samples (normal approximation of the
    binomial count below it)."""
    n = len(sorted_values)
    q = percent / 100.0
    half = Z95 * math.sqrt(n * q * (1 - q))
    low, high = max(1, math.floor(n * q - half)), min(n, math.ceil(n * q + half) + 1)
    return float(sorted_values[low - 1]), float(sorted_values[high - 1])


def bootstrap_ci(values: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median of `values` (e.g. one figure per round). Seeded, so the
    same samples always give the same interval."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    medians = np.median(data[rng.integers(0, len(data), (BOOTSTRAP_RESAMPLES, len(data)))], axis=1)
    return float(np.quantile(medians, 0.025)), float(np.quantile(medians, 0.975))


def relative_mad(values: Sequence[float]) -> float:
    """Robust spread of `values` relative to their median: 1.4826 x MAD / median (0 for fewer than 2 values).
    One wild value among many barely moves it; values that wander apart do."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return 0.0
    centre = float(np.median(data))
    return MAD_TO_SIGMA * float(np.median(np.abs(data - centre))) / centre if centre > 0 else 0.0


def percentile_interval(rounds: Sequence[np.ndarray], ordered: np.ndarray, percent: float) -> tuple[float, float]:
    """95% interval of the `percent` quantile: the hull of the order-statistic interval over all samples, the
    bootstrap interval over the rounds' own quantiles, and the point estimate itself."""
    point = nearest_rank(ordered, percent)
    low, high = order_statistic_ci(ordered, percent)
    per_round = [nearest_rank(np.sort(r), percent) for r in rounds if len(r)]
    boot_low, boot_high = bootstrap_ci(per_round)
    return min(low, boot_low, point), max(high, boot_high, point)


def outlier_count(ordered: np.ndarray) -> int:
    """Samples beyond Q3 + 3 x IQR (Tukey's far-out fence)."""
    q1, q3 = nearest_rank(ordered, 25), nearest_rank(ordered, 75)
    return int(np.count_nonzero(ordered > q3 + OUTLIER_IQR_FENCE * (q3 - q1)))


def ratio_interval(ratios: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    """(median, low, high) of per-round ratios, the interval a 95% bootstrap over rounds."""
    low, high = bootstrap_ci(ratios, seed)
    centre = float(np.median(np.asarray(ratios, dtype=float)))
    return centre, min(low, centre), max(high, centre)
