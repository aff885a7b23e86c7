"""tornado-start-all in a subprocess: start, serve, stop on signals, and clear failures with exit codes."""
from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO_ROOT, makeServerCFG

LISTENING = re.compile(r"Listening on https://\S+:(\d+) ")


class ServerProcess:
    """tornado-start-all with its merged output read by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "TornadoServices.scripts.tornado_start_all", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=str(REPO_ROOT),
        )
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put("")

    def waitForPort(self, timeout: float = 60) -> int:
        while True:
            line = self.lines.get(timeout=timeout)
            if not line:
                raise AssertionError("tornado-start-all ended before listening:\n" + "".join(self.output))
            match = LISTENING.search(line)
            if match:
                return int(match.group(1))

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        return code

    @property
    def text(self) -> str:
        return "".join(self.output)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no user or site configuration, no X509 variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("X509_", "DIRAC"))}
    clean["HOME"] = str(tmp_path)
    clean["DIRAC"] = str(tmp_path / "root")
    clean["PYTHONPATH"] = str(REPO_ROOT)
    return clean


@pytest.fixture
def cfgFile(tmp_path: Path, pki) -> str:
    path = tmp_path / "server.cfg"
    path.write_text(makeServerCFG(pki))
    return str(path)


def _run(args: list[str], env: dict[str, str]) -> ServerProcess:
    return ServerProcess(args, env)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_start_ping_and_stop_on_signal(cfgFile, env, pki, signum):
    server = _run(["--cfg", cfgFile, "--port", "0"], env)
    try:
        port = server.waitForPort()
        response = requests.post(
            f"https://127.0.0.1:{port}/Framework/Dummy",
            data={"method": "ping", "args": "[]"},
            cert=pki.proxy,
            verify=pki.caFile,
            timeout=30,
        )
        assert response.json()["OK"] is True
        server.process.send_signal(signum)
        assert server.wait() == 0, server.text
        assert "Stopped" in server.text
    finally:
        server.kill()


def test_no_https_service_exits_1(tmp_path, env, pki):
    cfg = tmp_path / "empty.cfg"
    cfg.write_text(makeServerCFG(pki).replace("Protocol = https", "Protocol = dips"))
    server = _run(["--cfg", str(cfg)], env)
    assert server.wait() == 1
    assert "no service to start" in server.text


def test_port_in_use_exits_1(cfgFile, env):
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = _run(["--cfg", cfgFile, "--port", str(port)], env)
        assert server.wait() == 1
    assert f"Port {port} is already in use" in server.text


def test_missing_host_certificate_exits_1_naming_the_search(cfgFile, env, tmp_path):
    missing = str(tmp_path / "nohostcert.pem")
    server = _run(["--cfg", cfgFile, "--port", "0", "-o", f"/DIRAC/Security/CertFile={missing}"], env)
    assert server.wait() == 1
    assert "Host certificate or key not found" in server.text
    assert "DIRAC_X509_HOST_CERT" in server.text


def test_missing_ca_directory_exits_1(cfgFile, env, tmp_path):
    missing = str(tmp_path / "nocerts")
    server = _run(["--cfg", cfgFile, "--port", "0", "-o", f"/DIRAC/Security/CALocation={missing}"], env)
    assert server.wait() == 1
    assert "CA directory not found" in server.text
    assert "X509_CERT_DIR" in server.text


def test_failing_initialize_handler_exits_1_naming_the_service(cfgFile, env):
    option = "/Systems/Framework/Services/Bookkeeping2/MaxKeys=0"
    server = _run(["--cfg", cfgFile, "--port", "0", "-o", option], env)
    assert server.wait() == 1
    assert "Framework/Bookkeeping2: initializeHandler failed" in server.text


def test_unimportable_handler_exits_1(cfgFile, env):
    option = "/Systems/Framework/Services/Dummy/HandlerPath=NoSuchPackage/FrameworkSystem/Service/DummyHandler.py"
    server = _run(["--cfg", cfgFile, "--port", "0", "-o", option], env)
    assert server.wait() == 1
    assert "Framework/Dummy: no handler module found" in server.text


@pytest.mark.parametrize(
    "options, expected",
    [
        (  # the master CS must run alone
            {"/DIRAC/Configuration/Master": "yes", "/Systems/Configuration/Services/Server/Protocol": "https"},
            "tornado-start-CS",
        ),
        (  # ... also when a load group brings it in
            {
                "/DIRAC/Configuration/Master": "yes",
                "/Systems/Framework/Services/Everything/Protocol": "https",
                "/Systems/Framework/Services/Everything/Load": "Dummy,Configuration/Server",
            },
            "tornado-start-CS",
        ),
        (
            {
                "/Systems/Framework/Services/LoopA/Protocol": "https",
                "/Systems/Framework/Services/LoopA/Load": "LoopB",
                "/Systems/Framework/Services/LoopB/Load": "LoopA",
            },
            "Load groups form a cycle: Framework/LoopA -> Framework/LoopB -> Framework/LoopA",
        ),
    ],
    ids=["master-cs", "master-cs-in-load-group", "load-group-cycle"],
)
def test_refused_service_lists_exit_1(cfgFile, env, options, expected):
    overrides = [arg for path, value in options.items() for arg in ("-o", f"{path}={value}")]
    server = _run(["--cfg", cfgFile, "--port", "0", *overrides], env)
    assert server.wait() == 1
    assert expected in server.text


@pytest.mark.parametrize("args", [["--port", "abc"], ["--no-such-option"], ["--port", "70000"]])
def test_usage_errors_exit_2(cfgFile, env, args):
    server = _run(["--cfg", cfgFile, *args], env)
    assert server.wait() == 2
    assert "usage:" in server.text
