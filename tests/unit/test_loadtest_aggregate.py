"""Aggregation of load-test results: nearest-rank percentiles, summaries and time-series intervals."""
import math
import random

import pytest

from TornadoServices.LoadTest.aggregate import Distribution, aggregate, intervals, loadPeriod, percentile, summarize
from TornadoServices.LoadTest.results import TOTAL_TIMER, ResultSet, Row, TimerSeries


def test_percentile_nearest_rank_on_1_to_100():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 80) == 80
    assert percentile(values, 90) == 90
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1


def test_percentile_small_sets_return_measured_values():
    assert percentile([7.0], 50) == 7.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([1.0, 2.0], 51) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 75) == 3.0


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_distribution_statistics():
    dist = Distribution.of([4.0, 1.0, 3.0, 2.0])
    assert dist.minimum == 1.0
    assert dist.maximum == 4.0
    assert dist.average == pytest.approx(2.5)
    assert dist.stdev == pytest.approx(math.sqrt(1.25))
    assert dist.percentiles[50] == 2.0
    assert dist.percentiles[99] == 4.0
    assert Distribution.of([]) is None


def test_summarize_counts_errors_and_rate():
    series = TimerSeries("t", [0.0, 0.5, 1.0, 1.5], [0.1, 0.2, 0.3, 0.4], [False, True, False, True])
    stats = summarize(series, duration=2.0)
    assert stats.count == 4
    assert stats.errors == 2
    assert stats.rate == pytest.approx(2.0)
    assert stats.distribution.maximum == 0.4


def test_intervals_bucket_by_start_time_and_include_empty_ones():
    # 10 transactions in [0,1), none in [1,2), 5 in [2,3); the last one fails
    elapsed = [i * 0.1 for i in range(10)] + [2.0 + i * 0.1 for i in range(5)]
    values = [0.01] * 10 + [0.5, 0.6, 0.7, 0.8, 0.9]
    errors = [False] * 14 + [True]
    rows = intervals(TimerSeries("t", elapsed, values, errors), interval=1.0, duration=3.0)
    assert [(r.start, r.end) for r in rows] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert [r.count for r in rows] == [10, 0, 5]
    assert [r.errors for r in rows] == [0, 0, 1]
    assert rows[0].rate == pytest.approx(10.0)
    assert rows[1].distribution is None and rows[1].rate == 0
    assert rows[2].distribution.percentiles[50] == 0.7
    assert rows[2].distribution.maximum == 0.9
    assert rows[2].errorRate == pytest.approx(1.0)


def test_intervals_last_partial_interval_rate_uses_covered_time():
    rows = intervals(TimerSeries("t", [0.1, 2.1, 2.2], [0.1] * 3, [False] * 3), interval=2.0, duration=2.5)
    assert len(rows) == 2
    assert rows[1].count == 2
    assert rows[1].rate == pytest.approx(2 / 0.5)


def test_intervals_reject_non_positive_interval():
    with pytest.raises(ValueError):
        intervals(TimerSeries("t", [0.0], [0.1], [False]), interval=0, duration=1.0)


def test_intervals_of_empty_series():
    assert intervals(TimerSeries("t", [], [], []), interval=1.0, duration=0.0) == []


def _row(count, elapsed, runTime, error="", timers=None, group="g1"):
    return Row(count, elapsed, 1_700_000_000 + int(elapsed), group, runTime, error, timers or {})


def test_aggregate_total_and_custom_timers():
    rows = [
        _row(1, 0.0, 0.2, timers={"a": 0.1, "b": 0.05}),
        _row(2, 0.5, 0.4, error="boom", timers={"a": 0.3}),
        _row(3, 1.2, 0.1, timers={"b": 0.07}, group="g2"),
        _row(4, 1.8, 0.1, timers={"a": "not a number"}),
    ]
    resultSet = ResultSet.fromRows(rows)
    reports = {r.summary.name: r for r in aggregate(resultSet, interval=1.0, runTime=2.0)}
    assert list(reports) == [TOTAL_TIMER, "a", "b"]
    total = reports[TOTAL_TIMER].summary
    assert (total.count, total.errors) == (4, 1)
    assert total.rate == pytest.approx(4 / 1.9)  # load period: last transaction ended at 1.9 s < run_time
    assert reports["a"].summary.count == 2 and reports["a"].summary.errors == 1
    assert reports["b"].summary.count == 2 and reports["b"].summary.errors == 0
    assert resultSet.ignoredTimerValues == 1
    assert [r.count for r in reports[TOTAL_TIMER].intervals] == [2, 2]
    assert resultSet.groupCounts() == {"g1": (3, 1), "g2": (1, 0)}
    assert resultSet.errorMessages() == [("boom", 1)]


def test_load_period_is_capped_by_run_time():
    resultSet = ResultSet.fromRows([_row(1, 0.0, 1.0), _row(2, 9.5, 2.0)])
    assert resultSet.duration() == pytest.approx(11.5)
    assert loadPeriod(resultSet, 10.0) == pytest.approx(10.0)
    assert loadPeriod(resultSet, 60.0) == pytest.approx(11.5)
    assert loadPeriod(resultSet) == pytest.approx(11.5)


def test_aggregate_handles_a_few_hundred_thousand_rows():
    rng = random.Random(42)
    resultSet = ResultSet()
    count = 120_000
    for i in range(count):
        elapsed = i * 600.0 / count
        value = rng.expovariate(50.0)
        resultSet.add(Row(i + 1, elapsed, 1_700_000_000, "g", value, "" if i % 100 else "err", {"x": value / 2}))
    reports = aggregate(resultSet, interval=10.0, runTime=600.0)
    total = reports[0]
    assert total.summary.count == count
    assert total.summary.errors == count // 100
    assert len(total.intervals) == 60
    assert sum(r.count for r in total.intervals) == count
    # exponential distribution with mean 20 ms: the median is ln(2)/50
    assert total.summary.distribution.percentiles[50] == pytest.approx(math.log(2) / 50, rel=0.05)
    assert reports[1].summary.count == count
