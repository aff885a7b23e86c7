"""``tornado-start-all``: serve every HTTPS service of the configuration on one port.

Every ``/Systems/<System>/Services/<Service>`` section with ``Protocol = https`` is loaded and served on
``--port``, else ``/Systems/Tornado/Port``, else 8443 (a service with its own ``Port`` option gets its own
listener). SIGINT and SIGTERM stop the server cleanly: it stops listening, closes idle connections, answers
new calls on open connections with 503 and gives running calls ``ShutdownTimeout`` seconds. SIGHUP reloads the
host certificate, CA directory and CRLs without closing the port.

``--processes N`` forks N worker processes sharing the port (0 = one per CPU); the supervisor restarts a
worker that dies and passes SIGTERM/SIGINT/SIGHUP on to the workers. ``--pid-file`` writes the pid of the
process to signal (the supervisor, or the only process).

Exit status: 0 after a clean stop; 1 when the server cannot start (no service, port in use, host certificate
or CA directory missing, a handler that fails to load or initialise, a master CS among the services);
2 for command-line usage errors.
"""
from __future__ import annotations

import sys

__all__ = ["main"]

CS_SERVER = "Configuration/Server"


def main(argv: list[str] | None = None) -> int:
    """Start the services; return the exit status."""
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig
    from TornadoServices.ConfigurationSystem.Client.LocalConfiguration import makeParser, parseCommandLine
    from TornadoServices.Core.Logging import gLogger

    parser = makeParser(
        "tornado-start-all",
        "Start every HTTPS service of the configuration (Protocol = https) in one server.",
        epilog=(
            "examples:\n"
            "  tornado-start-all --cfg cs/dirac.cfg\n"
            "  tornado-start-all --cfg cs/dirac.cfg --port 9443 -o /Systems/Tornado/MaxThreads=30 -d\n"
            "  tornado-start-all --cfg cs/dirac.cfg --processes 0 --pid-file /run/tornado.pid\n"
            "  kill -HUP $(cat /run/tornado.pid)    # reload host certificate, CAs and CRLs\n"
            "  kill -TERM $(cat /run/tornado.pid)   # drain and stop"
        ),
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port for the services without a Port option of their own (default: /Systems/Tornado/Port, else 8443)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="worker processes sharing the port: 1 (default) serves from this process; 0 = one per CPU; "
        "N > 1 = a supervisor forks N workers and restarts any that dies",
    )
    parser.add_argument(
        "--pid-file",
        dest="pidFile",
        default=None,
        metavar="PATH",
        help="write the pid to signal (supervisor or single process) to PATH, removed on exit; "
        "refuse to start if PATH names a running process",
    )
    # Servers authenticate to other services with the host certificate unless the configuration says otherwise.
    gConfig.setOptionValue("/DIRAC/Security/UseServerCertificate", "yes")
    args = parseCommandLine(parser, argv)
    if args.port is not None and not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a TCP port (0-65535)")
    if args.processes < 0:
        parser.error(f"--processes {args.processes}: use 0 (one per CPU), 1, or more")
    log = gLogger.getSubLogger("Tornado")

    from TornadoServices.Server.HandlerManager import HandlerManager
    from TornadoServices.Server.TornadoServer import TornadoServer, TornadoServerError

    found = HandlerManager(True).serviceEntries()  # discovered services, load groups expanded
    if not found["OK"]:
        log.fatal("Cannot start the server:", found["Message"])
        return 1
    services = found["Value"]
    if any(entry.partition(":")[0] == CS_SERVER for entry in services) and gConfig.getValue("/DIRAC/Configuration/Master", False):
        log.fatal(
            "Refusing to start:",
            f"{CS_SERVER} is the master configuration service here (/DIRAC/Configuration/Master = yes): "
            "it must run alone, start it with tornado-start-CS and remove Protocol = https from its section",
        )
        return 1
    from TornadoServices.Server.private.Supervisor import PidFile, PidFileError, Supervisor, defaultProcessCount

    pidFile = PidFile(args.pidFile) if args.pidFile else None
    try:
        if pidFile is not None:
            pidFile.acquire()
        server = TornadoServer(services=services, port=args.port)  # the list discovered above
        processes = args.processes or defaultProcessCount()
        if processes == 1:
            server.startTornado(handleSignals=True)
            return 0
        return Supervisor(server, processes).run()
    except (TornadoServerError, PidFileError) as exc:
        log.fatal("Cannot start the server:", str(exc))
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if pidFile is not None:
            pidFile.release()


if __name__ == "__main__":
    sys.exit(main())
