"""PROXY protocol headers (versions 1 and 2): strict parsing, building, and reading from a new connection.

A load balancer in TCP mode (TLS passthrough) can prepend to each connection one header naming the client's
address (HAProxy ``send-proxy`` for the text version 1, ``send-proxy-v2`` for the binary version 2), before
the client's first TLS byte. The server reads it only from the networks listed in
``/Systems/Tornado/ProxyProtocol``; anything else in that place is refused.

Version 1 is one line of at most 107 bytes::

    PROXY TCP4 192.0.2.7 198.51.100.1 51234 8443\\r\\n
    PROXY TCP6 2001:db8::7 2001:db8::1 51234 8443\\r\\n
    PROXY UNKNOWN\\r\\n                      (the sender does not know: the real peer is kept)

Version 2 is a 16-byte block (12-byte signature, version and command, family and transport, length of the
rest, big-endian), then the addresses (12 bytes for TCP over IPv4, 36 for IPv6) and optional TLVs (type, 2-byte
length, value), which are checked to fit and otherwise ignored. Command ``LOCAL`` marks a connection the
balancer makes itself (health checks): the real peer is kept and the address block is not interpreted.

Everything not in that format is refused with :class:`ProxyProtocolError`, whose ``kind`` (``invalid``,
``incomplete``, ``timeout``) is a bounded label for counters and whose message says what was wrong.
:func:`readHeader` reads one header from a non-blocking socket without consuming a single byte beyond it,
so that the TLS handshake can then run on the same socket.
"""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
from typing import Any, Iterable, Optional, Sequence, Union

from TornadoServices.Server.private.ForwardedChain import addressInNetworks, parseNetworks

__all__ = [
    "ProxyProtocolError",
    "ProxyHeader",
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "headerLength",
    "parseHeader",
    "makeV1",
    "makeV2",
    "readHeader",
    "SenderNetworks",
]

#: Longest version 1 header, CRLF included.
V1_MAX_LENGTH = 107
#: First 12 bytes of every version 2 header.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: Fixed part of a version 2 header (signature, version/command, family/transport, length).
V2_FIXED_LENGTH = 16
_V1_PREFIX = b"PROXY "
_V2_ADDRESS_LENGTH = {0x11: 12, 0x21: 36}  # TCP over IPv4, TCP over IPv6
_V2_FAMILY_NAMES = {0x11: "TCP4", 0x21: "TCP6"}
#: Bytes looked at per read of a header (longer version 2 headers are read in several steps).
_PEEK_SIZE = 4096
_TLS_RECORD_HANDSHAKE = 0x16

Address = tuple[str, int]


class ProxyProtocolError(ValueError):
    """A PROXY protocol header is missing, malformed, truncated, too long or late; the message says which.

    ``kind`` is ``invalid`` (bytes that are not a valid header), ``incomplete`` (the connection ended or
    failed before the end of the header) or ``timeout`` (the header did not arrive in time).
    """

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class ProxyHeader:
    """One parsed header.

    ``command`` is ``PROXY`` (a relayed connection) or ``LOCAL`` (the balancer's own connection).
    ``family`` is ``TCP4``, ``TCP6``, or ``UNKNOWN`` (version 1 ``UNKNOWN``, version 2 ``UNSPEC``, and every
    ``LOCAL`` header). ``source`` and ``destination`` are ``(address, port)`` for TCP4/TCP6, else None:
    the connection's real endpoints are to be used. ``length`` is the header's size in bytes.
    """

    version: int
    command: str
    family: str
    source: Optional[Address]
    destination: Optional[Address]
    length: int

    @property
    def forwarded(self) -> bool:
        """True when the header carries the client's address (the real peer is replaced by ``source``)."""
        return self.source is not None


def _hexPrefix(data: bytes, count: int = 8) -> str:
    shown = " ".join(f"{byte:02x}" for byte in data[:count])
    return shown + (" ..." if len(data) > count else "")


def _notAHeader(data: bytes) -> ProxyProtocolError:
    if data[0] == _TLS_RECORD_HANDSHAKE:
        return ProxyProtocolError(
            "the connection starts with a TLS handshake, not with a PROXY protocol header "
            "(the balancer must send one: HAProxy send-proxy or send-proxy-v2)"
        )
    return ProxyProtocolError(f"the connection does not start with a PROXY protocol header (first bytes: {_hexPrefix(data)})")


def _checkV1Characters(data: bytes, end: int) -> None:
    """Refuse control and non-ASCII bytes in data[:end] (a version 1 header is printable ASCII)."""
    for index in range(end):
        byte = data[index]
        if byte < 0x20 or byte > 0x7E:
            raise ProxyProtocolError(f"byte 0x{byte:02x} at offset {index} of a version 1 PROXY header (printable ASCII and a final CRLF only)")


def headerLength(data: bytes) -> Optional[int]:
    """Length of the header that ``data`` (the first bytes of a connection) starts with, or None when more
    bytes are needed to know; ProxyProtocolError as soon as the bytes cannot start a valid header.

    Never looks past the end of the header: with a complete header followed by other bytes, the header's
    own length is returned.
    """
    if not data:
        return None
    known = min(len(data), len(V2_SIGNATURE))
    if data[:known] == V2_SIGNATURE[:known]:
        if len(data) < V2_FIXED_LENGTH:
            return None
        return V2_FIXED_LENGTH + int.from_bytes(data[14:16], "big")
    known = min(len(data), len(_V1_PREFIX))
    if data[:known] == _V1_PREFIX[:known]:
        end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
        if end >= 0:
            _checkV1Characters(data, end)
            return end + 2
        # a final CR may be the start of the CRLF; anything else must be printable already
        window = data[:V1_MAX_LENGTH]
        _checkV1Characters(window, len(window) - 1 if window.endswith(b"\r") else len(window))
        if len(data) >= V1_MAX_LENGTH:
            raise ProxyProtocolError(f"version 1 PROXY header without CRLF in its first {V1_MAX_LENGTH} bytes (the longest allowed)")
        return None
    raise _notAHeader(data)


def parseHeader(data: bytes) -> ProxyHeader:
    """The header that ``data`` is, exactly (no byte more or less); ProxyProtocolError otherwise."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProxyProtocolError(f"a PROXY header is bytes, not {type(data).__name__}")
    data = bytes(data)
    length = headerLength(data)
    if length is None:
        if not data:
            raise ProxyProtocolError("no PROXY header: no bytes at all")
        if data[:1] == b"\r":
            raise ProxyProtocolError(f"truncated version 2 PROXY header ({len(data)} of at least {V2_FIXED_LENGTH} bytes)")
        raise ProxyProtocolError(f"truncated version 1 PROXY header ({len(data)} bytes, no CRLF)")
    if len(data) < length:
        raise ProxyProtocolError(f"truncated version 2 PROXY header ({len(data)} of {length} bytes)")
    if len(data) > length:
        raise ProxyProtocolError(f"{len(data) - length} bytes after the end of the PROXY header")
    return _parseV2(data) if data[:1] == b"\r" else _parseV1(data)


# ---------------------------------------------------------------------------------------------------------
# version 1
def _v1Address(text: str, version: int) -> str:
    if "%" in text:
        raise ProxyProtocolError(f"{text!r} in a version 1 PROXY header: an address with a zone is not allowed")
    try:
        address = ipaddress.IPv4Address(text) if version == 4 else ipaddress.IPv6Address(text)
    except ValueError:
        raise ProxyProtocolError(f"{text!r} in a version 1 PROXY header is not an IPv{version} address") from None
    return str(address)


def _v1Port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ProxyProtocolError(f"{text!r} in a version 1 PROXY header is not a port number (0 to 65535, no leading zero)")
    return int(text)


def _parseV1(data: bytes) -> ProxyHeader:
    line = data[:-2].decode("ascii")  # headerLength checked: printable ASCII, CRLF at the end only
    fields = line.split(" ")
    protocol = fields[1]
    if protocol == "UNKNOWN":  # the rest of the line, whatever it says, is to be ignored
        return ProxyHeader(1, "PROXY", "UNKNOWN", None, None, len(data))
    if protocol not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"version 1 PROXY header with protocol {protocol[:10]!r} (TCP4, TCP6 or UNKNOWN expected)")
    if len(fields) != 6:
        raise ProxyProtocolError(
            f"version 1 PROXY header with {len(fields)} space-separated fields instead of 6 "
            "(PROXY, protocol, source and destination addresses, source and destination ports)"
        )
    version = 4 if protocol == "TCP4" else 6
    source = (_v1Address(fields[2], version), _v1Port(fields[4]))
    destination = (_v1Address(fields[3], version), _v1Port(fields[5]))
    return ProxyHeader(1, "PROXY", protocol, source, destination, len(data))


# ---------------------------------------------------------------------------------------------------------
# version 2
def _checkTLVs(data: bytes, offset: int) -> None:
    """Each TLV (type, 2-byte length, value) must fit exactly in what is left of the header."""
    position = offset
    while position < len(data):
        if len(data) - position < 3:
            raise ProxyProtocolError(
                f"truncated TLV at offset {position} of a version 2 PROXY header ({len(data) - position} bytes left, a TLV needs at least 3)"
            )
        size = int.from_bytes(data[position + 1 : position + 3], "big")
        if position + 3 + size > len(data):
            raise ProxyProtocolError(
                f"TLV of type 0x{data[position]:02x} at offset {position} of a version 2 PROXY header claims {size} bytes, "
                f"only {len(data) - position - 3} are left"
            )
        position += 3 + size


def _parseV2(data: bytes) -> ProxyHeader:
    versionCommand, familyTransport = data[12], data[13]
    if versionCommand >> 4 != 2:
        raise ProxyProtocolError(f"PROXY header with the version 2 signature but version {versionCommand >> 4}")
    command = versionCommand & 0x0F
    if command == 0x0:  # LOCAL: the balancer's own connection; the address block is not to be interpreted
        return ProxyHeader(2, "LOCAL", "UNKNOWN", None, None, len(data))
    if command != 0x1:
        raise ProxyProtocolError(f"version 2 PROXY header with command 0x{command:x} (0 LOCAL or 1 PROXY expected)")
    if familyTransport == 0x00:  # UNSPEC: the sender does not know the addresses; the real peer is kept
        return ProxyHeader(2, "PROXY", "UNKNOWN", None, None, len(data))
    needed = _V2_ADDRESS_LENGTH.get(familyTransport)
    if needed is None:
        raise ProxyProtocolError(
            f"version 2 PROXY header with family/transport 0x{familyTransport:02x}: only TCP over IPv4 (0x11) or IPv6 (0x21) "
            "is served here (or UNSPEC 0x00, or the LOCAL command)"
        )
    if len(data) - V2_FIXED_LENGTH < needed:
        raise ProxyProtocolError(
            f"version 2 PROXY header too short for its addresses: {len(data) - V2_FIXED_LENGTH} bytes after the fixed part, {needed} needed"
        )
    size = 4 if familyTransport == 0x11 else 16
    block = data[V2_FIXED_LENGTH : V2_FIXED_LENGTH + needed]
    make = ipaddress.IPv4Address if size == 4 else ipaddress.IPv6Address
    sourceIP, destinationIP = str(make(block[:size])), str(make(block[size : 2 * size]))
    sourcePort = int.from_bytes(block[2 * size : 2 * size + 2], "big")
    destinationPort = int.from_bytes(block[2 * size + 2 : 2 * size + 4], "big")
    _checkTLVs(data, V2_FIXED_LENGTH + needed)
    return ProxyHeader(2, "PROXY", _V2_FAMILY_NAMES[familyTransport], (sourceIP, sourcePort), (destinationIP, destinationPort), len(data))


# ---------------------------------------------------------------------------------------------------------
# building (tests, tools)
def _ipOf(address: Address) -> Union[ipaddress.IPv4Address, ipaddress.IPv6Address]:
    ip = ipaddress.ip_address(address[0])
    if not 0 <= int(address[1]) <= 65535:
        raise ValueError(f"port {address[1]} out of range")
    return ip


def makeV1(source: Optional[Address], destination: Optional[Address]) -> bytes:
    """A version 1 header; ``UNKNOWN`` when ``source`` is None."""
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    sourceIP, destinationIP = _ipOf(source), _ipOf(destination)
    if sourceIP.version != destinationIP.version:
        raise ValueError("source and destination of a PROXY header are of one address family")
    protocol = "TCP4" if sourceIP.version == 4 else "TCP6"
    return f"PROXY {protocol} {sourceIP} {destinationIP} {int(source[1])} {int(destination[1])}\r\n".encode("ascii")


def makeV2(
    source: Optional[Address],
    destination: Optional[Address],
    command: str = "PROXY",
    tlvs: Iterable[tuple[int, bytes]] = (),
) -> bytes:
    """A version 2 header: TCP over the addresses' family, UNSPEC when ``source`` is None; ``tlvs`` appended."""
    tail = b"".join(bytes([kind]) + len(value).to_bytes(2, "big") + bytes(value) for kind, value in tlvs)
    commandByte = {"LOCAL": 0x20, "PROXY": 0x21}[command]
    if source is None or destination is None:
        familyTransport, block = 0x00, b""
    else:
        sourceIP, destinationIP = _ipOf(source), _ipOf(destination)
        if sourceIP.version != destinationIP.version:
            raise ValueError("source and destination of a PROXY header are of one address family")
        familyTransport = 0x11 if sourceIP.version == 4 else 0x21
        block = sourceIP.packed + destinationIP.packed + int(source[1]).to_bytes(2, "big") + int(destination[1]).to_bytes(2, "big")
    body = block + tail
    if len(body) > 0xFFFF:
        raise ValueError("a version 2 PROXY header holds at most 65535 bytes after its fixed part")
    return V2_SIGNATURE + bytes([commandByte, familyTransport]) + len(body).to_bytes(2, "big") + body


# ---------------------------------------------------------------------------------------------------------
# reading from a connection
def _recvExactly(sock: socket.socket, count: int) -> bytes:
    """``count`` bytes that a peek showed to be waiting."""
    chunks = []
    while count > 0:
        chunk = sock.recv(count)
        if not chunk:
            raise ProxyProtocolError("the connection was closed in the middle of the PROXY header", "incomplete")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    waiter = loop.create_future()
    descriptor = sock.fileno()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    loop.add_reader(descriptor, wake)
    try:
        await waiter
    finally:
        loop.remove_reader(descriptor)


async def _read(sock: socket.socket, received: bytearray) -> ProxyHeader:
    loop = asyncio.get_running_loop()
    while True:
        try:
            peeked = sock.recv(_PEEK_SIZE, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            await _readable(loop, sock)
            continue
        if not peeked:
            where = f"after {len(received)} bytes of PROXY header" if received else "before sending a PROXY header"
            raise ProxyProtocolError(f"the connection was closed {where}", "incomplete")
        total = headerLength(bytes(received) + peeked)
        # Before the end of the header is known every byte seen belongs to it (a version 1 line without its
        # CRLF, the fixed part of version 2); after, exactly what is missing is taken: the TLS bytes that
        # follow stay in the socket for the handshake.
        take = len(peeked) if total is None else min(len(peeked), total - len(received))
        received += _recvExactly(sock, take)
        if total is not None and len(received) == total:
            return parseHeader(bytes(received))


async def readHeader(sock: socket.socket, timeout: float) -> ProxyHeader:
    """Read one header from the non-blocking ``sock`` within ``timeout`` seconds; the bytes after it stay unread.

    ProxyProtocolError for anything but a valid header in time (including a connection that fails or closes).
    """
    received = bytearray()
    try:
        return await asyncio.wait_for(_read(sock, received), timeout)
    except asyncio.TimeoutError:
        raise ProxyProtocolError(f"no complete PROXY header within {timeout:g} s ({len(received)} bytes received)", "timeout") from None
    except ProxyProtocolError:
        raise
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ProxyProtocolError(f"the connection failed while the PROXY header was read ({reason})", "incomplete") from None


# ---------------------------------------------------------------------------------------------------------
# who may send one
class SenderNetworks:
    """The networks allowed to send a PROXY header (``/Systems/Tornado/ProxyProtocol``), with a bounded cache."""

    CACHE_SIZE = 4096

    def __init__(self, networks: Sequence[Any]) -> None:
        self.networks = list(networks)
        self._known: dict[str, bool] = {}

    @classmethod
    def parse(cls, value: Union[str, Iterable[str], None]) -> "SenderNetworks":
        """From a comma list (or a list) of addresses and CIDRs, read as ``parseNetworks`` reads TrustedProxies."""
        return cls(parseNetworks(value, option="/Systems/Tornado/ProxyProtocol"))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __str__(self) -> str:
        return ", ".join(map(str, self.networks))

    def isSender(self, address: str) -> bool:
        """True when the TCP peer ``address`` is in a listed network (IPv4-mapped IPv6 matched as IPv4)."""
        known = self._known.get(address)
        if known is not None:
            return known
        listed = addressInNetworks(address, self.networks)
        if len(self._known) >= self.CACHE_SIZE:
            self._known.clear()
        self._known[address] = listed
        return listed
