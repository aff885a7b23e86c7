"""Soak run: a bounded mixed load against a multi-process server, with calls, errors and memory over time.

::

    python -m tests.faults.soak --minutes 3                 # make soak
    python -m tests.faults.soak --minutes 10 --kill-every 60 --plot soak.png

Starts ``tornado-start-all --processes N`` on 127.0.0.1 with a throw-away PKI and configuration, and client
processes (``loadclient.py --mix``: journaled ``record`` calls, ``pid``, ``echo`` of up to 20 kB, an
occasional 1 s call). Every ``--interval`` seconds it prints the calls and errors so far and the resident
memory of every server process; at the end it stops the server with SIGTERM (it must drain and exit 0)
and prints a table: calls and latency percentiles per method, errors by message, memory at the start, end
and peak per process, and whether any call ran twice. ``--kill-every S`` SIGKILLs a worker every S seconds
(the supervisor restarts it; the calls it was running fail with a clear error). ``--plot FILE.png`` draws
memory and call rate over time (needs matplotlib, the ``loadtest`` extra).

Exit status 0 when every call ended in S_OK (or, with --kill-every, in a clear S_ERROR), none ran twice,
and the server stopped cleanly; 1 otherwise. Not part of the test run.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import faultkit  # noqa: E402
from FaultProbeHandler import readJournal  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fd:
            return int(fd.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _results(directory: Path) -> list[dict]:
    rows = []
    for path in sorted(directory.glob("client*.jsonl")):
        for line in path.read_text().splitlines():
            if line.endswith("}"):
                rows.append(json.loads(line))
    return rows


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _mb(value: float) -> str:
    return f"{value / 1e6:7.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the load (default 3)")
    parser.add_argument("--processes", type=int, default=2, help="server worker processes (default 2)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per client process (default 4)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between report lines (default 10)")
    parser.add_argument("--kill-every", dest="killEvery", type=float, default=0.0, help="SIGKILL a worker every S seconds (default never)")
    parser.add_argument("--plot", default=None, help="write a PNG of memory and call rate over time")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, results)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="tornado-soak-"))
    pki = faultkit.makeFaultPKI(work)
    journal = str(work / "journal.txt")
    base, faults = work / "base.cfg", work / "faults.cfg"
    base.write_text(faultkit.shared.makeServerCFG(pki.base))
    faults.write_text(faultkit.faultCFG(journal, {"MaxThreads": 8}))
    server = faultkit.ServerProcess([str(base), str(faults)], work / "server.log", faultkit.serverEnv(work),
                                    ["--port", "0", "--processes", str(args.processes)])
    clients: list[faultkit.Process] = []
    samples: list[dict] = []
    stop = work / "stop"
    status = 0
    try:
        port = server.waitListening()
        server.workerPids(args.processes)
        print(f"server: pid {server.pid}, {args.processes} workers, port {port}; work directory {work}")
        env = dict(os.environ, PYTHONPATH=str(faultkit.REPO_ROOT), **faultkit.clientEnv(pki))
        for index in range(args.clients):
            argv = [sys.executable, str(HERE / "loadclient.py"), "--urls", server.url(), "--threads", str(args.threads),
                    "--prefix", f"c{index}", "--out", str(work / f"client{index}.jsonl"), "--stop", str(stop), "--mix"]
            clients.append(faultkit.Process(argv, work / f"client{index}.log", env))
        started = time.monotonic()
        end = started + 60 * args.minutes
        nextReport, nextKill, previousCalls = started + args.interval, started + (args.killEvery or 1e12), 0
        print(f"{'time':>6} {'calls':>8} {'calls/s':>8} {'errors':>7}  memory of each server process (supervisor first), open files")
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            now = time.monotonic()
            if now >= nextKill:
                workers = faultkit.children(server.pid)
                if workers:
                    os.kill(workers[0], signal.SIGKILL)
                    print(f"{now - started:5.0f}s killed worker pid {workers[0]}")
                nextKill += args.killEvery
            if now >= nextReport or now >= end:
                pids = [server.pid] + faultkit.children(server.pid)
                rows = _results(work)
                errors = sum(1 for r in rows if not r["ok"])
                sample = {"t": now - started, "calls": len(rows), "errors": errors, "rss": {pid: _rss(pid) for pid in pids}}
                samples.append(sample)
                rate = (len(rows) - previousCalls) / max(1e-6, now - (nextReport - args.interval))
                previousCalls = len(rows)
                memory = " ".join(_mb(v).strip() for v in sample["rss"].values())
                files = sum(_fds(pid) for pid in pids)
                print(f"{sample['t']:5.0f}s {len(rows):8d} {rate:8.1f} {errors:7d}  {memory}  ({files} files)", flush=True)
                nextReport += args.interval
        stop.touch()
        for client in clients:
            client.wait(60)
        server.signal(signal.SIGTERM)
        code = server.wait(60)
        if code != 0:
            print(f"server exit status {code} after SIGTERM (expected 0)")
            status = 1
    finally:
        stop.touch()
        for client in clients:
            client.stop()
        server.stop()

    rows = _results(work)
    executions: dict[str, int] = {}
    for callId, _ in readJournal(journal):
        executions[callId] = executions.get(callId, 0) + 1
    twice = [callId for callId, count in executions.items() if count > 1]
    print()
    print(f"{'method':<8} {'calls':>8} {'errors':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for method in sorted({r["method"] for r in rows}):
        subset = [r for r in rows if r["method"] == method]
        times = [1000 * (r["ended"] - r["started"]) for r in subset if r["ok"]]
        print(f"{method:<8} {len(subset):8d} {sum(1 for r in subset if not r['ok']):7d} "
              f"{_percentile(times, .5):8.1f} {_percentile(times, .9):8.1f} {_percentile(times, .99):8.1f} {max(times or [0]):8.1f}")
    failures: dict[str, int] = {}
    for r in rows:
        if not r["ok"]:
            failures[r["message"][:110]] = failures.get(r["message"][:110], 0) + 1
    for message, count in sorted(failures.items(), key=lambda item: -item[1])[:8]:
        print(f"  {count:6d} x {message}")
    if samples:
        print(f"\n{'process':>10} {'seen':>12} {'first':>10} {'last':>10} {'peak':>10}")
        seen: dict[int, list[tuple[float, int]]] = {}
        for sample in samples:
            for pid, rss in sample["rss"].items():
                seen.setdefault(pid, []).append((sample["t"], rss))
        for pid, series in seen.items():
            label = "supervisor" if pid == server.pid else f"pid {pid}"
            values = [rss for _, rss in series if rss]
            window = f"{series[0][0]:.0f}-{series[-1][0]:.0f}s"
            print(f"{label:>10} {window:>12} {_mb(values[0] if values else 0)} {_mb(values[-1] if values else 0)} {_mb(max(values or [0]))}")
    unclear = [r for r in rows if not r["ok"] and not (r["errno"] and r["message"])]
    errorCount = sum(failures.values())
    print(f"\ncalls {len(rows)}, errors {errorCount}, run twice {len(twice)}, unclear errors {len(unclear)}")
    if twice or unclear or (failures and not args.killEvery):
        status = 1
    if args.plot and samples:
        _plot(samples, server.pid, args.plot)
    if not args.keep and status == 0:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work directory kept: {work}")
    return status


def _plot(samples: list[dict], supervisor: int, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed (pip install 'TornadoServices[loadtest]')")
        return
    figure, (memory, rate) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    pids = sorted({pid for s in samples for pid in s["rss"]})
    for pid in pids:
        points = [(s["t"], s["rss"][pid] / 1e6) for s in samples if pid in s["rss"]]
        memory.plot([p[0] for p in points], [p[1] for p in points], marker=".", label="supervisor" if pid == supervisor else f"worker {pid}")
    memory.set_ylabel("resident MB")
    memory.legend(fontsize="small")
    times = [s["t"] for s in samples]
    rates = [(b["calls"] - a["calls"]) / max(1e-6, b["t"] - a["t"]) for a, b in zip(samples, samples[1:])]
    rate.plot(times[1:], rates)
    rate.set_ylabel("calls/s")
    rate.set_xlabel("seconds")
    figure.tight_layout()
    figure.savefig(path)
    print(f"plot written to {path}")


if __name__ == "__main__":
    sys.exit(main())
