"""Load-test results: the multi-mechanize row format, in-memory columns, and the CSV / JTL files.

A row of ``results.csv`` is ``count,elapsed,epoch,group,run_time,error,repr(custom_timers)``:
``count`` numbers the transactions of the whole run in arrival order, ``elapsed`` is the transaction's start in
seconds since the test started (3 decimals), ``epoch`` its start as integer Unix seconds, ``group`` the user
group (config section name), ``run_time`` the wall time of ``run()`` in seconds (6 decimals), ``error`` the
exception message with commas removed (empty when it succeeded) and the last column the ``repr`` of the
script's ``custom_timers`` dict after that ``run()`` (it may contain commas: split a row with ``maxsplit=6``).
"""
from __future__ import annotations

import ast
import math
import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator, NamedTuple
from xml.sax.saxutils import quoteattr

#: Name of the timer that measures the whole ``run()`` of a transaction.
TOTAL_TIMER = "All Transactions"

CSV_NAME = "results.csv"
JTL_NAME = "results.jtl"
CSV_COLUMNS = ("count", "elapsed", "epoch", "group", "run_time", "error", "custom_timers")


class Row(NamedTuple):
    """One transaction as recorded in ``results.csv``."""

    count: int
    elapsed: float
    epoch: int
    group: str
    runTime: float
    error: str
    customTimers: dict


class ResultsFormatError(ValueError):
    """A results.csv line that does not follow the multi-mechanize row format."""


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def cleanErrorMessage(exc: BaseException) -> str:
    """Error text of a failed transaction: its message (class name when empty) without commas or line breaks."""
    text = str(exc).strip() or type(exc).__name__
    text = text.replace(",", "").replace("\r", " ").replace("\n", " ")
    return _CONTROL_CHARS.sub("", text).strip() or type(exc).__name__


def formatRow(row: Row) -> str:
    """The CSV line (with newline) of one transaction, exactly as multi-mechanize writes it."""
    return "%i,%.3f,%i,%s,%f,%s,%r\n" % (
        row.count,
        row.elapsed,
        row.epoch,
        row.group,
        row.runTime,
        row.error,
        row.customTimers,
    )


_SIMPLE_TIMERS = re.compile(r"\{(?:'[^'\\]*': [^,{}':]+(?:, '[^'\\]*': [^,{}':]+)*)?\}")
_SIMPLE_ITEM = re.compile(r"'([^'\\]*)': ([^,{}':]+)")


def parseCustomTimers(text: str) -> dict:
    """The custom-timers dict of a CSV row; a fast path for ``{'name': number, ...}``, literal_eval otherwise."""
    text = text.strip()
    if text == "{}":
        return {}
    if _SIMPLE_TIMERS.fullmatch(text):
        try:
            return {key: float(value) for key, value in _SIMPLE_ITEM.findall(text)}
        except ValueError:
            pass
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ResultsFormatError(f"custom timers column is not a Python dict literal: {text[:80]!r}") from exc
    if not isinstance(value, dict):
        raise ResultsFormatError(f"custom timers column is not a dict: {text[:80]!r}")
    return value


def parseRow(line: str) -> Row:
    """Parse one results.csv line (raises ResultsFormatError naming what is wrong)."""
    parts = line.rstrip("\r\n").split(",", 6)
    if len(parts) != 7:
        raise ResultsFormatError(f"expected 7 comma-separated columns {CSV_COLUMNS}, found {len(parts)}")
    try:
        return Row(
            int(parts[0]),
            float(parts[1]),
            int(parts[2]),
            parts[3],
            float(parts[4]),
            parts[5],
            parseCustomTimers(parts[6]),
        )
    except ValueError as exc:
        if isinstance(exc, ResultsFormatError):
            raise
        raise ResultsFormatError(f"bad number in row: {exc}") from exc


def readCsv(path: str | Path) -> Iterator[Row]:
    """Rows of a results.csv file; a malformed line raises ResultsFormatError with file and line number."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineNo, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield parseRow(line)
            except ResultsFormatError as exc:
                raise ResultsFormatError(f"{path}:{lineNo}: {exc}") from None


def _toFloat(value: object) -> float | None:
    """A custom-timer value as a finite float, or None when the script stored something else."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass
class TimerColumn:
    """Values of one custom timer and the rows (indices into the ResultSet) they belong to."""

    rows: array = field(default_factory=lambda: array("l"))
    values: array = field(default_factory=lambda: array("d"))


@dataclass
class TimerSeries:
    """What aggregation needs for one timer: start offsets, durations and error flags, aligned."""

    name: str
    elapsed: list[float]
    values: list[float]
    errors: list[bool]


class ResultSet:
    """Columns of all transactions of a run, kept compact so that millions of rows aggregate quickly."""

    def __init__(self) -> None:
        self.elapsed = array("d")
        self.runTime = array("d")
        self.epoch = array("q")
        self.groupIndex = array("l")
        self.groups: list[str] = []
        self._groupIds: dict[str, int] = {}
        self.errors: list[str] = []
        self.customTimers: dict[str, TimerColumn] = {}
        self.ignoredTimerValues = 0
        self._errorCount = 0

    def __len__(self) -> int:
        return len(self.elapsed)

    @property
    def errorCount(self) -> int:
        """Number of transactions whose run() raised."""
        return self._errorCount

    def add(self, row: Row) -> None:
        """Append one transaction (its count is implied by the position)."""
        index = len(self.elapsed)
        self.elapsed.append(row.elapsed)
        self.runTime.append(row.runTime)
        self.epoch.append(row.epoch)
        groupId = self._groupIds.get(row.group)
        if groupId is None:
            groupId = self._groupIds[row.group] = len(self.groups)
            self.groups.append(row.group)
        self.groupIndex.append(groupId)
        self.errors.append(row.error or "")
        if row.error:
            self._errorCount += 1
        for name, value in row.customTimers.items():
            number = _toFloat(value)
            if number is None:
                self.ignoredTimerValues += 1
                continue
            column = self.customTimers.get(str(name))
            if column is None:
                column = self.customTimers[str(name)] = TimerColumn()
            column.rows.append(index)
            column.values.append(number)

    @classmethod
    def fromRows(cls, rows: Iterable[Row]) -> "ResultSet":
        """A ResultSet holding the given rows."""
        resultSet = cls()
        for row in rows:
            resultSet.add(row)
        return resultSet

    @classmethod
    def fromCsv(cls, path: str | Path) -> "ResultSet":
        """Load a results.csv file."""
        return cls.fromRows(readCsv(path))

    def duration(self) -> float:
        """Seconds from the test start to the end of the last transaction (0 when nothing ran)."""
        if not self.elapsed:
            return 0.0
        return max(map(float.__add__, self.elapsed, self.runTime))

    def timerNames(self) -> list[str]:
        """The total timer first, then custom timers in order of first appearance."""
        return [TOTAL_TIMER, *self.customTimers]

    def series(self, name: str) -> TimerSeries:
        """Aligned (elapsed, value, isError) lists of a timer, the total or a custom one."""
        if name == TOTAL_TIMER:
            return TimerSeries(name, list(self.elapsed), list(self.runTime), [bool(e) for e in self.errors])
        column = self.customTimers[name]
        elapsed, errors = self.elapsed, self.errors
        return TimerSeries(
            name,
            [elapsed[i] for i in column.rows],
            list(column.values),
            [bool(errors[i]) for i in column.rows],
        )

    def groupCounts(self) -> dict[str, tuple[int, int]]:
        """Transactions and errors per user group."""
        counts = [0] * len(self.groups)
        failures = [0] * len(self.groups)
        for groupId, error in zip(self.groupIndex, self.errors):
            counts[groupId] += 1
            if error:
                failures[groupId] += 1
        return {name: (counts[i], failures[i]) for i, name in enumerate(self.groups)}

    def errorMessages(self) -> list[tuple[str, int]]:
        """Distinct error messages with their number of occurrences, most frequent first."""
        tally: dict[str, int] = {}
        for error in self.errors:
            if error:
                tally[error] = tally.get(error, 0) + 1
        return sorted(tally.items(), key=lambda item: (-item[1], item[0]))

    def estimatedStartEpoch(self) -> float:
        """Best estimate of the test start (Unix time) from the rows: epoch is the floor of start + elapsed."""
        if not self.elapsed:
            return 0.0
        return max(map(float.__sub__, map(float, self.epoch), self.elapsed))


def _xmlText(text: str) -> str:
    """An XML attribute value (quotes included) with characters XML cannot carry removed."""
    return quoteattr(_CONTROL_CHARS.sub("", text))


class JtlWriter:
    """Streams transactions as a JMeter XML results file (``<testResults>`` of ``<sample>`` elements).

    Each transaction is a ``<sample>`` labelled with its user group; custom timers are nested sub-samples
    labelled ``<group>.<timer>`` (JMeter's sub-result form), so JMeter listeners can load the file.
    """

    def __init__(self, stream: IO[str], startEpoch: float) -> None:
        self._stream = stream
        self._startEpoch = startEpoch
        stream.write('<?xml version="1.0" encoding="UTF-8"?>\n<testResults version="1.2">\n')

    def write(self, row: Row) -> None:
        """Append one transaction."""
        timestamp = int(round((self._startEpoch + row.elapsed) * 1000))
        success = "false" if row.error else "true"
        code, message = ("500", row.error) if row.error else ("200", "OK")
        group = _xmlText(row.group)
        head = (
            f'<sample t="{int(round(row.runTime * 1000))}" lt="0" ts="{timestamp}" s="{success}" '
            f'lb={group} rc="{code}" rm={_xmlText(message)} tn={group}'
        )
        timers = [(str(k), _toFloat(v)) for k, v in row.customTimers.items()]
        timers = [(k, v) for k, v in timers if v is not None]
        if not timers:
            self._stream.write(head + "/>\n")
            return
        parts = [head, ">\n"]
        for name, value in timers:
            parts.append(
                f'  <sample t="{int(round(value * 1000))}" lt="0" ts="{timestamp}" s="{success}" '
                f'lb={_xmlText(row.group + "." + name)} rc="{code}" rm={_xmlText(message)} tn={group}/>\n'
            )
        parts.append("</sample>\n")
        self._stream.write("".join(parts))

    def close(self) -> None:
        """Write the closing tag (the stream itself is closed by its owner)."""
        self._stream.write("</testResults>\n")


class ResultsWriter:
    """Numbers incoming transactions, appends them to results.csv (and results.jtl) and keeps the columns."""

    def __init__(self, resultsDir: str | Path, xmlReport: bool = False, startEpoch: float = 0.0) -> None:
        self.resultsDir = Path(resultsDir)
        self.resultSet = ResultSet()
        self._csv = open(self.resultsDir / CSV_NAME, "w", encoding="utf-8", newline="")
        self._jtlFile = open(self.resultsDir / JTL_NAME, "w", encoding="utf-8") if xmlReport else None
        self._jtl = JtlWriter(self._jtlFile, startEpoch) if self._jtlFile else None

    @property
    def count(self) -> int:
        """Transactions written so far."""
        return len(self.resultSet)

    def addRow(self, elapsed: float, epoch: int, group: str, runTime: float, error: str, timers: dict) -> Row:
        """Record one transaction and return it with its count."""
        row = Row(len(self.resultSet) + 1, elapsed, epoch, group, runTime, error, timers)
        self._csv.write(formatRow(row))
        if self._jtl:
            self._jtl.write(row)
        self.resultSet.add(row)
        return row

    def flush(self) -> None:
        """Push written rows to disk so that an interrupted run leaves readable files."""
        self._csv.flush()
        if self._jtlFile:
            self._jtlFile.flush()

    def close(self) -> None:
        """Finish the files."""
        if self._jtl:
            self._jtl.close()
            self._jtlFile.close()  # type: ignore[union-attr]
            self._jtl = None
        if not self._csv.closed:
            self._csv.close()


def writeJtlFromRows(path: str | Path, rows: Iterable[Row], startEpoch: float) -> None:
    """Write a complete JTL file from rows (used when a report is rebuilt from results.csv)."""
    with open(path, "w", encoding="utf-8") as fh:
        writer = JtlWriter(fh, startEpoch)
        for row in rows:
            writer.write(row)
        writer.close()
