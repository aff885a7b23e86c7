"""Per-connection credentials: computed once per stream, never shared, decisions keyed by configuration generation."""
from __future__ import annotations

import time

from TornadoServices.Core import DErrno
from TornadoServices.Security import DevPKI
from TornadoServices.Server.private import Credentials
from TornadoServices.Server.private.Credentials import (
    ConnectionCredentials,
    getConnectionCredentials,
    orderCredentials,
    publicCredentials,
)


class FakeStream:
    """Stands in for an SSLIOStream: only ``socket`` is looked at."""

    def __init__(self, socket=None) -> None:
        self.socket = socket


def test_no_chain_is_a_certificate_error():
    state = ConnectionCredentials.fromDERChain([])
    assert state.credDict is None
    assert state.error["Errno"] == DErrno.ECERTFIND


def test_unreadable_chain_is_a_read_error():
    state = ConnectionCredentials.fromDERChain([b"not DER"])
    assert state.credDict is None
    assert state.error["Errno"] == DErrno.ECERTREAD


def test_proxy_chain_credentials(cs):
    ca = DevPKI.CertificateAuthority()
    user = ca.issueUser()
    proxy = DevPKI.makeProxy(user, group="dirac_admin", lifetime=3600)
    state = ConnectionCredentials.fromDERChain(proxy.derList())
    creds = state.credDict
    assert creds["DN"] == user.dn and creds["isProxy"] is True
    assert creds["group"] == "dirac_admin"
    assert "VO" not in creds  # added with the authorisation decision, which follows configuration changes
    assert creds["x509Chain"] is not None
    assert creds["isIndependentProxy"] is False
    assert 0 < state.expiresAt - time.time() <= 3600


def test_independent_proxy_is_flagged_on_the_server_side_only(cs):
    ca = DevPKI.CertificateAuthority()
    proxy = DevPKI.makeProxy(ca.issueUser(), independent=True, group="dirac_user")
    creds = ConnectionCredentials.fromDERChain(proxy.derList()).credDict
    assert creds["isIndependentProxy"] is True and creds["isLimitedProxy"] is False
    shown = publicCredentials(creds)
    assert "isIndependentProxy" not in shown and "x509Chain" not in shown
    assert shown["DN"] == creds["DN"]


def test_credentials_are_cached_per_stream(monkeypatch):
    calls = []

    def fakeChain(sock):
        calls.append(sock)
        return []

    monkeypatch.setattr(Credentials, "getVerifiedChainDER", fakeChain)
    first, second = FakeStream("a"), FakeStream("b")
    assert getConnectionCredentials(first) is getConnectionCredentials(first)
    assert getConnectionCredentials(second) is not getConnectionCredentials(first)
    assert calls == ["a", "b"]


def test_auth_cache_follows_generation():
    state = ConnectionCredentials({"DN": "x"}, None, time.time() + 60)
    key = ("S/C", "m", None)
    state.storeAuth(key, 7, True, {"DN": "x"})
    assert state.cachedAuth(key, 7) == (True, {"DN": "x"})
    assert state.cachedAuth(key, 8) is None
    assert state.cachedAuth(("S/C", "other", None), 7) is None


def test_auth_cache_is_bounded():
    state = ConnectionCredentials({"DN": "x"}, None, time.time() + 60)
    for i in range(1000):
        state.storeAuth(("S/C", f"m{i}", None), 1, True, {})
    assert len(state.authCache) <= 256


def test_order_follows_dirac():
    ordered = orderCredentials({"username": "u", "DN": "d", "zzz": 1, "subject": "s", "group": "g"})
    assert list(ordered) == ["subject", "DN", "group", "username", "zzz"]
