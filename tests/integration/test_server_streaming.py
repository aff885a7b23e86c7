"""rawContent downloads and streamed / legacy uploads."""
from __future__ import annotations

import hashlib

import pytest
import requests

from TornadoServices.Core.Encoding import decode, encode


def _expected(size: int) -> bytes:
    pattern = bytes(range(256)) * 256
    out = b""
    while len(out) < size:
        out += pattern[: min(size - len(out), 64 * 1024)]
    return out


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 300_001])
def test_stream_to_client_sends_raw_bytes(running_server, size):
    response = running_server.post("streamToClient", size, fields={"rawContent": "True"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.content == _expected(size)


def test_stream_to_client_is_chunked_not_buffered(running_server):
    response = running_server.post("streamToClient", 200_000, fields={"rawContent": "True"}, stream=True)
    assert response.headers.get("Transfer-Encoding") == "chunked"
    received = sum(len(chunk) for chunk in response.iter_content(65536))
    assert received == 200_000


def test_stream_to_client_error_is_json(running_server):
    response = running_server.post("streamToClient", -1, fields={"rawContent": "True"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    result = decode(response.text)[0]
    assert result["OK"] is False and "size" in result["Message"]


@pytest.mark.parametrize("value", ["False", "false", "0", "no", ""])
def test_raw_content_false_words_mean_json(running_server, value):
    response = running_server.post("echo", "text", fields={"rawContent": value})
    assert response.headers["Content-Type"] == "application/json"
    assert decode(response.text)[0] == {"OK": True, "Value": "text"}


def test_raw_content_of_a_string_result(running_server):
    response = running_server.post("echo", "plain text", fields={"rawContent": "True"})
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.content == b"plain text"


def _upload(server, pki, data, args, cert=None, **kwargs):
    return requests.post(
        server.url(),
        params={"method": "streamFromClient", "args": encode(args)},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        cert=cert or pki.proxy,
        verify=pki.caFile,
        timeout=60,
        **kwargs,
    )


def test_streamed_upload_with_content_length(running_server, pki):
    data = bytes(range(256)) * 4000
    response = _upload(running_server, pki, data, ["file1", "", len(data)])
    assert decode(response.text)[0] == {
        "OK": True,
        "Value": {"fileID": "file1", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
    }


def test_streamed_upload_chunked(running_server, pki):
    pieces = [b"a" * 70000, b"b" * 10, b"c" * 200000]
    response = _upload(running_server, pki, iter(pieces), ["file2", "", -1])
    value = decode(response.text)[0]["Value"]
    assert value["size"] == sum(map(len, pieces))
    assert value["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_legacy_upload_with_bytes_in_args(running_server):
    data = b"\x00\x01legacy DIRAC sendFile\xff" * 100
    answer = running_server.call("streamFromClient", "file3", "", len(data), data)
    assert answer == {
        "OK": True,
        "Value": {"fileID": "file3", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
    }


def test_upload_without_certificate_is_refused_before_the_body(running_server, pki):
    response = requests.post(
        running_server.url(),
        params={"method": "streamFromClient", "args": '["f", "", 3]'},
        data=b"abc",
        headers={"Content-Type": "application/octet-stream"},
        verify=pki.caFile,
        timeout=30,
    )
    assert response.status_code == 401


def test_upload_to_a_method_that_does_not_take_one_is_400(running_server, pki):
    response = requests.post(
        running_server.url(),
        params={"method": "echo", "args": "[1]"},
        data=b"abc",
        headers={"Content-Type": "application/octet-stream"},
        cert=pki.proxy,
        verify=pki.caFile,
        timeout=30,
    )
    assert response.status_code == 400
    assert "streamed body" in decode(response.text)[0]["Message"]


def test_upload_unauthorised_is_403(running_server, pki):
    response = _upload(running_server, pki, b"abc", ["f", "", 3], cert=pki.stranger)
    assert response.status_code == 403
