"""Interleaved A/B of two source trees: rows (b) and (c) of each, against one bare baseline, window by window.

``python -m benchmarks.ab --old DIR --new DIR [--rounds 8]`` starts one bare Tornado server (row (a)) and
one TornadoServices server from each tree (``git archive <commit> | tar -x -C DIR``), then measures, in
every round, (a), old (b), new (b), old (c), new (c) one after the other (reversed every other round) with
the same load generator (the client code of the tree this module is run from). On a shared machine the
other users' load moves every figure by more than a small change does; windows measured a few seconds apart
are exposed to about the same load, so the per-round ratios new/old are the figures to read.

Also prints the context switches of the server process per call (voluntary + involuntary, all threads,
from ``/proc``), counted over each window including its warm-up.
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
from typing import Optional

from benchmarks.environment import BenchEnvironment
from benchmarks.loadgen import Call, LoadGenerator
from benchmarks.procstat import raiseFileLimit, splitCPUs, usableCPUs


def contextSwitches(pid: int) -> int:
    """Voluntary plus involuntary context switches of every thread of ``pid`` so far."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(path) as fd:
                for line in fd:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass  # a thread that ended meanwhile
    return total


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="source tree of the old server")
    parser.add_argument("--new", required=True, help="source tree of the new server")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of five windows (default: 8)")
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per window (default: 3)")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds before each window (default: 0.5)")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes (default: 2)")
    parser.add_argument("--threads", type=int, default=4, help="client threads per process (default: 4)")
    args = parser.parse_args(argv)

    from benchmarks import servers

    raiseFileLimit()
    env = BenchEnvironment.create()
    savedAffinity = usableCPUs()
    serverCPUs, clientCPUs = splitCPUs(savedAffinity)
    if serverCPUs != clientCPUs:
        env.serverCPUs = serverCPUs
        os.sched_setaffinity(0, clientCPUs)
    started: list[servers.ServerProcess] = []
    results: dict[str, list[tuple[float, float, float]]] = {}
    try:
        trees = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
        services = {}
        for name, tree in trees.items():
            servers.REPO_ROOT = tree  # the server process runs in (and imports from) this tree
            services[name] = servers.startServices(env, f"services-{name}")
            started.append(services[name])
        answerFile = os.path.join(env.directory, "ping-answer.json")
        with open(answerFile, "wb") as fd:
            fd.write(servers.fetchPingAnswer(env, services["new"]))
        baseline = servers.startBaseline(env, "baseline", answerFile)
        started.append(baseline)
        specs = [
            ("a", baseline, Call("ping")),
            ("old-b", services["old"], Call("syncPing")),
            ("new-b", services["new"], Call("syncPing")),
            ("old-c", services["old"], Call("asyncPing")),
            ("new-c", services["new"], Call("asyncPing")),
        ]
        results = {key: [] for key, *_ in specs}
        with LoadGenerator(env.childEnvironment(), args.processes, args.threads) as load:
            for _, server, call in specs:  # first-use costs
                load.measure(server.url(), call, server.pid, 0.0, 1.0)
            for round_ in range(args.rounds):
                parts = []
                for key, server, call in specs if round_ % 2 == 0 else specs[::-1]:
                    before = contextSwitches(server.pid)
                    window = load.measure(server.url(), call, server.pid, args.warmup, args.duration)
                    switches = (contextSwitches(server.pid) - before) / max(1.0, window.callsPerSecond * (args.warmup + args.duration))
                    perCall = window.serverCPU / max(1, window.calls)
                    results[key].append((perCall, window.callsPerSecond, switches))
                    parts.append(f"{key} {1e6 * perCall:,.0f} us {window.callsPerSecond:,.0f}/s {switches:.1f} cs")
                print(f"round {round_ + 1} (load {os.getloadavg()[0]:.2f}): " + ", ".join(parts), flush=True)
    finally:
        for server in started:
            server.stop()
        os.sched_setaffinity(0, savedAffinity)
        env.remove()
    median = statistics.median
    floor = [r[0] for r in results["a"]]
    print(f"a: median {1e6 * median(floor):,.0f} us CPU/call, {median([r[1] for r in results['a']]):,.0f} calls/s")
    for key in ("old-b", "new-b", "old-c", "new-c"):
        perCall = [r[0] for r in results[key]]
        ratios = [x / y for x, y in zip(perCall, floor)]
        print(
            f"{key}: median {1e6 * median(perCall):,.0f} us CPU/call = {median(ratios):.3f} x (a) (summed {sum(perCall) / sum(floor):.3f}), "
            f"{median([r[1] for r in results[key]]):,.0f} calls/s, {median([r[2] for r in results[key]]):.1f} context switches/call"
        )
    for kind in ("b", "c"):
        paired = [n[0] / o[0] for n, o in zip(results[f"new-{kind}"], results[f"old-{kind}"])]
        print(f"new/old ({kind}) per round: " + " ".join(f"{x:.3f}" for x in paired) + f"; median {median(paired):.3f}")
    cb = [c[0] / b[0] for c, b in zip(results["new-c"], results["new-b"])]
    print("new (c)/(b) per round: " + " ".join(f"{x:.3f}" for x in cb) + f"; median {median(cb):.3f}")


if __name__ == "__main__":
    sys.exit(main())
