"""Pick the client class for a service from the scheme of its URLs (DIRAC's ``RPCClientSelector``).

The decision is made on the URLs the client will actually use, resolved as the client resolves them: an
explicit URL (list) as given; else, when the local site (``/LocalSite/Site``) has gateways
(``/DIRAC/Gateways/<site>``) and ``ignoreGateways`` is not set, the gateway URLs, which replace the
service's own; else the service's CS URLs (main and failover). The whole list counts, never a random pick:

* some https URLs -> the https client (``TornadoClient`` or the ``httpsClient`` given), which uses
  only the https URLs (the others are logged at debug level);
* only dips URLs -> a client whose every call returns an S_ERROR saying the legacy dips protocol
  is not available (this package speaks HTTPS only);
* nothing resolvable -> the https client, whose calls then explain what is missing.
"""
from __future__ import annotations

import errno
from typing import Any, Callable, Optional

from TornadoServices.Client.private.TornadoBaseClient import TornadoBaseClient, _schemeOf, _serviceURLs, _splitURLs
from TornadoServices.Client.TornadoClient import TornadoClient
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.Core.Logging import gLogger
from TornadoServices.Core.ReturnValues import S_ERROR

__all__ = ["RPCClientSelector", "TransferClientSelector", "ClientSelector", "LegacyProtocolClient"]

sLog = gLogger.getSubLogger("RPCClientSelector")


def _resolve(serviceName: str, ignoreGateways: bool = False) -> tuple[list[str], bool]:
    """(URLs the client would use, through a gateway?): explicit URLs as given, else gateways or the CS list."""
    destination = serviceName.strip()
    if "://" in destination:
        return _splitURLs(destination), False
    name = destination.strip("/")
    if "/" not in name:
        return [], False  # the client explains what a service name looks like, per call
    try:
        return _serviceURLs(name, ignoreGateways)
    except Exception as exc:  # the chosen client reports resolution problems itself, per call
        sLog.debug(f"Cannot resolve the URLs of {serviceName}", repr(exc))
        return [], False


class LegacyProtocolClient:
    """Stands for a service reachable only over dips: every call returns the same explanatory S_ERROR."""

    def __init__(self, serviceName: str, urls: list[str], *, gatewaySite: Optional[str] = None, **kwargs: Any) -> None:
        self._destinationSrv = serviceName
        self._urls = urls
        #: the local site whose gateways these URLs are (None: the service's own URLs)
        self._gatewaySite = gatewaySite
        self.kwargs = kwargs

    def _error(self, method: str, args: tuple[Any, ...]) -> dict[str, Any]:
        if self._gatewaySite is not None:
            message = (
                f"{self._destinationSrv} is reached through the gateways of site {self._gatewaySite} "
                f"(/DIRAC/Gateways/{self._gatewaySite}: {', '.join(self._urls)}), which speak only the legacy dips "
                "protocol, not available in TornadoServices: configure an https gateway, or pass ignoreGateways=True "
                "to use the service's own URLs"
            )
        else:
            message = (
                f"{self._destinationSrv} is only reachable over the legacy dips protocol ({', '.join(self._urls)}), "
                "which is not available in TornadoServices: configure https URLs for this service"
            )
        result = S_ERROR(errno.EPROTONOSUPPORT, message)
        result["rpcStub"] = ((self._destinationSrv, dict(self.kwargs)), method, list(args))
        return result

    def executeRPC(self, method: str, *args: Any) -> dict[str, Any]:
        """Return the "dips not available" S_ERROR."""
        return self._error(method, args)

    def receiveFile(self, destFile: Any, *args: Any) -> dict[str, Any]:
        """Return the "dips not available" S_ERROR."""
        return self._error("streamToClient", args)

    def sendFile(self, source: Any, fileID: Any, token: str = "") -> dict[str, Any]:
        """Return the "dips not available" S_ERROR."""
        return self._error("streamFromClient", (fileID, token))

    def __getattr__(self, attrName: str) -> Callable[..., dict[str, Any]]:
        if attrName.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {attrName!r}")
        return lambda *args: self._error(attrName, args)


def ClientSelector(defaultClass: type, serviceName_or_url: str, **kwargs: Any) -> Any:
    """Return ``httpsClient``/``defaultClass`` for https URL lists, a LegacyProtocolClient for dips-only ones."""
    httpsClient: Optional[type] = kwargs.pop("httpsClient", None)
    kwargs.pop("diracxClient", None)
    clientClass = httpsClient or defaultClass
    if not isinstance(serviceName_or_url, str):
        raise TypeError(f"Service name must be a str like 'Framework/Dummy', not {type(serviceName_or_url).__name__}")
    urls, viaGateway = _resolve(serviceName_or_url, bool(kwargs.get(TornadoBaseClient.KW_IGNORE_GATEWAYS)))
    schemes = {_schemeOf(url) for url in urls}
    if urls and schemes == {"dips"}:
        site = gConfig.getValue("/LocalSite/Site", "") if viaGateway else None
        return LegacyProtocolClient(serviceName_or_url, urls, gatewaySite=site, **kwargs)
    if "https" in schemes and len(schemes) > 1:
        sLog.debug(
            f"{serviceName_or_url} mixes protocols; using its https URLs only",
            ", ".join(url for url in urls if _schemeOf(url) != "https"),
        )
    return clientClass(serviceName_or_url, **kwargs)


def RPCClientSelector(serviceName_or_url: str, **kwargs: Any) -> Any:
    """The RPC client for a service: ``RPCClientSelector("Framework/Dummy", timeout=30).echo("x")``."""
    return ClientSelector(TornadoClient, serviceName_or_url, **kwargs)


def TransferClientSelector(serviceName_or_url: str, **kwargs: Any) -> Any:
    """The file-transfer client for a service (receiveFile / sendFile)."""
    from TornadoServices.Client.TransferClient import TransferClient

    return ClientSelector(TransferClient, serviceName_or_url, **kwargs)
