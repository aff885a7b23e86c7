"""The seam between the client's policy and the network.

The policy layer (``TornadoBaseClient``: URL choice, banning, failover, error mapping) never touches
sockets. It calls one method, :meth:`Transport.post`, and receives a :class:`Response` or an
exception from :mod:`.errors`. Two transports implement it:

* :class:`~TornadoServices.Client.private.httpTransport.RequestsTransport`: the real one, pooled
  ``requests`` sessions with our TLS context;
* :class:`MockTransport`: calls a Python function with the :class:`Request`; lets the policy be
  tested without sockets (``MockTransport(lambda request: jsonResponse({"OK": True, "Value": 1}))``).

A transport raises only :class:`~.errors.TransportError` / :class:`~.errors.ProtocolError`
subclasses (and :class:`~.errors.ClientSetupError` for unusable credentials), already classified as
"certainly not delivered" or "may have run".
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

from TornadoServices.Client.private.errors import ReadTimeout

__all__ = [
    "TLSSettings",
    "Timeouts",
    "Request",
    "Response",
    "Transport",
    "MockTransport",
    "jsonResponse",
    "Body",
]

Body = Union[bytes, IO[bytes], Iterable[bytes], None]


@dataclass(frozen=True)
class TLSSettings:
    """Everything that defines a TLS client identity and trust: the key of the connection pool."""

    certFile: Optional[str] = None
    keyFile: Optional[str] = None
    pemData: Optional[bytes] = field(default=None, repr=False)
    caPath: Optional[str] = None
    skipCACheck: bool = False
    ciphers: Optional[str] = None
    minVersion: Optional[str] = None
    maxVersion: Optional[str] = None
    credentialKind: str = "proxy"

    def describeCredential(self) -> str:
        """Say which certificate we present, for error messages."""
        if self.pemData is not None:
            return f"in-memory {self.credentialKind} (proxyString/proxyChain)"
        if self.certFile and self.keyFile and self.keyFile != self.certFile:
            return f"{self.credentialKind} {self.certFile} (key {self.keyFile})"
        if self.certFile:
            return f"{self.credentialKind} {self.certFile}"
        return "no client certificate"

    def describeTrust(self) -> str:
        """Say what we trust, for error messages."""
        if self.skipCACheck:
            return "no CA check (skipCACheck)"
        return f"the CA directory {self.caPath}"

    def poolKey(self) -> tuple[Any, ...]:
        """Key identifying the credential *content*: renewed proxy files or updated CA dirs get new pools."""
        return (self.credentialIdentity(), self.caIdentity(), self.skipCACheck, self.ciphers, self.minVersion,
                self.maxVersion)

    def credentialIdentity(self) -> tuple[Any, ...]:
        """Paths with size and modification time, or a digest of in-memory PEM data."""
        if self.pemData is not None:
            return ("pem", hashlib.sha256(self.pemData).hexdigest())
        return ("files", _fileStamp(self.certFile), _fileStamp(self.keyFile))

    def caIdentity(self) -> tuple[Any, ...]:
        """The CA directory with its modification time (new/removed CA or CRL files change it)."""
        if self.skipCACheck or not self.caPath:
            return ("noca",)
        return _fileStamp(self.caPath)

    def stableKey(self) -> tuple[Any, ...]:
        """The settings without file times: two pool keys with the same stable key replace each other."""
        credential: Any = self.credentialIdentity() if self.pemData is not None else (self.certFile, self.keyFile)
        return (credential, self.caPath, self.skipCACheck, self.ciphers, self.minVersion, self.maxVersion)


def _fileStamp(path: Optional[str]) -> tuple[Any, ...]:
    """(realpath, mtime_ns, size) of a file, or just the path when it cannot be stat'ed."""
    if not path:
        return (None,)
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return (path,)
    return (real, st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class Timeouts:
    """Connect timeout (TCP + TLS handshake), per-read timeout, and an optional deadline for the whole answer."""

    connect: float
    read: float
    total: Optional[float] = None


@dataclass
class Request:
    """What the policy layer asks a transport to send (also what MockTransport handlers receive)."""

    url: str
    fields: Optional[Sequence[tuple[str, str]]]
    tls: TLSSettings
    timeout: Timeouts
    body: Body = None
    params: Optional[Sequence[tuple[str, str]]] = None
    headers: Optional[Mapping[str, str]] = None


class Response:
    """An HTTP answer whose body is read incrementally; always close it (or use ``with``)."""

    def __init__(self, status: int, headers: Mapping[str, str], reason: str = "", url: str = "") -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.reason = reason
        self.url = url

    @property
    def contentType(self) -> str:
        """The media type without parameters, lower case."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def iterContent(self, chunkSize: int = 256 * 1024) -> Iterator[bytes]:
        """Yield the (decompressed) body in chunks; raises TransportError subclasses on failure."""
        raise NotImplementedError

    def read(self, deadline: Optional[float] = None) -> bytes:
        """Return the whole body, failing with ReadTimeout once the monotonic ``deadline`` passes."""
        parts = []
        for chunk in self.iterContent():
            parts.append(chunk)
            if deadline is not None and time.monotonic() > deadline:
                raise ReadTimeout(f"The answer from {self.url} did not complete in time", url=self.url)
        return b"".join(parts)

    def close(self) -> None:
        """Release the connection (back to the pool when the body was fully read)."""

    def __enter__(self) -> "Response":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryResponse(Response):
    """A response held in memory, for MockTransport handlers."""

    def __init__(self, status: int, body: bytes = b"", headers: Optional[Mapping[str, str]] = None,
                 reason: str = "", url: str = "", chunks: Optional[Iterable[bytes]] = None) -> None:
        super().__init__(status, headers or {}, reason, url)
        self._body = body
        self._chunks = chunks
        self.closed = False

    def iterContent(self, chunkSize: int = 256 * 1024) -> Iterator[bytes]:
        if self._chunks is not None:
            yield from self._chunks
            return
        for start in range(0, len(self._body), chunkSize):
            yield self._body[start:start + chunkSize]

    def close(self) -> None:
        self.closed = True


def jsonResponse(value: Any, status: int = 200, reason: str = "OK") -> MemoryResponse:
    """A JSON answer (as the server sends S_OK/S_ERROR dicts), for MockTransport handlers."""
    return MemoryResponse(status, json.dumps(value).encode(), {"Content-Type": "application/json"}, reason)


class Transport:
    """Sends one POST; the only thing the client policy knows about the network."""

    def post(
        self,
        url: str,
        fields: Optional[Sequence[tuple[str, str]]],
        *,
        tls: TLSSettings,
        timeout: Timeouts,
        body: Body = None,
        params: Optional[Sequence[tuple[str, str]]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Response:
        """POST ``fields`` form-encoded (or the raw ``body``) to ``url``; the body of the answer is not read yet."""
        raise NotImplementedError


class MockTransport(Transport):
    """A transport calling ``handler(request)``; the handler returns a Response or raises an RPCError."""

    def __init__(self, handler: Callable[[Request], Response]) -> None:
        self.handler = handler
        self.requests: list[Request] = []

    def post(
        self,
        url: str,
        fields: Optional[Sequence[tuple[str, str]]],
        *,
        tls: TLSSettings,
        timeout: Timeouts,
        body: Body = None,
        params: Optional[Sequence[tuple[str, str]]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Response:
        request = Request(url, list(fields) if fields is not None else None, tls, timeout, body, params, headers)
        self.requests.append(request)
        response = self.handler(request)
        if not isinstance(response, Response):
            raise TypeError(f"MockTransport handler returned {type(response).__name__}, not a Response")
        response.url = response.url or url
        return response
