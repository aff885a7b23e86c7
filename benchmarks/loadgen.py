"""The load generator: the project's own pooled client in several processes of several threads each.

Worker processes are started once (``spawn``: a clean interpreter, no state inherited from the parent)
and run one row after another on command. For a row, each thread makes its own ``TornadoClient`` for the
row's URL (all of a process's clients share the process-wide pool of keep-alive connections) and calls
in a closed loop: warm-up until the window opens, then the measured window, then it stops. Only calls
that start and end inside the window count; their latencies go back to the parent, which computes the
percentiles and reads the CPU time of the server and of the workers from ``/proc`` at the window's edges
(``time.monotonic`` is one clock for every process on Linux).
"""
from __future__ import annotations

import array
import math
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.procstat import machineCPUSeconds, processCPUSeconds


@dataclass
class Call:
    """One remote call: method name and positional arguments."""

    method: str
    args: tuple = ()


@dataclass
class Window:
    """What one row measured: completed calls, their latencies, the CPU seconds used meanwhile."""

    seconds: float
    calls: int
    errors: int
    latencies: list[float]
    serverCPU: float
    clientCPU: float
    machineBusy: float
    firstError: str = ""

    @property
    def callsPerSecond(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """Latency (seconds) below which ``fraction`` of the calls finished (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
        return ordered[index]


@dataclass
class Measurement:
    """Several windows of the same row (rounds interleaved with other rows), summed."""

    windows: list[Window] = field(default_factory=list)

    def _sum(self, name: str) -> float:
        return sum(getattr(w, name) for w in self.windows)

    @property
    def calls(self) -> int:
        return int(self._sum("calls"))

    @property
    def errors(self) -> int:
        return int(self._sum("errors"))

    @property
    def seconds(self) -> float:
        return self._sum("seconds")

    @property
    def callsPerSecond(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def serverCPUPerCall(self) -> float:
        """Server CPU seconds per completed call."""
        return self._sum("serverCPU") / self.calls if self.calls else float("nan")

    @property
    def clientCPUPerCall(self) -> float:
        """Load-generator CPU seconds per completed call (all its processes)."""
        return self._sum("clientCPU") / self.calls if self.calls else float("nan")

    @property
    def otherLoad(self) -> float:
        """CPU busy outside the server and the load generator, in cores (other users of the machine)."""
        other = self._sum("machineBusy") - self._sum("serverCPU") - self._sum("clientCPU")
        return max(0.0, other / self.seconds) if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        merged = Window(self.seconds, self.calls, self.errors, [x for w in self.windows for x in w.latencies], 0, 0, 0)
        return merged.percentile(fraction)

    @property
    def firstError(self) -> str:
        return next((w.firstError for w in self.windows if w.firstError), "")


# ---------------------------------------------------------------------------------------------------------
# worker side
def _runRow(url: str, call: Call, threads: int, pipe: Any) -> None:
    """Run one row in this worker: ready after a first call per thread, then warm-up, window, report."""
    from TornadoServices.Client.TornadoClient import TornadoClient

    window: dict[str, float] = {}
    windowSet = threading.Event()
    results: list[tuple[int, int, array.array, str]] = []
    lock = threading.Lock()
    firstCallDone = threading.Barrier(threads + 1)

    def loop() -> None:
        client = TornadoClient(url)
        method, args = call.method, call.args
        firstError = ""
        result = client.executeRPC(method, *args)
        if not result["OK"]:
            firstError = result["Message"]
        firstCallDone.wait()
        windowSet.wait()
        start, end = window["start"], window["end"]
        latencies = array.array("d")
        calls = errors = 0
        now = time.monotonic()
        while now < end:
            began = now
            result = client.executeRPC(method, *args)
            now = time.monotonic()
            if began >= start and now <= end:
                if result["OK"]:
                    calls += 1
                    latencies.append(now - began)
                else:
                    errors += 1
                    firstError = firstError or result["Message"]
        with lock:
            results.append((calls, errors, latencies, firstError))

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for thread in workers:
        thread.start()
    firstCallDone.wait()
    pipe.send(("ready", None))
    start, end = pipe.recv()
    window.update(start=start, end=end)
    windowSet.set()
    for thread in workers:
        thread.join()
    calls = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    latencies = array.array("d")
    for r in results:
        latencies.extend(r[2])
    firstError = next((r[3] for r in results if r[3]), "")
    pipe.send(("done", (calls, errors, latencies.tobytes(), firstError)))


def workerMain(pipe: Any, env: dict[str, str], threads: int) -> None:
    """Entry point of a load-generator process: run rows until told to stop."""
    os.environ.update(env)
    from benchmarks.procstat import raiseFileLimit

    raiseFileLimit()
    import TornadoServices.Client.TornadoClient  # noqa: F401 - import cost paid before the first row

    pipe.send(("started", os.getpid()))
    while True:
        command = pipe.recv()
        if command[0] == "stop":
            return
        _, url, call = command
        try:
            _runRow(url, call, threads, pipe)
        except Exception as exc:  # reported to the parent, which stops the run with the message
            pipe.send(("failed", f"{type(exc).__name__}: {exc}"))


# ---------------------------------------------------------------------------------------------------------
# parent side
class LoadGenerator:
    """``processes`` worker processes of ``threads`` client threads each."""

    def __init__(self, env: dict[str, str], processes: int = 2, threads: int = 4) -> None:
        self.processes = processes
        self.threads = threads
        context = multiprocessing.get_context("spawn")
        self._pipes = []
        self._procs = []
        for _ in range(processes):
            parentEnd, childEnd = context.Pipe()
            proc = context.Process(target=workerMain, args=(childEnd, env, threads), daemon=True)
            proc.start()
            self._pipes.append(parentEnd)
            self._procs.append(proc)
        self.pids = [self._expect(pipe, "started") for pipe in self._pipes]

    @staticmethod
    def _expect(pipe: Any, kind: str, timeout: float = 120.0) -> Any:
        if not pipe.poll(timeout):
            raise RuntimeError(f"load generator did not answer {kind!r} within {timeout:.0f} s")
        got, value = pipe.recv()
        if got == "failed":
            raise RuntimeError(f"load generator failed: {value}")
        if got != kind:
            raise RuntimeError(f"load generator sent {got!r} where {kind!r} was expected")
        return value

    def measure(self, url: str, call: Call, serverPid: int, warmup: float, duration: float) -> Window:
        """Warm up for ``warmup`` s, then measure ``duration`` s of calls to ``url``; CPU read from /proc."""
        for pipe in self._pipes:
            pipe.send(("row", url, call))
        for pipe in self._pipes:
            self._expect(pipe, "ready")
        start = time.monotonic() + warmup
        end = start + duration
        for pipe in self._pipes:
            pipe.send((start, end))
        time.sleep(max(0.0, start - time.monotonic()))
        server0 = processCPUSeconds(serverPid)
        clients0 = sum(processCPUSeconds(pid) for pid in self.pids)
        busy0, _ = machineCPUSeconds()
        time.sleep(max(0.0, end - time.monotonic()))
        server1 = processCPUSeconds(serverPid)
        clients1 = sum(processCPUSeconds(pid) for pid in self.pids)
        busy1, _ = machineCPUSeconds()
        calls = errors = 0
        latencies = array.array("d")
        firstError = ""
        for pipe in self._pipes:
            c, e, raw, message = self._expect(pipe, "done", timeout=duration + 120)
            calls += c
            errors += e
            chunk = array.array("d")
            chunk.frombytes(raw)
            latencies.extend(chunk)
            firstError = firstError or message
        return Window(
            seconds=duration,
            calls=calls,
            errors=errors,
            latencies=list(latencies),
            serverCPU=server1 - server0,
            clientCPU=clients1 - clients0,
            machineBusy=busy1 - busy0,
            firstError=firstError,
        )

    def close(self) -> None:
        """Stop the worker processes."""
        for pipe in self._pipes:
            try:
                pipe.send(("stop",))
            except OSError:
                pass
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)

    def __enter__(self) -> "LoadGenerator":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def describe(processes: int, threads: int) -> str:
    """One line saying what the load generator is."""
    return f"load: {processes} processes x {threads} threads of TornadoClient (pooled keep-alive requests sessions), closed loop"
