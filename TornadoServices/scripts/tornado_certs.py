"""tornado-certs: write a development PKI (CA, CRL, host and user certificates) into one directory.

Exit codes: 0 written, 1 could not write (existing files without --force, I/O error), 2 usage error.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from cryptography import x509

from TornadoServices.Security import DevPKI
from TornadoServices.Security.X509Certificate import formatDN
from TornadoServices.Security.X509Chain import writeSecureFile


def makeParser() -> argparse.ArgumentParser:
    """Command line of tornado-certs."""
    parser = argparse.ArgumentParser(
        prog="tornado-certs",
        description=(
            "Create a development CA, its CRL and hashed CA directory, a host certificate and user "
            "certificates. For development and tests only: keys are written unencrypted (mode 0600)."
        ),
        epilog=(
            "Afterwards: export X509_CERT_DIR=DIR/certificates; "
            "tornado-proxy-init --cert DIR/usercert.pem --key DIR/userkey.pem --group dirac_user"
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dir", required=True, help="output directory (created if missing)")
    parser.add_argument("--user", action="append", default=[], metavar="NAME", help="extra user NAME (repeatable): DIR/NAMEcert.pem, DIR/NAMEkey.pem")
    parser.add_argument("--revoked-user", action="append", default=[], metavar="NAME", help="user NAME whose certificate is listed in the CRL (repeatable)")
    parser.add_argument("--days", type=int, default=365, help="validity of host and user certificates, in days")
    parser.add_argument("--key-type", choices=("rsa", "ec"), default="rsa", help="key algorithm (ec = P-256)")
    parser.add_argument("--bits", type=int, default=2048, help="RSA key size")
    parser.add_argument("--hostname", default="localhost", help="host certificate CN and first subjectAltName")
    parser.add_argument("--san", action="append", default=[], metavar="NAME", help="extra subjectAltName (DNS name or IP), repeatable")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def _describe(cert: x509.Certificate) -> str:
    start = cert.not_valid_before_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    end = cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{formatDN(cert.subject)}  valid {start} -> {end}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of tornado-certs."""
    parser = makeParser()
    args = parser.parse_args(argv)
    if args.days <= 0:
        parser.error("--days must be positive")
    if args.key_type == "rsa" and args.bits < 1024:
        parser.error("--bits must be at least 1024")
    names = list(dict.fromkeys(args.user + args.revoked_user))
    for name in names:
        if not name or "/" in name or name.startswith(".") or name in ("user", "host"):
            parser.error(f"user name {name!r} is not usable as a file name prefix (user/host are reserved)")

    keyOptions = {"keyType": args.key_type, "bits": args.bits}
    out = os.path.abspath(args.dir)
    ca = DevPKI.CertificateAuthority(days=max(3650, args.days + 1), **keyOptions)
    sans = list(dict.fromkeys([args.hostname, *(["127.0.0.1", "::1"] if args.hostname == "localhost" else []), *args.san]))
    host = ca.issueHost(args.hostname, sans=sans, days=args.days, **keyOptions)
    users = {"user": ca.issueUser(DevPKI.DEV_USER_NAME, days=args.days, **keyOptions)}
    for name in names:
        users[name] = ca.issueUser(name, days=args.days, **keyOptions)
        if name in args.revoked_user:
            ca.revoke(users[name])

    certDir = os.path.join(out, "certificates")
    # The CRL lives as long as the certificates: with CRL checking on, an expired CRL refuses everyone.
    crl = ca.crlPEM(days=args.days)
    # (path, content, mode, description)
    plan: list[tuple[str, bytes, int, str]] = [
        (os.path.join(out, "ca", "cacert.pem"), ca.certPEM(), 0o644, "CA certificate " + _describe(ca.cert)),
        (os.path.join(out, "ca", "cakey.pem"), ca.keyPEM(), 0o600, "CA private key (mode 0600)"),
        (os.path.join(certDir, f"{ca.hash}.0"), ca.certPEM(), 0o644, "hashed CA certificate"),
        (os.path.join(certDir, f"{ca.hash}.r0"), crl, 0o644, f"CRL ({len(ca.revoked)} revoked, next update in {args.days} days)"),
        (os.path.join(out, "hostcert.pem"), host.certPEM(), 0o644, "host certificate " + _describe(host.cert) + f"  SAN {', '.join(sans)}"),
        (os.path.join(out, "hostkey.pem"), host.keyPEM(), 0o600, "host private key (mode 0600)"),
    ]
    for name, cred in users.items():
        label = "revoked user" if name in args.revoked_user else "user"
        plan.append((os.path.join(out, f"{name}cert.pem"), cred.certPEM(), 0o644, f"{label} certificate " + _describe(cred.cert)))
        plan.append((os.path.join(out, f"{name}key.pem"), cred.keyPEM(), 0o600, f"{label} private key (mode 0600)"))

    existing = [path for path, *_ in plan if os.path.lexists(path)]
    if existing and not args.force:
        print(f"tornado-certs: refusing to overwrite {len(existing)} existing file(s), e.g. {existing[0]}: pass --force", file=sys.stderr)
        return 1
    try:
        for path, content, mode, description in plan:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            writeSecureFile(path, content, force=args.force, mode=mode)
            print(f"{path}: {description}")
    except OSError as exc:
        print(f"tornado-certs: cannot write {exc.filename or out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print()
    print(f"Use: export X509_CERT_DIR={certDir}")
    print(f"     tornado-proxy-init --cert {os.path.join(out, 'usercert.pem')} --key {os.path.join(out, 'userkey.pem')} --group dirac_user")
    return 0


if __name__ == "__main__":
    sys.exit(main())
