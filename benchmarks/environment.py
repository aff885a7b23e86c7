"""A throw-away world for one benchmark run: development PKI, a bench CS, and the environment of child processes.

Everything lives in one temporary directory (removed at the end of the run): a hashed CA directory with a
CRL (so the servers check CRLs for the whole chain, as a production CS with CRLs does), the host
certificate, a user certificate and an RFC 3820 proxy of it with a DIRAC group, and ``bench.cfg`` that
registers the user and runs the ``Bench/Calls`` service (benchmarks/BenchSystem/Service/CallsHandler.py).
"""
from __future__ import annotations

import os
import platform
import shutil
import socket
import ssl
import sys
import tempfile
from dataclasses import dataclass
from typing import Optional

#: The repository root: child processes run from here so ``benchmarks`` and ``TornadoServices`` import.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SERVICE = "Bench/Calls"
GROUP = "dirac_user"

_CFG_TEMPLATE = """\
DIRAC
{{
  ExtensionsPath = {repo}
  Security
  {{
    CertFile = {hostCert}
    KeyFile = {hostKey}
    CALocation = {caDir}
  }}
}}
Systems
{{
  Tornado
  {{
    Port = {port}
    MaxConnections = {maxConnections}
    Hostname = localhost
  }}
  Bench
  {{
    Services
    {{
      Calls
      {{
        Protocol = https
        HandlerPath = benchmarks/BenchSystem/Service/CallsHandler.py
      }}
    }}
    URLs
    {{
      Calls = https://localhost:{port}/Bench/Calls
    }}
  }}
}}
Registry
{{
  DefaultGroup = {group}
  Users
  {{
    {userName}
    {{
      DN = {userDN}
    }}
  }}
  Groups
  {{
    {group}
    {{
      Users = {userName}
      Properties = NormalUser
      VO = benchvo
    }}
  }}
  Hosts
  {{
    localhost
    {{
      DN = {hostDN}
      Properties = TrustedHost
    }}
  }}
}}
"""


def freePort() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class BenchEnvironment:
    """Paths of the run's PKI and CS, and the environment every child process gets."""

    directory: str
    caDir: str
    hostCert: str
    hostKey: str
    proxyFile: str
    userDN: str
    #: CPUs the servers are pinned to (None: not pinned); set by the runner.
    serverCPUs: Optional[set[int]] = None

    @classmethod
    def create(cls, directory: Optional[str] = None) -> "BenchEnvironment":
        """Make a development CA (with CRL), host certificate and user proxy in a new temporary directory."""
        from TornadoServices.Security.DevPKI import CertificateAuthority, makeProxy, writeCADirectory

        directory = directory or tempfile.mkdtemp(prefix="tornado-bench-")
        ca = CertificateAuthority()
        host = ca.issueHost("localhost")
        user = ca.issueUser("benchuser")
        proxy = makeProxy(user, group=GROUP)
        caDir = os.path.join(directory, "certificates")
        writeCADirectory(caDir, [ca])
        hostCert = os.path.join(directory, "hostcert.pem")
        hostKey = os.path.join(directory, "hostkey.pem")
        host.writeCertAndKey(hostCert, hostKey, force=True)
        proxyFile = proxy.writeProxyFile(os.path.join(directory, "proxy.pem"))
        return cls(directory, caDir, hostCert, hostKey, proxyFile, user.dn)

    def writeConfig(self, name: str, port: int, maxConnections: int = 1500) -> str:
        """Write a bench CS for a server on ``port``; return its path."""
        from TornadoServices.Security.DevPKI import DEV_HOST_DN

        path = os.path.join(self.directory, name)
        with open(path, "w") as fd:
            fd.write(
                _CFG_TEMPLATE.format(
                    repo=REPO_ROOT,
                    hostCert=self.hostCert,
                    hostKey=self.hostKey,
                    caDir=self.caDir,
                    port=port,
                    maxConnections=maxConnections,
                    group=GROUP,
                    userName="benchuser",
                    userDN=self.userDN,
                    hostDN=DEV_HOST_DN,
                )
            )
        return path

    def childEnvironment(self) -> dict[str, str]:
        """Environment of servers and load generators: our CAs and proxy, the repository on the path."""
        env = dict(os.environ)
        env["X509_CERT_DIR"] = self.caDir
        env["X509_USER_PROXY"] = self.proxyFile
        env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.pop("DIRACSYSCONFIG", None)
        return env

    def applyToThisProcess(self) -> None:
        """Point this process's client at the run's CAs and proxy (as :meth:`childEnvironment` does for children)."""
        os.environ["X509_CERT_DIR"] = self.caDir
        os.environ["X509_USER_PROXY"] = self.proxyFile

    def remove(self) -> None:
        """Delete the directory and everything in it."""
        shutil.rmtree(self.directory, ignore_errors=True)


def machineDescription() -> list[str]:
    """Header lines: cores, CPU model, Python, OpenSSL, Tornado, requests."""
    import requests
    import tornado

    model = ""
    try:
        with open("/proc/cpuinfo") as fd:
            for line in fd:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return [
        f"machine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable){', ' + model if model else ''}; "
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()} ({sys.implementation.name}); {ssl.OPENSSL_VERSION}; "
        f"tornado {tornado.version}; requests {requests.__version__}",
    ]
