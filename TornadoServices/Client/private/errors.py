"""Exceptions raised inside the client; the public API turns them into S_ERROR dicts.

The tree::

    RPCError                          every failure of a call, with errno + message
    ├── ClientSetupError              the call cannot start: fix the client side
    │   ├── NoURLError                no URL for the service in the configuration
    │   ├── UnsupportedURLError       scheme other than https (dips, http, ...)
    │   ├── NoProxyError              no proxy file found where we looked
    │   ├── NoHostCertificateError    useCertificates=True but no host cert/key
    │   ├── CANotFoundError           no CA directory
    │   └── CredentialError           credential given but unusable (bad PEM, missing file)
    ├── TransportError                nothing usable came back from the network
    │   ├── NotDeliveredError         the request certainly never reached the service:
    │   │   │                           safe to try another URL
    │   │   ├── ConnectError          connection refused / unreachable
    │   │   ├── DNSError              host name does not resolve
    │   │   ├── ConnectTimeout        no TCP/TLS connection within the connect timeout
    │   │   └── TLSError              TLS handshake failed
    │   │       ├── ServerCertificateUntrusted   server cert not signed by our CAs (or expired)
    │   │       ├── HostnameMismatch             server cert is for another host
    │   │       └── ClientCertificateRejected    the server refused our certificate
    │   └── MaybeDeliveredError       the service may have run the call: never resent
    │       ├── ReadTimeout           no answer within the call timeout
    │       └── ConnectionLost        connection reset / closed before the full answer
    └── ProtocolError                 an HTTP answer arrived but is not a usable result
        ├── BadStatus                 HTTP status other than 200 (server's S_ERROR kept)
        │   ├── AccessDenied          401 / 403  -> EACCES
        │   ├── MethodNotImplemented  501        -> ENOSYS
        │   └── ServiceNotFound       404        -> next URL
        ├── MalformedResponse         not HTTP at all (junk status line, broken framing)
        └── UndecodableBody           200 but the body is not a JEncoded S_OK/S_ERROR

``RPCError.mayHaveRun`` says whether the server could have executed the call; only errors
where it is False (and ``ServiceNotFound``) let the client move on to another URL.
"""
from __future__ import annotations

import errno as _errno
from typing import Any, Optional

from TornadoServices.Core import DErrno
from TornadoServices.Core.ReturnValues import S_ERROR

__all__ = [
    "RPCError",
    "ClientSetupError",
    "NoURLError",
    "UnsupportedURLError",
    "NoProxyError",
    "NoHostCertificateError",
    "CANotFoundError",
    "CredentialError",
    "TransportError",
    "NotDeliveredError",
    "ConnectError",
    "DNSError",
    "ConnectTimeout",
    "TLSError",
    "ServerCertificateUntrusted",
    "HostnameMismatch",
    "ClientCertificateRejected",
    "MaybeDeliveredError",
    "ReadTimeout",
    "ConnectionLost",
    "ProtocolError",
    "BadStatus",
    "AccessDenied",
    "MethodNotImplemented",
    "ServiceNotFound",
    "MalformedResponse",
    "UndecodableBody",
]

MAY_HAVE_RUN = "the call may or may not have been executed by the server, so it was not sent anywhere else"


class RPCError(Exception):
    """Base of every client-side failure; carries the errno and message of its S_ERROR."""

    errno: int = 0
    mayHaveRun: bool = False
    retryElsewhere: bool = False

    def __init__(self, message: str, *, url: Optional[str] = None, errno: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        if errno is not None:
            self.errno = errno

    def toSError(self) -> dict[str, Any]:
        """Return the S_ERROR dict for this failure (DIRAC message format)."""
        return S_ERROR(self.errno, self.message) if self.errno else S_ERROR(self.message)


class ClientSetupError(RPCError):
    """The call cannot even start: the fix is on the client side."""

    errno = DErrno.ECONF


class NoURLError(ClientSetupError):
    """No URL configured for the service."""

    errno = DErrno.ECONF


class UnsupportedURLError(ClientSetupError):
    """URL with a scheme this client cannot speak."""

    errno = _errno.EPROTONOSUPPORT


class NoProxyError(ClientSetupError):
    """No proxy file found in any of the standard places."""

    errno = DErrno.EPROXYFIND


class NoHostCertificateError(ClientSetupError):
    """useCertificates=True but no host certificate/key pair was found."""

    errno = DErrno.ECERTFIND


class CANotFoundError(ClientSetupError):
    """No directory of trusted CA certificates."""

    errno = DErrno.ECERTFIND


class CredentialError(ClientSetupError):
    """A credential was given but cannot be used."""

    errno = DErrno.ECERTREAD


class TransportError(RPCError):
    """Nothing usable came back from the network."""


class NotDeliveredError(TransportError):
    """The request certainly did not reach the service: another URL may be tried."""

    retryElsewhere = True


class ConnectError(NotDeliveredError):
    """TCP connection refused or network unreachable."""

    errno = _errno.ECONNREFUSED


class DNSError(NotDeliveredError):
    """The host name of the URL does not resolve."""

    errno = _errno.EHOSTUNREACH


class ConnectTimeout(NotDeliveredError):
    """No connection (TCP + TLS handshake) within the connect timeout."""

    errno = _errno.ETIMEDOUT


class TLSError(NotDeliveredError):
    """The TLS handshake failed."""

    errno = _errno.EPROTO


class ServerCertificateUntrusted(TLSError):
    """The server's certificate does not verify against our CA directory."""


class HostnameMismatch(TLSError):
    """The server's certificate was issued for another host name."""


class ClientCertificateRejected(TLSError):
    """The server refused the certificate we presented."""

    errno = _errno.EACCES


class MaybeDeliveredError(TransportError):
    """The server may have executed the call: it must not be sent to another server."""

    mayHaveRun = True


class ReadTimeout(MaybeDeliveredError):
    """The answer did not arrive within the call timeout."""

    errno = _errno.ETIMEDOUT


class ConnectionLost(MaybeDeliveredError):
    """The connection broke after the request was sent, before the whole answer arrived."""

    errno = _errno.ECONNRESET


class ProtocolError(RPCError):
    """The server answered, but not with a usable result."""

    mayHaveRun = True
    errno = _errno.EPROTO


class BadStatus(ProtocolError):
    """HTTP status other than 200; keeps the server's own errno and message."""

    fixedErrno: Optional[int] = None

    def __init__(
        self,
        message: str,
        *,
        url: Optional[str] = None,
        status: int = 0,
        serverErrno: int = 0,
        serverMessage: str = "",
        errno: Optional[int] = None,
    ) -> None:
        if errno is None:
            errno = self.fixedErrno if self.fixedErrno is not None else serverErrno
        super().__init__(message, url=url, errno=errno)
        self.status = status
        self.serverErrno = serverErrno
        self.serverMessage = serverMessage

    def toSError(self) -> dict[str, Any]:
        """Return the S_ERROR, with our context prepended to the server's already formatted message."""
        result = S_ERROR(self.message)
        result["Errno"] = self.errno
        return result


class AccessDenied(BadStatus):
    """401 / 403: authentication or authorisation refused by the server."""

    fixedErrno = _errno.EACCES

    def toSError(self) -> dict[str, Any]:
        """Return S_ERROR(EACCES, ...) like DIRAC does, the server's reason appended."""
        return S_ERROR(self.errno, self.message)


class MethodNotImplemented(BadStatus):
    """501: the service has no such method."""

    fixedErrno = _errno.ENOSYS

    def toSError(self) -> dict[str, Any]:
        """Return S_ERROR(ENOSYS, ...) like DIRAC does."""
        return S_ERROR(self.errno, self.message)


class ServiceNotFound(BadStatus):
    """404: the service is not served at this URL; another URL may have it."""

    retryElsewhere = True
    mayHaveRun = False


class MalformedResponse(ProtocolError):
    """The peer answered with something that is not HTTP."""


class UndecodableBody(ProtocolError):
    """A 200 answer whose body is not JEncoded JSON of an S_OK/S_ERROR dict."""
