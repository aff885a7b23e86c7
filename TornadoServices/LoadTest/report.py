"""The load-test report: results.html with PNG graphs (matplotlib, Agg canvas) and the console summary.

For the transaction total and for every custom timer the report holds a summary row (count, errors,
transactions/s, min/avg/percentiles/max), a time-series table per ``results_ts_interval`` and three graphs:
response time over elapsed time, response-time percentiles per interval, throughput per interval.
"""
from __future__ import annotations

import html
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from TornadoServices.LoadTest.aggregate import PERCENTILES, TimerReport, aggregate, loadPeriod
from TornadoServices.LoadTest.project import Project
from TornadoServices.LoadTest.results import TOTAL_TIMER, ResultSet

HTML_NAME = "results.html"
#: Above this many points the response-time scatter shows an evenly spaced subset (the tables use them all).
MAX_SCATTER_POINTS = 100_000
#: Error messages listed in the report.
MAX_ERROR_MESSAGES = 50
GRAPH_KINDS = ("response_times", "percentiles", "throughput")


@dataclass
class ReportInfo:
    """Facts about the run that the rows do not carry."""

    startEpoch: float
    wallTime: float | None = None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """What was written, for the console summary and the caller."""

    htmlPath: Path
    timers: list[TimerReport]
    graphs: dict[str, dict[str, Path]]
    duration: float
    count: int
    errors: int
    notes: list[str]
    errorMessages: list[tuple[str, int]] = field(default_factory=list)


#: Error messages shown on the console after the summary table.
CONSOLE_ERROR_MESSAGES = 5


def graphStem(name: str, taken: set[str]) -> str:
    """A file-name-safe, unique stem for a timer's graphs."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "timer"
    candidate, number = stem, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{stem}_{number}"
    taken.add(candidate.lower())
    return candidate


def _ms(value: float | None) -> str:
    """A duration (seconds) as milliseconds for a table cell."""
    return "-" if value is None else f"{value * 1000.0:.2f}"


def _loadMatplotlib():
    """The Figure class and Agg canvas, or None when matplotlib (the loadtest extra) is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure, FigureCanvasAgg


def _newAxes(classes, title: str, xlabel: str, ylabel: str):
    figureClass, canvasClass = classes
    figure = figureClass(figsize=(9, 3.6), dpi=90)
    canvasClass(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel, fontsize=9)
    axes.set_ylabel(ylabel, fontsize=9)
    axes.tick_params(labelsize=8)
    axes.grid(True, color="#dddddd", linewidth=0.6)
    return figure, axes


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(str(path), format="png")
    return path


def drawGraphs(classes, timer: TimerReport, stem: str, directory: Path) -> dict[str, Path]:
    """The three PNG graphs of one timer."""
    series, rows = timer.series, timer.intervals
    name = timer.summary.name
    paths = {}

    figure, axes = _newAxes(classes, f"{name}: response time", "elapsed time (s)", "response time (ms)")
    count = len(series.values)
    step = max(1, math.ceil(count / MAX_SCATTER_POINTS))
    okX = [series.elapsed[i] for i in range(0, count, step) if not series.errors[i]]
    okY = [series.values[i] * 1000.0 for i in range(0, count, step) if not series.errors[i]]
    badX = [series.elapsed[i] for i in range(0, count, step) if series.errors[i]]
    badY = [series.values[i] * 1000.0 for i in range(0, count, step) if series.errors[i]]
    if okX:
        axes.plot(okX, okY, linestyle="none", marker=".", markersize=2, color="#1f77b4", label="ok")
    if badX:
        axes.plot(badX, badY, linestyle="none", marker="x", markersize=3, color="#d62728", label="error")
    filled = [r for r in rows if r.distribution]
    if filled:
        middles = [(r.start + r.end) / 2 for r in filled]
        averages = [r.distribution.average * 1000.0 for r in filled]
        axes.plot(middles, averages, color="#ff7f0e", linewidth=1.5, label="interval average")
    if step > 1:
        axes.text(0.01, 0.97, f"1 point in {step} shown", transform=axes.transAxes, fontsize=7, va="top")
    if okX or badX:
        axes.legend(fontsize=7, loc="upper right")
    axes.set_ylim(bottom=0)
    paths["response_times"] = _save(figure, directory / f"{stem}_response_times.png")

    title = f"{name}: response-time percentiles per interval"
    figure, axes = _newAxes(classes, title, "elapsed time (s)", "response time (ms)")
    xs = [r.end for r in filled]
    if filled:
        axes.plot(xs, [r.distribution.maximum * 1000.0 for r in filled], label="max", color="#7f7f7f", linewidth=1)
        for p, color in zip(sorted(PERCENTILES, reverse=True), ("#d62728", "#ff7f0e", "#bcbd22", "#2ca02c", "#1f77b4")):
            values = [r.distribution.percentiles[p] * 1000.0 for r in filled]
            axes.plot(xs, values, label=f"p{p}", color=color, linewidth=1.2)
        averages = [r.distribution.average * 1000.0 for r in filled]
        axes.plot(xs, averages, label="avg", color="black", linestyle="--", linewidth=1)
        axes.legend(fontsize=7, loc="upper left", ncol=7)
    axes.set_ylim(bottom=0)
    paths["percentiles"] = _save(figure, directory / f"{stem}_percentiles.png")

    figure, axes = _newAxes(classes, f"{name}: throughput per interval", "elapsed time (s)", "transactions / s")
    if rows:
        width = (rows[0].end - rows[0].start) * 0.9
        centres = [r.start + (r.end - r.start) / 2 for r in rows]
        axes.bar(centres, [r.rate for r in rows], width=width, color="#2ca02c", label="transactions/s")
        if any(r.errors for r in rows):
            axes.bar(centres, [r.errorRate for r in rows], width=width, color="#d62728", label="errors/s")
        axes.legend(fontsize=7, loc="upper right")
    paths["throughput"] = _save(figure, directory / f"{stem}_throughput.png")
    return paths


def _table(
    headers: Iterable[str], rows: Iterable[Iterable[str]], attrs: str = "", rowAttrs: Iterable[str] | None = None
) -> str:
    """An HTML table; cells are already escaped."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    rowAttrList = list(rowAttrs) if rowAttrs is not None else None
    body = []
    for i, row in enumerate(rows):
        extra = f" {rowAttrList[i]}" if rowAttrList else ""
        body.append(f"<tr{extra}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return f"<table {attrs}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n"


_TIME_HEADERS = ("Min", "Avg", *(f"p{p}" for p in PERCENTILES), "Max")
SUMMARY_HEADERS = ("Timer", "Count", "Errors", "Transactions/s", *_TIME_HEADERS, "Stdev")
INTERVAL_HEADERS = ("Interval end (s)", "Count", "Errors", "Transactions/s", *_TIME_HEADERS)


def _summaryCells(timer: TimerReport) -> list[str]:
    summary, dist = timer.summary, timer.summary.distribution
    return [
        html.escape(summary.name),
        str(summary.count),
        str(summary.errors),
        f"{summary.rate:.2f}",
        _ms(dist and dist.minimum),
        _ms(dist and dist.average),
        *(_ms(dist and dist.percentiles[p]) for p in PERCENTILES),
        _ms(dist and dist.maximum),
        _ms(dist and dist.stdev),
    ]


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em 0; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: right; }
th { background: #eee; }
td:first-child, th:first-child { text-align: left; }
table.info td, table.info th { text-align: left; }
img { display: block; margin: 0.4em 0; max-width: 100%; }
.note { color: #a33; }
"""


def renderHtml(project: Project, resultSet: ResultSet, info: ReportInfo, timers: list[TimerReport],
               graphs: dict[str, dict[str, Path]], duration: float, notes: list[str]) -> str:
    """The complete results.html text."""
    esc = html.escape
    total = timers[0].summary
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.startEpoch)) if info.startEpoch else "-"
    status = "interrupted (Ctrl-C): partial results" if info.interrupted else "completed"
    infoRows = [
        ("Project", esc(str(project.directory))),
        ("Started", esc(started)),
        ("Status", esc(status)),
        ("run_time / rampup", f"{project.runTime:g} s / {project.rampup:g} s"),
        ("Load period", f"{duration:.3f} s (last transaction ended at {resultSet.duration():.3f} s)"),
        ("results_ts_interval", f"{project.resultsTsInterval:g} s"),
        ("Transactions", str(total.count)),
        ("Errors", str(total.errors)),
        ("Transactions/s", f"{total.rate:.2f}"),
    ]
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f"<title>Load test report: {esc(project.name)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n",
        f"<h1>Load test report: {esc(project.name)}</h1>\n",
        "<table class=\"info\" id=\"run-info\">\n"
        + "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in infoRows)
        + "\n</table>\n",
    ]
    if notes:
        parts.append("<ul class=\"note\">\n" + "".join(f"<li>{esc(n)}</li>\n" for n in notes) + "</ul>\n")

    groupCounts = resultSet.groupCounts()
    groupRows = []
    for group in project.userGroups:
        count, errors = groupCounts.get(group.name, (0, 0))
        rate = count / duration if duration > 0 else 0.0
        groupRows.append(
            [esc(group.name), str(group.threads), esc(group.script), str(count), str(errors), f"{rate:.2f}"]
        )
    parts.append("<h2>Workload</h2>\n")
    workloadHeaders = ("User group", "Threads", "Script", "Transactions", "Errors", "Transactions/s")
    parts.append(_table(workloadHeaders, groupRows, 'id="workload"'))

    parts.append("<h2 id=\"summary\">Summary (times in milliseconds)</h2>\n")
    parts.append(
        _table(
            SUMMARY_HEADERS,
            [_summaryCells(t) for t in timers],
            'id="summary-table"',
            [f'data-timer="{esc(t.summary.name)}"' for t in timers],
        )
    )

    messages = resultSet.errorMessages()
    if messages:
        parts.append("<h2 id=\"errors\">Errors</h2>\n")
        shown = messages[:MAX_ERROR_MESSAGES]
        parts.append(_table(("Message", "Count"), [[esc(m), str(c)] for m, c in shown], 'id="errors-table"'))
        if len(messages) > len(shown):
            parts.append(f"<p>{len(messages) - len(shown)} more distinct messages are in results.csv.</p>\n")

    for timer in timers:
        name = timer.summary.name
        parts.append(f"<h2 class=\"timer\">{esc(name)}</h2>\n")
        for kind in GRAPH_KINDS:
            path = graphs.get(name, {}).get(kind)
            if path:
                parts.append(f"<img src=\"{esc(path.name)}\" alt=\"{esc(name)} {kind.replace('_', ' ')}\">\n")
        intervalRows = []
        for row in timer.intervals:
            dist = row.distribution
            intervalRows.append([
                f"{row.end:g}",
                str(row.count),
                str(row.errors),
                f"{row.rate:.2f}",
                _ms(dist and dist.minimum),
                _ms(dist and dist.average),
                *(_ms(dist and dist.percentiles[p]) for p in PERCENTILES),
                _ms(dist and dist.maximum),
            ])
        parts.append(
            f"<p>Per {project.resultsTsInterval:g} s interval (by transaction start), times in milliseconds:</p>\n"
        )
        parts.append(_table(INTERVAL_HEADERS, intervalRows, f'class="intervals" data-timer="{esc(name)}"'))
    parts.append(f"<p>Generated by multimech-run on {esc(time.strftime('%Y-%m-%d %H:%M:%S'))}.</p>\n</body>\n</html>\n")
    return "".join(parts)


def writeReport(resultsDir: str | Path, project: Project, resultSet: ResultSet, info: ReportInfo) -> Report:
    """Aggregate a run and write results.html plus its PNG graphs into the results directory."""
    directory = Path(resultsDir)
    duration = loadPeriod(resultSet, project.runTime)
    timers = aggregate(resultSet, project.resultsTsInterval, project.runTime)
    notes = list(info.notes)
    if resultSet.ignoredTimerValues:
        notes.append(f"{resultSet.ignoredTimerValues} custom timer values were not numbers and were ignored")
    graphs: dict[str, dict[str, Path]] = {}
    classes = _loadMatplotlib()
    if classes is None:
        notes.append("graphs skipped: matplotlib is not installed (pip install 'TornadoServices[loadtest]')")
    else:
        taken: set[str] = set()
        for timer in timers:
            graphs[timer.summary.name] = drawGraphs(classes, timer, graphStem(timer.summary.name, taken), directory)
    htmlPath = directory / HTML_NAME
    htmlPath.write_text(renderHtml(project, resultSet, info, timers, graphs, duration, notes), encoding="utf-8")
    total = timers[0].summary
    return Report(htmlPath, timers, graphs, duration, total.count, total.errors, notes, resultSet.errorMessages())


def formatConsoleSummary(report: Report) -> str:
    """The end-of-run table printed on the console."""
    total = report.timers[0].summary
    rate = total.rate
    lines = [
        f"Transactions: {total.count}  Errors: {total.errors}  Duration: {report.duration:.2f} s  "
        f"Throughput: {rate:.2f} transactions/s",
    ]
    percentiles = (50, 90, 95, 99)
    nameWidth = max(16, *(len(t.summary.name) for t in report.timers))
    header = f"{'Timer':<{nameWidth}} {'Count':>8} {'Errors':>7} {'Tr/s':>9} {'Min':>8} {'Avg':>8}" + "".join(
        f" {'p' + str(p):>8}" for p in percentiles
    ) + f" {'Max':>8}"
    lines.append(header)
    lines.append("-" * len(header))
    for timer in report.timers:
        s, d = timer.summary, timer.summary.distribution
        line = f"{s.name:<{nameWidth}} {s.count:>8} {s.errors:>7} {s.rate:>9.2f}"
        line += f" {_ms(d and d.minimum):>8} {_ms(d and d.average):>8}"
        line += "".join(f" {_ms(d and d.percentiles[p]):>8}" for p in percentiles)
        line += f" {_ms(d and d.maximum):>8}"
        lines.append(line)
    lines.append("(times in milliseconds)")
    if report.errorMessages:
        lines.append("Most frequent errors:")
        for message, count in report.errorMessages[:CONSOLE_ERROR_MESSAGES]:
            shown = message if len(message) <= 160 else message[:157] + "..."
            lines.append(f"{count:>8} x {shown}")
        remaining = len(report.errorMessages) - CONSOLE_ERROR_MESSAGES
        if remaining > 0:
            lines.append(f"         ... and {remaining} other distinct messages (see results.html)")
    return "\n".join(lines)


__all__ = ["Report", "ReportInfo", "writeReport", "formatConsoleSummary", "graphStem", "TOTAL_TIMER", "HTML_NAME"]
