"""Connection rows: (e) pooled client vs a new connection per call, and (f) memory of idle mTLS connections.

(e) runs in one fresh process, one thread, sequential calls of ``ping``:

* ``pooled``: ``Client(url=...).ping()`` with a new ``Client`` object for every call, as DIRAC code does;
  the process-wide pool keeps one TLS connection;
* ``dirac``: what DIRAC's HTTPS client does per call: a new ``requests.Session`` with an adapter on
  ``ssl.create_default_context()``, ``verify=<CA dir>``, ``cert=<proxy>``, one POST, session closed;
* ``handshake``: a raw TLS socket per call on one prebuilt SSLContext, one request, closed: the floor of
  any new-connection-per-call client (TCP + full mTLS handshake + one exchange, no HTTP library).

(f) opens N TLS connections with the proxy from a few processes, makes one request on each (the server
then holds the connection's credentials), keeps them open, and reads the server's ``VmRSS`` before and
after. The file-descriptor limit is raised to its hard limit in every process.
"""
from __future__ import annotations

import multiprocessing
import os
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence
from urllib.parse import urlencode, urlsplit

from benchmarks.procstat import openFiles, processCPUSeconds, raiseFileLimit, residentKB

PING_FIELDS = [("method", "ping"), ("args", "[]"), ("clientVO", "unknown"), ("clientSetup", "None")]


@dataclass
class RateResult:
    """Sequential calls of one client style: rate, and CPU per call on both sides."""

    style: str
    calls: int
    seconds: float
    clientCPU: float
    serverCPU: float
    tlsConnections: int = -1
    error: str = ""

    @property
    def callsPerSecond(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def serverCPUPerCall(self) -> float:
        return self.serverCPU / self.calls if self.calls else float("nan")

    @property
    def clientCPUPerCall(self) -> float:
        return self.clientCPU / self.calls if self.calls else float("nan")


def _timedLoop(style: str, call: Callable[[], Optional[str]], seconds: float, serverPid: int) -> RateResult:
    """Call ``call`` (None = success, else an error text) until ``seconds`` have passed."""
    error = call()  # warm-up: imports, first connection
    if error:
        return RateResult(style, 0, 0.0, 0.0, 0.0, error=error)
    calls = 0
    server0 = processCPUSeconds(serverPid)
    client0 = time.process_time()
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        error = call()
        if error:
            return RateResult(style, calls, time.monotonic() - start, 0.0, 0.0, error=error)
        calls += 1
    elapsed = time.monotonic() - start
    return RateResult(
        style, calls, elapsed, time.process_time() - client0, processCPUSeconds(serverPid) - server0
    )


def _clientRateMain(queue: Any, env: dict[str, str], url: str, serverPid: int, seconds: float) -> None:
    """Worker process of row (e): the three client styles one after the other."""
    os.environ.update(env)
    import requests
    from requests.adapters import HTTPAdapter

    from TornadoServices.Client.Client import Client
    from TornadoServices.Client.private.pool import connectionStats
    from TornadoServices.Core.Encoding import decode

    caDir, proxy = env["X509_CERT_DIR"], env["X509_USER_PROXY"]
    results: list[RateResult] = []

    def pooled() -> Optional[str]:
        result = Client(url=url).ping()
        return None if result["OK"] else result["Message"]

    before = connectionStats()["tlsConnections"]
    result = _timedLoop("pooled", pooled, seconds, serverPid)
    result.tlsConnections = connectionStats()["tlsConnections"] - before
    results.append(result)

    class ContextAdapter(HTTPAdapter):
        """DIRAC's adapter: every session gets ``ssl.create_default_context()``."""

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = ssl.create_default_context()
            super().init_poolmanager(*args, **kwargs)

    def diracCall() -> Optional[str]:
        with requests.Session() as session:
            session.mount("https://", ContextAdapter())
            response = session.post(url, data=PING_FIELDS, verify=caDir, cert=proxy, timeout=30)
            if response.status_code != 200:
                return f"HTTP {response.status_code}: {response.text[:200]}"
            value, _ = decode(response.content)
            return None if value.get("OK") else value.get("Message")

    results.append(_timedLoop("dirac", diracCall, seconds, serverPid))

    from TornadoServices.Security.TLS import makeClientContext

    shared = makeClientContext(caDir, certFile=proxy)
    parts = urlsplit(url)

    def rawCall() -> Optional[str]:
        try:
            openConnection(shared, parts.port or 443, parts.path).close()
        except (OSError, ssl.SSLError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    results.append(_timedLoop("handshake", rawCall, seconds, serverPid))
    queue.put(results)


def measureClientRates(env: dict[str, str], url: str, serverPid: int, seconds: float) -> list[RateResult]:
    """Row (e) in a fresh spawned process (so the pool starts empty); ``seconds`` per style."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    proc = context.Process(target=_clientRateMain, args=(queue, env, url, serverPid, seconds), daemon=True)
    proc.start()
    try:
        return queue.get(timeout=3 * seconds + 120)
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.terminate()


# ---------------------------------------------------------------------------------------------------------
# (f) idle connections
def exchange(sock: ssl.SSLSocket, port: int, path: str, fields: Sequence[tuple[str, str]] = PING_FIELDS) -> tuple[int, bytes]:
    """One keep-alive HTTP/1.1 form POST on ``sock``; return the status and the (Content-Length) body."""
    body = urlencode(list(fields)).encode()
    sock.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: localhost:{port}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection before answering")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection in the middle of its answer")
        rest += chunk
    return status, rest[:length]


def openConnection(context: ssl.SSLContext, port: int, path: str) -> ssl.SSLSocket:
    """A TLS connection to 127.0.0.1:``port`` on which one ``ping`` was answered; left open."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as urllib3 does: no Nagle stall after the handshake
    sock = context.wrap_socket(raw, server_hostname="localhost")
    try:
        status, body = exchange(sock, port, path)
    except BaseException:
        sock.close()
        raise
    if status != 200:
        sock.close()
        raise ConnectionError(f"HTTP {status} from 127.0.0.1:{port}{path}: {body[:200]!r}")
    return sock


def _holderMain(pipe: Any, env: dict[str, str], port: int, path: str, count: int) -> None:
    """Worker of row (f): open ``count`` connections, report, hold them until told to close."""
    os.environ.update(env)
    raiseFileLimit()
    from TornadoServices.Security.TLS import makeClientContext

    context = makeClientContext(env["X509_CERT_DIR"], certFile=env["X509_USER_PROXY"])
    sockets = []
    error = ""
    try:
        for _ in range(count):
            sockets.append(openConnection(context, port, path))
    except (OSError, ssl.SSLError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    pipe.send((len(sockets), error))
    pipe.recv()
    for sock in sockets:
        sock.close()
    pipe.send("closed")


@dataclass
class IdleResult:
    """Server memory with ``opened`` idle keep-alive connections."""

    target: str
    opened: int
    rssBeforeKB: int
    rssAfterKB: int
    serverFDs: int
    seconds: float
    error: str = ""

    @property
    def kbPerConnection(self) -> float:
        return (self.rssAfterKB - self.rssBeforeKB) / self.opened if self.opened else float("nan")


def measureIdleConnections(
    target: str, env: dict[str, str], serverPid: int, port: int, path: str, total: int = 1000, processes: int = 4
) -> IdleResult:
    """Open ``total`` idle mTLS connections to the server from ``processes`` processes; RSS before and after."""
    raiseFileLimit()
    from TornadoServices.Security.TLS import makeClientContext

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        context = makeClientContext(env["X509_CERT_DIR"], certFile=env["X509_USER_PROXY"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    for sock in [openConnection(context, port, path) for _ in range(20)]:  # first-connection costs, then closed
        sock.close()
    time.sleep(1.0)
    before = residentKB(serverPid)
    started = time.monotonic()
    spawn = multiprocessing.get_context("spawn")
    holders = []
    share, extra = divmod(total, processes)
    for index in range(processes):
        parentEnd, childEnd = spawn.Pipe()
        count = share + (1 if index < extra else 0)
        proc = spawn.Process(target=_holderMain, args=(childEnd, env, port, path, count), daemon=True)
        proc.start()
        holders.append((proc, parentEnd))
    opened = 0
    errors = []
    for proc, pipe in holders:
        if not pipe.poll(300):
            errors.append("a connection holder did not report within 300 s")
            continue
        count, error = pipe.recv()
        opened += count
        if error:
            errors.append(error)
    seconds = time.monotonic() - started
    time.sleep(1.0)
    after = residentKB(serverPid)
    fds = openFiles(serverPid)
    for proc, pipe in holders:
        try:
            pipe.send("close")
            pipe.poll(30) and pipe.recv()
        except (OSError, EOFError):
            pass
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
    return IdleResult(target, opened, before, after, fds, seconds, "; ".join(errors[:2]))
