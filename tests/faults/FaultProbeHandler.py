"""Faults/Probe: a service that journals every execution, so tests can count how often a call really ran.

Loaded by the fault tests with ``HandlerPath = FaultProbeHandler.py`` (this directory is on the server's
``PYTHONPATH``). ``record(callId, delay)`` appends ``<callId> <pid>`` to the journal file named by the
service option ``Journal`` *before* it sleeps and answers: a server killed in between has executed the
call without answering it, which is exactly the case a client must never resend.
"""
from __future__ import annotations

import os
import time
from typing import Any

from TornadoServices import S_ERROR, S_OK
from TornadoServices.Server.TornadoService import TornadoService


class FaultProbeHandler(TornadoService):
    """Journaled calls, the serving process id, and the configuration refresher's state."""

    journal = ""

    @classmethod
    def initializeHandler(cls, serviceInfo: dict[str, Any]) -> dict[str, Any]:
        cls.journal = cls.srv_getCSOption("Journal", "")
        if not cls.journal:
            return S_ERROR("Faults/Probe needs a Journal option (a file path)")
        return S_OK()

    auth_record = ["authenticated"]
    types_record = [str, (int, float)]

    def export_record(self, callId: str, delay: float = 0.0) -> dict[str, Any]:
        """Journal ``callId`` with this process id, then wait ``delay`` seconds and answer."""
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{callId} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
        if delay:
            time.sleep(delay)
        return S_OK({"callId": callId, "pid": os.getpid()})

    auth_pid = ["all"]

    async def export_pid(self) -> dict[str, Any]:
        """Id of the process that serves this call."""
        return S_OK(os.getpid())

    auth_refresherState = ["all"]

    async def export_refresherState(self) -> dict[str, Any]:
        """Whether this process runs the configuration refresher thread."""
        from TornadoServices.ConfigurationSystem.private.Refresher import gRefresher

        return S_OK({"pid": os.getpid(), "running": gRefresher.isRunning(), "enabled": gRefresher.isEnabled()})


def readJournal(path: str) -> list[tuple[str, int]]:
    """(callId, pid) of every execution journaled so far."""
    try:
        with open(path) as fd:
            lines = fd.read().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        callId, _, pid = line.rpartition(" ")
        if callId and pid.isdigit():  # a line being written may be seen half-way
            entries.append((callId, int(pid)))
    return entries
