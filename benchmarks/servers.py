"""Start and stop the benchmark's server processes (bare Tornado and TornadoServices), each in its own process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence

from benchmarks.environment import REPO_ROOT, SERVICE, BenchEnvironment


def _childSetup(cpus: Optional[set[int]]) -> Callable[[], None]:
    """What the server child does before exec: die with the benchmark (Linux), run on ``cpus`` if given."""

    def setup() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)  # inherited by every thread the server starts
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphan servers
        except (OSError, AttributeError):
            pass

    return setup


class ServerProcess:
    """A server started with ``python -m <module> ... --ready FILE``; ready once FILE holds the port."""

    def __init__(self, name: str, module: str, arguments: list[str], env: BenchEnvironment, startTimeout: float = 120.0):
        self.cpus = env.serverCPUs
        self.name = name
        self.readyFile = os.path.join(env.directory, f"{name}.port")
        self.logFile = os.path.join(env.directory, f"{name}.log")
        if os.path.exists(self.readyFile):
            os.unlink(self.readyFile)
        command = [sys.executable, "-m", module, *arguments, "--ready", self.readyFile]
        with open(self.logFile, "wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=env.childEnvironment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_childSetup(env.serverCPUs) if sys.platform.startswith("linux") else None,
            )
        deadline = time.monotonic() + startTimeout
        while not os.path.exists(self.readyFile):
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} server exited with code {self.process.returncode}:\n{self.logTail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} server did not start within {startTimeout:.0f} s:\n{self.logTail()}")
            time.sleep(0.05)
        with open(self.readyFile) as fd:
            self.port = int(fd.read().strip())

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str = SERVICE) -> str:
        """URL of ``path`` on this server (host name ``localhost``: the host certificate's name)."""
        return f"https://localhost:{self.port}/{path}"

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the server process."""
        self.process.send_signal(signum)

    def logTail(self, lines: int = 30) -> str:
        """The last lines of the server's output."""
        try:
            with open(self.logFile, errors="replace") as fd:
                return "".join(fd.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def startServices(
    env: BenchEnvironment,
    name: str,
    maxConnections: int = 1500,
    profileOut: Optional[str] = None,
    profileClock: str = "cpu",
    logLevel: str = "INFO",
) -> ServerProcess:
    """A TornadoServices server running the bench CS (Bench/Calls) on a free port."""
    cfg = env.writeConfig(f"{name}.cfg", port=0, maxConnections=maxConnections)
    arguments = ["--cfg", cfg, "--log-level", logLevel]
    if profileOut:
        arguments += ["--profile-out", profileOut, "--profile-clock", profileClock]
    return ServerProcess(name, "benchmarks.services_server", arguments, env)


def startBaseline(
    env: BenchEnvironment,
    name: str,
    answerFile: str,
    profileOut: Optional[str] = None,
    profileClock: str = "cpu",
    variant: Sequence[str] = (),
) -> ServerProcess:
    """The bare Tornado server answering the bytes of ``answerFile`` (same TLS settings); ``variant``: extra options."""
    arguments = ["--cert", env.hostCert, "--key", env.hostKey, "--ca", env.caDir, "--answer", answerFile, *variant]
    if profileOut:
        arguments += ["--profile-out", profileOut, "--profile-clock", profileClock]
    return ServerProcess(name, "benchmarks.baseline_server", arguments, env)


def fetchPingAnswer(env: BenchEnvironment, server: ServerProcess) -> bytes:
    """The exact bytes of ``ping``'s answer from ``server`` (what the bare baseline will send back)."""
    from TornadoServices.Security.TLS import makeClientContext

    from benchmarks.connections import exchange, openConnection

    context = makeClientContext(env.caDir, certFile=env.proxyFile)
    sock = openConnection(context, server.port, "/" + SERVICE)
    try:
        status, body = exchange(sock, server.port, "/" + SERVICE)
    finally:
        sock.close()
    if status != 200:
        raise RuntimeError(f"ping of {server.url()} answered HTTP {status}: {body[:300]!r}")
    return body
