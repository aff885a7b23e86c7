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
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from TornadoServices.Client.private.TornadoBaseClient import DEFAULT_RPC_TIMEOUT
from TornadoServices.Client.RPCClientSelector import RPCClientSelector
from TornadoServices.Client.TornadoClient import TornadoClient
from TornadoServices.Core.ReturnValues import S_ERROR

__all__ = ["Client", "executeRPCStub"]


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
