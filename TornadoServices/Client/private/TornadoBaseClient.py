"""Client policy for DIRAC HTTPS services: URLs, credentials, failover, error mapping.

This layer decides *where* and *as whom* a call is sent and what its outcome means; the bytes go
through a :class:`~TornadoServices.Client.private.transport.Transport` (one ``post`` method).

Failover rules (a fix of DIRAC's, whose retry discarded the retry's answer):

* URLs are tried in order: the CS list (main URLs shuffled, then failover URLs), or an explicit
  ``https://`` URL / comma-separated list as given. URLs banned in the last ``BAN_SECONDS`` go last.
* A failure where the request *certainly was not delivered* (connection refused, DNS, connect
  timeout, TLS handshake failure) bans the URL and the next URL is tried; its answer is the answer.
  A 404 (service not served there) does the same.
* After a *possible delivery* (read timeout, connection lost before the whole answer) the call is
  never resent: the S_ERROR says the call may or may not have run.

Delegation: ``delegatedDN``/``delegatedGroup`` (or ``extraCredentials``) given to the constructor are
fixed for the client's life; otherwise each call reads the :class:`ThreadConfig` of the thread (or asyncio
task) *making the call*, not of the one that created the client: a client built at start-up or shared
between worker threads must send, for each call, the identity its caller acts for and never another
thread's. ``setup`` likewise: the kwarg, else the caller's ThreadConfig, else ``/DIRAC/Setup``, else "None".

Timeouts: ``timeout`` (seconds; falsy means DIRAC's default 600) bounds the whole answer of an RPC.
Unlike DIRAC no 120 s minimum is forced: a caller asking for 5 s gets 5 s. Connecting (TCP + TLS
handshake) has its own limit, ``min(10, timeout)``, so a dead server fails fast. For file transfers
the timeout is an inactivity limit (no data for that long), not a bound on the whole transfer.
"""
from __future__ import annotations

import copy
import os
import threading
import time
from typing import Any, Callable, Optional, Sequence
from urllib.parse import urlsplit

from TornadoServices.Client.private import errors as E
from TornadoServices.Client.private.transport import Response, Timeouts, TLSSettings, Transport
from TornadoServices.ConfigurationSystem.Client import PathFinder
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.ConfigurationSystem.Client.Helpers import Registry
from TornadoServices.Core import DErrno
from TornadoServices.Core.DISET.ThreadConfig import ThreadConfig
from TornadoServices.Core.Encoding import DecodeError, EncodeError, decode, encode
from TornadoServices.Core.Logging import gLogger
from TornadoServices.Core.ReturnValues import S_ERROR
from TornadoServices.Security import Locations

__all__ = [
    "TornadoBaseClient",
    "DEFAULT_RPC_TIMEOUT",
    "MAX_CONNECT_TIMEOUT",
    "normaliseTimeout",
    "resetBannedURLs",
    "getDefaultTransport",
    "setDefaultTransport",
]

sLog = gLogger.getSubLogger("TornadoClient")
gThreadConfig = ThreadConfig()

DEFAULT_RPC_TIMEOUT = 600
MAX_CONNECT_TIMEOUT = 10.0
BAN_SECONDS = 300.0
ERROR_BODY_LIMIT = 64 * 1024


def normaliseTimeout(value: Any) -> float:
    """DIRAC's rule without its 120 s floor: falsy (or negative) -> 600 s, else the value asked for (seconds)."""
    if not value:
        return DEFAULT_RPC_TIMEOUT
    timeout = value if isinstance(value, (int, float)) and not isinstance(value, bool) else float(value)
    if timeout <= 0:
        return DEFAULT_RPC_TIMEOUT
    return timeout


class _BannedURLs:
    """URLs that recently failed, kept aside (tried last) for ``BAN_SECONDS``; shared by all clients."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}

    def ban(self, url: str) -> None:
        with self._lock:
            self._until[url] = time.monotonic() + BAN_SECONDS

    def banned(self) -> set[str]:
        now = time.monotonic()
        with self._lock:
            for url in [u for u, t in self._until.items() if t <= now]:
                del self._until[url]
            return set(self._until)

    def reset(self) -> None:
        with self._lock:
            self._until.clear()


gBannedURLs = _BannedURLs()


def resetBannedURLs() -> None:
    """Forget every banned URL (tests; after fixing a server)."""
    gBannedURLs.reset()


_defaultTransport: Optional[Transport] = None
_transportLock = threading.Lock()


def getDefaultTransport() -> Transport:
    """The process-wide transport (pooled requests sessions), created on first use."""
    global _defaultTransport
    with _transportLock:
        if _defaultTransport is None:
            from TornadoServices.Client.private.httpTransport import RequestsTransport

            _defaultTransport = RequestsTransport()
        return _defaultTransport


def setDefaultTransport(transport: Optional[Transport]) -> None:
    """Replace the process-wide transport (None restores the real one on next use)."""
    global _defaultTransport
    with _transportLock:
        _defaultTransport = transport


def _hostOf(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _schemeOf(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _splitURLs(destination: str) -> list[str]:
    """The URL(s) of an explicit destination, in the given order ([] for a System/Service name)."""
    if "://" not in destination:
        return []
    return [url.strip() for url in destination.split(",") if url.strip()]


def _serviceURLs(serviceName: str, ignoreGateways: bool = False) -> tuple[list[str], bool]:
    """(URLs, through a gateway?) a client of ``System/Component`` uses, any scheme.

    The gateways of the local site (``/LocalSite/Site`` -> ``/DIRAC/Gateways/<site>``, each made to end in
    ``/System/Component``) replace the service's own URLs unless ``ignoreGateways``; else the CS list (main
    URLs shuffled, then failover URLs). Shared by the clients and RPCClientSelector, so that the selector
    decides on the URLs that the client then uses.
    """
    if not ignoreGateways:
        gateways = PathFinder.getGatewayURLs(*serviceName.split("/", 1))
        if gateways:
            return gateways, True
    return PathFinder.getServiceURLs(serviceName, failover=True), False


class TornadoBaseClient:
    """Everything a DIRAC HTTPS client does except the attribute-call sugar (see TornadoClient)."""

    KW_USE_CERTIFICATES = "useCertificates"
    KW_EXTRA_CREDENTIALS = "extraCredentials"
    KW_TIMEOUT = "timeout"
    KW_SETUP = "setup"
    KW_VO = "VO"
    KW_DELEGATED_DN = "delegatedDN"
    KW_DELEGATED_GROUP = "delegatedGroup"
    KW_IGNORE_GATEWAYS = "ignoreGateways"
    KW_PROXY_LOCATION = "proxyLocation"
    KW_PROXY_STRING = "proxyString"
    KW_PROXY_CHAIN = "proxyChain"
    KW_SKIP_CA_CHECK = "skipCACheck"
    KW_KEEP_ALIVE_LAPSE = "keepAliveLapse"
    VAL_EXTRA_CREDENTIALS_HOST = "hosts"

    #: kwargs never copied into rpcStub: secrets, objects, and what DIRAC leaves out.
    STUB_EXCLUDED = frozenset({KW_USE_CERTIFICATES, KW_PROXY_STRING, KW_PROXY_CHAIN})

    def __init__(self, serviceName: str, **kwargs: Any) -> None:
        if not isinstance(serviceName, str):
            raise TypeError(
                f"Service name must be a str like 'Framework/Dummy' or an https:// URL, not {type(serviceName).__name__}"
            )
        self._transport: Optional[Transport] = kwargs.pop("transport", None)
        self._destinationSrv = serviceName.strip()
        self._serviceName = self._destinationSrv
        self.kwargs = kwargs
        self.__initError: Optional[E.RPCError] = None
        self.__pemData: Optional[bytes] = None
        self.vo = "unknown"
        self.__setupKwarg = ""
        self.__setupConfig = "None"
        self.__extraCredentials: Any = ""
        #: True when the constructor fixed the credentials sent (delegatedDN or extraCredentials kwarg)
        self.__fixedExtraCredentials = False
        try:
            self.__discoverServiceName()
            self.__mergeConnConf()
            self.timeout = normaliseTimeout(self.kwargs.get(self.KW_TIMEOUT))
            self.kwargs[self.KW_TIMEOUT] = self.timeout
            self.__discoverCredentials()
            self.__discoverVO()
            self.__discoverSetup()
            self.__discoverExtraCredentials()
        except E.RPCError as exc:
            self.__initError = exc
            self.timeout = normaliseTimeout(self.kwargs.get(self.KW_TIMEOUT))

    # ------------------------------------------------------------------ construction
    def __discoverServiceName(self) -> None:
        """Set ``_serviceName`` to "System/Component" (the URL path for explicit URLs)."""
        if "://" in self._destinationSrv:
            path = urlsplit(self._destinationSrv.split(",")[0].strip()).path.strip("/")
            self._serviceName = path or self._destinationSrv
        else:
            self._serviceName = self._destinationSrv.strip("/")

    def __mergeConnConf(self) -> None:
        """Options under /DIRAC/ConnConf/<host>:<port> fill kwargs not given explicitly."""
        if not gConfig.getSections("/DIRAC/ConnConf")["OK"]:
            return
        try:
            urls = self._explicitURLs() or PathFinder.getServiceURLs(self._serviceName)
        except Exception:  # an unresolvable name is reported at call time, with its own message
            return
        if not urls:
            return
        parts = urlsplit(urls[0])
        if not parts.hostname:
            return
        result = gConfig.getOptionsDict(f"/DIRAC/ConnConf/{parts.hostname}:{parts.port or 443}")
        if result["OK"]:
            for key, value in result["Value"].items():
                self.kwargs.setdefault(key, value)

    def __discoverCredentials(self) -> None:
        """Decide between proxyLocation, host certificate, in-memory proxy and the default proxy."""
        useCertificates = self.kwargs.get(self.KW_USE_CERTIFICATES)
        if useCertificates is None:
            useCertificates = gConfig.getValue("/DIRAC/Security/UseServerCertificate", False)
        self.kwargs[self.KW_USE_CERTIFICATES] = bool(useCertificates)
        self.useCertificates = bool(useCertificates)

        skipCACheck = self.kwargs.get(self.KW_SKIP_CA_CHECK)
        if skipCACheck is None:
            skipCACheck = False if self.useCertificates else gConfig.getValue("/DIRAC/Security/SkipCAChecks", False)
        self.skipCACheck = bool(skipCACheck)

        chain = self.kwargs.get(self.KW_PROXY_CHAIN)
        if chain is not None:
            result = chain.dumpAllToString()
            if not result["OK"]:
                raise E.CredentialError(f"Cannot serialise the proxyChain given to the client: {result['Message']}")
            self.__pemData = _toBytes(result["Value"])
        elif self.kwargs.get(self.KW_PROXY_STRING):
            self.__pemData = _toBytes(self.kwargs[self.KW_PROXY_STRING])

    def __discoverVO(self) -> None:
        """clientVO: the VO kwarg, else /DIRAC/VirtualOrganization, else "unknown" (as DIRAC 9)."""
        self.vo = self.kwargs.get(self.KW_VO) or gConfig.getValue("/DIRAC/VirtualOrganization", "") or "unknown"

    def __discoverSetup(self) -> None:
        """clientSetup: the setup kwarg, else (per call) ThreadConfig, else /DIRAC/Setup, else "None" (DIRAC 9)."""
        self.__setupKwarg = str(self.kwargs.get(self.KW_SETUP) or "")
        self.__setupConfig = PathFinder.getSetup() or "None"

    def __discoverExtraCredentials(self) -> None:
        """"hosts" with a host certificate; explicit kwarg overrides; delegation sends [DN, group]."""
        extra: Any = ""
        if self.useCertificates and not self.kwargs.get(self.KW_PROXY_LOCATION):
            extra = self.VAL_EXTRA_CREDENTIALS_HOST
        if self.KW_EXTRA_CREDENTIALS in self.kwargs:
            extra = self.kwargs[self.KW_EXTRA_CREDENTIALS]
            self.__fixedExtraCredentials = True
        delegatedDN = self.kwargs.get(self.KW_DELEGATED_DN)
        if delegatedDN:
            delegatedGroup = self.kwargs.get(self.KW_DELEGATED_GROUP) or _defaultGroup(delegatedDN)
            self.kwargs[self.KW_DELEGATED_GROUP] = delegatedGroup
            extra = [delegatedDN, delegatedGroup]
            self.__fixedExtraCredentials = True
        self.__extraCredentials = extra

    def _threadDelegation(self) -> Optional[tuple[str, Any]]:
        """(DN, group) the calling thread delegates through ThreadConfig, None when it does not.

        Constructor keywords win: a client given ``delegatedDN`` or ``extraCredentials`` ignores ThreadConfig;
        a ``delegatedGroup`` keyword beats ThreadConfig's group. Without any group, the DN's default group
        from the Registry (raises ClientSetupError when there is none).
        """
        if self.__fixedExtraCredentials:
            return None
        dn, group = gThreadConfig.getID()
        if not dn:
            return None
        return dn, self.kwargs.get(self.KW_DELEGATED_GROUP) or group or _defaultGroup(dn)

    def _extraCredentials(self) -> Any:
        """The extraCredentials of this call: ThreadConfig's delegation, else what the constructor decided."""
        delegation = self._threadDelegation()
        return list(delegation) if delegation else self.__extraCredentials

    @property
    def setup(self) -> str:
        """The setup sent by a call made now from this thread (clientSetup)."""
        return self.__setupKwarg or gThreadConfig.getSetup() or self.__setupConfig

    # ------------------------------------------------------------------ per call
    @property
    def transport(self) -> Transport:
        """The transport in use (the process-wide pooled one unless one was passed in)."""
        return self._transport if self._transport is not None else getDefaultTransport()

    def getServiceName(self) -> str:
        """Return what the client was created for (name or URL)."""
        return self._destinationSrv

    def getDestinationService(self) -> str:
        """Return what the client was created for (DIRAC name)."""
        return self._destinationSrv

    def _explicitURLs(self) -> list[str]:
        """The URL(s) given to the constructor, in the given order ([] for a System/Service name)."""
        return _splitURLs(self._destinationSrv)

    def _resolveURLs(self) -> list[str]:
        """All candidate URLs (any scheme): explicit list, gateways, or the CS list (main then failover)."""
        explicit = self._explicitURLs()
        if explicit:
            return explicit
        if "/" not in self._serviceName:
            raise E.NoURLError(
                f"URL for service {self._serviceName} not found: give 'System/Service' or an https:// URL"
            )
        urls, _ = _serviceURLs(self._serviceName, bool(self.kwargs.get(self.KW_IGNORE_GATEWAYS)))
        if not urls:
            system, component = self._serviceName.split("/", 1)
            raise E.NoURLError(
                f"URL for service {self._serviceName} not found: set /Systems/{system}/URLs/{component} "
                "(comma-separated https:// URLs) in the configuration"
            )
        return urls

    def _candidateURLs(self) -> list[str]:
        """https URLs in the order to try them: not-banned first; with > 2 URLs, a banned host's siblings later."""
        urls = self._resolveURLs()
        https = [url for url in urls if _schemeOf(url) == "https"]
        if not https:
            schemes = sorted({_schemeOf(url) or "none" for url in urls})
            if schemes == ["dips"]:
                raise E.UnsupportedURLError(
                    f"{self._serviceName} is only reachable over the legacy dips protocol ({', '.join(urls)}), "
                    "which is not available in this client: configure https URLs for it"
                )
            raise E.UnsupportedURLError(
                f"No https URL for {self._serviceName} ({', '.join(urls)}): only https:// URLs are supported"
            )
        if len(https) < len(urls):
            sLog.debug(
                f"Ignoring non-https URLs of {self._serviceName}",
                ", ".join(url for url in urls if url not in https),
            )
        banned = gBannedURLs.banned()
        if not banned:
            return https
        bannedHosts = {_hostOf(url) for url in banned}
        fresh = [url for url in https if url not in banned]
        if len(https) > 2:
            fresh.sort(key=lambda url: _hostOf(url) in bannedHosts)
        return fresh + [url for url in https if url in banned]

    def _tlsSettings(self) -> TLSSettings:
        """Resolve credentials and CAs for this call (files may have been renewed since the last one)."""
        caPath: Optional[str] = None
        if not self.skipCACheck:
            caPath = Locations.getCAsLocation() or None
            if not caPath or not os.path.exists(caPath):
                raise E.CANotFoundError(
                    f"No CA directory found ({Locations.describeCASearch()}); set X509_CERT_DIR to the directory "
                    "of trusted CA certificates (tornado-certs writes one under certs/certificates)"
                )
        common = dict(
            caPath=caPath,
            skipCACheck=self.skipCACheck,
            ciphers=os.environ.get("DIRAC_HTTPS_SSL_CIPHERS") or None,
            minVersion=os.environ.get("DIRAC_HTTPS_SSL_METHOD_MIN") or None,
            maxVersion=os.environ.get("DIRAC_HTTPS_SSL_METHOD_MAX") or None,
        )
        proxyLocation = self.kwargs.get(self.KW_PROXY_LOCATION)
        if proxyLocation:
            if not os.path.isfile(proxyLocation):
                raise E.CredentialError(
                    f"The proxy file {proxyLocation} given as proxyLocation does not exist; "
                    "make one with tornado-proxy-init --out " + str(proxyLocation)
                )
            return TLSSettings(certFile=proxyLocation, credentialKind="proxy", **common)
        if self.useCertificates:
            location = Locations.getHostCertificateAndKeyLocation()
            if not location:
                raise E.NoHostCertificateError(
                    f"useCertificates=True but no host certificate and key were found "
                    f"({Locations.describeHostCertificateSearch()})"
                )
            certFile, keyFile = location
            return TLSSettings(certFile=certFile, keyFile=keyFile, credentialKind="host certificate", **common)
        if self.__pemData is not None:
            return TLSSettings(pemData=self.__pemData, credentialKind="proxy", **common)
        proxy = Locations.getProxyLocation()
        if not proxy:
            raise E.NoProxyError(
                f"No proxy found ({Locations.describeProxySearch()}), e.g. "
                "tornado-proxy-init --cert usercert.pem --key userkey.pem"
            )
        return TLSSettings(certFile=proxy, credentialKind="proxy", **common)

    def _commonFields(self) -> list[tuple[str, str]]:
        """The fields every request ends with, in DIRAC 9's order."""
        fields: list[tuple[str, str]] = []
        extra = self.__extraCredentials if self.__initError is not None else self._extraCredentials()
        if extra:
            fields.append((self.KW_EXTRA_CREDENTIALS, encode(extra)))
        fields.append(("clientVO", self.vo))
        fields.append(("clientSetup", self.setup))
        return fields

    def _timeouts(self, *, transfer: bool = False) -> Timeouts:
        """Connect limit min(10, timeout); the whole RPC answer within timeout; transfers: inactivity only."""
        return Timeouts(
            connect=min(MAX_CONNECT_TIMEOUT, self.timeout),
            read=self.timeout,
            total=None if transfer else self.timeout,
        )

    def _rpcStub(self, method: str, args: Sequence[Any]) -> tuple[Any, ...]:
        """((destination, kwargs), method, args): enough to replay the call (no secrets inside).

        A delegation taken from ThreadConfig is written into the stub's kwargs, so that a replay acts
        for the same user whatever thread replays it.
        """
        kwargs = {k: v for k, v in self.kwargs.items() if k not in self.STUB_EXCLUDED}
        if self.__initError is None:
            try:
                delegation = self._threadDelegation()
            except E.RPCError:
                delegation = None
            if delegation:
                kwargs[self.KW_DELEGATED_DN], kwargs[self.KW_DELEGATED_GROUP] = delegation
        return ((self._destinationSrv, kwargs), method, list(args))

    def _send(
        self,
        fields: Optional[list[tuple[str, str]]],
        handle: Callable[[Response, str, Optional[float]], Any],
        *,
        timeouts: Timeouts,
        params: Optional[list[tuple[str, str]]] = None,
        headers: Optional[dict[str, str]] = None,
        bodyFactory: Optional[Callable[[int], Any]] = None,
    ) -> Any:
        """POST to the first URL that takes the request; raise an RPCError when none does.

        ``handle(response, url, deadline)`` turns the answer into the result (``deadline``: monotonic
        time by which the whole answer must be in, None for transfers); a ServiceNotFound it raises
        moves on to the next URL like an undelivered request does. ``bodyFactory(attempt)`` gives
        the raw body for each attempt (None: cannot be resent).
        """
        if self.__initError is not None:
            raise self.__initError
        urls = self._candidateURLs()
        tls = self._tlsSettings()
        failures: list[tuple[str, E.RPCError]] = []
        for attempt, url in enumerate(urls):
            body = None
            if bodyFactory is not None:
                body = bodyFactory(attempt)
                if body is None:
                    break
            started = time.monotonic()
            try:
                response = self.transport.post(
                    url, fields, tls=tls, timeout=timeouts, body=body, params=params, headers=headers
                )
            except E.RPCError as exc:
                if not exc.retryElsewhere:
                    raise
                failures.append((url, exc))
                gBannedURLs.ban(url)
                sLog.verbose(f"{url} did not take the request, trying the next URL", exc.message)
                continue
            deadline = started + timeouts.total if timeouts.total else None
            try:
                return handle(response, url, deadline)
            except E.RPCError as exc:
                if not exc.retryElsewhere:
                    raise
                failures.append((url, exc))
                gBannedURLs.ban(url)
                sLog.verbose(f"{url} does not serve {self._serviceName}, trying the next URL", exc.message)
            finally:
                response.close()
        raise _combine(self._serviceName, failures)

    # ------------------------------------------------------------------ answers
    def _readStatusError(self, response: Response, url: str, method: str) -> E.BadStatus:
        """Turn a non-200 answer into the matching BadStatus, keeping the server's own S_ERROR text."""
        serverErrno, serverMessage = _serverError(response)
        status = response.status
        if status in (401, 403):
            return E.AccessDenied(
                f"No access to {url}: {serverMessage}", url=url, status=status,
                serverErrno=serverErrno, serverMessage=serverMessage,
            )
        if status == 404:
            return E.ServiceNotFound(
                f"{url} is not found: {serverMessage}", url=url, status=status,
                serverErrno=serverErrno, serverMessage=serverMessage,
            )
        if status == 501:
            return E.MethodNotImplemented(
                f"{method} is not implemented by {url}: {serverMessage}", url=url, status=status,
                serverErrno=serverErrno, serverMessage=serverMessage,
            )
        return E.BadStatus(
            f"HTTP {status} {response.reason} from {url} calling {method}: {serverMessage}", url=url,
            status=status, serverErrno=serverErrno, serverMessage=serverMessage,
        )

    def _decodeResult(self, response: Response, url: str, method: str, deadline: Optional[float]) -> dict[str, Any]:
        """Decode a 200 answer into the S_OK/S_ERROR dict it must hold."""
        return self._parseResult(response.read(deadline), response, url, method)

    @staticmethod
    def _parseResult(body: bytes, response: Response, url: str, method: str) -> dict[str, Any]:
        """The S_OK/S_ERROR dict ``body`` must hold (raises UndecodableBody)."""
        try:
            value, _ = decode(body)
        except DecodeError as exc:
            raise E.UndecodableBody(
                f"Cannot decode the answer of {url} to {method} ({len(body)} bytes of "
                f"{response.contentType or 'unknown type'}: {exc}); it starts with {_preview(body)}",
                url=url,
            ) from exc
        if not isinstance(value, dict) or "OK" not in value:
            raise E.UndecodableBody(
                f"The answer of {url} to {method} is not an S_OK/S_ERROR structure but a "
                f"{type(value).__name__}: {_preview(body)}",
                url=url,
            )
        return value

    @staticmethod
    def _encodeArgs(method: str, args: Sequence[Any]) -> str:
        """The JSON ``args`` field of a call (raises ClientSetupError for what cannot travel)."""
        try:
            return encode(list(args))
        except (EncodeError, TypeError, ValueError) as exc:
            raise E.ClientSetupError(
                f"Cannot send the arguments of {method}: {exc}; only JSON types, datetime, date, bytes "
                "and registered JSerializable objects travel",
                errno=DErrno.EVALUE,
            ) from exc

    def _rpc(self, method: str, args: Sequence[Any]) -> dict[str, Any]:
        """Send one RPC and return its result dict (raises RPCError)."""
        fields = [("method", method), ("args", self._encodeArgs(method, args))] + self._commonFields()
        timeouts = self._timeouts()

        def handle(response: Response, url: str, deadline: Optional[float]) -> dict[str, Any]:
            if response.status != 200:
                raise self._readStatusError(response, url, method)
            return self._decodeResult(response, url, method, deadline)

        return self._send(fields, handle, timeouts=timeouts)

    def executeRPC(self, method: str, *args: Any) -> dict[str, Any]:
        """Call ``method(*args)`` on the service; always an S_OK/S_ERROR dict with ``rpcStub``."""
        result = self._guarded(method, lambda: self._rpc(method, args))
        result["rpcStub"] = self._rpcStub(method, args)
        return result

    def _guarded(self, what: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``call``; map RPCError (and any unexpected exception) to S_ERROR."""
        try:
            return call()
        except E.RPCError as exc:
            return exc.toSError()
        except Exception as exc:  # the public API never raises: report what went wrong instead
            sLog.exception(f"Unexpected client failure in {what} for {self._destinationSrv}", lException=exc)
            return S_ERROR(DErrno.EEEXCEPTION, f"Unexpected client failure in {what} for {self._destinationSrv}: {exc!r}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._destinationSrv}>"


def _defaultGroup(dn: str) -> str:
    """The Registry default group of ``dn`` (raises ClientSetupError when it has none)."""
    result = Registry.findDefaultGroupForDN(dn)
    if not result["OK"]:
        raise E.ClientSetupError(
            f"Cannot delegate for {dn}: no default group ({result['Message']}); "
            "pass delegatedGroup (or ThreadConfig().setGroup) explicitly",
            errno=DErrno.ENOGROUP,
        )
    return result["Value"]


def _combine(serviceName: str, failures: list[tuple[str, E.RPCError]]) -> E.RPCError:
    """One error for all the URLs that failed: the last one's kind, every URL's reason in the text."""
    if not failures:
        return E.NoURLError(f"No URL could be tried for {serviceName}")
    if len(failures) == 1:
        return failures[0][1]
    text = "; ".join(f"{url}: {exc.message}" for url, exc in failures)
    combined = copy.copy(failures[-1][1])
    combined.message = f"None of the {len(failures)} URLs of {serviceName} answered: {text}"
    combined.args = (combined.message,)
    return combined


def _serverError(response: Response) -> tuple[int, str]:
    """(errno, message) of an error answer: the JSON S_ERROR when there is one, else a short text."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iterContent(16 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size >= ERROR_BODY_LIMIT:
                break
    except E.RPCError as exc:
        return 0, f"(no readable body: {exc.message})"
    body = b"".join(chunks)
    try:
        value, _ = decode(body)
    except DecodeError:
        value = None
    if isinstance(value, dict) and "Message" in value:
        return int(value.get("Errno") or 0), str(value["Message"])
    text = body.decode("utf-8", "replace")
    lowered = text.lower()
    if "<title>" in lowered:
        start = lowered.index("<title>") + len("<title>")
        end = lowered.find("</title>", start)
        return 0, text[start:end if end > 0 else start + 200].strip()
    return 0, text.strip()[:300] or f"{response.status} {response.reason}".strip()


def _preview(body: bytes) -> str:
    return repr(body[:120]) + ("..." if len(body) > 120 else "")


def _toBytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)
