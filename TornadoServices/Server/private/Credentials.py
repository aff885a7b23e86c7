"""Credentials of a TLS connection, computed once from the verified chain and cached on the connection.

Tornado creates a new ``HTTP1Connection`` per request but keeps one ``SSLIOStream`` per TCP connection, so
the state lives on the stream: a keep-alive client pays certificate parsing and Registry lookups once, and two
connections never share anything (a new TLS connection always starts with an empty state).
"""
from __future__ import annotations

import time
from typing import Any

from TornadoServices.Core import DErrno
from TornadoServices.Core.ReturnValues import S_ERROR
from TornadoServices.Security.TLS import getVerifiedChainDER
from TornadoServices.Security.X509Chain import X509Chain

__all__ = [
    "ConnectionCredentials",
    "getConnectionCredentials",
    "orderCredentials",
    "publicCredentials",
    "CREDENTIALS_ORDER",
    "SERVER_ONLY_KEYS",
    "EXPIRED_REASON",
]

_STREAM_ATTRIBUTE = "_tornadoServicesCredentials"
_AUTH_CACHE_SIZE = 256

#: Auth-failure label (``stats.authFailures``, /metrics) of a request refused because its chain expired.
EXPIRED_REASON = "certificate expired"

#: Key order of the credential dictionary, as DIRAC's whoami shows it.
CREDENTIALS_ORDER = (
    "subject",
    "issuer",
    "secondsLeft",
    "isProxy",
    "isLimitedProxy",
    "validDN",
    "validGroup",
    "DN",
    "identity",
    "extraCredentials",
    "group",
    "VO",
    "properties",
    "username",
)

#: Keys of the server-side credential dictionary that handlers see but DIRAC's whoami does not show.
SERVER_ONLY_KEYS = frozenset({"x509Chain", "isIndependentProxy"})


class ConnectionCredentials:
    """Certificate facts of one connection plus the authorisation decisions already taken on it."""

    __slots__ = ("credDict", "error", "expiresAt", "authCache")

    def __init__(self, credDict: dict[str, Any] | None, error: dict[str, Any] | None, expiresAt: float) -> None:
        self.credDict = credDict
        self.error = error
        self.expiresAt = expiresAt
        #: (component, method, extraCredentials text) -> (generation, allowed, credentials after auth)
        self.authCache: dict[tuple[str, str, str | None], tuple[int, bool, dict[str, Any]]] = {}

    @classmethod
    def fromDERChain(cls, ders: list[bytes]) -> "ConnectionCredentials":
        """Credentials from a verified chain (leaf first); an empty chain gives a 401-type error."""
        if not ders:
            return cls(
                None,
                S_ERROR(
                    DErrno.ECERTFIND,
                    "Valid certificate not found: the client sent no certificate; "
                    "call with a proxy (X509_USER_PROXY, tornado-proxy-init) or a certificate and key",
                ),
                0.0,
            )
        try:
            chain = X509Chain.fromDERList(ders)
            result = chain.getCredentials(ignoreDefault=True, withRegistryInfo=False)
        except Exception as exc:  # a chain OpenSSL accepted but we cannot read
            result = S_ERROR(f"{type(exc).__name__}: {exc}")
        if not result["OK"]:
            return cls(
                None,
                S_ERROR(DErrno.ECERTREAD, f"Cannot read the client certificate chain: {result['Message']}"),
                0.0,
            )
        credDict = dict(result["Value"])
        credDict.pop("VO", None)  # depends on the CS: added with the authorisation decision
        credDict["isIndependentProxy"] = chain.isIndependentProxy()["Value"]
        credDict["x509Chain"] = chain
        expiresAt = time.time() + max(0, int(credDict.get("secondsLeft", 0)))
        return cls(credDict, None, expiresAt)

    def expiredError(self, now: float | None = None) -> dict[str, Any] | None:
        """S_ERROR when the chain has expired since the handshake (keep-alive connection), else None.

        OpenSSL checks validity only in the handshake: every request on an open connection is checked here.
        """
        if (time.time() if now is None else now) < self.expiresAt:
            return None
        return S_ERROR(DErrno.ENOAUTH, "The client certificate or proxy has expired during this connection: renew it and reconnect")

    def cachedAuth(self, key: tuple[str, str, str | None], generation: int) -> tuple[bool, dict[str, Any]] | None:
        """The decision for ``key`` taken under the same configuration generation, if any."""
        entry = self.authCache.get(key)
        if entry is None or entry[0] != generation:
            return None
        return entry[1], entry[2]

    def storeAuth(self, key: tuple[str, str, str | None], generation: int, allowed: bool, creds: dict[str, Any]) -> None:
        """Remember a decision (bounded: a connection calling many methods just starts over)."""
        if len(self.authCache) >= _AUTH_CACHE_SIZE:
            self.authCache.clear()
        self.authCache[key] = (generation, allowed, creds)


def getConnectionCredentials(stream: Any) -> ConnectionCredentials:
    """The credentials of the connection behind ``stream`` (an SSLIOStream), computed on first use."""
    state = getattr(stream, _STREAM_ATTRIBUTE, None)
    if state is None:
        socket = getattr(stream, "socket", None)
        try:
            ders = getVerifiedChainDER(socket) if socket is not None else []
        except Exception:
            ders = []
        state = ConnectionCredentials.fromDERChain(list(ders or []))
        setattr(stream, _STREAM_ATTRIBUTE, state)
    return state


def orderCredentials(credDict: dict[str, Any]) -> dict[str, Any]:
    """``credDict`` with its keys in DIRAC's order (unknown keys after)."""
    ordered = {key: credDict[key] for key in CREDENTIALS_ORDER if key in credDict}
    for key, value in credDict.items():
        if key not in ordered:
            ordered[key] = value
    return ordered


def publicCredentials(credDict: dict[str, Any]) -> dict[str, Any]:
    """``credDict`` without the server-side keys, as DIRAC's whoami answers it."""
    return {key: value for key, value in credDict.items() if key not in SERVER_ONLY_KEYS}
