"""Behind HAProxy: TLS passthrough in front of two servers (a backend killed under load; PROXY protocol headers
naming the client), and a front end that terminates TLS and forwards the verified client chain in headers
(trusted-proxy mode, spoofing refused)."""
from __future__ import annotations

import base64
import signal
import threading
import time
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from faultkit import (
    clientContext,
    decodeBody,
    freePort,
    passthroughConfig,
    readResponse,
    rpcRequest,
    terminatingConfig,
    tlsConnect,
    waitUntil,
)
from FaultProbeHandler import readJournal

CALL_TIMEOUT = 20.0


def _client(url: str, timeout: float = CALL_TIMEOUT, proxy: str = ""):
    from TornadoServices.Client.TornadoClient import TornadoClient

    kwargs = {"proxyLocation": proxy} if proxy else {}
    return TornadoClient(url, timeout=timeout, **kwargs)


class Load:
    """Threads calling ``record`` through one URL until stopped; every call's outcome and timing kept."""

    def __init__(self, url: str, threads: int = 4, delay: float = 0.02) -> None:
        self.url = url
        self.delay = delay
        self.results: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(index,), daemon=True) for index in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self, index: int) -> None:
        number = 0
        while not self._stop.is_set():
            callId = f"lb-{index}-{number}"
            number += 1
            started = time.monotonic()
            result = _client(self.url).record(callId, self.delay)
            with self._lock:
                self.results.append(
                    {"callId": callId, "ok": result["OK"], "message": result.get("Message", ""), "started": started, "ended": time.monotonic()}
                )

    def count(self, since: float = 0.0, ok: bool = True) -> int:
        with self._lock:
            return sum(1 for r in self.results if r["ok"] is ok and r["started"] >= since)

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        for thread in self._threads:
            thread.join(2 * CALL_TIMEOUT + 10)
            assert not thread.is_alive(), "a client call hangs"
        return self.results


def test_passthrough_clients_keep_working_when_a_backend_dies(launch, haproxy, faultenv, tmp_path):
    journal = str(tmp_path / "journal.txt")
    first, second = launch(journal=journal), launch(journal=journal)
    port = freePort()
    proxy = haproxy(passthroughConfig(port, [first.port, second.port]))
    url = f"https://localhost:{port}/Faults/Probe"
    seen: set[int] = set()

    def bothBackendsServe() -> bool:  # new connections, balanced round robin once both pass their checks
        try:
            seen.add(_freshPid(url, faultenv))
        except OSError:
            pass
        return seen == {first.pid, second.pid}

    waitUntil(bothBackendsServe, "HAProxy to pass connections to both servers")
    load = Load(url)
    waitUntil(lambda: {p for _, p in readJournal(journal)} >= {first.pid, second.pid} and load.count() >= 40, "calls through both backends")
    first.signal(signal.SIGKILL)
    killed = time.monotonic()
    waitUntil(lambda: load.count(since=killed + 1.0) >= 60, "calls after the kill")
    results = load.stop()
    proxy.signal(signal.SIGTERM)

    late = [r for r in results if r["started"] >= killed + 1.0]
    assert late and all(r["ok"] for r in late), [r for r in late if not r["ok"]][:3]  # HAProxy retried the refused connects
    for result in results:
        assert result["ended"] - result["started"] < 2 * CALL_TIMEOUT + 5
        if not result["ok"]:  # only calls in flight at kill time may fail, and they say so
            assert result["started"] < killed + 1.0 and result["message"], result
    executed: dict[str, int] = {}
    for callId, _ in readJournal(journal):
        executed[callId] = executed.get(callId, 0) + 1
    assert max(executed.values()) == 1  # nothing ran twice
    assert all(executed.get(r["callId"]) == 1 for r in results if r["ok"])
    assert {pid for callId, pid in readJournal(journal) if callId in {r["callId"] for r in late}} == {second.pid}


def _freshPid(url: str, pki: Any) -> int:
    """Pid of the server behind ``url`` for a call on a new connection (no pooling)."""
    import requests

    response = requests.post(url, data={"method": "pid", "args": "[]"}, cert=pki.proxy, verify=pki.caFile, timeout=10)
    return response.json()["Value"]


def _whoami(port: int, pki: Any, credential: Any, headers: dict[str, str] = None, source: str = "127.0.0.1") -> tuple[int, Any]:  # type: ignore[assignment]
    with tlsConnect(port, clientContext(pki, credential), source=source) as sock:
        sock.sendall(rpcRequest("/Framework/Dummy", "whoami", headers=headers))
        answer = readResponse(sock)
    assert answer is not None, "no answer"
    return answer[0], decodeBody(answer[2])


def _headersOf(credentialFile: str) -> dict[str, str]:
    """Forwarding headers as HAProxy makes them, for the chain in ``credentialFile``."""
    from cryptography import x509

    with open(credentialFile, "rb") as fd:
        certs = x509.load_pem_x509_certificates(fd.read())
    ders = [c.public_bytes(Encoding.DER) for c in certs]
    return {
        "X-SSL-CERT": base64.b64encode(ders[0]).decode(),
        "X-SSL-CHAIN": base64.b64encode(b"".join(ders[1:])).decode(),
        "X-Ssl_client_verify": "SUCCESS",
    }


def test_terminating_front_end_forwards_the_verified_chain(launch, haproxy, faultenv):
    server = launch(tornado={"TrustedProxies": "127.0.0.1"})
    port = freePort()
    haproxy(terminatingConfig(port, server.port, faultenv))
    waitUntil(lambda: _tryWhoami(port, faultenv, faultenv.user), "HAProxy to forward calls")

    status, result = _whoami(port, faultenv, faultenv.user)
    assert status == 200 and result["OK"], result
    identity = result["Value"]
    assert identity["DN"] == faultenv.userDN and identity["isProxy"] is False and identity["username"] == "devuser"
    assert "forwarded client certificate" not in server.text

    # a header the client sends itself is replaced by HAProxy: the identity stays the TLS one
    status, result = _whoami(port, faultenv, faultenv.user, headers=_headersOf(faultenv.user2Proxy))
    assert result["Value"]["DN"] == faultenv.userDN

    # HAProxy trusts one more CA and loads no CRL; the server verifies the chain itself and refuses
    refused = (((faultenv.foreignCert, faultenv.foreignKey), "unable to get issuer certificate"), ((faultenv.revokedCert, faultenv.revokedKey), "certificate revoked"))
    for credential, reason in refused:
        status, result = _whoami(port, faultenv, credential)
        assert status == 401 and reason in result["Message"], result
        assert "forwarded client certificate from 127.0.0.1 rejected" in result["Message"]

    # HAProxy itself refuses RFC 3820 proxies (docs/operations.md): proxies need TLS passthrough
    assert not _tryWhoami(port, faultenv, faultenv.proxy)

    # two identities at once through HAProxy's shared backend connections: never mixed up
    mixups: list[Any] = []

    def hammer(credential: Any, dn: str) -> None:
        for _ in range(15):
            code, answer = _whoami(port, faultenv, credential)
            if code != 200 or answer["Value"]["DN"] != dn:
                mixups.append((code, answer))

    threads = [
        threading.Thread(target=hammer, args=(faultenv.user, faultenv.userDN)),
        threading.Thread(target=hammer, args=(faultenv.user2, faultenv.user2DN)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not mixups, mixups[:3]


def _tryWhoami(port: int, pki: Any, credential: Any) -> bool:
    try:
        return _whoami(port, pki, credential)[0] == 200
    except (OSError, AssertionError):  # refused, or closed without an answer
        return False


def test_forwarding_headers_from_untrusted_peers_are_ignored(launch, faultenv):
    server = launch(tornado={"TrustedProxies": "127.0.0.1"})
    spoofed = _headersOf(faultenv.user2Proxy)
    # from 127.0.0.2 (not a trusted front end), without a certificate: the header does not make an identity
    status, result = _whoami(server.port, faultenv, None, headers=spoofed, source="127.0.0.2")
    assert status == 401 and "no certificate" in result["Message"]
    # with its own proxy: the caller stays itself
    status, result = _whoami(server.port, faultenv, faultenv.proxy, headers=spoofed, source="127.0.0.2")
    assert status == 200 and result["Value"]["DN"] == faultenv.userDN
    for _ in range(3):
        _whoami(server.port, faultenv, faultenv.proxy, headers=spoofed, source="127.0.0.2")
    # logged once (rate-limited), counted every time
    server.waitFor("Forwarded certificate header ignored")
    assert server.text.count("Forwarded certificate header ignored") == 1
    assert "from 127.0.0.2, which is not in /Systems/Tornado/TrustedProxies" in server.text
    # a trusted peer that does not vouch for the client (no SUCCESS) gets a 401, not the claimed identity
    unverified = dict(spoofed, **{"X-Ssl_client_verify": "NONE"})
    status, result = _whoami(server.port, faultenv, faultenv.proxy, headers=unverified)
    assert status == 401 and "did not verify the client certificate" in result["Message"]
    # and from the trusted address the same headers are honoured only after the server verified them
    status, result = _whoami(server.port, faultenv, None, headers=spoofed)
    assert status == 200 and result["Value"]["DN"] == faultenv.user2DN


def _pidFrom(port: int, pki: Any, source: str) -> int:
    """Pid of the server that answers ``pid`` on a new connection from ``source`` through the balancer."""
    with tlsConnect(port, clientContext(pki, pki.proxy), source=source, timeout=CALL_TIMEOUT) as sock:
        sock.sendall(rpcRequest("/Faults/Probe", "pid"))
        answer = readResponse(sock)
    assert answer is not None and answer[0] == 200, answer
    return decodeBody(answer[2])["Value"]


def test_passthrough_with_proxy_protocol_names_the_client(launch, haproxy, faultenv):
    """One backend gets HAProxy's send-proxy-v2 (checks too): it logs the client's address, the other HAProxy's."""
    plain = launch()
    proxied = launch(tornado={"ProxyProtocol": "127.0.0.1/32", "ProxyProtocolTimeout": 5})
    port = freePort()
    haproxy(passthroughConfig(port, [plain.port, proxied.port], serverOptions={1: "send-proxy-v2 check-send-proxy"}))
    client = "127.0.0.2"  # HAProxy reaches the servers from 127.0.0.1
    seen: set[int] = set()

    def bothServe() -> bool:
        try:
            seen.add(_pidFrom(port, faultenv, client))
        except (OSError, AssertionError):
            pass
        return seen == {plain.pid, proxied.pid}

    waitUntil(bothServe, "HAProxy to pass connections to both servers")
    for _ in range(4):
        _pidFrom(port, faultenv, client)
    proxied.waitFor(r"Returning response \(127\.0\.0\.2:\d+\)\[dirac_user:devuser\] Faults/Probe\.pid OK 200", count=2)
    plain.waitFor(r"Returning response \(127\.0\.0\.1:\d+\)\[dirac_user:devuser\] Faults/Probe\.pid OK 200", count=2)
    assert "Returning response (127.0.0.1:" not in proxied.text  # never the balancer's address for a relayed call
    assert "127.0.0.2" not in plain.text  # without the header the client is invisible behind HAProxy
    # HAProxy's checks (PROXY header with the LOCAL command) and relayed connections are all accepted
    assert "PROXY header refused" not in proxied.text, proxied.text[-3000:]
    assert "SSL Error" not in proxied.text
    # /metrics straight from 127.0.0.2 (not the balancer: no header expected): no connection was refused
    with tlsConnect(proxied.port, clientContext(faultenv), source=client) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = readResponse(sock)
    assert answer is not None and answer[0] == 200, answer
    assert b"tornadoservices_tls_handshake_failures_total{" not in answer[2], answer[2].decode()
