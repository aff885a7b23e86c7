"""Fixtures of the fault suite: its PKI, server processes (``launch``), HAProxy, and the client environment.

``faultpki`` (session)
    :class:`faultkit.FaultPKI`: the shared test PKI plus a revoked user, a user of a foreign CA, HAProxy files.
``launch`` (function)
    ``launch(tornado={...}, args=[...], extra="", port=0)`` starts ``tornado-start-all`` in its own process
    group with the shared test configuration, the ``Faults/Probe`` service and ``/Systems/Tornado`` options;
    every process started is killed (as a group) after the test. ``server.journal`` is the call journal.
    ``prefix`` runs the server through a wrapper command (``sh -c 'ulimit -n 160 && exec "$0" "$@"'``).
``haproxy`` (function)
    ``haproxy(configText)`` starts HAProxy (skips the test when it is not installed).
``faultenv`` (function)
    ``X509_CERT_DIR`` and ``X509_USER_PROXY`` for clients of these servers.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import faultkit  # noqa: E402


@pytest.fixture(scope="session")
def faultpki(tmp_path_factory: pytest.TempPathFactory) -> faultkit.FaultPKI:
    return faultkit.makeFaultPKI(tmp_path_factory.mktemp("faultpki"))


@pytest.fixture
def launch(tmp_path: Path, faultpki: faultkit.FaultPKI):
    started: list[faultkit.ServerProcess] = []
    base = tmp_path / "base.cfg"
    base.write_text(faultkit.shared.makeServerCFG(faultpki.base))

    def start(
        tornado: Optional[dict[str, Any]] = None,
        args: list[str] = (),  # type: ignore[assignment]
        extra: str = "",
        port: int = 0,
        journal: Optional[str] = None,
        wait: bool = True,
        prefix: list[str] = (),  # type: ignore[assignment]
    ) -> faultkit.ServerProcess:
        index = len(started)
        journal = journal or str(tmp_path / f"journal{index}.txt")
        cfg = tmp_path / f"faults{index}.cfg"
        cfg.write_text(faultkit.faultCFG(journal, tornado) + extra)
        server = faultkit.ServerProcess(
            [str(base), str(cfg)], tmp_path / f"server{index}.log", faultkit.serverEnv(tmp_path), ["--port", str(port), *args], prefix
        )
        server.journal = journal  # type: ignore[attr-defined]
        started.append(server)
        if wait:
            server.waitListening()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def haproxy(tmp_path: Path):
    if faultkit.HAPROXY is None:
        pytest.skip(faultkit.HAPROXY_MISSING)
    started: list[faultkit.HAProxy] = []

    def start(config: str) -> faultkit.HAProxy:
        proxy = faultkit.HAProxy(config, tmp_path, name=f"haproxy{len(started)}")
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def faultenv(monkeypatch: pytest.MonkeyPatch, faultpki: faultkit.FaultPKI) -> faultkit.FaultPKI:
    for name, value in faultkit.clientEnv(faultpki).items():
        monkeypatch.setenv(name, value)
    for name in ("DIRAC_X509_HOST_CERT", "DIRAC_X509_HOST_KEY", "GRID_PROXY_FILE"):
        monkeypatch.delenv(name, raising=False)
    # In-process clients of the fault servers resolve credentials and CAs from this environment: a configuration
    # left loaded by an earlier test (its /DIRAC/Security/CALocation, for one) would take precedence over it.
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig

    gConfig.reset()
    yield faultpki
    gConfig.reset()
