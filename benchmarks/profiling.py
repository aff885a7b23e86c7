"""Profiling the server: cProfile on every thread of the process, and the listing the benchmark prints."""
from __future__ import annotations

import cProfile
import os
import pstats
import threading
import time
from typing import Any, Optional, TextIO

#: Functions that only wait (idle workers on their queue, the event loop in epoll): left out of the listing.
IDLE_WAITS = (
    ("~", 0, "<method 'get' of '_queue.SimpleQueue' objects>"),
    ("~", 0, "<method 'poll' of 'select.epoll' objects>"),
    ("~", 0, "<method 'acquire' of '_thread.lock' objects>"),
)
#: Wrappers whose cumulative time is mostly one of the waits above.
_WAIT_WRAPPERS = (("thread.py", "_worker"), ("selectors.py", "select"), ("threading.py", "wait"))


class _Snapshot:
    """Statistics of another thread's profiler, taken without disabling it.

    ``Profile.create_stats`` would disable the profiler from the wrong thread and close the other
    thread's open calls at the calling thread's time. A snapshot only holds the calls that returned;
    the worker thread goes on recording into its own profiler, which is never read again.
    """

    def __init__(self, profiler: cProfile.Profile) -> None:
        profiler.snapshot_stats()
        self.stats = profiler.stats

    def create_stats(self) -> None:
        """Nothing to do: pstats calls this before reading ``stats``."""


class ThreadProfiler:
    """cProfile for the current thread and for every thread started while it runs, merged on dump.

    ``clock="cpu"`` (default) times each thread by its own CPU clock (``time.thread_time``): waits, and the
    moments the thread was descheduled on a busy machine, cost nothing, at ~0.4 us per profiled event.
    ``clock="wall"`` is cProfile's default, cheaper to read, but on a shared machine every system call
    that lets the scheduler run another process shows up as time spent in that call.
    """

    CLOCKS = ("cpu", "wall")

    def __init__(self, clock: str = "cpu") -> None:
        if clock not in self.CLOCKS:
            raise ValueError(f"profile clock {clock!r} is not one of {', '.join(self.CLOCKS)}")
        self.clock = clock
        self._main: Optional[cProfile.Profile] = None
        self._threads: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _newProfile(self) -> cProfile.Profile:
        return cProfile.Profile(time.thread_time) if self.clock == "cpu" else cProfile.Profile()

    def _startInThread(self, *_: Any) -> None:
        profiler = self._newProfile()
        with self._lock:
            self._threads.append(profiler)
        profiler.enable()  # replaces this hook for the rest of the thread

    def start(self) -> None:
        """Profile this thread from now on, and threads started from now on."""
        if self._main is not None:
            return
        threading.setprofile(self._startInThread)
        self._main = self._newProfile()
        self._main.enable()

    def dump(self, path: str) -> None:
        """Stop profiling this thread and write the statistics of every profiled thread to ``path``."""
        threading.setprofile(None)  # type: ignore[arg-type]
        if self._main is None:
            return
        self._main.disable()
        stats = pstats.Stats(self._main)
        with self._lock:
            others = list(self._threads)
        for profiler in others:
            stats.add(_Snapshot(profiler))
        temporary = path + ".tmp"
        stats.dump_stats(temporary)
        os.replace(temporary, path)


def printProfile(statsFile: str, out: TextIO, top: int = 25) -> None:
    """Print the ``top`` functions by cumulative and by own time, without the pure waits."""
    for order, title in (("cumulative", "by cumulative time"), ("tottime", "by own time")):
        stats = pstats.Stats(statsFile, stream=out)
        stats.strip_dirs()
        for key in list(stats.stats):  # type: ignore[attr-defined]
            if key in IDLE_WAITS or (key[0], key[2]) in _WAIT_WRAPPERS:
                del stats.stats[key]  # type: ignore[attr-defined]
        out.write(f"\n-- top {top} {title} (idle waits left out: worker queue, epoll, locks) --\n")
        stats.sort_stats(order).print_stats(top)
        out.flush()


#: The call every served request makes exactly once (``HTTP1Connection.write_headers``: one response each).
REQUEST_MARKER = ("http1connection.py", "write_headers")


def _byFunction(statsFile: str) -> tuple[dict[tuple[str, str], tuple[float, int]], int, float]:
    """``({(file, function): (own seconds, calls)}, requests served, total profiled seconds)``."""
    stats = pstats.Stats(statsFile)
    stats.strip_dirs()
    merged: dict[tuple[str, str], tuple[float, int]] = {}
    total = 0.0
    for (filename, _, function), (_, calls, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = (filename, function)
        previousOwn, previousCalls = merged.get(key, (0.0, 0))
        merged[key] = (previousOwn + own, previousCalls + calls)
        if (filename, 0, function) not in IDLE_WAITS and key not in _WAIT_WRAPPERS:
            total += own
    requests = merged.get(REQUEST_MARKER, (0.0, 0))[1]
    return merged, requests, total


def printDifference(oursFile: str, bareFile: str, out: TextIO, top: int = 25, title: str = "") -> None:
    """Functions costing more own CPU per request in ``oursFile`` than in ``bareFile`` (the framework's extra work)."""
    ours, oursRequests, oursTotal = _byFunction(oursFile)
    bare, bareRequests, bareTotal = _byFunction(bareFile)
    if not oursRequests or not bareRequests:
        out.write("\nno request finished in one of the profiles: no difference to show\n")
        return
    rows = []
    for key in set(ours) | set(bare):
        if (key[0], 0, key[1]) in IDLE_WAITS or key in _WAIT_WRAPPERS:
            continue
        oursOwn, oursCalls = ours.get(key, (0.0, 0))
        bareOwn, bareCalls = bare.get(key, (0.0, 0))
        extra = oursOwn / oursRequests - bareOwn / bareRequests
        rows.append((extra, oursOwn / oursRequests, bareOwn / bareRequests, oursCalls / oursRequests, bareCalls / bareRequests, key))
    rows.sort(reverse=True)
    out.write(
        f"\n-- {title or 'extra own CPU per request vs the bare handler'}: profiled CPU per request "
        f"{1e6 * oursTotal / oursRequests:,.0f} us vs {1e6 * bareTotal / bareRequests:,.0f} us "
        f"({oursRequests:,} and {bareRequests:,} requests; profiling inflates both, most where calls are many) --\n"
    )
    out.write(f"{'extra us':>9} {'ours us':>8} {'bare us':>8} {'calls/req':>14}  function\n")
    for extra, mine, theirs, myCalls, theirCalls, (filename, function) in rows[:top]:
        out.write(
            f"{1e6 * extra:9.1f} {1e6 * mine:8.1f} {1e6 * theirs:8.1f} {myCalls:6.1f} /{theirCalls:6.1f}  {filename}({function})\n"
        )
    out.flush()
