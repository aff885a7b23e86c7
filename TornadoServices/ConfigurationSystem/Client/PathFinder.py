"""Where components live in the CS, and which URLs serve them.

DIRAC 9 layout: ``/Systems/<System>/{Services,APIs,Agents,Executors,Databases,URLs,FailoverURLs}/<Name>``
and ``/Systems/Tornado/Port``. The older layout with an instance level
(``/Systems/<System>/<Instance>/...``, instance from ``/DIRAC/Setups/<Setup>/<System>``) is used only when
the configuration still defines ``/DIRAC/Setup`` (DIRAC <= 8).
"""
from __future__ import annotations

import random
from urllib.parse import urlsplit, urlunsplit

from typing import Any

from TornadoServices.ConfigurationSystem.Client.Config import gConfig

__all__ = [
    "checkComponentName",
    "checkComponentURL",
    "divideFullName",
    "getAPISection",
    "getAgentSection",
    "getComponentSection",
    "getDatabaseSection",
    "getExecutorSection",
    "getGatewayURLs",
    "getMainServers",
    "getServiceFailoverURLs",
    "getServiceSection",
    "getServiceURL",
    "getServiceURLs",
    "getSetup",
    "getSystemFailoverURLSection",
    "getSystemInstance",
    "getSystemSection",
    "getSystemURLSection",
    "getTornadoPort",
]

DEFAULT_TORNADO_PORT = 8443
_DEFAULT_PORTS = {"https": 443, "http": 80}
_SCHEMES = ("https", "http", "dips")


def _log() -> Any:
    """The PathFinder logger (imported on first use: configuration reading must not depend on logging set-up)."""
    from TornadoServices.Core.Logging import gLogger

    return gLogger.getSubLogger("PathFinder")


def divideFullName(entityName: str, componentName: str | None = None) -> tuple[str, str]:
    """Split "System/Component" (or take system and component separately); raise RuntimeError otherwise."""
    entityName = entityName.strip().strip("/")
    if entityName and "/" not in entityName and componentName:
        return entityName, componentName.strip()
    fields = [field.strip() for field in entityName.split("/") if field.strip()]
    if len(fields) == 2:
        return fields[0], fields[1]
    raise RuntimeError(f"Component name {entityName!r} must have the form System/Component, e.g. Framework/Dummy")


def checkComponentName(name: str) -> str:
    """Return "System/Component" normalised from ``name``; raise RuntimeError when it has another form."""
    return "/".join(divideFullName(name))


def getSetup() -> str:
    """Return /DIRAC/Setup (DIRAC <= 8 configurations), "" when the configuration uses DIRAC 9's layout."""
    return gConfig.getValue("/DIRAC/Setup", "")


def getSystemInstance(system: str) -> str:
    """Return the instance of ``system`` in the old layout, "" in DIRAC 9's layout (no /DIRAC/Setup)."""
    setup = getSetup()
    if not setup:
        return ""
    system = _systemName(system)
    instance = gConfig.getValue(f"/DIRAC/Setups/{setup}/{system}", "")
    if not instance:
        _log().debug(f"/DIRAC/Setups/{setup}/{system} is not defined: using the DIRAC 9 layout /Systems/{system}")
    return instance


def _systemName(system: str) -> str:
    """Accept "System" or "System/Component" and return the system part."""
    fields = [field.strip() for field in system.split("/") if field.strip()]
    if not fields:
        raise RuntimeError("A system name is required, e.g. Framework")
    return fields[0]


def getSystemSection(system: str) -> str:
    """Return the CS section of a system: /Systems/<S> (or /Systems/<S>/<Instance> in the old layout)."""
    system = _systemName(system)
    instance = getSystemInstance(system)
    return f"/Systems/{system}/{instance}" if instance else f"/Systems/{system}"


def getComponentSection(system: str, component: str | None = None, componentCategory: str = "Services") -> str:
    """Return /Systems/<S>[/<Instance>]/<category>/<C> for "S/C" or (S, C)."""
    system, component = divideFullName(system, component)
    return f"{getSystemSection(system)}/{componentCategory}/{component}"


def getServiceSection(system: str, serviceName: str | None = None) -> str:
    """Return the CS section of a service ("Framework/Dummy" -> /Systems/Framework/Services/Dummy)."""
    return getComponentSection(system, serviceName, "Services")


def getAPISection(system: str, endpointName: str | None = None) -> str:
    """Return the CS section of a REST API endpoint (…/APIs/<Endpoint>)."""
    return getComponentSection(system, endpointName, "APIs")


def getAgentSection(system: str, agentName: str | None = None) -> str:
    """Return the CS section of an agent (…/Agents/<Agent>)."""
    return getComponentSection(system, agentName, "Agents")


def getExecutorSection(system: str, executorName: str | None = None) -> str:
    """Return the CS section of an executor (…/Executors/<Executor>)."""
    return getComponentSection(system, executorName, "Executors")


def getDatabaseSection(system: str, dbName: str | None = None) -> str:
    """Return the CS section of a database (…/Databases/<DB>)."""
    return getComponentSection(system, dbName, "Databases")


def getSystemURLSection(system: str) -> str:
    """Return the section listing a system's service URLs (…/URLs)."""
    return f"{getSystemSection(system)}/URLs"


def getSystemFailoverURLSection(system: str) -> str:
    """Return the section listing a system's failover URLs (…/FailoverURLs)."""
    return f"{getSystemSection(system)}/FailoverURLs"


def getTornadoPort() -> int:
    """Return the shared HTTPS port: /Systems/Tornado/Port (old layout …/Tornado/<Instance>/Port), else 8443."""
    return gConfig.getValue(f"{getSystemSection('Tornado')}/Port", DEFAULT_TORNADO_PORT)


def checkComponentURL(
    componentURL: str, system: str | None = None, component: str | None = None, pathMandatory: bool = False
) -> str:
    """Normalise a service URL: default port (https 443, http 80), path /<S>/<C> when empty; RuntimeError if bad."""
    text = componentURL.strip()
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError as exc:
        raise RuntimeError(f"URL {text!r} is invalid: {exc}") from None
    scheme = url.scheme.lower()
    if scheme not in _SCHEMES:
        raise RuntimeError(f"URL {text!r} has unsupported scheme {url.scheme!r}: use https:// (or dips://host:port)")
    host = url.hostname
    if not host:
        raise RuntimeError(f"URL {text!r} has no host name")
    if port is None:
        if scheme == "dips":
            raise RuntimeError(f"URL {text!r} must give a port: dips:// URLs have no default port")
        port = _DEFAULT_PORTS[scheme]
    hostPart = f"[{host}]" if ":" in host else host
    path = url.path.strip("/")
    if path:
        path = "/" + path
    elif system and component:
        path = f"/{system}/{component}"
    elif pathMandatory:
        raise RuntimeError(f"URL {text!r} must include the path /<System>/<Component>")
    return urlunsplit((scheme, f"{hostPart}:{port}", path, url.query, ""))


def getMainServers() -> list[str]:
    """Return the hosts for $MAINSERVERS$: /Operations/Defaults/MainServers (old layout: <Setup> section first)."""
    setup = getSetup()
    if setup:
        servers = gConfig.getValue(f"/Operations/{setup}/MainServers", [])
        if servers:
            return servers
    return gConfig.getValue("/Operations/Defaults/MainServers", [])


def _expandURLs(optionPath: str, system: str, component: str) -> tuple[str, ...]:
    """Read a URL list: expand $MAINSERVERS$, normalise, de-duplicate keeping the first; log and skip bad entries."""
    result: dict[str, None] = {}
    for entry in gConfig.getValue(optionPath, []):
        candidates = [entry]
        if "$MAINSERVERS$" in entry:
            servers = getMainServers()
            if not servers:
                _log().warn(
                    f"{optionPath}: cannot expand $MAINSERVERS$ in {entry!r}",
                    "set /Operations/Defaults/MainServers to a list of host names",
                )
                continue
            candidates = [entry.replace("$MAINSERVERS$", server) for server in servers]
        for candidate in candidates:
            try:
                result.setdefault(checkComponentURL(candidate, system, component, pathMandatory=True), None)
            except RuntimeError as exc:
                _log().warn(f"{optionPath}: ignoring URL", str(exc))
    return tuple(result)


def _cachedURLs(kind: str, system: str, component: str) -> tuple[str, ...]:
    """Normalised URL list for this configuration generation (shuffling is left to the caller)."""
    snapshot = gConfig.getSnapshot()
    section = getSystemURLSection(system) if kind == "URLs" else getSystemFailoverURLSection(system)
    return snapshot.memo(
        ("PathFinder", kind, system, component),
        lambda: _expandURLs(f"{section}/{component}", system, component),
    )


def getServiceFailoverURLs(system: str, service: str | None = None) -> list[str]:
    """Return the shuffled, normalised failover URLs of "System/Service" (…/FailoverURLs/<Service>)."""
    system, service = divideFullName(system, service)
    urls = list(_cachedURLs("FailoverURLs", system, service))
    random.shuffle(urls)
    return urls


def getServiceURLs(system: str, service: str | None = None, failover: bool = False) -> list[str]:
    """Return the shuffled, normalised URLs of "System/Service"; with failover=True the failover URLs follow."""
    if isinstance(service, bool):
        failover, service = service, None
    system, service = divideFullName(system, service)
    urls = list(_cachedURLs("URLs", system, service))
    random.shuffle(urls)
    if failover:
        urls += [url for url in getServiceFailoverURLs(system, service) if url not in urls]
    return urls


def getServiceURL(serviceName: str, serviceTuple: tuple[str, str] | None = None) -> str:
    """Return the service URLs joined by ',' ("" when none is configured)."""
    if serviceTuple:
        return ",".join(getServiceURLs(*serviceTuple))
    return ",".join(getServiceURLs(serviceName))


def getGatewayURLs(system: str = "", service: str | None = None) -> list[str]:
    """Return the shuffled gateways of /LocalSite/Site (/DIRAC/Gateways/<site>), normalised for S/C when given."""
    site = gConfig.getValue("/LocalSite/Site", "")
    if not site:
        return []
    gateways = gConfig.getValue(f"/DIRAC/Gateways/{site}", [])
    random.shuffle(gateways)
    if not (system and service):
        return gateways
    result: dict[str, None] = {}
    for gateway in gateways:
        try:
            result.setdefault(checkComponentURL(gateway, system, service), None)
        except RuntimeError as exc:
            _log().warn(f"/DIRAC/Gateways/{site}: ignoring gateway", str(exc))
    return list(result)
