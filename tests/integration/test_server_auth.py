"""Authorisation over real TLS: auth_ rules, CS Authorization (CS wins), hosts, forwarding, limited proxies."""
from __future__ import annotations

import requests

from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.Core.Encoding import decode, encode

AUTH = "/Systems/Framework/Services/Dummy/Authorization"


def _status(response) -> int:
    assert response.headers["Content-Type"] == "application/json"
    return response.status_code


def test_auth_rule_from_handler_attribute(running_server):
    assert _status(running_server.post("hostOnly", cert="proxy")) == 403
    assert _status(running_server.post("hostOnly", cert="host", fields={"extraCredentials": '"hosts"'})) == 200


def test_property_rule(running_server):
    assert _status(running_server.post("adminOnly", cert="proxy")) == 403
    assert _status(running_server.post("adminOnly", cert="adminProxy")) == 200
    assert _status(running_server.post("adminOnly", cert="host")) == 200  # host has CSAdministrator


def test_cs_rule_wins_over_handler_attribute(running_server):
    gConfig.setOptionValue(f"{AUTH}/hostOnly", "authenticated")
    assert _status(running_server.post("hostOnly", cert="proxy")) == 200
    gConfig.setOptionValue(f"{AUTH}/ping", "CSAdministrator")
    assert _status(running_server.post("ping", cert="proxy")) == 403
    assert _status(running_server.post("ping", cert="adminProxy")) == 200


def test_method_without_any_rule_is_closed(running_server):
    response = running_server.post("configurable", cert="adminProxy")
    assert _status(response) == 403


def test_cs_default_applies_to_methods_without_rule(running_server):
    gConfig.setOptionValue(f"{AUTH}/Default", "NormalUser")
    assert _status(running_server.post("configurable")) == 200
    assert _status(running_server.post("hostOnly")) == 403  # auth_ beats CS Default


def test_cs_method_rule_beats_cs_default(running_server):
    gConfig.setOptionValue(f"{AUTH}/Default", "NormalUser")
    gConfig.setOptionValue(f"{AUTH}/configurable", "group:dirac_admin")
    assert _status(running_server.post("configurable", cert="proxy")) == 403
    assert _status(running_server.post("configurable", cert="adminProxy")) == 200


def test_vo_rule(running_server):
    gConfig.setOptionValue(f"{AUTH}/configurable", "vo:tornadovo")
    assert _status(running_server.post("configurable", cert="proxy")) == 200
    gConfig.setOptionValue(f"{AUTH}/configurable", "vo:othervo")
    assert _status(running_server.post("configurable", cert="proxy")) == 403


def test_decision_cache_follows_configuration_changes_on_one_connection(running_server):
    with requests.Session() as session:
        assert _status(running_server.post("configurable", session=session)) == 403
        gConfig.setOptionValue(f"{AUTH}/configurable", "authenticated")
        assert _status(running_server.post("configurable", session=session)) == 200
        gConfig.setOptionValue(f"{AUTH}/configurable", "CSAdministrator")
        assert _status(running_server.post("configurable", session=session)) == 403


def test_handler_rule_lists_are_never_mutated(running_server):
    handler = running_server.handlerClass()
    before = list(handler.auth_hostOnly)
    for _ in range(3):
        assert _status(running_server.post("hostOnly", cert="proxy")) == 403
    assert handler.auth_hostOnly == before == ["group:hosts"]


def test_unregistered_user_gets_public_methods_only(running_server):
    assert _status(running_server.post("ping", cert="stranger")) == 200
    assert _status(running_server.post("whoami", cert="stranger")) == 403
    assert _status(running_server.post("add", 1, 2, cert="stranger")) == 403


def test_suspended_user_is_refused(running_server):
    assert _status(running_server.post("whoami", cert="suspended")) == 403
    assert _status(running_server.post("ping", cert="suspended")) == 200


def test_user_certificate_claiming_hosts_gets_no_host_rights(running_server):
    response = running_server.post("hostOnly", cert="user", fields={"extraCredentials": '"hosts"'})
    assert _status(response) == 403
    assert _status(running_server.post("whoami", cert="user", fields={"extraCredentials": '"hosts"'})) == 403


def test_trusted_host_forwards_a_user_identity(running_server, pki):
    extra = encode([pki.userDN, "dirac_admin"])
    creds = running_server.call("whoami", cert="host", fields={"extraCredentials": extra})["Value"]
    assert creds["DN"] == pki.userDN
    assert creds["group"] == "dirac_admin"
    assert creds["username"] == "devuser"
    assert creds["forwardedBy"] == pki.hostDN
    assert _status(running_server.post("adminOnly", cert="host", fields={"extraCredentials": extra})) == 200


def test_forwarding_without_group_uses_the_default_group(running_server, pki):
    extra = encode([pki.userDN, None])
    creds = running_server.call("whoami", cert="host", fields={"extraCredentials": extra})["Value"]
    assert creds["group"] == "dirac_user"


def test_forwarding_into_a_group_the_user_is_not_in_is_refused(running_server, pki):
    extra = encode([pki.user2DN, "dirac_admin"])
    assert _status(running_server.post("whoami", cert="host", fields={"extraCredentials": extra})) == 403


def test_forwarding_by_an_untrusted_host_or_a_user_is_refused(running_server, pki):
    extra = encode([pki.userDN, "dirac_admin"])
    assert _status(running_server.post("whoami", cert="untrustedHost", fields={"extraCredentials": extra})) == 403
    assert _status(running_server.post("whoami", cert="user2", fields={"extraCredentials": extra})) == 403


def test_limited_proxy_only_reaches_open_or_explicit_methods(running_server):
    assert _status(running_server.post("ping", cert="limitedProxy")) == 200
    assert _status(running_server.post("whoami", cert="limitedProxy")) == 403
    gConfig.setOptionValue(f"{AUTH}/whoami", "authenticated, LimitedProxy")
    creds = running_server.call("whoami", cert="limitedProxy")["Value"]
    assert creds["isLimitedProxy"] is True
    assert creds["username"] == "devuser"


def test_limited_proxies_accepted_with_the_server_switch(running_server):
    runtime = running_server.handlerClass()._runtime
    runtime.authManager.acceptLimitedProxies = True
    try:
        gConfig.setOptionValue("/Systems/Tornado/Unused", "bump")  # new generation: forget cached decisions
        assert _status(running_server.post("whoami", cert="limitedProxy")) == 200
    finally:
        runtime.authManager.acceptLimitedProxies = False


def test_properties_are_matched_without_regard_to_case(running_server):
    gConfig.setOptionValue(f"{AUTH}/configurable", "csadministrator")
    assert _status(running_server.post("configurable", cert="adminProxy")) == 200


def test_identities_do_not_bleed_between_connections(running_server, pki):
    sessions = {cert: requests.Session() for cert in ("proxy", "user2Proxy", "host")}
    expected = {"proxy": pki.userDN, "user2Proxy": pki.user2DN, "host": pki.hostDN}
    try:
        for _ in range(3):
            for cert, session in sessions.items():
                value = decode(running_server.post("whoami", cert=cert, session=session).text)[0]["Value"]
                assert value["DN"] == expected[cert]
    finally:
        for session in sessions.values():
            session.close()
