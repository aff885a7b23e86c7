"""PROXY protocol parser: every accepted form, every refusal with its reason, round trips, random bytes, and the
socket reader (exact consumption, deadline, closes) on socket pairs."""
from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from TornadoServices.Server.private.ProxyProtocol import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    SenderNetworks,
    headerLength,
    makeV1,
    makeV2,
    parseHeader,
    readHeader,
)

SIG = V2_SIGNATURE


def _v2(command: int, family: int, body: bytes, length: "int | None" = None) -> bytes:
    return SIG + bytes([command, family]) + (len(body) if length is None else length).to_bytes(2, "big") + body


V4_BLOCK = bytes([192, 0, 2, 1, 198, 51, 100, 2]) + (51234).to_bytes(2, "big") + (8443).to_bytes(2, "big")
V6_BLOCK = ipaddress.IPv6Address("2001:db8::1").packed + ipaddress.IPv6Address("2001:db8::2").packed + b"\x00\x50\x20\xfb"


# ---------------------------------------------------------------------------------------------------------
# version 1
@pytest.mark.parametrize(
    "line, expected",
    [
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 51234 8443\r\n", ("TCP4", ("192.0.2.1", 51234), ("198.51.100.2", 8443))),
        (b"PROXY TCP6 2001:db8::1 2001:db8::2 80 8443\r\n", ("TCP6", ("2001:db8::1", 80), ("2001:db8::2", 8443))),
        (b"PROXY TCP6 2001:0db8:0:0:0:0:0:1 ::1 0 65535\r\n", ("TCP6", ("2001:db8::1", 0), ("::1", 65535))),
        (b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n", ("TCP6", ("::ffff:c000:201", 1), ("::1", 2))),
        (b"PROXY UNKNOWN\r\n", ("UNKNOWN", None, None)),
        (b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", ("UNKNOWN", None, None)),
    ],
)
def test_v1_accepted(line, expected):
    header = parseHeader(line)
    assert (header.version, header.command) == (1, "PROXY")
    assert (header.family, header.source, header.destination) == expected
    assert header.length == len(line) == headerLength(line + b"\x16\x03\x01 rest of a ClientHello")
    assert header.forwarded is (expected[1] is not None)


def test_v1_longest_line_is_accepted_and_one_more_byte_is_refused():
    longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
    assert len(longest) == 104 <= V1_MAX_LENGTH
    assert parseHeader(longest).source == ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)
    unknown = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 16) + b"\r\n"
    assert len(unknown) == V1_MAX_LENGTH and parseHeader(unknown).family == "UNKNOWN"
    tooLong = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 15) + b"\r\n"
    with pytest.raises(ProxyProtocolError, match="without CRLF in its first 107 bytes"):
        parseHeader(tooLong)
    with pytest.raises(ProxyProtocolError, match="without CRLF"):
        headerLength(b"PROXY UNKNOWN " + b"x" * 200)


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 51234\r\n", "5 space-separated fields instead of 6"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 51234 8443 extra\r\n", "7 space-separated fields"),
        (b"PROXY TCP4  192.0.2.1 198.51.100.2 51234 8443\r\n", "7 space-separated fields"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 51234 8443 \r\n", "7 space-separated fields"),
        (b"PROXY TCP4 192.0.2.1 2001:db8::1 1 2\r\n", "'2001:db8::1' in a version 1 PROXY header is not an IPv4 address"),
        (b"PROXY TCP6 192.0.2.1 2001:db8::1 1 2\r\n", "not an IPv6 address"),
        (b"PROXY TCP4 192.0.2.01 198.51.100.2 1 2\r\n", "not an IPv4 address"),
        (b"PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n", "not an IPv4 address"),
        (b"PROXY TCP4 localhost 198.51.100.2 1 2\r\n", "not an IPv4 address"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "zone"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n", "'65536' in a version 1 PROXY header is not a port"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 080 2\r\n", "no leading zero"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n", "not a port"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n", "not a port"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 \r\n", "not a port"),
        (b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n", "protocol 'UDP4'"),
        (b"PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n", "protocol 'tcp4'"),
        (b"PROXY \r\n", "protocol ''"),
        (b"PROXY TCP4 192.0.2.1\n198.51.100.2 1 2\r\n", "byte 0x0a at offset 20"),
        (b"PROXY TCP4 192.0.2.1\r198.51.100.2 1 2\r\n", "byte 0x0d at offset 20"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n", "byte 0x0a at offset 37"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n" + b"x" * 100, "byte 0x0a at offset 37"),
        (b"PROXY UNKNOWN \xc3\xa9\r\n", "byte 0xc3 at offset 14"),
        (b"PROXY UNKNOWN \x00\r\n", "byte 0x00"),
        (b"PROXY TCP4 \xd9\xa1.0.2.1 198.51.100.2 1 2\r\n", "byte 0xd9"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\nX", "1 bytes after the end of the PROXY header"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2", "truncated version 1 PROXY header"),
        (b"PROXY", "truncated version 1 PROXY header"),
        (b"PROXYTCP4 192.0.2.1 198.51.100.2 1 2\r\n", "does not start with a PROXY protocol header"),
        (b"proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "does not start with a PROXY protocol header"),
        (b" PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "does not start with a PROXY protocol header"),
    ],
)
def test_v1_refused(line, reason):
    with pytest.raises(ProxyProtocolError, match=reason.replace("(", r"\(").replace("+", r"\+")) as info:
        parseHeader(line)
    assert info.value.kind == "invalid"


def test_v1_bad_bytes_are_refused_before_the_end_of_the_line():
    """No need to wait for a CRLF (or a deadline) when the bytes already cannot be a header."""
    assert headerLength(b"PROXY TCP4 192.0.2") is None
    assert headerLength(b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r") is None  # the CR may start the CRLF
    with pytest.raises(ProxyProtocolError, match="byte 0x16"):
        headerLength(b"PROXY \x16\x03\x01")
    with pytest.raises(ProxyProtocolError, match="byte 0x0d at offset 6"):
        headerLength(b"PROXY \rX")


# ---------------------------------------------------------------------------------------------------------
# version 2
def test_v2_ipv4_and_ipv6():
    header = parseHeader(_v2(0x21, 0x11, V4_BLOCK))
    assert header == ProxyHeader(2, "PROXY", "TCP4", ("192.0.2.1", 51234), ("198.51.100.2", 8443), 28)
    header = parseHeader(_v2(0x21, 0x21, V6_BLOCK))
    assert header == ProxyHeader(2, "PROXY", "TCP6", ("2001:db8::1", 80), ("2001:db8::2", 8443), 52)


def test_v2_tlvs_are_skipped():
    tlvs = b"\x01\x00\x02h2" + b"\x02\x00\x0bexample.org" + b"\x04\x00\x00" + b"\xee\x00\x03abc" + b"\x20\x00\x05\x07\x00\x00\x00\x00"
    header = parseHeader(_v2(0x21, 0x11, V4_BLOCK + tlvs))
    assert header.source == ("192.0.2.1", 51234) and header.length == 16 + 12 + len(tlvs)
    big = b"\x04" + (65535 - 12 - 3).to_bytes(2, "big") + b"\x00" * (65535 - 12 - 3)
    assert parseHeader(_v2(0x21, 0x11, V4_BLOCK + big)).length == 16 + 65535


def test_v2_local_and_unspec_keep_the_real_peer():
    for data in (_v2(0x20, 0x00, b""), _v2(0x20, 0x11, V4_BLOCK), _v2(0x20, 0x31, b"\x00" * 216), _v2(0x20, 0x77, b"anything")):
        header = parseHeader(data)
        assert (header.command, header.family, header.source, header.forwarded) == ("LOCAL", "UNKNOWN", None, False)
    header = parseHeader(_v2(0x21, 0x00, b"\x01\x02\x03"))
    assert (header.command, header.family, header.source) == ("PROXY", "UNKNOWN", None)


@pytest.mark.parametrize(
    "data, reason",
    [
        (_v2(0x11, 0x11, V4_BLOCK), "version 1$"),
        (_v2(0x31, 0x11, V4_BLOCK), "version 3"),
        (_v2(0x01, 0x11, V4_BLOCK), "version 0"),
        (_v2(0x22, 0x11, V4_BLOCK), "command 0x2"),
        (_v2(0x2F, 0x11, V4_BLOCK), "command 0xf"),
        (_v2(0x21, 0x12, V4_BLOCK), "family/transport 0x12"),  # UDP over IPv4
        (_v2(0x21, 0x22, V6_BLOCK), "family/transport 0x22"),
        (_v2(0x21, 0x31, b"\x00" * 216), "family/transport 0x31"),  # UNIX stream
        (_v2(0x21, 0x10, V4_BLOCK), "family/transport 0x10"),
        (_v2(0x21, 0x01, V4_BLOCK), "family/transport 0x01"),
        (_v2(0x21, 0x41, V4_BLOCK), "family/transport 0x41"),
        (_v2(0x21, 0x11, V4_BLOCK[:11]), "too short for its addresses: 11 bytes after the fixed part, 12 needed"),
        (_v2(0x21, 0x21, V4_BLOCK), "too short for its addresses: 12 bytes after the fixed part, 36 needed"),
        (_v2(0x21, 0x11, V4_BLOCK + b"\x01"), "truncated TLV at offset 28"),
        (_v2(0x21, 0x11, V4_BLOCK + b"\x01\x00"), "truncated TLV"),
        (_v2(0x21, 0x11, V4_BLOCK + b"\x01\x00\x03ab"), "TLV of type 0x01 at offset 28 .* claims 3 bytes, only 2 are left"),
        (_v2(0x21, 0x11, V4_BLOCK + b"\x04\x00\x00\x01\xff\xff"), "claims 65535 bytes"),
        (_v2(0x21, 0x11, V4_BLOCK, length=20), "truncated version 2 PROXY header \\(28 of 36 bytes\\)"),
        (_v2(0x21, 0x11, V4_BLOCK, length=8), "4 bytes after the end"),
        (SIG + b"\x21\x11\x00", "truncated version 2 PROXY header \\(15 of at least 16"),
        (SIG[:5], "truncated version 2"),
        (SIG[:11] + b"X" + b"\x21\x11\x00\x0c" + V4_BLOCK, "does not start with a PROXY protocol header \\(first bytes: 0d 0a 0d 0a"),
        (b"", "no bytes at all"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "starts with a TLS handshake"),
        (b"GET / HTTP/1.1\r\n\r\n", "first bytes: 47 45 54 20 2f 20 48 54 \\.\\.\\."),
    ],
)
def test_v2_refused(data, reason):
    with pytest.raises(ProxyProtocolError, match=reason) as info:
        parseHeader(data)
    assert info.value.kind == "invalid"


def test_not_bytes_is_refused():
    with pytest.raises(ProxyProtocolError, match="bytes, not str"):
        parseHeader("PROXY UNKNOWN\r\n")  # type: ignore[arg-type]


def test_header_length_needs_only_the_fixed_part():
    data = _v2(0x21, 0x11, V4_BLOCK + b"\x04\x00\x10" + b"\x00" * 16)
    for cut in range(16):
        assert headerLength(data[:cut]) is None
    for cut in range(16, len(data) + 1):
        assert headerLength(data[:cut]) == len(data)


# ---------------------------------------------------------------------------------------------------------
# builders and round trips
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_port = st.integers(0, 65535)
_tlvs = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.tuples(_ipv4, _ipv4), st.tuples(_ipv6, _ipv6)), _port, _port)
def test_v1_round_trip(ips, sourcePort, destinationPort):
    data = makeV1((ips[0], sourcePort), (ips[1], destinationPort))
    header = parseHeader(data)
    assert header.version == 1 and header.length == len(data) <= V1_MAX_LENGTH
    assert header.source == (str(ipaddress.ip_address(ips[0])), sourcePort)
    assert header.destination == (str(ipaddress.ip_address(ips[1])), destinationPort)
    assert headerLength(data + b"\x16\x03\x01") == len(data)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.tuples(_ipv4, _ipv4), st.tuples(_ipv6, _ipv6)), _port, _port, _tlvs, st.sampled_from(["PROXY", "LOCAL"]))
def test_v2_round_trip(ips, sourcePort, destinationPort, tlvs, command):
    data = makeV2((ips[0], sourcePort), (ips[1], destinationPort), command=command, tlvs=tlvs)
    header = parseHeader(data)
    assert header.version == 2 and header.command == command and header.length == len(data)
    if command == "PROXY":
        assert header.family == ("TCP4" if ":" not in ips[0] else "TCP6")
        assert header.source == (str(ipaddress.ip_address(ips[0])), sourcePort)
        assert header.destination == (str(ipaddress.ip_address(ips[1])), destinationPort)
    else:
        assert header.source is None
    assert headerLength(data + b"\x16\x03\x01") == len(data)
    # every strict prefix is incomplete (never a header), every byte more is refused
    for cut in sorted({0, 1, 11, 12, 15, 16, len(data) - 1}):
        if 0 <= cut < len(data):
            with pytest.raises(ProxyProtocolError):
                parseHeader(data[:cut])
    with pytest.raises(ProxyProtocolError, match="1 bytes after the end"):
        parseHeader(data + b"\x00")


def test_builders_refuse_what_is_not_a_header():
    with pytest.raises(ValueError):
        makeV1(("192.0.2.1", 1), ("2001:db8::1", 2))
    with pytest.raises(ValueError):
        makeV2(("192.0.2.1", 1), ("192.0.2.2", 65536))
    with pytest.raises(ValueError):
        makeV2(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=[(4, b"\x00" * 65535)])
    assert makeV1(None, None) == b"PROXY UNKNOWN\r\n"
    assert makeV2(None, None, command="LOCAL") == SIG + b"\x20\x00\x00\x00"


# ---------------------------------------------------------------------------------------------------------
# random bytes
@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_the_module_error(data):
    for candidate in (data, b"PROXY " + data, SIG + data, SIG + b"\x21\x11" + data, SIG + b"\x21\x21" + data[:2] + V6_BLOCK + data[2:]):
        try:
            header = parseHeader(candidate)
        except ProxyProtocolError as exc:
            assert str(exc) and exc.kind == "invalid"
        else:
            assert header.length == len(candidate)
        try:
            length = headerLength(candidate)
        except ProxyProtocolError:
            pass
        else:
            assert length is None or length > 0


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=110))
def test_random_v1_lines_raise_only_the_module_error(text):
    data = b"PROXY " + text.encode() + b"\r\n"
    try:
        header = parseHeader(data)
    except ProxyProtocolError:
        return
    assert header.family in ("TCP4", "TCP6", "UNKNOWN") and len(data) <= V1_MAX_LENGTH


# ---------------------------------------------------------------------------------------------------------
# who may send
def test_sender_networks():
    senders = SenderNetworks.parse("10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,")
    assert senders and str(senders) == "10.0.0.0/8, 192.0.2.7/32, 2001:db8::/32"
    assert senders.isSender("10.1.2.3") and senders.isSender("192.0.2.7") and senders.isSender("2001:db8::5")
    assert senders.isSender("::ffff:10.0.0.1")  # IPv4-mapped, as a dual-stack socket reports it
    assert not senders.isSender("192.0.2.8") and not senders.isSender("11.0.0.1") and not senders.isSender("2001:db9::1")
    assert not senders.isSender("not an address") and not senders.isSender("")
    assert SenderNetworks.parse(["127.0.0.1", "::1"]).isSender("::1")
    assert not SenderNetworks.parse("") and not SenderNetworks.parse(None) and not SenderNetworks.parse(" , ")
    with pytest.raises(ValueError, match=r"^/Systems/Tornado/ProxyProtocol: 'haproxy\.example' is not an IP address or CIDR network$"):
        SenderNetworks.parse("10.0.0.0/8, haproxy.example")


def test_sender_cache_is_bounded():
    senders = SenderNetworks.parse("10.0.0.0/8")
    for index in range(SenderNetworks.CACHE_SIZE + 10):
        senders.isSender(f"10.{index // 65536}.{index // 256 % 256}.{index % 256}")
    assert len(senders._known) <= SenderNetworks.CACHE_SIZE


# ---------------------------------------------------------------------------------------------------------
# the reader (socket pairs: no network, no timing assumptions beyond the deadline under test)
def _read(chunks: list[bytes], timeout: float = 30.0, close: bool = False) -> tuple[object, bytes]:
    """(header or error, bytes left in the socket after the read)."""
    server, client = socket.socketpair()
    server.setblocking(False)

    async def run() -> object:
        async def feed() -> None:
            for chunk in chunks:
                client.sendall(chunk)
                await asyncio.sleep(0.01)
            if close:
                client.shutdown(socket.SHUT_WR)

        feeder = asyncio.ensure_future(feed())
        try:
            return await readHeader(server, timeout)
        except ProxyProtocolError as exc:
            return exc
        finally:
            await feeder

    try:
        result = asyncio.run(run())
        client.shutdown(socket.SHUT_WR) if not close else None
        server.setblocking(True)
        server.settimeout(30)
        rest = b""
        while True:
            chunk = server.recv(65536)
            if not chunk:
                break
            rest += chunk
        return result, rest
    finally:
        server.close()
        client.close()


def test_reader_leaves_the_bytes_after_the_header():
    hello = b"\x16\x03\x01\x02\x00" + b"\x01" * 300
    for header in (makeV1(("192.0.2.1", 1), ("192.0.2.2", 2)), makeV2(("2001:db8::1", 1), ("2001:db8::2", 2), tlvs=[(1, b"h2")]), makeV1(None, None)):
        result, rest = _read([header + hello])
        assert isinstance(result, ProxyHeader) and result.length == len(header), result
        assert rest == hello
        result, rest = _read([bytes([b]) for b in header] + [hello])  # one byte at a time
        assert isinstance(result, ProxyHeader) and rest == hello, result
        result, rest = _read([header[:-1], header[-1:] + hello])  # CR and LF in two segments
        assert isinstance(result, ProxyHeader) and rest == hello, result


def test_reader_reads_long_v2_headers_in_steps():
    header = makeV2(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=[(4, b"\x00" * 30000), (0xE1, b"x" * 20000)])
    result, rest = _read([header[:7000], header[7000:] + b"TLS"])
    assert isinstance(result, ProxyHeader) and result.length == len(header) and rest == b"TLS"


def test_reader_refusals():
    result, _ = _read([b"\x16\x03\x01\x00\x10"])
    assert isinstance(result, ProxyProtocolError) and result.kind == "invalid" and "TLS handshake" in str(result)
    result, _ = _read([b"PROXY TCP4 1.2"], close=True)
    assert isinstance(result, ProxyProtocolError) and result.kind == "incomplete" and "after 14 bytes of PROXY header" in str(result)
    result, _ = _read([], close=True)
    assert isinstance(result, ProxyProtocolError) and result.kind == "incomplete" and "before sending a PROXY header" in str(result)
    result, _ = _read([b"PROXY TCP4 1.2"], timeout=0.3)
    assert isinstance(result, ProxyProtocolError) and result.kind == "timeout"
    assert str(result) == "no complete PROXY header within 0.3 s (14 bytes received)"


# ---------------------------------------------------------------------------------------------------------
# settings
def test_options_from_the_cs_and_their_defaults():
    from tests.conftest import loadCS
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig
    from TornadoServices.Server.private.Settings import ServerSettings

    try:
        loadCS("Systems\n{\n  Tornado\n  {\n  }\n}\n")
        settings = ServerSettings.resolve()
        assert settings.proxyProtocol == "" and settings.proxyProtocolTimeout == 5.0
        assert not SenderNetworks.parse(settings.proxyProtocol)  # off by default
        loadCS("Systems\n{\n  Tornado\n  {\n    ProxyProtocol = 10.0.0.0/8, 192.0.2.7\n    ProxyProtocolTimeout = 2.5\n  }\n}\n")
        settings = ServerSettings.resolve()
        assert str(SenderNetworks.parse(settings.proxyProtocol)) == "10.0.0.0/8, 192.0.2.7/32" and settings.proxyProtocolTimeout == 2.5
        assert ServerSettings.resolve(proxyProtocol=["::1"], proxyProtocolTimeout=1).proxyProtocolTimeout == 1.0
        for bad in (0, -1, float("nan")):
            with pytest.raises(ValueError, match="ProxyProtocolTimeout must be a positive number of seconds"):
                ServerSettings.resolve(proxyProtocolTimeout=bad)
    finally:
        gConfig.reset()
