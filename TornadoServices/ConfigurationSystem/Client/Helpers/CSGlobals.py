"""Installation-wide values of the configuration that servers and clients both read."""
from __future__ import annotations

from TornadoServices.ConfigurationSystem.Client.Config import gConfig

__all__ = ["BASE_PACKAGE", "getExtensions"]

#: the package searched for handlers after every extension
BASE_PACKAGE = "TornadoServices"


def getExtensions() -> list[str]:
    """Packages searched for service handlers: ``/DIRAC/Extensions`` in order, then ``TornadoServices``."""
    extensions = [ext for ext in gConfig.getValue("/DIRAC/Extensions", []) if ext and ext != "DIRAC"]
    if BASE_PACKAGE not in extensions:
        extensions.append(BASE_PACKAGE)
    return extensions
