"""The Configuration service with real processes: a master CS, a slave CS and a service process.

Topology (all on 127.0.0.1, development PKI in a temporary directory, RefreshTime/PropagationTime 1 s):

* master: ``tornado-start-CS`` with ``/DIRAC/Configuration/Master = yes``, data in ``$DIRAC/etc/TestCS.cfg``;
* slave: ``tornado-start-CS`` with ``Master = no``, following the master and publishing itself to it;
* service: ``tornado-start-all`` serving ``Framework/Dummy`` and a probe service that reports what its
  gConfig holds; its only configuration server is the slave.

Waits poll with generous deadlines: nothing here depends on how fast the machine is.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib

import pytest

from TornadoServices.ConfigurationSystem.Client.ConfigurationData import loadCFGFromText
from TornadoServices.Security import DevPKI

pytestmark = pytest.mark.slow

DEADLINE = 90.0  # seconds for anything that should happen "soon"; never an assertion on speed
CS_NAME = "TestCS"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROBE_HANDLER = '''
"""Test service reporting what this process's configuration holds."""
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.Core.ReturnValues import S_OK
from TornadoServices.Server.TornadoService import TornadoService


class CSProbeHandler(TornadoService):
    auth_getOption = ["authenticated"]
    types_getOption = [str]

    def export_getOption(self, path):
        return S_OK({"value": gConfig.getValue(path), "version": gConfig.getVersion()})

    auth_restricted = ["CSAdministrator"]

    def export_restricted(self):
        return S_OK("allowed")
'''

RUN_SCRIPT = "import sys, importlib; sys.exit(importlib.import_module(sys.argv.pop(1)).main())"


def freePort() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def waitFor(condition, what: str, deadline: float = DEADLINE, interval: float = 0.25, processes=()):
    """Poll ``condition()`` until it returns a truthy value; fail naming ``what`` (and dead processes)."""
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        for proc in processes:
            if proc.poll() is not None:
                pytest.fail(f"{proc.name} exited with {proc.returncode} while waiting for {what}:\n{proc.logTail()}")
        try:
            last = condition()
        except Exception as exc:  # keep polling; report the last failure
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"timed out after {deadline} s waiting for {what} (last: {last!r})")


class Process:
    """A server subprocess with its log file."""

    def __init__(self, name: str, module: str, args: list[str], env: dict[str, str], logPath: str) -> None:
        self.name = name
        self.logPath = logPath
        self.log = open(logPath, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RUN_SCRIPT, module, *args],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=os.path.dirname(logPath),
        )

    @property
    def returncode(self):
        return self.proc.returncode

    def poll(self):
        return self.proc.poll()

    def logTail(self, lines: int = 60) -> str:
        self.log.flush()
        with open(self.logPath, "rb") as handle:
            return b"\n".join(handle.read().splitlines()[-lines:]).decode(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        self.log.close()


def securitySection(root: str) -> str:
    return f"""
  Security
  {{
    CertFile = {root}/hostcert.pem
    KeyFile = {root}/hostkey.pem
    CALocation = {root}/certificates
  }}"""


class Cluster:
    """Everything the tests share: PKI, ports, URLs, processes and client helpers."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.masterPort, self.slavePort, self.servicePort = freePort(), freePort(), freePort()
        self.masterURL = f"https://localhost:{self.masterPort}/Configuration/Server"
        self.slaveURL = f"https://localhost:{self.slavePort}/Configuration/Server"
        self.probeURL = f"https://localhost:{self.servicePort}/Framework/CSProbe"
        self.dummyURL = f"https://localhost:{self.servicePort}/Framework/Dummy"
        self.processes: dict[str, Process] = {}
        self.masterKilled = False
        self._makePKI()
        self._writeConfiguration()

    # ---- setup ----------------------------------------------------------------------------------

    def _makePKI(self) -> None:
        ca = DevPKI.CertificateAuthority()
        self.ca = ca
        DevPKI.writeCADirectory(os.path.join(self.base, "certificates"), [ca])
        host = ca.issueHost("localhost")
        host.writeCertAndKey(os.path.join(self.base, "hostcert.pem"), os.path.join(self.base, "hostkey.pem"), force=True)
        self.hostDN = host.dn
        self.proxies = {}
        self.dns = {}
        for user, group in (("alice", "cs_admin"), ("bob", "cs_admin"), ("carol", "users")):
            cred = ca.issueUser(user)
            self.dns[user] = cred.dn
            proxy = DevPKI.makeProxy(cred, group=group)
            self.proxies[user] = proxy.writeProxyFile(os.path.join(self.base, f"{user}.proxy"))

    def _writeConfiguration(self) -> None:
        base = self.base
        ext = os.path.join(base, "ext", "CSTestExt", "FrameworkSystem", "Service")
        os.makedirs(ext)
        for directory in (os.path.join(base, "ext", "CSTestExt"), os.path.join(base, "ext", "CSTestExt", "FrameworkSystem"), ext):
            open(os.path.join(directory, "__init__.py"), "w").close()
        with open(os.path.join(ext, "CSProbeHandler.py"), "w") as handle:
            handle.write(PROBE_HANDLER)
        dummyHandler = os.path.join(REPO, "cs", "extensions", "TornadoExample", "FrameworkSystem", "Service", "DummyHandler.py")
        self.hasDummy = os.path.exists(dummyHandler)
        dummySection = ""
        if self.hasDummy:
            dummySection = """
      Dummy
      {
        Protocol = https
        Authorization
        {
          add = CSAdministrator
        }
      }"""
        masterData = f"""
DIRAC
{{
  Configuration
  {{
    RefreshTime = 1
    PropagationTime = 1
    SlavesGraceTime = 30
  }}
  Extensions = CSTestExt, TornadoExample
  ExtensionsPath = {base}/ext, {REPO}/cs/extensions
}}
Registry
{{
  DefaultGroup = users
  Users
  {{
    alice
    {{
      DN = {self.dns['alice']}
    }}
    bob
    {{
      DN = {self.dns['bob']}
    }}
    carol
    {{
      DN = {self.dns['carol']}
    }}
  }}
  Groups
  {{
    cs_admin
    {{
      Users = alice, bob
      Properties = NormalUser, CSAdministrator, ServiceAdministrator
    }}
    users
    {{
      Users = alice, bob, carol
      Properties = NormalUser
    }}
  }}
  Hosts
  {{
    localhost
    {{
      DN = {self.hostDN}
      Properties = TrustedHost, CSAdministrator
    }}
  }}
}}
Systems
{{
  Framework
  {{
    Services
    {{
      CSProbe
      {{
        Protocol = https
      }}{dummySection}
    }}
    URLs
    {{
      CSProbe = {self.probeURL}
      Dummy = {self.dummyURL}
    }}
  }}
  Configuration
  {{
    URLs
    {{
      Server = {self.masterURL}
    }}
  }}
}}
Test
{{
  Value = initial
}}
"""
        roots = {name: os.path.join(base, name) for name in ("master", "slave", "service", "home")}
        for root in roots.values():
            os.makedirs(os.path.join(root, "etc"))
        self.masterFile = os.path.join(roots["master"], "etc", f"{CS_NAME}.cfg")
        with open(self.masterFile, "w") as handle:
            handle.write(masterData)
        security = securitySection(base)
        self.cfgFiles = {
            "master": f"""
DIRAC
{{
  Configuration
  {{
    Master = yes
    Name = {CS_NAME}
  }}{security}
}}
Systems
{{
  Configuration
  {{
    Services
    {{
      Server
      {{
        Port = {self.masterPort}
        URL = {self.masterURL}
      }}
    }}
  }}
}}
""",
            "slave": f"""
DIRAC
{{
  Configuration
  {{
    Master = no
    Name = {CS_NAME}
    Servers = {self.masterURL}
    MasterServer = {self.masterURL}
  }}{security}
}}
Systems
{{
  Configuration
  {{
    Services
    {{
      Server
      {{
        Port = {self.slavePort}
        URL = {self.slaveURL}
      }}
    }}
  }}
}}
""",
            "service": f"""
DIRAC
{{
  Configuration
  {{
    Servers = {self.slaveURL}
  }}{security}
}}
Systems
{{
  Tornado
  {{
    Port = {self.servicePort}
  }}
}}
""",
        }
        self.cfgPaths = {}
        for name, text in self.cfgFiles.items():
            path = os.path.join(roots[name], f"{name}.cfg")
            with open(path, "w") as handle:
                handle.write(text)
            self.cfgPaths[name] = path
        self.roots = roots

    def env(self, root: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("X509_", "DIRAC"))}
        env.update(
            {
                "DIRAC": root,
                "HOME": self.roots["home"],
                "X509_CERT_DIR": os.path.join(self.base, "certificates"),
                "DIRAC_USE_TORNADO_IOLOOP": "yes",
                "PYTHONPATH": REPO + os.pathsep + env.get("PYTHONPATH", ""),
            }
        )
        return env

    def start(self, name: str, module: str, extra: list[str] = ()) -> Process:
        root = self.roots[name]
        proc = Process(name, module, ["--cfg", self.cfgPaths[name], *extra], self.env(root), os.path.join(root, f"{name}.log"))
        self.processes[name] = proc
        return proc

    def stopAll(self) -> None:
        for proc in self.processes.values():
            proc.kill(signal.SIGTERM)

    # ---- clients --------------------------------------------------------------------------------

    def client(self, url: str, user: str = "alice", **kwargs):
        from TornadoServices.Client.TornadoClient import TornadoClient

        if user == "host":
            return TornadoClient(url, useCertificates=True, timeout=30, **kwargs)
        return TornadoClient(url, proxyLocation=self.proxies[user], timeout=30, **kwargs)

    def csClient(self, url: str, user: str = "alice"):
        from TornadoServices.ConfigurationSystem.Client.ConfigurationClient import ConfigurationClient

        return ConfigurationClient(url=url, proxyLocation=self.proxies[user], timeout=30)

    def csapi(self, user: str = "alice"):
        from TornadoServices.ConfigurationSystem.Client.CSAPI import CSAPI

        api = CSAPI(url=self.masterURL, proxyLocation=self.proxies[user], timeout=30)
        assert api.initialize()["OK"], api.initialize()
        return api

    def probe(self, path: str, user: str = "carol"):
        result = self.client(self.probeURL, user).getOption(path)
        assert result["OK"], result
        return result["Value"]

    def masterFileCFG(self):
        with open(self.masterFile) as handle:
            return loadCFGFromText(handle.read(), self.masterFile)

    def live(self) -> list[Process]:
        """The processes that must be running (all of them until the master is killed on purpose)."""
        return [proc for name, proc in self.processes.items() if name != "master" or not self.masterKilled]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("cs"))
    saved = {key: os.environ.get(key) for key in ("X509_CERT_DIR", "X509_USER_PROXY")}
    os.environ["X509_CERT_DIR"] = os.path.join(base, "certificates")
    os.environ.pop("X509_USER_PROXY", None)
    cl = Cluster(base)
    try:
        master = cl.start("master", "TornadoServices.scripts.tornado_start_CS")
        waitFor(lambda: cl.client(cl.masterURL).ping()["OK"], "the master CS to answer ping", processes=[master])
        slave = cl.start("slave", "TornadoServices.scripts.tornado_start_CS")
        waitFor(lambda: cl.client(cl.slaveURL).ping()["OK"], "the slave CS to answer ping", processes=[master, slave])
        service = cl.start("service", "TornadoServices.scripts.tornado_start_all")
        waitFor(lambda: cl.client(cl.probeURL).ping()["OK"], "the service process to answer ping", processes=[master, slave, service])
        yield cl
    except BaseException:
        for proc in cl.processes.values():
            sys.stderr.write(f"---- {proc.name} log ----\n{proc.logTail()}\n")
        raise
    finally:
        cl.stopAll()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def masterServers(cl: Cluster) -> str:
    cfg = cl.masterFileCFG()
    return cfg.getOption("/DIRAC/Configuration/Servers", "")


# --------------------------------------------------------------------------------------------------


def test_slavePublishesItselfAndFollowsTheMaster(cluster):
    waitFor(lambda: cluster.slaveURL in masterServers(cluster), "the master to list the slave in Servers",
            processes=cluster.live())
    master = cluster.csClient(cluster.masterURL)
    assert master.writeEnabled()["Value"] is True
    slave = cluster.csClient(cluster.slaveURL)
    assert slave.writeEnabled()["Value"] is False
    version = master.getVersion()["Value"]
    waitFor(lambda: slave.getVersion()["Value"] >= version, "the slave to reach the master's version")
    data = slave.getCompressedData()
    assert data["OK"] and isinstance(data["Value"], bytes)
    assert "Value = " in zlib.decompress(data["Value"]).decode()
    newer = slave.getCompressedDataIfNewer("0")
    assert newer["OK"] and "data" in newer["Value"] and newer["Value"]["newestVersion"] >= version
    same = slave.getCompressedDataIfNewer(newer["Value"]["newestVersion"])
    assert same["OK"] and "data" not in same["Value"]


def test_commitOnMasterReachesTheServiceThroughTheSlave(cluster):
    marker = uuid.uuid4().hex
    api = cluster.csapi("alice")
    assert api.setOption("/Test/Value", marker)["OK"]
    result = api.commit("propagation test")
    assert result["OK"], result
    waitFor(lambda: cluster.probe("/Test/Value")["value"] == marker, "the service to see the committed option",
            processes=cluster.live())
    assert cluster.masterFileCFG().getOption("/Test/Value") == marker
    log = cluster.csClient(cluster.masterURL).getCommitLog(5)["Value"]
    entry = next(e for e in log if e["version"] == result["Value"])
    assert entry["committer"] == "alice" and entry["DN"] == cluster.dns["alice"] and entry["message"] == "propagation test"


def test_authorizationRuleChangeAppliesWithoutRestart(cluster):
    refused = cluster.client(cluster.probeURL, "carol").restricted()
    assert not refused["OK"]
    api = cluster.csapi("bob")
    assert api.setOption("/Systems/Framework/Services/CSProbe/Authorization/restricted", "authenticated")["OK"]
    assert api.commit("open restricted")["OK"]
    waitFor(lambda: cluster.client(cluster.probeURL, "carol").restricted()["OK"], "carol to be allowed",
            processes=cluster.live())
    if cluster.hasDummy:
        assert not cluster.client(cluster.dummyURL, "carol").add(1, 2)["OK"]
        api = cluster.csapi("bob")
        assert api.setOption("/Systems/Framework/Services/Dummy/Authorization/add", "authenticated")["OK"]
        assert api.commit("open Dummy.add")["OK"]
        waitFor(lambda: cluster.client(cluster.dummyURL, "carol").add(1, 2).get("Value") == 3, "Dummy.add to open",
                processes=cluster.live())


def test_commitsNeedCSAdministrator(cluster):
    from TornadoServices.ConfigurationSystem.Client.CSAPI import CSAPI

    api = CSAPI(url=cluster.masterURL, proxyLocation=cluster.proxies["carol"], timeout=30)
    assert api.initialize()["OK"]  # reading is open to every authenticated user
    assert api.setOption("/Test/ByCarol", "no")["OK"]
    result = api.commit()
    assert not result["OK"]
    assert cluster.masterFileCFG().getOption("/Test/ByCarol", "") == ""
    assert not cluster.csClient(cluster.masterURL, "carol").getVersionContents([api.getVersion()])["OK"]


def test_staleCommitIsRefusedWithAConflictMessage(cluster):
    first, second = cluster.csapi("alice"), cluster.csapi("bob")
    base = first.getVersion()
    assert second.getVersion() == base
    assert first.setOption("/Test/Stale", "alice")["OK"]
    assert first.commit()["OK"]
    assert second.setOption("/Test/Stale", "bob")["OK"]
    result = second.commit()
    assert not result["OK"]
    assert "conflict" in result["Message"] and base in result["Message"] and "alice" in result["Message"]
    assert cluster.masterFileCFG().getOption("/Test/Stale") == "alice"


def test_rollbackRestoresThePreviousContent(cluster):
    api = cluster.csapi("alice")
    assert api.setOption("/Test/Rollback", "good")["OK"]
    good = api.commit("good")["Value"]
    assert api.setOption("/Test/Rollback", "bad")["OK"]
    assert api.delOption("/Test/Value")["OK"]
    bad = api.commit("bad")["Value"]
    assert bad > good
    waitFor(lambda: cluster.probe("/Test/Rollback")["value"] == "bad", "the service to see the bad value")
    result = api.rollbackToVersion(good, "undo bad")
    assert result["OK"], result
    assert result["Value"] > bad
    cfg = cluster.masterFileCFG()
    assert cfg.getOption("/Test/Rollback") == "good" and cfg.getOption("/Test/Value", "") != ""
    waitFor(lambda: cluster.probe("/Test/Rollback")["value"] == "good", "the service to see the rolled-back value",
            processes=cluster.live())
    log = cluster.csClient(cluster.masterURL).getCommitLog(1)["Value"][0]
    assert log["kind"] == "rollback" and log["rollbackTo"] == good and log["committer"] == "alice"
    diff = api.diffVersions(good, bad)
    assert diff["OK"] and any(line.startswith("-") and "good" in line for line in diff["Value"])


def test_concurrentAdministrators_oneWins_fileAlwaysComplete(cluster):
    stop = threading.Event()
    problems = []

    def watchFile():
        while not stop.is_set():
            try:
                cfg = cluster.masterFileCFG()
                if not cfg.getOption("/DIRAC/Configuration/Version", ""):
                    problems.append("file without a version")
            except Exception as exc:  # any unparsable state is a failure
                problems.append(repr(exc))

    watcher = threading.Thread(target=watchFile, daemon=True)
    watcher.start()
    try:
        for round_ in range(3):
            apis = {"alice": cluster.csapi("alice"), "bob": cluster.csapi("bob")}
            assert apis["alice"].getVersion() == apis["bob"].getVersion()
            for user, api in apis.items():
                assert api.setOption("/Test/Concurrent", f"{user}-{round_}")["OK"]
            barrier = threading.Barrier(2)
            results = {}

            def commit(user, api, barrier, results):
                barrier.wait()
                results[user] = api.commit(f"{user} wins")

            threads = [threading.Thread(target=commit, args=(user, api, barrier, results)) for user, api in apis.items()]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            winners = [user for user, result in results.items() if result["OK"]]
            assert len(winners) == 1, results
            loser = next(user for user in apis if user not in winners)
            assert "conflict" in results[loser]["Message"], results[loser]
            cfg = cluster.masterFileCFG()
            assert cfg.getOption("/Test/Concurrent") == f"{winners[0]}-{round_}"
            assert cfg.getOption("/DIRAC/Configuration/Version") == results[winners[0]]["Value"]
    finally:
        stop.set()
        watcher.join(10)
    assert not problems, problems[:3]
    leftovers = [f for f in os.listdir(os.path.dirname(cluster.masterFile)) if f.endswith(".tmp")]
    assert not leftovers


def _cliRunner(cluster, tmp_path):
    """``cli(*args, check=True)``: run tornado-cs as alice against the slave CS; the CompletedProcess."""
    state = str(tmp_path / "pending.json")
    env = cluster.env(cluster.roots["home"])
    env["X509_USER_PROXY"] = cluster.proxies["alice"]
    cfgPath = str(tmp_path / "client.cfg")
    with open(cfgPath, "w") as handle:
        handle.write(f"DIRAC\n{{\n  Configuration\n  {{\n    Servers = {cluster.slaveURL}\n  }}\n}}\n")

    def cli(*args, check=True):
        proc = subprocess.run(
            [sys.executable, "-c", RUN_SCRIPT, "TornadoServices.scripts.tornado_cs", "--cfg", cfgPath, "--state", state, *args],
            env=env, capture_output=True, text=True, timeout=120,
        )
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    return cli


def test_tornadoCS_cli(cluster, tmp_path):
    cli = _cliRunner(cluster, tmp_path)
    marker = uuid.uuid4().hex
    assert "Pending" in cli("set", "/Test/Cli", marker).stdout
    assert "Pending" in cli("set", "/Test/CliSection/Opt", "x").stdout
    assert "set /Test/Cli = " + marker in cli("status").stdout
    assert "+  Cli = " + marker in cli("diff").stdout.replace("+    ", "+  ")
    assert cli("commit", check=False).returncode == 2  # a message is required
    committed = cli("commit", "-m", "cli change").stdout
    assert "Committed version" in committed
    assert cli("get", "/Test/Cli").stdout.strip() == marker
    assert "Opt = x" in cli("show", "/Test/CliSection").stdout
    assert "cli change" in cli("history", "-n", "3").stdout
    missing = cli("get", "/Test/Nope", check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    # a stale pending change set: someone commits in between
    cli("set", "/Test/Cli", "stale")
    api = cluster.csapi("bob")
    assert api.setOption("/Test/Other", "bob")["OK"] and api.commit("in between")["OK"]
    refused = cli("commit", "-m", "stale", check=False)
    assert refused.returncode == 1 and "conflict" in refused.stderr and "rebase" in refused.stderr
    assert "now based on" in cli("rebase").stdout
    assert "Committed" in cli("commit", "-m", "after rebase").stdout
    assert cli("get", "/Test/Cli").stdout.strip() == "stale"
    # immediate commit with -m, then rollback to the previous version
    history = [line.split("  ")[0] for line in cli("history", "-n", "2").stdout.splitlines()]
    assert "Committed" in cli("del", "/Test/CliSection", "-m", "drop section").stdout
    assert cli("show", "/Test/CliSection", check=False).returncode == 1
    assert "Rolled back" in cli("rollback", history[0], "-m", "restore").stdout
    assert "Opt = x" in cli("show", "/Test/CliSection").stdout
    diffOut = cli("diff", history[1], history[0]).stdout
    assert "after rebase" not in diffOut and ("stale" in diffOut or marker in diffOut)


def test_csapiRegistersUserAndHost_seenByFreshClientAndService(cluster):
    cred = cluster.ca.issueUser("dave")
    proxy = DevPKI.makeProxy(cred, group="users")
    cluster.proxies["dave"] = proxy.writeProxyFile(os.path.join(cluster.base, "dave.proxy"))
    assert not cluster.client(cluster.probeURL, "dave").getOption("/Test/Value")["OK"]  # not registered yet
    api = cluster.csapi("alice")
    refused = api.addUser("dave", {"DN": cluster.dns["carol"], "CA": "/CN=CA", "Email": "d@example.org"})
    assert not refused["OK"] and "already registered as user carol" in refused["Message"]
    result = api.addUser("dave", {"DN": cred.dn, "CA": "/CN=CA", "Email": "dave@example.org", "Groups": ["users"]})
    assert result == {"OK": True, "Value": True}, result
    assert api.addHost("worker.example.org", {"DN": "/DC=org/CN=worker.example.org", "CA": "/CN=CA"})["OK"]
    committed = api.commit("register dave and worker")
    assert committed["OK"], committed
    fresh = cluster.csapi("bob")
    assert fresh.getVersion() == committed["Value"]
    assert fresh.describeUsers("dave")["Value"]["dave"]["Groups"] == ["users"]
    assert fresh.describeHosts()["Value"]["worker.example.org"]["DN"] == "/DC=org/CN=worker.example.org"
    assert "dave" in fresh.listUsers("users")["Value"]
    # the service (refreshing through the slave) authenticates dave once the new Registry reached it
    waitFor(lambda: cluster.client(cluster.probeURL, "dave").getOption("/Registry/Users/dave/Email")["OK"],
            "the service to accept dave", processes=cluster.live())
    seen = cluster.probe("/Registry/Hosts/worker.example.org/DN")
    assert seen["value"] == "/DC=org/CN=worker.example.org"


def test_backupRetention_prunesOnCommit_historyAndRollbackSaySo(cluster, tmp_path):
    backupDir = os.path.join(cluster.roots["master"], "etc", "csbackup")

    def zips():
        return sorted(name for _d, _s, files in os.walk(backupDir) for name in files if name.endswith(".zip"))

    assert len(zips()) > 3  # every version so far kept: no retention configured
    api = cluster.csapi("alice")
    assert api.setOption("/Systems/Configuration/Services/Server/MaxBackups", "3")["OK"]
    assert api.setOption("/Systems/Configuration/Services/Server/BackupGraceTime", "0")["OK"]
    first = api.commit("keep 3 backups")
    assert first["OK"], first
    assert len(zips()) == 3
    versions = [first["Value"]]
    for value in range(3):
        assert api.setOption("/Test/Retention", str(value))["OK"]
        result = api.commit(f"retention {value}")
        assert result["OK"], result
        versions.append(result["Value"])
    history = cluster.csClient(cluster.masterURL).getCommitHistory(10)["Value"]
    newest = [version for _committer, version in history[:3]]  # the master may add versions of its own
    assert len(zips()) == 3 and all(any(v in name for name in zips()) for v in newest)
    assert ["alice", versions[-1]] in history and ["alice [backup pruned]", versions[0]] in history
    refused = api.rollbackToVersion(versions[0])
    assert not refused["OK"] and "was pruned by the backup retention" in refused["Message"]
    listed = [line for line in _cliRunner(cluster, tmp_path)("history", "-n", "20").stdout.splitlines() if line.startswith(versions[0])]
    assert listed and "[backup pruned]" in listed[0], listed
    assert not any("[backup pruned]" in line for line in _cliRunner(cluster, tmp_path)("history", "-n", "3").stdout.splitlines())
    rolled = api.rollbackToVersion(versions[-2], "back to 1")
    assert rolled["OK"], rolled
    assert cluster.masterFileCFG().getOption("/Test/Retention") == "1"
    assert len(zips()) == 3


def test_masterKilled_slaveAndServiceKeepServing(cluster):
    marker = uuid.uuid4().hex
    api = cluster.csapi("alice")
    assert api.setOption("/Test/LastGood", marker)["OK"]
    version = api.commit("last good")["Value"]
    waitFor(lambda: cluster.probe("/Test/LastGood")["value"] == marker, "the service to see the last good value",
            processes=cluster.live())
    cluster.masterKilled = True
    cluster.processes["master"].kill(signal.SIGKILL)
    slave = cluster.csClient(cluster.slaveURL)
    # several refresh/propagation periods (1 s each) pass with the master gone
    time.sleep(4)
    assert cluster.processes["slave"].poll() is None and cluster.processes["service"].poll() is None
    assert slave.getVersion()["Value"] >= version
    assert cluster.probe("/Test/LastGood")["value"] == marker
    data = slave.getCompressedDataIfNewer("0")
    assert data["OK"] and marker in zlib.decompress(data["Value"]["data"]).decode()
