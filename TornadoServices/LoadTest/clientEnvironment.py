"""Client set-up for load-test scripts: load the configuration once per process, as DIRAC's scripts did.

A script calls ``initializeClientEnvironment(__file__)`` at import. When the project lives in a checkout of this
repository, unset variables default to the demo set-up that ``make demo`` creates: ``DIRACSYSCONFIG`` to
``cs/dirac.cfg``, ``X509_CERT_DIR`` to ``certs/certificates`` and ``X509_USER_PROXY`` to ``certs/proxy.pem``
(each only when the file exists). Variables already set always win.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

_lock = threading.Lock()
_loadedFiles: list[str] | None = None

#: Environment variable -> path relative to the repository root, used when the variable is unset.
DEMO_DEFAULTS = {
    "DIRACSYSCONFIG": "cs/dirac.cfg",
    "X509_CERT_DIR": "certs/certificates",
    "X509_USER_PROXY": "certs/proxy.pem",
}


def findRepositoryRoot(start: str | Path, depth: int = 5) -> Path | None:
    """The nearest parent directory of ``start`` holding ``cs/dirac.cfg``, if any."""
    current = Path(start).absolute()
    if current.is_file():
        current = current.parent
    for _ in range(depth):
        if (current / DEMO_DEFAULTS["DIRACSYSCONFIG"]).is_file():
            return current
        if current.parent == current:
            break
        current = current.parent
    return None


def applyDemoDefaults(scriptFile: str | Path) -> dict[str, str]:
    """Set the unset demo variables whose files exist; return what was set."""
    root = findRepositoryRoot(scriptFile)
    applied: dict[str, str] = {}
    if root is None:
        return applied
    for variable, relative in DEMO_DEFAULTS.items():
        target = root / relative
        if not os.environ.get(variable) and target.exists():
            os.environ[variable] = applied[variable] = str(target)
    return applied


def initializeClientEnvironment(scriptFile: str | Path) -> list[str]:
    """Apply the demo defaults and load the configuration (once per process); return the files read.

    Raises RuntimeError naming the file when the configuration cannot be loaded: multimech-run reports it
    as a broken project before the test starts.
    """
    global _loadedFiles
    with _lock:
        if _loadedFiles is not None:
            return list(_loadedFiles)
        applyDemoDefaults(scriptFile)
        from TornadoServices.ConfigurationSystem.Client.LocalConfiguration import ConfigurationError, loadConfiguration

        try:
            _loadedFiles = loadConfiguration()
        except ConfigurationError as exc:
            raise RuntimeError(
                f"cannot load the client configuration: {exc} (set DIRACSYSCONFIG to a dirac.cfg)"
            ) from None
        return list(_loadedFiles)
