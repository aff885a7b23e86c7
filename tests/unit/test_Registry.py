"""Registry lookups: DN -> user/host, groups, default groups, properties, VOs, suspension, invalidation."""
from __future__ import annotations

import pytest

from TornadoServices.ConfigurationSystem.Client import Config
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.ConfigurationSystem.Client.Helpers import Registry

JANE = "/DC=org/DC=example/OU=Users/CN=Jane Doe"
JANE_OLD = "/DC=org/DC=example/OU=Users/CN=Jane Doe/emailAddress=jane@example.org"
BOB = "/DC=org/DC=example/OU=Users/CN=Bob"
CAROL = "/DC=org/DC=example/OU=Users/CN=Carol"
LONELY = "/DC=org/DC=example/OU=Users/CN=Lonely"
HOST = "/DC=org/DC=example/OU=Hosts/CN=server.example.org"

REGISTRY = f"""
Registry
{{
  DefaultGroup = nonexistent, dirac_user
  DefaultVOMSAttribute = /tornadovo/Role=user
  Users
  {{
    jane
    {{
      DN = {JANE}
      DN += {JANE_OLD}
      DefaultGroup = dirac_admin
      Email = jane@example.org
    }}
    bob
    {{
      DN = {BOB}
      Suspended = othervo
    }}
    carol
    {{
      DN = {CAROL}
      Suspended = tornadovo, othervo
    }}
    lonely
    {{
      DN = {LONELY}
    }}
  }}
  Groups
  {{
    zeta_group
    {{
      Users = carol
      VO = othervo
    }}
    dirac_user
    {{
      Users = jane, bob
      Properties = NormalUser
      VO = tornadovo
    }}
    dirac_admin
    {{
      Users = jane
      Properties = NormalUser, CSAdministrator, ServiceAdministrator
      VO = tornadovo
      VOMSRole = /tornadovo/Role=admin
    }}
    alpha_group
    {{
      Users = carol
      Properties = NormalUser
      VO = othervo
    }}
  }}
  Hosts
  {{
    server.example.org
    {{
      DN = {HOST}
      Properties = TrustedHost, CSAdministrator
    }}
  }}
  VO
  {{
    tornadovo
    {{
      VOMSName = tornado.vo
    }}
    othervo
    {{
    }}
  }}
}}
"""


@pytest.fixture(autouse=True)
def registry():
    gConfig.reset()
    assert gConfig.loadCFGFromString(REGISTRY)["OK"]
    yield
    gConfig.reset()


def test_username_for_dn_including_secondary_dn():
    assert Registry.getUsernameForDN(JANE) == {"OK": True, "Value": "jane"}
    assert Registry.getUsernameForDN(JANE_OLD)["Value"] == "jane"
    assert Registry.getUsernameForDN(f"  {BOB}\n")["Value"] == "bob"
    assert Registry.getUsernameForDN(BOB, usersList=["jane"])["OK"] is False
    assert Registry.getDNForUsername("jane")["Value"] == [JANE, JANE_OLD]
    assert not Registry.getDNForUsername("nobody")["OK"]


@pytest.mark.parametrize(
    "lookalike",
    [
        JANE.upper(),
        JANE.lower(),
        JANE.replace("Jane Doe", "Jane  Doe"),
        JANE.replace("CN=Jane", "CN= Jane"),
        JANE + "/",
        JANE[:-1],
        "/DC=org/DC=example/OU=Users/CN=Jane Doe/CN=proxy",
        "",
    ],
)
def test_lookalike_dns_never_match(lookalike):
    result = Registry.getUsernameForDN(lookalike)
    assert not result["OK"]
    assert "No username found" in result["Message"]
    assert not Registry.findDefaultGroupForDN(lookalike)["OK"]
    assert not Registry.getGroupsForDN(lookalike)["OK"]


def test_host_dn_is_case_sensitive_too():
    assert Registry.getHostnameForDN(HOST)["Value"] == "server.example.org"
    assert not Registry.getHostnameForDN(HOST.upper())["OK"]
    assert not Registry.getHostnameForDN(HOST.replace("OU=Hosts", "OU=hosts"))["OK"]
    assert Registry.getDNForHost("server.example.org")["Value"] == [HOST]


def test_groups_for_user_are_sorted():
    assert Registry.getGroupsForUser("jane")["Value"] == ["dirac_admin", "dirac_user"]
    assert Registry.getGroupsForUser("carol")["Value"] == ["alpha_group", "zeta_group"]
    assert not Registry.getGroupsForUser("lonely")["OK"]
    assert Registry.getGroupsForDN(JANE)["Value"] == ["dirac_admin", "dirac_user"]
    assert Registry.getGroupsForDN(JANE, groupsList=["dirac_user"])["Value"] == ["dirac_user"]


def test_default_group_prefers_users_own_default_group():
    assert Registry.findDefaultGroupForDN(JANE)["Value"] == "dirac_admin"


def test_default_group_falls_back_to_registry_default_group_list():
    assert Registry.findDefaultGroupForDN(BOB)["Value"] == "dirac_user"


def test_default_group_falls_back_to_alphabetically_first_group():
    assert Registry.findDefaultGroupForUser("carol")["Value"] == "alpha_group"


def test_default_group_errors():
    lonely = Registry.findDefaultGroupForDN(LONELY)
    assert not lonely["OK"] and "lonely" in lonely["Message"]
    unknown = Registry.findDefaultGroupForDN("/CN=Unknown")
    assert not unknown["OK"] and "/CN=Unknown" in unknown["Message"]


def test_registry_default_group_defaults_to_user():
    gConfig.reset()
    gConfig.loadCFGFromString(
        "Registry\n{\n  Users\n  {\n    u\n    {\n      DN = /CN=u\n    }\n  }\n"
        "  Groups\n  {\n    b\n    {\n      Users = u\n    }\n    user\n    {\n      Users = u\n    }\n  }\n}\n"
    )
    assert Registry.getDefaultUserGroup() == "user"
    assert Registry.findDefaultGroupForDN("/CN=u")["Value"] == "user"


def test_properties():
    assert Registry.getPropertiesForGroup("dirac_admin") == ["NormalUser", "CSAdministrator", "ServiceAdministrator"]
    assert Registry.getPropertiesForGroup("zeta_group") == []
    assert Registry.getPropertiesForGroup("missing", ["x"]) == ["x"]
    assert Registry.getPropertiesForHost("server.example.org") == ["TrustedHost", "CSAdministrator"]
    assert Registry.getPropertiesForEntity("hosts", dn=HOST) == ["TrustedHost", "CSAdministrator"]
    assert Registry.getPropertiesForEntity("hosts", name="server.example.org") == ["TrustedHost", "CSAdministrator"]
    assert Registry.getPropertiesForEntity("hosts", dn="/CN=stranger") == []
    assert Registry.getPropertiesForEntity("dirac_user") == ["NormalUser"]
    assert Registry.getGroupsWithProperty("CSAdministrator")["Value"] == ["dirac_admin"]
    props = Registry.getPropertiesForGroup("dirac_user")
    props.append("CSAdministrator")
    assert Registry.getPropertiesForGroup("dirac_user") == ["NormalUser"]


def test_users_in_group_and_vo():
    assert Registry.getUsersInGroup("dirac_user") == ["jane", "bob"]
    assert Registry.getUsersInGroup("missing") == []
    assert Registry.getUsersInVO("tornadovo") == ["jane", "bob"]
    assert sorted(Registry.getAllUsers()) == ["bob", "carol", "jane", "lonely"]
    assert Registry.getHosts()["Value"] == ["server.example.org"]


def test_vos_per_group():
    assert Registry.getVOForGroup("dirac_user") == "tornadovo"
    assert Registry.getVOForGroup("missing") == ""
    assert Registry.getVOs()["Value"] == ["tornadovo", "othervo"]
    assert sorted(Registry.getGroupsForVO("tornadovo")["Value"]) == ["dirac_admin", "dirac_user"]
    assert not Registry.getGroupsForVO("")["OK"]
    assert Registry.getVOMSVOForGroup("dirac_user") == "tornado.vo"
    assert Registry.getVOMSAttributeForGroup("dirac_admin") == "/tornadovo/Role=admin"
    assert Registry.getVOMSAttributeForGroup("dirac_user") == Registry.getDefaultVOMSAttribute()
    assert Registry.getDefaultVOMSAttribute() == "/tornadovo/Role=user"


def test_single_vo_installation_puts_every_group_in_the_vo():
    gConfig.setOptionValue("/DIRAC/VirtualOrganization", "onlyvo")
    assert Registry.getVOForGroup("zeta_group") == "onlyvo"
    assert Registry.getVOs()["Value"] == ["onlyvo"]
    assert len(Registry.getGroupsForVO("whatever")["Value"]) == 4


def test_suspension_lists_vos():
    assert Registry.isUserSuspended("bob", "othervo") is True
    assert Registry.isUserSuspended("bob", "tornadovo") is False
    assert Registry.isUserSuspended("carol", "tornadovo") is True
    assert Registry.isUserSuspended("jane", "tornadovo") is False
    assert Registry.isUserSuspended("nobody", "tornadovo") is False
    assert Registry.isUserSuspended("bob", "") is False


def test_raw_options():
    assert Registry.getUserOption("jane", "Email") == "jane@example.org"
    assert Registry.getUserOption("jane", "DN", []) == [JANE, JANE_OLD]
    assert Registry.getGroupOption("dirac_user", "VO") == "tornadovo"
    assert Registry.getHostOption("server.example.org", "Properties", []) == ["TrustedHost", "CSAdministrator"]
    assert Registry.getVOOption("tornadovo", "VOMSName") == "tornado.vo"


def test_changes_to_gconfig_invalidate_the_index():
    assert not Registry.getUsernameForDN("/CN=Newcomer")["OK"]
    assert gConfig.setOptionValue("/Registry/Users/newcomer/DN", "/CN=Newcomer")["OK"]
    assert Registry.getUsernameForDN("/CN=Newcomer")["Value"] == "newcomer"
    gConfig.setOptionValue("/Registry/Groups/dirac_user/Users", "jane, bob, newcomer")
    assert Registry.findDefaultGroupForDN("/CN=Newcomer")["Value"] == "dirac_user"
    gConfig.setOptionValue("/Registry/Users/bob/Suspended", "tornadovo")
    assert Registry.isUserSuspended("bob", "tornadovo") is True
    gConfig.removeOption("/Registry/Users/newcomer")
    assert not Registry.getUsernameForDN("/CN=Newcomer")["OK"]


def test_remote_configuration_changes_invalidate_the_index():
    gConfig.loadRemoteCFG("Registry\n{\n  Hosts\n  {\n    remotehost\n    {\n      DN = /CN=remote\n    }\n  }\n}\n")
    assert Registry.getHostnameForDN("/CN=remote")["Value"] == "remotehost"
    assert Registry.getHostnameForDN(HOST)["Value"] == "server.example.org"


def test_index_is_built_once_per_generation(monkeypatch):
    built = []
    real = Registry._RegistryIndex

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, tree):
            built.append(1)
            super().__init__(tree)

    monkeypatch.setattr(Registry, "_RegistryIndex", Counting)
    gConfig.setOptionValue("/Some/Option", "1")
    for _ in range(50):
        Registry.getUsernameForDN(JANE)
        Registry.findDefaultGroupForDN(BOB)
        Registry.getHostnameForDN(HOST)
    assert built == [1]
    gConfig.setOptionValue("/Some/Option", "2")
    Registry.getUsernameForDN(JANE)
    assert built == [1, 1]


def test_empty_configuration_has_no_registry():
    gConfig.reset()
    assert not Registry.getUsernameForDN(JANE)["OK"]
    assert Registry.getVOs()["Value"] == []
    assert Registry.getDefaultUserGroup() == "user"
    assert Config.gConfig is gConfig
