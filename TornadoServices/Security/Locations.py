"""Where credentials and CAs are found, in DIRAC's order, with human-readable accounts of each search.

Each ``get*`` function returns the first match (or False, as DIRAC does); the matching ``describe*``
function says what was looked at, in the same order, and which variable or option sets it, so that an
error can tell the user what to do: ``no certificate found: set X509_USER_PROXY or run tornado-proxy-init``.
"""
from __future__ import annotations

import os
from typing import Iterator, Optional, Union

SECURITY_SECTION = "/DIRAC/Security"
HOST_FILE_PREFIXES = ("server", "host", "dirac", "service")


def _gConfig():
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig

    return gConfig


def _rootPath() -> str:
    import TornadoServices

    return TornadoServices.rootPath


def _option(path: str) -> str:
    value = _gConfig().getValue(path, "")
    return str(value).strip() if value else ""


def _gridSecurityDirs() -> list[tuple[str, str]]:
    """``(directory, how it was chosen)`` for the grid-security directories, in search order."""
    dirs = []
    configured = _option(f"{SECURITY_SECTION}/Grid-Security")
    if configured:
        dirs.append((configured, f"{SECURITY_SECTION}/Grid-Security"))
    dirs.append((os.path.join(_rootPath(), "etc", "grid-security"), "<rootPath>/etc/grid-security ($DIRAC sets rootPath)"))
    return dirs


# ---- host certificate --------------------------------------------------------------------------


def _hostCandidates(fileType: str, specificLocation: Optional[str]) -> Iterator[tuple[str, Optional[str]]]:
    """``(label, path)`` candidates for the host ``cert`` or ``key``, in DIRAC's order."""
    envVar = "DIRAC_X509_HOST_CERT" if fileType == "cert" else "DIRAC_X509_HOST_KEY"
    yield f"${envVar}", os.environ.get(envVar) or None
    option = "CertFile" if fileType == "cert" else "KeyFile"
    if specificLocation:
        yield f"{specificLocation}/{option}", _option(f"{specificLocation}/{option}") or None
    yield f"{SECURITY_SECTION}/{option}", _option(f"{SECURITY_SECTION}/{option}") or None
    for prefix in HOST_FILE_PREFIXES:
        for directory, how in _gridSecurityDirs():
            yield f"{prefix}{fileType}.pem in {how}", os.path.join(directory, f"{prefix}{fileType}.pem")


def _findHostFile(fileType: str, specificLocation: Optional[str]) -> Optional[str]:
    for _label, path in _hostCandidates(fileType, specificLocation):
        if path and os.path.isfile(path):
            return os.path.realpath(path)
    return None


def getHostCertificateAndKeyLocation(specificLocation: Optional[str] = None) -> Union[tuple[str, str], bool]:
    """``(certFile, keyFile)`` of the host, or False.

    Each of cert and key: ``$DIRAC_X509_HOST_CERT``/``$DIRAC_X509_HOST_KEY`` (if the file exists), then
    ``<specificLocation>/CertFile``/``KeyFile`` when a CS section is given, then
    ``/DIRAC/Security/CertFile``/``KeyFile``, then ``{server,host,dirac,service}{cert,key}.pem`` under
    ``/DIRAC/Security/Grid-Security`` and ``<rootPath>/etc/grid-security``.
    """
    cert = _findHostFile("cert", specificLocation)
    key = _findHostFile("key", specificLocation)
    if not cert or not key:
        return False
    return cert, key


def describeHostCertificateSearch(specificLocation: Optional[str] = None) -> str:
    """What :func:`getHostCertificateAndKeyLocation` looked at, and how to fix a miss."""
    parts = [_describe(_hostCandidates(t, specificLocation)) for t in ("cert", "key")]
    return (
        f"host certificate searched in: {parts[0]}; host key searched in: {parts[1]}. "
        "Set DIRAC_X509_HOST_CERT and DIRAC_X509_HOST_KEY (or /DIRAC/Security/CertFile and KeyFile), "
        "or run tornado-certs"
    )


# ---- proxy -------------------------------------------------------------------------------------


def getDefaultProxyLocation() -> str:
    """Where a new proxy goes: ``$X509_USER_PROXY`` when set, else ``/tmp/x509up_u<uid>``."""
    return os.environ.get("X509_USER_PROXY") or f"/tmp/x509up_u{os.getuid()}"


def _proxyCandidates() -> Iterator[tuple[str, Optional[str]]]:
    for envVar in ("GRID_PROXY_FILE", "X509_USER_PROXY"):
        yield f"${envVar}", os.environ.get(envVar) or None
    yield "the default proxy file", f"/tmp/x509up_u{os.getuid()}"


def getProxyLocation() -> Union[str, bool]:
    """The proxy to use: ``$GRID_PROXY_FILE``, ``$X509_USER_PROXY`` (first existing, resolved), ``/tmp/x509up_u<uid>``; else False."""
    for _label, path in _proxyCandidates():
        if path and os.path.isfile(path):
            return os.path.realpath(path)
    return False


def describeProxySearch() -> str:
    """What :func:`getProxyLocation` looked at, and how to fix a miss."""
    return f"proxy searched in: {_describe(_proxyCandidates())}. Set X509_USER_PROXY or run tornado-proxy-init"


# ---- user certificate (only for proxy creation) -------------------------------------------------


def _userCandidates(fileType: str) -> Iterator[tuple[str, Optional[str]]]:
    envVar = "X509_USER_CERT" if fileType == "cert" else "X509_USER_KEY"
    yield f"${envVar}", os.environ.get(envVar) or None
    yield "~/.globus", os.path.expanduser(f"~/.globus/user{fileType}.pem")


def getUserCertificateAndKeyLocation() -> Union[tuple[str, str], bool]:
    """``(certFile, keyFile)`` of the user for proxy creation: ``$X509_USER_CERT``/``$X509_USER_KEY``, else ``~/.globus``."""
    found = []
    for fileType in ("cert", "key"):
        path = next((p for _l, p in _userCandidates(fileType) if p and os.path.isfile(p)), None)
        if not path:
            return False
        found.append(path)
    return found[0], found[1]


def describeUserCertificateSearch() -> str:
    """What :func:`getUserCertificateAndKeyLocation` looked at, and how to fix a miss."""
    return (
        f"user certificate searched in: {_describe(_userCandidates('cert'))}; "
        f"user key searched in: {_describe(_userCandidates('key'))}. "
        "Pass --cert and --key, or set X509_USER_CERT and X509_USER_KEY"
    )


# ---- CAs ---------------------------------------------------------------------------------------


def _caCandidates() -> Iterator[tuple[str, Optional[str], bool]]:
    """``(label, path, mustBeDirectory)`` in DIRAC's order."""
    configured = _option(f"{SECURITY_SECTION}/Grid-Security")
    yield (
        f"certificates/ under {SECURITY_SECTION}/Grid-Security",
        os.path.join(configured, "certificates") if configured else None,
        True,
    )
    yield f"{SECURITY_SECTION}/CALocation", _option(f"{SECURITY_SECTION}/CALocation") or None, True
    yield "$X509_CERT_DIR", os.environ.get("X509_CERT_DIR") or None, False
    yield "<rootPath>/etc/grid-security/certificates", os.path.join(_rootPath(), "etc", "grid-security", "certificates"), True
    yield "the system grid directory", "/etc/grid-security/certificates", True


def getCAsLocation() -> Union[str, bool]:
    """The CA directory: ``<Grid-Security>/certificates``, ``/DIRAC/Security/CALocation`` (directories),
    ``$X509_CERT_DIR`` (taken as set, so a wrong value is reported rather than skipped),
    ``<rootPath>/etc/grid-security/certificates``, ``/etc/grid-security/certificates``; else False."""
    for _label, path, mustBeDir in _caCandidates():
        if path and (not mustBeDir or os.path.isdir(path)):
            return path
    return False


def describeCASearch() -> str:
    """What :func:`getCAsLocation` looked at, and how to fix a miss."""
    items = ((label, path) for label, path, _dir in _caCandidates())
    return (
        f"CA directory searched in: {_describe(items, directories=True)}. "
        "Set X509_CERT_DIR (or /DIRAC/Security/CALocation) to a directory of <hash>.0 CA files, or run tornado-certs"
    )


def _describe(candidates, directories: bool = False) -> str:
    """``label=path (state)`` for each candidate, comma-joined."""
    out = []
    for label, path in candidates:
        if not path:
            out.append(f"{label} (not set)")
            continue
        exists = os.path.isdir(path) if directories else os.path.isfile(path)
        state = "found" if exists else "no such directory" if directories else "no such file"
        text = f"{label}={path}" if label.startswith(("$", "/")) else path
        out.append(f"{text} ({state})")
    return ", ".join(out)
