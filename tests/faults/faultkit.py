"""Helpers of the fault suite and of the soak command: PKI, server processes, HAProxy, raw TLS requests.

Everything started here runs in its own process group and is killed as a group (``stop()``), so a worker
forked by a supervisor never outlives a test. Output goes to files (no pipe can fill up and block a server).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from tests import conftest as shared

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
LISTENING = re.compile(r"Listening on https://\S+:(\d+) ")
WORKER_READY = re.compile(r"Worker ready (\d+) \(pid (\d+)\)")
TIMEOUT = 60.0


def waitUntil(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT, interval: float = 0.05) -> Any:
    """``tests.conftest.waitFor`` with the longer timeout of the multi-process fault servers."""
    return shared.waitFor(predicate, what, timeout, interval)


def freePort() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------
# PKI and configuration
@dataclasses.dataclass
class FaultPKI:
    """The shared test PKI plus a revoked user, a user of a CA the servers do not trust, and PEM bundles."""

    base: Any
    revokedCert: str
    revokedKey: str
    revokedProxy: str
    foreignCert: str
    foreignKey: str
    foreignProxy: str
    foreignCAFile: str
    hostPEM: str  # host certificate and key in one file (HAProxy's crt)
    frontendCAFile: str  # our CA and the foreign one: what a too-trusting front end accepts

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


def makeFaultPKI(directory: Path) -> FaultPKI:
    from TornadoServices.Security import DevPKI

    base = shared.makeTestPKI(directory)
    revoked = base.ca.issueUser("revokeduser")
    base.ca.revoke(revoked)
    DevPKI.writeCADirectory(base.caDir, [base.ca])  # CRL now lists the revoked user
    revokedCert, revokedKey = str(directory / "revokedcert.pem"), str(directory / "revokedkey.pem")
    revoked.writeCertAndKey(revokedCert, revokedKey, force=True)
    revokedProxy = DevPKI.makeProxy(revoked, group="dirac_user").writeProxyFile(str(directory / "revokedproxy.pem"))
    foreign = DevPKI.CertificateAuthority("/DC=org/DC=elsewhere/CN=Elsewhere CA")
    foreignUser = foreign.issueUser("devuser")
    foreignCert, foreignKey = str(directory / "foreigncert.pem"), str(directory / "foreignkey.pem")
    foreignUser.writeCertAndKey(foreignCert, foreignKey, force=True)
    foreignProxy = DevPKI.makeProxy(foreignUser, group="dirac_user").writeProxyFile(str(directory / "foreignproxy.pem"))
    foreignCAFile = directory / "foreignca.pem"
    foreignCAFile.write_bytes(foreign.certPEM())
    hostPEM = directory / "hostcertkey.pem"
    hostPEM.write_bytes(Path(base.hostCert).read_bytes() + Path(base.hostKey).read_bytes())
    os.chmod(hostPEM, 0o600)
    bundle = directory / "frontendca.pem"
    bundle.write_bytes(base.ca.certPEM() + foreign.certPEM())
    return FaultPKI(
        base, revokedCert, revokedKey, revokedProxy, foreignCert, foreignKey, foreignProxy, str(foreignCAFile), str(hostPEM), str(bundle)
    )


def faultCFG(journal: str, tornado: Optional[dict[str, Any]] = None) -> str:
    """CFG added to the shared test configuration: the Faults/Probe service and /Systems/Tornado options."""
    options = {"ShutdownTimeout": 10, "MetricsAuthorization": "loopback", "MaxThreads": 8}
    options.update(tornado or {})
    lines = "\n".join(f"    {key} = {value}" for key, value in options.items())
    return f"""
Systems
{{
  Tornado
  {{
{lines}
  }}
  Faults
  {{
    Services
    {{
      Probe
      {{
        Protocol = https
        HandlerPath = FaultProbeHandler.py
        Journal = {journal}
      }}
    }}
  }}
}}
"""


def serverEnv(home: Path) -> dict[str, str]:
    """Environment of a server process: no user/site configuration, no X509 variables, this suite importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X509_", "DIRAC"))}
    env["HOME"] = str(home)
    env["DIRAC"] = str(home / "root")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(HERE)])
    return env


def clientEnv(pki: Any, proxy: Optional[str] = None) -> dict[str, str]:
    """Environment variables of a client of the fault servers."""
    return {"X509_CERT_DIR": pki.caDir, "X509_USER_PROXY": proxy or pki.proxy}


# ---------------------------------------------------------------------------------------------------------
# processes
class Process:
    """A command in its own process group, output in a file."""

    def __init__(self, argv: list[str], logPath: Path, env: Optional[dict[str, str]] = None, cwd: Optional[str] = None) -> None:
        self.argv = argv
        self.logPath = logPath
        self._log = open(logPath, "ab")
        self.process = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd or str(REPO_ROOT), start_new_session=True
        )
        self.pid = self.process.pid

    @property
    def text(self) -> str:
        try:
            return self.logPath.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def waitFor(self, pattern: "re.Pattern[str] | str", count: int = 1, timeout: float = TIMEOUT) -> list["re.Match[str]"]:
        """The first ``count`` matches of ``pattern`` in the output; AssertionError when the process ends first."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern

        def matches() -> list["re.Match[str]"]:
            found = list(regex.finditer(self.text))
            if len(found) >= count:
                return found[:count]
            if not self.alive():
                found = list(regex.finditer(self.text))
                if len(found) >= count:
                    return found[:count]
                raise AssertionError(f"{self.argv[:4]} ended ({self.process.returncode}) before {regex.pattern!r}:\n{self.text[-4000:]}")
            return []

        try:
            return waitUntil(matches, f"{regex.pattern!r} x{count} in the output of {' '.join(self.argv[:4])}", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- output ---\n{self.text[-4000:]}") from None

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.argv[:4]} still running after {timeout:g} s:\n{self.text[-4000:]}") from None

    def stop(self) -> None:
        """Kill the whole process group (workers included) and reap the leader."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


class ServerProcess(Process):
    """``tornado-start-all`` with the fault configuration."""

    def __init__(self, cfgFiles: list[str], logPath: Path, env: dict[str, str], args: list[str] = (), prefix: list[str] = ()) -> None:  # type: ignore[assignment]
        argv = [*prefix, sys.executable, "-m", "TornadoServices.scripts.tornado_start_all"]
        for cfg in cfgFiles:
            argv += ["--cfg", cfg]
        super().__init__(argv + list(args), logPath, env)
        self.port = 0

    def waitListening(self, timeout: float = TIMEOUT) -> int:
        self.port = int(self.waitFor(LISTENING, timeout=timeout)[0].group(1))
        return self.port

    def workerPids(self, count: int) -> list[int]:
        """Pids of the first ``count`` workers reported ready (supervisor mode)."""
        return [int(m.group(2)) for m in self.waitFor(WORKER_READY, count)]

    def url(self, service: str = "Faults/Probe", host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}/{service}"


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def groupMembers(pgid: int) -> list[int]:
    """Live processes of the process group ``pgid`` (zombies excluded)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


# ---------------------------------------------------------------------------------------------------------
# HAProxy
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
HAPROXY_MISSING = (
    "haproxy is not installed (Debian package haproxy; .ci/run installs it when it runs as root with network "
    "access): the load-balancer tests need it"
)


class HAProxy(Process):
    """An HAProxy in the foreground with a configuration written by the test."""

    def __init__(self, config: str, directory: Path, name: str = "haproxy") -> None:
        assert HAPROXY is not None, HAPROXY_MISSING
        cfg = directory / f"{name}.cfg"
        cfg.write_text(config)
        env = dict(os.environ)
        check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, env=env)
        assert check.returncode == 0, f"invalid HAProxy configuration:\n{check.stdout}{check.stderr}\n{config}"
        super().__init__([HAPROXY, "-db", "-f", str(cfg)], directory / f"{name}.log", env)


def passthroughConfig(port: int, backends: list[int], check: str = "/readyz", serverOptions: Optional[dict[int, str]] = None) -> str:
    """HAProxy in TCP mode (TLS passthrough) with HTTPS health checks on ``check``, retries and redispatch.

    ``serverOptions`` adds options to the server line of some backends, by index (e.g. ``{1: "send-proxy-v2
    check-send-proxy"}``: that backend gets a PROXY protocol header on every connection, checks included).
    """
    extra = serverOptions or {}
    servers = "\n".join(
        f"    server s{index} 127.0.0.1:{backend} check check-ssl verify none {extra.get(index, '')}".rstrip()
        for index, backend in enumerate(backends)
    )
    return f"""
global
    maxconn 2000

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch 1

frontend rpc
    bind 127.0.0.1:{port}
    default_backend servers

backend servers
    balance roundrobin
    option httpchk GET {check}
    http-check expect status 200
    default-server inter 250ms fall 1 rise 2
{servers}
"""


def terminatingConfig(port: int, backend: int, pki: FaultPKI) -> str:
    """HAProxy terminating TLS (client certificates required), forwarding the verified chain in headers.

    Its CA file also trusts a foreign CA and it loads no CRL: the server must refuse what it would not accept
    itself. No session cache and no tickets, so every connection shows HAProxy the whole client chain.
    HAProxy does not accept RFC 3820 proxies (it never sets OpenSSL's ALLOW_PROXY_CERTS flag, OpenSSL 3 has
    no environment switch for it, and ``crt-ignore-err``/``ca-ignore-err`` did not get HAProxy 2.6 to accept
    them): clients of such a front end present end-entity certificates.
    """
    return f"""
global
    maxconn 2000
    tune.ssl.cachesize 0

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s

frontend rpc
    bind 127.0.0.1:{port} ssl crt {pki.hostPEM} ca-file {pki.frontendCAFile} verify required no-tls-tickets
    http-request del-header X-SSL-CERT
    http-request del-header X-SSL-CHAIN
    http-request del-header X-Ssl_client_verify
    http-request set-header X-SSL-CERT %[ssl_c_der,base64]
    http-request set-header X-SSL-CHAIN %[ssl_c_chain_der,base64]
    http-request set-header X-Ssl_client_verify SUCCESS if {{ ssl_c_verify 0 }}
    default_backend server

backend server
    server s0 127.0.0.1:{backend} ssl verify required ca-file {pki.caFile} verifyhost localhost sni str(localhost)
"""


# ---------------------------------------------------------------------------------------------------------
# raw TLS requests
def clientContext(pki: Any, cert: Any = None) -> ssl.SSLContext:
    """Client context trusting the test CA; ``cert`` is a proxy file or a (certificate, key) pair."""
    from TornadoServices.Security import TLS

    certFile, keyFile = cert if isinstance(cert, tuple) else (cert, None)
    context = TLS.makeClientContext(pki.caFile, certFile=certFile, keyFile=keyFile)
    context.check_hostname = False  # tests connect to 127.0.0.1 and 127.0.0.2 alike
    return context


def tlsConnect(port: int, context: ssl.SSLContext, source: str = "127.0.0.1", timeout: float = 30.0) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    return context.wrap_socket(sock, server_hostname="localhost")


def rpcRequest(path: str, method: str, args: list[Any] = (), headers: Optional[dict[str, str]] = None) -> bytes:  # type: ignore[assignment]
    """Bytes of a keep-alive form POST of ``method(*args)`` to ``path``."""
    from urllib.parse import urlencode

    from TornadoServices.Core.Encoding import encode

    body = urlencode({"method": method, "args": encode(list(args))}).encode()
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", "Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


readResponse = shared.readResponse


def decodeBody(body: bytes) -> Any:
    from TornadoServices.Core.Encoding import decode

    return decode(body.decode())[0]


def scrapeMetrics(port: int, pki: Any, cert: Optional[str] = None) -> dict[str, float]:
    """``/metrics`` as {'name{labels}': value} (samples only)."""
    import requests

    response = requests.get(f"https://127.0.0.1:{port}/metrics", verify=pki.caFile, cert=cert, timeout=30)
    assert response.status_code == 200, response.text
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def callCount(samples: dict[str, float], method: str, status: str = "200", service: str = "Faults/Probe") -> float:
    return samples.get(f'tornadoservices_calls_total{{method="{method}",service="{service}",status="{status}"}}', 0.0)


def dumpJSON(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1))
