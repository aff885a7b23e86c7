"""Server limits (constructor arguments over the CS): body sizes, worker pool back-pressure, connections."""
from __future__ import annotations

import socket
import ssl
import threading

import pytest
import requests

from TornadoServices.Core.Encoding import decode, encode

from tests.conftest import RunningServer, loadCS, makeServerCFG, waitFor


@pytest.fixture(scope="module")
def limited(pki, _serverSession):
    """A second server with tiny limits: 4 KiB forms, 8 KiB uploads, 1 worker, no waiting queue, 3 connections."""
    from TornadoServices.Server.TornadoServer import TornadoServer

    loadCS(makeServerCFG(pki))
    server = TornadoServer(
        services=["Framework/Dummy"],
        port=0,
        address="127.0.0.1",
        maxBodySize=4096,
        maxUploadSize=8192,
        maxThreads=1,
        maxWaitingPetitions=0,
        maxConnections=3,
    )
    server.startInThread()
    handle = RunningServer(server, pki, makeServerCFG(pki, urlsPort=server.actualPort), "")
    yield handle
    server.stop()


@pytest.fixture
def limitedServer(limited):
    loadCS(limited.cfgText)
    yield limited


def _json(response) -> dict:
    assert response.headers["Content-Type"] == "application/json"
    return decode(response.text)[0]


def test_form_body_over_limit_is_413(limitedServer):
    response = limitedServer.post("echo", "x" * 5000)
    assert response.status_code == 413
    result = _json(response)
    assert "MaxBodySize" in result["Message"] and result["OK"] is False


def test_gzip_bomb_is_stopped_at_the_decompressed_limit(limitedServer, pki):
    import gzip
    import urllib.parse

    body = urllib.parse.urlencode({"method": "echo", "args": encode(["0" * 2_000_000])}).encode()
    bomb = gzip.compress(body)
    assert len(bomb) < 4096  # small on the wire, 2 MB once inflated
    try:
        response = requests.post(
            limitedServer.url(),
            data=bomb,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
            cert=pki.proxy,
            verify=pki.caFile,
            timeout=30,
        )
    except requests.ConnectionError:
        return  # closed while inflating beyond Tornado's own bound: refused as well
    assert response.status_code in (400, 413)
    assert limitedServer.call("ping")["OK"]


def test_form_body_under_limit_is_served(limitedServer):
    assert limitedServer.call("echo", "x" * 3000)["Value"] == "x" * 3000


def test_upload_over_limit_is_413(limitedServer, pki):
    response = requests.post(
        limitedServer.url(),
        params={"method": "streamFromClient", "args": encode(["f", "", 9000])},
        data=b"x" * 9000,
        headers={"Content-Type": "application/octet-stream"},
        cert=pki.proxy,
        verify=pki.caFile,
        timeout=30,
    )
    assert response.status_code == 413
    assert "MaxUploadSize" in _json(response)["Message"]


def test_chunked_upload_over_limit_is_413(limitedServer, pki):
    def pieces():
        for _ in range(5):
            yield b"y" * 4000

    try:
        response = requests.post(
            limitedServer.url(),
            params={"method": "streamFromClient", "args": encode(["f", "", -1])},
            data=pieces(),
            headers={"Content-Type": "application/octet-stream"},
            cert=pki.proxy,
            verify=pki.caFile,
            timeout=30,
        )
    except requests.ConnectionError:
        return  # the server may close while the client still sends: also a refusal
    assert response.status_code == 413


def test_upload_under_limit_is_served(limitedServer, pki):
    response = requests.post(
        limitedServer.url(),
        params={"method": "streamFromClient", "args": encode(["f", "", 8000])},
        data=b"z" * 8000,
        headers={"Content-Type": "application/octet-stream"},
        cert=pki.proxy,
        verify=pki.caFile,
        timeout=30,
    )
    assert _json(response)["Value"]["size"] == 8000


def test_full_worker_pool_answers_503_and_async_methods_still_run(limitedServer):
    handler = limitedServer.handlerClass("Framework/Dummy")
    executor = handler._runtime.executor
    handler.wakeUp.clear()
    results = {}
    sleeper = threading.Thread(target=lambda: results.setdefault("sleep", limitedServer.call("sleep", 60)))
    sleeper.start()
    try:
        waitFor(lambda: executor.pending == 1, "the sleeping call to occupy the only worker")
        # Connection: close, so that this call's connection is gone once answered (a held Response may otherwise
        # keep it open, and it counts against the 3 connections of this server)
        response = limitedServer.post("add", 1, 2, headers={"Connection": "close"})
        assert response.status_code == 503
        assert "overloaded" in _json(response)["Message"]
        assert limitedServer.call("ping")["OK"]  # async built-ins do not need a worker
    finally:
        handler.wakeUp.set()
        sleeper.join(60)
    assert results["sleep"]["Value"]["wokenUp"] is True
    # three calls above, three connections: the next one is only accepted once the server has seen them close
    waitFor(lambda: limitedServer.stats.openConnections == 0, "the connections of the calls above to close")
    assert limitedServer.call("add", 1, 2) == {"OK": True, "Value": 3}


def test_connections_beyond_max_are_closed(limitedServer, pki):
    waitFor(lambda: limitedServer.stats.openConnections == 0, "connections of earlier tests to close")
    context = ssl.create_default_context(cafile=pki.caFile)
    context.load_cert_chain(pki.proxy)
    held = []
    try:
        for _ in range(3):
            raw = socket.create_connection(("127.0.0.1", limitedServer.port), timeout=30)
            held.append(context.wrap_socket(raw, server_hostname="localhost"))
        waitFor(lambda: limitedServer.stats.openConnections >= 3, "three open connections")
        before = limitedServer.stats.connectionsRejected
        extra = socket.create_connection(("127.0.0.1", limitedServer.port), timeout=30)
        try:
            with pytest.raises((ssl.SSLError, OSError)):
                tls = context.wrap_socket(extra, server_hostname="localhost")
                tls.sendall(b"POST /Framework/Dummy HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                if not tls.recv(1024):
                    raise OSError("closed by the server")
        finally:
            extra.close()
        assert limitedServer.stats.connectionsRejected == before + 1
    finally:
        for sock in held:
            sock.close()
    waitFor(lambda: limitedServer.stats.openConnections == 0, "held connections to close")
    assert limitedServer.call("ping")["OK"]


def _startServer(pki, **options) -> RunningServer:
    from TornadoServices.Server.TornadoServer import TornadoServer

    loadCS(makeServerCFG(pki))
    server = TornadoServer(services=["Framework/Dummy"], port=0, address="127.0.0.1", **options)
    server.startInThread()
    return RunningServer(server, pki, makeServerCFG(pki, urlsPort=server.actualPort), "")


@pytest.fixture(scope="module")
def strict(pki, _serverSession):
    """A server with a 1 KiB header limit (and the default timeouts, which no case here reaches)."""
    handle = _startServer(pki, maxHeaderSize=1024)
    yield handle
    handle.server.stop()


@pytest.fixture
def strictServer(strict):
    loadCS(strict.cfgText)
    yield strict


#: The idle timeout is counted from the accept: it bounds the TLS handshake and the request head of every new
#: connection, so it is short only on the server of the timeout cases, and still long enough for a handshake
#: on a loaded machine.
IDLE_TIMEOUT = 3.0
BODY_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def impatient(pki, _serverSession):
    """A server with short idle and body timeouts."""
    handle = _startServer(pki, idleConnectionTimeout=IDLE_TIMEOUT, bodyTimeout=BODY_TIMEOUT)
    yield handle
    handle.server.stop()


@pytest.fixture
def impatientServer(impatient):
    loadCS(impatient.cfgText)
    yield impatient


def _tlsSocket(server, pki):
    context = ssl.create_default_context(cafile=pki.caFile)
    context.load_cert_chain(pki.proxy)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return context.wrap_socket(raw, server_hostname="localhost")


def _closedByServer(tls) -> bytes:
    """Read until the server closes the connection (bounded by the socket timeout); return what came."""
    data = b""
    try:
        while True:
            chunk = tls.recv(4096)
            if not chunk:
                return data
            data += chunk
    except (ConnectionResetError, ssl.SSLError):
        return data


def test_oversized_headers_are_431(strictServer):
    response = strictServer.post("ping", headers={"X-Padding": "p" * 4096})
    assert response.status_code == 431
    result = _json(response)
    assert result["OK"] is False and "MaxHeaderSize" in result["Message"]
    assert strictServer.call("ping")["OK"]


def test_oversized_headers_close_the_connection(strictServer, pki):
    with pytest.raises(requests.ConnectionError):
        strictServer.post("ping", headers={"X-Padding": "p" * (80 * 1024)})  # past the 431 slack
    assert strictServer.call("ping")["OK"]


def test_slow_headers_are_cut_by_the_idle_timeout(impatientServer, pki):
    with _tlsSocket(impatientServer, pki) as tls:
        tls.sendall(b"POST /Framework/Dummy HTTP/1.1\r\nHost: localhost\r\n")  # never finishes the headers
        assert _closedByServer(tls) == b""


def test_slow_body_is_cut_by_the_body_timeout(impatientServer, pki):
    stats = impatientServer.stats
    cut = stats.requestsByStatus[499]
    with _tlsSocket(impatientServer, pki) as tls:
        tls.sendall(
            b"POST /Framework/Dummy HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nmethod=ping"
        )
        assert b"200 OK" not in _closedByServer(tls)
    # the headers were read (a request started) and the connection was closed while its body was pending
    waitFor(lambda: stats.requestsByStatus[499] > cut, "the request cut during its body to be counted")


def test_idle_keep_alive_connection_is_closed(impatientServer, pki):
    with _tlsSocket(impatientServer, pki) as tls:
        body = b"method=ping&args=%5B%5D"
        tls.sendall(
            b"POST /Framework/Dummy HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        answer = _closedByServer(tls)  # the answer, then the close once the connection is idle
        assert answer.startswith(b"HTTP/1.1 200 OK") and b'"OK": true' in answer


def test_stop_lets_running_calls_finish(pki, _serverSession):
    from TornadoServices.Server.TornadoServer import TornadoServer

    loadCS(makeServerCFG(pki))
    server = TornadoServer(services=["Framework/Dummy"], port=0, address="127.0.0.1", shutdownTimeout=60)
    server.startInThread()
    handle = RunningServer(server, pki, makeServerCFG(pki, urlsPort=server.actualPort), "")
    handler = handle.handlerClass()
    outcome = {}
    sleeper = threading.Thread(target=lambda: outcome.setdefault("sleep", handle.call("sleep", 120)))
    sleeper.start()
    waitFor(lambda: handler._runtime.executor.pending == 1, "the sleeping call to start")
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    waitFor(lambda: server._httpServers[0]._stopped, "the server to stop listening")
    with pytest.raises(requests.ConnectionError):
        handle.post("ping")
    handler.wakeUp.set()
    sleeper.join(60)
    stopper.join(60)
    assert outcome["sleep"]["OK"] is True
    assert not stopper.is_alive()


def test_services_with_their_own_port(pki, _serverSession):
    from TornadoServices.Server.TornadoServer import TornadoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        ownPort = probe.getsockname()[1]
    loadCS(makeServerCFG(pki))
    server = TornadoServer(services=["Framework/Dummy", f"Framework/TornadoUser:{ownPort}"], port=0, address="127.0.0.1")
    server.startInThread()
    try:
        handle = RunningServer(server, pki, "", "")
        assert server.boundPorts[ownPort] == ownPort
        assert server.urls["Framework/TornadoUser"].endswith(f":{ownPort}/Framework/TornadoUser")
        assert handle.call("ping")["OK"]
        assert handle.post("listUsers", service="Framework/TornadoUser").status_code == 404
        other = requests.post(
            f"https://127.0.0.1:{ownPort}/Framework/TornadoUser",
            data={"method": "listUsers", "args": "[]"},
            cert=pki.proxy,
            verify=pki.caFile,
            timeout=30,
        )
        assert decode(other.text)[0]["OK"] is True
    finally:
        server.stop()
