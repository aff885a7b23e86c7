"""HandlerManager: discovery from the CS and handler loading (extension convention, HandlerPath, Module)."""
from __future__ import annotations

import secrets
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import loadCS
from TornadoServices.Server.HandlerManager import HandlerManager, getExtensions
from TornadoServices.Server.TornadoService import TornadoService

HANDLER = '''
from TornadoServices import S_OK
from TornadoServices.Server.TornadoService import TornadoService

class {name}Handler(TornadoService):
    auth_hello = ["all"]
    def export_hello(self):
        return S_OK("{name}")
'''


@pytest.fixture
def extension(tmp_path: Path):
    """A fresh extension package ``Ext<random>`` with a FrameworkSystem.Service package, on sys.path."""
    name = f"Ext{secrets.token_hex(4)}"
    service = tmp_path / name / "FrameworkSystem" / "Service"
    service.mkdir(parents=True)
    for directory in (tmp_path / name, tmp_path / name / "FrameworkSystem", service):
        (directory / "__init__.py").write_text("")

    def write(module: str, text: str) -> None:
        (service / f"{module}.py").write_text(textwrap.dedent(text))

    yield name, str(tmp_path), write
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def configure(extName: str, path: str, services: str, extra: str = "") -> None:
    loadCS(
        f"""
DIRAC
{{
  Extensions = {extName}
  ExtensionsPath = {path}
}}
Systems
{{
  Framework
  {{
    Services
    {{
{textwrap.indent(textwrap.dedent(services), "      ")}
    }}
  }}
{extra}
}}
"""
    )


def test_discovery_keeps_https_services_only(cs, extension):
    name, path, write = extension
    configure(
        name,
        path,
        """
        A
        {
          Protocol = https
        }
        B
        {
          Protocol = dips
        }
        C
        {
          Protocol = HTTPS
        }
        D
        {
        }
        """,
    )
    assert HandlerManager().discoverHandlers()["Value"] == ["Framework/A", "Framework/C"]


def test_extension_convention_and_per_component_subclass(cs, extension):
    name, path, write = extension
    write("AlphaHandler", HANDLER.format(name="Alpha"))
    configure(
        name,
        path,
        """
        Alpha
        {
          Protocol = https
        }
        Beta
        {
          Protocol = https
          Module = Alpha
          Port = 9999
        }
        """,
    )
    result = HandlerManager().loadServicesHandlers()
    assert result["OK"], result
    handlers = result["Value"]
    alpha, beta = handlers["Framework/Alpha"], handlers["Framework/Beta"]
    assert alpha.handlerClass is not beta.handlerClass
    assert alpha.handlerClass.__name__ == "FrameworkAlphaHandler"
    assert beta.handlerClass._fullComponentName == "Framework/Beta"
    assert issubclass(beta.handlerClass, TornadoService)
    assert alpha.port is None and beta.port == 9999
    assert beta.sectionPath == "/Systems/Framework/Services/Beta"
    assert alpha.moduleName == f"{name}.FrameworkSystem.Service.AlphaHandler"


def test_handler_path(cs, extension):
    name, path, write = extension
    write("Whatever", HANDLER.format(name="Whatever").replace("class WhateverHandler", "class Whatever"))
    configure(
        name,
        path,
        f"""
        Custom
        {{
          Protocol = https
          HandlerPath = {name}/FrameworkSystem/Service/Whatever.py
        }}
        """,
    )
    result = HandlerManager().loadServicesHandlers()
    assert result["OK"], result
    assert result["Value"]["Framework/Custom"].moduleName == f"{name}.FrameworkSystem.Service.Whatever"


def test_explicit_list_with_port(cs, extension):
    name, path, write = extension
    write("AlphaHandler", HANDLER.format(name="Alpha"))
    configure(name, path, "")
    result = HandlerManager(["Framework/Alpha:1234", "Framework/Alpha"]).loadServicesHandlers()
    assert result["OK"], result
    assert result["Value"]["Framework/Alpha"].port == 1234


def test_load_group_loads_its_members_instead(cs, extension):
    name, path, write = extension
    for handler in ("Alpha", "Gamma"):
        write(f"{handler}Handler", HANDLER.format(name=handler))
    configure(
        name,
        path,
        """
        Group
        {
          Protocol = https
          Load = Alpha, Framework/Gamma
        }
        Alpha
        {
          Port = 9001
        }
        """,
    )
    manager = HandlerManager()
    assert manager.serviceEntries() == {"OK": True, "Value": ["Framework/Alpha", "Framework/Gamma"]}  # own Port: at load
    result = manager.loadServicesHandlers()
    assert result["OK"], result
    assert sorted(result["Value"]) == ["Framework/Alpha", "Framework/Gamma"]  # the group itself is not a service
    assert result["Value"]["Framework/Alpha"].port == 9001 and result["Value"]["Framework/Gamma"].port is None


def test_load_group_port_applies_to_members_and_groups_nest(cs, extension):
    name, path, write = extension
    for handler in ("Alpha", "Gamma"):
        write(f"{handler}Handler", HANDLER.format(name=handler))
    configure(
        name,
        path,
        """
        Outer
        {
          Protocol = https
          Port = 9100
          Load = Inner
        }
        Inner
        {
          Load = Alpha, Gamma
        }
        Alpha
        {
          Port = 9001
        }
        """,
    )
    assert HandlerManager().serviceEntries()["Value"] == ["Framework/Alpha:9100", "Framework/Gamma:9100"]
    assert HandlerManager(["Framework/Inner:9200"]).serviceEntries()["Value"] == ["Framework/Alpha:9200", "Framework/Gamma:9200"]


def test_load_group_cycle_is_a_clear_error(cs, extension):
    name, path, write = extension
    configure(name, path, "A\n{\n  Protocol = https\n  Load = B\n}\nB\n{\n  Load = A\n}\n")
    for result in (HandlerManager().serviceEntries(), HandlerManager().loadServicesHandlers()):
        assert not result["OK"]
        assert "Load groups form a cycle: Framework/A -> Framework/B -> Framework/A" in result["Message"]


def test_missing_module_names_what_was_tried(cs, extension):
    name, path, write = extension
    configure(name, path, "Nope\n{\n  Protocol = https\n}\n")
    result = HandlerManager().loadServicesHandlers()
    assert not result["OK"]
    assert "Framework/Nope: no handler module found" in result["Message"]
    assert f"{name}.FrameworkSystem.Service.NopeHandler" in result["Message"]
    assert "TornadoServices.FrameworkSystem.Service.NopeHandler" in result["Message"]


def test_error_inside_a_handler_module_is_reported_with_its_location(cs, extension):
    name, path, write = extension
    write("BrokenHandler", "import no_such_dependency_xyz\n")
    write("SyntaxHandler", "def broken(:\n")
    configure(name, path, "Broken\n{\n  Protocol = https\n}\nSyntax\n{\n  Protocol = https\n}\n")
    result = HandlerManager().loadServicesHandlers()
    assert not result["OK"]
    assert "Framework/Broken: importing" in result["Message"]
    assert "no_such_dependency_xyz" in result["Message"]
    assert "Framework/Syntax: importing" in result["Message"] and "SyntaxError" in result["Message"]


def test_class_must_be_a_tornado_service(cs, extension):
    name, path, write = extension
    write("PlainHandler", "class PlainHandler:\n    pass\n")
    write("EmptyHandler", "x = 1\n")
    configure(name, path, "Plain\n{\n  Protocol = https\n}\nEmpty\n{\n  Protocol = https\n}\n")
    message = HandlerManager().loadServicesHandlers()["Message"]
    assert "is not a TornadoService subclass" in message
    assert "has no class EmptyHandler" in message


def test_bad_entries(cs):
    assert not HandlerManager(["NoSlash"]).loadServicesHandlers()["OK"]
    assert not HandlerManager(["Framework/X:abc"]).loadServicesHandlers()["OK"]


def test_extensions_order(cs):
    cs.setOptionValue("/DIRAC/Extensions", "First, Second")
    assert getExtensions() == ["First", "Second", "TornadoServices"]


def test_missing_extension_path_is_tolerated(cs, extension, tmp_path):
    name, path, write = extension
    write("AlphaHandler", HANDLER.format(name="Alpha"))
    configure(name, f"{path}, {tmp_path / 'missing'}", "Alpha\n{\n  Protocol = https\n}\n")
    assert HandlerManager().loadServicesHandlers()["OK"]


def test_old_layout_with_setup_and_instance(cs, extension):
    name, path, write = extension
    write("AlphaHandler", HANDLER.format(name="Alpha"))
    loadCS(
        f"""
DIRAC
{{
  Setup = MySetup
  Setups
  {{
    MySetup
    {{
      Framework = Production
    }}
  }}
  Extensions = {name}
  ExtensionsPath = {path}
}}
Systems
{{
  Framework
  {{
    Production
    {{
      Services
      {{
        Alpha
        {{
          Protocol = https
        }}
      }}
    }}
  }}
}}
"""
    )
    result = HandlerManager().loadServicesHandlers()
    assert result["OK"], result
    assert result["Value"]["Framework/Alpha"].sectionPath == "/Systems/Framework/Production/Services/Alpha"
