"""AuthManager: DIRAC's rules on credential dictionaries, without sockets."""
from __future__ import annotations

import pytest

from TornadoServices.Server.AuthManager import AuthManager, normaliseRule

SECTION = "/Systems/Framework/Services/Dummy/Authorization"


@pytest.fixture
def auth(cs) -> AuthManager:
    return AuthManager(SECTION)


def user(pki, **extra) -> dict:
    creds = {"DN": pki.userDN, "subject": pki.userDN, "isProxy": False, "isLimitedProxy": False}
    creds.update(extra)
    return creds


# ---- rule resolution -------------------------------------------------------------------------------------
def test_resolution_order(auth, cs):
    assert auth.getValidPropertiesForMethod("m") == []
    assert auth.getValidPropertiesForMethod("m", None, ["classDefault"]) == ["classDefault"]
    cs.setOptionValue(f"{SECTION}/Default", "csDefault")
    assert auth.getValidPropertiesForMethod("m", None, ["classDefault"]) == ["csDefault"]
    assert auth.getValidPropertiesForMethod("m", ["hardcoded"], ["classDefault"]) == ["hardcoded"]
    cs.setOptionValue(f"{SECTION}/m", "csMethod, other")
    assert auth.getValidPropertiesForMethod("m", ["hardcoded"], ["classDefault"]) == ["csMethod", "other"]


def test_rules_are_copies(auth):
    hardcoded = ["group:hosts"]
    rule = auth.getValidPropertiesForMethod("m", hardcoded)
    rule.clear()
    assert hardcoded == ["group:hosts"]
    assert auth.getValidPropertiesForMethod("m", hardcoded) == ["group:hosts"]


def test_normalise_rule():
    assert normaliseRule("a, b ,,c") == ("a", "b", "c")
    assert normaliseRule(["x", " y "]) == ("x", "y")
    assert normaliseRule(None) == ()


def test_hardcoded_group_rule_is_not_consumed_by_use(auth, pki):
    hardcoded = ["group:hosts"]
    for _ in range(3):
        assert auth.authQuery("m", user(pki), hardcoded) is False
    assert hardcoded == ["group:hosts"]


# ---- decisions -----------------------------------------------------------------------------------------------
def test_no_rule_means_nobody(auth, pki):
    creds = user(pki)
    assert auth.authQuery("m", creds) is False


def test_all_admits_unregistered_as_anonymous(auth, pki):
    creds = {"DN": pki.strangerDN}
    assert auth.authQuery("m", creds, ["all"]) is True
    assert creds["username"] == "anonymous" and creds["group"] == "visitor"


def test_no_dn_only_for_all(auth):
    assert auth.authQuery("m", {}, ["all"]) is True
    assert auth.authQuery("m", {}, ["authenticated"]) is False
    assert auth.authQuery("m", {}, ["all", "group:dirac_user"]) is False


def test_authenticated_user_gets_default_group_and_properties(auth, pki):
    creds = user(pki)
    assert auth.authQuery("m", creds, ["authenticated"]) is True
    assert creds["username"] == "devuser"
    assert creds["group"] == "dirac_user"
    assert creds["properties"] == ["NormalUser"]


def test_authenticated_refuses_unknown_dn(auth, pki):
    assert auth.authQuery("m", {"DN": pki.strangerDN}, ["authenticated"]) is False


def test_property_match_narrows_properties(auth, pki):
    creds = user(pki, group="dirac_admin")
    assert auth.authQuery("m", creds, ["csadministrator"]) is True
    assert creds["properties"] == ["CSAdministrator"]


def test_property_missing_is_refused(auth, pki):
    assert auth.authQuery("m", user(pki), ["CSAdministrator"]) is False


def test_group_restriction(auth, pki):
    assert auth.authQuery("m", user(pki), ["group:dirac_admin"]) is False
    assert auth.authQuery("m", user(pki, group="dirac_admin"), ["group:dirac_admin"]) is True
    # group AND property
    assert auth.authQuery("m", user(pki, group="dirac_user"), ["group:dirac_user", "CSAdministrator"]) is False


def test_group_not_containing_the_user_is_refused(auth, pki):
    creds = {"DN": pki.user2DN, "group": "dirac_admin"}
    assert auth.authQuery("m", creds, ["authenticated"]) is False


@pytest.mark.parametrize("firstListed", ["twinuser", "twinadmin"])
def test_users_sharing_a_dn_are_told_apart_by_the_group(auth, pki, cs, firstListed):
    # two Registry users with one DN, each in one group: the group's member is the caller, whichever is listed first
    second = {"twinuser": "twinadmin", "twinadmin": "twinuser"}[firstListed]
    for name in (firstListed, second):
        cs.setOptionValue(f"/Registry/Users/{name}/DN", pki.strangerDN)
    cs.setOptionValue("/Registry/Groups/dirac_user/Users", "devuser, twinuser")
    cs.setOptionValue("/Registry/Groups/dirac_admin/Users", "devuser, twinadmin")
    for group, username in (("dirac_user", "twinuser"), ("dirac_admin", "twinadmin")):
        creds = {"DN": pki.strangerDN, "isProxy": True, "group": group}
        assert auth.authQuery("m", creds, [f"group:{group}"]) is True, group
        assert (creds["username"], creds["group"]) == (username, group)
    creds = {"DN": pki.strangerDN, "isProxy": True, "group": "dirac_user"}
    assert auth.authQuery("m", creds, ["group:dirac_admin"]) is False


def test_vo_rule(auth, pki):
    assert auth.authQuery("m", user(pki), ["vo:tornadovo"]) is True
    assert auth.authQuery("m", user(pki), ["vo:othervo"]) is False


def test_single_vo_installation_admits_every_group(auth, pki, cs):
    cs.setOptionValue("/DIRAC/VirtualOrganization", "tornadovo")
    assert auth.authQuery("m", user(pki), ["vo:whatever"]) is True


def test_suspended_user(auth, pki):
    creds = {"DN": pki.suspendedDN}
    assert auth.authQuery("m", creds, ["authenticated"]) is False
    creds = {"DN": pki.suspendedDN}
    assert auth.authQuery("m", creds, ["all"]) is True
    assert creds["username"] == "anonymous"


def test_hosts(auth, pki):
    creds = {"DN": pki.hostDN, "extraCredentials": "hosts"}
    assert auth.authQuery("m", creds, ["group:hosts"]) is True
    assert creds["username"] == "localhost"
    assert set(creds["properties"]) == {"TrustedHost", "CSAdministrator"}
    assert auth.authQuery("m", {"DN": pki.hostDN}, ["TrustedHost"]) is True  # found by DN alone


def test_user_claiming_hosts_is_not_a_host(auth, pki):
    assert auth.authQuery("m", user(pki, extraCredentials="hosts"), ["group:hosts"]) is False
    assert auth.authQuery("m", user(pki, extraCredentials="hosts"), ["authenticated"]) is False


def test_legacy_group_in_extra_credentials(auth, pki):
    creds = user(pki, extraCredentials="dirac_admin")
    assert auth.authQuery("m", creds, ["CSAdministrator"]) is True
    assert creds["group"] == "dirac_admin"


def test_trusted_host_forwarding(auth, pki):
    creds = {"DN": pki.hostDN, "subject": pki.hostDN, "extraCredentials": [pki.userDN, "dirac_admin"]}
    assert auth.authQuery("m", creds, ["CSAdministrator"]) is True
    assert creds["DN"] == pki.userDN and creds["group"] == "dirac_admin" and creds["username"] == "devuser"
    assert "extraCredentials" not in creds
    assert creds["forwardedBy"] == pki.hostDN


def test_forwarding_needs_trusted_host(auth, pki):
    extra = [pki.userDN, "dirac_admin"]
    assert auth.authQuery("m", {"DN": pki.untrustedHostDN, "extraCredentials": extra}, ["all"]) is False
    assert auth.authQuery("m", user(pki, extraCredentials=extra), ["all"]) is False


@pytest.mark.parametrize("extra", [["only one"], [None, "g"], [1, 2], ["a", "b", "c"], 5, {"DN": "x"}])
def test_malformed_extra_credentials_are_refused(auth, pki, extra):
    assert auth.authQuery("m", {"DN": pki.hostDN, "extraCredentials": extra}, ["all"]) is False


def test_limited_proxy_policy(auth, pki):
    limited = lambda: user(pki, isProxy=True, isLimitedProxy=True)  # noqa: E731
    assert auth.authQuery("m", limited(), ["all"]) is True
    assert auth.authQuery("m", limited(), ["authenticated"]) is False
    assert auth.authQuery("m", limited(), ["authenticated", "LimitedProxy"]) is True
    assert auth.authQuery("m", limited(), ["LimitedProxy"]) is False  # a modifier, not a grant
    assert AuthManager(SECTION, acceptLimitedProxies=True).authQuery("m", limited(), ["authenticated"]) is True


def test_independent_proxy_carries_no_identity_by_default(auth, pki):
    independent = lambda **extra: user(pki, isProxy=True, isIndependentProxy=True, group="dirac_admin", **extra)  # noqa: E731
    creds = independent()
    assert auth.authQuery("m", creds, ["all"]) is True
    assert (creds["username"], creds["group"], creds["properties"]) == ("anonymous", "visitor", [])
    for rule in (["authenticated"], ["CSAdministrator"], ["group:dirac_admin"], ["all", "group:dirac_admin"], ["authenticated", "LimitedProxy"]):
        assert auth.authQuery("m", independent(), rule) is False, rule
    assert AuthManager(SECTION, acceptLimitedProxies=True).authQuery("m", independent(), ["authenticated"]) is False
    # an independent proxy of a trusted host cannot forward anybody
    forwarded = {"DN": pki.hostDN, "isProxy": True, "isIndependentProxy": True, "extraCredentials": [pki.userDN, "dirac_admin"]}
    assert auth.authQuery("m", forwarded, ["CSAdministrator"]) is False


def test_accept_independent_proxies_reads_them_as_dirac_does(cs, pki):
    creds = user(pki, isProxy=True, isIndependentProxy=True, group="dirac_admin")
    assert AuthManager(SECTION, acceptIndependentProxies=True).authQuery("m", creds, ["CSAdministrator"]) is True
    assert (creds["username"], creds["group"]) == ("devuser", "dirac_admin")


def test_limited_proxy_keyword_does_not_change_full_proxies(auth, pki):
    assert auth.authQuery("m", user(pki, isProxy=True), ["NormalUser", "LimitedProxy"]) is True
    assert auth.authQuery("m", user(pki, isProxy=True), ["CSAdministrator", "LimitedProxy"]) is False


def test_cs_rule_is_used_by_auth_query(auth, pki, cs):
    cs.setOptionValue(f"{SECTION}/m", "CSAdministrator")
    assert auth.authQuery("m", user(pki), ["all"]) is False
    assert auth.authQuery("m", user(pki, group="dirac_admin"), ["all"]) is True
