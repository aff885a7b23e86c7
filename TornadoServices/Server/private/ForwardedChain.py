"""Client chains forwarded by a TLS-terminating front end: header parsing, trust rules, our own verification.

A front end (HAProxy, nginx) that terminates TLS can pass the client's certificate chain in HTTP headers.
Three rules keep that safe:

1. The headers are honoured only when the TCP peer is listed in ``/Systems/Tornado/TrustedProxies``
   (addresses or CIDR networks). From anybody else they are ignored (the connection's own TLS identity is
   used) and a warning is logged, at most once a minute.
2. The front end must say that it verified the client (``X-Ssl_client_verify: SUCCESS``, DIRAC's header):
   only it saw the TLS handshake, so only it knows that the client holds the private key.
3. The chain itself is verified again here against this server's CA directory and CRLs (signatures,
   validity, CA constraints, RFC 3820 proxy rules, revocation of every non-proxy certificate): a front end
   with a looser trust store, or one that forwards only a claim, cannot widen who gets in.

:func:`parseCertificateHeader` accepts URL-encoded PEM (nginx ``$ssl_client_escaped_cert``, DIRAC's format,
one or several certificates), PEM with spaces for newlines, and base64 of DER (one certificate or several
concatenated, HAProxy ``%[ssl_c_der,base64]`` / ``%[ssl_c_chain_der,base64]``).
"""
from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import os
import re
import threading
import time
import urllib.parse
from typing import Any, Iterable, Optional, Sequence, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from TornadoServices.Core import DErrno
from TornadoServices.Core.Logging import gLogger
from TornadoServices.Core.ReturnValues import S_ERROR
from TornadoServices.Security.TLS import resolveCRLMode
from TornadoServices.Security.X509Certificate import OID_PROXY_CERT_INFO, decodeProxyCertInfo, derRead, formatDN
from TornadoServices.Server.private.Credentials import ConnectionCredentials, getConnectionCredentials

__all__ = [
    "ForwardedChainError",
    "ForwardedRefusal",
    "CAStore",
    "TrustedProxies",
    "parseCertificateHeader",
    "parseNetworks",
]

#: Longest chain accepted from a header (leaf, proxies, intermediates, root).
MAX_CHAIN_LENGTH = 12
#: Distinct forwarded chains whose verification is remembered, and for how long (seconds).
CACHE_SIZE = 1024
CACHE_SECONDS = 300.0
#: Seconds between two warnings about forwarded-certificate headers from untrusted peers.
WARNING_INTERVAL = 60.0

_CA_FILE_RE = re.compile(r"^[0-9a-f]{8}\.\d+$")
_CRL_FILE_RE = re.compile(r"^[0-9a-f]{8}\.r\d+$")
_PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)
_PEM_CRL_RE = re.compile(rb"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", re.S)
_WEAK_HASHES = (hashes.SHA1, hashes.MD5)
#: Critical extensions this verifier understands (others make a certificate unusable, as in OpenSSL).
_KNOWN_CRITICAL = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.POLICY_CONSTRAINTS,
        ExtensionOID.INHIBIT_ANY_POLICY,
        OID_PROXY_CERT_INFO,
    }
)


class ForwardedChainError(ValueError):
    """A forwarded chain is unusable; the message says why (it is sent to the client and logged)."""


# ---------------------------------------------------------------------------------------------------------
# headers
def _splitDER(data: bytes) -> list[bytes]:
    """Certificates of a concatenation of DER certificates."""
    ders = []
    pos = 0
    while pos < len(data):
        try:
            tag, _, end = derRead(data, pos)
        except ValueError as exc:
            raise ForwardedChainError(f"malformed DER certificate data ({exc})") from None
        if tag != 0x30:
            raise ForwardedChainError("the certificate data is not DER (no SEQUENCE)")
        ders.append(data[pos:end])
        pos = end
        if len(ders) > MAX_CHAIN_LENGTH:
            raise ForwardedChainError(f"more than {MAX_CHAIN_LENGTH} certificates forwarded")
    return ders


def parseCertificateHeader(value: str) -> list[bytes]:
    """DER certificates carried by a header value (formats: see the module documentation); [] for empty."""
    text = value.strip()
    if not text:
        return []
    if "%" in text:
        text = urllib.parse.unquote(text)
    if "-----BEGIN" in text:
        blocks = _PEM_CERT_RE.findall(text)
        if not blocks:
            raise ForwardedChainError("the header holds PEM data but no CERTIFICATE block")
        if len(blocks) > MAX_CHAIN_LENGTH:
            raise ForwardedChainError(f"more than {MAX_CHAIN_LENGTH} certificates forwarded")
        ders = []
        for block in blocks:
            try:
                ders.append(base64.b64decode("".join(block.split()), validate=True))
            except (binascii.Error, ValueError):
                raise ForwardedChainError("a PEM certificate block of the header is not base64") from None
        return ders
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ForwardedChainError("the header is neither PEM nor base64-encoded DER") from None
    return _splitDER(raw)


# ---------------------------------------------------------------------------------------------------------
# verification
def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _isCA(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca)
    except x509.ExtensionNotFound:
        return False


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> Any:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _proxyInfo(cert: x509.Certificate) -> Any:
    """Decoded ProxyCertInfo, or None for a certificate that is not an RFC 3820 proxy."""
    for ext in cert.extensions:
        if ext.oid == OID_PROXY_CERT_INFO:
            try:
                return decodeProxyCertInfo(ext.value.value)
            except (ValueError, AttributeError):
                raise ForwardedChainError(f"{formatDN(cert.subject)}: malformed ProxyCertInfo extension") from None
    return None


def _describe(cert: x509.Certificate) -> str:
    return formatDN(cert.subject)


def _checkKey(cert: x509.Certificate) -> None:
    """Refuse keys OpenSSL's default security level refuses (RSA/DSA < 2048 bits, EC < 224 bits)."""
    key = cert.public_key()
    if isinstance(key, (rsa.RSAPublicKey, dsa.DSAPublicKey)) and key.key_size < 2048:
        raise ForwardedChainError(f"{_describe(cert)}: {key.key_size}-bit key is too small (2048 bits at least)")
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < 224:
        raise ForwardedChainError(f"{_describe(cert)}: {key.curve.name} key is too small")


def _checkUsage(cert: x509.Certificate, issuesCertificates: bool) -> None:
    """Key usage and extended key usage fit for TLS client authentication (OpenSSL's ssl_client purpose)."""
    eku = _extension(cert, ExtensionOID.EXTENDED_KEY_USAGE)
    if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        raise ForwardedChainError(f"{_describe(cert)}: unsuitable certificate purpose (no clientAuth extended key usage)")
    ku = _extension(cert, ExtensionOID.KEY_USAGE)
    if ku is None:
        return
    if issuesCertificates:
        if not ku.key_cert_sign:
            raise ForwardedChainError(f"{_describe(cert)}: a CA whose key usage lacks keyCertSign")
    elif not (ku.digital_signature or ku.key_agreement):
        raise ForwardedChainError(f"{_describe(cert)}: unsuitable certificate purpose (no digitalSignature key usage)")


def _checkCritical(cert: x509.Certificate) -> None:
    for ext in cert.extensions:
        if ext.critical and ext.oid not in _KNOWN_CRITICAL:
            raise ForwardedChainError(f"{_describe(cert)}: unhandled critical extension {ext.oid.dotted_string}")


class CAStore:
    """The CA certificates and CRLs of a CA location (hashed directory or PEM bundle), for chain checks."""

    def __init__(self, caPath: str, crlCheck: str = "auto") -> None:
        self.caPath = caPath
        self.crlMode = resolveCRLMode(caPath, crlCheck)
        self._cas: dict[x509.Name, list[x509.Certificate]] = {}
        self._crls: dict[x509.Name, list[x509.CertificateRevocationList]] = {}
        self._load()

    def _addPEM(self, data: bytes) -> None:
        try:
            certs = x509.load_pem_x509_certificates(data) if b"-----BEGIN CERTIFICATE-----" in data else []
        except ValueError:
            certs = []
        for cert in certs:
            self._cas.setdefault(cert.subject, []).append(cert)
        for block in _PEM_CRL_RE.findall(data):
            try:
                crl = x509.load_pem_x509_crl(block)
            except ValueError:
                continue
            self._crls.setdefault(crl.issuer, []).append(crl)

    def _load(self) -> None:
        if os.path.isdir(self.caPath):
            for name in sorted(os.listdir(self.caPath)):
                if not (_CA_FILE_RE.match(name) or _CRL_FILE_RE.match(name)):
                    continue
                try:
                    with open(os.path.join(self.caPath, name), "rb") as fd:
                        self._addPEM(fd.read())
                except OSError:
                    continue
        elif os.path.isfile(self.caPath):
            with open(self.caPath, "rb") as fd:
                self._addPEM(fd.read())
        else:
            raise ForwardedChainError(f"CA location {self.caPath} does not exist")

    def _issuerIn(self, cert: x509.Certificate, candidates: Iterable[x509.Certificate]) -> Optional[x509.Certificate]:
        for candidate in candidates:
            if candidate.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return candidate
        return None

    def _buildPath(self, ders: Sequence[bytes]) -> list[x509.Certificate]:
        """Leaf, then each issuer (from the forwarded certificates or the store) up to a trusted root."""
        try:
            given = [x509.load_der_x509_certificate(der) for der in ders]
        except ValueError as exc:
            raise ForwardedChainError(f"a forwarded certificate cannot be parsed ({exc})") from None
        path = [given[0]]
        others = given[1:]
        while True:
            current = path[-1]
            anchor = self._issuerIn(current, self._cas.get(current.issuer, ()))
            if anchor is not None:
                if anchor == current:  # a self-signed root of the store presented as the leaf
                    return path
                if anchor in path:
                    raise ForwardedChainError(f"{_describe(anchor)}: the CA directory holds a certificate loop")
                path.append(anchor)
                if anchor.subject == anchor.issuer:
                    return path
                if len(path) > MAX_CHAIN_LENGTH:
                    raise ForwardedChainError(f"certificate chain longer than {MAX_CHAIN_LENGTH}")
                continue
            if current.subject == current.issuer:
                raise ForwardedChainError(f"{_describe(current)}: self-signed certificate not in the CA directory")
            issuer = self._issuerIn(current, others)
            if issuer is None:
                if current.issuer in self._cas or any(c.subject == current.issuer for c in others):
                    raise ForwardedChainError(f"{_describe(current)}: certificate signature failure")
                raise ForwardedChainError(
                    f"{_describe(current)}: unable to get issuer certificate {formatDN(current.issuer)} "
                    "(its CA is not in the server's CA directory)"
                )
            path.append(issuer)
            if len(path) > MAX_CHAIN_LENGTH:
                raise ForwardedChainError(f"certificate chain longer than {MAX_CHAIN_LENGTH}")

    def _checkRevocation(self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime.datetime) -> None:
        crls = [crl for crl in self._crls.get(cert.issuer, ()) if crl.is_signature_valid(issuer.public_key())]
        if not crls:
            raise ForwardedChainError(f"{_describe(cert)}: unable to get certificate CRL of {formatDN(cert.issuer)}")
        crl = max(crls, key=lambda c: c.last_update_utc)
        if crl.last_update_utc > now:
            raise ForwardedChainError(f"CRL of {formatDN(cert.issuer)} is not yet valid")
        if crl.next_update_utc is not None and crl.next_update_utc < now:
            raise ForwardedChainError(f"CRL of {formatDN(cert.issuer)} has expired")
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise ForwardedChainError(f"{_describe(cert)}: certificate revoked")

    def verify(self, ders: Sequence[bytes], now: Optional[datetime.datetime] = None) -> list[bytes]:
        """The verified path as DER (leaf first, trusted root last); ForwardedChainError when it does not verify."""
        if not ders:
            raise ForwardedChainError("no certificate forwarded")
        if len(ders) > MAX_CHAIN_LENGTH:
            raise ForwardedChainError(f"more than {MAX_CHAIN_LENGTH} certificates forwarded")
        now = now or _now()
        path = self._buildPath(ders)
        proxies = 0
        while proxies < len(path) and _proxyInfo(path[proxies]) is not None:
            proxies += 1
        if proxies == len(path):
            raise ForwardedChainError("the chain holds only proxies")
        for index, cert in enumerate(path):
            isTrustAnchor = index == len(path) - 1
            if cert.not_valid_before_utc > now:
                raise ForwardedChainError(f"{_describe(cert)}: certificate is not yet valid")
            if cert.not_valid_after_utc < now:
                raise ForwardedChainError(f"{_describe(cert)}: certificate has expired")
            _checkCritical(cert)
            _checkKey(cert)
            if not isTrustAnchor and isinstance(cert.signature_hash_algorithm, _WEAK_HASHES):
                raise ForwardedChainError(f"{_describe(cert)}: signed with a weak digest ({cert.signature_hash_algorithm.name})")
            if index < proxies:
                self._checkProxy(path, index)
            elif index > proxies:
                self._checkCA(path, index, proxies)
            else:
                if _isCA(cert):
                    raise ForwardedChainError(f"{_describe(cert)}: a CA certificate cannot be a client")
                _checkUsage(cert, issuesCertificates=False)
        if self.crlMode == "chain":
            for index in range(proxies, len(path)):
                issuer = path[min(index + 1, len(path) - 1)]
                self._checkRevocation(path[index], issuer, now)
        return [cert.public_bytes(Encoding.DER) for cert in path]

    @staticmethod
    def _checkProxy(path: Sequence[x509.Certificate], index: int) -> None:
        """RFC 3820 rules for the proxy at ``index`` (0 = leaf): naming, no CA, no alt names, path length."""
        cert, issuer = path[index], path[index + 1]
        info = _proxyInfo(cert)
        rdns = list(cert.subject.rdns)
        last = rdns[-1] if rdns else None
        if (
            last is None
            or len(last) != 1
            or next(iter(last)).oid != NameOID.COMMON_NAME
            or rdns[:-1] != list(issuer.subject.rdns)
        ):
            raise ForwardedChainError(f"{_describe(cert)}: proxy subject name violation (must be the issuer's plus one CN)")
        if _isCA(cert) or _isCA(issuer):
            raise ForwardedChainError(f"{_describe(cert)}: a proxy cannot be, or be issued by, a CA certificate")
        if _extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME) is not None or _extension(cert, ExtensionOID.ISSUER_ALTERNATIVE_NAME) is not None:
            raise ForwardedChainError(f"{_describe(cert)}: a proxy must not carry alternative names")
        if info.pathLen is not None and index > info.pathLen:
            raise ForwardedChainError(f"{_describe(cert)}: proxy path length constraint exceeded")
        _checkUsage(cert, issuesCertificates=False)
        _checkUsage(issuer, issuesCertificates=False)

    @staticmethod
    def _checkCA(path: Sequence[x509.Certificate], index: int, endEntity: int) -> None:
        """The certificate at ``index`` issues the one below it: a CA within its path length constraint."""
        cert = path[index]
        constraints = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
        if constraints is None or not constraints.ca:
            raise ForwardedChainError(f"{_describe(cert)}: invalid CA certificate (it issued {_describe(path[index - 1])})")
        intermediates = index - endEntity - 1
        if constraints.path_length is not None and intermediates > constraints.path_length:
            raise ForwardedChainError(f"{_describe(cert)}: path length constraint exceeded")
        _checkUsage(cert, issuesCertificates=True)


# ---------------------------------------------------------------------------------------------------------
# trust rules
def _headerKey(name: str) -> str:
    """A header name as Tornado's HTTPHeaders stores it (``x-ssl-cert`` -> ``X-Ssl-Cert``)."""
    from tornado.httputil import HTTPHeaders

    return next(iter(HTTPHeaders({name: ""}).keys()))

def addressInNetworks(address: str, networks: Sequence[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]]) -> bool:
    """True when the peer ``address`` (an IP, maybe with a ``%zone``) is in one of ``networks``; an IPv4-mapped
    IPv6 address is matched as IPv4, and anything that is not an IP address is in none."""
    try:
        ip: Any = ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks if network.version == ip.version)


def parseNetworks(
    value: Union[str, Sequence[str], None], option: str = "/Systems/Tornado/TrustedProxies"
) -> list[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]]:
    """Networks of a comma list of addresses and CIDRs (``127.0.0.1, 10.0.0.0/8, ::1``); ValueError names a bad
    entry and the ``option`` it was read from."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    networks = []
    for item in items:
        entry = str(item).strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{option}: {entry!r} is not an IP address or CIDR network") from None
    return networks


class TrustedProxies:
    """Decides, per request, whether forwarded certificate headers give the caller's identity."""

    def __init__(
        self,
        networks: Sequence[Any],
        caPath: str,
        crlCheck: str = "auto",
        certHeader: str = "X-SSL-CERT",
        chainHeader: str = "X-SSL-CHAIN",
        verifyHeader: str = "X-Ssl_client_verify",
        stats: Any = None,
    ) -> None:
        self.networks = list(networks)
        self.caPath = caPath
        self.crlCheck = crlCheck
        self.certHeader = certHeader
        self._certKey = _headerKey(certHeader)
        self.chainHeader = chainHeader
        self.verifyHeader = verifyHeader
        self.stats = stats
        self.log = gLogger.getSubLogger("TrustedProxies")
        self._store: Optional[CAStore] = None
        self._storeError: Optional[str] = None
        self._peers: dict[str, bool] = {}
        self._cache: dict[tuple[str, str], tuple[float, ConnectionCredentials]] = {}
        self._lock = threading.Lock()
        self._lastWarning = 0.0
        self._suppressed = 0
        if self.networks:
            self.reload()

    @property
    def enabled(self) -> bool:
        """True when at least one front end is trusted."""
        return bool(self.networks)

    def reload(self) -> None:
        """Re-read the CA directory and CRLs (SIGHUP) and forget every verified chain."""
        try:
            store: Optional[CAStore] = CAStore(self.caPath, self.crlCheck)
            error = None
        except (ForwardedChainError, OSError, ValueError) as exc:
            store, error = None, f"cannot load the CA location {self.caPath}: {exc}"
            self.log.error("Forwarded chains cannot be verified", error)
        with self._lock:
            self._store, self._storeError = store, error
            self._cache.clear()

    def isTrusted(self, address: str) -> bool:
        """True when ``address`` (the TCP peer) is one of the trusted front ends."""
        known = self._peers.get(address)
        if known is not None:
            return known
        trusted = addressInNetworks(address, self.networks)
        if len(self._peers) > 4096:
            self._peers.clear()
        self._peers[address] = trusted
        return trusted

    def _warnUntrusted(self, address: str) -> None:
        if self.stats is not None:
            self.stats.untrustedForwardedHeaders += 1
        now = time.monotonic()
        if now - self._lastWarning < WARNING_INTERVAL and self._lastWarning:
            self._suppressed += 1
            return
        suppressed, self._suppressed = self._suppressed, 0
        self._lastWarning = now
        more = f" ({suppressed} more since the last warning)" if suppressed else ""
        self.log.warn(
            "Forwarded certificate header ignored",
            f"{self.certHeader} from {address}, which is not in /Systems/Tornado/TrustedProxies; "
            f"the connection's own certificate is used{more}",
        )

    def requestCredentials(self, request: Any) -> ConnectionCredentials:
        """Credentials of a Tornado request: its TLS connection's, or a chain forwarded by a trusted front end."""
        return self.credentialsFor(request.headers, request.remote_ip or "", getConnectionCredentials(request.connection.stream))

    def credentialsFor(self, headers: Any, address: str, connection: ConnectionCredentials) -> ConnectionCredentials:
        """The credentials of a request: forwarded ones from a trusted front end, else ``connection``'s."""
        byName = getattr(headers, "_as_list", None)  # Tornado's HTTPHeaders: a dict lookup, no KeyError per request
        if byName is not None and self._certKey not in byName:
            return connection
        certValue = headers.get(self.certHeader)
        if certValue is None:
            return connection
        if not self.networks or not self.isTrusted(address):
            self._warnUntrusted(address)
            return connection
        verified = headers.get(self.verifyHeader, "")
        if verified.strip().upper() != "SUCCESS":
            return self._refused(
                f"the front end at {address} did not verify the client certificate "
                f"({self.verifyHeader}: {verified.strip()[:40] or 'missing'}); it must send SUCCESS"
            )
        chainValue = headers.get(self.chainHeader, "")
        key = (certValue, chainValue)
        now = time.monotonic()
        with self._lock:
            entry = self._cache.get(key)
            store, storeError = self._store, self._storeError
        if entry is not None and entry[0] > now:
            return entry[1]
        if store is None:
            return self._refused(f"forwarded chains cannot be verified: {storeError}")
        try:
            ders = parseCertificateHeader(certValue)
            if not ders:
                raise ForwardedChainError(f"the {self.certHeader} header is empty")
            ders += parseCertificateHeader(chainValue)
            path = store.verify(ders)
        except ForwardedChainError as exc:
            result = self._refused(f"forwarded client certificate from {address} rejected: {exc}")
            self.log.warn("Forwarded chain rejected", f"from {address}: {exc}")
        else:
            result = ConnectionCredentials.fromDERChain(path)
        with self._lock:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = (now + CACHE_SECONDS, result)
        return result

    @staticmethod
    def _refused(message: str) -> ConnectionCredentials:
        return ForwardedRefusal(None, S_ERROR(DErrno.ECERTREAD, message), 0.0)


class ForwardedRefusal(ConnectionCredentials):
    """Credentials of a request whose forwarded chain was refused (counted apart in the metrics)."""

    __slots__ = ()
