"""TLS contexts on real loopback sockets: who gets through the handshake, with which verified chain."""
from __future__ import annotations

import datetime
import os
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Optional

import pytest

from TornadoServices.Security import DevPKI
from TornadoServices.Security.TLS import (
    TLSConfigurationError,
    caDirectoryCRLStatus,
    getVerifiedChainDER,
    makeClientContext,
    makeServerContext,
    resolveCRLMode,
)
from TornadoServices.Security.X509Chain import X509Chain

TIMEOUT = 15


@dataclass
class PKI:
    root: str
    ca: DevPKI.CertificateAuthority
    caDir: str  # with CRLs
    caDirNoCRL: str
    hostCert: str
    hostKey: str
    files: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    root = str(tmp_path_factory.mktemp("tlspki"))
    ca = DevPKI.CertificateAuthority()
    host = ca.issueHost()
    user = ca.issueUser("alice")
    revoked = ca.issueUser("mallory")
    ca.revoke(revoked)
    pki = PKI(root, ca, os.path.join(root, "certificates"), os.path.join(root, "nocrl"), *[os.path.join(root, n) for n in ("hostcert.pem", "hostkey.pem")])
    DevPKI.writeCADirectory(pki.caDir, [ca])
    DevPKI.writeCADirectory(pki.caDirNoCRL, [ca], withCRL=False)
    host.writeCertAndKey(pki.hostCert, pki.hostKey)
    other = DevPKI.CertificateAuthority("/DC=org/DC=elsewhere/CN=Other CA")
    now = datetime.datetime.now(datetime.timezone.utc)
    creds = {
        "user": user,
        "proxy": DevPKI.makeProxy(user, group="dirac_user"),
        "limited": DevPKI.makeProxy(user, limited=True),
        "legacy": DevPKI.makeProxy(user, legacy=True),
        "revoked": revoked,
        "revokedProxy": DevPKI.makeProxy(revoked),
        "untrusted": other.issueUser("alice"),
        "expired": ca.issueUser("old", notBefore=now - datetime.timedelta(days=10), notAfter=now - datetime.timedelta(days=1)),
    }
    for name, cred in creds.items():
        pki.files[name] = cred.writeProxyFile(os.path.join(root, name + ".pem"))
    pki.files["otherCA"] = os.path.join(root, "otherca.pem")
    with open(pki.files["otherCA"], "wb") as fd:
        fd.write(other.certPEM())
    otherHost = other.issueHost()
    pki.files["otherHostCert"], pki.files["otherHostKey"] = os.path.join(root, "ohc.pem"), os.path.join(root, "ohk.pem")
    otherHost.writeCertAndKey(pki.files["otherHostCert"], pki.files["otherHostKey"])
    return pki


@dataclass
class Outcome:
    serverError: Optional[BaseException] = None
    chain: list[bytes] = field(default_factory=list)
    reused: bool = False
    version: Optional[str] = None
    clientError: Optional[BaseException] = None
    reply: bytes = b""

    @property
    def accepted(self) -> bool:
        return self.serverError is None and self.clientError is None and self.reply == b"ok"


def exchange(serverCtx: ssl.SSLContext, clientCtx: ssl.SSLContext, hostname: str = "localhost", sessions: int = 1) -> list[Outcome]:
    """Run ``sessions`` sequential connections (each offering the previous session) and report both sides."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    port = listener.getsockname()[1]
    outcomes = [Outcome() for _ in range(sessions)]

    def serve():
        for outcome in outcomes:
            try:
                conn, _ = listener.accept()
            except OSError as exc:
                outcome.serverError = exc
                return
            conn.settimeout(TIMEOUT)
            try:
                with serverCtx.wrap_socket(conn, server_side=True) as tls:
                    outcome.chain = getVerifiedChainDER(tls)
                    outcome.reused = tls.session_reused
                    outcome.version = tls.version()
                    tls.recv(1)
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                outcome.serverError = exc
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    session = None
    try:
        for outcome in outcomes:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
                    with clientCtx.wrap_socket(raw, server_hostname=hostname, session=session) as tls:
                        tls.sendall(b"x")
                        outcome.reply = tls.recv(2)
                        session = tls.session
            except (ssl.SSLError, OSError) as exc:
                outcome.clientError = exc
    finally:
        thread.join(TIMEOUT)
        listener.close()
    return outcomes


def serverCtx(pki: PKI, **kwargs) -> ssl.SSLContext:
    kwargs.setdefault("caPath", pki.caDir)
    return makeServerContext(pki.hostCert, pki.hostKey, **kwargs)


def clientCtx(pki: PKI, cred: Optional[str] = None, **kwargs) -> ssl.SSLContext:
    return makeClientContext(pki.caDir, pki.files[cred] if cred else None, **kwargs)


def verifyCode(outcome: Outcome) -> Optional[int]:
    return getattr(outcome.serverError, "verify_code", None)


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_user_certificate_is_accepted(pki, version):
    [out] = exchange(serverCtx(pki, maxVersion=version), clientCtx(pki, "user"))
    assert out.accepted, (out.serverError, out.clientError)
    assert out.version == version.replace("_", ".")
    chain = X509Chain.fromDERList(out.chain)
    assert chain.getNumCertsInChain()["Value"] == 2  # user, CA (the verified chain ends at the trust anchor)
    assert chain.getCredentials(withRegistryInfo=False)["Value"]["DN"] == DevPKI.userDN("alice")


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_proxy_file_is_accepted_and_identity_is_the_user(pki, version):
    [out] = exchange(serverCtx(pki, maxVersion=version), clientCtx(pki, "proxy"))
    assert out.accepted, (out.serverError, out.clientError)
    cred = X509Chain.fromDERList(out.chain).getCredentials(ignoreDefault=True, withRegistryInfo=False)["Value"]
    assert (cred["isProxy"], cred["identity"], cred["group"]) == (True, DevPKI.userDN("alice"), "dirac_user")


def test_limited_proxy_passes_tls_so_the_application_must_check(pki):
    [out] = exchange(serverCtx(pki), clientCtx(pki, "limited"))
    assert out.accepted
    assert X509Chain.fromDERList(out.chain).isLimitedProxy()["Value"] is True


def test_legacy_proxy_is_refused(pki):
    [out] = exchange(serverCtx(pki), clientCtx(pki, "legacy"))
    assert not out.accepted and out.serverError is not None


def test_no_client_certificate_reaches_the_application_without_a_chain(pki):
    [out] = exchange(serverCtx(pki), clientCtx(pki))
    assert out.accepted, (out.serverError, out.clientError)
    assert out.chain == []


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
@pytest.mark.parametrize("cred,code", [("untrusted", 20), ("expired", 10)])
def test_cert_optional_still_fails_a_bad_certificate(pki, version, cred, code):
    [out] = exchange(serverCtx(pki, maxVersion=version), clientCtx(pki, cred))
    assert not out.accepted
    assert isinstance(out.serverError, ssl.SSLCertVerificationError)
    assert verifyCode(out) == code


@pytest.mark.parametrize("cred", ["revoked", "revokedProxy"])
def test_revoked_user_and_its_proxy_are_refused_in_chain_mode(pki, cred):
    [out] = exchange(serverCtx(pki, crlCheck="chain"), clientCtx(pki, cred))
    assert not out.accepted and verifyCode(out) == 23  # certificate revoked


def test_auto_mode_checks_crls_when_the_directory_has_them(pki):
    assert resolveCRLMode(pki.caDir) == "chain"
    assert resolveCRLMode(pki.caDirNoCRL) == "off"
    [out] = exchange(serverCtx(pki), clientCtx(pki, "revokedProxy"))
    assert verifyCode(out) == 23
    [out] = exchange(serverCtx(pki, caPath=pki.caDirNoCRL), clientCtx(pki, "revokedProxy"))
    assert out.accepted  # no CRL available: nothing to check against


def test_leaf_only_crl_check_misses_the_revoked_user_behind_a_proxy(pki):
    """Why "chain" mode exists: CRL_CHECK_LEAF looks only at the proxy."""
    ctx = serverCtx(pki, crlCheck="off")
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    [out] = exchange(ctx, clientCtx(pki, "revokedProxy"))
    assert out.accepted


def test_expired_crl_refuses_everyone_in_chain_mode(pki, tmp_path):
    ca = pki.ca
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)
    DevPKI.writeCADirectory(str(tmp_path), [ca], crlOptions={"lastUpdate": past, "nextUpdate": past + datetime.timedelta(days=1)})
    [out] = exchange(serverCtx(pki, caPath=str(tmp_path)), clientCtx(pki, "user"))
    assert verifyCode(out) == 12  # CRL has expired


def test_crl_directory_status(pki, tmp_path):
    other = DevPKI.CertificateAuthority("/DC=org/DC=elsewhere/CN=Second CA")
    DevPKI.writeCADirectory(str(tmp_path), [pki.ca])
    DevPKI.writeCADirectory(str(tmp_path), [other], withCRL=False)
    (tmp_path / "README").write_text("not a CA")
    assert caDirectoryCRLStatus(str(tmp_path)) == ([pki.ca.dn], [other.dn])
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.ca.certPEM() + other.certPEM() + other.crlPEM())
    assert caDirectoryCRLStatus(str(bundle)) == ([other.dn], [pki.ca.dn])
    assert resolveCRLMode(str(bundle)) == "chain"


def test_ca_bundle_file_works_as_ca_path(pki, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(pki.ca.certPEM())
    server = makeServerContext(pki.hostCert, pki.hostKey, str(bundle))
    [out] = exchange(server, makeClientContext(str(bundle), pki.files["proxy"]))
    assert out.accepted and len(out.chain) == 3


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_no_resumption_so_every_connection_has_a_verified_chain(pki, version):
    outs = exchange(serverCtx(pki, maxVersion=version), clientCtx(pki, "proxy"), sessions=3)
    assert all(o.accepted for o in outs)
    assert [o.reused for o in outs] == [False, False, False]
    assert all(len(o.chain) == 3 for o in outs)


def test_resumed_session_would_have_no_verified_chain(pki):
    """The hazard the server context avoids: with tickets, a resumed TLS 1.2 session has no verified chain."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(pki.hostCert, pki.hostKey)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(capath=pki.caDir)
    ctx.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    outs = exchange(ctx, clientCtx(pki, "proxy"), sessions=2)
    assert all(o.accepted for o in outs)
    assert len(outs[0].chain) == 3
    if outs[1].reused:
        assert outs[1].chain == []


def test_client_checks_the_server_name(pki):
    [out] = exchange(serverCtx(pki), clientCtx(pki, "user"), hostname="not-localhost.example")
    assert isinstance(out.clientError, ssl.SSLCertVerificationError)
    [out] = exchange(serverCtx(pki), clientCtx(pki, "user", skipCACheck=True), hostname="not-localhost.example")
    assert out.accepted


def test_client_trusts_only_the_given_ca_location(pki, monkeypatch):
    # SSL_CERT_FILE names the CA that did sign the server; the client must still refuse it.
    monkeypatch.setenv("SSL_CERT_FILE", pki.files["otherCA"])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.files["otherCA"])
    server = makeServerContext(pki.files["otherHostCert"], pki.files["otherHostKey"], pki.caDir)
    [out] = exchange(server, clientCtx(pki, "user"))
    assert isinstance(out.clientError, ssl.SSLCertVerificationError)
    bundleCtx = makeClientContext(pki.files["otherCA"])
    assert len(bundleCtx.get_ca_certs()) == 1


def test_client_version_and_cipher_settings(pki, monkeypatch):
    monkeypatch.setenv("DIRAC_HTTPS_SSL_METHOD_MAX", "TLSv1_2")
    [out] = exchange(serverCtx(pki), clientCtx(pki, "user"))
    assert out.accepted and out.version == "TLSv1.2"
    monkeypatch.delenv("DIRAC_HTTPS_SSL_METHOD_MAX")
    ctx = makeClientContext(None, skipCACheck=True, minVersion="TLSv1.3", ciphers="ECDHE+AESGCM")
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    [out] = exchange(serverCtx(pki, maxVersion="TLSv1_2"), ctx)
    assert not out.accepted


def test_configuration_errors_name_the_problem(pki, tmp_path):
    with pytest.raises(TLSConfigurationError, match="TLSv9"):
        serverCtx(pki, minVersion="TLSv9")
    with pytest.raises(TLSConfigurationError, match="CRL check mode"):
        serverCtx(pki, crlCheck="sometimes")
    with pytest.raises(TLSConfigurationError, match="X509_CERT_DIR"):
        serverCtx(pki, caPath=str(tmp_path / "missing"))
    with pytest.raises(TLSConfigurationError, match="X509_CERT_DIR"):
        makeClientContext(None)
    with pytest.raises(TLSConfigurationError, match="nothere"):
        makeServerContext(str(tmp_path / "nothere.pem"), pki.hostKey, pki.caDir)
    with pytest.raises(TLSConfigurationError, match="does it belong"):
        makeServerContext(pki.hostCert, pki.files["user"], pki.caDir)
    with pytest.raises(TLSConfigurationError, match="cipher"):
        serverCtx(pki, ciphers="NO-SUCH-CIPHER")


def test_server_context_defaults(pki):
    ctx = serverCtx(pki, crlCheck="chain")
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_flags & ssl.VERIFY_ALLOW_PROXY_CERTS
    assert ctx.verify_flags & ssl.VERIFY_CRL_CHECK_CHAIN == ssl.VERIFY_CRL_CHECK_CHAIN
    assert ctx.options & ssl.OP_NO_TICKET and ctx.num_tickets == 0
    assert not serverCtx(pki, crlCheck="off").verify_flags & ssl.VERIFY_CRL_CHECK_LEAF


def test_verified_chain_of_a_plain_socket_is_empty():
    assert getVerifiedChainDER(object()) == []  # type: ignore[arg-type]


def _matrix(pki: PKI) -> dict[str, tuple[DevPKI.Credential, int]]:
    """Client credential -> expected server verdict (0 accepted, else the OpenSSL verify code)."""
    from TornadoServices.Security.X509Chain import generateKey

    ca = pki.ca
    user = ca.issueUser("matrix")
    now = datetime.datetime.now(datetime.timezone.utc)
    hour = datetime.timedelta(hours=1)
    return {
        "proxy-of-proxy": (DevPKI.makeProxy(DevPKI.makeProxy(user)), 0),
        "independent": (DevPKI.makeProxy(user, independent=True), 0),
        "ec-user-and-proxy": (DevPKI.makeProxy(ca.issueUser("ec", keyType="ec"), keyType="ec"), 0),
        "no-aki": (DevPKI.makeProxy(user, withAKI=False), 0),
        "outlives-user": (DevPKI.makeProxy(ca.issueUser("short", notAfter=now + hour), lifetime=10 * 3600, clipToIssuer=False), 0),
        "pathlen-0-then-sub": (DevPKI.makeProxy(DevPKI.makeProxy(user, pathLen=0)), 38),
        "signed-by-other-key": (DevPKI.makeProxy(user, signingKey=generateKey()), 7),
        "wrong-subject": (DevPKI.makeProxy(user, subject=DevPKI.userDN("mallory") + "/CN=1"), 72),
        "expired-proxy": (DevPKI.makeProxy(user, notBefore=now - 2 * hour, notAfter=now - hour), 10),
        "future-proxy": (DevPKI.makeProxy(user, notBefore=now + hour, notAfter=now + 2 * hour), 9),
        "user-without-digitalSignature": (DevPKI.makeProxy(ca.issueUser("nods", digitalSignature=False)), 26),
        "rsa-1024-user": (ca.issueUser("small", bits=1024), 66),
    }


def test_weak_client_key_is_refused_locally_with_a_hint(pki, tmp_path):
    path = pki.ca.issueUser("weak", bits=1024).writeProxyFile(str(tmp_path / "weak.pem"))
    with pytest.raises(TLSConfigurationError, match="too weak"):
        makeClientContext(pki.caDir, path)


def test_proxy_matrix_through_the_server_context(pki, tmp_path):
    server = serverCtx(pki)
    verdicts, expected = {}, {}
    for name, (cred, code) in _matrix(pki).items():
        path = cred.writeProxyFile(str(tmp_path / f"{name}.pem"))
        # a client at security level 1 can present a 1024-bit key; the server (default level) judges it
        [out] = exchange(server, makeClientContext(pki.caDir, path, ciphers="DEFAULT:@SECLEVEL=1"))
        verdicts[name] = 0 if out.accepted else verifyCode(out)
        expected[name] = code
    assert verdicts == expected
