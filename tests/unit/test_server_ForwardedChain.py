"""Forwarded client chains: header formats, trusted peers, and verification with the same verdicts as OpenSSL.

Every chain of the matrix is judged twice: by :class:`CAStore` (the server's own check of a chain that a
TLS-terminating front end forwarded) and by an in-memory TLS handshake against the server context of
``Security.TLS`` (what a direct client gets). The two must agree.
"""
from __future__ import annotations

import base64
import datetime
import os
import ssl
import urllib.parse
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from TornadoServices.Core import DErrno
from TornadoServices.Security import DevPKI, TLS
from TornadoServices.Security.X509Certificate import opensslNameHash
from TornadoServices.Server.private.ForwardedChain import (
    CAStore,
    ForwardedChainError,
    ForwardedRefusal,
    TrustedProxies,
    parseCertificateHeader,
    parseNetworks,
)
from TornadoServices.Server.private.Credentials import ConnectionCredentials

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


class Matrix:
    """A CA directory (root + CRL, sub-CA CRL) and one credential per case."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.ca = DevPKI.CertificateAuthority()
        self.subCA = self.ca.intermediate("/DC=org/DC=tornadoservices/CN=TornadoServices Sub CA")
        self.foreign = DevPKI.CertificateAuthority("/DC=org/DC=elsewhere/CN=Foreign CA")
        self.host = self.ca.issueHost()
        user = self.ca.issueUser("jane")
        revoked = self.ca.issueUser("revoked")
        self.ca.revoke(revoked)
        noSig = self.ca.issueUser("nosig", digitalSignature=False)
        proxy = DevPKI.makeProxy(user, group="dirac_user")
        constrained = DevPKI.makeProxy(user, pathLen=0)
        self.cases: dict[str, tuple[Any, bool]] = {
            "user": (user, True),
            "proxy": (proxy, True),
            "proxyOfProxy": (DevPKI.makeProxy(proxy), True),
            "limitedProxy": (DevPKI.makeProxy(user, limited=True), True),
            "independentProxy": (DevPKI.makeProxy(user, independent=True), True),
            "subCAUser": (self.subCA.issueUser("subuser"), True),
            "expiredUser": (self.ca.issueUser("old", notBefore=NOW - 10 * DAY, notAfter=NOW - DAY), False),
            "futureUser": (self.ca.issueUser("future", notBefore=NOW + DAY, notAfter=NOW + 10 * DAY), False),
            "expiredProxy": (DevPKI.makeProxy(user, notBefore=NOW - 2 * DAY, notAfter=NOW - DAY), False),
            "revokedUser": (revoked, False),
            "revokedUserProxy": (DevPKI.makeProxy(revoked), False),
            "proxyOtherKey": (DevPKI.makeProxy(user, signingKey=DevPKI.generateKey()), False),
            "proxyWrongSubject": (DevPKI.makeProxy(user, subject="/DC=org/DC=tornadoservices/OU=Users/CN=jane2/CN=123"), False),
            "pathLenExceeded": (DevPKI.makeProxy(constrained), False),
            "legacyProxy": (DevPKI.makeProxy(user, legacy=True), False),
            "foreignUser": (self.foreign.issueUser("stranger"), False),
            "noDigitalSignatureProxy": (DevPKI.makeProxy(noSig), False),
            "proxyAsCA": (DevPKI.makeProxy(user, extraExtensions=[(x509.BasicConstraints(ca=True, path_length=None), True)]), False),
        }
        self.caDir = os.path.join(directory, "certificates")
        DevPKI.writeCADirectory(self.caDir, [self.ca])
        with open(os.path.join(self.caDir, f"{opensslNameHash(self.subCA.cert.subject)}.r0"), "wb") as fd:
            fd.write(self.subCA.crlPEM())
        self.hostCert = os.path.join(directory, "hostcert.pem")
        self.hostKey = os.path.join(directory, "hostkey.pem")
        self.host.writeCertAndKey(self.hostCert, self.hostKey, force=True)
        self.caFile = os.path.join(directory, "ca.pem")
        with open(self.caFile, "wb") as fd:
            fd.write(self.ca.certPEM())

    def credentialFile(self, name: str) -> str:
        path = os.path.join(self.directory, f"{name}.pem")
        if not os.path.exists(path):
            self.cases[name][0].writeProxyFile(path)
        return path


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    return Matrix(str(tmp_path_factory.mktemp("forwarded")))


def handshakeAccepts(matrix: Matrix, credentialFile: str) -> bool:
    """True when the server context of Security.TLS accepts the credential in a real (in-memory) handshake."""
    server = TLS.makeServerContext(matrix.hostCert, matrix.hostKey, matrix.caDir, crlCheck="auto")
    client = TLS.makeClientContext(matrix.caFile, certFile=credentialFile)
    client.options |= ssl.OP_NO_TICKET
    toServer, toClient = ssl.MemoryBIO(), ssl.MemoryBIO()
    serverIn, serverOut = ssl.MemoryBIO(), ssl.MemoryBIO()
    clientObj = client.wrap_bio(toClient, toServer, server_hostname="localhost")
    serverObj = server.wrap_bio(serverIn, serverOut, server_side=True)
    serverDone = False
    for _ in range(20):
        try:
            clientObj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            return False
        serverIn.write(toServer.read())
        if not serverDone:
            try:
                serverObj.do_handshake()
                serverDone = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return False
        toClient.write(serverOut.read())
        if serverDone and not toServer.pending:
            return bool(serverObj.getpeercert(binary_form=True))
    raise AssertionError("handshake did not converge")


CASES = [
    "user", "proxy", "proxyOfProxy", "limitedProxy", "independentProxy", "subCAUser", "expiredUser", "futureUser",
    "expiredProxy", "revokedUser", "revokedUserProxy", "proxyOtherKey", "proxyWrongSubject", "pathLenExceeded",
    "legacyProxy", "foreignUser", "noDigitalSignatureProxy",
]


@pytest.mark.parametrize("name", CASES)
def test_verdict_matches_openssl(matrix, name):
    credential, expected = matrix.cases[name]
    assert handshakeAccepts(matrix, matrix.credentialFile(name)) is expected, "the TLS layer disagrees with the matrix"
    store = CAStore(matrix.caDir)
    ders = credential.derList()
    if expected:
        path = store.verify(ders)
        assert path[0] == ders[0]
        assert x509.load_der_x509_certificate(path[-1]).subject == matrix.ca.cert.subject
    else:
        with pytest.raises(ForwardedChainError):
            store.verify(ders)


def test_reasons_name_the_problem(matrix):
    store = CAStore(matrix.caDir)
    expectations = {
        "expiredUser": "has expired",
        "revokedUserProxy": "revoked",
        "proxyWrongSubject": "proxy subject name violation",
        "pathLenExceeded": "path length",
        "foreignUser": "unable to get issuer certificate",
        "proxyOtherKey": "signature failure",
        "noDigitalSignatureProxy": "digitalSignature",
        "proxyAsCA": "cannot be, or be issued by, a CA",  # OpenSSL will not even load it as a client credential
    }
    for name, words in expectations.items():
        with pytest.raises(ForwardedChainError, match=words):
            store.verify(matrix.cases[name][0].derList())


def test_crl_modes(matrix, tmp_path):
    revoked = matrix.cases["revokedUser"][0].derList()
    assert CAStore(matrix.caDir, "off").verify(revoked)
    noCRL = tmp_path / "nocrl"
    DevPKI.writeCADirectory(str(noCRL), [matrix.ca], withCRL=False)
    user = matrix.cases["user"][0].derList()
    assert CAStore(str(noCRL)).verify(user)  # auto without CRLs: no revocation checking
    with pytest.raises(ForwardedChainError, match="unable to get certificate CRL"):
        CAStore(str(noCRL), "chain").verify(user)
    expired = tmp_path / "expiredcrl"
    DevPKI.writeCADirectory(str(expired), [matrix.ca], crlOptions={"lastUpdate": NOW - 10 * DAY, "nextUpdate": NOW - DAY})
    with pytest.raises(ForwardedChainError, match="CRL .* has expired"):
        CAStore(str(expired)).verify(user)


def test_small_rsa_keys_and_long_chains_are_refused(matrix):
    weak = matrix.ca.issueUser("weak", bits=1024)
    with pytest.raises(ForwardedChainError, match="too small"):
        CAStore(matrix.caDir).verify(weak.derList())
    with pytest.raises(ForwardedChainError, match="more than"):
        CAStore(matrix.caDir).verify(matrix.cases["user"][0].derList() * 13)


def test_header_formats(matrix):
    proxy = matrix.cases["proxyOfProxy"][0]
    ders = proxy.derList()
    pems = "".join(x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM).decode() for d in ders)
    assert parseCertificateHeader(urllib.parse.quote(pems)) == ders  # nginx / DIRAC: URL-encoded PEM
    assert parseCertificateHeader(pems.replace("\n", " ")) == ders  # PEM with spaces for newlines
    assert parseCertificateHeader(base64.b64encode(ders[0]).decode()) == ders[:1]  # HAProxy ssl_c_der,base64
    assert parseCertificateHeader(base64.b64encode(b"".join(ders[1:])).decode()) == ders[1:]  # ssl_c_chain_der
    assert parseCertificateHeader("  ") == []
    for junk in ("not a certificate!", base64.b64encode(b"\x04\x03abc").decode(), "-----BEGIN CERTIFICATE-----@@-----END CERTIFICATE-----"):
        with pytest.raises(ForwardedChainError):
            parseCertificateHeader(junk)


def test_networks_and_peers(matrix):
    assert parseNetworks("") == []
    with pytest.raises(ValueError, match="TrustedProxies: 'bogus'"):
        parseNetworks("127.0.0.1, bogus")
    proxies = TrustedProxies(parseNetworks("127.0.0.1, 10.1.0.0/16, ::1"), matrix.caDir)
    assert proxies.isTrusted("127.0.0.1") and proxies.isTrusted("10.1.200.3") and proxies.isTrusted("::1")
    assert proxies.isTrusted("::ffff:127.0.0.1")
    assert not proxies.isTrusted("127.0.0.2") and not proxies.isTrusted("10.2.0.1") and not proxies.isTrusted("garbage")


def _headers(credential: Any, verify: str = "SUCCESS") -> dict[str, str]:
    ders = credential.derList()
    return {
        "X-SSL-CERT": base64.b64encode(ders[0]).decode(),
        "X-SSL-CHAIN": base64.b64encode(b"".join(ders[1:])).decode(),
        "X-Ssl_client_verify": verify,
    }


def test_credentials_for_requests(matrix):
    own = ConnectionCredentials(None, {"OK": False, "Message": "no certificate", "Errno": DErrno.ECERTFIND}, 0.0)

    class Stats:
        untrustedForwardedHeaders = 0

    stats = Stats()
    proxies = TrustedProxies(parseNetworks("127.0.0.1"), matrix.caDir, stats=stats)
    proxy = matrix.cases["proxy"][0]
    forwarded = proxies.credentialsFor(_headers(proxy), "127.0.0.1", own)
    assert forwarded.error is None and forwarded.credDict["DN"] == matrix.cases["user"][0].dn
    assert forwarded.credDict["isProxy"] is True
    assert proxies.credentialsFor(_headers(proxy), "127.0.0.1", own) is forwarded  # verified once, then cached
    # from an untrusted peer: ignored, counted, the connection's own credentials are used
    assert proxies.credentialsFor(_headers(proxy), "192.0.2.1", own) is own
    assert stats.untrustedForwardedHeaders == 1
    # no header at all: the connection's own credentials
    assert proxies.credentialsFor({}, "127.0.0.1", own) is own
    # the front end did not verify the client
    refused = proxies.credentialsFor(_headers(proxy, verify="FAILED:10"), "127.0.0.1", own)
    assert isinstance(refused, ForwardedRefusal) and "did not verify" in refused.error["Message"]
    # a claim that does not verify here
    bad = proxies.credentialsFor(_headers(matrix.cases["revokedUserProxy"][0]), "127.0.0.1", own)
    assert isinstance(bad, ForwardedRefusal) and "revoked" in bad.error["Message"]
    assert bad.error["Errno"] == DErrno.ECERTREAD
    # nobody trusted: the feature is off, headers never honoured
    off = TrustedProxies([], matrix.caDir, stats=stats)
    assert off.credentialsFor(_headers(proxy), "127.0.0.1", own) is own
