"""Backup retention of the master CS: which backups are pruned, what is always kept, and how history,
rollback and commits based on a pruned version behave. Real files in a temp dir; times are given, never
measured."""
from __future__ import annotations

import datetime
import logging
import os

import pytest
from diraccfg import CFG

from TornadoServices.ConfigurationSystem.Client.ConfigurationData import ConfigurationData
from TornadoServices.ConfigurationSystem.private.ServiceInterface import (
    ConfigurationStore,
    ServiceInterface,
    compressCFG,
    getCFGOption,
    setCFGOption,
    versionTime,
)

MASTER_URL = "https://master.example:9135/Configuration/Server"
ALICE = {"username": "alice", "DN": "/DC=org/CN=alice", "group": "cs_admin"}
BOB = {"username": "bob", "DN": "/DC=org/CN=bob", "group": "cs_admin"}
DAY = datetime.timedelta(days=1)


def at(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")


def makeStore(tmp_path, versions: list[str]) -> ConfigurationStore:
    """A store holding one backup (and history record) per version, committed by alice."""
    store = ConfigurationStore(str(tmp_path), "TestCS")
    for version in versions:
        cfg = CFG()
        cfg.createNewSection("Test")
        cfg["Test"].setOption("Version", version)
        path = store.backup(cfg, version, "alice")
        store.appendHistory({"version": version, "committer": "alice", "kind": "commit",
                             "backup": os.path.relpath(path, store.backupDir)})
    return store


def backupFiles(store: ConfigurationStore) -> list[str]:
    return sorted(version for _committer, version, _path in store._scanBackups())


# Versions over three months and two years, oldest first.
VERSIONS = [
    "2025-11-20 10:00:00.000000",
    "2025-12-30 10:00:00.000000",
    "2026-01-05 10:00:00.000000",
    "2026-01-06 10:00:00.000000",
    "2026-02-01 10:00:00.000000",
    "2026-02-02 10:00:00.000000",
]
NOW = at("2026-02-10 10:00:00")


# ---- the store ---------------------------------------------------------------------------------------


def test_prune_withoutLimits_keepsEverything(tmp_path):
    store = makeStore(tmp_path, VERSIONS)
    assert store.prune(VERSIONS[-1], now=NOW) == []
    assert store.prune(VERSIONS[-1], maxBackups=0, maxAgeDays=0, now=NOW) == []
    assert backupFiles(store) == VERSIONS


def test_prune_maxBackups_keepsNewestAndRemovesEmptyFolders(tmp_path):
    store = makeStore(tmp_path, VERSIONS)
    removed = store.prune(VERSIONS[-1], maxBackups=3, now=NOW)
    assert removed == VERSIONS[:3]
    assert backupFiles(store) == VERSIONS[3:]
    backups = str(tmp_path / "etc" / "csbackup")
    assert not os.path.exists(os.path.join(backups, "2025"))  # year emptied: month and year removed
    assert os.path.isdir(os.path.join(backups, "2026", "01"))  # still holds 2026-01-06
    assert os.path.isdir(os.path.join(backups, "2026", "02"))
    assert os.path.isfile(store.historyPath)
    for version in removed:
        assert store.backupState(version) == "pruned"
    assert store.backupState(VERSIONS[3]) == "present"
    assert store.backupState("1999-01-01 00:00:00.000000") == "unknown"
    history = {entry["version"]: entry for entry in store.history()}
    assert history[VERSIONS[0]]["backupPruned"] == "2026-02-10 10:00:00"
    assert history[VERSIONS[0]]["committer"] == "alice" and "backup" not in history[VERSIONS[0]]
    assert "backupPruned" not in history[VERSIONS[3]]
    with pytest.raises(KeyError):
        store.loadVersionText(VERSIONS[0])
    assert store.prune(VERSIONS[-1], maxBackups=3, now=NOW) == []  # nothing more to do


def test_prune_maxBackupAge(tmp_path):
    store = makeStore(tmp_path, VERSIONS)
    # older than 10 days on 2026-02-10 10:00: everything before 2026-01-31 10:00
    assert store.prune(VERSIONS[-1], maxAgeDays=10, now=NOW) == VERSIONS[:4]
    assert backupFiles(store) == VERSIONS[4:]
    assert not os.path.exists(str(tmp_path / "etc" / "csbackup" / "2026" / "01"))


def test_prune_bothLimits_removeWhatEitherRemoves(tmp_path):
    store = makeStore(tmp_path, VERSIONS)
    assert store.prune(VERSIONS[-1], maxBackups=5, maxAgeDays=37, now=NOW) == VERSIONS[:2]


def test_prune_neverRemovesTheCurrentVersion(tmp_path):
    store = makeStore(tmp_path, VERSIONS)
    # no commit for a year: the current version is older than the age limit and still kept
    later = NOW + 365 * DAY
    assert store.prune(VERSIONS[-1], maxBackups=1, maxAgeDays=1, now=later) == VERSIONS[:-1]
    assert backupFiles(store) == [VERSIONS[-1]]
    # a current version older than others (after a rollback of the file by hand) is kept too
    store = makeStore(tmp_path / "other", VERSIONS)
    assert VERSIONS[1] not in store.prune(VERSIONS[1], maxBackups=1, now=NOW)
    assert backupFiles(store) == [VERSIONS[1], VERSIONS[-1]]


def test_prune_keepsVersionsCurrentWithinTheGraceTime(tmp_path):
    store = makeStore(tmp_path, VERSIONS)
    # VERSIONS[4] stopped being current at VERSIONS[5] (2026-02-02 10:00): 8 days before NOW
    removed = store.prune(VERSIONS[-1], maxBackups=1, graceSeconds=(8 * DAY).total_seconds() + 1, now=NOW)
    assert removed == VERSIONS[:4]
    assert backupFiles(store) == VERSIONS[4:]
    # VERSIONS[3] stopped being current at VERSIONS[4] (2026-02-01 10:00): 9 days, beyond an 8-day grace
    store = makeStore(tmp_path / "other", VERSIONS)
    removed = store.prune(VERSIONS[-1], maxBackups=1, graceSeconds=(8 * DAY).total_seconds(), now=NOW)
    assert removed == VERSIONS[:5]


def test_prune_graceCountsVersionsWhoseBackupIsAlreadyGone(tmp_path):
    store = makeStore(tmp_path, VERSIONS)
    assert store.prune(VERSIONS[-1], maxBackups=2, now=NOW) == VERSIONS[:4]
    # the successor of VERSIONS[4] is VERSIONS[5]; a later prune still knows the pruned ones from the history
    assert store.prune(VERSIONS[-1], maxBackups=2, now=NOW) == []


def test_prune_keepsWhatItCannotDate(tmp_path):
    odd = ["2025-01-01 00:00:00.000000", "2025-01-02 00:00:00", "release-1", "release-2"]
    store = makeStore(tmp_path, odd)
    # "release-1" has no date: never too old; "2025-01-02 00:00:00" is followed by "release-1", whose time is
    # unknown, so nobody can say when it stopped being current: kept
    assert store.prune("release-2", maxAgeDays=1, graceSeconds=1, now=NOW) == ["2025-01-01 00:00:00.000000"]
    assert backupFiles(store) == odd[1:]


def test_versionTime():
    assert versionTime("2026-01-05 10:00:00.250000") == datetime.datetime(2026, 1, 5, 10, 0, 0, 250000)
    assert versionTime("2026-01-05 10:00:00") == datetime.datetime(2026, 1, 5, 10)
    assert versionTime("0") is None and versionTime("") is None


# ---- the master ----------------------------------------------------------------------------------------


def makeData(retention: str = "", autoMerge: bool = False) -> ConfigurationData:
    data = ConfigurationData()
    text = f"""
DIRAC
{{
  Configuration
  {{
    Master = yes
    Name = TestCS
    EnableAutoMerge = {"yes" if autoMerge else "no"}
  }}
}}
Systems
{{
  Configuration
  {{
    Services
    {{
      Server
      {{
        {retention}
      }}
    }}
  }}
}}
"""
    assert data.loadString(text)["OK"]
    return data


class _Refresher:
    def disable(self) -> None:
        pass

    def autoRefreshAndPublish(self, url: str) -> None:
        pass


def makeMaster(root, data: ConfigurationData) -> ServiceInterface:
    etc = os.path.join(str(root), "etc")
    if not os.path.exists(os.path.join(etc, "TestCS.cfg")):
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(etc, "TestCS.cfg"), "w") as handle:
            handle.write("Test\n{\n  Value = 0\n}\n")
    return ServiceInterface(
        MASTER_URL, configurationData=data, rootPath=str(root), refresher=_Refresher(), startThreads=False
    )


def commit(si: ServiceInterface, who: dict = ALICE, base: CFG | None = None, **options: str) -> dict:
    cfg = (base or si.getCurrentCFG()).clone()
    for key, value in options.items():
        setCFGOption(cfg, f"/Test/{key}", value)
    return si.updateConfiguration(compressCFG(cfg), who, "test")


def backups(si: ServiceInterface) -> list[str]:
    return sorted(version for _c, version, _p in si.store._scanBackups())


def test_master_keepsEverythingByDefault(tmp_path):
    si = makeMaster(tmp_path, makeData())
    for value in range(5):
        assert commit(si, Value=str(value + 1))["OK"]
    assert len(backups(si)) == 6
    assert si.getRetentionPolicy() == {"MaxBackups": 0, "MaxBackupAge": 0.0, "BackupGraceTime": 86400.0}


def test_master_prunesAfterEachCommit_historyAndRollbackSaySo(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="TornadoServices")
    si = makeMaster(tmp_path, makeData("MaxBackups = 2\n        BackupGraceTime = 0"))
    versions = [si.getVersion()]
    for value in range(4):
        result = commit(si, Value=str(value + 1))
        assert result["OK"], result
        versions.append(result["Value"])
        assert backups(si) == versions[-2:]
    pruned = [r for r in caplog.records if r.getMessage().startswith("Configuration backups pruned")]
    assert pruned and all(r.levelno == logging.INFO for r in pruned)
    assert "1 removed" in pruned[-1].getMessage()
    history = si.getCommitHistory()
    assert history[0] == ["alice", versions[-1]] and history[1] == ["alice", versions[-2]]
    assert history[2] == ["alice [backup pruned]", versions[-3]]
    assert history[-1] == ["ConfigurationServer [backup pruned]", versions[0]]
    log = {entry["version"]: entry for entry in si.getCommitLog()}
    assert "backupPruned" in log[versions[0]] and "backupPruned" not in log[versions[-2]]
    refused = si.rollbackToVersion(versions[1], BOB)
    assert not refused["OK"]
    assert refused["Message"] == (
        f"Can't get contents for version {versions[1]}: The backup of version {versions[1]} was pruned by the "
        "backup retention (MaxBackups / MaxBackupAge of the Configuration/Server service): its content can no "
        "longer be read or restored"
    )
    assert "was pruned" in si.getVersionContents(versions[0])["Message"]
    assert "does not exist" in si.getVersionContents("1999-01-01 00:00:00.000000")["Message"]
    rolled = si.rollbackToVersion(versions[-2], BOB)  # a kept version: works, then pruning runs again
    assert rolled["OK"], rolled
    assert getCFGOption(si.getCurrentCFG(), "/Test/Value") == "3"
    assert backups(si) == [versions[-1], rolled["Value"]]


def test_master_commitBasedOnPrunedVersion_isRefusedClearly(tmp_path):
    si = makeMaster(tmp_path, makeData("MaxBackups = 1\n        BackupGraceTime = 0", autoMerge=True))
    stale = si.getCurrentCFG()
    staleVersion = si.getVersion()
    assert commit(si, Other="x")["OK"]
    assert staleVersion not in backups(si)
    before = si.getCurrentCFG()
    result = commit(si, BOB, base=stale, Value="bob")
    assert not result["OK"]
    assert result["Message"].startswith(
        f"Commit refused: conflict, your changes are based on version {staleVersion}, whose backup was pruned by "
        "the backup retention"
    )
    assert "re-apply your changes" in result["Message"]
    assert str(si.getCurrentCFG()) == str(before)  # nothing merged, nothing written


def test_master_graceTimeKeepsTheBaseOfAPendingCommitForAutoMerge(tmp_path):
    # default BackupGraceTime (one day): the version alice downloaded a moment ago keeps its backup
    si = makeMaster(tmp_path, makeData("MaxBackups = 1", autoMerge=True))
    stale = si.getCurrentCFG()
    assert commit(si, Other="x")["OK"]
    assert len(backups(si)) == 2
    result = commit(si, BOB, base=stale, Value="bob")
    assert result["OK"], result
    cfg = si.getCurrentCFG()
    assert getCFGOption(cfg, "/Test/Other") == "x" and getCFGOption(cfg, "/Test/Value") == "bob"
    # a day later the older versions are no longer needed: the next pruning keeps only the current one
    later = versionTime(si.getVersion()) + 2 * DAY
    assert len(si.pruneBackups(now=later)) == 2
    assert backups(si) == [si.getVersion()]


def test_master_maxBackupAge(tmp_path):
    si = makeMaster(tmp_path, makeData("MaxBackupAge = 30\n        BackupGraceTime = 0"))
    for value in range(3):
        assert commit(si, Value=str(value + 1))["OK"]
    assert len(backups(si)) == 4  # all younger than 30 days
    current = si.getVersion()
    assert len(si.pruneBackups(now=versionTime(current) + 31 * DAY)) == 3
    assert backups(si) == [current]


def test_master_prunesAtStartUp(tmp_path, caplog):
    si = makeMaster(tmp_path, makeData())
    for value in range(4):
        assert commit(si, Value=str(value + 1))["OK"]
    si.stop()
    assert len(backups(si)) == 5
    caplog.set_level(logging.DEBUG, logger="TornadoServices")
    again = makeMaster(tmp_path, makeData("MaxBackups = 2\n        BackupGraceTime = 0"))
    assert backups(again) == sorted(backups(again))[-2:] and len(backups(again)) == 2
    assert any("3 removed" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_master_optionCommittedCentrallyAppliesAtTheNextCommit(tmp_path):
    si = makeMaster(tmp_path, makeData())
    for value in range(3):
        assert commit(si, Value=str(value + 1))["OK"]
    cfg = si.getCurrentCFG()
    setCFGOption(cfg, "/Systems/Configuration/Services/Server/MaxBackups", "2")
    setCFGOption(cfg, "/Systems/Configuration/Services/Server/BackupGraceTime", "0")
    assert si.updateConfiguration(compressCFG(cfg), ALICE, "retention")["OK"]
    assert len(backups(si)) == 2


@pytest.mark.parametrize("value", ["many", "-3", "1.5"])
def test_master_invalidRetentionOption_keepsEverythingAndWarns(tmp_path, caplog, value):
    caplog.set_level(logging.DEBUG, logger="TornadoServices")
    si = makeMaster(tmp_path, makeData(f"MaxBackups = {value}\n        BackupGraceTime = 0"))
    assert commit(si, Value="1")["OK"] and commit(si, Value="2")["OK"]
    assert len(backups(si)) == 3
    assert any(
        "Invalid backup retention option" in r.getMessage() and "MaxBackups" in r.getMessage()
        for r in caplog.records
    )


def test_prune_unlinkRefusedHalfWay_recordsWhatWentAndCommitStillSucceeds(tmp_path, monkeypatch, caplog):
    store = makeStore(tmp_path, VERSIONS)
    realUnlink = os.unlink
    calls = []

    def refuseSecond(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied", path)
        return realUnlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refuseSecond)
    with pytest.raises(PermissionError):
        store.prune(VERSIONS[-1], maxBackups=3, now=NOW)
    assert store.backupState(VERSIONS[0]) == "pruned"
    assert store.backupState(VERSIONS[1]) == "present"
    # on the master, a pruning failure is a warning: the commit itself succeeded
    caplog.set_level(logging.DEBUG, logger="TornadoServices")
    si = makeMaster(tmp_path / "master", makeData("MaxBackups = 1\n        BackupGraceTime = 0"))

    def refuseAll(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "unlink", refuseAll)
    assert commit(si, Value="1")["OK"]
    assert any("Cannot prune old configuration backups" in r.getMessage() for r in caplog.records)
