"""The only place that builds ``ssl.SSLContext`` objects: every TLS default is here, in two functions.

Server side (:func:`makeServerContext`) accepts X.509 user certificates and RFC 3820 proxies against an
OpenSSL hashed CA directory (grid style: ``<hash>.0`` certificates, ``<hash>.r0`` CRLs), requests a client
certificate without requiring one (so a certificate-less client reaches HTTP and gets a 401 with an
S_ERROR body, as DIRAC answers), checks CRLs for the whole chain, and never issues session tickets (every
connection makes a full handshake, so the server always sees the verified chain).

Client side (:func:`makeClientContext`) trusts exactly the CA location it is given (never the system
bundle, never ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``), checks the host name, and presents a
certificate+key or a Globus proxy file.

:func:`getVerifiedChainDER` reads the verified peer chain on every supported Python.
"""
from __future__ import annotations

import glob
import os
import re
import ssl
from typing import Optional, Union

from cryptography import x509

#: ``<hash>.<n>`` CA certificate and ``<hash>.r<n>`` CRL file names in a hashed directory.
_CA_FILE_RE = re.compile(r"^[0-9a-f]{8}\.\d+$")
_CRL_FILE_RE = re.compile(r"^[0-9a-f]{8}\.r\d+$")

CRL_MODES = ("auto", "chain", "off")


class TLSConfigurationError(ValueError):
    """A TLS setting or credential file cannot be used; the message names the file or option and the fix."""


def _tlsVersion(value: Union[str, ssl.TLSVersion, None], what: str) -> Optional[ssl.TLSVersion]:
    """``ssl.TLSVersion`` from a member name (``TLSv1_2``; ``TLSv1.2`` accepted too)."""
    if value is None or value == "" or isinstance(value, ssl.TLSVersion):
        return value or None
    name = str(value).replace(".", "_")
    try:
        return ssl.TLSVersion[name]
    except KeyError:
        valid = ", ".join(v.name for v in ssl.TLSVersion if v.name.startswith("TLS"))
        raise TLSConfigurationError(f"{what} {value!r} is not a TLS version: use one of {valid}") from None


def _loadCAs(ctx: ssl.SSLContext, caPath: str) -> None:
    """Trust the CAs (and CRLs) at ``caPath``: a hashed directory or a PEM bundle file."""
    try:
        if os.path.isdir(caPath):
            ctx.load_verify_locations(capath=caPath)
        elif os.path.isfile(caPath):
            ctx.load_verify_locations(cafile=caPath)
        else:
            raise TLSConfigurationError(
                f"CA location {caPath!r} does not exist: set X509_CERT_DIR (or /DIRAC/Security/CALocation) "
                "to a directory of <hash>.0 CA files, or run tornado-certs"
            )
    except ssl.SSLError as exc:
        raise TLSConfigurationError(f"cannot load CAs from {caPath!r}: {exc}") from exc


def _loadCertChain(ctx: ssl.SSLContext, certFile: str, keyFile: Optional[str]) -> None:
    """Present ``certFile`` (leaf first, then its chain) with the key in ``keyFile`` (or in certFile itself)."""
    for path, what in ((certFile, "certificate"), (keyFile, "private key")):
        if path and not os.path.isfile(path):
            raise TLSConfigurationError(
                f"{what} file {path!r} not found: check the path, or run tornado-certs / tornado-proxy-init"
            )
    try:
        ctx.load_cert_chain(certFile, keyFile or certFile)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "TOO_SMALL" in reason or "WEAK" in reason:
            hint = "the key or signature is too weak for OpenSSL's security level: use RSA >= 2048 bits or EC"
        else:
            hint = "is the key unencrypted, and does it belong to the certificate?"
        raise TLSConfigurationError(f"cannot use certificate {certFile!r} with key {keyFile or certFile!r}: {reason} ({hint})") from exc


def _caFileHasCRL(path: str) -> bool:
    try:
        with open(path, "rb") as fd:
            return b"-----BEGIN X509 CRL-----" in fd.read()
    except OSError:
        return False


def caDirectoryCRLStatus(caPath: str) -> tuple[list[str], list[str]]:
    """``(CAs with a CRL, CAs without one)`` as subject DNs, for a hashed CA directory or a PEM bundle.

    With CRL checking on, a client whose chain passes through a CA without a CRL is refused
    ("unable to get certificate CRL"): the second list is what a server should warn about.
    """
    from TornadoServices.Security.X509Certificate import formatDN

    withCRL: list[str] = []
    withoutCRL: list[str] = []
    if os.path.isdir(caPath):
        names = os.listdir(caPath)
        crlStems = {n.split(".")[0] for n in names if _CRL_FILE_RE.match(n)}
        for name in sorted(n for n in names if _CA_FILE_RE.match(n)):
            try:
                with open(os.path.join(caPath, name), "rb") as fd:
                    cert = x509.load_pem_x509_certificate(fd.read())
            except (OSError, ValueError):
                continue
            (withCRL if name.split(".")[0] in crlStems else withoutCRL).append(formatDN(cert.subject))
        return withCRL, withoutCRL
    with open(caPath, "rb") as fd:
        data = fd.read()
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    crlIssuers = set()
    for block in re.findall(rb"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", data, re.S):
        try:
            crlIssuers.add(x509.load_pem_x509_crl(block).issuer)
        except ValueError:
            continue
    for cert in certs:
        (withCRL if cert.subject in crlIssuers else withoutCRL).append(formatDN(cert.subject))
    return withCRL, withoutCRL


def resolveCRLMode(caPath: str, crlCheck: str = "auto") -> str:
    """``"chain"`` or ``"off"``: ``auto`` means chain when the CA location holds any CRL, else off."""
    if crlCheck not in CRL_MODES:
        raise TLSConfigurationError(f"CRL check mode {crlCheck!r} is not one of {', '.join(CRL_MODES)}")
    if crlCheck != "auto":
        return crlCheck
    if os.path.isdir(caPath):
        return "chain" if glob.glob(os.path.join(glob.escape(caPath), "*.r[0-9]*")) else "off"
    return "chain" if _caFileHasCRL(caPath) else "off"


def makeServerContext(
    certFile: str,
    keyFile: Optional[str],
    caPath: str,
    crlCheck: str = "auto",
    minVersion: Union[str, ssl.TLSVersion, None] = "TLSv1_2",
    maxVersion: Union[str, ssl.TLSVersion, None] = None,
    ciphers: Optional[str] = None,
) -> ssl.SSLContext:
    """Server context for X.509/proxy client authentication. Every default:

    - ``PROTOCOL_TLS_SERVER``; ``minimum_version`` TLS 1.2 (``minVersion``), no maximum unless
      ``maxVersion``; OpenSSL's default cipher list unless ``ciphers`` (affects TLS <= 1.2 only).
    - Host certificate ``certFile`` (may hold the chain after the leaf) with ``keyFile`` (None: the key is
      in certFile).
    - ``verify_mode = CERT_OPTIONAL``: a certificate is requested, not required. No certificate -> the
      handshake succeeds with no peer chain and HTTP answers 401. A certificate that fails verification
      (unknown CA, expired, revoked, bad proxy) still fails the handshake: OpenSSL only relaxes the
      "no certificate" case.
    - CAs from ``caPath``: a hashed directory (``capath``; CRLs ``<hash>.r<n>`` read from it too) or a PEM
      bundle (``cafile``; CRLs inside it are loaded).
    - ``VERIFY_ALLOW_PROXY_CERTS``: RFC 3820 proxies verify (OpenSSL checks signatures, subject naming,
      pCPathLenConstraint; it does not interpret policy languages: limited/independent proxies are
      accepted and the application must look at them). Legacy GT2 proxies are refused.
    - ``VERIFY_X509_STRICT`` is not set: proxies from other tools may lack AKI, which strict mode refuses.
    - ``crlCheck``: ``"chain"`` -> ``VERIFY_CRL_CHECK_LEAF|VERIFY_CRL_CHECK_CHAIN`` (with proxies, checking
      only the leaf would never look at the user certificate: a revoked user's proxy would pass); every
      CA of a chain then needs a valid, unexpired CRL. ``"off"`` -> no CRL checks. ``"auto"`` (default)
      -> ``"chain"`` when the CA location holds any CRL, else ``"off"``.
    - No session tickets (``OP_NO_TICKET``, ``num_tickets = 0``), hence no session resumption: a resumed
      session carries no verified chain (OpenSSL keeps only the leaf in the session; Python's
      ``get_verified_chain()`` then returns None), so with tickets a returning proxy user would look
      certificate-less, or an application might fall back to the bare leaf. Python's server contexts
      keep no session-ID cache (``session_stats()["number"]`` stays 0), so without tickets every
      connection is a full handshake under TLS 1.2 and 1.3 (tests/unit/test_TLS.py checks both).
    - ``OP_NO_RENEGOTIATION`` (no client-initiated TLS 1.2 renegotiation), ``OP_NO_COMPRESSION`` and
      single-use (EC)DH keys (Python's defaults for this protocol).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _tlsVersion(minVersion, "minimum TLS version") or ssl.TLSVersion.TLSv1_2
    if maxVersion:
        ctx.maximum_version = _tlsVersion(maxVersion, "maximum TLS version")  # type: ignore[assignment]
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise TLSConfigurationError(f"OpenSSL cipher string {ciphers!r} selects no cipher") from exc
    ctx.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.num_tickets = 0
    _loadCertChain(ctx, certFile, keyFile)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    _loadCAs(ctx, caPath)
    flags = ctx.verify_flags | ssl.VERIFY_ALLOW_PROXY_CERTS
    if resolveCRLMode(caPath, crlCheck) == "chain":
        flags |= ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_CRL_CHECK_CHAIN
    ctx.verify_flags = flags
    return ctx


def makeClientContext(
    caPath: Optional[str],
    certFile: Optional[str] = None,
    keyFile: Optional[str] = None,
    skipCACheck: bool = False,
    ciphers: Optional[str] = None,
    minVersion: Union[str, ssl.TLSVersion, None] = None,
    maxVersion: Union[str, ssl.TLSVersion, None] = None,
) -> ssl.SSLContext:
    """Client context for calling a service. Every default:

    - ``PROTOCOL_TLS_CLIENT``; minimum version ``minVersion``, else env ``DIRAC_HTTPS_SSL_METHOD_MIN``, else
      TLS 1.2; maximum ``maxVersion``, else env ``DIRAC_HTTPS_SSL_METHOD_MAX``, else none (member names of
      ``ssl.TLSVersion``); ciphers ``ciphers``, else env ``DIRAC_HTTPS_SSL_CIPHERS``, else OpenSSL's.
    - Trusts only ``caPath`` (hashed directory or bundle file). The system store and the
      ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` variables are ignored: a grid CA
      directory is the trust anchor set. (Callers using ``requests`` must also pass ``verify=caPath``
      or ``verify=False``, or requests loads ``REQUESTS_CA_BUNDLE`` into this context.)
    - ``check_hostname`` on (server certificates need a matching subjectAltName) and ``CERT_REQUIRED``;
      ``skipCACheck`` switches both off (no server verification at all; caPath may then be None).
    - Client credentials: ``certFile`` + ``keyFile``; a Globus proxy file (proxy, key, chain in one file)
      is passed as ``certFile`` alone (it is both cert and key). Encrypted keys are not supported.
    - ``OP_NO_COMPRESSION``; no proxy-specific flags (servers present ordinary host certificates).
    """
    env = os.environ
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = (
        _tlsVersion(minVersion or env.get("DIRAC_HTTPS_SSL_METHOD_MIN"), "minimum TLS version (DIRAC_HTTPS_SSL_METHOD_MIN)")
        or ssl.TLSVersion.TLSv1_2
    )
    maxV = _tlsVersion(maxVersion or env.get("DIRAC_HTTPS_SSL_METHOD_MAX"), "maximum TLS version (DIRAC_HTTPS_SSL_METHOD_MAX)")
    if maxV:
        ctx.maximum_version = maxV
    cipherString = ciphers or env.get("DIRAC_HTTPS_SSL_CIPHERS")
    if cipherString:
        try:
            ctx.set_ciphers(cipherString)
        except ssl.SSLError as exc:
            raise TLSConfigurationError(f"OpenSSL cipher string {cipherString!r} selects no cipher") from exc
    ctx.options |= ssl.OP_NO_COMPRESSION
    if skipCACheck:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        if not caPath:
            raise TLSConfigurationError(
                "no CA location to verify the server: set X509_CERT_DIR (or /DIRAC/Security/CALocation), or run tornado-certs"
            )
        ctx.check_hostname = True
        ctx.hostname_checks_common_name = False  # a server is named by its subjectAltName only, as requests does
        ctx.verify_mode = ssl.CERT_REQUIRED
        _loadCAs(ctx, caPath)
    if certFile:
        _loadCertChain(ctx, certFile, keyFile)
    return ctx


def getVerifiedChainDER(sslSocket: Union[ssl.SSLSocket, ssl.SSLObject]) -> list[bytes]:
    """DER certificates of the peer's verified chain, leaf first (root CA last); ``[]`` without one.

    Python >= 3.13 has the public ``get_verified_chain()`` (DER bytes); 3.10-3.12 only the private
    ``_sslobj.get_verified_chain()`` (``_ssl.Certificate`` objects). Empty when the peer sent no
    certificate, and on a resumed TLS 1.2 session (OpenSSL keeps no verified chain for those).
    """
    getter = getattr(sslSocket, "get_verified_chain", None)
    if getter is None:
        sslobj = getattr(sslSocket, "_sslobj", None)
        getter = getattr(sslobj, "get_verified_chain", None)
        if getter is None:
            return []
    try:
        chain = getter()
    except (ValueError, AttributeError, ssl.SSLError):
        return []
    if not chain:
        return []
    import _ssl

    return [c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in chain]
