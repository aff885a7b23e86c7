"""The HTTPS service container: every CS service with ``Protocol = https`` on one port, in one event loop.

::

    server = TornadoServer()            # services from the CS, port /Systems/Tornado/Port (8443)
    server.startTornado()               # blocks until stop() (or SIGINT/SIGTERM in tornado-start-all)

Everything that can fail is checked before the first request: handler import, ``initializeHandler``, host
certificate, CA directory, port. :class:`TornadoServerError` names the problem and the fix. Limits and TLS
choices are constructor arguments; an argument left ``None`` is read from ``/Systems/Tornado/<Option>``
(see :data:`TornadoServices.Server.private.Settings.OPTIONS` for names and defaults).
"""
from __future__ import annotations

import asyncio
import errno
import itertools
import os
import signal
import socket
import ssl
import threading
from typing import Any, Iterable, Optional, Union

import tornado.web
from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.iostream import SSLIOStream
from tornado.netutil import bind_sockets, ssl_wrap_socket

from TornadoServices.ConfigurationSystem.Client import PathFinder
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.Core.DErrno import includeExtensionErrors
from TornadoServices.Core.Encoding import encode
from TornadoServices.Core.Logging import gLogger, setOutputDelay
from TornadoServices.Core.ReturnValues import S_ERROR, S_OK, isReturnStructure
from TornadoServices.Security import Locations, TLS
from TornadoServices.Server.AuthManager import AuthManager
from TornadoServices.Server.HandlerManager import HandlerInfo, HandlerManager, getExtensions
from TornadoServices.Server.private.BodyDeadlines import BodyDeadlines, closeAfterAnswer
from TornadoServices.Server.private.Credentials import ConnectionCredentials
from TornadoServices.Server.private.Dispatcher import buildMethodTable, stripCallStacks
from TornadoServices.Server.private.ForwardedChain import TrustedProxies, parseNetworks
from TornadoServices.Server.private.LogLimit import installHandshakeLogLimit
from TornadoServices.Server.private.Metrics import (
    HealthHandler,
    MetricsDirectory,
    MetricsHandler,
    ReadyHandler,
    handshakeFailureReason,
    workerState,
)
from TornadoServices.Server.private.ProxyProtocol import ProxyProtocolError, SenderNetworks, readHeader
from TornadoServices.Server.private.Runtime import ComponentRuntime
from TornadoServices.Server.private.ServiceExecutor import ServiceExecutor
from TornadoServices.Server.private.Settings import ServerSettings
from TornadoServices.Server.private.Stats import ServerStats
from TornadoServices.Server.TornadoService import BODY_SIZE_SLACK, TornadoService

__all__ = ["TornadoServer", "TornadoServerError"]


class TornadoServerError(RuntimeError):
    """The server cannot start; ``kind`` is one of services, handler, certificate, ca, tls, port, config."""

    def __init__(self, message: str, kind: str = "config") -> None:
        super().__init__(message)
        self.kind = kind


@tornado.web.stream_request_body
class _NotFoundHandler(tornado.web.RequestHandler):
    """Any path that is not a service: 404 with an S_ERROR body, whatever the HTTP method (body never read)."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")  # type: ignore[assignment]

    def prepare(self) -> None:
        stats: ServerStats = self.settings["tornadoServicesStats"]
        stats.requests += 1
        stats.requestsByStatus[404] += 1
        self.set_status(404)
        self.set_header("Content-Type", "application/json")
        closeAfterAnswer(self.request)  # answered before the body: Tornado closes the connection, the client must know
        path = self.request.path
        self.finish(encode(stripCallStacks(S_ERROR(f"Unknown service: nothing is served at {path} (services are at /<System>/<Service>)"))))

    def data_received(self, chunk: bytes) -> None:
        """The answer is sent before any body: nothing to keep."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(encode(stripCallStacks(S_ERROR(f"{status_code} {self._reason}"))))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        gLogger.getSubLogger("Tornado").verbose("HTTP error", f"{self.request.method} {self.request.uri}: {value}")


def _quietAccessLog(handler: tornado.web.RequestHandler) -> None:
    """Tornado's own access log is replaced by the services' "Returning response" lines."""
    if isinstance(handler, _NotFoundHandler):
        gLogger.getSubLogger("Tornado").info(
            "Returning response", f"({handler.request.remote_ip}) {handler.request.method} {handler.request.path} ERROR 404"
        )


#: Tornado's own header limit is set this much above ours, so that we answer 431 (Tornado would just close)
HEADER_SIZE_SLACK = 64 * 1024
#: Seconds an INFO log line (the per-request access line) may wait to be written with others
LOG_OUTPUT_DELAY = 0.2
#: File descriptors kept for everything but client connections (listening sockets, logs, pipes, handler files)
FD_RESERVE = 64


_chain = itertools.chain.from_iterable


def _headSize(start_line: Any, headers: httputil.HTTPHeaders) -> int:
    """Size of the request line and header lines as sent (``name: value\r\n`` each), computed per request.

    Sums over Tornado's field lists with C-level ``map``/``sum`` (no Python loop per header); falls back to
    ``get_all()`` if a Tornado version stores the fields differently.
    """
    base = len(start_line.method) + len(start_line.path) + len(start_line.version) + 4
    fields = getattr(headers, "_as_list", None)
    if type(fields) is not dict:
        return base + sum(len(name) + len(value) + 4 for name, value in headers.get_all())
    lines = sum(map(len, fields.values()))
    names = sum(len(name) * len(values) for name, values in fields.items()) if lines != len(fields) else sum(map(len, fields))
    return base + names + sum(map(len, _chain(fields.values()))) + 4 * lines


class _HeaderLimit(httputil.HTTPMessageDelegate):
    """Answers 431 with an S_ERROR body to a request whose head is larger than MaxHeaderSize, then closes.

    Tornado reads at most MaxHeaderSize + HEADER_SIZE_SLACK bytes of head and closes the connection silently
    beyond that; up to there the client learns which limit it hit. Other requests pass straight through.
    """

    __slots__ = ("_delegate", "_connection", "_limit", "_stats", "_refused", "_serverConn", "_owner")

    def __init__(
        self, delegate: httputil.HTTPMessageDelegate, connection: Any, limit: int, stats: ServerStats, serverConn: Any, owner: Any
    ) -> None:
        self._delegate = delegate
        self._connection = connection
        self._limit = limit
        self._stats = stats
        self._refused = False
        self._serverConn = serverConn
        self._owner = owner

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        self._serverConn.tsBusy = True  # a request is being served: a drain lets it finish
        if self._owner.draining:
            self._connection._disconnect_on_finish = True  # answer, then close (Connection: close)
        size = _headSize(start_line, headers)
        if size <= self._limit:
            return self._delegate.headers_received(start_line, headers)
        self._refused = True
        self._stats.requests += 1
        self._stats.requestsByStatus[431] += 1
        message = f"Request header of {size} bytes is larger than the {self._limit} bytes allowed (/Systems/Tornado/MaxHeaderSize)"
        address = getattr(self._connection.context, "address", None)
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else "?"
        gLogger.getSubLogger("Tornado").info("Returning response", f"({peer}) {start_line.method} {start_line.path[:200]} ERROR 431: {message}")
        body = encode(stripCallStacks(S_ERROR(message))).encode()
        self._connection.write_headers(
            httputil.ResponseStartLine("HTTP/1.1", 431, "Request Header Fields Too Large"),
            httputil.HTTPHeaders({"Content-Type": "application/json", "Content-Length": str(len(body)), "Connection": "close"}),
            body,
        )
        self._connection.finish()  # the body is never read: Tornado closes once the answer is out
        return None

    def data_received(self, chunk: bytes) -> Any:
        return None if self._refused else self._delegate.data_received(chunk)

    def finish(self) -> None:
        if not self._refused:
            self._delegate.finish()

    def on_connection_close(self) -> None:
        if not self._refused:
            self._delegate.on_connection_close()


class _ServiceHTTPServer(HTTPServer):
    """Tornado's HTTPServer plus a connection limit, connection counters, the 431 answer and draining."""

    tsStats: ServerStats
    tsMaxConnections: int
    tsMaxHeaderSize: int
    tsOwner: "TornadoServer"

    def start_request(self, server_conn: Any, request_conn: Any) -> httputil.HTTPMessageDelegate:
        # Called when a connection waits for its next request: the previous answer, if any, is complete.
        server_conn.tsBusy = False
        server_conn.tsRequest = request_conn
        return _HeaderLimit(
            super().start_request(server_conn, request_conn), request_conn, self.tsMaxHeaderSize, self.tsStats, server_conn, self.tsOwner
        )

    def drainConnections(self) -> int:
        """Close the connections that wait for a request; the others close after their answer. Return how many closed."""
        closed = 0
        for connection in list(self._connections):
            if getattr(connection, "tsBusy", False):
                connection.tsRequest._disconnect_on_finish = True  # answer with Connection: close, then close
            else:
                connection.stream.close()
                closed += 1
        return closed

    def handle_stream(self, stream: Any, address: tuple) -> None:
        stats = self.tsStats
        if len(self._connections) >= self.tsMaxConnections:
            stats.connectionsRejected += 1
            stream.close()
            return
        stats.openConnections += 1
        if hasattr(stream, "wait_for_handshake"):
            stream.wait_for_handshake().add_done_callback(self._handshakeDone)
        super().handle_stream(stream, address)

    def _handshakeDone(self, future: "asyncio.Future[Any]") -> None:
        stats = self.tsStats
        if future.cancelled():
            reason = "cancelled"
        else:
            exc = future.exception()
            if exc is None:
                stats.connectionsAccepted += 1
                return
            reason = handshakeFailureReason(exc)
        stats.handshakeFailures += 1
        stats.handshakeFailureReasons[reason] += 1

    def on_close(self, server_conn: object) -> None:
        self.tsStats.openConnections -= 1
        super().on_close(server_conn)


#: Label of the handshake failure counters for connections refused for their PROXY header, by error kind
PROXY_HEADER_REASONS = {"invalid": "proxy header invalid", "incomplete": "proxy header incomplete", "timeout": "proxy header timeout"}


class _ProxyProtocolHTTPServer(_ServiceHTTPServer):
    """The server of a port when /Systems/Tornado/ProxyProtocol lists balancers: their connections start with a
    PROXY header, read here before TLS. Without the option the plain _ServiceHTTPServer serves (no cost)."""

    #: networks whose connections start with a PROXY header (/Systems/Tornado/ProxyProtocol)
    tsProxyProtocol: SenderNetworks
    tsProxyTimeout: float
    #: connections from listed networks whose PROXY header is being read: socket -> reading task
    tsProxyPending: dict

    def _handle_connection(self, connection: socket.socket, address: Any) -> None:
        if len(self._connections) + len(self.tsProxyPending) >= self.tsMaxConnections:  # headers being read count too
            self.tsStats.connectionsRejected += 1
            connection.close()
            return
        if not (isinstance(address, tuple) and self.tsProxyProtocol.isSender(address[0])):
            return super()._handle_connection(connection, address)  # not a listed balancer: plain TLS, as without the option
        task = asyncio.ensure_future(self._acceptProxied(connection, address))
        self.tsProxyPending[connection] = task

    async def _acceptProxied(self, connection: socket.socket, address: tuple) -> None:
        """Read the PROXY header of a listed balancer's connection, then start TLS on the same socket.

        The TLS layer is set up exactly as Tornado's TCPServer does for every connection (same SSL context
        object, server side, handshake on the event loop, same stream class), and the stream then goes
        through handle_stream like any other: connection limit, handshake counters, HTTP. Only the peer
        address differs: the client's from the header (the balancer's for LOCAL and UNKNOWN headers).
        """
        try:
            try:
                connection.setblocking(False)
                header = await readHeader(connection, self.tsProxyTimeout)
            finally:
                self.tsProxyPending.pop(connection, None)
        except ProxyProtocolError as exc:
            self._refuseProxied(connection, address, exc)
            return
        except asyncio.CancelledError:  # a drain or a stop
            connection.close()
            raise
        except Exception as exc:  # a fault of this code: the connection goes, the server goes on
            self._refuseProxied(connection, address, ProxyProtocolError(f"unexpected {type(exc).__name__}: {exc}"))
            return
        peer = address
        if header.source is not None:
            peer = header.source if header.family == "TCP4" else (header.source[0], header.source[1], 0, 0)
        try:
            tlsSocket = ssl_wrap_socket(connection, self.ssl_options, server_side=True, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as exc:  # the peer is already gone
            connection.close()
            self.tsStats.handshakeFailures += 1
            self.tsStats.handshakeFailureReasons[handshakeFailureReason(exc)] += 1
            return
        if peer is not address:
            # Tornado names the peer of a refused handshake with getpeername() (log line, LogLimit key):
            # the client's address from the header, as everywhere else for this connection.
            tlsSocket.getpeername = lambda: peer  # type: ignore[method-assign]
        try:
            stream = SSLIOStream(tlsSocket, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size)
            self.handle_stream(stream, peer)
        except Exception as exc:
            self.tsOwner.log.error("Cannot serve a connection", f"from {peer[0]} (through {address[0]}): {type(exc).__name__}: {exc}")
            tlsSocket.close()

    def _refuseProxied(self, connection: socket.socket, address: tuple, exc: ProxyProtocolError) -> None:
        connection.close()
        stats = self.tsStats
        stats.handshakeFailures += 1
        stats.handshakeFailureReasons[PROXY_HEADER_REASONS.get(exc.kind, "proxy header invalid")] += 1
        self.tsOwner.log.warn(
            "PROXY header refused", f"connection from {address[0]}:{address[1]} closed: {exc} (/Systems/Tornado/ProxyProtocol lists this address)"
        )

    def drainConnections(self) -> int:
        """Also close the connections whose PROXY header is still being read."""
        pending = list(self.tsProxyPending.values())
        for task in pending:
            task.cancel()
        return len(pending) + super().drainConnections()


class TornadoServer:
    """Serves HTTPS RPC services (DIRAC ``TornadoServer`` API: ``startTornado()``)."""

    def __init__(
        self,
        services: Union[bool, str, Iterable[str]] = True,
        port: Optional[int] = None,
        *,
        address: Optional[str] = None,
        maxBodySize: Optional[int] = None,
        maxUploadSize: Optional[int] = None,
        maxHeaderSize: Optional[int] = None,
        idleConnectionTimeout: Optional[float] = None,
        bodyTimeout: Optional[float] = None,
        uploadTimeout: Optional[float] = None,
        maxConnections: Optional[int] = None,
        crlCheck: Optional[str] = None,
        sslMinVersion: Optional[str] = None,
        sslMaxVersion: Optional[str] = None,
        sslCiphers: Optional[str] = None,
        maxThreads: Optional[int] = None,
        maxWaitingPetitions: Optional[int] = None,
        acceptLimitedProxies: Optional[bool] = None,
        acceptIndependentProxies: Optional[bool] = None,
        shutdownTimeout: Optional[float] = None,
        compressResponse: Optional[bool] = None,
        hostname: Optional[str] = None,
        certFile: Optional[str] = None,
        keyFile: Optional[str] = None,
        caPath: Optional[str] = None,
        metricsAuthorization: Optional[str] = None,
        trustedProxies: Optional[Union[str, Iterable[str]]] = None,
        trustedProxyCertHeader: Optional[str] = None,
        trustedProxyChainHeader: Optional[str] = None,
        trustedProxyVerifyHeader: Optional[str] = None,
        handshakeLogLimit: Optional[int] = None,
        handshakeLogInterval: Optional[float] = None,
        handshakeLogPeers: Optional[int] = None,
        proxyProtocol: Optional[Union[str, Iterable[str]]] = None,
        proxyProtocolTimeout: Optional[float] = None,
    ) -> None:
        """Load the handlers of ``services`` (True = every https service of the CS, or a list of
        ``System/Component[:port]``) and resolve settings; raise TornadoServerError when something is wrong."""
        self.log = gLogger.getSubLogger("Tornado")
        try:
            self.settings = ServerSettings.resolve(
                address=address,
                maxBodySize=maxBodySize,
                maxUploadSize=maxUploadSize,
                maxHeaderSize=maxHeaderSize,
                idleConnectionTimeout=idleConnectionTimeout,
                bodyTimeout=bodyTimeout,
                uploadTimeout=uploadTimeout,
                maxConnections=maxConnections,
                crlCheck=crlCheck,
                sslMinVersion=sslMinVersion,
                sslMaxVersion=sslMaxVersion,
                sslCiphers=sslCiphers,
                maxThreads=maxThreads,
                maxWaitingPetitions=maxWaitingPetitions,
                acceptLimitedProxies=acceptLimitedProxies,
                acceptIndependentProxies=acceptIndependentProxies,
                shutdownTimeout=shutdownTimeout,
                compressResponse=compressResponse,
                hostname=hostname,
                certFile=certFile,
                keyFile=keyFile,
                caPath=caPath,
                metricsAuthorization=metricsAuthorization,
                trustedProxies=trustedProxies,
                trustedProxyCertHeader=trustedProxyCertHeader,
                trustedProxyChainHeader=trustedProxyChainHeader,
                trustedProxyVerifyHeader=trustedProxyVerifyHeader,
                handshakeLogLimit=handshakeLogLimit,
                handshakeLogInterval=handshakeLogInterval,
                handshakeLogPeers=handshakeLogPeers,
                proxyProtocol=proxyProtocol,
                proxyProtocolTimeout=proxyProtocolTimeout,
            )
            networks = parseNetworks(self.settings.trustedProxies)
            self.proxyProtocolSenders = SenderNetworks.parse(self.settings.proxyProtocol)
        except ValueError as exc:
            raise TornadoServerError(str(exc), "config") from None
        self.port = PathFinder.getTornadoPort() if port is None else int(port)
        self.stats = ServerStats()
        self.bodyDeadlines = BodyDeadlines()
        self._sweeper: Optional[PeriodicCallback] = None
        self.boundPorts: dict[int, int] = {}
        self.urls: dict[str, str] = {}
        self._httpServers: list[_ServiceHTTPServer] = []
        self._runtimes: dict[str, ComponentRuntime] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopEvent: Optional[asyncio.Event] = None
        self._thread: Optional[threading.Thread] = None
        self._started = False
        self._stopped = False
        self._hostname = ""
        self._sockets: dict[int, list[socket.socket]] = {}
        self._snapshotter: Optional[PeriodicCallback] = None
        self._handshakeLog: Optional[Any] = None
        #: True once every service is initialised and the ports serve (``/readyz``)
        self.ready = False
        #: True from the start of a stop (SIGTERM): no new connections, new calls get 503, ``/readyz`` 503
        self.draining = False
        #: worker number and shared metrics directory when run by the multi-process supervisor
        self.workerIndex: Optional[int] = None
        self.metricsDirectory: Optional[str] = None

        includeExtensionErrors(getExtensions())
        self._handlerManager = HandlerManager(services)
        result = self._handlerManager.loadServicesHandlers()
        if not result["OK"]:
            raise TornadoServerError(result["Message"], "handler")
        self.handlers: dict[str, HandlerInfo] = result["Value"]
        if not self.handlers:
            raise TornadoServerError(
                "There is no service to start: no /Systems/<System>/Services/<Service> section has Protocol = https "
                "(check the configuration files given with --cfg)",
                "services",
            )
        self._certFile, self._keyFile, self._caPath = self._locateCredentials()
        self.trustedProxies = TrustedProxies(
            networks,
            self._caPath,
            self.settings.crlCheck,
            certHeader=self.settings.trustedProxyCertHeader,
            chainHeader=self.settings.trustedProxyChainHeader,
            verifyHeader=self.settings.trustedProxyVerifyHeader,
            stats=self.stats,
        )
        if self.proxyProtocolSenders:
            self.log.always(
                "PROXY protocol",
                f"connections from {self.proxyProtocolSenders} must start with a PROXY header "
                f"(within {self.settings.proxyProtocolTimeout:g} s); their callers are named by it",
            )
        if networks:
            self.log.always("Trusted front ends", f"{', '.join(map(str, networks))} may forward client certificates in {self.settings.trustedProxyCertHeader}")

    # ---- credentials and TLS ---------------------------------------------------------------------------
    def _locateCredentials(self) -> tuple[str, str, str]:
        settings = self.settings
        certFile, keyFile = settings.certFile, settings.keyFile
        if not certFile or not keyFile:
            found = Locations.getHostCertificateAndKeyLocation()
            if not found:
                raise TornadoServerError(
                    f"Host certificate or key not found: {Locations.describeHostCertificateSearch()}", "certificate"
                )
            certFile = certFile or found[0]
            keyFile = keyFile or found[1]
        for what, path in (("certificate", certFile), ("key", keyFile)):
            if not os.path.isfile(path):
                raise TornadoServerError(f"Host {what} file {path} does not exist: fix /Systems/Tornado/{'CertFile' if what == 'certificate' else 'KeyFile'} or run tornado-certs", "certificate")
        caPath = settings.caPath or Locations.getCAsLocation()
        if not caPath or not os.path.exists(caPath):
            where = f"{caPath} does not exist. " if caPath else ""
            raise TornadoServerError(f"CA directory not found: {where}{Locations.describeCASearch()}", "ca")
        return certFile, keyFile, caPath

    def _makeSSLContext(self) -> Any:
        settings = self.settings
        try:
            context = TLS.makeServerContext(
                self._certFile,
                self._keyFile,
                self._caPath,
                crlCheck=settings.crlCheck,
                minVersion=settings.sslMinVersion or "TLSv1_2",
                maxVersion=settings.sslMaxVersion or None,
                ciphers=settings.sslCiphers or None,
            )
        except (TLS.TLSConfigurationError, OSError, ValueError) as exc:
            raise TornadoServerError(f"Cannot set up TLS: {exc}", "tls") from None
        mode = TLS.resolveCRLMode(self._caPath, settings.crlCheck)
        withCRL, withoutCRL = TLS.caDirectoryCRLStatus(self._caPath)
        self.log.info("TLS", f"CA location {self._caPath}: {len(withCRL) + len(withoutCRL)} CAs, CRL check {mode} (CRLCheck = {settings.crlCheck})")
        if withoutCRL:
            consequence = "clients under them are refused" if mode == "chain" else "revocation is not checked for them"
            self.log.warn("CAs without CRL", f"{'; '.join(withoutCRL)}: {consequence}")
        return context

    # ---- start-up ----------------------------------------------------------------------------------------
    def _serviceURL(self, name: str, port: int) -> str:
        if not self._hostname:
            self._hostname = self.settings.hostname or socket.getfqdn()  # a DNS query: once per server
        return f"https://{self._hostname}:{port}/{name}"

    def _setupComponent(self, info: HandlerInfo, port: int) -> ComponentRuntime:
        """Per-component state of a handler class, then its ``initializeHandler``."""
        handlerClass = info.handlerClass
        name = info.name
        url = self._serviceURL(name, port)
        settings = self.settings
        log = gLogger.getSubLogger(name)
        logLevel = gConfig.getValue(f"{info.sectionPath}/LogLevel", "")
        if logLevel and not log.setLevel(logLevel):
            raise TornadoServerError(f"{name}: {info.sectionPath}/LogLevel {logLevel!r} is not a log level name", "config")
        maxThreads = gConfig.getValue(f"{info.sectionPath}/MaxThreads", settings.maxThreads)
        maxWaiting = gConfig.getValue(f"{info.sectionPath}/MaxWaitingPetitions", settings.maxWaitingPetitions)
        methods = buildMethodTable(handlerClass)
        hardcoded = {}
        for method, methodInfo in methods.items():
            rule = getattr(handlerClass, f"auth_{method}", None)
            if rule is None:
                rule = getattr(methodInfo.function, "authorization", None)
            hardcoded[method] = tuple(rule) if isinstance(rule, (list, tuple)) else rule
        serviceInfo = {
            "serviceName": name,
            "serviceSectionPath": info.sectionPath,
            "csPaths": [info.sectionPath],
            "URL": url,
            "Port": port,
        }
        handlerClass._serviceInfoDict = serviceInfo
        handlerClass.log = log
        runtime = ComponentRuntime(
            name=name,
            sectionPath=info.sectionPath,
            url=url,
            methods=methods,
            hardcodedRules=hardcoded,
            defaultAuthorization=handlerClass.DEFAULT_AUTHORIZATION,
            authManager=AuthManager(
                f"{info.sectionPath}/Authorization",
                acceptLimitedProxies=settings.acceptLimitedProxies,
                acceptIndependentProxies=settings.acceptIndependentProxies,
            ),
            executor=ServiceExecutor(name, max(1, maxThreads), max(0, maxWaiting)),
            settings=settings,
            stats=self.stats,
            log=log,
            uploadMethods=frozenset(handlerClass.UPLOAD_METHODS),
            hasInitializeRequest=handlerClass.initializeRequest is not TornadoService.initializeRequest,
            bodyDeadlines=self.bodyDeadlines,
            trustedProxies=self.trustedProxies,
        )
        handlerClass._runtime = runtime
        try:
            result = handlerClass.initializeHandler(serviceInfo)
        except Exception as exc:
            runtime.executor.shutdown()
            log.exception("initializeHandler failed", name, lException=exc)
            raise TornadoServerError(f"{name}: initializeHandler raised {type(exc).__name__}: {exc}", "handler") from None
        if asyncio.iscoroutine(result):
            result.close()
            runtime.executor.shutdown()
            raise TornadoServerError(f"{name}: initializeHandler must be a plain classmethod, not a coroutine", "handler")
        if isReturnStructure(result) and not result["OK"]:
            runtime.executor.shutdown()
            raise TornadoServerError(f"{name}: initializeHandler failed: {result['Message']}", "handler")
        return runtime

    def _servicesByPort(self) -> dict[int, list[HandlerInfo]]:
        byPort: dict[int, list[HandlerInfo]] = {}
        for info in self.handlers.values():
            byPort.setdefault(self.port if info.port is None else info.port, []).append(info)
        return byPort

    def bindSockets(self) -> dict[int, list[socket.socket]]:
        """Bind every port now (idempotent). A supervisor binds before forking so that its workers share them."""
        if self._sockets:
            return self._sockets
        sockets: dict[int, list[socket.socket]] = {}
        try:
            for port in self._servicesByPort():
                try:
                    sockets[port] = bind_sockets(port, address=self.settings.address or None)
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise TornadoServerError(
                            f"Port {port} is already in use: stop the other server or choose another port (--port or /Systems/Tornado/Port)",
                            "port",
                        ) from None
                    raise TornadoServerError(f"Cannot listen on port {port}: {exc}", "port") from None
                self.boundPorts[port] = sockets[port][0].getsockname()[1]
        except BaseException:
            for socks in sockets.values():
                for sock in socks:
                    sock.close()
            raise
        self._sockets = sockets
        return sockets

    def closeSockets(self) -> None:
        """Close this process's copy of the listening sockets (a supervisor stopping its workers)."""
        for socks in self._sockets.values():
            for sock in socks:
                sock.close()

    def start(self) -> None:
        """Bind the ports and initialise every service; the caller runs the event loop (call it on that loop's thread)."""
        if self._started:
            return
        settings = self.settings
        sslContext = self._makeSSLContext()
        byPort = self._servicesByPort()
        try:
            sockets = self.bindSockets()  # closes what it bound itself when it fails
            for port, infos in byPort.items():
                actual = self.boundPorts[port]
                for info in infos:
                    self._runtimes[info.name] = self._setupComponent(info, actual)
                    self.urls[info.name] = self._runtimes[info.name].url
        except BaseException:
            self.closeSockets()
            for runtime in self._runtimes.values():
                runtime.executor.shutdown()
            raise
        maxConnections = self._fitConnectionsToFileLimit(len(byPort))
        probes = [(path, handler, {"server": self}) for path, handler in (("/healthz", HealthHandler), ("/readyz", ReadyHandler), ("/metrics", MetricsHandler))]
        for port, infos in byPort.items():
            routes: list[Any] = probes + [(f"/{info.name}", info.handlerClass) for info in infos]
            application = tornado.web.Application(
                routes,
                default_handler_class=_NotFoundHandler,
                compress_response=False,  # TornadoService gzips its JSON answers itself, more cheaply
                log_function=_quietAccessLog,
                tornadoServicesStats=self.stats,
            )
            serverClass = _ProxyProtocolHTTPServer if self.proxyProtocolSenders else _ServiceHTTPServer
            server = serverClass(
                application,
                ssl_options=sslContext,
                decompress_request=True,
                max_header_size=settings.maxHeaderSize + HEADER_SIZE_SLACK,
                max_body_size=settings.maxBodySize + BODY_SIZE_SLACK,
                idle_connection_timeout=settings.idleConnectionTimeout,
                body_timeout=None,  # set per request by TornadoService when a body is still to come
            )
            server.tsStats = self.stats
            server.tsMaxConnections = maxConnections
            server.tsMaxHeaderSize = settings.maxHeaderSize
            server.tsOwner = self
            if isinstance(server, _ProxyProtocolHTTPServer):
                server.tsProxyProtocol = self.proxyProtocolSenders
                server.tsProxyTimeout = settings.proxyProtocolTimeout
                server.tsProxyPending = {}
            server.add_sockets(sockets[port])
            self._httpServers.append(server)
            names = ", ".join(info.name for info in infos)
            self.log.always("Listening", f"on https://{settings.address or '*'}:{self.boundPorts[port]} for {names}")
        shortest = min(settings.bodyTimeout or 60.0, settings.uploadTimeout or 60.0)
        self._sweeper = PeriodicCallback(self._sweepBodies, max(20.0, min(1000.0, shortest * 250.0)))
        self._sweeper.start()
        if self.metricsDirectory is not None:
            self._snapshotter = PeriodicCallback(self._writeSnapshot, 1000.0)
            self._snapshotter.start()
        # One access line per request: written in batches (at most LOG_OUTPUT_DELAY late; warnings and the
        # lines before a clean exit at once) when the log goes to a file or a pipe.
        setOutputDelay(LOG_OUTPUT_DELAY)
        # At most HandshakeLogLimit "SSL Error" lines per peer and reason per HandshakeLogInterval (LogLimit)
        self._handshakeLog = installHandshakeLogLimit(self, settings.handshakeLogLimit, settings.handshakeLogInterval, settings.handshakeLogPeers)
        self._started = True
        self.ready = True

    def _fitConnectionsToFileLimit(self, ports: int) -> int:
        """MaxConnections per port, lowered if the open-file limit cannot hold them.

        An accept() failing with EMFILE makes Tornado's accept handler fail again at every loop turn (the
        listening socket stays readable), so the limit must be met before: the soft limit is raised towards
        the hard one, and when that is not enough MaxConnections is lowered, with a warning.
        """
        wanted = self.settings.maxConnections
        try:
            import resource

            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ImportError, OSError, ValueError):
            return wanted
        unlimited = resource.RLIM_INFINITY
        needed = wanted * ports + FD_RESERVE
        if soft != unlimited and needed > soft:
            target = needed if hard == unlimited else min(hard, needed)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (OSError, ValueError):
                pass
        if soft == unlimited or needed <= soft:
            return wanted
        capped = max(1, (soft - FD_RESERVE) // ports)
        self.log.warn(
            "MaxConnections lowered",
            f"to {capped} per port: this process may open {soft} files (ulimit -n; hard limit {hard}), "
            f"too few for /Systems/Tornado/MaxConnections = {wanted}; raise the limit to serve more",
        )
        return capped

    def _writeSnapshot(self) -> None:
        """Publish this worker's counters for the /metrics answers of its siblings."""
        try:
            MetricsDirectory(self.metricsDirectory).write(workerState(self))  # type: ignore[arg-type]
        except OSError as exc:
            self.log.verbose("Cannot write the metrics snapshot", str(exc))

    @property
    def runtimes(self) -> dict[str, ComponentRuntime]:
        """Per-service runtime state (method tables, thread pools), keyed by ``System/Component``."""
        return self._runtimes

    def requestCredentials(self, request: Any) -> ConnectionCredentials:
        """Credentials of a request: the TLS connection's, or a chain forwarded by a trusted front end."""
        return self.trustedProxies.requestCredentials(request)

    def reloadCredentials(self) -> dict[str, Any]:
        """Re-read the host certificate, CA directory and CRLs for new connections (SIGHUP); the port stays open.

        Open connections keep the TLS session they made. When the new files cannot be used, the error is
        logged and the server goes on with the previous ones.
        """
        self.log.always("Reloading", f"host certificate {self._certFile}, CA location {self._caPath}")
        try:
            context = self._makeSSLContext()
        except TornadoServerError as exc:
            self.log.error("Reload failed, keeping the previous certificate and CAs", str(exc))
            return S_ERROR(str(exc))
        for server in self._httpServers:
            server.ssl_options = context
        self.trustedProxies.reload()
        self.log.always("Reloaded", "new TLS connections use the new host certificate, CAs and CRLs")
        return S_OK()

    def _sweepBodies(self) -> None:
        """Close the connections of requests whose body is late (see BodyDeadlines)."""
        self.bodyDeadlines.sweep(lambda handler: handler.bodyTimedOut())

    @property
    def actualPort(self) -> int:
        """The main port once bound (useful with port 0)."""
        return self.boundPorts.get(self.port, self.port)

    def startTornado(self, handleSignals: bool = False, onReady: Optional[Any] = None) -> None:
        """Start and serve until :meth:`stop` is called.

        With ``handleSignals``, SIGINT/SIGTERM drain and stop, SIGHUP reloads the host certificate, CAs and
        CRLs (:meth:`reloadCredentials`). ``onReady()`` is called on the event loop once the services serve.
        """
        asyncio.run(self._serve(handleSignals=handleSignals, onReady=onReady))

    async def _serve(self, ready: Optional[threading.Event] = None, handleSignals: bool = False, onReady: Optional[Any] = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopEvent = asyncio.Event()
        try:
            self.start()
        finally:
            if ready is not None:
                ready.set()
        if handleSignals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(signum, self._onSignal, signum)
            self._loop.add_signal_handler(signal.SIGHUP, self.reloadCredentials)
        if onReady is not None:
            onReady()
        if self._stopped:
            self._stopEvent.set()
        await self._stopEvent.wait()
        await self._shutdown()

    def _onSignal(self, signum: int) -> None:
        self.log.always("Stopping", f"on {signal.Signals(signum).name}")
        self._stopped = True
        if self._stopEvent is not None:
            self._stopEvent.set()

    def startInThread(self, timeout: float = 60.0) -> threading.Thread:
        """Serve from a background thread with its own event loop; return once the ports are bound.

        Start-up errors are raised here. Used by tests and benchmarks.
        """
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._serve(ready))
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name="TornadoServer", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TornadoServerError(f"The server did not start within {timeout} s", "config")
        if failure:
            raise failure[0]
        return self._thread

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop serving: no new connections, running calls get ``ShutdownTimeout`` seconds, then everything closes.

        Safe to call from any thread (and from signal handlers); from another thread than the server's
        background thread it waits for that thread to end.
        """
        if self._stopped:
            return
        self._stopped = True
        loop, event = self._loop, self._stopEvent
        if loop is None or event is None:
            return  # not serving yet: _serve stops right after start-up
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:
            return  # loop already closed
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout if timeout is not None else self.settings.shutdownTimeout + 10)

    async def _shutdown(self) -> None:
        """Drain: stop listening, close idle connections, let running calls finish (ShutdownTimeout), close."""
        self.draining = True
        for runtime in self._runtimes.values():
            runtime.draining = True
        if self._sweeper is not None:
            self._sweeper.stop()
        for server in self._httpServers:
            server.stop()
        idle = sum(server.drainConnections() for server in self._httpServers)
        self.log.always("Draining", f"{self.stats.inFlight} calls running, {idle} idle connections closed; waiting up to {self.settings.shutdownTimeout:g} s")
        deadline = asyncio.get_running_loop().time() + self.settings.shutdownTimeout
        while self.stats.inFlight > 0 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if self.stats.inFlight > 0:
            self.log.warn("Drain timeout", f"{self.stats.inFlight} calls still running after ShutdownTimeout = {self.settings.shutdownTimeout:g} s are cut")
        for server in self._httpServers:
            try:
                await asyncio.wait_for(server.close_all_connections(), timeout=5)
            except (asyncio.TimeoutError, Exception):
                pass
        for runtime in self._runtimes.values():
            runtime.executor.shutdown(wait=False)
        if self._handshakeLog is not None:
            self._handshakeLog.remove()  # writes the summaries still due
        self.ready = False
        if self._snapshotter is not None:
            self._snapshotter.stop()
            self._writeSnapshot()
        self.log.always("Stopped", f"served {self.stats.requests} requests")
