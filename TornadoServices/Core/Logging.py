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
import os
import sys
import threading
import time
import weakref
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


class _SecondCache:
    """``strftime`` of the UTC second of a record, computed once per second (a busy server logs many per second)."""

    __slots__ = ("_pattern", "_entry")

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern
        self._entry: tuple[int, str] = (-1, "")

    def text(self, created: float) -> str:
        second = int(created)
        entry = self._entry
        if entry[0] != second:
            entry = self._entry = (second, time.strftime(self._pattern, time.gmtime(second)))
        return entry[1]


class TextFormatter(logging.Formatter):
    """``YYYY-MM-DD HH:MM:SS UTC <Name> <LEVEL>: <message>`` with UTC times and DIRAC level names."""

    converter = time.gmtime

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seconds = _SecondCache("%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """Render one record, followed by its traceback when it has one."""
        record.message = record.getMessage()
        text = (
            f"{self._seconds.text(record.created)} UTC {_displayName(record)} "
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seconds = _SecondCache("%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a single-line JSON object."""
        record.message = record.getMessage()
        data: Dict[str, Any] = {
            "asctime": self._seconds.text(record.created) + f".{int(record.msecs):03d}Z",
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


class BatchedLogRecord(logging.LogRecord):
    """A record a batching handler may write up to its delay late: high-volume lines such as access lines."""


class BufferedStreamHandler(logging.StreamHandler):
    """A StreamHandler that can write high-volume lines in batches instead of one write and flush per record.

    With ``delay`` 0 (the default) every record is written and flushed at once, as ``logging.StreamHandler``
    does. With ``delay`` > 0, :class:`BatchedLogRecord` records below ``immediateLevel`` (WARN) are gathered
    and written together by a background thread at most ``delay`` seconds after the first of them, or at
    once when ``maxBytes`` are pending or any other record arrives (lines keep their order); :meth:`flush`
    (also called by ``logging.shutdown`` at interpreter exit, by :func:`flushLogging` and before ``os.fork``)
    writes everything pending. A busy server writes one access line per request: batching saves a system
    call per line.
    """

    def __init__(self, stream: Optional[IO[str]] = None, delay: float = 0.0, maxBytes: int = 64 * 1024) -> None:
        super().__init__(stream)
        self.delay = delay
        self.maxBytes = maxBytes
        self.immediateLevel = WARN
        self._pending: List[str] = []
        self._pendingSize = 0
        self._wake = threading.Event()
        self._flusherPid = 0
        _bufferedHandlers.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        """Format the record and write it now, or queue it for the next batch (called with the handler lock held)."""
        try:
            text = self.format(record) + self.terminator
            if self.delay <= 0:
                self.stream.write(text)
                self.flush()
                return
            pending = self._pending
            pending.append(text)
            self._pendingSize += len(text)
            if (
                record.levelno >= self.immediateLevel
                or self._pendingSize >= self.maxBytes
                or not isinstance(record, BatchedLogRecord)
            ):
                self._writePending()
            elif len(pending) == 1:
                self._scheduleFlush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _writePending(self) -> None:
        """Write and flush the queued lines (handler lock held)."""
        pending = self._pending
        if pending:
            text = "".join(pending)
            pending.clear()
            self._pendingSize = 0
            self.stream.write(text)
        if self.stream and hasattr(self.stream, "flush"):
            self.stream.flush()

    def flush(self) -> None:
        """Write every queued line and flush the stream."""
        self.acquire()
        try:
            self._writePending()
        finally:
            self.release()

    def _scheduleFlush(self) -> None:
        """Wake the flusher thread (started on first use, and again in a forked child)."""
        if self._flusherPid != os.getpid():
            self._flusherPid = os.getpid()
            self._wake = threading.Event()
            threading.Thread(target=self._flusher, args=(self._wake,), name="LogFlusher", daemon=True).start()
        self._wake.set()

    def _flusher(self, wake: threading.Event) -> None:
        """Background thread: ``delay`` seconds after a batch starts, write it."""
        while True:
            wake.wait()
            time.sleep(self.delay)
            wake.clear()
            try:
                self.flush()
            except Exception:  # a closed stream at interpreter exit: nothing left to write to
                pass

    def close(self) -> None:
        """Write what is pending, then close as StreamHandler does."""
        try:
            self.flush()
        except Exception:
            pass
        super().close()


_bufferedHandlers: "weakref.WeakSet[BufferedStreamHandler]" = weakref.WeakSet()


def flushLogging() -> None:
    """Write every log line still queued by a batching handler (before ``os._exit`` and the like)."""
    for handler in list(_bufferedHandlers):
        try:
            handler.flush()
        except Exception:
            pass


def _writeQueuedLines(handler: logging.Handler) -> None:
    """Write what a handler being replaced still queues (its stream may already be closed: then nothing)."""
    if isinstance(handler, BufferedStreamHandler) and handler._pending:
        try:
            handler.flush()
        except (OSError, ValueError):
            pass


def _flushBeforeFork() -> None:
    """A forked child must not inherit (and write again) lines its parent has queued."""
    flushLogging()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_flushBeforeFork)


def setOutputDelay(seconds: float) -> bool:
    """Let the installed handler batch :class:`BatchedLogRecord` lines up to ``seconds`` late (0: at once).

    Only for output to a file or a pipe: a terminal or an in-memory stream keeps writing each line at once.
    Other records (and WARN and above) are written at once, with the lines queued before them, and
    everything is written at a clean exit. Return whether batching is in force.
    """
    with _state:
        handler = _handler
        if not isinstance(handler, BufferedStreamHandler):
            return False
        if seconds > 0 and not _isFileStream(handler.stream):
            seconds = 0.0
        handler.acquire()
        try:
            handler.delay = max(0.0, float(seconds))
            if handler.delay <= 0:
                handler._writePending()
        finally:
            handler.release()
        return handler.delay > 0


def _isFileStream(stream: Any) -> bool:
    """True for a stream backed by a file descriptor that is not a terminal."""
    try:
        stream.fileno()
        return not stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False


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
        handler = BufferedStreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(JSONFormatter() if json else TextFormatter())
        root = logging.getLogger()
        if _handler is not None:
            root.removeHandler(_handler)
            _writeQueuedLines(_handler)
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
            _writeQueuedLines(_handler)
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
