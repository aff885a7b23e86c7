"""A multi-mechanize project: ``config.cfg`` (INI) plus ``test_scripts/<script>.py`` files.

``[global]`` holds ``run_time`` (s), ``rampup`` (s over which each group's threads start, evenly spaced),
``results_ts_interval`` (s, report time-series bucket), ``progress_bar``, ``console_logging``, ``xml_report``
(on/off), optional ``post_run_script`` (a command run with the results directory as last argument) and
``results_database`` (accepted, not supported: a warning says so). Every other section is a user group
(by convention ``[user_group-N]``) with ``threads`` and ``script``.
"""
from __future__ import annotations

import configparser
import importlib.util
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

CONFIG_NAME = "config.cfg"
SCRIPTS_DIR = "test_scripts"
GLOBAL_SECTION = "global"

_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0"}
_KNOWN_GLOBAL = {
    "run_time",
    "rampup",
    "results_ts_interval",
    "progress_bar",
    "console_logging",
    "xml_report",
    "results_database",
    "post_run_script",
}


class ProjectError(Exception):
    """A project that cannot run: missing or invalid config.cfg, missing or broken script."""


@dataclass
class UserGroup:
    """One ``[user_group-N]`` section: its virtual users and their script."""

    name: str
    threads: int
    script: str
    scriptPath: Path


@dataclass
class Project:
    """A parsed and checked multi-mechanize project."""

    directory: Path
    runTime: float
    rampup: float
    resultsTsInterval: float
    progressBar: bool
    consoleLogging: bool
    xmlReport: bool
    postRunScript: str | None
    resultsDatabase: str | None
    userGroups: list[UserGroup]
    warnings: list[str] = field(default_factory=list)

    @property
    def configPath(self) -> Path:
        """The project's config.cfg."""
        return self.directory / CONFIG_NAME

    @property
    def name(self) -> str:
        """The project's directory name."""
        return self.directory.name

    @property
    def totalThreads(self) -> int:
        """Virtual users over all groups."""
        return sum(group.threads for group in self.userGroups)


def _number(parser: configparser.ConfigParser, key: str, source: str, default: float | None, minimum: float) -> float:
    """A numeric [global] option, checked."""
    raw = parser.get(GLOBAL_SECTION, key, fallback=None)
    if raw is None or not raw.strip():
        if default is None:
            raise ProjectError(f"{source}: [global] {key} is required (a number of seconds)")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ProjectError(f"{source}: [global] {key} = {raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < minimum:
        raise ProjectError(f"{source}: [global] {key} = {raw!r} must be a number >= {minimum:g}")
    return value


def _flag(parser: configparser.ConfigParser, section: str, key: str, source: str, default: bool) -> bool:
    """An on/off option."""
    raw = parser.get(section, key, fallback=None)
    if raw is None or not raw.strip():
        return default
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ProjectError(f"{source}: [{section}] {key} = {raw!r} must be on or off")


def resolveScript(directory: Path, script: str) -> Path:
    """The file of a group's script: ``test_scripts/<script>``, ``.py`` added when the name has none."""
    scriptsDir = directory / SCRIPTS_DIR
    candidate = scriptsDir / script
    if not candidate.is_file() and not script.endswith(".py"):
        candidate = scriptsDir / (script + ".py")
    return candidate


def checkScriptSyntax(path: Path) -> None:
    """Compile a script without running it, so that a typo fails before any process starts."""
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise ProjectError(f"cannot read script {path}: {exc.strerror or exc}") from None
    try:
        compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise ProjectError(f"script {path} line {exc.lineno}: syntax error: {exc.msg}") from None
    except ValueError as exc:
        raise ProjectError(f"script {path}: {exc}") from None


def loadProject(directory: str | Path, configPath: str | Path | None = None, checkScripts: bool = True) -> Project:
    """Parse and check a project directory (relative to cwd or absolute); raises ProjectError.

    ``configPath`` reads another config file (a results directory's copy); ``checkScripts=False`` skips the
    script checks, for rebuilding a report of a project whose scripts have changed since.
    """
    projectDir = Path(directory).expanduser().absolute()
    if not projectDir.exists():
        raise ProjectError(f"project directory {directory} does not exist")
    if not projectDir.is_dir():
        raise ProjectError(f"{directory} is not a directory: give the project directory holding config.cfg")
    config = Path(configPath) if configPath else projectDir / CONFIG_NAME
    if not config.is_file():
        raise ProjectError(
            f"{config} not found: a multi-mechanize project needs a config.cfg with a [global] section "
            f"and [user_group-N] sections"
        )
    source = str(config)
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        with open(config, encoding="utf-8") as fh:
            parser.read_file(fh, source=source)
    except configparser.Error as exc:
        raise ProjectError(f"{source}: not a valid INI file: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"cannot read {source}: {exc}") from None
    if not parser.has_section(GLOBAL_SECTION):
        raise ProjectError(f"{source}: missing [global] section (run_time, rampup, results_ts_interval, ...)")

    warnings = []
    unknown = sorted(set(parser.options(GLOBAL_SECTION)) - _KNOWN_GLOBAL)
    if unknown:
        warnings.append(f"{source}: ignoring unknown [global] option(s): {', '.join(unknown)}")
    resultsDatabase = parser.get(GLOBAL_SECTION, "results_database", fallback="").strip() or None
    if resultsDatabase:
        warnings.append(
            f"{source}: results_database is not supported by this multimech-run and is ignored; "
            f"results are written to results.csv"
        )

    runTime = _number(parser, "run_time", source, None, 0.0)
    if runTime <= 0:
        raise ProjectError(f"{source}: [global] run_time must be > 0 seconds")
    rampup = _number(parser, "rampup", source, 0.0, 0.0)
    if rampup >= runTime:
        warnings.append(
            f"{source}: rampup ({rampup:g} s) >= run_time ({runTime:g} s): the last virtual users start late or never"
        )
    interval = _number(parser, "results_ts_interval", source, max(1.0, runTime / 10.0), 0.0)
    if interval <= 0:
        raise ProjectError(f"{source}: [global] results_ts_interval must be > 0 seconds")

    groups = []
    for section in parser.sections():
        if section == GLOBAL_SECTION:
            continue
        if any(ch in section for ch in ",\r\n"):
            raise ProjectError(f"{source}: user group name [{section}] must not contain commas")
        threadsRaw = parser.get(section, "threads", fallback=None)
        script = (parser.get(section, "script", fallback="") or "").strip()
        if threadsRaw is None:
            raise ProjectError(f"{source}: [{section}] needs threads = <number of virtual users>")
        try:
            threads = int(threadsRaw)
        except ValueError:
            raise ProjectError(f"{source}: [{section}] threads = {threadsRaw!r} is not an integer") from None
        if threads < 1:
            raise ProjectError(f"{source}: [{section}] threads must be at least 1")
        if not script:
            raise ProjectError(f"{source}: [{section}] needs script = <file in {SCRIPTS_DIR}/>")
        scriptPath = resolveScript(projectDir, script)
        if checkScripts and not scriptPath.is_file():
            raise ProjectError(
                f"{source}: [{section}] script {script!r} not found: expected {scriptPath}"
            )
        groups.append(UserGroup(section, threads, script, scriptPath))
    if not groups:
        raise ProjectError(f"{source}: no user group: add a [user_group-1] section with threads and script")
    if checkScripts:
        for scriptPath in sorted({group.scriptPath for group in groups}):
            checkScriptSyntax(scriptPath)

    return Project(
        directory=projectDir,
        runTime=runTime,
        rampup=rampup,
        resultsTsInterval=interval,
        progressBar=_flag(parser, GLOBAL_SECTION, "progress_bar", source, True),
        consoleLogging=_flag(parser, GLOBAL_SECTION, "console_logging", source, False),
        xmlReport=_flag(parser, GLOBAL_SECTION, "xml_report", source, False),
        postRunScript=parser.get(GLOBAL_SECTION, "post_run_script", fallback="").strip() or None,
        resultsDatabase=resultsDatabase,
        userGroups=groups,
        warnings=warnings,
    )


def loadScriptModule(path: Path, moduleName: str) -> ModuleType:
    """Import a test script by file path (its directory goes on sys.path, so it can import helpers beside it)."""
    scriptsDir = str(path.parent)
    if scriptsDir not in sys.path:
        sys.path.insert(0, scriptsDir)
    spec = importlib.util.spec_from_file_location(moduleName, path)
    if spec is None or spec.loader is None:
        raise ProjectError(f"cannot import script {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[moduleName] = module
    spec.loader.exec_module(module)
    if not isinstance(getattr(module, "Transaction", None), type):
        raise ProjectError(f"script {path} does not define a class Transaction with a run() method")
    if not callable(getattr(module.Transaction, "run", None)):
        raise ProjectError(f"script {path}: class Transaction has no run() method")
    return module
