"""A certificate chain (leaf first) with its optional private key: DIRAC's X509Chain on ``cryptography``.

Proxy analysis follows RFC 3820 and DIRAC: walking from the leaf, a certificate is a proxy step when its
issuer is the next certificate's subject, its subject is that subject plus one ``CN`` RDN, and it carries
the ProxyCertInfo extension (or, legacy GT2, the added CN is ``proxy``/``limited proxy``). The first
certificate that is not a proxy step is the end-entity: its subject is the identity. The result of that
analysis is computed once per chain and cached; chains built with :meth:`X509Chain.fromDERList` (the TLS
layer's verified chain) are cached per distinct chain, so a server pays the parsing once per user.
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from TornadoServices.Core.ReturnValues import S_ERROR, S_OK
from TornadoServices.Security.X509Certificate import (
    LEGACY_PROXY_CNS,
    OID_DIRAC_GROUP,
    OID_PPL_INDEPENDENT,
    OID_PPL_INHERIT_ALL,
    OID_PPL_LIMITED,
    OID_PROXY_CERT_INFO,
    X509Certificate,
    _readFile,
    _utcnow,
    encodeDIRACGroup,
    encodeProxyCertInfo,
)

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey]

#: Default proxy lifetime, as ``dirac-proxy-init``: 24 hours.
DEFAULT_PROXY_LIFETIME = 24 * 3600
#: Proxies start this much in the past so that a client clock slightly ahead of the server does not matter.
PROXY_CLOCK_SKEW = datetime.timedelta(minutes=5)

#: Policy languages that do not restrict the proxy's rights (anything else is treated as limited).
_FULL_POLICIES = (OID_PPL_INHERIT_ALL, OID_PPL_INDEPENDENT)

_PEM_KEY_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----\s*", re.S)


def generateKey(keyType: str = "rsa", bits: int = 2048, curve: str = "secp256r1") -> PrivateKey:
    """New private key: ``rsa`` (``bits``), ``ec`` (named ``curve``, P-256 by default) or ``ed25519``."""
    if keyType == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if keyType == "ec":
        return ec.generate_private_key(ec.SECP384R1() if curve == "secp384r1" else ec.SECP256R1())
    if keyType == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {keyType!r}: use rsa, ec or ed25519")


def signatureHash(key: PrivateKey) -> Optional[hashes.HashAlgorithm]:
    """Digest to sign with ``key`` (None for EdDSA keys, which hash internally)."""
    return None if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hashes.SHA256()


def privateKeyToPEM(key: PrivateKey, traditional: bool = True) -> bytes:
    """Unencrypted PEM of a key: traditional OpenSSL form for RSA/EC (as Globus writes it), else PKCS#8."""
    fmt = serialization.PrivateFormat.PKCS8
    if traditional and isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def writeSecureFile(path: str, data: bytes, force: bool = True, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` created with ``mode`` from the start (never chmod afterwards).

    Without ``force`` an existing file raises FileExistsError. With ``force`` the content goes to a new
    file in the same directory which then replaces ``path`` atomically, so an old, more permissive
    file's mode is never inherited.
    """
    if not force:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return
    directory = os.path.dirname(os.path.abspath(path))
    tmpPath = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmpPath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmpPath, path)
    except BaseException:
        try:
            os.unlink(tmpPath)
        except OSError:
            pass
        raise


def _asTimedelta(lifetime: Union[int, float, datetime.timedelta]) -> datetime.timedelta:
    return lifetime if isinstance(lifetime, datetime.timedelta) else datetime.timedelta(seconds=lifetime)


def createProxyCertificate(
    issuerCert: x509.Certificate,
    issuerKey: PrivateKey,
    *,
    proxyKey: Optional[PrivateKey] = None,
    keyType: str = "rsa",
    bits: int = 2048,
    lifetime: Union[int, float, datetime.timedelta] = DEFAULT_PROXY_LIFETIME,
    notBefore: Optional[datetime.datetime] = None,
    notAfter: Optional[datetime.datetime] = None,
    clipToIssuer: bool = True,
    limited: bool = False,
    policyLanguage: Optional[x509.ObjectIdentifier] = None,
    pathLen: Optional[int] = None,
    group: Optional[str] = None,
    legacy: bool = False,
    subject: Optional[x509.Name] = None,
    signingKey: Optional[PrivateKey] = None,
    withAKI: bool = True,
    withSKI: bool = True,
    serial: Optional[int] = None,
    extraExtensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> tuple[x509.Certificate, PrivateKey]:
    """Sign a proxy of ``issuerCert`` and return ``(proxy certificate, proxy key)``.

    Default: RFC 3820 proxy, ProxyCertInfo critical with id-ppl-inheritAll (``limited`` -> the Globus
    limited language, ``policyLanguage`` overrides, ``pathLen`` sets pCPathLenConstraint), subject =
    issuer subject + ``CN=<serial number in decimal>``, keyUsage digitalSignature+keyEncipherment
    (critical), AKI/SKI present (VERIFY_X509_STRICT wants them), ``group`` as extension 1.2.42.42
    (IA5String, non-critical), validity from now-5min for ``lifetime`` seconds, clipped to the issuer's
    notAfter unless ``clipToIssuer`` is False. ``legacy`` makes a GT2 proxy (``CN=proxy`` or
    ``CN=limited proxy``, no ProxyCertInfo). ``subject``, ``signingKey``, ``withAKI`` and
    ``extraExtensions`` exist to build deliberately broken proxies for tests.
    """
    key = proxyKey or generateKey(keyType, bits)
    serial = serial or (secrets.randbits(63) | (1 << 62))
    if subject is None:
        cn = ("limited proxy" if limited else "proxy") if legacy else str(serial)
        subject = x509.Name(list(issuerCert.subject.rdns) + [x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, cn)])])
    now = _utcnow()
    start = notBefore or (now - PROXY_CLOCK_SKEW)
    end = notAfter or (now + _asTimedelta(lifetime))
    if clipToIssuer and notAfter is None:
        end = min(end, issuerCert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuerCert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not legacy:
        language = policyLanguage or (OID_PPL_LIMITED if limited else OID_PPL_INHERIT_ALL)
        builder = builder.add_extension(
            x509.UnrecognizedExtension(OID_PROXY_CERT_INFO, encodeProxyCertInfo(language, pathLen)), critical=True
        )
    if withSKI:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if withAKI:
        try:
            ski = issuerCert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuerCert.public_key())  # type: ignore[arg-type]
        builder = builder.add_extension(aki, critical=False)
    if group:
        builder = builder.add_extension(x509.UnrecognizedExtension(OID_DIRAC_GROUP, encodeDIRACGroup(group)), critical=False)
    for ext, critical in extraExtensions:
        builder = builder.add_extension(ext, critical=critical)
    signer = signingKey or issuerKey
    return builder.sign(signer, signatureHash(signer)), key  # type: ignore[arg-type]


@dataclass(frozen=True)
class _ChainInfo:
    """Result of the proxy analysis of one chain (immutable, shareable between connections)."""

    isProxy: bool
    firstNonProxy: int  # index of the end-entity certificate (0 when not a proxy)
    isLimited: bool
    isRFC: bool
    pathLenExceeded: bool
    extensionGroup: Optional[str]
    isIndependent: bool = False  # a proxy step uses id-ppl-independent: the leaf inherits none of the user's rights


def _isProxyStep(cert: X509Certificate, parent: X509Certificate, verified: bool) -> bool:
    """True when ``cert`` is a proxy issued by ``parent``.

    Names must chain exactly, the issuer must not be a CA (proxies are signed by end-entity certificates
    or other proxies) and the proxy marker must be present. For chains read from files the
    signature is checked here; chains that OpenSSL verified are not re-checked, and in them a legacy
    ``CN=proxy`` certificate cannot be a proxy (OpenSSL refuses those as proxies, so one that verified
    is an ordinary CA-issued certificate and is its own identity).
    """
    c, p = cert.certificate, parent.certificate
    if c.issuer != p.subject or cert.lastCN is None or parent.isCA:
        return False
    if list(c.subject.rdns[:-1]) != list(p.subject.rdns):
        return False
    try:
        pci = cert.proxyCertInfo
    except ValueError:
        return False
    if pci is None and (verified or cert.lastCN not in LEGACY_PROXY_CNS):
        return False
    return verified or cert.isSignedBy(parent)


def _analyse(certs: Sequence[X509Certificate], verified: bool) -> _ChainInfo:
    """Proxy analysis of a chain, leaf first.

    A proxy step whose policy language is neither inheritAll nor independent counts as limited: rights
    restricted by a policy we cannot interpret must not become full rights. An independent step anywhere
    between the leaf and the user makes the leaf independent (RFC 3820: nothing is inherited through it).
    """
    i = 0
    while i + 1 < len(certs) and _isProxyStep(certs[i], certs[i + 1], verified):
        i += 1
    if i == 0:
        return _ChainInfo(False, 0, False, False, False, None)
    limited = False
    independent = False
    exceeded = False
    for depth in range(i):
        cert = certs[depth]
        pci = cert.proxyCertInfo
        if pci is None:
            limited = limited or LEGACY_PROXY_CNS.get(cert.lastCN or "", False)
        else:
            limited = limited or pci.policyLanguage not in _FULL_POLICIES
            independent = independent or pci.isIndependent
            # pCPathLenConstraint = how many proxies may follow this one towards the leaf.
            if pci.pathLen is not None and pci.pathLen < depth:
                exceeded = True
    group = None
    for cert in reversed(certs):
        if cert.diracGroup:
            group = cert.diracGroup
            break
    return _ChainInfo(True, i, limited, certs[0].proxyCertInfo is not None, exceeded, group, independent)


@functools.lru_cache(maxsize=2048)
def _verifiedChainCache(ders: tuple[bytes, ...]) -> tuple[tuple[X509Certificate, ...], _ChainInfo]:
    """Parse and analyse a TLS-verified chain once (signatures already checked by OpenSSL)."""
    certs = tuple(X509Certificate.fromDER(der) for der in ders)
    return certs, _analyse(certs, verified=True)


def _registry():
    from TornadoServices.ConfigurationSystem.Client.Helpers import Registry

    return Registry


class X509Chain:
    """Certificate chain, leaf first, with an optional private key for the leaf (DIRAC API, S_OK/S_ERROR)."""

    def __init__(self, certList: Union[Sequence[Any], bool] = False, keyObj: Union[PrivateKey, bool] = False):
        self._certs: list[X509Certificate] = []
        self._key: Optional[PrivateKey] = keyObj or None  # type: ignore[assignment]
        self._info: Optional[_ChainInfo] = None
        self._verified = False
        if certList:
            self._setCerts(certList)  # type: ignore[arg-type]

    def _setCerts(self, certs: Iterable[Union[X509Certificate, x509.Certificate]]) -> None:
        self._certs = [c if isinstance(c, X509Certificate) else X509Certificate(c) for c in certs]
        self._info = None
        self._verified = False

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def fromDERList(cls, ders: Sequence[bytes]) -> "X509Chain":
        """Chain from DER certificates (leaf first) that the TLS layer has verified; parse cached per chain."""
        certs, info = _verifiedChainCache(tuple(bytes(d) for d in ders))
        chain = cls()
        chain._certs = list(certs)
        chain._info = info
        chain._verified = True
        return chain

    @classmethod
    def fromFile(cls, path: str) -> "X509Chain":
        """Chain (and key, when the file holds one) from a PEM file; raises ValueError with the reason."""
        chain = cls()
        result = chain.loadProxyFromFile(path)
        if not result["OK"]:
            result = chain.loadChainFromFile(path)
        if not result["OK"]:
            raise ValueError(result["Message"])
        return chain

    def loadChainFromFile(self, chainLocation: str) -> dict:
        """Load every PEM certificate of a file (leaf first)."""
        result = _readFile(chainLocation, "certificate chain")
        return self.loadChainFromString(result["Value"]) if result["OK"] else result

    def loadChainFromString(self, data: Union[str, bytes]) -> dict:
        """Load every PEM certificate of a string (leaf first)."""
        if isinstance(data, str):
            data = data.encode()
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            return S_ERROR(f"no valid PEM certificate found: {exc}")
        self._setCerts(certs)
        return S_OK()

    def loadKeyFromFile(self, keyLocation: str, password: Union[str, bytes, bool] = False) -> dict:
        """Load the private key (PEM, optionally encrypted) of the leaf certificate."""
        result = _readFile(keyLocation, "private key")
        return self.loadKeyFromString(result["Value"], password) if result["OK"] else result

    def loadKeyFromString(self, pemData: Union[str, bytes], password: Union[str, bytes, bool] = False) -> dict:
        """Load the first PEM private key found in a string."""
        if isinstance(pemData, str):
            pemData = pemData.encode()
        match = _PEM_KEY_RE.search(pemData)
        if not match:
            return S_ERROR("no PEM private key found")
        pwd = password.encode() if isinstance(password, str) else (password or None)
        try:
            key = serialization.load_pem_private_key(match.group(0), password=pwd)  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            return S_ERROR(f"cannot load private key: {exc}")
        self._key = key  # type: ignore[assignment]
        return S_OK()

    def loadProxyFromFile(self, chainLocation: str) -> dict:
        """Load a Globus proxy file: certificate, private key, issuer chain."""
        result = _readFile(chainLocation, "proxy file")
        return self.loadProxyFromString(result["Value"]) if result["OK"] else result

    def loadProxyFromString(self, pemData: Union[str, bytes]) -> dict:
        """Load a Globus proxy string: certificates and the (unencrypted) private key."""
        result = self.loadChainFromString(pemData)
        if not result["OK"]:
            return result
        return self.loadKeyFromString(pemData)

    # -- analysis --------------------------------------------------------------------------
    @property
    def info(self) -> _ChainInfo:
        """Proxy analysis of the chain (computed once)."""
        if self._info is None:
            if not self._certs:
                raise ValueError("empty certificate chain")
            self._info = _analyse(self._certs, verified=self._verified)
        return self._info

    @property
    def certificates(self) -> list[X509Certificate]:
        """The certificates, leaf first."""
        return self._certs

    @property
    def privateKey(self) -> Optional[PrivateKey]:
        """The leaf's private key, if loaded."""
        return self._key

    def _check(self) -> Optional[dict]:
        return None if self._certs else S_ERROR("no certificate chain loaded")

    def getCertList(self) -> dict:
        """S_OK(list of X509Certificate, leaf first)."""
        return self._check() or S_OK(list(self._certs))

    def getPKeyObj(self) -> dict:
        """S_OK(private key object)."""
        return S_OK(self._key) if self._key is not None else S_ERROR("no private key loaded")

    def getCertInChain(self, certPos: int = 0) -> dict:
        """S_OK(X509Certificate at position certPos; negative counts from the end)."""
        if err := self._check():
            return err
        try:
            return S_OK(self._certs[certPos])
        except IndexError:
            return S_ERROR(f"no certificate at position {certPos}: the chain holds {len(self._certs)}")

    def getIssuerCert(self) -> dict:
        """S_OK(end-entity certificate) for a proxy, else the last certificate of the chain."""
        if err := self._check():
            return err
        if self.info.isProxy:
            return S_OK(self._certs[self.info.firstNonProxy])
        return S_OK(self._certs[-1])

    def getNumCertsInChain(self) -> dict:
        """S_OK(number of certificates)."""
        return self._check() or S_OK(len(self._certs))

    def isProxy(self) -> dict:
        """S_OK(True) when the leaf is a proxy (RFC 3820 or legacy) of the rest of the chain."""
        return self._check() or S_OK(self.info.isProxy)

    def isLimitedProxy(self) -> dict:
        """S_OK(True) when any proxy step uses the limited policy (or legacy ``CN=limited proxy``)."""
        return self._check() or S_OK(self.info.isProxy and self.info.isLimited)

    def isIndependentProxy(self) -> dict:
        """S_OK(True) when a proxy step uses id-ppl-independent (RFC 3820: no rights inherited from the user)."""
        return self._check() or S_OK(self.info.isProxy and self.info.isIndependent)

    def isRFC(self) -> dict:
        """S_OK(True) when the leaf is an RFC 3820 proxy."""
        return self._check() or S_OK(self.info.isRFC)

    def isVOMS(self) -> dict:
        """S_OK(True) when a proxy in the chain carries VOMS attributes (detected, not interpreted)."""
        if err := self._check():
            return err
        if not self.info.isProxy:
            return S_OK(False)
        return S_OK(any(c.hasVOMSExtensions()["Value"] for c in self._certs[: self.info.firstNonProxy]))

    def isPUSP(self) -> dict:
        """S_OK(False): per-user sub-proxies are not supported."""
        return self._check() or S_OK(False)

    def isValidProxy(self, ignoreDefault: bool = False) -> dict:
        """S_OK(True) for an unexpired proxy with a group (extension, or default unless ignoreDefault)."""
        if err := self._check():
            return err
        if not self.info.isProxy:
            return S_ERROR("chain is not a proxy: its leaf is not an RFC 3820 or legacy proxy of the next certificate")
        if self.getRemainingSecs()["Value"] == 0:
            return S_ERROR("proxy has expired: create a new one with tornado-proxy-init")
        if self.info.pathLenExceeded:
            return S_ERROR("proxy chain exceeds a pCPathLenConstraint")
        group = self.getDIRACGroup(ignoreDefault=ignoreDefault)
        if not group["OK"] or not group["Value"]:
            return S_ERROR("proxy has no DIRAC group: create it with tornado-proxy-init --group <group>")
        return S_OK(True)

    @property
    def identityDN(self) -> str:
        """Subject of the end-entity certificate (the leaf's for a non-proxy)."""
        return self._certs[self.info.firstNonProxy].subjectDN

    def getDIRACGroup(self, ignoreDefault: bool = False) -> dict:
        """S_OK(group) of a proxy: extension 1.2.42.42 from the end-entity side, else the identity's default group."""
        if err := self._check():
            return err
        if not self.info.isProxy:
            return S_ERROR("a group is only defined for proxies: this chain is not one")
        if self.info.extensionGroup:
            return S_OK(self.info.extensionGroup)
        if ignoreDefault:
            return S_OK(False)
        return _registry().findDefaultGroupForDN(self.identityDN)

    def hasExpired(self) -> dict:
        """S_OK(True) when any certificate of the chain has expired."""
        return self._check() or S_OK(self.getRemainingSecs()["Value"] == 0)

    def getNotAfterDate(self) -> dict:
        """S_OK(earliest notAfter of the chain)."""
        return self._check() or S_OK(min(c.notAfter for c in self._certs))

    def getRemainingSecs(self) -> dict:
        """S_OK(seconds until the first certificate of the chain expires, >= 0)."""
        if err := self._check():
            return err
        now = _utcnow()
        return S_OK(min(c.remainingSeconds(now) for c in self._certs))

    def getStrength(self) -> dict:
        """S_OK(key size in bits of the leaf's public key)."""
        if err := self._check():
            return err
        return S_OK(getattr(self._certs[0].certificate.public_key(), "key_size", 0))

    def hash(self) -> dict:
        """S_OK(SHA-256 hex digest of the chain's DER), a cache key."""
        if err := self._check():
            return err
        digest = hashlib.sha256()
        for cert in self._certs:
            digest.update(cert.der())
        return S_OK(digest.hexdigest())

    # -- credentials -----------------------------------------------------------------------
    def getCredentials(self, ignoreDefault: bool = False, withRegistryInfo: bool = True) -> dict:
        """S_OK(credential dict) in DIRAC's shape.

        Keys: ``subject``, ``issuer`` (of the leaf), ``secondsLeft`` (min over the chain), ``isProxy``,
        ``isLimitedProxy``, ``validDN``, ``validGroup``, ``DN`` (identity for a proxy), ``identity``
        (proxies), ``group`` and ``VO`` (proxies whose group is known: extension, else the Registry
        default of the identity DN unless ``ignoreDefault``). With ``withRegistryInfo`` the Registry
        adds ``username``/``validDN``/``validGroup``/``groupProperties`` (users) or ``hostname`` and
        group ``hosts`` (hosts), as DIRAC does; the server uses ``withRegistryInfo=False``.
        """
        if err := self._check():
            return err
        info = self.info
        leaf = self._certs[0]
        cred: dict[str, Any] = {
            "subject": leaf.subjectDN,
            "issuer": leaf.issuerDN,
            "secondsLeft": self.getRemainingSecs()["Value"],
            "isProxy": info.isProxy,
            "isLimitedProxy": info.isProxy and info.isLimited,
            "validDN": False,
            "validGroup": False,
        }
        if info.isProxy:
            cred["DN"] = cred["identity"] = self.identityDN
            group = self.getDIRACGroup(ignoreDefault=ignoreDefault)
            if group["OK"] and group["Value"]:
                cred["group"] = group["Value"]
                cred["VO"] = self._voForGroup(group["Value"])
            if withRegistryInfo:
                self._addUserRegistryInfo(cred)
        else:
            cred["DN"] = cred["subject"]
            if withRegistryInfo:
                self._addEntityRegistryInfo(cred)
        return S_OK(cred)

    @staticmethod
    def _voForGroup(group: str) -> str:
        """VO of a group: ``/DIRAC/VirtualOrganization`` when set, else the group's ``VO`` option, else ""."""
        return _registry().getVOForGroup(group) or ""

    @staticmethod
    def _addUserRegistryInfo(cred: dict) -> None:
        registry = _registry()
        result = registry.getUsernameForDN(cred["DN"])
        if not result["OK"]:
            return
        cred["username"] = result["Value"]
        cred["validDN"] = True
        if "group" in cred:
            cred["groupProperties"] = registry.getPropertiesForGroup(cred["group"], [])
            cred["validGroup"] = cred["username"] in registry.getUsersInGroup(cred["group"])

    @staticmethod
    def _addEntityRegistryInfo(cred: dict) -> None:
        registry = _registry()
        result = registry.getHostnameForDN(cred["DN"])
        if result["OK"]:
            cred["group"] = "hosts"
            cred["hostname"] = result["Value"]
            cred["validDN"] = True
            cred["validGroup"] = True
            cred["groupProperties"] = registry.getPropertiesForHost(result["Value"], [])
            return
        result = registry.getUsernameForDN(cred["DN"])
        if result["OK"]:
            cred["username"] = result["Value"]
            cred["validDN"] = True

    # -- proxy generation ------------------------------------------------------------------
    def generateProxyToString(
        self,
        lifetime: int,
        diracGroup: Union[str, bool] = False,
        strength: int = 2048,
        limited: bool = False,
        proxyKey: Union[PrivateKey, bool] = False,
        rfc: bool = True,
    ) -> dict:
        """S_OK(Globus proxy PEM: new proxy certificate, its key, then this chain) valid ``lifetime`` seconds.

        The lifetime is clipped to what the chain has left; a limited chain only yields limited proxies.
        """
        if err := self._check():
            return err
        if self._key is None:
            return S_ERROR("cannot sign a proxy: no private key loaded for the certificate")
        try:
            info = self.info
            if info.isProxy:
                pci = self._certs[0].proxyCertInfo
                limited = limited or info.isLimited
                if pci is not None and pci.pathLen == 0:
                    return S_ERROR("cannot delegate further: the proxy's pCPathLenConstraint is 0")
            remaining = self.getRemainingSecs()["Value"]
            if remaining <= 0:
                return S_ERROR("cannot sign a proxy: the certificate chain has expired")
            cert, key = createProxyCertificate(
                self._certs[0].certificate,
                self._key,
                proxyKey=proxyKey or None,  # type: ignore[arg-type]
                bits=strength,
                lifetime=min(int(lifetime), remaining),
                limited=limited,
                group=diracGroup or None,  # type: ignore[arg-type]
                legacy=not rfc,
            )
        except (ValueError, TypeError) as exc:
            return S_ERROR(f"cannot generate proxy: {exc}")
        pem = cert.public_bytes(serialization.Encoding.PEM) + privateKeyToPEM(key)
        pem += b"".join(c.certificate.public_bytes(serialization.Encoding.PEM) for c in self._certs)
        return S_OK(pem.decode())

    def generateProxyToFile(
        self,
        filePath: str,
        lifetime: int,
        diracGroup: Union[str, bool] = False,
        strength: int = 2048,
        limited: bool = False,
        rfc: bool = True,
    ) -> dict:
        """Write a new proxy (see generateProxyToString) to ``filePath`` with mode 0600; S_OK(filePath)."""
        result = self.generateProxyToString(lifetime, diracGroup, strength, limited, rfc=rfc)
        if not result["OK"]:
            return result
        try:
            writeSecureFile(filePath, result["Value"].encode(), force=True)
        except OSError as exc:
            return S_ERROR(f"cannot write proxy file {filePath}: {exc.strerror or exc}")
        return S_OK(filePath)

    # -- dumps -----------------------------------------------------------------------------
    def dumpChainToString(self) -> dict:
        """S_OK(PEM of every certificate)."""
        return self._check() or S_OK("".join(c.asPem() for c in self._certs))

    def dumpPKeyToString(self) -> dict:
        """S_OK(unencrypted PEM of the private key)."""
        if self._key is None:
            return S_ERROR("no private key loaded")
        return S_OK(privateKeyToPEM(self._key).decode())

    def dumpAllToString(self) -> dict:
        """S_OK(Globus layout: leaf certificate, private key, rest of the chain)."""
        if err := self._check():
            return err
        parts = [self._certs[0].asPem()]
        if self._key is not None:
            parts.append(privateKeyToPEM(self._key).decode())
        parts.extend(c.asPem() for c in self._certs[1:])
        return S_OK("".join(parts))

    def __repr__(self) -> str:
        if not self._certs:
            return "<X509Chain (empty)>"
        return f"<X509Chain {len(self._certs)} certs, leaf {self._certs[0].subjectDN}>"
