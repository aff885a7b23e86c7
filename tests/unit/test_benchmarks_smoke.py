"""Smoke tests of the benchmark harness (``make bench``): its pieces work and a tiny run fills every row.

Nothing here asserts on speed: the figures of a run on a shared machine are whatever they are.
"""
from __future__ import annotations

import io
import os
import threading

import pytest

from benchmarks import report
from benchmarks.connections import IdleResult, RateResult
from benchmarks.loadgen import Measurement, Window
from benchmarks.procstat import machineCPUSeconds, openFiles, processCPUSeconds, raiseFileLimit, residentKB
from benchmarks.profiling import ThreadProfiler, printProfile


def _window(calls: int, serverCPU: float, latencies: list[float] | None = None) -> Window:
    return Window(
        seconds=1.0,
        calls=calls,
        errors=0,
        latencies=latencies if latencies is not None else [0.001] * calls,
        serverCPU=serverCPU,
        clientCPU=2 * serverCPU,
        machineBusy=4 * serverCPU,
    )


def test_percentiles_are_nearest_rank():
    window = _window(100, 0.1, [i / 1000 for i in range(1, 101)])
    assert window.percentile(0.50) == pytest.approx(0.050)
    assert window.percentile(0.99) == pytest.approx(0.099)
    assert window.percentile(1.0) == pytest.approx(0.100)
    assert window.percentile(0.0) == pytest.approx(0.001)


def test_measurement_sums_its_rounds():
    measurement = Measurement([_window(100, 0.1), _window(300, 0.2)])
    assert measurement.calls == 400
    assert measurement.callsPerSecond == pytest.approx(200)
    assert measurement.serverCPUPerCall == pytest.approx(0.3 / 400)
    assert measurement.clientCPUPerCall == pytest.approx(0.6 / 400)
    assert measurement.otherLoad == pytest.approx((1.2 - 0.3 - 0.6) / 2)


def test_round_ratios_and_their_median():
    a = Measurement([_window(100, 0.1), _window(100, 0.1), _window(100, 0.1)])
    b = Measurement([_window(100, 0.15), _window(100, 0.12), _window(100, 0.6)])
    assert report.roundRatios(b, a) == pytest.approx([1.5, 1.2, 6.0])
    assert report.medianRatio(b, a) == pytest.approx(1.5)
    assert report.roundSpread(b, a) == " (per round: 1.50, 1.20, 6.00; all rounds summed: 2.90)"


def test_table_has_one_line_per_row_and_ratios_against_a():
    rows = [
        report.LoadRow("a", "floor", Measurement([_window(100, 0.1)])),
        report.LoadRow("b", "sync", Measurement([_window(100, 0.15)])),
        report.LoadRow("c", "async", Measurement([_window(100, 0.12)])),
    ]
    byKey = {row.key: row for row in rows}
    cells = [report.loadCells(row, byKey) for row in rows]
    pooled = RateResult("pooled", 600, 1.0, 0.5, 0.4, tlsConnections=1)
    dirac = RateResult("dirac", 50, 1.0, 0.9, 0.3)
    cells.append(report.rateCells("e", "pooled", pooled, dirac, byKey["a"].measurement.serverCPUPerCall))
    idle = IdleResult("idle-services", 1000, 40_000, 80_000, 1010, 3.0)
    cells.append(report.idleCells("f", "idle", idle))
    table = report.formatTable(cells).splitlines()
    assert len(table) == 2 + 5
    assert table[0].split("|")[0].strip() == "row"
    assert [line.split("|")[0].strip() for line in table[2:]] == ["a", "b", "c", "e", "f"]
    assert table[3].split("|")[7].strip() == "1.50"  # (b) CPU per call / (a)'s
    assert "12.0x the calls/s of dirac" in table[5]
    assert "40.0 KB/connection" in table[6]

    verdicts = report.verdicts(byKey, {"pooled": pooled, "dirac": dirac}, idle)
    assert verdicts == [
        "(b) server CPU per call <= 1.25x (a), median of rounds: 1.50x -- MISSED by 20%",
        "(c) server CPU per call <= (b), median of rounds: 0.80x -- met",
        "(e) pooled calls/s >= 5x new-connection-per-call: 12.00x -- met",
        "(f) server memory per idle connection <= 50 KB: 40.00 KB -- met",
    ]


def test_proc_readings_of_this_process():
    assert processCPUSeconds(os.getpid()) >= 0
    assert residentKB(os.getpid()) > 0
    assert openFiles(os.getpid()) > 0
    busy, total = machineCPUSeconds()
    assert 0 <= busy <= total
    assert raiseFileLimit() > 0


def _spin() -> int:
    return sum(i * i for i in range(20_000))


def test_thread_profiler_follows_new_threads(tmp_path):
    profiler = ThreadProfiler("cpu")
    profiler.start()
    worker = threading.Thread(target=_spin)
    worker.start()
    worker.join()
    statsFile = str(tmp_path / "stats")
    profiler.dump(statsFile)
    out = io.StringIO()
    printProfile(statsFile, out, top=40)
    assert "_spin" in out.getvalue()


@pytest.mark.slow
def test_tiny_run_fills_every_row():
    from benchmarks.run import Options, runBenchmark

    options = Options(
        duration=0.5,
        warmup=0.2,
        rounds=1,
        processes=1,
        threads=1,
        clientSeconds=0.3,
        connections=4,
        connectionProcesses=1,
    )
    out = io.StringIO()
    results = runBenchmark(options, out)
    keys = [line.split("|")[0].strip() for line in results.table.splitlines()[2:]]
    assert keys == ["a", "b", "c", "d", "a2", "e", "e2", "e3", "f", "f0"]
    assert all(row.measurement.errors == 0 for row in results.load), out.getvalue()
    assert sum(row.measurement.calls for row in results.load) > 0
    assert {r.style for r in results.rates.values() if not r.error} == {"pooled", "dirac", "handshake"}
    assert results.rates["pooled"].tlsConnections == 1
    assert [r.opened for r in results.idle] == [4, 4]
    assert len(results.verdicts) == 4
    assert results.table in out.getvalue()


def test_ab_counts_context_switches_of_a_process():
    from benchmarks.ab import contextSwitches

    first = contextSwitches(os.getpid())
    threading.Thread(target=lambda: None).start()  # at least one more switch of this process
    assert 0 <= first <= contextSwitches(os.getpid())
    assert contextSwitches(2**22 + 12345) == 0  # no such process: nothing counted
