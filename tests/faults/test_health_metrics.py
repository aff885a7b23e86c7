"""/healthz, /readyz and /metrics of a real server (in this process): no client certificate needed for the
probes, MetricsAuthorization rules, and every metric family moving with the traffic that should move it."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from TornadoServices.Server.private.Stats import LATENCY_BUCKETS

from faultkit import callCount, clientContext, decodeBody, faultCFG, readResponse, shared, tlsConnect, waitUntil

PROBE_MAX_THREADS = """
Systems
{
  Faults
  {
    Services
    {
      Probe
      {
        MaxThreads = 1
      }
    }
  }
}
"""


@pytest.fixture
def inProcess(faultpki, tmp_path: Path):
    """Start TornadoServers (Faults/Probe and Framework/Dummy) on 127.0.0.1 in background threads."""
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig
    from TornadoServices.Server.TornadoServer import TornadoServer

    servers = []

    def start(extra: str = "", **options):
        shared.loadCS(shared.makeServerCFG(faultpki.base))
        assert gConfig.loadCFGFromString(faultCFG(str(tmp_path / "journal.txt")))["OK"]
        if extra:
            assert gConfig.loadCFGFromString(extra)["OK"]
        server = TornadoServer(services=["Faults/Probe", "Framework/Dummy"], port=0, address="127.0.0.1", **options)
        server.startInThread()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    gConfig.reset()


def _get(port: int, path: str, pki, cert=None, method: str = "GET") -> requests.Response:
    return requests.request(method, f"https://127.0.0.1:{port}{path}", cert=cert, verify=pki.caFile, timeout=30)


def _rawGet(port: int, path: str, pki, cert=None, source: str = "127.0.0.1") -> tuple[int, bytes]:
    with tlsConnect(port, clientContext(pki, cert), source=source) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        status, _, body = readResponse(sock)
    return status, body


def _samples(server, pki) -> dict[str, float]:
    response = _get(server.actualPort, "/metrics", pki)
    assert response.status_code == 200, response.text
    return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2]) for line in response.text.splitlines() if line and not line.startswith("#")}


def test_health_and_readiness_need_no_certificate(inProcess, faultpki, tmp_path):
    server = inProcess()
    port = server.actualPort
    requestsBefore = server.stats.requests
    alive = _get(port, "/healthz", faultpki)
    assert alive.status_code == 200 and alive.json() == {"OK": True, "Value": "alive"}
    ready = _get(port, "/readyz", faultpki)
    assert ready.status_code == 200 and ready.json()["Value"]["services"] == ["Faults/Probe", "Framework/Dummy"]
    assert _get(port, "/healthz", faultpki, method="HEAD").status_code == 200
    refused = _get(port, "/healthz", faultpki, method="POST")
    assert refused.status_code == 405 and refused.json()["OK"] is False and "use GET" in refused.json()["Message"]
    server.draining = True  # what a stop sets first (then it stops listening: here the port stays open)
    for runtime in server.runtimes.values():
        runtime.draining = True
    try:
        notReady = _get(port, "/readyz", faultpki)
        assert notReady.status_code == 503 and "draining" in notReady.json()["Message"]
        assert _get(port, "/healthz", faultpki).status_code == 200  # alive while draining
        refused = requests.post(
            f"https://127.0.0.1:{port}/Faults/Probe", data={"method": "record", "args": '["while-draining", 0]'},
            cert=faultpki.proxy, verify=faultpki.caFile, timeout=30,
        )
        assert refused.status_code == 503 and refused.headers["Connection"] == "close"
        assert "shutting down: this call was not executed" in refused.json()["Message"]
        journal = tmp_path / "journal.txt"
        assert not journal.exists() or "while-draining" not in journal.read_text()
    finally:
        server.draining = False
        for runtime in server.runtimes.values():
            runtime.draining = False
    assert server.stats.probes == 5  # the POST is refused by Tornado before the handler runs
    # probes are not RPC requests; the refused call is (counted once its answer is out, hence the wait)
    waitUntil(lambda: server.stats.requests == requestsBefore + 1, "the refused call to be counted")


def test_metrics_authorization_rules(inProcess, faultpki):
    """Rules seen from loopback peers; remote peers are covered by tests/unit/test_server_Metrics.py."""
    server = inProcess(metricsAuthorization="authenticated")
    port = server.actualPort
    status, body = _rawGet(port, "/metrics", faultpki)
    assert status == 401 and "Valid certificate not found" in decodeBody(body)["Message"]
    assert _rawGet(port, "/metrics", faultpki, cert=faultpki.proxy)[0] == 200

    server.settings.metricsAuthorization = "ServiceAdministrator"
    status, body = _rawGet(port, "/metrics", faultpki, cert=faultpki.proxy)  # dirac_user: NormalUser only
    assert status == 403 and "MetricsAuthorization = ServiceAdministrator does not admit" in decodeBody(body)["Message"]
    assert _rawGet(port, "/metrics", faultpki, cert=faultpki.adminProxy)[0] == 200  # dirac_admin

    server.settings.metricsAuthorization = "loopback, ServiceAdministrator"
    assert _rawGet(port, "/metrics", faultpki, source="127.0.0.2")[0] == 200  # 127.0.0.0/8 needs no certificate

    server.settings.metricsAuthorization = "open"
    assert _rawGet(port, "/metrics", faultpki)[0] == 200
    assert server.stats.authFailures["metrics: not authorized"] == 1
    assert server.stats.authFailures["metrics: no certificate"] == 1


def test_every_metric_family_follows_the_traffic(inProcess, faultpki, caplog):
    server = inProcess(extra=PROBE_MAX_THREADS)
    port = server.actualPort
    url = f"https://127.0.0.1:{port}"

    def post(path: str, method: str, *args, cert=faultpki.proxy, headers=None) -> requests.Response:
        from TornadoServices.Core.Encoding import encode

        data = {"method": method, "args": encode(list(args))}
        return requests.post(url + path, data=data, cert=cert, verify=faultpki.caFile, headers=headers, timeout=30)

    for _ in range(3):
        assert post("/Faults/Probe", "pid").status_code == 200
    assert post("/Framework/Dummy", "hostOnly").status_code == 403
    assert post("/Faults/Probe", "pid", cert=None).status_code == 401
    assert post("/Faults/Probe", "noSuchMethod").status_code == 501
    assert post("/Faults/Probe", "record", "slow", 0.3).status_code == 200
    with pytest.raises(requests.exceptions.RequestException):
        requests.post(url + "/Faults/Probe", cert=faultpki.foreignProxy, verify=faultpki.caFile, timeout=30)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as plain:  # HTTP on the TLS port
        plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            plain.recv(100)
        except ConnectionResetError:
            pass
    with caplog.at_level("WARNING"):
        spoofed = {"X-SSL-CERT": "MIIB", "X-Ssl_client_verify": "SUCCESS"}
        assert post("/Faults/Probe", "pid", cert=None, headers=spoofed).status_code == 401  # header ignored

    def settled() -> dict:
        s = _samples(server, faultpki)
        failures = {k: v for k, v in s.items() if k.startswith("tornadoservices_tls_handshake_failures_total")}
        return s if sum(failures.values()) >= 2 else {}

    samples = waitUntil(settled, "both handshake failures to be counted")
    assert callCount(samples, "pid") == 3
    assert callCount(samples, "hostOnly", "403", "Framework/Dummy") == 1
    assert callCount(samples, "unknown", "401") == 2  # refused before the method is read
    assert callCount(samples, "unknown", "501") == 1  # a name it does not export is never a label
    assert samples['tornadoservices_auth_failures_total{reason="not authorized"}'] == 1
    assert samples['tornadoservices_auth_failures_total{reason="no certificate"}'] == 2
    assert samples['tornadoservices_tls_handshake_failures_total{reason="certificate verify failed: unable to get local issuer certificate"}'] == 1
    assert samples['tornadoservices_tls_handshake_failures_total{reason="http_request"}'] == 1
    assert samples["tornadoservices_untrusted_forwarded_headers_total"] == 1
    assert any("Forwarded certificate header ignored" in r.getMessage() for r in caplog.records)
    record = 'method="record",service="Faults/Probe"'
    took = samples[f"tornadoservices_call_duration_seconds_sum{{{record}}}"]
    assert took >= 0.3  # the call slept 0.3 s; how much longer it took depends on the machine
    assert samples[f'tornadoservices_call_duration_seconds_bucket{{le="0.25",{record}}}'] == 0
    for bound in LATENCY_BUCKETS:  # cumulative buckets: the one call counts in every bucket at or above it
        assert samples[f'tornadoservices_call_duration_seconds_bucket{{le="{bound!r}",{record}}}'] == (took <= bound)
    assert samples['tornadoservices_http_requests_total{status="200"}'] == 4

    # three slow calls on a one-thread service: one runs, two wait
    threads = [threading.Thread(target=post, args=("/Faults/Probe", "record", f"busy{i}", 1.0)) for i in range(3)]
    for thread in threads:
        thread.start()
    queue = 'tornadoservices_threadpool_queue_depth{service="Faults/Probe"}'
    busy = waitUntil(lambda: (s := _samples(server, faultpki))[queue] == 2 and s, "two calls waiting for the thread")
    assert busy["tornadoservices_calls_in_flight"] == 3
    assert busy['tornadoservices_threadpool_busy_threads{service="Faults/Probe"}'] == 1
    for thread in threads:
        thread.join(30)
    idle = waitUntil(lambda: (s := _samples(server, faultpki))["tornadoservices_calls_in_flight"] == 0 and s, "the calls to end")
    assert idle['tornadoservices_threadpool_queue_depth{service="Faults/Probe"}'] == 0
    assert idle['tornadoservices_resident_memory_bytes{worker="0"}'] > 1e6


def test_metrics_without_prometheus_client_say_what_to_install(inProcess, faultpki, monkeypatch):
    server = inProcess()
    monkeypatch.setitem(__import__("sys").modules, "prometheus_client", None)  # as if it were not installed
    response = _get(server.actualPort, "/metrics", faultpki)
    assert response.status_code == 501
    assert response.json()["OK"] is False
    assert "pip install 'TornadoServices[metrics]'" in response.json()["Message"]
    assert _get(server.actualPort, "/healthz", faultpki).status_code == 200


def test_in_flight_never_counts_probes(inProcess, faultpki):
    server = inProcess()
    for _ in range(3):
        _get(server.actualPort, "/metrics", faultpki)
    deadline = time.monotonic() + 10
    while server.stats.inFlight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.stats.inFlight == 0
    assert _samples(server, faultpki)["tornadoservices_calls_in_flight"] == 0
