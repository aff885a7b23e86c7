"""X509Certificate / X509Chain: OpenSSL DN form and hash, ProxyCertInfo DER, proxy analysis, credentials."""
from __future__ import annotations

import datetime
import os
import re
import shutil
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.Security import DevPKI
from TornadoServices.Security.X509Certificate import (
    OID_PPL_INDEPENDENT,
    OID_PPL_INHERIT_ALL,
    OID_PPL_LIMITED,
    X509Certificate,
    decodeDIRACGroup,
    decodeProxyCertInfo,
    encodeDIRACGroup,
    encodeProxyCertInfo,
    formatDN,
    opensslNameHash,
    parseDN,
)
from TornadoServices.Security.X509Chain import X509Chain, generateKey

OPENSSL = shutil.which("openssl")
needsOpenSSL = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed")

USER = "jane"
USER_DN = DevPKI.userDN(USER)
REGISTRY = f"""
Registry
{{
  Users
  {{
    {USER}
    {{
      DN = {USER_DN}
      DefaultGroup = jane_default
    }}
  }}
  Groups
  {{
    jane_default
    {{
      Users = {USER}
      VO = defaultvo
      Properties = NormalUser
    }}
    dirac_user
    {{
      Users = {USER}
      VO = tornadovo
      Properties = NormalUser
    }}
  }}
  Hosts
  {{
    localhost
    {{
      DN = {DevPKI.DEV_HOST_DN}
      Properties = TrustedHost
    }}
  }}
}}
"""


@pytest.fixture(autouse=True)
def registry():
    gConfig.reset()
    assert gConfig.loadCFGFromString(REGISTRY)["OK"]
    yield
    gConfig.reset()


@pytest.fixture(scope="module")
def ca():
    return DevPKI.CertificateAuthority()


@pytest.fixture(scope="module")
def user(ca):
    return ca.issueUser(USER)


@pytest.fixture(scope="module")
def proxy(user):
    return DevPKI.makeProxy(user, group="dirac_user")


def _selfSigned(name: x509.Name) -> x509.Certificate:
    key = generateKey("ec")
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def _openssl(tmp_path, cert: x509.Certificate, *args: str) -> str:
    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out = subprocess.run([OPENSSL, "x509", "-in", str(path), "-noout", *args], capture_output=True, text=True, check=True)
    return out.stdout.strip()


ODD_NAMES = [
    x509.Name(
        [
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Users"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Jane  Q. Doe "),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "Jane.Doe@Example.org"),
        ]
    ),
    x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Geneva"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Meyrin"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CERN"),
            x509.NameAttribute(NameOID.USER_ID, "jdoe"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "42"),
            x509.NameAttribute(NameOID.COMMON_NAME, "a/b+c=d, e"),
        ]
    ),
    x509.Name(
        [
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Users"), x509.NameAttribute(NameOID.USER_ID, "jd")]
            ),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "Jöhn Dœ\ttab")]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.TITLE, "Dr")]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.SURNAME, "Doe")]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.GIVEN_NAME, "John")]),
            x509.RelativeDistinguishedName([x509.NameAttribute(x509.ObjectIdentifier("1.2.3.4.5"), "custom")]),
        ]
    ),
]


@needsOpenSSL
@pytest.mark.parametrize("name", ODD_NAMES, ids=["dc-email-spaces", "c-st-uid-escapes", "multivalued-utf8-unknown"])
def test_dn_format_matches_openssl_compat(tmp_path, name):
    cert = _selfSigned(name)
    expected = _openssl(tmp_path, cert, "-subject", "-nameopt", "compat")
    assert "subject=" + formatDN(cert.subject) == expected


@needsOpenSSL
@pytest.mark.parametrize("name", ODD_NAMES, ids=["dc-email-spaces", "c-st-uid-escapes", "multivalued-utf8-unknown"])
def test_name_hash_matches_openssl(tmp_path, name):
    cert = _selfSigned(name)
    assert opensslNameHash(cert.subject) == _openssl(tmp_path, cert, "-hash")


@needsOpenSSL
def test_name_hash_of_bmp_and_printable_strings(tmp_path):
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "  Big   Lab  ", _type=x509.name._ASN1Type.PrintableString),
            x509.NameAttribute(NameOID.COMMON_NAME, "Ünï Côde", _type=x509.name._ASN1Type.BMPString),
        ]
    )
    cert = _selfSigned(name)
    assert opensslNameHash(cert.subject) == _openssl(tmp_path, cert, "-hash")
    assert "subject=" + formatDN(cert.subject) == _openssl(tmp_path, cert, "-subject", "-nameopt", "compat")


def test_parse_dn_round_trips():
    for dn in [DevPKI.DEV_CA_DN, "/C=ch/O=DIRAC/OU=Users+UID=jd/CN=a\\/b\\+c/emailAddress=x@y", "/DC=org/CN=Jane Doe"]:
        assert formatDN(parseDN(dn)) == dn
    with pytest.raises(ValueError):
        parseDN("CN=no leading slash")
    with pytest.raises(ValueError):
        parseDN("/NOPE=x")


@pytest.mark.parametrize("language", [OID_PPL_INHERIT_ALL, OID_PPL_LIMITED, OID_PPL_INDEPENDENT])
@pytest.mark.parametrize("pathLen", [None, 0, 5, 300])
def test_proxycertinfo_der_round_trip(language, pathLen):
    info = decodeProxyCertInfo(encodeProxyCertInfo(language, pathLen))
    assert (info.policyLanguage, info.pathLen, info.policy) == (language, pathLen, None)


def test_proxycertinfo_known_encoding_and_malformed_input():
    # SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.6.1.5.5.7.21.1 } }
    assert encodeProxyCertInfo(OID_PPL_INHERIT_ALL, 0).hex() == "300f020100300a06082b06010505071501"
    for bad in [b"", b"\x30", b"\x30\x02\x02\x01", b"\x04\x00", encodeProxyCertInfo() + b"\x00"]:
        with pytest.raises(ValueError):
            decodeProxyCertInfo(bad)


def test_dirac_group_extension_is_ia5string():
    assert encodeDIRACGroup("dirac_user") == b"\x16\x0adirac_user"
    assert decodeDIRACGroup(encodeDIRACGroup("g")) == "g"
    with pytest.raises(ValueError):
        decodeDIRACGroup(b"\x04\x01g")


@needsOpenSSL
def test_openssl_parses_our_proxy_extension(tmp_path, user):
    proxy = DevPKI.makeProxy(user, pathLen=3, limited=True)
    text = _openssl(tmp_path, proxy.cert, "-text")
    assert "Proxy Certificate Information: critical" in text
    assert re.search(r"Path Length Constraint: 0*3\n", text)
    assert "Policy Language: 1.3.6.1.4.1.3536.1.1.1.9" in text


def test_certificate_accessors(user):
    cert = X509Certificate(user.cert)
    assert cert.getSubjectDN() == {"OK": True, "Value": USER_DN}
    assert cert.getIssuerDN()["Value"] == DevPKI.DEV_CA_DN
    assert cert.getSerialNumber()["Value"] == user.cert.serial_number
    assert cert.hasExpired()["Value"] is False
    assert 364 * 86400 < cert.getRemainingSecs()["Value"] <= 366 * 86400
    assert not cert.isProxyCert()
    assert X509Certificate(certString=cert.asPem()) == cert
    assert not X509Certificate().getSubjectDN()["OK"]


def test_user_certificate_credentials(user):
    chain = user.asX509Chain()
    assert chain.isProxy()["Value"] is False
    cred = chain.getCredentials(withRegistryInfo=False)["Value"]
    assert list(cred) == ["subject", "issuer", "secondsLeft", "isProxy", "isLimitedProxy", "validDN", "validGroup", "DN"]
    assert cred["DN"] == cred["subject"] == USER_DN
    assert cred["issuer"] == DevPKI.DEV_CA_DN
    assert "group" not in cred and "identity" not in cred
    assert not chain.getDIRACGroup()["OK"]


def test_proxy_credentials_have_the_transcript_shape(proxy):
    chain = proxy.asX509Chain()
    cred = chain.getCredentials(withRegistryInfo=False)["Value"]
    assert list(cred) == [
        "subject", "issuer", "secondsLeft", "isProxy", "isLimitedProxy",
        "validDN", "validGroup", "DN", "identity", "group", "VO",
    ]  # fmt: skip
    assert cred["subject"] == f"{USER_DN}/CN={proxy.cert.serial_number}"
    assert cred["issuer"] == USER_DN
    assert cred["DN"] == cred["identity"] == USER_DN
    assert (cred["isProxy"], cred["isLimitedProxy"], cred["validDN"], cred["validGroup"]) == (True, False, False, False)
    assert (cred["group"], cred["VO"]) == ("dirac_user", "tornadovo")
    assert 0 < cred["secondsLeft"] <= 24 * 3600
    assert chain.isRFC()["Value"] and chain.isValidProxy()["OK"]


def test_credentials_with_registry_info(proxy, ca):
    cred = proxy.asX509Chain().getCredentials()["Value"]
    assert (cred["username"], cred["validDN"], cred["validGroup"]) == (USER, True, True)
    assert cred["groupProperties"] == ["NormalUser"]
    host = ca.issueHost().asX509Chain().getCredentials()["Value"]
    assert (host["group"], host["hostname"], host["validDN"], host["groupProperties"]) == ("hosts", "localhost", True, ["TrustedHost"])
    assert not host["isProxy"]


def test_group_fallback_uses_the_identity_dn_even_for_proxies_of_proxies(user):
    sub = DevPKI.makeProxy(DevPKI.makeProxy(user))
    cred = sub.asX509Chain().getCredentials(withRegistryInfo=False)["Value"]
    assert cred["identity"] == USER_DN
    assert (cred["group"], cred["VO"]) == ("jane_default", "defaultvo")
    assert "group" not in sub.asX509Chain().getCredentials(ignoreDefault=True, withRegistryInfo=False)["Value"]


def test_unknown_user_without_group_extension_gets_no_group(ca):
    stranger = DevPKI.makeProxy(ca.issueUser("stranger"))
    cred = stranger.asX509Chain().getCredentials(withRegistryInfo=False)["Value"]
    assert "group" not in cred and "VO" not in cred
    assert cred["isProxy"] and cred["identity"] == DevPKI.userDN("stranger")


def test_virtual_organization_option_wins(proxy):
    gConfig.setOptionValue("/DIRAC/VirtualOrganization", "singlevo")
    assert proxy.asX509Chain().getCredentials(withRegistryInfo=False)["Value"]["VO"] == "singlevo"


def test_group_is_searched_from_the_end_entity_side(proxy):
    sub = DevPKI.makeProxy(proxy, group="jane_default")
    chain = sub.asX509Chain()
    assert chain.getDIRACGroup()["Value"] == "dirac_user"
    assert chain.getCredentials(withRegistryInfo=False)["Value"]["identity"] == USER_DN


def test_limited_proxies(user):
    limited = DevPKI.makeProxy(user, limited=True)
    assert limited.asX509Chain().isLimitedProxy()["Value"] is True
    below = DevPKI.makeProxy(limited)  # a normal proxy below a limited one stays limited
    assert below.asX509Chain().getCredentials(withRegistryInfo=False)["Value"]["isLimitedProxy"] is True
    assert DevPKI.makeProxy(user, independent=True).asX509Chain().isLimitedProxy()["Value"] is False


def test_independent_proxies(user):
    independent = DevPKI.makeProxy(user, independent=True)
    assert independent.asX509Chain().isIndependentProxy()["Value"] is True
    below = DevPKI.makeProxy(independent)  # nothing of the user is inherited through an independent step
    assert below.asX509Chain().isIndependentProxy()["Value"] is True
    assert DevPKI.makeProxy(user).asX509Chain().isIndependentProxy()["Value"] is False
    assert DevPKI.makeProxy(user, limited=True).asX509Chain().isIndependentProxy()["Value"] is False
    assert user.asX509Chain().isIndependentProxy()["Value"] is False
    assert "isIndependentProxy" not in independent.asX509Chain().getCredentials(withRegistryInfo=False)["Value"]


@pytest.mark.parametrize("limited", [False, True])
def test_legacy_proxies_are_recognised(user, limited):
    chain = DevPKI.makeProxy(user, legacy=True, limited=limited).asX509Chain()
    cred = chain.getCredentials(withRegistryInfo=False)["Value"]
    assert cred["subject"].endswith("/CN=limited proxy" if limited else "/CN=proxy")
    assert (cred["isProxy"], cred["isLimitedProxy"], cred["identity"]) == (True, limited, USER_DN)
    assert chain.isRFC()["Value"] is False


def test_broken_proxies_are_not_proxies_when_loaded_from_files(user, ca, tmp_path):
    other = generateKey()
    wrongKey = DevPKI.makeProxy(user, signingKey=other)
    wrongSubject = DevPKI.makeProxy(user, subject=DevPKI.userDN("mallory") + "/CN=123")
    for cred in (wrongKey, wrongSubject):
        path = cred.writeProxyFile(str(tmp_path / "p"))
        chain = X509Chain()
        assert chain.loadProxyFromFile(path)["OK"]
        creds = chain.getCredentials(withRegistryInfo=False)["Value"]
        assert creds["isProxy"] is False and creds["DN"] == creds["subject"]


def test_path_length_is_tracked(user):
    parent = DevPKI.makeProxy(user, pathLen=0)
    assert parent.asX509Chain().isValidProxy(ignoreDefault=False)["OK"]
    result = parent.asX509Chain().generateProxyToString(3600)
    assert not result["OK"] and "pCPathLenConstraint" in result["Message"]
    child = DevPKI.makeProxy(parent)
    assert child.asX509Chain().info.pathLenExceeded
    assert not child.asX509Chain().isValidProxy()["OK"]
    assert not DevPKI.makeProxy(DevPKI.makeProxy(user, pathLen=1)).asX509Chain().info.pathLenExceeded


def test_seconds_left_is_the_minimum_over_the_chain(ca):
    now = datetime.datetime.now(datetime.timezone.utc)
    shortUser = ca.issueUser(USER, notAfter=now + datetime.timedelta(hours=1))
    longProxy = DevPKI.makeProxy(shortUser, lifetime=48 * 3600, clipToIssuer=False)
    left = longProxy.asX509Chain().getRemainingSecs()["Value"]
    assert 3500 < left <= 3600
    clipped = DevPKI.makeProxy(shortUser, lifetime=48 * 3600)
    assert clipped.cert.not_valid_after_utc == shortUser.cert.not_valid_after_utc
    expired = DevPKI.makeProxy(shortUser, notBefore=now - datetime.timedelta(hours=2), notAfter=now - datetime.timedelta(hours=1))
    assert expired.asX509Chain().getCredentials(withRegistryInfo=False)["Value"]["secondsLeft"] == 0
    assert expired.asX509Chain().hasExpired()["Value"] is True


def test_from_der_list_parses_each_distinct_chain_once(proxy, ca):
    ders = proxy.derList() + [ca.cert.public_bytes(serialization.Encoding.DER)]
    first = X509Chain.fromDERList(ders)
    second = X509Chain.fromDERList(list(ders))
    assert first is not second
    assert first.getCertList()["Value"][0] is second.getCertList()["Value"][0]
    assert first.info is second.info
    cred = second.getCredentials(withRegistryInfo=False)["Value"]
    assert cred["identity"] == USER_DN and cred["group"] == "dirac_user"
    assert second.getNumCertsInChain()["Value"] == 3
    assert second.getIssuerCert()["Value"].subjectDN == USER_DN


def test_generate_proxy_to_file(proxy, user, tmp_path):
    chain = user.asX509Chain()
    path = str(tmp_path / "x509up")
    assert chain.generateProxyToFile(path, 7200, diracGroup="dirac_user")["OK"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = X509Chain()
    assert loaded.loadProxyFromFile(path)["OK"]
    cred = loaded.getCredentials(withRegistryInfo=False)["Value"]
    assert (cred["isProxy"], cred["identity"], cred["group"]) == (True, USER_DN, "dirac_user")
    assert 7000 < cred["secondsLeft"] <= 7200
    # a proxy of that proxy, limited, keeps the whole chain
    sub = loaded.generateProxyToString(3600, limited=True)["Value"]
    subChain = X509Chain()
    assert subChain.loadProxyFromString(sub)["OK"]
    assert subChain.getNumCertsInChain()["Value"] == 3
    assert subChain.isLimitedProxy()["Value"] is True
    # an existing, more permissive file is replaced, and the new one is 0600
    os.chmod(path, 0o644)
    assert chain.generateProxyToFile(path, 60)["OK"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_generate_proxy_needs_a_key(user):
    assert not X509Chain([user.cert]).generateProxyToString(60)["OK"]


def test_dump_and_reload_with_pkcs8_key(proxy, tmp_path):
    path = tmp_path / "pkcs8"
    path.write_bytes(proxy.proxyPEM(traditional=False))
    chain = X509Chain()
    assert chain.loadProxyFromFile(str(path))["OK"]
    dumped = chain.dumpAllToString()["Value"]
    again = X509Chain()
    assert again.loadProxyFromString(dumped)["OK"]
    assert again.hash() == chain.hash()
    blocks = [line for line in dumped.splitlines() if line.startswith("-----BEGIN")]
    assert blocks == ["-----BEGIN CERTIFICATE-----", "-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN CERTIFICATE-----"]


def test_load_errors_name_the_file(tmp_path):
    chain = X509Chain()
    missing = str(tmp_path / "nothere.pem")
    result = chain.loadChainFromFile(missing)
    assert not result["OK"] and missing in result["Message"]
    (tmp_path / "junk.pem").write_text("not a certificate")
    assert not chain.loadChainFromFile(str(tmp_path / "junk.pem"))["OK"]
    assert not chain.loadKeyFromString("nothing")["OK"]
    assert not chain.getCredentials()["OK"]


def test_encrypted_key(user, tmp_path):
    path = tmp_path / "key.pem"
    path.write_bytes(
        user.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    chain = X509Chain([user.cert])
    assert not chain.loadKeyFromFile(str(path))["OK"]
    assert chain.loadKeyFromFile(str(path), password="secret")["OK"]
    assert chain.generateProxyToString(60)["OK"]


def test_unknown_policy_language_counts_as_limited(user):
    custom = DevPKI.makeProxy(user, policyLanguage=x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"))
    chain = custom.asX509Chain()
    assert chain.isProxy()["Value"] and chain.isLimitedProxy()["Value"]


def test_certificate_named_like_a_proxy_of_the_ca_is_its_own_identity(ca):
    """OpenSSL never accepts GT2 proxies, so in a TLS-verified chain ``CN=proxy`` is just a CA-issued name."""
    odd = ca.issueCertificate(DevPKI.DEV_CA_DN + "/CN=proxy")
    ders = odd.derList() + [ca.cert.public_bytes(serialization.Encoding.DER)]
    cred = X509Chain.fromDERList(ders).getCredentials(withRegistryInfo=False)["Value"]
    assert cred["isProxy"] is False and cred["DN"] == DevPKI.DEV_CA_DN + "/CN=proxy"
    fromFile = X509Chain([odd.cert, ca.cert]).getCredentials(withRegistryInfo=False)["Value"]
    assert fromFile["isProxy"] is False  # a CA never issues proxies
