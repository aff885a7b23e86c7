"""``AsyncTornadoClient``: the same calls as coroutines, for async code (e.g. ``async def export_...``).

    result = await AsyncTornadoClient("Framework/Dummy").echo("x")

Design: each call runs the ordinary (pooled, thread-safe) synchronous client in a small dedicated
thread pool and is awaited with ``asyncio.wrap_future``, so the event loop never blocks on the
network while the calls share the process-wide keep-alive connections and the mutual-TLS setup
of the sync client. The pool is separate from the loop's default executor (and from a server's
handler pool), so slow remote calls cannot starve them. Its size is ``MAX_WORKERS`` (16 unless
``TORNADO_CLIENT_ASYNC_WORKERS`` says otherwise): that many calls run at once, more wait.

Identity: a call runs in a copy of the awaiting task's context, so the worker thread delegates as the
task's :class:`~TornadoServices.Core.DISET.ThreadConfig.ThreadConfig` says (set in the task or in the
code that created it), never as whatever an earlier call left in that worker thread.

Cancelling the awaiting task does not abort the HTTP request already on the wire (it finishes, its
answer is dropped) -- as for any RPC, a cancelled call may still have run.
"""
from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, Callable, Coroutine, Optional, Union

from TornadoServices.Client.TransferClient import TransferClient

__all__ = ["AsyncTornadoClient", "MAX_WORKERS"]

MAX_WORKERS = int(os.environ.get("TORNADO_CLIENT_ASYNC_WORKERS", "16") or 16)

_executor: Optional[ThreadPoolExecutor] = None
_executorLock = threading.Lock()


def _getExecutor() -> ThreadPoolExecutor:
    """The thread pool running async clients' calls, created on first use."""
    global _executor
    with _executorLock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="TornadoClientAsync")
        return _executor


async def _run(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run a blocking client call in the client pool, in a copy of the caller's context, and await its result."""
    context = contextvars.copy_context()
    return await asyncio.wrap_future(_getExecutor().submit(context.run, function, *args))


class AsyncTornadoClient:
    """Coroutine twin of TornadoClient/TransferClient: same constructor, same methods, awaited."""

    def __init__(self, serviceName: str, **kwargs: Any) -> None:
        self._client = TransferClient(serviceName, **kwargs)

    @property
    def syncClient(self) -> TransferClient:
        """The synchronous client doing the work."""
        return self._client

    async def executeRPC(self, method: str, *args: Any) -> dict[str, Any]:
        """Await ``method(*args)`` on the service."""
        return await _run(self._client.executeRPC, method, *args)

    async def receiveFile(self, destFile: Union[str, os.PathLike, IO[bytes]], *args: Any) -> dict[str, Any]:
        """Await a streamed download into ``destFile``."""
        return await _run(self._client.receiveFile, destFile, *args)

    async def sendFile(self, source: Union[str, os.PathLike, IO[bytes]], fileID: Any, token: str = "") -> dict[str, Any]:
        """Await a streamed upload of ``source``."""
        return await _run(self._client.sendFile, source, fileID, token)

    def __getattr__(self, attrName: str) -> Callable[..., Coroutine[Any, Any, dict[str, Any]]]:
        if attrName.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {attrName!r}")

        async def call(*args: Any) -> dict[str, Any]:
            return await self.executeRPC(attrName, *args)

        call.__name__ = attrName
        return call

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._client.getServiceName()}>"
