"""PathFinder: DIRAC 9 layout, the old <Instance> layout behind /DIRAC/Setup, URL normalisation and lists."""
from __future__ import annotations

import random

import pytest

from TornadoServices.ConfigurationSystem.Client import PathFinder
from TornadoServices.ConfigurationSystem.Client.Config import gConfig

DIRAC9 = """
Systems
{
  Tornado
  {
    Port = 9443
  }
  Framework
  {
    Services
    {
      Dummy
      {
        Protocol = https
      }
    }
    URLs
    {
      Dummy = https://a.example.org:8443/Framework/Dummy, https://b.example.org/Framework/Dummy
      Dummy += https://a.example.org:8443/Framework/Dummy
      NoPath = https://c.example.org:8443, http://d.example.org
      Main = https://$MAINSERVERS$:8443/Framework/Main, https://extra.example.org:8443/Framework/Main
      Mixed = dips://old.example.org/Framework/Mixed, dips://old.example.org:9135/Framework/Mixed
      Mixed += ftp://x.example.org/Framework/Mixed, https://new.example.org/Framework/Mixed
    }
    FailoverURLs
    {
      Dummy = https://failover.example.org:8443/Framework/Dummy, https://a.example.org:8443/Framework/Dummy
    }
  }
}
Operations
{
  Defaults
  {
    MainServers = m1.example.org, m2.example.org, m1.example.org
  }
}
"""

OLD_LAYOUT = """
DIRAC
{
  Setup = Production
  Setups
  {
    Production
    {
      Framework = FrameworkProd
      Tornado = TornadoProd
    }
  }
}
Systems
{
  Framework
  {
    FrameworkProd
    {
      URLs
      {
        Dummy = https://old.example.org:8443/Framework/Dummy
        Main = https://$MAINSERVERS$/Framework/Main
      }
    }
  }
  Tornado
  {
    TornadoProd
    {
      Port = 7443
    }
  }
}
Operations
{
  Defaults
  {
    MainServers = default.example.org
  }
  Production
  {
    MainServers = prod.example.org
  }
}
"""


@pytest.fixture()
def dirac9():
    gConfig.reset()
    assert gConfig.loadCFGFromString(DIRAC9)["OK"]
    yield
    gConfig.reset()


@pytest.fixture()
def oldLayout():
    gConfig.reset()
    assert gConfig.loadCFGFromString(OLD_LAYOUT)["OK"]
    yield
    gConfig.reset()


def test_dirac9_sections(dirac9):
    assert PathFinder.getSystemInstance("Framework") == ""
    assert PathFinder.getSystemSection("Framework") == "/Systems/Framework"
    assert PathFinder.getSystemSection("Framework/Dummy") == "/Systems/Framework"
    assert PathFinder.getServiceSection("Framework/Dummy") == "/Systems/Framework/Services/Dummy"
    assert PathFinder.getServiceSection("Framework", "Dummy") == "/Systems/Framework/Services/Dummy"
    assert PathFinder.getAPISection("Framework/Auth") == "/Systems/Framework/APIs/Auth"
    assert PathFinder.getAgentSection("WorkloadManagement/Optimizer") == "/Systems/WorkloadManagement/Agents/Optimizer"
    assert PathFinder.getExecutorSection("WMS/JobPath") == "/Systems/WMS/Executors/JobPath"
    assert PathFinder.getDatabaseSection("Framework/ProxyDB") == "/Systems/Framework/Databases/ProxyDB"
    assert PathFinder.getSystemURLSection("Framework") == "/Systems/Framework/URLs"
    assert gConfig.getValue(f"{PathFinder.getServiceSection('Framework/Dummy')}/Protocol") == "https"


def test_tornado_port(dirac9):
    assert PathFinder.getTornadoPort() == 9443
    gConfig.reset()
    assert PathFinder.getTornadoPort() == 8443


def test_old_layout_only_with_setup(oldLayout):
    assert PathFinder.getSetup() == "Production"
    assert PathFinder.getSystemInstance("Framework") == "FrameworkProd"
    assert PathFinder.getServiceSection("Framework/Dummy") == "/Systems/Framework/FrameworkProd/Services/Dummy"
    assert PathFinder.getSystemURLSection("Framework") == "/Systems/Framework/FrameworkProd/URLs"
    assert PathFinder.getTornadoPort() == 7443
    assert PathFinder.getServiceURLs("Framework/Dummy") == ["https://old.example.org:8443/Framework/Dummy"]
    # A system without an instance under the setup falls back to the DIRAC 9 layout.
    assert PathFinder.getServiceSection("Monitoring/Mon") == "/Systems/Monitoring/Services/Mon"


def test_old_layout_main_servers_prefer_setup_operations(oldLayout):
    assert PathFinder.getServiceURLs("Framework/Main") == ["https://prod.example.org:443/Framework/Main"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Framework/Dummy", ("Framework", "Dummy")),
        ("/Framework/Dummy/", ("Framework", "Dummy")),
        (" A / B ", ("A", "B")),
    ],
)
def test_divide_full_name(name, expected):
    assert PathFinder.divideFullName(name) == expected
    assert PathFinder.checkComponentName(name) == "/".join(expected)


@pytest.mark.parametrize("name", ["Framework", "Framework/Dummy/Extra", "", "/"])
def test_bad_component_names(name):
    with pytest.raises(RuntimeError, match="System/Component"):
        PathFinder.divideFullName(name)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h.example.org/Framework/Dummy", "https://h.example.org:443/Framework/Dummy"),
        ("http://h.example.org/Framework/Dummy", "http://h.example.org:80/Framework/Dummy"),
        ("https://h.example.org:8443", "https://h.example.org:8443/Framework/Dummy"),
        ("https://h.example.org:8443/", "https://h.example.org:8443/Framework/Dummy"),
        ("https://H.Example.ORG:8443/Framework/Dummy/", "https://h.example.org:8443/Framework/Dummy"),
        ("dips://h.example.org:9135/Framework/Dummy", "dips://h.example.org:9135/Framework/Dummy"),
        ("https://[::1]/Framework/Dummy", "https://[::1]:443/Framework/Dummy"),
        ("  https://h.example.org:8443/Framework/Other  ", "https://h.example.org:8443/Framework/Other"),
    ],
)
def test_url_normalisation(url, expected):
    assert PathFinder.checkComponentURL(url, "Framework", "Dummy") == expected


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("dips://h.example.org/Framework/Dummy", "port"),
        ("ftp://h.example.org/x", "scheme"),
        ("https://h.example.org:notaport/x", "invalid"),
        ("https:///Framework/Dummy", "host"),
    ],
)
def test_invalid_urls(url, words):
    with pytest.raises(RuntimeError, match=words):
        PathFinder.checkComponentURL(url, "Framework", "Dummy")


def test_path_mandatory_without_component():
    with pytest.raises(RuntimeError, match="path"):
        PathFinder.checkComponentURL("https://h.example.org:8443", pathMandatory=True)
    assert PathFinder.checkComponentURL("https://h.example.org:8443") == "https://h.example.org:8443"


def test_service_urls_normalised_and_deduplicated(dirac9):
    urls = PathFinder.getServiceURLs("Framework/Dummy")
    assert sorted(urls) == ["https://a.example.org:8443/Framework/Dummy", "https://b.example.org:443/Framework/Dummy"]
    assert sorted(PathFinder.getServiceURLs("Framework/NoPath")) == [
        "http://d.example.org:80/Framework/NoPath",
        "https://c.example.org:8443/Framework/NoPath",
    ]
    assert PathFinder.getServiceURLs("Framework/Unknown") == []
    assert PathFinder.getServiceURL("Framework/Unknown") == ""


def test_service_urls_are_shuffled(dirac9):
    random.seed(1)
    orders = {tuple(PathFinder.getServiceURLs("Framework/Dummy")) for _ in range(60)}
    assert len(orders) == 2


def test_failover_urls_come_after_main_ones(dirac9):
    for _ in range(10):
        urls = PathFinder.getServiceURLs("Framework/Dummy", failover=True)
        assert len(urls) == 3
        assert urls[-1] == "https://failover.example.org:8443/Framework/Dummy"
    assert sorted(PathFinder.getServiceFailoverURLs("Framework/Dummy")) == [
        "https://a.example.org:8443/Framework/Dummy",
        "https://failover.example.org:8443/Framework/Dummy",
    ]
    assert PathFinder.getServiceURLs("Framework", "Dummy", True)[-1].startswith("https://failover")


def test_main_servers_expansion(dirac9):
    urls = PathFinder.getServiceURLs("Framework/Main")
    assert sorted(urls) == [
        "https://extra.example.org:8443/Framework/Main",
        "https://m1.example.org:8443/Framework/Main",
        "https://m2.example.org:8443/Framework/Main",
    ]


def test_main_servers_missing_skips_the_entry(dirac9):
    gConfig.removeOption("/Operations/Defaults/MainServers")
    assert PathFinder.getServiceURLs("Framework/Main") == ["https://extra.example.org:8443/Framework/Main"]


def test_invalid_entries_are_skipped(dirac9):
    assert sorted(PathFinder.getServiceURLs("Framework/Mixed")) == [
        "dips://old.example.org:9135/Framework/Mixed",
        "https://new.example.org:443/Framework/Mixed",
    ]


def test_url_cache_follows_configuration_changes(dirac9):
    assert len(PathFinder.getServiceURLs("Framework/Dummy")) == 2
    gConfig.setOptionValue("/Systems/Framework/URLs/Dummy", "https://only.example.org:8443/Framework/Dummy")
    assert PathFinder.getServiceURLs("Framework/Dummy") == ["https://only.example.org:8443/Framework/Dummy"]
    assert PathFinder.getServiceURL("Framework/Dummy") == "https://only.example.org:8443/Framework/Dummy"


def test_gateways(dirac9):
    assert PathFinder.getGatewayURLs() == []
    gConfig.setOptionValue("/LocalSite/Site", "LCG.Example.org")
    assert PathFinder.getGatewayURLs() == []
    gConfig.setOptionValue("/DIRAC/Gateways/LCG.Example.org", "https://gw1.example.org:8443, https://gw2.example.org")
    assert sorted(PathFinder.getGatewayURLs()) == ["https://gw1.example.org:8443", "https://gw2.example.org"]
    assert sorted(PathFinder.getGatewayURLs("Framework", "Dummy")) == [
        "https://gw1.example.org:8443/Framework/Dummy",
        "https://gw2.example.org:443/Framework/Dummy",
    ]


def test_setups_section_alone_does_not_select_the_old_layout():
    gConfig.reset()
    gConfig.loadCFGFromString(OLD_LAYOUT.replace("  Setup = Production\n", ""))
    try:
        assert PathFinder.getSetup() == ""
        assert PathFinder.getServiceSection("Framework/Dummy") == "/Systems/Framework/Services/Dummy"
        assert PathFinder.getTornadoPort() == 8443
        assert PathFinder.getServiceURLs("Framework/Dummy") == []
    finally:
        gConfig.reset()
