"""Server identity as the project's client judges it, and host certificates used as client certificates.

The client side is ``TLS.makeClientContext`` (the context TornadoClient uses) against real servers that
present defective host certificates; tests/integration/test_client_socketlevel.py covers host name and IP
mismatches and untrusted servers through the full client.
"""
from __future__ import annotations

import socket
import ssl

import pytest

from TornadoServices.Security.TLS import makeClientContext

from tests.security.conftest import handshakeRefusalLogged, startServer, tlsAttempt, waitFor


def _serverWith(secpki, secCFG, name: str):
    path = secpki.files[name]
    return startServer(secpki, secCFG, crlCheck="chain", services=["Framework/Dummy"], certFile=path, keyFile=path)


def _clientVerdict(server, secpki) -> ssl.SSLError | None:
    """Handshake of the project's client context (dev proxy, the suite's CA) with ``server`` as localhost."""
    context = makeClientContext(secpki.caFile, secpki.cert("proxy"))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        with context.wrap_socket(raw, server_hostname="localhost"):
            return None
    except ssl.SSLError as exc:
        return exc
    finally:
        raw.close()


@pytest.mark.parametrize(
    "hostCert, reason",
    [
        ("hostWithoutSAN", "Hostname mismatch"),  # a CN alone does not name a server (RFC 6125, requests/urllib3)
        ("hostWithoutServerAuth", "unsuitable certificate purpose"),
        ("hostForOtherName", "Hostname mismatch"),
    ],
)
def test_client_refuses_a_server_certificate_that_does_not_identify_the_server(secpki, secCFG, hostCert, reason):
    server = _serverWith(secpki, secCFG, hostCert)
    try:
        error = _clientVerdict(server, secpki)
        assert isinstance(error, ssl.SSLCertVerificationError), error
        assert reason in str(error)
    finally:
        server.server.stop()


def test_client_accepts_a_proper_host_certificate(chainServer, secpki):
    assert _clientVerdict(chainServer, secpki) is None


def test_host_certificate_without_client_auth_cannot_call_a_service(chainServer, secpki, caplog):
    stats = chainServer.stats
    chainServer.settle()
    failures, requests = stats.handshakeFailures, stats.requests
    attempt = tlsAttempt(chainServer, chainServer.clientContext(secpki.files["hostWithoutClientAuth"]))
    assert not attempt.answered
    waitFor(lambda: stats.handshakeFailures > failures, "the failed handshake to be counted")
    assert stats.requests == requests
    assert handshakeRefusalLogged(caplog, attempt.localPort, "unsuitable certificate purpose")
    # the registered host with both EKUs is served (see tests/integration/test_server.py for its identity)
    chainServer.ping()
