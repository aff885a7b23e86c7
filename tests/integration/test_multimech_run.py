"""multimech-run end to end, through its console script in a subprocess, on small projects made here."""
import json
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from TornadoServices.LoadTest.results import readCsv

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RESULTS_DIR_NAME = re.compile(r"results_\d{4}\.\d{2}\.\d{2}_\d{2}\.\d{2}\.\d{2}(_\d+)?")
RUN_TIME = 2.5

WORKER = """
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class Transaction:
    def __init__(self):
        self.runs = 0
        self.custom_timers = {"fromConstructor": 1.0}
        path = os.path.join(HERE, "..", "argv", "%d-%d.json" % (self.process_num, self.thread_num))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            json.dump(sys.argv, fh)

    def run(self):
        self.runs += 1
        start = time.perf_counter()
        time.sleep(0.005)
        self.custom_timers["Sleep"] = time.perf_counter() - start
        start = time.perf_counter()
        sum(range(1000))
        self.custom_timers["Compute"] = time.perf_counter() - start
        if self.runs % 4 == 0:
            raise ValueError("planned failure, run %d" % self.runs)
"""

POST_RUN = """
import json
import sys

with open("post_run.json", "w") as fh:
    json.dump(sys.argv[1:], fh)
"""


def multimechCommand():
    script = Path(sys.executable).with_name("multimech-run")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "TornadoServices.LoadTest.multimech"]


def makeProject(directory, config, scripts):
    directory.mkdir(parents=True)
    (directory / "test_scripts").mkdir()
    (directory / "config.cfg").write_text(textwrap.dedent(config))
    for name, text in scripts.items():
        (directory / "test_scripts" / name).write_text(textwrap.dedent(text))
    return directory


def run(args, cwd, timeout=90):
    return subprocess.run(
        multimechCommand() + list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def reportedTotals(stdout):
    match = re.search(r"^Transactions: (\d+)  Errors: (\d+)", stdout, re.MULTILINE)
    assert match, stdout
    return int(match.group(1)), int(match.group(2))


class TableReader(HTMLParser):
    """Rows of the summary table keyed by timer name, and the images."""

    def __init__(self):
        super().__init__()
        self.summary, self.images, self.inSummary, self.row, self.cell = {}, [], False, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.inSummary = attrs.get("id") == "summary-table"
        elif tag == "tr" and self.inSummary:
            self.row = []
        elif tag == "td" and self.row is not None:
            self.cell = ""
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.row.append(self.cell)
            self.cell = None
        elif tag == "tr" and self.row:
            self.summary[self.row[0]] = self.row
            self.row = None
        elif tag == "table":
            self.inSummary = False


@pytest.fixture(scope="module")
def completedRun(tmp_path_factory):
    base = tmp_path_factory.mktemp("multimech")
    project = makeProject(
        base / "proj",
        f"""
        [global]
        run_time = {RUN_TIME}
        rampup = 0.5
        results_ts_interval = 0.5
        progress_bar = on
        console_logging = off
        xml_report = on
        post_run_script = {sys.executable} post_run.py

        [user_group-1]
        threads = 3
        script = worker.py

        [user_group-2]
        threads = 2
        script = worker
        """,
        {"worker.py": WORKER},
    )
    (project / "post_run.py").write_text(POST_RUN)
    completed = run(["proj", "alpha", "beta"], cwd=base)
    resultsDirs = sorted((project / "results").iterdir()) if (project / "results").is_dir() else []
    return project, completed, resultsDirs


def test_run_completes_and_writes_one_results_dir(completedRun):
    project, completed, resultsDirs = completedRun
    assert completed.returncode == 0, completed.stderr
    assert len(resultsDirs) == 1
    assert RESULTS_DIR_NAME.fullmatch(resultsDirs[0].name)
    names = {p.name for p in resultsDirs[0].iterdir()}
    assert {"results.csv", "results.html", "results.jtl", "config.cfg"} <= names
    assert f"Report:  {resultsDirs[0] / 'results.html'}" in completed.stdout


def test_results_csv_rows(completedRun):
    project, completed, (resultsDir,) = completedRun
    count, errors = reportedTotals(completed.stdout)
    lines = (resultsDir / "results.csv").read_text().splitlines()
    assert len(lines) == count > 0
    rows = list(readCsv(resultsDir / "results.csv"))
    assert [row.count for row in rows] == list(range(1, count + 1))
    for line in lines:
        fields = line.split(",", 6)
        assert len(fields) == 7
        assert re.fullmatch(r"\d+\.\d{3}", fields[1]) and re.fullmatch(r"\d+", fields[2])
        assert re.fullmatch(r"\d+\.\d{6}", fields[4])
    assert {row.group for row in rows} == {"user_group-1", "user_group-2"}
    failed = [row for row in rows if row.error]
    assert len(failed) == errors > 0
    assert all(re.fullmatch(r"planned failure run \d+", row.error) for row in failed)
    assert all(set(row.customTimers) == {"Sleep", "Compute"} for row in rows)
    # elapsed is written with three decimals, so a start just before run_time may round up to it
    assert all(0 <= row.elapsed <= RUN_TIME for row in rows)
    assert all(row.runTime >= 0.004 for row in rows)
    epochs = [row.epoch for row in rows]
    assert max(epochs) - min(epochs) <= RUN_TIME + 2


def test_html_summary_matches_csv(completedRun):
    project, completed, (resultsDir,) = completedRun
    rows = list(readCsv(resultsDir / "results.csv"))
    errors = sum(1 for row in rows if row.error)
    reader = TableReader()
    reader.feed((resultsDir / "results.html").read_text())
    assert list(reader.summary) == ["All Transactions", "Sleep", "Compute"]
    for timer in reader.summary.values():
        assert timer[1:3] == [str(len(rows)), str(errors)]
        assert float(timer[3]) > 0
    assert float(reader.summary["Sleep"][4]) >= 4.0  # min of the 5 ms sleep, in milliseconds
    assert len(reader.images) == 9
    for name in reader.images:
        data = (resultsDir / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
    assert "planned failure run" in (resultsDir / "results.html").read_text()


def test_jtl_and_config_copy(completedRun):
    project, completed, (resultsDir,) = completedRun
    rows = list(readCsv(resultsDir / "results.csv"))
    root = ET.parse(resultsDir / "results.jtl").getroot()
    samples = root.findall("sample")
    assert root.tag == "testResults" and len(samples) == len(rows)
    assert sum(1 for s in samples if s.get("s") == "false") == sum(1 for row in rows if row.error)
    assert {s.get("lb") for s in samples[0]} == {f"{rows[0].group}.Sleep", f"{rows[0].group}.Compute"}
    assert (resultsDir / "config.cfg").read_bytes() == (project / "config.cfg").read_bytes()


def test_scripts_see_argv_and_their_numbers(completedRun):
    project, completed, resultsDirs = completedRun
    files = sorted(p.name for p in (project / "argv").iterdir())
    assert files == ["0-0.json", "0-1.json", "0-2.json", "1-0.json", "1-1.json"]
    for path in (project / "argv").iterdir():
        argv = json.loads(path.read_text())
        assert Path(argv[0]).name in ("multimech-run", "multimech.py")
        assert argv[1:] == ["proj", "alpha", "beta"]


def test_console_summary_progress_and_post_run_script(completedRun):
    project, completed, (resultsDir,) = completedRun
    assert re.search(r"^All Transactions\s+\d+\s+\d+", completed.stdout, re.MULTILINE)
    assert re.search(r"^Sleep\s+\d+", completed.stdout, re.MULTILINE)
    assert "100%" in completed.stderr and "transactions" in completed.stderr
    assert json.loads((project / "post_run.json").read_text()) == [str(resultsDir)]


def test_rebuild_report_from_csv(completedRun, tmp_path):
    project, completed, (resultsDir,) = completedRun
    copy = project / "results" / "rebuilt"
    shutil.copytree(resultsDir, copy, ignore=shutil.ignore_patterns("*.png", "*.html"))
    try:
        rebuilt = run([str(project), "-r", "rebuilt"], cwd=tmp_path)
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert reportedTotals(rebuilt.stdout) == reportedTotals(completed.stdout)
        reader = TableReader()
        reader.feed((copy / "results.html").read_text())
        assert reader.summary["All Transactions"][1] == str(reportedTotals(completed.stdout)[0])
        assert len(list(copy.glob("*.png"))) == 9
    finally:
        shutil.rmtree(copy)


def test_sigint_stops_the_run_and_writes_the_report(tmp_path):
    project = makeProject(
        tmp_path / "long",
        """
        [global]
        run_time = 120
        rampup = 0
        results_ts_interval = 1
        progress_bar = on
        console_logging = on

        [user_group-1]
        threads = 2
        script = worker.py
        """,
        {"worker.py": WORKER},
    )
    process = subprocess.Popen(
        multimechCommand() + [str(project)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        csvFiles = []
        while time.monotonic() < deadline and process.poll() is None:
            csvFiles = list((project / "results").glob("results_*/results.csv"))
            if csvFiles and csvFiles[0].stat().st_size > 0:
                break
            time.sleep(0.1)
        assert csvFiles and process.poll() is None, "the run did not start writing results"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    count, errors = reportedTotals(stdout)
    (resultsDir,) = [p.parent for p in csvFiles]
    csvLines = (resultsDir / "results.csv").read_text().splitlines()
    assert len(csvLines) == count > 0
    # console_logging = on prints every row on stdout (and silences the progress bar)
    assert [line for line in stdout.splitlines() if re.match(r"\d+,\d+\.\d{3},", line)] == csvLines
    assert not re.search(r"\[[#-]{30}\]", stderr)
    html = (resultsDir / "results.html").read_text()
    assert "interrupted" in html
    assert all(row.elapsed < 60 for row in readCsv(resultsDir / "results.csv"))


BAD_SCRIPT_CONFIG = """
    [global]
    run_time = 1

    [user_group-1]
    threads = 1
    script = worker.py
"""


@pytest.mark.parametrize(
    "case, message",
    [
        ("no directory", "does not exist"),
        ("no config", "config.cfg not found"),
        ("no script", "script 'worker.py' not found"),
        ("syntax error", "line 1: syntax error"),
        ("import fails", "cannot reach the configuration service"),
        ("no Transaction", "does not define a class Transaction"),
    ],
)
def test_bad_project_exits_1_with_a_clear_message(tmp_path, case, message):
    project = tmp_path / "bad"
    if case != "no directory":
        project.mkdir()
        (project / "test_scripts").mkdir()
    if case not in ("no directory", "no config"):
        (project / "config.cfg").write_text(textwrap.dedent(BAD_SCRIPT_CONFIG))
    scripts = {
        "syntax error": "class Transaction(:\n",
        "import fails": "raise RuntimeError('cannot reach the configuration service')\n",
        "no Transaction": "class Other:\n    pass\n",
    }
    if case in scripts:
        (project / "test_scripts" / "worker.py").write_text(scripts[case])
    completed = run([str(project)], cwd=tmp_path, timeout=60)
    assert completed.returncode == 1, (completed.stdout, completed.stderr)
    assert "multimech-run: error:" in completed.stderr
    assert message in completed.stderr
    assert not (project / "results").exists()


@pytest.mark.parametrize("args", [[], ["--bogus", "proj"]])
def test_usage_errors_exit_2(tmp_path, args):
    completed = run(args, cwd=tmp_path, timeout=30)
    assert completed.returncode == 2
    assert "usage: multimech-run" in completed.stderr


def test_failing_constructors_end_the_run_early_with_exit_1(tmp_path):
    project = makeProject(
        tmp_path / "nosetup",
        """
        [global]
        run_time = 300
        progress_bar = off

        [user_group-1]
        threads = 2
        script = worker.py
        """,
        {
            "worker.py": """
            class Transaction:
                def __init__(self):
                    raise ConnectionError("no route to the service")

                def run(self):
                    pass
            """
        },
    )
    completed = run([str(project)], cwd=tmp_path, timeout=60)
    assert completed.returncode == 1, (completed.stdout, completed.stderr)
    assert "Transaction() failed: ConnectionError: no route to the service" in completed.stderr
    assert "no virtual user could create its Transaction" in completed.stderr
    assert reportedTotals(completed.stdout) == (0, 0)
