"""Login: STARTTLS / Direct TLS, SASL (RFC 6120 §5-6, RFC 5802, RFC 7677,
RFC 5929, RFC 9266, XEP-0440, XEP-0368, XEP-0478), resource binding and
conflicts, and the account commands of ternctl."""
import base64
import hashlib

import asyncio
import secrets
import ssl
import xml.etree.ElementTree as ET

import pytest

import slix
import xmpp_raw as X
from xmpp_raw import (NS_BIND, NS_LIMITS, NS_SASL, NS_SESSION, NS_STREAMS, NS_TLS, q,
                      server_connect, server_login)

MECHS = ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
TRANSPORTS = ["starttls", "direct_tls"]
ALICE = "alice@localhost"


def authenticated_stream(server, direct_tls=False, tls_max=None):
    """Connected, TLS established, features read, not yet authenticated."""
    s = server_connect(server, direct_tls=direct_tls, tls_max=tls_max)
    s.open_stream("localhost")
    if not direct_tls:
        s.starttls(tls_max=tls_max)
    return s


async def server_ping(client, to="localhost"):
    iq = client.Iq()
    iq["type"] = "get"
    iq["to"] = to
    iq.append(ET.Element("{urn:xmpp:ping}ping"))
    return await iq.send(timeout=10)


# ------------------------------------------------------------- slixmpp logins

@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mech", MECHS)
def test_slixmpp_login(server, mech, transport):
    async def main():
        c = await slix.connect(server, ALICE + "/login-" + mech, server.password(ALICE),
                               mech=mech, direct_tls=transport == "direct_tls")
        try:
            assert c["feature_mechanisms"].mech.name == mech
            assert str(c.boundjid) == ALICE + "/login-" + mech
            resp = await server_ping(c)
            assert resp["type"] == "result"
        finally:
            await c.close()
    slix.run(main())


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "PLAIN"])
def test_slixmpp_login_non_ascii_password(server, mech):
    async def main():
        c = await slix.connect(server, "zoe@localhost", server.password("zoe@localhost"), mech=mech)
        await c.close()
    slix.run(main())


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "PLAIN"])
def test_slixmpp_wrong_password(server, mech):
    async def main():
        with pytest.raises(slix.LoginFailed) as ei:
            await slix.connect(server, ALICE, "not-the-password", mech=mech)
        assert ei.value.condition == "not-authorized", str(ei.value)
    slix.run(main())


# --------------------------------------------------------- stream / features

def test_stream_header_and_starttls_features(server):
    s = server_connect(server)
    try:
        feats = s.open_stream("localhost")
        tag, attrs = s.reader.header
        assert tag == q(NS_STREAMS, "stream")
        assert attrs.get("from") == "localhost"
        assert attrs.get("version") == "1.0"
        assert attrs.get("id"), "stream header without id"
        assert b"jabber:client" in bytes(s.received), "default namespace jabber:client missing"
        starttls = feats.find(q(NS_TLS, "starttls"))
        assert starttls is not None, "STARTTLS not offered"
        assert starttls.find(q(NS_TLS, "required")) is not None, \
            "require_encryption = yes but <required/> missing"
        assert "PLAIN" not in s.mechanisms(), "PLAIN offered before TLS"
        first_id = attrs["id"]
        feats = s.starttls()
        assert feats.find(q(NS_TLS, "starttls")) is None, "STARTTLS offered again after TLS"
        assert s.reader.header[1].get("id") != first_id, "stream id reused after restart"
    finally:
        s.close()


def test_stream_ids_are_unique(server):
    ids = set()
    for _ in range(5):
        with server_connect(server) as s:
            s.open_stream("localhost")
            ids.add(s.reader.header[1].get("id"))
    assert len(ids) == 5


def test_mechanisms_after_tls(server):
    with authenticated_stream(server) as s:
        mechs = s.mechanisms()
        assert s.tls_version() == "TLSv1.3"
        for m in MECHS:
            assert m in mechs, "%s not offered: %s" % (m, mechs)
        for m in ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS"]:
            assert m in mechs, "%s not offered: %s" % (m, mechs)
        cbt = s.cb_types()
        assert cbt is not None, "no XEP-0440 <sasl-channel-binding/> in features"
        assert "tls-exporter" in cbt and "tls-server-end-point" in cbt, cbt


def test_auth_before_tls_is_refused(server):
    s = server_connect(server)
    try:
        s.open_stream("localhost")
        try:
            ok, _ = s.sasl_plain("alice", server.password(ALICE))
        except (X.StreamErrorReceived, X.StreamClosed):
            ok = False
        assert not ok, "PLAIN authentication succeeded without TLS"
    finally:
        s.close()


@pytest.mark.parametrize("alpn", [("xmpp-client",), None], ids=["alpn", "no-alpn"])
def test_direct_tls(server, alpn):
    s = server_connect(server, direct_tls=True, alpn=alpn)
    try:
        if alpn:
            assert s.sock.selected_alpn_protocol() == "xmpp-client"
        feats = s.open_stream("localhost")
        assert feats.find(q(NS_TLS, "starttls")) is None, "STARTTLS offered on a Direct TLS stream"
        assert "PLAIN" in s.mechanisms()
        ok, cond = s.sasl_plain("alice", server.password(ALICE))
        assert ok, cond
        s.restart("localhost")
        assert s.bind("direct").startswith(ALICE + "/")
    finally:
        s.close()


def test_post_auth_features_limits_and_session(server):
    s = server_login(server, ALICE, bind=False)
    try:
        feats = s.features
        assert feats.find(q(NS_BIND, "bind")) is not None, "no <bind/> after authentication"
        assert feats.find(q(NS_SASL, "mechanisms")) is None, "SASL offered again after success"
        sess = feats.find(q(NS_SESSION, "session"))
        assert sess is not None and sess.find(q(NS_SESSION, "optional")) is not None, \
            "legacy <session><optional/></session> not advertised"
        limits = feats.find(q(NS_LIMITS, "limits"))
        assert limits is not None, "XEP-0478 <limits/> not advertised"
        assert int(limits.findtext(q(NS_LIMITS, "max-bytes"))) == int(server.options["max_stanza_size"])
        assert int(limits.findtext(q(NS_LIMITS, "idle-seconds"))) == int(server.options["idle_timeout"])
        s.bind("sess")
        r = s.iq("set", "<session xmlns='%s'/>" % NS_SESSION)
        assert r.get("type") == "result", X.stanza_error(r)
        assert s.ping_server()
    finally:
        s.close()


# ----------------------------------------------------------------- SCRAM-PLUS

@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("cb_type", ["tls-exporter", "tls-server-end-point"])
@pytest.mark.parametrize("mech", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS"])
def test_scram_plus(server, mech, cb_type, transport):
    with authenticated_stream(server, direct_tls=transport == "direct_tls") as s:
        data = s.cb_tls_exporter() if cb_type == "tls-exporter" else s.cb_tls_server_end_point()
        ok, cond = s.sasl_scram("alice", server.password(ALICE), mech=mech,
                                cb_type=cb_type, cb_data=data)
        assert ok, "%s with %s failed: %s" % (mech, cb_type, cond)
        s.restart("localhost")
        assert s.bind("plus").startswith(ALICE + "/")


def test_scram_plus_wrong_binding_data(server):
    with authenticated_stream(server) as s:
        ok, cond = s.sasl_scram("alice", server.password(ALICE), mech="SCRAM-SHA-256-PLUS",
                                cb_type="tls-exporter", cb_data=secrets.token_bytes(32))
        assert not ok and cond == "not-authorized", cond


def test_scram_plus_exporter_from_another_connection(server):
    """Binding data of one TLS session must not authenticate another (the
    point of channel binding: a relayed exchange fails)."""
    with authenticated_stream(server) as other:
        foreign = other.cb_tls_exporter()
    with authenticated_stream(server) as s:
        ok, cond = s.sasl_scram("alice", server.password(ALICE), mech="SCRAM-SHA-256-PLUS",
                                cb_type="tls-exporter", cb_data=foreign)
        assert not ok, "channel binding data of another connection accepted"


def test_scram_downgrade_protection(server):
    """XEP-0474: server-first carries h=, the hash of the advertised
    mechanisms and channel-binding types, so a client can detect stripping.
    With XEP-0440 announced, a 'y' flag only says the client supports none of
    the announced binding types (slixmpp: tls-unique only), so it is not by
    itself a downgrade and the login succeeds."""
    with authenticated_stream(server) as s:
        mechs = s.mechanisms()
        cbs = s.cb_types()
        assert "SCRAM-SHA-256-PLUS" in mechs and cbs
        ok, cond = s.sasl_scram("alice", server.password(ALICE), mech="SCRAM-SHA-256",
                                gs2_flag="y")
        assert ok, cond
        attrs = dict(kv.split("=", 1) for kv in s.last_server_first.split(","))
        data = "\x1e".join(sorted(mechs)).encode() + b"\x1f" + "\x1e".join(sorted(cbs)).encode()
        assert attrs.get("h") == base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_scram_plus_unsupported_binding_type(server):
    with authenticated_stream(server) as s:
        ok, cond = s.sasl_scram("alice", server.password(ALICE), mech="SCRAM-SHA-256-PLUS",
                                cb_type="tls-unique", cb_data=secrets.token_bytes(12))
        assert not ok


def test_scram_n_flag_with_plus_mechanism(server):
    """Choosing a -PLUS mechanism but not binding ('n') is invalid."""
    with authenticated_stream(server) as s:
        ok, cond = s.sasl_scram("alice", server.password(ALICE), mech="SCRAM-SHA-256-PLUS",
                                gs2_flag="n")
        assert not ok


def test_scram_p_flag_with_plain_scram(server):
    with authenticated_stream(server) as s:
        ok, cond = s.sasl_scram("alice", server.password(ALICE), mech="SCRAM-SHA-256",
                                gs2_flag="p=tls-exporter", cb_data=s.cb_tls_exporter())
        assert not ok


def test_scram_bad_proof(server):
    with authenticated_stream(server) as s:
        ok, cond = s.sasl_scram("alice", server.password(ALICE), mech="SCRAM-SHA-256",
                                tamper_proof=True)
        assert not ok and cond == "not-authorized", cond


def test_tls12_binding_types(server):
    """On TLS 1.2 tls-exporter is not available (RFC 9266 §3); end-point is."""
    with authenticated_stream(server, tls_max=ssl.TLSVersion.TLSv1_2) as s:
        assert s.tls_version() == "TLSv1.2"
        cbt = s.cb_types() or []
        assert "tls-exporter" not in cbt, cbt
        assert "tls-server-end-point" in cbt, cbt
        ok, cond = s.sasl_scram("alice", server.password(ALICE), mech="SCRAM-SHA-256-PLUS",
                                cb_type="tls-server-end-point",
                                cb_data=s.cb_tls_server_end_point())
        assert ok, cond


def test_tls12_exporter_binding_refused(server):
    with authenticated_stream(server, tls_max=ssl.TLSVersion.TLSv1_2) as s:
        ok, cond = s.sasl_scram("alice", server.password(ALICE), mech="SCRAM-SHA-256-PLUS",
                                cb_type="tls-exporter", cb_data=secrets.token_bytes(32))
        assert not ok


# ------------------------------------------------------------ SASL failures

@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_wrong_password_then_retry_on_same_stream(server, mech):
    with authenticated_stream(server) as s:
        if mech == "PLAIN":
            ok, cond = s.sasl_plain("alice", "wrong")
        else:
            ok, cond = s.sasl_scram("alice", "wrong", mech=mech)
        assert not ok and cond == "not-authorized", cond
        ok, cond = s.sasl_plain("alice", server.password(ALICE))
        assert ok, "retry with the right password failed: %s" % cond
        s.restart("localhost")
        assert s.bind().startswith(ALICE + "/")


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256"])
def test_unknown_user(server, mech):
    with authenticated_stream(server) as s:
        if mech == "PLAIN":
            ok, cond = s.sasl_plain("nosuchuser", "whatever")
        else:
            ok, cond = s.sasl_scram("nosuchuser", "whatever", mech=mech)
        assert not ok and cond == "not-authorized", cond


def test_too_many_failures_close_the_stream(server):
    attempts = int(server.options["auth_max_attempts"])
    with authenticated_stream(server) as s:
        for _ in range(attempts - 1):
            ok, cond = s.sasl_plain("alice", "wrong")
            assert not ok and cond == "not-authorized", cond
        try:
            ok, cond = s.sasl_plain("alice", "wrong")
            assert not ok
            cond = s.expect_stream_error()
        except X.StreamErrorReceived as e:
            cond = e.condition
            assert s.wait_closed(5)
        assert cond == "policy-violation"


def test_invalid_mechanism(server):
    with authenticated_stream(server) as s:
        s.sasl_auth_raw("X-TERN-BOGUS", b"x")
        el = s.next()
        assert el.tag == q(NS_SASL, "failure")
        assert s.failure_condition(el) == "invalid-mechanism"


def test_incorrect_encoding(server):
    with authenticated_stream(server) as s:
        s.send("<auth xmlns='%s' mechanism='PLAIN'>!!not*base64!!</auth>" % NS_SASL)
        el = s.next()
        assert el.tag == q(NS_SASL, "failure")
        assert s.failure_condition(el) == "incorrect-encoding"


def test_abort(server):
    with authenticated_stream(server) as s:
        s.sasl_auth_raw("SCRAM-SHA-256", b"n,,n=alice,r=abcdefghijklmnop")
        el = s.next()
        assert el.tag == q(NS_SASL, "challenge")
        s.send("<abort xmlns='%s'/>" % NS_SASL)
        el = s.next()
        assert el.tag == q(NS_SASL, "failure") and s.failure_condition(el) == "aborted"
        ok, cond = s.sasl_plain("alice", server.password(ALICE))
        assert ok, cond


def test_plain_authzid_of_another_user_refused(server):
    with authenticated_stream(server) as s:
        ok, cond = s.sasl_plain("alice", server.password(ALICE), authzid="bob@localhost")
        if not ok:
            assert cond in ("invalid-authzid", "not-authorized"), cond
            return
        # A server may ignore the authzid, but must never act on it.
        s.restart("localhost")
        assert X.parse_jid(s.bind())[:2] == ("alice", "localhost"), "alice authenticated as bob"


def test_auth_ip_limit(tern):
    srv = tern(users={"alice@localhost": "pw-alice", "bob@localhost": "pw-bob"},
               auth_ip_limit=3, auth_account_limit=0, auth_max_attempts=5)
    for user in ("alice", "bob", "alice"):
        with authenticated_stream(srv) as s:
            ok, cond = s.sasl_plain(user, "wrong")
            assert not ok and cond == "not-authorized", cond
    with authenticated_stream(srv) as s:
        ok, cond = s.sasl_plain("bob", "pw-bob")
        assert not ok and cond == "temporary-auth-failure", \
            "login after auth_ip_limit failures: %s" % ((ok, cond),)
    # another source address is not affected
    s = X.RawStream.login(srv.host, srv.c2s_port, "bob", "localhost", "pw-bob", source="127.0.0.2")
    s.close()


def test_auth_account_limit(tern):
    srv = tern(users={"alice@localhost": "pw-alice", "bob@localhost": "pw-bob"},
               auth_ip_limit=0, auth_account_limit=2, auth_max_attempts=5)
    with authenticated_stream(srv) as s:
        for _ in range(2):
            ok, cond = s.sasl_plain("bob", "wrong")
            assert not ok and cond == "not-authorized", cond
    with authenticated_stream(srv) as s:
        ok, cond = s.sasl_plain("bob", "pw-bob")
        assert not ok and cond == "temporary-auth-failure", (ok, cond)
    # other accounts are not affected
    server_login(srv, "alice@localhost").close()


# ------------------------------------------------------------------ binding

def test_bind_chosen_resource(server):
    with server_login(server, ALICE, resource="home \u2603") as s:
        assert s.jid == ALICE + "/home \u2603"


def test_bind_server_generated_resource(server):
    a = server_login(server, ALICE, resource=None)
    b = server_login(server, ALICE, resource=None)
    try:
        ra = X.parse_jid(a.jid)[2]
        rb = X.parse_jid(b.jid)[2]
        assert ra and rb and ra != rb
        assert X.parse_jid(a.jid)[:2] == ("alice", "localhost")
    finally:
        a.close()
        b.close()


def test_slixmpp_server_generated_resource(server):
    async def main():
        c = await slix.connect(server, ALICE, server.password(ALICE))
        try:
            assert c.boundjid.bare == ALICE and c.boundjid.resource
        finally:
            await c.close()
    slix.run(main())


def test_resource_conflict_old_session_replaced(server):
    old = server_login(server, ALICE, resource="dup")

    async def main():
        new = await slix.connect(server, ALICE + "/dup", server.password(ALICE))
        bob = await slix.connect(server, "bob@localhost/conflict", server.password("bob@localhost"))
        try:
            assert str(new.boundjid) == ALICE + "/dup"
            cond = await asyncio.get_running_loop().run_in_executor(None, old.expect_stream_error)
            assert cond == "conflict"
            bob.send_message(mto=ALICE + "/dup", mbody="to the new session", mtype="chat")
            msg = await new.next_message()
            assert msg["body"] == "to the new session"
            assert msg["from"] == bob.boundjid
        finally:
            await new.close()
            await bob.close()
    try:
        slix.run(main())
    finally:
        old.close()


def test_bind_before_auth_refused(server):
    with authenticated_stream(server) as s:
        s.send("<iq type='set' id='b1'><bind xmlns='%s'><resource>x</resource></bind></iq>" % NS_BIND)
        assert s.expect_stream_error() == "not-authorized"


# ------------------------------------------------------------------ ternctl

def test_ternctl_user_lifecycle(tern):
    srv = tern(users={"alice@localhost": "first-pw"})
    r = srv.ternctl("user", "add", "alice@localhost", input="again\n")
    assert r.returncode == 1, "adding an existing user: exit %d" % r.returncode
    r = srv.ternctl("user", "passwd", "alice@localhost", input="second-pw\n")
    assert r.returncode == 0, r.stderr
    with authenticated_stream(srv) as s:
        ok, cond = s.sasl_plain("alice", "first-pw")
        assert not ok and cond == "not-authorized"
    server_login(srv, "alice@localhost", "second-pw").close()
    async def main():
        c = await slix.connect(srv, "alice@localhost", "second-pw", mech="SCRAM-SHA-512")
        await c.close()
    slix.run(main())
    r = srv.ternctl("user", "del", "alice@localhost")
    assert r.returncode == 0, r.stderr
    with authenticated_stream(srv) as s:
        ok, cond = s.sasl_plain("alice", "second-pw")
        assert not ok and cond == "not-authorized"
    r = srv.ternctl("user", "del", "alice@localhost")
    assert r.returncode == 1, "deleting a missing user: exit %d" % r.returncode


def test_ternctl_list_and_usage(server):
    r = server.ternctl("user", "list", "localhost")
    assert r.returncode == 0, r.stderr
    listed = set(r.stdout.split())
    assert {"alice@localhost", "bob@localhost", "carol@localhost", "zoe@localhost"} <= listed
    assert not any(j.endswith("@example.org") for j in listed)
    r = server.ternctl("user", "list", "example.org")
    assert set(r.stdout.split()) == {"alice@example.org", "dave@example.org"}
    r = server.ternctl("user", "list")
    assert {"alice@localhost", "alice@example.org"} <= set(r.stdout.split())
    r = server.ternctl("user", "frobnicate")
    assert r.returncode == 2, "unknown subcommand: exit %d" % r.returncode


def test_stream_header_echoes_client_from(server):
    """RFC 6120 §4.7.1-2: the response header carries from = the service
    and, when the client said who it is, to = that address."""
    from xmpp_raw import server_connect
    with server_connect(server) as s:
        s.open_stream("localhost", extra="from='Alice@LocalHost'")
        attrs = s.header_attrs()
        assert attrs.get("from") == "localhost"
        assert attrs.get("to") == "alice@localhost"
        assert attrs.get("version") == "1.0" and attrs.get("id")
    with server_connect(server) as s:
        s.open_stream("localhost")
        assert "to" not in s.header_attrs()
