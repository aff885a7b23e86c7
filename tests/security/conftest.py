"""Fixtures of the security suite: its own PKI (with revoked users), configuration and real servers.

``secpki`` (session)
    :class:`SecurityPKI`: a development PKI of its own (CA directory whose CRL revokes ``revokeduser``), plus
    one credential file per case of the certificate matrix (``secpki.files[name]``).
``secCFG`` (session)
    CFG text: the shared test configuration for ``secpki`` plus the ``Security/Probe`` service and the extra
    Registry users of this suite.
``chainServer`` / ``offServer`` (session)
    TornadoServer on 127.0.0.1 with CRLCheck ``chain`` / ``off`` over the same CA directory, serving
    ``Framework/Dummy`` and ``Security/Probe``.
``securityCS`` (autouse)
    ``gConfig`` reloaded with ``secCFG`` before each test, emptied afterwards (tests may change options).

The helpers shared with the other suites (``makeTestPKI``, ``makeServerCFG``, ``loadCS``, ``RunningServer``)
come from ``tests/conftest.py``.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import socket
import ssl
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from tests.conftest import RunningServer, loadCS, makeServerCFG, makeTestPKI, parseResponseHead, waitFor  # noqa: F401 (re-exported)

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # SecurityProbeHandler and jencodeCanary

TIMEOUT = 30.0
PROBE = "Security/Probe"
#: users registered in dirac_user for the concurrency test (each gets its own certificate)
CROWD = [f"crowd{index:02d}" for index in range(12)]
#: a Registry DN that differs from the certificate of ``spaceduser`` only in spacing, and one only in case
NEAR_MISS_DNS = {
    "spaceduser": "/DC=org/DC=tornadoservices/OU=Users/CN=Spaced  User",
    "caseuser": "/DC=org/DC=tornadoservices/OU=Users/CN=case user",
}
NEAR_MISS_CERT_CN = {"spaceduser": "Spaced User", "caseuser": "Case User"}
UNKNOWN_POLICY_OID = "1.3.6.1.4.1.99999.7.7"


# ------------------------------------------------------------------------------------------------------
# PKI
@dataclasses.dataclass
class SecurityPKI:
    """The suite's PKI: the shared test layout plus one file per matrix case."""

    base: Any  # TestPKI of this suite (own CA, host, devuser, proxies...)
    files: dict[str, str]
    dns: dict[str, str]
    caDirNoCRL: str
    caDirExpiredCRL: str
    otherCAFile: str  # CA certificate that signed the "untrusted" credentials (not in any CA directory)

    @property
    def ca(self) -> Any:
        return self.base.ca

    @property
    def caDir(self) -> str:
        return self.base.caDir

    @property
    def caFile(self) -> str:
        return self.base.caFile

    def cert(self, name: str) -> Any:
        """``requests``' ``cert=`` for matrix case ``name`` (one credential file) or a base credential (file or pair)."""
        if name in self.files:
            return self.files[name]
        return getattr(self.base, name)


def _sha1Certificate(ca: Any, directory: str, name: str) -> Optional[str]:
    """Credential file of a user certificate the CA signs with SHA-1, made by the openssl command (None without it).

    ``cryptography`` refuses to sign with SHA-1; OpenSSL at security level 1 or more refuses to verify it.
    """
    import shutil
    import subprocess

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from TornadoServices.Security import DevPKI
    from TornadoServices.Security.X509Certificate import parseDN
    from TornadoServices.Security.X509Chain import generateKey, privateKeyToPEM

    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    key = generateKey("ec")
    csr = x509.CertificateSigningRequestBuilder().subject_name(parseDN(DevPKI.userDN(name))).sign(key, hashes.SHA256())
    paths = {what: os.path.join(directory, f"{name}-{what}") for what in ("csr", "cacert", "cakey", "ext", "cert")}
    with open(paths["csr"], "wb") as fd:
        fd.write(csr.public_bytes(serialization.Encoding.PEM))
    with open(paths["cacert"], "wb") as fd:
        fd.write(ca.certPEM())
    with open(paths["cakey"], "wb") as fd:
        fd.write(ca.keyPEM())
    with open(paths["ext"], "w") as fd:
        fd.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n")
    command = [openssl, "x509", "-req", "-sha1", "-days", "30", "-in", paths["csr"], "-CA", paths["cacert"], "-CAkey", paths["cakey"],
               "-set_serial", str(x509.random_serial_number()), "-extfile", paths["ext"], "-out", paths["cert"]]
    if subprocess.run(command, capture_output=True).returncode != 0:
        return None
    with open(paths["cert"], "rb") as fd:
        cert = fd.read()
    credential = os.path.join(directory, f"{name}.pem")
    with open(credential, "wb") as fd:
        fd.write(cert + privateKeyToPEM(key))
    return credential


def makeSecurityPKI(directory: Path) -> SecurityPKI:
    """Create the suite's PKI under ``directory`` (own CA; ``revokeduser`` revoked in its CRL).

    RSA keys where the case is about RSA or where realism is cheap (CA, host, devuser); EC keys elsewhere,
    because RSA key generation dominates the suite's set-up time.
    """
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

    from TornadoServices.Security import DevPKI
    from TornadoServices.Security.X509Chain import generateKey

    d = str(directory)
    base = makeTestPKI(os.path.join(d, "base"), caDN="/DC=org/DC=tornadoservices/CN=TornadoServices Security Test CA", keyType="ec")
    ca = base.ca
    now = datetime.datetime.now(datetime.timezone.utc)
    hour = datetime.timedelta(hours=1)
    day = datetime.timedelta(days=1)
    ec = {"keyType": "ec"}

    user = ca.issueUser(**ec)  # a second devuser certificate: same DN, its own key
    revoked = ca.issueUser("revokeduser", **ec)
    ca.revoke(revoked)
    other = DevPKI.CertificateAuthority("/DC=org/DC=elsewhere/CN=Somebody Else CA", keyType="ec")
    shortUser = ca.issueUser("shortuser", notAfter=now + 2 * hour, **ec)
    middle = DevPKI.makeProxy(user, lifetime=3600, group="dirac_user", **ec)
    noDS = ca.issueUser("nodsuser", digitalSignature=False, **ec)
    # a CA chain deeper than OpenSSL's default verify depth (100) that still fits in one TLS message
    issuer = ca
    for level in range(101):
        issuer = issuer.intermediate(f"/DC=org/DC=tornadoservices/CN=Level {level} CA", **ec)
    deepUser = issuer.issueUser("deepuser", **ec)

    creds: dict[str, Any] = {
        # accepted by the TLS layer
        "goodUser": user,
        "goodProxy": DevPKI.makeProxy(user, group="dirac_user", **ec),
        "plainProxyOfProxy": DevPKI.makeProxy(DevPKI.makeProxy(user, group="dirac_user", **ec), **ec),
        "pathLenOneThenSub": DevPKI.makeProxy(DevPKI.makeProxy(user, pathLen=1, group="dirac_user", **ec), **ec),
        "independentProxy": DevPKI.makeProxy(user, independent=True, group="dirac_user", **ec),
        "unknownPolicyProxy": DevPKI.makeProxy(
            user, policyLanguage=ObjectIdentifier(UNKNOWN_POLICY_OID), group="dirac_user", **ec
        ),
        "revokedUser": revoked,
        "revokedProxy": DevPKI.makeProxy(revoked, group="dirac_user", **ec),
        "shortUserLongProxy": DevPKI.makeProxy(shortUser, lifetime=48 * 3600, clipToIssuer=False, group="dirac_user", **ec),
        "shortMiddleProxy": DevPKI.makeProxy(middle, lifetime=48 * 3600, clipToIssuer=False, **ec),
        # refused by the TLS layer
        "untrustedUser": other.issueUser(**ec),
        "untrustedProxy": DevPKI.makeProxy(other.issueUser(**ec), group="dirac_user", **ec),
        "expiredUser": ca.issueUser("expireduser", notBefore=now - 10 * day, notAfter=now - day, **ec),
        "futureUser": ca.issueUser("futureuser", notBefore=now + day, notAfter=now + 10 * day, **ec),
        "expiredProxy": DevPKI.makeProxy(user, notBefore=now - 2 * hour, notAfter=now - hour, group="dirac_user", **ec),
        "futureProxy": DevPKI.makeProxy(user, notBefore=now + hour, notAfter=now + 2 * hour, group="dirac_user", **ec),
        "otherKeyProxy": DevPKI.makeProxy(user, signingKey=generateKey("ec"), group="dirac_user", **ec),
        "wrongSubjectProxy": DevPKI.makeProxy(user, subject=DevPKI.userDN("otheruser") + "/CN=4242", group="dirac_admin", **ec),
        "pathLenZeroThenSub": DevPKI.makeProxy(DevPKI.makeProxy(user, pathLen=0, group="dirac_user", **ec), **ec),
        "legacyProxy": DevPKI.makeProxy(user, legacy=True, **ec),
        "noDigitalSignatureUser": noDS,
        "noDigitalSignatureProxy": DevPKI.makeProxy(noDS, group="dirac_user", **ec),
        "rsa1024User": ca.issueUser("weakuser", bits=1024),
        "rsa1024Proxy": DevPKI.makeProxy(user, bits=1024, group="dirac_user"),
        "overlyDeepChain": deepUser,
        "overlyDeepProxy": _proxyTower(user, 101),
    }
    # host certificates for the server-identity checks (what a client must refuse / what a server must refuse)
    serverAuth, clientAuth = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    creds["hostWithoutSAN"] = ca.issueHost(sans=[], **ec)
    creds["hostWithoutServerAuth"] = ca.issueHost(extendedKeyUsage=(clientAuth,), **ec)
    creds["hostWithoutClientAuth"] = ca.issueHost(extendedKeyUsage=(serverAuth,), **ec)
    creds["hostForOtherName"] = ca.issueHost("other.example.org", **ec)
    for name in CROWD:
        crowdUser = ca.issueUser(name, **ec)
        creds[f"{name}User"] = crowdUser
        creds[f"{name}Proxy"] = DevPKI.makeProxy(crowdUser, group="dirac_user", **ec)
    for name, cn in NEAR_MISS_CERT_CN.items():
        creds[name] = ca.issueUser(name, dn=f"/DC=org/DC=tornadoservices/OU=Users/CN={cn}", **ec)

    files = {name: cred.writeProxyFile(os.path.join(d, f"{name}.pem")) for name, cred in creds.items()}
    dns = {name: cred.dn for name, cred in creds.items()}
    dns["shortUser"] = shortUser.dn
    sha1 = _sha1Certificate(ca, d, "sha1user")
    if sha1 is not None:
        files["sha1User"] = sha1
    # proxies that OpenSSL refuses to even load on the client side when they are the leaf: they are sent
    # as the middle of a chain, under a well-formed proxy
    for name, extension, critical in (
        ("caTrueProxy", x509.BasicConstraints(ca=True, path_length=None), True),
        ("sanProxy", x509.SubjectAlternativeName([x509.DNSName("evil.example.org")]), False),
    ):
        bad = DevPKI.makeProxy(user, group="dirac_user", extraExtensions=[(extension, critical)], **ec)
        files[name] = DevPKI.makeProxy(bad, **ec).writeProxyFile(os.path.join(d, f"{name}.pem"))

    # the CA directory of the base PKI gets a CRL that revokes ``revoked``
    DevPKI.writeCADirectory(base.caDir, [ca], force=True)
    caDirNoCRL = os.path.join(d, "certificates-nocrl")
    DevPKI.writeCADirectory(caDirNoCRL, [ca], withCRL=False)
    caDirExpiredCRL = os.path.join(d, "certificates-expiredcrl")
    DevPKI.writeCADirectory(caDirExpiredCRL, [ca], crlOptions={"lastUpdate": now - 10 * day, "nextUpdate": now - day})
    otherCAFile = os.path.join(d, "otherca.pem")
    with open(otherCAFile, "wb") as fd:
        fd.write(other.certPEM())
    return SecurityPKI(base, files, dns, caDirNoCRL, caDirExpiredCRL, otherCAFile)


def _proxyTower(user: Any, height: int) -> Any:
    """Proxy of proxy of ... ``height`` levels above ``user`` (each adds a CN to the subject)."""
    from TornadoServices.Security import DevPKI

    top = user
    for _ in range(height):
        top = DevPKI.makeProxy(top, keyType="ec")
    return top


@pytest.fixture(scope="session")
def secpki(tmp_path_factory: pytest.TempPathFactory) -> SecurityPKI:
    """The suite's PKI (see :class:`SecurityPKI`)."""
    return makeSecurityPKI(tmp_path_factory.mktemp("secpki"))


# ------------------------------------------------------------------------------------------------------
# configuration
def makeSecurityCFG(secpki: SecurityPKI) -> str:
    """Extra CFG of the suite: the probe service and the Registry users the matrix needs."""
    users = [("revokeduser", secpki.dns["revokedUser"]), ("shortuser", secpki.dns["shortUser"])]
    users += [(name, secpki.dns[f"{name}User"]) for name in CROWD]
    users += list(NEAR_MISS_DNS.items())
    userBlocks = "\n".join(f"    {name}\n    {{\n      DN = {dn}\n    }}" for name, dn in users)
    members = ", ".join(name for name, _ in users)
    return f"""
Systems
{{
  Security
  {{
    Services
    {{
      Probe
      {{
        Protocol = https
        HandlerPath = SecurityProbeHandler.py
      }}
    }}
  }}
}}
Registry
{{
  Users
  {{
{userBlocks}
  }}
  Groups
  {{
    dirac_user
    {{
      Users = devuser, otheruser, suspendeduser, {members}
    }}
  }}
}}
"""


@pytest.fixture(scope="session")
def secCFG(secpki: SecurityPKI) -> tuple[str, str]:
    """(shared test CFG for the suite's PKI, the suite's additions), loaded one after the other."""
    return makeServerCFG(secpki.base), makeSecurityCFG(secpki)


def loadSecurityCS(secCFG: tuple[str, str]) -> None:
    """Replace the configuration by the suite's (base CFG, then the additions merged into it)."""
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig

    loadCS(secCFG[0])
    result = gConfig.loadCFGFromString(secCFG[1])
    assert result["OK"], result


@pytest.fixture(autouse=True)
def securityCS(secCFG: tuple[str, str]):
    """Every test starts from the suite's configuration and leaves an empty one."""
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig

    loadSecurityCS(secCFG)
    yield gConfig
    gConfig.reset()


# ------------------------------------------------------------------------------------------------------
# servers
class SecurityServer(RunningServer):
    """A RunningServer plus raw TLS access for requests that ``requests`` cannot send."""

    def __init__(self, server: Any, secpki: SecurityPKI) -> None:
        super().__init__(server, secpki.base, "", "")
        self.secpki = secpki

    def probeClass(self) -> Any:
        return self.handlerClass(PROBE)

    def clientContext(self, cert: Optional[str] = None, *, seclevel0: bool = False, **versions: Any) -> ssl.SSLContext:
        """Client context trusting the suite's CA, presenting ``cert`` (a credential file or matrix name)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=self.secpki.caFile)
        if seclevel0:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        if "minimum" in versions:
            context.minimum_version = versions["minimum"]
        if "maximum" in versions:
            context.maximum_version = versions["maximum"]
        if cert is not None:
            credential = cert if os.path.isfile(cert) else self.secpki.cert(cert)
            if isinstance(credential, tuple):
                context.load_cert_chain(*credential)
            else:
                context.load_cert_chain(credential)
        return context

    def connect(self, context: Optional[ssl.SSLContext] = None, timeout: float = TIMEOUT) -> ssl.SSLSocket:
        """A TLS connection to the server (handshake done) with ``context`` (default: the dev proxy)."""
        context = context or self.clientContext("proxy")
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            return context.wrap_socket(raw, server_hostname="localhost")
        except BaseException:
            raw.close()
            raise

    def ping(self) -> dict:
        """``ping`` on a fresh connection with the dev proxy: the server still serves."""
        from TornadoServices.Core.Encoding import decode

        response = self.post("ping", cert=self.secpki.cert("proxy"))
        assert response.status_code == 200, response.text
        result = decode(response.text)[0]
        assert result["OK"] is True, result
        self.settle()
        return result

    def settle(self) -> None:
        """Wait until no request is in flight (a client has its answer slightly before the server counts it)."""
        waitFor(lambda: self.stats.inFlight == 0, "requests in flight to be accounted")

    def quiesce(self) -> None:
        """Wait until no request is in flight and no connection is open (earlier cases are fully closed)."""
        waitFor(lambda: self.stats.inFlight == 0 and self.stats.openConnections == 0, "the server to be idle")


def startServer(secpki: SecurityPKI, secCFG: tuple[str, str], **options: Any) -> SecurityServer:
    """A TornadoServer for the suite's configuration on a free port of 127.0.0.1 (``options`` override settings)."""
    from TornadoServices.Server.TornadoServer import TornadoServer

    loadSecurityCS(secCFG)
    options.setdefault("services", ["Framework/Dummy", PROBE])
    # The suite checks that each refused handshake is logged with OpenSSL's reason, many from 127.0.0.1:
    # no rate limit on those lines here (the limit has its own tests).
    options.setdefault("handshakeLogLimit", 0)
    server = TornadoServer(port=0, address="127.0.0.1", **options)
    server.startInThread()
    return SecurityServer(server, secpki)


@pytest.fixture(scope="session")
def chainServer(secpki: SecurityPKI, secCFG: tuple[str, str]):
    """CRL checking of the whole chain (revoked users and their proxies are refused)."""
    handle = startServer(secpki, secCFG, crlCheck="chain")
    yield handle
    handle.server.stop()


@pytest.fixture(scope="session")
def offServer(secpki: SecurityPKI, secCFG: tuple[str, str]):
    """Same CA directory with CRL checking switched off by configuration."""
    handle = startServer(secpki, secCFG, crlCheck="off")
    yield handle
    handle.server.stop()


# ------------------------------------------------------------------------------------------------------
# helpers
def runThreads(count: int, target: Callable[[int], None], timeout: float = 120.0) -> None:
    """Run ``target(index)`` in ``count`` threads; re-raise the first failure."""
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a client thread did not finish"
    if failures:
        raise failures[0]


@dataclasses.dataclass
class Attempt:
    """What a raw TLS client saw: the bytes answered (until EOF) or the error that ended the exchange."""

    localPort: int
    response: bytes = b""
    error: Optional[BaseException] = None
    handshakeDone: bool = False

    @property
    def answered(self) -> bool:
        """True when an HTTP answer came back."""
        return self.response.startswith(b"HTTP/")


def formRequest(path: str = "/Framework/Dummy", body: bytes = b"method=ping&args=%5B%5D", headers: str = "") -> bytes:
    """An HTTP/1.1 form POST that closes the connection after the answer."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{headers}\r\n"
    ).encode() + body


def tlsAttempt(server: SecurityServer, context: ssl.SSLContext, request: bytes = b"", timeout: float = TIMEOUT) -> Attempt:
    """Connect with ``context``, send ``request``, read until EOF; never raises for TLS or socket errors."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    attempt = Attempt(localPort=raw.getsockname()[1])
    try:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            attempt.handshakeDone = True
            tls.sendall(request or formRequest())
            chunks = []
            while True:
                data = tls.recv(65536)
                if not data:
                    break
                chunks.append(data)
            attempt.response = b"".join(chunks)
    except (ssl.SSLError, OSError) as exc:
        attempt.error = exc
    finally:
        raw.close()
    return attempt


def responseBody(response: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of a raw HTTP/1.1 answer (Content-Length or close-delimited)."""
    head, _, body = response.partition(b"\r\n\r\n")
    status, headers = parseResponseHead(head)
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return status, headers, body


def handshakeRefusalLogged(caplog: Any, localPort: int, reason: str) -> bool:
    """Tornado logged "SSL Error on <fd> <peer>: ... <reason>" for the client whose local port is ``localPort``.

    The peer is named unless the client had already reset the connection when the line was written (Tornado
    then writes "(not connected)"); the reason must be there in either case.
    """
    peers = (f"('127.0.0.1', {localPort})", "(not connected)")
    for record in caplog.records:
        message = record.getMessage()
        if record.name == "tornado.general" and "SSL Error" in message and reason in message and any(p in message for p in peers):
            return True
    return False
