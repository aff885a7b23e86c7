"""Shared fixtures: a development PKI, a test configuration, and a real TornadoServer on 127.0.0.1.

``pki`` (session)
    :class:`TestPKI` made with DevPKI in a temporary directory: CA directory (with CRL), host, users, proxies.
``serverCFG`` (session)
    CFG text of the test configuration (Registry matching ``pki``, the demo services); no URLs.
``cs`` (function)
    ``gConfig`` reset and loaded with ``serverCFG``; reset again afterwards. For unit tests.
``running_server`` (function, server shared by the session)
    :class:`RunningServer`: a TornadoServer in a background thread with its own event loop on a free port
    of 127.0.0.1. Before each test ``gConfig`` is reloaded with the server's CFG (URLs included), so tests
    may change options freely. ``.url(service)``, ``.port``, ``.stats``, ``.post(...)``, ``.call(...)``.
``x509env`` (function)
    Environment of a client of ``running_server``: ``X509_CERT_DIR`` and ``X509_USER_PROXY`` from ``pki``,
    ``DIRAC_X509_HOST_CERT``/``KEY`` pointing at the host credential.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXTENSIONS_DIR = REPO_ROOT / "cs" / "extensions"


# ------------------------------------------------------------------------------------------------------
# PKI
@dataclasses.dataclass
class TestPKI:
    """Files and DNs of the session's development PKI (every path is a str)."""

    __test__ = False  # not a test class, despite its name

    directory: str
    caDir: str  # hashed CA directory with the CA certificate and its CRL
    caFile: str  # the CA certificate alone, for requests' verify=
    ca: Any  # DevPKI.CertificateAuthority (can issue more)
    hostCert: str
    hostKey: str
    hostDN: str
    userCert: str
    userKey: str
    userDN: str
    user2Cert: str
    user2Key: str
    user2DN: str
    strangerCert: str  # valid certificate of a user absent from the Registry
    strangerKey: str
    strangerDN: str
    suspendedCert: str  # user suspended in the VO of its group
    suspendedKey: str
    suspendedDN: str
    untrustedHostCert: str  # registered host without TrustedHost
    untrustedHostKey: str
    untrustedHostDN: str
    proxy: str  # devuser proxy with DIRAC group dirac_user in its extension
    adminProxy: str  # devuser proxy with group dirac_admin
    proxyNoGroup: str  # devuser proxy without group extension (Registry default group applies)
    proxyOfProxy: str  # proxy of ``proxy`` (group dirac_user inherited from the chain)
    limitedProxy: str  # limited proxy of devuser, group dirac_user
    user2Proxy: str  # otheruser proxy, group dirac_user

    @property
    def user(self) -> tuple[str, str]:
        """``cert=`` value for requests: the dev user's certificate and key."""
        return (self.userCert, self.userKey)

    @property
    def user2(self) -> tuple[str, str]:
        return (self.user2Cert, self.user2Key)

    @property
    def host(self) -> tuple[str, str]:
        return (self.hostCert, self.hostKey)

    @property
    def stranger(self) -> tuple[str, str]:
        return (self.strangerCert, self.strangerKey)

    @property
    def suspended(self) -> tuple[str, str]:
        return (self.suspendedCert, self.suspendedKey)

    @property
    def untrustedHost(self) -> tuple[str, str]:
        return (self.untrustedHostCert, self.untrustedHostKey)


def makeTestPKI(directory: Union[str, Path], caDN: Optional[str] = None, keyType: str = "rsa") -> TestPKI:
    """Create the development PKI of the tests under ``directory``.

    ``caDN``: subject of a CA of its own (default: the development CA's). ``keyType``: key of the
    credentials that are not the CA, the host, devuser or its group proxy (``"ec"`` is much faster to make).
    """
    from TornadoServices.Security import DevPKI

    d = str(directory)
    os.makedirs(d, exist_ok=True)
    ca = DevPKI.CertificateAuthority(caDN) if caDN else DevPKI.CertificateAuthority()
    caDir = os.path.join(d, "certificates")
    DevPKI.writeCADirectory(caDir, [ca])
    caFile = os.path.join(d, "ca.pem")
    with open(caFile, "wb") as fd:
        fd.write(ca.certPEM())

    def pair(cred: Any, name: str) -> tuple[str, str]:
        cert, key = os.path.join(d, f"{name}cert.pem"), os.path.join(d, f"{name}key.pem")
        cred.writeCertAndKey(cert, key, force=True)
        return cert, key

    host = ca.issueHost()
    user = ca.issueUser()
    user2 = ca.issueUser("otheruser", keyType=keyType)
    stranger = ca.issueUser("stranger", keyType=keyType)
    suspended = ca.issueUser("suspendeduser", keyType=keyType)
    untrustedHost = ca.issueHost("worker.example.org", sans=["worker.example.org"], keyType=keyType)
    hostCert, hostKey = pair(host, "host")
    userCert, userKey = pair(user, "user")
    user2Cert, user2Key = pair(user2, "otheruser")
    strangerCert, strangerKey = pair(stranger, "stranger")
    suspendedCert, suspendedKey = pair(suspended, "suspendeduser")
    untrustedCert, untrustedKey = pair(untrustedHost, "workerhost")

    def proxyFile(cred: Any, name: str) -> str:
        return cred.writeProxyFile(os.path.join(d, f"{name}.pem"))

    proxy = DevPKI.makeProxy(user, group="dirac_user")
    return TestPKI(
        directory=d,
        caDir=caDir,
        caFile=caFile,
        ca=ca,
        hostCert=hostCert,
        hostKey=hostKey,
        hostDN=host.dn,
        userCert=userCert,
        userKey=userKey,
        userDN=user.dn,
        user2Cert=user2Cert,
        user2Key=user2Key,
        user2DN=user2.dn,
        strangerCert=strangerCert,
        strangerKey=strangerKey,
        strangerDN=stranger.dn,
        suspendedCert=suspendedCert,
        suspendedKey=suspendedKey,
        suspendedDN=suspended.dn,
        untrustedHostCert=untrustedCert,
        untrustedHostKey=untrustedKey,
        untrustedHostDN=untrustedHost.dn,
        proxy=proxyFile(proxy, "proxy"),
        adminProxy=proxyFile(DevPKI.makeProxy(user, group="dirac_admin", keyType=keyType), "adminproxy"),
        proxyNoGroup=proxyFile(DevPKI.makeProxy(user, keyType=keyType), "proxynogroup"),
        proxyOfProxy=proxyFile(DevPKI.makeProxy(proxy, keyType=keyType), "proxyofproxy"),
        limitedProxy=proxyFile(DevPKI.makeProxy(user, group="dirac_user", limited=True, keyType=keyType), "limitedproxy"),
        user2Proxy=proxyFile(DevPKI.makeProxy(user2, group="dirac_user", keyType=keyType), "otheruserproxy"),
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """The session's development PKI (see :class:`TestPKI`)."""
    return makeTestPKI(tmp_path_factory.mktemp("pki"))


# ------------------------------------------------------------------------------------------------------
# configuration
def makeServerCFG(pki: TestPKI, urlsPort: Optional[int] = None, extra: str = "") -> str:
    """CFG text of the test configuration; with ``urlsPort`` the URLs section points at 127.0.0.1:<port>."""
    urls = ""
    if urlsPort is not None:
        base = f"https://127.0.0.1:{urlsPort}"
        urls = f"""
    URLs
    {{
      Dummy = {base}/Framework/Dummy
      Bookkeeping = {base}/Framework/Bookkeeping
      Bookkeeping2 = {base}/Framework/Bookkeeping2
      TornadoUser = {base}/Framework/TornadoUser
    }}"""
    return f"""
DIRAC
{{
  Extensions = TornadoExample
  ExtensionsPath = {EXTENSIONS_DIR}
  Security
  {{
    CertFile = {pki.hostCert}
    KeyFile = {pki.hostKey}
    CALocation = {pki.caDir}
  }}
}}
Systems
{{
  Tornado
  {{
    Port = 8443
    CRLCheck = auto
    MaxThreads = 4
    ShutdownTimeout = 2
  }}
  Framework
  {{
    Services
    {{
      Dummy
      {{
        Protocol = https
      }}
      Bookkeeping
      {{
        Protocol = https
        Authorization
        {{
          Default = authenticated
        }}
      }}
      Bookkeeping2
      {{
        Protocol = https
        Module = Bookkeeping
        MaxKeys = 2
      }}
      TornadoUser
      {{
        Protocol = https
        HandlerPath = TornadoExample/FrameworkSystem/Service/TornadoUserHandler.py
      }}
    }}{urls}
  }}
}}
Registry
{{
  DefaultGroup = dirac_user
  Users
  {{
    devuser
    {{
      DN = {pki.userDN}
      DefaultGroup = dirac_user
    }}
    otheruser
    {{
      DN = {pki.user2DN}
    }}
    suspendeduser
    {{
      DN = {pki.suspendedDN}
      Suspended = tornadovo
    }}
  }}
  Groups
  {{
    dirac_user
    {{
      Users = devuser, otheruser, suspendeduser
      Properties = NormalUser
      VO = tornadovo
    }}
    dirac_admin
    {{
      Users = devuser
      Properties = NormalUser, CSAdministrator, ServiceAdministrator
      VO = tornadovo
    }}
  }}
  Hosts
  {{
    localhost
    {{
      DN = {pki.hostDN}
      Properties = TrustedHost, CSAdministrator
    }}
    worker.example.org
    {{
      DN = {pki.untrustedHostDN}
      Properties = NormalUser
    }}
  }}
  VO
  {{
    tornadovo
    {{
      VOAdmin = devuser
    }}
  }}
}}
{extra}
"""


def loadCS(text: str) -> None:
    """Replace the whole configuration of this process by ``text``."""
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig

    gConfig.reset()
    result = gConfig.loadCFGFromString(text)
    assert result["OK"], result


@pytest.fixture(scope="session")
def serverCFG(pki: TestPKI) -> str:
    """CFG text of the test configuration (no URLs section)."""
    return makeServerCFG(pki)


@pytest.fixture
def cs(serverCFG: str):
    """``gConfig`` holding the test configuration; emptied after the test."""
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig

    loadCS(serverCFG)
    yield gConfig
    gConfig.reset()


# ------------------------------------------------------------------------------------------------------
# the server
class RunningServer:
    """A TornadoServer serving the test configuration from a background thread."""

    def __init__(self, server: Any, pki: TestPKI, cfgText: str, cfgFile: str) -> None:
        self.server = server
        self.pki = pki
        self.port: int = server.actualPort
        #: complete CFG (URLs point at this server), also written to ``cfgFile`` for subprocesses
        self.cfgText = cfgText
        self.cfgFile = cfgFile

    @property
    def stats(self) -> Any:
        """The server's ServerStats (connections accepted, requests by status, in flight)."""
        return self.server.stats

    def url(self, service: str = "Framework/Dummy") -> str:
        """``https://127.0.0.1:<port>/<System>/<Service>``."""
        return f"https://127.0.0.1:{self.port}/{service.strip('/')}"

    def handlerClass(self, service: str = "Framework/Dummy") -> type:
        """The per-component handler class the server runs for ``service``."""
        return self.server.handlers[service].handlerClass

    def post(
        self,
        method: Optional[str],
        *args: Any,
        service: str = "Framework/Dummy",
        cert: Union[str, tuple[str, str], None] = "proxy",
        session: Any = None,
        fields: Optional[dict[str, str]] = None,
        **kwargs: Any,
    ) -> Any:
        """POST a DIRAC-shaped form (method, JEncode args, clientVO, clientSetup); return the requests Response.

        ``cert`` is a path, a (cert, key) pair, an attribute name of :class:`TestPKI` ("proxy", "user",
        "host"...) or None for no client certificate. ``fields`` adds/overrides form fields.
        """
        import requests

        from TornadoServices.Core.Encoding import encode

        if isinstance(cert, str) and hasattr(self.pki, cert):
            cert = getattr(self.pki, cert)
        data: dict[str, str] = {}
        if method is not None:
            data["method"] = method
        data["args"] = encode(list(args))
        data["clientVO"] = "unknown"
        data["clientSetup"] = "None"
        data.update(fields or {})
        poster = session.post if session is not None else requests.post
        kwargs.setdefault("timeout", 60)
        return poster(self.url(service), data=data, cert=cert, verify=self.pki.caFile, **kwargs)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """:meth:`post` and JEncode-decode the answer body."""
        from TornadoServices.Core.Encoding import decode

        return decode(self.post(method, *args, **kwargs).text)[0]


@pytest.fixture(scope="session")
def _serverSession(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory):
    """Start the session's server once (the configuration is loaded around it)."""
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig
    from TornadoServices.Server.TornadoServer import TornadoServer

    loadCS(makeServerCFG(pki))
    server = TornadoServer(port=0, address="127.0.0.1")
    server.startInThread()
    cfgText = makeServerCFG(pki, urlsPort=server.actualPort)
    cfgFile = tmp_path_factory.mktemp("cs") / "server.cfg"
    cfgFile.write_text(cfgText)
    handle = RunningServer(server, pki, cfgText, str(cfgFile))
    yield handle
    server.stop()
    gConfig.reset()


@pytest.fixture
def running_server(_serverSession: RunningServer):
    """The session's server, with ``gConfig`` reloaded with its configuration for this test."""
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig

    loadCS(_serverSession.cfgText)
    yield _serverSession
    gConfig.reset()


@pytest.fixture
def x509env(monkeypatch: pytest.MonkeyPatch, pki: TestPKI) -> TestPKI:
    """Client environment for the test PKI: CA directory, proxy, host certificate."""
    monkeypatch.setenv("X509_CERT_DIR", pki.caDir)
    monkeypatch.setenv("X509_USER_PROXY", pki.proxy)
    monkeypatch.setenv("DIRAC_X509_HOST_CERT", pki.hostCert)
    monkeypatch.setenv("DIRAC_X509_HOST_KEY", pki.hostKey)
    monkeypatch.delenv("GRID_PROXY_FILE", raising=False)
    return pki


# ------------------------------------------------------------------------------------------------------
# Memory
def _rssKiB() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PeakRSS:
    """Samples this process's resident memory in a thread while the block runs; ``growthMiB``: peak minus start."""

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak = _rssKiB()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, _rssKiB())

    def __exit__(self, *exc: Any) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, _rssKiB())

    @property
    def growthMiB(self) -> float:
        return (self.peak - self.start) / 1024


# ------------------------------------------------------------------------------------------------------
# Raw HTTP
def parseResponseHead(head: bytes) -> tuple[int, dict[str, str]]:
    """(status, lower-cased headers) of the head of a raw HTTP/1.1 answer (without the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


def readResponse(sock: Any) -> Optional[tuple[int, dict[str, str], bytes]]:
    """(status, headers, body) of one HTTP response with Content-Length read from a (TLS) socket, or None when
    the server closed (or reset) the connection before a whole head arrived."""
    import ssl

    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            chunk = b""
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers = parseResponseHead(head)
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]


def waitFor(predicate: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.01) -> Any:
    """Poll until ``predicate()`` returns something true, and return it: a bounded wait for a state,
    never a speed assumption. AssertionError naming ``what`` after ``timeout`` seconds.

    Server counters are updated on the server's own IO loop, which may run a moment after the
    client has seen the outcome (the client reads the TLS alert before the server's callback runs).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
