"""Authorisation of RPC calls with DIRAC's rules, read from the CS ``Authorization`` section of a service.

Rule of a method, first found wins:

1. CS ``<service section>/Authorization/<method>``
2. the handler's ``auth_<method>`` (or ``@authorization`` on the method)
3. CS ``<service section>/Authorization/Default``
4. the handler's ``DEFAULT_AUTHORIZATION``
5. nobody (DIRAC treats "no rule" as "anybody"; here a forgotten rule closes the method)

A rule is a list of: ``all``/``any`` (everybody with a valid certificate), ``authenticated`` (any registered
user in a valid group, or registered host), ``group:<g>``, ``vo:<v>`` and property names (matched without
regard to case). ``group:``/``vo:`` entries restrict the groups; the other entries say what the caller must
have. ``LimitedProxy`` lets limited proxies call a method that is not open to ``all``.

An independent proxy (RFC 3820 id-ppl-independent) inherits none of its issuer's rights: unless the server
accepts them (``AcceptIndependentProxies``, DIRAC's reading), it is nobody in particular and only rules open to
``all`` admit it, as ``anonymous``.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.ConfigurationSystem.Client.Helpers import Registry
from TornadoServices.Core.Logging import gLogger
from TornadoServices.Security.Properties import TRUSTED_HOST

__all__ = ["AuthManager", "LIMITED_PROXY_RULE", "normaliseRule"]

#: Pseudo-property of a rule that lets limited proxies call the method.
LIMITED_PROXY_RULE = "limitedproxy"
ANONYMOUS_USER = "anonymous"
VISITOR_GROUP = "visitor"
HOSTS_GROUP = "hosts"


def normaliseRule(rule: Any) -> tuple[str, ...]:
    """A rule as an immutable tuple of stripped strings: a comma string, a list/tuple, or None (no rule)."""
    if rule is None:
        return ()
    if isinstance(rule, str):
        items: Iterable[Any] = rule.split(",")
    else:
        items = rule
    return tuple(str(item).strip() for item in items if str(item).strip())


class AuthManager:
    """Decides whether a credential dictionary may call a method of one service."""

    def __init__(self, authSection: str, acceptLimitedProxies: bool = False, acceptIndependentProxies: bool = False) -> None:
        """``authSection`` is the CS path of the service's ``Authorization`` section."""
        self.authSection = authSection.rstrip("/")
        self.acceptLimitedProxies = acceptLimitedProxies
        self.acceptIndependentProxies = acceptIndependentProxies
        self.log = gLogger.getSubLogger("AuthManager")

    # ---- rule resolution -----------------------------------------------------------------------------
    def _csRule(self, name: str) -> tuple[str, ...] | None:
        value = gConfig.getValue(f"{self.authSection}/{name}", None)
        if value is None:
            return None
        return normaliseRule(value)

    def getValidPropertiesForMethod(
        self,
        method: str,
        defaultProperties: Any = None,
        defaultAuthorization: Any = None,
    ) -> list[str]:
        """The rule that applies to ``method`` (a new list: callers may change it freely).

        ``defaultProperties`` is the handler's ``auth_<method>``, ``defaultAuthorization`` its
        ``DEFAULT_AUTHORIZATION``; an empty result means nobody may call the method.
        """
        rule = self._csRule(method)
        if rule is None and defaultProperties is not None:
            rule = normaliseRule(defaultProperties)
        if rule is None:
            rule = self._csRule("Default")
        if rule is None and defaultAuthorization is not None:
            rule = normaliseRule(defaultAuthorization)
        return list(rule or ())

    @staticmethod
    def getValidGroups(rule: Sequence[str]) -> tuple[list[str], list[str]]:
        """Split a rule into (allowed groups from ``group:``/``vo:``, the other entries lower-cased)."""
        groups: list[str] = []
        rest: list[str] = []
        for entry in rule:
            lowered = entry.lower()
            if lowered.startswith("group:"):
                name = entry.split(":", 1)[1].strip()
                if name and name not in groups:
                    groups.append(name)
            elif lowered.startswith("vo:"):
                vo = entry.split(":", 1)[1].strip()
                result = Registry.getGroupsForVO(vo)
                if result["OK"]:
                    groups.extend(g for g in result["Value"] if g not in groups)
                else:
                    # a VO without groups grants nothing, but must still restrict the rule
                    groups.append(f"vo:{vo}")
            else:
                rest.append(lowered)
        return groups, rest

    # ---- the decision ----------------------------------------------------------------------------------
    def authQuery(
        self,
        methodQuery: str,
        credDict: dict[str, Any],
        defaultProperties: Any = None,
        defaultAuthorization: Any = None,
    ) -> bool:
        """True when ``credDict`` may call ``methodQuery``; fills ``username``, ``group`` and ``properties``."""
        rule = self.getValidPropertiesForMethod(methodQuery, defaultProperties, defaultAuthorization)
        return self.matchRule(rule, credDict)

    def matchRule(self, rule: Sequence[str], credDict: dict[str, Any]) -> bool:
        """Apply an already resolved rule to ``credDict`` (mutated: username, group, properties)."""
        allowedGroups, required = self.getValidGroups(rule)
        limitedAllowed = LIMITED_PROXY_RULE in required
        if limitedAllowed:
            required = [entry for entry in required if entry != LIMITED_PROXY_RULE]
        if not required:
            if not allowedGroups:
                return False  # no rule at all, or only "LimitedProxy": nobody
            required = ["authenticated"]  # "group:x" alone = any valid member of x
        allowAll = "all" in required or "any" in required
        credDict["properties"] = []

        dn = credDict.get("DN")
        if not dn:
            return allowAll and not allowedGroups

        if credDict.get("isIndependentProxy") and not self.acceptIndependentProxies:
            self.log.verbose("Independent proxy", f"of {dn} carries none of its issuer's rights: served as anonymous")
            credDict["username"] = ANONYMOUS_USER
            credDict["group"] = VISITOR_GROUP
            return allowAll and not allowedGroups

        if credDict.get("isLimitedProxy") and not (allowAll or limitedAllowed or self.acceptLimitedProxies):
            self.log.verbose("Limited proxy refused", f"for {dn}: the method's rule neither is 'all' nor names LimitedProxy")
            return False

        extra = credDict.get("extraCredentials")
        if isinstance(extra, (list, tuple)):
            return self._forwardedQuery(rule, credDict, extra)
        if extra is not None and not isinstance(extra, str):
            return False
        if extra == HOSTS_GROUP:
            credDict["group"] = HOSTS_GROUP
        elif extra and "group" not in credDict:
            credDict["group"] = extra

        if not credDict.get("group"):
            result = Registry.findDefaultGroupForDN(dn)
            if result["OK"]:
                credDict["group"] = result["Value"]
            elif Registry.getHostnameForDN(dn)["OK"]:
                credDict["group"] = HOSTS_GROUP

        if not self._identify(credDict):
            if not allowAll or allowedGroups:
                return False
            credDict["username"] = ANONYMOUS_USER
            credDict["group"] = VISITOR_GROUP

        group = credDict["group"]
        allowGroup = not allowedGroups or group in allowedGroups
        if not allowGroup:
            return False
        if allowAll:
            return True
        if credDict["username"] == ANONYMOUS_USER:
            return False
        if "authenticated" in required:
            return True
        wanted = set(required)
        matched = [prop for prop in credDict["properties"] if prop.lower() in wanted]
        credDict["properties"] = matched
        return bool(matched)

    def _identify(self, credDict: dict[str, Any]) -> bool:
        """Resolve the Registry identity for (DN, group): username and properties; False when unknown or suspended."""
        dn = credDict["DN"]
        group = credDict.get("group")
        if not group:
            return False
        if group == HOSTS_GROUP:
            result = Registry.getHostnameForDN(dn)
            if not result["OK"]:
                return False
            credDict["username"] = result["Value"]
            credDict["properties"] = list(Registry.getPropertiesForHost(result["Value"], []))
            return True
        # several Registry users may share a DN: the one that belongs to the group is the caller
        result = Registry.getUsernameForDN(dn, usersList=Registry.getUsersInGroup(group))
        if not result["OK"]:
            return False
        username = result["Value"]
        if Registry.isUserSuspended(username, Registry.getVOForGroup(group)):
            self.log.verbose("Suspended user", f"{username} in group {group}")
            return False
        credDict["username"] = username
        credDict["properties"] = list(Registry.getPropertiesForGroup(group, []))
        return True

    def _forwardedQuery(self, rule: Sequence[str], credDict: dict[str, Any], extra: Sequence[Any]) -> bool:
        """A trusted host acting for a user: ``extraCredentials = [DN, group]`` replaces the identity."""
        if not self.isTrustedHost(credDict["DN"]):
            self.log.warn("Unauthorized query", f"{credDict['DN']} forwards credentials but is not a TrustedHost")
            return False
        if len(extra) != 2 or not isinstance(extra[0], str) or not extra[0] or not (extra[1] is None or isinstance(extra[1], str)):
            return False
        credDict["DN"] = extra[0]
        credDict.pop("group", None)
        if extra[1]:
            credDict["group"] = extra[1]
        credDict.pop("extraCredentials", None)
        credDict["forwardedBy"] = credDict.get("subject", "")
        return self.matchRule(rule, credDict)

    @staticmethod
    def isTrustedHost(dn: str) -> bool:
        """True when ``dn`` is a registered host with the TrustedHost property."""
        result = Registry.getHostnameForDN(dn)
        if not result["OK"]:
            return False
        return TRUSTED_HOST.lower() in (p.lower() for p in Registry.getPropertiesForHost(result["Value"], []))
