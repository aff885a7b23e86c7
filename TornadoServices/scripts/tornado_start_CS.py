"""``tornado-start-CS``: run the Configuration service (``Configuration/Server``) alone, on its own port.

The master CS changes the process-wide configuration on every commit, so it must not share a process
with other services: this script serves ``Configuration/Server`` only. Master or slave is decided by the
local option ``/DIRAC/Configuration/Master`` once every configuration file and ``-o`` override is loaded.
The port is ``--port``, else ``/Systems/Configuration/Services/Server/Port``, else 9135.

A master needs ``/DIRAC/Configuration/Name`` (the data lives in ``<rootPath>/etc/<Name>.cfg``, rootPath is
``$DIRAC``); a slave needs ``/DIRAC/Configuration/MasterServer`` (or ``Servers``) and publishes the URL set
in ``/Systems/Configuration/Services/Server/URL`` (local configuration), else
``https://<Hostname or FQDN>:<port>/Configuration/Server``.

Signals as for ``tornado-start-all``: SIGTERM/SIGINT drain and stop, SIGHUP reloads the host certificate, CA
directory and CRLs. ``--pid-file`` as there too. There is no ``--processes``: a master holds the one
writable copy of the configuration and serialises commits, and a slave's state lives in its process.
"""
from __future__ import annotations

import sys

__all__ = ["main", "DEFAULT_PORT", "DEFAULT_HANDLER_PATH"]

SERVICE = "Configuration/Server"
DEFAULT_PORT = 9135
DEFAULT_HANDLER_PATH = "TornadoServices/ConfigurationSystem/Service/TornadoConfigurationHandler.py"


def _setDefaults() -> None:
    """Defaults of a CS server, set before the files are read so that any file or -o overrides them."""
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig

    gConfig.setOptionValue("/DIRAC/Security/UseServerCertificate", "yes")


def main(argv: list[str] | None = None) -> int:
    """Start the Configuration service; exit status 1 when it cannot start."""
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig
    from TornadoServices.ConfigurationSystem.Client.ConfigurationData import gConfigurationData
    from TornadoServices.ConfigurationSystem.Client.LocalConfiguration import makeParser, parseCommandLine
    from TornadoServices.ConfigurationSystem.Client.PathFinder import getServiceSection
    from TornadoServices.ConfigurationSystem.private.Refresher import gRefresher
    from TornadoServices.Core.Logging import gLogger

    parser = makeParser(
        "tornado-start-CS",
        "Start the Configuration service (Configuration/Server) alone on its own port: the master CS when "
        "/DIRAC/Configuration/Master = yes, else a slave that follows the master.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port to listen on (default: the service's Port option, else {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--pid-file",
        dest="pidFile",
        default=None,
        metavar="PATH",
        help="write this process's pid to PATH, removed on exit; refuse to start if PATH names a running process",
    )
    _setDefaults()
    args = parseCommandLine(parser, argv)
    log = gLogger.getSubLogger("Tornado-CS")

    # Master or slave is known only now that every file and override is loaded.
    isMaster = gConfigurationData.isMaster()
    if isMaster:
        gRefresher.disable()
        gRefresher.stop()
    section = getServiceSection(SERVICE)
    if not gConfig.getValue(f"{section}/HandlerPath", ""):
        gConfig.setOptionValue(f"{section}/HandlerPath", DEFAULT_HANDLER_PATH)
    port = args.port or gConfig.getValue(f"{section}/Port", 0) or DEFAULT_PORT
    if args.port:
        gConfig.setOptionValue(f"{section}/Port", args.port)
    log.always("Starting the configuration service", f"{'master' if isMaster else 'slave'} on port {port}")

    from TornadoServices.Server.private.Supervisor import PidFile, PidFileError
    from TornadoServices.Server.TornadoServer import TornadoServer, TornadoServerError

    pidFile = PidFile(args.pidFile) if args.pidFile else None
    try:
        if pidFile is not None:
            pidFile.acquire()
        server = TornadoServer(services=[SERVICE], port=port)
        server.startTornado(handleSignals=True)
    except (TornadoServerError, PidFileError) as exc:
        log.fatal("Cannot start the configuration service", str(exc))
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if pidFile is not None:
            pidFile.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
