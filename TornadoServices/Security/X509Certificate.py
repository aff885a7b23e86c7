"""One X.509 certificate with DIRAC's accessors, on ``cryptography``.

Also home of the helpers every other Security module shares: OpenSSL's one-line DN form
(``/DC=org/DC=example/CN=Jane Doe``), OpenSSL's subject-name hash (``<hash>.0`` CA files), and the
small DER codec for the two extensions ``cryptography`` does not know: RFC 3820 ProxyCertInfo and
DIRAC's group extension.
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Optional

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID, ObjectIdentifier

from TornadoServices.Core.ReturnValues import S_ERROR, S_OK

#: RFC 3820 ProxyCertInfo extension (critical in a proxy).
OID_PROXY_CERT_INFO = ObjectIdentifier("1.3.6.1.5.5.7.1.14")
#: DIRAC group extension: DER IA5String holding the group name.
OID_DIRAC_GROUP = ObjectIdentifier("1.2.42.42")
#: VOMS attribute certificate extension (only detected, never interpreted).
OID_VOMS_AC = ObjectIdentifier("1.3.6.1.4.1.8005.100.100.5")
#: Proxy policy languages.
OID_PPL_INHERIT_ALL = ObjectIdentifier("1.3.6.1.5.5.7.21.1")
OID_PPL_INDEPENDENT = ObjectIdentifier("1.3.6.1.5.5.7.21.2")
OID_PPL_LIMITED = ObjectIdentifier("1.3.6.1.4.1.3536.1.1.1.9")

#: Legacy (GT2) proxy common names and whether each is limited.
LEGACY_PROXY_CNS = {"proxy": False, "limited proxy": True}

# OpenSSL short names (OBJ_nid2sn) for the attribute types met in certificate subjects.
_SHORT_NAMES: dict[str, str] = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.13": "description",
    "2.5.4.15": "businessCategory",
    "2.5.4.16": "postalAddress",
    "2.5.4.17": "postalCode",
    "2.5.4.18": "postOfficeBox",
    "2.5.4.20": "telephoneNumber",
    "2.5.4.41": "name",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.45": "x500UniqueIdentifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.72": "role",
    "2.5.4.97": "organizationIdentifier",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.3": "mail",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.2.840.113549.1.9.2": "unstructuredName",
    "1.2.840.113549.1.9.8": "unstructuredAddress",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}
_OIDS_BY_SHORT_NAME = {v: k for k, v in _SHORT_NAMES.items()}
_OIDS_BY_SHORT_NAME.update({"Email": "1.2.840.113549.1.9.1", "E": "1.2.840.113549.1.9.1", "userId": _OIDS_BY_SHORT_NAME["UID"]})

# ASN.1 universal tags of the string types OpenSSL canonicalises for hashing (ASN1_MASK_CANON).
_UTF8, _PRINTABLE, _T61, _IA5, _VISIBLE, _UNIVERSAL, _BMP = 12, 19, 20, 22, 26, 28, 30
_CANON_TAGS = frozenset({_UTF8, _PRINTABLE, _T61, _IA5, _VISIBLE, _UNIVERSAL, _BMP})
_OPENSSL_SPACE = b" \t\n\v\f\r"


# ---------------------------------------------------------------------------------------------
# Minimal DER codec (definite lengths only; enough for the extensions we build and read)
# ---------------------------------------------------------------------------------------------


def _derLength(n: int) -> bytes:
    """DER length octets for a content of ``n`` bytes."""
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def derTLV(tag: int, content: bytes) -> bytes:
    """One DER element with a single-byte tag."""
    return bytes([tag]) + _derLength(len(content)) + content


def derInteger(value: int) -> bytes:
    """DER INTEGER (non-negative values only, which is all certificates need here)."""
    if value < 0:
        raise ValueError("negative DER INTEGER not supported")
    return derTLV(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def derOID(oid: ObjectIdentifier | str) -> bytes:
    """DER OBJECT IDENTIFIER from its dotted form."""
    arcs = [int(a) for a in (oid.dotted_string if isinstance(oid, ObjectIdentifier) else oid).split(".")]
    if len(arcs) < 2:
        raise ValueError(f"invalid OID {oid!r}")
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return derTLV(0x06, bytes(body))


def derRead(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """Read one element at ``pos``: ``(tag, content, nextPos)``; ValueError when malformed."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte DER tags not supported")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise ValueError("non-minimal DER length")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER content")
    return tag, bytes(data[pos:end]), end


def derDecodeOID(content: bytes) -> ObjectIdentifier:
    """Dotted OID from the content octets of an OBJECT IDENTIFIER."""
    if not content or content[-1] & 0x80:
        raise ValueError("bad OID encoding")
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ObjectIdentifier(".".join(str(a) for a in head + arcs[1:]))


@dataclass(frozen=True)
class ProxyCertInfo:
    """Decoded RFC 3820 ProxyCertInfo: path length constraint, policy language, optional policy."""

    pathLen: Optional[int]
    policyLanguage: ObjectIdentifier
    policy: Optional[bytes] = None

    @property
    def isLimited(self) -> bool:
        """True for the Globus limited-proxy policy language."""
        return self.policyLanguage == OID_PPL_LIMITED

    @property
    def isIndependent(self) -> bool:
        """True for id-ppl-independent (no rights inherited from the issuer)."""
        return self.policyLanguage == OID_PPL_INDEPENDENT


def encodeProxyCertInfo(
    policyLanguage: ObjectIdentifier | str = OID_PPL_INHERIT_ALL,
    pathLen: Optional[int] = None,
    policy: Optional[bytes] = None,
) -> bytes:
    """DER of ProxyCertInfo ::= SEQUENCE { pCPathLenConstraint INTEGER OPTIONAL, proxyPolicy ProxyPolicy }."""
    proxyPolicy = derOID(policyLanguage)
    if policy is not None:
        proxyPolicy += derTLV(0x04, policy)
    body = b"" if pathLen is None else derInteger(pathLen)
    return derTLV(0x30, body + derTLV(0x30, proxyPolicy))


def decodeProxyCertInfo(der: bytes) -> ProxyCertInfo:
    """Parse ProxyCertInfo DER (also the old draft form without pathLen); ValueError when malformed."""
    tag, content, end = derRead(der)
    if tag != 0x30 or end != len(der):
        raise ValueError("ProxyCertInfo is not a single SEQUENCE")
    pathLen = None
    tag, inner, pos = derRead(content)
    if tag == 0x02:
        if not inner or inner[0] & 0x80:
            raise ValueError("bad pCPathLenConstraint")
        pathLen = int.from_bytes(inner, "big")
        tag, inner, pos = derRead(content, pos)
    if tag != 0x30 or pos != len(content):
        raise ValueError("ProxyPolicy is not a SEQUENCE")
    tag, oidBytes, ppos = derRead(inner)
    if tag != 0x06:
        raise ValueError("ProxyPolicy has no policy language OID")
    policy = None
    if ppos < len(inner):
        tag, policy, ppos = derRead(inner, ppos)
        if tag != 0x04 or ppos != len(inner):
            raise ValueError("bad ProxyPolicy policy field")
    return ProxyCertInfo(pathLen, derDecodeOID(oidBytes), policy)


def encodeDIRACGroup(group: str) -> bytes:
    """DER IA5String of a DIRAC group name (extension 1.2.42.42)."""
    return derTLV(0x16, group.encode("ascii"))


def decodeDIRACGroup(der: bytes) -> str:
    """Group name from the DIRAC group extension value (IA5String; UTF8String tolerated)."""
    tag, content, end = derRead(der)
    if tag not in (0x16, 0x0C, 0x13) or end != len(der):
        raise ValueError("DIRAC group extension is not a string")
    return content.decode("utf-8")


# ---------------------------------------------------------------------------------------------
# Distinguished names
# ---------------------------------------------------------------------------------------------


def _attrType(attr: x509.NameAttribute) -> int:
    """ASN.1 tag of the attribute value as it was encoded (UTF8String when unknown)."""
    asn1Type = getattr(attr, "_type", None)
    return int(asn1Type.value) if asn1Type is not None else _UTF8


def _attrBytes(attr: x509.NameAttribute, tag: int) -> bytes:
    """The raw content octets of an attribute value, as OpenSSL sees them."""
    value = attr.value
    if isinstance(value, bytes):
        return value
    if tag == _BMP:
        return value.encode("utf-16-be")
    if tag == _UNIVERSAL:
        return value.encode("utf-32-be")
    if tag == _T61:
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            return value.encode("utf-8")
    return value.encode("utf-8")


def _shortName(oid: ObjectIdentifier) -> str:
    """OpenSSL's short name for an attribute type, dotted form when unknown."""
    return _SHORT_NAMES.get(oid.dotted_string, oid.dotted_string)


def formatDN(name: x509.Name) -> str:
    """DN in OpenSSL's one-line "compat" form (``openssl x509 -subject -nameopt compat``), as DIRAC stores it."""
    parts: list[str] = []
    for rdn in name.rdns:
        sep = "/"
        for attr in rdn:
            raw = _attrBytes(attr, _attrType(attr))
            out = []
            for byte in raw:
                if byte < 0x20 or byte > 0x7E:
                    out.append("\\x%02X" % byte)
                elif byte in (0x2F, 0x2B):  # '/' and '+'
                    out.append("\\" + chr(byte))
                else:
                    out.append(chr(byte))
            parts.append(f"{sep}{_shortName(attr.oid)}={''.join(out)}")
            sep = "+"
    return "".join(parts)


_DN_SPLIT = re.compile(r"(?<!\\)([/+])")


def parseDN(dn: str) -> x509.Name:
    """Build an ``x509.Name`` from the one-line form (``/DC=org/CN=a+UID=b``; ``\\/`` and ``\\+`` escape)."""
    if not dn.startswith("/"):
        raise ValueError(f"DN {dn!r} must start with '/'")
    tokens = _DN_SPLIT.split(dn[1:])
    rdns: list[list[x509.NameAttribute]] = [[]]
    pieces = [tokens[0]] + [tokens[i] + tokens[i + 1] for i in range(1, len(tokens), 2)]
    for piece in pieces:
        if piece[:1] in ("/", "+"):
            if piece[0] == "/":
                rdns.append([])
            piece = piece[1:]
        key, eq, value = piece.partition("=")
        if not eq or not key:
            raise ValueError(f"DN component {piece!r} of {dn!r} is not TYPE=value")
        value = value.replace("\\/", "/").replace("\\+", "+")
        dotted = _OIDS_BY_SHORT_NAME.get(key, key)
        if not re.fullmatch(r"\d+(\.\d+)+", dotted):
            raise ValueError(f"unknown DN attribute type {key!r} in {dn!r}")
        rdns[-1].append(x509.NameAttribute(ObjectIdentifier(dotted), value))
    return x509.Name([x509.RelativeDistinguishedName(attrs) for attrs in rdns if attrs])


def _canonicalValue(attr: x509.NameAttribute) -> bytes:
    """DER of an attribute value in OpenSSL's canonical form (UTF8, trimmed, spaces collapsed, ASCII lower-cased)."""
    tag = _attrType(attr)
    raw = _attrBytes(attr, tag)
    if tag not in _CANON_TAGS:
        return derTLV(tag, raw)
    if tag in (_BMP, _UNIVERSAL):
        raw = attr.value.encode("utf-8")
    elif tag == _T61:
        raw = raw.decode("latin-1").encode("utf-8")
    start, end = 0, len(raw)
    while start < end and raw[start] in _OPENSSL_SPACE:
        start += 1
    while end > start and raw[end - 1] in _OPENSSL_SPACE:
        end -= 1
    out = bytearray()
    i = start
    while i < end:
        byte = raw[i]
        if byte >= 0x80:
            out.append(byte)
            i += 1
        elif byte in _OPENSSL_SPACE:
            out.append(0x20)
            while i < end and raw[i] in _OPENSSL_SPACE:
                i += 1
        else:
            out.append(byte + 32 if 0x41 <= byte <= 0x5A else byte)
            i += 1
    return derTLV(_UTF8, bytes(out))


def opensslNameHash(name: x509.Name) -> str:
    """``openssl x509 -hash`` of a name (X509_NAME_hash): the file stem of hashed CA directories."""
    encoded = bytearray()
    for rdn in name.rdns:
        entries = sorted(derTLV(0x30, derOID(attr.oid) + _canonicalValue(attr)) for attr in rdn)
        encoded += derTLV(0x31, b"".join(entries))
    digest = hashlib.sha1(bytes(encoded)).digest()
    return "%08x" % int.from_bytes(digest[:4], "little")


def _readFile(path: str, what: str) -> dict:
    """S_OK(bytes of ``path``), or S_ERROR saying ``what`` could not be read."""
    try:
        with open(path, "rb") as fd:
            return S_OK(fd.read())
    except OSError as exc:
        return S_ERROR(f"cannot read {what} {path}: {exc.strerror}")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@functools.lru_cache(maxsize=4096)
def _certFromDER(der: bytes) -> "X509Certificate":
    """Parse DER once per distinct certificate (the server sees the same user and CA certs again and again)."""
    return X509Certificate(x509.load_der_x509_certificate(der))


class X509Certificate:
    """An X.509 certificate with DIRAC's method names; computed properties are cached (certificates are immutable)."""

    def __init__(self, x509Obj: Optional[x509.Certificate] = None, certString: Optional[str | bytes] = None):
        self._cert: Optional[x509.Certificate] = None
        self._cache: dict[str, Any] = {}
        if x509Obj is not None:
            self._cert = x509Obj
        elif certString:
            self.loadFromString(certString)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def fromDER(cls, der: bytes) -> "X509Certificate":
        """Certificate from DER bytes, parsed once per distinct DER (shared, read-only object)."""
        return _certFromDER(bytes(der))

    def loadFromFile(self, certLocation: str) -> dict:
        """Load the first PEM certificate of a file."""
        result = _readFile(certLocation, "certificate file")
        return self.loadFromString(result["Value"]) if result["OK"] else result

    def loadFromString(self, pemData: str | bytes) -> dict:
        """Load the first PEM certificate of a string."""
        if isinstance(pemData, str):
            pemData = pemData.encode()
        try:
            self._cert = x509.load_pem_x509_certificate(pemData)
        except ValueError as exc:
            return S_ERROR(f"cannot parse PEM certificate: {exc}")
        self._cache = {}
        return S_OK()

    @property
    def certificate(self) -> x509.Certificate:
        """The underlying ``cryptography`` certificate."""
        if self._cert is None:
            raise ValueError("no certificate loaded")
        return self._cert

    @property
    def isLoaded(self) -> bool:
        """True once a certificate has been loaded."""
        return self._cert is not None

    def _cached(self, key: str, compute):
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = compute()
            return value

    # -- cached properties (raise when nothing is loaded; the S_OK API wraps them) ---------------
    @property
    def subjectDN(self) -> str:
        """Subject in the OpenSSL one-line form."""
        return self._cached("subject", lambda: formatDN(self.certificate.subject))

    @property
    def issuerDN(self) -> str:
        """Issuer in the OpenSSL one-line form."""
        return self._cached("issuer", lambda: formatDN(self.certificate.issuer))

    @property
    def notBefore(self) -> datetime.datetime:
        """Start of validity (aware, UTC)."""
        return self._cached("notBefore", lambda: self.certificate.not_valid_before_utc)

    @property
    def notAfter(self) -> datetime.datetime:
        """End of validity (aware, UTC)."""
        return self._cached("notAfter", lambda: self.certificate.not_valid_after_utc)

    @property
    def proxyCertInfo(self) -> Optional[ProxyCertInfo]:
        """Decoded RFC 3820 ProxyCertInfo, None when absent; ValueError when present but malformed."""
        return self._cached("pci", self._computeProxyCertInfo)

    def _computeProxyCertInfo(self) -> Optional[ProxyCertInfo]:
        try:
            ext = self.certificate.extensions.get_extension_for_oid(OID_PROXY_CERT_INFO)
        except x509.ExtensionNotFound:
            return None
        return decodeProxyCertInfo(ext.value.value)

    @property
    def diracGroup(self) -> Optional[str]:
        """Value of the DIRAC group extension 1.2.42.42, None when absent or unreadable."""
        return self._cached("group", self._computeGroup)

    def _computeGroup(self) -> Optional[str]:
        try:
            ext = self.certificate.extensions.get_extension_for_oid(OID_DIRAC_GROUP)
            return decodeDIRACGroup(ext.value.value)
        except (x509.ExtensionNotFound, ValueError):
            return None

    @property
    def lastCN(self) -> Optional[str]:
        """Value of the last RDN when it is a single commonName (the proxy CN), else None."""

        def compute():
            rdns = self.certificate.subject.rdns
            if not rdns or len(rdns[-1]) != 1:
                return None
            attr = next(iter(rdns[-1]))
            return attr.value if attr.oid == NameOID.COMMON_NAME else None

        return self._cached("lastCN", compute)

    @property
    def isCA(self) -> bool:
        """True when basicConstraints says CA:TRUE."""

        def compute():
            try:
                return bool(self.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
            except x509.ExtensionNotFound:
                return False

        return self._cached("isCA", compute)

    def der(self) -> bytes:
        """DER bytes."""
        return self._cached("der", lambda: self.certificate.public_bytes(serialization.Encoding.DER))

    def remainingSeconds(self, now: Optional[datetime.datetime] = None) -> int:
        """Seconds until notAfter, never negative."""
        return max(0, int((self.notAfter - (now or _utcnow())).total_seconds()))

    def isSignedBy(self, issuer: "X509Certificate") -> bool:
        """True when ``issuer``'s subject is this certificate's issuer and its key verifies the signature."""
        try:
            self.certificate.verify_directly_issued_by(issuer.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    # -- DIRAC API -------------------------------------------------------------------------
    def _check(self) -> Optional[dict]:
        return None if self._cert is not None else S_ERROR("no certificate loaded")

    def getSubjectDN(self) -> dict:
        """S_OK(subject DN string)."""
        return self._check() or S_OK(self.subjectDN)

    def getIssuerDN(self) -> dict:
        """S_OK(issuer DN string)."""
        return self._check() or S_OK(self.issuerDN)

    def getSubjectNameObject(self) -> dict:
        """S_OK(x509.Name) of the subject."""
        return self._check() or S_OK(self.certificate.subject)

    def getIssuerNameObject(self) -> dict:
        """S_OK(x509.Name) of the issuer."""
        return self._check() or S_OK(self.certificate.issuer)

    def getSerialNumber(self) -> dict:
        """S_OK(serial number as int)."""
        return self._check() or S_OK(self.certificate.serial_number)

    def getNotBeforeDate(self) -> dict:
        """S_OK(notBefore as aware UTC datetime)."""
        return self._check() or S_OK(self.notBefore)

    def getNotAfterDate(self) -> dict:
        """S_OK(notAfter as aware UTC datetime)."""
        return self._check() or S_OK(self.notAfter)

    def hasExpired(self) -> dict:
        """S_OK(True) once notAfter has passed."""
        return self._check() or S_OK(self.notAfter < _utcnow())

    def getRemainingSecs(self) -> dict:
        """S_OK(seconds left before notAfter, >= 0)."""
        return self._check() or S_OK(self.remainingSeconds())

    def getPublicKey(self) -> dict:
        """S_OK(cryptography public key object)."""
        return self._check() or S_OK(self.certificate.public_key())

    def getDIRACGroup(self, ignoreDefault: bool = False) -> dict:
        """S_OK(group) from extension 1.2.42.42, else the issuer's default group from the Registry, else S_OK(False)."""
        if err := self._check():
            return err
        if self.diracGroup:
            return S_OK(self.diracGroup)
        if ignoreDefault:
            return S_OK(False)
        from TornadoServices.ConfigurationSystem.Client.Helpers import Registry

        return Registry.findDefaultGroupForDN(self.issuerDN)

    def isProxyCert(self) -> bool:
        """True when the certificate carries RFC 3820 ProxyCertInfo or a legacy ``CN=proxy``/``CN=limited proxy``."""
        if self._cert is None:
            return False
        try:
            if self.proxyCertInfo is not None:
                return True
        except ValueError:
            return False
        return self.lastCN in LEGACY_PROXY_CNS and self.subjectDN.startswith(self.issuerDN + "/")

    def hasVOMSExtensions(self) -> dict:
        """S_OK(True) when a VOMS attribute certificate extension is present (not interpreted)."""
        if err := self._check():
            return err
        try:
            self.certificate.extensions.get_extension_for_oid(OID_VOMS_AC)
            return S_OK(True)
        except x509.ExtensionNotFound:
            return S_OK(False)

    def getExtensions(self) -> dict:
        """S_OK(list of (name, critical, value string)) for every extension."""
        if err := self._check():
            return err
        result = []
        for ext in self.certificate.extensions:
            name = getattr(ext.oid, "_name", None) or ext.oid.dotted_string
            if ext.oid == OID_PROXY_CERT_INFO:
                name, value = "proxyCertInfo", repr(self.proxyCertInfo)
            elif ext.oid == OID_DIRAC_GROUP:
                name, value = "diracGroup", str(self.diracGroup)
            else:
                value = str(ext.value)
            result.append((name, ext.critical, value))
        return S_OK(result)

    def asPem(self) -> str:
        """PEM text of the certificate."""
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def getFingerprint(self, algorithm: str = "sha256") -> dict:
        """S_OK(hex fingerprint)."""
        if err := self._check():
            return err
        return S_OK(self.certificate.fingerprint(getattr(hashes, algorithm.upper())()).hex())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, X509Certificate) and self.isLoaded and other.isLoaded and self.der() == other.der()

    def __hash__(self) -> int:
        return hash(self.der()) if self.isLoaded else 0

    def __repr__(self) -> str:
        if self._cert is None:
            return "<X509Certificate (empty)>"
        return f"<X509Certificate {self.subjectDN}>"
