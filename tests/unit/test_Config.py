"""gConfig: typed reads (spec 6.1), CFG and YAML loading, error messages, caching and invalidation."""
from __future__ import annotations

import re
import threading

import pytest
from diraccfg import CFG

from TornadoServices.ConfigurationSystem.Client.Config import ConfigurationClient, gConfig
from TornadoServices.ConfigurationSystem.Client.ConfigurationData import ConfigurationData

SAMPLE = """
# The DIRAC section
DIRAC
{
  VirtualOrganization = tornadovo
  Hosts = h1.example.org, , h2.example.org,
  Hosts += h3.example.org
  Enabled = Yes
  Disabled = no
  Port = 9135
  Ratio = 0.25
  BadInt = 12abc
  Mapping = k1:v1, k2, k3 : v:3
  Empty =
  Equation = a=b=c
  Security
  {
    UseServerCertificate = true
  }
}
Systems
{
  Framework
  {
    Services
    {
      Dummy
      {
        Protocol = https
      }
    }
  }
}
"""


@pytest.fixture()
def cfg():
    gConfig.reset()
    result = gConfig.loadCFGFromString(SAMPLE)
    assert result["OK"], result
    yield gConfig
    gConfig.reset()


def test_raw_string_when_default_is_none(cfg):
    assert cfg.getValue("/DIRAC/VirtualOrganization") == "tornadovo"
    assert cfg.getValue("/DIRAC/Equation") == "a=b=c"
    assert cfg.getValue("/DIRAC/Empty") == ""
    assert cfg.getValue("/DIRAC/Missing") is None


def test_list_tuple_set_split_on_commas_dropping_empties(cfg):
    assert cfg.getValue("/DIRAC/Hosts", []) == ["h1.example.org", "h2.example.org", "h3.example.org"]
    assert cfg.getValue("/DIRAC/Hosts", ()) == ("h1.example.org", "h2.example.org", "h3.example.org")
    assert cfg.getValue("/DIRAC/Hosts", set()) == {"h1.example.org", "h2.example.org", "h3.example.org"}
    assert cfg.getValue("/DIRAC/Empty", ["x"]) == []
    assert cfg.getValue("/DIRAC/Missing", ["x"]) == ["x"]


def test_returned_lists_are_private_copies(cfg):
    first = cfg.getValue("/DIRAC/Hosts", [])
    first.append("intruder")
    assert cfg.getValue("/DIRAC/Hosts", []) == ["h1.example.org", "h2.example.org", "h3.example.org"]
    mapping = cfg.getValue("/DIRAC/Mapping", {})
    mapping["k1"] = "changed"
    assert cfg.getValue("/DIRAC/Mapping", {})["k1"] == "v1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("y", True), ("Yes", True), ("TRUE", True), ("1", True), ("no", False), ("on", False), ("0", False), ("", False)],
)
def test_bool_conversion(text, expected):
    gConfig.reset()
    gConfig.setOptionValue("/A/Flag", text)
    assert gConfig.getValue("/A/Flag", not expected) is expected
    gConfig.reset()


def test_int_float_with_fallback_to_default(cfg):
    assert cfg.getValue("/DIRAC/Port", 0) == 9135
    assert cfg.getValue("/DIRAC/Ratio", 1.0) == 0.25
    assert cfg.getValue("/DIRAC/BadInt", 7) == 7
    assert cfg.getValue("/DIRAC/Ratio", 7) == 7
    assert cfg.getValue("/DIRAC/Missing", 3) == 3


def test_dict_conversion(cfg):
    assert cfg.getValue("/DIRAC/Mapping", {}) == {"k1": "v1", "k2": True, "k3": "v:3"}


def test_paths_ignore_empty_components_and_sections_are_not_options(cfg):
    assert cfg.getValue("DIRAC//Security///UseServerCertificate/", False) is True
    assert cfg.getValue("/DIRAC/Security", "default") == "default"
    assert cfg.getValue("/DIRAC/Port/Deeper", "default") == "default"


def test_getOption_s_ok_and_s_error(cfg):
    assert cfg.getOption("/DIRAC/Port") == {"OK": True, "Value": "9135"}
    assert cfg.getOption("/DIRAC/Port", int)["Value"] == 9135
    assert cfg.getOption("/DIRAC/Hosts", [])["Value"] == ["h1.example.org", "h2.example.org", "h3.example.org"]
    bad = cfg.getOption("/DIRAC/BadInt", 0)
    assert not bad["OK"] and "12abc" in bad["Message"]
    missing = cfg.getOption("/DIRAC/Nope")
    assert not missing["OK"] and "/DIRAC/Nope" in missing["Message"]


def test_sections_options_and_dicts(cfg):
    assert cfg.getSections("/")["Value"] == ["DIRAC", "Systems"]
    assert cfg.getSections("/DIRAC")["Value"] == ["Security"]
    assert "Port" in cfg.getOptions("/DIRAC")["Value"]
    assert "Security" not in cfg.getOptions("/DIRAC")["Value"]
    assert cfg.getOptionsDict("/DIRAC/Security")["Value"] == {"UseServerCertificate": "true"}
    assert not cfg.getSections("/DIRAC/Port")["OK"]
    assert not cfg.getOptionsDict("/Nowhere")["OK"]
    tree = cfg.getOptionsDictRecursively("/Systems")["Value"]
    assert tree == {"Framework": {"Services": {"Dummy": {"Protocol": "https"}}}}
    tree["Framework"]["Services"] = {}
    assert cfg.getValue("/Systems/Framework/Services/Dummy/Protocol") == "https"


def test_configuration_tree_with_filters(cfg):
    tree = cfg.getConfigurationTree("/Systems")["Value"]
    assert tree["/Systems/Framework/Services/Dummy"] is None
    assert tree["/Systems/Framework/Services/Dummy/Protocol"] == "https"
    filtered = cfg.getConfigurationTree("/DIRAC", "Security")["Value"]
    assert filtered == {"/DIRAC/Security": None, "/DIRAC/Security/UseServerCertificate": "true"}


def test_later_loads_override_and_merge(cfg):
    assert cfg.loadCFGFromString("DIRAC\n{\n  Port = 1\n  New = x\n}\n")["OK"]
    assert cfg.getValue("/DIRAC/Port", 0) == 1
    assert cfg.getValue("/DIRAC/New") == "x"
    assert cfg.getValue("/DIRAC/VirtualOrganization") == "tornadovo"


def test_set_and_remove_option_invalidate_cached_reads(cfg):
    assert cfg.getValue("/DIRAC/Port", 0) == 9135
    generation = cfg.generation
    assert cfg.setOptionValue("/DIRAC/Port", 443)["OK"]
    assert cfg.generation > generation
    assert cfg.getValue("/DIRAC/Port", 0) == 443
    refused = cfg.setOptionValue("/DIRAC/Port/Sub", "x")
    assert not refused["OK"] and "Port" in refused["Message"]
    assert cfg.setOptionValue("/New/Deep/List", ["a", "b"])["OK"]
    assert cfg.getValue("/New/Deep/List", []) == ["a", "b"]
    assert cfg.removeOption("/DIRAC/Port")["Value"] is True
    assert cfg.getValue("/DIRAC/Port", 0) == 0
    assert cfg.removeOption("/DIRAC/Port")["Value"] is False
    assert not cfg.setOptionValue("/DIRAC/Security", "x")["OK"]


def test_remote_configuration_is_overridden_by_local(cfg):
    remote = CFG().loadFromBuffer(
        "DIRAC\n{\n  Port = 1\n  RemoteOnly = r\n  Configuration\n  {\n    Version = 2024-01-01 10:00:00\n  }\n}\n"
    )
    calls = []

    def listener():
        calls.append(cfg.getVersion())

    cfg.addListenerToNewVersionEvent(listener)
    try:
        assert cfg.loadRemoteCFG(remote)["OK"]
    finally:
        cfg.removeListener(listener)
    assert cfg.getValue("/DIRAC/Port", 0) == 9135
    assert cfg.getValue("/DIRAC/RemoteOnly") == "r"
    assert cfg.getVersion() == "2024-01-01 10:00:00"
    assert calls == ["2024-01-01 10:00:00"]
    assert cfg.getRemoteCFG().getOption("/DIRAC/Port") == "1"
    assert cfg.loadRemoteCFG("DIRAC\n{\n  X = 1\n}\n", version="v2")["OK"]
    assert cfg.getVersion() == "v2"
    assert cfg.getValue("/DIRAC/RemoteOnly") is None


def test_version_defaults_to_zero():
    gConfig.reset()
    assert gConfig.getVersion() == "0"


def test_loadCFG_copies_its_argument(cfg):
    extra = CFG().loadFromBuffer("Extra\n{\n  A = 1\n}\n")
    assert cfg.loadCFG(extra)["OK"]
    extra.setOption("Extra/A", "2")
    assert cfg.getValue("/Extra/A") == "1"


def test_load_file_cfg_and_missing_file(tmp_path):
    path = tmp_path / "one.cfg"
    path.write_text("Section\n{\n  Option = value\n}\n")
    client = ConfigurationClient(ConfigurationData())
    assert client.loadFile(str(path))["OK"]
    assert client.getValue("/Section/Option") == "value"
    assert client.getLoadedFiles() == [str(path)]
    missing = client.loadFile(str(tmp_path / "nope.cfg"))
    assert not missing["OK"]
    assert str(tmp_path / "nope.cfg") in missing["Message"]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("A\n{\n  x = 1\n", 1, "never closed"),
        ("A\n{\n}\n}\n", 4, "never opened"),
        ("A\n{\n}\nB\n{\n}\nA\n{\n}\n", 7, "defined twice"),
        ("A\n{\n  x += 1\n}\n", 3, "not defined before"),
        ("A\n{\n  Port 8443\n  y = 2\n}\n", 3, "neither"),
        ("A { x = 1 }\n", 1, "own line"),
        ("x = 1\nx\n{\n}\n", 2, "clashes"),
        ("A\n{\n  B\n  {\n  }\n  B = 1\n}\n", 6, "clashes"),
        ("A\n{\n  = 5\n}\n", 3, "without a name"),
    ],
)
def test_malformed_cfg_names_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "broken.cfg"
    path.write_text(text)
    client = ConfigurationClient(ConfigurationData())
    result = client.loadFile(str(path))
    assert not result["OK"]
    assert f"{path}:{line}:" in result["Message"], result["Message"]
    assert words in result["Message"]
    assert client.getSections("/")["Value"] == []


def test_comments_and_hash_in_values_are_data(tmp_path):
    path = tmp_path / "c.cfg"
    path.write_text("# a comment\nA\n{\n  # about x\n  x = value # not a comment\n}\n")
    client = ConfigurationClient(ConfigurationData())
    assert client.loadFile(str(path))["OK"]
    assert client.getValue("/A/x") == "value # not a comment"


def test_yaml_input(tmp_path):
    path = tmp_path / "conf.yaml"
    path.write_text(
        "DIRAC:\n"
        "  VirtualOrganization: tornadovo\n"
        "  Security:\n"
        "    UseServerCertificate: yes\n"
        "Systems:\n"
        "  Tornado:\n"
        "    Port: 9443\n"
        "  Framework:\n"
        "    URLs:\n"
        "      Dummy:\n"
        "        - https://a.example.org:8443/Framework/Dummy\n"
        "        - https://b.example.org:8443/Framework/Dummy\n"
        "Empty:\n"
    )
    client = ConfigurationClient(ConfigurationData())
    assert client.loadFile(str(path))["OK"]
    assert client.getValue("/DIRAC/VirtualOrganization") == "tornadovo"
    assert client.getValue("/DIRAC/Security/UseServerCertificate", False) is True
    assert client.getValue("/Systems/Tornado/Port", 0) == 9443
    assert client.getValue("/Systems/Framework/URLs/Dummy", []) == [
        "https://a.example.org:8443/Framework/Dummy",
        "https://b.example.org:8443/Framework/Dummy",
    ]
    assert client.getValue("/Empty") == ""


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("A:\n  b: 1\n  c: [1, 2\n")
    client = ConfigurationClient(ConfigurationData())
    result = client.loadFile(str(path))
    assert not result["OK"]
    assert re.search(re.escape(str(path)) + r":[34]: ", result["Message"]), result["Message"]


def test_yaml_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    result = ConfigurationClient(ConfigurationData()).loadFile(str(path))
    assert not result["OK"] and "mapping" in result["Message"]


def test_change_listener_and_reset(cfg):
    seen = []
    listener = lambda: seen.append(cfg.generation)  # noqa: E731
    cfg.addListenerToChangeEvent(listener)
    try:
        cfg.setOptionValue("/X/Y", "1")
        cfg.reset()
    finally:
        cfg.removeListener(listener)
    assert len(seen) == 2 and seen[0] < seen[1]
    assert cfg.getSections("/")["Value"] == []
    assert cfg.getValue("/X/Y") is None


def test_concurrent_reads_and_writes_stay_consistent():
    client = ConfigurationClient(ConfigurationData())
    client.setOptionValue("/A/Value", 0)
    errors = []

    def reader():
        for _ in range(2000):
            value = client.getValue("/A/Value", -1)
            if value < 0:
                errors.append(value)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for number in range(200):
        client.setOptionValue("/A/Value", number)
    for thread in threads:
        thread.join()
    assert errors == []
    assert client.getValue("/A/Value", 0) == 199


def test_option_and_section_of_the_same_name_later_one_wins():
    client = ConfigurationClient(ConfigurationData())
    assert client.loadCFGFromString("A\n{\n  X = 1\n  Keep = k\n}\n")["OK"]
    assert client.loadCFGFromString("A\n{\n  X\n  {\n    Y = 2\n  }\n}\n")["OK"]
    assert client.getValue("/A/X/Y") == "2"
    assert client.getValue("/A/Keep") == "k"
    assert client.loadCFGFromString("A\n{\n  X = back\n}\n")["OK"]
    assert client.getValue("/A/X") == "back"
    assert client.loadRemoteCFG("A\n{\n  X\n  {\n    Z = remote\n  }\n  R = r\n}\n")["OK"]
    assert client.getValue("/A/X") == "back"
    assert client.getValue("/A/R") == "r"
    assert client.getSections("/A")["Value"] == []


def test_merged_cfg_keeps_order_and_is_a_copy():
    client = ConfigurationClient(ConfigurationData())
    client.loadRemoteCFG("S\n{\n  B = 1\n  A = 2\n}\nT\n{\n}\n")
    client.loadCFGFromString("S\n{\n  C = 3\n  A = local\n}\n")
    merged = client.getMergedCFG()
    assert merged["S"].listOptions() == ["B", "A", "C"]
    assert merged.getOption("/S/A") == "local"
    merged.setOption("/S/A", "mutated")
    assert client.getValue("/S/A") == "local"
    assert client.getOptions("/S")["Value"] == ["B", "A", "C"]
