"""``python -m benchmarks.run`` (``make bench``): framework overhead of TornadoServices, as one table of ratios.

Rows, all measured in this run, servers each in their own process, on 127.0.0.1:

  (a)  bare Tornado HTTPS handler returning the bytes of ping's answer, same TLS settings -- the floor
  (b)  TornadoServices: ping's answer from a plain ``export_`` (runs in the worker pool)
  (c)  TornadoServices: ping's answer from an ``async def export_`` (runs on the event loop)
  (d)  TornadoServices: built-in ``echo`` of a 10 KB string
  (a2) bare Tornado: JSON echo of the same 10 KB string -- the floor of (d)
  (e)  one client thread, sequential pings: fresh ``Client(url=...)`` per call (pooled), DIRAC's
       new-session-per-call, and a raw new TLS connection per call
  (f)  server RSS with N idle keep-alive mTLS connections (one request made on each), TornadoServices
       and bare Tornado

Rows (a)-(a2) run ``--rounds`` times, interleaved (order reversed every other round), so slow drifts of
the machine's other load hit every row alike; each round warms up then measures ``--duration`` seconds.
``--profile`` then runs the loads of (b), (c) and (a) once more, each against a fresh server under
cProfile (per-thread CPU clock by default), prints (b)'s top functions by cumulative and by own time,
and, for (b) and (c), the functions that cost more CPU per request than in the bare handler.
"""
from __future__ import annotations

import argparse
import base64
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Optional, TextIO

from benchmarks import connections, report
from benchmarks.environment import SERVICE, BenchEnvironment, machineDescription
from benchmarks.loadgen import Call, LoadGenerator, Measurement, Window, describe
from benchmarks.procstat import raiseFileLimit, splitCPUs, usableCPUs
from benchmarks.profiling import printDifference, printProfile
from benchmarks.servers import ServerProcess, fetchPingAnswer, startBaseline, startServices

ECHO_BYTES = 10 * 1024


@dataclass
class Options:
    """Everything a run can be told (command-line options, or a test's tiny settings)."""

    duration: float = 2.0
    warmup: float = 1.0
    rounds: int = 6
    processes: int = 2
    threads: int = 4
    clientSeconds: float = 3.0
    connections: int = 1000
    connectionProcesses: int = 4
    profile: bool = False
    profileTop: int = 25
    profileClock: str = "cpu"
    skipConnections: bool = False
    serverLogLevel: str = "INFO"
    pin: bool = True
    rows: tuple[str, ...] = ()
    skipClients: bool = False


def echoPayload(size: int = ECHO_BYTES) -> str:
    """A ``size``-character string that compresses like real data would not: base64 of random bytes."""
    return base64.b64encode(os.urandom(size))[:size].decode()


@dataclass
class Results:
    """What a run measured (also returned to tests)."""

    header: list[str]
    load: list[report.LoadRow]
    rates: dict[str, connections.RateResult]
    idle: list[connections.IdleResult]
    table: str
    verdicts: list[str]


def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def _measureLoad(
    options: Options, env: BenchEnvironment, baseline: ServerProcess, services: ServerProcess, out: TextIO
) -> list[report.LoadRow]:
    payload = echoPayload()
    specs = [
        ("a", "bare Tornado: ping answer (floor)", baseline, Call("ping"), "a"),
        ("b", "ping, plain export_ (thread pool)", services, Call("syncPing"), "a"),
        ("c", "ping, async export_ (event loop)", services, Call("asyncPing"), "a"),
        ("d", "echo 10 KB (built-in echo)", services, Call("echo", (payload,)), "a2"),
        ("a2", "bare Tornado: JSON echo 10 KB", baseline, Call("echo", (payload,)), "a2"),
    ]
    if options.rows:
        specs = [spec for spec in specs if spec[0] in options.rows]
    rows = {key: report.LoadRow(key, label, Measurement(), floor) for key, label, _, _, floor in specs}
    with LoadGenerator(env.childEnvironment(), options.processes, options.threads) as load:
        for _, _, server, call, _ in specs:  # unmeasured pass: first-use costs of the workers and servers
            load.measure(server.url(), call, server.pid, 0.0, options.warmup)
        for round_ in range(options.rounds):
            order = specs if round_ % 2 == 0 else list(reversed(specs))
            for key, label, server, call, _ in order:
                window = load.measure(server.url(), call, server.pid, options.warmup, options.duration)
                rows[key].measurement.windows.append(window)
                _say(
                    out,
                    f"  round {round_ + 1}/{options.rounds} ({key}) {label}: {window.callsPerSecond:,.0f} calls/s, "
                    f"server {1e6 * window.serverCPU / max(1, window.calls):,.0f} us CPU/call"
                    + (f", {window.errors} errors: {window.firstError[:100]}" if window.errors else ""),
                )
    return [rows[key] for key, *_ in specs]


def _profiledWindow(options: Options, env: BenchEnvironment, server: ServerProcess, call: Call, statsFile: str) -> Window:
    """Run one row's load against ``server`` between SIGUSR1 and SIGUSR2; wait for its statistics file."""
    try:
        with LoadGenerator(env.childEnvironment(), options.processes, options.threads) as load:
            server.signal(signal.SIGUSR1)
            window = load.measure(server.url(), call, server.pid, options.warmup, options.duration)
            server.signal(signal.SIGUSR2)
        deadline = time.monotonic() + 60
        while not os.path.exists(statsFile) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.stop()
    if not os.path.exists(statsFile):
        raise RuntimeError(f"{server.name} wrote no profile statistics:\n{server.logTail()}")
    return window


def _profile(options: Options, env: BenchEnvironment, answerFile: str, out: TextIO) -> None:
    """Rows (b), (c) and (a) once more, each against a fresh server under cProfile; print where the CPU goes."""
    files = {key: os.path.join(env.directory, f"profile-{key}.pstats") for key in ("a", "b", "c")}
    runs = {
        "b": (lambda: startServices(env, "profiled-b", profileOut=files["b"], profileClock=options.profileClock, logLevel=options.serverLogLevel), Call("syncPing")),
        "c": (lambda: startServices(env, "profiled-c", profileOut=files["c"], profileClock=options.profileClock, logLevel=options.serverLogLevel), Call("asyncPing")),
        "a": (lambda: startBaseline(env, "profiled-a", answerFile, profileOut=files["a"], profileClock=options.profileClock), Call("ping")),
    }
    windows = {key: _profiledWindow(options, env, start(), call, files[key]) for key, (start, call) in runs.items()}
    clock = "per-thread CPU clock" if options.profileClock == "cpu" else "wall clock"
    _say(out, "")
    _say(
        out,
        f"profile of the TornadoServices server under (b)'s load (cProfile, {clock}, event loop + worker threads; "
        f"{windows['b'].callsPerSecond:,.0f} calls/s while profiled, warm-up included):",
    )
    printProfile(files["b"], out, options.profileTop)
    printDifference(files["b"], files["a"], out, options.profileTop, "(b) plain export_: extra own CPU per request vs (a) bare Tornado")
    printDifference(files["c"], files["a"], out, options.profileTop, "(c) async export_: extra own CPU per request vs (a) bare Tornado")


def runBenchmark(options: Options, out: TextIO = sys.stdout) -> Results:
    """Run every row and print the table (and the profile with ``options.profile``)."""
    raiseFileLimit()
    header = machineDescription() + [describe(options.processes, options.threads)]
    header.append(
        f"rows a-a2: {options.rounds} interleaved round(s) of {options.warmup:g} s warm-up + {options.duration:g} s measured; "
        "server CPU = utime+stime of its process (all threads) over the measured window"
    )
    header.append(
        f"TornadoServices servers log at {options.serverLogLevel} (to a file); bare Tornado logs nothing; "
        "TLS: Security.TLS.makeServerContext for both (client certificates verified, proxies allowed, CRLs checked)"
    )
    for line in header:
        _say(out, line)
    env = BenchEnvironment.create()
    savedAffinity = usableCPUs()
    serverCPUs, clientCPUs = splitCPUs(savedAffinity)
    if options.pin and serverCPUs != clientCPUs:
        env.serverCPUs = serverCPUs
        os.sched_setaffinity(0, clientCPUs)  # the load generators are spawned from here and inherit it
        placement = f"servers pinned to CPU {_cpuList(serverCPUs)}, load generators to CPU {_cpuList(clientCPUs)}"
    else:
        placement = "no CPU pinning"
    header.append(placement + "; 'other load' = CPU busy outside the server and load generator (other users of the machine)")
    _say(out, header[-1])
    try:
        return _run(options, env, header, out)
    finally:
        os.sched_setaffinity(0, savedAffinity)
        env.remove()


def _cpuList(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _run(options: Options, env: BenchEnvironment, header: list[str], out: TextIO) -> Results:
    started = time.monotonic()
    servers: list[ServerProcess] = []
    try:
        services = startServices(env, "services", logLevel=options.serverLogLevel)
        servers.append(services)
        answerFile = os.path.join(env.directory, "ping-answer.json")
        with open(answerFile, "wb") as fd:
            fd.write(fetchPingAnswer(env, services))
        baseline = startBaseline(env, "baseline", answerFile)
        servers.append(baseline)
        _say(out, f"servers: TornadoServices pid {services.pid} port {services.port}; bare Tornado pid {baseline.pid} port {baseline.port}")

        load = _measureLoad(options, env, baseline, services, out)

        rates: dict[str, connections.RateResult] = {}
        if not options.skipClients:
            rates = {r.style: r for r in connections.measureClientRates(env.childEnvironment(), services.url(), services.pid, options.clientSeconds)}
            _say(out, "  (e) " + ", ".join(f"{r.style} {r.callsPerSecond:,.0f} calls/s" for r in rates.values()))
        for server in servers:
            server.stop()
        servers.clear()

        idle: list[connections.IdleResult] = []
        if not options.skipConnections:
            for name in ("idle-services", "idle-baseline"):
                if name == "idle-services":
                    server = startServices(env, name, maxConnections=options.connections + 500, logLevel=options.serverLogLevel)
                else:
                    server = startBaseline(env, name, answerFile)
                servers.append(server)
                result = connections.measureIdleConnections(
                    name, env.childEnvironment(), server.pid, server.port, "/" + SERVICE,
                    total=options.connections, processes=options.connectionProcesses,
                )
                idle.append(result)
                _say(out, f"  (f) {name}: {result.opened} connections, {result.kbPerConnection:.1f} KB each" + (f" ({result.error})" if result.error else ""))
                server.stop()
                servers.remove(server)
    finally:
        for server in servers:
            server.stop()

    byKey = {row.key: row for row in load}
    aCPU = byKey["a"].measurement.serverCPUPerCall if "a" in byKey else float("nan")
    cells = [report.loadCells(row, byKey) for row in load]
    dirac = rates.get("dirac")
    labels = {
        "pooled": ("e", "fresh Client(url=...) per call, pooled"),
        "dirac": ("e2", "DIRAC style: new requests.Session per call"),
        "handshake": ("e3", "raw new TLS connection per call (floor)"),
    }
    for style, (key, label) in labels.items():
        if style in rates:
            cells.append(report.rateCells(key, label, rates[style], dirac, aCPU))
    idleLabels = {"idle-services": ("f", "TornadoServices: idle keep-alive conns"), "idle-baseline": ("f0", "bare Tornado: idle keep-alive conns")}
    for result in idle:
        key, label = idleLabels[result.target]
        cells.append(report.idleCells(key, label, result))
    table = report.formatTable(cells)
    lines = report.verdicts(byKey, rates, next((r for r in idle if r.target == "idle-services"), None))
    _say(out, "")
    for line in header:
        _say(out, line)
    _say(out, table)
    _say(out, "")
    _say(out, "targets:")
    for line in lines:
        _say(out, "  " + line)
    _say(out, f"(measured in {time.monotonic() - started:.0f} s; 'x (a) CPU' = server CPU per call / row (a)'s)")
    if options.profile:
        _profile(options, env, answerFile, out)
    return Results(header, load, rates, idle, table, lines)


def main(argv: Optional[list[str]] = None) -> None:
    """Command line of ``make bench``."""
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Framework overhead of TornadoServices against a bare Tornado HTTPS handler, as one table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=defaults.duration, help="measured seconds per row and round")
    parser.add_argument("--warmup", type=float, default=defaults.warmup, help="warm-up seconds before each measured window")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="interleaved rounds of rows a-a2")
    parser.add_argument("--processes", type=int, default=defaults.processes, help="load-generator processes")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="client threads per load-generator process")
    parser.add_argument("--client-seconds", type=float, default=defaults.clientSeconds, help="seconds per client style in row (e)")
    parser.add_argument("--connections", type=int, default=defaults.connections, help="idle connections in row (f)")
    parser.add_argument("--skip-connections", action="store_true", help="leave out row (f)")
    parser.add_argument("--skip-clients", action="store_true", help="leave out rows (e)")
    parser.add_argument("--rows", default="", help="comma-separated subset of rows a,b,c,d,a2 to measure (default: all; keep a for the ratios)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and load generators to separate CPUs")
    parser.add_argument("--profile", action="store_true", help="also profile the server under (b)'s load and print the top functions")
    parser.add_argument("--profile-top", type=int, default=defaults.profileTop, help="functions listed per profile order")
    parser.add_argument(
        "--profile-clock",
        default=defaults.profileClock,
        choices=("cpu", "wall"),
        help="cpu: each thread's CPU time (slower, blind to waits); wall: cProfile's default clock",
    )
    parser.add_argument(
        "--server-log-level",
        default=defaults.serverLogLevel,
        help="log level of the TornadoServices servers (INFO writes one access line per call, as tornado-start-all does)",
    )
    args = parser.parse_args(argv)
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        rounds=max(1, args.rounds),
        processes=max(1, args.processes),
        threads=max(1, args.threads),
        clientSeconds=args.client_seconds,
        connections=max(1, args.connections),
        profile=args.profile,
        profileTop=args.profile_top,
        profileClock=args.profile_clock,
        skipConnections=args.skip_connections,
        serverLogLevel=args.server_log_level,
        pin=not args.no_pin,
        rows=tuple(row.strip() for row in args.rows.split(",") if row.strip()),
        skipClients=args.skip_clients,
    )
    runBenchmark(options)


if __name__ == "__main__":
    main()
