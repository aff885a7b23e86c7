"""The Configuration service over HTTPS (``Configuration/Server``): serves, versions and changes the CS.

Master or slave is decided by the local option ``/DIRAC/Configuration/Master``. Binary data travels as
base64 text of zlib-compressed CFG text (JSON cannot carry bytes), as DIRAC's HTTPS CS does. Who may call
what follows DIRAC's template (a CS ``Authorization`` section still overrides it): everything needs an
authenticated caller; changing the configuration needs ``CSAdministrator``; reading old versions needs
``ServiceAdministrator`` or ``CSAdministrator``.
"""
from __future__ import annotations

import socket
from base64 import b64decode, b64encode
from binascii import Error as BinasciiError
from typing import Any

from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.ConfigurationSystem.Client.ConfigurationData import gConfigurationData
from TornadoServices.ConfigurationSystem.Client.PathFinder import getServiceSection, getTornadoPort
from TornadoServices.ConfigurationSystem.private.Refresher import gRefresher
from TornadoServices.ConfigurationSystem.private.ServiceInterface import ServiceInterface, getCFGOption
from TornadoServices.Core.Logging import gLogger
from TornadoServices.Core.ReturnValues import S_ERROR, S_OK
from TornadoServices.Server.TornadoService import TornadoService

sLog = gLogger.getSubLogger("ConfigurationHandler")

#: getCommitHistory never returns more entries than this (DIRAC's cap).
MAX_HISTORY = 100


def getOwnURL(serviceName: str, serverURL: str = "", port: int | None = None) -> str:
    """Return the URL this Configuration server is reached at, from configuration (never from a request).

    The service section option ``URL`` of the *local* configuration wins (a slave must not take the
    master's value from the downloaded configuration); then the URL the server built for the service
    (``/Systems/Tornado/Hostname`` or the FQDN, and the bound port); else one built here the same way.
    """
    section = getServiceSection(serviceName)
    explicit = getCFGOption(gConfigurationData.getLocalCFG(), f"{section}/URL").strip()
    if explicit:
        return explicit
    if serverURL:
        return serverURL
    if not port:
        port = gConfig.getValue(f"{section}/Port", 0) or getTornadoPort()
    host = gConfig.getValue("/Systems/Tornado/Hostname", "") or socket.getfqdn()
    return f"https://{host}:{port}/{serviceName}"


class TornadoConfigurationHandler(TornadoService):
    """The CS service: configuration download, slave registration, commits, history and rollback."""

    ServiceInterface: ServiceInterface | None = None

    @classmethod
    def initializeHandler(cls, serviceInfo: dict[str, Any]) -> dict:
        """Create the master or slave logic once per process, with this server's configured URL."""
        if cls.ServiceInterface is None:
            serviceName = serviceInfo.get("serviceName") or "Configuration/Server"
            url = getOwnURL(serviceName, serviceInfo.get("URL", ""), serviceInfo.get("Port"))
            try:
                cls.ServiceInterface = ServiceInterface(
                    url, refresher=gRefresher, serviceSection=getServiceSection(serviceName)
                )
            except (OSError, ValueError, RuntimeError) as exc:
                return S_ERROR(f"Cannot start the configuration service: {exc}")
        return S_OK()

    @property
    def _si(self) -> ServiceInterface:
        if self.ServiceInterface is None:
            raise RuntimeError("the configuration service is not initialised")
        return self.ServiceInterface

    def _credentials(self) -> dict[str, Any]:
        """Return the caller's credentials, requiring an identified user or host."""
        credDict = self.getRemoteCredentials() or {}
        if not credDict.get("DN") or not (credDict.get("username") or credDict.get("hostname")):
            raise PermissionError("You must be authenticated with a registered user or host certificate")
        return credDict

    # ---- reading --------------------------------------------------------------------------------

    auth_getVersion = ["authenticated"]

    def export_getVersion(self) -> dict:
        """Return the version of the served configuration ("0" when none)."""
        return S_OK(self._si.getVersion())

    auth_getCompressedData = ["authenticated"]

    def export_getCompressedData(self) -> dict:
        """Return the whole configuration: base64 of zlib-compressed CFG text."""
        return S_OK(b64encode(self._si.getCompressedConfigurationData()).decode())

    auth_getCompressedDataIfNewer = ["authenticated"]
    types_getCompressedDataIfNewer = [str]

    def export_getCompressedDataIfNewer(self, sClientVersion: str) -> dict:
        """Return {"newestVersion": v} plus "data" when the caller's version is older (string order)."""
        version, data = self._si.getVersionAndCompressedData()
        retDict: dict[str, Any] = {"newestVersion": version}
        if sClientVersion < version:
            retDict["data"] = b64encode(data).decode()
        return S_OK(retDict)

    auth_writeEnabled = ["authenticated"]

    def export_writeEnabled(self) -> dict:
        """Return True when this server accepts commits (it is the master)."""
        return S_OK(self._si.isMaster())

    # ---- slaves ---------------------------------------------------------------------------------

    auth_publishSlaveServer = ["authenticated"]
    types_publishSlaveServer = [str]

    def export_publishSlaveServer(self, sURL: str) -> dict:
        """Register (or keep alive) a slave configuration server at ``sURL``."""
        return self._si.publishSlaveServer(sURL)

    auth_refreshConfiguration = ["CSAdministrator"]

    def export_refreshConfiguration(self, fromMaster: bool = False) -> dict:
        """Refresh this server's configuration now (the master calls it on slaves after a commit)."""
        if self._si.isMaster():
            return S_OK(self._si.getVersion())
        return gRefresher.forceRefresh(fromMaster=bool(fromMaster))

    # ---- changing the configuration ------------------------------------------------------------

    auth_commitNewData = ["CSAdministrator"]

    def export_commitNewData(self, sData: str, message: str = "") -> dict:
        """Commit base64(zlib(CFG text)); the text's Version must be the current one (optimistic locking)."""
        if not isinstance(sData, str) or not isinstance(message, str):
            return S_ERROR("commitNewData expects base64 text of zlib-compressed CFG and an optional message string")
        try:
            credDict = self._credentials()
        except PermissionError as exc:
            return S_ERROR(str(exc))
        try:
            data = b64decode(sData, validate=True)
        except (BinasciiError, ValueError):
            return S_ERROR("commitNewData expects base64 text of zlib-compressed CFG: the data is not base64")
        return self._si.updateConfiguration(data, credDict, message)

    auth_rollbackToVersion = ["CSAdministrator"]

    def export_rollbackToVersion(self, version: str, message: str = "") -> dict:
        """Make the content of an older version current again (as a new version); optional message."""
        if not isinstance(version, str) or not isinstance(message, str):
            return S_ERROR("rollbackToVersion expects a version string and an optional message string")
        try:
            credDict = self._credentials()
        except PermissionError as exc:
            return S_ERROR(str(exc))
        return self._si.rollbackToVersion(version, credDict, message)

    auth_forceGlobalConfigurationUpdate = ["CSAdministrator"]

    def export_forceGlobalConfigurationUpdate(self) -> dict:
        """Ask every service listed in /Systems/*/URLs to refresh its configuration now."""
        if not self._si.isMaster():
            return S_ERROR("forceGlobalConfigurationUpdate must be sent to the master configuration server")
        results = self._si.forceGlobalUpdate(wait=True)
        return S_OK({url: "OK" if res.get("OK") else res.get("Message", "failed") for url, res in results.items()})

    # ---- history --------------------------------------------------------------------------------

    auth_getCommitHistory = ["authenticated"]

    def export_getCommitHistory(self, limit: int = MAX_HISTORY) -> dict:
        """Return [[committer, version], ...] newest first, at most 100."""
        if not isinstance(limit, int) or isinstance(limit, bool):
            return S_ERROR("getCommitHistory expects an integer limit")
        limit = MAX_HISTORY if limit <= 0 or limit > MAX_HISTORY else limit
        return S_OK(self._si.getCommitHistory(limit))

    auth_getCommitLog = ["authenticated"]

    def export_getCommitLog(self, limit: int = MAX_HISTORY) -> dict:
        """Return the version records (committer, DN, group, kind, message, time) newest first, at most 100."""
        if not isinstance(limit, int) or isinstance(limit, bool):
            return S_ERROR("getCommitLog expects an integer limit")
        limit = MAX_HISTORY if limit <= 0 or limit > MAX_HISTORY else limit
        return S_OK(self._si.getCommitLog(limit))

    auth_getVersionContents = ["ServiceAdministrator", "CSAdministrator"]
    types_getVersionContents = [list]

    def export_getVersionContents(self, versionList: list) -> dict:
        """Return [zlib-compressed CFG text, ...] of the requested versions (bytes travel as JEncode b64)."""
        contents = []
        for version in versionList:
            if not isinstance(version, str):
                return S_ERROR(f"Versions are strings, got {version!r}")
            result = self._si.getVersionContents(version)
            if not result["OK"]:
                return S_ERROR(f"Can't get contents for version {version}: {result['Message']}")
            contents.append(result["Value"])
        return S_OK(contents)
