"""A TornadoServices server for the benchmark: ``TornadoServer`` on a bench CS, optionally under cProfile.

``python -m benchmarks.services_server --cfg bench.cfg --ready FILE [--profile-out STATS]`` loads the CS,
starts the server the way ``tornado-start-all`` does (every https service of the CS, INFO logging to
stderr, one asyncio event loop), writes the bound port to ``FILE`` and serves until SIGTERM.

With ``--profile-out``, SIGUSR1 starts profiling and SIGUSR2 writes the merged statistics to ``STATS``:
cProfile follows one thread, so the event loop thread gets one profiler and every thread started after
SIGUSR1 (the service's worker pool is created lazily, on the first plain ``export_`` call) gets its own.
Send SIGUSR1 before the first request, so that every worker thread is profiled.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Optional

from benchmarks.procstat import raiseFileLimit
from benchmarks.profiling import ThreadProfiler


def main(argv: Optional[list[str]] = None) -> None:
    """Serve the services of ``--cfg`` on ``--port`` (0 = any free port) until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.services_server", description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", required=True, help="bench configuration file")
    parser.add_argument("--ready", required=True, help="file to write the bound port to once listening")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free port)")
    parser.add_argument("--log-level", default="INFO", help="server log level (default INFO, as tornado-start-all)")
    parser.add_argument("--profile-out", default="", help="profile between SIGUSR1 and SIGUSR2, write pstats here")
    parser.add_argument("--profile-clock", default="cpu", choices=ThreadProfiler.CLOCKS, help="per-thread CPU time or wall time")
    args = parser.parse_args(argv)

    raiseFileLimit()
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig
    from TornadoServices.Core.Logging import setupLogging
    from TornadoServices.Server.TornadoServer import TornadoServer

    setupLogging(args.log_level, stream=sys.stderr)
    result = gConfig.loadFile(args.cfg)
    if not result["OK"]:
        sys.exit(f"cannot load {args.cfg}: {result['Message']}")
    server = TornadoServer(services=True, port=args.port)
    profiler = ThreadProfiler(args.profile_clock) if args.profile_out else None

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server.start()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        if profiler is not None:
            loop.add_signal_handler(signal.SIGUSR1, profiler.start)
            loop.add_signal_handler(signal.SIGUSR2, profiler.dump, args.profile_out)
        temporary = args.ready + ".tmp"
        with open(temporary, "w") as fd:
            fd.write(str(server.actualPort))
        os.replace(temporary, args.ready)
        await stop.wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
