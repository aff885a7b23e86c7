"""Keep-alive honesty: when the server will close a connection after an answer, the answer says so.

A server that answers a request before reading its body (404 for an unknown path, 401 without a
certificate, 413 for a declared body above the limit) cannot keep the connection: the unread body would
be taken for the next request. If such an answer did not carry ``Connection: close``, a client would keep
the connection in its pool and send its next call into a socket the server is closing; that call fails
with "connection lost before answering", and, since the server may have run it, the client cannot send it
again. Every case below therefore checks one of two things on the same connection: either the answer says
``Connection: close`` (and the server does close), or a second call on the connection is answered.
"""
from __future__ import annotations

import socket
import ssl
from typing import Optional

import pytest

from TornadoServices.Core.Encoding import decode, encode
from tests.conftest import parseResponseHead

PING_FORM = f"method=ping&args={encode([])}&clientVO=unknown&clientSetup=None".encode()


class _Connection:
    """One raw TLS connection: requests written as bytes, answers read by Content-Length."""

    def __init__(self, server, cert: Optional[tuple[str, str]]) -> None:
        context = ssl.create_default_context(cafile=server.pki.caFile)
        context.check_hostname = False
        if cert is not None:
            context.load_cert_chain(*cert)
        self.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=60))
        self.buffer = b""

    def send(self, method: str, path: str, body: bytes = b"", length: Optional[int] = None) -> tuple[int, dict, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body) if length is None else length}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body)
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed before an answer to {method} {path}"
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status, headers = parseResponseHead(raw)
        size = int(headers.get("content-length", "0"))
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed in the middle of an answer"
            self.buffer += chunk
        answer, self.buffer = self.buffer[:size], self.buffer[size:]
        return status, headers, answer

    def closedByServer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ssl.SSLEOFError, ConnectionResetError):
            return True


def _assertHonest(conn: _Connection, headers: dict) -> str:
    """The connection either is announced closed and is closed, or serves the next call; return which."""
    if headers.get("connection", "").lower() == "close":
        assert conn.closedByServer(), "announced Connection: close but left the connection open"
        return "closed"
    status, _, answer = conn.send("POST", "/Framework/Dummy", PING_FORM)
    assert status == 200 and decode(answer.decode())[0]["OK"], (status, answer)
    return "kept"


def _userCert(server) -> tuple[str, str]:
    return server.pki.userCert, server.pki.userKey


def test_unknown_path_answered_before_its_body_announces_the_close(running_server):
    conn = _Connection(running_server, _userCert(running_server))
    status, headers, body = conn.send("POST", "/Framework/Nope", PING_FORM)
    assert status == 404 and "Unknown service" in decode(body.decode())[0]["Message"]
    assert _assertHonest(conn, headers) == "closed"


def test_unknown_path_without_body(running_server):
    conn = _Connection(running_server, _userCert(running_server))
    status, headers, _ = conn.send("GET", "/Framework/Nope")
    assert status == 404
    _assertHonest(conn, headers)


def test_call_without_certificate_refused_before_its_body(running_server):
    conn = _Connection(running_server, None)
    status, headers, body = conn.send("POST", "/Framework/Dummy", PING_FORM)
    assert status == 401 and not decode(body.decode())[0]["OK"]
    assert _assertHonest(conn, headers) == "closed"


def test_declared_body_above_the_limit_refused_before_it_is_sent(running_server):
    conn = _Connection(running_server, _userCert(running_server))
    limit = running_server.server.settings.maxBodySize
    status, headers, body = conn.send("POST", "/Framework/Dummy", length=limit + 1)  # the body is never sent
    assert status == 413, (status, body)
    assert _assertHonest(conn, headers) == "closed"


@pytest.mark.parametrize(
    "form, status",
    [
        (PING_FORM, 200),
        ("method=noSuchMethod&args=%5B%5D", 501),
        ("args=%5B%5D", 400),
    ],
    ids=["ping", "unknown-method", "no-method"],
)
def test_answers_after_the_body_keep_the_connection(running_server, form, status):
    conn = _Connection(running_server, _userCert(running_server))
    answered, headers, body = conn.send("POST", "/Framework/Dummy", form.encode() if isinstance(form, str) else form)
    assert answered == status, (answered, body)
    assert _assertHonest(conn, headers) == "kept"

