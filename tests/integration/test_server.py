"""TornadoServer over real TLS: identities, built-in methods, DIRAC's wire shapes."""
from __future__ import annotations

import datetime

import pytest

from TornadoServices.Core.Encoding import decode

PING_KEYS = [
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


def _ok(response) -> object:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    result = decode(response.text)[0]
    assert result["OK"] is True, result
    return result["Value"]


@pytest.mark.parametrize("cert", ["user", "proxy", "proxyNoGroup", "proxyOfProxy", "host", "adminProxy"])
def test_ping_with_every_kind_of_credential(running_server, cert):
    fields = {"extraCredentials": '"hosts"'} if cert == "host" else None
    value = _ok(running_server.post("ping", cert=cert, fields=fields))
    assert list(value) == PING_KEYS
    assert value["name"] == "Framework/Dummy"
    assert value["URL"].endswith(f":{running_server.port}/Framework/Dummy")
    assert isinstance(value["time"], datetime.datetime)
    assert isinstance(value["service start time"], datetime.datetime)
    assert value["service start time"] <= value["time"]
    assert list(value["cpu times"]) == [
        "user time",
        "system time",
        "children user time",
        "children system time",
        "elapsed real time",
    ]


def test_echo_returns_the_argument(running_server):
    data = [1, 2.5, "x", None, True, {"k": "v"}]
    assert _ok(running_server.post("echo", data)) == data


def test_whoami_user_certificate(running_server, pki):
    creds = _ok(running_server.post("whoami", cert="user"))
    assert creds["DN"] == creds["subject"] == pki.userDN
    assert creds["isProxy"] is False
    assert creds["group"] == "dirac_user"
    assert creds["username"] == "devuser"
    assert creds["properties"] == ["NormalUser"]
    assert "x509Chain" not in creds


def test_whoami_proxy_has_dirac_fields(running_server, pki):
    creds = _ok(running_server.post("whoami", cert="proxy"))
    assert list(creds) == [
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
    assert creds["DN"] == creds["identity"] == pki.userDN
    assert creds["issuer"] == pki.userDN
    assert creds["subject"].startswith(pki.userDN + "/CN=")
    assert creds["isProxy"] is True and creds["isLimitedProxy"] is False
    assert creds["validDN"] is False and creds["validGroup"] is False
    assert creds["group"] == "dirac_user" and creds["VO"] == "tornadovo"
    assert creds["username"] == "devuser"
    assert 0 < creds["secondsLeft"] <= 24 * 3600


def test_whoami_group_from_proxy_extension(running_server):
    creds = _ok(running_server.post("whoami", cert="adminProxy"))
    assert creds["group"] == "dirac_admin"
    assert set(creds["properties"]) == {"NormalUser", "CSAdministrator", "ServiceAdministrator"}


def test_whoami_group_from_registry_default(running_server, pki):
    creds = _ok(running_server.post("whoami", cert="proxyNoGroup"))
    assert creds["group"] == "dirac_user"
    assert creds["DN"] == pki.userDN


def test_whoami_proxy_of_proxy_is_the_user(running_server, pki):
    creds = _ok(running_server.post("whoami", cert="proxyOfProxy"))
    assert creds["DN"] == creds["identity"] == pki.userDN
    assert creds["isProxy"] is True
    assert creds["group"] == "dirac_user"
    assert creds["username"] == "devuser"


def test_whoami_host_certificate_with_hosts_extra_credentials(running_server, pki):
    creds = _ok(running_server.post("whoami", cert="host", fields={"extraCredentials": '"hosts"'}))
    assert creds["DN"] == pki.hostDN
    assert creds["group"] == "hosts"
    assert creds["username"] == "localhost"
    assert creds["extraCredentials"] == "hosts"
    assert set(creds["properties"]) == {"TrustedHost", "CSAdministrator"}


def test_whoami_host_certificate_is_recognised_by_dn_alone(running_server, pki):
    creds = _ok(running_server.post("whoami", cert="host"))
    assert creds["group"] == "hosts"
    assert creds["username"] == "localhost"


def test_sync_and_async_methods(running_server):
    assert _ok(running_server.post("add", 2, 3)) == 5
    assert _ok(running_server.post("asyncEcho", {"a": [1, 2]})) == {"a": [1, 2]}
    assert _ok(running_server.post("asyncSleep", 0)) == 0


def test_plain_methods_run_in_workers_unless_non_blocking(running_server):
    value = _ok(running_server.post("multiply", 6, 7))
    assert value["product"] == 42
    assert value["thread"] == "TornadoServer"  # the event loop thread of the test server
    table = running_server.handlerClass()._runtime.methods
    assert table["multiply"].inline is True
    assert table["add"].inline is False and table["add"].isCoroutine is False


def test_application_error_is_200_with_s_error(running_server):
    response = running_server.post("fail", "boom")
    assert response.status_code == 200
    assert decode(response.text)[0] == {"OK": False, "Errno": 0, "Message": "boom"}


def test_keep_alive_connection_is_authenticated_once(running_server):
    import requests

    before = running_server.stats.connectionsAccepted
    with requests.Session() as session:
        for _ in range(5):
            _ok(running_server.post("ping", session=session))
    assert running_server.stats.connectionsAccepted - before == 1


def _waitForRecord(caplog, predicate, timeout: float = 30.0):
    """The access line is written just after the answer leaves: wait for it rather than race it."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in list(caplog.records):
            if predicate(record):
                return record
        time.sleep(0.01)
    raise AssertionError("log record not found: " + "\n".join(r.getMessage() for r in caplog.records))


def test_one_access_line_per_request_in_dirac_wording(running_server, caplog):
    import logging
    import re

    caplog.set_level(logging.INFO, logger="TornadoServices")
    running_server.post("add", 1, 2, cert="proxy")
    record = _waitForRecord(caplog, lambda r: "Framework/Dummy.add" in r.getMessage())
    assert record.levelno == logging.INFO
    assert re.fullmatch(
        r"Returning response \(127\.0\.0\.1:\d+\)\[dirac_user:devuser\] Framework/Dummy\.add OK 200 \d+\.\d ms",
        record.getMessage(),
    ), record.getMessage()
    assert record.status == 200 and record.method == "add" and record.service == "Framework/Dummy"


def test_unauthorised_query_is_logged_at_warn_and_no_credentials_leak(running_server, caplog, pki):
    import logging

    caplog.set_level(logging.DEBUG, logger="TornadoServices")
    running_server.post("hostOnly", cert="proxy")
    warning = _waitForRecord(caplog, lambda r: r.getMessage().startswith("Unauthorized query"))
    assert warning.levelno == logging.WARNING
    assert "Framework/Dummy.hostOnly" in warning.getMessage()
    _waitForRecord(caplog, lambda r: "Framework/Dummy.hostOnly ERROR 403" in r.getMessage())
    incoming = _waitForRecord(caplog, lambda r: r.getMessage().startswith("Incoming request"))
    assert incoming.levelno < logging.INFO
    for record in caplog.records:
        text = record.getMessage()
        assert "BEGIN CERTIFICATE" not in text and "PRIVATE KEY" not in text
