"""gLogger: DIRAC's logging API (levels, sub-loggers, ``msg``/``varMsg``) on top of the standard ``logging``.

Every DIRAC logger is a ``logging.Logger`` named ``TornadoServices`` (gLogger) or ``TornadoServices.<Sub>``
(sub-loggers, nested with dots), so records also reach pytest's ``caplog`` and any handler an embedding
application installs. :func:`setupLogging` puts one handler on the root logger that prints

    ``2024-10-17 08:05:03 UTC Component/Sub LEVEL: message``

or one JSON object per line. Until it is called, the first message logged through gLogger installs
the default (INFO, text, stderr) if the application has configured no handler at all.
"""

from __future__ import annotations

import json as _json
import logging
import sys
import threading
import time
from typing import IO, Any, Dict, List, Mapping, Optional, Union

DEBUG = 10
VERBOSE = 15
INFO = 20
WARN = 30
NOTICE = 35
ERROR = 40
ALWAYS = 45
FATAL = 50

ROOT_LOGGER_NAME = "TornadoServices"
DEFAULT_COMPONENT_NAME = "TornadoServices"

_levelByName: Dict[str, int] = {
    "DEBUG": DEBUG,
    "VERBOSE": VERBOSE,
    "INFO": INFO,
    "WARN": WARN,
    "WARNING": WARN,
    "NOTICE": NOTICE,
    "ERROR": ERROR,
    "ALWAYS": ALWAYS,
    "FATAL": FATAL,
    "CRITICAL": FATAL,
}
_nameByLevel: Dict[int, str] = {
    DEBUG: "DEBUG",
    VERBOSE: "VERBOSE",
    INFO: "INFO",
    WARN: "WARN",
    NOTICE: "NOTICE",
    ERROR: "ERROR",
    ALWAYS: "ALWAYS",
    FATAL: "FATAL",
}

# Name the levels logging does not know, for applications formatting our records themselves; WARN and
# FATAL keep logging's own names (WARNING, CRITICAL) there so that other libraries' output is unchanged.
for _number in (VERBOSE, NOTICE, ALWAYS):
    logging.addLevelName(_number, _nameByLevel[_number])

_state = threading.RLock()
_componentName = DEFAULT_COMPONENT_NAME
_subPaths: Dict[str, str] = {}  # logging logger name -> DIRAC sub-logger path ("" for gLogger)
_loggers: Dict[str, "Logger"] = {}
_handler: Optional[logging.Handler] = None
_configured = False

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_standardRecordKeys = frozenset(logging.LogRecord("x", INFO, "x", 0, "x", None, None).__dict__) | {
    "message",
    "asctime",
}


def _levelNumber(level: Union[str, int]) -> Optional[int]:
    """Translate a DIRAC level name (any case) or number into a number, None when unknown."""
    if isinstance(level, bool):
        return None
    if isinstance(level, int):
        return level
    if isinstance(level, str):
        name = level.strip().upper()
        if name.lstrip("-").isdigit():
            return int(name)
        return _levelByName.get(name)
    return None


def levelName(levelno: int) -> str:
    """Return the DIRAC name of a level number (``WARN``, ``FATAL``, ...), or logging's name for others."""
    return _nameByLevel.get(levelno) or logging.getLevelName(levelno)


def _displayName(record: logging.LogRecord) -> str:
    """Name printed for a record: component plus sub-logger path, or the logger name of other libraries."""
    subPath = _subPaths.get(record.name)
    if subPath is None:
        return record.name
    if not subPath:
        return _componentName or ROOT_LOGGER_NAME
    return f"{_componentName}/{subPath}" if _componentName else subPath


class Logger:
    """A DIRAC logger: ``info(msg, varMsg)`` & co. over one ``logging.Logger``."""

    def __init__(self, subPath: str = "") -> None:
        """Bind to ``TornadoServices[.<sub>.<sub>]``; use gLogger.getSubLogger rather than this."""
        self._subPath = subPath
        self._subName = subPath.rsplit("/", 1)[-1] if subPath else ""
        loggerName = ROOT_LOGGER_NAME + ("." + subPath.replace("/", ".") if subPath else "")
        self._logger = logging.getLogger(loggerName)
        _subPaths[loggerName] = subPath

    @property
    def logger(self) -> logging.Logger:
        """The underlying standard library logger."""
        return self._logger

    def getSubLogger(self, subName: str, child: bool = True) -> "Logger":
        """Return the logger ``<this>/<subName>`` (one instance per name, levels inherited)."""
        subName = str(subName).strip().strip("/")
        if not subName:
            return self
        path = f"{self._subPath}/{subName}" if self._subPath else subName
        return _getLogger(path)

    def getName(self) -> str:
        """Return the name printed in front of this logger's messages (``Component/Sub``)."""
        if not self._subPath:
            return _componentName or ROOT_LOGGER_NAME
        return f"{_componentName}/{self._subPath}" if _componentName else self._subPath

    def getSubName(self) -> str:
        """Return the last element of this sub-logger's name ("" for gLogger)."""
        return self._subName

    def setLevel(self, level: Union[str, int]) -> bool:
        """Set the level by DIRAC name or number; return False (and change nothing) for an unknown name."""
        number = _levelNumber(level)
        if number is None:
            return False
        self._logger.setLevel(number)
        return True

    def getLevel(self) -> str:
        """Return the DIRAC name of the level in force (inherited from the parent when not set)."""
        return levelName(self._logger.getEffectiveLevel())

    def shown(self, levelName: Union[str, int]) -> bool:
        """Tell whether messages of this level would be printed."""
        number = _levelNumber(levelName)
        return number is not None and self._logger.isEnabledFor(number)

    @staticmethod
    def getAllPossibleLevels() -> List[str]:
        """Return the DIRAC level names, lowest first."""
        return [_nameByLevel[number] for number in sorted(_nameByLevel)]

    def setComponentName(self, name: str) -> None:
        """Set the component name printed in front of every DIRAC logger's messages (process wide)."""
        global _componentName
        _componentName = str(name).strip("/")

    def _emit(
        self,
        level: int,
        msg: Any,
        varMsg: Any,
        excInfo: Any = None,
        extra: Optional[Mapping[str, Any]] = None,
    ) -> bool:
        """Build ``msg varMsg`` and hand it to logging when the level is enabled."""
        if not self._logger.isEnabledFor(level):
            return False
        if not _configured:
            _autoSetup()
        text = f"{msg} {varMsg}" if varMsg not in ("", None) else str(msg)
        self._logger.log(level, text, exc_info=excInfo, extra=extra, stacklevel=3)
        return True

    def always(self, msg: Any, varMsg: Any = "", *, extra: Optional[Mapping[str, Any]] = None) -> bool:
        """Log at ALWAYS (shown unless the level is FATAL)."""
        return self._emit(ALWAYS, msg, varMsg, extra=extra)

    def notice(self, msg: Any, varMsg: Any = "", *, extra: Optional[Mapping[str, Any]] = None) -> bool:
        """Log at NOTICE."""
        return self._emit(NOTICE, msg, varMsg, extra=extra)

    def info(self, msg: Any, varMsg: Any = "", *, extra: Optional[Mapping[str, Any]] = None) -> bool:
        """Log at INFO."""
        return self._emit(INFO, msg, varMsg, extra=extra)

    def verbose(self, msg: Any, varMsg: Any = "", *, extra: Optional[Mapping[str, Any]] = None) -> bool:
        """Log at VERBOSE."""
        return self._emit(VERBOSE, msg, varMsg, extra=extra)

    def debug(self, msg: Any, varMsg: Any = "", *, extra: Optional[Mapping[str, Any]] = None) -> bool:
        """Log at DEBUG."""
        return self._emit(DEBUG, msg, varMsg, extra=extra)

    def warn(self, msg: Any, varMsg: Any = "", *, extra: Optional[Mapping[str, Any]] = None) -> bool:
        """Log at WARN."""
        return self._emit(WARN, msg, varMsg, extra=extra)

    warning = warn

    def error(self, msg: Any, varMsg: Any = "", *, extra: Optional[Mapping[str, Any]] = None) -> bool:
        """Log at ERROR."""
        return self._emit(ERROR, msg, varMsg, extra=extra)

    def fatal(self, msg: Any, varMsg: Any = "", *, extra: Optional[Mapping[str, Any]] = None) -> bool:
        """Log at FATAL (it does not exit, as in DIRAC)."""
        return self._emit(FATAL, msg, varMsg, extra=extra)

    def exception(
        self,
        msg: Any = "",
        varMsg: Any = "",
        lException: Optional[BaseException] = None,
        *,
        extra: Optional[Mapping[str, Any]] = None,
    ) -> bool:
        """Log at ERROR with the traceback of ``lException`` or of the exception being handled."""
        if lException is not None:
            excInfo: Any = (type(lException), lException, lException.__traceback__)
        else:
            excInfo = sys.exc_info() if sys.exc_info()[0] is not None else None
        return self._emit(ERROR, msg, varMsg, excInfo=excInfo, extra=extra)

    def __repr__(self) -> str:
        return f"<Logger {self.getName()} {self.getLevel()}>"


def _getLogger(path: str) -> Logger:
    """Return the shared Logger for a sub-logger path, creating it once."""
    found = _loggers.get(path)
    if found is None:
        with _state:
            found = _loggers.get(path)
            if found is None:
                found = _loggers[path] = Logger(path)
    return found


class TextFormatter(logging.Formatter):
    """``YYYY-MM-DD HH:MM:SS UTC <Name> <LEVEL>: <message>`` with UTC times and DIRAC level names."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        """Render one record, followed by its traceback when it has one."""
        record.message = record.getMessage()
        text = (
            f"{self.formatTime(record, '%Y-%m-%d %H:%M:%S')} UTC {_displayName(record)} "
            f"{levelName(record.levelno)}: {record.message}"
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text = f"{text}\n{record.exc_text}"
        if record.stack_info:
            text = f"{text}\n{self.formatStack(record.stack_info)}"
        return text


class JSONFormatter(logging.Formatter):
    """One JSON object per line: asctime, levelname, componentname, message, extra fields, exception."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a single-line JSON object."""
        record.message = record.getMessage()
        data: Dict[str, Any] = {
            "asctime": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "levelname": levelName(record.levelno),
            "componentname": _displayName(record),
            "message": record.message,
        }
        for key, value in record.__dict__.items():
            if key not in _standardRecordKeys and key not in data:
                data[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return _json.dumps(data, default=str)


def setupLogging(
    level: Union[str, int] = "INFO",
    json: bool = False,
    stream: Optional[IO[str]] = None,
    *,
    libraryDebug: bool = False,
    componentName: Optional[str] = None,
) -> None:
    """Install (or replace) the one root handler: DIRAC text or JSON lines, DIRAC loggers at ``level``."""
    global _handler, _configured, _componentName
    number = _levelNumber(level)
    if number is None:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(Logger.getAllPossibleLevels())}")
    with _state:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(JSONFormatter() if json else TextFormatter())
        root = logging.getLogger()
        if _handler is not None:
            root.removeHandler(_handler)
        root.addHandler(handler)
        _handler = handler
        _configured = True
        if componentName is not None:
            _componentName = str(componentName).strip("/")
        gLogger.logger.setLevel(number)
        root.setLevel(DEBUG if libraryDebug else WARN)


def resetLogging() -> None:
    """Remove the handler setupLogging installed (tests, applications taking logging over)."""
    global _handler, _configured
    with _state:
        if _handler is not None:
            logging.getLogger().removeHandler(_handler)
        _handler = None
        _configured = False


def _autoSetup() -> None:
    """Give gLogger a default output on first use when nothing configured logging."""
    global _configured
    with _state:
        if _configured:
            return
        _configured = True
        if not logging.getLogger().handlers:
            setupLogging(level=gLogger.logger.getEffectiveLevel())


def debugLevelFromCount(count: int, default: str = "INFO") -> str:
    """Map the number of ``-d`` flags to a level: 0 -> default, 1 -> VERBOSE, 2+ -> DEBUG."""
    if count <= 0:
        return default
    return "VERBOSE" if count == 1 else "DEBUG"


def libraryDebugFromCount(count: int) -> bool:
    """Tell whether ``-ddd`` (three or more) asked for the debug output of third-party libraries too."""
    return count >= 3


gLogger = _getLogger("")
if gLogger.logger.level == logging.NOTSET:
    gLogger.logger.setLevel(INFO)
