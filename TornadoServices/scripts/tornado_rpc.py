"""``tornado-rpc``: call any method of an HTTPS service from a shell and print the result as JSON.

Exit status: 0 when the result is S_OK, 1 for S_ERROR, 2 for usage errors.
"""
from __future__ import annotations

import base64
import datetime
import json
import sys
from typing import Any, Optional, Sequence

from TornadoServices.ConfigurationSystem.Client.LocalConfiguration import makeParser, parseCommandLine

EPILOG = """examples:
  tornado-rpc --cfg cs/dirac.cfg Framework/Dummy ping
  tornado-rpc Framework/Dummy add 2 3
  tornado-rpc https://localhost:8443/Framework/Dummy echo '{"a": [1, 2]}' hello
  tornado-rpc --use-certificates --timeout 30 Configuration/Server getCompressedDataIfNewer 0

Each argument is parsed as JSON when it parses (2, 2.5, true, null, [1], {"k": 1}, "quoted"),
else passed as a string (hello). Use -- before arguments that start with a dash."""


def parseArgument(text: str) -> Any:
    """JSON value of ``text`` when it is valid JSON, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _jsonDefault(value: Any) -> Any:
    """Render what JSON cannot: datetimes as ISO text, bytes as base64, other objects by repr."""
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


def formatResult(result: dict[str, Any], compact: bool = False) -> str:
    """The result as JSON text, without the rpcStub and CallStack bookkeeping."""
    shown = {k: v for k, v in result.items() if k not in ("rpcStub", "CallStack")}
    if compact:
        return json.dumps(shown, default=_jsonDefault)
    return json.dumps(shown, indent=2, default=_jsonDefault)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the command line, make the call, print the result; return the exit status."""
    parser = makeParser(
        "tornado-rpc",
        "Call a method of a DIRAC HTTPS service and print the S_OK/S_ERROR result as JSON.",
        EPILOG,
        positionalCfg=False,
    )
    call = parser.add_argument_group("call")
    call.add_argument("service", metavar="System/Service|URL", help="service name resolved through the CS, or an https:// URL")
    call.add_argument("method", help="remote method name (without export_)")
    call.add_argument("args", nargs="*", metavar="ARG", help="positional arguments (JSON if it parses, else string)")
    call.add_argument("--timeout", type=float, default=None, help="call timeout in seconds (default: 600)")
    call.add_argument(
        "--use-certificates", action="store_true", dest="useCertificates",
        help="authenticate with the host certificate instead of a proxy (sends extraCredentials=hosts)",
    )
    call.add_argument("--proxy", default=None, metavar="FILE", help="proxy file to use (default: X509_USER_PROXY, /tmp/x509up_u<uid>)")
    call.add_argument("--skip-ca-check", action="store_true", dest="skipCACheck", help="do not verify the server certificate")
    call.add_argument("--compact", action="store_true", help="print the result on one line")
    args = parseCommandLine(parser, argv)

    from TornadoServices.Client.RPCClientSelector import RPCClientSelector

    kwargs: dict[str, Any] = {}
    if args.timeout is not None:
        kwargs["timeout"] = args.timeout
    if args.useCertificates:
        kwargs["useCertificates"] = True
    if args.proxy:
        kwargs["proxyLocation"] = args.proxy
    if args.skipCACheck:
        kwargs["skipCACheck"] = True
    if args.method.startswith("_"):
        parser.error(f"method names cannot start with '_': {args.method!r}")
    client = RPCClientSelector(args.service, **kwargs)
    result = client.executeRPC(args.method, *[parseArgument(a) for a in args.args])
    print(formatResult(result, args.compact))
    return 0 if result.get("OK") else 1


if __name__ == "__main__":
    sys.exit(main())
