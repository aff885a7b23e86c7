"""tornado-start-CS and tornado-start-all refuse configurations that cannot work, with a clear message."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from TornadoServices.Security import DevPKI

RUN_SCRIPT = "import sys, importlib; sys.exit(importlib.import_module(sys.argv.pop(1)).main())"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def hostPKI(tmp_path_factory):
    base = tmp_path_factory.mktemp("cspki")
    ca = DevPKI.CertificateAuthority()
    DevPKI.writeCADirectory(str(base / "certificates"), [ca])
    ca.issueHost("localhost").writeCertAndKey(str(base / "hostcert.pem"), str(base / "hostkey.pem"), force=True)
    return base


def run(module: str, cfgText: str, root, pki, *args: str) -> subprocess.CompletedProcess:
    os.makedirs(root / "etc", exist_ok=True)
    cfgPath = root / "local.cfg"
    cfgPath.write_text(cfgText)
    securityPath = root / "security.cfg"
    securityPath.write_text(
        f"""
DIRAC
{{
  Security
  {{
    CertFile = {pki}/hostcert.pem
    KeyFile = {pki}/hostkey.pem
    CALocation = {pki}/certificates
  }}
}}
"""
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("X509_", "DIRAC"))}
    env.update({"DIRAC": str(root), "HOME": str(root), "PYTHONPATH": REPO + os.pathsep + env.get("PYTHONPATH", "")})
    return subprocess.run(
        [sys.executable, "-c", RUN_SCRIPT, module, "--cfg", str(securityPath), "--cfg", str(cfgPath), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_masterWithoutName_exitsWithAClearError(tmp_path, hostPKI):
    proc = run(
        "TornadoServices.scripts.tornado_start_CS",
        "DIRAC\n{\n  Configuration\n  {\n    Master = yes\n  }\n}\n",
        tmp_path,
        hostPKI,
        "--port",
        "0",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "/DIRAC/Configuration/Name" in proc.stdout + proc.stderr


def test_masterFileForAnotherName_exitsWithAClearError(tmp_path, hostPKI):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "Prod.cfg").write_text("DIRAC\n{\n  Configuration\n  {\n    Name = Other\n  }\n}\n")
    proc = run(
        "TornadoServices.scripts.tornado_start_CS",
        "DIRAC\n{\n  Configuration\n  {\n    Master = yes\n    Name = Prod\n  }\n}\n",
        tmp_path,
        hostPKI,
        "--port",
        "0",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "holds configuration 'Other'" in proc.stdout + proc.stderr


def test_tornadoStartAll_refusesAMasterCS(tmp_path, hostPKI):
    proc = run(
        "TornadoServices.scripts.tornado_start_all",
        """
DIRAC
{
  Configuration
  {
    Master = yes
    Name = Prod
  }
}
Systems
{
  Configuration
  {
    Services
    {
      Server
      {
        Protocol = https
        HandlerPath = TornadoServices/ConfigurationSystem/Service/TornadoConfigurationHandler.py
      }
    }
  }
}
""",
        tmp_path,
        hostPKI,
        "--port",
        "0",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "tornado-start-CS" in proc.stdout + proc.stderr
    assert not (tmp_path / "etc" / "Prod.cfg").exists()  # refused before the master wrote anything
