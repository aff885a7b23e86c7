"""Client policy (URLs, failover, credentials, wire fields, error mapping) through an in-memory transport."""
from __future__ import annotations

import copy
import errno
import pickle
import threading
import time
from urllib.parse import urlencode

import pytest

from TornadoServices.Client import RPCClientSelector as selectorModule
from TornadoServices.Client.Client import Client, executeRPCStub
from TornadoServices.Client.private import errors as E
from TornadoServices.Client.private.TornadoBaseClient import (
    DEFAULT_RPC_TIMEOUT,
    normaliseTimeout,
    resetBannedURLs,
    setDefaultTransport,
)
from TornadoServices.Client.private.transport import MemoryResponse, MockTransport, jsonResponse
from TornadoServices.Client.RPCClientSelector import LegacyProtocolClient, RPCClientSelector
from TornadoServices.Client.TornadoClient import TornadoClient
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.Core import DErrno

URL = "https://localhost:8443/Framework/Dummy"
URL2 = "https://otherhost:8443/Framework/Dummy"


pytestmark = pytest.mark.usefixtures("mockClientEnvironment")


def ok(value=None):
    return lambda request: jsonResponse({"OK": True, "Value": value})


def body(request) -> str:
    return urlencode(request.fields)


# ---------------------------------------------------------------- wire format
def test_fields_are_byte_identical_to_dirac_9():
    transport = MockTransport(ok("pong"))
    client = TornadoClient(URL, transport=transport)
    client.ping()
    client.echo("hello from DIRAC client")
    client.add(2, 3)
    client.echo([1, 2.5, "x", None, True, {"k": "v"}])
    assert [body(r) for r in transport.requests] == [
        "method=ping&args=%5B%5D&clientVO=unknown&clientSetup=None",
        "method=echo&args=%5B%22hello+from+DIRAC+client%22%5D&clientVO=unknown&clientSetup=None",
        "method=add&args=%5B2%2C+3%5D&clientVO=unknown&clientSetup=None",
        "method=echo&args=%5B%5B1%2C+2.5%2C+%22x%22%2C+null%2C+true%2C+%7B%22k%22%3A+%22v%22%7D%5D%5D"
        "&clientVO=unknown&clientSetup=None",
    ]


def test_host_certificate_sends_extra_credentials_hosts(tmp_path, monkeypatch):
    cert, key = tmp_path / "hostcert.pem", tmp_path / "hostkey.pem"
    cert.write_text("c")
    key.write_text("k")
    monkeypatch.setenv("DIRAC_X509_HOST_CERT", str(cert))
    monkeypatch.setenv("DIRAC_X509_HOST_KEY", str(key))
    transport = MockTransport(ok())
    TornadoClient(URL, transport=transport, useCertificates=True).whoami()
    request = transport.requests[0]
    assert body(request) == "method=whoami&args=%5B%5D&extraCredentials=%22hosts%22&clientVO=unknown&clientSetup=None"
    assert (request.tls.certFile, request.tls.keyFile) == (str(cert), str(key))
    assert request.tls.credentialKind == "host certificate"


def test_vo_from_configuration_and_kwarg():
    gConfig.setOptionValue("/DIRAC/VirtualOrganization", "tornadovo")
    transport = MockTransport(ok())
    TornadoClient(URL, transport=transport).ping()
    TornadoClient(URL, transport=transport, VO="othervo").ping()
    assert [dict(r.fields)["clientVO"] for r in transport.requests] == ["tornadovo", "othervo"]


def test_delegation_looks_up_the_default_group():
    dn = "/DC=org/DC=tornadoservices/OU=Users/CN=devuser"
    gConfig.loadCFGFromString(
        f"""Registry
{{
  Users
  {{
    devuser
    {{
      DN = {dn}
    }}
  }}
  Groups
  {{
    dirac_user
    {{
      Users = devuser
    }}
  }}
  DefaultGroup = dirac_user
}}
"""
    )
    transport = MockTransport(ok())
    TornadoClient(URL, transport=transport, delegatedDN=dn).whoami()
    TornadoClient(URL, transport=transport, delegatedDN=dn, delegatedGroup="dirac_admin").whoami()
    sent = [dict(r.fields)["extraCredentials"] for r in transport.requests]
    assert sent == [f'["{dn}", "dirac_user"]', f'["{dn}", "dirac_admin"]']


def test_delegation_without_known_group_is_an_error_not_null():
    transport = MockTransport(ok())
    result = TornadoClient(URL, transport=transport, delegatedDN="/CN=nobody").whoami()
    assert not result["OK"]
    assert result["Errno"] == DErrno.ENOGROUP
    assert "delegatedGroup" in result["Message"]
    assert transport.requests == []


def test_explicit_extra_credentials_win():
    transport = MockTransport(ok())
    TornadoClient(URL, transport=transport, extraCredentials=["/CN=x", "g"]).ping()
    assert dict(transport.requests[0].fields)["extraCredentials"] == '["/CN=x", "g"]'


# ---------------------------------------------------------------- result shape
def test_rpc_stub_on_every_result_without_secrets():
    transport = MockTransport(ok(5))
    client = TornadoClient(URL, transport=transport, timeout=30, proxyString="SECRET KEY", useCertificates=False)
    result = client.add(2, 3)
    assert result["OK"] and result["Value"] == 5
    assert result["rpcStub"] == ((URL, {"timeout": 30}), "add", [2, 3])
    failed = TornadoClient("Framework/Missing", transport=transport).ping()
    assert not failed["OK"]
    assert failed["rpcStub"] == (("Framework/Missing", {"timeout": DEFAULT_RPC_TIMEOUT}), "ping", [])


def test_execute_rpc_stub_replays_also_after_json_round_trip():
    transport = MockTransport(lambda r: jsonResponse({"OK": True, "Value": dict(r.fields)["args"]}))
    setDefaultTransport(transport)
    stub = TornadoClient(URL).echo("again")["rpcStub"]
    assert executeRPCStub(stub)["Value"] == '["again"]'
    asJSON = [[stub[0][0], stub[0][1]], stub[1], stub[2]]
    assert executeRPCStub(asJSON)["Value"] == '["again"]'
    assert Client().executeRPCStub(stub)["OK"]
    assert not executeRPCStub(("garbage",))["OK"]


def test_private_and_dunder_names_are_not_rpcs():
    transport = MockTransport(ok())
    client = TornadoClient(URL, transport=transport)
    with pytest.raises(AttributeError):
        client._secret
    with pytest.raises(AttributeError):
        client.__deepcopy__
    assert not hasattr(client, "__getstate__x")
    copy.copy(client)
    pickle.dumps(Client(url=URL))
    assert transport.requests == []


def test_non_string_service_name_is_a_type_error():
    with pytest.raises(TypeError, match="Service name must be a str"):
        TornadoClient(42)


# ---------------------------------------------------------------- timeouts
@pytest.mark.parametrize(
    "given, expected",
    [(None, 600), (0, 600), ("", 600), (-3, 600), (5, 5), (0.5, 0.5), (1200, 1200), ("30", 30.0)],
)
def test_timeout_rule_keeps_small_values(given, expected):
    assert normaliseTimeout(given) == expected


def test_connect_timeout_is_separate_and_capped():
    transport = MockTransport(ok())
    TornadoClient(URL, transport=transport, timeout=3).ping()
    TornadoClient(URL, transport=transport).ping()
    short, default = (r.timeout for r in transport.requests)
    assert (short.connect, short.read, short.total) == (3, 3, 3)
    assert (default.connect, default.read, default.total) == (10, 600, 600)


# ---------------------------------------------------------------- failover
def raiser(exc):
    def handler(request):
        raise exc

    return handler


def byURL(**handlers):
    def handler(request):
        return handlers[request.url.split("//")[1].split(":")[0]](request)

    return handler


def test_undelivered_request_fails_over_and_returns_the_next_answer():
    transport = MockTransport(
        byURL(localhost=raiser(E.ConnectError("refused")), otherhost=ok("from other"))
    )
    client = TornadoClient(f"{URL},{URL2}", transport=transport)
    result = client.ping()
    assert result == {**result, "OK": True, "Value": "from other"}
    assert [r.url for r in transport.requests] == [URL, URL2]
    client.ping()
    assert transport.requests[-1].url == URL2, "banned URL is tried last"


@pytest.mark.parametrize(
    "failure",
    [E.DNSError("dns"), E.ConnectTimeout("ct"), E.TLSError("tls"), E.ClientCertificateRejected("rej"),
     E.ServerCertificateUntrusted("untrusted"), E.HostnameMismatch("mismatch")],
)
def test_every_not_delivered_kind_fails_over(failure):
    transport = MockTransport(byURL(localhost=raiser(failure), otherhost=ok(1)))
    assert TornadoClient(f"{URL},{URL2}", transport=transport).ping()["Value"] == 1


@pytest.mark.parametrize("failure", [E.ReadTimeout("slow"), E.ConnectionLost("reset")])
def test_possibly_delivered_call_is_never_resent(failure):
    failure.message += "; " + E.MAY_HAVE_RUN
    transport = MockTransport(byURL(localhost=raiser(failure), otherhost=ok(1)))
    result = TornadoClient(f"{URL},{URL2}", transport=transport).ping()
    assert not result["OK"]
    assert "may or may not have been executed" in result["Message"]
    assert [r.url for r in transport.requests] == [URL]


def test_404_moves_to_next_url_but_500_does_not():
    notHere = lambda r: jsonResponse({"OK": False, "Errno": 0, "Message": "no service"}, 404, "Not Found")
    transport = MockTransport(byURL(localhost=notHere, otherhost=ok("here")))
    assert TornadoClient(f"{URL},{URL2}", transport=transport).ping()["Value"] == "here"
    resetBannedURLs()
    broken = lambda r: jsonResponse({"OK": False, "Errno": 0, "Message": "boom"}, 500, "Internal Server Error")
    transport = MockTransport(byURL(localhost=broken, otherhost=ok("here")))
    result = TornadoClient(f"{URL},{URL2}", transport=transport).ping()
    assert not result["OK"] and "boom" in result["Message"]
    assert len(transport.requests) == 1


def test_all_urls_failing_names_each_reason():
    transport = MockTransport(
        byURL(localhost=raiser(E.ConnectError("refused here")), otherhost=raiser(E.DNSError("no such host")))
    )
    result = TornadoClient(f"{URL},{URL2}", transport=transport).ping()
    assert not result["OK"]
    assert "None of the 2 URLs" in result["Message"]
    assert "refused here" in result["Message"] and "no such host" in result["Message"]
    assert result["Errno"] == errno.EHOSTUNREACH


def test_cs_urls_main_then_failover_and_dips_ignored():
    gConfig.setOptionValue("/Systems/Framework/URLs/Dummy", f"dips://old:9135/Framework/Dummy, {URL}")
    gConfig.setOptionValue("/Systems/Framework/FailoverURLs/Dummy", URL2)
    transport = MockTransport(byURL(localhost=raiser(E.ConnectError("down")), otherhost=ok("failover")))
    assert TornadoClient("Framework/Dummy", transport=transport).ping()["Value"] == "failover"
    assert [r.url for r in transport.requests] == [URL, URL2]


def test_missing_url_message():
    result = TornadoClient("Framework/Nowhere", transport=MockTransport(ok())).ping()
    assert not result["OK"]
    assert "URL for service Framework/Nowhere not found" in result["Message"]
    assert "/Systems/Framework/URLs/Nowhere" in result["Message"]


def test_gateway_replaces_the_service_urls():
    gConfig.setOptionValue("/Systems/Framework/URLs/Dummy", URL)
    gConfig.setOptionValue("/LocalSite/Site", "LCG.Site.org")
    gConfig.setOptionValue("/DIRAC/Gateways/LCG.Site.org", "https://gateway:9000")
    transport = MockTransport(ok())
    TornadoClient("Framework/Dummy", transport=transport).ping()
    TornadoClient("Framework/Dummy", transport=transport, ignoreGateways=True).ping()
    assert [r.url for r in transport.requests] == ["https://gateway:9000/Framework/Dummy", URL]


# ---------------------------------------------------------------- status mapping
def status(code, reason, payload=None, raw=None, contentType="application/json"):
    def handler(request):
        data = raw if raw is not None else __import__("json").dumps(payload).encode()
        return MemoryResponse(code, data, {"Content-Type": contentType}, reason)

    return handler


@pytest.mark.parametrize("code", [401, 403])
def test_access_denied_keeps_server_message(code):
    transport = MockTransport(status(code, "Unauthorized", {"OK": False, "Errno": 1111, "Message": "Unauthorized query"}))
    result = TornadoClient(URL, transport=transport).hostOnly()
    assert result["Errno"] == errno.EACCES
    assert result["Message"] == f"Permission denied ( 13 : No access to {URL}: Unauthorized query)"


def test_not_implemented():
    transport = MockTransport(status(501, "Not Implemented", {"OK": False, "Errno": 0, "Message": "Unknown method nosuch"}))
    result = TornadoClient(URL, transport=transport).nosuch()
    assert result["Errno"] == errno.ENOSYS
    assert result["Message"].startswith("Function not implemented ( 38 : nosuch is not implemented")
    assert "Unknown method nosuch" in result["Message"]


def test_other_status_keeps_server_errno_and_message():
    transport = MockTransport(
        status(400, "Bad Request", {"OK": False, "Errno": 1004, "Message": "Invalid value ( 1004 : add takes 2 args)"})
    )
    result = TornadoClient(URL, transport=transport).add(1)
    assert result["Errno"] == 1004
    assert result["Message"] == f"HTTP 400 Bad Request from {URL} calling add: Invalid value ( 1004 : add takes 2 args)"


def test_html_error_page_is_summarised():
    page = b"<html><title>500: Internal Server Error</title><body>500: Internal Server Error</body></html>"
    transport = MockTransport(status(500, "Internal Server Error", raw=page, contentType="text/html"))
    result = TornadoClient(URL, transport=transport).echo(1, 2)
    assert result["Message"].endswith("calling echo: 500: Internal Server Error")


def test_server_s_error_with_200_is_returned_as_is():
    transport = MockTransport(status(200, "OK", {"OK": False, "Errno": 0, "Message": "boom"}))
    result = TornadoClient(URL, transport=transport).fail("boom")
    assert (result["OK"], result["Errno"], result["Message"]) == (False, 0, "boom")


@pytest.mark.parametrize(
    "raw, fragment",
    [(b"", "Cannot decode the answer"), (b"<html>hi</html>", "Cannot decode the answer"),
     (b"[1, 2]", "not an S_OK/S_ERROR structure but a list")],
)
def test_undecodable_body(raw, fragment):
    transport = MockTransport(status(200, "OK", raw=raw, contentType="text/html"))
    result = TornadoClient(URL, transport=transport).ping()
    assert not result["OK"] and fragment in result["Message"]
    assert result["Errno"] == errno.EPROTO


def test_unencodable_arguments_are_not_sent():
    transport = MockTransport(ok())
    result = TornadoClient(URL, transport=transport).echo({1, 2})
    assert not result["OK"] and "Cannot send the arguments of echo" in result["Message"]
    assert transport.requests == []


def test_unexpected_transport_exception_becomes_s_error():
    transport = MockTransport(raiser(RuntimeError("bug in transport")))
    result = TornadoClient(URL, transport=transport).ping()
    assert not result["OK"] and "bug in transport" in result["Message"]
    assert result["Errno"] == DErrno.EEEXCEPTION


def test_answer_deadline_covers_the_whole_body():
    def trickle():
        for part in (b'{"OK"', b": ", b"true}"):
            time.sleep(0.15)
            yield part

    slow = MemoryResponse(200, headers={"Content-Type": "application/json"}, chunks=trickle())
    result = TornadoClient(URL, transport=MockTransport(lambda r: slow), timeout=0.2).ping()
    assert not result["OK"] and "did not complete in time" in result["Message"]
    assert result["Errno"] == errno.ETIMEDOUT


# ---------------------------------------------------------------- credentials
def test_no_proxy_says_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "absent.pem"))
    monkeypatch.setattr("os.getuid", lambda: 987654)
    transport = MockTransport(ok())
    result = TornadoClient(URL, transport=transport).ping()
    assert not result["OK"]
    assert result["Errno"] == DErrno.EPROXYFIND
    assert "No proxy found" in result["Message"]
    assert str(tmp_path / "absent.pem") in result["Message"] and "/tmp/x509up_u987654" in result["Message"]
    assert "tornado-proxy-init" in result["Message"]
    assert transport.requests == []


def test_missing_ca_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("X509_CERT_DIR", str(tmp_path / "nocerts"))
    result = TornadoClient(URL, transport=MockTransport(ok())).ping()
    assert not result["OK"]
    assert "No CA directory found" in result["Message"] and str(tmp_path / "nocerts") in result["Message"]
    assert "X509_CERT_DIR" in result["Message"]


def test_skip_ca_check_needs_no_ca(monkeypatch, tmp_path):
    monkeypatch.setenv("X509_CERT_DIR", str(tmp_path / "nocerts"))
    transport = MockTransport(ok())
    assert TornadoClient(URL, transport=transport, skipCACheck=True).ping()["OK"]
    assert transport.requests[0].tls.skipCACheck and transport.requests[0].tls.caPath is None


def test_missing_proxy_location_file(tmp_path):
    result = TornadoClient(URL, transport=MockTransport(ok()), proxyLocation=str(tmp_path / "gone.pem")).ping()
    assert not result["OK"] and "given as proxyLocation does not exist" in result["Message"]


def test_missing_host_certificate(monkeypatch, tmp_path):
    monkeypatch.setenv("DIRAC_X509_HOST_CERT", str(tmp_path / "nope.pem"))
    monkeypatch.setenv("DIRAC_X509_HOST_KEY", str(tmp_path / "nope.key"))
    result = TornadoClient(URL, transport=MockTransport(ok()), useCertificates=True).ping()
    assert not result["OK"] and "no host certificate" in result["Message"]
    assert "DIRAC_X509_HOST_CERT" in result["Message"]


def test_proxy_string_stays_in_memory_and_out_of_reprs():
    transport = MockTransport(ok())
    TornadoClient(URL, transport=transport, proxyString="-----BEGIN SECRET-----").ping()
    tls = transport.requests[0].tls
    assert tls.pemData == b"-----BEGIN SECRET-----" and tls.certFile is None
    assert "SECRET" not in repr(tls)
    assert "in-memory proxy" in tls.describeCredential()


def test_proxy_chain_object_is_serialised():
    class FakeChain:
        def dumpAllToString(self):
            return {"OK": True, "Value": "PEMDATA"}

    transport = MockTransport(ok())
    result = TornadoClient(URL, transport=transport, proxyChain=FakeChain()).ping()
    assert result["OK"] and transport.requests[0].tls.pemData == b"PEMDATA"
    assert "proxyChain" not in result["rpcStub"][0][1]


def test_proxy_file_is_reresolved_per_call(monkeypatch, tmp_path):
    transport = MockTransport(ok())
    client = TornadoClient(URL, transport=transport)
    client.ping()
    other = tmp_path / "renewed.pem"
    other.write_text("x")
    monkeypatch.setenv("X509_USER_PROXY", str(other))
    client.ping()
    assert transport.requests[1].tls.certFile == str(other)


# ---------------------------------------------------------------- selector and Client
def test_selector_dips_only_gives_clear_error(monkeypatch):
    gConfig.setOptionValue("/Systems/Framework/URLs/Legacy", "dips://old:9135/Framework/Legacy")
    client = RPCClientSelector("Framework/Legacy")
    assert isinstance(client, LegacyProtocolClient)
    result = client.ping()
    assert not result["OK"] and result["Errno"] == errno.EPROTONOSUPPORT
    assert "legacy dips protocol" in result["Message"] and "not available" in result["Message"]
    assert result["rpcStub"][1] == "ping"
    with pytest.raises(AttributeError):
        client.__deepcopy__


def test_selector_mixed_list_uses_https_only():
    gConfig.setOptionValue("/Systems/Framework/URLs/Dummy", f"dips://old:9135/Framework/Dummy,{URL}")
    transport = MockTransport(ok("https"))
    for _ in range(5):
        client = RPCClientSelector("Framework/Dummy", transport=transport)
        assert isinstance(client, TornadoClient)
        assert client.ping()["Value"] == "https"
    assert {r.url for r in transport.requests} == {URL}


def test_selector_https_and_custom_https_client():
    class JSONPatchingClient(TornadoClient):
        pass

    assert type(RPCClientSelector(URL)) is TornadoClient
    assert type(RPCClientSelector(URL, httpsClient=JSONPatchingClient)) is JSONPatchingClient


def test_dips_url_given_directly_to_tornado_client():
    result = TornadoClient("dips://old:9135/Framework/Dummy", transport=MockTransport(ok())).ping()
    assert not result["OK"] and "legacy dips protocol" in result["Message"]


def test_client_base_class_per_call_overrides():
    transport = MockTransport(ok())
    setDefaultTransport(transport)

    class DummyClient(Client):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.setServer(URL)

    client = DummyClient()
    assert client.ping()["OK"]
    assert client.echo("x", timeout=7, url=URL2)["OK"]
    assert (transport.requests[0].url, transport.requests[0].timeout.read) == (URL, DEFAULT_RPC_TIMEOUT)
    assert (transport.requests[1].url, transport.requests[1].timeout.read) == (URL2, 7)
    ready = TornadoClient(URL, transport=transport, timeout=9)
    client.ping(rpc=ready)
    assert transport.requests[2].timeout.read == 9
    bad = client.echo("x", color="red")
    assert not bad["OK"] and "positional arguments only" in bad["Message"]
    assert not Client().ping()["OK"]


def test_client_https_client_hook():
    seen = []

    class Recording(TornadoClient):
        def executeRPC(self, method, *args):
            seen.append(method)
            return super().executeRPC(method, *args)

    class MyClient(Client):
        httpsClient = Recording

    setDefaultTransport(MockTransport(ok()))
    assert MyClient(url=URL, timeout=4).whoami()["OK"]
    assert seen == ["whoami"]


GATEWAY = "https://gateway:9000"
DIPS_GATEWAY = "dips://gateway:9135"


def _siteWithGateway(gateway: str) -> None:
    gConfig.setOptionValue("/LocalSite/Site", "LCG.Site.org")
    gConfig.setOptionValue("/DIRAC/Gateways/LCG.Site.org", gateway)


def test_selector_https_gateway_over_dips_urls_gives_the_https_client():
    gConfig.setOptionValue("/Systems/Framework/URLs/Dummy", "dips://old:9135/Framework/Dummy")
    _siteWithGateway(GATEWAY)
    transport = MockTransport(ok("through the gateway"))
    client = RPCClientSelector("Framework/Dummy", transport=transport)
    assert type(client) is TornadoClient
    assert client.ping()["Value"] == "through the gateway"
    assert [r.url for r in transport.requests] == [f"{GATEWAY}/Framework/Dummy"]


def test_selector_dips_gateway_over_https_urls_gives_the_legacy_client():
    gConfig.setOptionValue("/Systems/Framework/URLs/Dummy", URL)
    _siteWithGateway(DIPS_GATEWAY)
    transport = MockTransport(ok())
    client = RPCClientSelector("Framework/Dummy", transport=transport)
    assert isinstance(client, LegacyProtocolClient)
    result = client.ping()
    assert not result["OK"] and result["Errno"] == errno.EPROTONOSUPPORT
    assert "gateways of site LCG.Site.org" in result["Message"] and f"{DIPS_GATEWAY}/Framework/Dummy" in result["Message"]
    assert "ignoreGateways=True" in result["Message"]
    assert transport.requests == []
    # a TornadoClient made directly would refuse the same gateway, for the same reason
    direct = TornadoClient("Framework/Dummy", transport=transport).ping()
    assert not direct["OK"] and "legacy dips protocol" in direct["Message"] and transport.requests == []


def test_selector_ignore_gateways_keeps_the_service_urls_decision():
    gConfig.setOptionValue("/Systems/Framework/URLs/Dummy", URL)
    gConfig.setOptionValue("/Systems/Framework/URLs/Legacy", "dips://old:9135/Framework/Legacy")
    _siteWithGateway(DIPS_GATEWAY)
    transport = MockTransport(ok("direct"))
    client = RPCClientSelector("Framework/Dummy", transport=transport, ignoreGateways=True)
    assert type(client) is TornadoClient
    assert client.ping()["Value"] == "direct"
    assert [r.url for r in transport.requests] == [URL]
    _siteWithGateway(GATEWAY)
    legacy = RPCClientSelector("Framework/Legacy", transport=transport, ignoreGateways=True)
    assert isinstance(legacy, LegacyProtocolClient)
    message = legacy.ping()["Message"]
    assert "dips://old:9135/Framework/Legacy" in message and "gateway" not in message
    assert legacy.ping()["rpcStub"][0][1]["ignoreGateways"] is True  # passed on like any client option


def test_selector_without_gateway_decides_on_the_service_urls():
    gConfig.setOptionValue("/Systems/Framework/URLs/Dummy", URL)
    gConfig.setOptionValue("/Systems/Framework/URLs/Legacy", "dips://old:9135/Framework/Legacy")
    gConfig.setOptionValue("/LocalSite/Site", "LCG.Site.org")  # a site without gateways
    gConfig.setOptionValue("/DIRAC/Gateways/LCG.Other.org", DIPS_GATEWAY)  # another site's
    assert type(RPCClientSelector("Framework/Dummy")) is TornadoClient
    assert isinstance(RPCClientSelector("Framework/Legacy"), LegacyProtocolClient)
    _siteWithGateway(GATEWAY)
    assert type(RPCClientSelector(URL)) is TornadoClient  # explicit URLs are used as given, gateway or not
    assert isinstance(RPCClientSelector("dips://old:9135/Framework/Legacy"), LegacyProtocolClient)


def test_selector_module_has_no_random_choice():
    assert "random" not in selectorModule.__dict__


# ---------------------------------------------------------------- threads
def test_sixteen_threads_share_one_client():
    counter = {"n": 0}
    lock = threading.Lock()

    def handler(request):
        with lock:
            counter["n"] += 1
        return jsonResponse({"OK": True, "Value": dict(request.fields)["args"]})

    client = TornadoClient(URL, transport=MockTransport(handler))
    errors = []

    def work(i):
        for j in range(50):
            result = client.echo(f"{i}-{j}")
            if result["Value"] != f'["{i}-{j}"]':
                errors.append(result)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and counter["n"] == 800


def test_connconf_fills_missing_kwargs():
    gConfig.setOptionValue("/DIRAC/ConnConf/localhost:8443/timeout", "42")
    transport = MockTransport(ok())
    TornadoClient(URL, transport=transport).ping()
    TornadoClient(URL, transport=transport, timeout=7).ping()
    assert [r.timeout.read for r in transport.requests] == [42.0, 7]
