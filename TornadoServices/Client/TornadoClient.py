"""``TornadoClient``: DIRAC's RPC client for HTTPS services -- ``TornadoClient("Framework/Dummy").ping()``.

Any public attribute is a remote method: ``client.echo("x")`` is ``client.executeRPC("echo", "x")``.
Names starting with an underscore (dunders such as ``__deepcopy__`` included) are ordinary Python
attributes, never remote calls, so ``copy``, ``pickle`` and debuggers do not trigger RPCs.
Every call returns an S_OK/S_ERROR dict carrying ``rpcStub``; nothing raises.
"""
from __future__ import annotations

from typing import Any, Callable

from TornadoServices.Client.private.TornadoBaseClient import TornadoBaseClient

__all__ = ["TornadoClient"]


class TornadoClient(TornadoBaseClient):
    """RPC client: attribute calls become ``executeRPC(name, *args)``."""

    def __getattr__(self, attrName: str) -> Callable[..., dict[str, Any]]:
        if attrName.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {attrName!r}")

        def call(*args: Any) -> dict[str, Any]:
            return self.executeRPC(attrName, *args)

        call.__name__ = attrName
        call.__qualname__ = f"{type(self).__name__}.{attrName}"
        return call
