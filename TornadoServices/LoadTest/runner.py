"""Runs a load test: one process per user group (spawned, never forked), one thread per virtual user.

The parent process owns the results: group processes send batches of finished transactions through a
multiprocessing queue, the parent numbers them and appends them to results.csv as they arrive, so an
interrupted run keeps everything that finished. All groups share one test start: the parent waits until
every group has imported its script, then publishes the start time. Ctrl-C (SIGINT) or SIGTERM in the parent
asks the groups to stop after their current transaction; a second Ctrl-C terminates them at once.
"""
from __future__ import annotations

import collections
import multiprocessing
import os
import queue as queueModule
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from TornadoServices.LoadTest.progress import ProgressBar
from TornadoServices.LoadTest.project import CONFIG_NAME, Project, ProjectError, loadScriptModule
from TornadoServices.LoadTest.results import ResultSet, ResultsWriter, cleanErrorMessage, formatRow

#: Seconds between two batches sent by a group process.
FLUSH_PERIOD = 0.2
#: How long a group waits for in-flight transactions after run_time before abandoning them.
END_GRACE = 60.0
#: The same after Ctrl-C.
INTERRUPT_GRACE = 5.0
#: How long the parent waits for a group's last message once its process has exited.
EXIT_GRACE = 2.0


@dataclass
class GroupSpec:
    """What a group process needs to know (picklable for the spawn start method)."""

    index: int
    name: str
    scriptPath: str
    threads: int
    rampup: float
    runTime: float
    argv: list[str]


@dataclass
class RunOutcome:
    """What happened during a run, for the report and the exit code."""

    resultsDir: Path
    resultSet: ResultSet
    startEpoch: float
    wallTime: float
    interrupted: bool = False
    aborted: bool = False
    setupErrors: dict[str, int] = field(default_factory=dict)
    abandoned: int = 0
    notes: list[str] = field(default_factory=list)


def makeTransaction(cls: type, threadNum: int, processNum: int) -> Any:
    """Create a Transaction with thread_num/process_num already set when its constructor runs."""
    trans = cls.__new__(cls)
    trans.thread_num = threadNum
    trans.process_num = processNum
    if isinstance(trans, cls):
        trans.__init__()
    trans.custom_timers = {}
    return trans


class _GroupState:
    """Shared state of the virtual users of one group process."""

    def __init__(self, spec: GroupSpec, testStart: float) -> None:
        self.spec = spec
        self.testStart = testStart
        self.endTime = testStart + spec.runTime
        self.halt = threading.Event()
        self.rows: collections.deque = collections.deque()
        self.setupErrors: collections.deque = collections.deque()
        self.lock = threading.Lock()
        self.active = 0


def _virtualUser(state: _GroupState, transactionClass: type, threadNum: int) -> None:
    """One virtual user: build the Transaction, then loop run() until the run ends, recording each one."""
    try:
        trans = makeTransaction(transactionClass, threadNum, state.spec.index)
    except Exception as exc:
        state.setupErrors.append(f"Transaction() failed: {type(exc).__name__}: {exc}")
        return
    with state.lock:
        state.active += 1
    rows, halt, testStart, endTime = state.rows, state.halt, state.testStart, state.endTime
    try:
        while not halt.is_set():
            startWall = time.time()
            if startWall >= endTime:
                break
            begin = time.perf_counter()
            error = ""
            try:
                trans.run()
            except Exception as exc:
                error = cleanErrorMessage(exc)
            runTime = time.perf_counter() - begin
            timers = trans.custom_timers
            timers = dict(timers) if isinstance(timers, dict) else {}
            rows.append((startWall - testStart, int(startWall), runTime, error, timers))
    finally:
        with state.lock:
            state.active -= 1


def _drain(deq: collections.deque) -> list:
    """Pop everything currently in a deque (safe against concurrent appends)."""
    items = []
    popleft = deq.popleft
    try:
        while True:
            items.append(popleft())
    except IndexError:
        return items


def _scriptTraceback(exc: BaseException, scriptPath: str) -> str:
    """The traceback of an exception raised while importing a script, from the script's own frames on."""
    frames = traceback.extract_tb(exc.__traceback__)
    first = next((i for i, frame in enumerate(frames) if frame.filename == scriptPath), 0)
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames[first:])]
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def _groupProcess(spec: GroupSpec, queue: Any, startEvent: Any, startTime: Any, stopEvent: Any) -> None:
    """Entry point of a user-group process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.argv = list(spec.argv)
    parentPid = os.getppid()
    index = spec.index
    try:
        module = loadScriptModule(Path(spec.scriptPath), f"multimech_script_{index}")
    except ProjectError as exc:
        queue.put(("fatal", index, str(exc)))
        return
    except BaseException as exc:  # the user's script may raise anything at import, SystemExit included
        details = _scriptTraceback(exc, spec.scriptPath)
        queue.put(("fatal", index, f"importing script {spec.scriptPath} failed:\n{details}"))
        return
    queue.put(("ready", index, None))
    while not startEvent.wait(0.5):
        if stopEvent.is_set() or os.getppid() != parentPid:
            return
    if stopEvent.is_set():
        queue.put(("done", index, {"abandoned": 0}))
        return

    state = _GroupState(spec, startTime.value)
    spacing = spec.rampup / spec.threads
    agents: list[threading.Thread] = []
    lastActive = -1

    def flush() -> None:
        nonlocal lastActive
        batch = _drain(state.rows)
        if batch:
            queue.put(("rows", index, batch))
        for message in _drain(state.setupErrors):
            queue.put(("setupError", index, message))
        active = state.active
        if active != lastActive:
            lastActive = active
            queue.put(("users", index, active))

    while True:
        now = time.time()
        if stopEvent.is_set() or now >= state.endTime or os.getppid() != parentPid:
            break
        if len(agents) == spec.threads and not any(agent.is_alive() for agent in agents):
            break  # every virtual user failed to start or ended: nothing left to measure
        while len(agents) < spec.threads and now >= state.testStart + len(agents) * spacing:
            agent = threading.Thread(
                target=_virtualUser,
                args=(state, module.Transaction, len(agents)),
                name=f"{spec.name}-{len(agents)}",
                daemon=True,
            )
            agent.start()
            agents.append(agent)
        flush()
        nextStart = state.testStart + len(agents) * spacing if len(agents) < spec.threads else state.endTime
        stopEvent.wait(max(0.0, min(FLUSH_PERIOD, nextStart - now, state.endTime - now)))
    state.halt.set()

    interrupted = stopEvent.is_set()
    deadline = time.time() + (INTERRUPT_GRACE if interrupted else END_GRACE)
    for agent in agents:
        while agent.is_alive() and time.time() < deadline:
            agent.join(FLUSH_PERIOD)
            flush()
            if not interrupted and stopEvent.is_set():
                interrupted = True
                deadline = min(deadline, time.time() + INTERRUPT_GRACE)
    abandoned = sum(1 for agent in agents if agent.is_alive())
    flush()
    queue.put(("done", index, {"abandoned": abandoned}))
    if abandoned:
        queue.close()
        queue.join_thread()
        os._exit(0)


class _Interrupts:
    """Counts SIGINT/SIGTERM in the parent instead of raising KeyboardInterrupt at a random place."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.count += 1

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handler)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def makeResultsDir(project: Project, startEpoch: float) -> Path:
    """Create ``<project>/results/results_<YYYY.MM.DD_HH.MM.SS>/`` (a suffix is added if it exists)."""
    base = project.directory / "results"
    stamp = time.strftime("results_%Y.%m.%d_%H.%M.%S", time.localtime(startEpoch))
    candidate = base / stamp
    suffix = 1
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            suffix += 1
            candidate = base / f"{stamp}_{suffix}"


class Runner:
    """Drives one run of a project from the parent process."""

    def __init__(
        self,
        project: Project,
        argv: list[str],
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.project = project
        self.argv = argv
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.context = multiprocessing.get_context("spawn")
        self.queue = self.context.Queue()
        self.startEvent = self.context.Event()
        self.stopEvent = self.context.Event()
        self.startTime = self.context.Value("d", 0.0)
        self.processes: list[Any] = []
        self.interrupts = _Interrupts()
        self.progress = ProgressBar(
            self.stderr,
            project.runTime,
            project.totalThreads,
            enabled=project.progressBar and not project.consoleLogging,
        )
        self.ready: set[int] = set()
        self.done: set[int] = set()
        self.exitedAt: dict[int, float] = {}
        self.users: dict[int, int] = {}
        self.writer: ResultsWriter | None = None
        self.outcome: RunOutcome | None = None
        self.fatal: str | None = None
        self._stopRequested = 0

    def _say(self, text: str) -> None:
        self.progress.message(text)

    def _handle(self, message: tuple) -> None:
        kind, index, payload = message
        if kind == "rows":
            group = self.project.userGroups[index].name
            writer = self.writer
            assert writer is not None and self.outcome is not None
            for elapsed, epoch, runTime, error, timers in payload:
                row = writer.addRow(elapsed, epoch, group, runTime, error, timers)
                if self.project.consoleLogging:
                    self.stdout.write(formatRow(row))
            writer.flush()
        elif kind == "users":
            self.users[index] = payload
        elif kind == "setupError":
            assert self.outcome is not None
            key = f"{self.project.userGroups[index].name}: {payload}"
            if key not in self.outcome.setupErrors:
                self._say(f"multimech-run: virtual user of {key}")
            self.outcome.setupErrors[key] = self.outcome.setupErrors.get(key, 0) + 1
        elif kind == "ready":
            self.ready.add(index)
        elif kind == "fatal":
            if self.fatal is None:
                self.fatal = f"user group {self.project.userGroups[index].name}: {payload}"
            self.done.add(index)
        elif kind == "done":
            self.done.add(index)
            if self.outcome is not None:
                self.outcome.abandoned += payload.get("abandoned", 0)

    def _pump(self, timeout: float) -> None:
        """Handle queued messages (waiting up to timeout for the first), then check signals and processes."""
        try:
            self._handle(self.queue.get(timeout=timeout))
            while True:
                self._handle(self.queue.get_nowait())
        except queueModule.Empty:
            pass
        self._checkInterrupts()
        now = time.monotonic()
        for index, process in enumerate(self.processes):
            if index in self.done or process.exitcode is None:
                continue
            exitedAt = self.exitedAt.setdefault(index, now)
            if now - exitedAt > EXIT_GRACE:
                self.done.add(index)
                if index not in self.ready and self.fatal is None:
                    self.fatal = (
                        f"user group {self.project.userGroups[index].name}: its process exited with code "
                        f"{process.exitcode} before its script was loaded"
                    )
                elif self.outcome is not None:
                    self.outcome.notes.append(
                        f"user group {self.project.userGroups[index].name}: process ended unexpectedly "
                        f"(exit code {process.exitcode}); results of its last moments may be missing"
                    )

    def _checkInterrupts(self) -> None:
        count = self.interrupts.count
        if count == self._stopRequested:
            return
        if self._stopRequested == 0:
            self.stopEvent.set()
            if self.outcome is not None:
                self.outcome.interrupted = True
                self._say(
                    "multimech-run: interrupted, stopping virtual users after their current transaction "
                    "(Ctrl-C again to stop at once)"
                )
        if count >= 2 and self._stopRequested < 2:
            for process in self.processes:
                if process.exitcode is None:
                    process.terminate()
            if self.outcome is not None:
                self.outcome.aborted = True
            self._say("multimech-run: stopping at once")
            self.done.update(range(len(self.processes)))
        self._stopRequested = count

    def _startProcesses(self) -> None:
        for index, group in enumerate(self.project.userGroups):
            spec = GroupSpec(
                index=index,
                name=group.name,
                scriptPath=str(group.scriptPath),
                threads=group.threads,
                rampup=self.project.rampup,
                runTime=self.project.runTime,
                argv=list(self.argv),
            )
            process = self.context.Process(
                target=_groupProcess,
                args=(spec, self.queue, self.startEvent, self.startTime, self.stopEvent),
                name=f"multimech-{group.name}",
            )
            process.start()
            self.processes.append(process)

    def _shutdown(self) -> None:
        """Stop and reap every group process."""
        self.stopEvent.set()
        for process in self.processes:
            process.join(timeout=EXIT_GRACE)
            if process.exitcode is None:
                process.terminate()
                process.join(timeout=EXIT_GRACE)
        try:
            while True:
                self.queue.get_nowait()
        except (queueModule.Empty, OSError, EOFError, ValueError):
            pass

    def run(self) -> RunOutcome | None:
        """Run the project; None when nothing started (a script failed to load or Ctrl-C during loading).

        Raises ProjectError when a group's script cannot be imported.
        """
        self.interrupts.install()
        try:
            return self._run()
        finally:
            self.interrupts.restore()

    def _run(self) -> RunOutcome | None:
        groups = len(self.project.userGroups)
        self._startProcesses()
        while len(self.ready) < groups and self.fatal is None:
            self._pump(0.2)
            if self._stopRequested or len(self.done) >= groups:
                break
        if self.fatal is not None:
            self._shutdown()
            raise ProjectError(self.fatal)
        if self._stopRequested or len(self.ready) < groups:
            self._shutdown()
            return None

        startEpoch = time.time()
        resultsDir = makeResultsDir(self.project, startEpoch)
        shutil.copy2(self.project.configPath, resultsDir / CONFIG_NAME)
        self.writer = ResultsWriter(resultsDir, xmlReport=self.project.xmlReport, startEpoch=startEpoch)
        self.outcome = RunOutcome(resultsDir, self.writer.resultSet, startEpoch, 0.0)
        self.startTime.value = startEpoch
        self.startEvent.set()
        try:
            while len(self.done) < groups:
                self._pump(FLUSH_PERIOD)
                resultSet = self.writer.resultSet
                self.progress.update(
                    time.time() - startEpoch, sum(self.users.values()), len(resultSet), resultSet.errorCount
                )
        finally:
            self._shutdown()
            self.writer.close()
        self.outcome.wallTime = time.time() - startEpoch
        self.progress.finish(
            self.outcome.wallTime,
            sum(self.users.values()),
            len(self.outcome.resultSet),
            self.outcome.resultSet.errorCount,
        )
        return self.outcome
