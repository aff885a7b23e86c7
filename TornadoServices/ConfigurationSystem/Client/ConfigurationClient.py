"""``ConfigurationClient``: the RPC client of the Configuration service, with its base64 conventions.

The HTTPS Configuration service sends compressed configuration data as base64 text (JSON carries no
bytes); this client decodes ``getCompressedData`` and the ``data`` of ``getCompressedDataIfNewer`` to
bytes and encodes the argument of ``commitNewData``, as DIRAC's ``CSJSONClient`` does. Every other
method is a plain remote call: ``ConfigurationClient().getVersion()``.

Without ``url`` the client talks to ``Configuration/Server``: the URLs under
``/Systems/Configuration/URLs/Server`` when configured, else ``/DIRAC/Configuration/Servers``.
"""
from __future__ import annotations

from base64 import b64decode, b64encode
from binascii import Error as BinasciiError
from collections.abc import Callable
from typing import Any

from TornadoServices.ConfigurationSystem.Client import PathFinder
from TornadoServices.ConfigurationSystem.Client.ConfigurationData import gConfigurationData
from TornadoServices.Core.ReturnValues import S_ERROR

__all__ = ["ConfigurationClient", "resolveConfigurationURLs"]

DEFAULT_SERVICE = "Configuration/Server"


def resolveConfigurationURLs(service: str = DEFAULT_SERVICE) -> str:
    """Return a comma list of URLs of a configuration service: its CS URLs, else the configuration servers."""
    try:
        urls = PathFinder.getServiceURLs(service)
    except Exception:  # an unusual layout: fall back to the servers list
        urls = []
    if not urls and service == DEFAULT_SERVICE:
        urls = gConfigurationData.getServers()
    return ", ".join(urls) if urls else service


def _decodeData(result: dict, key: str | None = None) -> dict:
    """Base64-decode ``result["Value"]`` (or ``result["Value"][key]``) in place when it is text."""
    if not result.get("OK"):
        return result
    try:
        if key is None:
            if isinstance(result["Value"], str):
                result["Value"] = b64decode(result["Value"])
        elif isinstance(result["Value"], dict) and isinstance(result["Value"].get(key), str):
            result["Value"][key] = b64decode(result["Value"][key])
    except (BinasciiError, ValueError) as exc:
        return S_ERROR(f"The configuration server sent data that is not base64: {exc}")
    return result


class ConfigurationClient:
    """Client of ``Configuration/Server`` (or of an explicit configuration server URL)."""

    def __init__(self, url: str | None = None, **kwargs: Any) -> None:
        self._destination = url or DEFAULT_SERVICE
        self._kwargs = kwargs
        self._client: Any = None

    def _rpc(self) -> Any:
        """Return the underlying TornadoClient, created on first use (keeps its pooled connection)."""
        if self._client is None:
            from TornadoServices.Client.TornadoClient import TornadoClient

            target = self._destination
            if "://" not in target:
                target = resolveConfigurationURLs(target)
            self._client = TornadoClient(target, **self._kwargs)
        return self._client

    def getServiceName(self) -> str:
        """Return what this client talks to (name or URL)."""
        return self._destination

    def executeRPC(self, method: str, *args: Any) -> dict:
        """Call ``method`` on the configuration server; S_OK/S_ERROR."""
        try:
            client = self._rpc()
        except Exception as exc:  # a client that cannot even be built is an S_ERROR for the caller
            return S_ERROR(f"Cannot create a client for {self._destination}: {exc}")
        return client.executeRPC(method, *args)

    def __getattr__(self, name: str) -> Callable[..., dict]:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

        def call(*args: Any) -> dict:
            return self.executeRPC(name, *args)

        call.__name__ = name
        return call

    def getCompressedData(self) -> dict:
        """Return S_OK(zlib-compressed CFG bytes) of the whole configuration."""
        return _decodeData(self.executeRPC("getCompressedData"))

    def getCompressedDataIfNewer(self, sClientVersion: str) -> dict:
        """Return S_OK({"newestVersion": v[, "data": zlib bytes]}): data only when newer than ours."""
        return _decodeData(self.executeRPC("getCompressedDataIfNewer", sClientVersion), "data")

    def commitNewData(self, sData: bytes, message: str = "") -> dict:
        """Commit zlib-compressed CFG bytes (with the Version they were edited from); S_OK(new version)."""
        encoded = b64encode(sData).decode()
        if message:
            return self.executeRPC("commitNewData", encoded, message)
        return self.executeRPC("commitNewData", encoded)
