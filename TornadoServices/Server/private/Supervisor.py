"""Multi-process serving: a supervisor that forks workers sharing the listening sockets, and PID files.

The supervisor binds every port first, then forks the workers (as ``tornado.process.fork_processes`` does),
so the kernel spreads new connections over them. It serves nothing itself and runs no thread (forking a
threaded process can leave locks held in the child); each worker runs its own event loop, initialises its
own services (``initializeHandler`` runs once per worker), and restarts the configuration refresher.

Signals, to the supervisor:

``SIGTERM``/``SIGINT``
    Close the supervisor's copy of the listening sockets, send SIGTERM to every worker (each stops
    listening, closes idle connections, answers new calls on open connections with 503, lets running calls
    finish within ``ShutdownTimeout``), wait for them (SIGKILL after ``ShutdownTimeout`` + 15 s), exit 0.
``SIGHUP``
    Forwarded to every worker: each reloads the host certificate, CA directory and CRLs for new
    connections; the port stays open.

A worker that dies is restarted: after 0.5 s, doubling for each further death of that worker slot within 30 s
of its start, up to 30 s. A worker that fails while the server starts (before it ever served) stops the
whole server with exit status 1: a broken configuration must not restart forever. Workers stop by
themselves (draining) if the supervisor disappears.
"""
from __future__ import annotations

import os
import select
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from TornadoServices.Core.Logging import flushLogging, gLogger

__all__ = ["Supervisor", "PidFile", "PidFileError", "defaultProcessCount"]

#: Exit status of a worker whose server could not start.
START_FAILURE = 3
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
#: A worker that lived this long resets the restart back-off of its slot.
STABLE_AFTER = 30.0
#: Seconds granted to workers beyond ShutdownTimeout before they are killed.
STOP_GRACE = 15.0
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


def defaultProcessCount() -> int:
    """One worker per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------------------
# PID files
class PidFileError(RuntimeError):
    """The PID file names a running process, or cannot be written."""


def processAlive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _commandLine(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fd:
            return fd.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class PidFile:
    """A file holding the server's process id: written atomically, removed on exit, refused when in use."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._written = False

    def read(self) -> Optional[int]:
        """The pid in the file, None when absent or unreadable."""
        try:
            with open(self.path) as fd:
                return int(fd.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def acquire(self) -> None:
        """Write this process's pid; PidFileError when the file names another running process."""
        pid = self.read()
        if pid is not None and pid != os.getpid() and processAlive(pid):
            command = _commandLine(pid)
            described = f" ({command})" if command else ""
            raise PidFileError(
                f"PID file {self.path} names process {pid}{described}, which is running: stop it first "
                "(kill -TERM), or remove the file if that process is not this server"
            )
        directory = os.path.dirname(self.path) or "."
        try:
            handle, temporary = tempfile.mkstemp(prefix=".pid-", dir=directory)
            with os.fdopen(handle, "w") as fd:
                fd.write(f"{os.getpid()}\n")
            os.chmod(temporary, 0o644)
            os.replace(temporary, self.path)
        except OSError as exc:
            raise PidFileError(f"Cannot write the PID file {self.path}: {exc.strerror}") from None
        self._written = True

    def release(self) -> None:
        """Remove the file if it still holds this process's pid."""
        if self._written and self.read() == os.getpid():
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self._written = False


# ---------------------------------------------------------------------------------------------------------
# the supervisor
@dataclass
class _Slot:
    """One worker position: its current process and restart history."""

    index: int
    pid: Optional[int] = None
    readyFD: Optional[int] = None
    started: float = 0.0
    everReady: bool = False
    deaths: int = 0
    restartAt: Optional[float] = None
    history: list[int] = field(default_factory=list)


def _describeStatus(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return f"killed by {name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class Supervisor:
    """Forks ``processes`` workers of ``server`` and keeps them running until SIGTERM/SIGINT."""

    def __init__(self, server: Any, processes: int) -> None:
        self.server = server
        self.processes = max(1, processes)
        self.log = gLogger.getSubLogger("Supervisor")
        self.slots = [_Slot(index) for index in range(self.processes)]
        self.metricsDirectory: Optional[str] = None
        self._signals: list[int] = []
        self._stopping = False
        self._stopDeadline = 0.0
        self._killed = False
        self._failed = False
        self._wakeR = self._wakeW = -1
        self._lifelineR = self._lifelineW = -1
        self._refresherWasRunning = False

    # ---- life cycle ----------------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until stopped; return the exit status (0 after a clean stop, 1 when the server cannot start)."""
        server = self.server
        server.bindSockets()  # TornadoServerError (port in use...) goes to the caller
        self.metricsDirectory = tempfile.mkdtemp(prefix="tornado-metrics-")
        self._stopRefresher()
        threads = _otherThreads()
        if threads:
            self.log.warn("Threads run in the supervisor", f"{', '.join(threads)}: forking may copy locks they hold")
        self._wakeR, self._wakeW = os.pipe()
        os.set_blocking(self._wakeW, False)
        self._lifelineR, self._lifelineW = os.pipe()
        previous = {signum: signal.signal(signum, self._onSignal) for signum in _FORWARDED}
        oldWakeup = signal.set_wakeup_fd(self._wakeW)
        ports = ", ".join(str(port) for port in server.boundPorts.values())
        self.log.always("Starting", f"{self.processes} worker processes on port(s) {ports} (supervisor pid {os.getpid()})")
        try:
            for slot in self.slots:
                self._spawn(slot)
            self._loop()
        finally:
            signal.set_wakeup_fd(oldWakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for fd in (self._wakeR, self._wakeW, self._lifelineR, self._lifelineW):
                try:
                    os.close(fd)
                except OSError:
                    pass
            server.closeSockets()
            shutil.rmtree(self.metricsDirectory, ignore_errors=True)
        if self._failed:
            self.log.fatal("Stopped", "a worker could not start the server (see its messages above)")
            return 1
        self.log.always("Stopped", "every worker has exited")
        return 0

    def _stopRefresher(self) -> None:
        """No thread may run in the supervisor when it forks; the workers run their own refresher."""
        try:
            from TornadoServices.ConfigurationSystem.private.Refresher import gRefresher
        except ImportError:
            return
        self._refresherWasRunning = gRefresher.isRunning()
        if self._refresherWasRunning:
            gRefresher.stop()

    def _onSignal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)

    # ---- workers -------------------------------------------------------------------------------------
    def _spawn(self, slot: _Slot) -> None:
        readyR, readyW = os.pipe()
        pid = -1
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        try:
            pid = os.fork()
            if pid == 0:
                self._child(slot, readyR, readyW)  # never returns
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        os.close(readyW)
        slot.pid, slot.readyFD, slot.started, slot.restartAt = pid, readyR, time.monotonic(), None
        slot.history.append(pid)
        self.log.info("Worker started", f"{slot.index} (pid {pid})")

    def _child(self, slot: _Slot, readyR: int, readyW: int) -> None:
        """Body of a worker process: serve, then exit (never returns into the supervisor's code)."""
        code = 1
        try:
            for signum in _FORWARDED:
                signal.signal(signum, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
            for fd in [readyR, self._wakeR, self._wakeW, self._lifelineW] + [s.readyFD for s in self.slots if s.readyFD is not None]:
                try:
                    os.close(fd)
                except OSError:
                    pass
            code = self._serveInChild(slot, readyW)
        except BaseException as exc:  # anything: the worker must exit with a status, never return
            try:
                gLogger.getSubLogger("Supervisor").exception(f"Worker {slot.index} failed", lException=exc)
            except BaseException:
                pass
        finally:
            flushLogging()  # os._exit skips logging's exit flush: write the batched access lines first
            os._exit(code)

    def _serveInChild(self, slot: _Slot, readyW: int) -> int:
        from TornadoServices.Server.TornadoServer import TornadoServerError

        server = self.server
        server.workerIndex = slot.index
        server.metricsDirectory = self.metricsDirectory
        if self._refresherWasRunning:
            from TornadoServices.ConfigurationSystem.private.Refresher import gRefresher

            gRefresher.start(initialSync=False)
        lifeline = self._lifelineR

        def onReady() -> None:
            import asyncio

            os.write(readyW, b"R")
            os.close(readyW)
            loop = asyncio.get_running_loop()

            def supervisorGone() -> None:
                loop.remove_reader(lifeline)
                server.log.always("Stopping", "the supervisor process is gone")
                server.stop()

            loop.add_reader(lifeline, supervisorGone)

        try:
            server.startTornado(handleSignals=True, onReady=onReady)
        except TornadoServerError as exc:
            server.log.fatal(f"Worker {slot.index} cannot start the server:", str(exc))
            return START_FAILURE
        return 0

    # ---- the loop ------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            self._handleSignals()
            self._reap()
            if self._stopping and all(slot.pid is None for slot in self.slots):
                return
            now = time.monotonic()
            if self._stopping and not self._killed and now >= self._stopDeadline:
                self._killAll()
            if not self._stopping:
                for slot in self.slots:
                    if slot.pid is None and slot.restartAt is not None and now >= slot.restartAt:
                        self._spawn(slot)
            timeout = self._nextTimeout(now)
            readable = [self._wakeR] + [s.readyFD for s in self.slots if s.readyFD is not None]
            try:
                ready, _, _ = select.select(readable, [], [], timeout)
            except InterruptedError:
                continue
            for fd in ready:
                if fd == self._wakeR:
                    try:
                        os.read(self._wakeR, 4096)
                    except BlockingIOError:
                        pass
                else:
                    self._readReady(fd)

    def _nextTimeout(self, now: float) -> float:
        deadlines = [slot.restartAt for slot in self.slots if slot.pid is None and slot.restartAt is not None]
        if self._stopping and not self._killed:
            deadlines.append(self._stopDeadline)
        if not deadlines:
            return 5.0
        return max(0.0, min(5.0, min(deadlines) - now))

    def _readReady(self, fd: int) -> None:
        slot = next(s for s in self.slots if s.readyFD == fd)
        try:
            data = os.read(fd, 16)
        except OSError:
            data = b""
        if data.startswith(b"R") and not slot.everReady:
            slot.everReady = True
            self.log.info("Worker ready", f"{slot.index} (pid {slot.pid})")
        elif data.startswith(b"R"):
            self.log.info("Worker ready", f"{slot.index} (pid {slot.pid})")
        os.close(fd)
        slot.readyFD = None

    def _handleSignals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT):
                self._beginStop(signal.Signals(signum).name)
            elif signum == signal.SIGHUP:
                self.log.always("Reloading", "SIGHUP forwarded to every worker (host certificate, CAs, CRLs)")
                self._signalWorkers(signal.SIGHUP)

    def _beginStop(self, why: str) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.server.closeSockets()  # with the workers' copies closed too, new connections are refused
        timeout = float(self.server.settings.shutdownTimeout)
        self._stopDeadline = time.monotonic() + timeout + STOP_GRACE
        running = sum(1 for slot in self.slots if slot.pid is not None)
        self.log.always("Stopping", f"on {why}: {running} workers drain (up to {timeout:g} s)")
        self._signalWorkers(signal.SIGTERM)

    def _signalWorkers(self, signum: int) -> None:
        for slot in self.slots:
            if slot.pid is not None:
                try:
                    os.kill(slot.pid, signum)
                except ProcessLookupError:
                    pass

    def _killAll(self) -> None:
        self._killed = True
        self.log.warn("Workers did not stop in time", "sending SIGKILL")
        self._signalWorkers(signal.SIGKILL)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            self._workerExited(slot, status)

    def _workerExited(self, slot: _Slot, status: int) -> None:
        pid = slot.pid
        slot.pid = None
        if slot.readyFD is not None:
            try:
                data = os.read(slot.readyFD, 16)
            except OSError:
                data = b""
            if data.startswith(b"R"):
                slot.everReady = True
            os.close(slot.readyFD)
            slot.readyFD = None
        if self.metricsDirectory is not None and pid is not None:
            try:
                from TornadoServices.Server.private.Metrics import MetricsDirectory

                MetricsDirectory(self.metricsDirectory).retire(pid)
            except OSError as exc:
                self.log.verbose("Cannot keep the counters of a dead worker", str(exc))
        described = _describeStatus(status)
        if self._stopping:
            self.log.info("Worker stopped", f"{slot.index} (pid {pid}): {described}")
            return
        if not slot.everReady:
            self.log.fatal("Worker failed to start", f"{slot.index} (pid {pid}): {described}; stopping the server")
            self._failed = True
            self._beginStop("start-up failure")
            return
        lived = time.monotonic() - slot.started
        slot.deaths = 1 if lived >= STABLE_AFTER else slot.deaths + 1
        delay = min(MAX_RESTART_DELAY, RESTART_DELAY * 2 ** (slot.deaths - 1))
        slot.restartAt = time.monotonic() + delay
        self.log.error("Worker died", f"{slot.index} (pid {pid}): {described} after {lived:.1f} s; restarting in {delay:g} s")


def _otherThreads() -> list[str]:
    """Names of the threads running besides this one (forking while they hold locks is unsafe)."""
    import threading

    return [t.name for t in threading.enumerate() if t is not threading.current_thread() and t.is_alive()]
