"""Metrics plumbing without a server: who may read /metrics, handshake failure labels, and adding up workers."""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys

import pytest
from tornado.iostream import StreamClosedError

from TornadoServices.Core import DErrno
from TornadoServices.Server.private.Credentials import ConnectionCredentials
from TornadoServices.Server.private.Metrics import MetricsDirectory, handshakeFailureReason, metricsAccess, renderMetrics
from TornadoServices.Server.private.Stats import LATENCY_BUCKETS, ServerStats

NO_CERTIFICATE = ConnectionCredentials(None, {"OK": False, "Errno": DErrno.ECERTFIND, "Message": "no certificate"}, 0.0)


def _credentials(dn: str, group: str) -> ConnectionCredentials:
    return ConnectionCredentials({"DN": dn, "group": group, "isProxy": True, "isLimitedProxy": False}, None, 1e12)


def test_metrics_access_rules(cs, pki):
    user, admin = _credentials(pki.userDN, "dirac_user"), _credentials(pki.userDN, "dirac_admin")
    assert metricsAccess("open", "192.0.2.10", NO_CERTIFICATE) is None
    assert metricsAccess("loopback", "127.0.0.1", NO_CERTIFICATE) is None
    assert metricsAccess("loopback", "::1", NO_CERTIFICATE) is None
    assert metricsAccess("loopback", "::ffff:127.0.0.1", NO_CERTIFICATE) is None
    status, result = metricsAccess("loopback", "192.0.2.10", user)
    assert status == 403 and "loopback clients only" in result["Message"]
    status, result = metricsAccess("loopback, ServiceAdministrator", "192.0.2.10", NO_CERTIFICATE)
    assert status == 401 and result["Errno"] == DErrno.ECERTFIND
    assert metricsAccess("loopback, ServiceAdministrator", "192.0.2.10", user)[0] == 403
    assert metricsAccess("loopback, ServiceAdministrator", "192.0.2.10", admin) is None
    assert metricsAccess("authenticated", "192.0.2.10", user) is None
    assert metricsAccess("group:dirac_admin", "192.0.2.10", user)[0] == 403


def test_metrics_access_follows_the_server_proxy_settings(cs, pki):
    def proxy(**kind) -> ConnectionCredentials:
        return ConnectionCredentials({"DN": pki.userDN, "group": "dirac_user", "isProxy": True, **kind}, None, 1e12)

    limited, independent = proxy(isLimitedProxy=True), proxy(isLimitedProxy=False, isIndependentProxy=True)
    assert metricsAccess("authenticated", "192.0.2.10", limited)[0] == 403
    assert metricsAccess("authenticated", "192.0.2.10", limited, acceptLimitedProxies=True) is None
    assert metricsAccess("authenticated", "192.0.2.10", independent)[0] == 403
    assert metricsAccess("authenticated", "192.0.2.10", independent, acceptIndependentProxies=True) is None


def test_metrics_access_refuses_a_chain_expired_since_the_handshake(cs, pki):
    expired = ConnectionCredentials({"DN": pki.userDN, "group": "dirac_user", "isProxy": True, "isLimitedProxy": False}, None, 1.0)
    status, result = metricsAccess("authenticated", "192.0.2.10", expired)
    assert status == 401 and result["Errno"] == DErrno.ENOAUTH and "expired during this connection" in result["Message"]
    assert (result["Errno"], result["Message"]) == (expired.expiredError()["Errno"], expired.expiredError()["Message"])  # as service calls
    assert metricsAccess("loopback, ServiceAdministrator", "192.0.2.10", expired)[0] == 401
    # rules that need no certificate do not look at it
    assert metricsAccess("open", "192.0.2.10", expired) is None
    assert metricsAccess("loopback, authenticated", "127.0.0.1", expired) is None


def test_expired_error_is_none_before_the_end_of_the_chain():
    credentials = ConnectionCredentials({"DN": "/CN=x"}, None, 100.0)
    assert credentials.expiredError(now=99.5) is None
    assert credentials.expiredError(now=100.0)["OK"] is False


def test_handshake_failure_labels():
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "certificate has expired"
    assert handshakeFailureReason(StreamClosedError(real_error=verify)) == "certificate verify failed: certificate has expired"
    plain = ssl.SSLError(1, "[SSL: HTTP_REQUEST] http request")
    plain.reason = "HTTP_REQUEST"
    assert handshakeFailureReason(StreamClosedError(real_error=plain)) == "http_request"
    assert handshakeFailureReason(StreamClosedError()) == "closed by peer"
    assert handshakeFailureReason(ConnectionResetError()) == "connection reset"


def _state(pid: int, worker: int, calls: int, inFlight: int) -> dict:
    stats = ServerStats()
    for _ in range(calls):
        stats.recordCall("S/C", "m", 200, 0.002)
    stats.requests = calls
    stats.requestsByStatus[200] = calls
    stats.inFlight = inFlight
    state = json.loads(json.dumps(stats.snapshot()))
    state.update(pid=pid, worker=worker, threadPools={"S/C": {"busy": inFlight, "waiting": 0, "maxThreads": 4}})
    return state


def _deadPid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_workers_add_up_and_dead_workers_keep_their_counters(tmp_path):
    directory = MetricsDirectory(str(tmp_path))
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _deadPid()
        directory.write(_state(sibling.pid, 1, calls=5, inFlight=2))
        directory.write(_state(dead, 2, calls=7, inFlight=9))
        live, retired = directory.collect(_state(os.getpid(), 0, calls=3, inFlight=1))
        assert [s["worker"] for s in live] == [0, 1]
        assert retired["requests"] == 7 and "inFlight" not in retired  # gauges of the dead are gone
        directory.retire(dead)  # what the supervisor does when it reaps the worker
        assert not (tmp_path / f"worker-{dead}.json").exists()
        live2, retired2 = directory.collect(_state(os.getpid(), 0, calls=3, inFlight=1))
        assert retired2["requests"] == 7 and len(live2) == 2
        text = renderMetrics(live2, retired2)[0].decode()
    finally:
        sibling.kill()
        sibling.wait()
    assert 'tornadoservices_calls_total{method="m",service="S/C",status="200"} 15.0' in text
    assert "tornadoservices_calls_in_flight 3.0" in text  # 1 + 2, not the dead worker's 9
    assert 'tornadoservices_threadpool_max_threads{service="S/C"} 8.0' in text
    assert "tornadoservices_workers 2.0" in text
    bucket = LATENCY_BUCKETS.index(0.0025)
    assert f'tornadoservices_call_duration_seconds_bucket{{le="{LATENCY_BUCKETS[bucket]!r}",method="m",service="S/C"}} 15.0' in text
    assert 'tornadoservices_call_duration_seconds_bucket{le="0.001",method="m",service="S/C"} 0.0' in text


def test_record_call_buckets():
    stats = ServerStats()
    stats.recordCall("S/C", "m", 200, 0.0005)
    stats.recordCall("S/C", "m", 500, 100.0)
    sums, buckets, statuses = stats.calls[("S/C", "m")]
    assert buckets[0] == 1 and buckets[-1] == 1 and sum(buckets) == 2
    assert statuses == {200: 1, 500: 1}
    assert sums == pytest.approx(100.0005)
