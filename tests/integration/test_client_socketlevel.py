"""The real client transport against small raw-socket TLS servers that misbehave on purpose.

Each server is a thread on 127.0.0.1 running one behaviour per connection (answer, stall, reset,
send junk, never handshake, ...). They count connections and complete requests, so tests can
assert what reached the server (e.g. a timed-out call was not resent elsewhere).
"""
from __future__ import annotations

import errno
import os
import socket
import ssl
import struct
import threading
import time
from typing import Callable, Optional

import pytest

from TornadoServices.Client.Client import Client
from TornadoServices.Client.private import pool as poolModule
from TornadoServices.Client.private.pool import MAX_IDLE_SECONDS, SessionRegistry, connectionStats, gSessionRegistry
from TornadoServices.Client.private.TornadoBaseClient import resetBannedURLs
from TornadoServices.Client.TornadoClient import TornadoClient
from TornadoServices.Client.TransferClient import TransferClient
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.Security import DevPKI
from TornadoServices.Security.TLS import makeServerContext
from tests.conftest import PeakRSS

PATH = "/Framework/Dummy"


# ---------------------------------------------------------------- PKI
class PKI:
    """Two unrelated CAs (A trusted by the client, B not) and the credentials the tests need."""

    def __init__(self, root: str) -> None:
        self.root = root
        caA = DevPKI.CertificateAuthority(keyType="ec")
        caB = DevPKI.CertificateAuthority("/DC=org/DC=elsewhere/CN=Other CA", keyType="ec")
        self.caDir = os.path.join(root, "certificates")
        DevPKI.writeCADirectory(self.caDir, [caA])
        self.serverCADir = os.path.join(root, "server-cas")
        DevPKI.writeCADirectory(self.serverCADir, [caA], withCRL=False)
        self.host = self._write("host", caA.issueHost("localhost", keyType="ec"))
        self.hostB = self._write("hostB", caB.issueHost("localhost", keyType="ec"))
        self.wrongName = self._write("wrongname", caA.issueHost("otherhost.example", keyType="ec"))
        userA = caA.issueUser("devuser", keyType="ec")
        userB = caB.issueUser("stranger", keyType="ec")
        self.proxy = DevPKI.makeProxy(userA, keyType="ec").writeProxyFile(os.path.join(root, "proxy.pem"))
        self.proxy2 = DevPKI.makeProxy(userA, keyType="ec").writeProxyFile(os.path.join(root, "proxy2.pem"))
        self.strangerProxy = DevPKI.makeProxy(userB, keyType="ec").writeProxyFile(os.path.join(root, "stranger.pem"))
        self.userA = userA

    def _write(self, name: str, credential: DevPKI.Credential) -> tuple[str, str]:
        cert, key = os.path.join(self.root, f"{name}cert.pem"), os.path.join(self.root, f"{name}key.pem")
        credential.writeCertAndKey(cert, key, force=True)
        return cert, key

    def serverContext(self, which: str = "host") -> ssl.SSLContext:
        cert, key = getattr(self, which)
        return makeServerContext(cert, key, self.serverCADir, crlCheck="off")


@pytest.fixture(scope="module")
def tlsPKI(tmp_path_factory):
    return PKI(str(tmp_path_factory.mktemp("client-tlsPKI")))


@pytest.fixture(autouse=True)
def environment(tlsPKI, monkeypatch):
    gConfig.reset()
    resetBannedURLs()
    monkeypatch.setenv("X509_USER_PROXY", tlsPKI.proxy)
    monkeypatch.delenv("GRID_PROXY_FILE", raising=False)
    monkeypatch.setenv("X509_CERT_DIR", tlsPKI.caDir)
    yield
    gSessionRegistry.closeAll()
    resetBannedURLs()


# ---------------------------------------------------------------- raw servers
class RawServer:
    """TLS (or plain TCP) server on 127.0.0.1 running ``behaviour(server, conn)`` for each connection."""

    def __init__(self, behaviour: Callable[["RawServer", socket.socket], None],
                 sslContext: Optional[ssl.SSLContext]) -> None:
        self.behaviour = behaviour
        self.sslContext = sslContext
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{PATH}"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(20)
        try:
            if self.sslContext is not None:
                conn = self.sslContext.wrap_socket(conn, server_side=True)
            self.behaviour(self, conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def readRequest(self, conn: socket.socket) -> Optional[bytes]:
        """One HTTP request (headers + Content-Length body), or None when the peer closed."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            rest += chunk
        with self.lock:
            self.requests.append(rest[:length])
        return rest[:length]

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


def answer(payload: bytes = b'{"OK": true, "Value": "pong"}', contentType: bytes = b"application/json"):
    def behaviour(server: RawServer, conn: socket.socket) -> None:
        while server.readRequest(conn) is not None:
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: " + contentType + b"\r\nContent-Length: "
                + str(len(payload)).encode() + b"\r\n\r\n" + payload
            )

    return behaviour


def stallAfterRequest(server: RawServer, conn: socket.socket) -> None:
    server.readRequest(conn)
    server.stopped.wait(30)


def resetMidResponse(server: RawServer, conn: socket.socket) -> None:
    server.readRequest(conn)
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"OK": tr')
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def junk(server: RawServer, conn: socket.socket) -> None:
    server.readRequest(conn)
    conn.sendall(b"SSH-2.0-OpenSSH_9.6 not http at all\r\n\r\n")


def neverHandshake(server: RawServer, conn: socket.socket) -> None:
    server.stopped.wait(30)


def plainHTTP(server: RawServer, conn: socket.socket) -> None:
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
def servers():
    started: list[RawServer] = []

    def start(behaviour, sslContext=None) -> RawServer:
        server = RawServer(behaviour, sslContext)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def deadPort() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# ---------------------------------------------------------------- success paths
def test_call_and_wire_bytes(servers, tlsPKI):
    server = servers(answer(), tlsPKI.serverContext())
    result = TornadoClient(server.url()).ping()
    assert result["OK"] and result["Value"] == "pong"
    assert server.requests == [b"method=ping&args=%5B%5D&clientVO=unknown&clientSetup=None"]


def test_fresh_client_objects_reuse_one_tls_connection(servers, tlsPKI):
    server = servers(answer(), tlsPKI.serverContext())
    before = connectionStats()["tlsConnections"]
    for _ in range(100):
        assert Client(url=server.url()).ping()["OK"]
    assert server.connections == 1
    assert len(server.requests) == 100
    assert connectionStats()["tlsConnections"] - before == 1


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pooled_connection_idle_beyond_max_idle_is_not_reused(servers, tlsPKI, monkeypatch):
    # A server closes idle keep-alive connections after its IdleConnectionTimeout; a client that reused one
    # at that moment would lose the call. Past maxIdle the client connects afresh instead.
    clock = _FakeClock()
    monkeypatch.setattr(poolModule, "_clock", clock)
    server = servers(answer(), tlsPKI.serverContext())
    assert Client(url=server.url()).ping()["OK"]
    clock.now += MAX_IDLE_SECONDS - 1
    assert Client(url=server.url()).ping()["OK"]  # idle just below the limit: reused
    assert server.connections == 1
    clock.now += MAX_IDLE_SECONDS + 1
    assert Client(url=server.url()).ping()["OK"]  # idle past the limit: a new connection
    assert server.connections == 2 and len(server.requests) == 3


def test_max_idle_none_keeps_connections_however_long_idle(servers, tlsPKI, monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(poolModule, "_clock", clock)
    monkeypatch.setattr(gSessionRegistry, "maxIdle", None)
    server = servers(answer(), tlsPKI.serverContext())
    assert Client(url=server.url()).ping()["OK"]
    clock.now += 24 * 3600
    assert Client(url=server.url()).ping()["OK"]
    assert server.connections == 1


def test_max_idle_must_be_positive():
    with pytest.raises(ValueError, match="maxIdle"):
        SessionRegistry(maxIdle=0)


def test_different_credentials_get_different_connections(servers, tlsPKI):
    server = servers(answer(), tlsPKI.serverContext())
    for _ in range(3):
        assert TornadoClient(server.url()).ping()["OK"]
        assert TornadoClient(server.url(), proxyLocation=tlsPKI.proxy2).ping()["OK"]
    assert server.connections == 2


def test_renewed_proxy_file_opens_a_new_connection(servers, tlsPKI, tmp_path, monkeypatch):
    proxy = tmp_path / "x509up"
    proxy.write_bytes(open(tlsPKI.proxy, "rb").read())
    monkeypatch.setenv("X509_USER_PROXY", str(proxy))
    server = servers(answer(), tlsPKI.serverContext())
    assert TornadoClient(server.url()).ping()["OK"]
    assert TornadoClient(server.url()).ping()["OK"]
    proxy.write_bytes(open(tlsPKI.proxy2, "rb").read())
    os.utime(proxy, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert TornadoClient(server.url()).ping()["OK"]
    assert server.connections == 2
    assert len(gSessionRegistry) == 1, "the session of the old proxy was closed"


def test_environment_ca_bundles_and_proxies_are_ignored(servers, tlsPKI, monkeypatch, tmp_path):
    bogus = tmp_path / "bogus-bundle.pem"
    bogus.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, str(bogus))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{deadPort()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server = servers(answer(), tlsPKI.serverContext())
    assert TornadoClient(server.url()).ping()["OK"]


def test_in_memory_proxy_string_leaves_no_file(servers, tlsPKI, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    server = servers(answer(), tlsPKI.serverContext())
    proxyString = open(tlsPKI.proxy).read()
    monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "absent"))
    result = TornadoClient(server.url(), proxyString=proxyString).ping()
    assert result["OK"], result
    assert os.listdir(tmp_path) == []
    chain = tlsPKI.userA.asX509Chain()
    assert TornadoClient(server.url(), proxyChain=chain).ping()["OK"]


def test_skip_ca_check_talks_to_an_untrusted_server(servers, tlsPKI, recwarn):
    server = servers(answer(), tlsPKI.serverContext("hostB"))
    assert TornadoClient(server.url(), skipCACheck=True).ping()["OK"]
    assert TornadoClient(server.url(), skipCACheck=True).ping()["OK"]
    assert not [w for w in recwarn if "Unverified HTTPS request" in str(w.message)]


# ---------------------------------------------------------------- failover
def test_failover_from_dead_port_to_live_server(servers, tlsPKI):
    server = servers(answer(b'{"OK": true, "Value": "live"}'), tlsPKI.serverContext())
    dead = f"https://localhost:{deadPort()}{PATH}"
    result = TornadoClient(f"{dead},{server.url()}").ping()
    assert result["OK"] and result["Value"] == "live"


def test_read_timeout_is_not_resent(servers, tlsPKI):
    stalling = servers(stallAfterRequest, tlsPKI.serverContext())
    live = servers(answer(), tlsPKI.serverContext())
    result = TornadoClient(f"{stalling.url()},{live.url()}", timeout=1).slowThing()
    assert not result["OK"]
    assert result["Errno"] == errno.ETIMEDOUT
    assert "No answer from" in result["Message"] and "within 1 s" in result["Message"]
    assert "may or may not have been executed" in result["Message"]
    assert len(stalling.requests) == 1 and live.requests == []


def test_connect_timeout_fails_over(servers, tlsPKI):
    silent = servers(neverHandshake, None)
    live = servers(answer(b'{"OK": true, "Value": "live"}'), tlsPKI.serverContext())
    alone = TornadoClient(silent.url(), timeout=1).ping()
    assert not alone["OK"] and alone["Errno"] == errno.ETIMEDOUT
    assert "Could not connect to" in alone["Message"] and "within 1 s" in alone["Message"]
    resetBannedURLs()
    assert TornadoClient(f"{silent.url()},{live.url()}", timeout=1).ping()["Value"] == "live"


# ---------------------------------------------------------------- one message per failure
def test_connection_refused(tlsPKI):
    url = f"https://localhost:{deadPort()}{PATH}"
    result = TornadoClient(url).ping()
    assert result["Errno"] == errno.ECONNREFUSED
    assert "Connection refused by localhost:" in result["Message"] and "no server is listening" in result["Message"]


def test_dns_failure():
    result = TornadoClient(f"https://no-such-host.invalid:8443{PATH}").ping()
    assert result["Errno"] == errno.EHOSTUNREACH
    assert "Cannot resolve the host name 'no-such-host.invalid'" in result["Message"]


def test_server_certificate_not_trusted(servers, tlsPKI):
    server = servers(answer(), tlsPKI.serverContext("hostB"))
    result = TornadoClient(server.url()).ping()
    assert not result["OK"] and server.requests == []
    assert "is not trusted" in result["Message"] and tlsPKI.caDir in result["Message"]
    assert "unable to get local issuer certificate" in result["Message"]


def test_hostname_mismatch(servers, tlsPKI):
    server = servers(answer(), tlsPKI.serverContext("wrongName"))
    result = TornadoClient(server.url()).ping()
    assert not result["OK"] and server.requests == []
    assert "is not valid for the host name 'localhost'" in result["Message"]
    assert "Hostname mismatch" in result["Message"]


def test_ip_address_mismatch(servers, tlsPKI):
    server = servers(answer(), tlsPKI.serverContext("wrongName"))
    result = TornadoClient(server.url("127.0.0.1")).ping()
    assert "is not valid for the host name '127.0.0.1'" in result["Message"]


def test_client_certificate_rejected_every_time(servers, tlsPKI):
    """TLS 1.3 hides the server's verdict behind the request; the alert must still be reported."""
    server = servers(answer(), tlsPKI.serverContext())
    messages = set()
    for _ in range(25):
        result = TornadoClient(server.url(), proxyLocation=tlsPKI.strangerProxy, timeout=5).ping()
        assert not result["OK"]
        messages.add(result["Message"].split("(", 1)[1].split(")")[0])
        assert "rejected our certificate" in result["Message"], result["Message"]
        assert tlsPKI.strangerProxy in result["Message"]
    assert server.requests == []
    assert any("UNKNOWN_CA" in m for m in messages)


def test_expired_proxy_is_reported_as_expired(servers, tlsPKI, tmp_path):
    import datetime

    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    expired = DevPKI.makeProxy(tlsPKI.userA, keyType="ec", notBefore=past - datetime.timedelta(hours=2), notAfter=past)
    path = expired.writeProxyFile(str(tmp_path / "expired.pem"))
    server = servers(answer(), tlsPKI.serverContext())
    result = TornadoClient(server.url(), proxyLocation=path).ping()
    assert "rejected our certificate (SSLV3_ALERT_CERTIFICATE_EXPIRED" in result["Message"]
    assert "has expired or is not yet valid" in result["Message"]


def test_rejected_certificate_fails_over_to_a_server_that_accepts_it(servers, tlsPKI, tmp_path):
    strictCAs = str(tmp_path / "strict")
    DevPKI.writeCADirectory(strictCAs, [DevPKI.CertificateAuthority("/CN=Unrelated", keyType="ec")], withCRL=False)
    strict = servers(answer(), makeServerContext(*tlsPKI.host, strictCAs, crlCheck="off"))
    live = servers(answer(b'{"OK": true, "Value": "accepted"}'), tlsPKI.serverContext())
    assert TornadoClient(f"{strict.url()},{live.url()}").ping()["Value"] == "accepted"


def test_not_a_tls_server(servers):
    server = servers(plainHTTP, None)
    result = TornadoClient(server.url()).ping()
    assert result["Errno"] == errno.EPROTO
    assert "TLS handshake with" in result["Message"] and "is it an HTTPS server?" in result["Message"]


def test_reset_mid_response(servers, tlsPKI):
    server = servers(resetMidResponse, tlsPKI.serverContext())
    result = TornadoClient(server.url()).ping()
    assert result["Errno"] == errno.ECONNRESET
    assert "was lost in the middle of its answer" in result["Message"]
    assert "may or may not have been executed" in result["Message"]


def test_closed_before_answering(servers, tlsPKI):
    def closeAfterRequest(server, conn):
        server.readRequest(conn)

    server = servers(closeAfterRequest, tlsPKI.serverContext())
    result = TornadoClient(server.url(), timeout=2).ping()
    assert result["Errno"] == errno.ECONNRESET
    assert "was lost before answering" in result["Message"]
    assert len(server.requests) == 1


def test_junk_instead_of_http(servers, tlsPKI):
    server = servers(junk, tlsPKI.serverContext())
    result = TornadoClient(server.url()).ping()
    assert result["Errno"] == errno.EPROTO
    assert "answered with something that is not HTTP" in result["Message"]


def test_undecodable_body_from_a_real_socket(servers, tlsPKI):
    server = servers(answer(b"<html>not json</html>", b"text/html"), tlsPKI.serverContext())
    result = TornadoClient(server.url()).ping()
    assert "Cannot decode the answer of" in result["Message"] and "text/html" in result["Message"]


def test_sixteen_threads_share_clients_and_pool(servers, tlsPKI):
    server = servers(answer(), tlsPKI.serverContext())
    shared = TornadoClient(server.url())
    failures = []

    def work():
        for i in range(25):
            client = shared if i % 2 else TornadoClient(server.url())
            result = client.ping()
            if not result["OK"]:
                failures.append(result["Message"])

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(server.requests) == 400
    assert server.connections <= 16


# ---------------------------------------------------------------- transfers in bounded memory
SIZE = 1 << 30


def streamBody(server: RawServer, conn: socket.socket) -> None:
    server.readRequest(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: "
                 + str(SIZE).encode() + b"\r\n\r\n")
    block = b"\0" * (1 << 20)
    for _ in range(SIZE >> 20):
        conn.sendall(block)


def sinkUpload(server: RawServer, conn: socket.socket) -> None:
    head = b""
    while b"\r\n\r\n" not in head:
        head += conn.recv(65536)
    header, _, received = head.partition(b"\r\n\r\n")
    server.requests.append(header)
    remaining = SIZE - len(received)
    while remaining > 0:
        chunk = conn.recv(min(remaining, 1 << 20))
        if not chunk:
            return
        remaining -= len(chunk)
    payload = b'{"OK": true, "Value": %d}' % SIZE
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                 + str(len(payload)).encode() + b"\r\n\r\n" + payload)


@pytest.mark.slow
def test_one_gib_download_streams_to_disk(servers, tlsPKI, tmp_path):
    server = servers(streamBody, tlsPKI.serverContext())
    dest = tmp_path / "big.bin"
    with PeakRSS() as rss:
        result = TransferClient(server.url(), timeout=30).receiveFile(str(dest), "bigfile")
    assert result["OK"], result
    assert dest.stat().st_size == SIZE
    assert rss.growthMiB < 64, f"client grew by {rss.growthMiB:.0f} MiB for a 1 GiB download"
    assert server.requests == [b"method=streamToClient&args=%5B%22bigfile%22%5D&rawContent=True"
                               b"&clientVO=unknown&clientSetup=None"]


@pytest.mark.slow
def test_one_gib_upload_streams_from_disk(servers, tlsPKI, tmp_path):
    server = servers(sinkUpload, tlsPKI.serverContext())
    source = tmp_path / "sparse.bin"
    with open(source, "wb") as handle:
        handle.truncate(SIZE)
    with PeakRSS() as rss:
        result = TransferClient(server.url(), timeout=30).sendFile(str(source), "fileID-1", "tok")
    assert result["OK"] and result["Value"] == SIZE, result
    assert rss.growthMiB < 64, f"client grew by {rss.growthMiB:.0f} MiB for a 1 GiB upload"
    header = server.requests[0].decode()
    assert header.startswith("POST /Framework/Dummy?method=streamFromClient&args=%5B%22fileID-1%22%2C+%22tok%22%2C+"
                             f"{SIZE}%5D&clientVO=unknown&clientSetup=None HTTP/1.1")
    assert "Content-Type: application/octet-stream" in header and f"Content-Length: {SIZE}" in header
