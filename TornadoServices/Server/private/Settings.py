"""Server-wide settings: constructor argument > CS ``/Systems/Tornado/<Option>`` > built-in default."""
from __future__ import annotations

import dataclasses
from typing import Any

from TornadoServices.ConfigurationSystem.Client import PathFinder
from TornadoServices.ConfigurationSystem.Client.Config import gConfig

__all__ = ["ServerSettings", "OPTIONS", "MiB", "GiB"]

MiB = 1024 * 1024
GiB = 1024 * MiB

#: (attribute, CS option under /Systems/Tornado, default, meaning) -- the documented list of server options.
OPTIONS: tuple[tuple[str, str, Any, str], ...] = (
    ("address", "Address", "", "address to bind; empty = every interface"),
    ("maxBodySize", "MaxBodySize", 100 * MiB, "largest form request body in bytes, after gzip decompression (413 beyond)"),
    ("maxUploadSize", "MaxUploadSize", 4 * GiB, "largest streamed upload (streamFromClient) in bytes (413 beyond)"),
    ("maxHeaderSize", "MaxHeaderSize", 64 * 1024, "largest request header block in bytes (431 beyond; 64 KiB further the connection is just closed)"),
    ("idleConnectionTimeout", "IdleConnectionTimeout", 120.0, "seconds a keep-alive connection may wait for its next request headers"),
    ("bodyTimeout", "BodyTimeout", 60.0, "seconds allowed to receive a form request body"),
    ("uploadTimeout", "UploadTimeout", 3600.0, "seconds allowed to receive a streamed upload body"),
    ("maxConnections", "MaxConnections", 1000, "open client connections per port; new ones are closed beyond"),
    ("crlCheck", "CRLCheck", "auto", "CRL checking: auto (chain when the CA directory holds CRLs), chain, off"),
    ("sslMinVersion", "SSLMinVersion", "TLSv1_2", "lowest TLS version accepted (ssl.TLSVersion name)"),
    ("sslMaxVersion", "SSLMaxVersion", "", "highest TLS version accepted; empty = OpenSSL's highest"),
    ("sslCiphers", "SSLCiphers", "", "OpenSSL cipher string for TLS <= 1.2; empty = OpenSSL defaults"),
    ("maxThreads", "MaxThreads", 15, "default worker threads per service for plain (non-async) export_ methods"),
    ("maxWaitingPetitions", "MaxWaitingPetitions", 500, "default calls per service waiting for a worker thread (503 beyond)"),
    ("acceptLimitedProxies", "AcceptLimitedProxies", False, "treat limited proxies like full ones (else only 'all' and 'LimitedProxy' rules admit them)"),
    ("acceptIndependentProxies", "AcceptIndependentProxies", False, "treat id-ppl-independent proxies as full proxies of their user, as DIRAC does (else they carry no identity: only 'all' rules admit them, as anonymous)"),
    ("shutdownTimeout", "ShutdownTimeout", 10.0, "seconds stop() waits for running calls before closing connections"),
    ("compressResponse", "CompressResponse", True, "gzip JSON answers of 1 KiB or more when the client accepts gzip"),
    ("hostname", "Hostname", "", "host name used in service URLs (ping's URL); empty = the machine's FQDN"),
    ("certFile", "CertFile", "", "host certificate; empty = /DIRAC/Security/CertFile, then the usual locations"),
    ("keyFile", "KeyFile", "", "host key; empty = /DIRAC/Security/KeyFile, then the usual locations"),
    ("caPath", "CALocation", "", "CA directory; empty = /DIRAC/Security/CALocation, X509_CERT_DIR, ..."),
    ("metricsAuthorization", "MetricsAuthorization", "authenticated", "who may read /metrics: open, loopback (no certificate from 127.0.0.0/8 or ::1) and/or an authorization rule"),
    ("trustedProxies", "TrustedProxies", "", "addresses/CIDRs of TLS-terminating front ends whose forwarded certificate headers are honoured; empty = none"),
    ("trustedProxyCertHeader", "TrustedProxyCertHeader", "X-SSL-CERT", "header with the client certificate from a trusted front end (URL-encoded PEM or base64 DER)"),
    ("trustedProxyChainHeader", "TrustedProxyChainHeader", "X-SSL-CHAIN", "header with the rest of the client chain from a trusted front end (optional)"),
    ("trustedProxyVerifyHeader", "TrustedProxyVerifyHeader", "X-Ssl_client_verify", "header in which a trusted front end says SUCCESS when it verified the client"),
    ("proxyProtocol", "ProxyProtocol", "", "addresses/CIDRs of TCP load balancers that start each connection with a PROXY protocol header (required from them, refused from others); empty = off"),
    ("proxyProtocolTimeout", "ProxyProtocolTimeout", 5.0, "seconds a connection from a ProxyProtocol network may take to send its PROXY header"),
    ("handshakeLogLimit", "HandshakeLogLimit", 10, "refused-TLS-handshake WARNING lines logged per peer address and reason per HandshakeLogInterval; 0 = no limit"),
    ("handshakeLogInterval", "HandshakeLogInterval", 60.0, "seconds of a handshake log window; at its end one summary line counts the lines dropped"),
    ("handshakeLogPeers", "HandshakeLogPeers", 1000, "peer address/reason pairs tracked per window; beyond, further ones share one entry ('other addresses')"),
)


@dataclasses.dataclass
class ServerSettings:
    """Every limit and TLS choice of a TornadoServer (see :data:`OPTIONS` for meanings and defaults)."""

    address: str = ""
    maxBodySize: int = 100 * MiB
    maxUploadSize: int = 4 * GiB
    maxHeaderSize: int = 64 * 1024
    idleConnectionTimeout: float = 120.0
    bodyTimeout: float = 60.0
    uploadTimeout: float = 3600.0
    maxConnections: int = 1000
    crlCheck: str = "auto"
    sslMinVersion: str = "TLSv1_2"
    sslMaxVersion: str = ""
    sslCiphers: str = ""
    maxThreads: int = 15
    maxWaitingPetitions: int = 500
    acceptLimitedProxies: bool = False
    acceptIndependentProxies: bool = False
    shutdownTimeout: float = 10.0
    compressResponse: bool = True
    hostname: str = ""
    certFile: str = ""
    keyFile: str = ""
    caPath: str = ""
    metricsAuthorization: str = "authenticated"
    trustedProxies: str = ""
    trustedProxyCertHeader: str = "X-SSL-CERT"
    trustedProxyChainHeader: str = "X-SSL-CHAIN"
    trustedProxyVerifyHeader: str = "X-Ssl_client_verify"
    proxyProtocol: str = ""
    proxyProtocolTimeout: float = 5.0
    handshakeLogLimit: int = 10
    handshakeLogInterval: float = 60.0
    handshakeLogPeers: int = 1000

    @classmethod
    def resolve(cls, **overrides: Any) -> "ServerSettings":
        """Settings from the CS section of the Tornado system, with non-None ``overrides`` winning."""
        unknown = set(overrides) - {name for name, *_ in OPTIONS}
        if unknown:
            raise TypeError(f"unknown TornadoServer setting(s): {', '.join(sorted(unknown))}")
        try:
            section = PathFinder.getSystemSection("Tornado")
        except Exception:
            section = "/Systems/Tornado"
        values: dict[str, Any] = {}
        for name, option, default, _ in OPTIONS:
            if overrides.get(name) is not None:
                value = overrides[name]
            else:
                value = gConfig.getValue(f"{section}/{option}", default)
            if isinstance(default, bool):
                value = bool(value)
            elif isinstance(default, int) and not isinstance(value, int):
                value = int(value)
            elif isinstance(default, float):
                value = float(value)
            values[name] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ValueError naming the option when a value makes no sense."""
        for name in ("maxBodySize", "maxUploadSize", "maxHeaderSize", "maxConnections", "maxThreads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"/Systems/Tornado/{name[0].upper()}{name[1:]} must be positive, not {getattr(self, name)}")
        if not self.proxyProtocolTimeout > 0:
            raise ValueError(f"/Systems/Tornado/ProxyProtocolTimeout must be a positive number of seconds, not {self.proxyProtocolTimeout}")
        if self.handshakeLogLimit < 0:
            raise ValueError(f"/Systems/Tornado/HandshakeLogLimit must be 0 (no limit) or more, not {self.handshakeLogLimit}")
        if not self.handshakeLogInterval > 0:
            raise ValueError(f"/Systems/Tornado/HandshakeLogInterval must be a positive number of seconds, not {self.handshakeLogInterval}")
        if self.handshakeLogPeers <= 0:
            raise ValueError(f"/Systems/Tornado/HandshakeLogPeers must be positive, not {self.handshakeLogPeers}")
        if self.maxWaitingPetitions < 0:
            raise ValueError("/Systems/Tornado/MaxWaitingPetitions must be 0 or more")
        if self.crlCheck.lower() not in ("auto", "chain", "off"):
            raise ValueError(f"/Systems/Tornado/CRLCheck must be auto, chain or off, not {self.crlCheck!r}")
        self.crlCheck = self.crlCheck.lower()
