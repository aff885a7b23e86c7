"""``CSAPI``: change the central configuration from Python, as DIRAC's CSAPI does.

Typical use (the caller needs ``CSAdministrator``, e.g. a proxy of an admin group or a host certificate)::

    csAPI = CSAPI()                                   # downloads the master's current configuration
    csAPI.setOption("/Systems/Framework/Services/Dummy/Authorization/add", "authenticated")
    csAPI.delOption("/Systems/Framework/Services/Dummy/Obsolete")
    result = csAPI.commit("open add to everybody")    # S_OK(new version) or S_ERROR (e.g. a conflict)

Edits are kept locally until ``commit``; the commit carries the version they were made on, so the master
refuses it if somebody else committed in between (unless the master has ``EnableAutoMerge`` on and the
changes do not overlap). After a refused commit, ``downloadCSData()`` and re-apply the edits.

The Registry helpers (``addUser``, ``modifyUser``, ``deleteUsers``, ``addGroup``, ``addHost``, ``addShifter``...)
keep DIRAC's names and layout: a user's groups are the groups whose ``Users`` option lists it. They edit the
working copy too, all of a change or nothing, and refuse with an S_ERROR saying why and what to do: a missing
DN/CA/Email, an unknown group, an existing name, or a DN already registered to another user or host (DNs are
compared as every Registry lookup compares them).
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import Any

from diraccfg import CFG

from TornadoServices.ConfigurationSystem.Client.ConfigurationClient import ConfigurationClient
from TornadoServices.ConfigurationSystem.Client.ConfigurationData import cfgNode, gConfigurationData, splitPath
from TornadoServices.ConfigurationSystem.Client.Helpers.Registry import findDNOwners, splitDNs
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


REGISTRY = "/Registry"

#: Characters a user, group, host or option name cannot hold: they would change the CFG path or the lists
#: (group ``Users`` are comma lists) the name goes into.
_BAD_NAME = re.compile(r"[\s/,={}#]")


def _listValue(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _nameList(value: Any) -> list[str]:
    """Return the names given as a list/tuple/set or as one comma-separated string ([] for None)."""
    if value is None:
        return []
    if isinstance(value, str):
        return _listValue(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(dict.fromkeys(str(item).strip() for item in value if str(item).strip()))
    return _listValue(str(value))


def _writeEntity(cfg: CFG, section: str, properties: dict[str, Any], skip: str = "") -> None:
    """Create ``section`` of a new user, group or host and write its options (all but ``skip``) as CFG text."""
    ensureSection(cfg, section)
    for option, value in properties.items():
        if option != skip:
            setCFGOption(cfg, f"{section}/{option}", _optionText(value))


def _optionText(value: Any) -> str:
    """Return the CFG text of a property value: lists become comma lists, None an empty value."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(str(item).strip() for item in value if str(item).strip())
    return str(value).strip()


def _checkName(what: str, name: Any) -> str:
    """Return why ``name`` cannot be a Registry entry or option name ("" when it can)."""
    if not isinstance(name, str) or not name.strip():
        return f"the {what} name must be a non-empty string, got {name!r}"
    if _BAD_NAME.search(name) or name.startswith("."):
        return f"invalid {what} name {name!r}: no spaces, '/', ',', '=', '{{', '}}', '#' and no leading '.'"
    return ""


def _checkEntity(what: str, name: Any, properties: Any) -> str:
    """Return why (name, properties) cannot describe a user, group or host ("" when they can)."""
    problem = _checkName(what, name)
    if problem:
        return problem
    if not isinstance(properties, dict):
        return f"properties must be a dict of option name -> value, got {type(properties).__name__}"
    for option in properties:
        problem = _checkName("option", option)
        if problem:
            return problem
    return ""


def _missing(properties: dict[str, Any], required: tuple[str, ...], what: str) -> str:
    """Return which required properties are missing or empty ("" when all are given)."""
    missing = [name for name in required if not _optionText(properties.get(name, ""))]
    if not missing:
        return ""
    return f"missing {', '.join(missing)}: a {what} needs {', '.join(required[:-1])} and {required[-1]}"


def _emptied(properties: dict[str, Any], required: tuple[str, ...]) -> str:
    """Return which required properties a modification would empty ("" when none)."""
    emptied = [name for name in required if name in properties and not _optionText(properties[name])]
    return f"{', '.join(emptied)} cannot be empty" if emptied else ""


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

    # ---- Registry: users, groups, hosts, shifters ------------------------------------------------
    #
    # Every helper edits the working copy only (all its changes or none), like setOption: ``commit()`` sends
    # them. Refusals are S_ERROR naming the entity, the reason and the fix.

    def _registryTree(self) -> dict:
        """The working copy's /Registry as the Registry helpers read a configuration (nested dicts)."""
        registry = cfgNode(self._cfg, REGISTRY)
        return {"Registry": registry.getAsDict() if isinstance(registry, CFG) else {}}

    def _applyEdits(self, edits: Callable[[CFG], None]) -> None:
        """Run ``edits`` on a copy of the working copy and keep the copy only when they all succeed."""
        work = self._cfg.clone()
        edits(work)
        self._cfg = work
        self.csModified = True

    def _dnConflicts(self, kind: str, name: str, dns: list[str]) -> str:
        """Return why one of ``dns`` cannot be given to user/host ``name`` ("" when none is taken by another)."""
        tree = self._registryTree()
        for dn in dns:
            owners = findDNOwners(dn, tree)
            for ownerKind, label in (("Users", "user"), ("Hosts", "host")):
                for owner in owners[ownerKind]:
                    if ownerKind == kind and owner == name:
                        continue
                    return (
                        f"DN {dn} is already registered as {label} {owner}: one DN identifies one user or host "
                        f"(change or delete {label} {owner} first)"
                    )
        return ""

    def _groupsOf(self, user: str) -> list[str]:
        """Return the sorted groups whose Users option lists ``user`` (working copy)."""
        return sorted(
            group
            for group in self.getSections(f"{REGISTRY}/Groups")
            if user in _listValue(self.getValue(f"{REGISTRY}/Groups/{group}/Users"))
        )

    @staticmethod
    def _setGroupMembership(cfg: CFG, group: str, user: str, member: bool) -> None:
        """Add ``user`` to (or remove it from) the Users option of ``group`` in ``cfg``."""
        path = f"{REGISTRY}/Groups/{group}/Users"
        users = _listValue(getCFGOption(cfg, path))
        if member and user not in users:
            users.append(user)
        elif not member and user in users:
            users = [other for other in users if other != user]
        else:
            return
        setCFGOption(cfg, path, ", ".join(users))

    def listUsers(self, group: str | None = None) -> dict:
        """Return S_OK(user names), all of them or the members of ``group``."""
        if not self.__initialized["OK"]:
            return self.__initialized
        if not group:
            return S_OK(self.getSections(f"{REGISTRY}/Users"))
        return S_OK(_listValue(self.getValue(f"{REGISTRY}/Groups/{group}/Users")))

    def listGroups(self) -> dict:
        """Return S_OK(group names)."""
        if not self.__initialized["OK"]:
            return self.__initialized
        return S_OK(self.getSections(f"{REGISTRY}/Groups"))

    def listHosts(self) -> dict:
        """Return S_OK(host names)."""
        if not self.__initialized["OK"]:
            return self.__initialized
        return S_OK(self.getSections(f"{REGISTRY}/Hosts"))

    def _describeEntities(self, kind: str, mask: Any) -> dict:
        """Return S_OK({name: {option: value}}) of /Registry/<kind>, restricted to ``mask`` when given."""
        if not self.__initialized["OK"]:
            return self.__initialized
        wanted = _nameList(mask)
        section = f"{REGISTRY}/{kind}"
        described: dict[str, dict[str, Any]] = {}
        for name in self.getSections(section):
            if wanted and name not in wanted:
                continue
            options: dict[str, Any] = {
                option: self.getValue(f"{section}/{name}/{option}") for option in self.getOptions(f"{section}/{name}")
            }
            if kind == "Users":
                options["Groups"] = self._groupsOf(name)
            elif kind == "Groups":
                for option in ("Users", "Properties"):
                    if option in options:
                        options[option] = _listValue(options[option])
            described[name] = options
        return S_OK(described)

    def describeUsers(self, users: str | list[str] | None = None) -> dict:
        """Return S_OK({user: {option: value, ..., "Groups": [sorted groups]}}) of all users or those listed."""
        return self._describeEntities("Users", users)

    def describeHosts(self, hosts: str | list[str] | None = None) -> dict:
        """Return S_OK({host: {option: value}}) of all hosts or those listed."""
        return self._describeEntities("Hosts", hosts)

    def describeGroups(self, mask: str | list[str] | None = None) -> dict:
        """Return S_OK({group: {option: value}}) of all groups or those in ``mask``; Users and Properties as lists."""
        return self._describeEntities("Groups", mask)

    def addUser(self, username: str, properties: dict[str, Any]) -> dict:
        """Register a user: properties DN, CA and Email (required), Groups (existing groups), any other option.

        S_OK(True) once the working copy holds it; S_ERROR when the user exists, a required property is missing,
        a group is unknown or a DN already belongs to another user or host.
        """
        if not self.__initialized["OK"]:
            return self.__initialized
        what = f"Cannot add user {username!r}"
        problem = _checkEntity("user", username, properties) or _missing(properties, ("DN", "CA", "Email"), "user")
        if problem:
            return self._refuse(what, problem)
        if username in self.getSections(f"{REGISTRY}/Users"):
            return self._refuse(what, "the user is already registered: use modifyUser to change it")
        groups = _nameList(properties.get("Groups"))
        problem = self._unknown("Groups", groups, "group", "create {it} with addGroup first") or self._dnConflicts(
            "Users", username, splitDNs(_optionText(properties["DN"]))
        )
        if problem:
            return self._refuse(what, problem)

        def edits(cfg: CFG) -> None:
            _writeEntity(cfg, f"{REGISTRY}/Users/{username}", properties, skip="Groups")
            for group in groups:
                self._setGroupMembership(cfg, group, username, True)

        self._applyEdits(edits)
        sLog.info("Registered user", f"{username} (groups: {', '.join(groups) or 'none'})")
        return S_OK(True)

    def modifyUser(self, username: str, properties: dict[str, Any], createIfNonExistant: bool = False) -> dict:
        """Change a user's options; ``Groups`` replaces its group membership. S_OK(True if anything changed).

        An unknown user is registered with addUser when ``createIfNonExistant``, refused otherwise.
        """
        if not self.__initialized["OK"]:
            return self.__initialized
        what = f"Cannot modify user {username!r}"
        problem = _checkEntity("user", username, properties)
        if problem:
            return self._refuse(what, problem)
        if username not in self.getSections(f"{REGISTRY}/Users"):
            if createIfNonExistant:
                sLog.info("Registering user", username)
                return self.addUser(username, properties)
            return self._refuse(what, "the user is not registered: use addUser (or createIfNonExistant=True)")
        problem = _emptied(properties, ("DN", "CA", "Email"))
        groups = _nameList(properties["Groups"]) if "Groups" in properties else None
        if not problem and groups is not None:
            problem = self._unknown("Groups", groups, "group", "create {it} with addGroup first")
        if not problem and "DN" in properties:
            known = splitDNs(self.getValue(f"{REGISTRY}/Users/{username}/DN"))
            newDNs = [dn for dn in splitDNs(_optionText(properties["DN"])) if dn not in known]
            problem = self._dnConflicts("Users", username, newDNs)
        if problem:
            return self._refuse(what, problem)
        changes = self._optionChanges(f"{REGISTRY}/Users/{username}", properties, skip=("Groups",))
        current = self._groupsOf(username)
        leave = [group for group in current if groups is not None and group not in groups]
        join = [group for group in groups or [] if group not in current]
        if not (changes or leave or join):
            sLog.info("Nothing to modify for user", username)
            return S_OK(False)

        def edits(cfg: CFG) -> None:
            for path, value in changes.items():
                setCFGOption(cfg, path, value)
            for group in leave:
                self._setGroupMembership(cfg, group, username, False)
            for group in join:
                self._setGroupMembership(cfg, group, username, True)

        self._applyEdits(edits)
        sLog.info(
            "Modified user",
            f"{username}: options {', '.join(p.rsplit('/', 1)[1] for p in changes) or 'unchanged'}; "
            f"joined {', '.join(join) or 'no group'}; left {', '.join(leave) or 'no group'}",
        )
        return S_OK(True)

    def deleteUsers(self, users: str | list[str]) -> dict:
        """Delete users (a name or a list) and remove them from every group's Users; unknown names are skipped."""
        if not self.__initialized["OK"]:
            return self.__initialized
        return self._deleteEntities("Users", "user", users)

    def addGroup(self, groupname: str, properties: dict[str, Any]) -> dict:
        """Create a group: Users (registered users), Properties, VO, any other option. S_OK(True)."""
        if not self.__initialized["OK"]:
            return self.__initialized
        what = f"Cannot add group {groupname!r}"
        problem = _checkEntity("group", groupname, properties)
        if not problem and groupname in self.getSections(f"{REGISTRY}/Groups"):
            problem = "the group is already registered: use modifyGroup to change it"
        if not problem:
            members = _nameList(properties.get("Users"))
            problem = self._unknown("Users", members, "user", "register {it} with addUser first")
        if problem:
            return self._refuse(what, problem)

        def edits(cfg: CFG) -> None:
            _writeEntity(cfg, f"{REGISTRY}/Groups/{groupname}", properties)

        self._applyEdits(edits)
        sLog.info("Registered group", groupname)
        return S_OK(True)

    def modifyGroup(self, groupname: str, properties: dict[str, Any], createIfNonExistant: bool = False) -> dict:
        """Change a group's options (``Users`` replaces the member list). S_OK(True)."""
        if not self.__initialized["OK"]:
            return self.__initialized
        what = f"Cannot modify group {groupname!r}"
        problem = _checkEntity("group", groupname, properties)
        if problem:
            return self._refuse(what, problem)
        if groupname not in self.getSections(f"{REGISTRY}/Groups"):
            if createIfNonExistant:
                sLog.info("Registering group", groupname)
                return self.addGroup(groupname, properties)
            return self._refuse(what, "the group is not registered: use addGroup (or createIfNonExistant=True)")
        if "Users" in properties:
            problem = self._unknown("Users", _nameList(properties["Users"]), "user", "register {it} with addUser first")
            if problem:
                return self._refuse(what, problem)
        return self._modifyOptions(f"{REGISTRY}/Groups/{groupname}", properties, f"group {groupname}")

    def addHost(self, hostname: str, properties: dict[str, Any]) -> dict:
        """Register a host: properties DN and CA (required), Properties, any other option. S_OK(True)."""
        if not self.__initialized["OK"]:
            return self.__initialized
        what = f"Cannot add host {hostname!r}"
        problem = _checkEntity("host", hostname, properties) or _missing(properties, ("DN", "CA"), "host")
        if not problem and hostname in self.getSections(f"{REGISTRY}/Hosts"):
            problem = "the host is already registered: use modifyHost to change it"
        if not problem:
            problem = self._dnConflicts("Hosts", hostname, splitDNs(_optionText(properties["DN"])))
        if problem:
            return self._refuse(what, problem)

        def edits(cfg: CFG) -> None:
            _writeEntity(cfg, f"{REGISTRY}/Hosts/{hostname}", properties)

        self._applyEdits(edits)
        sLog.info("Registered host", hostname)
        return S_OK(True)

    def modifyHost(self, hostname: str, properties: dict[str, Any], createIfNonExistant: bool = False) -> dict:
        """Change a host's options. S_OK(True)."""
        if not self.__initialized["OK"]:
            return self.__initialized
        what = f"Cannot modify host {hostname!r}"
        problem = _checkEntity("host", hostname, properties)
        if problem:
            return self._refuse(what, problem)
        if hostname not in self.getSections(f"{REGISTRY}/Hosts"):
            if createIfNonExistant:
                sLog.info("Registering host", hostname)
                return self.addHost(hostname, properties)
            return self._refuse(what, "the host is not registered: use addHost (or createIfNonExistant=True)")
        problem = _emptied(properties, ("DN", "CA"))
        if not problem and "DN" in properties:
            known = splitDNs(self.getValue(f"{REGISTRY}/Hosts/{hostname}/DN"))
            newDNs = [dn for dn in splitDNs(_optionText(properties["DN"])) if dn not in known]
            problem = self._dnConflicts("Hosts", hostname, newDNs)
        if problem:
            return self._refuse(what, problem)
        return self._modifyOptions(f"{REGISTRY}/Hosts/{hostname}", properties, f"host {hostname}")

    def deleteHosts(self, hosts: str | list[str]) -> dict:
        """Delete hosts (a name or a list); unknown names are skipped."""
        if not self.__initialized["OK"]:
            return self.__initialized
        return self._deleteEntities("Hosts", "host", hosts)

    def _shifterSection(self) -> tuple[str, bool]:
        """Return (the Shifter section of the working copy, whether it exists): the VO's Defaults, else Defaults."""
        vo = (self.getValue("/DIRAC/VirtualOrganization") or "").strip()
        candidates = ([f"/Operations/{vo}/Defaults/Shifter"] if vo else []) + ["/Operations/Defaults/Shifter"]
        for candidate in candidates:
            if isinstance(cfgNode(self._cfg, candidate), CFG):
                return candidate, True
        return candidates[0], False

    def addShifter(self, shifters: dict[str, dict[str, str]] | None = None) -> dict:
        """Add or change shifters: {role: {"User": user, "Group": group}} under the Operations Shifter section."""
        if not self.__initialized["OK"]:
            return self.__initialized
        shifters = {} if shifters is None else shifters
        what = "Cannot set shifters"
        if not isinstance(shifters, dict):
            return self._refuse(what, "shifters must be a dict {role: {'User': user, 'Group': group}}")
        section, _exists = self._shifterSection()
        changes: dict[str, dict[str, str]] = {}
        for role, identity in shifters.items():
            problem = _checkName("shifter role", role)
            if not problem and (not isinstance(identity, dict) or set(identity) != {"User", "Group"}):
                problem = f"shifter {role!r} must be given as {{'User': user, 'Group': group}}"
            if problem:
                return self._refuse(what, problem)
            user, group = str(identity["User"]).strip(), str(identity["Group"]).strip()
            problem = self._unknown("Users", [user], "user", "register {it} with addUser first") or self._unknown(
                "Groups", [group], "group", "create {it} with addGroup first"
            )
            if not problem and user not in _listValue(self.getValue(f"{REGISTRY}/Groups/{group}/Users")):
                problem = f"user {user} is not a member of group {group}: add it with modifyUser first"
            if problem:
                return self._refuse(what, f"shifter {role}: {problem}")
            current = (self.getValue(f"{section}/{role}/User"), self.getValue(f"{section}/{role}/Group"))
            if current != (user, group):
                changes[role] = {"User": user, "Group": group}
        if not changes:
            return S_OK(True)

        def edits(cfg: CFG) -> None:
            for role, identity in changes.items():
                deleteCFGEntry(cfg, f"{section}/{role}")
                for option, value in identity.items():
                    setCFGOption(cfg, f"{section}/{role}/{option}", value)

        self._applyEdits(edits)
        sLog.info("Shifters set", f"{section}: {', '.join(sorted(changes))}")
        return S_OK(True)

    def deleteShifter(self, shifters: str | list[str]) -> dict:
        """Remove shifter roles (a name or a list) from the Operations Shifter section; unknown roles are skipped."""
        if not self.__initialized["OK"]:
            return self.__initialized
        section, exists = self._shifterSection()
        roles = [role for role in _nameList(shifters) if exists and role in self.getSections(section)]
        for role in _nameList(shifters):
            if role not in roles:
                sLog.warn("Shifter does not exist", f"{role} (in {section})")
        if roles:

            def edits(cfg: CFG) -> None:
                for role in roles:
                    deleteCFGEntry(cfg, f"{section}/{role}")

            self._applyEdits(edits)
            sLog.info("Deleted shifters", ", ".join(roles))
        return S_OK(True)

    # ---- Registry helpers' plumbing ----------------------------------------------------------------

    @staticmethod
    def _refuse(what: str, problem: str) -> dict:
        """Log and return the S_ERROR of a refused Registry change."""
        sLog.error(what, problem)
        return S_ERROR(f"{what}: {problem}")

    def _unknown(self, kind: str, names: list[str], label: str, fix: str) -> str:
        """Return why some of ``names`` are not sections of /Registry/<kind> ("" when all exist); ``{it}`` in
        ``fix`` becomes "it" or "them"."""
        known = self.getSections(f"{REGISTRY}/{kind}")
        unknown = [name for name in names if name not in known]
        if not unknown:
            return ""
        plural = len(unknown) > 1
        fix = fix.replace("{it}", "them" if plural else "it")
        return f"unknown {label}{'s' if plural else ''} {', '.join(unknown)}: {fix}"

    def _optionChanges(self, section: str, properties: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, str]:
        """Return {option path: new text} for the properties that differ from the working copy."""
        changes = {}
        for option, value in properties.items():
            if option in skip:
                continue
            text = _optionText(value)
            if self.getValue(f"{section}/{option}") != text:
                changes[f"{section}/{option}"] = text
        return changes

    def _modifyOptions(self, section: str, properties: dict[str, Any], label: str) -> dict:
        """Apply the changed options of a group or host; S_OK(True) (DIRAC's value, changed or not)."""
        changes = self._optionChanges(section, properties)
        if not changes:
            sLog.info("Nothing to modify", label)
            return S_OK(True)

        def edits(cfg: CFG) -> None:
            for path, value in changes.items():
                setCFGOption(cfg, path, value)

        self._applyEdits(edits)
        sLog.info("Modified", f"{label}: {', '.join(p.rsplit('/', 1)[1] for p in changes)}")
        return S_OK(True)

    def _deleteEntities(self, kind: str, label: str, names: str | list[str]) -> dict:
        """Delete sections of /Registry/<kind> (users also leave their groups); unknown names are logged."""
        wanted = _nameList(names)
        known = self.getSections(f"{REGISTRY}/{kind}")
        present = [name for name in wanted if name in known]
        for name in wanted:
            if name not in present:
                sLog.warn(f"{label.capitalize()} does not exist", name)
        if not present:
            return S_OK(True)
        memberships = {name: self._groupsOf(name) for name in present} if kind == "Users" else {}

        def edits(cfg: CFG) -> None:
            for name in present:
                for group in memberships.get(name, []):
                    self._setGroupMembership(cfg, group, name, False)
                deleteCFGEntry(cfg, f"{REGISTRY}/{kind}/{name}")

        self._applyEdits(edits)
        sLog.info(f"Deleted {label}s", ", ".join(present))
        return S_OK(True)

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
