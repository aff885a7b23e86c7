"""The client against the real TornadoServer of tests/conftest.py (``running_server``)."""
from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from TornadoServices.Client.AsyncTornadoClient import AsyncTornadoClient
from TornadoServices.Client.Client import Client, executeRPCStub
from TornadoServices.Client.private.pool import gSessionRegistry
from TornadoServices.Client.private.TornadoBaseClient import getDefaultTransport, resetBannedURLs
from TornadoServices.Client.RPCClientSelector import RPCClientSelector, TransferClientSelector
from TornadoServices.Client.TornadoClient import TornadoClient
from TornadoServices.Client.TransferClient import TransferClient
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.Security import DevPKI
from tests.conftest import PeakRSS, waitFor


@pytest.fixture(autouse=True)
def clientEnv(running_server, x509env):
    resetBannedURLs()
    yield running_server
    resetBannedURLs()


def deadURL() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"https://127.0.0.1:{port}/Framework/Dummy"


# ---------------------------------------------------------------- call forms
def test_tornado_client_by_name_and_by_url(running_server):
    byName = TornadoClient("Framework/Dummy")
    byURL = TornadoClient(running_server.url())
    assert byName.add(2, 3)["Value"] == 5
    assert byURL.echo("hello from DIRAC client")["Value"] == "hello from DIRAC client"
    ping = byName.ping()
    assert ping["OK"] and ping["Value"]["name"] == "Framework/Dummy"
    assert ping["rpcStub"] == (("Framework/Dummy", {"timeout": 600}), "ping", [])


def test_selector_client_execute_rpc_and_stub(running_server):
    assert RPCClientSelector("Framework/Dummy", timeout=30).echo("x")["Value"] == "x"
    assert Client(url="Framework/Dummy").ping()["OK"]
    assert TornadoClient("Framework/Dummy").executeRPC("add", 20, 22)["Value"] == 42
    result = Client(url=running_server.url()).echo({"nested": [1, 2.5, None]})
    assert result["Value"] == {"nested": [1, 2.5, None]}
    replay = executeRPCStub(json.loads(json.dumps(result["rpcStub"])))
    assert replay["Value"] == {"nested": [1, 2.5, None]}


def test_dirac_style_client_class(running_server):
    class DummyClient(Client):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.setServer("Framework/Dummy")

    client = DummyClient()
    assert client.add(1, 1)["Value"] == 2
    assert client.asyncEcho("a", timeout=20)["Value"] == "a"
    assert client.ping(url=running_server.url())["OK"]


def test_identity_with_proxy_host_certificate_and_in_memory_proxy(running_server, pki):
    proxyIdentity = TornadoClient("Framework/Dummy").whoami()["Value"]
    assert proxyIdentity["DN"] == pki.userDN and proxyIdentity["group"] == "dirac_user"
    hostIdentity = TornadoClient("Framework/Dummy", useCertificates=True).whoami()["Value"]
    assert hostIdentity["DN"] == pki.hostDN and hostIdentity.get("extraCredentials") == "hosts"
    assert TornadoClient("Framework/Dummy", useCertificates=True).hostOnly()["OK"]
    admin = TornadoClient("Framework/Dummy", proxyString=open(pki.adminProxy).read()).whoami()["Value"]
    assert admin["group"] == "dirac_admin"


def test_delegation_from_a_trusted_host(running_server, pki):
    result = TornadoClient("Framework/Dummy", useCertificates=True, delegatedDN=pki.userDN).whoami()
    assert result["OK"], result
    assert result["Value"]["DN"] == pki.userDN and result["Value"]["group"] == "dirac_user"


def test_async_client_on_an_event_loop(running_server, monkeypatch):
    wakeUp = threading.Event()
    monkeypatch.setattr(running_server.handlerClass(), "wakeUp", wakeUp)
    client = AsyncTornadoClient("Framework/Dummy")

    async def callsThenWake():
        """Two more calls and then the wake-up, all while the sleeping call is in flight: the loop keeps running."""
        results = [await client.asyncSleep(0.3), await client.add(1, 2), await client.echo("e")]
        wakeUp.set()
        return results

    async def main():
        return await asyncio.gather(client.sleep(30), callsThenWake())

    sleeper, (slept, added, echoed) = asyncio.run(main())
    assert slept["OK"] and added["Value"] == 3 and echoed["Value"] == "e"
    assert sleeper["OK"] and sleeper["Value"]["wokenUp"], "the sleeping call was ended by the loop, not by its 30 s"


def test_large_payload_round_trip(running_server):
    payload = {"blob": "x" * 300_000, "bytes": os.urandom(1000), "list": list(range(5000))}
    assert TornadoClient("Framework/Dummy").echo(payload)["Value"] == payload


# ---------------------------------------------------------------- errors from the server
def test_unknown_method_is_enosys(running_server):
    result = TornadoClient("Framework/Dummy").noSuchMethod()
    assert result["Errno"] == errno.ENOSYS
    assert "noSuchMethod is not implemented by" in result["Message"]


def test_not_authorised_is_eacces_with_servers_reason(running_server):
    result = TornadoClient("Framework/Dummy").adminOnly()
    assert result["Errno"] == errno.EACCES
    assert result["Message"].startswith(f"Permission denied ( 13 : No access to {running_server.url()}: ")
    assert "adminOnly" in result["Message"]


def test_unknown_service_is_not_found(running_server):
    result = TornadoClient(running_server.url("Framework/Nope")).ping()
    assert not result["OK"] and f"{running_server.url('Framework/Nope')} is not found" in result["Message"]


def test_handler_exception_keeps_the_servers_message(running_server):
    result = TornadoClient("Framework/Dummy").raiseError("kaboom")
    assert not result["OK"]
    assert result["Message"].startswith(f"HTTP 500 Internal Server Error from {running_server.url()} calling raiseError")
    assert "kaboom" in result["Message"]


def test_wrong_arguments_and_application_errors(running_server):
    wrong = TornadoClient("Framework/Dummy").add("a", 1)
    assert not wrong["OK"] and "HTTP 400" in wrong["Message"]
    failed = TornadoClient("Framework/Dummy").fail("boom")
    assert (failed["OK"], failed["Message"]) == (False, "boom")


def test_untrusted_server_when_trusting_another_ca(running_server, monkeypatch, tmp_path):
    other = str(tmp_path / "other-cas")
    DevPKI.writeCADirectory(other, [DevPKI.CertificateAuthority("/CN=Another CA", keyType="ec")], withCRL=False)
    gConfig.setOptionValue("/DIRAC/Security/CALocation", other)
    result = TornadoClient("Framework/Dummy").ping()
    assert not result["OK"] and "is not trusted" in result["Message"] and other in result["Message"]


def test_certificate_from_unknown_ca_is_rejected_by_the_server(running_server, tmp_path):
    strangerCA = DevPKI.CertificateAuthority("/DC=org/DC=elsewhere/CN=Stranger CA", keyType="ec")
    proxy = DevPKI.makeProxy(strangerCA.issueUser("intruder", keyType="ec"), keyType="ec")
    path = proxy.writeProxyFile(str(tmp_path / "intruder.pem"))
    before = running_server.stats.handshakeFailures
    for _ in range(5):
        result = TornadoClient("Framework/Dummy", proxyLocation=path).ping()
        assert not result["OK"] and "rejected our certificate" in result["Message"], result["Message"]
        assert "UNKNOWN_CA" in result["Message"]
    waitFor(lambda: running_server.stats.handshakeFailures >= before + 5, "the server to count 5 refused handshakes")


def test_environment_ca_bundle_does_not_replace_our_ca(running_server, monkeypatch, tmp_path):
    bogus = tmp_path / "bundle.pem"
    bogus.write_bytes(DevPKI.CertificateAuthority("/CN=Bogus", keyType="ec").certPEM())
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, str(bogus))
    assert TornadoClient("Framework/Dummy").ping()["OK"]


# ---------------------------------------------------------------- failover and timeouts
def test_failover_from_dead_url_to_live_one(running_server):
    assert TornadoClient(f"{deadURL()},{running_server.url()}").add(1, 2)["Value"] == 3
    resetBannedURLs()
    gConfig.setOptionValue("/Systems/Framework/URLs/Dummy", f"{deadURL()},{running_server.url()}")
    for _ in range(4):
        resetBannedURLs()
        assert TornadoClient("Framework/Dummy").add(2, 2)["Value"] == 4


class CountingEvent(threading.Event):
    """The Dummy handler's wake-up event, counting the sleeping calls that wait on it (``started``: one did)."""

    def __init__(self):
        super().__init__()
        self.waits = 0
        self.started = threading.Event()

    def wait(self, timeout=None):
        self.waits += 1
        self.started.set()
        return super().wait(timeout)


def test_timed_out_call_is_not_resent(running_server, monkeypatch):
    handler = running_server.handlerClass()
    wakeUp = CountingEvent()
    monkeypatch.setattr(handler, "wakeUp", wakeUp)
    urls = [running_server.url(), running_server.url().replace("127.0.0.1", "localhost")]
    for url in urls:  # warm: the timed call only writes to an open connection, it cannot fail to be sent
        assert TornadoClient(url).ping()["OK"]
    posts = []

    class CountingTransport:
        """The process-wide transport, noting every URL a request is sent to."""

        def post(self, url, *args, **kwargs):
            posts.append(url)
            return getDefaultTransport().post(url, *args, **kwargs)

    client = TornadoClient(",".join(urls), timeout=1, transport=CountingTransport())
    try:
        result = client.sleep(30)
        assert not result["OK"] and result["Errno"] == errno.ETIMEDOUT
        assert "may or may not have been executed" in result["Message"]
        assert len(posts) == 1, f"the timed-out call was sent once, not resent to the other URL: {posts}"
        assert wakeUp.started.wait(60), "the timed-out call never reached the handler"
    finally:
        wakeUp.set()
    assert wakeUp.waits == 1, "the timed-out call ran exactly once, on one server"


# ---------------------------------------------------------------- connections
def test_sequential_fresh_clients_use_one_tls_connection(running_server):
    gSessionRegistry.closeAll()
    time.sleep(0.1)
    before = running_server.stats.connectionsAccepted
    for _ in range(50):
        assert Client(url="Framework/Dummy").ping()["OK"]
    assert running_server.stats.connectionsAccepted - before == 1


def test_sixteen_threads_sharing_clients(running_server):
    gSessionRegistry.closeAll()
    time.sleep(0.1)
    before = running_server.stats.connectionsAccepted
    shared = TornadoClient("Framework/Dummy")
    failures = []

    def work(n):
        for i in range(20):
            client = shared if i % 2 else Client(url="Framework/Dummy")
            value = f"{n}:{i}"
            result = client.echo(value)
            if result.get("Value") != value:
                failures.append(result)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert running_server.stats.connectionsAccepted - before <= 16


# ---------------------------------------------------------------- transfers
TRANSFER_SIZE = 1 << 30


def _pattern(size: int) -> bytes:
    return (bytes(range(256)) * 256)[:size]


def test_small_transfers_both_ways(running_server, tmp_path):
    client = TransferClientSelector("Framework/Dummy")
    dest = tmp_path / "small.bin"
    assert client.receiveFile(str(dest), 300_001)["OK"]
    assert dest.stat().st_size == 300_001 and dest.read_bytes()[:256] == bytes(range(256))
    error = client.receiveFile(str(tmp_path / "error.bin"), -1)
    assert not error["OK"] and "size must be 0 or more" in error["Message"]
    assert not (tmp_path / "error.bin").exists()
    source = tmp_path / "up.bin"
    source.write_bytes(b"0123456789" * 1000)
    sent = client.sendFile(str(source), "up-1")
    assert sent["Value"] == {"fileID": "up-1", "size": 10000,
                             "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    denied = TransferClient("Framework/Dummy", proxyLocation=running_server.pki.proxy,
                            extraCredentials=["/CN=x", "g"]).sendFile(str(source), "up-2")
    assert not denied["OK"] and denied["Errno"] == errno.EACCES


@pytest.mark.slow
def test_one_gib_download_in_bounded_memory(running_server, tmp_path):
    dest = tmp_path / "big-download.bin"
    with PeakRSS() as rss:
        result = TransferClient("Framework/Dummy", timeout=60).receiveFile(str(dest), TRANSFER_SIZE)
    assert result["OK"], result
    assert dest.stat().st_size == TRANSFER_SIZE
    with open(dest, "rb") as handle:
        handle.seek(TRANSFER_SIZE - 65536)
        assert handle.read() == _pattern(65536)
    assert rss.growthMiB < 128, f"memory grew by {rss.growthMiB:.0f} MiB during a 1 GiB download"


@pytest.mark.slow
def test_one_gib_upload_in_bounded_memory(running_server, tmp_path):
    source = tmp_path / "big-upload.bin"
    with open(source, "wb") as handle:
        handle.truncate(TRANSFER_SIZE)
    with PeakRSS() as rss:
        result = TransferClient("Framework/Dummy", timeout=60).sendFile(str(source), "big")
    assert result["OK"], result
    assert result["Value"]["size"] == TRANSFER_SIZE
    assert rss.growthMiB < 128, f"memory grew by {rss.growthMiB:.0f} MiB during a 1 GiB upload"


# ---------------------------------------------------------------- CLI
def _cli(running_server, *args):
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "TornadoServices.scripts.tornado_rpc", "--cfg", running_server.cfgFile, *args],
        capture_output=True, text=True, env=env, timeout=60,
    )


def test_cli_against_the_server(running_server):
    done = _cli(running_server, "Framework/Dummy", "add", "2", "3")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"OK": True, "Value": 5}
    failed = _cli(running_server, "Framework/Dummy", "fail", "went wrong")
    assert failed.returncode == 1 and json.loads(failed.stdout)["Message"] == "went wrong"
    usage = _cli(running_server, "Framework/Dummy")
    assert usage.returncode == 2
