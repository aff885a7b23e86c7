"""TLS on the server: CRLs over the whole chain, untrusted CAs, handshake accounting, CRL start-up report."""
from __future__ import annotations

import logging

import pytest
import requests

from tests.conftest import RunningServer, loadCS, makeServerCFG, waitFor
from TornadoServices.Core.Encoding import decode


@pytest.fixture(scope="module")
def revocation(pki, _serverSession, tmp_path_factory):
    """A server whose CA directory holds a CRL revoking one user (and a second CA without CRL)."""
    from TornadoServices.Security import DevPKI
    from TornadoServices.Server.TornadoServer import TornadoServer

    d = tmp_path_factory.mktemp("revocation")
    revoked = pki.ca.issueUser("revokeduser")
    pki.ca.revoke(revoked)
    caDir = str(d / "certificates")
    DevPKI.writeCADirectory(caDir, [pki.ca])
    files = {}
    for name, cred in (("revoked", revoked), ("revokedproxy", DevPKI.makeProxy(revoked, group="dirac_user"))):
        files[name] = cred.writeProxyFile(str(d / f"{name}.pem"))
    otherCA = DevPKI.CertificateAuthority("/DC=org/DC=elsewhere/CN=Other CA")
    files["foreign"] = otherCA.issueUser("foreigner").writeProxyFile(str(d / "foreign.pem"))
    DevPKI.writeCADirectory(str(d / "mixed"), [pki.ca], withCRL=True)
    DevPKI.writeCADirectory(str(d / "mixed"), [otherCA], withCRL=False)

    loadCS(makeServerCFG(pki))
    server = TornadoServer(services=["Framework/Dummy"], port=0, address="127.0.0.1", caPath=caDir)
    server.startInThread()
    handle = RunningServer(server, pki, makeServerCFG(pki, urlsPort=server.actualPort), "")
    handle.files = files
    handle.mixedDir = str(d / "mixed")
    yield handle
    server.stop()


@pytest.fixture
def revocationServer(revocation):
    loadCS(revocation.cfgText)
    yield revocation


def _post(server, cert):
    return requests.post(server.url(), data={"method": "ping", "args": "[]"}, cert=cert, verify=server.pki.caFile, timeout=30)


def test_valid_user_is_served(revocationServer):
    assert decode(_post(revocationServer, revocationServer.pki.proxy).text)[0]["OK"]


@pytest.mark.parametrize("credential", ["revoked", "revokedproxy", "foreign"])
def test_revoked_users_their_proxies_and_foreign_cas_fail_the_handshake(revocationServer, credential):
    before = revocationServer.stats.handshakeFailures
    with pytest.raises(requests.exceptions.ConnectionError):  # SSLError is a ConnectionError
        _post(revocationServer, revocationServer.files[credential])
    waitFor(lambda: revocationServer.stats.handshakeFailures > before, "the refused handshake to be counted")


def test_start_up_names_cas_without_crl(revocation, pki, caplog):
    from TornadoServices.Server.TornadoServer import TornadoServer

    loadCS(makeServerCFG(pki))
    caplog.set_level(logging.INFO, logger="TornadoServices")
    server = TornadoServer(services=["Framework/Dummy"], port=0, address="127.0.0.1", caPath=revocation.mixedDir, crlCheck="auto")
    server.startInThread()
    try:
        messages = [r.getMessage() for r in caplog.records]
        assert any("CRL check chain" in m for m in messages), messages
        warning = next(r for r in caplog.records if r.getMessage().startswith("CAs without CRL"))
        assert warning.levelno == logging.WARNING
        assert "/DC=org/DC=elsewhere/CN=Other CA" in warning.getMessage()
    finally:
        server.stop()


def test_crl_check_off_is_reported(revocation, pki, caplog):
    from TornadoServices.Server.TornadoServer import TornadoServer

    loadCS(makeServerCFG(pki))
    caplog.set_level(logging.INFO, logger="TornadoServices")
    server = TornadoServer(services=["Framework/Dummy"], port=0, address="127.0.0.1", crlCheck="off")
    server.startInThread()
    try:
        assert any("CRL check off" in r.getMessage() for r in caplog.records)
    finally:
        server.stop()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_below_1_2_is_refused(running_server, pki):
    import socket
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.caFile)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with socket.create_connection(("127.0.0.1", running_server.port), timeout=30) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"x")


def test_non_tls_bytes_are_dropped_and_server_keeps_serving(running_server):
    import socket

    with socket.create_connection(("127.0.0.1", running_server.port), timeout=30) as raw:
        raw.sendall(b"POST /Framework/Dummy HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = raw.recv(1024)
        except ConnectionResetError:
            data = b""
        assert b"HTTP/1.1 200" not in data
    assert running_server.call("ping")["OK"]
