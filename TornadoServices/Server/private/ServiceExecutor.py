"""Bounded worker pool of one service: plain ``export_`` methods run here, never on the event loop.

Lighter than ``loop.run_in_executor``: a job is one tuple put on a ``SimpleQueue``; the worker hands its
result back by appending to a list and waking the event loop only when no wake-up is already pending, so a
burst of completions costs one self-pipe write; the caller awaits a plain asyncio Future (no
``concurrent.futures.Future`` and no chaining between the two kinds of future), or gives a callback that the
event loop calls with the outcome (no coroutine to resume: one loop iteration less). Workers are
``SCHED_BATCH`` threads on Linux, so that waking one does not preempt the event loop (see
:func:`_noWakeUpPreemption`).
"""
from __future__ import annotations

import asyncio
import os
import queue
import threading
from typing import Any, Callable, Optional

__all__ = ["ServiceExecutor", "ServiceOverloaded"]

_STOP = None


def _noWakeUpPreemption() -> None:
    """Schedule the calling worker thread as ``SCHED_BATCH`` (Linux; elsewhere, or if refused, nothing changes).

    Every call hands a job to a worker and the answer back to the event loop. A normal thread woken on the
    loop's CPU preempts the loop at once, only to block on the GIL the loop holds, and takes the GIL at each
    of the loop's system calls after that: several context switches per call. A ``SCHED_BATCH`` thread gets
    the same CPU share (same nice value) but does not preempt on wake-up: it runs when the loop waits or its
    time slice ends, which is when the GIL is free anyway. Threads and processes started from a worker
    inherit the policy (they are scheduled alike except for that wake-up rule).
    """
    setScheduler = getattr(os, "sched_setscheduler", None)
    policy = getattr(os, "SCHED_BATCH", None)
    if setScheduler is None or policy is None:
        return
    try:
        setScheduler(0, policy, os.sched_param(0))  # 0: the calling thread (Linux sets the policy per thread)
    except OSError:
        pass


class ServiceOverloaded(Exception):
    """Every worker is busy and the waiting queue is full."""


class ServiceExecutor:
    """``maxThreads`` workers (started on demand) and at most ``maxWaiting`` queued calls for one service.

    ``pending`` (calls submitted and not yet answered) is only touched on the event loop thread.
    """

    def __init__(self, name: str, maxThreads: int, maxWaiting: int) -> None:
        self.name = name
        self.maxThreads = maxThreads
        self.maxWaiting = maxWaiting
        self.pending = 0
        self._jobs: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._lock = threading.Lock()
        self._done: list[tuple[asyncio.Future, Any, Optional[BaseException]]] = []
        self._wakeScheduled = False
        self._shutdown = False

    @property
    def waiting(self) -> int:
        """Calls queued behind busy workers."""
        return max(0, self.pending - self.maxThreads)

    def submit(self, function: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
        """Queue ``function(*args)`` for a worker; the returned Future completes on the event loop.

        Raises ServiceOverloaded when ``maxThreads`` calls run and ``maxWaiting`` already wait, and
        RuntimeError after :meth:`shutdown`.
        """
        future = self._admit().create_future()
        self._queue(function, args, future)
        return future

    def submitWithCallback(self, function: Callable[..., Any], args: tuple[Any, ...], onDone: Callable[[Any, Optional[BaseException]], None]) -> None:
        """Queue ``function(*args)``; ``onDone(result, error)`` is called on the event loop when it ends.

        Saves the event-loop iteration in which a coroutine awaiting :meth:`submit`'s Future would resume.
        ``error`` is the exception the call raised (CancelledError if :meth:`shutdown` dropped it unstarted).
        Raises as :meth:`submit` does.
        """
        self._admit()
        self._queue(function, args, onDone)

    def _admit(self) -> asyncio.AbstractEventLoop:
        """Refuse a new call when shut down or full; return the event loop the outcomes go to."""
        if self._shutdown:
            raise RuntimeError(f"{self.name} is shutting down: no new calls")
        if self.pending >= self.maxThreads + self.maxWaiting:
            raise ServiceOverloaded(
                f"{self.name} is overloaded: {self.maxThreads} calls running and {self.maxWaiting} waiting; retry later"
            )
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _queue(self, function: Callable[..., Any], args: tuple[Any, ...], target: Any) -> None:
        self.pending += 1
        if self.pending > len(self._threads) and len(self._threads) < self.maxThreads:
            self._startWorker()
        self._jobs.put((function, args, target))

    def _startWorker(self) -> None:
        thread = threading.Thread(target=self._work, name=f"{self.name}-worker-{len(self._threads)}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        """Worker thread: run jobs until the stop marker."""
        _noWakeUpPreemption()
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            function, args, target = job
            try:
                result, error = function(*args), None
            except BaseException as exc:  # handed to the awaiting request, which answers 500
                result, error = None, exc
            self._complete(target, result, error)
            del job, function, args, target, result, error

    def _complete(self, target: Any, result: Any, error: Optional[BaseException]) -> None:
        """From a worker: queue the outcome and wake the loop once for all outcomes queued meanwhile."""
        with self._lock:
            self._done.append((target, result, error))
            if self._wakeScheduled:
                return
            self._wakeScheduled = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)  # type: ignore[union-attr]
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    def _deliver(self) -> None:
        """On the event loop: complete the futures (or call the callbacks) of every finished job."""
        with self._lock:
            done, self._done = self._done, []
            self._wakeScheduled = False
        for target, result, error in done:
            self.pending -= 1
            if isinstance(error, StopIteration):
                error = RuntimeError(f"StopIteration raised by a method of {self.name}")
            if not isinstance(target, asyncio.Future):
                try:
                    target(result, error)
                except BaseException as exc:  # one failing callback must not lose the others' outcomes
                    self._loop.call_exception_handler(  # type: ignore[union-attr]
                        {"message": f"Completion callback of {self.name} failed", "exception": exc}
                    )
                continue
            if target.cancelled():
                continue
            if error is None:
                target.set_result(result)
            else:
                target.set_exception(error)

    def shutdown(self, wait: bool = False) -> None:
        """Stop the workers once their current call ends; queued calls that did not start are cancelled."""
        self._shutdown = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                target = job[2]
                loop = self._loop
                if loop is not None and not loop.is_closed():
                    if isinstance(target, asyncio.Future):
                        loop.call_soon_threadsafe(target.cancel)
                    else:
                        loop.call_soon_threadsafe(target, None, asyncio.CancelledError())
        for _ in self._threads:
            self._jobs.put(_STOP)
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()
