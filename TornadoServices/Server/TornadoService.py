"""Base class of every HTTPS RPC service: DIRAC's ``TornadoService`` on Tornado's ``RequestHandler``.

A service subclasses :class:`TornadoService` and defines ``export_<method>`` functions (plain functions run
in the service's bounded thread pool, ``async def`` ones on the event loop), with optional ``auth_<method>``
rules and ``types_<method>`` argument types. The server creates one subclass per CS component, so class
attributes set in :meth:`TornadoService.initializeHandler` are per-component state.

Request path (all on the event loop except the body of plain ``export_`` methods): credentials of the TLS
connection (cached on the connection), form fields, method lookup, authorisation (cached per connection,
method and configuration generation), ``args`` decoding and checks, the call, JEncode of the result, one
access-log line. Every failure is answered with a JSON S_ERROR body and a fitting HTTP status.

A method may shape the HTTP side of its answer: by returning a :class:`TornadoResponse` (calls recorded in
the method, replayed on the loop, then its payload written like a returned value), or with a
``finish_<method>`` of its class, called on the loop after it, with the result on ``self.result``. Both are
checked only after the call, at the cost of one attribute test for a plain result.
"""
from __future__ import annotations

import asyncio
import datetime
import errno
import gzip
import inspect
import io
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Optional
from urllib.parse import unquote, unquote_to_bytes

from tornado import httputil
from tornado.log import app_log
from tornado.web import HTTPError, RequestHandler, stream_request_body

import TornadoServices
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.Core import DErrno
from TornadoServices.Core.Encoding import DecodeError, EncodeError, decode, encode
from TornadoServices.Core.Logging import gLogger
from TornadoServices.Core.ReturnValues import S_ERROR, S_OK
from TornadoServices.Server.private.BodyDeadlines import closeAfterAnswer
from TornadoServices.Server.private.Credentials import (
    EXPIRED_REASON,
    ConnectionCredentials,
    orderCredentials,
    publicCredentials,
)
from TornadoServices.Server.private.Dispatcher import (
    MethodInfo,
    checkArgumentCount,
    checkExpectedArgumentTypes,
    isRawContentRequested,
    stripCallStacks,
)
from TornadoServices.Server.private.ForwardedChain import ForwardedRefusal
from TornadoServices.Server.private.ServiceExecutor import ServiceOverloaded
from TornadoServices.Server.TornadoResponse import ActionFailed, TornadoResponse, replayActions

__all__ = ["TornadoService", "TornadoResponse", "authorization", "nonBlocking"]

_JSON = "application/json"
_OCTET = "application/octet-stream"
_FORM = "application/x-www-form-urlencoded"
#: the Content-Type Tornado gives every answer until something sets one (RequestHandler.clear)
_TORNADO_DEFAULT_TYPE = "text/html; charset=UTF-8"
_STREAM_CHUNK = 64 * 1024
_SPOOL_IN_MEMORY = 1024 * 1024
#: Tornado's own body limit is set this much above ours, so that we answer 413 (Tornado would answer a bare 400)
BODY_SIZE_SLACK = 1024 * 1024
#: JSON answers of this size or more are gzipped for clients that accept it (as Tornado's compress_response)
_GZIP_MIN_LENGTH = 1024
_GZIP_LEVEL = 6
_LOG_INFO = 20
_LOG_VERBOSE = 15
_MESSAGE_IN_LOG = 300


def _readBootTime() -> Optional[float]:
    """Epoch of the host's boot from /proc/uptime, read once (None where unavailable)."""
    try:
        with open("/proc/uptime") as fd:
            return time.time() - float(fd.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


_BOOT_TIME = _readBootTime()
_loadCache: list[Any] = [0.0, None]  # [valid until, "1m 5m 15m"]
_EPOCH = datetime.datetime(1970, 1, 1)
_secondCache: tuple[int, datetime.datetime] = (-1, _EPOCH)  # (whole second of time.time(), that second as naive UTC)


def _utcSecond(now: float) -> datetime.datetime:
    """``now`` (a ``time.time()`` value) truncated to the second, as a naive UTC datetime; made once per second.

    The same as ``datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)`` read at ``now``. The cache
    is one tuple replaced whole (safe from any thread): a value is only reused within the same second.
    """
    global _secondCache
    second = int(now // 1)
    cached = _secondCache
    if cached[0] == second:
        return cached[1]
    value = _EPOCH + datetime.timedelta(seconds=second)
    _secondCache = (second, value)
    return value


def _loadAverage(now: float) -> Optional[str]:
    """``/proc/loadavg``'s first three fields, read at most once a second (the kernel updates them every 5 s)."""
    if now >= _loadCache[0]:
        try:
            _loadCache[1] = "%.2f %.2f %.2f" % os.getloadavg()
        except OSError:
            _loadCache[1] = None
        _loadCache[0] = now + 1.0
    return _loadCache[1]


def nonBlocking(function):
    """Declare a plain ``export_`` method quick and free of blocking calls: it runs on the event loop.

    This saves the hand-off to a worker thread (the largest fixed cost of a plain method), but while it
    runs nothing else is served: use it only for methods that do no I/O, take no lock that may be held long,
    and finish in well under a millisecond. Other plain methods keep running in the service's thread pool.
    """
    function.nonBlocking = True
    return function


def authorization(rule: Any):
    """Decorator form of ``auth_<method>``: ``@authorization(["NormalUser"])`` on an ``export_`` method."""

    def decorate(function):
        function.authorization = rule
        return function

    return decorate


def _ownResult(function):
    """Mark a built-in method whose result the server builds itself: no return structure to clean inside."""
    function.serverBuiltResult = True
    return function


class _EarlyError:
    """An unexpected exception of the checks run in initialize(), raised again by prepare()."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


_READY = object()  # the checks of prepare() passed in initialize()


class _RequestFailed(Exception):
    """Stop processing a request and answer ``status`` with the S_ERROR ``result``."""

    def __init__(self, status: int, result: dict[str, Any]) -> None:
        super().__init__(result.get("Message", ""))
        self.status = status
        self.result = result


@stream_request_body
class TornadoService(RequestHandler):
    """An HTTPS RPC service (DIRAC ``TornadoService`` API). Do not override Tornado's methods."""

    SUPPORTED_METHODS = ("POST",)  # type: ignore[assignment]
    #: Rule used when neither the CS nor ``auth_<method>`` nor CS ``Authorization/Default`` give one.
    DEFAULT_AUTHORIZATION: Any = None
    #: Methods that may receive a streamed request body (``Content-Type: application/octet-stream``) as a
    #: file object in their last argument, and whose legacy base64 ``bytes`` last argument is turned into one.
    UPLOAD_METHODS: tuple[str, ...] = ("streamFromClient",)

    auth_ping = ["all"]
    auth_echo = ["all"]
    auth_whoami = ["authenticated"]

    log = gLogger.getSubLogger("TornadoService")

    # Set per component by the server (HandlerManager / TornadoServer).
    _fullComponentName = ""
    _serviceInfoDict: dict[str, Any] = {}
    _runtime: Any = None

    # Per-request state; class-level defaults keep the hot path free of initialisation work.
    _credDict: Optional[dict[str, Any]] = None
    _connectionCredentials: Optional[ConnectionCredentials] = None
    _methodName: Optional[str] = None
    _resultOK: Optional[bool] = None
    _errorMessage = ""
    _accounted = False
    _upload: Any = None
    _bodySize = 0
    _bodyLimit = 0
    _chunks: Optional[list[bytes]] = None
    _contentType = ""
    _clientVO: Optional[str] = None
    _clientSetup: Optional[str] = None
    _earlyOutcome: Any = None
    _workerMethod: Optional[MethodInfo] = None
    _completion: Any = None
    _shapedValue: Any = None
    #: DIRAC's name for the method's result, set (without CallStack/ExecInfo) only before ``finish_<method>`` runs
    result: Any = None

    # ---------------------------------------------------------------------------------------------------
    # user hooks
    @classmethod
    def initializeHandler(cls, serviceInfoDict: dict[str, Any]) -> Any:
        """Called once per component at server start, before any request; an S_ERROR or exception stops start-up."""
        return S_OK()

    def initializeRequest(self) -> Any:
        """Called before every call of an ``export_`` method, in the thread that runs it."""
        return None

    # ---------------------------------------------------------------------------------------------------
    # Tornado plumbing
    def initialize(self) -> None:  # Tornado hook, once per request
        runtime = self._runtime
        if runtime is not None:
            runtime.stats.inFlight += 1
            self._accounted = True
            plain = self._plainForm(runtime) if self.request.method == "POST" else None
            if plain is not None:
                # The checks of prepare() run now, while Tornado creates the handler, so that a request that
                # passes them has its body read at once instead of one event-loop iteration later (see
                # _prepared_future). A refusal is only recorded here and answered by prepare() as before.
                try:
                    self._checkRequest(runtime, plain)
                    self._earlyOutcome = _READY
                except _RequestFailed as failure:
                    self._earlyOutcome = failure
                except Exception as exc:
                    self._earlyOutcome = _EarlyError(exc)

    def _plainForm(self, runtime: Any) -> Optional[tuple[str, str]]:
        """``(Content-Type, Content-Length)`` of a body of a known size within MaxBodySize, not compressed, not
        chunked, not a streamed upload; None for any other request.

        Reads Tornado's field lists (``HTTPHeaders._as_list``, keyed by normalised name, as TrustedProxies does)
        instead of ``HTTPHeaders.get``, which normalises the name on each call; a field sent on several lines
        reads as ``HTTPHeaders`` combines it (joined with ``,``).
        """
        headers = self.request.headers
        fields = getattr(headers, "_as_list", None)
        if type(fields) is not dict:
            fields = {name: headers.get_list(name) for name in headers}
        lines = fields.get("Content-Length")
        if lines is None:
            return None
        length = lines[0] if len(lines) == 1 else ",".join(lines)
        if (
            not length.isdigit()
            or int(length) > runtime.settings.maxBodySize
            or "Transfer-Encoding" in fields
            or "Content-Encoding" in fields
            or "X-Consumed-Content-Encoding" in fields  # Tornado decompresses gzip bodies and renames the header
        ):
            return None
        lines = fields.get("Content-Type")
        contentType = "" if lines is None else lines[0] if len(lines) == 1 else ",".join(lines)
        if contentType.startswith(_OCTET):
            return None
        return contentType, length

    def _getPreparedFuture(self) -> Any:
        return self.__dict__.get("_tsPreparedFuture")

    def _setPreparedFuture(self, future: Any) -> None:
        # Tornado sets this future after creating the handler and waits for it before reading the body;
        # when the checks already passed in initialize() it is resolved at once, so the body is read without
        # waiting for prepare() (which then clears it, and Tornado skips resolving it again).
        if future is not None and self._earlyOutcome is _READY and not future.done():
            future.set_result(None)
        self.__dict__["_tsPreparedFuture"] = future

    _prepared_future = property(_getPreparedFuture, _setPreparedFuture)

    def prepare(self) -> None:
        outcome = self._earlyOutcome
        if outcome is None:
            try:
                self._checkRequest(self._runtime)
            except _RequestFailed as failure:
                self._refuseBeforeBody(failure)
            except Exception:
                closeAfterAnswer(self.request)
                raise
            return
        self._earlyOutcome = None
        if outcome is _READY:
            self.__dict__["_tsPreparedFuture"] = None  # resolved in initialize()
        elif isinstance(outcome, _EarlyError):
            closeAfterAnswer(self.request)
            raise outcome.error
        else:
            self._refuseBeforeBody(outcome)

    def _refuseBeforeBody(self, failure: _RequestFailed) -> None:
        """Answer a refusal found before the body was read; the connection is closed after it (and says so)."""
        closeAfterAnswer(self.request)
        self._fail(failure)

    def _checkRequest(self, runtime: Any, plain: Optional[tuple[str, str]] = None) -> None:
        """Server state, credentials of the connection and body size, before the body is read.

        ``plain``: ``(Content-Type, Content-Length)`` as :meth:`_plainForm` read them, else they are read here.
        """
        request = self.request
        if runtime.draining:
            raise _RequestFailed(503, S_ERROR("The server is shutting down: this call was not executed; send it again (to another server)"))
        connection = self._connectionCredentials = runtime.trustedProxies.requestCredentials(request)
        if connection.error is not None:
            runtime.stats.authFailures[_authFailureReason(connection)] += 1
            raise _RequestFailed(401, connection.error)
        expired = connection.expiredError()  # OpenSSL checked validity at the handshake only
        if expired is not None:
            runtime.stats.authFailures[EXPIRED_REASON] += 1
            raise _RequestFailed(401, expired)
        if plain is None:
            contentType = request.headers.get("Content-Type", "")
            length = None if contentType.startswith(_OCTET) else request.headers.get("Content-Length")
        else:
            contentType, length = plain
        self._contentType = contentType
        if contentType.startswith(_OCTET):
            self._prepareUpload(runtime)
        else:
            limit = runtime.settings.maxBodySize
            if length is not None and length.isdigit() and int(length) > limit:
                self._refuseBody(int(length), limit, "MaxBodySize")
            self._bodyLimit = limit
            self._chunks = []
            runtime.bodyDeadlines.watch(self, runtime.settings.bodyTimeout)

    def _prepareUpload(self, runtime: Any) -> None:
        """Streamed upload: method and args come from the query; authorise before accepting the body."""
        methodName = self._queryField("method")
        self._methodName = methodName
        info = self._lookupMethod(methodName)
        self._logIncoming(info.name)
        if info.name not in runtime.uploadMethods:
            raise _RequestFailed(
                400,
                S_ERROR(f"Method {info.name} does not accept a streamed body (Content-Type {_OCTET}); send a form instead"),
            )
        self._authorize(info.name, self._queryField("extraCredentials"))
        limit = runtime.settings.maxUploadSize
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            self._refuseBody(int(length), limit, "MaxUploadSize")
        self.request.connection.set_max_body_size(limit + BODY_SIZE_SLACK)  # data_received answers 413 at ``limit``
        runtime.bodyDeadlines.watch(self, runtime.settings.uploadTimeout)
        self._bodyLimit = limit
        self._upload = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)

    def _refuseBody(self, length: int, limit: int, option: str) -> None:
        """413 before reading a body announced too large; the connection is closed after the answer."""
        self.request.connection.set_max_body_size(length)  # read nothing more than needed, no 400 from Tornado
        self.set_header("Connection", "close")
        raise _RequestFailed(
            413,
            S_ERROR(f"Request body of {length} bytes is larger than the {limit} bytes allowed (/Systems/Tornado/{option})"),
        )

    def data_received(self, chunk: bytes) -> None:  # Tornado hook, streamed body (decompressed)
        if self._finished:
            return
        self._bodySize += len(chunk)
        if self._bodySize > self._bodyLimit:
            self._closeUpload()
            self._chunks = None
            self.set_header("Connection", "close")
            option = "MaxUploadSize" if self._bodyLimit == self._runtime.settings.maxUploadSize else "MaxBodySize"
            self._fail(
                _RequestFailed(
                    413, S_ERROR(f"Request body larger than the {self._bodyLimit} bytes allowed (/Systems/Tornado/{option})")
                )
            )
        elif self._upload is not None:
            self._upload.write(chunk)
        elif self._chunks is not None:
            self._chunks.append(chunk)

    async def post(self) -> None:
        """Parse the fields, run the call, write the answer (every failure becomes an S_ERROR answer)."""
        self._runtime.bodyDeadlines.done(self)
        try:
            if self._upload is not None:
                upload, self._upload = self._upload, None
                upload.seek(0)
                try:
                    await self._dispatch(
                        self._methodName,
                        self._queryField("args"),
                        self._queryField("extraCredentials"),
                        self._queryField("rawContent"),
                        upload,
                    )
                finally:
                    upload.close()
                return
            fields = self._parseForm()
            self._clientVO = fields.get("clientVO")
            self._clientSetup = fields.get("clientSetup")
            methodName = fields.get("method")
            if methodName is None:
                methodName = self._queryField("method")
            self._methodName = methodName
            await self._dispatch(methodName, fields.get("args"), fields.get("extraCredentials"), fields.get("rawContent"))
        except _RequestFailed as failure:
            self._fail(failure)

    def _parseForm(self) -> dict[str, str]:
        """Form fields of the body (urlencoded or multipart), one UTF-8 string per name, stripped."""
        chunks = self._chunks or ()
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = None
        if not body:
            return {}
        contentType = getattr(self, "_contentType", "") or self.request.headers.get("Content-Type", "")
        if contentType.startswith(_FORM):
            # What DIRAC's clients send: parsed straight to str (the last value of a repeated field wins,
            # as Tornado's get_argument does).
            try:
                return _parseUrlencoded(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise _RequestFailed(400, S_ERROR(f"Form field is not valid UTF-8: {exc}")) from None
        arguments: dict[str, list[bytes]] = {}
        files: dict[str, list[Any]] = {}
        try:
            httputil.parse_body_arguments(contentType, body, arguments, files, self.request.headers)
        except httputil.HTTPInputError as exc:
            raise _RequestFailed(400, S_ERROR(f"Malformed request body: {exc}")) from None
        try:
            fields = {name: values[-1].decode("utf-8").strip() for name, values in arguments.items() if values}
        except UnicodeDecodeError as exc:
            raise _RequestFailed(400, S_ERROR(f"Form field is not valid UTF-8: {exc}")) from None
        for name, values in files.items():  # multipart parts with a filename: take their content too
            if name not in fields and values:
                fields[name] = values[0].body.decode("utf-8", "replace").strip()
        return fields

    def _queryField(self, name: str) -> Optional[str]:
        values = self.request.query_arguments.get(name)
        if not values:
            return None
        try:
            return values[0].decode("utf-8").strip()
        except UnicodeDecodeError:
            raise _RequestFailed(400, S_ERROR(f"Query argument {name} is not valid UTF-8")) from None

    # ---------------------------------------------------------------------------------------------------
    # the call
    def _lookupMethod(self, methodName: Optional[str]) -> MethodInfo:
        if not methodName:
            raise _RequestFailed(400, S_ERROR("Missing argument: method (the name of the remote method to call)"))
        info = self._runtime.methods.get(methodName)
        if info is None:
            raise _RequestFailed(
                501,
                S_ERROR(errno.ENOSYS, f"Unknown method {methodName} of {self._fullComponentName}"),
            )
        return info

    def _logIncoming(self, methodName: str) -> None:
        """VERBOSE "Incoming request" line, before the authorisation decision (security logs want both)."""
        runtime = self._runtime
        if runtime.pyLogger.isEnabledFor(_LOG_VERBOSE):
            ip, port = self.getRemoteAddress()
            dn = (self._connectionCredentials.credDict or {}).get("DN", "")
            runtime.log.verbose("Incoming request", f"({ip}:{port}) {dn} {runtime.name}.{methodName}")

    def _authorize(self, methodName: str, extraText: Optional[str]) -> None:
        """Set ``self._credDict`` for this request, or raise 403 (decisions cached per connection)."""
        runtime = self._runtime
        connection = self._connectionCredentials
        key = (runtime.name, methodName, extraText or None)
        generation = gConfig.generation
        cached = connection.cachedAuth(key, generation)
        if cached is None:
            cached = self._decide(methodName, extraText, connection)
            connection.storeAuth(key, generation, *cached)
        allowed, creds = cached
        creds = dict(creds)
        creds["secondsLeft"] = max(0, int(connection.expiresAt - time.time()))
        self._credDict = creds
        if not allowed:
            runtime.stats.authFailures["not authorized"] += 1
            formatted = self.srv_getFormattedRemoteCredentials()
            runtime.log.warn("Unauthorized query", f"{formatted} {runtime.name}.{methodName} ({creds.get('DN')})")
            raise _RequestFailed(
                403,
                S_ERROR(
                    DErrno.ENOAUTH,
                    f"Unauthorized query to {runtime.name}:{methodName} by {creds.get('DN')}"
                    f" (group {creds.get('group') or 'none'}): the method's authorization rule does not admit this identity",
                ),
            )

    def _decide(self, methodName: str, extraText: Optional[str], connection: ConnectionCredentials) -> tuple[bool, dict[str, Any]]:
        runtime = self._runtime
        creds = dict(connection.credDict or {})
        if extraText:
            try:
                creds["extraCredentials"] = decode(extraText)[0]
            except DecodeError as exc:
                raise _RequestFailed(400, S_ERROR(f"extraCredentials is not valid JEncode: {exc}")) from None
        allowed = runtime.authManager.authQuery(
            methodName, creds, runtime.hardcodedRules.get(methodName), runtime.defaultAuthorization
        )
        if creds.get("isProxy") and creds.get("group") and "VO" not in creds and creds.get("group") != "visitor":
            from TornadoServices.ConfigurationSystem.Client.Helpers import Registry

            creds["VO"] = Registry.getVOForGroup(creds["group"])
        return allowed, orderCredentials(creds)

    async def _dispatch(
        self,
        methodName: Optional[str],
        argsText: Optional[str],
        extraText: Optional[str],
        rawText: Optional[str],
        upload: Any = None,
    ) -> None:
        runtime = self._runtime
        info = self._lookupMethod(methodName)
        if upload is None:
            self._logIncoming(info.name)
            self._authorize(info.name, extraText)
        args = self._decodeArgs(argsText)
        if info.hasTypes:
            error = checkExpectedArgumentTypes(info.name, info.typesList, args)
            if error:
                raise _RequestFailed(400, S_ERROR(error))
        if upload is not None:
            args.append(upload)
        elif info.name in runtime.uploadMethods and args and isinstance(args[-1], (bytes, bytearray)):
            args[-1] = io.BytesIO(args[-1])  # DIRAC's sendFile: the whole file base64-encoded in args
        error = checkArgumentCount(info, len(args))
        if error:
            raise _RequestFailed(400, S_ERROR(error))
        try:
            if info.isCoroutine:
                if runtime.hasInitializeRequest:
                    hook = self.initializeRequest()
                    if asyncio.iscoroutine(hook):
                        await hook
                result = await info.function(self, *args)
            elif info.inline:
                result = self._runSync(info.function, args)
            elif upload is None and not isRawContentRequested(rawText):
                # Answered from the worker's completion on the event loop (_answerFromWorker), without
                # resuming this coroutine: one event-loop iteration less per call.
                self._workerMethod = info
                runtime.executor.submitWithCallback(self._runSync, (info.function, args), self._answerFromWorker)
                self._auto_finish = False
                return
            else:
                result = await runtime.executor.submit(self._runSync, info.function, args)
        except ServiceOverloaded as exc:
            raise _RequestFailed(503, S_ERROR(str(exc))) from None
        except _RequestFailed:
            raise
        except Exception as exc:
            runtime.log.exception(f"Server error while serving {info.name}", f"({self.srv_getFormattedRemoteCredentials()})", lException=exc)
            raise _RequestFailed(500, S_ERROR(f"Server error while serving {info.name}: {type(exc).__name__}: {exc}")) from None
        if info.finisher is not None:
            await self._complete(info, result, isRawContentRequested(rawText))
            return
        if isRawContentRequested(rawText) and not (isinstance(result, dict) and not _isStreamableOK(result)):
            if isinstance(result, TornadoResponse):
                await self._complete(info, result, True)
                return
            await self._sendRaw(result["Value"] if isinstance(result, dict) else result)
            return
        self._sendResult(info.name, result, info.stripResult)  # a TornadoResponse is replayed there

    def _answerFromWorker(self, result: Any, error: Optional[BaseException]) -> None:
        """On the event loop: answer a call run by a worker, exactly as _dispatch and post do after an await."""
        info = self._workerMethod
        runtime = self._runtime
        try:
            try:
                if error is not None:
                    raise error
            except _RequestFailed:
                raise
            except Exception as exc:
                runtime.log.exception(f"Server error while serving {info.name}", f"({self.srv_getFormattedRemoteCredentials()})", lException=exc)
                raise _RequestFailed(500, S_ERROR(f"Server error while serving {info.name}: {type(exc).__name__}: {exc}")) from None
            finally:
                error = None
            if info.finisher is None:
                self._sendResult(info.name, result, info.stripResult)  # a TornadoResponse is replayed there
            else:
                self._completion = asyncio.get_running_loop().create_task(self._completeFromWorker(info, result))
        except (Exception, asyncio.CancelledError) as exc:
            self._answerFailure(exc)

    def _answerFailure(self, exc: BaseException) -> None:
        """Answer what a call raised: its S_ERROR and status for a refusal, a 500 for anything else."""
        if isinstance(exc, _RequestFailed):
            try:
                self._fail(exc)
            except Exception as failure:
                self._answerUnexpected(failure)
        else:
            self._answerUnexpected(exc)

    def _answerUnexpected(self, exc: BaseException) -> None:
        """What Tornado does with an exception escaping a handler method: log it and answer 500."""
        try:
            self._handle_request_exception(exc)  # type: ignore[arg-type]
        except Exception:
            app_log.error("Exception in exception handler", exc_info=True)

    def _runSync(self, function: Any, args: list[Any]) -> Any:
        """Body of a plain ``export_`` call in a worker thread."""
        if self._runtime.hasInitializeRequest:
            self.initializeRequest()
        return function(self, *args)

    @staticmethod
    def _decodeArgs(argsText: Optional[str]) -> list[Any]:
        if not argsText or argsText == "[]":  # no arguments: what decode("[]") gives, a new empty list
            return []
        try:
            args = decode(argsText)[0]
        except DecodeError as exc:
            raise _RequestFailed(400, S_ERROR(f"Invalid args: {exc}")) from None
        if isinstance(args, tuple):
            return list(args)
        if not isinstance(args, list):
            raise _RequestFailed(400, S_ERROR(f"Invalid args: a JEncode list of positional arguments is expected, not {type(args).__name__}"))
        return args

    # ---------------------------------------------------------------------------------------------------
    # answers
    def _encodeResult(self, methodName: str, result: Any, strip: bool) -> str:
        """JSON text of what a method returned (normally an S_OK/S_ERROR), its outcome noted for the access line."""
        if result is None:
            raise _RequestFailed(500, S_ERROR(f"Server error while serving {methodName}: the method returned None instead of S_OK/S_ERROR"))
        if type(result) is dict:
            ok = result.get("OK")
            self._resultOK = bool(ok)
            if not ok:
                self._errorMessage = str(result.get("Message", ""))
        try:
            return _encodeAnswer(result) if strip else encode(result)
        except EncodeError as exc:
            raise _RequestFailed(500, S_ERROR(f"Server error while serving {methodName}: the result cannot be encoded: {exc}")) from None

    def _sendResult(self, methodName: str, result: Any, strip: bool = True) -> None:
        if type(result) is not dict and isinstance(result, TornadoResponse):
            shaped = self._replay(methodName, result)
            if shaped is not None:
                self._sendShaped(methodName, shaped[0], strip, shaped[1])
            return
        body = self._encodeResult(methodName, result, strip)
        self.set_header("Content-Type", _JSON)
        if len(body) >= _GZIP_MIN_LENGTH and self._runtime.settings.compressResponse:
            if "gzip" in self.request.headers.get("Accept-Encoding", ""):
                self.set_header("Content-Encoding", "gzip")
                self.set_header("Vary", "Accept-Encoding")
                self.finish(gzip.compress(body.encode("utf-8"), compresslevel=_GZIP_LEVEL, mtime=0))
                return
        self.finish(body)

    def _fail(self, failure: _RequestFailed) -> None:
        """Answer an S_ERROR with an HTTP error status (never HTML, never a traceback)."""
        if self._finished:
            return
        self._resultOK = False
        self._errorMessage = str(failure.result.get("Message", ""))
        self.set_status(failure.status)
        self.set_header("Content-Type", _JSON)
        self.finish(encode(stripCallStacks(failure.result)))

    # ---------------------------------------------------------------------------------------------------
    # answers shaped by handler code: TornadoResponse and finish_<method> (never on the path of a plain result)
    async def _complete(self, info: MethodInfo, result: Any, raw: bool) -> None:
        """Answer a call whose method has a ``finish_<method>``, or that returned a TornadoResponse in a
        ``rawContent`` call: run the handler's code on the loop, then write what it left to write."""
        if isinstance(result, TornadoResponse):  # replayed, and finish_ not called (DIRAC's order)
            shaped = self._replay(info.name, result)
        else:
            shaped = await self._runFinisher(info, result)
        if shaped is None:
            return
        value, contentType = shaped
        if raw and not (isinstance(value, dict) and not _isStreamableOK(value)) and not isinstance(value, TornadoResponse):
            await self._sendRaw(value["Value"] if isinstance(value, dict) else value, contentType or _OCTET)
        else:
            self._sendShaped(info.name, value, info.stripResult, contentType)

    async def _completeFromWorker(self, info: MethodInfo, result: Any) -> None:
        """:meth:`_complete` for a call answered from a worker's completion (failures handled as there)."""
        try:
            await self._complete(info, result, False)
        except (Exception, asyncio.CancelledError) as exc:
            self._answerFailure(exc)
        finally:
            self._completion = None

    def _replay(self, methodName: str, response: TornadoResponse) -> Optional[tuple[Any, Optional[str]]]:
        """Replay the recorded calls of ``response``; ``(payload, explicit Content-Type or None)`` when the
        payload is still to be written, None when the answer is complete."""
        payload = response.payload
        self._expectShapedAnswer(lambda: payload)
        try:
            replayActions(response, self)
        except ActionFailed as exc:
            return self._handlerCodeFailed(methodName, f"the recorded call {exc.action}()", exc.error, traceback=False)
        if self._finished:
            return None
        if self._write_buffer or self._headers_written:  # a recorded write(): the body is the handler's
            if payload is not None:
                return self._handlerCodeFailed(
                    methodName, "TornadoResponse", ValueError("recorded write() calls and a payload: one body only"), traceback=False
                )
            self.finish()
            return None
        return payload, self._explicitContentType()

    async def _runFinisher(self, info: MethodInfo, result: Any) -> Optional[tuple[Any, Optional[str]]]:
        """Call ``finish_<method>`` with the result on ``self.result``; ``(self.result, explicit Content-Type)``
        when it returned without finishing the answer (the default writing follows), else None."""
        try:
            self.result = stripCallStacks(result) if info.stripResult else result
        except EncodeError as exc:
            raise _RequestFailed(500, S_ERROR(f"Server error while serving {info.name}: the result cannot be encoded: {exc}")) from None
        self._expectShapedAnswer(lambda: self.result)
        try:
            outcome = info.finisher(self)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            return self._handlerCodeFailed(info.name, f"finish_{info.name}", exc, traceback=True)
        if self._finished:
            return None
        if self._write_buffer or self._headers_written:  # it wrote a body without finishing: end it as is
            self.finish()
            return None
        return self.result, self._explicitContentType()

    def _handlerCodeFailed(self, methodName: str, what: str, exc: Exception, traceback: bool) -> None:
        """Handler code run on the loop raised: log it, answer 500 if nothing was sent yet (else close)."""
        runtime = self._runtime
        where = f"({self.srv_getFormattedRemoteCredentials()}) {runtime.name}.{methodName}"
        if traceback:
            runtime.log.exception(f"Server error while serving {methodName}: {what} failed", where, lException=exc)
        else:
            runtime.log.error(f"Server error while serving {methodName}: {what} failed", f"{where}: {type(exc).__name__}: {exc}")
        message = f"Server error while serving {methodName}: {what} failed: {type(exc).__name__}: {exc}"
        if self._finished or self._headers_written:
            self._resultOK = False
            self._errorMessage = message
            if not self._finished:  # the status line is gone: an incomplete answer is the only signal left
                self.request.connection.stream.close()
            return None
        self.clear()  # nothing of what the handler code set goes out with the error
        raise _RequestFailed(500, S_ERROR(message))

    def _expectShapedAnswer(self, value: Any) -> None:
        """Handler code may finish the answer itself (the access line is written inside ``finish()``): give
        this request an ``on_finish`` that first sets the OK/ERROR of the line from ``value()`` and the status."""
        self._shapedValue = value
        self.on_finish = self._onShapedFinish  # type: ignore[method-assign]  # this instance only

    def _onShapedFinish(self) -> None:
        if self._resultOK is None:  # not written by the server (_sendShaped, write_error set it)
            self._noteOutcome(self._shapedValue())
        type(self).on_finish(self)

    def _noteOutcome(self, value: Any) -> None:
        """OK/ERROR of the access line for an answer the handler code completed itself."""
        if self._status_code >= 400:
            self._resultOK = False
            if not self._errorMessage:
                self._errorMessage = f"{self._status_code} {self._reason}"
        elif type(value) is dict and "OK" in value:
            self._resultOK = bool(value["OK"])
            if not value["OK"]:
                self._errorMessage = str(value.get("Message", ""))
        else:
            self._resultOK = True

    def _explicitContentType(self) -> Optional[str]:
        """The Content-Type handler code set, None when it is still Tornado's default (or was removed).

        Tornado's default is the value ``clear()`` sets; handler code that sets that same value explicitly
        cannot be told apart and gets the JSON type (it is the wrong type for a JSON body anyway).
        """
        value = self._headers.get("Content-Type")
        return None if value is None or value == _TORNADO_DEFAULT_TYPE else value

    def _sendShaped(self, methodName: str, result: Any, strip: bool, contentType: Optional[str]) -> None:
        """:meth:`_sendResult` after handler code ran: a Content-Type it set explicitly is kept, and the body is
        not gzipped when it set a Content-Encoding."""
        if isinstance(result, TornadoResponse):
            raise _RequestFailed(500, S_ERROR(f"Server error while serving {methodName}: a TornadoResponse cannot be the payload of another"))
        body = self._encodeResult(methodName, result, strip)
        if contentType is None:
            self.set_header("Content-Type", _JSON)
        if (
            len(body) >= _GZIP_MIN_LENGTH
            and self._runtime.settings.compressResponse
            and "Content-Encoding" not in self._headers
            and "gzip" in self.request.headers.get("Accept-Encoding", "")
        ):
            self.set_header("Content-Encoding", "gzip")
            self.add_header("Vary", "Accept-Encoding")
            self.finish(gzip.compress(body.encode("utf-8"), compresslevel=_GZIP_LEVEL, mtime=0))
            return
        self.finish(body)

    async def _sendRaw(self, value: Any, contentType: str = _OCTET) -> None:
        """``rawContent`` answer: bytes, str, a file-like object or an (async) iterator of chunks, streamed."""
        self._resultOK = True
        self.set_header("Content-Type", contentType)
        loop = asyncio.get_running_loop()
        if isinstance(value, str):
            value = value.encode("utf-8")
        try:
            if isinstance(value, (bytes, bytearray, memoryview)):
                view = memoryview(value)
                self.set_header("Content-Length", len(view))
                for start in range(0, len(view), _STREAM_CHUNK):
                    self.write(bytes(view[start : start + _STREAM_CHUNK]))
                    await self.flush()
            elif hasattr(value, "read"):
                try:
                    while True:
                        chunk = await loop.run_in_executor(None, value.read, _STREAM_CHUNK)
                        if not chunk:
                            break
                        self.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
                        await self.flush()
                finally:
                    close = getattr(value, "close", None)
                    if close is not None:
                        close()
            elif isinstance(value, AsyncIterator) or hasattr(value, "__aiter__"):
                async for chunk in value:
                    if chunk:
                        self.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
                        await self.flush()
            elif isinstance(value, Iterator) or hasattr(value, "__iter__"):
                iterator = iter(value)
                while True:
                    chunk = await loop.run_in_executor(None, next, iterator, None)
                    if chunk is None:
                        break
                    if chunk:
                        self.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
                        await self.flush()
            else:
                raise _RequestFailed(
                    500,
                    S_ERROR(f"Server error while serving {self._methodName}: rawContent result of type {type(value).__name__} is not bytes, str, a file or an iterator"),
                )
        except _RequestFailed:
            raise
        except Exception as exc:
            if not self._headers_written:
                raise _RequestFailed(500, S_ERROR(f"Server error while serving {self._methodName}: {type(exc).__name__}: {exc}")) from None
            # The status line is gone: the only honest signal left is an incomplete body.
            self._runtime.log.exception(f"Stream of {self._methodName} broken after the headers were sent", lException=exc)
            self._resultOK = False
            self._errorMessage = f"stream broken: {exc}"
            self.request.connection.stream.close()
            return
        self.finish()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors raised by Tornado itself (405, malformed requests, unexpected failures) as JSON S_ERROR."""
        exception = kwargs.get("exc_info", (None, None, None))[1]
        if status_code == 405:
            message = f"HTTP method {self.request.method} is not allowed: RPC calls are POST requests"
        elif isinstance(exception, HTTPError) and exception.log_message:
            message = exception.log_message % exception.args if exception.args else exception.log_message
        elif exception is not None and not isinstance(exception, HTTPError):
            message = f"Server error while serving {self._methodName or 'the request'}: {type(exception).__name__}: {exception}"
        else:
            message = f"{status_code} {self._reason}"
        self._resultOK = False
        self._errorMessage = message
        self.set_header("Content-Type", _JSON)
        self.finish(encode(stripCallStacks(S_ERROR(message))))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Tornado-level errors go to the service logger (tracebacks only for unexpected exceptions)."""
        log = self._runtime.log if self._runtime is not None else self.log
        if isinstance(value, HTTPError):
            log.verbose("HTTP error", f"{value.status_code} {self.request.method} {self.request.uri}: {value.log_message or ''}")
        else:
            log.exception("Uncaught exception", f"{self.request.method} {self.request.uri}", lException=value)

    def on_finish(self) -> None:
        self._runtime.bodyDeadlines.done(self)
        self._account()

    def on_connection_close(self) -> None:
        super().on_connection_close()  # wakes a handler still waiting for a streamed body
        self._runtime.bodyDeadlines.done(self)
        self._closeUpload()
        if not self._finished:
            self._account(closed=True)

    def bodyTimedOut(self) -> None:
        """The body did not arrive in time (BodyTimeout / UploadTimeout): drop the connection."""
        ip, port = self.getRemoteAddress()
        self._runtime.log.info("Timeout reading the request body", f"from ({ip}:{port}) for {self._runtime.name}; closing the connection")
        self._closeUpload()
        self.request.connection.stream.close()

    def _closeUpload(self) -> None:
        upload, self._upload = self._upload, None
        if upload is not None:
            upload.close()

    def _account(self, closed: bool = False) -> None:
        """Counters and the one access-log line of this request."""
        if not self._accounted:
            return
        self._accounted = False
        runtime = self._runtime
        stats = runtime.stats
        stats.inFlight -= 1
        status = 499 if closed else self._status_code
        stats.requests += 1
        stats.requestsByStatus[status] += 1
        method = self._methodName
        seconds = self.request.request_time()
        stats.recordCall(runtime.name, method if method in runtime.methods else "unknown", status, seconds)
        logger = runtime.pyLogger
        if logger.isEnabledFor(_LOG_INFO):
            milliseconds = 1000.0 * seconds
            outcome = "OK" if self._resultOK else "ERROR"
            method = self._methodName or "?"
            line = f"Returning response {self.srv_getFormattedRemoteCredentials()} {runtime.name}.{method} {outcome} {status} {milliseconds:.1f} ms"
            if self._errorMessage:
                line = f"{line}: {self._errorMessage[:_MESSAGE_IN_LOG]}"
            record = runtime.accessRecords.make(line)  # this line is written for every request: see AccessLog
            record.service = runtime.name  # extra fields of JSON log lines
            record.method = method
            record.status = status
            record.result = outcome
            record.durationMs = round(milliseconds, 3)
            logger.handle(record)

    # ---------------------------------------------------------------------------------------------------
    # built-in methods
    @_ownResult
    async def export_ping(self) -> dict[str, Any]:
        """Service health: versions, times, load and the service URL (DIRAC's fields, in DIRAC's order)."""
        runtime = self._runtime
        now = time.time()
        info: dict[str, Any] = {"version": TornadoServices.version, "time": _utcSecond(now)}
        if _BOOT_TIME is not None:
            info["host uptime"] = int(now - _BOOT_TIME)
        info["service start time"] = runtime.startTime
        info["service uptime"] = int(now - runtime.startTimestamp)
        load = _loadAverage(now)
        if load is not None:
            info["load"] = load
        info["name"] = runtime.name
        info["URL"] = runtime.url
        times = os.times()
        info["cpu times"] = {
            "user time": times.user,
            "system time": times.system,
            "children user time": times.children_user,
            "children system time": times.children_system,
            "elapsed real time": times.elapsed,
        }
        return S_OK(info)

    async def export_echo(self, data: Any) -> dict[str, Any]:
        """Return the argument unchanged."""
        return S_OK(data)

    @_ownResult
    async def export_whoami(self) -> dict[str, Any]:
        """The caller's credential dictionary, as the server sees it, without its server-side keys (DIRAC's shape)."""
        return S_OK(publicCredentials(self._credDict))

    # ---------------------------------------------------------------------------------------------------
    # DIRAC accessors
    def getRemoteCredentials(self) -> dict[str, Any]:
        """The caller's credential dictionary (``DN``, ``group``, ``username``, ``properties``, ``x509Chain``...)."""
        return self._credDict if self._credDict is not None else {}

    srv_getRemoteCredentials = getRemoteCredentials

    def getRemoteAddress(self) -> tuple[str, int]:
        """``(ip, port)`` of the caller (port 0 when unknown)."""
        address = self.request.connection.context.address
        if isinstance(address, tuple) and len(address) >= 2:
            return address[0], address[1]
        return str(self.request.remote_ip), 0

    srv_getRemoteAddress = getRemoteAddress

    def _peer(self) -> str:
        """``(ip:port)`` of the caller, formatted once per TCP connection."""
        stream = self.request.connection.stream
        peer = getattr(stream, "_tornadoServicesPeer", None)
        if peer is None:
            ip, port = self.getRemoteAddress()
            peer = f"([{ip}]:{port})" if ":" in ip else f"({ip}:{port})"
            try:
                stream._tornadoServicesPeer = peer
            except AttributeError:
                pass
        return peer

    def srv_getFormattedRemoteCredentials(self) -> str:
        """``(ip:port)[group:username]`` as DIRAC's logs show the caller."""
        creds = self._credDict
        if creds is None:
            return f"{self._peer()}[visitor:anonymous]"
        return f"{self._peer()}[{creds.get('group') or 'visitor'}:{creds.get('username') or 'anonymous'}]"

    @classmethod
    def srv_getCSOption(cls, optionName: str, defaultValue: Any = False) -> Any:
        """Option of this service: absolute when it starts with ``/``, else under the service's CS section."""
        if optionName.startswith("/"):
            return gConfig.getValue(optionName, defaultValue)
        for csPath in cls._serviceInfoDict.get("csPaths", ()):
            result = gConfig.getOption(f"{csPath}/{optionName}", defaultValue)
            if result["OK"]:
                return result["Value"]
        return defaultValue

    getCSOption = srv_getCSOption

    @classmethod
    def srv_getServiceName(cls) -> str:
        """``System/Component`` of this service."""
        return cls._fullComponentName

    @classmethod
    def srv_getURL(cls) -> str:
        """URL this service is served at."""
        return cls._serviceInfoDict.get("URL", "")

    def srv_getClientVO(self) -> Optional[str]:
        """The ``clientVO`` form field sent by the caller (DIRAC clients send their VO or ``unknown``)."""
        return self._clientVO

    def srv_getClientSetup(self) -> Optional[str]:
        """The ``clientSetup`` form field (``None`` as text from DIRAC 9 clients)."""
        return self._clientSetup

    def getUserDN(self) -> str:
        """DN of the caller (the user's DN for proxies)."""
        return self.getRemoteCredentials().get("DN", "")

    def getUserName(self) -> str:
        """Registry user (or host) name of the caller, ``anonymous`` when unknown."""
        return self.getRemoteCredentials().get("username", "anonymous")

    def getUserGroup(self) -> str:
        """DIRAC group of the caller (``hosts`` for hosts)."""
        return self.getRemoteCredentials().get("group", "")

    def getProperties(self) -> list[str]:
        """Properties that admitted the caller (all of its group's for ``all``/``authenticated`` rules)."""
        return self.getRemoteCredentials().get("properties", [])

    def isRegisteredUser(self) -> bool:
        """True when the caller resolved to a Registry user or host."""
        creds = self.getRemoteCredentials()
        return creds.get("username", "anonymous") != "anonymous" and bool(creds.get("group")) and creds.get("group") != "visitor"


def _parseUrlencoded(text: str) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` fields as ``parse_qsl(keep_blank_values=True)`` reads them, stripped.

    Twice as fast as ``parse_qsl`` for DIRAC's four short fields (unquoting only the values that need it);
    a repeated field keeps its last value, as Tornado's ``get_argument`` does. Invalid UTF-8 behind ``%XX``
    raises UnicodeDecodeError.
    """
    fields = {}
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = _unquote(name)
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = _unquote(value)
        fields[name] = value.strip()
    return fields


#: Escaped form fields every client sends (``args`` of a call without arguments), decoded once
_COMMON_ESCAPES = {text: unquote(text, errors="strict") for text in ("%5B%5D", "%5b%5d")}


def _unquote(text: str) -> str:
    """``unquote(text, errors="strict")``; for ASCII text (what clients send) without its regular-expression split.

    For ASCII text ``unquote`` decodes the whole text as one run, exactly as here (same result, same error).
    The ``args`` of a call without arguments (``%5B%5D``) is answered from a constant table.
    """
    known = _COMMON_ESCAPES.get(text)
    if known is not None:
        return known
    if text.isascii():
        return unquote_to_bytes(text).decode("utf-8")
    return unquote(text, errors="strict")


def _encodeAnswer(result: Any) -> str:
    """JEncode of ``result`` without any CallStack/ExecInfo of the return structures inside it.

    The result is encoded as is first: only when the text names one of those keys (or an ExecInfo made
    encoding fail) is the structure walked and encoded again, so ordinary answers are never walked.
    """
    try:
        body = encode(result)
    except EncodeError:
        return encode(stripCallStacks(result))
    if '"CallStack"' in body or '"ExecInfo"' in body:
        return encode(stripCallStacks(result))
    return body


def _authFailureReason(connection: ConnectionCredentials) -> str:
    """Label of a 401 for the metrics: no certificate, a refused forwarded chain, or an unreadable one."""
    if isinstance(connection, ForwardedRefusal):
        return "forwarded chain rejected"
    if (connection.error or {}).get("Errno") == DErrno.ECERTFIND:
        return "no certificate"
    return "unreadable certificate chain"


def _isStreamableOK(result: dict[str, Any]) -> bool:
    """S_OK whose value is raw content (bytes, str, file or iterator) rather than a JSON structure."""
    if not result.get("OK") or "Value" not in result:
        return False
    value = result["Value"]
    return isinstance(value, (bytes, bytearray, memoryview, str)) or hasattr(value, "read") or isinstance(value, (Iterator, AsyncIterator))
