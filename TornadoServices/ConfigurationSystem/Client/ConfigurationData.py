"""The configuration held by this process: local files and overrides on top of the CS service's copy.

``ConfigurationData`` keeps two ``diraccfg.CFG`` trees, the *local* one (files, ``-o`` overrides,
``setOptionValue``) and the *remote* one (downloaded from the Configuration service), and publishes
their merge (remote overridden by local, see ``mergeCFG``) as an immutable ``ConfigurationSnapshot`` of plain
dicts. Readers never lock: they grab the current snapshot, whose ``generation`` increases on every
change, and whose memo table lets callers cache derived data (typed values, URL lists, Registry
indices) for exactly as long as the configuration stays the same.
"""
from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Callable, Hashable
from typing import Any

from diraccfg import CFG

from TornadoServices.Core.ReturnValues import S_ERROR, S_OK

__all__ = [
    "CFGSyntaxError",
    "ConfigurationData",
    "cfgNode",
    "ConfigurationSnapshot",
    "gConfigurationData",
    "loadCFGFromText",
    "loadCFGFromYAML",
    "mergeCFG",
    "splitPath",
    "toCFGValue",
]

#: Marker for "no such entry" in lookups (distinct from any option value).
MISSING: Any = object()

_YAML_SUFFIXES = (".yaml", ".yml")


class CFGSyntaxError(ValueError):
    """A configuration text that cannot be parsed; ``line`` is 1-based (0 when unknown)."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {reason}")


def splitPath(path: str) -> list[str]:
    """Split a CS path on '/', stripping components and ignoring empty ones (so a//b == a/b)."""
    return [part.strip() for part in path.split("/") if part.strip()]


def cfgNode(cfg: CFG, path: str) -> Any:
    """The section (CFG) or option text at ``path`` of ``cfg``, None when it is missing."""
    node: Any = cfg
    for part in splitPath(path):
        if not isinstance(node, CFG) or part not in node.listAll():
            return None
        node = node[part]
    return node


def toCFGValue(value: Any) -> str:
    """Render a Python value as CFG option text: sequences become comma lists, booleans yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return ""
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(toCFGValue(item) for item in value)
    return str(value)


def _mergeInto(target: CFG, source: CFG) -> None:
    """Merge ``source`` into ``target`` in place; source wins, even over a section/option of the same name."""
    for key in source.listAll():
        value = source[key]
        comment = source.getComment(key)
        if isinstance(value, CFG):
            if target.isSection(key):
                _mergeInto(target[key], value)  # type: ignore[arg-type]
                if comment:
                    target.setComment(key, comment)
                continue
            if target.existsKey(key):
                target.deleteKey(key)
            target.createNewSection(key, comment, value.clone())
        else:
            if target.isSection(key):
                target.deleteKey(key)
            target.setOption(key, value, comment)


def mergeCFG(base: CFG, override: CFG) -> CFG:
    """Return a new CFG with ``override`` merged over ``base`` (neither is modified).

    Unlike ``CFG.mergeWith`` this keeps the base order, shares no sections with its inputs and does not
    fail when a name is an option on one side and a section on the other (the override wins).
    """
    merged = base.clone()
    _mergeInto(merged, override)
    return merged


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------


class _Frame:
    """One open section while scanning CFG text: what it holds and where each entry was declared."""

    __slots__ = ("name", "line", "sections", "options")

    def __init__(self, name: str, line: int) -> None:
        self.name = name
        self.line = line
        self.sections: dict[str, int] = {}
        self.options: dict[str, int] = {}


def _checkName(source: str, lineNo: int, name: str, what: str) -> None:
    """Reject names diraccfg would silently misinterpret."""
    if not name:
        raise CFGSyntaxError(source, lineNo, f"{what} without a name")
    if "/" in name:
        raise CFGSyntaxError(source, lineNo, f"{what} name {name!r} must not contain '/'")


def _scanCFGText(text: str, source: str) -> None:
    """Validate CFG text statement by statement, raising CFGSyntaxError with the offending line.

    diraccfg reports unbalanced braces and duplicate sections without a line number and silently drops
    stray text, so the structure is checked here first, with the same tokenisation diraccfg uses.
    """
    stack = [_Frame("", 0)]
    pending = ""
    pendingLine = 0
    for lineNo, rawLine in enumerate(text.split("\n"), 1):
        line = rawLine.strip()
        if not line or line.startswith("#"):
            continue
        buffer = ""
        sawBrace = False
        for index, char in enumerate(line):
            if char == "{":
                name = (pending + buffer).strip()
                nameLine = pendingLine or lineNo
                pending, pendingLine, buffer, sawBrace = "", 0, "", True
                _checkName(source, nameLine, name, "section")
                frame = stack[-1]
                if name in frame.sections:
                    raise CFGSyntaxError(
                        source, nameLine, f"section {name!r} is defined twice (first at line {frame.sections[name]})"
                    )
                if name in frame.options:
                    raise CFGSyntaxError(
                        source, nameLine, f"section {name!r} clashes with the option at line {frame.options[name]}"
                    )
                frame.sections[name] = nameLine
                stack.append(_Frame(name, nameLine))
            elif char == "}":
                if pending or buffer.strip():
                    raise CFGSyntaxError(
                        source, pendingLine or lineNo, f"unexpected text {(pending + buffer).strip()!r} before '}}'"
                    )
                if len(stack) == 1:
                    raise CFGSyntaxError(source, lineNo, "'}' closes a section that was never opened")
                stack.pop()
                buffer, sawBrace = "", True
            elif char == "=" or line[index : index + 2] == "+=":
                if pending:
                    raise CFGSyntaxError(
                        source, pendingLine, f"{pending.strip()!r} is neither 'name = value' nor a section 'name {{'"
                    )
                if sawBrace:
                    raise CFGSyntaxError(
                        source, lineNo, "an option must be on its own line, not after '{' or '}'"
                    )
                isAppend = char == "+"
                name = line.split("+=" if isAppend else "=")[0].strip()
                _checkName(source, lineNo, name, "option")
                frame = stack[-1]
                if name in frame.sections:
                    raise CFGSyntaxError(
                        source, lineNo, f"option {name!r} clashes with the section at line {frame.sections[name]}"
                    )
                if isAppend and name not in frame.options:
                    raise CFGSyntaxError(source, lineNo, f"'{name} +=' appends to an option not defined before")
                frame.options.setdefault(name, lineNo)
                buffer = ""
                break
            else:
                buffer += char
        else:
            if buffer.strip():
                if pending:
                    raise CFGSyntaxError(
                        source, pendingLine, f"{pending.strip()!r} is neither 'name = value' nor a section 'name {{'"
                    )
                pending, pendingLine = buffer, lineNo
    if pending:
        raise CFGSyntaxError(
            source, pendingLine, f"{pending.strip()!r} is neither 'name = value' nor a section 'name {{'"
        )
    if len(stack) > 1:
        frame = stack[-1]
        raise CFGSyntaxError(source, frame.line, f"section {frame.name!r} is never closed (missing '}}')")


def loadCFGFromText(text: str, source: str = "<string>") -> CFG:
    """Parse DIRAC CFG text into a CFG; raise CFGSyntaxError naming ``source`` and the line."""
    _scanCFGText(text, source)
    try:
        return CFG().loadFromBuffer(text)
    except (ValueError, KeyError) as exc:
        reason = exc.args[0] if exc.args else str(exc)
        raise CFGSyntaxError(source, 0, str(reason)) from None


def _yamlToCFG(data: dict, source: str, path: str) -> CFG:
    """Turn a YAML mapping into a CFG: mappings are sections, lists comma-joined, scalars options."""
    cfg = CFG()
    for key, value in data.items():
        name = toCFGValue(key).strip()
        where = f"{path}/{name}"
        if not name or "/" in name:
            raise CFGSyntaxError(source, 0, f"key {where!r}: names must be non-empty and must not contain '/'")
        if isinstance(value, dict):
            cfg.createNewSection(name, "", _yamlToCFG(value, source, where))
        elif isinstance(value, (list, tuple)):
            if any(isinstance(item, (dict, list, tuple)) for item in value):
                raise CFGSyntaxError(source, 0, f"key {where!r}: a list may only hold plain values")
            cfg.setOption(name, toCFGValue(value))
        else:
            cfg.setOption(name, toCFGValue(value))
    return cfg


def loadCFGFromYAML(text: str, source: str = "<yaml>") -> CFG:
    """Parse YAML text (a nested mapping) into a CFG; raise CFGSyntaxError naming source and line."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise CFGSyntaxError(source, mark.line + 1 if mark is not None else 0, str(problem)) from None
    if data is None:
        return CFG()
    if not isinstance(data, dict):
        raise CFGSyntaxError(source, 1, "the top level of a YAML configuration must be a mapping")
    return _yamlToCFG(data, source, "")


def loadCFGFromFile(path: str) -> CFG:
    """Read a .cfg (or .yaml/.yml) file; raise OSError if unreadable, CFGSyntaxError if malformed."""
    with open(path, encoding="utf-8") as fd:
        try:
            text = fd.read()
        except UnicodeDecodeError as exc:
            raise CFGSyntaxError(path, 0, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.lower().endswith(_YAML_SUFFIXES):
        return loadCFGFromYAML(text, path)
    return loadCFGFromText(text, path)


# --------------------------------------------------------------------------------------------------
# Snapshot and data holder
# --------------------------------------------------------------------------------------------------


class ConfigurationSnapshot:
    """Immutable merged view of one configuration generation, plus a memo table tied to it."""

    __slots__ = ("generation", "tree", "_memo")

    def __init__(self, generation: int, tree: dict) -> None:
        self.generation = generation
        #: nested dicts: sections are dicts, options are str. Treat as read-only.
        self.tree = tree
        self._memo: dict[Hashable, Any] = {}

    def lookup(self, path: str) -> Any:
        """Return the option string or section dict at ``path``, or MISSING; memoised per path."""
        memo = self._memo
        key = ("lookup", path)
        try:
            return memo[key]
        except KeyError:
            pass
        node: Any = self.tree
        for part in splitPath(path):
            if not isinstance(node, dict):
                node = MISSING
                break
            node = node.get(part, MISSING)
            if node is MISSING:
                break
        memo[key] = node
        return node

    def memo(self, key: Hashable, factory: Callable[[], Any]) -> Any:
        """Return the value cached under ``key`` for this generation, computing it once with factory()."""
        try:
            return self._memo[key]
        except KeyError:
            value = factory()
            self._memo[key] = value
            return value


class ConfigurationData:
    """Local and remote CFG trees, their merged snapshot, a generation counter and change listeners."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._local = CFG()
        self._remote = CFG()
        self._remoteVersion: str | None = None
        self._loadedFiles: list[str] = []
        self._generation = 0
        self._snapshot: ConfigurationSnapshot | None = None
        self._changeListeners: list[Callable[[], Any]] = []
        self._newVersionListeners: list[Callable[[], Any]] = []

    # ---- reading ----------------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Counter increased by every change of the local or remote configuration."""
        return self._generation

    def getSnapshot(self) -> ConfigurationSnapshot:
        """Return the current merged snapshot, building it once per generation."""
        snapshot = self._snapshot
        if snapshot is not None:
            return snapshot
        with self._lock:
            if self._snapshot is None:
                merged = mergeCFG(self._remote, self._local)
                self._snapshot = ConfigurationSnapshot(self._generation, merged.getAsDict())
            return self._snapshot

    def getMergedCFG(self) -> CFG:
        """Return a copy of the merged configuration (remote overridden by local)."""
        with self._lock:
            return mergeCFG(self._remote, self._local)

    def getLocalCFG(self) -> CFG:
        """Return a copy of the local configuration (files and overrides)."""
        with self._lock:
            return self._local.clone()

    def getRemoteCFG(self) -> CFG:
        """Return a copy of the configuration received from the Configuration service."""
        with self._lock:
            return self._remote.clone()

    def getLoadedFiles(self) -> list[str]:
        """Return the files merged into the local configuration, in load order."""
        with self._lock:
            return list(self._loadedFiles)

    def getVersion(self) -> str:
        """Return the remote configuration version (/DIRAC/Configuration/Version), "0" if none."""
        if self._remoteVersion:
            return self._remoteVersion
        with self._lock:
            value = self._remote.getOption("/DIRAC/Configuration/Version", "0")
        return value or "0"

    def getCompressedData(self) -> bytes:
        """Return the remote configuration text zlib-compressed (level 9), as the CS service sends it."""
        with self._lock:
            text = str(self._remote)
        return zlib.compress(text.encode(), 9)

    def _option(self, path: str, default: str) -> str:
        """Return the merged option at ``path`` as text, or ``default``."""
        value = self.getSnapshot().lookup(path)
        return value if isinstance(value, str) else default

    def getServers(self) -> list[str]:
        """Return /DIRAC/Configuration/Servers: the union of the local and remote lists, local first."""
        with self._lock:
            local = self._local.getOption("/DIRAC/Configuration/Servers", [])
            remote = self._remote.getOption("/DIRAC/Configuration/Servers", [])
        return list(dict.fromkeys(local + remote))

    def getMasterServer(self) -> str | None:
        """Return /DIRAC/Configuration/MasterServer, None when unset."""
        return self._option("/DIRAC/Configuration/MasterServer", "") or None

    def isMaster(self) -> bool:
        """True when the *local* configuration says /DIRAC/Configuration/Master = yes."""
        with self._lock:
            value = self._local.getOption("/DIRAC/Configuration/Master", "no")
        return value.lower() in ("y", "yes", "true", "1")

    def getName(self) -> str:
        """Return /DIRAC/Configuration/Name (the CS name), "" when unset."""
        return self._option("/DIRAC/Configuration/Name", "")

    def _intOption(self, path: str, default: int) -> int:
        try:
            return int(self._option(path, str(default)))
        except ValueError:
            return default

    def getRefreshTime(self) -> int:
        """Seconds between client refreshes (/DIRAC/Configuration/RefreshTime, default 300)."""
        return self._intOption("/DIRAC/Configuration/RefreshTime", 300)

    def getPropagationTime(self) -> int:
        """Seconds between slave updates (/DIRAC/Configuration/PropagationTime, default 300)."""
        return self._intOption("/DIRAC/Configuration/PropagationTime", 300)

    def getSlavesGraceTime(self) -> int:
        """Seconds before the master forgets a silent slave (/DIRAC/Configuration/SlavesGraceTime, default 600)."""
        return self._intOption("/DIRAC/Configuration/SlavesGraceTime", 600)

    def getAutoPublish(self) -> bool:
        """Whether a slave publishes itself to the master (local /DIRAC/Configuration/AutoPublish, default yes)."""
        with self._lock:
            value = self._local.getOption("/DIRAC/Configuration/AutoPublish", "yes")
        return value.lower() in ("y", "yes", "true", "1")

    def getAutoSlaveSync(self) -> bool:
        """Whether the master forces slaves to update on commit (/DIRAC/Configuration/AutoSlaveSync, default yes)."""
        return self._option("/DIRAC/Configuration/AutoSlaveSync", "yes").lower() in ("y", "yes", "true", "1")

    # ---- writing ----------------------------------------------------------------------------------

    def _changed(self) -> None:
        """Bump the generation and drop the snapshot; the caller holds the lock and notifies after."""
        self._generation += 1
        self._snapshot = None

    def _notify(self, newVersion: bool) -> None:
        """Call the change listeners (and the new-version ones) outside the lock; log their failures."""
        listeners = list(self._changeListeners)
        if newVersion:
            listeners += self._newVersionListeners
        for listener in listeners:
            try:
                listener()
            except Exception:  # a listener must not break configuration loading
                from TornadoServices.Core.Logging import gLogger

                gLogger.getSubLogger("ConfigurationData").exception(f"configuration listener {listener!r} failed")

    def mergeWithLocal(self, cfg: CFG, source: str | None = None) -> None:
        """Merge ``cfg`` over the local configuration (its values win)."""
        with self._lock:
            self._local = mergeCFG(self._local, cfg)
            if source:
                self._loadedFiles.append(source)
            self._changed()
        self._notify(False)

    def loadFile(self, path: str) -> dict:
        """Merge a .cfg/.yaml/.yml file over the local configuration; S_ERROR names file and line."""
        path = os.path.expandvars(os.path.expanduser(path))
        if not os.path.exists(path):
            return S_ERROR(f"Configuration file {path} does not exist: check the file name")
        if os.path.isdir(path):
            return S_ERROR(f"Configuration file {path} is a directory, not a file")
        try:
            cfg = loadCFGFromFile(path)
        except CFGSyntaxError as exc:
            return S_ERROR(f"Cannot parse configuration file {exc}")
        except OSError as exc:
            return S_ERROR(f"Cannot read configuration file {path}: {exc.strerror or exc}")
        self.mergeWithLocal(cfg, os.path.abspath(path))
        return S_OK(os.path.abspath(path))

    def loadString(self, text: str, source: str = "<string>") -> dict:
        """Merge CFG text over the local configuration; S_ERROR names the line on bad syntax."""
        try:
            cfg = loadCFGFromText(text, source)
        except CFGSyntaxError as exc:
            return S_ERROR(f"Cannot parse configuration {exc}")
        self.mergeWithLocal(cfg)
        return S_OK()

    def setOptionInLocal(self, path: str, value: Any) -> None:
        """Set an option in the local configuration, creating its sections; raise ValueError on a bad path."""
        parts = splitPath(path)
        if not parts:
            raise ValueError(f"cannot set option {path!r}: the path is empty")
        with self._lock:
            section = self._local
            for part in parts[:-1]:
                if section.isOption(part):
                    raise ValueError(f"cannot set option {path!r}: {part!r} is an option, not a section")
                if not section.isSection(part):
                    section.createNewSection(part)
                section = section[part]  # type: ignore[assignment]
            if section.isSection(parts[-1]):
                raise ValueError(f"cannot set option {path!r}: it is a section")
            section.setOption(parts[-1], toCFGValue(value).strip())
            self._changed()
        self._notify(False)

    def deleteLocalEntry(self, path: str) -> bool:
        """Remove an option or section from the local configuration; True when something was removed."""
        parts = splitPath(path)
        if not parts:
            return False
        with self._lock:
            if "/".join(parts) not in self._local:
                return False
            self._local.deleteKey("/".join(parts))
            self._changed()
        self._notify(False)
        return True

    def loadRemoteCFG(self, cfg: CFG, version: str | None = None) -> None:
        """Replace the remote configuration (from the CS service); fires the new-version listeners."""
        cfg = cfg.clone()
        with self._lock:
            self._remote = cfg
            self._remoteVersion = str(version) if version else None
            self._changed()
        self._notify(True)

    def reset(self) -> None:
        """Forget every loaded file, override and remote data (listeners stay registered)."""
        with self._lock:
            self._local = CFG()
            self._remote = CFG()
            self._remoteVersion = None
            self._loadedFiles = []
            self._changed()
        self._notify(False)

    # ---- listeners --------------------------------------------------------------------------------

    def addChangeListener(self, listener: Callable[[], Any]) -> None:
        """Call ``listener()`` after every configuration change (files, overrides, remote data)."""
        with self._lock:
            if listener not in self._changeListeners:
                self._changeListeners.append(listener)

    def addNewVersionListener(self, listener: Callable[[], Any]) -> None:
        """Call ``listener()`` whenever new remote data is loaded (DIRAC's CSNewVersion event)."""
        with self._lock:
            if listener not in self._newVersionListeners:
                self._newVersionListeners.append(listener)

    def removeListener(self, listener: Callable[[], Any]) -> None:
        """Unregister ``listener`` from both events."""
        with self._lock:
            for listeners in (self._changeListeners, self._newVersionListeners):
                if listener in listeners:
                    listeners.remove(listener)


#: The process-wide configuration data behind ``gConfig``.
gConfigurationData = ConfigurationData()
