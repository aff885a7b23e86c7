"""Fixtures of the unit suites."""
from __future__ import annotations

import pytest

from TornadoServices.Client.private.TornadoBaseClient import resetBannedURLs, setDefaultTransport
from TornadoServices.ConfigurationSystem.Client.Config import gConfig


@pytest.fixture
def mockClientEnvironment(tmp_path, monkeypatch):
    """Empty configuration, no bans, a proxy file and a CA dir the client can find; default transport restored."""
    gConfig.reset()
    resetBannedURLs()
    proxy = tmp_path / "proxy.pem"
    proxy.write_text("not parsed by the mock transport")
    cadir = tmp_path / "certificates"
    cadir.mkdir()
    monkeypatch.setenv("X509_USER_PROXY", str(proxy))
    monkeypatch.delenv("GRID_PROXY_FILE", raising=False)
    monkeypatch.setenv("X509_CERT_DIR", str(cadir))
    yield
    setDefaultTransport(None)
    gConfig.reset()
    resetBannedURLs()
