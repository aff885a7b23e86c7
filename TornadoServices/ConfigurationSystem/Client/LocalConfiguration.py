"""The command line every TornadoServices script shares, and DIRAC 9's configuration load order.

Usage in a script::

    parser = makeParser("tornado-start-all", "Start all https services")
    parser.add_argument("--port", type=int, help="port to listen on")
    args = parseCommandLine(parser)

Configuration is loaded in this order, each step overriding the previous ones:
``$DIRACSYSCONFIG`` (comma-separated files) < ``~/.dirac.cfg`` < ``<rootPath>/etc/dirac.cfg`` <
``--cfg FILE`` and positional ``*.cfg`` arguments (in command-line order) < ``-o /Path/To/Option=value``.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Sequence
from typing import Any

from TornadoServices.ConfigurationSystem.Client.Config import gConfig

__all__ = ["ConfigurationError", "configurationFiles", "loadConfiguration", "makeParser", "parseCommandLine"]

_HELP_OPTIONS = ("-h", "--help")


class ConfigurationError(RuntimeError):
    """A configuration file or override that cannot be loaded (message names the file and line)."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Show every option with its default, also options a script added without help text."""

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and action.default is not argparse.SUPPRESS and action.option_strings:
            action = copy.copy(action)
            action.help = ""
            action.help = self._get_help_string(action)
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "(default:" in text:
            return text
        if action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        default = action.default
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            shown = "on" if default else "off"
        elif default is None:
            shown = "not set"
        elif isinstance(default, (list, tuple)):
            shown = ", ".join(map(str, default)) or "none"
        else:
            shown = str(default)
        return f"{text.rstrip()} (default: {shown.replace('%', '%%')})".strip()


class _OverrideAction(argparse.Action):
    """Collect ``-o /Path/To/Option=value`` overrides, rejecting ones without '=' or path."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        text = str(values)
        path, sep, value = text.partition("=")
        if not sep or not path.strip().strip("/"):
            parser.error(f"argument {option_string}: expected /Path/To/Option=value, got {text!r}")
        overrides = list(getattr(namespace, self.dest, None) or [])
        overrides.append((path.strip(), value.strip()))
        setattr(namespace, self.dest, overrides)


def makeParser(
    prog: str, description: str, epilog: str | None = None, positionalCfg: bool = True
) -> argparse.ArgumentParser:
    """Create the shared parser: --cfg, positional *.cfg, -o/--option, -d (-dd, -ddd), --json-logs, -h."""
    loadOrder = (
        "Configuration is read from $DIRACSYSCONFIG (comma-separated files), ~/.dirac.cfg,\n"
        "<rootPath>/etc/dirac.cfg, then --cfg files, then -o overrides; later ones win."
    )
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"{epilog}\n\n{loadOrder}" if epilog else loadOrder,
        formatter_class=_HelpFormatter,
        allow_abbrev=False,
    )
    parser._tornadoPositionalCfg = positionalCfg  # type: ignore[attr-defined]
    group = parser.add_argument_group("configuration and logging")
    group.add_argument(
        "--cfg",
        dest="cfg",
        action="append",
        default=[],
        metavar="FILE",
        help="load this .cfg/.yaml file (repeatable; a positional argument ending in .cfg works too)",
    )
    group.add_argument(
        "-o",
        "--option",
        dest="options",
        action=_OverrideAction,
        default=[],
        metavar="/PATH=VALUE",
        help="set a configuration option, overriding every file (repeatable)",
    )
    group.add_argument(
        "-d",
        "--debug",
        dest="debug",
        action="count",
        default=0,
        help="more output: -d verbose, -dd debug, -ddd debug including libraries",
    )
    group.add_argument("--json-logs", dest="jsonLogs", action="store_true", help="log JSON lines instead of text")
    return parser


def _takesValue(parser: argparse.ArgumentParser, token: str) -> bool:
    """Whether the option ``token`` (without an attached value) consumes the next argument."""
    action = parser._option_string_actions.get(token)
    if action is None:
        return False
    return action.nargs != 0 and not isinstance(
        action, (argparse._StoreConstAction, argparse._CountAction, argparse._HelpAction, argparse._VersionAction)
    )


def _rewritePositionalCfg(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Turn positional ``x.cfg`` arguments into ``--cfg x.cfg`` so argparse keeps their order."""
    result: list[str] = []
    expectValue = False
    afterSeparator = False
    for token in argv:
        if afterSeparator:
            result.append(token)
        elif expectValue:
            result.append(token)
            expectValue = False
        elif token == "--":
            afterSeparator = True
            result.append(token)
        elif token.startswith("-") and token != "-":
            result.append(token)
            expectValue = "=" not in token and _takesValue(parser, token)
        elif token.endswith(".cfg"):
            result += ["--cfg", token]
        else:
            result.append(token)
    return result


def _environmentFiles() -> list[str]:
    """The files listed in $DIRACSYSCONFIG (comma-separated)."""
    return [item.strip() for item in os.environ.get("DIRACSYSCONFIG", "").split(",") if item.strip()]


def configurationFiles(cfgFiles: Sequence[str] = ()) -> list[tuple[str, bool]]:
    """List (file, mandatory) in load order: $DIRACSYSCONFIG, ~/.dirac.cfg, <rootPath>/etc/dirac.cfg, then cfgFiles."""
    import TornadoServices

    files = [(path, True) for path in _environmentFiles()]
    files.append((os.path.join(os.path.expanduser("~"), ".dirac.cfg"), False))
    files.append((os.path.join(TornadoServices.rootPath, "etc", "dirac.cfg"), False))
    files += [(path, True) for path in cfgFiles]
    return files


def loadConfiguration(
    cfgFiles: Sequence[str] = (), overrides: Sequence[tuple[str, str]] = (), ignoreErrors: bool = False
) -> list[str]:
    """Load the configuration in DIRAC 9 order into gConfig; return the files read; raise ConfigurationError."""
    from TornadoServices.Core.Logging import gLogger

    log = gLogger.getSubLogger("LocalConfiguration")
    loaded: list[str] = []
    fromEnvironment = set(_environmentFiles())
    for path, mandatory in configurationFiles(cfgFiles):
        expanded = os.path.expandvars(os.path.expanduser(path))
        if not mandatory and not os.path.exists(expanded):
            continue
        result = gConfig.loadFile(expanded)
        if result["OK"]:
            loaded.append(result["Value"])
            log.debug("Loaded configuration file", result["Value"])
            continue
        message = result["Message"]
        if path in fromEnvironment and not os.path.exists(expanded):
            message += " (it is listed in $DIRACSYSCONFIG)"
        if ignoreErrors:
            log.warn("Ignoring configuration file", message)
            continue
        raise ConfigurationError(message)
    for path, value in overrides:
        result = gConfig.setOptionValue(path, value)
        if not result["OK"]:
            message = f"Cannot apply -o {path}={value}: {result['Message']}"
            if ignoreErrors:
                log.warn(message)
                continue
            raise ConfigurationError(message)
    return loaded


def parseCommandLine(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None, ignoreErrors: bool = False
) -> argparse.Namespace:
    """Parse the command line, set up logging and load the configuration (exit 2 on usage errors, 1 on bad files).

    With ``ignoreErrors`` unknown arguments are kept in ``args.unknownArgs`` and unloadable files are only logged.
    The returned namespace also carries ``loadedFiles``, the configuration files read in order.
    """
    from TornadoServices.Core.Logging import debugLevelFromCount, libraryDebugFromCount, setupLogging

    argv = list(sys.argv[1:] if argv is None else argv)
    if getattr(parser, "_tornadoPositionalCfg", True):
        argv = _rewritePositionalCfg(parser, argv)
    if ignoreErrors:
        args, unknown = parser.parse_known_args(argv)
        args.unknownArgs = unknown
    else:
        args = parser.parse_args(argv)
    debug = getattr(args, "debug", 0) or 0
    setupLogging(
        level=debugLevelFromCount(debug),
        json=bool(getattr(args, "jsonLogs", False)),
        libraryDebug=libraryDebugFromCount(debug),
    )
    try:
        args.loadedFiles = loadConfiguration(
            getattr(args, "cfg", None) or [], getattr(args, "options", None) or [], ignoreErrors=ignoreErrors
        )
    except ConfigurationError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    _startRefresher()
    return args


_initialized = False


def initialize(cfgFiles: Sequence[str] = (), hostCredentials: bool = False, logLevel: str | None = None) -> None:
    """Load the configuration for a Python program that has no command line of ours, as ``DIRAC.initialize()``.

    Reads the files in DIRAC 9 order (plus ``cfgFiles``), starts the configuration refresher and, with
    ``hostCredentials``, makes clients use the host certificate. Later calls do nothing. Raises ConfigurationError.
    """
    global _initialized
    if _initialized:
        return
    from TornadoServices.Core.Logging import setupLogging

    if logLevel:
        setupLogging(level=logLevel)
    loadConfiguration(cfgFiles)
    if hostCredentials:
        gConfig.setOptionValue("/DIRAC/Security/UseServerCertificate", "yes")
    _startRefresher()
    _initialized = True


def _startRefresher() -> None:
    """Keep the configuration fresh from /DIRAC/Configuration/Servers in the background (not on the master CS)."""
    from TornadoServices.ConfigurationSystem.Client.ConfigurationData import gConfigurationData

    if gConfigurationData.getServers() and not gConfigurationData.isMaster():
        from TornadoServices.ConfigurationSystem.private.Refresher import gRefresher

        gRefresher.start()
