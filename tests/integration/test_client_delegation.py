"""ThreadConfig delegation against the real server: honoured for a TrustedHost, refused for a user."""
from __future__ import annotations

import asyncio
import errno

import pytest

from TornadoServices.Client.AsyncTornadoClient import AsyncTornadoClient
from TornadoServices.Client.Client import Client
from TornadoServices.Client.private.TornadoBaseClient import resetBannedURLs
from TornadoServices.Client.TornadoClient import TornadoClient
from TornadoServices.Core.DISET.ThreadConfig import ThreadConfig


@pytest.fixture(autouse=True)
def clientEnv(running_server, x509env):
    resetBannedURLs()
    ThreadConfig().reset()
    yield running_server
    ThreadConfig().reset()
    resetBannedURLs()


def test_trusted_host_calls_whoami_for_the_threadconfig_user(pki):
    """The host certificate (TrustedHost in the test Registry) acts for devuser in dirac_admin."""
    hostClient = TornadoClient("Framework/Dummy", useCertificates=True)
    ThreadConfig().setDN(pki.userDN)
    ThreadConfig().setGroup("dirac_admin")
    result = hostClient.whoami()
    assert result["OK"], result
    creds = result["Value"]
    assert (creds["DN"], creds["group"], creds["username"]) == (pki.userDN, "dirac_admin", "devuser")
    assert creds["forwardedBy"] == pki.hostDN
    assert hostClient.adminOnly()["OK"]

    ThreadConfig().setGroup("")  # no group: the default group of the DN, looked up by the client
    creds = Client(url="Framework/Dummy", useCertificates=True).whoami()["Value"]
    assert (creds["DN"], creds["group"]) == (pki.userDN, "dirac_user")

    ThreadConfig().reset()  # the same client object, no delegation any more: the host itself
    creds = hostClient.whoami()["Value"]
    assert creds["DN"] == pki.hostDN and creds.get("extraCredentials") == "hosts"


def test_async_client_delegates_for_the_awaiting_task(pki):
    client = AsyncTornadoClient("Framework/Dummy", useCertificates=True)

    async def actAs(group):
        ThreadConfig().setID(pki.userDN, group)
        return (await client.whoami())["Value"]["group"]

    async def main():
        return await asyncio.gather(actAs("dirac_user"), actAs("dirac_admin"))

    assert asyncio.run(main()) == ["dirac_user", "dirac_admin"]


def test_a_user_certificate_cannot_delegate(pki):
    """The delegation is a request: a proxy (not a TrustedHost) asking for another identity is refused."""
    ThreadConfig().setID(pki.user2DN, "dirac_user")
    result = TornadoClient("Framework/Dummy").whoami()
    assert not result["OK"]
    assert result["Errno"] == errno.EACCES, result
    ThreadConfig().reset()
    creds = TornadoClient("Framework/Dummy").whoami()["Value"]
    assert creds["DN"] == pki.userDN  # the proxy's own identity, without ThreadConfig
