"""/metrics on a keep-alive connection whose client proxy expires after the handshake: 401, as service calls."""
from __future__ import annotations

import datetime

import requests

from tests.conftest import waitFor
from TornadoServices.Core import DErrno
from TornadoServices.Core.Encoding import decode

#: proxy lifetimes tried in turn: the first call must happen before the proxy expires, however slow the machine
LIFETIMES = (4, 15, 60)


def _shortLivedProxy(pki, directory, lifetime: int) -> tuple[str, datetime.datetime]:
    from TornadoServices.Security import DevPKI

    user = pki.ca.issueUser(keyType="ec")  # devuser: a certificate of its own, same DN
    proxy = DevPKI.makeProxy(user, lifetime=lifetime, group="dirac_user", keyType="ec")
    return proxy.writeProxyFile(str(directory / f"short{lifetime}.pem")), proxy.cert.not_valid_after_utc


def test_metrics_refuses_a_proxy_expired_on_an_open_connection(running_server, pki, tmp_path):
    server = running_server.server
    assert server.settings.metricsAuthorization == "authenticated"  # the rule needs a certificate
    url = f"https://127.0.0.1:{running_server.port}/metrics"
    stats = running_server.stats
    with requests.Session() as session:
        for lifetime in LIFETIMES:
            proxy, notAfter = _shortLivedProxy(pki, tmp_path, lifetime)
            try:
                first = session.get(url, cert=proxy, verify=pki.caFile, timeout=60)
            except requests.exceptions.SSLError:  # expired before its handshake: try a longer lifetime
                continue
            if first.status_code == 200:
                break
            session.close()  # the chain expired between handshake and call: new connection, longer lifetime
        else:
            raise AssertionError(f"/metrics never answered 200 to a fresh proxy: {first.status_code} {first.text}")
        assert "tornadoservices_probes_total" in first.text
        accepted = stats.connectionsAccepted
        expiredBefore = stats.authFailures["certificate expired"]
        waitFor(lambda: datetime.datetime.now(datetime.timezone.utc) >= notAfter, "the proxy to expire", timeout=lifetime + 30)
        response = session.get(url, cert=proxy, verify=pki.caFile, timeout=60)  # same TLS connection
    assert stats.connectionsAccepted == accepted  # no new handshake: the connection stayed open
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/json")
    result = decode(response.text)[0]
    assert result["OK"] is False and result["Errno"] == DErrno.ENOAUTH
    assert "expired during this connection" in result["Message"]
    assert "CallStack" not in result  # as for service calls, the server's stack stays on the server
    # counted like a service call refused for the same reason
    assert stats.authFailures["certificate expired"] == expiredBefore + 1
    metrics = requests.get(url, cert=pki.proxy, verify=pki.caFile, timeout=60)
    assert metrics.status_code == 200
    assert 'tornadoservices_auth_failures_total{reason="certificate expired"}' in metrics.text
