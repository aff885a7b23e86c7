"""PROXY protocol headers against a real server: 127.0.0.1 is a listed balancer, 127.0.0.2 an ordinary client.

Raw sockets send the header, then a real TLS client handshake runs on the same socket. Waits are bounded
(``waitFor``, socket timeouts); nothing depends on the machine's speed.
"""
from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import time
from typing import Any, Optional

import pytest

from tests.conftest import RunningServer, loadCS, makeServerCFG, parseResponseHead, readResponse, waitFor
from TornadoServices.Server.private.ProxyProtocol import makeV1, makeV2

BALANCER = "127.0.0.1"
CLIENT = "127.0.0.2"  # not listed
HEADER_TIMEOUT = 1.5
WAIT = 30.0


@pytest.fixture(scope="module")
def proxied(pki, tmp_path_factory):
    """A server for which 127.0.0.1 is a PROXY-protocol balancer."""
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig
    from TornadoServices.Server.TornadoServer import TornadoServer

    loadCS(makeServerCFG(pki))
    server = TornadoServer(
        services=["Framework/Dummy"], port=0, address="127.0.0.1", proxyProtocol=f"{BALANCER}/32, 2001:db8:ffff::/48", proxyProtocolTimeout=HEADER_TIMEOUT
    )
    server.startInThread()
    cfgText = makeServerCFG(pki, urlsPort=server.actualPort)
    handle = RunningServer(server, pki, cfgText, "")
    yield handle
    server.stop()
    gConfig.reset()


@pytest.fixture
def server(proxied):
    loadCS(proxied.cfgText)
    yield proxied


def _context(pki: Any, cert: Any = "proxy") -> ssl.SSLContext:
    from TornadoServices.Security import TLS

    certFile, keyFile = (getattr(pki, cert), None) if isinstance(cert, str) else cert
    context = TLS.makeClientContext(pki.caFile, certFile=certFile, keyFile=keyFile)
    context.check_hostname = False
    return context


def _connect(port: int, source: str = BALANCER) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT, source_address=(source, 0))


def _request(method: str, body: bytes = b"") -> bytes:
    from urllib.parse import urlencode

    form = urlencode({"method": method, "args": "[]"}).encode()
    head = f"POST /Framework/Dummy HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form)}\r\n\r\n"
    return head.encode() + form


def _answer(sock: Any) -> Optional[int]:
    """Status of one HTTP answer, None when the server closed (or reset) first."""
    answer = readResponse(sock)
    return None if answer is None else answer[0]


def _pingThrough(port: int, header: bytes, pki: Any, source: str = BALANCER) -> int:
    sock = _connect(port, source)
    sock.sendall(header)
    with _context(pki).wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(_request("ping"))
        status = _answer(tls)
    assert status is not None, "no answer"
    return status


def _closedByServer(sock: socket.socket) -> bool:
    """Read until the server closes (True) or the socket times out (False)."""
    try:
        while sock.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def _accessLine(caplog: Any, peer: str, since: int = 0) -> str:
    """The access line of a ping by ``peer`` (``ip:port``, or ``ip:`` for any port) among the records from ``since``."""
    where = re.escape(peer) + (r"\d+" if peer.endswith(":") else "")
    pattern = re.compile(rf"Returning response \({where}\)\[dirac_user:devuser\] Framework/Dummy\.ping OK 200 ")

    def found() -> Optional[str]:
        return next((r.getMessage() for r in list(caplog.records)[since:] if pattern.match(r.getMessage())), None)

    return waitFor(found, f"the access line of {peer}", WAIT)


def _reasons(server: RunningServer) -> dict[str, int]:
    return dict(server.stats.handshakeFailureReasons)


def _waitReason(server: RunningServer, reason: str, before: dict[str, int]) -> None:
    waitFor(lambda: server.stats.handshakeFailureReasons[reason] > before.get(reason, 0), f"a handshake failure counted as {reason!r}", WAIT)


# ---------------------------------------------------------------------------------------------------------
# valid headers
def test_v1_header_names_the_client_in_the_access_line(server, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    accepted = server.stats.connectionsAccepted
    assert _pingThrough(server.port, makeV1(("192.0.2.7", 40001), ("127.0.0.1", server.port)), server.pki) == 200
    assert _accessLine(caplog, "192.0.2.7:40001")
    assert server.stats.connectionsAccepted > accepted  # counted as an accepted TLS connection


def test_v2_header_with_ipv6_and_tlvs_names_the_client(server, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    header = makeV2(("2001:db8::7", 40002), ("2001:db8::1", 8443), tlvs=[(0x01, b"h2"), (0x04, b"\x00" * 9), (0xE0, b"")])
    assert _pingThrough(server.port, header, server.pki) == 200
    assert _accessLine(caplog, "[2001:db8::7]:40002")


def test_local_command_and_unknown_family_keep_the_balancer_address(server, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    for header in (makeV2(None, None, command="LOCAL"), makeV1(None, None), makeV2(None, None)):
        before = len(caplog.records)
        assert _pingThrough(server.port, header, server.pki) == 200
        assert _accessLine(caplog, BALANCER + ":", since=before)  # the balancer's own address and port


def test_keep_alive_requests_after_the_header(server, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    sock = _connect(server.port)
    sock.sendall(makeV1(("198.51.100.3", 40003), ("127.0.0.1", server.port)))
    with _context(server.pki).wrap_socket(sock, server_hostname="localhost") as tls:
        for _ in range(3):
            tls.sendall(_request("ping"))
            assert _answer(tls) == 200
    waitFor(lambda: sum("(198.51.100.3:40003)" in r.getMessage() for r in list(caplog.records)) >= 3, "three access lines", WAIT)


def test_header_and_client_hello_in_one_segment(server, caplog):
    """The TLS bytes right behind the header stay in the socket for the handshake."""
    caplog.set_level(logging.INFO, logger="TornadoServices")
    context = _context(server.pki)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    engine = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        engine.do_handshake()
    except ssl.SSLWantReadError:
        pass
    sock = _connect(server.port)
    sock.sendall(makeV2(("203.0.113.50", 40050), ("127.0.0.1", server.port)) + outgoing.read())
    try:
        while True:
            try:
                engine.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                data = sock.recv(65536)
                assert data, "the server closed during the handshake"
                incoming.write(data)
        engine.write(_request("ping"))
        sock.sendall(outgoing.read())
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            assert data, "no answer"
            incoming.write(data)
            try:
                answer += engine.read(65536)
            except ssl.SSLWantReadError:
                pass
            if outgoing.pending:
                sock.sendall(outgoing.read())
    finally:
        sock.close()
    assert parseResponseHead(answer.split(b"\r\n\r\n", 1)[0])[0] == 200
    assert _accessLine(caplog, "203.0.113.50:40050")


# ---------------------------------------------------------------------------------------------------------
# listed peer, no valid header
def _refused(server: RunningServer, payload: bytes, reason: str, caplog: Any, expect: str) -> None:
    caplog.set_level(logging.INFO, logger="TornadoServices")
    before, failures = _reasons(server), server.stats.handshakeFailures
    with _connect(server.port) as sock:
        sock.sendall(payload)
        assert _closedByServer(sock)
    _waitReason(server, reason, before)
    assert server.stats.handshakeFailures > failures
    line = waitFor(
        lambda: next((r for r in list(caplog.records) if r.getMessage().startswith("PROXY header refused") and expect in r.getMessage()), None),
        "the refusal line",
        WAIT,
    )
    assert line.levelno == logging.WARNING and line.exc_info is None and "from 127.0.0.1:" in line.getMessage()


def test_listed_peer_without_header_is_refused(server, caplog):
    """A plain TLS client from the balancer's address: the ClientHello is not a header."""
    caplog.set_level(logging.INFO, logger="TornadoServices")
    before = _reasons(server)
    sock = _connect(server.port)
    with pytest.raises((ssl.SSLError, OSError)):
        with _context(server.pki).wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(_request("ping"))
            assert _answer(tls) is None
            raise ConnectionResetError("closed without an answer")
    _waitReason(server, "proxy header invalid", before)
    waitFor(
        lambda: any("starts with a TLS handshake, not with a PROXY protocol header" in r.getMessage() for r in list(caplog.records)),
        "the refusal line",
        WAIT,
    )


@pytest.mark.parametrize(
    "payload, expect",
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "does not start with a PROXY protocol header"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n", "fields instead of 6"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 \x00\r\n", "byte 0x00"),
        (b"PROXY TCP4 " + b"1" * 120, "without CRLF"),
        (b"PROXY TCP6 192.0.2.1 192.0.2.2 1 2\r\n", "is not an IPv6 address"),
        (b"\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c" + b"\x00" * 12, "family/transport 0x12"),
        (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0e" + b"\x00" * 14, "truncated TLV"),
        (b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + b"\x00" * 12, "version 3"),
    ],
)
def test_listed_peer_with_a_bad_header_is_refused(server, caplog, payload, expect):
    _refused(server, payload, "proxy header invalid", caplog, expect)


def test_listed_peer_closing_in_the_header_is_refused(server, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    before = _reasons(server)
    with _connect(server.port) as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.1")
        sock.shutdown(socket.SHUT_WR)
        assert _closedByServer(sock)
    _waitReason(server, "proxy header incomplete", before)
    waitFor(lambda: any("closed after 20 bytes of PROXY header" in r.getMessage() for r in list(caplog.records)), "the refusal line", WAIT)


def test_slow_header_is_cut_at_the_deadline(server, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    before = _reasons(server)
    started = time.monotonic()
    with _connect(server.port) as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.1 ")  # and nothing more
        assert _closedByServer(sock)  # bounded by the socket timeout (WAIT), far above the deadline
        elapsed = time.monotonic() - started
    _waitReason(server, "proxy header timeout", before)
    assert elapsed >= HEADER_TIMEOUT * 0.9  # the server cannot have cut it before its deadline
    waitFor(lambda: any(f"no complete PROXY header within {HEADER_TIMEOUT:g} s (21 bytes received)" in r.getMessage() for r in list(caplog.records)), "the line", WAIT)


def test_header_byte_by_byte_within_the_deadline(server, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    sock = _connect(server.port)
    for byte in makeV1(("192.0.2.77", 40077), ("127.0.0.1", server.port)):
        sock.sendall(bytes([byte]))
    with _context(server.pki).wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(_request("ping"))
        assert _answer(tls) == 200
    assert _accessLine(caplog, "192.0.2.77:40077")


def test_tls_refusal_after_a_header_names_the_client(server, caplog):
    """Not TLS after a valid header: Tornado's "SSL Error" line and its rate-limit key name the header's address."""
    from TornadoServices.Server.private.LogLimit import refusalKey

    caplog.set_level(logging.WARNING, logger="tornado.general")
    before = _reasons(server)
    with _connect(server.port) as sock:
        sock.sendall(makeV1(("192.0.2.99", 40099), ("127.0.0.1", server.port)) + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _closedByServer(sock)
    _waitReason(server, "http_request", before)
    record = waitFor(lambda: next((r for r in list(caplog.records) if "SSL Error" in r.getMessage() and "192.0.2.99" in r.getMessage()), None), "the SSL Error line", WAIT)
    assert "('192.0.2.99', 40099)" in record.getMessage()
    assert refusalKey(record) == ("192.0.2.99", "http_request")


# ---------------------------------------------------------------------------------------------------------
# unlisted peers: exactly as without the option
def test_unlisted_peer_is_served_without_header(server, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    with _context(server.pki).wrap_socket(_connect(server.port, CLIENT), server_hostname="localhost") as tls:
        tls.sendall(_request("ping"))
        assert _answer(tls) == 200
    assert _accessLine(caplog, f"{CLIENT}:")


def test_unlisted_peer_sending_a_header_gets_bad_tls(server, caplog):
    caplog.set_level(logging.WARNING, logger="tornado.general")
    before = _reasons(server)
    with _connect(server.port, CLIENT) as sock:
        sock.sendall(makeV1(("192.0.2.66", 40066), ("127.0.0.1", server.port)))
        assert _closedByServer(sock)

    def newReasons() -> dict[str, int]:
        return {k: v - before.get(k, 0) for k, v in _reasons(server).items() if v > before.get(k, 0)}

    reasons = waitFor(newReasons, "the refused handshake to be counted", WAIT)
    assert not any(reason.startswith("proxy header") for reason in reasons), reasons
    waitFor(lambda: any("SSL Error" in r.getMessage() and f"('{CLIENT}'," in r.getMessage() for r in list(caplog.records)), "the SSL Error line", WAIT)
    assert not any("192.0.2.66" in r.getMessage() for r in caplog.records)


def test_a_header_to_a_server_without_the_option_is_bad_tls(running_server, proxied):
    from TornadoServices.Server.TornadoServer import _ProxyProtocolHTTPServer, _ServiceHTTPServer

    # without the option the accept path is Tornado's own, untouched; with it, the PROXY-aware server class
    assert {type(s) for s in running_server.server._httpServers} == {_ServiceHTTPServer}
    assert {type(s) for s in proxied.server._httpServers} == {_ProxyProtocolHTTPServer}
    before = dict(running_server.stats.handshakeFailureReasons)
    with _connect(running_server.port) as sock:
        sock.sendall(makeV2(("192.0.2.5", 40005), ("127.0.0.1", running_server.port)))
        with contextlib.suppress(OSError):  # the server may already have refused the bytes and reset the connection
            sock.shutdown(socket.SHUT_WR)
        assert _closedByServer(sock)

    def counted() -> bool:
        return sum(running_server.stats.handshakeFailureReasons.values()) > sum(before.values())

    waitFor(counted, "the refused handshake", WAIT)
    assert not any(k.startswith("proxy header") for k in running_server.stats.handshakeFailureReasons)


# ---------------------------------------------------------------------------------------------------------
# limits and stop
def test_pending_headers_count_against_max_connections_and_close_on_stop(pki, caplog):
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig
    from TornadoServices.Server.TornadoServer import TornadoServer

    loadCS(makeServerCFG(pki))
    server = TornadoServer(services=["Framework/Dummy"], port=0, address="127.0.0.1", proxyProtocol=BALANCER, proxyProtocolTimeout=3600, maxConnections=2)
    server.startInThread()
    sockets: list[socket.socket] = []
    try:
        port = server.actualPort
        for _ in range(2):
            sock = _connect(port)
            sock.sendall(b"PROXY ")
            sockets.append(sock)
        waitFor(lambda: len(server._httpServers[0].tsProxyPending) == 2, "two headers being read", WAIT)
        for source in (BALANCER, CLIENT):  # beyond MaxConnections: closed at once, listed or not
            with _connect(port, source) as extra:
                assert _closedByServer(extra)
        waitFor(lambda: server.stats.connectionsRejected >= 2, "the rejections counted", WAIT)
        assert server.stats.handshakeFailures == 0 and server.stats.openConnections == 0
        server.stop()
        for sock in sockets:  # the drain closes them, long before their deadline
            assert _closedByServer(sock)
    finally:
        server.stop()
        for sock in sockets:
            sock.close()
        gConfig.reset()


def test_bad_option_values_are_refused_at_start(pki):
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig
    from TornadoServices.Server.TornadoServer import TornadoServer, TornadoServerError

    loadCS(makeServerCFG(pki))
    try:
        with pytest.raises(TornadoServerError, match=r"/Systems/Tornado/ProxyProtocol: 'balancer\.example' is not an IP address"):
            TornadoServer(services=["Framework/Dummy"], port=0, proxyProtocol="10.0.0.0/8, balancer.example")
        with pytest.raises(TornadoServerError, match="ProxyProtocolTimeout must be a positive number"):
            TornadoServer(services=["Framework/Dummy"], port=0, proxyProtocol="10.0.0.0/8", proxyProtocolTimeout=0)
    finally:
        gConfig.reset()
