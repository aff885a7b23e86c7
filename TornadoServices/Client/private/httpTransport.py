"""The real transport: pooled ``requests`` sessions, failures classified into the client's error tree.

Classification is by *phase*: the instrumented connection tags exceptions raised while connecting
(TCP connect + TLS handshake: the request was certainly not sent) and while waiting for the status
line. Everything after that may have been executed by the server.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import time
from typing import Any, Iterator, Mapping, Optional, Sequence
from urllib.parse import urlencode, urlsplit

import requests
import urllib3.exceptions as u3

try:
    from urllib3.util.ssl_match_hostname import CertificateError as _U3CertificateError
except ImportError:  # very old urllib3: hostname checks come from ssl only
    _U3CertificateError = ssl.CertificateError

#: urllib3 >= 2 names DNS failures; with 1.26 they are a plain socket.gaierror inside NewConnectionError
_NameResolutionError = getattr(u3, "NameResolutionError", socket.gaierror)

from TornadoServices.Client.private import errors as E
from TornadoServices.Client.private.pool import (
    FIRST_USE_ATTR,
    PHASE_ATTR,
    SessionRegistry,
    gSessionRegistry,
    probeServerVerdict,
)
from TornadoServices.Client.private.transport import Body, Response, Timeouts, TLSSettings, Transport

__all__ = ["RequestsTransport", "classifyFailure"]

# TLS alerts by which a server says it does not accept the certificate we presented.
CLIENT_CERT_ALERTS = {
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the CA that issued our certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server found our certificate invalid",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "our certificate (or proxy) has expired or is not yet valid",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "our certificate has been revoked",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the server could not verify our certificate",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "the server does not support our certificate type",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate and we sent none",
    "TLSV1_ALERT_ACCESS_DENIED": "the server denied access to our certificate",
    "TLSV1_ALERT_DECRYPT_ERROR": "the server could not verify our certificate signature",
}

_FORM = "application/x-www-form-urlencoded"

HOSTNAME_VERIFY_CODES = {62, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (cause, context, args, urllib3 ``reason``), outermost first."""
    seen: set[int] = set()
    ordered: list[BaseException] = []
    queue: list[Optional[BaseException]] = [exc]
    while queue:
        current = queue.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        ordered.append(current)
        reason = getattr(current, "reason", None)
        queue.extend([current.__cause__, current.__context__])
        queue.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
        if isinstance(reason, BaseException):
            queue.append(reason)
    return ordered


def _first(causes: list[BaseException], kinds: Any) -> Any:
    return next((c for c in causes if isinstance(c, kinds)), None)


def _hostPort(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 443


def _alertName(causes: list[BaseException]) -> Optional[str]:
    for cause in causes:
        if isinstance(cause, ssl.SSLError):
            reason = getattr(cause, "reason", None) or ""
            if "ALERT" in reason:
                return reason
    return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


def _clientCertRejected(url: str, tls: TLSSettings, alert: str) -> E.ClientCertificateRejected:
    why = CLIENT_CERT_ALERTS.get(alert, "the server refused the TLS handshake")
    return E.ClientCertificateRejected(
        f"The server at {url} rejected our certificate ({alert}: {why}); we presented the "
        f"{tls.describeCredential()}. Use a certificate issued by a CA the server trusts, or renew the "
        "proxy with tornado-proxy-init",
        url=url,
    )


def classifyFailure(
    exc: BaseException, url: str, tls: TLSSettings, timeout: Timeouts, sslContext: Optional[ssl.SSLContext] = None
) -> E.RPCError:
    """Turn a requests/urllib3/ssl/socket exception into the client's error tree (see errors.py)."""
    if isinstance(exc, E.RPCError):
        return exc
    causes = _causes(exc)
    phases = {getattr(c, PHASE_ATTR) for c in causes if hasattr(c, PHASE_ATTR)}
    firstUse = any(getattr(c, FIRST_USE_ATTR, False) for c in causes)
    host, port = _hostPort(url)

    verifyError = _first(causes, ssl.SSLCertVerificationError)
    if verifyError is not None:
        code = getattr(verifyError, "verify_code", None)
        detail = getattr(verifyError, "verify_message", None) or _short(verifyError)
        if code in HOSTNAME_VERIFY_CODES:
            return E.HostnameMismatch(
                f"The certificate of the server at {url} is not valid for the host name '{host}' ({detail}); "
                "use the host name written in the server certificate's subjectAltName, or fix the certificate",
                url=url,
            )
        return E.ServerCertificateUntrusted(
            f"The certificate of the server at {url} is not trusted ({detail}): it does not verify against "
            f"{tls.describeTrust()}; put its CA (and CRL) there or point X509_CERT_DIR at the right directory",
            url=url,
        )
    if _first(causes, _U3CertificateError) is not None:
        return E.HostnameMismatch(f"The certificate of the server at {url} is not valid for '{host}'", url=url)

    alert = _alertName(causes)
    if alert in CLIENT_CERT_ALERTS:
        return _clientCertRejected(url, tls, alert)

    if "connect" in phases or _first(causes, u3.ConnectTimeoutError) is not None:
        return _connectFailure(causes, url, host, port, tls, timeout, alert)

    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return E.UnsupportedURLError(f"Invalid URL {url}: {_short(exc)}", url=url)

    timeoutError = _first(causes, (u3.ReadTimeoutError, socket.timeout, TimeoutError))
    if timeoutError is not None:
        return E.ReadTimeout(
            f"No answer from {url} within {timeout.read:g} s; {E.MAY_HAVE_RUN}. "
            "Raise the timeout if the method is legitimately slow",
            url=url,
        )

    disconnected = _first(causes, http.client.RemoteDisconnected)
    if disconnected is None:
        badLine = _first(causes, (http.client.BadStatusLine, http.client.LineTooLong, u3.HeaderParsingError))
        if badLine is not None:
            return E.MalformedResponse(
                f"The server at {url} answered with something that is not HTTP ({_short(badLine)}); "
                f"check that the URL points to an HTTPS RPC service; {E.MAY_HAVE_RUN}",
                url=url,
            )
        decodeError = _first(causes, (requests.exceptions.ContentDecodingError, u3.DecodeError))
        if decodeError is not None:
            return E.MalformedResponse(
                f"The answer from {url} could not be decompressed ({_short(decodeError)}); {E.MAY_HAVE_RUN}",
                url=url,
            )

    presentedCert = bool(tls.certFile or tls.pemData)
    beforeAnswer = bool(phases & {"send", "awaitResponse"})
    abrupt = disconnected is None and _first(causes, (ssl.SSLError, ConnectionResetError)) is not None
    if beforeAnswer and firstUse and abrupt and presentedCert and sslContext is not None:
        verdict = probeServerVerdict(sslContext, host, port, min(timeout.connect, 5.0))
        if verdict in CLIENT_CERT_ALERTS:
            return _clientCertRejected(url, tls, verdict)

    where = {"send": "while sending the request", "awaitResponse": "before answering"}.get(
        next(iter(phases), ""), "in the middle of its answer"
    )
    return E.ConnectionLost(
        f"The connection to {url} was lost {where} ({_short(causes[-1])}); {E.MAY_HAVE_RUN}",
        url=url,
    )


def _connectFailure(
    causes: list[BaseException], url: str, host: str, port: int, tls: TLSSettings, timeout: Timeouts,
    alert: Optional[str],
) -> E.RPCError:
    """Failures while connecting: the request was certainly not sent."""
    if _first(causes, (_NameResolutionError, socket.gaierror)) is not None:
        return E.DNSError(f"Cannot resolve the host name '{host}' of {url}; check the URL and the DNS", url=url)
    if _first(causes, ConnectionRefusedError) is not None:
        return E.ConnectError(
            f"Connection refused by {host}:{port} ({url}): no server is listening there; "
            "check the URL and that the service is running",
            url=url,
        )
    timedOut = [c for c in causes if isinstance(c, (socket.timeout, TimeoutError))
                or (isinstance(c, u3.ConnectTimeoutError) and not isinstance(c, u3.NewConnectionError))]
    if timedOut:
        return E.ConnectTimeout(
            f"Could not connect to {url} within {timeout.connect:g} s (no TCP connection or TLS handshake); "
            "the server is down, overloaded or filtered by a firewall",
            url=url,
        )
    sslError = _first(causes, ssl.SSLError)
    if sslError is not None:
        reason = getattr(sslError, "reason", None) or _short(sslError)
        hint = ""
        if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG") or "HTTP_REQUEST" in reason:
            hint = "; is it an HTTPS server?"
        elif isinstance(sslError, ssl.SSLEOFError):
            hint = "; the server closed the connection during the handshake (overloaded, or it refused our certificate)"
        return E.TLSError(
            f"TLS handshake with {url} failed ({reason}){hint}; we presented the {tls.describeCredential()} "
            f"and trust {tls.describeTrust()}",
            url=url,
        )
    osError = _first(causes, OSError)
    detail = _short(osError) if osError is not None else _short(causes[-1])
    return E.ConnectError(f"Cannot connect to {url}: {detail}", url=url)


class _RequestsResponse(Response):
    """Adapts a streamed ``requests.Response``; errors while reading the body are classified too."""

    def __init__(self, response: requests.Response, url: str, tls: TLSSettings, timeout: Timeouts) -> None:
        super().__init__(response.status_code, dict(response.headers), response.reason or "", url)
        self._response = response
        self._tls = tls
        self._timeout = timeout

    def iterContent(self, chunkSize: int = 256 * 1024) -> Iterator[bytes]:
        try:
            for chunk in self._response.iter_content(chunkSize):
                if chunk:
                    yield chunk
        except Exception as exc:  # every failure while reading the body is classified
            self._response.close()
            raise classifyFailure(exc, self.url, self._tls, self._timeout) from exc

    def close(self) -> None:
        self._response.close()


class RequestsTransport(Transport):
    """POSTs through the process-wide pool of keep-alive ``requests`` sessions."""

    def __init__(self, registry: Optional[SessionRegistry] = None) -> None:
        self.registry = registry if registry is not None else gSessionRegistry

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
        pooled = self.registry.get(tls)
        data: Any = body
        if fields is not None:
            # Encoded here, as requests would (UTF-8, quote_plus, None values left out), but without its
            # generic per-field type checks: a third of the client's CPU per call went there.
            data = urlencode([(name, value) for name, value in fields if value is not None]).encode("ascii")
            headers = {**headers, "Content-Type": _FORM} if headers else {"Content-Type": _FORM}
        started = time.monotonic()
        try:
            response = pooled.session.post(
                url,
                data=data,
                params=list(params) if params else None,
                headers=dict(headers) if headers else None,
                timeout=(timeout.connect, timeout.read),
                stream=True,
                allow_redirects=False,
            )
        except Exception as exc:  # classify every transport failure; nothing escapes unclassified
            raise classifyFailure(exc, url, tls, timeout, pooled.sslContext) from exc
        if timeout.total is not None and time.monotonic() - started > timeout.total:
            response.close()
            raise E.ReadTimeout(f"No answer from {url} within {timeout.total:g} s; {E.MAY_HAVE_RUN}", url=url)
        return _RequestsResponse(response, url, tls, timeout)
