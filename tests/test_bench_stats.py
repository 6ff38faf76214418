"""Percentiles (nearest rank), median and range of repetitions, latency figures."""

import pytest

from workloads.bench.stats import latency_figures, percentile, summary


def test_percentile_is_nearest_rank_over_sorted_values():
    values = [7, 1, 10, 3, 2, 9, 4, 6, 8, 5]  # 1..10, shuffled
    assert percentile(values, 50) == 5
    assert percentile(values, 90) == 9
    assert percentile(values, 99) == 10
    assert percentile(values, 100) == 10
    assert percentile(values, 0) == 1
    assert percentile(values, 10) == 1
    assert percentile(values, 11) == 2


def test_percentile_reports_an_observed_value_not_an_interpolation():
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([1.0, 2.0], 51) == 2.0
    assert percentile([4.2], 99) == 4.2
    # 100 values: p99 is the 99th smallest, one outlier above does not move it.
    assert percentile([*range(1, 100), 10_000], 99) == 99


@pytest.mark.parametrize("bad", [-1, 100.5])
def test_percentile_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        percentile([1, 2], bad)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_is_median_and_range():
    assert summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert summary([4.0, 1.0, 2.0, 3.0]) == {"median": 2.5, "min": 1.0, "max": 4.0}
    with pytest.raises(ValueError):
        summary([])


def test_latency_figures():
    figures = latency_figures([float(v) for v in range(1, 101)])
    assert figures == {"mean_ms": 50.5, "p50_ms": 50.0, "p90_ms": 90.0, "p99_ms": 99.0}
