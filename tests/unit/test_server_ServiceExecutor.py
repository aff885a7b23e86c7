"""ServiceExecutor: jobs run in worker threads and their outcomes come back on the event loop."""
from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from TornadoServices.Server.private.ServiceExecutor import ServiceExecutor, ServiceOverloaded


def _run(coroutine):
    return asyncio.run(coroutine)


def test_submit_returns_the_result_and_the_error():
    async def main():
        executor = ServiceExecutor("Test/Exec", 2, 4)
        try:
            assert await executor.submit(lambda a, b: a + b, 2, 3) == 5
            with pytest.raises(ValueError, match="boom"):
                await executor.submit(_raise, ValueError("boom"))
            assert executor.pending == 0
        finally:
            executor.shutdown(wait=True)

    _run(main())


def test_callback_is_called_on_the_event_loop():
    async def main():
        executor = ServiceExecutor("Test/Exec", 1, 4)
        loopThread = threading.get_ident()
        outcomes = []
        done = asyncio.Event()

        def onDone(result, error):
            outcomes.append((result, type(error), threading.get_ident() == loopThread))
            if len(outcomes) == 2:
                done.set()

        try:
            executor.submitWithCallback(threading.get_ident, (), onDone)
            executor.submitWithCallback(_raise, (KeyError("x"),), onDone)
            await asyncio.wait_for(done.wait(), 60)
        finally:
            executor.shutdown(wait=True)
        workerIdent, noError, onLoop = outcomes[0]
        assert workerIdent != loopThread and noError is type(None) and onLoop
        assert outcomes[1][1] is KeyError and outcomes[1][2]

    _run(main())


def test_overload_is_refused():
    async def main():
        executor = ServiceExecutor("Test/Exec", 1, 0)
        release = threading.Event()
        try:
            first = executor.submit(release.wait, 60)
            with pytest.raises(ServiceOverloaded):
                executor.submit(lambda: None)
            release.set()
            assert await first is True
        finally:
            release.set()
            executor.shutdown(wait=True)

    _run(main())


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
def test_workers_do_not_preempt_the_event_loop_on_wake_up():
    async def main():
        executor = ServiceExecutor("Test/Exec", 1, 0)
        try:
            return await executor.submit(os.sched_getscheduler, 0), os.sched_getscheduler(0)
        finally:
            executor.shutdown(wait=True)

    before = os.sched_getscheduler(0)
    workerPolicy, loopPolicy = _run(main())
    assert workerPolicy == os.SCHED_BATCH
    assert loopPolicy == before  # only the worker threads change


def _raise(exc):
    raise exc
