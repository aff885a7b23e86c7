"""Signals to a running tornado-start-all: SIGTERM drains (running calls finish, new connections are refused,
idle ones closed, calls running past ShutdownTimeout cut with a clear client error); SIGHUP reloads the host
certificate and the CRLs for new connections without closing the port, and keeps the old ones when the new
files are broken."""
from __future__ import annotations

import shutil
import signal
import socket
import ssl
import threading

import pytest
from cryptography import x509

from faultkit import clientContext, decodeBody, readResponse, rpcRequest, tlsConnect, waitUntil
from FaultProbeHandler import readJournal

PROBE = "/Faults/Probe"


def _client(server, timeout: float = 30):
    from TornadoServices.Client.TornadoClient import TornadoClient

    return TornadoClient(server.url(), timeout=timeout)


def _inBackground(function) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(function()), daemon=True)
    thread.start()
    return thread, result


def _started(server, callId: str) -> bool:
    return any(entry[0] == callId for entry in readJournal(server.journal))


def test_sigterm_drains_running_calls_and_refuses_new_ones(launch, faultenv):
    server = launch(tornado={"ShutdownTimeout": 600})  # far beyond any wait below: the drain must end with the calls
    context = clientContext(faultenv, faultenv.proxy)
    idle = tlsConnect(server.port, context)  # a keep-alive connection between two calls at SIGTERM time
    idle.sendall(rpcRequest(PROBE, "pid"))
    assert readResponse(idle)[0] == 200
    pipelined = tlsConnect(server.port, context)  # a running call, and a second call queued behind it
    pipelined.sendall(rpcRequest(PROBE, "record", ["drain-pipelined", 2.0]) + rpcRequest(PROBE, "record", ["drain-after", 0]))
    thread, result = _inBackground(lambda: _client(server).record("drain-sleeper", 3.0))
    waitUntil(lambda: _started(server, "drain-sleeper") and _started(server, "drain-pipelined"), "both calls to run")

    server.signal(signal.SIGTERM)
    server.waitFor("Draining 2 calls running")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=10)
    idle.settimeout(10)
    assert readResponse(idle) is None  # closed at once, not left waiting for the end of the drain

    first = readResponse(pipelined)
    assert first is not None and first[0] == 200 and decodeBody(first[2])["OK"]
    second = readResponse(pipelined)  # started during the drain: refused (503) or connection closed
    if second is not None:
        assert second[0] == 503 and "shutting down" in decodeBody(second[2])["Message"]

    thread.join(30)
    assert result and result[0]["OK"], result
    assert result[0]["Value"]["callId"] == "drain-sleeper"
    assert server.wait() == 0, server.text  # done when the calls were, long before ShutdownTimeout
    assert "Drain timeout" not in server.text
    assert not _started(server, "drain-after")


def test_calls_running_past_shutdown_timeout_end_with_a_clear_error(launch, faultenv):
    server = launch(tornado={"ShutdownTimeout": 1})
    thread, result = _inBackground(lambda: _client(server, timeout=900).record("too-long", 600.0))
    waitUntil(lambda: _started(server, "too-long"), "the long call to run")
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0  # cut at ShutdownTimeout, long before the call's 600 s
    thread.join(60)
    assert not thread.is_alive(), "the client hangs"
    assert not result[0]["OK"]
    assert "may or may not have been executed" in result[0]["Message"], result[0]
    assert "Drain timeout" in server.text


def _serial(port: int, context: ssl.SSLContext) -> int:
    with tlsConnect(port, context) as sock:
        return x509.load_der_x509_certificate(sock.getpeercert(binary_form=True)).serial_number


def test_sighup_swaps_the_host_certificate_without_dropping_the_port(launch, faultenv, tmp_path):
    cert, key = tmp_path / "hostcert.pem", tmp_path / "hostkey.pem"
    shutil.copy(faultenv.hostCert, cert)
    shutil.copy(faultenv.hostKey, key)
    server = launch(tornado={"CertFile": cert, "KeyFile": key})
    context = clientContext(faultenv, faultenv.proxy)
    before = _serial(server.port, context)
    kept = tlsConnect(server.port, context)
    kept.sendall(rpcRequest(PROBE, "pid"))
    assert readResponse(kept)[0] == 200

    renewed = faultenv.ca.issueHost()
    renewed.writeCertAndKey(str(cert), str(key), force=True)
    server.signal(signal.SIGHUP)
    server.waitFor("Reloaded new TLS connections use the new host certificate")
    after = _serial(server.port, context)
    assert after == renewed.cert.serial_number != before
    kept.sendall(rpcRequest(PROBE, "pid"))  # the connection made before the reload goes on
    assert readResponse(kept)[0] == 200

    cert.write_text("not a certificate\n")
    server.signal(signal.SIGHUP)
    server.waitFor("Reload failed, keeping the previous certificate and CAs")
    assert _serial(server.port, context) == after
    assert _client(server).pid()["OK"]
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_sighup_reloads_the_crls(launch, faultenv, tmp_path):
    from TornadoServices.Security import DevPKI

    caDir = tmp_path / "certificates"
    shutil.copytree(faultenv.caDir, caDir)
    server = launch(tornado={"CALocation": caDir})
    user = faultenv.ca.issueUser("revokedlater")
    credential = tmp_path / "revokedlater.pem"
    user.writeProxyFile(str(credential))
    context = clientContext(faultenv, str(credential))

    def ping() -> int:
        with tlsConnect(server.port, context) as sock:
            sock.sendall(rpcRequest(PROBE, "pid"))
            answer = readResponse(sock)
        return answer[0] if answer else 0

    assert ping() == 200
    faultenv.ca.revoke(user)
    DevPKI.writeCADirectory(str(caDir), [faultenv.ca])
    assert ping() == 200  # CRLs are read at start-up and on SIGHUP only
    server.signal(signal.SIGHUP)
    server.waitFor("Reloaded new TLS connections")
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        if ping() == 0:  # TLS 1.3: the refusal may only show as a closed connection
            raise ConnectionResetError("closed without an answer")
    server.waitFor("certificate revoked")  # the server's reason (logged as the handshake fails)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
