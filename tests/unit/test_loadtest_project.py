"""Parsing and checking of multi-mechanize projects (config.cfg + test_scripts/)."""
import textwrap
from pathlib import Path

import pytest

from TornadoServices.LoadTest.progress import ProgressBar, formatProgress
from TornadoServices.LoadTest.project import ProjectError, loadProject, loadScriptModule
from TornadoServices.LoadTest.runner import makeTransaction

REPO = Path(__file__).resolve().parents[2]


def makeProject(tmp_path, config, scripts=None):
    (tmp_path / "test_scripts").mkdir(exist_ok=True)
    (tmp_path / "config.cfg").write_text(textwrap.dedent(config))
    for name, text in (scripts or {"s.py": "class Transaction:\n    def run(self):\n        pass\n"}).items():
        (tmp_path / "test_scripts" / name).write_text(textwrap.dedent(text))
    return tmp_path


GOOD = """
    [global]
    run_time = 30
    rampup = 5
    results_ts_interval = 2.5
    progress_bar = off
    console_logging = on
    xml_report = on
    post_run_script = ./after.sh

    [user_group-1]
    threads = 4
    script = s.py

    [user_group-2]
    threads = 1
    script = s
"""


def test_load_project(tmp_path):
    project = loadProject(makeProject(tmp_path, GOOD))
    assert (project.runTime, project.rampup, project.resultsTsInterval) == (30, 5, 2.5)
    assert (project.progressBar, project.consoleLogging, project.xmlReport) == (False, True, True)
    assert project.postRunScript == "./after.sh"
    assert [(g.name, g.threads) for g in project.userGroups] == [("user_group-1", 4), ("user_group-2", 1)]
    assert project.userGroups[1].scriptPath == tmp_path / "test_scripts" / "s.py"
    assert project.totalThreads == 5
    assert project.warnings == []


def test_relative_project_path(tmp_path, monkeypatch):
    (tmp_path / "proj").mkdir()
    makeProject(tmp_path / "proj", GOOD)
    monkeypatch.chdir(tmp_path)
    assert loadProject("proj").directory == tmp_path / "proj"


def test_defaults_and_results_database_warning(tmp_path):
    project = loadProject(makeProject(tmp_path, """
        [global]
        run_time = 20
        results_database = sqlite:///results.db
        colour = blue
        [user_group-1]
        threads = 1
        script = s.py
    """))
    assert (project.rampup, project.resultsTsInterval) == (0, 2.0)
    assert (project.progressBar, project.consoleLogging, project.xmlReport) == (True, False, False)
    assert any("results_database is not supported" in w for w in project.warnings)
    assert any("colour" in w for w in project.warnings)


@pytest.mark.parametrize(
    "config, message",
    [
        ("[user_group-1]\nthreads = 1\nscript = s.py\n", "missing \\[global\\]"),
        ("[global]\nrampup = 1\n[user_group-1]\nthreads = 1\nscript = s.py\n", "run_time is required"),
        ("[global]\nrun_time = soon\n[user_group-1]\nthreads = 1\nscript = s.py\n", "not a number"),
        ("[global]\nrun_time = 0\n[user_group-1]\nthreads = 1\nscript = s.py\n", "run_time must be > 0"),
        ("[global]\nrun_time = 1\nrampup = -1\n[user_group-1]\nthreads = 1\nscript = s.py\n", "rampup"),
        ("[global]\nrun_time = 1\nprogress_bar = maybe\n[user_group-1]\nthreads = 1\nscript = s.py\n", "on or off"),
        ("[global]\nrun_time = 1\n", "no user group"),
        ("[global]\nrun_time = 1\n[user_group-1]\nscript = s.py\n", "needs threads"),
        ("[global]\nrun_time = 1\n[user_group-1]\nthreads = many\nscript = s.py\n", "not an integer"),
        ("[global]\nrun_time = 1\n[user_group-1]\nthreads = 0\nscript = s.py\n", "at least 1"),
        ("[global]\nrun_time = 1\n[user_group-1]\nthreads = 1\n", "needs script"),
        ("[global]\nrun_time = 1\n[user_group-1]\nthreads = 1\nscript = nothere.py\n", "'nothere.py' not found"),
        ("[global\nrun_time = 1\n", "not a valid INI file"),
    ],
)
def test_bad_configs_are_named(tmp_path, config, message):
    with pytest.raises(ProjectError, match=message):
        loadProject(makeProject(tmp_path, config))


def test_missing_directory_and_config(tmp_path):
    with pytest.raises(ProjectError, match="does not exist"):
        loadProject(tmp_path / "nope")
    with pytest.raises(ProjectError, match="config.cfg not found"):
        loadProject(tmp_path)


def test_script_syntax_error_is_reported_with_line(tmp_path):
    makeProject(tmp_path, GOOD, {"s.py": "class Transaction:\n    def run(self)\n        pass\n"})
    with pytest.raises(ProjectError, match=r"s.py line 2: syntax error"):
        loadProject(tmp_path)


def test_load_script_module_requires_transaction(tmp_path):
    makeProject(tmp_path, GOOD, {"s.py": "X = 1\n", "t.py": "class Transaction:\n    pass\n"})
    with pytest.raises(ProjectError, match="does not define a class Transaction"):
        loadScriptModule(tmp_path / "test_scripts" / "s.py", "loadtest_unit_s")
    with pytest.raises(ProjectError, match="no run"):
        loadScriptModule(tmp_path / "test_scripts" / "t.py", "loadtest_unit_t")


def test_make_transaction_sets_attributes_before_constructor_and_resets_timers():
    class Transaction:
        def __init__(self):
            self.seen = (self.thread_num, self.process_num)
            self.custom_timers = {"fromInit": 1.0}

        def run(self):
            pass

    trans = makeTransaction(Transaction, 3, 1)
    assert trans.seen == (3, 1)
    assert (trans.thread_num, trans.process_num) == (3, 1)
    assert trans.custom_timers == {}


@pytest.mark.parametrize("name", ["ping", "echo", "mixed"])
def test_repository_projects_are_valid(name):
    project = loadProject(REPO / "multimechanize" / name)
    assert project.runTime >= 30 and project.rampup > 0
    assert project.userGroups and all(g.scriptPath.is_file() for g in project.userGroups)
    for group in project.userGroups:
        source = group.scriptPath.read_text()
        assert "from TornadoServices.Client.RPCClientSelector import RPCClientSelector" in source
        assert "sys.argv[2]" in source


def test_progress_text():
    text = formatProgress(15.0, 60.0, 10, 20, 300, 2)
    assert text.startswith("[" + "#" * 8 + "-" * 22 + "]  25%")
    assert "users 10/20" in text and "transactions 300 (20.0/s)" in text and "errors 2" in text
    assert "100%" in formatProgress(70.0, 60.0, 0, 20, 10, 0)


def test_progress_bar_plain_stream_prints_lines():
    import io

    stream = io.StringIO()
    bar = ProgressBar(stream, 10.0, 2)
    bar.update(1.0, 2, 5, 0, force=True)
    bar.message("hello")
    bar.finish(10.0, 0, 50, 1)
    lines = stream.getvalue().splitlines()
    assert lines[1] == "hello" and "100%" in lines[2] and "\r" not in stream.getvalue()
    silent = io.StringIO()
    ProgressBar(silent, 10.0, 2, enabled=False).update(1.0, 1, 1, 0, force=True)
    assert silent.getvalue() == ""
