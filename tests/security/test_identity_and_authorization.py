"""Who the server thinks the caller is, against a real server: proxy policies, forwarding, Registry matching,
spoofed headers, and identities that never leak from one connection into another under concurrency.

tests/integration/test_server_auth.py already covers the basic rules (limited proxy vs ``all``/``LimitedProxy``,
the AcceptLimitedProxies switch on a running AuthManager, host forwarding honoured, a user certificate
claiming ``hosts``); the cases here add what those do not: the handler's view, the refusal logs, the
configured switch, the policies OpenSSL leaves to us, and many identities at once.
"""
from __future__ import annotations

import itertools
import pytest
import requests

from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.Core.Encoding import decode, encode

from tests.security.conftest import CROWD, NEAR_MISS_CERT_CN, NEAR_MISS_DNS, PROBE, runThreads, startServer, waitFor


def _answer(response) -> dict:
    assert response.headers["Content-Type"] == "application/json", response.text
    return decode(response.text)[0]


def _status(response) -> int:
    _answer(response)
    return response.status_code


def _probe(server, method: str, *args, **kwargs):
    return server.post(method, *args, service=PROBE, **kwargs)


# ---- proxy policy languages (OpenSSL accepts them all; the server decides) -------------------------------
def test_limited_proxy_policy_with_the_handler_view(chainServer, secpki, caplog):
    probe = chainServer.probeClass()
    calls = probe.calls
    assert _status(_probe(chainServer, "whoamiSync", 1, cert=secpki.cert("limitedProxy"))) == 403
    assert probe.calls == calls  # refused before the handler
    waitFor(
        lambda: any("Unauthorized query" in r.getMessage() and "Security/Probe.whoamiSync" in r.getMessage() for r in caplog.records),
        "the refusal in the log",
    )
    assert _status(_probe(chainServer, "remoteAddress", cert=secpki.cert("limitedProxy"))) == 200  # rule "all"
    gConfig.setOptionValue("/Systems/Security/Services/Probe/Authorization/whoamiSync", "authenticated, LimitedProxy")
    value = _answer(_probe(chainServer, "whoamiSync", 2, cert=secpki.cert("limitedProxy")))["Value"]
    assert value["before"] == {"DN": secpki.base.userDN, "username": "devuser", "group": "dirac_user"}


def test_unknown_policy_language_counts_as_limited(chainServer, secpki):
    creds = _answer(chainServer.post("ping", cert=secpki.files["unknownPolicyProxy"]))
    assert creds["OK"]
    assert _status(_probe(chainServer, "whoamiSync", 1, cert=secpki.files["unknownPolicyProxy"])) == 403
    gConfig.setOptionValue("/Systems/Framework/Services/Dummy/Authorization/whoami", "authenticated, LimitedProxy")
    whoami = _answer(chainServer.post("whoami", cert=secpki.files["unknownPolicyProxy"]))["Value"]
    assert whoami["isLimitedProxy"] is True and whoami["DN"] == secpki.base.userDN


def test_independent_proxy_carries_none_of_its_users_rights_by_default(chainServer, secpki):
    # RFC 3820: id-ppl-independent inherits nothing from its issuer, so it is served as nobody in particular
    independent = secpki.files["independentProxy"]
    probe = chainServer.probeClass()
    calls = probe.calls
    assert _status(chainServer.post("whoami", cert=independent)) == 403
    assert _status(_probe(chainServer, "whoamiSync", 1, cert=independent)) == 403
    assert probe.calls == calls  # refused before the handler
    gConfig.setOptionValue("/Systems/Security/Services/Probe/Authorization/whoamiSync", "group:dirac_user")
    assert _status(_probe(chainServer, "whoamiSync", 2, cert=independent)) == 403
    assert _answer(chainServer.post("ping", cert=independent))["OK"] is True  # rule "all"
    gConfig.setOptionValue("/Systems/Framework/Services/Dummy/Authorization/whoami", "all")
    whoami = _answer(chainServer.post("whoami", cert=independent))["Value"]
    assert (whoami["DN"], whoami["username"], whoami["group"]) == (secpki.base.userDN, "anonymous", "visitor")
    assert "isIndependentProxy" not in whoami  # a server-side flag: whoami keeps DIRAC's shape
    # the twin built the same way with inheritAll acts for the user
    gConfig.setOptionValue("/Systems/Security/Services/Probe/Authorization/whoamiSync", "authenticated")
    value = _answer(_probe(chainServer, "whoamiSync", 3, cert=secpki.files["goodProxy"]))["Value"]
    assert value["before"] == {"DN": secpki.base.userDN, "username": "devuser", "group": "dirac_user"}


def test_accept_independent_proxies_configured_on_the_server(secpki, secCFG):
    # AcceptIndependentProxies = yes: DIRAC's reading, a full proxy of its user
    base = secCFG[0].replace("    CRLCheck = auto\n", "    CRLCheck = auto\n    AcceptIndependentProxies = yes\n", 1)
    assert "AcceptIndependentProxies" in base
    enabled = (base, secCFG[1])
    server = startServer(secpki, enabled, crlCheck="chain")
    try:
        whoami = _answer(server.post("whoami", cert=secpki.files["independentProxy"]))["Value"]
        assert whoami["isProxy"] is True and whoami["isLimitedProxy"] is False
        assert (whoami["DN"], whoami["username"], whoami["group"]) == (secpki.base.userDN, "devuser", "dirac_user")
        full = _answer(server.post("whoami", cert=secpki.files["goodProxy"]))["Value"]
        assert list(whoami) == list(full)  # same DIRAC-shaped answer as a full proxy's
    finally:
        server.server.stop()


def test_accept_limited_proxies_configured_on_the_server(secpki, secCFG):
    server = startServer(secpki, secCFG, crlCheck="chain", acceptLimitedProxies=True)
    try:
        whoami = _answer(server.post("whoami", cert=secpki.cert("limitedProxy")))["Value"]
        assert whoami["isLimitedProxy"] is True and whoami["username"] == "devuser"
    finally:
        server.server.stop()


# ---- Registry matching ----------------------------------------------------------------------------------
def test_users_sharing_a_dn_each_act_in_their_own_group(chainServer, secpki, tmp_path):
    # one certificate registered as two users, one per group: the proxy's group decides which user calls
    from TornadoServices.Security import DevPKI

    twin = secpki.base.ca.issueUser("twin", keyType="ec")
    proxies = {
        group: DevPKI.makeProxy(twin, group=group, keyType="ec").writeProxyFile(str(tmp_path / f"{group}.pem"))
        for group in ("dirac_user", "dirac_admin")
    }
    for name in ("twinuser", "twinadmin"):
        gConfig.setOptionValue(f"/Registry/Users/{name}/DN", twin.dn)
    members = gConfig.getValue("/Registry/Groups/dirac_user/Users", "")
    gConfig.setOptionValue("/Registry/Groups/dirac_user/Users", f"{members}, twinuser")
    gConfig.setOptionValue("/Registry/Groups/dirac_admin/Users", "devuser, twinadmin")
    rule = "/Systems/Security/Services/Probe/Authorization/whoamiSync"
    for group, username, otherGroup in (("dirac_user", "twinuser", "dirac_admin"), ("dirac_admin", "twinadmin", "dirac_user")):
        gConfig.setOptionValue(rule, f"group:{group}")
        value = _answer(_probe(chainServer, "whoamiSync", 1, cert=proxies[group]))["Value"]
        assert value["before"] == {"DN": twin.dn, "username": username, "group": group}
        assert _status(_probe(chainServer, "whoamiSync", 2, cert=proxies[otherGroup])) == 403


# ---- extraCredentials ------------------------------------------------------------------------------------
def test_forwarding_from_a_host_without_trusted_host_is_refused_and_logged(chainServer, secpki, caplog):
    probe = chainServer.probeClass()
    calls = probe.calls
    extra = encode([secpki.base.userDN, "dirac_admin"])
    response = _probe(chainServer, "whoamiSync", 1, cert="untrustedHost", fields={"extraCredentials": extra})
    assert _status(response) == 403
    assert probe.calls == calls
    waitFor(
        lambda: any(
            secpki.base.untrustedHostDN in r.getMessage() and "not a TrustedHost" in r.getMessage() for r in caplog.records
        ),
        "the forwarding refusal in the log",
    )


def test_forwarding_from_a_trusted_host_reaches_the_handler_as_the_user(chainServer, secpki):
    extra = encode([secpki.base.userDN, "dirac_admin"])
    value = _answer(_probe(chainServer, "whoamiSync", 1, cert="host", fields={"extraCredentials": extra}))["Value"]
    assert value["before"] == value["after"] == {"DN": secpki.base.userDN, "username": "devuser", "group": "dirac_admin"}


def test_trust_withdrawn_in_the_configuration_applies_on_an_open_connection(chainServer, secpki):
    extra = encode([secpki.base.userDN, "dirac_user"])
    with requests.Session() as session:
        assert _status(_probe(chainServer, "whoamiSync", 1, cert="host", session=session, fields={"extraCredentials": extra})) == 200
        gConfig.setOptionValue("/Registry/Hosts/localhost/Properties", "CSAdministrator")
        assert _status(_probe(chainServer, "whoamiSync", 2, cert="host", session=session, fields={"extraCredentials": extra})) == 403


@pytest.mark.parametrize(
    "extra",
    [
        ["DN-only"],
        ["{dn}", "dirac_user", "third"],
        [42, "dirac_user"],
        ["", "dirac_user"],
        ["{dn}", 7],
        {"DN": "{dn}", "group": "dirac_user"},
        ["/DC=org/DC=tornadoservices/OU=Users/CN=nobody", "dirac_user"],
        ["{dn}", "no_such_group"],
        ["{suspended}", "dirac_user"],
    ],
)
def test_malformed_or_unknown_forwarded_identities_are_not_honoured(chainServer, secpki, extra):
    def fill(item):
        if isinstance(item, str):
            return item.format(dn=secpki.base.userDN, suspended=secpki.base.suspendedDN)
        return item

    value = {k: fill(v) for k, v in extra.items()} if isinstance(extra, dict) else [fill(item) for item in extra]
    response = _probe(chainServer, "whoamiSync", 1, cert="host", fields={"extraCredentials": encode(value)})
    assert _status(response) in (400, 403)


@pytest.mark.parametrize("cert", ["user", "proxy", "user2Proxy"])
def test_hosts_claimed_by_a_user_credential_gives_no_host_rights(chainServer, cert):
    fields = {"extraCredentials": '"hosts"'}
    assert _status(chainServer.post("hostOnly", cert=cert, fields=fields)) == 403
    assert _status(_probe(chainServer, "whoamiSync", 1, cert=cert, fields=fields)) == 403


def test_a_group_claimed_in_extra_credentials_needs_membership(chainServer):
    fields = {"extraCredentials": '"dirac_admin"'}
    # otheruser is not in dirac_admin; a dirac_user proxy keeps the group of its extension
    assert _status(chainServer.post("adminOnly", cert="user2", fields=fields)) == 403
    assert _status(chainServer.post("adminOnly", cert="proxy", fields=fields)) == 403
    # devuser is a member: with a plain certificate DIRAC lets it choose that group
    assert _status(chainServer.post("adminOnly", cert="user", fields=fields)) == 200


# ---- Registry matching -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(NEAR_MISS_DNS))
def test_registry_dn_differing_only_in_spacing_or_case_is_not_matched(chainServer, secpki, name):
    cert = secpki.files[name]
    certDN = secpki.dns[name]
    assert certDN != NEAR_MISS_DNS[name]
    assert " ".join(certDN.lower().split()) == " ".join(NEAR_MISS_DNS[name].lower().split())
    assert _status(_probe(chainServer, "whoamiSync", 1, cert=cert)) == 403
    whoami = chainServer.post("whoami", cert=cert)
    assert whoami.status_code == 403
    # the same certificate is fine once the Registry holds its exact DN (surrounding blanks are ignored)
    gConfig.setOptionValue(f"/Registry/Users/{name}/DN", f"  {certDN} ")
    value = _answer(_probe(chainServer, "whoamiSync", 2, cert=cert))["Value"]
    assert value["before"]["username"] == name and value["before"]["DN"] == certDN
    assert NEAR_MISS_CERT_CN[name] in certDN


# ---- spoofed front-end headers ------------------------------------------------------------------------------
SPOOFED = {
    "X-SSL-CERT": "-----BEGIN CERTIFICATE-----MIIB-----END CERTIFICATE-----",
    "X-SSL-Client-DN": "/DC=org/DC=tornadoservices/OU=Hosts/CN=localhost",
    "SSL-Client-S-DN": "/DC=org/DC=tornadoservices/OU=Hosts/CN=localhost",
    "X-Forwarded-For": "203.0.113.7",
    "X-Real-IP": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Scheme": "https",
}


def test_spoofed_certificate_and_address_headers_are_ignored(chainServer, secpki):
    assert chainServer.post("ping", cert=None, headers=SPOOFED).status_code == 401
    value = _answer(_probe(chainServer, "whoamiSync", 1, cert="proxy", headers=SPOOFED))["Value"]["before"]
    assert value["DN"] == secpki.base.userDN
    address = _answer(_probe(chainServer, "remoteAddress", cert="proxy", headers=SPOOFED))["Value"]
    assert address[0] == address[2] == "127.0.0.1"  # X-Forwarded-For / X-Real-IP ignored (no xheaders)
    assert _status(chainServer.post("hostOnly", cert="proxy", headers=SPOOFED)) == 403


# ---- no credential bleed between connections --------------------------------------------------------------
def test_many_identities_concurrently_each_sees_only_its_own(chainServer, secpki):
    """12 user/proxy identities plus a trusted host forwarding a different user on every call, all on
    keep-alive connections, through the worker pool (sync) and the event loop (async) alternately."""
    rounds = 20
    before = chainServer.stats.connectionsAccepted
    identities = []
    for index, name in enumerate(CROWD):
        kind = "Proxy" if index % 2 else "User"
        identities.append((secpki.files[f"{name}{kind}"], secpki.dns[f"{name}User"], name))
    hostCredential = secpki.cert("host")

    def client(index: int) -> None:
        with requests.Session() as session:
            if index == len(identities):  # the forwarding host
                cycle = itertools.cycle(CROWD)
                for call in range(rounds):
                    name = next(cycle)
                    dn = secpki.dns[f"{name}User"]
                    extra = encode([dn, "dirac_user"])
                    method = "whoamiSync" if call % 2 else "whoamiAsync"
                    value = _answer(_probe(chainServer, method, call, cert=hostCredential, session=session, fields={"extraCredentials": extra}))["Value"]
                    expected = {"DN": dn, "username": name, "group": "dirac_user"}
                    assert value["before"] == value["after"] == expected, (call, value)
                    assert value["token"] == call
                return
            credential, dn, name = identities[index]
            expected = {"DN": dn, "username": name, "group": "dirac_user"}
            for call in range(rounds):
                method = "whoamiSync" if (call + index) % 2 else "whoamiAsync"
                token = f"{name}-{call}"
                value = _answer(_probe(chainServer, method, token, cert=credential, session=session))["Value"]
                assert value["token"] == token
                assert value["before"] == value["after"] == expected, (name, call, value)

    runThreads(len(identities) + 1, client)
    # keep-alive really was used: about one TLS connection per client, not one per call
    assert chainServer.stats.connectionsAccepted - before <= 2 * (len(identities) + 1)
