"""Counters of a running server, for tests, metrics and benchmarks (updated on the event loop thread only)."""
from __future__ import annotations

import bisect
import collections
from typing import Any

__all__ = ["ServerStats", "LATENCY_BUCKETS"]

#: Upper bounds (seconds) of the call latency histogram buckets; a last bucket holds slower calls.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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
        "calls",
        "authFailures",
        "handshakeFailureReasons",
        "probes",
        "untrustedForwardedHeaders",
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
        #: (service, method) -> [latency sum, bucket counts (len(LATENCY_BUCKETS) + 1), {status: calls}]
        self.calls: dict[tuple[str, str], list[Any]] = {}
        #: reason -> requests refused at authentication or authorisation (401/403)
        self.authFailures: collections.Counter[str] = collections.Counter()
        #: reason -> failed TLS handshakes (sums to handshakeFailures)
        self.handshakeFailureReasons: collections.Counter[str] = collections.Counter()
        #: health, readiness and metrics requests (not counted in ``requests``)
        self.probes = 0
        #: requests carrying forwarded-certificate headers from a peer that is not a trusted front end
        self.untrustedForwardedHeaders = 0

    def recordCall(self, service: str, method: str, status: int, seconds: float) -> None:
        """Count one answered call of ``service.method`` (method ``unknown`` for names it does not export)."""
        entry = self.calls.get((service, method))
        if entry is None:
            entry = self.calls[(service, method)] = [0.0, [0] * (len(LATENCY_BUCKETS) + 1), {}]
        entry[0] += seconds
        entry[1][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        byStatus = entry[2]
        byStatus[status] = byStatus.get(status, 0) + 1

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
            "calls": [
                [service, method, entry[0], list(entry[1]), {str(k): v for k, v in entry[2].items()}]
                for (service, method), entry in self.calls.items()
            ],
            "authFailures": dict(self.authFailures),
            "handshakeFailureReasons": dict(self.handshakeFailureReasons),
            "probes": self.probes,
            "untrustedForwardedHeaders": self.untrustedForwardedHeaders,
        }

    def __repr__(self) -> str:
        return f"<ServerStats {self.snapshot()}>"
