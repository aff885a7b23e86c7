"""Transport building blocks: the error tree, TLS settings as pool keys, the session registry."""
from __future__ import annotations

import inspect
import os
import ssl

import pytest

from TornadoServices.Client.private import errors as E
from TornadoServices.Client.private.pool import SessionRegistry, buildSSLContext
from TornadoServices.Client.private.transport import TLSSettings


def test_error_tree_is_written_out_and_exported():
    classes = {name for name, obj in vars(E).items() if inspect.isclass(obj) and issubclass(obj, E.RPCError)}
    assert classes == set(E.__all__)
    for name in classes:
        assert f" {name} " in E.__doc__ or f"── {name}" in E.__doc__, f"{name} missing from the tree diagram"


def test_delivery_semantics_of_the_tree():
    notDelivered = [E.ConnectError, E.DNSError, E.ConnectTimeout, E.TLSError, E.ServerCertificateUntrusted,
                    E.HostnameMismatch, E.ClientCertificateRejected, E.ServiceNotFound]
    mayHaveRun = [E.ReadTimeout, E.ConnectionLost, E.MalformedResponse, E.UndecodableBody, E.BadStatus,
                  E.AccessDenied, E.MethodNotImplemented]
    for cls in notDelivered:
        assert cls.retryElsewhere and not cls.mayHaveRun, cls
    for cls in mayHaveRun:
        assert cls.mayHaveRun and not cls.retryElsewhere, cls


def test_pool_key_follows_file_content_and_hides_pem(tmp_path):
    proxy = tmp_path / "proxy.pem"
    proxy.write_text("one")
    first = TLSSettings(certFile=str(proxy), caPath=str(tmp_path))
    key1 = first.poolKey()
    proxy.write_text("renewed")
    os.utime(proxy, ns=(1, 2))
    assert first.poolKey() != key1 and first.stableKey() == TLSSettings(certFile=str(proxy), caPath=str(tmp_path)).stableKey()
    inMemory = TLSSettings(pemData=b"-----BEGIN PRIVATE KEY-----secret")
    assert "secret" not in repr(inMemory) and "secret" not in repr(inMemory.poolKey())
    assert TLSSettings(pemData=b"a").poolKey() != TLSSettings(pemData=b"b").poolKey()


def _settings(version):
    return TLSSettings(skipCACheck=True, minVersion=version)


def test_registry_reuses_sessions_and_closes_the_least_recently_used():
    registry = SessionRegistry(maxSessions=2)
    a = registry.get(_settings("TLSv1_2"))
    assert registry.get(_settings("TLSv1_2")) is a
    b = registry.get(_settings("TLSv1_3"))
    registry.get(_settings("TLSv1_2"))
    c = registry.get(_settings(None))
    assert len(registry) == 2
    assert registry.get(_settings("TLSv1_2")) is a and registry.get(_settings(None)) is c
    assert registry.get(_settings("TLSv1_3")) is not b
    registry.closeAll()
    assert len(registry) == 0


def test_sessions_ignore_the_environment():
    session = SessionRegistry().session(_settings(None))
    assert session.trust_env is False and session.proxies == {}


def test_unusable_credential_is_a_credential_error(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(E.CredentialError, match="Cannot use the proxy .*junk.pem"):
        buildSSLContext(TLSSettings(certFile=str(junk), skipCACheck=True))
    with pytest.raises(E.CredentialError, match="in-memory proxy"):
        buildSSLContext(TLSSettings(pemData=b"garbage", skipCACheck=True))


def test_skip_ca_check_context_verifies_nothing():
    context = buildSSLContext(TLSSettings(skipCACheck=True))
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
