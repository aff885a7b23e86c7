"""TornadoServices: a DIRAC-compatible HTTPS RPC service container.

``from TornadoServices import S_OK, S_ERROR, gLogger, gConfig`` works as ``from DIRAC import ...`` does.
The heavier names are imported lazily so that low-level modules can import this package freely.
"""
from __future__ import annotations

import os
import sys
from typing import Any

__version__ = version = "0.1.0"

#: Installation root, as DIRAC's ``rootPath``: ``$DIRAC`` when set, else the Python prefix.
rootPath = os.environ.get("DIRAC") or sys.prefix

_LAZY = {
    "S_OK": ("TornadoServices.Core.ReturnValues", "S_OK"),
    "S_ERROR": ("TornadoServices.Core.ReturnValues", "S_ERROR"),
    "gLogger": ("TornadoServices.Core.Logging", "gLogger"),
    "gConfig": ("TornadoServices.ConfigurationSystem.Client.Config", "gConfig"),
    "initialize": ("TornadoServices.ConfigurationSystem.Client.LocalConfiguration", "initialize"),
}

__all__ = ["S_OK", "S_ERROR", "gLogger", "gConfig", "initialize", "rootPath", "version", "__version__"]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'TornadoServices' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
