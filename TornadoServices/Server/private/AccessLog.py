"""Log records of the per-request access line, cloned from a template instead of built from scratch.

``logging.Logger.makeRecord`` looks up the caller's frame, the thread, the process and the module path for
every record. The access line is always written from the event loop thread by the same code, so those fields
are the same for every request: one real record is made once and each request copies its attributes and sets
only the time and the message. The result is a ``LogRecord`` (a ``BatchedLogRecord``: the server's own log
handler may write these lines in batches, a fraction of a second late; other handlers, formatters, filters
and pytest's ``caplog`` see no difference).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Optional

from TornadoServices.Core.Logging import BatchedLogRecord

__all__ = ["AccessRecordFactory"]

_LogRecord = BatchedLogRecord


class AccessRecordFactory:
    """Makes INFO records for one logger, fast."""

    __slots__ = ("_logger", "_level", "_template")

    def __init__(self, logger: logging.Logger, level: int = logging.INFO) -> None:
        self._logger = logger
        self._level = level
        self._template: Optional[dict[str, Any]] = None

    def make(self, message: str) -> logging.LogRecord:
        """A record of ``message`` at this factory's level, timed now."""
        template = self._template
        if template is None:
            logger = self._logger
            template = self._template = logger.makeRecord(logger.name, self._level, __file__, 0, "", None, None).__dict__.copy()
        fields = template.copy()  # one C-level copy, then given to the record as its attribute dict
        now = time.time()
        fields["created"] = now
        fields["msecs"] = (now - int(now)) * 1000.0
        fields["relativeCreated"] = template["relativeCreated"] + (now - template["created"]) * 1000.0
        fields["msg"] = message
        record = _LogRecord.__new__(_LogRecord)
        record.__dict__ = fields
        return record
