"""Bounded worker pool of one service: plain ``export_`` methods run here, never on the event loop."""
from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Callable

__all__ = ["ServiceExecutor", "ServiceOverloaded"]


class ServiceOverloaded(Exception):
    """Every worker is busy and the waiting queue is full."""


class ServiceExecutor:
    """``maxThreads`` workers and at most ``maxWaiting`` queued calls for one service.

    The counters are only touched on the event loop thread, so they need no lock.
    """

    def __init__(self, name: str, maxThreads: int, maxWaiting: int) -> None:
        self.name = name
        self.maxThreads = maxThreads
        self.maxWaiting = maxWaiting
        self.pending = 0  # submitted and not finished (running + waiting)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=maxThreads, thread_name_prefix=f"{name}-worker")

    @property
    def waiting(self) -> int:
        """Calls queued behind busy workers."""
        return max(0, self.pending - self.maxThreads)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` in a worker; raise ServiceOverloaded when the queue is full."""
        if self.pending >= self.maxThreads + self.maxWaiting:
            raise ServiceOverloaded(
                f"{self.name} is overloaded: {self.maxThreads} calls running and {self.maxWaiting} waiting; retry later"
            )
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
        finally:
            self.pending -= 1

    def shutdown(self, wait: bool = False) -> None:
        """Stop accepting work; queued calls that did not start are cancelled."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
