"""DevPKI: every certificate and proxy variant is what it claims to be, as judged by the openssl CLI."""
from __future__ import annotations

import datetime
import os
import re
import shutil
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from TornadoServices.Security import DevPKI
from TornadoServices.Security.X509Certificate import OID_DIRAC_GROUP, OID_PROXY_CERT_INFO, X509Certificate, formatDN
from TornadoServices.Security.X509Chain import generateKey

OPENSSL = shutil.which("openssl")
needsOpenSSL = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed")
NOW = datetime.datetime.now(datetime.timezone.utc)
HOUR = datetime.timedelta(hours=1)


@pytest.fixture(scope="module")
def ca():
    return DevPKI.CertificateAuthority()


@pytest.fixture(scope="module")
def user(ca):
    return ca.issueUser("alice")


@pytest.fixture(scope="module")
def caDir(ca, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("cas"))
    revoked = ca.issueUser("revoked")
    ca.revoke(revoked)
    DevPKI.writeCADirectory(directory, [ca])
    return directory, revoked


def opensslVerify(caDirectory: str, cred: DevPKI.Credential, tmp_path, *extra: str) -> int:
    """0 when openssl verify accepts the credential's chain, else the X509 verify error code."""
    path = cred.writeProxyFile(str(tmp_path / "chain.pem"))
    result = subprocess.run(
        [OPENSSL, "verify", "-CApath", caDirectory, "-allow_proxy_certs", *extra, "-untrusted", path, path],
        capture_output=True,
        text=True,
    )
    if result.returncode == 0:
        return 0
    match = re.search(r"error (\d+) at \d+ depth lookup", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    return int(match.group(1))


def _variants(ca, user):
    other = DevPKI.CertificateAuthority("/DC=org/DC=elsewhere/CN=Other CA")
    return {
        "user": (user, 0),
        "proxy": (DevPKI.makeProxy(user, group="dirac_user"), 0),
        "proxy-of-proxy": (DevPKI.makeProxy(DevPKI.makeProxy(user)), 0),
        "limited": (DevPKI.makeProxy(user, limited=True), 0),
        "independent": (DevPKI.makeProxy(user, independent=True), 0),
        "ec-proxy": (DevPKI.makeProxy(user, keyType="ec"), 0),
        "outlives-user": (DevPKI.makeProxy(ca.issueUser("short", notAfter=NOW + HOUR), lifetime=10 * 3600, clipToIssuer=False), 0),
        "pathlen-0-then-sub": (DevPKI.makeProxy(DevPKI.makeProxy(user, pathLen=0)), 38),
        "signed-by-other-key": (DevPKI.makeProxy(user, signingKey=generateKey()), 7),
        "wrong-subject": (DevPKI.makeProxy(user, subject=DevPKI.userDN("mallory") + "/CN=1"), 72),
        "legacy-gt2": (DevPKI.makeProxy(user, legacy=True), 79),
        "expired-proxy": (DevPKI.makeProxy(user, notBefore=NOW - 2 * HOUR, notAfter=NOW - HOUR), 10),
        "future-proxy": (DevPKI.makeProxy(user, notBefore=NOW + HOUR, notAfter=NOW + 2 * HOUR), 9),
        "expired-user": (ca.issueUser("old", notBefore=NOW - 48 * HOUR, notAfter=NOW - HOUR), 10),
        "future-user": (ca.issueUser("new", notBefore=NOW + HOUR), 9),
        "user-without-digitalSignature": (DevPKI.makeProxy(ca.issueUser("nods", digitalSignature=False)), 39),
        "untrusted-ca": (DevPKI.makeProxy(other.issueUser("alice")), 20),
        "proxy-ca-true": (DevPKI.makeProxy(user, extraExtensions=[(x509.BasicConstraints(ca=True, path_length=None), True)]), 20),
        "proxy-with-san": (DevPKI.makeProxy(user, extraExtensions=[(x509.SubjectAlternativeName([x509.DNSName("x")]), False)]), 20),
    }


@needsOpenSSL
def test_variant_matrix_against_openssl_verify(ca, user, caDir, tmp_path):
    directory, _revoked = caDir
    variants = _variants(ca, user)
    results = {name: opensslVerify(directory, cred, tmp_path) for name, (cred, _code) in variants.items()}
    assert results == {name: code for name, (_cred, code) in variants.items()}


@needsOpenSSL
def test_strict_mode_needs_aki_and_auth_level_2_refuses_small_keys(ca, user, caDir, tmp_path):
    directory, _ = caDir
    noAKI = DevPKI.makeProxy(user, withAKI=False)
    assert opensslVerify(directory, noAKI, tmp_path) == 0
    assert opensslVerify(directory, noAKI, tmp_path, "-x509_strict") == 85
    assert opensslVerify(directory, DevPKI.makeProxy(user), tmp_path, "-x509_strict") == 0
    small = ca.issueUser("small", bits=1024)
    assert small.key.key_size == 1024
    assert opensslVerify(directory, small, tmp_path) == 0
    assert opensslVerify(directory, small, tmp_path, "-auth_level", "2") == 66


@needsOpenSSL
def test_crl_checks_leaf_versus_chain(caDir, tmp_path):
    directory, revoked = caDir
    proxyOfRevoked = DevPKI.makeProxy(revoked)
    assert opensslVerify(directory, revoked, tmp_path, "-crl_check") == 23
    assert opensslVerify(directory, proxyOfRevoked, tmp_path, "-crl_check") == 0  # the leaf (proxy) is not revoked
    assert opensslVerify(directory, proxyOfRevoked, tmp_path, "-crl_check_all") == 23


def test_crl_content_and_windows(ca):
    victim = ca.issueUser("victim")
    ca.revoke(victim)
    crl = ca.makeCRL(number=7)
    assert crl.get_revoked_certificate_by_serial_number(victim.cert.serial_number) is not None
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    assert crl.is_signature_valid(ca.key.public_key())
    expired = ca.makeCRL(lastUpdate=NOW - 48 * HOUR, nextUpdate=NOW - HOUR)
    assert expired.next_update_utc < NOW
    ca.revoke(12345)
    assert ca.makeCRL().get_revoked_certificate_by_serial_number(12345) is not None


@needsOpenSSL
def test_hashed_directory_matches_openssl_rehash_naming(tmp_path):
    cas = [DevPKI.CertificateAuthority(f"/DC=org/DC=example/CN=CA {i}") for i in range(2)]
    twin = DevPKI.CertificateAuthority("/DC=org/DC=example/CN=CA 0")  # same subject: same hash, next index
    written = DevPKI.writeCADirectory(str(tmp_path), [*cas, twin])
    names = sorted(os.path.basename(p) for p in written)
    h0, h1 = cas[0].hash, cas[1].hash
    assert names == sorted([f"{h0}.0", f"{h0}.r0", f"{h0}.1", f"{h0}.r1", f"{h1}.0", f"{h1}.r0"])
    for ca in cas:
        cli = subprocess.run([OPENSSL, "x509", "-hash", "-noout", "-in", str(tmp_path / f"{ca.hash}.0")], capture_output=True, text=True)
        assert cli.stdout.strip() == ca.hash
        crlHash = subprocess.run([OPENSSL, "crl", "-hash", "-noout", "-in", str(tmp_path / f"{ca.hash}.r0")], capture_output=True, text=True)
        assert crlHash.stdout.strip() == ca.hash


def test_fixed_development_names_and_host_certificate(ca):
    assert ca.dn == DevPKI.DEV_CA_DN
    host = ca.issueHost()
    assert host.dn == DevPKI.DEV_HOST_DN
    sans = host.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    eku = host.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ca.issueUser().dn == DevPKI.DEV_USER_DN
    assert ca.issueUser("bob").dn == "/DC=org/DC=tornadoservices/OU=Users/CN=bob"
    other = ca.issueHost("server.example.org")
    assert other.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == ["server.example.org"]


def test_key_types_and_usage_options(ca):
    ecCA = DevPKI.CertificateAuthority("/CN=EC CA", keyType="ec")
    assert isinstance(ecCA.key, ec.EllipticCurvePrivateKey) and ecCA.key.curve.name == "secp256r1"
    ecUser = ecCA.issueUser("e", keyType="ec")
    assert X509Certificate(ecUser.cert).isSignedBy(X509Certificate(ecCA.cert))
    assert isinstance(ca.issueUser("r", bits=3072).key, rsa.RSAPrivateKey)
    noDS = ca.issueUser("nods", digitalSignature=False).cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert not noDS.digital_signature and noDS.key_encipherment
    bare = ca.issueUser("bare", keyUsage=False, extendedKeyUsage=None).cert
    assert not any(isinstance(e.value, (x509.KeyUsage, x509.ExtendedKeyUsage)) for e in bare.extensions)
    with pytest.raises(ValueError):
        generateKey("dsa")


def test_proxy_structure(user):
    proxy = DevPKI.makeProxy(user, group="dirac_user", pathLen=2, lifetime=3600)
    cert = proxy.cert
    assert formatDN(cert.subject) == f"{user.dn}/CN={cert.serial_number}"
    assert cert.issuer == user.cert.subject
    pci = cert.extensions.get_extension_for_oid(OID_PROXY_CERT_INFO)
    assert pci.critical
    group = cert.extensions.get_extension_for_oid(OID_DIRAC_GROUP)
    assert not group.critical and group.value.value == b"\x16\x0adirac_user"
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = user.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert datetime.timedelta(minutes=59) < cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) <= HOUR
    assert proxy.chain == [user.cert]
    info = X509Certificate(cert).proxyCertInfo
    assert (info.pathLen, info.isLimited, info.isIndependent) == (2, False, False)
    legacy = DevPKI.makeProxy(user, legacy=True, limited=True).cert
    assert formatDN(legacy.subject).endswith("/CN=limited proxy")
    with pytest.raises(x509.ExtensionNotFound):
        legacy.extensions.get_extension_for_oid(OID_PROXY_CERT_INFO)


def test_intermediate_ca_chain(tmp_path):
    root = DevPKI.CertificateAuthority("/DC=org/DC=example/CN=Root")
    sub = root.intermediate("/DC=org/DC=example/CN=Issuing CA", pathLength=0)
    user = sub.issueUser("deep")
    assert user.chain == [sub.cert, root.cert]
    proxy = DevPKI.makeProxy(user)
    assert proxy.chain == [user.cert, sub.cert, root.cert]
    assert proxy.asX509Chain().getCredentials(withRegistryInfo=False)["Value"]["identity"] == user.dn
    if OPENSSL:
        DevPKI.writeCADirectory(str(tmp_path / "cas"), [root, sub])
        assert opensslVerify(str(tmp_path / "cas"), proxy, tmp_path, "-crl_check_all") == 0


def test_files_modes_and_no_overwrite(user, tmp_path):
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    user.writeCertAndKey(cert, key)
    assert stat.S_IMODE(os.stat(cert).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    with pytest.raises(FileExistsError):
        user.writeCertAndKey(cert, key)
    user.writeCertAndKey(cert, key, force=True, withChain=True)
    proxyPath = DevPKI.makeProxy(user).writeProxyFile(str(tmp_path / "proxy"))
    assert stat.S_IMODE(os.stat(proxyPath).st_mode) == 0o600
    blocks = re.findall(r"-----BEGIN ([A-Z ]+)-----", open(proxyPath).read())
    assert blocks == ["CERTIFICATE", "RSA PRIVATE KEY", "CERTIFICATE"]
    assert re.findall(r"-----BEGIN ([A-Z ]+)-----", DevPKI.makeProxy(user).proxyPEM(traditional=False).decode())[1] == "PRIVATE KEY"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
