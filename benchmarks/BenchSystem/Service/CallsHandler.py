"""The service the benchmark calls: ping's answer through a plain (worker-thread) and an async ``export_``.

Both methods build exactly the answer of the built-in ``ping``, so the two rows differ only in how the
server runs the method, and the bare Tornado baseline can return the same bytes.
"""
from __future__ import annotations

import inspect
from typing import Any

from TornadoServices.Server.TornadoService import TornadoService


def _pingAnswer(handler: TornadoService) -> Any:
    """The built-in ping's result, whether the framework defines ping as a plain or an async method."""
    result = TornadoService.export_ping(handler)
    if not inspect.iscoroutine(result):
        return result
    # The built-in ping never awaits: one step of the coroutine runs it to its return value.
    try:
        result.send(None)
    except StopIteration as stop:
        return stop.value
    result.close()
    raise RuntimeError("the built-in ping awaited something: the benchmark cannot run it synchronously")


class CallsHandler(TornadoService):
    """Benchmark service: ``syncPing`` (thread pool), ``asyncPing`` (event loop); ``ping``/``echo`` are built in."""

    auth_syncPing = ["authenticated"]

    def export_syncPing(self) -> Any:
        """Ping's answer from a plain method (runs in the service's worker pool)."""
        return _pingAnswer(self)

    auth_asyncPing = ["authenticated"]

    async def export_asyncPing(self) -> Any:
        """Ping's answer from a coroutine (runs on the event loop)."""
        return _pingAnswer(self)
