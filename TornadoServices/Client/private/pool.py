"""Process-wide pool of keep-alive HTTPS sessions, one per TLS identity.

A ``requests.Session`` is kept per :meth:`TLSSettings.poolKey` (credential files with their mtime and
size, or a digest of in-memory PEM data; CA directory with its mtime; skipCACheck; cipher and version
limits). Every client object with the same settings shares it, so ``Client(url=...).ping()`` called
100 times opens one TLS connection. When a proxy file is renewed (new mtime) the next call gets a new
session and the old one is closed.

Each session mounts a :class:`_TLSAdapter` whose urllib3 pools use the ``ssl.SSLContext`` built by
``Security.TLS.makeClientContext`` -- the one place that makes client contexts -- and nothing else:

* ``session.trust_env = False``: ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, ``*_proxy`` and ``.netrc``
  cannot replace our CA directory or route calls through an HTTP proxy;
* the adapter ignores requests' ``verify``/``cert`` machinery, so urllib3 never loads another CA file
  into our context;
* cookies are refused (calls stay stateless even though the session is shared).

A pooled connection idle for more than ``maxIdle`` seconds (default :data:`MAX_IDLE_SECONDS`) is closed
instead of reused: the server closes idle connections after its ``IdleConnectionTimeout`` (120 s by
default), and a call sent on a connection the server is closing at that moment is lost without a way to
know whether it ran. Keep ``maxIdle`` below the servers' idle timeout.
"""
from __future__ import annotations

import contextlib
import functools
import os
import socket
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Iterator, Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from TornadoServices.Client.private.errors import CredentialError
from TornadoServices.Client.private.transport import TLSSettings
from TornadoServices.Core.Logging import gLogger

__all__ = [
    "SessionRegistry", "gSessionRegistry", "connectionStats", "buildSSLContext", "probeServerVerdict", "MAX_IDLE_SECONDS",
]

PHASE_ATTR = "_tornadoClientPhase"
#: Request bodies up to this size are sent in the same write as the request's header block
COALESCE_BODY_BYTES = 64 * 1024
FIRST_USE_ATTR = "_tornadoClientFirstUse"
#: Seconds a pooled keep-alive connection may stay idle and still be reused (below the servers' 120 s)
MAX_IDLE_SECONDS = 60.0
#: Clock of the idle times (monotonic; replaceable in tests)
_clock = time.monotonic


class _Stats:
    """Client-side connection counters (tests and diagnostics)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tlsConnections = 0

    def bump(self) -> None:
        with self._lock:
            self.tlsConnections += 1


_stats = _Stats()


def connectionStats() -> dict[str, int]:
    """Return how many TLS connections this process opened so far."""
    return {"tlsConnections": _stats.tlsConnections}


def _tag(exc: BaseException, **attrs: Any) -> None:
    """Mark an exception with the phase it happened in (survives urllib3/requests re-wrapping via __context__)."""
    for name, value in attrs.items():
        try:
            setattr(exc, name, value)
        except AttributeError:
            pass


class _InstrumentedHTTPSConnection(HTTPSConnection):
    """HTTPSConnection that tags failures with their phase, so the transport knows what was delivered.

    Phases: ``connect`` (TCP + TLS handshake: nothing sent), ``send`` (writing the request) and
    ``awaitResponse`` (waiting for the status line); ``firstUse`` marks the first request of a
    connection (where a TLS 1.3 server's rejection of our certificate shows up).
    """

    _responsesReceived = 0

    def connect(self) -> None:
        self._responsesReceived = 0
        try:
            super().connect()
        except BaseException as exc:
            _tag(exc, **{PHASE_ATTR: "connect"})
            raise
        _stats.bump()

    _held: Optional[bytes] = None
    _coalesce = False

    def request(self, method: str, url: str, body: Any = None, *args: Any, **kwargs: Any) -> None:
        # A small body (an RPC form) goes out with the header block in one TLS record and TCP segment:
        # one send system call instead of two, and the server reads the whole request at once.
        self._coalesce = isinstance(body, (bytes, str)) and 0 < len(body) <= COALESCE_BODY_BYTES
        try:
            super().request(method, url, body, *args, **kwargs)
            held, self._held = self._held, None
            if held:
                super().send(held)
        except BaseException as exc:
            self._held = None
            _tag(exc, **{PHASE_ATTR: "send", FIRST_USE_ATTR: self._responsesReceived == 0})
            raise
        finally:
            self._coalesce = False

    def send(self, data: Any) -> None:
        if self._coalesce:
            if self._held is None:
                self._held = bytes(data)  # the header block: wait for the body
                return
            data, self._held, self._coalesce = self._held + bytes(data), None, False
        super().send(data)

    def getresponse(self) -> Any:
        firstUse = self._responsesReceived == 0
        try:
            response = super().getresponse()
        except BaseException as exc:
            _tag(exc, **{PHASE_ATTR: "awaitResponse", FIRST_USE_ATTR: firstUse})
            raise
        self._responsesReceived += 1
        return response


class _InstrumentedHTTPSConnectionPool(HTTPSConnectionPool):
    """urllib3's pool of our connections; a connection idle for more than ``maxIdle`` seconds is not reused."""

    ConnectionCls = _InstrumentedHTTPSConnection

    def __init__(self, *args: Any, maxIdle: Optional[float] = MAX_IDLE_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.maxIdle = maxIdle

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            conn._tsIdleSince = _clock()
        super()._put_conn(conn)

    def _get_conn(self, timeout: Optional[float] = None) -> Any:
        conn = super()._get_conn(timeout)
        since = getattr(conn, "_tsIdleSince", None)
        if since is not None and self.maxIdle is not None and _clock() - since > self.maxIdle and not conn.is_closed:
            conn.close()  # the server may be closing it right now: connect afresh rather than risk the call
        return conn

    def _validate_conn(self, conn: Any) -> None:
        """Connect early, as urllib3 does; with skipCACheck (an explicit choice) without its per-request warning."""
        if self.cert_reqs == "CERT_NONE":
            if conn.is_closed:
                conn.connect()
            return
        super()._validate_conn(conn)


class _TLSAdapter(HTTPAdapter):
    """HTTPAdapter whose HTTPS pools use exactly one SSLContext and ignore requests' verify/cert values."""

    def __init__(self, sslContext: ssl.SSLContext, poolMaxSize: int, maxIdle: Optional[float] = MAX_IDLE_SECONDS) -> None:
        self._sslContext = sslContext
        self._maxIdle = maxIdle
        self._certReqs = "CERT_NONE" if sslContext.verify_mode == ssl.CERT_NONE else "CERT_REQUIRED"
        super().__init__(pool_connections=16, pool_maxsize=poolMaxSize, max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **poolKwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, ssl_context=self._sslContext, **poolKwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": HTTPConnectionPool,
            "https": functools.partial(_InstrumentedHTTPSConnectionPool, maxIdle=self._maxIdle),
        }

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
        hostParams, _ = super().build_connection_pool_key_attributes(request, True, None)
        return hostParams, {"ssl_context": self._sslContext, "cert_reqs": self._certReqs}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        conn.cert_reqs = self._certReqs
        conn.ca_certs = None
        conn.ca_cert_dir = None
        conn.cert_file = None
        conn.key_file = None


@contextlib.contextmanager
def _pemPath(pemData: bytes) -> Iterator[str]:
    """Expose PEM bytes as a path OpenSSL can read, without leaving them on disk.

    Linux: an anonymous memory file (memfd) read through /proc/self/fd. Elsewhere: a 0600 file in a
    private 0700 temporary directory, removed as soon as the context has loaded it.
    """
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd("tornado-client-credential", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, pemData)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    directory = tempfile.mkdtemp(prefix="tornado-client-")
    path = os.path.join(directory, "credential.pem")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pemData)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def buildSSLContext(tls: TLSSettings) -> ssl.SSLContext:
    """Build the client SSLContext for these settings through Security.TLS (raises CredentialError)."""
    from TornadoServices.Security.TLS import makeClientContext

    def make(certFile: Optional[str], keyFile: Optional[str]) -> ssl.SSLContext:
        return makeClientContext(
            tls.caPath,
            certFile=certFile,
            keyFile=keyFile,
            skipCACheck=tls.skipCACheck,
            ciphers=tls.ciphers,
            minVersion=tls.minVersion,
            maxVersion=tls.maxVersion,
        )

    try:
        if tls.pemData is not None:
            with _pemPath(tls.pemData) as path:
                return make(path, None)
        return make(tls.certFile, tls.keyFile)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise CredentialError(
            f"Cannot use the {tls.describeCredential()} with {tls.describeTrust()}: {exc}; "
            "check that the file holds a PEM certificate with its unencrypted private key "
            "(make a proxy with tornado-proxy-init)"
        ) from exc


_insecureNoted = False


def _noteInsecure() -> None:
    """skipCACheck is an explicit choice: say it once in our log instead of a urllib3 warning per request."""
    global _insecureNoted
    if not _insecureNoted:
        _insecureNoted = True
        gLogger.getSubLogger("TornadoClient").warn(
            "skipCACheck: server certificates are not verified for some calls of this process"
        )


class _PooledSession:
    """A session with the SSLContext it was built with."""

    def __init__(self, tls: TLSSettings, poolMaxSize: int, maxIdle: Optional[float] = MAX_IDLE_SECONDS) -> None:
        self.sslContext = buildSSLContext(tls)
        if tls.skipCACheck:
            _noteInsecure()
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.proxies = {}
        self.session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self.session.mount("https://", _TLSAdapter(self.sslContext, poolMaxSize, maxIdle))
        self.session.mount("http://", HTTPAdapter(max_retries=0))

    def close(self) -> None:
        self.session.close()


class SessionRegistry:
    """Thread-safe map TLS settings -> pooled session; least recently used sessions beyond ``maxSessions`` close.

    ``poolMaxSize``: keep-alive connections kept per server; ``maxIdle``: seconds a pooled connection may be
    idle and still be reused (None: no limit), applied to sessions created after it is set.
    """

    def __init__(self, maxSessions: int = 32, poolMaxSize: int = 32, maxIdle: Optional[float] = MAX_IDLE_SECONDS) -> None:
        if maxIdle is not None and not maxIdle > 0:
            raise ValueError(f"maxIdle must be a positive number of seconds or None, not {maxIdle!r}")
        self._lock = threading.Lock()
        self._sessions: "OrderedDict[tuple[Any, ...], _PooledSession]" = OrderedDict()
        self._current: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self.maxSessions = maxSessions
        self.poolMaxSize = poolMaxSize
        self.maxIdle = maxIdle

    def get(self, tls: TLSSettings) -> _PooledSession:
        """Return the pooled session for these settings, creating it (and its SSLContext) on first use."""
        key = tls.poolKey()
        stale: list[_PooledSession] = []
        with self._lock:
            pooled = self._sessions.get(key)
            if pooled is not None:
                self._sessions.move_to_end(key)
                return pooled
            pooled = _PooledSession(tls, self.poolMaxSize, self.maxIdle)
            stable = tls.stableKey()
            previous = self._current.get(stable)
            if previous is not None and previous in self._sessions:
                stale.append(self._sessions.pop(previous))
            self._current[stable] = key
            self._sessions[key] = pooled
            while len(self._sessions) > self.maxSessions:
                _, old = self._sessions.popitem(last=False)
                stale.append(old)
        for old in stale:
            old.close()
        return pooled

    def session(self, tls: TLSSettings) -> requests.Session:
        """Return the ``requests.Session`` for these settings."""
        return self.get(tls).session

    def closeAll(self) -> None:
        """Close every pooled connection (tests; process shutdown)."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
            self._current.clear()
        for pooled in sessions:
            pooled.close()

    def __len__(self) -> int:
        return len(self._sessions)


gSessionRegistry = SessionRegistry()


def probeServerVerdict(sslContext: ssl.SSLContext, host: str, port: int, timeout: float) -> Optional[str]:
    """Open a fresh TLS connection, send nothing, and return the TLS alert the server sends, if any.

    With TLS 1.3 a client finishes its handshake before the server has judged the client
    certificate; when the server then refuses it, the request already sent may make the kernel
    reset the connection and hide the alert. This probe sends no data, so the alert arrives
    intact. It is only used to explain a connection that died before any answer; it never
    repeats the request.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            serverHostname = None if not sslContext.check_hostname else host
            with sslContext.wrap_socket(raw, server_hostname=serverHostname) as tlsSocket:
                if tlsSocket.version() != "TLSv1.3":
                    return None
                tlsSocket.settimeout(timeout)
                tlsSocket.recv(1)
    except ssl.SSLError as exc:
        reason = getattr(exc, "reason", None) or ""
        return reason if "ALERT" in reason else None
    except OSError:
        return None
    return None
