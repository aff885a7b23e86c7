"""Counters of a running server, for tests, metrics and benchmarks (updated on the event loop thread only)."""
from __future__ import annotations

import collections
from typing import Any

__all__ = ["ServerStats"]


class ServerStats:
    """Connections and requests seen by one TornadoServer."""

    __slots__ = (
        "connectionsAccepted",
        "handshakeFailures",
        "connectionsRejected",
        "openConnections",
        "requests",
        "requestsByStatus",
        "inFlight",
    )

    def __init__(self) -> None:
        #: TLS handshakes completed
        self.connectionsAccepted = 0
        #: connections closed during the TLS handshake (bad or untrusted certificate, not TLS, ...)
        self.handshakeFailures = 0
        #: connections closed at once because MaxConnections was reached
        self.connectionsRejected = 0
        #: client connections currently open
        self.openConnections = 0
        #: requests answered
        self.requests = 0
        #: HTTP status -> requests answered with it
        self.requestsByStatus: collections.Counter[int] = collections.Counter()
        #: requests being processed now
        self.inFlight = 0

    def snapshot(self) -> dict[str, Any]:
        """A plain-dict copy of every counter."""
        return {
            "connectionsAccepted": self.connectionsAccepted,
            "handshakeFailures": self.handshakeFailures,
            "connectionsRejected": self.connectionsRejected,
            "openConnections": self.openConnections,
            "requests": self.requests,
            "requestsByStatus": dict(self.requestsByStatus),
            "inFlight": self.inFlight,
        }

    def __repr__(self) -> str:
        return f"<ServerStats {self.snapshot()}>"
