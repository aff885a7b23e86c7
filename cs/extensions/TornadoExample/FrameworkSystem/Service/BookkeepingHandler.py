"""Framework/Bookkeeping: a small key-value store showing per-component state set up in initializeHandler.

Two CS components may run this code (``Module = Bookkeeping``): each gets its own store, because the server
creates one handler subclass per component. Methods are plain functions running in worker threads, so the
store is protected by a lock.
"""
from __future__ import annotations

import threading
from typing import Any

from TornadoServices import S_ERROR, S_OK
from TornadoServices.Server.TornadoService import TornadoService


class BookkeepingHandler(TornadoService):
    """put/get/listKeys/deleteKey on an in-memory dictionary, with per-method authorisation."""

    @classmethod
    def initializeHandler(cls, serviceInfo: dict[str, Any]) -> dict[str, Any]:
        """Create this component's store; ``MaxKeys`` (CS option of the service, default 1000) bounds it."""
        cls.store: dict[str, Any] = {}
        cls.storeLock = threading.Lock()
        cls.maxKeys = cls.srv_getCSOption("MaxKeys", 1000)
        if cls.maxKeys <= 0:
            return S_ERROR(f"{serviceInfo['serviceSectionPath']}/MaxKeys must be positive, not {cls.maxKeys}")
        return S_OK()

    auth_put = ["NormalUser"]
    types_put = [str]

    def export_put(self, key: str, value: Any) -> dict[str, Any]:
        """Store ``value`` under ``key``; remembers who wrote it."""
        with self.storeLock:
            if key not in self.store and len(self.store) >= self.maxKeys:
                return S_ERROR(f"The store is full ({self.maxKeys} keys): delete some or raise MaxKeys")
            self.store[key] = {"value": value, "owner": self.getUserName()}
        return S_OK()

    auth_get = ["authenticated"]
    types_get = [str]

    def export_get(self, key: str) -> dict[str, Any]:
        """Value stored under ``key``."""
        with self.storeLock:
            entry = self.store.get(key)
        if entry is None:
            return S_ERROR(f"No key {key!r} in {self.srv_getServiceName()}")
        return S_OK(entry["value"])

    auth_listKeys = ["authenticated"]

    def export_listKeys(self) -> dict[str, Any]:
        """Sorted keys of this component's store."""
        with self.storeLock:
            return S_OK(sorted(self.store))

    auth_deleteKey = ["group:dirac_admin"]
    types_deleteKey = [str]

    def export_deleteKey(self, key: str) -> dict[str, Any]:
        """Remove ``key`` (administrators only, unless the CS says otherwise)."""
        with self.storeLock:
            existed = self.store.pop(key, None) is not None
        return S_OK(existed)
