"""XEP-0077 In-Band Registration."""

import asyncio

import pytest

import slix
import xmpp_raw as X
from xmpp_raw import NS_REGISTER, NS_REGISTER_FEATURE, q, server_connect, server_login

HOSTS = {
    "localhost": {"registration": "yes", "registration_limit": "0"},
    "example.org": {"registration": "no"},
}
USERS = {"alice@localhost": "alice-secret", "dave@example.org": "dave-secret"}


@pytest.fixture(scope="module")
def server(tern_module):
    return tern_module(users=USERS, hosts=HOSTS)


def tls_stream(server, domain="localhost", source=None):
    s = server_connect(server, domain=domain, source=source)
    s.open_stream(domain)
    s.starttls()
    return s


def register(s, username, password, timeout=15):
    fields = ""
    if username is not None:
        fields += "<username>%s</username>" % X.xml_escape(username)
    if password is not None:
        fields += "<password>%s</password>" % X.xml_escape(password)
    return s.iq("set", "<query xmlns='%s'>%s</query>" % (NS_REGISTER, fields), timeout=timeout)


def can_login(server, jid, password):
    local, domain, _ = X.parse_jid(jid)
    s = server_connect(server, domain=domain)
    try:
        s.open_stream(domain)
        s.starttls()
        ok, cond = s.sasl_plain(local, password)
        if not ok:
            assert cond == "not-authorized", cond
        return ok
    finally:
        s.close()


def listed(server, domain):
    r = server.ternctl("user", "list", domain)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_feature_advertised_only_where_enabled(server):
    with tls_stream(server, "localhost") as s:
        assert s.features.find(q(NS_REGISTER_FEATURE, "register")) is not None
    with tls_stream(server, "example.org") as s:
        assert s.features.find(q(NS_REGISTER_FEATURE, "register")) is None


def test_registration_form(server):
    with tls_stream(server) as s:
        r = s.iq("get", "<query xmlns='%s'/>" % NS_REGISTER)
        assert r.get("type") == "result", X.stanza_error(r)
        query = r.find(q(NS_REGISTER, "query"))
        assert query is not None
        assert query.find(q(NS_REGISTER, "username")) is not None
        assert query.find(q(NS_REGISTER, "password")) is not None
        assert query.find(q(NS_REGISTER, "registered")) is None


def test_register_then_login_on_same_stream(server):
    with tls_stream(server) as s:
        r = register(s, "newbie", "newbie-pw")
        assert r.get("type") == "result", X.stanza_error(r)
        ok, cond = s.sasl_scram("newbie", "newbie-pw", mech="SCRAM-SHA-256")
        assert ok, cond
        s.restart("localhost")
        assert s.bind("fresh") == "newbie@localhost/fresh"
    assert "newbie@localhost" in listed(server, "localhost")


def test_register_existing_user_conflict(server):
    with tls_stream(server) as s:
        r = register(s, "alice", "hijack")
        assert r.get("type") == "error"
        assert X.stanza_error(r) == ("cancel", "conflict")
    assert can_login(server, "alice@localhost", USERS["alice@localhost"])
    assert not can_login(server, "alice@localhost", "hijack")


@pytest.mark.parametrize("username,password", [
    ("has space", "pw-1"),
    ("at@sign", "pw-2"),
    ("slash/name", "pw-3"),
    ("", "pw-4"),
    ("missingpassword", None),
    (None, "no-username"),
], ids=["space", "at", "slash", "empty", "no-password", "no-username"])
def test_register_not_acceptable(server, username, password):
    before = listed(server, "localhost")
    with tls_stream(server) as s:
        r = register(s, username, password)
        assert r.get("type") == "error"
        assert X.stanza_error(r)[1] == "not-acceptable", X.stanza_error(r)
    assert listed(server, "localhost") == before


def test_change_password(server):
    with tls_stream(server) as s:
        assert register(s, "changer", "old-pw").get("type") == "result"
    s = server_login(server, "changer@localhost", "old-pw")
    try:
        r = register(s, "changer", "new-pw")
        assert r.get("type") == "result", X.stanza_error(r)
    finally:
        s.close()
    assert not can_login(server, "changer@localhost", "old-pw")
    assert can_login(server, "changer@localhost", "new-pw")


def test_cannot_change_another_users_password(server):
    s = server_login(server, "alice@localhost")
    try:
        r = register(s, "newbie2", "whatever")
        # either refused, or treated as alice's own password change: never
        # an account for / a password of another user
        if r.get("type") == "result":
            pytest.fail("registration for another username accepted on an authenticated stream")
        assert r.get("type") == "error"
    finally:
        s.close()
    assert can_login(server, "alice@localhost", USERS["alice@localhost"])


def test_remove_account(server):
    with tls_stream(server) as s:
        assert register(s, "leaver", "leaver-pw").get("type") == "result"
    s = server_login(server, "leaver@localhost", "leaver-pw")
    try:
        iid = s.next_id()
        s.send("<iq type='set' id='%s'><query xmlns='%s'><remove/></query></iq>" % (iid, NS_REGISTER))
        try:
            r = s.expect(lambda e: e.get("id") == iid, 10, "remove result")
            assert r.get("type") == "result", X.stanza_error(r)
        except (X.StreamErrorReceived, X.StreamClosed):
            pytest.fail("stream closed before the <remove/> result")
    finally:
        s.close()
    assert not can_login(server, "leaver@localhost", "leaver-pw")
    assert "leaver@localhost" not in listed(server, "localhost")


def test_registration_disabled_host(server):
    with tls_stream(server, "example.org") as s:
        r = s.iq("get", "<query xmlns='%s'/>" % NS_REGISTER)
        assert r.get("type") == "error"
        assert X.stanza_error(r)[1] in ("service-unavailable", "not-allowed"), X.stanza_error(r)
        r = register(s, "intruder", "pw")
        assert r.get("type") == "error"
        assert X.stanza_error(r)[1] in ("service-unavailable", "not-allowed"), X.stanza_error(r)
    assert "intruder@example.org" not in listed(server, "example.org")
    assert not can_login(server, "intruder@example.org", "pw")


def test_no_registration_before_tls(server):
    s = server_connect(server)
    try:
        feats = s.open_stream("localhost")
        assert feats.find(q(NS_REGISTER_FEATURE, "register")) is None
        try:
            r = register(s, "plaintext", "pw", timeout=5)
            assert r.get("type") == "error", "registration accepted over plaintext"
        except (X.StreamErrorReceived, X.StreamClosed):
            pass
    finally:
        s.close()
    assert "plaintext@localhost" not in listed(server, "localhost")


def test_slixmpp_registration_flow(server):
    """slixmpp's own XEP-0077 client: register, log in, change password,
    cancel the registration."""
    plugins = ("xep_0004", "xep_0066", "xep_0077")

    async def main():
        loop = asyncio.get_running_loop()
        c = slix.TernClient("slixuser@localhost", "slix-pw-1", server.c2s_port, host=server.host,
                            plugins=plugins)
        # slixmpp 1.8 holds back every iq but bind/session until the session
        # starts, which would deadlock registration; let it through.
        c._always_send_everything = True

        async def on_register(_form):
            resp = c.Iq()
            resp["type"] = "set"
            resp["register"]["username"] = "slixuser"
            resp["register"]["password"] = "slix-pw-1"
            await resp.send(timeout=10)
        c.add_event_handler("register", on_register)
        await c.login()
        try:
            assert c.boundjid.bare == "slixuser@localhost"
            await c["xep_0077"].change_password("slix-pw-2", timeout=10)
        finally:
            await c.close()
        assert not await loop.run_in_executor(None, can_login, server, "slixuser@localhost", "slix-pw-1")
        assert await loop.run_in_executor(None, can_login, server, "slixuser@localhost", "slix-pw-2")
        c2 = await slix.connect(server, "slixuser@localhost", "slix-pw-2", plugins=plugins)
        try:
            await c2["xep_0077"].cancel_registration(timeout=10)
        finally:
            await c2.close()
        assert not await loop.run_in_executor(None, can_login, server, "slixuser@localhost", "slix-pw-2")
    slix.run(main())
    assert "slixuser@localhost" not in listed(server, "localhost")


def test_registration_limit_per_ip(tern):
    srv = tern(users={}, hosts={"localhost": {"registration": "yes", "registration_limit": "2"}})
    for i in range(2):
        with tls_stream(srv) as s:
            r = register(s, "limited%d" % i, "pw")
            assert r.get("type") == "result", X.stanza_error(r)
    with tls_stream(srv) as s:
        r = register(s, "limited2", "pw")
        assert r.get("type") == "error", "registration_limit = 2 but a third registration succeeded"
    assert not can_login(srv, "limited2@localhost", "pw")
    # the limit is per source address
    with tls_stream(srv, source="127.0.0.2") as s:
        r = register(s, "otheraddr", "pw")
        assert r.get("type") == "result", X.stanza_error(r)
    assert can_login(srv, "otheraddr@localhost", "pw")
