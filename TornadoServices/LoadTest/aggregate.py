"""Statistics of load-test timers: summary per timer and time series per ``results_ts_interval``.

Percentiles use the nearest-rank definition (the smallest value with at least p% of the values at or below
it), which always returns a measured value. Every transaction counts in the response-time statistics,
failed ones included; errors are reported beside them. Work is O(n log n) on plain floats, so a few
hundred thousand rows aggregate in well under a second.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Sequence

from TornadoServices.LoadTest.results import ResultSet, TimerSeries

#: Percentiles shown in tables and graphs.
PERCENTILES = (50, 80, 90, 95, 99)


def percentile(sortedValues: Sequence[float], p: float) -> float:
    """Nearest-rank p-th percentile (0 < p <= 100) of already sorted values (raises ValueError when empty)."""
    if not sortedValues:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {p}")
    rank = max(1, math.ceil(p / 100.0 * len(sortedValues)))
    return sortedValues[min(rank, len(sortedValues)) - 1]


@dataclass
class Distribution:
    """Descriptive statistics of a set of durations (seconds)."""

    minimum: float
    average: float
    maximum: float
    stdev: float
    percentiles: dict[int, float]

    @classmethod
    def of(cls, values: Sequence[float]) -> "Distribution | None":
        """Statistics of the values, None when there are none."""
        if not values:
            return None
        ordered = sorted(values)
        count = len(ordered)
        mean = math.fsum(ordered) / count
        variance = max(0.0, math.fsum(map(operator.mul, ordered, ordered)) / count - mean * mean)
        return cls(
            minimum=ordered[0],
            average=mean,
            maximum=ordered[-1],
            stdev=math.sqrt(variance),
            percentiles={p: percentile(ordered, p) for p in PERCENTILES},
        )


@dataclass
class TimerStats:
    """Whole-run summary of one timer."""

    name: str
    count: int
    errors: int
    rate: float
    distribution: Distribution | None


@dataclass
class IntervalStats:
    """Statistics of the transactions that started within one time-series interval [start, end)."""

    start: float
    end: float
    count: int
    errors: int
    rate: float
    errorRate: float
    distribution: Distribution | None


def summarize(series: TimerSeries, duration: float) -> TimerStats:
    """Count, errors, rate over the run duration and distribution of a timer."""
    count = len(series.values)
    rate = count / duration if duration > 0 else 0.0
    return TimerStats(series.name, count, sum(series.errors), rate, Distribution.of(series.values))


def intervals(series: TimerSeries, interval: float, duration: float) -> list[IntervalStats]:
    """Per-interval statistics covering [0, duration), empty intervals included; the last may be partial."""
    if interval <= 0:
        raise ValueError(f"results_ts_interval must be positive, got {interval}")
    horizon = max(duration, max(series.elapsed, default=0.0))
    if horizon <= 0 and not series.values:
        return []
    bucketCount = max(1, math.ceil(horizon / interval))
    buckets: list[list[float]] = [[] for _ in range(bucketCount)]
    bucketErrors = [0] * bucketCount
    last = bucketCount - 1
    for start, value, failed in zip(series.elapsed, series.values, series.errors):
        index = int(start // interval)
        index = last if index > last else (0 if index < 0 else index)
        buckets[index].append(value)
        if failed:
            bucketErrors[index] += 1
    result = []
    for index, values in enumerate(buckets):
        start = index * interval
        covered = min(start + interval, horizon) - start
        if covered <= 0:
            covered = interval
        result.append(
            IntervalStats(
                start=start,
                end=start + interval,
                count=len(values),
                errors=bucketErrors[index],
                rate=len(values) / covered,
                errorRate=bucketErrors[index] / covered,
                distribution=Distribution.of(values),
            )
        )
    return result


@dataclass
class TimerReport:
    """Summary and time series of one timer."""

    summary: TimerStats
    series: TimerSeries
    intervals: list[IntervalStats]


def loadPeriod(resultSet: ResultSet, runTime: float | None = None) -> float:
    """Seconds during which load was applied: run_time, or less when the run ended early (Ctrl-C).

    Transactions only start before run_time; the one in flight at the end may finish later, which is not
    counted as load time so that throughput is comparable between runs.
    """
    duration = resultSet.duration()
    return min(duration, runTime) if runTime and runTime > 0 else duration


def aggregate(resultSet: ResultSet, interval: float, runTime: float | None = None) -> list[TimerReport]:
    """Reports for the total timer and every custom timer of a run (rates over the load period)."""
    period = loadPeriod(resultSet, runTime)
    reports = []
    for name in resultSet.timerNames():
        series = resultSet.series(name)
        reports.append(TimerReport(summarize(series, period), series, intervals(series, interval, period)))
    return reports
