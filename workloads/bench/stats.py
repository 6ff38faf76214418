"""Latency percentiles and the median/range summary of repetitions."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (as MLPerf LoadGen reports): a latency that was actually observed.

    The smallest value with at least ``p`` percent of the values at or below it, i.e. sorted
    value number ``ceil(p / 100 * n)`` (1-based); p=0 gives the minimum.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered) - 1e-9))
    return float(ordered[rank - 1])


def summary(values: Sequence[float]) -> dict[str, float]:
    """``{"median", "min", "max"}`` of the repetitions' figures."""
    if not values:
        raise ValueError("summary of no values")
    return {"median": float(statistics.median(values)), "min": float(min(values)), "max": float(max(values))}


def latency_figures(latencies_ms: Sequence[float]) -> dict[str, float]:
    """mean, p50, p90 and p99 (ms) of one window of latencies."""
    if not latencies_ms:
        raise ValueError("latency figures of no requests")
    return {
        "mean_ms": float(statistics.fmean(latencies_ms)),
        "p50_ms": percentile(latencies_ms, 50),
        "p90_ms": percentile(latencies_ms, 90),
        "p99_ms": percentile(latencies_ms, 99),
    }
