"""Finds the HTTPS services a CS describes and imports their handler classes.

Discovery (``services=True``): every ``/Systems/<S>/Services/<C>`` section whose ``Protocol`` is ``https``
(DIRAC 9 layout; ``/Systems/<S>/<Instance>/Services/<C>`` when the configuration defines ``/DIRAC/Setup``).
An explicit list of ``"System/Component"`` or ``"System/Component:port"`` entries loads exactly those.

Loading of component ``S/C`` (CS section ``sec``):

1. ``sec/Module`` names the code to use: ``Name`` (same system) or ``System/Name``; default ``C``.
2. ``HandlerPath`` (in ``sec``, else in the section of the module) is a file path inside an importable
   package, e.g. ``TornadoExample/FrameworkSystem/Service/DummyHandler.py``: the class is named after the file.
3. Otherwise ``<Extension>.<S>System.Service.<Name>Handler`` is imported for each package of
   ``/DIRAC/Extensions`` in order, then ``TornadoServices``; the class is ``<Name>Handler``.

A component whose section has a ``Load`` option is a *load group*: the components it lists are loaded
instead of it (a name without ``/`` is in the group's system; groups may list groups, a cycle is an error).
An explicit port of the group (``S/G:port`` or the group's ``Port``) applies to every member; otherwise
each member uses its own ``Port``.

Directories listed in ``/DIRAC/ExtensionsPath`` (relative ones from the current directory) are put in front of
``sys.path`` first, so extension packages need not be installed.
Each component gets its own subclass (``<S><C>Handler``) so class-level state is per component.
"""
from __future__ import annotations

import importlib
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Iterable, Optional, Union

from TornadoServices.ConfigurationSystem.Client import PathFinder
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.ConfigurationSystem.Client.Helpers.CSGlobals import getExtensions
from TornadoServices.Core.Logging import gLogger
from TornadoServices.Core.ReturnValues import S_ERROR, S_OK
from TornadoServices.Server.TornadoService import TornadoService

__all__ = ["HandlerManager", "HandlerInfo", "getExtensions", "addExtensionsPath"]


@dataclass
class HandlerInfo:
    """A loaded component: its per-component handler class, CS section and own port (None = server port)."""

    name: str
    handlerClass: type
    sectionPath: str
    port: Optional[int]
    moduleName: str


def addExtensionsPath() -> list[str]:
    """Put the directories of ``/DIRAC/ExtensionsPath`` in front of ``sys.path``; return those that are missing."""
    missing = []
    for entry in reversed(gConfig.getValue("/DIRAC/ExtensionsPath", [])):
        path = os.path.abspath(os.path.expanduser(entry))
        if not os.path.isdir(path):
            missing.append(entry)
            continue
        if path not in sys.path:
            sys.path.insert(0, path)
    return missing


def _parseEntry(entry: str) -> tuple[str, Optional[int]]:
    """``"S/C"`` or ``"S/C:port"`` -> (normalised name, port or None)."""
    name, _, port = entry.strip().partition(":")
    name = PathFinder.checkComponentName(name)
    if not port:
        return name, None
    if not port.isdigit():
        raise ValueError(f"Service entry {entry!r}: the port after ':' must be a number")
    return name, int(port)


def _sectionPort(name: str, section: str) -> Optional[int]:
    """The ``Port`` option of a component's section, None when absent; ValueError when it is not a number."""
    csPort = gConfig.getValue(f"{section}/Port", "")
    if not csPort:
        return None
    if not str(csPort).isdigit():
        raise ValueError(f"{name}: {section}/Port must be a number, not {csPort!r}")
    return int(csPort)


class HandlerManager:
    """Discovers and loads the handler classes of the services a server runs."""

    def __init__(self, services: Union[bool, str, Iterable[str]] = True) -> None:
        self._services = services
        self._handlers: dict[str, HandlerInfo] = {}
        self.log = gLogger.getSubLogger("HandlerManager")

    # ---- discovery -------------------------------------------------------------------------------------
    def discoverHandlers(self) -> dict:
        """S_OK(list of ``"System/Component"`` entries with ``Protocol = https``)."""
        result = gConfig.getSections("/Systems")
        if not result["OK"]:
            return S_OK([])
        found = []
        for system in result["Value"]:
            try:
                section = PathFinder.getSystemSection(system)
            except RuntimeError:
                continue
            services = gConfig.getSections(f"{section}/Services")
            if not services["OK"]:
                continue
            for component in services["Value"]:
                protocol = gConfig.getValue(f"{section}/Services/{component}/Protocol", "")
                if protocol.strip().lower() == "https":
                    found.append(f"{system}/{component}")
        return S_OK(found)

    def _entries(self) -> list[tuple[str, Optional[int]]]:
        services = self._services
        if services is True:
            result = self.discoverHandlers()
            names: Iterable[str] = result["Value"] if result["OK"] else []
        elif not services:
            names = []
        elif isinstance(services, str):
            names = [services]
        else:
            names = list(services)
        entries: dict[str, Optional[int]] = {}
        for entry in names:
            name, port = _parseEntry(entry)
            self._addEntry(entries, name, port, [])
        return list(entries.items())

    def _addEntry(self, entries: dict[str, Optional[int]], name: str, port: Optional[int], groups: list[str]) -> None:
        """Add component ``name``, or the members of its load group; the first occurrence of a component wins its port."""
        section = PathFinder.getServiceSection(name)
        members = [member.strip() for member in gConfig.getValue(f"{section}/Load", []) if member.strip()]
        if not members:
            entries.setdefault(name, port)
            return
        if name in groups:
            raise ValueError(f"Load groups form a cycle: {' -> '.join(groups + [name])} (see the Load options)")
        if port is None:
            port = _sectionPort(name, section)
        system, _ = PathFinder.divideFullName(name)
        for member in members:
            memberName, memberPort = _parseEntry(member if "/" in member else f"{system}/{member}")
            self._addEntry(entries, memberName, port if port is not None else memberPort, groups + [name])

    def serviceEntries(self) -> dict:
        """S_OK(list of ``"System/Component"`` or ``"System/Component:port"``) of the components to load:
        the configured or discovered services with their load groups expanded; S_ERROR for a bad entry or group."""
        try:
            return S_OK([name if port is None else f"{name}:{port}" for name, port in self._entries()])
        except (ValueError, RuntimeError) as exc:
            return S_ERROR(str(exc))

    # ---- loading -----------------------------------------------------------------------------------------
    def loadServicesHandlers(self) -> dict:
        """S_OK(dict name -> HandlerInfo) for every service, S_ERROR naming each one that cannot be loaded."""
        try:
            entries = self._entries()
        except (ValueError, RuntimeError) as exc:
            return S_ERROR(str(exc))
        missingPaths = addExtensionsPath()
        for path in missingPaths:
            self.log.warn("Extension directory not found", f"{path} (listed in /DIRAC/ExtensionsPath)")
        errors = []
        for name, port in entries:
            result = self.loadHandler(name, port)
            if result["OK"]:
                self._handlers[name] = result["Value"]
            else:
                errors.append(result["Message"])
        if errors:
            return S_ERROR("Some services cannot be loaded:\n  " + "\n  ".join(errors))
        return S_OK(dict(self._handlers))

    def loadHandler(self, name: str, port: Optional[int] = None) -> dict:
        """S_OK(HandlerInfo) for component ``name`` (``System/Component``), S_ERROR saying why not."""
        system, component = PathFinder.divideFullName(name)
        section = PathFinder.getServiceSection(name)
        module = gConfig.getValue(f"{section}/Module", "") or component
        if "/" in module:
            loadSystem, loadName = PathFinder.divideFullName(module)
        else:
            loadSystem, loadName = system, module
        loadSection = PathFinder.getServiceSection(f"{loadSystem}/{loadName}")
        handlerPath = gConfig.getValue(f"{section}/HandlerPath", "") or gConfig.getValue(f"{loadSection}/HandlerPath", "")
        if port is None:
            try:
                port = _sectionPort(name, section)
            except ValueError as exc:
                return S_ERROR(str(exc))

        if handlerPath:
            modulePath = handlerPath.strip().replace("/", ".")
            if modulePath.endswith(".py"):
                modulePath = modulePath[:-3]
            candidates = [(modulePath, modulePath.rsplit(".", 1)[-1])]
        else:
            candidates = [
                (f"{ext}.{loadSystem}System.Service.{loadName}Handler", f"{loadName}Handler") for ext in getExtensions()
            ]

        tried = []
        for moduleName, className in candidates:
            try:
                pyModule = importlib.import_module(moduleName)
            except ModuleNotFoundError as exc:
                if exc.name and (moduleName == exc.name or moduleName.startswith(exc.name + ".")):
                    tried.append(moduleName)
                    continue
                return S_ERROR(f"{name}: importing {moduleName} failed: {_describe(exc)}")
            except Exception as exc:
                return S_ERROR(f"{name}: importing {moduleName} failed: {_describe(exc)}")
            handlerClass = getattr(pyModule, className, None)
            if handlerClass is None:
                return S_ERROR(f"{name}: module {moduleName} has no class {className}")
            if not (isinstance(handlerClass, type) and issubclass(handlerClass, TornadoService)):
                return S_ERROR(f"{name}: {moduleName}.{className} is not a TornadoService subclass")
            componentClass = type(
                f"{system}{component}Handler",
                (handlerClass,),
                {"_fullComponentName": name, "__module__": handlerClass.__module__},
            )
            self.log.verbose("Loaded handler", f"{name} from {moduleName}.{className}")
            return S_OK(HandlerInfo(name, componentClass, section, port, moduleName))
        where = "HandlerPath " + handlerPath if handlerPath else "/DIRAC/Extensions " + ", ".join(getExtensions())
        return S_ERROR(
            f"{name}: no handler module found (tried {', '.join(tried)}; from {where}); "
            "set HandlerPath in the service section or add its package to /DIRAC/Extensions and /DIRAC/ExtensionsPath"
        )

    def getHandlersDict(self) -> dict[str, HandlerInfo]:
        """Components loaded so far, by ``System/Component``."""
        return dict(self._handlers)


def _describe(exc: BaseException) -> str:
    """One line naming the exception and where it was raised in the handler's code."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" (at {last.filename}:{last.lineno})"
    return f"{type(exc).__name__}: {exc}{where}"
