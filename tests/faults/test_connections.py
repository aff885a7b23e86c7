"""Connection floods: MaxConnections enforced while the server keeps serving, MaxConnections fitted to the
open-file limit (no EMFILE spin), and idle keep-alive connections closed after IdleConnectionTimeout."""
from __future__ import annotations

import socket
import ssl

from faultkit import clientContext, readResponse, rpcRequest, scrapeMetrics, tlsConnect, waitUntil

PROBE = "/Faults/Probe"


def _ping(sock: ssl.SSLSocket) -> int:
    sock.sendall(rpcRequest(PROBE, "pid"))
    answer = readResponse(sock)
    return answer[0] if answer else 0


def _refused(port: int, context: ssl.SSLContext) -> bool:
    """True when a new connection is closed by the server instead of being served."""
    try:
        with tlsConnect(port, context, timeout=15) as sock:
            return _ping(sock) == 0
    except (ssl.SSLError, OSError):
        return True


def test_max_connections_is_enforced_and_the_server_keeps_serving(launch, faultpki):
    server = launch(tornado={"MaxConnections": 20, "IdleConnectionTimeout": 300})
    context = clientContext(faultpki, faultpki.proxy)
    held = [tlsConnect(server.port, context) for _ in range(20)]
    try:
        assert all(_ping(sock) == 200 for sock in held)
        assert all(_refused(server.port, context) for _ in range(10))  # beyond the limit: closed at once
        assert _ping(held[0]) == 200  # the connections already open are still served
        for sock in held[10:]:
            sock.close()
        waitUntil(lambda: not _refused(server.port, context), "room for a new connection")
        samples = scrapeMetrics(server.port, faultpki)
        assert samples["tornadoservices_connections_rejected_total"] >= 10
    finally:
        for sock in held:
            sock.close()


def test_max_connections_fits_the_open_file_limit(launch, faultpki):
    limited = ["sh", "-c", 'ulimit -n 160 && exec "$0" "$@"']
    server = launch(prefix=limited, tornado={"MaxConnections": 1000, "IdleConnectionTimeout": 300})
    server.waitFor("MaxConnections lowered to 96 per port: this process may open 160 files")
    flood = []
    try:
        for _ in range(150):  # more connections than the server has descriptors
            flood.append(socket.create_connection(("127.0.0.1", server.port), timeout=15))
        samples = waitUntil(
            lambda: (s := _metricsOrNone(server.port, faultpki, flood)) and s["tornadoservices_connections_rejected_total"] >= 50 and s,
            "the connections beyond the limit to be refused",
        )
        assert samples["tornadoservices_connections_rejected_total"] >= 50
    finally:
        for sock in flood:
            sock.close()
    context = clientContext(faultpki, faultpki.proxy)
    waitUntil(lambda: not _refused(server.port, context), "the server to serve again")
    assert "Too many open files" not in server.text
    assert server.alive()


def _metricsOrNone(port, pki, flood):
    """Scrape /metrics, making room first: a full server refuses the scrape's connection too."""
    if len(flood) > 60:
        for sock in flood[60:]:
            sock.close()
        del flood[60:]
    try:
        return scrapeMetrics(port, pki)
    except Exception:
        return None


def test_idle_keepalive_connections_are_closed(launch, faultpki):
    server = launch(tornado={"IdleConnectionTimeout": 1})
    context = clientContext(faultpki, faultpki.proxy)
    idle = [tlsConnect(server.port, context) for _ in range(10)]
    for sock in idle:
        assert _ping(sock) == 200
    for sock in idle:
        sock.settimeout(30)
        assert readResponse(sock) is None  # closed by the server, not by us
        sock.close()
    samples = waitUntil(
        lambda: (s := scrapeMetrics(server.port, faultpki)) and s["tornadoservices_open_connections"] <= 1 and s,
        "the server to count no idle connection",
    )
    assert samples["tornadoservices_open_connections"] <= 1  # the scrape's own
