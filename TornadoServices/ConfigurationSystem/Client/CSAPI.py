"""``CSAPI``: change the central configuration from Python, as DIRAC's CSAPI does.

Typical use (the caller needs ``CSAdministrator``, e.g. a proxy of an admin group or a host certificate)::

    csAPI = CSAPI()                                   # downloads the master's current configuration
    csAPI.setOption("/Systems/Framework/Services/Dummy/Authorization/add", "authenticated")
    csAPI.delOption("/Systems/Framework/Services/Dummy/Obsolete")
    result = csAPI.commit("open add to everybody")    # S_OK(new version) or S_ERROR (e.g. a conflict)

Edits are kept locally until ``commit``; the commit carries the version they were made on, so the master
refuses it if somebody else committed in between (unless the master has ``EnableAutoMerge`` on and the
changes do not overlap). After a refused commit, ``downloadCSData()`` and re-apply the edits.
"""
from __future__ import annotations

import zlib
from typing import Any

from diraccfg import CFG

from TornadoServices.ConfigurationSystem.Client.ConfigurationClient import ConfigurationClient
from TornadoServices.ConfigurationSystem.Client.ConfigurationData import cfgNode, gConfigurationData, splitPath
from TornadoServices.ConfigurationSystem.private.ServiceInterface import (
    compressCFG,
    decompressCFG,
    deleteCFGEntry,
    diffCFGTexts,
    ensureSection,
    getCFGOption,
    setCFGOption,
)
from TornadoServices.Core.Logging import gLogger
from TornadoServices.Core.ReturnValues import S_ERROR, S_OK

__all__ = ["CSAPI"]

sLog = gLogger.getSubLogger("CSAPI")


def _listValue(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


class CSAPI:
    """Accumulate configuration changes against the master CS and commit them in one new version."""

    def __init__(self, url: str | None = None, **clientKwargs: Any) -> None:
        self.csModified = False
        self._url = url
        self._clientKwargs = clientKwargs
        self._client: ConfigurationClient | None = None
        self._cfg = CFG()
        self._baseCFG = CFG()
        self._baseVersion = "0"
        self.__initialized: dict = S_ERROR("CSAPI not initialized")
        self.initialize()
        if not self.__initialized["OK"]:
            sLog.error("Cannot use the configuration service", self.__initialized["Message"])

    # ---- connection -----------------------------------------------------------------------------

    def initialize(self) -> dict:
        """Connect to the master (url, else /DIRAC/Configuration/MasterServer) and download its configuration."""
        if self.__initialized["OK"]:
            return self.__initialized
        master = self._url or gConfigurationData.getMasterServer()
        if not master:
            self.__initialized = S_ERROR(
                "Master server is not known: set /DIRAC/Configuration/MasterServer (or /DIRAC/Configuration/Servers "
                "so that it is downloaded) or pass url= to CSAPI"
            )
            return self.__initialized
        self._client = ConfigurationClient(url=master, **self._clientKwargs)
        result = self.downloadCSData()
        if not result["OK"]:
            self.__initialized = S_ERROR(f"Cannot download the configuration from {master}: {result['Message']}")
            return self.__initialized
        self.__initialized = S_OK()
        return self.__initialized

    def getMasterURL(self) -> str:
        """Return the URL of the configuration server this API talks to."""
        return self._client.getServiceName() if self._client else (self._url or "")

    def downloadCSData(self) -> dict:
        """Fetch the current configuration (dropping local edits); S_OK(version)."""
        if self._client is None:
            return S_ERROR("CSAPI not initialized: no master server")
        result = self._client.getCompressedData()
        if not result["OK"]:
            return result
        try:
            cfg = decompressCFG(result["Value"], f"configuration from {self.getMasterURL()}")
        except ValueError as exc:
            return S_ERROR(str(exc))
        self._baseCFG = cfg
        self._cfg = cfg.clone()
        self._baseVersion = getCFGOption(cfg, "/DIRAC/Configuration/Version", "0") or "0"
        self.csModified = False
        return S_OK(self._baseVersion)

    # ---- reading the working copy ----------------------------------------------------------------

    def getVersion(self) -> str:
        """Return the version the working copy was downloaded at (what a commit is based on)."""
        return self._baseVersion

    def getCurrentCFG(self) -> dict:
        """Return S_OK(copy of the working configuration, local edits included)."""
        if not self.__initialized["OK"]:
            return self.__initialized
        return S_OK(self._cfg.clone())

    def getBaseCFG(self) -> CFG:
        """Return a copy of the configuration as downloaded (without local edits)."""
        return self._baseCFG.clone()

    def getValue(self, optionPath: str, defaultValue: Any = None) -> Any:
        """Return the option text at ``optionPath`` in the working copy, ``defaultValue`` when missing."""
        value = cfgNode(self._cfg, optionPath)
        return value if isinstance(value, str) else defaultValue

    def getOptions(self, sectionPath: str) -> list[str]:
        """Return the option names of a section of the working copy ([] when missing)."""
        section = cfgNode(self._cfg, sectionPath)
        return section.listOptions() if isinstance(section, CFG) else []

    def getSections(self, sectionPath: str) -> list[str]:
        """Return the subsection names of a section of the working copy ([] when missing)."""
        section = cfgNode(self._cfg, sectionPath)
        return section.listSections() if isinstance(section, CFG) else []

    def listUsers(self, group: str | bool = False) -> dict:
        """Return S_OK(user names), all of them or the members of ``group``."""
        if not self.__initialized["OK"]:
            return self.__initialized
        if not group:
            return S_OK(self.getSections("/Registry/Users"))
        return S_OK(_listValue(self.getValue(f"/Registry/Groups/{group}/Users")))

    def listGroups(self) -> dict:
        """Return S_OK(group names)."""
        if not self.__initialized["OK"]:
            return self.__initialized
        return S_OK(self.getSections("/Registry/Groups"))

    def listHosts(self) -> dict:
        """Return S_OK(host names)."""
        if not self.__initialized["OK"]:
            return self.__initialized
        return S_OK(self.getSections("/Registry/Hosts"))

    # ---- editing the working copy ----------------------------------------------------------------

    def _edit(self, action: Any, done: str, path: str) -> dict:
        """Run one edit of the working copy; S_OK(what was done) or S_ERROR naming the path."""
        if not self.__initialized["OK"]:
            return self.__initialized
        try:
            action()
        except (ValueError, KeyError) as exc:
            return S_ERROR(f"Cannot change {path or '/'}: {exc}")
        self.csModified = True
        return S_OK(done)

    def setOption(self, optionPath: str, optionValue: Any) -> dict:
        """Create or change an option (creating its sections)."""
        value = ", ".join(map(str, optionValue)) if isinstance(optionValue, (list, tuple)) else str(optionValue)
        return self._edit(lambda: setCFGOption(self._cfg, optionPath, value), f"Set {optionPath} = {value}", optionPath)

    def modifyValue(self, optionPath: str, newValue: Any) -> dict:
        """Change an option that must already exist."""
        if self.getValue(optionPath) is None:
            return S_ERROR(f"Trying to set {optionPath} to {newValue} but the option does not exist: use setOption")
        return self.setOption(optionPath, newValue)

    def setOptionComment(self, optionPath: str, comment: str) -> dict:
        """Set the comment of an existing option or section."""
        parts = splitPath(optionPath)
        parent = cfgNode(self._cfg, "/".join(parts[:-1]))
        if not parts or not isinstance(parent, CFG) or parts[-1] not in parent.listAll():
            return S_ERROR(f"Cannot comment {optionPath}: it does not exist")
        return self._edit(lambda: parent.setComment(parts[-1], comment), f"Commented {optionPath}", optionPath)

    def delOption(self, optionPath: str) -> dict:
        """Delete an option."""
        if self.getValue(optionPath) is None:
            return S_ERROR(f"Couldn't delete option {optionPath}: no such option")
        return self._edit(lambda: deleteCFGEntry(self._cfg, optionPath), f"Deleted option {optionPath}", optionPath)

    def createSection(self, sectionPath: str, comment: str = "") -> dict:
        """Create a section (and its parents); existing sections are kept."""

        def create() -> None:
            ensureSection(self._cfg, sectionPath)
            if comment:
                parts = splitPath(sectionPath)
                parent = cfgNode(self._cfg, "/".join(parts[:-1]))
                parent.setComment(parts[-1], comment)

        return self._edit(create, f"Created section {sectionPath}", sectionPath)

    def delSection(self, sectionPath: str) -> dict:
        """Delete a section and everything under it."""
        if not isinstance(cfgNode(self._cfg, sectionPath), CFG):
            return S_ERROR(f"Could not delete section {sectionPath}: no such section")
        return self._edit(lambda: deleteCFGEntry(self._cfg, sectionPath), f"Deleted section {sectionPath}", sectionPath)

    def copySection(self, originalPath: str, targetPath: str) -> dict:
        """Copy a section (contents merged into the target)."""
        source = cfgNode(self._cfg, originalPath)
        if not isinstance(source, CFG):
            return S_ERROR(f"Cannot copy {originalPath}: no such section")
        return self.mergeCFGUnderSection(targetPath, source.clone())

    def moveSection(self, originalPath: str, targetPath: str) -> dict:
        """Move a section to a new path."""
        result = self.copySection(originalPath, targetPath)
        if not result["OK"]:
            return result
        return self.delSection(originalPath)

    def mergeCFGUnderSection(self, sectionPath: str, cfg: CFG) -> dict:
        """Merge ``cfg`` into the section at ``sectionPath`` (created if missing); ``cfg`` wins."""

        def merge() -> None:
            parts = splitPath(sectionPath)
            section = ensureSection(self._cfg, sectionPath)
            merged = section.mergeWith(cfg)
            if not parts:
                self._cfg = merged
                return
            parent = cfgNode(self._cfg, "/".join(parts[:-1]))
            parent.deleteKey(parts[-1])
            parent.createNewSection(parts[-1], contents=merged)

        return self._edit(merge, f"Merged into {sectionPath or '/'}", sectionPath)

    def mergeFromCFG(self, cfg: CFG) -> dict:
        """Merge a whole CFG over the working copy (its values win)."""
        return self.mergeCFGUnderSection("", cfg)

    mergeWithCFG = mergeFromCFG

    def showDiff(self) -> dict:
        """Return S_OK(unified diff lines) of the local edits against the downloaded version (also logged)."""
        lines = diffCFGTexts(str(self._baseCFG), str(self._cfg), f"version {self._baseVersion}", "local changes")
        for line in lines:
            if line[:1] in ("+", "-"):
                sLog.notice(line)
        return S_OK(lines)

    # ---- talking to the master ---------------------------------------------------------------------

    def commit(self, message: str = "") -> dict:
        """Send the working copy to the master; S_OK(new version) or S_ERROR (refused, e.g. conflict)."""
        if not self.__initialized["OK"]:
            return self.__initialized
        if not self.csModified:
            return S_OK(self._baseVersion)
        assert self._client is not None
        result = self._client.commitNewData(compressCFG(self._cfg), message)
        if not result["OK"]:
            sLog.error("Can't commit new configuration data", result["Message"])
            return result
        newVersion = result["Value"]
        downloaded = self.downloadCSData()
        if not downloaded["OK"]:
            sLog.warn("Committed, but cannot download the new version", downloaded["Message"])
        return S_OK(newVersion)

    def commitChanges(self, sortUsers: bool = False, message: str = "") -> dict:
        """Commit (DIRAC name); ``sortUsers`` sorts /Registry/Users and group member lists first."""
        if sortUsers and self.csModified:
            self.sortUsersAndGroups()
        return self.commit(message)

    def sortUsersAndGroups(self) -> None:
        """Sort users and hosts alphabetically and each group's Users list."""
        for path in ("/Registry/Users", "/Registry/Hosts"):
            section = cfgNode(self._cfg, path)
            if isinstance(section, CFG):
                section.sortAlphabetically()
        for group in self.getSections("/Registry/Groups"):
            path = f"/Registry/Groups/{group}/Users"
            users = self.getValue(path)
            if users:
                ordered = ", ".join(sorted(_listValue(users)))
                if ordered != users:
                    setCFGOption(self._cfg, path, ordered)

    def getCommitHistory(self, limit: int = 100) -> dict:
        """Return S_OK([[committer, version], ...]) newest first."""
        if self._client is None:
            return self.__initialized
        return self._client.getCommitHistory(limit)

    def getCommitLog(self, limit: int = 100) -> dict:
        """Return S_OK([{version, committer, DN, group, kind, message, time}, ...]) newest first."""
        if self._client is None:
            return self.__initialized
        return self._client.getCommitLog(limit)

    def getVersionText(self, version: str) -> dict:
        """Return S_OK(CFG text of an older version) (needs ServiceAdministrator or CSAdministrator)."""
        if self._client is None:
            return self.__initialized
        result = self._client.getVersionContents([version])
        if not result["OK"]:
            return result
        try:
            data = result["Value"][0]
            if isinstance(data, str):
                data = data.encode("latin-1")
            return S_OK(zlib.decompress(data).decode())
        except (IndexError, zlib.error, UnicodeDecodeError, TypeError) as exc:
            return S_ERROR(f"Invalid contents received for version {version}: {exc}")

    def diffVersions(self, fromVersion: str, toVersion: str | None = None) -> dict:
        """Return S_OK(unified diff lines) between two versions (``toVersion`` None: the current one)."""
        old = self.getVersionText(fromVersion)
        if not old["OK"]:
            return old
        if toVersion is None:
            newText, newLabel = str(self._baseCFG), f"version {self._baseVersion} (current)"
        else:
            new = self.getVersionText(toVersion)
            if not new["OK"]:
                return new
            newText, newLabel = new["Value"], f"version {toVersion}"
        return S_OK(diffCFGTexts(old["Value"], newText, f"version {fromVersion}", newLabel))

    def rollbackToVersion(self, version: str, message: str = "") -> dict:
        """Make an older version's content current again (as a new version); S_OK(new version)."""
        if self._client is None:
            return self.__initialized
        arguments = (version, message) if message else (version,)
        result = self._client.rollbackToVersion(*arguments)
        if not result["OK"]:
            return result
        self.downloadCSData()
        return S_OK(result["Value"])

    rollback = rollbackToVersion

    def forceGlobalConfigurationUpdate(self) -> dict:
        """Ask the master to make every registered service refresh its configuration now."""
        if self._client is None:
            return self.__initialized
        return self._client.forceGlobalConfigurationUpdate()
