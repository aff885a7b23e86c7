"""``tornado-start-all``: serve every HTTPS service of the configuration on one port.

Every ``/Systems/<System>/Services/<Service>`` section with ``Protocol = https`` is loaded and served on
``--port``, else ``/Systems/Tornado/Port``, else 8443 (a service with its own ``Port`` option gets its own
listener). SIGINT and SIGTERM stop the server cleanly (running calls are given ``ShutdownTimeout`` seconds).

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
            "  tornado-start-all --cfg cs/dirac.cfg --port 9443 -o /Systems/Tornado/MaxThreads=30 -d"
        ),
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port for the services without a Port option of their own (default: /Systems/Tornado/Port, else 8443)",
    )
    # Servers authenticate to other services with the host certificate unless the configuration says otherwise.
    gConfig.setOptionValue("/DIRAC/Security/UseServerCertificate", "yes")
    args = parseCommandLine(parser, argv)
    if args.port is not None and not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a TCP port (0-65535)")
    log = gLogger.getSubLogger("Tornado")

    from TornadoServices.Server.HandlerManager import HandlerManager
    from TornadoServices.Server.TornadoServer import TornadoServer, TornadoServerError

    services = HandlerManager(True).discoverHandlers()["Value"]
    if CS_SERVER in services and gConfig.getValue("/DIRAC/Configuration/Master", False):
        log.fatal(
            "Refusing to start:",
            f"{CS_SERVER} is the master configuration service here (/DIRAC/Configuration/Master = yes): "
            "it must run alone, start it with tornado-start-CS and remove Protocol = https from its section",
        )
        return 1
    try:
        server = TornadoServer(services=True, port=args.port)
        server.startTornado(handleSignals=True)
    except TornadoServerError as exc:
        log.fatal("Cannot start the server:", str(exc))
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
