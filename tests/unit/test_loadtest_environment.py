"""Demo defaults of the load-test scripts' client environment."""
import os

import pytest

from TornadoServices.LoadTest.clientEnvironment import DEMO_DEFAULTS, applyDemoDefaults, findRepositoryRoot


@pytest.fixture
def checkout(tmp_path):
    """A fake repository checkout holding the demo files; the variables are unset during the test."""
    (tmp_path / "cs").mkdir()
    (tmp_path / "cs" / "dirac.cfg").write_text("DIRAC\n{\n}\n")
    (tmp_path / "certs" / "certificates").mkdir(parents=True)
    script = tmp_path / "multimechanize" / "ping" / "test_scripts" / "v_perf.py"
    script.parent.mkdir(parents=True)
    script.write_text("")
    saved = {variable: os.environ.pop(variable, None) for variable in DEMO_DEFAULTS}
    try:
        yield tmp_path, script
    finally:
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value


def test_repository_root_is_found_from_a_script(checkout):
    root, script = checkout
    assert findRepositoryRoot(script) == root
    assert findRepositoryRoot(root.parent) is None


def test_unset_variables_default_to_existing_demo_files(checkout):
    root, script = checkout
    applied = applyDemoDefaults(script)
    assert applied == {
        "DIRACSYSCONFIG": str(root / "cs" / "dirac.cfg"),
        "X509_CERT_DIR": str(root / "certs" / "certificates"),
    }
    assert os.environ["DIRACSYSCONFIG"] == str(root / "cs" / "dirac.cfg")
    assert "X509_USER_PROXY" not in os.environ  # certs/proxy.pem does not exist


def test_variables_already_set_win(checkout):
    root, script = checkout
    os.environ["DIRACSYSCONFIG"] = "/elsewhere/dirac.cfg"
    (root / "certs" / "proxy.pem").write_text("")
    applied = applyDemoDefaults(script)
    assert "DIRACSYSCONFIG" not in applied
    assert os.environ["DIRACSYSCONFIG"] == "/elsewhere/dirac.cfg"
    assert applied["X509_USER_PROXY"] == str(root / "certs" / "proxy.pem")
