"""Security/Probe: a test service that reports what the server tells a handler about its caller.

Loaded by the security tests through ``HandlerPath = SecurityProbeHandler.py`` (this directory is put on
``sys.path`` by the conftest). Every method counts its calls, so a test can prove that a refused request
never reached a handler.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from TornadoServices import S_OK
from TornadoServices.Server.TornadoService import TornadoService


class SecurityProbeHandler(TornadoService):
    """Identity echo (sync and async), caller address, and results that JEncode cannot carry."""

    calls = 0
    _lock = threading.Lock()

    @classmethod
    def _count(cls) -> None:
        with cls._lock:
            cls.calls += 1

    def _identity(self) -> dict[str, Any]:
        creds = self.getRemoteCredentials()
        return {"DN": creds.get("DN"), "username": creds.get("username"), "group": creds.get("group")}

    auth_whoamiSync = ["authenticated"]

    def export_whoamiSync(self, token: Any) -> dict[str, Any]:
        """Identity read twice around a pause in a worker thread (another request may run meanwhile)."""
        self._count()
        before = self._identity()
        time.sleep(0.001)
        return S_OK({"token": token, "before": before, "after": self._identity(), "worker": threading.current_thread().name})

    auth_whoamiAsync = ["authenticated"]

    async def export_whoamiAsync(self, token: Any) -> dict[str, Any]:
        """Identity read twice around a yield to the event loop (other requests run meanwhile)."""
        self._count()
        before = self._identity()
        await asyncio.sleep(0)
        return S_OK({"token": token, "before": before, "after": self._identity()})

    auth_remoteAddress = ["all"]

    async def export_remoteAddress(self) -> dict[str, Any]:
        """The (ip, port) the server attributes to the caller, and Tornado's ``remote_ip`` for the request."""
        self._count()
        return S_OK([*self.getRemoteAddress(), self.request.remote_ip])

    auth_unencodable = ["all"]

    def export_unencodable(self, kind: str) -> Any:
        """A result JEncode cannot represent: set, object, circular, deep, badkey, none."""
        self._count()
        if kind == "set":
            return S_OK({1, 2, 3})
        if kind == "object":
            return S_OK(object())
        if kind == "circular":
            loop: list[Any] = []
            loop.append(loop)
            return S_OK(loop)
        if kind == "deep":
            value: Any = []
            for _ in range(100_000):
                value = [value]
            return S_OK(value)
        if kind == "badkey":
            return S_OK({(1, 2): "tuple keys are not JSON"})
        if kind == "none":
            return None
        return S_OK(kind)
