"""The one table ``make bench`` prints, and the verdict on each target, from measured rows."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from benchmarks.connections import IdleResult, RateResult
from benchmarks.loadgen import Measurement

#: Targets of the performance work: (b) CPU per call vs (a), (c) vs (b), (e) pooled vs DIRAC, (f) KB per connection.
TARGET_B_OVER_A = 1.25
TARGET_E_RATIO = 5.0
TARGET_F_KB = 50.0

HEADERS = (
    "row",
    "what",
    "calls/s",
    "p50 ms",
    "p99 ms",
    "srv us CPU/call",
    "calls/srv CPU-s",
    "x (a) CPU",
    "client us CPU/call",
    "notes",
)


@dataclass
class LoadRow:
    """A row of the load part: key (a, b, ...), label, its measurement and the key of its floor row."""

    key: str
    label: str
    measurement: Measurement
    floor: str = "a"


def _fmt(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float, reference: float) -> float:
    if not reference or math.isnan(reference) or math.isnan(value):
        return float("nan")
    return value / reference


def loadCells(row: LoadRow, byKey: dict[str, LoadRow]) -> list[str]:
    """Table cells of a load row."""
    m = row.measurement
    base = byKey.get("a")
    ratio = _ratio(m.serverCPUPerCall, base.measurement.serverCPUPerCall) if base else float("nan")
    notes = []
    floor = byKey.get(row.floor)
    if row.floor != "a" and floor is not None:
        notes.append(f"x ({row.floor}) CPU {_fmt(_ratio(m.serverCPUPerCall, floor.measurement.serverCPUPerCall), 2)}")
    notes.append(f"other load {m.otherLoad:.2f} cores")
    if m.errors:
        notes.append(f"{m.errors} errors: {m.firstError[:80]}")
    perCPU = 1.0 / m.serverCPUPerCall if m.serverCPUPerCall and not math.isnan(m.serverCPUPerCall) else float("nan")
    return [
        row.key,
        row.label,
        _fmt(m.callsPerSecond),
        _fmt(1000 * m.percentile(0.50), 2),
        _fmt(1000 * m.percentile(0.99), 2),
        _fmt(1e6 * m.serverCPUPerCall),
        _fmt(perCPU),
        _fmt(ratio, 2),
        _fmt(1e6 * m.clientCPUPerCall),
        "; ".join(notes),
    ]


def rateCells(key: str, label: str, rate: RateResult, reference: Optional[RateResult], aCPUPerCall: float) -> list[str]:
    """Table cells of a client-rate row (e)."""
    notes = []
    if rate.tlsConnections >= 0:
        notes.append(f"{rate.tlsConnections} TLS connection(s) for {rate.calls} calls")
    if reference is not None and reference is not rate:
        notes.append(f"{_fmt(_ratio(rate.callsPerSecond, reference.callsPerSecond), 1)}x the calls/s of {reference.style}")
    if rate.error:
        notes.append(f"error: {rate.error[:80]}")
    perCPU = 1.0 / rate.serverCPUPerCall if rate.serverCPU > 0 else float("nan")
    return [
        key,
        label,
        _fmt(rate.callsPerSecond),
        "-",
        "-",
        _fmt(1e6 * rate.serverCPUPerCall),
        _fmt(perCPU),
        _fmt(_ratio(rate.serverCPUPerCall, aCPUPerCall), 2),
        _fmt(1e6 * rate.clientCPUPerCall),
        "; ".join(notes),
    ]


def idleCells(key: str, label: str, idle: IdleResult) -> list[str]:
    """Table cells of an idle-connection row (f)."""
    note = (
        f"{idle.opened} idle mTLS connections: RSS {idle.rssBeforeKB:,} -> {idle.rssAfterKB:,} KB = "
        f"{_fmt(idle.kbPerConnection, 1)} KB/connection; server fds {idle.serverFDs}; opened in {idle.seconds:.1f} s"
    )
    if idle.error:
        note += f"; error: {idle.error[:80]}"
    return [key, label, "-", "-", "-", "-", "-", "-", "-", note]


def formatTable(rows: Sequence[Sequence[str]], headers: Sequence[str] = HEADERS) -> str:
    """Fixed-width text table; numbers right-aligned, text left-aligned, last column free."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers) - 1)]
    numeric = {2, 3, 4, 5, 6, 7, 8}

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(cells[:-1]):
            parts.append(str(cell).rjust(widths[i]) if i in numeric else str(cell).ljust(widths[i]))
        parts.append(str(cells[-1]))
        return " | ".join(parts).rstrip()

    rule = "-+-".join("-" * w for w in widths) + "-+-" + "-" * 10
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def roundRatios(measured: Measurement, reference: Measurement) -> list[float]:
    """Server CPU per call of ``measured`` over ``reference``, round by round (rounds are measured side by side)."""
    ratios = []
    for mine, theirs in zip(measured.windows, reference.windows):
        if mine.calls and theirs.calls and theirs.serverCPU:
            ratios.append((mine.serverCPU / mine.calls) / (theirs.serverCPU / theirs.calls))
        else:
            ratios.append(float("nan"))
    return ratios


def medianRatio(measured: Measurement, reference: Measurement) -> float:
    """Median of :func:`roundRatios`: robust to a round during which the machine's other load spiked."""
    ratios = sorted(r for r in roundRatios(measured, reference) if not math.isnan(r))
    if not ratios:
        return float("nan")
    middle = len(ratios) // 2
    return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2


def roundSpread(measured: Measurement, reference: Measurement) -> str:
    """`` (per round: r1, r2, ...; all rounds summed: s)`` when there are several rounds."""
    ratios = roundRatios(measured, reference)
    if len(ratios) < 2:
        return ""
    summed = _ratio(measured.serverCPUPerCall, reference.serverCPUPerCall)
    return f" (per round: {', '.join(_fmt(r, 2) for r in ratios)}; all rounds summed: {_fmt(summed, 2)})"


def verdicts(
    byKey: dict[str, LoadRow], rates: Optional[dict[str, RateResult]], idle: Optional[IdleResult]
) -> list[str]:
    """One line per target: the measured value and whether it is met (and by how much it is missed)."""
    lines = []

    def judge(name: str, value: float, limit: float, lowerIsBetter: bool, unit: str = "x", spread: str = "") -> None:
        if math.isnan(value):
            lines.append(f"{name}: not measured")
            return
        met = value <= limit if lowerIsBetter else value >= limit
        if met:
            verdict = f"{name}: {value:.2f}{unit} -- met"
        else:
            miss = (value / limit - 1) if lowerIsBetter else (1 - value / limit)
            verdict = f"{name}: {value:.2f}{unit} -- MISSED by {100 * miss:.0f}%"
        lines.append(verdict + spread)

    a, b, c = byKey.get("a"), byKey.get("b"), byKey.get("c")
    if a and b:
        judge(
            f"(b) server CPU per call <= {TARGET_B_OVER_A}x (a), median of rounds",
            medianRatio(b.measurement, a.measurement),
            TARGET_B_OVER_A,
            True,
            spread=roundSpread(b.measurement, a.measurement),
        )
    if b and c:
        judge(
            "(c) server CPU per call <= (b), median of rounds",
            medianRatio(c.measurement, b.measurement),
            1.0,
            True,
            spread=roundSpread(c.measurement, b.measurement),
        )
    if rates and "pooled" in rates and "dirac" in rates:
        judge(
            f"(e) pooled calls/s >= {TARGET_E_RATIO:g}x new-connection-per-call",
            _ratio(rates["pooled"].callsPerSecond, rates["dirac"].callsPerSecond),
            TARGET_E_RATIO,
            False,
        )
    if idle is not None:
        judge(f"(f) server memory per idle connection <= {TARGET_F_KB:g} KB", idle.kbPerConnection, TARGET_F_KB, True, " KB")
    return lines
