"""``gConfig``: DIRAC's configuration client API over the process-wide ConfigurationData.

Reads are lock-free and cached per path for the current configuration generation, so calling
``gConfig.getValue`` on every request (e.g. for Authorization rules) costs a dictionary lookup.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diraccfg import CFG

from TornadoServices.Core.ReturnValues import S_ERROR, S_OK
from TornadoServices.ConfigurationSystem.Client.ConfigurationData import (
    MISSING,
    CFGSyntaxError,
    ConfigurationData,
    ConfigurationSnapshot,
    gConfigurationData,
    loadCFGFromText,
    splitPath,
)

__all__ = ["ConfigurationClient", "gConfig", "convertValue", "TRUE_VALUES"]

#: Lower-cased option values that read as True (spec: y, yes, true, 1).
TRUE_VALUES = frozenset(("y", "yes", "true", "1"))

_NO_STACK: list[str] = []


class _ConversionError(ValueError):
    """An option value that cannot be converted to the requested type."""


def _splitList(value: str) -> list[str]:
    """Comma-split an option value, stripping items and dropping empty ones (DIRAC's List.fromChar)."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _toDict(value: str) -> dict[str, Any]:
    """Convert "k1:v1, k2" into {"k1": "v1", "k2": True}."""
    result: dict[str, Any] = {}
    for item in _splitList(value):
        if ":" in item:
            key, val = item.split(":", 1)
            result[key.strip()] = val.strip()
        else:
            result[item] = True
    return result


def convertValue(value: str, requestedType: type) -> Any:
    """Convert an option string to ``requestedType`` with DIRAC's rules; raise ValueError when impossible."""
    if requestedType in (list, tuple, set, frozenset):
        return requestedType(_splitList(value))
    if requestedType is bool:
        return value.lower() in TRUE_VALUES
    if requestedType is dict:
        return _toDict(value)
    if requestedType is str:
        return value
    try:
        return requestedType(value)
    except Exception as exc:
        raise _ConversionError(f"cannot convert {value!r} to {requestedType.__name__}: {exc}") from None


def _requestedType(typeValue: Any) -> type:
    """The type a default value (or a type given directly) asks for."""
    return typeValue if isinstance(typeValue, type) else type(typeValue)


_MUTABLE = (list, set, dict)
#: Conversions whose results may be memoised (mutable ones are copied on the way out).
_CACHEABLE = frozenset((None, str, bool, int, float, list, tuple, set, frozenset, dict))


class ConfigurationClient:
    """DIRAC's ``gConfig``: typed reads of the merged CS tree, loading of files and overrides."""

    def __init__(self, data: ConfigurationData | None = None) -> None:
        self._data = data if data is not None else gConfigurationData

    # ---- snapshots and versions -------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Counter bumped on every configuration change; caches compare it to know they are stale."""
        return self._data.generation

    def getSnapshot(self) -> ConfigurationSnapshot:
        """Return the current immutable merged view (``.generation``, ``.tree``, ``.lookup``, ``.memo``)."""
        return self._data.getSnapshot()

    def getVersion(self) -> str:
        """Return the version of the configuration received from the CS service ("0" if none)."""
        return self._data.getVersion()

    def getRemoteCFG(self) -> CFG:
        """Return a copy of the configuration received from the CS service."""
        return self._data.getRemoteCFG()

    def getLocalCFG(self) -> CFG:
        """Return a copy of the local configuration (files and overrides)."""
        return self._data.getLocalCFG()

    def getMergedCFG(self) -> CFG:
        """Return a copy of the merged configuration every read sees."""
        return self._data.getMergedCFG()

    def getLoadedFiles(self) -> list[str]:
        """Return the configuration files loaded so far, in order."""
        return self._data.getLoadedFiles()

    # ---- reads ------------------------------------------------------------------------------------

    def getValue(self, optionPath: str, defaultValue: Any = None) -> Any:
        """Return the option at ``optionPath`` converted to the type of ``defaultValue``, else the default."""
        snapshot = self._data.getSnapshot()
        requestedType = None if defaultValue is None else _requestedType(defaultValue)
        if requestedType not in _CACHEABLE:
            result = self.getOption(optionPath, requestedType)
            return result["Value"] if result["OK"] else defaultValue
        key = ("value", optionPath, requestedType)
        memo = snapshot._memo
        try:
            value = memo[key]
        except KeyError:
            raw = snapshot.lookup(optionPath)
            if not isinstance(raw, str):
                value = MISSING
            elif requestedType is None:
                value = raw
            else:
                try:
                    value = convertValue(raw, requestedType)
                except ValueError:
                    value = MISSING
            memo[key] = value
        if value is MISSING:
            return defaultValue
        if isinstance(value, _MUTABLE):
            return value.copy()
        return value

    def getOption(self, optionPath: str, typeValue: Any = None) -> dict:
        """Return S_OK(value) for an option (converted like getValue when typeValue is given), else S_ERROR."""
        raw = self._data.getSnapshot().lookup(optionPath)
        if not isinstance(raw, str):
            return S_ERROR(f"Path {optionPath} does not exist or it's not an option", callStack=_NO_STACK)
        if typeValue is None:
            return S_OK(raw)
        try:
            return S_OK(convertValue(raw, _requestedType(typeValue)))
        except ValueError as exc:
            return S_ERROR(f"Option {optionPath}: {exc}", callStack=_NO_STACK)

    def _section(self, sectionPath: str) -> dict | None:
        node = self._data.getSnapshot().lookup(sectionPath)
        return node if isinstance(node, dict) else None

    def getOptions(self, sectionPath: str, listOrdered: bool = True) -> dict:
        """Return S_OK(list of option names) of a section, S_ERROR if it is not a section."""
        section = self._section(sectionPath)
        if section is None:
            return S_ERROR(f"Path {sectionPath} does not exist or it's not a section", callStack=_NO_STACK)
        return S_OK([name for name, value in section.items() if isinstance(value, str)])

    def getSections(self, sectionPath: str, listOrdered: bool = True) -> dict:
        """Return S_OK(list of subsection names) of a section, S_ERROR if it is not a section."""
        section = self._section(sectionPath)
        if section is None:
            return S_ERROR(f"Path {sectionPath} does not exist or it's not a section", callStack=_NO_STACK)
        return S_OK([name for name, value in section.items() if isinstance(value, dict)])

    def getOptionsDict(self, sectionPath: str) -> dict:
        """Return S_OK({option: value}) of a section's options (subsections left out)."""
        section = self._section(sectionPath)
        if section is None:
            return S_ERROR(f"Path {sectionPath} does not exist or it's not a section", callStack=_NO_STACK)
        return S_OK({name: value for name, value in section.items() if isinstance(value, str)})

    def getOptionsDictRecursively(self, sectionPath: str) -> dict:
        """Return S_OK(nested dict) of a section: options as str, subsections as dicts."""
        section = self._section(sectionPath)
        if section is None:
            return S_ERROR(f"Path {sectionPath} does not exist or it's not a section", callStack=_NO_STACK)
        return S_OK(_deepCopy(section))

    def getConfigurationTree(self, root: str = "", *filters: str) -> dict:
        """Return S_OK({full path: value or None for sections}) below root, keeping paths containing every filter."""
        node = self._data.getSnapshot().lookup(root)
        if node is MISSING:
            return S_ERROR(f"Path {root or '/'} does not exist", callStack=_NO_STACK)
        base = "/" + "/".join(splitPath(root))
        result: dict[str, str | None] = {}

        def walk(path: str, value: Any) -> None:
            if all(text in path for text in filters):
                result[path] = value if isinstance(value, str) else None
            if isinstance(value, dict):
                for name, child in value.items():
                    walk(f"{path.rstrip('/')}/{name}", child)

        if isinstance(node, dict):
            for name, child in node.items():
                walk(f"{base.rstrip('/')}/{name}", child)
        else:
            walk(base, node)
        return S_OK(result)

    # ---- writes -----------------------------------------------------------------------------------

    def loadFile(self, fileName: str) -> dict:
        """Merge a .cfg/.yaml/.yml file over the local configuration; S_ERROR names the file and line."""
        return self._data.loadFile(fileName)

    def loadCFG(self, cfg: CFG) -> dict:
        """Merge a CFG object over the local configuration."""
        if not isinstance(cfg, CFG):
            return S_ERROR(f"loadCFG expects a diraccfg.CFG, got {type(cfg).__name__}")
        self._data.mergeWithLocal(cfg)
        return S_OK()

    def loadCFGFromString(self, data: str) -> dict:
        """Merge CFG text over the local configuration; S_ERROR names the line on bad syntax."""
        return self._data.loadString(data)

    def setOptionValue(self, optionPath: str, value: Any) -> dict:
        """Set an option in the local configuration (lists are comma-joined); local values win over remote ones."""
        try:
            self._data.setOptionInLocal(optionPath, value)
        except ValueError as exc:
            return S_ERROR(str(exc))
        return S_OK()

    def removeOption(self, optionPath: str) -> dict:
        """Remove an option (or section) from the local configuration; S_OK(True) when it existed."""
        return S_OK(self._data.deleteLocalEntry(optionPath))

    def loadRemoteCFG(self, cfg: CFG | str, version: str | None = None) -> dict:
        """Install configuration received from the CS service (CFG object or text) and fire new-version listeners."""
        if isinstance(cfg, str):
            try:
                cfg = loadCFGFromText(cfg, "<remote configuration>")
            except CFGSyntaxError as exc:
                return S_ERROR(f"Cannot parse {exc}")
        self._data.loadRemoteCFG(cfg, version)
        return S_OK()

    def reset(self) -> None:
        """Empty the whole configuration (tests); registered listeners are kept."""
        self._data.reset()

    # ---- events -----------------------------------------------------------------------------------

    def addListenerToNewVersionEvent(self, listener: Callable[[], Any]) -> None:
        """Call ``listener()`` each time a new remote configuration is loaded."""
        self._data.addNewVersionListener(listener)

    def addListenerToChangeEvent(self, listener: Callable[[], Any]) -> None:
        """Call ``listener()`` after any configuration change (files, overrides, remote data)."""
        self._data.addChangeListener(listener)

    def removeListener(self, listener: Callable[[], Any]) -> None:
        """Stop calling ``listener``."""
        self._data.removeListener(listener)


def _deepCopy(section: dict) -> dict:
    """Copy a nested section dict so callers cannot alter the shared snapshot."""
    return {name: _deepCopy(value) if isinstance(value, dict) else value for name, value in section.items()}


#: The process-wide configuration client, as DIRAC's ``from DIRAC import gConfig``.
gConfig = ConfigurationClient()
