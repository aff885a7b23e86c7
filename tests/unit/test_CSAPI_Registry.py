"""Unit tests of the CSAPI Registry helpers, on an in-process master (real commits, files in a temp dir)."""
from __future__ import annotations

import pytest

from TornadoServices.ConfigurationSystem.Client import CSAPI as CSAPIModule
from TornadoServices.ConfigurationSystem.Client.ConfigurationData import ConfigurationData
from TornadoServices.ConfigurationSystem.Client.CSAPI import CSAPI
from TornadoServices.ConfigurationSystem.Client.Helpers import Registry
from TornadoServices.ConfigurationSystem.private.ServiceInterface import ServiceInterface, getCFGOption
from TornadoServices.Core.ReturnValues import S_OK

MASTER_URL = "https://master.example:9135/Configuration/Server"
ADMIN = {"username": "admin", "DN": "/DC=org/CN=admin", "group": "cs_admin"}

INITIAL = """
Registry
{
  Users
  {
    alice
    {
      DN = /DC=org/CN=alice
      CA = /DC=org/CN=CA
      Email = alice@example.org
    }
    bob
    {
      DN = /DC=org/CN=bob, /DC=org/CN=bob second
      CA = /DC=org/CN=CA
      Email = bob@example.org
    }
  }
  Groups
  {
    users
    {
      Users = alice, bob
      Properties = NormalUser
    }
    admins
    {
      Users = alice
      Properties = NormalUser, CSAdministrator
    }
  }
  Hosts
  {
    box.example.org
    {
      DN = /DC=org/CN=box.example.org
      CA = /DC=org/CN=CA
      Properties = TrustedHost
    }
  }
}
"""


class _Refresher:
    def disable(self) -> None:
        pass

    def autoRefreshAndPublish(self, url: str) -> None:
        pass


class InProcessClient:
    """The calls CSAPI makes, answered by an in-process master as the service would answer them."""

    master: ServiceInterface | None = None

    def __init__(self, url: str | None = None, **kwargs) -> None:
        self.url = url

    def getServiceName(self) -> str:
        return self.url or ""

    def getCompressedData(self) -> dict:
        return S_OK(self.master.getCompressedConfigurationData())

    def commitNewData(self, data: bytes, message: str = "") -> dict:
        return self.master.updateConfiguration(data, ADMIN, message)


@pytest.fixture
def master(tmp_path, monkeypatch):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "TestCS.cfg").write_text(INITIAL)
    data = ConfigurationData()
    assert data.loadString("DIRAC\n{\n  Configuration\n  {\n    Master = yes\n    Name = TestCS\n  }\n}\n")["OK"]
    si = ServiceInterface(
        MASTER_URL, configurationData=data, rootPath=str(tmp_path), refresher=_Refresher(), startThreads=False
    )
    monkeypatch.setattr(InProcessClient, "master", si)
    monkeypatch.setattr(CSAPIModule, "ConfigurationClient", InProcessClient)
    yield si
    si.stop()


@pytest.fixture
def api(master) -> CSAPI:
    csAPI = CSAPI(url=MASTER_URL)
    assert csAPI.initialize()["OK"]
    return csAPI


def served(master: ServiceInterface, path: str) -> str:
    return getCFGOption(master.getCurrentCFG(), path)


NEW_USER = {"DN": "/DC=org/CN=carol", "CA": "/DC=org/CN=CA", "Email": "carol@example.org", "Groups": ["users"]}


# ---- reading ---------------------------------------------------------------------------------------


def test_list_usersGroupsHosts(api):
    assert api.listUsers()["Value"] == ["alice", "bob"]
    assert api.listUsers("admins")["Value"] == ["alice"]
    assert api.listUsers("nosuchgroup")["Value"] == []
    assert api.listGroups()["Value"] == ["users", "admins"]
    assert api.listHosts()["Value"] == ["box.example.org"]


def test_describeUsers_withGroups(api):
    described = api.describeUsers()["Value"]
    assert set(described) == {"alice", "bob"}
    assert described["alice"] == {
        "DN": "/DC=org/CN=alice",
        "CA": "/DC=org/CN=CA",
        "Email": "alice@example.org",
        "Groups": ["admins", "users"],
    }
    assert list(api.describeUsers(["bob", "nobody"])["Value"]) == ["bob"]
    assert list(api.describeUsers("bob")["Value"]) == ["bob"]


def test_describeGroupsAndHosts(api):
    groups = api.describeGroups()["Value"]
    assert groups["admins"] == {"Users": ["alice"], "Properties": ["NormalUser", "CSAdministrator"]}
    assert list(api.describeGroups(["users"])["Value"]) == ["users"]
    hosts = api.describeHosts()["Value"]
    assert hosts == {
        "box.example.org": {"DN": "/DC=org/CN=box.example.org", "CA": "/DC=org/CN=CA", "Properties": "TrustedHost"}
    }


def test_helpers_refuseWhenNotInitialised(monkeypatch):
    monkeypatch.setattr(CSAPIModule.gConfigurationData, "getMasterServer", lambda: None)
    csAPI = CSAPI()
    for result in (csAPI.listUsers(), csAPI.describeGroups(), csAPI.addUser("x", NEW_USER), csAPI.deleteHosts("h")):
        assert not result["OK"] and "Master server is not known" in result["Message"]


# ---- users -----------------------------------------------------------------------------------------


def test_addUser_updatesGroupsAndCommits(api, master):
    assert api.addUser("carol", dict(NEW_USER, Groups=["users", "admins"], Phone="123")) == S_OK(True)
    assert api.csModified
    assert served(master, "/Registry/Users/carol/DN") == ""  # nothing sent before commit
    result = api.commit("add carol")
    assert result["OK"], result
    assert served(master, "/Registry/Users/carol/DN") == "/DC=org/CN=carol"
    assert served(master, "/Registry/Users/carol/Email") == "carol@example.org"
    assert served(master, "/Registry/Users/carol/Phone") == "123"
    assert served(master, "/Registry/Users/carol/Groups") == ""  # membership lives in the groups
    assert served(master, "/Registry/Groups/users/Users") == "alice, bob, carol"
    assert served(master, "/Registry/Groups/admins/Users") == "alice, carol"
    assert master.getCommitLog(1)[0]["message"] == "add carol"


def test_addUser_withoutGroups(api):
    properties = {key: value for key, value in NEW_USER.items() if key != "Groups"}
    assert api.addUser("carol", properties)["OK"]
    assert api.describeUsers("carol")["Value"]["carol"]["Groups"] == []


@pytest.mark.parametrize("missing", ["DN", "CA", "Email"])
def test_addUser_refusesMissingRequiredProperty(api, missing):
    properties = {key: value for key, value in NEW_USER.items() if key != missing}
    result = api.addUser("carol", properties)
    assert not result["OK"]
    assert result["Message"] == (
        f"Cannot add user 'carol': missing {missing}: a user needs DN, CA and Email"
    )
    empty = api.addUser("carol", dict(NEW_USER, **{missing: " "}))
    assert not empty["OK"] and f"missing {missing}" in empty["Message"]
    assert not api.csModified and "carol" not in api.listUsers()["Value"]


def test_addUser_refusesNoneForARequiredProperty(api):
    result = api.addUser("carol", dict(NEW_USER, Email=None))
    assert result["Message"] == "Cannot add user 'carol': missing Email: a user needs DN, CA and Email"


def test_registryChanges_goThroughTheMastersOptimisticCheck(master):
    first, second = CSAPI(url=MASTER_URL), CSAPI(url=MASTER_URL)
    assert first.addUser("carol", NEW_USER)["OK"]
    assert second.addHost("n.example.org", {"DN": "/DC=org/CN=n", "CA": "/DC=org/CN=CA"})["OK"]
    assert first.commit("carol")["OK"]
    refused = second.commit("host")
    assert not refused["OK"] and "conflict" in refused["Message"]
    assert served(master, "/Registry/Hosts/n.example.org/DN") == ""
    assert second.downloadCSData()["OK"]
    assert second.listUsers("users")["Value"] == ["alice", "bob", "carol"]
    assert second.addHost("n.example.org", {"DN": "/DC=org/CN=n", "CA": "/DC=org/CN=CA"})["OK"]
    assert second.commit("host again")["OK"]
    assert served(master, "/Registry/Hosts/n.example.org/DN") == "/DC=org/CN=n"


def test_addUser_refusesExistingUser(api):
    result = api.addUser("alice", dict(NEW_USER, DN="/DC=org/CN=alice2"))
    assert result["Message"] == "Cannot add user 'alice': the user is already registered: use modifyUser to change it"


def test_addUser_refusesUnknownGroups(api):
    result = api.addUser("carol", dict(NEW_USER, Groups=["users", "ghosts", "phantoms"]))
    assert result["Message"] == (
        "Cannot add user 'carol': unknown groups ghosts, phantoms: create them with addGroup first"
    )
    assert not api.csModified
    assert api.getValue("/Registry/Groups/users/Users") == "alice, bob"


@pytest.mark.parametrize(
    "dn, owner",
    [
        ("/DC=org/CN=alice", "user alice"),
        ("  /DC=org/CN=bob second ", "user bob"),  # second DN of a list, surrounding blanks ignored
        ("/DC=org/CN=box.example.org", "host box.example.org"),
    ],
)
def test_addUser_refusesDNOfAnotherUserOrHost(api, dn, owner):
    result = api.addUser("carol", dict(NEW_USER, DN=dn))
    assert not result["OK"]
    assert result["Message"] == (
        f"Cannot add user 'carol': DN {dn.strip()} is already registered as {owner}: one DN identifies one user "
        f"or host (change or delete {owner} first)"
    )
    assert not api.csModified


def test_addUser_dnsDifferingInCaseAreDifferentIdentities(api):
    # the Registry never case-folds DNs: a DN that merely looks alike is another identity
    assert api.addUser("carol", dict(NEW_USER, DN="/DC=org/CN=ALICE"))["OK"]


def test_addUser_dnCheckSeesEditsNotYetCommitted(api):
    assert api.addUser("carol", NEW_USER)["OK"]
    result = api.addUser("dave", dict(NEW_USER, Email="d@example.org"))
    assert "DN /DC=org/CN=carol is already registered as user carol" in result["Message"]


@pytest.mark.parametrize(
    "name, properties, message",
    [
        ("", NEW_USER, "the user name must be a non-empty string"),
        ("car ol", NEW_USER, "invalid user name 'car ol'"),
        ("a,b", NEW_USER, "invalid user name 'a,b'"),
        ("a/b", NEW_USER, "invalid user name 'a/b'"),
        (None, NEW_USER, "the user name must be a non-empty string, got None"),
        ("carol", "DN=/x", "properties must be a dict of option name -> value, got str"),
        ("carol", dict(NEW_USER, **{"Bad/Option": "1"}), "invalid option name 'Bad/Option'"),
    ],
)
def test_addUser_refusesBadInput(api, name, properties, message):
    result = api.addUser(name, properties)
    assert not result["OK"] and message in result["Message"]


def test_modifyUser_changesOptionsAndGroups(api, master):
    result = api.modifyUser("alice", {"Email": "new@example.org", "Groups": ["users"]})
    assert result == S_OK(True)
    assert api.getValue("/Registry/Users/alice/Email") == "new@example.org"
    assert api.getValue("/Registry/Groups/admins/Users") == ""
    assert api.modifyUser("bob", {"Groups": "users, admins"})["OK"]
    assert api.getValue("/Registry/Groups/admins/Users") == "bob"
    assert api.commit()["OK"]
    assert served(master, "/Registry/Users/alice/Email") == "new@example.org"
    assert served(master, "/Registry/Groups/admins/Users") == "bob"


def test_modifyUser_nothingToChange(api):
    assert api.modifyUser("alice", {"Email": "alice@example.org", "Groups": ["admins", "users"]}) == S_OK(False)
    assert not api.csModified


def test_modifyUser_unknownUser(api):
    result = api.modifyUser("carol", {"Email": "c@example.org"})
    assert result["Message"] == (
        "Cannot modify user 'carol': the user is not registered: use addUser (or createIfNonExistant=True)"
    )
    assert api.modifyUser("carol", NEW_USER, createIfNonExistant=True) == S_OK(True)
    assert api.describeUsers("carol")["Value"]["carol"]["Groups"] == ["users"]


def test_modifyUser_refusals(api):
    taken = api.modifyUser("alice", {"DN": "/DC=org/CN=alice, /DC=org/CN=bob"})
    assert taken["Message"].startswith(
        "Cannot modify user 'alice': DN /DC=org/CN=bob is already registered as user bob"
    )
    assert api.modifyUser("alice", {"DN": "/DC=org/CN=alice, /DC=org/CN=alice2"})["OK"]  # its own DN is fine
    unknown = api.modifyUser("alice", {"Groups": ["ghosts"]})
    assert unknown["Message"] == "Cannot modify user 'alice': unknown group ghosts: create it with addGroup first"
    emptied = api.modifyUser("alice", {"CA": ""})
    assert emptied["Message"] == "Cannot modify user 'alice': CA cannot be empty"


def test_deleteUsers_removesFromGroups(api, master):
    assert api.deleteUsers(["alice", "nobody"]) == S_OK(True)
    assert api.listUsers()["Value"] == ["bob"]
    assert api.getValue("/Registry/Groups/users/Users") == "bob"
    assert api.getValue("/Registry/Groups/admins/Users") == ""
    assert api.deleteUsers("bob")["OK"]
    assert api.commit()["OK"]
    assert master.getCurrentCFG().getAsDict()["Registry"]["Users"] == {}


def test_deleteUsers_unknownOnly_changesNothing(api):
    assert api.deleteUsers("nobody") == S_OK(True)
    assert not api.csModified


# ---- groups ----------------------------------------------------------------------------------------


def test_addGroup(api):
    properties = {"Users": ["bob"], "Properties": ["NormalUser", "ProductionManagement"], "VO": "vo"}
    assert api.addGroup("prod", properties) == S_OK(True)
    assert api.describeGroups("prod")["Value"]["prod"] == {
        "Users": ["bob"],
        "Properties": ["NormalUser", "ProductionManagement"],
        "VO": "vo",
    }
    assert api.describeUsers("bob")["Value"]["bob"]["Groups"] == ["prod", "users"]


def test_addGroup_refusals(api):
    assert api.addGroup("users", {})["Message"] == (
        "Cannot add group 'users': the group is already registered: use modifyGroup to change it"
    )
    assert api.addGroup("prod", {"Users": "bob, zed"})["Message"] == (
        "Cannot add group 'prod': unknown user zed: register it with addUser first"
    )
    assert "invalid group name" in api.addGroup("pr od", {})["Message"]
    assert not api.csModified


def test_modifyGroup(api):
    assert api.modifyGroup("users", {"Properties": ["NormalUser", "JobSharing"]}) == S_OK(True)
    assert api.getValue("/Registry/Groups/users/Properties") == "NormalUser, JobSharing"
    assert api.modifyGroup("users", {"Users": ["zed"]})["Message"] == (
        "Cannot modify group 'users': unknown user zed: register it with addUser first"
    )
    assert api.modifyGroup("prod", {})["Message"] == (
        "Cannot modify group 'prod': the group is not registered: use addGroup (or createIfNonExistant=True)"
    )
    assert api.modifyGroup("prod", {"Users": "bob"}, createIfNonExistant=True) == S_OK(True)
    assert api.listUsers("prod")["Value"] == ["bob"]


# ---- hosts -----------------------------------------------------------------------------------------


def test_addHost_andCommit(api, master):
    props = {"DN": "/DC=org/CN=new.example.org", "CA": "/DC=org/CN=CA"}
    props["Properties"] = ["TrustedHost", "CSAdministrator"]
    assert api.addHost("new.example.org", props) == S_OK(True)
    assert api.commit()["OK"]
    assert served(master, "/Registry/Hosts/new.example.org/Properties") == "TrustedHost, CSAdministrator"


@pytest.mark.parametrize("missing", ["DN", "CA"])
def test_addHost_refusesMissingRequired(api, missing):
    props = {key: value for key, value in {"DN": "/DC=org/CN=n", "CA": "/DC=org/CN=CA"}.items() if key != missing}
    assert api.addHost("n.example.org", props)["Message"] == (
        f"Cannot add host 'n.example.org': missing {missing}: a host needs DN and CA"
    )


def test_addHost_refusals(api):
    assert api.addHost("box.example.org", {"DN": "/DC=org/CN=x", "CA": "c"})["Message"] == (
        "Cannot add host 'box.example.org': the host is already registered: use modifyHost to change it"
    )
    result = api.addHost("other.example.org", {"DN": "/DC=org/CN=box.example.org", "CA": "c"})
    assert result["Message"].startswith(
        "Cannot add host 'other.example.org': DN /DC=org/CN=box.example.org is already registered as host "
        "box.example.org"
    )
    result = api.addHost("other.example.org", {"DN": "/DC=org/CN=alice", "CA": "c"})
    assert "already registered as user alice" in result["Message"]
    assert not api.csModified


def test_modifyHost_andDeleteHosts(api):
    assert api.modifyHost("box.example.org", {"Properties": "TrustedHost, CSAdministrator"}) == S_OK(True)
    assert api.getValue("/Registry/Hosts/box.example.org/Properties") == "TrustedHost, CSAdministrator"
    assert "already registered as user bob" in api.modifyHost("box.example.org", {"DN": "/DC=org/CN=bob"})["Message"]
    assert api.modifyHost("box.example.org", {"DN": ""})["Message"] == (
        "Cannot modify host 'box.example.org': DN cannot be empty"
    )
    assert "the host is not registered" in api.modifyHost("nope", {"CA": "c"})["Message"]
    assert api.modifyHost("nope", {"DN": "/DC=org/CN=nope", "CA": "c"}, createIfNonExistant=True) == S_OK(True)
    assert api.deleteHosts(["box.example.org", "nope", "ghost"]) == S_OK(True)
    assert api.listHosts()["Value"] == []


# ---- shifters ----------------------------------------------------------------------------------------


def test_addShifter_andDeleteShifter(api, master):
    assert api.addShifter({"Admin": {"User": "alice", "Group": "admins"}}) == S_OK(True)
    assert api.getValue("/Operations/Defaults/Shifter/Admin/User") == "alice"
    assert api.getValue("/Operations/Defaults/Shifter/Admin/Group") == "admins"
    assert api.commit()["OK"]
    assert served(master, "/Operations/Defaults/Shifter/Admin/Group") == "admins"
    assert api.addShifter({"Admin": {"User": "alice", "Group": "admins"}}) == S_OK(True)
    assert not api.csModified  # unchanged
    assert api.deleteShifter("Admin") == S_OK(True)
    assert api.getSections("/Operations/Defaults/Shifter") == []


def test_addShifter_usesTheVOSectionWhenItExists(api):
    assert api.setOption("/DIRAC/VirtualOrganization", "vo")["OK"]
    assert api.createSection("/Operations/vo/Defaults/Shifter")["OK"]
    assert api.addShifter({"Prod": {"User": "bob", "Group": "users"}})["OK"]
    assert api.getValue("/Operations/vo/Defaults/Shifter/Prod/User") == "bob"


def test_addShifter_refusals(api):
    assert api.addShifter({"Admin": {"User": "zed", "Group": "admins"}})["Message"] == (
        "Cannot set shifters: shifter Admin: unknown user zed: register it with addUser first"
    )
    assert api.addShifter({"Admin": {"User": "bob", "Group": "admins"}})["Message"] == (
        "Cannot set shifters: shifter Admin: user bob is not a member of group admins: add it with modifyUser first"
    )
    assert "must be given as" in api.addShifter({"Admin": "alice"})["Message"]
    assert not api.csModified


# ---- DN comparison shared with the Registry -----------------------------------------------------------


def test_findDNOwners_comparesAsRegistryLookups():
    tree = {"Registry": {"Users": {"u": {"DN": "/CN=a, /CN=b"}}, "Hosts": {"h": {"DN": " /CN=b "}}}}
    assert Registry.findDNOwners(" /CN=b", tree) == {"Users": ["u"], "Hosts": ["h"]}
    assert Registry.findDNOwners("/cn=a", tree) == {"Users": [], "Hosts": []}
    assert Registry.splitDNs("/CN=a , ,/CN=b") == ["/CN=a", "/CN=b"]

