"""Logging: DIRAC levels and API on top of the standard logging module."""

import io
import json
import logging
import re

import pytest

from TornadoServices.Core import Logging
from TornadoServices.Core.Logging import (
    debugLevelFromCount,
    gLogger,
    libraryDebugFromCount,
    resetLogging,
    setupLogging,
)

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC (?P<name>\S+) (?P<level>[A-Z]+): (?P<message>.*)$")


@pytest.fixture
def output():
    """Configure logging into a buffer, restore levels and handler afterwards."""
    buffer = io.StringIO()
    setupLogging("DEBUG", stream=buffer, componentName="Framework/Dummy")
    yield buffer
    resetLogging()
    gLogger.setLevel("INFO")
    gLogger.setComponentName(Logging.DEFAULT_COMPONENT_NAME)
    logging.getLogger().setLevel(logging.WARNING)


def lines(buffer):
    return buffer.getvalue().splitlines()


def test_level_values():
    assert (Logging.DEBUG, Logging.VERBOSE, Logging.INFO, Logging.WARN) == (10, 15, 20, 30)
    assert (Logging.NOTICE, Logging.ERROR, Logging.ALWAYS, Logging.FATAL) == (35, 40, 45, 50)
    assert gLogger.getAllPossibleLevels() == ["DEBUG", "VERBOSE", "INFO", "WARN", "NOTICE", "ERROR", "ALWAYS", "FATAL"]


def test_text_format_and_every_method(output):
    log = gLogger.getSubLogger("Sub")
    for method in ("debug", "verbose", "info", "warn", "warning", "notice", "error", "always", "fatal"):
        assert getattr(log, method)(f"{method} message") is True
    got = [LINE.match(line) for line in lines(output)]
    assert all(got), lines(output)
    assert [m["level"] for m in got] == [
        "DEBUG", "VERBOSE", "INFO", "WARN", "WARN", "NOTICE", "ERROR", "ALWAYS", "FATAL"
    ]
    assert {m["name"] for m in got} == {"Framework/Dummy/Sub"}
    assert got[2]["message"] == "info message"


def test_varMsg_is_appended_with_a_space(output):
    gLogger.info("Connected to", "https://host:8443")
    gLogger.info("no var", "")
    gLogger.info("percent %s %d stays literal")
    gLogger.notice(42, ["a"])
    messages = [LINE.match(line)["message"] for line in lines(output)]
    assert messages == ["Connected to https://host:8443", "no var", "percent %s %d stays literal", "42 ['a']"]


def test_levels_filter_and_inheritance(output):
    gLogger.setLevel("NOTICE")
    sub = gLogger.getSubLogger("Filtered")
    assert sub.getLevel() == "NOTICE"
    assert sub.info("hidden") is False
    assert sub.warn("hidden too") is False
    assert sub.notice("shown") is True
    assert sub.shown("NOTICE") and sub.shown("error") and not sub.shown("INFO")
    assert sub.setLevel("debug") is True
    assert sub.getLevel() == "DEBUG" and gLogger.getLevel() == "NOTICE"
    assert sub.debug("now shown") is True
    assert gLogger.setLevel("LOUD") is False and gLogger.getLevel() == "NOTICE"
    assert gLogger.setLevel(Logging.VERBOSE) and gLogger.getLevel() == "VERBOSE"
    assert [LINE.match(line)["message"] for line in lines(output)] == ["shown", "now shown"]
    sub.setLevel(logging.NOTSET)


def test_sub_logger_names():
    sub = gLogger.getSubLogger("Server")
    nested = sub.getSubLogger("HandlerManager")
    assert gLogger.getSubLogger("Server") is sub
    assert sub.logger.name == "TornadoServices.Server"
    assert nested.logger.name == "TornadoServices.Server.HandlerManager"
    assert gLogger.logger.name == "TornadoServices"
    assert nested.getSubName() == "HandlerManager"
    assert nested.getName() == f"{Logging.DEFAULT_COMPONENT_NAME}/Server/HandlerManager"
    assert gLogger.getName() == Logging.DEFAULT_COMPONENT_NAME


def test_records_reach_standard_logging(caplog):
    caplog.set_level(logging.DEBUG, logger="TornadoServices")
    gLogger.getSubLogger("Caplog").error("went wrong", "badly")
    record = caplog.records[-1]
    assert record.name == "TornadoServices.Caplog"
    assert record.levelno == Logging.ERROR
    assert record.getMessage() == "went wrong badly"
    assert record.funcName == "test_records_reach_standard_logging"


def test_exception_includes_traceback(output):
    try:
        raise ZeroDivisionError("division by zero in test")
    except ZeroDivisionError:
        gLogger.exception("Computation failed", "for job 12")
    text = output.getvalue()
    first = LINE.match(text.splitlines()[0])
    assert first["level"] == "ERROR"
    assert first["message"] == "Computation failed for job 12"
    assert "Traceback (most recent call last)" in text
    assert "ZeroDivisionError: division by zero in test" in text


def test_exception_with_given_exception_and_without_any(output):
    def fail():
        raise KeyError("stored")

    try:
        fail()
    except KeyError as exc:
        stored = exc
    gLogger.exception("Later", lException=stored)
    gLogger.exception("No exception at all")
    text = output.getvalue()
    assert "in fail" in text and "KeyError: 'stored'" in text
    assert text.rstrip().splitlines()[-1].endswith("ERROR: No exception at all")
    assert "NoneType" not in text


def test_json_lines(output):
    buffer = io.StringIO()
    setupLogging("DEBUG", json=True, stream=buffer)
    sub = gLogger.getSubLogger("Json")
    sub.info("multi\nline \u00e9 message", "var")
    sub.verbose("with extra", extra={"method": "ping", "ms": 1.5})
    try:
        raise RuntimeError("json traceback")
    except RuntimeError:
        sub.exception("failed")
    logging.getLogger("tornado.test").warning("from a library %s", "arg")
    records = [json.loads(line) for line in lines(buffer)]
    assert len(records) == 4
    assert records[0]["message"] == "multi\nline \u00e9 message var"
    assert records[0]["levelname"] == "INFO"
    assert records[0]["componentname"] == "Framework/Dummy/Json"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", records[0]["asctime"])
    assert records[1]["method"] == "ping" and records[1]["ms"] == 1.5 and records[1]["levelname"] == "VERBOSE"
    assert "RuntimeError: json traceback" in records[2]["exception"]
    assert records[3]["componentname"] == "tornado.test" and records[3]["levelname"] == "WARN"
    assert records[3]["message"] == "from a library arg"
    assert output.getvalue() == ""  # the handler was replaced, not added


def test_setupLogging_replaces_its_handler_and_library_levels(output):
    root = logging.getLogger()
    ours = [h for h in root.handlers if h.formatter.__class__ in (Logging.TextFormatter, Logging.JSONFormatter)]
    assert len(ours) == 1
    logging.getLogger("tornado.general").info("library info hidden")
    assert output.getvalue() == ""
    buffer = io.StringIO()
    setupLogging("INFO", stream=buffer, libraryDebug=True)
    logging.getLogger("tornado.general").debug("library debug shown")
    assert "tornado.general DEBUG: library debug shown" in buffer.getvalue()
    with pytest.raises(ValueError, match="unknown log level"):
        setupLogging("CHATTY")


def test_debugLevelFromCount():
    assert debugLevelFromCount(0) == "INFO"
    assert debugLevelFromCount(0, default="NOTICE") == "NOTICE"
    assert debugLevelFromCount(1) == "VERBOSE"
    assert debugLevelFromCount(2) == "DEBUG"
    assert debugLevelFromCount(3) == "DEBUG"
    assert [libraryDebugFromCount(n) for n in range(5)] == [False, False, False, True, True]


def test_batched_output_is_written_promptly_and_warnings_at_once(tmp_path):
    """setOutputDelay batches lines to a file: INFO within the delay, WARN and above at once, all on flush."""
    import time

    path = tmp_path / "server.log"
    with open(path, "w") as stream:
        setupLogging("INFO", stream=stream, componentName="Framework/Dummy")
        try:
            logger = gLogger.logger

            def batched(message, level=logging.INFO):
                record = Logging.BatchedLogRecord(logger.name, level, __file__, 0, message, None, None)
                logger.handle(record)

            assert Logging.setOutputDelay(0.05) is True
            batched("batched line")
            gLogger.info("ordinary line")  # not batchable: written at once, after the queued line
            assert path.read_text().splitlines()[-2:][0].endswith("INFO: batched line")
            assert path.read_text().splitlines()[-1].endswith("INFO: ordinary line")
            batched("another batched line")
            batched("urgent line", logging.WARNING)
            assert path.read_text().splitlines()[-1].endswith("WARN: urgent line")
            batched("later line")
            deadline = time.monotonic() + 30
            while "later line" not in path.read_text() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert "later line" in path.read_text()
            Logging.setOutputDelay(60)
            batched("flushed at exit")
            assert "flushed at exit" not in path.read_text()
            Logging.flushLogging()
            assert path.read_text().splitlines()[-1].endswith("INFO: flushed at exit")
        finally:
            resetLogging()
            gLogger.setComponentName(Logging.DEFAULT_COMPONENT_NAME)
            logging.getLogger().setLevel(logging.WARNING)


def test_batched_output_stays_immediate_for_memory_streams():
    buffer = io.StringIO()
    setupLogging("INFO", stream=buffer)
    try:
        assert Logging.setOutputDelay(0.5) is False
        gLogger.info("at once")
        assert "at once" in buffer.getvalue()
    finally:
        resetLogging()
        logging.getLogger().setLevel(logging.WARNING)
