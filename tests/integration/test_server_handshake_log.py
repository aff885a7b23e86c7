"""Refused TLS handshakes: the log is rate-limited per peer and reason, the counters count every refusal."""
from __future__ import annotations

import logging
import socket

from tests.conftest import RunningServer, loadCS, makeServerCFG, waitFor
from TornadoServices.Server.private import LogLimit

LIMIT = 5
ATTEMPTS = 30


def _refusedHandshake(port: int) -> int:
    """Plain HTTP on the TLS port (OpenSSL: "http request"); read until the server closes. Return the local port."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        local = raw.getsockname()[1]
        raw.sendall(b"GET /Framework/Dummy HTTP/1.1\r\nHost: localhost\r\n\r\n")
        try:
            while raw.recv(4096):
                pass
        except OSError:
            pass
        return local
    finally:
        raw.close()


def test_refusals_in_a_loop_give_at_most_the_limit_plus_one_summary(pki, _serverSession, caplog):
    from TornadoServices.Server.TornadoServer import TornadoServer

    loadCS(makeServerCFG(pki))
    # an interval far longer than the test: every refusal falls in the same window, however slow the machine
    server = TornadoServer(services=["Framework/Dummy"], port=0, address="127.0.0.1", handshakeLogLimit=LIMIT, handshakeLogInterval=3600)
    server.startInThread()
    stopped = False
    try:
        handle = RunningServer(server, pki, makeServerCFG(pki, urlsPort=server.actualPort), "")
        caplog.set_level(logging.WARNING, logger="tornado.general")
        stats = handle.stats
        before = stats.handshakeFailures
        ports = {_refusedHandshake(handle.port) for _ in range(ATTEMPTS)}
        waitFor(lambda: stats.handshakeFailures - before >= ATTEMPTS, "every refused handshake to be counted")
        assert stats.handshakeFailures - before == ATTEMPTS
        assert stats.handshakeFailureReasons["http_request"] >= ATTEMPTS

        def sslLines() -> list[str]:
            return [
                r.getMessage()
                for r in caplog.records
                if r.name == "tornado.general" and "SSL Error" in r.getMessage() and any(f"('127.0.0.1', {p})" in r.getMessage() for p in ports)
            ]

        lines = sslLines()
        assert len(lines) == LIMIT, lines
        assert all("http request" in line.lower() for line in lines)

        # end of the interval (the limiter's clock moved on): the server's periodic pass writes one summary
        limits = server._handshakeLog.limits
        realClock = limits.clock
        limits.clock = lambda: realClock() + 3600
        summary = f"{ATTEMPTS - LIMIT} similar TLS handshake refusals from 127.0.0.1 suppressed in the last "

        def summaries() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "tornado.general" and r.getMessage().startswith(summary)]

        found = waitFor(summaries, "the summary line of the suppressed refusals")
        assert len(found) == 1 and found[0].endswith(" s (http_request)"), found
        assert next(r for r in caplog.records if r.getMessage() == found[0]).levelno == logging.WARNING

        server.stop()
        stopped = True
        assert len(sslLines()) == LIMIT
        assert len(summaries()) == 1  # nothing left to report at shutdown
        current = LogLimit._filter  # the stopped server's limits are gone (the session server may still run)
        assert current is None or current.unregister(server) is None
    finally:
        if not stopped:
            server.stop()
