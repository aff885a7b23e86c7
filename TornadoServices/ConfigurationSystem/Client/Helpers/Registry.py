"""Who is who: users, groups, hosts and VOs from the CS ``/Registry`` section.

Lookups run on the request path (authorisation), so the Registry is indexed once per configuration
generation (DN -> users, DN -> hosts, user -> groups, ...) and every call is a dictionary lookup.
DNs are compared as exact strings after stripping surrounding whitespace: never case-folded and never
re-spaced, because a DN that merely looks alike is another identity.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.Core.ReturnValues import S_ERROR, S_OK

__all__ = [
    "findDNOwners",
    "findDefaultGroupForDN",
    "findDefaultGroupForUser",
    "getAllGroups",
    "getAllUsers",
    "getDNForHost",
    "getDNForUsername",
    "getDefaultUserGroup",
    "getDefaultVOMSAttribute",
    "getGroupOption",
    "getGroupsForDN",
    "getGroupsForUser",
    "getGroupsForVO",
    "getGroupsWithProperty",
    "getHostOption",
    "getHostnameForDN",
    "getHosts",
    "getPropertiesForEntity",
    "getPropertiesForGroup",
    "getPropertiesForHost",
    "getUserOption",
    "getUsernameForDN",
    "getUsersInGroup",
    "getUsersInVO",
    "getVO",
    "getVOForGroup",
    "getVOMSAttributeForGroup",
    "getVOMSVOForGroup",
    "getVOOption",
    "getVOs",
    "isUserSuspended",
    "splitDNs",
]

REGISTRY = "/Registry"
_NO_STACK: list[str] = []


def _split(value: Any) -> tuple[str, ...]:
    """Comma-split an option string into stripped, non-empty items (non-strings give nothing)."""
    if not isinstance(value, str):
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _options(section: Any) -> dict[str, str]:
    """The options (not subsections) of a snapshot section."""
    if not isinstance(section, dict):
        return {}
    return {name: value for name, value in section.items() if isinstance(value, str)}


def _subsections(section: Any) -> dict[str, dict]:
    """The subsections of a snapshot section, in CS order."""
    if not isinstance(section, dict):
        return {}
    return {name: value for name, value in section.items() if isinstance(value, dict)}


class _RegistryIndex:
    """Inverse indices over /Registry for one configuration generation."""

    def __init__(self, tree: dict) -> None:
        registry = tree.get("Registry", {})
        registry = registry if isinstance(registry, dict) else {}
        dirac = tree.get("DIRAC", {})
        globalVO = dirac.get("VirtualOrganization", "") if isinstance(dirac, dict) else ""
        self.globalVO = globalVO.strip() if isinstance(globalVO, str) else ""

        self.users = {name: _options(section) for name, section in _subsections(registry.get("Users")).items()}
        self.groups = {name: _options(section) for name, section in _subsections(registry.get("Groups")).items()}
        self.hosts = {name: _options(section) for name, section in _subsections(registry.get("Hosts")).items()}
        self.vos = tuple(_subsections(registry.get("VO")))
        self.defaultGroups = _split(registry.get("DefaultGroup", "user")) or ("user",)
        self.defaultVOMSAttribute = registry.get("DefaultVOMSAttribute", "")
        if not isinstance(self.defaultVOMSAttribute, str):
            self.defaultVOMSAttribute = ""

        self.userDNs: dict[str, tuple[str, ...]] = {}
        self.dnToUsers: dict[str, tuple[str, ...]] = {}
        for user, options in self.users.items():
            dns = _split(options.get("DN"))
            self.userDNs[user] = dns
            for dn in dns:
                self.dnToUsers[dn] = self.dnToUsers.get(dn, ()) + (user,)

        self.hostDNs: dict[str, tuple[str, ...]] = {}
        self.dnToHosts: dict[str, tuple[str, ...]] = {}
        for host, options in self.hosts.items():
            dns = _split(options.get("DN"))
            self.hostDNs[host] = dns
            for dn in dns:
                self.dnToHosts[dn] = self.dnToHosts.get(dn, ()) + (host,)
        self.dnToHost = {dn: hosts[0] for dn, hosts in self.dnToHosts.items()}

        self.groupUsers: dict[str, tuple[str, ...]] = {}
        userGroups: dict[str, list[str]] = {}
        for group, options in self.groups.items():
            members = _split(options.get("Users"))
            self.groupUsers[group] = members
            for user in dict.fromkeys(members):
                userGroups.setdefault(user, []).append(group)
        self.userGroups = {user: tuple(sorted(groups)) for user, groups in userGroups.items()}
        self.groupProperties = {group: _split(options.get("Properties")) for group, options in self.groups.items()}
        self.hostProperties = {host: _split(options.get("Properties")) for host, options in self.hosts.items()}
        self.groupVO = {group: options.get("VO", "").strip() for group, options in self.groups.items()}
        self.userSuspendedVOs = {
            user: frozenset(_split(options.get("Suspended"))) for user, options in self.users.items()
        }


def _index() -> _RegistryIndex:
    """The Registry index of the current configuration generation (built on first use)."""
    snapshot = gConfig.getSnapshot()
    return snapshot.memo("Registry.index", lambda: _RegistryIndex(snapshot.tree))


def _cleanDN(dn: Any) -> str:
    """Strip surrounding whitespace of a DN; anything that is not a string matches nothing."""
    return dn.strip() if isinstance(dn, str) else ""


def splitDNs(value: Any) -> list[str]:
    """Return the DNs a ``DN`` option value lists, split and stripped as the Registry reads them."""
    return list(_split(value))


def findDNOwners(dn: str, tree: dict | None = None) -> dict[str, list[str]]:
    """Return {"Users": [...], "Hosts": [...]} registered with ``dn``, in ``tree`` (a CS as nested dicts,
    e.g. an edited copy) or else in the current configuration; DNs compared as every Registry lookup does."""
    index = _index() if tree is None else _RegistryIndex(tree)
    dn = _cleanDN(dn)
    return {"Users": list(index.dnToUsers.get(dn, ())), "Hosts": list(index.dnToHosts.get(dn, ()))}


# ---- users and DNs -------------------------------------------------------------------------------


def getUsernameForDN(dn: str, usersList: Iterable[str] | None = None) -> dict:
    """Return S_OK(user) whose /Registry/Users/<u>/DN lists ``dn`` (restricted to usersList when given)."""
    users = _index().dnToUsers.get(_cleanDN(dn), ())
    if usersList is not None:
        allowed = set(usersList)
        users = tuple(user for user in users if user in allowed)
    if not users:
        return S_ERROR(f"No username found for dn {dn}", callStack=_NO_STACK)
    return S_OK(users[0])


def getDNForUsername(username: str) -> dict:
    """Return S_OK(list of DNs) of a registered user."""
    dns = _index().userDNs.get(username)
    if not dns:
        return S_ERROR(f"No DN found for user {username}", callStack=_NO_STACK)
    return S_OK(list(dns))


def getHostnameForDN(dn: str) -> dict:
    """Return S_OK(host) whose /Registry/Hosts/<h>/DN lists ``dn``."""
    host = _index().dnToHost.get(_cleanDN(dn))
    if host is None:
        return S_ERROR(f"No hostname found for dn {dn}", callStack=_NO_STACK)
    return S_OK(host)


def getDNForHost(host: str) -> dict:
    """Return S_OK(list of DNs) of a registered host."""
    dns = _index().hostDNs.get(host)
    if not dns:
        return S_ERROR(f"No DN found for host {host}", callStack=_NO_STACK)
    return S_OK(list(dns))


def getAllUsers() -> list[str]:
    """Return every user name under /Registry/Users."""
    return list(_index().users)


def getAllGroups() -> list[str]:
    """Return every group name under /Registry/Groups."""
    return list(_index().groups)


def getHosts() -> dict:
    """Return S_OK(list of host names under /Registry/Hosts)."""
    return S_OK(list(_index().hosts))


# ---- groups ----------------------------------------------------------------------------------------


def getGroupsForUser(username: str) -> dict:
    """Return S_OK(sorted groups whose Users list ``username``), S_ERROR when there is none."""
    groups = _index().userGroups.get(username)
    if not groups:
        return S_ERROR(f"No groups found for user {username}", callStack=_NO_STACK)
    return S_OK(list(groups))


def getGroupsForDN(dn: str, groupsList: Iterable[str] | None = None) -> dict:
    """Return S_OK(groups of the user owning ``dn``), optionally restricted to groupsList."""
    result = getUsernameForDN(dn)
    if not result["OK"]:
        return result
    groups = list(_index().userGroups.get(result["Value"], ()))
    if groupsList is not None:
        allowed = set(groupsList)
        groups = [group for group in groups if group in allowed]
    return S_OK(groups)


def findDefaultGroupForUser(userName: str) -> dict:
    """Return S_OK(group): first of DefaultGroup + /Registry/DefaultGroup the user is in, else its first group."""
    index = _index()
    userGroups = index.userGroups.get(userName)
    if not userGroups:
        if userName not in index.users:
            return S_ERROR(f"User {userName} is not registered under /Registry/Users", callStack=_NO_STACK)
        return S_ERROR(
            f"User {userName} does not belong to any group: add it to the Users of a /Registry/Groups section",
            callStack=_NO_STACK,
        )
    candidates = _split(index.users.get(userName, {}).get("DefaultGroup")) + index.defaultGroups
    for group in candidates:
        if group in userGroups:
            return S_OK(group)
    return S_OK(userGroups[0])


def findDefaultGroupForDN(dn: str) -> dict:
    """Return S_OK(default group) of the user owning ``dn``; S_ERROR if the DN is unknown or has no group."""
    result = getUsernameForDN(dn)
    if not result["OK"]:
        return result
    return findDefaultGroupForUser(result["Value"])


def getUsersInGroup(groupName: str, defaultValue: list[str] | None = None) -> list[str]:
    """Return the Users of a group (defaultValue or [] when the group lists none)."""
    users = _index().groupUsers.get(groupName)
    if not users:
        return list(defaultValue) if defaultValue is not None else []
    return list(users)


def getGroupsWithProperty(propName: str | Iterable[str]) -> dict:
    """Return S_OK(groups having at least one of the given properties)."""
    wanted = {propName} if isinstance(propName, str) else set(propName)
    index = _index()
    return S_OK([group for group, props in index.groupProperties.items() if wanted.intersection(props)])


def getDefaultUserGroup() -> str:
    """Return the first /Registry/DefaultGroup (default "user")."""
    return _index().defaultGroups[0]


# ---- properties ------------------------------------------------------------------------------------


def getPropertiesForGroup(groupName: str, defaultValue: list[str] | None = None) -> list[str]:
    """Return /Registry/Groups/<g>/Properties (defaultValue or [] when unset)."""
    props = _index().groupProperties.get(groupName)
    if not props:
        return list(defaultValue) if defaultValue is not None else []
    return list(props)


def getPropertiesForHost(hostName: str, defaultValue: list[str] | None = None) -> list[str]:
    """Return /Registry/Hosts/<h>/Properties (defaultValue or [] when unset)."""
    props = _index().hostProperties.get(hostName)
    if not props:
        return list(defaultValue) if defaultValue is not None else []
    return list(props)


def getPropertiesForEntity(
    group: str, name: str = "", dn: str = "", defaultValue: list[str] | None = None
) -> list[str]:
    """Return the properties of a host (group "hosts", found by name or DN) or of a group."""
    if group == "hosts":
        if not name:
            result = getHostnameForDN(dn)
            if not result["OK"]:
                return list(defaultValue) if defaultValue is not None else []
            name = result["Value"]
        return getPropertiesForHost(name, defaultValue)
    return getPropertiesForGroup(group, defaultValue)


# ---- VOs -------------------------------------------------------------------------------------------


def getVO(defaultVO: str = "") -> str:
    """Return /DIRAC/VirtualOrganization (single-VO installations), else defaultVO."""
    return _index().globalVO or defaultVO


def getVOForGroup(group: str) -> str:
    """Return the VO of a group: /DIRAC/VirtualOrganization if set, else /Registry/Groups/<g>/VO, else ""."""
    index = _index()
    return index.globalVO or index.groupVO.get(group, "")


def getGroupsForVO(vo: str) -> dict:
    """Return S_OK(groups of ``vo``); every group when /DIRAC/VirtualOrganization is set."""
    index = _index()
    if index.globalVO:
        return S_OK(list(index.groups))
    if not vo:
        return S_ERROR("No VO requested: give a VO name", callStack=_NO_STACK)
    return S_OK([group for group, groupVO in index.groupVO.items() if groupVO == vo])


def getUsersInVO(vo: str, defaultValue: list[str] | None = None) -> list[str]:
    """Return the users of every group of ``vo`` (defaultValue or [] when none)."""
    result = getGroupsForVO(vo)
    index = _index()
    users: dict[str, None] = {}
    for group in result["Value"] if result["OK"] else []:
        users.update(dict.fromkeys(index.groupUsers.get(group, ())))
    if not users:
        return list(defaultValue) if defaultValue is not None else []
    return list(users)


def getVOs() -> dict:
    """Return S_OK(VO names): [/DIRAC/VirtualOrganization] when set, else the sections of /Registry/VO."""
    index = _index()
    if index.globalVO:
        return S_OK([index.globalVO])
    return S_OK(list(index.vos))


def isUserSuspended(user: str, vo: str) -> bool:
    """True when /Registry/Users/<user>/Suspended lists ``vo``."""
    return bool(vo) and vo in _index().userSuspendedVOs.get(user, frozenset())


def getDefaultVOMSAttribute() -> str:
    """Return /Registry/DefaultVOMSAttribute ("" when unset)."""
    return _index().defaultVOMSAttribute


def getVOMSAttributeForGroup(group: str) -> str:
    """Return /Registry/Groups/<g>/VOMSRole, else the default VOMS attribute."""
    return _index().groups.get(group, {}).get("VOMSRole", "") or getDefaultVOMSAttribute()


def getVOMSVOForGroup(group: str) -> str:
    """Return /Registry/Groups/<g>/VOMSVO, else the VOMSName of the group's VO, else ""."""
    vomsVO = _index().groups.get(group, {}).get("VOMSVO", "")
    if vomsVO:
        return vomsVO
    vo = getVOForGroup(group)
    return getVOOption(vo, "VOMSName", "") if vo else ""


# ---- raw options -----------------------------------------------------------------------------------


def getUserOption(userName: str, optName: str, defaultValue: Any = "") -> Any:
    """Return /Registry/Users/<u>/<opt>, typed by defaultValue like gConfig.getValue."""
    return gConfig.getValue(f"{REGISTRY}/Users/{userName}/{optName}", defaultValue)


def getGroupOption(groupName: str, optName: str, defaultValue: Any = "") -> Any:
    """Return /Registry/Groups/<g>/<opt>, typed by defaultValue like gConfig.getValue."""
    return gConfig.getValue(f"{REGISTRY}/Groups/{groupName}/{optName}", defaultValue)


def getHostOption(hostName: str, optName: str, defaultValue: Any = "") -> Any:
    """Return /Registry/Hosts/<h>/<opt>, typed by defaultValue like gConfig.getValue."""
    return gConfig.getValue(f"{REGISTRY}/Hosts/{hostName}/{optName}", defaultValue)


def getVOOption(voName: str, optName: str, defaultValue: Any = "") -> Any:
    """Return /Registry/VO/<vo>/<opt>, typed by defaultValue like gConfig.getValue."""
    return gConfig.getValue(f"{REGISTRY}/VO/{voName}/{optName}", defaultValue)
