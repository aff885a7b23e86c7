"""Master and slave logic of the Configuration service: versions, commits, backups, history and slaves.

The *master* owns the configuration: ``<rootPath>/etc/<Name>.cfg`` holds the current version, every version
is also kept as a zip under ``<rootPath>/etc/csbackup/<YYYY>/<MM>/<Name>.<committer>@<version>.zip`` (DIRAC's
layout) and described by one JSON line in ``<rootPath>/etc/csbackup/<Name>.history.jsonl`` (who, DN,
group, message, kind). Commits are optimistic: the proposed configuration carries the version it was
edited from; if the configuration changed since then the commit is refused, unless
``/DIRAC/Configuration/EnableAutoMerge`` is on and a three-way merge is clean. Files are replaced
atomically (temporary file in the same directory, fsync, rename, fsync of the directory), so a reader or a
crash never sees half a file. Backups are kept forever unless the service section sets ``MaxBackups`` and/or
``MaxBackupAge``; pruning (after each new version and at start) never removes the current version's backup nor
those of versions current within ``BackupGraceTime``, which a pending commit may be based on.

A *slave* serves the copy its refresher pulls from the master, and publishes its own URL to the master,
which keeps a registry of live slaves, pushes new versions to them and forgets them after
``SlavesGraceTime`` of silence.
"""
from __future__ import annotations

import datetime
import difflib
import io
import json
import os
import re
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from diraccfg import CFG

from TornadoServices.ConfigurationSystem.Client.ConfigurationData import (
    CFGSyntaxError,
    ConfigurationData,
    cfgNode,
    gConfigurationData,
    loadCFGFromText,
    splitPath,
)
from TornadoServices.Core.Logging import gLogger
from TornadoServices.Core.ReturnValues import S_ERROR, S_OK

__all__ = [
    "CommitConflict",
    "ConfigurationStore",
    "ServiceInterface",
    "IGNORED_PATHS",
    "compressCFG",
    "decompressCFG",
    "diffCFGTexts",
    "flattenCFG",
    "mergeCFGs",
    "newVersion",
    "versionTime",
]

sLog = gLogger.getSubLogger("ConfigurationService")

CONF_SECTION = "/DIRAC/Configuration"
VERSION_PATH = f"{CONF_SECTION}/Version"
NAME_PATH = f"{CONF_SECTION}/Name"
SERVERS_PATH = f"{CONF_SECTION}/Servers"
MASTER_PATH = f"{CONF_SECTION}/MasterServer"

#: Options the master manages itself: never a reason for a conflict, never taken from a commit.
IGNORED_PATHS = (VERSION_PATH, SERVERS_PATH, MASTER_PATH)

#: Where the master reads its backup retention options (MaxBackups, MaxBackupAge, BackupGraceTime).
DEFAULT_SERVICE_SECTION = "/Systems/Configuration/Services/Server"

#: BackupGraceTime default: the backup of a version current less than a day ago is never pruned.
DEFAULT_BACKUP_GRACE_TIME = 86400

#: Appended to the committer in getCommitHistory for versions whose backup was pruned.
PRUNED_MARK = " [backup pruned]"

#: ``event`` of the history line written when a version's backup is pruned by the retention rules.
PRUNED_EVENT = "backupPruned"

#: Committer recorded for versions the master makes on its own (slave list changes, first start).
SYSTEM_COMMITTER = "ConfigurationServer"

_SECTION = object()  # marker for "this path is a section" in flattened configurations


class CommitConflict(Exception):
    """A commit that cannot be applied on top of the current configuration."""


# --------------------------------------------------------------------------------------------------
# Small helpers on CFG trees
# --------------------------------------------------------------------------------------------------


def newVersion(previous: str | None = None) -> str:
    """Return a version string (UTC time as DIRAC writes it) strictly greater than ``previous``."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    candidate = now.strftime("%Y-%m-%d %H:%M:%S.%f")
    if previous and candidate <= previous:
        try:
            prev = datetime.datetime.strptime(previous, "%Y-%m-%d %H:%M:%S.%f")
        except ValueError:
            try:
                prev = datetime.datetime.strptime(previous, "%Y-%m-%d %H:%M:%S")
            except ValueError:
                prev = now
        candidate = (prev + datetime.timedelta(microseconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
        if candidate <= previous:  # an unparsable previous version sorting after any date
            raise ValueError(f"cannot make a version newer than {previous!r}: fix /DIRAC/Configuration/Version")
    return candidate


def versionTime(version: str) -> datetime.datetime | None:
    """Return the UTC time a version string names (DIRAC writes str(utcnow())), None when it names none."""
    for layout in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.datetime.strptime(version, layout)
        except (TypeError, ValueError):
            continue
    return None


def compressCFG(cfg: CFG | str) -> bytes:
    """Return the CFG text zlib-compressed at level 9, the CS service's transfer format."""
    return zlib.compress(str(cfg).encode(), 9)


def decompressCFG(data: bytes | str, source: str = "<configuration data>") -> CFG:
    """Parse zlib-compressed CFG text; raise ValueError naming what is wrong with it."""
    if isinstance(data, str):
        data = data.encode("latin-1")
    try:
        text = zlib.decompress(data).decode()
    except (zlib.error, UnicodeDecodeError) as exc:
        raise ValueError(f"{source} is not zlib-compressed UTF-8 CFG text: {exc}") from None
    try:
        return loadCFGFromText(text, source)
    except CFGSyntaxError as exc:
        raise ValueError(f"cannot parse {exc}") from None


def getCFGOption(cfg: CFG, path: str, default: str = "") -> str:
    """Return the option at ``path`` of ``cfg`` as text, ``default`` when missing or a section."""
    node = cfgNode(cfg, path)
    return node if isinstance(node, str) else default


def ensureSection(cfg: CFG, path: str) -> CFG:
    """Return the section at ``path``, creating missing sections; ValueError if an option is in the way."""
    node = cfg
    walked = ""
    for part in splitPath(path):
        walked += "/" + part
        if node.isOption(part):
            raise ValueError(f"{walked} is an option, not a section")
        if not node.isSection(part):
            node.createNewSection(part)
        node = node[part]
    return node


def setCFGOption(cfg: CFG, path: str, value: str, comment: str | None = None) -> None:
    """Set the option at ``path`` (creating its sections); ValueError if the path names a section."""
    parts = splitPath(path)
    if not parts:
        raise ValueError("an option path must not be empty")
    parent = ensureSection(cfg, "/".join(parts[:-1]))
    if parent.isSection(parts[-1]):
        raise ValueError(f"/{'/'.join(parts)} is a section, not an option")
    if comment is None:
        comment = _safeComment(parent, parts[-1])
    parent.setOption(parts[-1], value, comment)


def _safeComment(section: CFG, name: str) -> str:
    """Return the comment of an entry, "" when it has none or does not exist."""
    try:
        return section.getComment(name) or ""
    except (ValueError, KeyError):
        return ""


def deleteCFGEntry(cfg: CFG, path: str) -> bool:
    """Delete the option or section at ``path``; True when it existed."""
    parts = splitPath(path)
    if not parts:
        return False
    parent = cfgNode(cfg, "/".join(parts[:-1]))
    if not isinstance(parent, CFG) or parts[-1] not in parent.listAll():
        return False
    parent.deleteKey(parts[-1])
    return True


def flattenCFG(cfg: CFG, prefix: str = "") -> dict[str, Any]:
    """Map every path of ``cfg`` to its option text, or to a section marker for sections."""
    flat: dict[str, Any] = {}
    for name in cfg.listAll():
        path = f"{prefix}/{name}"
        if cfg.isSection(name):
            flat[path] = _SECTION
            flat.update(flattenCFG(cfg[name], path))
        else:
            flat[path] = cfg[name]
    return flat


def _isIgnored(path: str, ignored: Iterable[str]) -> bool:
    return any(path == ign or path.startswith(ign + "/") for ign in ignored)


def _changes(before: dict[str, Any], after: dict[str, Any], ignored: Iterable[str]) -> dict[str, Any]:
    """Return path -> new value (None for a removal) for every path that differs."""
    result: dict[str, Any] = {}
    for path in before.keys() | after.keys():
        if _isIgnored(path, ignored):
            continue
        old, new = before.get(path), after.get(path)
        if old is not new and old != new:
            result[path] = new
    return result


def sameContent(first: CFG, second: CFG, ignored: Iterable[str] = IGNORED_PATHS) -> bool:
    """True when both configurations hold the same entries, ignoring the master-managed options."""
    return not _changes(flattenCFG(first), flattenCFG(second), ignored)


def _describe(value: Any) -> str:
    if value is None:
        return "removed"
    if value is _SECTION:
        return "a section"
    return f"set to {value!r}"


def mergeCFGs(base: CFG, current: CFG, proposed: CFG, ignored: Iterable[str] = IGNORED_PATHS) -> CFG:
    """Apply the edits base->proposed on top of current; raise CommitConflict when both sides touched the same thing.

    Conflicts: one path changed differently on both sides; a section removed on one side while the other
    changed something inside it.
    """
    ignored = tuple(ignored)
    flatBase, flatCurrent, flatProposed = flattenCFG(base), flattenCFG(current), flattenCFG(proposed)
    theirs = _changes(flatBase, flatCurrent, ignored)  # what others committed since the base
    ours = _changes(flatBase, flatProposed, ignored)  # what this commit wants
    problems = []
    for path, value in sorted(ours.items()):
        if path in theirs:
            other = theirs[path]
            if other is value or other == value:
                continue
            problems.append(f"{path} was {_describe(other)} by another commit, this commit has it {_describe(value)}")
    for mine, other, who in ((ours, theirs, "this commit"), (theirs, ours, "another commit")):
        for path, value in mine.items():
            if value is None and flatBase.get(path) is _SECTION:
                inside = sorted(p for p in other if p.startswith(path + "/"))
                if inside:
                    problems.append(f"section {path} was removed by {who} while {inside[0]} changed on the other side")
    if problems:
        raise CommitConflict("; ".join(sorted(set(problems))))
    merged = current.clone()
    flatMerged = flattenCFG(merged)
    for path in sorted((p for p, v in ours.items() if v is None), key=lambda p: -p.count("/")):
        deleteCFGEntry(merged, path)
    for path in sorted((p for p, v in ours.items() if v is not None), key=lambda p: (p.count("/"), p)):
        value = ours[path]
        existing = flatMerged.get(path)
        if existing is not None and (existing is _SECTION) != (value is _SECTION):
            deleteCFGEntry(merged, path)  # an option became a section or the reverse
        if value is _SECTION:
            ensureSection(merged, path)
        else:
            setCFGOption(merged, path, value, comment=_commentOf(proposed, path))
    return merged


def _commentOf(cfg: CFG, path: str) -> str:
    parts = splitPath(path)
    node: Any = cfg
    for part in parts[:-1]:
        node = node[part]
    return _safeComment(node, parts[-1])


def diffCFGTexts(oldText: str, newText: str, oldLabel: str = "old", newLabel: str = "new") -> list[str]:
    """Return a unified diff (lines without newlines) between two CFG texts."""
    return list(
        difflib.unified_diff(
            oldText.splitlines(), newText.splitlines(), fromfile=oldLabel, tofile=newLabel, lineterm=""
        )
    )


def atomicWrite(path: str, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically: temporary file in the same directory, fsync, rename, fsync dir."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmpPath = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if os.path.exists(path):
            os.chmod(tmpPath, os.stat(path).st_mode & 0o7777)
        else:
            os.chmod(tmpPath, 0o644)
        os.replace(tmpPath, path)
    except BaseException:
        try:
            os.unlink(tmpPath)
        except OSError:
            pass
        raise
    _fsyncDirectory(directory)


def _fsyncDirectory(directory: str) -> None:
    try:
        dirFd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dirFd)
    except OSError:
        pass
    finally:
        os.close(dirFd)


# --------------------------------------------------------------------------------------------------
# On-disk store of the master
# --------------------------------------------------------------------------------------------------


class ConfigurationStore:
    """The master's files: current configuration, one zip backup per version, and the history log."""

    def __init__(self, rootPath: str, name: str) -> None:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(
                f"invalid configuration name {name!r}: set /DIRAC/Configuration/Name to a plain name, e.g. Production"
            )
        self.name = name
        self.etcDir = os.path.join(rootPath, "etc")
        self.cfgPath = os.path.join(self.etcDir, f"{name}.cfg")
        self.backupDir = os.path.join(self.etcDir, "csbackup")
        self.historyPath = os.path.join(self.backupDir, f"{name}.history.jsonl")
        self._lock = threading.Lock()

    def load(self) -> CFG | None:
        """Read the current configuration file; None when it does not exist yet."""
        try:
            with open(self.cfgPath, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return None
        return loadCFGFromText(text, self.cfgPath)

    def write(self, cfg: CFG) -> None:
        """Replace the current configuration file atomically."""
        atomicWrite(self.cfgPath, str(cfg).encode())

    def backupPath(self, version: str, committer: str) -> str:
        """Return where the backup of ``version`` goes (DIRAC layout, by year and month of the version)."""
        year, month = version[:4], version[5:7]
        if not (year.isdigit() and month.isdigit()):
            now = datetime.datetime.now(datetime.timezone.utc)
            year, month = f"{now.year:04d}", f"{now.month:02d}"
        safeCommitter = re.sub(r"[^A-Za-z0-9_.+-]", "_", committer) or "unknown"
        return os.path.join(self.backupDir, year, month, f"{self.name}.{safeCommitter}@{version}.zip")

    def backup(self, cfg: CFG, version: str, committer: str) -> str:
        """Store ``cfg`` as the backup of ``version`` and return the backup path."""
        path = self.backupPath(version, committer)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{self.name}.cfg.backup.{os.path.basename(path)[len(self.name) + 1:-4]}", str(cfg))
        atomicWrite(path, buffer.getvalue())
        return path

    def appendHistory(self, entry: dict[str, Any]) -> None:
        """Append one version record to the history log and fsync it."""
        os.makedirs(self.backupDir, exist_ok=True)
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock:
            with open(self.historyPath, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())

    def history(self) -> list[dict[str, Any]]:
        """Return the version records, newest first; falls back to the backup file names (DIRAC installs)."""
        entries: dict[str, dict[str, Any]] = {}
        try:
            with open(self.historyPath, encoding="utf-8") as handle:
                for line in handle:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue  # a line cut by a crash: the zip backups still hold the version
                    if not isinstance(entry, dict) or not isinstance(entry.get("version"), str):
                        continue
                    if entry.get("event") == PRUNED_EVENT:  # a later line saying the backup was pruned
                        record = entries.setdefault(
                            entry["version"], {"version": entry["version"], "committer": entry.get("committer", "")}
                        )
                        record["backupPruned"] = entry.get("time", "")
                        record.pop("backup", None)
                        continue
                    previous = entries.get(entry["version"], {})
                    entries[entry["version"]] = entry
                    if "backupPruned" in previous and "backup" not in entry:
                        entry["backupPruned"] = previous["backupPruned"]
        except FileNotFoundError:
            pass
        for committer, version, path in self._scanBackups():
            entries.setdefault(
                version, {"version": version, "committer": committer, "backup": os.path.relpath(path, self.backupDir)}
            )
        return sorted(entries.values(), key=lambda entry: entry["version"], reverse=True)

    def _scanBackups(self) -> list[tuple[str, str, str]]:
        """Return (committer, version, path) for every backup zip of this configuration."""
        found = []
        prefix = f"{self.name}."
        for directory, _subdirs, files in os.walk(self.backupDir):
            for fileName in files:
                if fileName.startswith(prefix) and fileName.endswith(".zip") and "@" in fileName:
                    committer, version = fileName[len(prefix) : -4].split("@", 1)
                    found.append((committer, version, os.path.join(directory, fileName)))
        return found

    def backupState(self, version: str) -> str:
        """Say what is known of the backup of ``version``: "present", "pruned" (removed by the retention
        rules), "missing" (in the history but its file is gone) or "unknown" (never recorded)."""
        if self.findBackup(version) is not None:
            return "present"
        for entry in self.history():
            if entry["version"] == version:
                return "pruned" if "backupPruned" in entry else "missing"
        return "unknown"

    def prune(
        self,
        currentVersion: str,
        maxBackups: int = 0,
        maxAgeDays: float = 0.0,
        graceSeconds: float = 0.0,
        now: datetime.datetime | None = None,
    ) -> list[str]:
        """Remove the backups the retention rules no longer keep; return the pruned versions, oldest first.

        A backup goes when it is not among the ``maxBackups`` newest (0: no limit) or its version is older than
        ``maxAgeDays`` days (0: no limit). Never removed: the backup of ``currentVersion`` and of every version
        that was current less than ``graceSeconds`` before ``now`` (UTC; default the present), because a commit
        prepared on such a version needs it (see ServiceInterface._rebase). Emptied month and year folders go
        too. Each pruned version gets a history line, so history and rollback can say it was pruned.
        """
        if maxBackups <= 0 and maxAgeDays <= 0:
            return []
        if now is None:
            now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        with self._lock:
            paths: dict[str, list[str]] = {}
            committers: dict[str, str] = {}
            for committer, version, path in self._scanBackups():
                paths.setdefault(version, []).append(path)
                committers[version] = committer
            known = sorted(set(paths) | {entry["version"] for entry in self.history()} | {currentVersion})
            successor = {version: known[i + 1] if i + 1 < len(known) else None for i, version in enumerate(known)}
            ageLimit = datetime.timedelta(days=maxAgeDays) if maxAgeDays > 0 else None
            removed = []
            for index, version in enumerate(sorted(paths, reverse=True)):
                if version == currentVersion or self._stillNeeded(successor.get(version), graceSeconds, now):
                    continue
                created = versionTime(version)
                tooMany = 0 < maxBackups <= index
                tooOld = ageLimit is not None and created is not None and now - created > ageLimit
                if tooMany or tooOld:
                    removed.append(version)
            done: list[str] = []
            folders: set[str] = {self.backupDir}
            try:
                for version in sorted(removed):  # oldest first
                    for path in paths[version]:
                        try:
                            os.unlink(path)
                        except FileNotFoundError:
                            pass
                        folders.add(os.path.dirname(path))
                        self._removeEmptyFolders(os.path.dirname(path))
                    done.append(version)
            finally:  # an unlink refused half-way (OSError for the caller): record what is gone
                if done:
                    self._recordPruned(done, committers, folders, now)
        return sorted(removed)

    def _recordPruned(
        self, versions: list[str], committers: dict[str, str], folders: set[str], now: datetime.datetime
    ) -> None:
        """Make the removals durable (fsync of the folders still there) and append one history line each."""
        for folder in folders:
            if os.path.isdir(folder):
                _fsyncDirectory(folder)
        stamp = now.strftime("%Y-%m-%d %H:%M:%S")
        lines = "".join(
            json.dumps(
                {"version": version, "event": PRUNED_EVENT, "time": stamp, "committer": committers[version]},
                sort_keys=True,
            )
            + "\n"
            for version in sorted(versions)
        )
        with open(self.historyPath, "a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())

    @staticmethod
    def _stillNeeded(successor: str | None, graceSeconds: float, now: datetime.datetime) -> bool:
        """True when the version followed by ``successor`` was current less than ``graceSeconds`` ago."""
        if successor is None:
            return True  # nothing replaced it: it is (or was last) current
        replaced = versionTime(successor)
        if replaced is None:
            return True  # cannot tell when it stopped being current: keep it
        return (now - replaced).total_seconds() < graceSeconds

    def _removeEmptyFolders(self, directory: str) -> None:
        """Remove ``directory`` (a month folder) and its parent (a year folder) when empty, never backupDir."""
        root = os.path.abspath(self.backupDir)
        for folder in (directory, os.path.dirname(directory)):
            folder = os.path.abspath(folder)
            if folder == root or not folder.startswith(root + os.sep):
                return
            try:
                os.rmdir(folder)
            except OSError:
                return  # not empty (or already gone)

    def findBackup(self, version: str) -> str | None:
        """Return the backup path holding ``version``, None when there is none."""
        for entry in self.history():
            if entry["version"] == version and entry.get("backup"):
                path = os.path.join(self.backupDir, entry["backup"])
                if os.path.isfile(path):
                    return path
        for _committer, found, path in self._scanBackups():
            if found == version:
                return path
        return None

    def hasBackup(self, version: str) -> bool:
        """True when a backup of ``version`` exists."""
        return self.findBackup(version) is not None

    def loadVersionText(self, version: str) -> str:
        """Return the CFG text of ``version``; KeyError when it was never backed up."""
        path = self.findBackup(version)
        if path is None:
            raise KeyError(version)
        with zipfile.ZipFile(path) as archive:
            return archive.read(archive.namelist()[0]).decode()

    def loadVersion(self, version: str) -> CFG:
        """Return the configuration of ``version``; KeyError when unknown, ValueError when unreadable."""
        text = self.loadVersionText(version)
        try:
            return loadCFGFromText(text, f"backup of version {version}")
        except CFGSyntaxError as exc:
            raise ValueError(str(exc)) from None


# --------------------------------------------------------------------------------------------------
# The service logic
# --------------------------------------------------------------------------------------------------


def _committerOf(credDict: dict[str, Any] | None) -> dict[str, str]:
    """Return the identity fields recorded with a version."""
    credDict = credDict or {}
    username = credDict.get("username") or credDict.get("hostname") or "unknown"
    return {
        "committer": str(username),
        "DN": str(credDict.get("DN") or ""),
        "group": str(credDict.get("group") or ""),
    }


def _defaultClientFactory(url: str, **kwargs: Any) -> Any:
    """Build the RPC client used to talk to other Configuration servers (host certificate)."""
    from TornadoServices.ConfigurationSystem.Client.ConfigurationClient import ConfigurationClient

    return ConfigurationClient(url=url, **kwargs)


class ServiceInterface:
    """State and behaviour of one Configuration server, master or slave."""

    def __init__(
        self,
        url: str,
        *,
        configurationData: ConfigurationData = gConfigurationData,
        rootPath: str | None = None,
        isMaster: bool | None = None,
        refresher: Any = None,
        clientFactory: Callable[..., Any] = _defaultClientFactory,
        startThreads: bool = True,
        serviceSection: str = DEFAULT_SERVICE_SECTION,
    ) -> None:
        self.url = url
        self.serviceSection = serviceSection
        self._data = configurationData
        self._master = configurationData.isMaster() if isMaster is None else isMaster
        self._clientFactory = clientFactory
        self._lock = threading.RLock()
        self._commitLock = threading.Lock()
        self._slaves: dict[str, float] = {}
        self._stopEvent = threading.Event()
        self._threads: list[threading.Thread] = []
        self._compressedCache: tuple[str, bytes] | None = None
        self._cfg = CFG()
        self._version = "0"
        self.store: ConfigurationStore | None = None
        if refresher is None:
            from TornadoServices.ConfigurationSystem.private.Refresher import gRefresher

            refresher = gRefresher
        self._refresher = refresher
        if self._master:
            sLog.info("Starting configuration service as master", url)
            self._refresher.disable()
            if rootPath is None:
                import TornadoServices

                rootPath = TornadoServices.rootPath
            self._loadMasterData(rootPath)
            if startThreads:
                self._startThread(self._slaveLivenessLoop, "CS-slave-liveness")
        else:
            sLog.info("Starting configuration service as slave", url)
            if startThreads:
                self._refresher.autoRefreshAndPublish(url)

    # ---- life cycle -----------------------------------------------------------------------------

    def _startThread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        """Stop the background threads (tests; servers just exit)."""
        self._stopEvent.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def isMaster(self) -> bool:
        """True when this server is the master (may accept commits)."""
        return self._master

    def _loadMasterData(self, rootPath: str) -> None:
        """Load <root>/etc/<Name>.cfg, fix its Name/Version/MasterServer/Servers, back it up, publish it."""
        name = self._data.getName()
        if not name:
            raise ValueError(
                "the master configuration has no name: set /DIRAC/Configuration/Name (e.g. Production) "
                "in the master's local configuration"
            )
        self.store = ConfigurationStore(rootPath, name)
        os.makedirs(self.store.backupDir, exist_ok=True)
        cfg = self.store.load()
        created = cfg is None
        if cfg is None:
            sLog.warn("No master configuration file: starting an empty configuration", self.store.cfgPath)
            cfg = CFG()
        fileName = getCFGOption(cfg, NAME_PATH)
        if fileName and fileName != name:
            raise ValueError(
                f"{self.store.cfgPath} holds configuration {fileName!r} but /DIRAC/Configuration/Name is {name!r}: "
                "fix one of them"
            )
        changed = created
        version = getCFGOption(cfg, VERSION_PATH, "0") or "0"
        if not fileName:
            setCFGOption(cfg, NAME_PATH, name)
            changed = True
        if getCFGOption(cfg, MASTER_PATH) != self.url:
            setCFGOption(cfg, MASTER_PATH, self.url)
            changed = True
        servers = [s.strip() for s in getCFGOption(cfg, SERVERS_PATH).split(",") if s.strip()]
        now = time.time()
        for server in servers:
            if server != self.url:
                self._slaves[server] = now  # known slaves get a grace period to republish after a restart
        if not servers:
            setCFGOption(cfg, SERVERS_PATH, self.url)
            changed = True
        if version == "0" or changed:
            version = newVersion(version if version != "0" else None)
            setCFGOption(cfg, VERSION_PATH, version)
            self.store.write(cfg)
            self._recordVersion(cfg, version, {"committer": SYSTEM_COMMITTER}, kind="start", message="master started")
        elif not self.store.hasBackup(version):
            self._recordVersion(cfg, version, {"committer": SYSTEM_COMMITTER}, kind="start", message="existing version")
        self._install(cfg, version)
        sLog.notice("Master configuration loaded", f"{self.store.cfgPath} version {version}")
        with self._commitLock:
            self._pruneBackups()

    def _recordVersion(
        self, cfg: CFG, version: str, identity: dict[str, str], kind: str, message: str = "", **extra: Any
    ) -> None:
        """Back up ``cfg`` as ``version`` and append its history record."""
        assert self.store is not None
        path = self.store.backup(cfg, version, identity.get("committer", "unknown"))
        entry = {
            "version": version,
            "committer": identity.get("committer", "unknown"),
            "DN": identity.get("DN", ""),
            "group": identity.get("group", ""),
            "kind": kind,
            "message": message,
            "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "backup": os.path.relpath(path, self.store.backupDir),
        }
        entry.update({key: value for key, value in extra.items() if value is not None})
        self.store.appendHistory(entry)

    def _install(self, cfg: CFG, version: str) -> None:
        """Make ``cfg`` the served configuration of this master and of this process's gConfig."""
        with self._lock:
            self._cfg = cfg
            self._version = version
            self._compressedCache = None
        self._data.loadRemoteCFG(cfg, version)

    # ---- backup retention -----------------------------------------------------------------------

    def _retentionOption(self, name: str, default: float, kind: type) -> float:
        """Return a retention option of the service section (>= 0), ``default`` (with a warning) when invalid."""
        path = f"{self.serviceSection}/{name}"
        value = self._data.getSnapshot().lookup(path)
        if not isinstance(value, str) or not value.strip():
            return default
        try:
            number = kind(value.strip())
        except ValueError:
            number = -1
        if number < 0:
            sLog.warn(
                "Invalid backup retention option",
                f"{path} = {value!r} is not a {'whole ' if kind is int else ''}number >= 0: using {default}",
            )
            return default
        return number

    def getRetentionPolicy(self) -> dict[str, float]:
        """Return the backup retention options: MaxBackups (0: no limit), MaxBackupAge in days (0: no limit) and
        BackupGraceTime in seconds, read from the service section at every use."""
        return {
            "MaxBackups": int(self._retentionOption("MaxBackups", 0, int)),
            "MaxBackupAge": self._retentionOption("MaxBackupAge", 0.0, float),
            "BackupGraceTime": self._retentionOption("BackupGraceTime", DEFAULT_BACKUP_GRACE_TIME, float),
        }

    def pruneBackups(self, now: datetime.datetime | None = None) -> list[str]:
        """Apply the backup retention now (the master does it after each new version and at start); return the
        pruned versions. ``now`` (UTC) is for tests."""
        with self._commitLock:
            return self._pruneBackups(now)

    def _pruneBackups(self, now: datetime.datetime | None = None) -> list[str]:
        """Apply the retention under the commit lock (held by the caller), so no commit reads a base meanwhile."""
        if not self._master or self.store is None:
            return []
        policy = self.getRetentionPolicy()
        if not policy["MaxBackups"] and not policy["MaxBackupAge"]:
            return []
        try:
            removed = self.store.prune(
                self._version, policy["MaxBackups"], policy["MaxBackupAge"], policy["BackupGraceTime"], now
            )
        except OSError as exc:
            sLog.warn("Cannot prune old configuration backups", str(exc))
            return []
        if removed:
            sLog.info(
                "Configuration backups pruned",
                f"{len(removed)} removed ({removed[0]} ... {removed[-1]}) by MaxBackups = {policy['MaxBackups']}, "
                f"MaxBackupAge = {policy['MaxBackupAge']:g} days",
            )
        return removed

    # ---- reading --------------------------------------------------------------------------------

    def getVersion(self) -> str:
        """Return the version this server serves ("0" when it has none yet)."""
        if self._master:
            return self._version
        return self._data.getVersion()

    def getCompressedConfigurationData(self) -> bytes:
        """Return the served configuration zlib-compressed (cached per version)."""
        return self.getVersionAndCompressedData()[1]

    def getVersionAndCompressedData(self) -> tuple[str, bytes]:
        """Return (version, compressed data) of one and the same configuration, cached per version."""
        cache = self._compressedCache
        if cache is not None and cache[0] == self.getVersion():
            return cache
        with self._lock:
            if self._master:
                cfg, version = self._cfg, self._version
            else:
                cfg = self._data.getRemoteCFG()
                version = getCFGOption(cfg, VERSION_PATH, "") or self._data.getVersion()
            cache = (version, compressCFG(cfg))
            self._compressedCache = cache
        return cache

    def getCurrentCFG(self) -> CFG:
        """Return a copy of the served configuration."""
        if self._master:
            with self._lock:
                return self._cfg.clone()
        return self._data.getRemoteCFG()

    # ---- history --------------------------------------------------------------------------------

    def _requireStore(self) -> ConfigurationStore:
        if self.store is None:
            raise RuntimeError("history is kept by the master only")
        return self.store

    def getCommitHistory(self, limit: int = 100) -> list[list[str]]:
        """Return [[committer, version], ...] newest first (DIRAC's format); the committer of a version whose
        backup was pruned reads "<committer> [backup pruned]" (it cannot be diffed or rolled back to)."""
        history = []
        for entry in self.getCommitLog(limit):
            committer = entry.get("committer") or "unknown"
            if "backupPruned" in entry:
                committer += PRUNED_MARK
            history.append([committer, entry["version"]])
        return history

    def getCommitLog(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return the version records (committer, DN, group, kind, message, time...) newest first."""
        if not self._master:
            return []
        history = self._requireStore().history()
        if limit and limit > 0:
            history = history[:limit]
        return history

    def getVersionContents(self, version: str) -> dict:
        """Return S_OK(zlib-compressed CFG text of ``version``) or S_ERROR when it is unknown."""
        if not self._master:
            return S_ERROR("Version contents are kept by the master only: ask /DIRAC/Configuration/MasterServer")
        try:
            text = self._requireStore().loadVersionText(version)
        except KeyError:
            state = self._requireStore().backupState(version)
            if state == "pruned":
                return S_ERROR(
                    f"The backup of version {version} was pruned by the backup retention (MaxBackups / MaxBackupAge "
                    "of the Configuration/Server service): its content can no longer be read or restored"
                )
            if state == "missing":
                return S_ERROR(
                    f"The backup of version {version} is missing from {self._requireStore().backupDir}: its content "
                    "cannot be read or restored"
                )
            return S_ERROR(
                f"Version {version} does not exist: list the versions with getCommitHistory (tornado-cs history)"
            )
        except (OSError, zipfile.BadZipFile) as exc:
            return S_ERROR(f"Cannot read the backup of version {version}: {exc}")
        return S_OK(zlib.compress(text.encode(), 9))

    # ---- commits --------------------------------------------------------------------------------

    def updateConfiguration(
        self,
        data: bytes,
        credDict: dict[str, Any] | None = None,
        message: str = "",
        *,
        updateVersionOption: bool = False,
        kind: str = "commit",
        extra: dict[str, Any] | None = None,
    ) -> dict:
        """Commit compressed CFG data; S_OK(new version) or S_ERROR saying why (conflict, not master, bad data)."""
        if not self._master:
            return S_ERROR(
                "Configuration modification is not allowed in this server: it is a slave, "
                f"commit to the master ({self._data.getMasterServer() or 'see /DIRAC/Configuration/MasterServer'})"
            )
        try:
            proposed = decompressCFG(data, "committed configuration")
        except ValueError as exc:
            return S_ERROR(f"Cannot commit: {exc}")
        identity = _committerOf(credDict)
        with self._commitLock:
            try:
                result = self._commit(proposed, identity, message, updateVersionOption, kind, extra or {})
            except CommitConflict as exc:
                sLog.warn("Commit refused", f"by {identity['committer']}: {exc}")
                return S_ERROR(str(exc))
            except (OSError, ValueError) as exc:
                sLog.exception("Commit failed", lException=exc)
                return S_ERROR(f"Cannot commit: {exc}")
            if result.get("newVersion"):
                self._pruneBackups()
        if result["OK"] and result.get("newVersion") and self._data.getAutoSlaveSync():
            self.forceSlavesUpdate()
        return S_OK(result["Value"])

    def _commit(
        self,
        proposed: CFG,
        identity: dict[str, str],
        message: str,
        updateVersionOption: bool,
        kind: str,
        extra: dict[str, Any],
    ) -> dict:
        """Check, merge and store a proposed configuration; the caller holds the commit lock."""
        assert self.store is not None
        with self._lock:
            current = self._cfg.clone()
            currentVersion = self._version
        proposedName = getCFGOption(proposed, NAME_PATH)
        if proposedName != self.store.name:
            raise CommitConflict(
                f"Names differ: this server holds configuration {self.store.name!r}, the commit is for "
                f"{proposedName or 'an unnamed configuration'!r}"
            )
        baseVersion = currentVersion if updateVersionOption else getCFGOption(proposed, VERSION_PATH, "0") or "0"
        merged = None
        if baseVersion != currentVersion:
            merged = self._rebase(proposed, current, currentVersion, baseVersion)
        final = (merged if merged is not None else proposed).clone()
        if sameContent(final, current):
            sLog.info("Commit without changes", f"by {identity['committer']} on version {currentVersion}")
            return {"OK": True, "Value": currentVersion, "newVersion": False}
        for path in (SERVERS_PATH, MASTER_PATH):
            setCFGOption(final, path, getCFGOption(current, path))
        version = newVersion(currentVersion)
        setCFGOption(final, VERSION_PATH, version)
        self.store.write(final)
        self._recordVersion(
            final,
            version,
            identity,
            kind="merge" if merged is not None and kind == "commit" else kind,
            message=message,
            baseVersion=baseVersion,
            previousVersion=currentVersion,
            **extra,
        )
        self._install(final, version)
        sLog.notice("New configuration version", f"{version} committed by {identity['committer']} ({identity['DN']})")
        return {"OK": True, "Value": version, "newVersion": True}

    def _rebase(self, proposed: CFG, current: CFG, currentVersion: str, baseVersion: str) -> CFG | None:
        """Handle a commit made on ``baseVersion`` != current: None if nothing relevant changed since, merged CFG if
        auto-merge is on and clean, else CommitConflict."""
        assert self.store is not None
        try:
            base = self.store.loadVersion(baseVersion)
        except KeyError:
            base = None
        except ValueError as exc:
            raise CommitConflict(f"Cannot read version {baseVersion} the commit is based on: {exc}") from None
        if base is not None and sameContent(base, current):
            return None  # only master-managed options (slave list) changed since the committer's download
        if base is None:
            state = self.store.backupState(baseVersion)
            if state in ("pruned", "missing"):
                why = (
                    "was pruned by the backup retention (MaxBackups / MaxBackupAge of the Configuration/Server "
                    "service)"
                    if state == "pruned"
                    else "is missing from the backup folder"
                )
                raise CommitConflict(
                    f"Commit refused: conflict, your changes are based on version {baseVersion}, whose backup {why}, "
                    "so they "
                    f"cannot be compared with or merged into the current version {currentVersion}. Download the "
                    "current configuration, re-apply your changes and commit again"
                )
        autoMerge = self._data.getSnapshot().lookup(f"{CONF_SECTION}/EnableAutoMerge")
        autoMerge = isinstance(autoMerge, str) and autoMerge.lower() in ("y", "yes", "true", "1")
        lastCommitter = self._lastCommitterAfter(baseVersion)
        if not autoMerge:
            raise CommitConflict(
                f"Commit refused: conflict, your changes are based on version {baseVersion} but the configuration is "
                f"now at version {currentVersion}{lastCommitter}. Download the current configuration, re-apply your "
                "changes and commit again (or enable /DIRAC/Configuration/EnableAutoMerge)"
            )
        if base is None:
            raise CommitConflict(
                f"Commit refused: conflict, cannot auto-merge: version {baseVersion} your changes are based on is "
                f"unknown to this server (current version {currentVersion}). Download the current configuration and "
                "commit again"
            )
        try:
            return mergeCFGs(base, current, proposed)
        except CommitConflict as exc:
            raise CommitConflict(
                f"Commit refused: conflict, auto-merge of your changes (based on version {baseVersion}) with version "
                f"{currentVersion}{lastCommitter} failed: {exc}. Download the current configuration, re-apply your "
                "changes and commit again"
            ) from None
        except ValueError as exc:
            raise CommitConflict(f"Commit refused: conflict, auto-merge failed: {exc}") from None

    def _lastCommitterAfter(self, baseVersion: str) -> str:
        """Return ' (committed by X, Y)' naming who committed after ``baseVersion``, for conflict messages."""
        assert self.store is not None
        names = []
        for entry in self.store.history():
            if entry["version"] <= baseVersion:
                break
            if entry.get("committer") != SYSTEM_COMMITTER and entry.get("committer") not in names:
                names.append(entry.get("committer"))
        return f" (committed by {', '.join(names)})" if names else ""

    def rollbackToVersion(self, version: str, credDict: dict[str, Any] | None = None, message: str = "") -> dict:
        """Make the content of an older ``version`` the new current version; S_OK(new version)."""
        result = self.getVersionContents(version)
        if not result["OK"]:
            return S_ERROR(f"Can't get contents for version {version}: {result['Message']}")
        return self.updateConfiguration(
            result["Value"],
            credDict,
            message or f"rollback to version {version}",
            updateVersionOption=True,
            kind="rollback",
            extra={"rollbackTo": version},
        )

    # ---- slaves ---------------------------------------------------------------------------------

    def getSlaves(self) -> dict[str, float]:
        """Return the live slaves: URL -> time of their last publication."""
        with self._lock:
            return dict(self._slaves)

    def publishSlaveServer(self, slaveURL: str) -> dict:
        """Register or refresh a slave; a new slave is verified (ping with the host certificate) first."""
        if not self._master:
            return S_ERROR("Only the master configuration server registers slaves: publish to MasterServer")
        slaveURL = (slaveURL or "").strip()
        if not slaveURL.startswith("https://"):
            return S_ERROR(f"Invalid slave URL {slaveURL!r}: expected https://host:port/Configuration/<Service>")
        if slaveURL == self.url:
            return S_ERROR(
                f"{slaveURL} is the master's own URL: set the slave's URL in its local configuration "
                "(/Systems/Configuration/Services/<Service>/URL)"
            )
        with self._lock:
            known = slaveURL in self._slaves
        if not known:
            result = self._verifySlave(slaveURL)
            if not result["OK"]:
                sLog.warn("Slave refused", f"{slaveURL}: {result['Message']}")
                return result
        with self._lock:
            isNew = slaveURL not in self._slaves
            self._slaves[slaveURL] = time.time()
        if isNew:
            sLog.notice("New slave registered", slaveURL)
            self._serversChanged()
        return S_OK()

    def _verifySlave(self, slaveURL: str) -> dict:
        """Check that ``slaveURL`` answers as a Configuration service."""
        try:
            client = self._clientFactory(slaveURL, useCertificates=True, timeout=10)
            result = client.ping()
        except Exception as exc:  # a broken client must not break the master
            return S_ERROR(f"cannot contact slave {slaveURL}: {exc}")
        if not result["OK"]:
            return S_ERROR(f"slave {slaveURL} did not answer ping: {result['Message']}")
        value = result["Value"] if isinstance(result.get("Value"), dict) else {}
        name = str(value.get("name", ""))
        if name.split("/")[0] != "Configuration":
            return S_ERROR(f"{slaveURL} is not a Configuration service (it says it is {name or 'unnamed'})")
        return S_OK()

    def checkSlavesStatus(self, forceWriteConfiguration: bool = False) -> list[str]:
        """Forget slaves silent for more than SlavesGraceTime; return the ones dropped."""
        if not self._master:
            return []
        graceTime = self._data.getSlavesGraceTime()
        now = time.time()
        with self._lock:
            dead = [url for url, seen in self._slaves.items() if now - seen > graceTime]
            for url in dead:
                del self._slaves[url]
        for url in dead:
            sLog.warn("Slave is dead: no publication within SlavesGraceTime", f"{url} ({graceTime} s)")
        if dead or forceWriteConfiguration:
            self._serversChanged()
        return dead

    def _serversValue(self) -> str:
        with self._lock:
            slaves = sorted(self._slaves)
        return ", ".join(slaves) if slaves else self.url

    def _serversChanged(self) -> None:
        """Write a new version whose /DIRAC/Configuration/Servers lists the live slaves (or the master)."""
        with self._commitLock:
            servers = self._serversValue()
            with self._lock:
                cfg = self._cfg.clone()
                currentVersion = self._version
            if getCFGOption(cfg, SERVERS_PATH) == servers:
                return
            setCFGOption(cfg, SERVERS_PATH, servers)
            version = newVersion(currentVersion)
            setCFGOption(cfg, VERSION_PATH, version)
            assert self.store is not None
            try:
                self.store.write(cfg)
                self._recordVersion(
                    cfg,
                    version,
                    {"committer": SYSTEM_COMMITTER},
                    kind="servers",
                    message=f"servers: {servers}",
                    previousVersion=currentVersion,
                )
            except OSError as exc:
                sLog.error("Cannot write the new slave list", str(exc))
                return
            self._install(cfg, version)
            self._pruneBackups()
        sLog.info("Configuration servers updated", servers)

    def _slaveLivenessLoop(self) -> None:
        """Periodically drop dead slaves (runs in its own thread on the master)."""
        while not self._stopEvent.is_set():
            interval = max(1.0, min(self._data.getSlavesGraceTime() / 4.0, 60.0))
            if self._stopEvent.wait(interval):
                return
            try:
                self.checkSlavesStatus()
            except Exception as exc:  # keep the loop alive whatever happens
                sLog.exception("Slave liveness check failed", lException=exc)

    # ---- pushes ---------------------------------------------------------------------------------

    def _liveSlaves(self) -> list[str]:
        graceTime = self._data.getSlavesGraceTime()
        now = time.time()
        with self._lock:
            return [url for url, seen in self._slaves.items() if now - seen <= graceTime]

    def forceSlavesUpdate(self, wait: bool = False) -> dict[str, dict]:
        """Ask every live slave to pull the new version from the master now (in background threads)."""
        return self._updateServiceConfiguration(self._liveSlaves(), fromMaster=True, wait=wait)

    def forceGlobalUpdate(self, wait: bool = True) -> dict[str, dict]:
        """Ask every service listed under /Systems/*/URLs (except Configuration ones) to refresh its configuration."""
        urls: set[str] = set()
        with self._lock:
            tree = (self._cfg if self._master else self._data.getRemoteCFG()).getAsDict()
        systems = tree.get("Systems", {}) if isinstance(tree, dict) else {}
        for systemName, system in systems.items():
            if not isinstance(system, dict) or systemName == "Configuration":
                continue
            for container in [system] + [v for v in system.values() if isinstance(v, dict)]:
                for urlSection in (container.get("URLs"), container.get("FailoverURLs")):
                    if not isinstance(urlSection, dict):
                        continue
                    for value in urlSection.values():
                        if isinstance(value, str):
                            urls.update(u.strip() for u in value.split(",") if u.strip().startswith("https://"))
        urls = {url for url in urls if "/Configuration/" not in url}
        return self._updateServiceConfiguration(sorted(urls), fromMaster=False, wait=wait)

    def _updateServiceConfiguration(self, urls: Iterable[str], fromMaster: bool, wait: bool) -> dict[str, dict]:
        """Call refreshConfiguration(fromMaster) on each URL in parallel; with ``wait`` return their answers."""
        results: dict[str, dict] = {}
        threads = []

        def push(url: str) -> None:
            try:
                client = self._clientFactory(url, useCertificates=True, timeout=30)
                result = client.refreshConfiguration(fromMaster)
            except Exception as exc:  # report, never raise, from a push thread
                result = S_ERROR(f"cannot contact {url}: {exc}")
            if not result["OK"]:
                sLog.warn("Configuration update push failed", f"{url}: {result['Message']}")
            else:
                sLog.verbose("Configuration update pushed", url)
            results[url] = {key: value for key, value in result.items() if key in ("OK", "Value", "Message")}

        for url in urls:
            thread = threading.Thread(target=push, args=(url,), name=f"CS-push-{url}", daemon=True)
            threads.append(thread)
            thread.start()
        if wait:
            for thread in threads:
                thread.join(timeout=60)
        return results

