"""ThreadConfig delegation: the fields a call sends, decided per call from the caller's ThreadConfig."""
from __future__ import annotations

import asyncio
import threading
from urllib.parse import urlencode

import pytest

from TornadoServices.Client.AsyncTornadoClient import AsyncTornadoClient, _getExecutor
from TornadoServices.Client.Client import Client, executeRPCStub
from TornadoServices.Client.private.TornadoBaseClient import setDefaultTransport
from TornadoServices.Client.private.transport import MockTransport, jsonResponse
from TornadoServices.Client.TornadoClient import TornadoClient
from TornadoServices.Client.TransferClient import TransferClient
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.Core import DErrno
from TornadoServices.Core.DISET.ThreadConfig import ThreadConfig

URL = "https://localhost:8443/Framework/Dummy"
DN = "/DC=org/DC=tornadoservices/OU=Users/CN=devuser"
DN2 = "/DC=org/DC=tornadoservices/OU=Users/CN=otheruser"
WAIT = 30  # seconds: a bound for waits that end as soon as the other thread arrives

REGISTRY = f"""Registry
{{
  DefaultGroup = dirac_user
  Users
  {{
    devuser
    {{
      DN = {DN}
    }}
    otheruser
    {{
      DN = {DN2}
      DefaultGroup = dirac_prod
    }}
  }}
  Groups
  {{
    dirac_user
    {{
      Users = devuser
    }}
    dirac_prod
    {{
      Users = otheruser
    }}
  }}
}}
"""


@pytest.fixture(autouse=True)
def threadConfig(mockClientEnvironment):
    """A clean ThreadConfig and the test Registry; the ThreadConfig of this thread is reset afterwards."""
    assert gConfig.loadCFGFromString(REGISTRY)["OK"]
    ThreadConfig().reset()
    yield ThreadConfig()
    ThreadConfig().reset()


def ok(request):
    return jsonResponse({"OK": True, "Value": None})


def body(request) -> str:
    return urlencode(request.fields)


def extra(request):
    return dict(request.fields).get("extraCredentials")


# ---------------------------------------------------------------- ThreadConfig itself
def test_threadconfig_api_as_in_dirac(threadConfig):
    assert ThreadConfig() is threadConfig
    assert threadConfig.getID() == (False, False) and threadConfig.getSetup() is False
    threadConfig.setDN(DN)
    threadConfig.setGroup("dirac_user")
    threadConfig.setSetup("Production")
    assert (threadConfig.getDN(), threadConfig.getGroup(), threadConfig.getSetup()) == (DN, "dirac_user", "Production")
    assert threadConfig.dump() == (DN, "dirac_user", "Production")
    threadConfig.setID(DN2, "dirac_prod")
    assert threadConfig.getID() == (DN2, "dirac_prod")
    threadConfig.reset()
    assert threadConfig.dump() == (False, False, False)
    threadConfig.setGroup("kept")
    threadConfig.load((DN, "", "Certification"))  # empty values leave the current ones
    assert threadConfig.dump() == (DN, "kept", "Certification")


def test_a_new_thread_starts_without_identity(threadConfig):
    threadConfig.setID(DN, "dirac_user")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(ThreadConfig().dump()))
    thread.start()
    thread.join(WAIT)
    assert seen == [(False, False, False)]
    assert threadConfig.getID() == (DN, "dirac_user")


# ---------------------------------------------------------------- the fields a call sends
def test_without_threadconfig_nothing_is_delegated():
    transport = MockTransport(ok)
    TornadoClient(URL, transport=transport).whoami()
    assert body(transport.requests[0]) == "method=whoami&args=%5B%5D&clientVO=unknown&clientSetup=None"


def test_threadconfig_dn_and_group_are_sent(threadConfig):
    threadConfig.setDN(DN)
    threadConfig.setGroup("dirac_admin")
    transport = MockTransport(ok)
    result = TornadoClient(URL, transport=transport).whoami()
    assert body(transport.requests[0]) == (
        "method=whoami&args=%5B%5D"
        "&extraCredentials=%5B%22%2FDC%3Dorg%2FDC%3Dtornadoservices%2FOU%3DUsers%2FCN%3Ddevuser%22%2C+%22dirac_admin%22%5D"
        "&clientVO=unknown&clientSetup=None"
    )
    assert extra(transport.requests[0]) == f'["{DN}", "dirac_admin"]'
    (_, stubKwargs), _, _ = result["rpcStub"]
    assert (stubKwargs["delegatedDN"], stubKwargs["delegatedGroup"]) == (DN, "dirac_admin")


def test_threadconfig_dn_only_uses_the_default_group(threadConfig):
    transport = MockTransport(ok)
    threadConfig.setDN(DN)
    TornadoClient(URL, transport=transport).whoami()
    threadConfig.setDN(DN2)  # a DefaultGroup of its own
    TornadoClient(URL, transport=transport).whoami()
    assert [extra(r) for r in transport.requests] == [f'["{DN}", "dirac_user"]', f'["{DN2}", "dirac_prod"]']


def test_threadconfig_dn_without_default_group_is_an_error(threadConfig):
    gConfig.reset()
    threadConfig.setDN("/CN=nobody")
    transport = MockTransport(ok)
    result = TornadoClient(URL, transport=transport).whoami()
    assert not result["OK"] and result["Errno"] == DErrno.ENOGROUP
    assert "/CN=nobody" in result["Message"] and "setGroup" in result["Message"]
    assert transport.requests == []


def test_threadconfig_delegation_replaces_hosts(threadConfig, tmp_path, monkeypatch):
    cert, key = tmp_path / "hostcert.pem", tmp_path / "hostkey.pem"
    cert.write_text("c")
    key.write_text("k")
    monkeypatch.setenv("DIRAC_X509_HOST_CERT", str(cert))
    monkeypatch.setenv("DIRAC_X509_HOST_KEY", str(key))
    transport = MockTransport(ok)
    client = TornadoClient(URL, transport=transport, useCertificates=True)
    client.whoami()
    threadConfig.setID(DN, "dirac_user")
    client.whoami()
    assert [extra(r) for r in transport.requests] == ['"hosts"', f'["{DN}", "dirac_user"]']


def test_explicit_keywords_beat_threadconfig(threadConfig):
    threadConfig.setID(DN2, "dirac_prod")
    threadConfig.setSetup("FromThread")
    transport = MockTransport(ok)
    TornadoClient(URL, transport=transport, delegatedDN=DN).whoami()  # its own default group, not the thread's
    TornadoClient(URL, transport=transport, delegatedDN=DN, delegatedGroup="dirac_admin").whoami()
    TornadoClient(URL, transport=transport, delegatedGroup="dirac_admin").whoami()  # the thread's DN, this group
    TornadoClient(URL, transport=transport, extraCredentials="hosts").whoami()
    TornadoClient(URL, transport=transport, setup="FromKwarg").whoami()
    assert [extra(r) for r in transport.requests] == [
        f'["{DN}", "dirac_user"]',
        f'["{DN}", "dirac_admin"]',
        f'["{DN2}", "dirac_admin"]',
        '"hosts"',
        f'["{DN2}", "dirac_prod"]',
    ]
    assert [dict(r.fields)["clientSetup"] for r in transport.requests] == ["FromThread"] * 4 + ["FromKwarg"]


def test_setup_from_kwarg_threadconfig_configuration_or_none(threadConfig):
    transport = MockTransport(ok)
    client = TornadoClient(URL, transport=transport)
    client.ping()
    gConfig.setOptionValue("/DIRAC/Setup", "CSSetup")
    TornadoClient(URL, transport=transport).ping()
    threadConfig.setSetup("ThreadSetup")
    TornadoClient(URL, transport=transport).ping()
    TornadoClient(URL, transport=transport, setup="KwSetup").ping()
    assert [dict(r.fields)["clientSetup"] for r in transport.requests] == ["None", "CSSetup", "ThreadSetup", "KwSetup"]
    assert "extraCredentials" not in dict(transport.requests[2].fields)  # a setup alone delegates nothing


def test_reset_stops_delegating(threadConfig):
    transport = MockTransport(ok)
    client = TornadoClient(URL, transport=transport)
    threadConfig.setID(DN, "dirac_user")
    threadConfig.setSetup("ThreadSetup")
    client.whoami()
    threadConfig.reset()
    client.whoami()
    assert [body(r) for r in transport.requests] == [
        "method=whoami&args=%5B%5D"
        "&extraCredentials=%5B%22%2FDC%3Dorg%2FDC%3Dtornadoservices%2FOU%3DUsers%2FCN%3Ddevuser%22%2C+%22dirac_user%22%5D"
        "&clientVO=unknown&clientSetup=ThreadSetup",
        "method=whoami&args=%5B%5D&clientVO=unknown&clientSetup=None",
    ]


def test_the_calling_thread_wins_over_the_creating_thread(threadConfig):
    transport = MockTransport(ok)
    created = []

    def create():
        ThreadConfig().setID(DN2, "dirac_prod")
        created.append(TornadoClient(URL, transport=transport))

    thread = threading.Thread(target=create)
    thread.start()
    thread.join(WAIT)
    client = created[0]
    client.whoami()  # this thread has no identity: nothing delegated
    threadConfig.setID(DN, "dirac_user")
    client.whoami()
    assert [extra(r) for r in transport.requests] == [None, f'["{DN}", "dirac_user"]']


def test_two_threads_with_different_identities_never_mix():
    """Both calls are in the transport at the same time (a barrier inside the handler) on one shared client."""
    inside = threading.Barrier(2, timeout=WAIT)
    seen: dict[str, list] = {}

    def handler(request):
        inside.wait()  # both requests in flight at once
        return jsonResponse({"OK": True, "Value": dict(request.fields)})

    client = TornadoClient(URL, transport=MockTransport(handler))
    identities = {"a": (DN, "dirac_user", "SetupA"), "b": (DN2, "dirac_prod", "SetupB")}

    def work(name):
        dn, group, setup = identities[name]
        ThreadConfig().setID(dn, group)
        ThreadConfig().setSetup(setup)
        for _ in range(3):
            fields = client.echo(name)["Value"]
            seen.setdefault(name, []).append((fields["args"], fields["extraCredentials"], fields["clientSetup"]))

    threads = [threading.Thread(target=work, args=(name,)) for name in identities]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert seen == {
        "a": [('["a"]', f'["{DN}", "dirac_user"]', "SetupA")] * 3,
        "b": [('["b"]', f'["{DN2}", "dirac_prod"]', "SetupB")] * 3,
    }
    assert ThreadConfig().getID() == (False, False)


def test_client_class_and_stub_replay_keep_the_identity(threadConfig):
    transport = MockTransport(ok)
    setDefaultTransport(transport)
    threadConfig.setDN(DN)
    result = Client(url=URL).whoami()
    threadConfig.reset()
    executeRPCStub(result["rpcStub"])  # replayed by a thread acting for nobody
    TransferClient(URL).ping()
    assert [extra(r) for r in transport.requests] == [f'["{DN}", "dirac_user"]'] * 2 + [None]


# ---------------------------------------------------------------- AsyncTornadoClient
def test_async_client_carries_the_awaiting_tasks_identity():
    inside = threading.Barrier(2, timeout=WAIT)

    def handler(request):
        fields = dict(request.fields)
        if fields["method"] == "meet":
            inside.wait()  # both tasks' calls in worker threads at the same time
        return jsonResponse({"OK": True, "Value": fields.get("extraCredentials")})

    client = AsyncTornadoClient(URL, transport=MockTransport(handler))

    async def actAs(dn, group):
        ThreadConfig().setID(dn, group)  # this task's context only
        return await client.meet(), await client.echo()

    async def nobody():
        return await client.echo()

    async def main():
        ThreadConfig().setID("/CN=loop", "loop_group")  # the loop's own identity: children inherit it, siblings' sets do not leak
        both = await asyncio.gather(actAs(DN, "dirac_user"), actAs(DN2, "dirac_prod"))
        inherited = await client.echo()
        ThreadConfig().reset()
        return both, inherited, await nobody()

    both, inherited, anonymous = asyncio.run(main())
    assert [[r["Value"] for r in pair] for pair in both] == [
        [f'["{DN}", "dirac_user"]'] * 2,
        [f'["{DN2}", "dirac_prod"]'] * 2,
    ]
    assert inherited["Value"] == '["/CN=loop", "loop_group"]'
    assert anonymous["Value"] is None
    # the worker threads kept nothing of the identities they ran under
    workers = [_getExecutor().submit(lambda: ThreadConfig().dump()) for _ in range(4)]
    assert [w.result(WAIT) for w in workers] == [(False, False, False)] * 4
