"""createClient: methods generated from a handler's source, read with ast and never imported."""
from __future__ import annotations

import inspect
import logging
import sys
import textwrap
import uuid
from urllib.parse import urlencode

import pytest

from TornadoServices.Client.Client import Client, createClient
from TornadoServices.Client.private.TornadoBaseClient import setDefaultTransport
from TornadoServices.Client.private.transport import MockTransport, jsonResponse
from TornadoServices.ConfigurationSystem.Client.Config import gConfig

URL = "https://localhost:8443/Framework/Widget"

HANDLER = '''
"""A handler that must never be imported by createClient: importing it fails."""
raise RuntimeError("createClient imported the handler module")

from TornadoServices.Server.TornadoService import TornadoService

DEFAULT_FIELDS = ("name", "size")


class WidgetHandlerMixin:
    def export_fromMixin(self, item):
        """Defined in a mixin of the same module."""


class WidgetHandler(WidgetHandlerMixin, TornadoService):
    types_add = [int, int]

    def export_add(self, a: int, b: int) -> dict:
        """Add two numbers.

        :param int a: first
        :param int b: second
        """

    async def export_asyncEcho(self, value):
        """Echo ``value``, awaited on the event loop."""

    def export_search(self, pattern, limit=10, options=None, fields=DEFAULT_FIELDS):
        """Search widgets."""

    def export_getStatus(self):
        """The service's status."""

    def export_noDoc(self, *names):
        pass

    def notExported(self):
        """A helper of the handler."""


class OtherHandler(TornadoService):
    def export_other(self):
        """Another service in the same file: not this client's."""
'''


def writeExtension(root, name: str) -> None:
    service = root / name / "FrameworkSystem" / "Service"
    service.mkdir(parents=True)
    for package in (root / name, root / name / "FrameworkSystem", service):
        (package / "__init__.py").write_text('raise RuntimeError("createClient imported a package")\n')
    (service / "WidgetHandler.py").write_text(textwrap.dedent(HANDLER))


@pytest.fixture
def extension(mockClientEnvironment, tmp_path, monkeypatch):
    """An extension package on sys.path holding FrameworkSystem/Service/WidgetHandler.py, named in /DIRAC/Extensions."""
    name = f"CreateClientExt{uuid.uuid4().hex[:8]}"
    writeExtension(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert gConfig.loadCFGFromString(f"DIRAC\n{{\n  Extensions = {name}\n}}\n")["OK"]
    yield name
    assert not [module for module in sys.modules if module.startswith(name)], "the handler package was imported"


@pytest.fixture
def transport():
    transport = MockTransport(lambda request: jsonResponse({"OK": True, "Value": dict(request.fields)["method"]}))
    setDefaultTransport(transport)
    return transport


def makeClient():
    @createClient("Framework/Widget")
    class WidgetClient(Client):
        """A client of Framework/Widget."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.setServer(URL)

        def getStatus(self):
            return "defined by the client"

    return WidgetClient


def test_generated_methods_signatures_and_docstrings(extension):
    WidgetClient = makeClient()
    generated = {"add", "asyncEcho", "search", "noDoc", "fromMixin"}
    assert generated <= set(vars(WidgetClient))
    assert "notExported" not in vars(WidgetClient) and "other" not in vars(WidgetClient)

    add = WidgetClient.add
    assert str(inspect.signature(add)) == "(self, a: int, b: int, /, **kwargs)"
    assert add.__doc__.startswith("Add two numbers.\n\n:param int a: first\n:param int b: second\n")
    assert f"{extension}.FrameworkSystem.Service.WidgetHandler.WidgetHandler.export_add" in add.__doc__
    assert "[int, int]" in add.__doc__  # the types_ the service checks
    assert add.__name__ == "add" and add.__qualname__.endswith("WidgetClient.add")

    assert str(inspect.signature(WidgetClient.search)) == (
        "(self, pattern, limit=10, options=None, fields=DEFAULT_FIELDS, /, **kwargs)"
    )
    assert inspect.signature(WidgetClient.search).parameters["limit"].default == 10
    assert WidgetClient.asyncEcho.__doc__.startswith("Echo ``value``, awaited on the event loop.")
    assert str(inspect.signature(WidgetClient.noDoc)) == "(self, /, *names, **kwargs)"
    assert WidgetClient.noDoc.__doc__.startswith("Remote call of ")
    assert WidgetClient.fromMixin.__doc__.startswith("Defined in a mixin of the same module.")
    assert str(inspect.signature(WidgetClient().add)) == "(a: int, b: int, /, **kwargs)"


def test_methods_defined_on_the_class_are_kept(extension, transport):
    WidgetClient = makeClient()
    assert WidgetClient().getStatus() == "defined by the client"
    assert WidgetClient.__doc__ == "A client of Framework/Widget."
    assert transport.requests == []


def test_a_generated_method_sends_the_rpc(extension, transport):
    client = makeClient()()
    result = client.search("w*", 5)
    assert result["OK"] and result["Value"] == "search"
    assert result["rpcStub"][1:] == ("search", ["w*", 5])
    assert client.asyncEcho({"k": [1]}, timeout=7)["Value"] == "asyncEcho"
    assert client.add(1, 2, url="https://otherhost:8443/Framework/Widget")["OK"]
    sent = [(r.url, urlencode(r.fields)) for r in transport.requests]
    assert sent == [
        (URL, "method=search&args=%5B%22w%2A%22%2C+5%5D&clientVO=unknown&clientSetup=None"),
        (URL, "method=asyncEcho&args=%5B%7B%22k%22%3A+%5B1%5D%7D%5D&clientVO=unknown&clientSetup=None"),
        ("https://otherhost:8443/Framework/Widget", "method=add&args=%5B1%2C+2%5D&clientVO=unknown&clientSetup=None"),
    ]
    assert transport.requests[1].timeout.read == 7
    refused = client.add(1, b=2)
    assert not refused["OK"] and "positional arguments only" in refused["Message"]


def test_extensions_path_is_searched_without_sys_path(mockClientEnvironment, tmp_path, transport):
    name = f"CreateClientExt{uuid.uuid4().hex[:8]}"
    writeExtension(tmp_path, name)
    assert str(tmp_path) not in sys.path
    assert gConfig.loadCFGFromString(
        f"DIRAC\n{{\n  Extensions = {name}\n  ExtensionsPath = {tmp_path}\n}}\n"
    )["OK"]
    WidgetClient = makeClient()
    assert WidgetClient.add.__doc__.startswith("Add two numbers.")
    assert WidgetClient().add(1, 2)["Value"] == "add"
    assert not [module for module in sys.modules if module.startswith(name)]


def test_handler_not_found_leaves_the_class_unchanged(mockClientEnvironment, transport, caplog):
    caplog.set_level(logging.DEBUG, logger="TornadoServices")

    class NoSourceClient(Client):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.setServer(URL)

    before = dict(vars(NoSourceClient))
    assert createClient("Framework/NoSuchService")(NoSourceClient) is NoSourceClient
    assert dict(vars(NoSourceClient)) == before
    assert NoSourceClient().anything(1)["Value"] == "anything"  # attribute calls still work
    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.DEBUG]
    assert any(
        "createClient(Framework/NoSuchService)" in message
        and "TornadoServices.FrameworkSystem.Service.NoSuchServiceHandler" in message
        for message in messages
    ), messages


def test_service_name_must_be_system_slash_service():
    for bad in ("Framework", "", "Framework/", "a/b/c"):
        with pytest.raises(ValueError, match="System/Service"):
            createClient(bad)
