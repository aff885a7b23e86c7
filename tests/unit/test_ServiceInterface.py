"""Unit tests of the Configuration service logic: versions, commits, merge, rollback, slaves, refresher."""
from __future__ import annotations

import os
import threading
import time
import zlib
from base64 import b64encode

import pytest
from diraccfg import CFG

from TornadoServices.ConfigurationSystem.Client.ConfigurationData import ConfigurationData, loadCFGFromText
from TornadoServices.ConfigurationSystem.private import ServiceInterface as SI
from TornadoServices.ConfigurationSystem.private.Refresher import Refresher
from TornadoServices.ConfigurationSystem.private.ServiceInterface import (
    CommitConflict,
    ServiceInterface,
    compressCFG,
    getCFGOption,
    mergeCFGs,
    newVersion,
    setCFGOption,
)
from TornadoServices.Core.ReturnValues import S_ERROR, S_OK

MASTER_URL = "https://master.example:9135/Configuration/Server"
SLAVE_URL = "https://slave.example:9136/Configuration/Server"

INITIAL = """
Registry
{
  Users
  {
    alice
    {
      DN = /DC=org/CN=alice
    }
  }
}
Systems
{
  Framework
  {
    Services
    {
      Dummy
      {
        Protocol = https
        Authorization
        {
          add = CSAdministrator
        }
      }
    }
  }
}
"""

ALICE = {"username": "alice", "DN": "/DC=org/CN=alice", "group": "cs_admin"}
BOB = {"username": "bob", "DN": "/DC=org/CN=bob", "group": "cs_admin"}


class FakeRefresher:
    """Records what the service logic asks of the refresher."""

    def __init__(self) -> None:
        self.disabled = False
        self.slaveURL = None

    def disable(self) -> None:
        self.disabled = True

    def autoRefreshAndPublish(self, url: str) -> None:
        self.slaveURL = url


class FakeClient:
    """A configuration client whose answers come from a shared script; records every call."""

    calls: list = []
    pingName = "Configuration/Server"

    def __init__(self, url: str, **kwargs) -> None:
        self.url = url
        self.kwargs = kwargs

    def ping(self):
        FakeClient.calls.append(("ping", self.url))
        if FakeClient.pingName is None:
            return S_ERROR("connection refused")
        return S_OK({"name": FakeClient.pingName})

    def refreshConfiguration(self, fromMaster):
        FakeClient.calls.append(("refreshConfiguration", self.url, fromMaster))
        return S_OK()


@pytest.fixture(autouse=True)
def _resetFakeClient():
    FakeClient.calls = []
    FakeClient.pingName = "Configuration/Server"


def makeData(extra: str = "", master: bool = True) -> ConfigurationData:
    data = ConfigurationData()
    result = data.loadString(
        f"""
DIRAC
{{
  Configuration
  {{
    Master = {"yes" if master else "no"}
    Name = TestCS
    {extra}
  }}
}}
"""
    )
    assert result["OK"], result
    return data


def writeInitial(root, text: str = INITIAL) -> None:
    etc = os.path.join(str(root), "etc")
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, "TestCS.cfg"), "w") as handle:
        handle.write(text)


def makeMaster(root, data: ConfigurationData | None = None, text: str = INITIAL) -> ServiceInterface:
    if not os.path.exists(os.path.join(str(root), "etc", "TestCS.cfg")):
        writeInitial(root, text)
    return ServiceInterface(
        MASTER_URL,
        configurationData=data or makeData(),
        rootPath=str(root),
        refresher=FakeRefresher(),
        clientFactory=FakeClient,
        startThreads=False,
    )


def edited(si: ServiceInterface, **options: str) -> bytes:
    """Return compressed data of the served configuration with some options set (path=value, '/' as '__')."""
    cfg = si.getCurrentCFG()
    for key, value in options.items():
        setCFGOption(cfg, "/" + key.replace("__", "/"), value)
    return compressCFG(cfg)


def fileCFG(root) -> CFG:
    with open(os.path.join(str(root), "etc", "TestCS.cfg")) as handle:
        return loadCFGFromText(handle.read(), "TestCS.cfg")


# --------------------------------------------------------------------------------------------------


def test_newVersion_isStrictlyIncreasing():
    first = newVersion()
    assert newVersion(first) > first
    future = "2999-01-01 00:00:00.000000"
    assert newVersion(future) == "2999-01-01 00:00:00.000001"
    assert newVersion("2999-01-01 00:00:00") > "2999-01-01 00:00:00"


def test_masterStart_stampsVersionNameAndServers(tmp_path):
    data = makeData()
    si = makeMaster(tmp_path, data)
    cfg = fileCFG(tmp_path)
    version = getCFGOption(cfg, "/DIRAC/Configuration/Version")
    assert version and version == si.getVersion()
    assert getCFGOption(cfg, "/DIRAC/Configuration/Name") == "TestCS"
    assert getCFGOption(cfg, "/DIRAC/Configuration/MasterServer") == MASTER_URL
    assert getCFGOption(cfg, "/DIRAC/Configuration/Servers") == MASTER_URL
    assert si._refresher.disabled
    # the process's own configuration sees the master data
    assert data.getVersion() == version
    assert data.getSnapshot().lookup("/Systems/Framework/Services/Dummy/Authorization/add") == "CSAdministrator"
    history = si.getCommitLog()
    assert [entry["kind"] for entry in history] == ["start"]
    assert si.getVersionContents(version)["OK"]


def test_commit_makesNewVersionWithIdentityAndBackup(tmp_path):
    si = makeMaster(tmp_path)
    before = si.getVersion()
    result = si.updateConfiguration(edited(si, Systems__Framework__Services__Dummy__Authorization__add="authenticated"),
                                    ALICE, "open add")
    assert result["OK"], result
    newV = result["Value"]
    assert newV > before and si.getVersion() == newV
    cfg = fileCFG(tmp_path)
    assert getCFGOption(cfg, "/Systems/Framework/Services/Dummy/Authorization/add") == "authenticated"
    assert getCFGOption(cfg, "/DIRAC/Configuration/Version") == newV
    entry = si.getCommitLog(1)[0]
    assert entry["version"] == newV
    assert entry["committer"] == "alice" and entry["DN"] == "/DC=org/CN=alice" and entry["group"] == "cs_admin"
    assert entry["message"] == "open add" and entry["kind"] == "commit" and entry["baseVersion"] == before
    assert si.getCommitHistory()[0] == ["alice", newV]
    backup = os.path.join(si.store.backupDir, entry["backup"])
    assert os.path.basename(backup) == f"TestCS.alice@{newV}.zip"
    assert os.path.dirname(backup).endswith(os.path.join(newV[:4], newV[5:7]))
    text = zlib.decompress(si.getVersionContents(newV)["Value"]).decode()
    assert "authenticated" in text


def test_commitWithoutChanges_keepsVersion(tmp_path):
    si = makeMaster(tmp_path)
    before = si.getVersion()
    result = si.updateConfiguration(compressCFG(si.getCurrentCFG()), ALICE)
    assert result["OK"] and result["Value"] == before
    assert len(si.getCommitLog()) == 1


def test_staleCommit_isRefusedWithClearMessage(tmp_path):
    si = makeMaster(tmp_path)
    base = si.getVersion()
    stale = edited(si, Extra__B="bob")
    assert si.updateConfiguration(edited(si, Extra__A="alice"), ALICE)["OK"]
    result = si.updateConfiguration(stale, BOB)
    assert not result["OK"]
    message = result["Message"]
    assert "conflict" in message and base in message and si.getVersion() in message
    assert "alice" in message and "Download the current configuration" in message
    assert getCFGOption(fileCFG(tmp_path), "/Extra/B") == ""


def test_staleCommit_autoMergeOfIndependentChanges(tmp_path):
    si = makeMaster(tmp_path, makeData("EnableAutoMerge = yes"))
    stale = edited(si, Extra__B="bob")
    assert si.updateConfiguration(edited(si, Extra__A="alice"), ALICE)["OK"]
    result = si.updateConfiguration(stale, BOB, "independent")
    assert result["OK"], result
    cfg = fileCFG(tmp_path)
    assert getCFGOption(cfg, "/Extra/A") == "alice" and getCFGOption(cfg, "/Extra/B") == "bob"
    assert si.getCommitLog(1)[0]["kind"] == "merge"


def test_staleCommit_autoMergeConflictIsRefused(tmp_path):
    si = makeMaster(tmp_path, makeData("EnableAutoMerge = yes"))
    stale = edited(si, Extra__A="bob")
    assert si.updateConfiguration(edited(si, Extra__A="alice"), ALICE)["OK"]
    result = si.updateConfiguration(stale, BOB)
    assert not result["OK"]
    assert "conflict" in result["Message"] and "/Extra/A" in result["Message"]
    assert getCFGOption(fileCFG(tmp_path), "/Extra/A") == "alice"


def test_commitBasedOnVersionDifferingOnlyInServers_isAccepted(tmp_path):
    si = makeMaster(tmp_path)
    stale = edited(si, Extra__A="x")
    assert si.publishSlaveServer(SLAVE_URL)["OK"]  # makes a new version (Servers changed)
    result = si.updateConfiguration(stale, ALICE)
    assert result["OK"], result
    cfg = fileCFG(tmp_path)
    assert getCFGOption(cfg, "/Extra/A") == "x"
    assert getCFGOption(cfg, "/DIRAC/Configuration/Servers") == SLAVE_URL  # a commit cannot change Servers


def test_commitForAnotherConfigurationName_isRefused(tmp_path):
    si = makeMaster(tmp_path)
    cfg = si.getCurrentCFG()
    setCFGOption(cfg, "/DIRAC/Configuration/Name", "Other")
    result = si.updateConfiguration(compressCFG(cfg), ALICE)
    assert not result["OK"] and "Names differ" in result["Message"]


def test_commitOfGarbage_isRefused(tmp_path):
    si = makeMaster(tmp_path)
    assert "not zlib" in si.updateConfiguration(b"garbage", ALICE)["Message"]
    bad = zlib.compress(b"Section\n{\n  a = 1\n")
    assert "never closed" in si.updateConfiguration(bad, ALICE)["Message"]


def test_rollback_restoresPreviousContent(tmp_path):
    si = makeMaster(tmp_path)
    original = si.getVersion()
    assert si.updateConfiguration(edited(si, Extra__A="1"), ALICE)["OK"]
    assert si.updateConfiguration(edited(si, Extra__A="2", Extra__B="3"), ALICE)["OK"]
    result = si.rollbackToVersion(original, BOB)
    assert result["OK"], result
    assert result["Value"] > original
    cfg = fileCFG(tmp_path)
    assert getCFGOption(cfg, "/Extra/A") == "" and not cfg.isSection("Extra")
    assert getCFGOption(cfg, "/Systems/Framework/Services/Dummy/Authorization/add") == "CSAdministrator"
    entry = si.getCommitLog(1)[0]
    assert entry["kind"] == "rollback" and entry["rollbackTo"] == original and entry["committer"] == "bob"
    unknown = si.rollbackToVersion("1999-01-01 00:00:00.000000", BOB)
    assert not unknown["OK"] and "does not exist" in unknown["Message"]


def test_restart_keepsVersionHistoryAndSlaves(tmp_path):
    si = makeMaster(tmp_path)
    assert si.publishSlaveServer(SLAVE_URL)["OK"]
    assert si.updateConfiguration(edited(si, Extra__A="1"), ALICE)["OK"]
    version = si.getVersion()
    again = makeMaster(tmp_path)
    assert again.getVersion() == version
    assert [e["version"] for e in again.getCommitLog()] == [e["version"] for e in si.getCommitLog()]
    assert SLAVE_URL in again.getSlaves()


def test_slave_refusesCommitsAndUsesRefresher(tmp_path):
    data = makeData("MasterServer = " + MASTER_URL, master=False)
    refresher = FakeRefresher()
    si = ServiceInterface(SLAVE_URL, configurationData=data, rootPath=str(tmp_path), refresher=refresher,
                          clientFactory=FakeClient)
    assert not si.isMaster() and refresher.slaveURL == SLAVE_URL
    result = si.updateConfiguration(compressCFG(CFG()), ALICE)
    assert not result["OK"] and MASTER_URL in result["Message"]
    assert not si.publishSlaveServer("https://other:1/Configuration/Server")["OK"]
    data.loadRemoteCFG(loadCFGFromText("DIRAC\n{\n  Configuration\n  {\n    Version = 5\n  }\n}\n"), "5")
    assert si.getVersion() == "5"
    assert "Version = 5" in zlib.decompress(si.getCompressedConfigurationData()).decode()


def test_publishSlave_verifiesAndUpdatesServers(tmp_path):
    si = makeMaster(tmp_path)
    before = si.getVersion()
    assert si.publishSlaveServer(SLAVE_URL)["OK"]
    assert ("ping", SLAVE_URL) in FakeClient.calls
    assert si.getVersion() > before
    assert getCFGOption(fileCFG(tmp_path), "/DIRAC/Configuration/Servers") == SLAVE_URL
    assert si.getCommitLog(1)[0]["kind"] == "servers"
    # a known slave republishing: no new ping, no new version
    calls, version = len(FakeClient.calls), si.getVersion()
    assert si.publishSlaveServer(SLAVE_URL)["OK"]
    assert len(FakeClient.calls) == calls and si.getVersion() == version


def test_publishSlave_refusesNonConfigurationAndUnreachableAndSelf(tmp_path):
    si = makeMaster(tmp_path)
    FakeClient.pingName = "Framework/Dummy"
    assert "not a Configuration service" in si.publishSlaveServer(SLAVE_URL)["Message"]
    FakeClient.pingName = None
    assert "did not answer" in si.publishSlaveServer(SLAVE_URL)["Message"]
    assert "own URL" in si.publishSlaveServer(MASTER_URL)["Message"]
    assert "Invalid slave URL" in si.publishSlaveServer("dips://x:9135/Configuration/Server")["Message"]
    FakeClient.pingName = "Configuration/TornadoConfiguration"  # a slave under another name is a CS too
    assert si.publishSlaveServer(SLAVE_URL)["OK"]
    assert si.getSlaves().keys() == {SLAVE_URL}


def test_deadSlaves_areForgottenAfterGraceTime(tmp_path):
    si = makeMaster(tmp_path, makeData("SlavesGraceTime = 5"))
    assert si.publishSlaveServer(SLAVE_URL)["OK"]
    assert si.checkSlavesStatus() == []
    si._slaves[SLAVE_URL] -= 10
    assert si.checkSlavesStatus() == [SLAVE_URL]
    assert getCFGOption(fileCFG(tmp_path), "/DIRAC/Configuration/Servers") == MASTER_URL


def test_livenessThreadRuns(tmp_path):
    writeInitial(tmp_path)
    si = ServiceInterface(MASTER_URL, configurationData=makeData("SlavesGraceTime = 1"), rootPath=str(tmp_path),
                          refresher=FakeRefresher(), clientFactory=FakeClient)
    try:
        assert si.publishSlaveServer(SLAVE_URL)["OK"]
        deadline = time.time() + 30
        while si.getSlaves() and time.time() < deadline:
            time.sleep(0.1)
        assert not si.getSlaves()
    finally:
        si.stop()


def test_commit_pushesToLiveSlavesWithFromMaster(tmp_path):
    si = makeMaster(tmp_path)
    assert si.publishSlaveServer(SLAVE_URL)["OK"]
    assert si.updateConfiguration(edited(si, Extra__A="1"), ALICE)["OK"]
    deadline = time.time() + 30
    while ("refreshConfiguration", SLAVE_URL, True) not in FakeClient.calls and time.time() < deadline:
        time.sleep(0.05)
    assert ("refreshConfiguration", SLAVE_URL, True) in FakeClient.calls


def test_forceGlobalUpdate_callsEveryServiceButConfiguration(tmp_path):
    text = """
Systems
{
  Framework
  {
    URLs
    {
      Dummy = https://a:8443/Framework/Dummy, https://b:8443/Framework/Dummy
    }
  }
  Configuration
  {
    URLs
    {
      Server = https://m:9135/Configuration/Server
    }
  }
}
"""
    si = makeMaster(tmp_path, text=text)
    results = si.forceGlobalUpdate(wait=True)
    assert set(results) == {"https://a:8443/Framework/Dummy", "https://b:8443/Framework/Dummy"}
    assert ("refreshConfiguration", "https://a:8443/Framework/Dummy", False) in FakeClient.calls


def test_concurrentCommits_exactlyOneWins_fileAlwaysComplete(tmp_path):
    si = makeMaster(tmp_path)
    proposals = [edited(si, Extra__Who=f"admin{i}") for i in range(6)]
    barrier = threading.Barrier(len(proposals))
    results = [None] * len(proposals)

    def commit(i):
        barrier.wait()
        results[i] = si.updateConfiguration(proposals[i], {"username": f"admin{i}", "DN": f"/CN=admin{i}"})

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(len(proposals))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, r in enumerate(results) if r["OK"]]
    assert len(winners) == 1
    assert all("conflict" in r["Message"] for r in results if not r["OK"])
    assert getCFGOption(fileCFG(tmp_path), "/Extra/Who") == f"admin{winners[0]}"


def test_failedWrite_leavesOldFileIntact(tmp_path, monkeypatch):
    si = makeMaster(tmp_path)
    with open(si.store.cfgPath) as handle:
        before = handle.read()

    def brokenReplace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SI.os, "replace", brokenReplace)
    result = si.updateConfiguration(edited(si, Extra__A="1"), ALICE)
    assert not result["OK"] and "No space left" in result["Message"]
    monkeypatch.undo()
    with open(si.store.cfgPath) as handle:
        assert handle.read() == before
    assert [f for f in os.listdir(os.path.dirname(si.store.cfgPath)) if f.endswith(".tmp")] == []
    assert getCFGOption(si.getCurrentCFG(), "/Extra/A") == ""


def test_missingName_isAClearError(tmp_path):
    data = ConfigurationData()
    data.loadString("DIRAC\n{\n  Configuration\n  {\n    Master = yes\n  }\n}\n")
    with pytest.raises(ValueError, match="/DIRAC/Configuration/Name"):
        ServiceInterface(MASTER_URL, configurationData=data, rootPath=str(tmp_path), refresher=FakeRefresher(),
                         clientFactory=FakeClient, startThreads=False)


# ---- three-way merge --------------------------------------------------------------------------------


def cfg(text: str) -> CFG:
    return loadCFGFromText(text)


def test_merge_appliesAdditionsRemovalsAndKeepsOtherSide():
    base = cfg("A\n{\n  x = 1\n  y = 2\n}\nB\n{\n  z = 3\n}\n")
    current = cfg("A\n{\n  x = 1\n  y = 20\n}\nB\n{\n  z = 3\n}\nC\n{\n  n = new\n}\n")
    proposed = cfg("A\n{\n  x = 10\n  y = 2\n}\nD\n{\n  d = 4\n}\n")
    merged = mergeCFGs(base, current, proposed)
    assert getCFGOption(merged, "/A/x") == "10" and getCFGOption(merged, "/A/y") == "20"
    assert not merged.isSection("B") and getCFGOption(merged, "/C/n") == "new" and getCFGOption(merged, "/D/d") == "4"


def test_merge_sameChangeOnBothSidesIsNotAConflict():
    base = cfg("a = 1\n")
    assert getCFGOption(mergeCFGs(base, cfg("a = 2\n"), cfg("a = 2\n")), "/a") == "2"


def test_merge_sectionRemovedWhileChangedInsideIsAConflict():
    base = cfg("S\n{\n  a = 1\n}\n")
    with pytest.raises(CommitConflict, match="section /S was removed"):
        mergeCFGs(base, cfg("S\n{\n  a = 1\n  b = 2\n}\n"), cfg("T = 1\n"))
    with pytest.raises(CommitConflict, match="section /S was removed"):
        mergeCFGs(base, cfg("T = 1\n"), cfg("S\n{\n  a = 5\n}\n"))


def test_merge_optionBecomesSection():
    base = cfg("a = 1\nb = 2\n")
    merged = mergeCFGs(base, cfg("a = 1\nb = 3\n"), cfg("a\n{\n  x = 1\n}\nb = 2\n"))
    assert merged.isSection("a") and getCFGOption(merged, "/a/x") == "1" and getCFGOption(merged, "/b") == "3"


# ---- refresher ----------------------------------------------------------------------------------------


class FakeServer:
    """Plays a configuration server for the refresher: holds one configuration, may be down."""

    def __init__(self, text: str, version: str) -> None:
        self.down = False
        self.published: list = []
        self.set(text, version)

    def set(self, text: str, version: str) -> None:
        self.version = version
        self.data = zlib.compress(f"DIRAC\n{{\n  Configuration\n  {{\n    Version = {version}\n  }}\n}}\n{text}".encode())

    def client(self, url, **kwargs):
        server = self

        class Client:
            def getCompressedDataIfNewer(self, version):
                if server.down:
                    return S_ERROR(f"{url}: connection refused")
                answer = {"newestVersion": server.version}
                if version < server.version:
                    answer["data"] = b64encode(server.data).decode()
                return S_OK(answer)

            def publishSlaveServer(self, slaveURL):
                server.published.append((url, slaveURL, kwargs.get("useCertificates")))
                return S_OK()

        return Client()


def makeRefresherData(extra: str = "") -> ConfigurationData:
    data = ConfigurationData()
    data.loadString(
        "DIRAC\n{\n  Configuration\n  {\n    Servers = https://cs:9135/Configuration/Server\n"
        f"    MasterServer = {MASTER_URL}\n    RefreshTime = 1\n    PropagationTime = 1\n{extra}  }}\n}}\n"
    )
    return data


def test_refresher_loadsNewerDataAndKeepsLastGoodOnFailure():
    server = FakeServer("Opt = one\n", "2020-01-01 00:00:00.000001")
    data = makeRefresherData()
    refresher = Refresher(data, clientFactory=server.client)
    generation = data.generation
    assert refresher.forceRefresh()["OK"]
    assert data.getSnapshot().lookup("/Opt") == "one" and data.generation > generation
    generation = data.generation
    assert refresher.forceRefresh()["OK"]
    assert data.generation == generation  # same version: nothing reloaded
    server.down = True
    result = refresher.forceRefresh()
    assert not result["OK"] and "Reason(s)" in result["Message"] and "connection refused" in result["Message"]
    assert data.getSnapshot().lookup("/Opt") == "one"


def test_refresher_threadFollowsChanges_andSlaveModePublishes():
    server = FakeServer("Opt = one\n", "2020-01-01 00:00:00.000001")
    data = makeRefresherData()
    refresher = Refresher(data, clientFactory=server.client)
    try:
        assert refresher.start()["OK"]
        assert data.getSnapshot().lookup("/Opt") == "one"
        server.set("Opt = two\n", "2020-01-01 00:00:00.000002")
        deadline = time.time() + 30
        while data.getSnapshot().lookup("/Opt") != "two" and time.time() < deadline:
            time.sleep(0.05)
        assert data.getSnapshot().lookup("/Opt") == "two"
        refresher.autoRefreshAndPublish(SLAVE_URL)
        while not server.published and time.time() < deadline:
            time.sleep(0.05)
        assert server.published[0] == (MASTER_URL, SLAVE_URL, True)
    finally:
        refresher.stop()


def test_refresher_doesNothingOnMaster():
    data = makeRefresherData("    Master = yes\n")
    refresher = Refresher(data, clientFactory=lambda *a, **k: pytest.fail("no client on the master"))
    assert refresher.start()["OK"]
    assert not refresher.isRunning() and not refresher.isEnabled()
