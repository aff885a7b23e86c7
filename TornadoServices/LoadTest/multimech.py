"""``multimech-run``: run a multi-mechanize load-test project and write its results and report.

Exit codes: 0 the run completed (failed transactions are results, not failures of the tool), 1 the project
is unusable (config.cfg or a script missing or invalid) or the report could not be written, 2 usage error,
130 interrupted by Ctrl-C (the report of what ran is still written).
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import traceback
from pathlib import Path

from TornadoServices import __version__
from TornadoServices.LoadTest.project import CONFIG_NAME, Project, ProjectError, loadProject
from TornadoServices.LoadTest.results import (
    CSV_NAME,
    JTL_NAME,
    ResultSet,
    ResultsFormatError,
    readCsv,
    writeJtlFromRows,
)

PROG = "multimech-run"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

EPILOG = """\
A project is a directory with config.cfg and test_scripts/<script>.py (multi-mechanize format).
Extra WORDs stay in sys.argv for the scripts: sys.argv[1] is the project, sys.argv[2:] the words
(put them after "--" when they start with "-").

examples:
  multimech-run multimechanize/ping                     ping Framework/Dummy as config.cfg says
  multimech-run multimechanize/ping Framework/Other     the ping script's service, from sys.argv[2]
  multimech-run multimechanize/ping -r results_2026.01.31_12.00.00   rebuild a report from results.csv

Results go to PROJECT_DIR/results/results_<YYYY.MM.DD_HH.MM.SS>/: results.csv, results.html with PNG graphs,
results.jtl (xml_report = on) and a copy of config.cfg.
exit codes: 0 run completed, 1 bad project or report failure, 2 usage, 130 interrupted (report still written)
"""


def makeParser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a multi-mechanize load-test project: one process per user group, one thread per "
        "virtual user, then write results.csv and an HTML report with graphs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "project", metavar="PROJECT_DIR", nargs="?", help="project directory (holds config.cfg and test_scripts/)"
    )
    parser.add_argument("words", metavar="WORD", nargs="*", help="extra words passed to the scripts in sys.argv[2:]")
    parser.add_argument(
        "-r",
        "--results",
        metavar="RESULTS_DIR",
        help="do not run: rebuild the report of an earlier run from its results.csv "
        "(a path, or a directory name under PROJECT_DIR/results/)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def runPostRunScript(project: Project, resultsDir: Path) -> None:
    """Run post_run_script with the results directory as last argument (cwd: the project); failures warn."""
    command = project.postRunScript
    if not command:
        return
    try:
        words = shlex.split(command)
    except ValueError as exc:
        _warn(f"post_run_script {command!r} cannot be parsed: {exc}")
        return
    if not words:
        return
    first = Path(words[0]).expanduser()
    if not first.is_absolute() and (project.directory / first).exists():
        words[0] = str(project.directory / first)
    print(f"Running post_run_script: {shlex.join(words + [str(resultsDir)])}", flush=True)
    try:
        completed = subprocess.run([*words, str(resultsDir)], cwd=project.directory, check=False)
    except OSError as exc:
        _warn(f"post_run_script {words[0]} could not be started: {exc.strerror or exc}")
        return
    if completed.returncode != 0:
        _warn(f"post_run_script {words[0]} exited with code {completed.returncode}")


def _printReport(report) -> None:
    from TornadoServices.LoadTest.report import formatConsoleSummary

    print()
    print(formatConsoleSummary(report))
    for note in report.notes:
        print(f"note: {note}")
    print(f"Results: {report.htmlPath.parent}")
    print(f"Report:  {report.htmlPath}", flush=True)


def rebuildReport(projectArg: str, resultsArg: str) -> int:
    """``-r``: write the report of an earlier run again from its results.csv."""
    from TornadoServices.LoadTest.report import ReportInfo, writeReport

    projectDir = Path(projectArg).expanduser().absolute()
    resultsDir = Path(resultsArg).expanduser()
    if not (resultsDir / CSV_NAME).is_file():
        resultsDir = projectDir / "results" / resultsArg
    if not (resultsDir / CSV_NAME).is_file():
        _error(f"no {CSV_NAME} in {resultsArg} (nor in {resultsDir}): give a results_<date> directory of a run")
        return EXIT_FAILURE
    configCopy = resultsDir / CONFIG_NAME
    try:
        project = loadProject(projectDir, configCopy if configCopy.is_file() else None, checkScripts=False)
        resultSet = ResultSet.fromCsv(resultsDir / CSV_NAME)
    except (ProjectError, ResultsFormatError) as exc:
        _error(str(exc))
        return EXIT_FAILURE
    startEpoch = resultSet.estimatedStartEpoch()
    report = writeReport(resultsDir, project, resultSet, ReportInfo(startEpoch=startEpoch))
    if project.xmlReport and not (resultsDir / JTL_NAME).exists():
        writeJtlFromRows(resultsDir / JTL_NAME, readCsv(resultsDir / CSV_NAME), startEpoch)
    _printReport(report)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``multimech-run``."""
    parser = makeParser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_intermixed_args(arguments)
    if not args.project:
        parser.error("PROJECT_DIR is required: the directory holding config.cfg and test_scripts/")

    if args.results:
        return rebuildReport(args.project, args.results)

    try:
        project = loadProject(args.project)
    except ProjectError as exc:
        _error(str(exc))
        return EXIT_FAILURE
    for warning in project.warnings:
        _warn(warning)

    from TornadoServices.LoadTest.runner import Runner

    scriptArgv = [sys.argv[0] if sys.argv and sys.argv[0] else PROG, args.project, *args.words]
    groups = ", ".join(f"{g.name} ({g.threads} x {g.script})" for g in project.userGroups)
    print(
        f"{PROG}: project {project.directory}: {groups}; run_time {project.runTime:g} s, "
        f"rampup {project.rampup:g} s",
        flush=True,
    )
    try:
        outcome = Runner(project, scriptArgv).run()
    except ProjectError as exc:
        _error(str(exc))
        return EXIT_FAILURE
    if outcome is None:
        _error("interrupted before the test started: nothing was run")
        return EXIT_INTERRUPTED

    notes = list(outcome.notes)
    for message, count in outcome.setupErrors.items():
        notes.append(f"{count} virtual user(s) could not start: {message}")
    if outcome.abandoned:
        notes.append(
            f"{outcome.abandoned} virtual user(s) were still in run() when the run ended; "
            f"those transactions are not recorded"
        )
    if outcome.aborted:
        notes.append("stopped at once by a second Ctrl-C: transactions in progress were lost")

    from TornadoServices.LoadTest.report import ReportInfo, writeReport

    try:
        report = writeReport(
            outcome.resultsDir,
            project,
            outcome.resultSet,
            ReportInfo(outcome.startEpoch, outcome.wallTime, outcome.interrupted, notes),
        )
    except Exception:
        traceback.print_exc()
        _error(
            f"the report could not be written; the results are complete in {outcome.resultsDir / CSV_NAME}. "
            f"Rebuild the report with: {PROG} {args.project} -r {outcome.resultsDir}"
        )
        return EXIT_FAILURE
    _printReport(report)
    if outcome.setupErrors and not len(outcome.resultSet):
        _error("no virtual user could create its Transaction: see the messages above; nothing was measured")
        return EXIT_FAILURE
    if outcome.interrupted:
        print("Run interrupted: the report covers what ran until Ctrl-C.", flush=True)
    runPostRunScript(project, outcome.resultsDir)
    return EXIT_INTERRUPTED if outcome.interrupted else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
