"""tornado-proxy-init: sign an RFC 3820 proxy with a user certificate (or with another proxy).

Exit codes: 0 proxy written, 1 could not (unreadable or expired credentials, refused overwrite), 2 usage error.
"""
from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from typing import Optional, Sequence

from TornadoServices.Security import Locations
from TornadoServices.Security.X509Chain import X509Chain, writeSecureFile

DEFAULT_VALIDITY = "24:00"


def _parseValidity(text: str) -> int:
    """Seconds from ``HH:MM`` (or ``HH``)."""
    match = re.fullmatch(r"(\d{1,5})(?::([0-5]\d))?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"validity {text!r} is not HH:MM (e.g. 24:00, 1:30)")
    seconds = int(match.group(1)) * 3600 + int(match.group(2) or 0) * 60
    if seconds <= 0:
        raise argparse.ArgumentTypeError("validity must be longer than 0:00")
    return seconds


def makeParser() -> argparse.ArgumentParser:
    """Command line of tornado-proxy-init."""
    parser = argparse.ArgumentParser(
        prog="tornado-proxy-init",
        description=(
            "Create an RFC 3820 proxy (Globus file: proxy certificate, its unencrypted key, the issuer chain) "
            "from a user certificate and key, or from an existing proxy file (proxy of a proxy)."
        ),
        epilog=(
            "Defaults: --cert/--key from $X509_USER_CERT/$X509_USER_KEY, else ~/.globus/user{cert,key}.pem; "
            "--out $X509_USER_PROXY, else /tmp/x509up_u<uid>. An existing proxy at --out is replaced; any "
            "other existing file needs --force."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--cert", help="user certificate, or a proxy file (which then also holds the key)")
    parser.add_argument("--key", help="private key of --cert (prompted for when encrypted)")
    parser.add_argument("--out", help="proxy file to write (mode 0600)")
    parser.add_argument("--group", help="DIRAC group written into the proxy (extension 1.2.42.42)")
    parser.add_argument("--valid", type=_parseValidity, default=DEFAULT_VALIDITY, metavar="HH:MM", help="proxy lifetime")
    parser.add_argument("--limited", action="store_true", help="limited proxy (policy 1.3.6.1.4.1.3536.1.1.1.9)")
    parser.add_argument("--bits", type=int, default=2048, help="RSA key size of the proxy")
    parser.add_argument("--force", action="store_true", help="overwrite --out even when it is not a proxy")
    return parser


def _fail(message: str) -> int:
    print(f"tornado-proxy-init: {message}", file=sys.stderr)
    return 1


def _loadIssuer(certFile: str, keyFile: Optional[str]) -> X509Chain:
    """Chain and key to sign with; raises ValueError with a message for the user."""
    chain = X509Chain()
    result = chain.loadChainFromFile(certFile)
    if not result["OK"]:
        raise ValueError(result["Message"])
    source = keyFile or certFile
    result = chain.loadKeyFromFile(source)
    if not result["OK"] and "password" in result["Message"].lower():
        if not sys.stdin.isatty():
            raise ValueError(f"private key {source} is encrypted and no terminal is available to ask for its password")
        result = chain.loadKeyFromFile(source, getpass.getpass(f"Password for {source}: "))
    if not result["OK"]:
        hint = "" if keyFile else " (pass --key)"
        raise ValueError(f"{result['Message']} in {source}{hint}")
    return chain


def _isProxyFile(path: str) -> bool:
    chain = X509Chain()
    return chain.loadChainFromFile(path)["OK"] and chain.isProxy()["Value"]


def _hhmmss(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of tornado-proxy-init."""
    parser = makeParser()
    args = parser.parse_args(argv)
    if args.bits < 1024:
        parser.error("--bits must be at least 1024")
    certFile, keyFile = args.cert, args.key
    if not certFile:
        found = Locations.getUserCertificateAndKeyLocation()
        if not found:
            return _fail("no user certificate found: " + Locations.describeUserCertificateSearch())
        certFile, keyFile = found[0], keyFile or found[1]
    out = args.out or Locations.getDefaultProxyLocation()

    try:
        issuer = _loadIssuer(certFile, keyFile)
    except ValueError as exc:
        return _fail(str(exc))
    if issuer.getRemainingSecs()["Value"] <= 0:
        return _fail(f"{certFile} has expired ({issuer.getNotAfterDate()['Value']:%Y-%m-%d %H:%M:%S} UTC): nothing can be signed with it")
    if os.path.lexists(out) and not args.force and not _isProxyFile(out):
        return _fail(f"{out} exists and is not a proxy: choose another --out or pass --force")

    result = issuer.generateProxyToString(args.valid, diracGroup=args.group or False, strength=args.bits, limited=args.limited)
    if not result["OK"]:
        return _fail(result["Message"])
    try:
        writeSecureFile(out, result["Value"].encode(), force=True, mode=0o600)
    except OSError as exc:
        return _fail(f"cannot write {out}: {exc.strerror or exc}")

    proxy = X509Chain()
    proxy.loadChainFromString(result["Value"])
    cred = proxy.getCredentials(ignoreDefault=True, withRegistryInfo=False)["Value"]
    left = cred["secondsLeft"]
    print(f"Proxy written to {out} (mode 0600)")
    print(f"subject  : {cred['subject']}")
    print(f"issuer   : {cred['issuer']}")
    print(f"identity : {cred['identity']}")
    print(f"group    : {cred.get('group') or 'none (the server uses your default group)'}")
    print(f"limited  : {'yes' if cred['isLimitedProxy'] else 'no'}")
    print(f"time left: {_hhmmss(left)}")
    if left < args.valid - 60:
        print(f"note     : lifetime shortened to what {certFile} has left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
