"""What the benchmark reads from ``/proc``: process CPU time, resident memory, machine-wide CPU, open files.

``/proc/<pid>/stat`` utime+stime cover every thread of a process (finished threads included), which is
what "server CPU" means here: the event loop, the worker pool and OpenSSL alike.
"""
from __future__ import annotations

import os
import resource

_TICKS = os.sysconf("SC_CLK_TCK")


def processCPUSeconds(pid: int) -> float:
    """User + system CPU seconds used so far by every thread of process ``pid``."""
    with open(f"/proc/{pid}/stat", "rb") as fd:
        text = fd.read()
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = text[text.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def residentKB(pid: int) -> int:
    """``VmRSS`` of process ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as fd:
        for line in fd:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line: is {pid} a live process?")


def openFiles(pid: int) -> int:
    """Number of file descriptors process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def machineCPUSeconds() -> tuple[float, float]:
    """``(busy, total)`` CPU seconds of the whole machine since boot, summed over cores (``/proc/stat``)."""
    with open("/proc/stat") as fd:
        values = [int(v) for v in fd.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / _TICKS, total / _TICKS


def raiseFileLimit() -> int:
    """Raise this process's open-file soft limit to its hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def usableCPUs() -> set[int]:
    """CPUs this process may run on."""
    return set(os.sched_getaffinity(0))


def splitCPUs(cpus: set[int]) -> tuple[set[int], set[int]]:
    """``(server CPUs, load-generator CPUs)``: the first CPU for servers, the others for clients.

    With a single CPU both sides share it (no split is possible).
    """
    ordered = sorted(cpus)
    if len(ordered) < 2:
        return set(ordered), set(ordered)
    return {ordered[0]}, set(ordered[1:])
