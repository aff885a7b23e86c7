"""Requests shaped exactly as DIRAC 9.1's client sends them get DIRAC's answer shapes; DIRAC-style handlers run."""
from __future__ import annotations

import threading
import time

import pytest
import requests

from TornadoServices.Core.Encoding import decode

# Form bodies as captured from DIRAC 9.1.22's TornadoClient (requests' urlencode of the fields, in order).
PING_BODY = "method=ping&args=%5B%5D&clientVO=unknown&clientSetup=None"
ECHO_BODY = "method=echo&args=%5B%22hello+from+DIRAC+client%22%5D&clientVO=unknown&clientSetup=None"
ADD_BODY = "method=add&args=%5B2%2C+3%5D&clientVO=unknown&clientSetup=None"
HOST_WHOAMI_BODY = "method=whoami&args=%5B%5D&extraCredentials=%22hosts%22&clientVO=unknown&clientSetup=None"
WHOAMI_BODY = "method=whoami&args=%5B%5D&clientVO=unknown&clientSetup=None"
ECHO_LIST_BODY = (
    "method=echo&args=%5B%5B1%2C+2.5%2C+%22x%22%2C+null%2C+true%2C+%7B%22k%22%3A+%22v%22%7D%5D%5D"
    "&clientVO=unknown&clientSetup=None"
)
FAIL_BODY = "method=fail&args=%5B%22boom%22%5D&clientVO=unknown&clientSetup=None"


def _raw(server, body: str, cert, service: str = "Framework/Dummy"):
    """POST the captured body with DIRAC's headers, on a keep-alive session like DIRAC's client."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}
    return requests.post(server.url(service), data=body, headers=headers, cert=cert, verify=server.pki.caFile, timeout=30)


def _json(response):
    assert response.headers["Content-Type"] == "application/json"
    return decode(response.text)[0]


def test_dirac_ping_answer_shape(running_server, pki):
    result = _json(_raw(running_server, PING_BODY, pki.user))
    assert result["OK"] is True
    assert list(result["Value"]) == [
        "version",
        "time",
        "host uptime",
        "service start time",
        "service uptime",
        "load",
        "name",
        "URL",
        "cpu times",
    ]
    text = _raw(running_server, PING_BODY, pki.user).text
    assert text.startswith('{"OK": true, "Value": {"version": ')
    assert '"time": {"__dCls": "dt", "obj": "' in text


def test_dirac_echo_and_add(running_server, pki):
    assert _raw(running_server, ECHO_BODY, pki.user).text == '{"OK": true, "Value": "hello from DIRAC client"}'
    assert _raw(running_server, ADD_BODY, pki.user).text == '{"OK": true, "Value": 5}'
    assert _json(_raw(running_server, ECHO_LIST_BODY, pki.proxy))["Value"] == [1, 2.5, "x", None, True, {"k": "v"}]


def test_dirac_host_whoami_shape(running_server, pki):
    value = _json(_raw(running_server, HOST_WHOAMI_BODY, pki.host))["Value"]
    assert set(value) == {
        "subject",
        "issuer",
        "secondsLeft",
        "isProxy",
        "isLimitedProxy",
        "validDN",
        "validGroup",
        "DN",
        "extraCredentials",
        "properties",
        "group",
        "username",
    }
    assert value["extraCredentials"] == "hosts" and value["group"] == "hosts"


def test_dirac_proxy_whoami_shape(running_server, pki):
    value = _json(_raw(running_server, WHOAMI_BODY, pki.proxy))["Value"]
    assert list(value) == [
        "subject",
        "issuer",
        "secondsLeft",
        "isProxy",
        "isLimitedProxy",
        "validDN",
        "validGroup",
        "DN",
        "identity",
        "group",
        "VO",
        "properties",
        "username",
    ]


def test_dirac_s_error_shape(running_server, pki):
    response = _raw(running_server, FAIL_BODY, pki.user)
    assert response.status_code == 200
    assert response.text == '{"OK": false, "Errno": 0, "Message": "boom"}'


# ---- a handler written in DIRAC's style -----------------------------------------------------------------
def test_dirac_style_handler_runs_unchanged(running_server):
    call = running_server.call
    first = call("addUser", "alice", service="Framework/TornadoUser")
    assert first["OK"], first
    uid = first["Value"]
    assert call("getUserName", uid, service="Framework/TornadoUser") == {"OK": True, "Value": "alice"}
    assert call("editUser", uid, "bob", service="Framework/TornadoUser")["OK"]
    assert [uid, "bob"] in call("listUsers", service="Framework/TornadoUser")["Value"]
    assert call("removeUser", uid, service="Framework/TornadoUser")["OK"]
    missing = call("getUserName", uid, service="Framework/TornadoUser")
    assert missing["OK"] is False and "does not exist" in missing["Message"]
    response = running_server.post("getUserName", "not an int", service="Framework/TornadoUser")
    assert response.status_code == 400


# ---- per-component state ---------------------------------------------------------------------------------
def test_each_component_has_its_own_state(running_server):
    put = running_server.call
    assert put("put", "k", 1, service="Framework/Bookkeeping")["OK"]
    assert put("put", "k", 2, service="Framework/Bookkeeping2")["OK"]
    assert put("get", "k", service="Framework/Bookkeeping")["Value"] == 1
    assert put("get", "k", service="Framework/Bookkeeping2")["Value"] == 2
    # Bookkeeping2 has MaxKeys = 2 in its own section
    assert put("put", "k2", 0, service="Framework/Bookkeeping2")["OK"]
    full = put("put", "k3", 0, service="Framework/Bookkeeping2")
    assert full["OK"] is False and "full" in full["Message"]
    ping = put("ping", service="Framework/Bookkeeping2")["Value"]
    assert ping["name"] == "Framework/Bookkeeping2"


def test_cs_default_rule_of_a_service(running_server):
    # Bookkeeping's section says Default = authenticated; deleteKey keeps its own group:dirac_admin rule
    assert running_server.post("deleteKey", "k", service="Framework/Bookkeeping").status_code == 403
    assert running_server.post("deleteKey", "k", service="Framework/Bookkeeping", cert="adminProxy").status_code == 200


# ---- concurrency ---------------------------------------------------------------------------------------------
def test_a_sleeping_sync_method_does_not_stop_ping(running_server):
    handler = running_server.handlerClass()
    executor = handler._runtime.executor
    handler.wakeUp.clear()
    outcome = {}
    sleeper = threading.Thread(target=lambda: outcome.setdefault("sleep", running_server.call("sleep", 120)))
    sleeper.start()
    try:
        deadline = time.monotonic() + 30
        while executor.pending < 1:
            assert time.monotonic() < deadline, "the sleep call never reached a worker"
            time.sleep(0.01)
        assert running_server.call("ping")["OK"]
        assert running_server.call("add", 20, 22)["Value"] == 42  # another worker is free
        assert sleeper.is_alive() and "sleep" not in outcome
    finally:
        handler.wakeUp.set()
        sleeper.join(60)
    assert outcome["sleep"]["Value"]["wokenUp"] is True


@pytest.mark.parametrize("method", ["echo", "asyncEcho"])
def test_concurrent_callers_get_their_own_answers(running_server, method):
    results = {}

    def worker(index: int) -> None:
        with requests.Session() as session:
            for round_ in range(5):
                value = decode(running_server.post(method, [index, round_], session=session).text)[0]["Value"]
                results.setdefault(index, []).append(value)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {i: [[i, r] for r in range(5)] for i in range(6)}
