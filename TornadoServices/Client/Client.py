"""``Client``: the base class of DIRAC-style service clients.

Port a DIRAC client class unchanged::

    class DummyClient(Client):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.setServer("Framework/Dummy")

    DummyClient().echo("x")                       # -> executeRPC("x", call="echo")
    DummyClient().ping(timeout=5, url="https://other:8443/Framework/Dummy")

Per-call keyword overrides: ``timeout``, ``url``, ``rpc`` (a ready RPC client). Remote methods take
positional arguments only. ``httpsClient`` (class attribute) picks the https client class.
Every call builds its RPC client through :func:`RPCClientSelector`; the connection pool is
process-wide, so this costs no new TLS connection.

``@createClient("Framework/Dummy")`` on such a class adds one documented method per ``export_`` of the
service's handler, read from its source (never imported).
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import sys
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

from TornadoServices.Client.private.TornadoBaseClient import DEFAULT_RPC_TIMEOUT
from TornadoServices.Client.RPCClientSelector import RPCClientSelector
from TornadoServices.Client.TornadoClient import TornadoClient
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.ConfigurationSystem.Client.Helpers.CSGlobals import getExtensions
from TornadoServices.Core.Logging import gLogger
from TornadoServices.Core.ReturnValues import S_ERROR

__all__ = ["Client", "createClient", "executeRPCStub"]

sLog = gLogger.getSubLogger("Client")

#: keyword arguments every call accepts besides the remote method's positional arguments
PER_CALL_OPTIONS = ("timeout", "url", "rpc")


class Client:
    """Base class for service clients: unknown public attributes are remote calls."""

    httpsClient: type = TornadoClient

    def __init__(self, **kwargs: Any) -> None:
        self.serverURL: Optional[str] = kwargs.pop("url", None)
        self.timeout = kwargs.pop("timeout", None) or DEFAULT_RPC_TIMEOUT
        self.__kwargs = kwargs
        self.call: Optional[str] = None

    def __getattr__(self, name: str) -> Callable[..., dict[str, Any]]:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

        def call(*args: Any, **kws: Any) -> dict[str, Any]:
            return self.executeRPC(*args, call=name, **kws)

        call.__name__ = name
        return call

    def setServer(self, url: str) -> None:
        """Set the service name or URL calls go to."""
        self.serverURL = url

    def getServer(self) -> Optional[str]:
        """Return the service name or URL calls go to."""
        return self.serverURL

    def setTimeout(self, timeout: float) -> None:
        """Set the default call timeout (seconds)."""
        self.timeout = timeout

    def getClientKWArgs(self) -> dict[str, Any]:
        """Return the keyword arguments given to every RPC client."""
        return dict(self.__kwargs)

    def _getRPC(self, rpc: Any = None, url: Optional[str] = None, timeout: Optional[float] = None) -> Any:
        """Return ``rpc`` or a new RPC client for ``url`` (default: the server) and ``timeout``."""
        if rpc:
            return rpc
        url = url or self.serverURL
        if not url:
            raise ValueError(f"{type(self).__name__} has no server: pass url=... or call setServer()")
        kwargs = dict(self.__kwargs)
        kwargs["timeout"] = timeout if timeout is not None else self.timeout
        return RPCClientSelector(url, httpsClient=self.httpsClient, **kwargs)

    def executeRPC(self, *parms: Any, **kws: Any) -> dict[str, Any]:
        """Call the method named by ``call=`` with ``parms`` positional arguments; an S_OK/S_ERROR dict."""
        call = kws.pop("call", None) or self.call
        timeout = kws.pop("timeout", None)
        url = kws.pop("url", None)
        rpc = kws.pop("rpc", None)
        if not call:
            return S_ERROR("executeRPC needs call=<remote method name>")
        if kws:
            return S_ERROR(
                f"{call} got keyword arguments {sorted(kws)}: remote methods take positional arguments only "
                "(per-call options are timeout, url and rpc)"
            )
        try:
            client = self._getRPC(rpc=rpc, url=url, timeout=timeout)
        except (ValueError, TypeError) as exc:
            return S_ERROR(str(exc))
        return client.executeRPC(call, *parms)

    def executeRPCStub(self, rpcStub: Any) -> dict[str, Any]:
        """Replay a call from the ``rpcStub`` of an earlier result."""
        return executeRPCStub(rpcStub)


def executeRPCStub(rpcStub: Any) -> dict[str, Any]:
    """Replay ``((destination, kwargs), method, args)`` -- also after a JSON round trip (lists for tuples)."""
    try:
        (destination, kwargs), method, args = rpcStub
        client = RPCClientSelector(destination, **dict(kwargs))
    except (TypeError, ValueError) as exc:
        return S_ERROR(f"Invalid rpcStub {rpcStub!r}: expected ((destination, kwargs), method, args) ({exc})")
    return client.executeRPC(method, *args)


# ---------------------------------------------------------------------------------------------- createClient
ClientClass = TypeVar("ClientClass", bound=type)


def createClient(serviceName: str) -> Callable[[ClientClass], ClientClass]:
    """Decorator adding to a Client subclass a method per ``export_<name>`` of the handler of ``serviceName``.

    ``serviceName`` is ``"System/Service"``. The handler source is looked up as the server's HandlerManager
    imports it, ``<Extension>.<System>System.Service.<Service>Handler`` for each package of ``/DIRAC/Extensions``
    in order, then ``TornadoServices``; the first file found is parsed with :mod:`ast`, never imported (its
    code does not run, its imports need not be installed). Read: the class ``<Service>Handler`` first, then
    the classes of the module whose names start with it (mixins). Each export becomes a method ``<name>`` that
    calls ``executeRPC(*args, call="<name>", **kwargs)``, where the keywords are the per-call options
    (``timeout``, ``url``, ``rpc``); it carries the export's docstring and its positional parameters as
    signature. Names the class already has are kept. Without a handler source the class is returned
    unchanged (its attribute calls still work) and a debug line says where it was looked for.
    """
    system, _, service = serviceName.strip().strip("/").partition("/")
    if not system or not service or "/" in service:
        raise ValueError(f"createClient needs 'System/Service' (e.g. 'Framework/Dummy'), not {serviceName!r}")
    handlerName = f"{service}Handler"

    def addFunctions(clientCls: ClientClass) -> ClientClass:
        searched: list[str] = []
        for moduleName, path in _handlerSources(system, handlerName, searched):
            try:
                with open(path, encoding="utf-8") as fd:
                    tree = ast.parse(fd.read(), path)
            except (OSError, SyntaxError, ValueError, UnicodeDecodeError) as exc:
                sLog.debug(f"createClient({serviceName}): cannot read {path}, {clientCls.__name__} left unchanged", repr(exc))
                return clientCls
            for name, method in _exportMethods(tree, clientCls, moduleName, handlerName):
                if not hasattr(clientCls, name):
                    setattr(clientCls, name, method)
            return clientCls
        sLog.debug(
            f"createClient({serviceName}): no handler source found, {clientCls.__name__} left unchanged",
            "searched " + ", ".join(searched),
        )
        return clientCls

    return addFunctions


def _packageDirs(package: str) -> list[str]:
    """Directories of ``package`` without importing it: /DIRAC/ExtensionsPath entries, then the import system."""
    top, _, rest = package.partition(".")
    tail = rest.split(".") if rest else []
    dirs: list[str] = []
    for entry in gConfig.getValue("/DIRAC/ExtensionsPath", []):
        dirs.append(os.path.join(os.path.abspath(entry), top))
    module = sys.modules.get(top)
    locations: Sequence[str] = []
    if module is not None:
        locations = list(getattr(module, "__path__", []) or [])
    else:
        try:
            spec = importlib.util.find_spec(top)  # a top-level name: finds, imports nothing
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            locations = list(spec.submodule_search_locations)
    dirs.extend(locations)
    return [os.path.join(d, *tail) for d in dirs]


def _handlerSources(system: str, handlerName: str, searched: list[str]) -> Iterator[tuple[str, str]]:
    """(module name, file) of each existing ``<package>/<System>System/Service/<handlerName>.py``, in order."""
    for package in getExtensions():
        moduleName = f"{package}.{system}System.Service.{handlerName}"
        searched.append(moduleName)
        for directory in _packageDirs(package):
            path = os.path.join(directory, f"{system}System", "Service", f"{handlerName}.py")
            if os.path.isfile(path):
                yield moduleName, path
                break


class _SourceText:
    """A default value or annotation shown as written in the handler source (never evaluated)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _default(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _SourceText(ast.unparse(node))


def _signature(function: ast.FunctionDef | ast.AsyncFunctionDef) -> inspect.Signature:
    """``(self, <the export's positional parameters>, **kwargs)``; remote arguments are positional only."""
    arguments = function.args
    positional = list(arguments.posonlyargs) + list(arguments.args)
    decorators = {ast.unparse(d) for d in function.decorator_list}
    if positional and "staticmethod" not in decorators:
        positional = positional[1:]  # self / cls
    defaults = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
    defaults = defaults[-len(positional):] if positional else []
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)]
    for argument, default in zip(positional, defaults):
        parameters.append(
            inspect.Parameter(
                argument.arg,
                inspect.Parameter.POSITIONAL_ONLY,
                default=inspect.Parameter.empty if default is None else _default(default),
                annotation=_SourceText(ast.unparse(argument.annotation)) if argument.annotation else inspect.Parameter.empty,
            )
        )
    if arguments.vararg is not None:
        parameters.append(inspect.Parameter(arguments.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    taken = {p.name for p in parameters}
    options = next(name for name in ("kwargs", "callOptions", "_kwargs") if name not in taken)
    parameters.append(inspect.Parameter(options, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(parameters)


def _typesOf(classNode: ast.ClassDef, name: str) -> Optional[str]:
    """The source text of ``types_<name> = ...`` in the class body, if any."""
    for node in classNode.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == f"types_{name}" for t in node.targets):
            return ast.unparse(node.value)
    return None


def _exportMethods(
    tree: ast.Module, clientCls: type, moduleName: str, handlerName: str
) -> Iterator[tuple[str, Callable[..., dict[str, Any]]]]:
    """(name, client method) for each export of the handler class and then of its same-module namesakes."""
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name.startswith(handlerName)]
    classes.sort(key=lambda node: node.name != handlerName)
    seen: set[str] = set()
    for classNode in classes:
        for member in classNode.body:
            if not isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) or not member.name.startswith("export_"):
                continue
            name = member.name[len("export_"):]
            if not name.isidentifier() or name.startswith("_") or name in seen:
                continue
            seen.add(name)
            yield name, _makeMethod(clientCls, name, member, f"{moduleName}.{classNode.name}", _typesOf(classNode, name))


def _makeMethod(
    clientCls: type,
    name: str,
    function: ast.FunctionDef | ast.AsyncFunctionDef,
    origin: str,
    types: Optional[str],
) -> Callable[..., dict[str, Any]]:
    """A method calling ``executeRPC(*args, call=name, **kwargs)``, documented from the export."""

    def method(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.executeRPC(*args, call=name, **kwargs)

    method.__name__ = name
    method.__qualname__ = f"{clientCls.__qualname__}.{name}"
    method.__module__ = clientCls.__module__
    method.__signature__ = _signature(function)  # type: ignore[attr-defined]
    note = f"Remote call of {origin}.export_{name} (generated by createClient)."
    if types:
        note += f" Argument types checked by the service: {types}."
    note += " Per-call keywords: " + ", ".join(PER_CALL_OPTIONS) + "."
    docstring = ast.get_docstring(function)
    method.__doc__ = f"{docstring}\n\n{note}" if docstring else note
    return method
