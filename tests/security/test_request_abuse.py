"""Request abuse against a real server with small limits and short timeouts: each case gets a clear refusal
(JSON S_ERROR with a fitting status, or a closed connection where HTTP cannot be parsed), and a ping on a
fresh connection right after proves the server still serves.

Raw TLS sockets send what ``requests`` cannot (broken framing, half-open and slow connections). Waits are
bounded by generous deadlines; a missing timeout shows up as a deadline reached, never as "too slow".

A timeout is short only on the server of the cases that test it: the idle timeout also bounds the TLS
handshake and the request head of every new connection (it is counted from the accept), and a body timeout
bounds every body, so on a loaded machine a short one would cut the pings and the other cases' requests (a
slow-body case cut by the idle timeout before its headers arrived never logs the body timeout).
Cases already covered in tests/integration (announced body over the limit, malformed ``args``, dict
``args``, arity, bad ``extraCredentials``, a generator result) are not repeated here.
"""
from __future__ import annotations

import logging
import socket
import ssl
import sys
import time
import tracemalloc
import zlib

import pytest
import requests

from TornadoServices.Core.Encoding import decode

from tests.security.conftest import PROBE, formRequest, handshakeRefusalLogged, responseBody, startServer, tlsAttempt, waitFor

MAX_HEADER = 8192
MAX_BODY = 512 * 1024
TIMEOUT = 1.0  # body and upload timeouts of slowServer (seconds)
IDLE_TIMEOUT = 3.0  # idle timeout of idleServer: it also bounds the handshake and head of its pings
DEADLINE = 30.0  # how long a test waits for the server to act (10-30 x the configured timeout)
NEVER = 4 * DEADLINE  # the timeouts that a server's cases do not test: never reached while a case runs


def _startAbuseServer(secpki, secCFG, **timeouts):
    options = {"idleConnectionTimeout": NEVER, "bodyTimeout": NEVER, "uploadTimeout": NEVER, **timeouts}
    return startServer(secpki, secCFG, crlCheck="chain", maxHeaderSize=MAX_HEADER, maxBodySize=MAX_BODY, **options)


@pytest.fixture(scope="module")
def abuseServer(secpki, secCFG):
    """Small header and body limits; no timeout that a case could reach."""
    handle = _startAbuseServer(secpki, secCFG)
    yield handle
    handle.server.stop()


@pytest.fixture(scope="module")
def idleServer(secpki, secCFG):
    """The abuse limits and a short IdleConnectionTimeout (half-open handshakes, slowloris headers)."""
    handle = _startAbuseServer(secpki, secCFG, idleConnectionTimeout=IDLE_TIMEOUT)
    yield handle
    handle.server.stop()


@pytest.fixture(scope="module")
def slowServer(secpki, secCFG):
    """The abuse limits and short BodyTimeout / UploadTimeout (slow bodies)."""
    handle = _startAbuseServer(secpki, secCFG, bodyTimeout=TIMEOUT, uploadTimeout=TIMEOUT)
    yield handle
    handle.server.stop()


@pytest.fixture(autouse=True)
def noUncaughtErrors(caplog):
    """No case may make the server log an uncaught exception or a traceback."""
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith(("TornadoServices", "tornado"))]
    assert not bad, [r.getMessage() for r in bad]


def _jsonError(status: int, headers: dict, body: bytes, expected: int) -> dict:
    """A JSON S_ERROR body with ``expected`` status, no traceback and no HTML."""
    assert status == expected, body[:300]
    assert headers.get("content-type") == "application/json"
    text = body.decode("utf-8")
    assert "Traceback" not in text and "<html" not in text.lower()
    result = decode(text)[0]
    assert result["OK"] is False and isinstance(result["Message"], str) and result["Message"]
    assert set(result) == {"OK", "Errno", "Message"}
    return result


def _post(server, body: bytes, contentType: str = "application/x-www-form-urlencoded", path: str = "/Framework/Dummy", **kwargs):
    """POST raw ``body`` with the dev proxy through requests."""
    return requests.post(
        f"https://127.0.0.1:{server.port}{path}",
        data=body,
        headers={"Content-Type": contentType, **kwargs.pop("headers", {})},
        cert=server.secpki.cert("proxy"),
        verify=server.secpki.caFile,
        timeout=DEADLINE,
        **kwargs,
    )


def _error(response, expected: int) -> dict:
    headers = {k.lower(): v for k, v in response.headers.items()}
    return _jsonError(response.status_code, headers, response.content, expected)


def _closedWithin(sock, deadline: float = DEADLINE) -> bool:
    """Wait until the peer closes ``sock`` (EOF, reset or TLS error on read); False at the deadline."""
    end = time.monotonic() + deadline
    sock.settimeout(0.2)
    while time.monotonic() < end:
        try:
            if sock.recv(4096) == b"":
                return True
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except (ssl.SSLError, OSError):
            return True
    return False


def _dripUntilClosed(sock, data: bytes, interval: float = 0.05, deadline: float = DEADLINE) -> tuple[bool, int]:
    """Send ``data`` one byte per ``interval`` until the server closes; (closed, bytes sent).

    ``data`` is long enough that sending it all would take several times the deadline, so only a
    server-side timeout can end the loop early.
    """
    end = time.monotonic() + deadline
    sent = 0
    sock.settimeout(interval)
    for byte in data:
        if time.monotonic() > end:
            return False, sent
        try:
            sock.sendall(bytes([byte]))
            sent += 1
            if sock.recv(4096) == b"":
                return True, sent
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except (ssl.SSLError, OSError):
            return True, sent
    return False, sent


# ---- transport ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        b"POST /Framework/Dummy HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
        bytes(range(256)) * 16,
        b"\x16\x03\x01\x00\x05hello",  # a TLS record header announcing a handshake that is not one
    ],
    ids=["plain-http", "binary-junk", "fake-record"],
)
def test_non_tls_bytes_on_the_port_are_refused(abuseServer, caplog, payload):
    stats = abuseServer.stats
    abuseServer.settle()
    failures, requestsBefore = stats.handshakeFailures, stats.requests
    raw = socket.create_connection(("127.0.0.1", abuseServer.port), timeout=DEADLINE)
    port = raw.getsockname()[1]
    try:
        raw.sendall(payload)
        answer = b""
        try:
            while chunk := raw.recv(4096):
                answer += chunk
        except OSError:
            pass
    finally:
        raw.close()
    assert not answer.startswith(b"HTTP/")
    waitFor(lambda: stats.handshakeFailures > failures, "the failed handshake to be counted")
    assert stats.requests == requestsBefore
    assert handshakeRefusalLogged(caplog, port, "")
    abuseServer.ping()


def _clientHelloPrefix() -> bytes:
    """The first bytes of a real ClientHello (a handshake that is started and never finished)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()[:40]


@pytest.mark.parametrize("sendFirst", [b"", "partial-client-hello"], ids=["nothing", "partial-client-hello"])
def test_half_open_handshake_blocks_nobody_and_is_closed(idleServer, sendFirst):
    stats = idleServer.stats
    idleServer.quiesce()
    raw = socket.create_connection(("127.0.0.1", idleServer.port), timeout=DEADLINE)
    try:
        if sendFirst:
            raw.sendall(_clientHelloPrefix())
        waitFor(lambda: stats.openConnections == 1, "the server to hold the half-open connection")
        idleServer.ping()  # served while the half-open connection waits
        assert _closedWithin(raw), "the half-open connection was never closed by the server"
    finally:
        raw.close()
    waitFor(lambda: stats.openConnections == 0, "the connection count to come back")
    idleServer.ping()


def test_slowloris_headers_are_cut_off(idleServer):
    tls = idleServer.connect()
    try:
        head = b"POST /Framework/Dummy HTTP/1.1\r\nHost: localhost\r\n" + b"X-Slow: " + b"a" * 5000
        closed, sent = _dripUntilClosed(tls, head)
        assert closed, f"still open after {sent} header bytes"
        assert sent < len(head)
    finally:
        tls.close()
    idleServer.ping()


def _assertBodyTimeoutLogged(caplog, port: int) -> None:
    waitFor(
        lambda: any("Timeout reading the request body" in r.getMessage() and f"127.0.0.1:{port})" in r.getMessage() for r in caplog.records),
        "the body timeout log line naming this client",
    )


def test_slow_form_body_is_cut_off_and_logged(slowServer, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    tls = slowServer.connect()
    port = tls.getsockname()[1]
    try:
        body = b"method=echo&args=%5B%22" + b"x" * 5000 + b"%22%5D"
        tls.sendall(
            b"POST /Framework/Dummy HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        closed, sent = _dripUntilClosed(tls, body)
        assert closed and sent < len(body)
    finally:
        tls.close()
    _assertBodyTimeoutLogged(caplog, port)
    slowServer.ping()


def test_slow_streamed_upload_is_cut_off_and_logged(slowServer, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    tls = slowServer.connect()
    port = tls.getsockname()[1]
    try:
        head = (
            "POST /Framework/Dummy?method=streamFromClient&args=%5B%22f%22%2C%20%22%22%2C%20-1%5D HTTP/1.1\r\n"
            "Host: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
        )
        tls.sendall(head.encode())
        closed, sent = _dripUntilClosed(tls, b"u" * 100000)
        assert closed and sent < 100000
    finally:
        tls.close()
    _assertBodyTimeoutLogged(caplog, port)
    slowServer.ping()


# ---- HTTP limits -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/Framework/Dummy", "/No/Such/Service"])
def test_oversize_headers_are_431_with_s_error(abuseServer, path, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    request = formRequest(path, headers="X-Big: " + "h" * (MAX_HEADER + 100) + "\r\n")
    attempt = tlsAttempt(abuseServer, abuseServer.clientContext("proxy"), request)
    status, headers, body = responseBody(attempt.response)
    result = _jsonError(status, headers, body, 431)
    assert "MaxHeaderSize" in result["Message"]
    assert headers.get("connection") == "close"
    waitFor(
        lambda: any(f"127.0.0.1:{attempt.localPort})" in r.getMessage() and "431" in r.getMessage() for r in caplog.records),
        "the 431 log line naming this client",
    )
    abuseServer.ping()


def test_far_oversize_headers_close_the_connection(abuseServer):
    # 300 KB of headers, far past MaxHeaderSize + the 64 KiB slack: Tornado stops reading and closes
    request = formRequest(headers="".join(f"X-H{i}: {'v' * 1000}\r\n" for i in range(300)))
    attempt = tlsAttempt(abuseServer, abuseServer.clientContext("proxy"), request)
    assert not attempt.answered, attempt.response[:200]
    abuseServer.ping()


def test_chunked_form_body_over_the_limit_is_413(abuseServer):
    def pieces():
        for _ in range(10):
            yield b"x" * (MAX_BODY // 8)

    try:
        response = _post(abuseServer, pieces())
    except requests.ConnectionError:
        pytest.fail("the server closed the connection instead of answering 413")
    result = _error(response, 413)
    assert "MaxBodySize" in result["Message"]
    abuseServer.ping()


def _gzipBomb(expanded: int) -> bytes:
    """A gzip stream of a form body that expands to ``expanded`` bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(b"method=echo&args=%5B%22")]
    block = b"0" * (1024 * 1024)
    for _ in range(expanded // len(block)):
        parts.append(compressor.compress(block))
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_gzip_bomb_is_413_in_bounded_memory(abuseServer, chunked):
    expanded = 128 * 1024 * 1024
    bomb = _gzipBomb(expanded)
    assert len(bomb) < MAX_BODY  # small on the wire: only the decompressed size is over the limit
    data = iter([bomb[i : i + 65536] for i in range(0, len(bomb), 65536)]) if chunked else bomb
    tracemalloc.start()
    try:
        response = _post(abuseServer, data, headers={"Content-Encoding": "gzip"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result = _error(response, 413)
    assert "MaxBodySize" in result["Message"] or "too large" in result["Message"]
    assert peak < 32 * 1024 * 1024, f"decompression held {peak} bytes for a {expanded}-byte bomb"
    abuseServer.ping()


MALFORMED_FRAMING = {
    "invalid-chunk-size": ("Transfer-Encoding: chunked", b"zz\r\nabc\r\n0\r\n\r\n"),
    "negative-chunk-size": ("Transfer-Encoding: chunked", b"-5\r\nabcde\r\n0\r\n\r\n"),
    "huge-chunk-size": ("Transfer-Encoding: chunked", b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
    "chunk-not-terminated": ("Transfer-Encoding: chunked", b"5\r\nabcdeXX0\r\n\r\n"),
    "transfer-encoding-and-content-length": ("Transfer-Encoding: chunked\r\nContent-Length: 5", b"5\r\nabcde\r\n0\r\n\r\n"),
    "unsupported-transfer-encoding": ("Transfer-Encoding: gzip, chunked", b"5\r\nabcde\r\n0\r\n\r\n"),
    "content-length-not-a-number": ("Content-Length: abc", b""),
    "content-length-negative": ("Content-Length: -1", b""),
    "content-lengths-disagree": ("Content-Length: 5, 7", b"abcde"),
}


@pytest.mark.parametrize("case", list(MALFORMED_FRAMING))
def test_malformed_http_framing_is_400_and_closes(abuseServer, case):
    """Framing errors are answered by Tornado before any service sees the request: a bare 400, then close.

    The request asks for keep-alive, so reading until EOF also proves the server closed the connection.
    """
    headerLines, body = MALFORMED_FRAMING[case]
    calls = abuseServer.probeClass().calls
    request = (
        f"POST /Security/Probe HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n{headerLines}\r\n\r\n"
    ).encode() + body
    attempt = tlsAttempt(abuseServer, abuseServer.clientContext("proxy"), request)
    assert attempt.error is None, attempt.error
    status, headers, answer = responseBody(attempt.response)
    assert status == 400
    assert b"Traceback" not in answer and b"<html" not in answer.lower()
    assert abuseServer.probeClass().calls == calls
    abuseServer.ping()


# ---- payloads ----------------------------------------------------------------------------------------------
def _form(method: str, args: bytes, **extra: bytes) -> bytes:
    body = b"method=" + method.encode() + b"&args=" + args
    for name, value in extra.items():
        body += b"&" + name.encode() + b"=" + value
    return body


PAYLOADS = {
    # name: (form body, expected status, fragment of the message)
    "trailing-comma": (_form("echo", b"%5B1%2C%5D"), 400, "Invalid args"),
    "single-quotes": (_form("echo", b"%5B%27x%27%5D"), 400, "Invalid args"),
    "nul-byte": (_form("echo", b"%00"), 400, "Invalid args"),
    "non-utf8-percent-encoded": (_form("echo", b"%5B%22%FF%FE%22%5D"), 400, "UTF-8"),
    "non-utf8-raw-bytes": (_form("echo", b'["\xff\xfe"]'), 400, "UTF-8"),
    "non-utf8-method": (b"method=%C3%28&args=%5B%5D", 400, "UTF-8"),
    "nested-100000": (_form("echo", b"[" * 100_000 + b"]" * 100_000), 400, "nested too deeply"),
    "huge-integer-100000-digits": (_form("echo", b"[" + b"7" * 100_000 + b"]"), 400, "digits"),
    "huge-negative-integer": (_form("echo", b"[-" + b"7" * 5000 + b"]"), 400, "digits"),
    "args-number": (_form("echo", b"42"), 400, "list"),
    "args-string": (_form("echo", b"%22x%22"), 400, "list"),
    "args-null": (_form("echo", b"null"), 400, "list"),
    "args-true": (_form("echo", b"true"), 400, "list"),
    "no-args-for-one": (_form("echo", b""), 400, "takes 1 argument(s), 0 given"),
    "three-args-for-two": (_form("add", b"%5B1%2C2%2C3%5D"), 400, "add takes 2 argument(s), 3 given"),
    "unknown-class-marker": (_form("echo", b'[{"__dCls": "Popen", "__dMod": "subprocess"}]'), 400, "refusing to decode class"),
    "class-marker-without-module": (_form("echo", b'[{"__dCls": "X"}]'), 400, "__dMod"),
    "class-marker-not-a-string": (_form("echo", b'[{"__dCls": 5, "__dMod": "os"}]'), 400, "__dMod"),
    "bad-datetime-marker": (_form("echo", b'[{"__dCls": "dt", "obj": "yesterday"}]'), 400, "marker"),
    "bad-base64-marker": (_form("echo", b'[{"__dCls": "b64", "obj": "***"}]'), 400, "marker"),
    "nested-extra-credentials": (_form("whoami", b"%5B%5D", extraCredentials=b"[" * 100_000 + b"]" * 100_000), 400, "extraCredentials"),
    "multipart-without-boundary": (None, 400, "Malformed request body"),
    "method-initializeHandler": (_form("initializeHandler", b"%5B%5D"), 501, "Unknown method"),
    "method-private-helper": (_form("_authorize", b"%5B%5D"), 501, "Unknown method"),
    "method-tornado-hook": (_form("prepare", b"%5B%5D"), 501, "Unknown method"),
    "method-with-prefix": (_form("export_ping", b"%5B%5D"), 501, "Unknown method"),
    "method-dunder": (_form("__class__", b"%5B%5D"), 501, "Unknown method"),
    "method-path": (_form("ping%2F..%2Fwhoami", b"%5B%5D"), 501, "Unknown method"),
    "method-nul": (_form("ping%00", b"%5B%5D"), 501, "Unknown method"),
    "method-10k": (_form("m" * 10_000, b"%5B%5D"), 501, "Unknown method"),
}


@pytest.mark.parametrize("case", list(PAYLOADS))
def test_abusive_payload_gets_a_clear_s_error(abuseServer, case):
    body, status, fragment = PAYLOADS[case]
    if body is None:
        response = _post(abuseServer, b"--x\r\n", contentType="multipart/form-data")
    else:
        response = _post(abuseServer, body)
    result = _error(response, status)
    assert fragment in result["Message"], result["Message"]
    abuseServer.ping()


def test_class_marker_naming_a_module_imports_nothing(abuseServer):
    sys.modules.pop("jencodeCanary", None)
    response = _post(abuseServer, _form("echo", b'[{"__dCls": "IMPORTED", "__dMod": "jencodeCanary"}]'))
    result = _error(response, 400)
    assert "jencodeCanary" in result["Message"]
    assert "jencodeCanary" not in sys.modules
    import jencodeCanary  # the module is importable: only the decoder's policy kept it out

    assert jencodeCanary.IMPORTED
    sys.modules.pop("jencodeCanary", None)
    abuseServer.ping()


@pytest.mark.parametrize("depth", [200, 600, 800, 950, 1000, 1500, 5000])
def test_nesting_near_the_recursion_limit_is_served_or_refused_cleanly(abuseServer, depth):
    """Wherever the interpreter's limit falls, the answer is the echo or a 'nested too deeply' S_ERROR."""
    response = _post(abuseServer, _form("echo", b"[" * depth + b"]" * depth))
    if response.status_code == 200:
        value = decode(response.text)[0]["Value"]
        for _ in range(depth - 2):  # echo returns its argument: the args list minus one level
            assert isinstance(value, list) and len(value) == 1
            value = value[0]
        assert value == []
    else:
        result = _error(response, response.status_code)
        assert response.status_code in (400, 500)
        assert "nested too deeply" in result["Message"]
    abuseServer.ping()


@pytest.mark.parametrize(
    "args, expected",
    [
        (b"[1e999]", '{"OK": true, "Value": Infinity}'),
        (b"[-1e999]", '{"OK": true, "Value": -Infinity}'),
        (b"[NaN]", '{"OK": true, "Value": NaN}'),
        (b'["%5Cud800"]', '{"OK": true, "Value": "\\ud800"}'),
    ],
    ids=["1e999", "-1e999", "NaN", "lone-surrogate"],
)
def test_non_finite_numbers_and_lone_surrogates_round_trip_as_dirac_does(abuseServer, args, expected):
    response = _post(abuseServer, _form("echo", args))
    assert response.status_code == 200
    assert response.text == expected
    abuseServer.ping()


@pytest.mark.parametrize(
    "kind, fragment",
    [
        ("set", "cannot be encoded"),
        ("object", "cannot be encoded"),
        ("circular", "cannot be encoded"),
        ("deep", "cannot be encoded"),
        ("badkey", "cannot be encoded"),
        ("none", "returned None"),
    ],
)
def test_results_that_cannot_be_encoded_are_500_s_error(abuseServer, kind, fragment):
    response = abuseServer.post("unencodable", kind, service=PROBE, cert=abuseServer.secpki.cert("proxy"))
    result = _error(response, 500)
    assert fragment in result["Message"] and "unencodable" in result["Message"]
    abuseServer.ping()


def test_non_utf8_query_argument_is_400(abuseServer):
    response = _post(abuseServer, b"args=%5B%5D", path="/Framework/Dummy?method=%FF%FE")
    assert "UTF-8" in _error(response, 400)["Message"]
    abuseServer.ping()


def test_after_the_abuse_every_identity_is_served_and_nothing_is_left_open(abuseServer, idleServer, slowServer, secpki):
    for server in (abuseServer, idleServer, slowServer):
        for cert in ("proxy", "user", "user2Proxy"):
            assert decode(server.post("whoami", cert=secpki.cert(cert)).text)[0]["OK"]
        server.settle()
        waitFor(lambda s=server: s.stats.openConnections == 0, "every connection of the abuse cases to be closed")
