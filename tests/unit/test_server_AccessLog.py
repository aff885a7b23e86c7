"""AccessRecordFactory: records of the access line are ordinary LogRecords with their own attributes."""
from __future__ import annotations

import logging
import time

from TornadoServices.Core.Logging import BatchedLogRecord
from TornadoServices.Server.private.AccessLog import AccessRecordFactory


def test_records_are_like_made_ones_and_independent():
    logger = logging.getLogger("TornadoServices.Test.AccessLog")
    factory = AccessRecordFactory(logger)
    before = time.time()
    first = factory.make("Returning response one")
    second = factory.make("Returning response two")
    after = time.time()
    reference = logger.makeRecord(logger.name, logging.INFO, "x", 0, "", None, None)
    assert isinstance(first, BatchedLogRecord) and isinstance(first, logging.LogRecord)
    assert set(vars(first)) == set(vars(reference))
    for name in ("name", "levelno", "levelname", "args", "exc_info", "thread", "threadName", "process"):
        assert getattr(first, name) == getattr(reference, name), name
    assert first.getMessage() == "Returning response one" and second.getMessage() == "Returning response two"
    assert before <= first.created <= second.created <= after
    assert abs(first.msecs - (first.created - int(first.created)) * 1000.0) < 1e-6
    first.service = "A"
    assert not hasattr(second, "service") and vars(first) is not vars(second)
    assert logging.Formatter("%(levelname)s %(name)s %(message)s").format(first) == "INFO TornadoServices.Test.AccessLog Returning response one"
