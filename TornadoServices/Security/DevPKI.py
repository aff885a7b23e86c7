"""Development and test PKI: a CA that issues host and user certificates, CRLs, proxies, hashed CA dirs.

Everything a security test matrix needs is an option: validity windows in the past or future, key
type and size, missing digitalSignature key usage, revocation, and RFC 3820 proxies, including broken
ones (see :func:`makeProxy`). Files are written with :func:`writeSecureFile` (keys 0600).

Example::

    ca = CertificateAuthority()
    user = ca.issueUser("jane")
    proxy = makeProxy(user, group="dirac_user")
    proxy.writeProxyFile("/tmp/x509up_u1000")
    writeCADirectory("/tmp/certificates", [ca])
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from TornadoServices.Security.X509Certificate import OID_PPL_INDEPENDENT, _utcnow, formatDN, opensslNameHash, parseDN
from TornadoServices.Security.X509Chain import (
    DEFAULT_PROXY_LIFETIME,
    PrivateKey,
    X509Chain,
    createProxyCertificate,
    generateKey,
    privateKeyToPEM,
    signatureHash,
    writeSecureFile,
)

DEV_CA_DN = "/DC=org/DC=tornadoservices/CN=TornadoServices Development CA"
DEV_HOST_DN = "/DC=org/DC=tornadoservices/OU=Hosts/CN=localhost"
DEV_USER_DN = "/DC=org/DC=tornadoservices/OU=Users/CN=devuser"
DEV_USER_NAME = "devuser"

#: Certificates start this long before "now" so that a few seconds of clock skew do not matter.
BACKDATE = datetime.timedelta(minutes=5)

NameLike = Union[str, x509.Name]


def userDN(name: str) -> str:
    """Development DN of a user: ``/DC=org/DC=tornadoservices/OU=Users/CN=<name>``."""
    return f"/DC=org/DC=tornadoservices/OU=Users/CN={name}"


def hostDN(hostname: str) -> str:
    """Development DN of a host: ``/DC=org/DC=tornadoservices/OU=Hosts/CN=<hostname>``."""
    return f"/DC=org/DC=tornadoservices/OU=Hosts/CN={hostname}"


def _name(value: NameLike) -> x509.Name:
    return parseDN(value) if isinstance(value, str) else value


def _window(
    days: float, notBefore: Optional[datetime.datetime], notAfter: Optional[datetime.datetime]
) -> tuple[datetime.datetime, datetime.datetime]:
    start = notBefore or (_utcnow() - BACKDATE)
    return start, notAfter or (start + BACKDATE + datetime.timedelta(days=days))


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _keyUsage(digitalSignature: bool, keyEncipherment: bool, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digitalSignature,
        content_commitment=False,
        key_encipherment=keyEncipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class Credential:
    """A certificate, its private key and its issuer chain (issuer first, root excluded unless added)."""

    cert: x509.Certificate
    key: PrivateKey
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def dn(self) -> str:
        """Subject in the OpenSSL one-line form."""
        return formatDN(self.cert.subject)

    @property
    def issuerDN(self) -> str:
        """Issuer in the OpenSSL one-line form."""
        return formatDN(self.cert.issuer)

    def certPEM(self) -> bytes:
        """PEM of the certificate alone."""
        return _pem(self.cert)

    def keyPEM(self, traditional: bool = True) -> bytes:
        """Unencrypted PEM of the private key (traditional OpenSSL form, or PKCS#8)."""
        return privateKeyToPEM(self.key, traditional)

    def chainPEM(self) -> bytes:
        """PEM of the certificate followed by its issuer chain."""
        return b"".join(_pem(c) for c in [self.cert, *self.chain])

    def proxyPEM(self, traditional: bool = True) -> bytes:
        """Globus proxy layout: certificate, private key, issuer chain."""
        return _pem(self.cert) + self.keyPEM(traditional) + b"".join(_pem(c) for c in self.chain)

    def writeCertAndKey(self, certPath: str, keyPath: str, force: bool = False, withChain: bool = False) -> None:
        """Write certificate (0644; with its chain if asked) and key (0600)."""
        writeSecureFile(certPath, self.chainPEM() if withChain else self.certPEM(), force=force, mode=0o644)
        writeSecureFile(keyPath, self.keyPEM(), force=force, mode=0o600)

    def writeProxyFile(self, path: str, force: bool = True, traditional: bool = True) -> str:
        """Write the Globus proxy file (mode 0600) and return its path."""
        writeSecureFile(path, self.proxyPEM(traditional), force=force, mode=0o600)
        return path

    def asX509Chain(self) -> X509Chain:
        """This credential as an X509Chain with its key."""
        return X509Chain([self.cert, *self.chain], self.key)

    def derList(self) -> list[bytes]:
        """DER of the certificate and its chain, leaf first."""
        return [c.public_bytes(serialization.Encoding.DER) for c in [self.cert, *self.chain]]


class CertificateAuthority:
    """A CA (self-signed root, or intermediate when ``parent`` is given) that issues certificates and CRLs."""

    def __init__(
        self,
        dn: NameLike = DEV_CA_DN,
        *,
        keyType: str = "rsa",
        bits: int = 2048,
        days: float = 3650,
        notBefore: Optional[datetime.datetime] = None,
        notAfter: Optional[datetime.datetime] = None,
        parent: Optional["CertificateAuthority"] = None,
        pathLength: Optional[int] = None,
    ):
        self.key: PrivateKey = generateKey(keyType, bits)
        self.parent = parent
        self.revoked: dict[int, datetime.datetime] = {}
        name = _name(dn)
        start, end = _window(days, notBefore, notAfter)
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        signer = parent.key if parent else self.key
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(parent.cert.subject if parent else name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=pathLength), critical=True)
            .add_extension(_keyUsage(False, False, ca=True), critical=True)
            .add_extension(ski, critical=False)
        )
        if parent:
            builder = builder.add_extension(parent._aki(), critical=False)
        else:
            builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        self.cert: x509.Certificate = builder.sign(signer, signatureHash(signer))  # type: ignore[arg-type]

    # -- identity --------------------------------------------------------------------------
    @property
    def dn(self) -> str:
        """Subject in the OpenSSL one-line form."""
        return formatDN(self.cert.subject)

    @property
    def hash(self) -> str:
        """``openssl x509 -hash`` of the CA subject."""
        return opensslNameHash(self.cert.subject)

    @property
    def chain(self) -> list[x509.Certificate]:
        """This CA's certificate followed by its parents' (for intermediates)."""
        return [self.cert, *(self.parent.chain if self.parent else [])]

    def certPEM(self) -> bytes:
        """PEM of the CA certificate."""
        return _pem(self.cert)

    def keyPEM(self) -> bytes:
        """Unencrypted PEM of the CA key."""
        return privateKeyToPEM(self.key)

    def _aki(self) -> x509.AuthorityKeyIdentifier:
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    # -- issuing ---------------------------------------------------------------------------
    def issueCertificate(
        self,
        dn: NameLike,
        *,
        keyType: str = "rsa",
        bits: int = 2048,
        key: Optional[PrivateKey] = None,
        days: float = 365,
        notBefore: Optional[datetime.datetime] = None,
        notAfter: Optional[datetime.datetime] = None,
        digitalSignature: bool = True,
        keyEncipherment: bool = True,
        keyUsage: bool = True,
        extendedKeyUsage: Optional[Sequence[x509.ObjectIdentifier]] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
        sans: Sequence[str] = (),
        isCA: bool = False,
        withAKI: bool = True,
        serial: Optional[int] = None,
        extraExtensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    ) -> Credential:
        """Issue an end-entity certificate.

        ``sans`` entries that parse as IP addresses become IP SANs, others DNS names. ``keyUsage=False``
        omits the extension; ``digitalSignature=False`` keeps it without that bit (a user whose proxies
        OpenSSL must refuse). ``extendedKeyUsage=None`` omits EKU. ``notBefore``/``notAfter`` may lie
        in the past or future (expired / not yet valid certificates).
        """
        key = key or generateKey(keyType, bits)
        start, end = _window(days, notBefore, notAfter)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(dn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial or x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=isCA, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if keyUsage:
            builder = builder.add_extension(_keyUsage(digitalSignature, keyEncipherment, ca=isCA), critical=True)
        if extendedKeyUsage:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(extendedKeyUsage)), critical=False)
        if sans:
            names: list[x509.GeneralName] = []
            for san in sans:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(san)))
                except ValueError:
                    names.append(x509.DNSName(san))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        if withAKI:
            builder = builder.add_extension(self._aki(), critical=False)
        for ext, critical in extraExtensions:
            builder = builder.add_extension(ext, critical=critical)
        cert = builder.sign(self.key, signatureHash(self.key))  # type: ignore[arg-type]
        return Credential(cert, key, self.chain if self.parent else [])

    def issueHost(self, hostname: str = "localhost", dn: Optional[NameLike] = None, sans: Optional[Sequence[str]] = None, **kwargs) -> Credential:
        """Host certificate: SANs (default ``hostname``, and 127.0.0.1/::1 for localhost), EKU serverAuth+clientAuth."""
        if sans is None:
            sans = [hostname, "127.0.0.1", "::1"] if hostname == "localhost" else [hostname]
        kwargs.setdefault("extendedKeyUsage", (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH))
        return self.issueCertificate(dn or hostDN(hostname), sans=sans, **kwargs)

    def issueUser(self, name: str = DEV_USER_NAME, dn: Optional[NameLike] = None, **kwargs) -> Credential:
        """User certificate ``/DC=org/DC=tornadoservices/OU=Users/CN=<name>`` (EKU clientAuth); options as issueCertificate."""
        return self.issueCertificate(dn or userDN(name), **kwargs)

    def intermediate(self, dn: NameLike, **kwargs) -> "CertificateAuthority":
        """A sub-CA signed by this CA."""
        return CertificateAuthority(dn, parent=self, **kwargs)

    # -- revocation ------------------------------------------------------------------------
    def revoke(self, cert: Union[x509.Certificate, Credential, int], when: Optional[datetime.datetime] = None) -> None:
        """Add a certificate (or serial number) to this CA's revocation list."""
        if isinstance(cert, Credential):
            cert = cert.cert
        serial = cert if isinstance(cert, int) else cert.serial_number
        self.revoked[serial] = when or (_utcnow() - datetime.timedelta(seconds=1))

    def makeCRL(
        self,
        *,
        days: float = 30,
        lastUpdate: Optional[datetime.datetime] = None,
        nextUpdate: Optional[datetime.datetime] = None,
        number: int = 1,
    ) -> x509.CertificateRevocationList:
        """CRL of the revoked serials; ``nextUpdate`` in the past gives an expired CRL."""
        last = lastUpdate or (_utcnow() - BACKDATE)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(last)
            .next_update(nextUpdate or (last + datetime.timedelta(days=days)))
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(self._aki(), critical=False)
        )
        for serial, when in sorted(self.revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        return builder.sign(self.key, signatureHash(self.key))  # type: ignore[arg-type]

    def crlPEM(self, **kwargs) -> bytes:
        """PEM of :meth:`makeCRL`."""
        return self.makeCRL(**kwargs).public_bytes(serialization.Encoding.PEM)


def makeProxy(
    issuer: Credential,
    *,
    lifetime: Union[int, float, datetime.timedelta] = DEFAULT_PROXY_LIFETIME,
    notBefore: Optional[datetime.datetime] = None,
    notAfter: Optional[datetime.datetime] = None,
    clipToIssuer: bool = True,
    keyType: str = "rsa",
    bits: int = 2048,
    limited: bool = False,
    independent: bool = False,
    policyLanguage: Optional[x509.ObjectIdentifier] = None,
    pathLen: Optional[int] = None,
    group: Optional[str] = None,
    legacy: bool = False,
    subject: Optional[NameLike] = None,
    signingKey: Optional[PrivateKey] = None,
    withAKI: bool = True,
    extraExtensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> Credential:
    """Proxy of ``issuer`` (a user credential or another proxy); its chain is the issuer plus its chain.

    Normal: RFC 3820 inheritAll, ``group`` in extension 1.2.42.42. Variants: ``limited``, ``independent``
    (policy languages), ``pathLen`` (pCPathLenConstraint), ``legacy`` (GT2 ``CN=proxy``, no extension),
    ``subject`` (wrong subject), ``signingKey`` (signed by another key), ``withAKI=False``,
    ``notBefore``/``notAfter`` (expired / not yet valid), ``clipToIssuer=False`` (outlives the issuer),
    ``extraExtensions`` (e.g. basicConstraints CA:TRUE or a subjectAltName that RFC 3820 forbids).
    """
    language = policyLanguage or (OID_PPL_INDEPENDENT if independent else None)
    cert, key = createProxyCertificate(
        issuer.cert,
        issuer.key,
        keyType=keyType,
        bits=bits,
        lifetime=lifetime,
        notBefore=notBefore,
        notAfter=notAfter,
        clipToIssuer=clipToIssuer,
        limited=limited,
        policyLanguage=language,
        pathLen=pathLen,
        group=group,
        legacy=legacy,
        subject=_name(subject) if subject is not None else None,
        signingKey=signingKey,
        withAKI=withAKI,
        extraExtensions=extraExtensions,
    )
    return Credential(cert, key, [issuer.cert, *issuer.chain])


def writeCADirectory(
    directory: str,
    cas: Iterable[CertificateAuthority],
    *,
    withCRL: bool = True,
    crlOptions: Optional[dict] = None,
    force: bool = True,
) -> list[str]:
    """Write an OpenSSL hashed CA directory: ``<hash>.N`` certificates and ``<hash>.rN`` CRLs; return the paths.

    ``N`` counts up when two CA subjects share a hash, as ``openssl rehash`` does.
    """
    os.makedirs(directory, exist_ok=True)
    written: list[str] = []
    used: dict[str, int] = {}
    for ca in cas:
        stem = ca.hash
        index = used.get(stem, 0)
        used[stem] = index + 1
        certPath = os.path.join(directory, f"{stem}.{index}")
        writeSecureFile(certPath, ca.certPEM(), force=force, mode=0o644)
        written.append(certPath)
        if withCRL:
            crlPath = os.path.join(directory, f"{stem}.r{index}")
            writeSecureFile(crlPath, ca.crlPEM(**(crlOptions or {})), force=force, mode=0o644)
            written.append(crlPath)
    return written
