"""The HTML/PNG report and the console summary, on synthetic results."""
from html.parser import HTMLParser
from pathlib import Path

from TornadoServices.LoadTest.project import Project, UserGroup
from TornadoServices.LoadTest.report import ReportInfo, formatConsoleSummary, graphStem, writeReport
from TornadoServices.LoadTest.results import TOTAL_TIMER, ResultSet, Row

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class TableReader(HTMLParser):
    """Collects the rows of every table: {table id or data-timer: [[cell, ...], ...]}."""

    def __init__(self):
        super().__init__()
        self.tables, self.images = {}, []
        self._table = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id") or attrs.get("data-timer"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def readTables(path):
    reader = TableReader()
    reader.feed(Path(path).read_text())
    return reader


def makeProject(directory):
    return Project(
        directory=Path(directory),
        runTime=10.0,
        rampup=1.0,
        resultsTsInterval=2.0,
        progressBar=False,
        consoleLogging=False,
        xmlReport=False,
        postRunScript=None,
        resultsDatabase=None,
        userGroups=[UserGroup("user_group-1", 2, "a.py", Path("a.py")), UserGroup("user_group-2", 1, "b.py", Path("b.py"))],
    )


def synthetic():
    rows = []
    for i in range(200):
        group = "user_group-1" if i % 3 else "user_group-2"
        error = "planned <failure>" if i % 10 == 0 else ""
        timers = {"Step one": 0.001 * (i % 7)} if i % 2 else {"Step one": 0.002, "step/two": 0.003}
        rows.append(Row(i + 1, i * 0.05, 1700000000 + int(i * 0.05), group, 0.01 + 0.0001 * i, error, timers))
    return ResultSet.fromRows(rows)


def test_graph_stems_are_safe_and_unique():
    taken = set()
    assert graphStem(TOTAL_TIMER, taken) == "All_Transactions"
    assert graphStem("a/b c", taken) == "a_b_c"
    assert graphStem("a b/c", taken) == "a_b_c_2"
    assert graphStem("../..", taken) == "timer"


def test_write_report(tmp_path):
    resultSet = synthetic()
    report = writeReport(tmp_path, makeProject(tmp_path), resultSet, ReportInfo(startEpoch=1700000000.0))
    assert report.count == 200 and report.errors == 20
    tables = readTables(report.htmlPath)
    summary = {row[0]: row for row in tables.tables["summary-table"][1:]}
    assert list(summary) == [TOTAL_TIMER, "Step one", "step/two"]
    assert summary[TOTAL_TIMER][1:3] == ["200", "20"]
    assert summary["Step one"][1:3] == ["200", "20"]
    assert summary["step/two"][1:3] == ["100", "20"]
    header = tables.tables["summary-table"][0]
    assert header[:4] == ["Timer", "Count", "Errors", "Transactions/s"]
    assert {"Min", "Avg", "p50", "p80", "p90", "p95", "p99", "Max"} <= set(header)
    workload = {row[0]: row for row in tables.tables["workload"][1:]}
    assert workload["user_group-1"][3] == "133" and workload["user_group-2"][3] == "67"
    assert tables.tables["errors-table"][1] == ["planned <failure>", "20"]
    # time series: 10 s of transactions in 2 s intervals
    intervalsTotal = tables.tables[TOTAL_TIMER]
    assert [row[0] for row in intervalsTotal[1:]] == ["2", "4", "6", "8", "10"]
    assert sum(int(row[1]) for row in intervalsTotal[1:]) == 200
    assert len(tables.images) == 9
    for name in tables.images:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
    assert "<failure>" not in report.htmlPath.read_text()


def test_report_of_an_empty_run(tmp_path):
    report = writeReport(tmp_path, makeProject(tmp_path), ResultSet(), ReportInfo(startEpoch=0.0, interrupted=True))
    assert report.count == 0
    text = report.htmlPath.read_text()
    assert "interrupted" in text
    assert "Transactions: 0" in formatConsoleSummary(report)


def test_console_summary(tmp_path, monkeypatch):
    import TornadoServices.LoadTest.report as reportModule

    monkeypatch.setattr(reportModule, "_loadMatplotlib", lambda: None)
    report = writeReport(tmp_path, makeProject(tmp_path), synthetic(), ReportInfo(startEpoch=1700000000.0))
    text = formatConsoleSummary(report)
    lines = text.splitlines()
    assert lines[0].startswith("Transactions: 200  Errors: 20")
    assert lines[1].split()[:4] == ["Timer", "Count", "Errors", "Tr/s"]
    assert "p50" in lines[1] and "p99" in lines[1]
    total = next(line for line in lines if line.startswith(TOTAL_TIMER))
    assert total.split()[2:4] == ["200", "20"]
    assert lines[-2:] == ["Most frequent errors:", "      20 x planned <failure>"]


def test_report_without_matplotlib(tmp_path, monkeypatch):
    import TornadoServices.LoadTest.report as reportModule

    monkeypatch.setattr(reportModule, "_loadMatplotlib", lambda: None)
    report = writeReport(tmp_path, makeProject(tmp_path), synthetic(), ReportInfo(startEpoch=1700000000.0))
    assert not list(tmp_path.glob("*.png"))
    assert any("matplotlib is not installed" in note for note in report.notes)
    assert "matplotlib is not installed" in report.htmlPath.read_text()
