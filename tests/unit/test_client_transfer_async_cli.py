"""TransferClient, AsyncTornadoClient and tornado-rpc through an in-memory transport."""
from __future__ import annotations

import asyncio
import errno
import io
import json
import threading
from urllib.parse import urlencode

import pytest

from TornadoServices.Client.AsyncTornadoClient import AsyncTornadoClient
from TornadoServices.Client.private import errors as E
from TornadoServices.Client.private.TornadoBaseClient import setDefaultTransport
from TornadoServices.Client.private.transport import MemoryResponse, MockTransport, jsonResponse
from TornadoServices.Client.TransferClient import TransferClient
from TornadoServices.scripts import tornado_rpc

URL = "https://localhost:8443/Framework/Dummy"
URL2 = "https://otherhost:8443/Framework/Dummy"


pytestmark = pytest.mark.usefixtures("mockClientEnvironment")


def octets(*chunks):
    return lambda request: MemoryResponse(200, headers={"Content-Type": "application/octet-stream"}, chunks=list(chunks))


# ---------------------------------------------------------------- download
def test_receive_file_streams_chunks_to_path(tmp_path):
    transport = MockTransport(octets(b"abc", b"def", b"ghi"))
    dest = tmp_path / "out.bin"
    result = TransferClient(URL, transport=transport).receiveFile(str(dest), "fileID", "token")
    assert result["OK"] and dest.read_bytes() == b"abcdefghi"
    assert urlencode(transport.requests[0].fields) == (
        "method=streamToClient&args=%5B%22fileID%22%2C+%22token%22%5D&rawContent=True&clientVO=unknown&clientSetup=None"
    )
    assert transport.requests[0].timeout.total is None, "transfers have an inactivity timeout only"
    assert result["rpcStub"][1:] == ("streamToClient", ["fileID", "token"])


def test_receive_file_into_file_object():
    buffer = io.BytesIO()
    assert TransferClient(URL, transport=MockTransport(octets(b"12", b"34"))).receiveFile(buffer, "f")["OK"]
    assert buffer.getvalue() == b"1234"


def test_json_answer_is_returned_never_written(tmp_path):
    dest = tmp_path / "keep.bin"
    dest.write_bytes(b"previous content")
    transport = MockTransport(lambda r: jsonResponse({"OK": False, "Errno": 2, "Message": "No such file ( 2 : f)"}))
    result = TransferClient(URL, transport=transport).receiveFile(str(dest), "f")
    assert (result["OK"], result["Errno"], result["Message"]) == (False, 2, "No such file ( 2 : f)")
    assert dest.read_bytes() == b"previous content"
    fresh = tmp_path / "fresh.bin"
    TransferClient(URL, transport=transport).receiveFile(str(fresh), "f")
    assert not fresh.exists()


def test_failure_midway_removes_partial_file(tmp_path):
    def broken():
        yield b"first part"
        raise E.ConnectionLost("The connection was lost in the middle of its answer")

    transport = MockTransport(
        lambda r: MemoryResponse(200, headers={"Content-Type": "application/octet-stream"}, chunks=broken())
    )
    dest = tmp_path / "partial.bin"
    result = TransferClient(URL, transport=transport).receiveFile(str(dest), "f")
    assert not result["OK"] and result["Errno"] == errno.ECONNRESET
    assert not dest.exists()


def test_error_status_is_not_written(tmp_path):
    transport = MockTransport(
        lambda r: jsonResponse({"OK": False, "Errno": 1111, "Message": "Unauthorized query"}, 401, "Unauthorized")
    )
    dest = tmp_path / "never.bin"
    result = TransferClient(URL, transport=transport).receiveFile(str(dest), "f")
    assert result["Errno"] == errno.EACCES and "Unauthorized query" in result["Message"]
    assert not dest.exists()


# ---------------------------------------------------------------- upload
def uploadRecorder(received, failFirst=False):
    calls = {"n": 0}

    def handler(request):
        calls["n"] += 1
        if failFirst and calls["n"] == 1:
            raise E.ConnectError("refused")
        body = request.body
        if hasattr(body, "read"):
            data = body.read()
        elif isinstance(body, bytes):
            data = body
        else:
            data = b"".join(body)
        received.append((request, data))
        return jsonResponse({"OK": True, "Value": len(data)})

    return handler


def test_send_file_from_path(tmp_path):
    source = tmp_path / "in.bin"
    source.write_bytes(b"x" * 1000)
    received = []
    result = TransferClient(URL, transport=MockTransport(uploadRecorder(received))).sendFile(str(source), "id-1", "tok")
    assert result["OK"] and result["Value"] == 1000
    request, data = received[0]
    assert data == b"x" * 1000 and request.fields is None
    assert urlencode(request.params) == (
        "method=streamFromClient&args=%5B%22id-1%22%2C+%22tok%22%2C+1000%5D&clientVO=unknown&clientSetup=None"
    )
    assert request.headers == {"Content-Type": "application/octet-stream"}


def test_send_file_object_from_its_current_position_with_failover():
    stream = io.BytesIO(b"HEADERpayload")
    stream.read(6)
    received = []
    transport = MockTransport(uploadRecorder(received, failFirst=True))
    result = TransferClient(f"{URL},{URL2}", transport=transport).sendFile(stream, "id")
    assert result["OK"] and result["Value"] == 7
    assert received[0][1] == b"payload" and received[0][0].url == URL2
    assert json.loads(dict(received[0][0].params)["args"]) == ["id", "", 7]


def test_send_unseekable_stream_is_chunked_and_not_resent():
    class Pipe:
        def __init__(self):
            self.parts = [b"ab", b"cd"]

        def read(self, size=-1):
            return self.parts.pop(0) if self.parts else b""

        def seekable(self):
            return False

    received = []
    result = TransferClient(URL, transport=MockTransport(uploadRecorder(received))).sendFile(Pipe(), "id")
    assert result["OK"] and received[0][1] == b"abcd"
    assert json.loads(dict(received[0][0].params)["args"]) == ["id", "", -1]
    received.clear()
    transport = MockTransport(uploadRecorder(received, failFirst=True))
    result = TransferClient(f"{URL},{URL2}", transport=transport).sendFile(Pipe(), "id")
    assert not result["OK"] and len(transport.requests) == 1


def test_send_missing_file(tmp_path):
    result = TransferClient(URL, transport=MockTransport(uploadRecorder([]))).sendFile(str(tmp_path / "no"), "id")
    assert not result["OK"] and result["Errno"] == errno.ENOENT and "Cannot send" in result["Message"]


# ---------------------------------------------------------------- async
def test_async_calls_are_awaitable_and_do_not_block_the_loop():
    releasedByLoop = threading.Event()
    loops = []

    def blockingHandler(request):
        """Answer only once a callback of the event loop ran: a blocked loop never releases the call."""
        loops[0].call_soon_threadsafe(releasedByLoop.set)
        if not releasedByLoop.wait(30):
            return jsonResponse({"OK": False, "Message": "the event loop did not run while the call was in flight"})
        return jsonResponse({"OK": True, "Value": json.loads(dict(request.fields)["args"])})

    client = AsyncTornadoClient(URL, transport=MockTransport(blockingHandler))

    async def main():
        loops.append(asyncio.get_running_loop())
        return await asyncio.gather(*(client.echo(i) for i in range(8)))

    results = asyncio.run(main())
    assert [r.get("Value") for r in results] == [[i] for i in range(8)], results
    with pytest.raises(AttributeError):
        client.__deepcopy__


def test_async_transfer_methods(tmp_path):
    client = AsyncTornadoClient(URL, transport=MockTransport(octets(b"data")))
    dest = tmp_path / "async.bin"
    assert asyncio.run(client.receiveFile(str(dest), "f"))["OK"]
    assert dest.read_bytes() == b"data"
    assert asyncio.run(client.executeRPC("ping"))["rpcStub"][1] == "ping"


# ---------------------------------------------------------------- CLI
@pytest.mark.parametrize(
    "text, value",
    [("2", 2), ("2.5", 2.5), ("true", True), ("null", None), ('{"k": [1]}', {"k": [1]}), ('"q"', "q"),
     ("hello", "hello"), ("Framework/Dummy", "Framework/Dummy"), ("", "")],
)
def test_cli_argument_parsing(text, value):
    assert tornado_rpc.parseArgument(text) == value


def test_cli_success_prints_json_and_exits_0(capsys):
    transport = MockTransport(lambda r: jsonResponse({"OK": True, "Value": {"sum": 5}}))
    setDefaultTransport(transport)
    assert tornado_rpc.main([URL, "add", "2", "3", "--timeout", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"OK": True, "Value": {"sum": 5}}
    assert urlencode(transport.requests[0].fields).startswith("method=add&args=%5B2%2C+3%5D")
    assert transport.requests[0].timeout.read == 5


def test_cli_error_exits_1(capsys):
    setDefaultTransport(MockTransport(lambda r: jsonResponse({"OK": False, "Errno": 0, "Message": "boom"})))
    assert tornado_rpc.main([URL, "fail", "boom"]) == 1
    assert json.loads(capsys.readouterr().out)["Message"] == "boom"


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        tornado_rpc.main([URL])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        tornado_rpc.main([URL, "_private"])
    assert exc.value.code == 2


def test_cli_certificate_and_proxy_options(tmp_path, monkeypatch):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("c")
    key.write_text("k")
    monkeypatch.setenv("DIRAC_X509_HOST_CERT", str(cert))
    monkeypatch.setenv("DIRAC_X509_HOST_KEY", str(key))
    transport = MockTransport(lambda r: jsonResponse({"OK": True, "Value": None}))
    setDefaultTransport(transport)
    assert tornado_rpc.main(["--use-certificates", URL, "whoami"]) == 0
    assert dict(transport.requests[0].fields)["extraCredentials"] == '"hosts"'
    proxy = tmp_path / "p.pem"
    proxy.write_text("p")
    assert tornado_rpc.main(["--proxy", str(proxy), URL, "whoami"]) == 0
    assert transport.requests[1].tls.certFile == str(proxy)


def test_cli_renders_dates_and_bytes():
    import datetime

    text = tornado_rpc.formatResult(
        {"OK": True, "Value": {"t": datetime.datetime(2026, 1, 2, 3, 4, 5), "b": b"\x00\x01"}, "rpcStub": (1,)}
    )
    assert json.loads(text) == {"OK": True, "Value": {"t": "2026-01-02 03:04:05", "b": "AAE="}}
