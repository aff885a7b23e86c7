"""``tornado-cs``: look at and change the central configuration through the Configuration service.

Reading (any authenticated caller)::

    tornado-cs show [/Path]                 the current configuration (or a section/option of it)
    tornado-cs get /Path/Option             one option's value
    tornado-cs history [-n N]               versions, newest first, with committer and message

Changing (CSAdministrator)::

    tornado-cs set /Path/Option value       record a change (kept in a pending change set)
    tornado-cs del /Path/Option             record a removal (option or section)
    tornado-cs status                       show the pending change set
    tornado-cs diff                         pending changes as a diff (diff V1 [V2]: between versions)
    tornado-cs commit -m "why"              send the pending change set as one new version
    tornado-cs rebase                       re-apply the pending changes on the current version
    tornado-cs discard                      drop the pending change set
    tornado-cs rollback VERSION [-m "why"]  make an older version current again

``set``/``del`` with ``-m MESSAGE`` commit at once instead. The pending change set lives in a state file
(``--state FILE``, default ``$XDG_CACHE_HOME/tornado-cs/pending.json``, i.e. ``~/.cache/...``) holding the
version it was started from: a commit after somebody else's commit is refused as a conflict, and
``rebase`` re-applies the recorded changes on the new version. Calls use the caller's proxy
(``X509_USER_PROXY``, ``--proxy``) or, with ``-o /DIRAC/Security/UseServerCertificate=yes``, the host
certificate; the server is ``--url`` or ``/DIRAC/Configuration/MasterServer``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from base64 import b64decode, b64encode
from typing import Any

from diraccfg import CFG

__all__ = ["main"]

EPILOG = """commands:
  show [PATH]            print the current configuration, or one section/option of it
  get PATH               print one option's value (exit 1 when it does not exist)
  set PATH VALUE         record 'PATH = VALUE' in the pending change set (-m MSG: commit now)
  del PATH               record the removal of an option or section (-m MSG: commit now)
  status                 list the pending changes and the version they are based on
  diff [V1 [V2]]         no version: pending changes; V1: V1 against the current version; V1 V2
  commit -m MSG          commit the pending changes as one new version
  rebase                 re-apply the pending changes on top of the current version
  discard                forget the pending changes
  history [-n N]         list versions, newest first
  rollback VERSION       make VERSION's content current again (as a new version)

Versions are the strings 'history' prints ("2024-10-17 12:34:56.123456"); a unique prefix is enough,
and 'T' may replace the space."""


def _defaultStatePath() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "tornado-cs", "pending.json")


def _buildParser() -> argparse.ArgumentParser:
    from TornadoServices.ConfigurationSystem.Client.LocalConfiguration import makeParser

    parser = makeParser(
        "tornado-cs",
        "Show and change the central configuration through the Configuration service (DIRAC CS).",
        EPILOG,
        positionalCfg=False,
    )
    parser.add_argument(
        "--url", default=None, help="configuration server URL (default: /DIRAC/Configuration/MasterServer)"
    )
    parser.add_argument("--proxy", default=None, metavar="FILE", help="proxy (or cert+key PEM) to authenticate with")
    parser.add_argument(
        "--state", default=None, metavar="FILE", help=f"pending change set file (default: {_defaultStatePath()})"
    )
    parser.add_argument("-m", "--message", default=None, help="commit message (with set/del: commit at once)")
    parser.add_argument("-n", "--limit", type=int, default=20, help="history: how many versions to list")
    parser.add_argument("command", choices=list(COMMANDS))
    parser.add_argument("arguments", nargs="*", help="command arguments (see below)")
    return parser


class _Failure(Exception):
    """A command failure: message for the user, exit status 1."""


class _Usage(Exception):
    """A command used with wrong arguments: exit status 2."""


# ---- pending change set ----------------------------------------------------------------------------


class PendingChanges:
    """The change set between ``set``/``del`` and ``commit``, stored as JSON next to its base version."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.master = ""
        self.baseVersion = ""
        self.baseText = ""
        self.operations: list[dict[str, str]] = []

    def exists(self) -> bool:
        return bool(self.operations) or bool(self.baseVersion)

    def load(self) -> PendingChanges:
        try:
            with open(self.path, encoding="utf-8") as handle:
                state = json.load(handle)
        except FileNotFoundError:
            return self
        except (OSError, ValueError) as exc:
            raise _Failure(
                f"Cannot read the pending change set {self.path}: {exc}; fix it or delete it (tornado-cs discard)"
            ) from exc
        self.master = state.get("master", "")
        self.baseVersion = state.get("baseVersion", "")
        self.baseText = b64decode(state.get("base", "")).decode() if state.get("base") else ""
        self.operations = list(state.get("operations", []))
        return self

    def save(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        state = {
            "master": self.master,
            "baseVersion": self.baseVersion,
            "base": b64encode(self.baseText.encode()).decode(),
            "operations": self.operations,
        }
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pending.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def discard(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def setBase(self, api: Any) -> None:
        """Base the change set on the configuration ``api`` downloaded from its master."""
        self.master = api.getMasterURL()
        self.baseVersion = api.getVersion()
        self.baseText = str(api.getBaseCFG())

    def baseCFG(self) -> CFG:
        from TornadoServices.ConfigurationSystem.Client.ConfigurationData import loadCFGFromText

        return loadCFGFromText(self.baseText, f"base version {self.baseVersion} in {self.path}")

    def applied(self, strict: bool = True) -> tuple[CFG, list[str]]:
        """Return the base configuration with the operations applied, and the problems met."""
        return applyOperations(self.baseCFG(), self.operations, strict)


def applyOperations(cfg: CFG, operations: list[dict[str, str]], strict: bool = True) -> tuple[CFG, list[str]]:
    """Apply set/del operations to ``cfg``; with ``strict`` a failing one raises _Failure, else it is reported."""
    from TornadoServices.ConfigurationSystem.private.ServiceInterface import deleteCFGEntry, setCFGOption

    problems = []
    for operation in operations:
        path = operation["path"]
        try:
            if operation["op"] == "set":
                setCFGOption(cfg, path, operation["value"])
            elif not deleteCFGEntry(cfg, path):
                raise ValueError(f"{path} does not exist")
        except ValueError as exc:
            if strict:
                raise _Failure(f"Cannot {operation['op']} {path}: {exc}") from None
            problems.append(f"{operation['op']} {path}: {exc}")
    return cfg, problems


def _describe(operation: dict[str, str]) -> str:
    if operation["op"] == "set":
        return f"set {operation['path']} = {operation['value']}"
    return f"del {operation['path']}"


# ---- helpers ---------------------------------------------------------------------------------------


def _normaliseVersion(text: str) -> str:
    text = text.strip()
    if len(text) > 10 and text[10] == "T":
        text = text[:10] + " " + text[11:]
    return text


def _resolveVersion(api: Any, text: str) -> str:
    """Return the full version matching ``text`` (exact or unique prefix of a listed version)."""
    wanted = _normaliseVersion(text)
    result = api.getCommitHistory(100)
    if not result["OK"]:
        return wanted
    versions = [entry[1] for entry in result["Value"]]
    if wanted in versions:
        return wanted
    matches = [version for version in versions if version.startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise _Failure(f"Version {text!r} is ambiguous: it matches {', '.join(matches)}")
    return wanted


def _check(result: dict, what: str) -> Any:
    """Return the value of an S_OK, or raise _Failure saying what failed (without repeating it)."""
    if not result["OK"]:
        message = str(result["Message"])
        raise _Failure(message if message.startswith(what) else f"{what}: {message}")
    return result.get("Value")


class _Context:
    """What every command needs: parsed arguments, the API to the master (made on demand), the state file."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._api: Any = None
        self.state = PendingChanges(args.state or _defaultStatePath())

    def clientKwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"timeout": 60}
        if self.args.proxy:
            kwargs["proxyLocation"] = self.args.proxy
        return kwargs

    def api(self) -> Any:
        if self._api is None:
            from TornadoServices.ConfigurationSystem.Client.CSAPI import CSAPI

            api = CSAPI(url=self.args.url, **self.clientKwargs())
            _check(api.initialize(), "Cannot reach the configuration service")
            self._api = api
        return self._api

    def out(self, text: str = "") -> None:
        print(text)


# ---- commands ----------------------------------------------------------------------------------------


def _needArgs(ctx: _Context, count: int, usage: str, maximum: int | None = None) -> list[str]:
    arguments = ctx.args.arguments
    if len(arguments) < count or len(arguments) > (count if maximum is None else maximum):
        raise _Usage(f"usage: tornado-cs {usage}")
    return arguments


def cmdShow(ctx: _Context) -> None:
    from TornadoServices.ConfigurationSystem.Client.ConfigurationData import cfgNode

    arguments = _needArgs(ctx, 0, "show [PATH]", 1)
    path = arguments[0] if arguments else "/"
    cfg = _check(ctx.api().getCurrentCFG(), "Cannot read the configuration")
    node = cfgNode(cfg, path)
    if node is None:
        raise _Failure(f"{path} does not exist in the configuration (version {ctx.api().getVersion()})")
    if isinstance(node, CFG):
        ctx.out(str(node).rstrip("\n"))
    else:
        ctx.out(f"{path.rstrip('/').rsplit('/', 1)[-1]} = {node}")


def cmdGet(ctx: _Context) -> None:
    from TornadoServices.ConfigurationSystem.Client.ConfigurationData import cfgNode

    (path,) = _needArgs(ctx, 1, "get /Path/To/Option")
    value = ctx.api().getValue(path)
    if value is None:
        if cfgNode(_check(ctx.api().getCurrentCFG(), "Cannot read the configuration"), path) is not None:
            raise _Failure(f"{path} is a section, not an option: use tornado-cs show {path}")
        raise _Failure(f"Option {path} does not exist (version {ctx.api().getVersion()})")
    ctx.out(value)


def _startPending(ctx: _Context) -> PendingChanges:
    state = ctx.state.load()
    api = ctx.api()
    if state.exists():
        if state.master and state.master != api.getMasterURL():
            raise _Failure(
                f"The pending change set in {state.path} is for {state.master}, not {api.getMasterURL()}: "
                "commit or discard it first, or use --state"
            )
        return state
    state.setBase(api)
    return state


def _record(ctx: _Context, operation: dict[str, str]) -> None:
    if ctx.args.message is not None:
        api = ctx.api()
        path = operation["path"]
        if operation["op"] == "set":
            result = api.setOption(path, operation["value"])
        elif api.getValue(path) is not None:
            result = api.delOption(path)
        else:
            result = api.delSection(path)
        _check(result, f"Cannot {operation['op']} {path}")
        version = _check(api.commit(ctx.args.message), "Commit refused")
        ctx.out(f"Committed version {version}")
        return
    state = _startPending(ctx)
    applyOperations(state.baseCFG(), state.operations + [operation])  # refuse now what commit would refuse
    state.operations.append(operation)
    state.save()
    count = len(state.operations)
    plural = "s" if count != 1 else ""
    ctx.out(
        f"Pending: {_describe(operation)} ({count} change{plural} on version {state.baseVersion}; "
        "tornado-cs commit -m MESSAGE to send)"
    )


def cmdSet(ctx: _Context) -> None:
    path, value = _needArgs(ctx, 2, "set /Path/To/Option VALUE")
    _record(ctx, {"op": "set", "path": path, "value": value})


def cmdDel(ctx: _Context) -> None:
    (path,) = _needArgs(ctx, 1, "del /Path/To/Option")
    _record(ctx, {"op": "del", "path": path})


def cmdStatus(ctx: _Context) -> None:
    _needArgs(ctx, 0, "status")
    state = ctx.state.load()
    if not state.operations:
        ctx.out("No pending changes.")
        return
    ctx.out(f"Pending changes on version {state.baseVersion} of {state.master} ({state.path}):")
    for operation in state.operations:
        ctx.out(f"  {_describe(operation)}")


def cmdDiff(ctx: _Context) -> None:
    from TornadoServices.ConfigurationSystem.private.ServiceInterface import diffCFGTexts

    arguments = _needArgs(ctx, 0, "diff [VERSION1 [VERSION2]]", 2)
    if not arguments:
        state = ctx.state.load()
        if not state.operations:
            ctx.out("No pending changes.")
            return
        cfg, _problems = state.applied()
        lines = diffCFGTexts(state.baseText, str(cfg), f"version {state.baseVersion}", "pending changes")
    else:
        api = ctx.api()
        versions = [_resolveVersion(api, text) for text in arguments]
        lines = _check(api.diffVersions(*versions), "Cannot compare versions")
    for line in lines:
        ctx.out(line)


def cmdCommit(ctx: _Context) -> None:
    from TornadoServices.ConfigurationSystem.Client.ConfigurationClient import ConfigurationClient
    from TornadoServices.ConfigurationSystem.private.ServiceInterface import compressCFG

    _needArgs(ctx, 0, "commit -m MESSAGE")
    if not ctx.args.message:
        raise _Usage("usage: tornado-cs commit -m MESSAGE (say why: it is recorded in the history)")
    state = ctx.state.load()
    if not state.operations:
        raise _Failure("Nothing to commit: record changes with tornado-cs set/del first")
    cfg, _problems = state.applied()
    client = ConfigurationClient(url=ctx.args.url or state.master, **ctx.clientKwargs())
    result = client.commitNewData(compressCFG(cfg), ctx.args.message)
    if not result["OK"]:
        hint = ""
        if "conflict" in result["Message"]:
            hint = (
                f"\nYour {len(state.operations)} pending change(s) are kept: 'tornado-cs rebase' re-applies them "
                "on the current version, then commit again."
            )
        message = str(result["Message"])
        raise _Failure(f"{message if message.startswith('Commit refused') else 'Commit refused: ' + message}{hint}")
    state.discard()
    ctx.out(f"Committed version {result['Value']}")


def cmdRebase(ctx: _Context) -> None:
    _needArgs(ctx, 0, "rebase")
    state = ctx.state.load()
    if not state.operations:
        ctx.out("No pending changes.")
        return
    api = ctx.api()
    _cfg, problems = applyOperations(api.getBaseCFG(), state.operations, strict=False)
    state.setBase(api)
    state.save()
    ctx.out(f"Pending changes now based on version {state.baseVersion}.")
    for problem in problems:
        ctx.out(f"  warning: no longer applies: {problem}")


def cmdDiscard(ctx: _Context) -> None:
    _needArgs(ctx, 0, "discard")
    count = len(ctx.state.load().operations)
    ctx.state.discard()
    ctx.out(f"Discarded {count} pending change{'s' if count != 1 else ''}.")


def cmdHistory(ctx: _Context) -> None:
    _needArgs(ctx, 0, "history")
    api = ctx.api()
    result = api.getCommitLog(ctx.args.limit)
    if result["OK"]:
        for entry in result["Value"]:
            text = f"{entry['version']}  {entry.get('committer', '?')}"
            if entry.get("kind") and entry["kind"] != "commit":
                text += f"  [{entry['kind']}]"
            if "backupPruned" in entry:  # the content of this version is gone (MaxBackups / MaxBackupAge)
                text += "  [backup pruned]"
            if entry.get("message"):
                text += f"  {entry['message']}"
            ctx.out(text)
        return
    for committer, version in _check(api.getCommitHistory(ctx.args.limit), "Cannot read the history"):
        ctx.out(f"{version}  {committer}")


def cmdRollback(ctx: _Context) -> None:
    (text,) = _needArgs(ctx, 1, "rollback VERSION")
    api = ctx.api()
    version = _resolveVersion(api, text)
    newVersion = _check(api.rollbackToVersion(version, ctx.args.message or ""), f"Cannot roll back to {version}")
    ctx.out(f"Rolled back to the content of {version}: new version {newVersion}")


COMMANDS = {
    "show": cmdShow,
    "get": cmdGet,
    "set": cmdSet,
    "del": cmdDel,
    "status": cmdStatus,
    "diff": cmdDiff,
    "commit": cmdCommit,
    "rebase": cmdRebase,
    "discard": cmdDiscard,
    "history": cmdHistory,
    "rollback": cmdRollback,
}


def main(argv: list[str] | None = None) -> int:
    """Run one tornado-cs command; exit status 0 on success, 1 on failure, 2 on usage errors."""
    from TornadoServices.ConfigurationSystem.Client.LocalConfiguration import parseCommandLine

    parser = _buildParser()
    args = parseCommandLine(parser, argv)
    ctx = _Context(args)
    try:
        COMMANDS[args.command](ctx)
    except _Usage as exc:
        parser.print_usage(sys.stderr)
        print(f"tornado-cs: error: {exc}", file=sys.stderr)
        return 2
    except _Failure as exc:
        print(f"tornado-cs: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
