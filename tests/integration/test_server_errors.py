"""Every failure is a JSON S_ERROR body with a fitting HTTP status, never HTML nor a traceback."""
from __future__ import annotations

import errno
import gzip
import urllib.parse

import pytest
import requests

from TornadoServices.Core import DErrno
from TornadoServices.Core.Encoding import decode, encode


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    result = decode(response.text)[0]
    assert result["OK"] is False
    assert set(result) == {"OK", "Errno", "Message"}, result
    assert "Traceback" not in result["Message"]
    return result


def test_missing_method_is_400(running_server):
    result = _error(running_server.post(None), 400)
    assert "method" in result["Message"]


def test_malformed_args_is_400(running_server):
    result = _error(running_server.post("echo", fields={"args": "[1, 2"}), 400)
    assert result["Message"].startswith("Invalid args:")


def test_args_that_are_not_a_list_is_400(running_server):
    result = _error(running_server.post("echo", fields={"args": '{"a": 1}'}), 400)
    assert "list" in result["Message"]


def test_types_mismatch_uses_diset_message(running_server):
    result = _error(running_server.post("add", "a", 3), 400)
    assert result["Message"] == (
        "Type mismatch in parameter 0 (starting with param 0) Received <class 'str'>, expected <class 'int'>"
    )
    assert result["Errno"] == 0


def test_too_few_arguments_for_types_uses_diset_message(running_server):
    result = _error(running_server.post("add", 1), 400)
    assert result["Message"] == "Function add expects at least 2 arguments"


def test_types_accepts_a_tuple_of_types(running_server):
    assert running_server.call("asyncSleep", 0.0)["OK"]
    assert running_server.call("asyncSleep", 0)["OK"]
    result = _error(running_server.post("asyncSleep", "0"), 400)
    assert "expected (<class 'int'>, <class 'float'>)" in result["Message"]


def test_wrong_number_of_arguments_is_400(running_server):
    result = _error(running_server.post("echo", 1, 2), 400)
    assert result["Message"] == "Method echo takes 1 argument(s), 2 given"


def test_no_certificate_is_401_even_for_ping(running_server):
    result = _error(running_server.post("ping", cert=None), 401)
    assert result["Errno"] == DErrno.ECERTFIND
    assert "certificate" in result["Message"]


def test_not_authorised_is_403_naming_method_and_identity(running_server, pki):
    result = _error(running_server.post("hostOnly", cert="proxy"), 403)
    assert result["Errno"] == DErrno.ENOAUTH
    assert "Unauthorized query" in result["Message"]
    assert "hostOnly" in result["Message"] and pki.userDN in result["Message"]


@pytest.mark.parametrize("path", ["/Framework/Nope", "/", "/Framework/Dummy/extra", "/favicon.ico"])
@pytest.mark.parametrize("verb", ["POST", "GET"])
def test_unknown_service_is_404(running_server, pki, path, verb):
    url = f"https://127.0.0.1:{running_server.port}{path}"
    response = requests.request(verb, url, data={"method": "ping"}, cert=pki.proxy, verify=pki.caFile, timeout=30)
    result = _error(response, 404)
    assert path in result["Message"]


@pytest.mark.parametrize("verb", ["GET", "PUT", "DELETE"])
def test_other_verbs_are_405(running_server, pki, verb):
    response = requests.request(verb, running_server.url(), cert=pki.proxy, verify=pki.caFile, timeout=30)
    result = _error(response, 405)
    assert verb in result["Message"]


def test_exception_is_500_without_traceback(running_server):
    result = _error(running_server.post("raiseError", "kaboom"), 500)
    assert result["Message"] == "Server error while serving raiseError: RuntimeError: kaboom"


def test_unknown_method_is_501_enosys(running_server):
    result = _error(running_server.post("nosuch"), 501)
    assert result["Errno"] == errno.ENOSYS
    assert "nosuch" in result["Message"]


def test_unencodable_result_is_500(running_server):
    # a generator is only acceptable as rawContent
    result = _error(running_server.post("streamToClient", 10), 500)
    assert "cannot be encoded" in result["Message"]


def test_server_keeps_serving_after_errors(running_server):
    for method in ("raiseError", "nosuch", "hostOnly"):
        running_server.post(method, "x")
    assert running_server.call("ping")["OK"]


def test_nested_call_stacks_are_stripped(running_server):
    nested = {"OK": False, "Errno": 0, "Message": "inner", "CallStack": ["file.py line 1"]}
    deeper = {"list": [nested, {"OK": True, "Value": 1, "CallStack": ["x"]}]}
    answer = running_server.call("echo", {"a": nested, "b": deeper})
    assert answer["Value"] == {
        "a": {"OK": False, "Errno": 0, "Message": "inner"},
        "b": {"list": [{"OK": False, "Errno": 0, "Message": "inner"}, {"OK": True, "Value": 1}]},
    }


def test_gzip_request_body_is_accepted(running_server, pki):
    body = urllib.parse.urlencode({"method": "echo", "args": encode(["compressed"])}).encode()
    response = requests.post(
        running_server.url(),
        data=gzip.compress(body),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
        cert=pki.proxy,
        verify=pki.caFile,
        timeout=30,
    )
    assert decode(response.text)[0] == {"OK": True, "Value": "compressed"}


def test_large_json_answers_are_gzipped_for_clients_that_accept_it(running_server):
    response = running_server.post("echo", "x" * 5000, headers={"Accept-Encoding": "gzip"})
    assert response.headers.get("Content-Encoding") == "gzip"
    assert decode(response.text)[0]["Value"] == "x" * 5000


def test_multipart_form_is_accepted(running_server, pki):
    files = {"method": (None, "echo"), "args": (None, encode([42]))}
    response = requests.post(running_server.url(), files=files, cert=pki.proxy, verify=pki.caFile, timeout=30)
    assert decode(response.text)[0] == {"OK": True, "Value": 42}


def test_method_in_query_string(running_server, pki):
    response = requests.post(
        running_server.url() + "?method=echo", data={"args": "[7]"}, cert=pki.proxy, verify=pki.caFile, timeout=30
    )
    assert decode(response.text)[0] == {"OK": True, "Value": 7}


def test_bad_extra_credentials_is_400(running_server):
    result = _error(running_server.post("whoami", fields={"extraCredentials": "[unclosed"}), 400)
    assert "extraCredentials" in result["Message"]
