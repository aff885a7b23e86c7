"""tornado-certs and tornado-proxy-init, run as a user would (console scripts and main())."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization

from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.scripts import tornado_certs, tornado_proxy_init
from TornadoServices.Security import DevPKI
from TornadoServices.Security.X509Chain import X509Chain

BIN = os.path.dirname(sys.executable)
OPENSSL = shutil.which("openssl")


def script(name: str) -> list[str]:
    path = os.path.join(BIN, name)
    if os.path.exists(path):
        return [path]
    module = name.replace("-", "_")
    return [sys.executable, "-m", f"TornadoServices.scripts.{module}"]


def run(name: str, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*script(name), *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def pkiDir(tmp_path_factory) -> str:
    directory = str(tmp_path_factory.mktemp("devpki"))
    result = run("tornado-certs", "--dir", directory, "--user", "bob", "--revoked-user", "eve")
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture(autouse=True)
def emptyConfig():
    gConfig.reset()
    yield
    gConfig.reset()


def test_certs_layout_and_modes(pkiDir):
    ca = X509Chain()
    assert ca.loadChainFromFile(os.path.join(pkiDir, "ca", "cacert.pem"))["OK"]
    caCert = ca.getCertInChain(0)["Value"]
    stem = DevPKI.opensslNameHash(caCert.certificate.subject)
    assert sorted(os.listdir(os.path.join(pkiDir, "certificates"))) == [f"{stem}.0", f"{stem}.r0"]
    expected = {
        "hostcert.pem": 0o644, "hostkey.pem": 0o600, "usercert.pem": 0o644, "userkey.pem": 0o600,
        "bobcert.pem": 0o644, "bobkey.pem": 0o600, "evecert.pem": 0o644, "evekey.pem": 0o600,
        "ca/cacert.pem": 0o644, "ca/cakey.pem": 0o600,
    }  # fmt: skip
    for name, mode in expected.items():
        assert stat.S_IMODE(os.stat(os.path.join(pkiDir, name)).st_mode) == mode, name
    subjects = {}
    for name in ("host", "user", "bob", "eve"):
        chain = X509Chain()
        chain.loadChainFromFile(os.path.join(pkiDir, f"{name}cert.pem"))
        subjects[name] = chain.getCredentials(withRegistryInfo=False)["Value"]["subject"]
    assert subjects == {
        "host": DevPKI.DEV_HOST_DN,
        "user": DevPKI.DEV_USER_DN,
        "bob": DevPKI.userDN("bob"),
        "eve": DevPKI.userDN("eve"),
    }
    assert caCert.subjectDN == DevPKI.DEV_CA_DN


@pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed")
def test_openssl_agrees_with_the_written_pki(pkiDir):
    caFile = os.path.join(pkiDir, "ca", "cacert.pem")
    opensslHash = subprocess.run([OPENSSL, "x509", "-hash", "-noout", "-in", caFile], capture_output=True, text=True).stdout.strip()
    assert os.path.exists(os.path.join(pkiDir, "certificates", f"{opensslHash}.0"))
    certDir = os.path.join(pkiDir, "certificates")
    ok = subprocess.run([OPENSSL, "verify", "-CApath", certDir, "-crl_check", os.path.join(pkiDir, "usercert.pem")], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip().endswith("OK")
    revoked = subprocess.run([OPENSSL, "verify", "-CApath", certDir, "-crl_check", os.path.join(pkiDir, "evecert.pem")], capture_output=True, text=True)
    assert revoked.returncode != 0 and "revoked" in revoked.stdout + revoked.stderr


def test_certs_output_names_files_but_never_prints_keys(tmp_path):
    result = run("tornado-certs", "--dir", str(tmp_path), "--key-type", "ec", "--days", "10")
    assert result.returncode == 0
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    assert f"{tmp_path}/hostkey.pem: host private key (mode 0600)" in result.stdout
    assert "SAN localhost, 127.0.0.1, ::1" in result.stdout and DevPKI.DEV_USER_DN in result.stdout
    with open(tmp_path / "userkey.pem", "rb") as fd:
        assert "EC" in type(serialization.load_pem_private_key(fd.read(), None)).__name__.upper()


def test_certs_refuse_to_overwrite_without_force(tmp_path):
    assert tornado_certs.main(["--dir", str(tmp_path)]) == 0
    before = (tmp_path / "hostcert.pem").read_bytes()
    assert tornado_certs.main(["--dir", str(tmp_path)]) == 1
    assert (tmp_path / "hostcert.pem").read_bytes() == before
    os.chmod(tmp_path / "hostkey.pem", 0o644)
    assert tornado_certs.main(["--dir", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "hostcert.pem").read_bytes() != before
    assert stat.S_IMODE(os.stat(tmp_path / "hostkey.pem").st_mode) == 0o600


def test_certs_usage_errors_exit_2(tmp_path, capsys):
    for argv in ([], ["--dir", str(tmp_path), "--days", "0"], ["--dir", str(tmp_path), "--user", "a/b"], ["--dir", str(tmp_path), "--key-type", "dsa"]):
        with pytest.raises(SystemExit) as exc:
            tornado_certs.main(argv)
        assert exc.value.code == 2


@pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed")
def test_proxy_init_then_openssl_verify(pkiDir, tmp_path):
    out = str(tmp_path / "proxy")
    result = run(
        "tornado-proxy-init",
        "--cert", os.path.join(pkiDir, "usercert.pem"),
        "--key", os.path.join(pkiDir, "userkey.pem"),
        "--out", out,
        "--group", "dirac_user",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert "PRIVATE KEY" not in result.stdout
    assert f"identity : {DevPKI.DEV_USER_DN}" in result.stdout and "group    : dirac_user" in result.stdout
    assert "time left: 23:59:" in result.stdout or "time left: 24:00:00" in result.stdout
    verify = subprocess.run(
        [OPENSSL, "verify", "-CApath", os.path.join(pkiDir, "certificates"), "-allow_proxy_certs", "-untrusted", out, out],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0 and verify.stdout.strip() == f"{out}: OK", verify.stdout + verify.stderr
    chain = X509Chain()
    assert chain.loadProxyFromFile(out)["OK"]
    cred = chain.getCredentials(withRegistryInfo=False)["Value"]
    assert (cred["isProxy"], cred["identity"], cred["group"]) == (True, DevPKI.DEV_USER_DN, "dirac_user")


def test_proxy_of_proxy_limited_with_validity(pkiDir, tmp_path, capsys):
    first = str(tmp_path / "first")
    assert tornado_proxy_init.main(
        ["--cert", os.path.join(pkiDir, "usercert.pem"), "--key", os.path.join(pkiDir, "userkey.pem"), "--out", first, "--valid", "2:30", "--bits", "1024"]
    ) == 0
    assert "time left: 02:29:" in capsys.readouterr().out
    second = str(tmp_path / "second")
    assert tornado_proxy_init.main(["--cert", first, "--out", second, "--limited", "--group", "dirac_admin"]) == 0
    out = capsys.readouterr().out
    assert "limited  : yes" in out and "lifetime shortened" in out
    chain = X509Chain()
    chain.loadProxyFromFile(second)
    cred = chain.getCredentials(withRegistryInfo=False)["Value"]
    assert chain.getNumCertsInChain()["Value"] == 3
    assert (cred["identity"], cred["isLimitedProxy"], cred["group"]) == (DevPKI.DEV_USER_DN, True, "dirac_admin")
    assert chain.getStrength()["Value"] == 2048
    assert X509Chain.fromFile(first).getStrength()["Value"] == 1024


def test_proxy_init_replaces_proxies_but_not_other_files(pkiDir, tmp_path, capsys):
    args = ["--cert", os.path.join(pkiDir, "usercert.pem"), "--key", os.path.join(pkiDir, "userkey.pem")]
    out = tmp_path / "x509up"
    assert tornado_proxy_init.main([*args, "--out", str(out)]) == 0
    first = out.read_bytes()
    assert tornado_proxy_init.main([*args, "--out", str(out)]) == 0
    assert out.read_bytes() != first
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    assert tornado_proxy_init.main([*args, "--out", str(precious)]) == 1
    assert precious.read_text() == "keep me"
    assert "not a proxy" in capsys.readouterr().err
    assert tornado_proxy_init.main([*args, "--out", str(precious), "--force"]) == 0
    assert stat.S_IMODE(os.stat(precious).st_mode) == 0o600


def test_proxy_init_defaults_and_errors(pkiDir, tmp_path, monkeypatch, capsys):
    for var in ("X509_USER_CERT", "X509_USER_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert tornado_proxy_init.main([]) == 1
    assert "no user certificate found" in capsys.readouterr().err
    monkeypatch.setenv("X509_USER_CERT", os.path.join(pkiDir, "bobcert.pem"))
    monkeypatch.setenv("X509_USER_KEY", os.path.join(pkiDir, "bobkey.pem"))
    monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "envproxy"))
    assert tornado_proxy_init.main([]) == 0
    assert X509Chain.fromFile(str(tmp_path / "envproxy")).identityDN == DevPKI.userDN("bob")
    capsys.readouterr()
    assert tornado_proxy_init.main(["--cert", os.path.join(pkiDir, "usercert.pem"), "--out", str(tmp_path / "p")]) == 1
    assert "pass --key" in capsys.readouterr().err
    assert tornado_proxy_init.main(["--cert", str(tmp_path / "missing.pem"), "--key", "x", "--out", str(tmp_path / "p")]) == 1
    assert "missing.pem" in capsys.readouterr().err
    for bad in (["--valid", "1:99"], ["--valid", "0:00"], ["--bits", "512"]):
        with pytest.raises(SystemExit) as exc:
            tornado_proxy_init.main(bad)
        assert exc.value.code == 2


def test_proxy_init_refuses_expired_certificates(tmp_path, capsys):
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc)
    ca = DevPKI.CertificateAuthority()
    old = ca.issueUser("old", notBefore=now - datetime.timedelta(days=3), notAfter=now - datetime.timedelta(days=1))
    old.writeCertAndKey(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    assert tornado_proxy_init.main(["--cert", str(tmp_path / "c.pem"), "--key", str(tmp_path / "k.pem"), "--out", str(tmp_path / "p")]) == 1
    assert "has expired" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_proxy_init_with_encrypted_key_and_no_terminal(tmp_path, capsys, monkeypatch):
    ca = DevPKI.CertificateAuthority()
    user = ca.issueUser("enc")
    (tmp_path / "c.pem").write_bytes(user.certPEM())
    (tmp_path / "k.pem").write_bytes(
        user.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    )
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    assert tornado_proxy_init.main(["--cert", str(tmp_path / "c.pem"), "--key", str(tmp_path / "k.pem"), "--out", str(tmp_path / "p")]) == 1
    assert "encrypted" in capsys.readouterr().err
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(tornado_proxy_init.getpass, "getpass", lambda prompt: "pw")
    assert tornado_proxy_init.main(["--cert", str(tmp_path / "c.pem"), "--key", str(tmp_path / "k.pem"), "--out", str(tmp_path / "p")]) == 0
