"""``python -m benchmarks.variants``: what Tornado-level choices of a server cost, on the bare handler.

Each variant is the bare baseline server with one choice that TornadoServices makes (an ``async def``
handler method, ``@stream_request_body``, a body timeout, response compression, request decompression),
measured against the plain bare handler in the same run, rounds interleaved, like ``make bench``'s rows.
It tells which part of the framework overhead is Tornado's price for a choice rather than our code.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from benchmarks import report
from benchmarks.environment import BenchEnvironment, machineDescription
from benchmarks.loadgen import Call, LoadGenerator, Measurement, describe
from benchmarks.procstat import raiseFileLimit, splitCPUs, usableCPUs
from benchmarks.servers import fetchPingAnswer, startBaseline, startServices

VARIANTS = (
    ("a", "bare Tornado, plain def post", ()),
    ("v1", "async def post", ("--handler", "async")),
    ("v2", "@stream_request_body + async post", ("--handler", "stream")),
    ("v3", "body_timeout=60", ("--body-timeout", "60")),
    ("v4", "compress_response=True", ("--compress",)),
    ("v5", "decompress_request=True", ("--decompress",)),
    ("v6", "all of v2-v5 (TornadoServices' choices)", ("--handler", "stream", "--body-timeout", "60", "--compress", "--decompress")),
)


def main(argv: Optional[list[str]] = None) -> None:
    """Measure every variant for ``--rounds`` interleaved rounds of ``--duration`` seconds."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.variants", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per variant and round")
    parser.add_argument("--warmup", type=float, default=1.5, help="warm-up seconds before each window")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes")
    parser.add_argument("--threads", type=int, default=4, help="client threads per process")
    args = parser.parse_args(argv)
    raiseFileLimit()
    out = sys.stdout
    env = BenchEnvironment.create()
    saved = usableCPUs()
    serverCPUs, clientCPUs = splitCPUs(saved)
    if serverCPUs != clientCPUs:
        env.serverCPUs = serverCPUs
        os.sched_setaffinity(0, clientCPUs)
    servers = []
    try:
        services = startServices(env, "services")
        answerFile = os.path.join(env.directory, "ping-answer.json")
        with open(answerFile, "wb") as fd:
            fd.write(fetchPingAnswer(env, services))
        services.stop()
        started = [(key, label, startBaseline(env, f"variant-{key}", answerFile, variant=options)) for key, label, options in VARIANTS]
        servers = [server for _, _, server in started]
        rows = {key: report.LoadRow(key, label, Measurement()) for key, label, _ in started}
        with LoadGenerator(env.childEnvironment(), args.processes, args.threads) as load:
            for round_ in range(max(1, args.rounds)):
                order = started if round_ % 2 == 0 else list(reversed(started))
                for key, label, server in order:
                    rows[key].measurement.windows.append(load.measure(server.url(), Call("ping"), server.pid, args.warmup, args.duration))
                    out.write(f"  round {round_ + 1} ({key}) {label}: {rows[key].measurement.windows[-1].callsPerSecond:,.0f} calls/s\n")
                    out.flush()
    finally:
        for server in servers:
            server.stop()
        os.sched_setaffinity(0, saved)
        env.remove()
    byKey = dict(rows)
    for line in machineDescription() + [describe(args.processes, args.threads)]:
        out.write(line + "\n")
    out.write(report.formatTable([report.loadCells(row, byKey) for row in rows.values()]) + "\n")
    for key, row in rows.items():
        if key != "a":
            out.write(f"  ({key}) {row.label}: x (a) CPU per call{report.roundSpread(row.measurement, rows['a'].measurement)}\n")


if __name__ == "__main__":
    main()
