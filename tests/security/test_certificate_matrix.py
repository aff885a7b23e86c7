"""Certificate and proxy matrix against a real TornadoServer: who gets through TLS, who is refused and why.

Every refused credential is judged three ways: the client gets no HTTP answer (under TLS 1.3 the verdict
may only show on the first read, as an alert or an EOF), the server counts a failed handshake and no request,
no handler ran, and the server log names the OpenSSL reason together with the client's address. Every
refusal has an accepted twin built the same way without the defect, so a refusal cannot come from a broken
test PKI.
"""
from __future__ import annotations

import datetime
import logging
import ssl
import time

import pytest
import requests

from TornadoServices.Core import DErrno
from TornadoServices.Core.Encoding import decode
from TornadoServices.Security import DevPKI

from tests.security.conftest import PROBE, formRequest, handshakeRefusalLogged, responseBody, startServer, tlsAttempt, waitFor

VERSIONS = {"TLSv1.3": ssl.TLSVersion.TLSv1_3, "TLSv1.2": ssl.TLSVersion.TLSv1_2}

#: credential -> OpenSSL reason the server logs when it refuses it (CRL chain mode)
REFUSED = {
    "untrustedUser": "unable to get local issuer certificate",
    "untrustedProxy": "unable to get local issuer certificate",
    "expiredUser": "certificate has expired",
    "futureUser": "certificate is not yet valid",
    "expiredProxy": "certificate has expired",
    "futureProxy": "certificate is not yet valid",
    "revokedUser": "certificate revoked",
    "revokedProxy": "certificate revoked",
    "otherKeyProxy": "certificate signature failure",
    "wrongSubjectProxy": "proxy subject name violation",
    "pathLenZeroThenSub": "proxy path length constraint exceeded",
    "legacyProxy": "invalid CA certificate",
    "noDigitalSignatureUser": "unsuitable certificate purpose",
    "noDigitalSignatureProxy": "unsuitable certificate purpose",
    "rsa1024User": "EE certificate key too weak",
    "rsa1024Proxy": "EE certificate key too weak",
    "sha1User": "CA signature digest algorithm too weak",
    # a proxy with basicConstraints CA:TRUE or a subjectAltName is invalid for OpenSSL: it cannot issue the
    # next proxy (OpenSSL clients refuse to present such a proxy as leaf at all)
    "caTrueProxy": "unable to get local issuer certificate",
    "sanProxy": "unable to get local issuer certificate",
    "overlyDeepChain": "certificate chain too long",  # 101 intermediate CAs > OpenSSL's verify depth 100
    "overlyDeepProxy": "excessive message size",  # 101 proxies: their growing subjects overflow the 100 KiB limit first
}

#: accepted twin of each refused case -> DN the server must see (first non-proxy certificate)
ACCEPTED = {
    "goodUser": "goodUser",
    "goodProxy": "goodUser",
    "pathLenOneThenSub": "goodUser",
    "plainProxyOfProxy": "goodUser",
    "proxyOfProxy": "userDN",
    "user2Proxy": "user2DN",
}


def _dn(secpki, key: str) -> str:
    return secpki.dns[key] if key in secpki.dns else getattr(secpki.base, key)


def assertRefused(server, context, reason: str, caplog) -> None:
    """No HTTP answer, one failed handshake, no request, no handler call, and a logged reason for this client."""
    stats = server.stats
    server.settle()
    failuresBefore, requestsBefore = stats.handshakeFailures, stats.requests
    probeCalls = server.probeClass().calls
    attempt = tlsAttempt(server, context, formRequest("/Security/Probe", b"method=remoteAddress&args=%5B%5D"))
    assert not attempt.answered, attempt.response[:200]
    assert attempt.error is not None or attempt.response == b""
    waitFor(lambda: stats.handshakeFailures > failuresBefore, "the server to count the failed handshake")
    assert stats.requests == requestsBefore
    assert server.probeClass().calls == probeCalls
    assert handshakeRefusalLogged(caplog, attempt.localPort, reason), (reason, [r.getMessage() for r in caplog.records])


def whoami(server, cert) -> dict:
    """The probe's view of the caller (sync handler in the worker pool)."""
    response = server.post("whoamiSync", "t", service=PROBE, cert=cert)
    assert response.status_code == 200, response.text
    return decode(response.text)[0]["Value"]["before"]


# ---- refused by the TLS layer -------------------------------------------------------------------------------
@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("name", list(REFUSED))
def test_bad_client_credential_is_refused_in_the_handshake(chainServer, secpki, caplog, name, version):
    if name not in secpki.files:
        pytest.skip(f"{name} cannot be made here (needs the openssl command allowing SHA-1 signatures)")
    context = chainServer.clientContext(secpki.files[name], seclevel0=True, maximum=VERSIONS[version])
    assertRefused(chainServer, context, REFUSED[name], caplog)
    chainServer.ping()


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_well_formed_twins_are_accepted_with_the_user_identity(chainServer, secpki, name):
    assert whoami(chainServer, secpki.cert(name))["DN"] == _dn(secpki, ACCEPTED[name])


def test_same_dn_from_an_untrusted_ca_is_not_the_registered_user(chainServer, secpki, caplog):
    # the untrusted certificate carries exactly the registered devuser DN: only the CA makes the difference
    assert secpki.dns["untrustedUser"] == secpki.base.userDN
    context = chainServer.clientContext(secpki.files["untrustedUser"])
    assertRefused(chainServer, context, "unable to get local issuer certificate", caplog)


# ---- no certificate -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", list(VERSIONS))
def test_no_client_certificate_is_401_s_error_and_never_reaches_the_handler(chainServer, caplog, version):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    probeCalls = chainServer.probeClass().calls
    context = chainServer.clientContext(None, maximum=VERSIONS[version])
    attempt = tlsAttempt(chainServer, context, formRequest("/Security/Probe", b"method=remoteAddress&args=%5B%5D"))
    status, headers, body = responseBody(attempt.response)
    assert status == 401
    assert headers["content-type"] == "application/json"
    result = decode(body)[0]
    assert result["OK"] is False and result["Errno"] == DErrno.ECERTFIND
    assert "certificate" in result["Message"]
    assert chainServer.probeClass().calls == probeCalls
    # the access-log line is written once the answer is out: wait for it rather than race it
    waitFor(
        lambda: any(
            f"127.0.0.1:{attempt.localPort})" in r.getMessage() and "ERROR 401" in r.getMessage() for r in caplog.records
        ),
        "the 401 access-log line naming this client",
    )


# ---- CRL modes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["revokedUser", "revokedProxy"])
def test_crl_off_lets_a_revoked_user_through_only_because_configured_so(offServer, chainServer, secpki, caplog, name):
    creds = whoami(offServer, secpki.files[name])
    assert creds["DN"] == secpki.dns["revokedUser"]
    assert creds["username"] == "revokeduser"
    # the very same credential and CA directory, with the default-strength setting, is refused
    assertRefused(chainServer, chainServer.clientContext(secpki.files[name]), "certificate revoked", caplog)


def test_auto_mode_with_crls_checks_the_whole_chain(secpki, secCFG, caplog):
    server = startServer(secpki, secCFG, crlCheck="auto", services=["Framework/Dummy"])
    try:
        assertRefusedDummy(server, secpki.files["revokedProxy"], "certificate revoked", caplog)
        server.ping()
    finally:
        server.server.stop()


def assertRefusedDummy(server, credential: str, reason: str, caplog) -> None:
    """assertRefused for a server without the probe service."""
    stats = server.stats
    server.settle()
    failuresBefore, requestsBefore = stats.handshakeFailures, stats.requests
    attempt = tlsAttempt(server, server.clientContext(credential))
    assert not attempt.answered
    waitFor(lambda: stats.handshakeFailures > failuresBefore, "the server to count the failed handshake")
    assert stats.requests == requestsBefore
    assert handshakeRefusalLogged(caplog, attempt.localPort, reason), (reason, [r.getMessage() for r in caplog.records])


def test_expired_crl_refuses_everybody_in_chain_mode(secpki, secCFG, caplog):
    server = startServer(secpki, secCFG, crlCheck="chain", caPath=secpki.caDirExpiredCRL, services=["Framework/Dummy"])
    try:
        assertRefusedDummy(server, secpki.files["goodProxy"], "CRL has expired", caplog)
    finally:
        server.server.stop()


def test_missing_crl_refuses_everybody_in_chain_mode_and_is_announced(secpki, secCFG, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    server = startServer(secpki, secCFG, crlCheck="chain", caPath=secpki.caDirNoCRL, services=["Framework/Dummy"])
    try:
        warnings = [r.getMessage() for r in caplog.records if "CAs without CRL" in r.getMessage()]
        assert warnings and "clients under them are refused" in warnings[0]
        assertRefusedDummy(server, secpki.files["goodProxy"], "unable to get certificate CRL", caplog)
    finally:
        server.server.stop()


def test_missing_crl_in_auto_mode_means_no_revocation_check_and_says_so(secpki, secCFG, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    server = startServer(secpki, secCFG, crlCheck="auto", caPath=secpki.caDirNoCRL, services=["Framework/Dummy"])
    try:
        warnings = [r.getMessage() for r in caplog.records if "CAs without CRL" in r.getMessage()]
        assert warnings and "revocation is not checked" in warnings[0]
        # nothing revokes it here: the revoked user passes, which is what the warning says
        assert decode(server.post("ping", cert=secpki.files["revokedUser"]).text)[0]["OK"]
    finally:
        server.server.stop()


# ---- TLS protocol ----------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_below_1_2_is_refused(chainServer, caplog, version):
    tlsVersion = ssl.TLSVersion[version]
    context = chainServer.clientContext("proxy", seclevel0=True, minimum=tlsVersion, maximum=tlsVersion)
    assertRefused(chainServer, context, "unsupported protocol", caplog)
    chainServer.ping()


@pytest.mark.parametrize("ciphers", ["aNULL", "eNULL", "AES128-SHA", "AES128-GCM-SHA256"])  # no auth, no encryption, SHA-1 MAC, no forward secrecy
def test_weak_cipher_suites_are_refused(chainServer, caplog, ciphers):
    context = chainServer.clientContext(None, maximum=ssl.TLSVersion.TLSv1_2)
    context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    context.load_cert_chain(chainServer.secpki.cert("proxy"))
    assertRefused(chainServer, context, "no shared cipher", caplog)
    chainServer.ping()


def test_tls_1_2_with_default_ciphers_is_accepted(chainServer):
    context = chainServer.clientContext("proxy", maximum=ssl.TLSVersion.TLSv1_2)
    attempt = tlsAttempt(chainServer, context)
    assert responseBody(attempt.response)[0] == 200


def test_server_context_refuses_renegotiation_and_session_tickets(chainServer):
    # Python clients cannot start a renegotiation; the options that forbid it (and session tickets) are checked
    # on the context the running server really uses
    [context] = {id(s.ssl_options): s.ssl_options for s in chainServer.server._httpServers}.values()
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.options & ssl.OP_NO_TICKET and context.num_tickets == 0
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_CHAIN == ssl.VERIFY_CRL_CHECK_CHAIN
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


# ---- identity and lifetime ---------------------------------------------------------------------------------
def test_identity_is_the_first_non_proxy_certificate_and_lifetime_the_chain_minimum(chainServer, secpki):
    # user valid 2 h, its proxy 48 h (outlives the user, as OpenSSL allows)
    response = chainServer.post("whoami", cert=secpki.files["shortUserLongProxy"])
    creds = decode(response.text)[0]["Value"]
    assert creds["DN"] == creds["identity"] == secpki.dns["shortUser"] != creds["subject"]
    assert creds["username"] == "shortuser"
    assert 0 < creds["secondsLeft"] <= 2 * 3600
    # proxy (48 h) of a proxy (1 h) of a user (1 year): the middle one bounds the lifetime
    creds = decode(chainServer.post("whoami", cert=secpki.files["shortMiddleProxy"]).text)[0]["Value"]
    assert creds["DN"] == secpki.dns["goodUser"]
    assert creds["subject"].startswith(secpki.dns["goodUser"] + "/CN=") and creds["subject"].count("/CN=") == 3
    assert 0 < creds["secondsLeft"] <= 3600


def test_credentials_expiring_during_a_keep_alive_connection_stop_working(chainServer, secpki, tmp_path):
    user = secpki.ca.issueUser("shortlived", keyType="ec")
    # The first call must be answered while the proxy is valid: a short lifetime keeps the test short, a
    # longer one is tried when a busy machine did not answer in time (no assumption on speed).
    for lifetime in (3, 15, 60):
        notAfter = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=lifetime)
        proxy = DevPKI.makeProxy(user, keyType="ec", notAfter=notAfter).writeProxyFile(str(tmp_path / f"shortlived-{lifetime}.pem"))
        session = requests.Session()
        first = chainServer.post("ping", cert=proxy, session=session)
        if datetime.datetime.now(datetime.timezone.utc) < notAfter - datetime.timedelta(seconds=1):
            break
        session.close()
    with session:
        assert first.status_code == 200, first.text
        while datetime.datetime.now(datetime.timezone.utc) < notAfter + datetime.timedelta(seconds=1):
            time.sleep(0.2)
        response = chainServer.post("ping", cert=proxy, session=session)  # same TLS connection, chain now expired
    assert response.status_code == 401
    result = decode(response.text)[0]
    assert result["OK"] is False and "expired" in result["Message"]
