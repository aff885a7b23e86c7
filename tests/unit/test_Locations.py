"""Locations: DIRAC's search order for host certificate, proxy and CAs, and the descriptions used in errors."""
from __future__ import annotations

import os

import pytest

import TornadoServices
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.Security import Locations

ENV = ["DIRAC_X509_HOST_CERT", "DIRAC_X509_HOST_KEY", "GRID_PROXY_FILE", "X509_USER_PROXY", "X509_CERT_DIR", "X509_USER_CERT", "X509_USER_KEY"]


@pytest.fixture(autouse=True)
def clean(monkeypatch, tmp_path):
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(TornadoServices, "rootPath", str(tmp_path / "root"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    gConfig.reset()
    yield
    gConfig.reset()


def touch(path) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fd:
        fd.write("x")
    return str(path)


def test_host_certificate_from_environment_first(tmp_path, monkeypatch):
    cert, key = touch(tmp_path / "a" / "c.pem"), touch(tmp_path / "a" / "k.pem")
    touch(tmp_path / "root" / "etc" / "grid-security" / "hostcert.pem")
    touch(tmp_path / "root" / "etc" / "grid-security" / "hostkey.pem")
    monkeypatch.setenv("DIRAC_X509_HOST_CERT", cert)
    monkeypatch.setenv("DIRAC_X509_HOST_KEY", key)
    assert Locations.getHostCertificateAndKeyLocation() == (cert, key)
    monkeypatch.setenv("DIRAC_X509_HOST_KEY", str(tmp_path / "missing.pem"))  # ignored when missing
    assert Locations.getHostCertificateAndKeyLocation() == (cert, str(tmp_path / "root" / "etc" / "grid-security" / "hostkey.pem"))


def test_host_certificate_from_cs_options(tmp_path):
    cert, key = touch(tmp_path / "cs" / "hc.pem"), touch(tmp_path / "cs" / "hk.pem")
    gConfig.setOptionValue("/DIRAC/Security/CertFile", cert)
    gConfig.setOptionValue("/DIRAC/Security/KeyFile", key)
    assert Locations.getHostCertificateAndKeyLocation() == (cert, key)


def test_host_certificate_from_specific_location(tmp_path):
    cert, key = touch(tmp_path / "svc" / "c.pem"), touch(tmp_path / "svc" / "k.pem")
    gConfig.setOptionValue("/Systems/Framework/Services/Dummy/CertFile", cert)
    gConfig.setOptionValue("/Systems/Framework/Services/Dummy/KeyFile", key)
    assert Locations.getHostCertificateAndKeyLocation("/Systems/Framework/Services/Dummy") == (cert, key)
    assert Locations.getHostCertificateAndKeyLocation() is False


def test_host_certificate_prefixes_and_grid_security_dirs(tmp_path):
    grid = tmp_path / "grid"
    gConfig.setOptionValue("/DIRAC/Security/Grid-Security", str(grid))
    touch(tmp_path / "root" / "etc" / "grid-security" / "servercert.pem")
    touch(tmp_path / "root" / "etc" / "grid-security" / "serverkey.pem")
    touch(grid / "hostcert.pem")
    touch(grid / "hostkey.pem")
    # the prefix loop is outermost: server* in <rootPath> wins over host* in Grid-Security
    cert, key = Locations.getHostCertificateAndKeyLocation()
    assert cert.endswith("root/etc/grid-security/servercert.pem") and key.endswith("serverkey.pem")
    os.unlink(tmp_path / "root" / "etc" / "grid-security" / "servercert.pem")
    cert, key = Locations.getHostCertificateAndKeyLocation()
    assert cert == str(grid / "hostcert.pem") and key.endswith("serverkey.pem")


def test_host_certificate_missing_is_described():
    assert Locations.getHostCertificateAndKeyLocation() is False
    text = Locations.describeHostCertificateSearch()
    assert "$DIRAC_X509_HOST_CERT (not set)" in text and "/DIRAC/Security/CertFile (not set)" in text
    assert "hostcert.pem (no such file)" in text and "tornado-certs" in text


def test_proxy_search_order(tmp_path, monkeypatch):
    uid = os.getuid()
    while os.path.exists(f"/tmp/x509up_u{uid}"):  # a real proxy on this machine: look for another uid's
        uid += 100000
    monkeypatch.setattr(Locations.os, "getuid", lambda: uid)
    assert Locations.getProxyLocation() is False
    userProxy, gridProxy = touch(tmp_path / "up"), touch(tmp_path / "gp")
    monkeypatch.setenv("X509_USER_PROXY", userProxy)
    assert Locations.getProxyLocation() == userProxy
    monkeypatch.setenv("GRID_PROXY_FILE", gridProxy)
    assert Locations.getProxyLocation() == gridProxy
    monkeypatch.setenv("GRID_PROXY_FILE", str(tmp_path / "missing"))
    assert Locations.getProxyLocation() == userProxy
    link = tmp_path / "link"
    link.symlink_to(userProxy)
    monkeypatch.setenv("X509_USER_PROXY", str(link))
    assert Locations.getProxyLocation() == os.path.realpath(userProxy)


def test_proxy_search_description(tmp_path, monkeypatch):
    monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "nope"))
    text = Locations.describeProxySearch()
    assert text.startswith("proxy searched in: $GRID_PROXY_FILE (not set), ")
    assert f"$X509_USER_PROXY={tmp_path / 'nope'} (no such file)" in text
    assert f"/tmp/x509up_u{os.getuid()}" in text
    assert text.endswith("Set X509_USER_PROXY or run tornado-proxy-init")


def test_default_proxy_location(monkeypatch):
    assert Locations.getDefaultProxyLocation() == f"/tmp/x509up_u{os.getuid()}"
    monkeypatch.setenv("X509_USER_PROXY", "/somewhere/proxy")
    assert Locations.getDefaultProxyLocation() == "/somewhere/proxy"


def test_ca_search_order(tmp_path, monkeypatch):
    rootCAs = tmp_path / "root" / "etc" / "grid-security" / "certificates"
    rootCAs.mkdir(parents=True)
    expected = "/etc/grid-security/certificates" if os.path.isdir("/etc/grid-security/certificates") else False
    monkeypatch.setattr(TornadoServices, "rootPath", str(tmp_path / "elsewhere"))
    assert Locations.getCAsLocation() == expected
    monkeypatch.setattr(TornadoServices, "rootPath", str(tmp_path / "root"))
    assert Locations.getCAsLocation() == str(rootCAs)
    monkeypatch.setenv("X509_CERT_DIR", str(tmp_path / "not-checked"))
    assert Locations.getCAsLocation() == str(tmp_path / "not-checked")
    caLocation = tmp_path / "calocation"
    caLocation.mkdir()
    gConfig.setOptionValue("/DIRAC/Security/CALocation", str(caLocation))
    assert Locations.getCAsLocation() == str(caLocation)
    grid = tmp_path / "grid"
    gConfig.setOptionValue("/DIRAC/Security/Grid-Security", str(grid))
    assert Locations.getCAsLocation() == str(caLocation)  # Grid-Security/certificates must be a directory
    (grid / "certificates").mkdir(parents=True)
    assert Locations.getCAsLocation() == str(grid / "certificates")


def test_ca_search_description(monkeypatch, tmp_path):
    monkeypatch.setenv("X509_CERT_DIR", str(tmp_path / "cas"))
    text = Locations.describeCASearch()
    assert f"$X509_CERT_DIR={tmp_path / 'cas'} (no such directory)" in text
    assert "/DIRAC/Security/CALocation (not set)" in text
    assert "Set X509_CERT_DIR" in text


def test_user_certificate_for_proxy_creation(tmp_path, monkeypatch):
    assert Locations.getUserCertificateAndKeyLocation() is False
    assert "~/.globus" not in Locations.describeUserCertificateSearch()  # paths are expanded
    cert, key = touch(tmp_path / "home" / ".globus" / "usercert.pem"), touch(tmp_path / "home" / ".globus" / "userkey.pem")
    assert Locations.getUserCertificateAndKeyLocation() == (cert, key)
    other = touch(tmp_path / "other.pem")
    monkeypatch.setenv("X509_USER_CERT", other)
    assert Locations.getUserCertificateAndKeyLocation() == (other, key)
